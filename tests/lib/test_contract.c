/* Every public call, table-driven, on bad input: NULL handles and pointers,
 * zero sizes, size products that overflow size_t, mismatched shapes,
 * out-of-range and NaN configuration values, and non-finite numbers.
 *
 * Each row makes a bad call in a "world" holding one object of each kind
 * (a linear, an attention module, an embedding, a convolution, a power
 * iteration, a LayerNorm, a transformer block, an optimizer over some of
 * their parameters, a weight average of them and a collapse watch over the
 * attention's heads), in the middle of a training step: a forward has run,
 * its backward is pending. The row checks:
 * - the status is the documented one;
 * - a hash of every state the API exposes (parameters, gradients, u, v,
 *   sigma, gamma, optimizer buffers and step, the last forward's
 *   entropies, the weight average's and the watch's state) is what it was
 *   before the call;
 * - the caller's output buffers are untouched, except where the status is
 *   SRP_ERR_NUMERIC (the headers allow y, dx, logits to be written then);
 * - hidden state is untouched too: the world then finishes its step
 *   (backwards, an optimizer step, new forwards) and must end bit for bit
 *   where a twin world that never saw the bad call ends. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "testutil.h"

enum {
    IN = 6,
    OUT = 5,
    N = 4, /* linear: x [N][IN], y [N][OUT] */
    D = 8,
    H = 2,
    B = 2,
    T = 3, /* attention: x [B][T][D] */
    TK = 4, /* cross-attention: memory [B][TK][D] */
    V = 7,
    E = 4,
    NT = 5, /* embedding: table [V][E], NT tokens */
    PR = 5,
    PC = 6, /* power iteration on a [PR][PC] matrix */
    CLASSES = 3,
    ROWS = 4, /* losses: logits [ROWS][CLASSES] */
    LNR = 3,  /* LayerNorm: x [LNR][D] */
    MLP = 12, /* the block: x [B][T][D], its MLP D -> MLP -> D */
    CB = 2,
    CC = 2,
    CK = 3,
    CH = 6,
    CW = 5,
    CS = 2,
    KS = 3,
    COH = 2,
    COW = 2 /* conv: x [CB][CC][CH][CW], kernel KS, stride CS, no padding, y [CB][CK][COH][COW] */
};

typedef struct {
    srp_linear *lin;
    srp_attention *att;
    srp_attention *xatt; /* a cross-attention, queries ax, memory mx */
    srp_embedding *emb;
    srp_power_iter *pi;
    srp_layernorm *ln;
    srp_block *blk;
    srp_block *dblk; /* a decoder block (cfg.cross), queries ax, memory mx */
    srp_conv2d *conv;
    srp_optim *opt;
    srp_param_list *params; /* what the weight average averages */
    srp_weight_average *avg;
    srp_collapse *watch;
    srp_tensor_list *avg_watch_state; /* their state refs, for the hash */
    srp_param_list *scratch_params;   /* lists the list calls append to */
    srp_tensor_list *scratch_refs;
    /* cached decoding: a causal attention and a causal block, each with a
     * cache of 2 positions holding 1 and a full cache of 1 */
    srp_attention *catt;
    srp_block *cblk;
    srp_attention_cache *acache, *afull;
    srp_block_cache *bcache, *bfull;
    /* and against a memory (mx, klen): the cross-attention's and the
     * decoder block's caches, each with 1 position decoded, and each kind
     * once without a memory */
    srp_attention_cache *xcache, *xempty;
    srp_block_cache *dcache, *dempty;
    /* select's rows: a repeat (and a drop); one too many; one >= B */
    size_t rows_ok[B], rows_big[B + 1], rows_bad[B];
    /* inputs (the calls read them) */
    float x[N * IN], dy[N * OUT], dw[OUT * IN], ax[B * T * D], ady[B * T * D], edx[NT * E],
        pw[PR * PC], cx[CB * CC * CH * CW], cdy[CB * CK * COH * COW];
    uint32_t tok[NT];
    float mx[B * TK * D];
    size_t klen[B], slen[B]; /* key lengths: the memory's, and a self-attention's */
    size_t zero_len[B], long_len[B]; /* bad ones: a 0, and one above T (and TK) */
    float heads[H]; /* entropies the watch is fed */
    float lnx[LNR * D], lndy[LNR * D];
    float logits[ROWS * CLASSES];
    int labels[ROWS];
    /* outputs (the calls write them) */
    struct {
        float y[N * OUT], dx[N * IN], w_hat[OUT * IN], ay[B * T * D], adx[B * T * D], ex[NT * E];
        float elogits[NT * V], scalar, heads[H], heads2[H];
        float nn[ROWS * CLASSES], stats[ROWS], stats2[ROWS];
        float lny[LNR * D], lndx[LNR * D], by[B * T * D], bdx[B * T * D];
        float cy[CB * CK * COH * COW], cdx[CB * CC * CH * CW];
        size_t count, oh, ow;
        srp_collapse_event events[2 * H];
        float dec_ay[B * D], dec_by[B * D]; /* the decoders' outputs */
        float dec_xy[B * D], dec_dy[B * D]; /* the cross-attention's and the decoder block's */
        float xy[B * T * D], xdx[B * T * D], xdm[B * TK * D];
        float dby[B * T * D], dbdx[B * T * D], dbdm[B * TK * D]; /* the decoder block's */
    } out;
} world;

static void fill(float *x, size_t n, uint64_t seed, double scale)
{
    srp_rng r = seeded_rng(seed);
    fill_normal_f(&r, x, n, scale);
}

static void add_linear_params(srp_param *p, size_t *n, srp_linear *l, const char *prefix)
{
    static char names[16][32];
    const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
    snprintf(names[*n], sizeof names[0], "%s.w", prefix);
    p[*n] = srp_param_make(names[*n], srp_linear_weight(l), srp_linear_weight_grad(l), in * out,
                           SRP_PARAM_WEIGHT);
    (*n)++;
    snprintf(names[*n], sizeof names[0], "%s.b", prefix);
    p[*n] =
        srp_param_make(names[*n], srp_linear_bias(l), srp_linear_bias_grad(l), out, SRP_PARAM_BIAS);
    (*n)++;
    snprintf(names[*n], sizeof names[0], "%s.g", prefix);
    p[*n] = srp_param_make(names[*n], srp_linear_gamma(l), srp_linear_gamma_grad(l), 1,
                           SRP_PARAM_GAMMA);
    (*n)++;
}

/* One training step of everything, then the forwards of the next, whose
 * backwards stay pending. Every call must succeed. */
static void forwards(world *w)
{
    assert_ok(srp_linear_forward(w->lin, w->x, N, w->out.y, SRP_TRAIN));
    assert_ok(srp_attention_forward(w->att, w->ax, B, T, w->out.ay, SRP_TRAIN));
    assert_ok(srp_attention_forward_cross(w->xatt, w->ax, B, T, w->mx, TK, w->klen, w->out.xy,
                                          SRP_TRAIN));
    assert_ok(srp_embedding_forward(w->emb, w->tok, NT, w->out.ex));
    assert_ok(srp_layernorm_layer_forward(w->ln, w->lnx, LNR, w->out.lny, SRP_TRAIN));
    assert_ok(srp_block_forward(w->blk, w->ax, B, T, w->out.by, SRP_TRAIN));
    assert_ok(srp_block_forward_cross(w->dblk, w->ax, B, T, w->slen, w->mx, TK, w->klen,
                                      w->out.dby, SRP_TRAIN));
    assert_ok(srp_conv2d_forward(w->conv, w->cx, CB, CH, CW, w->out.cy, SRP_TRAIN));
}

static void backwards_and_step(world *w)
{
    assert_ok(srp_linear_backward(w->lin, w->x, w->dy, N, w->out.dx));
    assert_ok(srp_attention_backward(w->att, w->ady, w->out.adx));
    assert_ok(srp_attention_backward_cross(w->xatt, w->ady, w->out.xdx, w->out.xdm));
    assert_ok(srp_embedding_backward(w->emb, w->tok, w->edx, NT));
    assert_ok(srp_layernorm_layer_backward(w->ln, w->lnx, w->lndy, LNR, w->out.lndx));
    assert_ok(srp_block_backward(w->blk, w->ady, w->out.bdx));
    assert_ok(srp_block_backward_cross(w->dblk, w->ady, w->out.dbdx, w->out.dbdm));
    assert_ok(srp_conv2d_backward(w->conv, w->cx, w->cdy, w->out.cdx));
    assert_ok(srp_optim_step(w->opt, 0.05f));
    assert_ok(srp_weight_average_update(w->avg));
    assert_ok(srp_attention_entropy(w->att, w->heads, NULL));
    assert_ok(srp_collapse_update(w->watch, srp_optim_step_count(w->opt), w->heads, w->out.events,
                                  2 * H, &w->out.count));
    assert_ok(srp_power_iter_step(w->pi, w->pw, 1, &w->out.scalar));
}

static world *world_make(void)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    srp_linear_config lc = srp_linear_config_default(IN, OUT);
    lc.seed = 3;
    assert_ok(srp_linear_create(&w->lin, &lc));
    srp_attention_config ac = srp_attention_config_default(D, H);
    ac.seed = 4;
    ac.qkv.init_std = ac.proj.init_std = 0.3f; /* attention that is not uniform */
    assert_ok(srp_attention_create(&w->att, &ac, B, T));
    srp_attention_config xc = ac; /* ac stays the self-attention's: the decoders' too */
    xc.cross = 1;
    xc.max_memory_tokens = TK;
    xc.seed = 8;
    assert_ok(srp_attention_create(&w->xatt, &xc, B, T));
    assert_ok(srp_embedding_create(&w->emb, V, E, 0.5f, 5));
    assert_ok(srp_power_iter_create(&w->pi, PR, PC, 6));
    srp_layernorm_config nc = srp_layernorm_config_default(D);
    assert_ok(srp_layernorm_create(&w->ln, &nc, LNR));
    /* a block with every regularizer on: their random states are state */
    srp_block_config bc = srp_block_config_default(D, H, MLP);
    bc.qkv.init_std = bc.proj.init_std = 0.3f;
    bc.attn_dropout = bc.mlp_dropout = bc.drop_path = 0.2f;
    assert_ok(srp_block_create(&w->blk, &bc, B, T));
    srp_block_config dc = bc; /* bc stays the plain block's: the decoders' too */
    dc.cross = 1;
    dc.causal = 1;
    dc.norm = SRP_NORM_POST;
    dc.max_memory_tokens = TK;
    srp_block_config_seed(&dc, 9);
    assert_ok(srp_block_create(&w->dblk, &dc, B, T));
    srp_conv2d_config vc = srp_conv2d_config_default(CC, CK, KS);
    vc.stride = CS;
    vc.seed = 7;
    vc.init_std = 0.3f;
    assert_ok(srp_conv2d_create(&w->conv, &vc, CB, CH, CW));
    srp_param p[16];
    size_t np = 0;
    add_linear_params(p, &np, w->lin, "lin");
    add_linear_params(p, &np, srp_attention_qkv(w->att), "qkv");
    add_linear_params(p, &np, srp_attention_proj(w->att), "proj");
    add_linear_params(p, &np, srp_conv2d_linear(w->conv), "conv");
    p[np++] = srp_param_make("emb", srp_embedding_weight(w->emb), srp_embedding_weight_grad(w->emb),
                             V * E, SRP_PARAM_EMBEDDING);
    srp_optim_config oc = srp_optim_config_default(SRP_OPTIM_SGD);
    oc.weight_decay = 1e-3f;
    assert_ok(srp_optim_create(&w->opt, p, np, &oc));
    assert_ok(srp_param_list_create(&w->params));
    const srp_param_kind kinds[3] = {SRP_PARAM_WEIGHT, SRP_PARAM_BIAS, SRP_PARAM_GAMMA};
    for (size_t i = 0; i < np; i++)
        assert_ok(srp_param_list_add(w->params, p[i].name, NULL, p[i].data, p[i].grad, p[i].size,
                                     i + 1 == np ? SRP_PARAM_EMBEDDING : kinds[i % 3]));
    srp_linear *const linears[3] = {w->lin, srp_attention_qkv(w->att), srp_attention_proj(w->att)};
    srp_weight_average_config wc = srp_weight_average_config_default();
    wc.decay = 0.9f;
    assert_ok(srp_weight_average_create(&w->avg, w->params, linears, 3, &wc));
    srp_collapse_config cc = srp_collapse_config_default(1, H);
    cc.window = 3;
    cc.fraction = 0.5f;
    cc.drop = 0.5f;
    cc.uniform = logf((float)T);
    assert_ok(srp_collapse_create(&w->watch, &cc));
    assert_ok(srp_tensor_list_create(&w->avg_watch_state));
    assert_ok(srp_weight_average_state_refs(w->avg, "avg", w->avg_watch_state));
    assert_ok(srp_collapse_state_refs(w->watch, "watch", w->avg_watch_state));
    assert_ok(srp_param_list_create(&w->scratch_params));
    assert_ok(srp_tensor_list_create(&w->scratch_refs));

    fill(w->x, N * IN, 10, 1.0);
    fill(w->dy, N * OUT, 11, 1.0);
    fill(w->dw, OUT * IN, 12, 1.0);
    fill(w->ax, B * T * D, 12, 1.0);
    fill(w->ady, B * T * D, 13, 1.0);
    fill(w->mx, B * TK * D, 20, 1.0);
    w->klen[0] = TK;
    w->klen[1] = 2;
    w->slen[0] = T;
    w->slen[1] = 1;
    w->zero_len[0] = 1;
    w->long_len[0] = 1;
    w->long_len[1] = T > TK ? T + 1 : TK + 1;
    fill(w->edx, NT * E, 14, 1.0);
    fill(w->pw, PR * PC, 15, 1.0);
    fill(w->lnx, LNR * D, 17, 2.0);
    fill(w->lndy, LNR * D, 18, 1.0);
    fill(srp_layernorm_weight(w->ln), D, 19, 1.0);
    fill(w->cx, CB * CC * CH * CW, 17, 1.0);
    fill(w->cdy, CB * CK * COH * COW, 18, 1.0);
    fill(w->logits, ROWS * CLASSES, 16, 2.0);
    for (size_t i = 0; i < NT; i++)
        w->tok[i] = (uint32_t)((3 * i + 1) % V);
    for (size_t i = 0; i < ROWS; i++)
        w->labels[i] = (int)(i % CLASSES);
    forwards(w);
    backwards_and_step(w); /* gradients stay: the optimizer does not zero them */
    forwards(w);
    ac.causal = 1;
    assert_ok(srp_attention_create(&w->catt, &ac, B, T));
    bc.causal = 1;
    assert_ok(srp_block_create(&w->cblk, &bc, B, T));
    assert_ok(srp_attention_cache_create(&w->acache, w->catt, B, 2));
    assert_ok(srp_attention_cache_create(&w->afull, w->catt, B, 1));
    assert_ok(srp_block_cache_create(&w->bcache, w->cblk, B, 2));
    assert_ok(srp_block_cache_create(&w->bfull, w->cblk, B, 1));
    assert_ok(srp_attention_decode(w->catt, w->acache, w->ax, B, w->out.dec_ay));
    assert_ok(srp_attention_decode(w->catt, w->afull, w->ax, B, w->out.dec_ay));
    assert_ok(srp_block_decode(w->cblk, w->bcache, w->ax, B, w->out.dec_by));
    assert_ok(srp_block_decode(w->cblk, w->bfull, w->ax, B, w->out.dec_by));
    assert_ok(srp_attention_cache_create(&w->xcache, w->xatt, B, 2));
    assert_ok(srp_attention_cache_create(&w->xempty, w->xatt, B, 2));
    assert_ok(srp_block_cache_create(&w->dcache, w->dblk, B, 2));
    assert_ok(srp_block_cache_create(&w->dempty, w->dblk, B, 2));
    assert_ok(srp_attention_cache_set_memory(w->xcache, w->mx, B, TK, w->klen));
    assert_ok(srp_block_cache_set_memory(w->dcache, w->mx, B, TK, w->klen));
    assert_ok(srp_attention_decode(w->xatt, w->xcache, w->ax, B, w->out.dec_xy));
    assert_ok(srp_block_decode(w->dblk, w->dcache, w->ax, B, w->out.dec_dy));
    for (size_t i = 0; i < B; i++) {
        w->rows_ok[i] = B - 1;
        w->rows_bad[i] = i == 0 ? 0 : B;
    }
    return w;
}

static void world_free(world *w)
{
    srp_linear_destroy(w->lin);
    srp_attention_destroy(w->att);
    srp_attention_destroy(w->xatt);
    srp_embedding_destroy(w->emb);
    srp_power_iter_destroy(w->pi);
    srp_layernorm_destroy(w->ln);
    srp_block_destroy(w->blk);
    srp_block_destroy(w->dblk);
    srp_conv2d_destroy(w->conv);
    srp_optim_destroy(w->opt);
    srp_weight_average_destroy(w->avg);
    srp_param_list_destroy(w->params);
    srp_collapse_destroy(w->watch);
    srp_tensor_list_destroy(w->avg_watch_state);
    srp_param_list_destroy(w->scratch_params);
    srp_tensor_list_destroy(w->scratch_refs);
    srp_attention_cache_destroy(w->acache);
    srp_attention_cache_destroy(w->afull);
    srp_block_cache_destroy(w->bcache);
    srp_block_cache_destroy(w->bfull);
    srp_attention_cache_destroy(w->xcache);
    srp_attention_cache_destroy(w->xempty);
    srp_block_cache_destroy(w->dcache);
    srp_block_cache_destroy(w->dempty);
    srp_attention_destroy(w->catt);
    srp_block_destroy(w->cblk);
    free(w);
}

/* The hashes are zlib's CRC-32, as the library's replica check uses. */
static uLong mix(uLong h, const void *p, size_t n) { return crc32(h, p, (uInt)n); }

static uLong mix_linear(uLong h, srp_linear *l)
{
    const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
    const float sigma = srp_linear_sigma(l);
    h = mix(h, srp_linear_weight(l), sizeof(float) * in * out);
    h = mix(h, srp_linear_weight_grad(l), sizeof(float) * in * out);
    h = mix(h, srp_linear_bias(l), sizeof(float) * out);
    h = mix(h, srp_linear_bias_grad(l), sizeof(float) * out);
    h = mix(h, srp_linear_gamma(l), sizeof(float));
    h = mix(h, srp_linear_gamma_grad(l), sizeof(float));
    h = mix(h, srp_linear_u(l), sizeof(float) * in);
    h = mix(h, srp_linear_v(l), sizeof(float) * out);
    return mix(h, &sigma, sizeof sigma);
}

static uLong mix_layernorm(uLong h, srp_layernorm *ln)
{
    h = mix(h, srp_layernorm_weight(ln), sizeof(float) * D);
    h = mix(h, srp_layernorm_bias(ln), sizeof(float) * D);
    h = mix(h, srp_layernorm_weight_grad(ln), sizeof(float) * D);
    return mix(h, srp_layernorm_bias_grad(ln), sizeof(float) * D);
}

/* Everything the API shows of the world's objects; with_activations adds
 * what the attention keeps of its last forward (its entropies). */
static uLong state_hash(world *w, int with_activations)
{
    uLong h = crc32(0L, Z_NULL, 0);
    h = mix_linear(h, w->lin);
    for (size_t i = 0; i < srp_attention_in_proj_count(w->att); i++)
        h = mix_linear(h, srp_attention_in_proj(w->att, i, NULL));
    h = mix_linear(h, srp_attention_proj(w->att));
    for (size_t i = 0; i <= srp_attention_in_proj_count(w->xatt); i++)
        h = mix_linear(h, i < srp_attention_in_proj_count(w->xatt)
                              ? srp_attention_in_proj(w->xatt, i, NULL)
                              : srp_attention_proj(w->xatt));
    h = mix_linear(h, srp_conv2d_linear(w->conv));
    for (int k = 0; k < 2 && with_activations; k++) {
        float mean[H], min[H];
        const srp_status st = srp_attention_entropy(k ? w->xatt : w->att, mean, min);
        h = mix(h, &st, sizeof st);
        h = mix(h, mean, sizeof mean);
        h = mix(h, min, sizeof min);
    }
    h = mix_layernorm(h, w->ln);
    for (size_t i = 0; i < srp_block_linear_count(w->blk); i++)
        h = mix_linear(h, srp_block_linear(w->blk, i, NULL));
    for (size_t i = 0; i < srp_block_norm_count(w->blk); i++)
        h = mix_layernorm(h, srp_block_norm(w->blk, i, NULL));
    h = mix(h, srp_block_dropout_rng(w->blk), sizeof(srp_rng));
    h = mix(h, srp_attention_dropout_rng(srp_block_attention(w->blk)), sizeof(srp_rng));
    for (size_t i = 0; i < srp_block_linear_count(w->dblk); i++)
        h = mix_linear(h, srp_block_linear(w->dblk, i, NULL));
    for (size_t i = 0; i < srp_block_norm_count(w->dblk); i++)
        h = mix_layernorm(h, srp_block_norm(w->dblk, i, NULL));
    h = mix(h, srp_block_dropout_rng(w->dblk), sizeof(srp_rng));
    h = mix(h, srp_attention_dropout_rng(srp_block_cross_attention(w->dblk)), sizeof(srp_rng));
    if (with_activations) {
        const float *mean = srp_layernorm_mean(w->ln); /* NULL once lost */
        const int have_mean = mean != NULL;
        h = mix(h, &have_mean, sizeof have_mean);
        if (mean)
            h = mix(h, mean, sizeof(float) * LNR);
        float bmean[H] = {0};
        const srp_status st = srp_attention_entropy(srp_block_attention(w->blk), bmean, NULL);
        h = mix(h, &st, sizeof st);
        h = mix(h, bmean, sizeof bmean);
    }
    h = mix(h, srp_embedding_weight(w->emb), sizeof(float) * V * E);
    h = mix(h, srp_embedding_weight_grad(w->emb), sizeof(float) * V * E);
    const float sigma = srp_power_iter_sigma(w->pi);
    h = mix(h, srp_power_iter_u(w->pi), sizeof(float) * PC);
    h = mix(h, srp_power_iter_v(w->pi), sizeof(float) * PR);
    h = mix(h, &sigma, sizeof sigma);
    const uint64_t steps = srp_optim_step_count(w->opt);
    h = mix(h, &steps, sizeof steps);
    for (size_t i = 0; i < srp_block_linear_count(w->cblk); i++)
        h = mix_linear(h, srp_block_linear(w->cblk, i, NULL));
    for (size_t i = 0; i < srp_attention_in_proj_count(w->catt); i++)
        h = mix_linear(h, srp_attention_in_proj(w->catt, i, NULL));
    h = mix_linear(h, srp_attention_proj(w->catt));
    const size_t lengths[8] = {
        srp_attention_cache_length(w->acache), srp_attention_cache_length(w->afull),
        srp_block_cache_length(w->bcache),     srp_block_cache_length(w->bfull),
        srp_attention_cache_length(w->xcache), srp_attention_cache_length(w->xempty),
        srp_block_cache_length(w->dcache),     srp_block_cache_length(w->dempty)};
    h = mix(h, lengths, sizeof lengths);
    const int swapped = srp_weight_average_swapped(w->avg);
    h = mix(h, &swapped, sizeof swapped);
    for (size_t i = 0; i < srp_tensor_list_count(w->avg_watch_state); i++) {
        const srp_tensor_ref *r = &srp_tensor_list_refs(w->avg_watch_state)[i];
        size_t elems = 1;
        for (size_t d = 0; d < r->ndim; d++)
            elems *= r->shape[d];
        h = mix(h, r->data, elems * srp_dtype_size(r->dtype));
    }
    for (size_t i = 0; i < srp_optim_param_count(w->opt); i++)
        for (size_t b = 0; b < srp_optim_state_buffers(w->opt); b++)
            h = mix(h, srp_optim_state(w->opt, i, b),
                    sizeof(float) * srp_optim_param(w->opt, i)->size);
    return h;
}

static uLong output_hash(const world *w)
{
    return mix(crc32(0L, Z_NULL, 0), &w->out, sizeof w->out);
}

/* ---- the table ----
 * X(documented status, the call), with w the world; LOSES(...) marks an
 * attention forward that fails on its output, which loses its activations
 * (attention.h); EACH(status, n, call) is n rows, the call made with
 * which = 0 .. n-1 (the cases of a helper's switch, or 0 a checkpoint and
 * 1 a safetensors file). The helpers here build what a row needs: a bad
 * config, a bad list, a bad value in place. */

static srp_linear_config linear_cfg(int which)
{
    srp_linear_config c = srp_linear_config_default(IN, OUT);
    switch (which) {
    case 0: c.in_features = 0; break;
    case 1: c.out_features = 0; break;
    case 2:
        c.in_features = SIZE_MAX / 2;
        c.out_features = 4;
        break; /* in * out overflows */
    case 3: c.power_iters = 0; break;
    case 4: c.init_std = NAN; break;
    case 5: c.init_std = -1.0f; break;
    case 6: c.reparam = (srp_reparam)7; break;
    case 7: c.gamma_init = (srp_gamma_init)9; break;
    }
    return c;
}

static srp_status create_linear(int which)
{
    srp_linear_config c = linear_cfg(which);
    srp_linear *l = NULL;
    srp_status st = srp_linear_create(&l, which < 0 ? NULL : &c);
    assert_null(l);
    return st;
}

/* The bad sizes of an attention and of a block: which 0..5; others none. */
static void bad_attention_sizes(int which, size_t *heads, size_t *dim, size_t *mb, size_t *mt)
{
    switch (which) {
    case 0: *heads = 3; break; /* 8 is no multiple of 3 */
    case 1: *heads = 0; break;
    case 2: *dim = 0; break;
    case 3: *mb = 0; break;
    case 4: *mt = 0; break;
    case 5:
        *mb = SIZE_MAX / 4;
        *mt = 8;
        break; /* batch * tokens overflows */
    }
}

static srp_status create_attention(int which)
{
    srp_attention_config c = srp_attention_config_default(D, H);
    size_t mb = B, mt = T;
    bad_attention_sizes(which, &c.heads, &c.dim, &mb, &mt);
    switch (which) {
    case 6: c.qkv.power_iters = 0; break;
    case 7: c.proj.init_std = NAN; break;
    case 8: c.qkv_sigma = (srp_qkv_sigma)5; break;
    }
    srp_attention *a = NULL;
    srp_status st = srp_attention_create(&a, which < 0 ? NULL : &c, mb, mt);
    assert_null(a);
    return st;
}

/* Bad configurations of a cross-attention: which 0..2. */
static srp_status create_cross_attention(int which)
{
    srp_attention_config c = srp_attention_config_default(D, H);
    c.cross = 1;
    size_t mb = B;
    switch (which) {
    case 0: c.causal = 1; break;
    case 1: c.qkv_sigma = SRP_QKV_SIGMA_QK_V; break;
    case 2:
        c.max_memory_tokens = SIZE_MAX / 8;
        mb = 1024;
        break; /* batch * memory tokens overflows */
    }
    srp_attention *a = NULL;
    srp_status st = srp_attention_create(&a, &c, mb, T);
    assert_null(a);
    return st;
}

static srp_status create_layernorm(int which)
{
    srp_layernorm_config c = srp_layernorm_config_default(D);
    size_t rows = LNR;
    switch (which) {
    case 0: c.dim = 0; break;
    case 1: rows = 0; break;
    case 2: c.eps = 0.0f; break;
    case 3: c.eps = NAN; break;
    case 4: c.eps = INFINITY; break;
    case 5:
        c.dim = 4;
        rows = SIZE_MAX / 2;
        break; /* rows * dim overflows */
    }
    srp_layernorm *ln = NULL;
    srp_status st = srp_layernorm_create(&ln, which < 0 ? NULL : &c, rows);
    assert_null(ln);
    return st;
}

static srp_status create_block(int which)
{
    srp_block_config c = srp_block_config_default(D, H, MLP);
    size_t mb = B, mt = T;
    bad_attention_sizes(which, &c.heads, &c.dim, &mb, &mt);
    switch (which) {
    case 6: c.norm = (srp_norm_placement)5; break;
    case 7: c.norm_eps = NAN; break;
    case 8: c.attn_dropout = 1.0f; break;
    case 9: c.mlp_dropout = -0.5f; break;
    case 10: c.drop_path = NAN; break;
    case 11: c.norm1_name = NULL; break;
    case 12: c.norm2_name = c.norm1_name; break;
    case 13: c.fc1.power_iters = 0; break;
    case 14: c.qkv_sigma = (srp_qkv_sigma)4; break;
    case 15: c.mlp_dim = SIZE_MAX / 2; break;
    case 16: c.mlp_dim = 0; break;
    }
    srp_block *b = NULL;
    srp_status st = srp_block_create(&b, which < 0 ? NULL : &c, mb, mt);
    assert_null(b);
    return st;
}

static srp_status create_embedding(size_t vocab, size_t dim, float std)
{
    srp_embedding *e = NULL;
    srp_status st = srp_embedding_create(&e, vocab, dim, std, 1);
    assert_null(e);
    return st;
}

static srp_status create_power_iter(size_t rows, size_t cols)
{
    srp_power_iter *p = NULL;
    srp_status st = srp_power_iter_create(&p, rows, cols, 1);
    assert_null(p);
    return st;
}

static srp_status create_optim(int which)
{
    static float data[8], grad[8];
    srp_param p[2] = {srp_param_make("a", data, grad, 4, SRP_PARAM_WEIGHT),
                      srp_param_make("b", data + 4, grad + 4, 4, SRP_PARAM_BIAS)};
    srp_optim_config c = srp_optim_config_default(SRP_OPTIM_SGD);
    size_t count = 2;
    switch (which) {
    case 0: count = 0; break;
    case 1: p[1].name = "a"; break;
    case 2: p[0].data = NULL; break;
    case 3: p[0].grad = NULL; break;
    case 4: p[0].size = 0; break;
    case 5: p[0].size = p[1].size = SIZE_MAX / 4; break; /* the sum overflows */
    case 6: p[0].lr_mult = NAN; break;
    case 7: p[0].lr_mult = -1.0f; break;
    case 8: c.momentum = NAN; break;
    case 9: c.momentum = 1.0f; break;
    case 10: c.weight_decay = -0.1f; break;
    case 11: c.weight_decay = NAN; break;
    case 12:
        c.nesterov = 1;
        c.momentum = 0.0f;
        break;
    case 13:
        c = srp_optim_config_default(SRP_OPTIM_ADAMW);
        c.beta1 = NAN;
        break;
    case 14:
        c = srp_optim_config_default(SRP_OPTIM_ADAMW);
        c.beta2 = 1.0f;
        break;
    case 15:
        c = srp_optim_config_default(SRP_OPTIM_ADAMW);
        c.eps = 0.0f;
        break;
    case 16:
        c = srp_optim_config_default(SRP_OPTIM_LARS);
        c.lars_eta = NAN;
        break;
    case 17:
        c = srp_optim_config_default(SRP_OPTIM_LARS);
        c.wd_mode = SRP_WD_DECOUPLED;
        break;
    case 18: c.kind = (srp_optim_kind)9; break;
    case 19: c.dampening = 2.0f; break;
    }
    srp_optim *o = NULL;
    srp_status st = srp_optim_create(&o, p, count, &c);
    assert_null(o);
    return st;
}

static srp_status schedule_check(int which)
{
    srp_lr_schedule s = srp_lr_schedule_default(SRP_LR_COSINE, 0.1f, 100);
    switch (which) {
    case 0: s.base_lr = NAN; break;
    case 1: s.base_lr = -0.1f; break;
    case 2: s.warmup_steps = 100; break; /* total must exceed warmup */
    case 3: s.min_lr = NAN; break;
    case 4:
        s = srp_lr_schedule_default(SRP_LR_STEP, 0.1f, 100);
        s.step_size = 0;
        break;
    case 5:
        s = srp_lr_schedule_default(SRP_LR_STEP, 0.1f, 100);
        s.step_gamma = NAN;
        break;
    case 6: s.kind = (srp_lr_kind)8; break;
    }
    return srp_lr_schedule_check(&s);
}

/* A tensor list whose shape's product overflows size_t. */
static srp_status save_overflowing(int safetensors)
{
    static float data[4];
    srp_tensor_ref r = {"t", SRP_DTYPE_F32, 2, {SIZE_MAX / 2, 4}, data};
    const char *path = "contract_never_written.bin";
    srp_status st =
        safetensors ? srp_safetensors_save(path, &r, 1, NULL, 0) : srp_checkpoint_save(path, &r, 1);
    assert_false(file_exists(path));
    return st;
}

/* The files the file rows open: a checkpoint (with metadata) and a
 * safetensors file, each of the tensors "t" [ROWS] and "s" (a scalar),
 * written once by main. Reads target the world's output buffers, whose
 * hash shows any write. */
#define CKPT_FILE "contract_world.ckpt"
#define ST_FILE "contract_world.safetensors"
static const char *const k_file_meta[] = {"heads", "4"};

static void write_world_files(void)
{
    float t[ROWS] = {1, 2, 3, 4}, sc = 5;
    const srp_tensor_ref refs[2] = {{"t", SRP_DTYPE_F32, 1, {ROWS}, t},
                                    {"s", SRP_DTYPE_F32, 0, {0}, &sc}};
    assert_ok(srp_checkpoint_save_with_metadata(CKPT_FILE, refs, 2, k_file_meta, 1));
    assert_ok(srp_safetensors_save(ST_FILE, refs, 2, k_file_meta, 1));
}

/* One bad call on an opened file: which = 0..8 (see the switch). */
static srp_status bad_file_call(world *w, int safetensors, int which)
{
    srp_checkpoint *c = NULL;
    srp_safetensors *f = NULL;
    if (safetensors)
        assert_ok(srp_safetensors_open(&f, ST_FILE));
    else
        assert_ok(srp_checkpoint_open(&c, CKPT_FILE));
    const srp_tensor_ref t = {"t", SRP_DTYPE_F32, 1, {ROWS}, w->out.stats};
    srp_tensor_ref list[2] = {t, {"s", SRP_DTYPE_F32, 0, {0}, &w->out.scalar}};
    const char *other[] = {"heads", "8"};
    srp_tensor_ref info;
    switch (which) {
    case 0: list[1].name = "missing"; break;                        /* SRP_ERR_NOT_FOUND */
    case 1: list[0].shape[0] = ROWS + 1; break;                     /* SRP_ERR_SHAPE */
    case 2: list[1].dtype = SRP_DTYPE_F64; break;                   /* SRP_ERR_SHAPE */
    case 3: list[1] = list[0]; break;                               /* a name twice */
    }
    srp_status st = SRP_OK;
    if (which <= 3)
        st = safetensors ? srp_safetensors_read(f, list, 2) : srp_checkpoint_read(c, list, 2);
    else if (which == 4) /* "s" left out */
        st = safetensors ? srp_safetensors_read_strict(f, &t, 1) : srp_checkpoint_read_strict(c, &t, 1);
    else if (which == 5)
        st = safetensors ? srp_safetensors_check_metadata(f, other, 1)
                         : srp_checkpoint_check_metadata(c, other, 1);
    else if (which == 6)
        st = safetensors ? srp_safetensors_check_metadata(f, NULL, 1)
                         : srp_checkpoint_check_metadata(c, NULL, 1);
    else if (which == 7)
        st = safetensors ? srp_safetensors_info(f, 2, &info) : srp_checkpoint_info(c, 2, &info);
    else
        st = safetensors ? srp_safetensors_read_strict(f, NULL, 1)
                         : srp_checkpoint_read_strict(c, NULL, 1);
    srp_safetensors_close(f);
    srp_checkpoint_close(c);
    return st;
}

/* open with a NULL path: *out must come back NULL. */
static srp_status open_null_path(int safetensors)
{
    srp_checkpoint *c = (srp_checkpoint *)&c;
    srp_safetensors *f = (srp_safetensors *)&f;
    const srp_status st =
        safetensors ? srp_safetensors_open(&f, NULL) : srp_checkpoint_open(&c, NULL);
    assert_null(safetensors ? (void *)f : (void *)c);
    return st;
}

/* A file loaded strictly into the world's buffers: "s" is left out. */
static srp_status load_strict_leaving_out(world *w, int safetensors)
{
    const srp_tensor_ref t = {"t", SRP_DTYPE_F32, 1, {ROWS}, w->out.stats};
    return safetensors ? srp_safetensors_load_strict(ST_FILE, &t, 1)
                       : srp_checkpoint_load_strict(CKPT_FILE, &t, 1);
}

static srp_status create_conv(int which)
{
    srp_conv2d_config c = srp_conv2d_config_default(CC, CK, KS);
    size_t mb = CB, mh = CH, mw = CW;
    switch (which) {
    case 0: c.in_channels = 0; break;
    case 1: c.out_channels = 0; break;
    case 2: c.kernel = 0; break;
    case 3: c.stride = 0; break;
    case 4: mb = 0; break;
    case 5: mh = 0; break;
    case 6: mw = 0; break;
    case 7: c.kernel = CW + 1; break; /* larger than the largest image */
    case 8:
        c.in_channels = SIZE_MAX / 4;
        break; /* in k k overflows */
    case 9: c.power_iters = 0; break;
    case 10: c.init_std = NAN; break;
    case 11: c.gamma_init = (srp_gamma_init)9; break;
    case 12: c.reparam = (srp_reparam)9; break;
    }
    srp_conv2d *l = (srp_conv2d *)&l; /* a failed create sets it to NULL */
    srp_status st = srp_conv2d_create(&l, which < 0 ? NULL : &c, mb, mh, mw);
    assert_null(l);
    return st;
}

static srp_status conv_params(world *w, int which)
{
    srp_param_list *pl = NULL;
    srp_tensor_list *tl = NULL;
    assert_ok(srp_param_list_create(&pl));
    assert_ok(srp_tensor_list_create(&tl));
    srp_status st;
    switch (which) {
    case 0: st = srp_conv2d_params(NULL, "c", pl); break;
    case 1: st = srp_conv2d_params(w->conv, "c", NULL); break;
    case 2: st = srp_conv2d_state_refs(NULL, "c", tl); break;
    default: st = srp_conv2d_state_refs(w->conv, "c", NULL); break;
    }
    srp_param_list_destroy(pl);
    srp_tensor_list_destroy(tl);
    return st;
}

/* Calls that set a value and must refuse it, in the world. */
static srp_status set_sigma(world *w, float s) { return srp_linear_set_sigma(w->lin, s); }

static srp_status set_pi_state(world *w, int which)
{
    float u[PC], v[PR];
    memcpy(u, srp_power_iter_u(w->pi), sizeof u);
    memcpy(v, srp_power_iter_v(w->pi), sizeof v);
    float sigma = 1.0f;
    if (which == 0)
        u[1] = NAN;
    else if (which == 1)
        v[0] = INFINITY;
    else
        sigma = NAN;
    return srp_power_iter_set_state(w->pi, u, v, sigma);
}

/* The non-finite cases: a bad value goes into one of the world's inputs
 * or parameters (a weight, gamma, a bias, a gradient), the call runs, the
 * value is put back. */
static srp_status with_bad_value(world *w, float *where, float value, srp_status (*call)(world *))
{
    const float saved = *where;
    *where = value;
    const srp_status st = call(w);
    *where = saved;
    return st;
}

static srp_status lin_fwd_train(world *w)
{
    return srp_linear_forward(w->lin, w->x, N, w->out.y, SRP_TRAIN);
}
static srp_status lin_fwd_eval(world *w)
{
    return srp_linear_forward(w->lin, w->x, N, w->out.y, SRP_EVAL);
}
static srp_status lin_bwd(world *w)
{
    return srp_linear_backward(w->lin, w->x, w->dy, N, w->out.dx);
}
static srp_status att_fwd_train(world *w)
{
    return srp_attention_forward(w->att, w->ax, B, T, w->out.ay, SRP_TRAIN);
}
static srp_status att_bwd(world *w) { return srp_attention_backward(w->att, w->ady, w->out.adx); }
static srp_status att_fwd_masked(world *w)
{
    return srp_attention_forward_masked(w->att, w->ax, B, T, w->slen, w->out.ay, SRP_TRAIN);
}
static srp_status xatt_fwd(world *w)
{
    return srp_attention_forward_cross(w->xatt, w->ax, B, T, w->mx, TK, w->klen, w->out.xy,
                                       SRP_TRAIN);
}
static srp_status xatt_bwd(world *w)
{
    return srp_attention_backward_cross(w->xatt, w->ady, w->out.xdx, w->out.xdm);
}
static srp_status emb_bwd(world *w) { return srp_embedding_backward(w->emb, w->tok, w->edx, NT); }
static srp_status emb_fwd(world *w) { return srp_embedding_forward(w->emb, w->tok, NT, w->out.ex); }
static srp_status emb_logits(world *w)
{
    return srp_embedding_logits(w->emb, w->out.ex, NT, w->out.elogits);
}
static srp_status conv_fwd_train(world *w)
{
    return srp_conv2d_forward(w->conv, w->cx, CB, CH, CW, w->out.cy, SRP_TRAIN);
}
static srp_status conv_fwd_eval(world *w)
{
    return srp_conv2d_forward(w->conv, w->cx, CB, CH, CW, w->out.cy, SRP_EVAL);
}
static srp_status conv_bwd(world *w)
{
    return srp_conv2d_backward(w->conv, w->cx, w->cdy, w->out.cdx);
}
static float *conv_w(world *w) { return srp_conv2d_weight(w->conv); }
static srp_status opt_step(world *w) { return srp_optim_step(w->opt, 0.05f); }
static srp_status clip(world *w) { return srp_optim_clip_grad_norm(w->opt, 1.0f, NULL); }
static srp_status pi_step(world *w) { return srp_power_iter_step(w->pi, w->pw, 2, NULL); }
static srp_status pi_init(world *w) { return srp_power_iter_init_svd(w->pi, w->pw); }
static srp_status exact(world *w) { return srp_spectral_norm_exact(w->pw, PR, PC, &w->out.scalar); }
static srp_status ce_fwd(world *w)
{
    return srp_cross_entropy_forward(w->logits, w->labels, ROWS, CLASSES, 0.1f, &w->out.scalar);
}
static srp_status ce_bwd(world *w)
{
    return srp_cross_entropy_backward(w->logits, w->labels, ROWS, CLASSES, 0.1f, w->out.nn);
}
static srp_status reinit(world *w) { return srp_linear_reinit_sigma(w->lin); }

static srp_status ln_fwd(world *w)
{
    return srp_layernorm_layer_forward(w->ln, w->lnx, LNR, w->out.lny, SRP_TRAIN);
}
static srp_status ln_bwd(world *w)
{
    return srp_layernorm_layer_backward(w->ln, w->lnx, w->lndy, LNR, w->out.lndx);
}
static srp_status ln_bwd_add(world *w)
{
    return srp_layernorm_layer_backward_add(w->ln, w->lnx, w->lndy, LNR, w->out.lndx);
}
static srp_status blk_fwd(world *w)
{
    return srp_block_forward(w->blk, w->ax, B, T, w->out.by, SRP_TRAIN);
}
static srp_status blk_bwd(world *w) { return srp_block_backward(w->blk, w->ady, w->out.bdx); }
static float *blk_fc2_w(world *w)
{
    return srp_linear_weight(srp_block_linear(w->blk, srp_block_linear_count(w->blk) - 1, NULL));
}
static float *blk_ln2_w(world *w) { return srp_layernorm_weight(srp_block_norm(w->blk, 1, NULL)); }

/* Finite parameters whose product overflows in the block's MLP, after its
 * attention has run. */
static srp_status overflowing_block_forward(world *w)
{
    const size_t n = srp_block_linear_count(w->blk);
    float *g1 = srp_linear_gamma(srp_block_linear(w->blk, n - 2, NULL));
    float *g2 = srp_linear_gamma(srp_block_linear(w->blk, n - 1, NULL));
    const float s1 = *g1, s2 = *g2;
    *g1 = *g2 = 1e30f;
    const srp_status st = blk_fwd(w);
    *g1 = s1;
    *g2 = s2;
    return st;
}

static srp_status att_decode(world *w)
{
    return srp_attention_decode(w->catt, w->acache, w->ax, B, w->out.dec_ay);
}
static srp_status blk_decode(world *w)
{
    return srp_block_decode(w->cblk, w->bcache, w->ax, B, w->out.dec_by);
}
static float *catt_gamma(world *w) { return srp_linear_gamma(srp_attention_proj(w->catt)); }
static float *cblk_fc1_gamma(world *w)
{
    return srp_linear_gamma(srp_block_linear(w->cblk, srp_block_linear_count(w->cblk) - 2, NULL));
}

/* NULLs, sizes of 0 or past SIZE_MAX at create; a cache of another module. */
static srp_status bad_cache_call(world *w, int which)
{
    srp_attention_cache *ac = NULL;
    srp_block_cache *bc = NULL;
    switch (which) {
    case 0: return srp_attention_cache_create(NULL, w->catt, B, 2);
    case 1: return srp_attention_cache_create(&ac, NULL, B, 2);
    case 2: return srp_attention_cache_create(&ac, w->catt, 0, 2);
    case 3: return srp_attention_cache_create(&ac, w->catt, B, 0);
    case 4: return srp_attention_cache_create(&ac, w->catt, SIZE_MAX / 2, SIZE_MAX / 2);
    case 5: return srp_block_cache_create(NULL, w->cblk, B, 2);
    case 6: return srp_block_cache_create(&bc, NULL, B, 2);
    case 7: return srp_block_cache_create(&bc, w->cblk, B, 0);
    case 8: return srp_block_cache_create(&bc, w->cblk, SIZE_MAX / 4, 2);
    case 9: return srp_attention_decode(w->att, w->acache, w->ax, B, w->out.dec_ay);
    default: return srp_block_decode(w->blk, w->bcache, w->ax, B, w->out.dec_by);
    }
}

/* Against the memory: the cross-attention's and the decoder block's next
 * position, and setting the memory again. */
static srp_status xatt_decode(world *w)
{
    return srp_attention_decode(w->xatt, w->xcache, w->ax, B, w->out.dec_xy);
}
static srp_status dblk_decode(world *w)
{
    return srp_block_decode(w->dblk, w->dcache, w->ax, B, w->out.dec_dy);
}
static srp_status xcache_set(world *w)
{
    return srp_attention_cache_set_memory(w->xcache, w->mx, B, TK, w->klen);
}
static srp_status dcache_set(world *w)
{
    return srp_block_cache_set_memory(w->dcache, w->mx, B, TK, w->klen);
}
static float *xatt_kv_gamma(world *w)
{
    return srp_linear_gamma(srp_attention_in_proj(w->xatt, 1, NULL));
}
static float *dblk_cross_q_gamma(world *w)
{
    return srp_linear_gamma(srp_attention_in_proj(srp_block_cross_attention(w->dblk), 0, NULL));
}

/* Selecting rows of caches that hold no sequences yet: a causal
 * attention's and a causal block's before their first position. */
static srp_status select_before_decoding(world *w, int which)
{
    srp_attention_cache *ac = NULL;
    srp_block_cache *bc = NULL;
    assert_ok(srp_attention_cache_create(&ac, w->catt, B, 2));
    assert_ok(srp_block_cache_create(&bc, w->cblk, B, 2));
    const srp_status st = which == 0 ? srp_attention_cache_select(ac, w->rows_ok, B)
                                     : srp_block_cache_select(bc, w->rows_ok, B);
    srp_attention_cache_destroy(ac);
    srp_block_cache_destroy(bc);
    return st;
}

/* The world's attention and block are not causal: no cache for them. */
static srp_status cache_of_full_attention(world *w, int which)
{
    srp_attention_cache *ac = NULL;
    srp_block_cache *bc = NULL;
    return which == 0 ? srp_attention_cache_create(&ac, w->att, B, 2)
                      : srp_block_cache_create(&bc, w->blk, B, 2);
}

/* The first position of fresh caches, which takes the eval scales: a bad
 * gamma shows there (later positions keep position 0's). */
static srp_status decode_from_start(world *w)
{
    srp_attention_cache *ac = NULL;
    srp_block_cache *bc = NULL;
    assert_ok(srp_attention_cache_create(&ac, w->catt, B, 1));
    assert_ok(srp_block_cache_create(&bc, w->cblk, B, 1));
    srp_status st = srp_attention_decode(w->catt, ac, w->ax, B, w->out.dec_ay);
    if (st == SRP_OK)
        st = srp_block_decode(w->cblk, bc, w->ax, B, w->out.dec_by);
    srp_attention_cache_destroy(ac);
    srp_block_cache_destroy(bc);
    return st;
}

static float *lin_w(world *w) { return srp_linear_weight(w->lin); }
static float *qkv_w(world *w) { return srp_linear_weight(srp_attention_qkv(w->att)); }
static float *att_gamma(world *w) { return srp_linear_gamma(srp_attention_proj(w->att)); }

/* W = 0 makes sigma 0: the reparametrized forward refuses it (gamma / 0). */
static srp_status zero_weight_forward(world *w)
{
    float *wt = srp_linear_weight(w->lin), saved[IN * OUT];
    memcpy(saved, wt, sizeof saved);
    memset(wt, 0, sizeof saved);
    const srp_status st = lin_fwd_train(w);
    memcpy(wt, saved, sizeof saved);
    return st;
}

/* Finite inputs and parameters whose product overflows float. */
static srp_status overflowing_linear_forward(world *w)
{
    float saved[N * IN];
    memcpy(saved, w->x, sizeof saved);
    for (size_t i = 0; i < N * IN; i++)
        w->x[i] *= 1e36f;
    float *gamma = srp_linear_gamma(w->lin);
    const float saved_gamma = *gamma;
    *gamma *= 1e4f;
    const srp_status st = lin_fwd_eval(w);
    *gamma = saved_gamma;
    memcpy(w->x, saved, sizeof saved);
    return st;
}

static srp_status overflowing_attention_forward(world *w)
{
    float saved[B * T * D];
    memcpy(saved, w->ax, sizeof saved);
    for (size_t i = 0; i < B * T * D; i++)
        w->ax[i] *= 1e30f;
    const srp_status st = att_fwd_train(w);
    memcpy(w->ax, saved, sizeof saved);
    return st;
}

static srp_status create_collapse(int which)
{
    srp_collapse_config c = srp_collapse_config_default(2, H);
    switch (which) {
    case 0: c.layers = 0; break;
    case 1: c.heads = 0; break;
    case 2: c.window = 0; break;
    case 3: c.window = SIZE_MAX / 4; break; /* window * heads overflows */
    case 4: c.fraction = NAN; break;
    case 5: c.fraction = 1.5f; break;
    case 6: c.drop = -0.5f; break;
    case 7: c.uniform = 0.0f; break;
    case 8: c.uniform = INFINITY; break;
    }
    srp_collapse *x = NULL;
    const srp_status st = srp_collapse_create(&x, which < 0 ? NULL : &c);
    assert_null(x);
    return st;
}

static srp_status watch_update(world *w)
{
    return srp_collapse_update(w->watch, 9, w->heads, w->out.events, 2 * H, &w->out.count);
}

/* Entropies 0: every head warns, and no events array has room. */
static srp_status watch_update_no_room(world *w)
{
    const float zeros[H] = {0};
    return srp_collapse_update(w->watch, 9, zeros, w->out.events, 1, &w->out.count);
}

/* A loaded state that cannot be: the ring's fill above the window. */
static srp_status watch_update_corrupt(world *w)
{
    uint64_t *filled = srp_tensor_list_refs(w->avg_watch_state)[3].data; /* watch.filled */
    const uint64_t saved = *filled;
    *filled = 1000;
    const srp_status st = watch_update(w);
    *filled = saved;
    return st;
}

static srp_status create_average(world *w, int which)
{
    srp_linear *linears[2] = {w->lin, NULL};
    srp_weight_average_config c = srp_weight_average_config_default();
    srp_param_list *list = w->params, *empty = NULL;
    assert_ok(srp_param_list_create(&empty));
    size_t n = 1;
    switch (which) {
    case 0: list = NULL; break;
    case 1: list = empty; break;
    case 2: n = 2; break; /* a NULL linear */
    case 3: c.decay = NAN; break;
    case 4: c.decay = 1.0f; break;
    case 5: c.decay = -0.5f; break;
    }
    srp_weight_average *a = NULL;
    const srp_status st = srp_weight_average_create(&a, list, linears, n, which < 0 ? NULL : &c);
    assert_null(a);
    srp_param_list_destroy(empty);
    return st;
}

static srp_status avg_update(world *w) { return srp_weight_average_update(w->avg); }

/* A call between a swap in and a swap out. */
static srp_status while_swapped(world *w, srp_status (*call)(srp_weight_average *))
{
    assert_ok(srp_weight_average_swap_in(w->avg));
    const srp_status st = call(w->avg);
    assert_ok(srp_weight_average_swap_out(w->avg));
    return st;
}

/* A swap in of averages with value at [i] (a corrupt load; 0s in the
 * linear's weight, the list's first entry: sigma 0). */
static srp_status swap_in_with(world *w, size_t i, size_t n, float value)
{
    float *avg = srp_tensor_list_refs(w->avg_watch_state)[0].data, saved[IN * OUT];
    memcpy(saved, avg + i, n * sizeof(float));
    for (size_t k = 0; k < n; k++)
        avg[i + k] = value;
    const srp_status st = srp_weight_average_swap_in(w->avg);
    memcpy(avg + i, saved, n * sizeof(float));
    return st;
}

/* Finite inputs and parameters whose convolution overflows float. */
static srp_status overflowing_conv_forward(world *w)
{
    float saved[CB * CC * CH * CW];
    memcpy(saved, w->cx, sizeof saved);
    for (size_t i = 0; i < CB * CC * CH * CW; i++)
        w->cx[i] *= 1e36f;
    float *gamma = srp_conv2d_gamma(w->conv);
    const float saved_gamma = *gamma;
    *gamma *= 1e4f;
    const srp_status st = conv_fwd_train(w);
    *gamma = saved_gamma;
    memcpy(w->cx, saved, sizeof saved);
    return st;
}

/* srp_dist's bad calls, one process: on a handle over the world's
 * parameters and two of its linears, or its create with a bad list. */
static srp_status bad_dist_call(world *w, int which)
{
    srp_param *params = srp_param_list_entries(w->params);
    srp_param broken[16]; /* a copy to spoil */
    const size_t np = srp_param_list_count(w->params);
    srp_linear *linears[2] = {w->lin, srp_attention_proj(w->att)};
    assert_true(np <= 16);
    memcpy(broken, params, sizeof(*params) * np);
    double v[2] = {1.0, 2.0};
    float f[2] = {1.0f, 2.0f};
    int same = 0;
    srp_dist *d = NULL;
    srp_status st = SRP_OK;
    switch (which) {
    case 0: return srp_dist_create_single(NULL, params, np, linears, 2);
    case 1: st = srp_dist_create_single(&d, NULL, np, linears, 2); break;
    case 2: broken[1].grad = NULL; break;
    case 3: broken[2].size = 0; break;
    case 4: broken[0].data = NULL; break;
    case 5: linears[1] = NULL; break;
    case 6: st = srp_dist_create_single(&d, params, np, NULL, 2); break;
    }
    if (which >= 2 && which <= 5)
        st = srp_dist_create_single(&d, broken, np, linears, 2);
    if (which <= 6) {
        assert_null(d);
        return st;
    }
    assert_ok(srp_dist_create_single(&d, params, np, linears, 2));
    switch (which) {
    case 7: st = srp_dist_average_gradients(NULL, SRP_OK); break;
    case 8: st = srp_dist_sync_spectral(NULL); break;
    case 9: st = srp_dist_replicas_identical(d, NULL); break;
    case 10: st = srp_dist_same_bytes(d, NULL, 2, &same); break;
    case 11: st = srp_dist_same_bytes(d, v, sizeof v, NULL); break;
    case 12: st = srp_dist_sum(d, NULL, 2); break;
    case 13: st = srp_dist_sum(d, v, 0); break;
    case 14: st = srp_dist_mean(d, f, 0); break;
    case 15: st = srp_dist_min(NULL, f, 2); break;
    case 16: st = srp_dist_max(d, f, (size_t)INT_MAX + 1); break;
    case 17: st = srp_dist_broadcast(d, NULL, 1); break;
    case 18: st = srp_dist_agree(NULL, SRP_OK); break;
    case 19: st = srp_dist_sum_agree(d, v, 0, SRP_OK); break;
    case 20: st = srp_dist_sum_agree(NULL, v, 2, SRP_ERR_NUMERIC); break;
    }
    srp_dist_destroy(d);
    return st;
}

/* clang-format off */
#define CONTRACT(X, LOSES, EACH)                                                                          \
    /* linear */                                                                                   \
    X(SRP_ERR_INVALID_ARG, srp_linear_create(NULL, &(srp_linear_config){IN, OUT, 1, 0, 0, .02f, 1, 0})) \
    EACH(SRP_ERR_INVALID_ARG, 9, create_linear(which - 1))                                         \
    X(SRP_ERR_INVALID_ARG, srp_linear_forward(NULL, w->x, N, w->out.y, SRP_TRAIN))                 \
    X(SRP_ERR_INVALID_ARG, srp_linear_forward(w->lin, NULL, N, w->out.y, SRP_TRAIN))               \
    X(SRP_ERR_INVALID_ARG, srp_linear_forward(w->lin, w->x, N, NULL, SRP_TRAIN))                   \
    X(SRP_ERR_INVALID_ARG, srp_linear_forward(w->lin, w->x, 0, w->out.y, SRP_TRAIN))               \
    X(SRP_ERR_INVALID_ARG, srp_linear_forward(w->lin, w->x, SIZE_MAX / 8, w->out.y, SRP_TRAIN))    \
    X(SRP_ERR_INVALID_ARG, srp_linear_backward(NULL, w->x, w->dy, N, w->out.dx))                   \
    X(SRP_ERR_INVALID_ARG, srp_linear_backward(w->lin, NULL, w->dy, N, w->out.dx))                 \
    X(SRP_ERR_INVALID_ARG, srp_linear_backward(w->lin, w->x, NULL, N, w->out.dx))                  \
    X(SRP_ERR_INVALID_ARG, srp_linear_backward(w->lin, w->x, w->dy, 0, w->out.dx))                 \
    X(SRP_ERR_INVALID_ARG, srp_linear_backward(w->lin, w->x, w->dy, SIZE_MAX / 8, w->out.dx))      \
    X(SRP_ERR_INVALID_ARG, srp_linear_forward_weight(NULL, SRP_TRAIN, w->out.w_hat))               \
    X(SRP_ERR_INVALID_ARG, srp_linear_forward_weight(w->lin, SRP_TRAIN, NULL))                     \
    X(SRP_ERR_INVALID_ARG, srp_linear_folded_weight(NULL, w->out.w_hat))                           \
    X(SRP_ERR_INVALID_ARG, srp_linear_folded_weight(w->lin, NULL))                                 \
    X(SRP_ERR_INVALID_ARG, srp_linear_backward_weight(NULL, w->dw, w->dy))                         \
    X(SRP_ERR_INVALID_ARG, srp_linear_backward_weight(w->lin, NULL, w->dy))                        \
    X(SRP_ERR_INVALID_ARG, srp_linear_backward_weight(w->lin, w->dw, NULL))                        \
    X(SRP_ERR_INVALID_ARG, srp_linear_reinit_sigma(NULL))                                          \
    X(SRP_ERR_INVALID_ARG, srp_linear_set_sigma(NULL, 1.0f))                                       \
    X(SRP_ERR_NUMERIC, set_sigma(w, NAN))                                                          \
    X(SRP_ERR_NUMERIC, set_sigma(w, INFINITY))                                                     \
    X(SRP_ERR_INVALID_ARG, set_sigma(w, -1.0f))                                                    \
    /* attention */                                                                                \
    X(SRP_ERR_INVALID_ARG, srp_attention_create(NULL, &(srp_attention_config){0}, B, T))          \
    EACH(SRP_ERR_INVALID_ARG, 10, create_attention(which - 1))                                     \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward(NULL, w->ax, B, T, w->out.ay, SRP_TRAIN))         \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward(w->att, NULL, B, T, w->out.ay, SRP_TRAIN))        \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward(w->att, w->ax, B, T, NULL, SRP_TRAIN))            \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward(w->att, w->ax, 0, T, w->out.ay, SRP_TRAIN))       \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward(w->att, w->ax, B, 0, w->out.ay, SRP_TRAIN))       \
    X(SRP_ERR_SHAPE, srp_attention_forward(w->att, w->ax, B + 1, T, w->out.ay, SRP_TRAIN))         \
    X(SRP_ERR_SHAPE, srp_attention_forward(w->att, w->ax, B, T + 1, w->out.ay, SRP_TRAIN))         \
    X(SRP_ERR_SHAPE, srp_attention_forward(w->att, w->ax, SIZE_MAX, SIZE_MAX, w->out.ay, 1))       \
    X(SRP_ERR_INVALID_ARG, srp_attention_backward(NULL, w->ady, w->out.adx))                       \
    X(SRP_ERR_INVALID_ARG, srp_attention_backward(w->att, NULL, w->out.adx))                       \
    X(SRP_ERR_INVALID_ARG, srp_attention_entropy(NULL, w->out.heads, w->out.heads2))               \
    X(SRP_ERR_INVALID_ARG, srp_attention_entropy_normalized(NULL, w->out.heads, NULL))             \
    X(SRP_ERR_INVALID_ARG, srp_attention_entropy_bound(NULL, w->out.heads))                        \
    X(SRP_ERR_INVALID_ARG, srp_attention_entropy_bound(w->att, NULL))                              \
    X(SRP_ERR_INVALID_ARG, srp_attention_params(NULL, "attn", w->scratch_params))                  \
    X(SRP_ERR_INVALID_ARG, srp_attention_params(w->att, "attn", NULL))                             \
    X(SRP_ERR_INVALID_ARG, srp_attention_state_refs(NULL, "attn", w->scratch_refs))                \
    X(SRP_ERR_INVALID_ARG, srp_attention_state_refs(w->att, "attn", NULL))                         \
    X(SRP_ERR_INVALID_ARG, srp_attention_entropy_bound_terms(NULL, w->out.heads, w->out.heads2, NULL, &w->out.scalar)) \
    /* padding masks and cross-attention */                                                        \
    EACH(SRP_ERR_INVALID_ARG, 3, create_cross_attention(which))                                    \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_masked(NULL, w->ax, B, T, w->slen, w->out.ay, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_masked(w->att, NULL, B, T, w->slen, w->out.ay, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_masked(w->att, w->ax, B, T, w->slen, NULL, 1))    \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_masked(w->att, w->ax, 0, T, w->slen, w->out.ay, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_masked(w->att, w->ax, B, 0, w->slen, w->out.ay, 1)) \
    X(SRP_ERR_SHAPE, srp_attention_forward_masked(w->att, w->ax, B + 1, T, w->slen, w->out.ay, 1)) \
    X(SRP_ERR_SHAPE, srp_attention_forward_masked(w->att, w->ax, B, T + 1, w->slen, w->out.ay, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_masked(w->att, w->ax, B, T, (size_t[]){T, 0}, w->out.ay, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_masked(w->att, w->ax, B, T, (size_t[]){T + 1, 1}, w->out.ay, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_masked(w->att, w->ax, B, 2, (size_t[]){1, 3}, w->out.ay, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_masked(w->att, w->ax, B, T, (size_t[]){SIZE_MAX, 1}, w->out.ay, 1)) \
    X(SRP_ERR_UNSUPPORTED, srp_attention_forward_masked(w->xatt, w->ax, B, T, NULL, w->out.xy, 1)) \
    X(SRP_ERR_UNSUPPORTED, srp_attention_forward(w->xatt, w->ax, B, T, w->out.xy, SRP_TRAIN))      \
    X(SRP_ERR_UNSUPPORTED, srp_attention_backward(w->xatt, w->ady, w->out.xdx))                    \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_cross(NULL, w->ax, B, T, w->mx, TK, w->klen, w->out.xy, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_cross(w->xatt, NULL, B, T, w->mx, TK, w->klen, w->out.xy, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_cross(w->xatt, w->ax, B, T, NULL, TK, w->klen, w->out.xy, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_cross(w->xatt, w->ax, B, T, w->mx, TK, w->klen, NULL, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_cross(w->xatt, w->ax, 0, T, w->mx, TK, w->klen, w->out.xy, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_cross(w->xatt, w->ax, B, 0, w->mx, TK, w->klen, w->out.xy, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_cross(w->xatt, w->ax, B, T, w->mx, 0, w->klen, w->out.xy, 1)) \
    X(SRP_ERR_SHAPE, srp_attention_forward_cross(w->xatt, w->ax, B + 1, T, w->mx, TK, NULL, w->out.xy, 1)) \
    X(SRP_ERR_SHAPE, srp_attention_forward_cross(w->xatt, w->ax, B, T + 1, w->mx, TK, NULL, w->out.xy, 1)) \
    X(SRP_ERR_SHAPE, srp_attention_forward_cross(w->xatt, w->ax, B, T, w->mx, TK + 1, NULL, w->out.xy, 1)) \
    X(SRP_ERR_SHAPE, srp_attention_forward_cross(w->xatt, w->ax, SIZE_MAX, SIZE_MAX, w->mx, SIZE_MAX, NULL, w->out.xy, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_cross(w->xatt, w->ax, B, T, w->mx, TK, (size_t[]){0, 1}, w->out.xy, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_cross(w->xatt, w->ax, B, T, w->mx, TK, (size_t[]){1, TK + 1}, w->out.xy, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_attention_forward_cross(w->xatt, w->ax, B, T, w->mx, 2, w->klen, w->out.xy, 1)) \
    X(SRP_ERR_UNSUPPORTED, srp_attention_forward_cross(w->att, w->ax, B, T, w->mx, TK, NULL, w->out.ay, 1)) \
    X(SRP_ERR_UNSUPPORTED, srp_attention_backward_cross(w->att, w->ady, w->out.adx, NULL))         \
    X(SRP_ERR_INVALID_ARG, srp_attention_backward_cross(NULL, w->ady, w->out.xdx, w->out.xdm))     \
    X(SRP_ERR_INVALID_ARG, srp_attention_backward_cross(w->xatt, NULL, w->out.xdx, w->out.xdm))    \
    /* embedding */                                                                                \
    X(SRP_ERR_INVALID_ARG, srp_embedding_create(NULL, V, E, 0.5f, 1))                              \
    X(SRP_ERR_INVALID_ARG, create_embedding(0, E, 0.5f))                                           \
    X(SRP_ERR_INVALID_ARG, create_embedding(V, 0, 0.5f))                                           \
    X(SRP_ERR_INVALID_ARG, create_embedding(SIZE_MAX / 4, 8, 0.5f))                                \
    X(SRP_ERR_INVALID_ARG, create_embedding(V, E, NAN))                                            \
    X(SRP_ERR_INVALID_ARG, create_embedding(V, E, 0.0f))                                           \
    X(SRP_ERR_INVALID_ARG, srp_embedding_forward(NULL, w->tok, NT, w->out.ex))                     \
    X(SRP_ERR_INVALID_ARG, srp_embedding_forward(w->emb, NULL, NT, w->out.ex))                     \
    X(SRP_ERR_INVALID_ARG, srp_embedding_forward(w->emb, w->tok, NT, NULL))                        \
    X(SRP_ERR_INVALID_ARG, srp_embedding_forward(w->emb, w->tok, 0, w->out.ex))                    \
    X(SRP_ERR_INVALID_ARG, srp_embedding_forward(w->emb, (uint32_t[]){1, V}, 2, w->out.ex))        \
    X(SRP_ERR_INVALID_ARG, srp_embedding_backward(NULL, w->tok, w->edx, NT))                       \
    X(SRP_ERR_INVALID_ARG, srp_embedding_backward(w->emb, NULL, w->edx, NT))                       \
    X(SRP_ERR_INVALID_ARG, srp_embedding_backward(w->emb, w->tok, NULL, NT))                       \
    X(SRP_ERR_INVALID_ARG, srp_embedding_backward(w->emb, w->tok, w->edx, 0))                      \
    X(SRP_ERR_INVALID_ARG, srp_embedding_backward(w->emb, (uint32_t[]){V + 3}, w->edx, 1))         \
    X(SRP_ERR_INVALID_ARG, srp_embedding_logits(NULL, w->out.ex, NT, w->out.elogits))              \
    X(SRP_ERR_INVALID_ARG, srp_embedding_logits(w->emb, NULL, NT, w->out.elogits))                 \
    X(SRP_ERR_INVALID_ARG, srp_embedding_logits(w->emb, w->out.ex, NT, NULL))                      \
    X(SRP_ERR_INVALID_ARG, srp_embedding_logits(w->emb, w->out.ex, 0, w->out.elogits))             \
    X(SRP_ERR_INVALID_ARG, srp_embedding_logits(w->emb, w->out.ex, SIZE_MAX / 2, w->out.elogits))  \
    X(SRP_ERR_INVALID_ARG, srp_embedding_logits_backward(NULL, w->out.ex, w->out.elogits, NT, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_embedding_logits_backward(w->emb, NULL, w->out.elogits, NT, NULL))  \
    X(SRP_ERR_INVALID_ARG, srp_embedding_logits_backward(w->emb, w->out.ex, NULL, NT, NULL))       \
    X(SRP_ERR_INVALID_ARG, srp_embedding_logits_backward(w->emb, w->out.ex, w->out.elogits, 0, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_embedding_params(NULL, "wte", w->scratch_params))                   \
    X(SRP_ERR_INVALID_ARG, srp_embedding_params(w->emb, "wte", NULL))                              \
    X(SRP_ERR_INVALID_ARG, srp_embedding_state_refs(NULL, "wte", w->scratch_refs))                 \
    X(SRP_ERR_INVALID_ARG, srp_embedding_state_refs(w->emb, "wte", NULL))                          \
    /* the collapse watch */                                                                       \
    X(SRP_ERR_INVALID_ARG, srp_collapse_create(NULL, &(srp_collapse_config){1, 1, 1, 0.1f, 0.8f, 1.0f})) \
    EACH(SRP_ERR_INVALID_ARG, 10, create_collapse(which - 1))                                      \
    X(SRP_ERR_INVALID_ARG, srp_collapse_update(NULL, 9, w->heads, w->out.events, 2 * H, &w->out.count)) \
    X(SRP_ERR_INVALID_ARG, srp_collapse_update(w->watch, 9, NULL, w->out.events, 2 * H, &w->out.count)) \
    X(SRP_ERR_INVALID_ARG, srp_collapse_update(w->watch, 9, w->heads, NULL, 2 * H, &w->out.count)) \
    X(SRP_ERR_INVALID_ARG, srp_collapse_update(w->watch, 9, w->heads, w->out.events, 2 * H, NULL)) \
    X(SRP_ERR_SHAPE, watch_update_no_room(w))                                                      \
    X(SRP_ERR_FORMAT, watch_update_corrupt(w))                                                     \
    X(SRP_ERR_INVALID_ARG, srp_collapse_state_refs(NULL, "watch2", w->scratch_refs))               \
    X(SRP_ERR_INVALID_ARG, srp_collapse_state_refs(w->watch, "watch2", NULL))                      \
    /* the weight average */                                                                       \
    X(SRP_ERR_INVALID_ARG, srp_weight_average_create(NULL, w->params, NULL, 0, &(srp_weight_average_config){0.9f})) \
    EACH(SRP_ERR_INVALID_ARG, 7, create_average(w, which - 1))                                     \
    X(SRP_ERR_INVALID_ARG, srp_weight_average_update(NULL))                                        \
    X(SRP_ERR_ORDER, while_swapped(w, srp_weight_average_update))                                  \
    X(SRP_ERR_ORDER, while_swapped(w, srp_weight_average_swap_in))                                 \
    X(SRP_ERR_INVALID_ARG, srp_weight_average_swap_in(NULL))                                       \
    X(SRP_ERR_NUMERIC, swap_in_with(w, 3, 1, NAN))                                                 \
    X(SRP_ERR_NUMERIC, swap_in_with(w, 0, IN * OUT, 0.0f))                                         \
    X(SRP_ERR_INVALID_ARG, srp_weight_average_swap_out(NULL))                                      \
    X(SRP_ERR_INVALID_ARG, srp_weight_average_state_refs(NULL, "avg2", w->scratch_refs))           \
    X(SRP_ERR_INVALID_ARG, srp_weight_average_state_refs(w->avg, "avg2", NULL))                    \
    /* convolution */                                                                              \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_create(NULL, &(srp_conv2d_config){0}, CB, CH, CW))          \
    EACH(SRP_ERR_INVALID_ARG, 14, create_conv(which - 1))                                          \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_forward(NULL, w->cx, CB, CH, CW, w->out.cy, SRP_TRAIN))      \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_forward(w->conv, NULL, CB, CH, CW, w->out.cy, SRP_TRAIN))    \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_forward(w->conv, w->cx, CB, CH, CW, NULL, SRP_TRAIN))        \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_forward(w->conv, w->cx, 0, CH, CW, w->out.cy, SRP_TRAIN))    \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_forward(w->conv, w->cx, CB, 0, CW, w->out.cy, SRP_TRAIN))    \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_forward(w->conv, w->cx, CB, CH, 0, w->out.cy, SRP_TRAIN))    \
    X(SRP_ERR_SHAPE, srp_conv2d_forward(w->conv, w->cx, CB + 1, CH, CW, w->out.cy, SRP_TRAIN))     \
    X(SRP_ERR_SHAPE, srp_conv2d_forward(w->conv, w->cx, CB, CH + 1, CW, w->out.cy, SRP_EVAL))      \
    X(SRP_ERR_SHAPE, srp_conv2d_forward(w->conv, w->cx, CB, CH, CW + 1, w->out.cy, SRP_TRAIN))     \
    X(SRP_ERR_SHAPE, srp_conv2d_forward(w->conv, w->cx, SIZE_MAX, SIZE_MAX, SIZE_MAX, w->out.cy, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_forward(w->conv, w->cx, CB, KS - 1, CW, w->out.cy, SRP_TRAIN)) \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_forward(w->conv, w->cx, 1, CH, KS - 1, w->out.cy, SRP_EVAL)) \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_backward(NULL, w->cx, w->cdy, w->out.cdx))                   \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_backward(w->conv, NULL, w->cdy, w->out.cdx))                 \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_backward(w->conv, w->cx, NULL, w->out.cdx))                  \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_output_size(NULL, CH, CW, &w->out.oh, &w->out.ow))           \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_output_size(w->conv, CH, CW, NULL, &w->out.ow))              \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_output_size(w->conv, CH, CW, &w->out.oh, NULL))              \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_output_size(w->conv, 0, CW, &w->out.oh, &w->out.ow))         \
    X(SRP_ERR_INVALID_ARG, srp_conv2d_output_size(w->conv, CH, KS - 1, &w->out.oh, &w->out.ow))    \
    EACH(SRP_ERR_INVALID_ARG, 4, conv_params(w, which))                                            \
    /* spectral */                                                                                 \
    X(SRP_ERR_INVALID_ARG, srp_spectral_norm_exact(NULL, PR, PC, &w->out.scalar))                  \
    X(SRP_ERR_INVALID_ARG, srp_spectral_norm_exact(w->pw, PR, PC, NULL))                           \
    X(SRP_ERR_INVALID_ARG, srp_spectral_norm_exact(w->pw, 0, PC, &w->out.scalar))                  \
    X(SRP_ERR_INVALID_ARG, srp_spectral_norm_exact(w->pw, PR, 0, &w->out.scalar))                  \
    X(SRP_ERR_INVALID_ARG, srp_spectral_norm_exact(w->pw, SIZE_MAX / 2, 4, &w->out.scalar))        \
    X(SRP_ERR_INVALID_ARG, srp_spectral_norm_exact(w->pw, INT_MAX, INT_MAX, &w->out.scalar))       \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_create(NULL, PR, PC, 1))                                 \
    X(SRP_ERR_INVALID_ARG, create_power_iter(0, PC))                                               \
    X(SRP_ERR_INVALID_ARG, create_power_iter(PR, 0))                                               \
    X(SRP_ERR_INVALID_ARG, create_power_iter(SIZE_MAX / 2, 4))                                     \
    X(SRP_ERR_INVALID_ARG, create_power_iter(INT_MAX, INT_MAX)) /* the SVD's doubles overflow */   \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_init_svd(NULL, w->pw))                                   \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_init_svd(w->pi, NULL))                                   \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_step(NULL, w->pw, 1, NULL))                              \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_step(w->pi, NULL, 1, NULL))                              \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_step(w->pi, w->pw, 0, NULL))                             \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_step(w->pi, w->pw, -3, NULL))                            \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_estimate(NULL, w->pw, &w->out.scalar))                   \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_estimate(w->pi, NULL, &w->out.scalar))                   \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_estimate(w->pi, w->pw, NULL))                            \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_set_state(NULL, w->pw, w->pw, 1.0f))                     \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_set_state(w->pi, NULL, w->pw, 1.0f))                     \
    X(SRP_ERR_INVALID_ARG, srp_power_iter_set_state(w->pi, w->pw, NULL, 1.0f))                     \
    EACH(SRP_ERR_NUMERIC, 3, set_pi_state(w, which))                                               \
    /* optimizers, clipping, schedules */                                                          \
    X(SRP_ERR_INVALID_ARG, srp_optim_create(NULL, &(srp_param){0}, 1, NULL))                       \
    EACH(SRP_ERR_INVALID_ARG, 17, create_optim(which))                                             \
    X(SRP_ERR_UNSUPPORTED, create_optim(17))                                                       \
    EACH(SRP_ERR_INVALID_ARG, 2, create_optim(18 + which))                                         \
    X(SRP_ERR_INVALID_ARG, srp_optim_step(NULL, 0.1f))                                             \
    X(SRP_ERR_INVALID_ARG, srp_optim_step(w->opt, -0.1f))                                          \
    X(SRP_ERR_INVALID_ARG, srp_optim_step(w->opt, NAN))                                            \
    X(SRP_ERR_INVALID_ARG, srp_optim_step(w->opt, INFINITY))                                       \
    X(SRP_ERR_INVALID_ARG, srp_optim_tensor_refs(NULL, NULL, 0))                                   \
    X(SRP_ERR_INVALID_ARG, srp_optim_tensor_refs(w->opt, NULL, 40))                                \
    X(SRP_ERR_INVALID_ARG, srp_optim_state_refs(NULL, w->scratch_refs))                            \
    X(SRP_ERR_INVALID_ARG, srp_optim_state_refs(w->opt, NULL))                                     \
    /* the lists */                                                                                \
    X(SRP_ERR_INVALID_ARG, srp_param_list_create(NULL))                                            \
    X(SRP_ERR_INVALID_ARG, srp_param_list_add(NULL, "p", NULL, w->x, w->dy, 1, SRP_PARAM_WEIGHT))  \
    X(SRP_ERR_INVALID_ARG, srp_param_list_add(w->scratch_params, "p", NULL, NULL, w->dy, 1, SRP_PARAM_WEIGHT)) \
    X(SRP_ERR_INVALID_ARG, srp_param_list_add(w->scratch_params, "p", NULL, w->x, w->dy, 0, SRP_PARAM_WEIGHT)) \
    X(SRP_ERR_INVALID_ARG, srp_param_list_add(w->scratch_params, NULL, NULL, w->x, w->dy, 1, SRP_PARAM_WEIGHT)) \
    X(SRP_ERR_INVALID_ARG, srp_tensor_list_create(NULL))                                           \
    X(SRP_ERR_INVALID_ARG, srp_tensor_list_add(NULL, "t", NULL, SRP_DTYPE_F32, 0, NULL, w->x))     \
    X(SRP_ERR_INVALID_ARG, srp_tensor_list_add(w->scratch_refs, "t", NULL, SRP_DTYPE_F32, 0, NULL, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_tensor_list_add(w->scratch_refs, "t", NULL, SRP_DTYPE_F32, 5, (size_t[5]){1, 1, 1, 1, 1}, w->x)) \
    X(SRP_ERR_INVALID_ARG, srp_tensor_list_add(w->scratch_refs, "t", NULL, (srp_dtype)77, 0, NULL, w->x)) \
    X(SRP_ERR_INVALID_ARG, srp_tensor_list_add_params(w->scratch_refs, NULL))                      \
    X(SRP_ERR_INVALID_ARG, srp_linear_params(NULL, "l", w->scratch_params))                        \
    X(SRP_ERR_INVALID_ARG, srp_linear_params(w->lin, "l", NULL))                                   \
    X(SRP_ERR_INVALID_ARG, srp_linear_state_refs(NULL, "l", w->scratch_refs))                      \
    X(SRP_ERR_INVALID_ARG, srp_linear_state_refs(w->lin, "l", NULL))                               \
    X(SRP_ERR_INVALID_ARG, srp_optim_clip_grad_norm(NULL, 1.0f, NULL))                             \
    X(SRP_ERR_INVALID_ARG, srp_optim_clip_grad_norm(w->opt, 0.0f, NULL))                           \
    X(SRP_ERR_INVALID_ARG, srp_optim_clip_grad_norm(w->opt, -1.0f, NULL))                          \
    X(SRP_ERR_INVALID_ARG, srp_optim_clip_grad_norm(w->opt, NAN, NULL))                            \
    X(SRP_ERR_INVALID_ARG, srp_optim_clip_grad_norm(w->opt, INFINITY, NULL))                       \
    X(SRP_ERR_INVALID_ARG, srp_clip_grad_norm(NULL, 1, 1.0f, NULL))                                \
    X(SRP_ERR_INVALID_ARG, srp_clip_grad_norm(srp_optim_param(w->opt, 0), 0, 1.0f, NULL))          \
    X(SRP_ERR_INVALID_ARG, srp_lr_schedule_check(NULL))                                            \
    EACH(SRP_ERR_INVALID_ARG, 7, schedule_check(which))                                            \
    /* the LayerNorm layer */                                                                      \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_create(NULL, &(srp_layernorm_config){D, 1e-5f}, LNR))   \
    EACH(SRP_ERR_INVALID_ARG, 7, create_layernorm(which - 1))                                      \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_layer_forward(NULL, w->lnx, LNR, w->out.lny, SRP_TRAIN)) \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_layer_forward(w->ln, NULL, LNR, w->out.lny, SRP_TRAIN))  \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_layer_forward(w->ln, w->lnx, LNR, NULL, SRP_TRAIN))      \
    X(SRP_ERR_SHAPE, srp_layernorm_layer_forward(w->ln, w->lnx, 0, w->out.lny, SRP_TRAIN))        \
    X(SRP_ERR_SHAPE, srp_layernorm_layer_forward(w->ln, w->lnx, LNR + 1, w->out.lny, SRP_TRAIN))  \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_layer_backward(NULL, w->lnx, w->lndy, LNR, w->out.lndx)) \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_layer_backward(w->ln, NULL, w->lndy, LNR, w->out.lndx))  \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_layer_backward(w->ln, w->lnx, NULL, LNR, w->out.lndx))   \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_layer_backward(w->ln, w->lnx, w->lndy, LNR, NULL))       \
    X(SRP_ERR_SHAPE, srp_layernorm_layer_backward(w->ln, w->lnx, w->lndy, LNR - 1, w->out.lndx))  \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_layer_backward_add(w->ln, w->lnx, NULL, LNR, w->out.lndx)) \
    X(SRP_ERR_SHAPE, srp_layernorm_layer_backward_add(w->ln, w->lnx, w->lndy, 1, w->out.lndx))    \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_params(NULL, "n", NULL))                                  \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_state_refs(w->ln, "n", NULL))                             \
    /* the transformer block */                                                                    \
    X(SRP_ERR_INVALID_ARG, srp_block_create(NULL, &(srp_block_config){0}, B, T))                   \
    EACH(SRP_ERR_INVALID_ARG, 18, create_block(which - 1))                                         \
    X(SRP_ERR_INVALID_ARG, srp_block_forward(NULL, w->ax, B, T, w->out.by, SRP_TRAIN))             \
    X(SRP_ERR_INVALID_ARG, srp_block_forward(w->blk, NULL, B, T, w->out.by, SRP_TRAIN))            \
    X(SRP_ERR_INVALID_ARG, srp_block_forward(w->blk, w->ax, B, T, NULL, SRP_TRAIN))                \
    X(SRP_ERR_SHAPE, srp_block_forward(w->blk, w->ax, 0, T, w->out.by, SRP_TRAIN))                 \
    X(SRP_ERR_SHAPE, srp_block_forward(w->blk, w->ax, B, 0, w->out.by, SRP_TRAIN))                 \
    X(SRP_ERR_SHAPE, srp_block_forward(w->blk, w->ax, B + 1, T, w->out.by, SRP_TRAIN))             \
    X(SRP_ERR_SHAPE, srp_block_forward(w->blk, w->ax, B, T + 1, w->out.by, SRP_TRAIN))             \
    X(SRP_ERR_SHAPE, srp_block_forward(w->blk, w->ax, SIZE_MAX, SIZE_MAX, w->out.by, SRP_TRAIN))   \
    X(SRP_ERR_INVALID_ARG, srp_block_backward(NULL, w->ady, w->out.bdx))                           \
    X(SRP_ERR_INVALID_ARG, srp_block_backward(w->blk, NULL, w->out.bdx))                           \
    X(SRP_ERR_INVALID_ARG, srp_block_backward(w->blk, w->ady, NULL))                               \
    X(SRP_ERR_INVALID_ARG, srp_block_params(NULL, "b", NULL))                                      \
    X(SRP_ERR_INVALID_ARG, srp_block_state_refs(w->blk, "b", NULL))                                \
    /* padding masks and the decoder block */                                                      \
    X(SRP_ERR_INVALID_ARG, srp_block_forward_masked(NULL, w->ax, B, T, w->slen, w->out.by, SRP_TRAIN)) \
    X(SRP_ERR_INVALID_ARG, srp_block_forward_masked(w->blk, w->ax, B, T, w->zero_len, w->out.by, SRP_TRAIN)) \
    X(SRP_ERR_INVALID_ARG, srp_block_forward_masked(w->blk, w->ax, B, T, w->long_len, w->out.by, SRP_TRAIN)) \
    X(SRP_ERR_SHAPE, srp_block_forward_masked(w->blk, w->ax, B, T + 1, w->slen, w->out.by, SRP_TRAIN)) \
    X(SRP_ERR_UNSUPPORTED, srp_block_forward_masked(w->dblk, w->ax, B, T, NULL, w->out.dby, SRP_TRAIN)) \
    X(SRP_ERR_UNSUPPORTED, srp_block_forward(w->dblk, w->ax, B, T, w->out.dby, SRP_TRAIN))         \
    X(SRP_ERR_UNSUPPORTED, srp_block_backward(w->dblk, w->ady, w->out.dbdx))                       \
    X(SRP_ERR_UNSUPPORTED, srp_block_forward_cross(w->blk, w->ax, B, T, NULL, w->mx, TK, NULL, w->out.by, SRP_TRAIN)) \
    X(SRP_ERR_UNSUPPORTED, srp_block_backward_cross(w->blk, w->ady, w->out.bdx, w->out.dbdm))      \
    X(SRP_ERR_INVALID_ARG, srp_block_forward_cross(NULL, w->ax, B, T, NULL, w->mx, TK, NULL, w->out.dby, SRP_TRAIN)) \
    X(SRP_ERR_INVALID_ARG, srp_block_forward_cross(w->dblk, NULL, B, T, NULL, w->mx, TK, NULL, w->out.dby, SRP_TRAIN)) \
    X(SRP_ERR_INVALID_ARG, srp_block_forward_cross(w->dblk, w->ax, B, T, NULL, NULL, TK, NULL, w->out.dby, SRP_TRAIN)) \
    X(SRP_ERR_INVALID_ARG, srp_block_forward_cross(w->dblk, w->ax, B, T, NULL, w->mx, TK, NULL, NULL, SRP_TRAIN)) \
    X(SRP_ERR_SHAPE, srp_block_forward_cross(w->dblk, w->ax, 0, T, NULL, w->mx, TK, NULL, w->out.dby, SRP_TRAIN)) \
    X(SRP_ERR_SHAPE, srp_block_forward_cross(w->dblk, w->ax, B, T + 1, NULL, w->mx, TK, NULL, w->out.dby, SRP_TRAIN)) \
    X(SRP_ERR_SHAPE, srp_block_forward_cross(w->dblk, w->ax, B, T, NULL, w->mx, 0, NULL, w->out.dby, SRP_TRAIN)) \
    X(SRP_ERR_SHAPE, srp_block_forward_cross(w->dblk, w->ax, B, T, NULL, w->mx, TK + 1, NULL, w->out.dby, SRP_TRAIN)) \
    X(SRP_ERR_INVALID_ARG, srp_block_forward_cross(w->dblk, w->ax, B, T, w->zero_len, w->mx, TK, NULL, w->out.dby, SRP_TRAIN)) \
    X(SRP_ERR_INVALID_ARG, srp_block_forward_cross(w->dblk, w->ax, B, T, NULL, w->mx, TK, w->zero_len, w->out.dby, SRP_TRAIN)) \
    X(SRP_ERR_INVALID_ARG, srp_block_forward_cross(w->dblk, w->ax, B, T, NULL, w->mx, TK, w->long_len, w->out.dby, SRP_TRAIN)) \
    X(SRP_ERR_INVALID_ARG, srp_block_backward_cross(NULL, w->ady, w->out.dbdx, w->out.dbdm))       \
    X(SRP_ERR_INVALID_ARG, srp_block_backward_cross(w->dblk, NULL, w->out.dbdx, w->out.dbdm))      \
    X(SRP_ERR_INVALID_ARG, srp_block_backward_cross(w->dblk, w->ady, NULL, w->out.dbdm))           \
    X(SRP_ERR_INVALID_ARG, srp_block_backward_cross(w->dblk, w->ady, w->out.dbdx, NULL))           \
    /* cached decoding */                                                                          \
    X(SRP_ERR_INVALID_ARG, srp_attention_decode(NULL, w->acache, w->ax, B, w->out.dec_ay))         \
    X(SRP_ERR_INVALID_ARG, srp_attention_decode(w->catt, NULL, w->ax, B, w->out.dec_ay))           \
    X(SRP_ERR_INVALID_ARG, srp_attention_decode(w->catt, w->acache, NULL, B, w->out.dec_ay))       \
    X(SRP_ERR_INVALID_ARG, srp_attention_decode(w->catt, w->acache, w->ax, B, NULL))               \
    X(SRP_ERR_INVALID_ARG, srp_attention_decode(w->catt, w->acache, w->ax, 0, w->out.dec_ay))      \
    X(SRP_ERR_SHAPE, srp_attention_decode(w->catt, w->acache, w->ax, B + 1, w->out.dec_ay))        \
    X(SRP_ERR_SHAPE, srp_attention_decode(w->catt, w->acache, w->ax, B - 1, w->out.dec_ay))        \
    X(SRP_ERR_SHAPE, srp_attention_decode(w->catt, w->afull, w->ax, B, w->out.dec_ay))             \
    X(SRP_ERR_INVALID_ARG, srp_block_decode(NULL, w->bcache, w->ax, B, w->out.dec_by))             \
    X(SRP_ERR_INVALID_ARG, srp_block_decode(w->cblk, NULL, w->ax, B, w->out.dec_by))               \
    X(SRP_ERR_INVALID_ARG, srp_block_decode(w->cblk, w->bcache, NULL, B, w->out.dec_by))           \
    X(SRP_ERR_INVALID_ARG, srp_block_decode(w->cblk, w->bcache, w->ax, B, NULL))                   \
    X(SRP_ERR_INVALID_ARG, srp_block_decode(w->cblk, w->bcache, w->ax, 0, w->out.dec_by))          \
    X(SRP_ERR_SHAPE, srp_block_decode(w->cblk, w->bcache, w->ax, B + 1, w->out.dec_by))            \
    X(SRP_ERR_SHAPE, srp_block_decode(w->cblk, w->bcache, w->ax, B - 1, w->out.dec_by))            \
    X(SRP_ERR_SHAPE, srp_block_decode(w->cblk, w->bfull, w->ax, B, w->out.dec_by))                 \
    EACH(SRP_ERR_INVALID_ARG, 11, bad_cache_call(w, which))                                        \
    EACH(SRP_ERR_UNSUPPORTED, 2, cache_of_full_attention(w, which))                                \
    /* cached decoding against a memory, row selection */                                        \
    X(SRP_ERR_INVALID_ARG, srp_attention_cache_set_memory(NULL, w->mx, B, TK, w->klen))            \
    X(SRP_ERR_INVALID_ARG, srp_attention_cache_set_memory(w->xcache, NULL, B, TK, w->klen))        \
    X(SRP_ERR_INVALID_ARG, srp_attention_cache_set_memory(w->xcache, w->mx, 0, TK, w->klen))       \
    X(SRP_ERR_SHAPE, srp_attention_cache_set_memory(w->xcache, w->mx, B + 1, TK, NULL))            \
    X(SRP_ERR_INVALID_ARG, srp_attention_cache_set_memory(w->xcache, w->mx, B, 0, NULL))           \
    X(SRP_ERR_SHAPE, srp_attention_cache_set_memory(w->xcache, w->mx, B, TK + 1, NULL))            \
    X(SRP_ERR_INVALID_ARG, srp_attention_cache_set_memory(w->xcache, w->mx, B, TK, w->zero_len))   \
    X(SRP_ERR_INVALID_ARG, srp_attention_cache_set_memory(w->xcache, w->mx, B, TK, w->long_len))   \
    X(SRP_ERR_UNSUPPORTED, srp_attention_cache_set_memory(w->acache, w->mx, B, TK, NULL))          \
    X(SRP_ERR_INVALID_ARG, srp_block_cache_set_memory(NULL, w->mx, B, TK, w->klen))                \
    X(SRP_ERR_INVALID_ARG, srp_block_cache_set_memory(w->dcache, NULL, B, TK, w->klen))            \
    X(SRP_ERR_INVALID_ARG, srp_block_cache_set_memory(w->dcache, w->mx, 0, TK, w->klen))           \
    X(SRP_ERR_SHAPE, srp_block_cache_set_memory(w->dcache, w->mx, B + 1, TK, NULL))                \
    X(SRP_ERR_INVALID_ARG, srp_block_cache_set_memory(w->dcache, w->mx, B, 0, NULL))               \
    X(SRP_ERR_SHAPE, srp_block_cache_set_memory(w->dcache, w->mx, B, TK + 1, NULL))                \
    X(SRP_ERR_INVALID_ARG, srp_block_cache_set_memory(w->dcache, w->mx, B, TK, w->zero_len))       \
    X(SRP_ERR_INVALID_ARG, srp_block_cache_set_memory(w->dcache, w->mx, B, TK, w->long_len))       \
    X(SRP_ERR_UNSUPPORTED, srp_block_cache_set_memory(w->bcache, w->mx, B, TK, NULL))              \
    X(SRP_ERR_ORDER, srp_attention_decode(w->xatt, w->xempty, w->ax, B, w->out.dec_xy))            \
    X(SRP_ERR_ORDER, srp_block_decode(w->dblk, w->dempty, w->ax, B, w->out.dec_dy))                \
    X(SRP_ERR_SHAPE, srp_attention_decode(w->xatt, w->xcache, w->ax, B - 1, w->out.dec_xy))        \
    X(SRP_ERR_SHAPE, srp_block_decode(w->dblk, w->dcache, w->ax, B - 1, w->out.dec_dy))            \
    X(SRP_ERR_INVALID_ARG, srp_attention_decode(w->catt, w->xcache, w->ax, B, w->out.dec_xy))      \
    X(SRP_ERR_INVALID_ARG, srp_block_decode(w->cblk, w->dcache, w->ax, B, w->out.dec_dy))          \
    X(SRP_ERR_INVALID_ARG, srp_attention_cache_select(NULL, w->rows_ok, B))                        \
    X(SRP_ERR_INVALID_ARG, srp_attention_cache_select(w->acache, NULL, B))                         \
    X(SRP_ERR_INVALID_ARG, srp_attention_cache_select(w->acache, w->rows_ok, 0))                   \
    X(SRP_ERR_SHAPE, srp_attention_cache_select(w->acache, w->rows_big, B + 1))                    \
    X(SRP_ERR_INVALID_ARG, srp_attention_cache_select(w->acache, w->rows_bad, B))                  \
    X(SRP_ERR_INVALID_ARG, srp_attention_cache_select(w->xcache, w->rows_bad, B))                  \
    X(SRP_ERR_SHAPE, srp_attention_cache_select(w->xcache, w->rows_big, B + 1))                    \
    X(SRP_ERR_ORDER, srp_attention_cache_select(w->xempty, w->rows_ok, B))                         \
    X(SRP_ERR_INVALID_ARG, srp_block_cache_select(NULL, w->rows_ok, B))                            \
    X(SRP_ERR_INVALID_ARG, srp_block_cache_select(w->bcache, NULL, B))                             \
    X(SRP_ERR_INVALID_ARG, srp_block_cache_select(w->bcache, w->rows_ok, 0))                       \
    X(SRP_ERR_SHAPE, srp_block_cache_select(w->bcache, w->rows_big, B + 1))                        \
    X(SRP_ERR_INVALID_ARG, srp_block_cache_select(w->bcache, w->rows_bad, B))                      \
    X(SRP_ERR_INVALID_ARG, srp_block_cache_select(w->dcache, w->rows_bad, B))                      \
    X(SRP_ERR_SHAPE, srp_block_cache_select(w->dcache, w->rows_big, B + 1))                        \
    X(SRP_ERR_ORDER, srp_block_cache_select(w->dempty, w->rows_ok, B))                             \
    EACH(SRP_ERR_ORDER, 2, select_before_decoding(w, which))                                       \
    /* the small layers (nn.h) */                                                                  \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_forward(NULL, NULL, NULL, ROWS, CLASSES, 1e-5f, w->out.nn, NULL, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_forward(w->logits, NULL, NULL, ROWS, CLASSES, 1e-5f, NULL, NULL, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_forward(w->logits, NULL, NULL, 0, CLASSES, 1e-5f, w->out.nn, NULL, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_forward(w->logits, NULL, NULL, ROWS, 0, 1e-5f, w->out.nn, NULL, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_forward(w->logits, NULL, NULL, SIZE_MAX / 2, 4, 1e-5f, w->out.nn, NULL, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_forward(w->logits, NULL, NULL, ROWS, CLASSES, NAN, w->out.nn, NULL, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_forward(w->logits, NULL, NULL, ROWS, CLASSES, 0.0f, w->out.nn, NULL, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_backward(NULL, NULL, w->out.stats, w->out.stats2, w->logits, ROWS, CLASSES, w->out.nn, NULL, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_backward(w->logits, NULL, NULL, w->out.stats2, w->logits, ROWS, CLASSES, w->out.nn, NULL, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_layernorm_backward(w->logits, NULL, w->out.stats, w->out.stats2, w->logits, SIZE_MAX / 2, 4, w->out.nn, NULL, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_gelu_forward(NULL, 4, w->out.nn))                                   \
    X(SRP_ERR_INVALID_ARG, srp_gelu_forward(w->logits, 0, w->out.nn))                              \
    X(SRP_ERR_INVALID_ARG, srp_gelu_forward(w->logits, 4, NULL))                                   \
    X(SRP_ERR_INVALID_ARG, srp_gelu_backward(w->logits, NULL, 4, w->out.nn))                       \
    X(SRP_ERR_INVALID_ARG, srp_gelu_backward(w->logits, w->logits, 0, w->out.nn))                  \
    X(SRP_ERR_INVALID_ARG, srp_gelu_backward_from_output(w->logits, NULL, w->logits, 4, w->out.nn)) \
    X(SRP_ERR_INVALID_ARG, srp_cross_entropy_forward(NULL, w->labels, ROWS, CLASSES, 0.0f, &w->out.scalar)) \
    X(SRP_ERR_INVALID_ARG, srp_cross_entropy_forward(w->logits, NULL, ROWS, CLASSES, 0.0f, &w->out.scalar)) \
    X(SRP_ERR_INVALID_ARG, srp_cross_entropy_forward(w->logits, w->labels, ROWS, CLASSES, 0.0f, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_cross_entropy_forward(w->logits, w->labels, 0, CLASSES, 0.0f, &w->out.scalar)) \
    X(SRP_ERR_INVALID_ARG, srp_cross_entropy_forward(w->logits, w->labels, SIZE_MAX / 2, 4, 0.0f, &w->out.scalar)) \
    X(SRP_ERR_INVALID_ARG, srp_cross_entropy_forward(w->logits, (int[]){0, 1, 3, 0}, ROWS, CLASSES, 0.0f, &w->out.scalar)) \
    X(SRP_ERR_INVALID_ARG, srp_cross_entropy_forward(w->logits, (int[]){0, -1, 2, 0}, ROWS, CLASSES, 0.0f, &w->out.scalar)) \
    X(SRP_ERR_INVALID_ARG, srp_cross_entropy_forward(w->logits, w->labels, ROWS, CLASSES, NAN, &w->out.scalar)) \
    X(SRP_ERR_INVALID_ARG, srp_cross_entropy_forward(w->logits, w->labels, ROWS, CLASSES, 1.5f, &w->out.scalar)) \
    X(SRP_ERR_INVALID_ARG, srp_cross_entropy_backward(w->logits, w->labels, ROWS, CLASSES, -0.1f, w->out.nn)) \
    X(SRP_ERR_INVALID_ARG, srp_cross_entropy_backward(w->logits, w->labels, ROWS, CLASSES, 0.0f, NULL)) \
    X(SRP_ERR_INVALID_ARG, srp_accuracy_count(w->logits, w->labels, ROWS, CLASSES, NULL))          \
    X(SRP_ERR_INVALID_ARG, srp_accuracy_count(w->logits, (int[]){0, 1, 9, 0}, ROWS, CLASSES, &w->out.count)) \
    X(SRP_ERR_INVALID_ARG, srp_residual_add(w->logits, NULL, 4, w->out.nn))                       \
    X(SRP_ERR_INVALID_ARG, srp_residual_add(w->logits, w->logits, 0, w->out.nn))                  \
    X(SRP_ERR_INVALID_ARG, srp_accumulate(NULL, w->logits, 4))                                     \
    X(SRP_ERR_INVALID_ARG, srp_accumulate(w->out.nn, w->logits, 0))                                \
    X(SRP_ERR_INVALID_ARG, srp_mean_pool_forward(w->logits, 2, 2, 3, NULL))                        \
    X(SRP_ERR_INVALID_ARG, srp_mean_pool_forward(w->logits, 0, 2, 3, w->out.nn))                   \
    X(SRP_ERR_INVALID_ARG, srp_mean_pool_forward(w->logits, 2, SIZE_MAX / 2, 3, w->out.nn))        \
    X(SRP_ERR_INVALID_ARG, srp_mean_pool_backward(w->logits, 2, SIZE_MAX / 2, 3, w->out.nn))       \
    X(SRP_ERR_INVALID_ARG, srp_token_select_forward(w->logits, 2, 2, 3, 2, w->out.nn))             \
    X(SRP_ERR_INVALID_ARG, srp_token_select_forward(w->logits, 2, 2, 0, 0, w->out.nn))             \
    X(SRP_ERR_INVALID_ARG, srp_token_select_backward(w->logits, 2, 2, 3, 5, w->out.nn))            \
    X(SRP_ERR_INVALID_ARG, srp_token_select_backward(w->logits, SIZE_MAX / 2, 4, 3, 0, w->out.nn)) \
    /* files */                                                                                    \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_save(NULL, &(srp_tensor_ref){0}, 1))                     \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_save("contract_never_written.bin", NULL, 1))             \
    EACH(SRP_ERR_INVALID_ARG, 2, save_overflowing(which))                                          \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_load(NULL, &(srp_tensor_ref){0}, 1))                     \
    X(SRP_ERR_IO, srp_checkpoint_load("contract_no_such_file.bin", &(srp_tensor_ref){"t", SRP_DTYPE_F32, 1, {4}, w->out.stats}, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_safetensors_open(NULL, "x.safetensors"))                            \
    X(SRP_ERR_INVALID_ARG, srp_safetensors_load(NULL, &(srp_tensor_ref){0}, 1))                    \
    X(SRP_ERR_IO, srp_safetensors_load("contract_no_such_file.bin", &(srp_tensor_ref){"t", SRP_DTYPE_F32, 1, {4}, w->out.stats}, 1)) \
    X(SRP_ERR_NOT_FOUND, srp_checkpoint_load(CKPT_FILE, &(srp_tensor_ref){"u", SRP_DTYPE_F32, 1, {4}, w->out.stats}, 1)) \
    X(SRP_ERR_NOT_FOUND, srp_safetensors_load(ST_FILE, &(srp_tensor_ref){"u", SRP_DTYPE_F32, 1, {4}, w->out.stats}, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_save_with_metadata(NULL, &(srp_tensor_ref){0}, 1, NULL, 0)) \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_save_with_metadata("contract_never_written.bin", &(srp_tensor_ref){"t", SRP_DTYPE_F32, 1, {4}, w->out.stats}, 1, NULL, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_save_with_metadata("contract_never_written.bin", &(srp_tensor_ref){"t", SRP_DTYPE_F32, 1, {4}, w->out.stats}, 1, (const char *[]){"k", "a", "k", "b"}, 2)) \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_save_with_metadata("contract_never_written.bin", &(srp_tensor_ref){"t", SRP_DTYPE_F32, 1, {4}, w->out.stats}, 1, (const char *[]){"", "a"}, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_load_strict(NULL, &(srp_tensor_ref){0}, 1))              \
    X(SRP_ERR_IO, srp_checkpoint_load_strict("contract_no_such_file.bin", &(srp_tensor_ref){"t", SRP_DTYPE_F32, 1, {4}, w->out.stats}, 1)) \
    EACH(SRP_ERR_SHAPE, 2, load_strict_leaving_out(w, which))                                      \
    X(SRP_ERR_INVALID_ARG, srp_safetensors_load_strict(NULL, &(srp_tensor_ref){0}, 1))             \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_open(NULL, CKPT_FILE))                                   \
    EACH(SRP_ERR_INVALID_ARG, 2, open_null_path(which))                                            \
    X(SRP_ERR_IO, srp_checkpoint_open(&(srp_checkpoint *){NULL}, "contract_no_such_file.bin"))      \
    X(SRP_ERR_FORMAT, srp_checkpoint_open(&(srp_checkpoint *){NULL}, ST_FILE))                     \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_info(NULL, 0, &(srp_tensor_ref){0}))                     \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_read(NULL, &(srp_tensor_ref){"t", SRP_DTYPE_F32, 1, {4}, w->out.stats}, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_read_strict(NULL, &(srp_tensor_ref){"t", SRP_DTYPE_F32, 1, {4}, w->out.stats}, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_checkpoint_check_metadata(NULL, k_file_meta, 1))                    \
    X(SRP_ERR_INVALID_ARG, srp_safetensors_info(NULL, 0, &(srp_tensor_ref){0}))                    \
    X(SRP_ERR_INVALID_ARG, srp_safetensors_read(NULL, &(srp_tensor_ref){"t", SRP_DTYPE_F32, 1, {4}, w->out.stats}, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_safetensors_read_strict(NULL, &(srp_tensor_ref){"t", SRP_DTYPE_F32, 1, {4}, w->out.stats}, 1)) \
    X(SRP_ERR_INVALID_ARG, srp_safetensors_check_metadata(NULL, k_file_meta, 1))                   \
    EACH(SRP_ERR_NOT_FOUND, 2, bad_file_call(w, which, 0))                                         \
    EACH(SRP_ERR_SHAPE, 2, bad_file_call(w, which, 1))                                             \
    EACH(SRP_ERR_SHAPE, 2, bad_file_call(w, which, 2))                                             \
    EACH(SRP_ERR_INVALID_ARG, 2, bad_file_call(w, which, 3))                                       \
    EACH(SRP_ERR_SHAPE, 2, bad_file_call(w, which, 4))                                             \
    EACH(SRP_ERR_SHAPE, 2, bad_file_call(w, which, 5))                                             \
    EACH(SRP_ERR_INVALID_ARG, 2, bad_file_call(w, which, 6))                                       \
    EACH(SRP_ERR_INVALID_ARG, 2, bad_file_call(w, which, 7))                                       \
    EACH(SRP_ERR_INVALID_ARG, 2, bad_file_call(w, which, 8))                                       \
    /* data-parallel training, one process (dist.h) */                                             \
    EACH(SRP_ERR_INVALID_ARG, 21, bad_dist_call(w, which))                                         \
    /* the precision of the GEMM inputs (bf16's refusal depends on the CPU: test_core) */          \
    X(SRP_ERR_INVALID_ARG, srp_set_precision((srp_precision)7))                                    \
    /* non-finite numbers (section 3 of ROBUSTNESS.md) */                                          \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->x[3], NAN, lin_fwd_train))                            \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->x[0], INFINITY, lin_fwd_eval))                        \
    X(SRP_ERR_NUMERIC, overflowing_linear_forward(w))                                              \
    X(SRP_ERR_NUMERIC, with_bad_value(w, lin_w(w) + 7, NAN, lin_fwd_train))                        \
    X(SRP_ERR_NUMERIC, with_bad_value(w, lin_w(w) + 7, -INFINITY, lin_fwd_eval))                   \
    X(SRP_ERR_NUMERIC, with_bad_value(w, srp_linear_gamma(w->lin), NAN, lin_fwd_train))            \
    X(SRP_ERR_NUMERIC, with_bad_value(w, srp_linear_gamma(w->lin), INFINITY, lin_fwd_train))       \
    X(SRP_ERR_NUMERIC, with_bad_value(w, srp_linear_bias(w->lin) + 2, NAN, lin_fwd_train))         \
    X(SRP_ERR_NUMERIC, zero_weight_forward(w))                                                     \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->x[5], NAN, lin_bwd))                                  \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->dy[1], INFINITY, lin_bwd))                            \
    X(SRP_ERR_NUMERIC, with_bad_value(w, lin_w(w) + 1, NAN, reinit))                               \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->ady[4], NAN, att_bwd))                                \
    X(SRP_ERR_NUMERIC, with_bad_value(w, qkv_w(w) + 9, NAN, att_fwd_train))                        \
    LOSES(SRP_ERR_NUMERIC, overflowing_attention_forward(w))                                       \
    LOSES(SRP_ERR_NUMERIC, with_bad_value(w, &w->ax[5], NAN, att_fwd_train))                        \
    LOSES(SRP_ERR_NUMERIC, with_bad_value(w, &w->ax[2], INFINITY, att_fwd_masked))                 \
    LOSES(SRP_ERR_NUMERIC, with_bad_value(w, &w->mx[3], NAN, xatt_fwd))                            \
    LOSES(SRP_ERR_NUMERIC, with_bad_value(w, &w->ax[7], NAN, xatt_fwd))                            \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->ady[4], NAN, xatt_bwd))                               \
    X(SRP_ERR_NUMERIC, with_bad_value(w, att_gamma(w), INFINITY, att_fwd_train))                   \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->edx[2], NAN, emb_bwd))                                \
    LOSES(SRP_ERR_NUMERIC, with_bad_value(w, &w->lnx[4], NAN, ln_fwd))                             \
    LOSES(SRP_ERR_NUMERIC, with_bad_value(w, srp_layernorm_bias(w->ln) + 1, INFINITY, ln_fwd))     \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->lndy[2], NAN, ln_bwd))                                \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->lndy[6], INFINITY, ln_bwd_add))                       \
    LOSES(SRP_ERR_NUMERIC, with_bad_value(w, &w->ax[5], NAN, blk_fwd))                             \
    LOSES(SRP_ERR_NUMERIC, with_bad_value(w, blk_ln2_w(w) + 3, NAN, blk_fwd))                      \
    LOSES(SRP_ERR_NUMERIC, overflowing_block_forward(w))                                           \
    X(SRP_ERR_NUMERIC, with_bad_value(w, blk_fc2_w(w) + 7, NAN, blk_fwd))                          \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->ady[3], NAN, blk_bwd))                                \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->ax[5], NAN, att_decode))                              \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->ax[D + 1], INFINITY, blk_decode))                     \
    X(SRP_ERR_NUMERIC, with_bad_value(w, catt_gamma(w), INFINITY, decode_from_start))              \
    X(SRP_ERR_NUMERIC, with_bad_value(w, cblk_fc1_gamma(w), INFINITY, decode_from_start))           \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->ax[3], NAN, xatt_decode))                             \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->ax[D + 2], INFINITY, dblk_decode))                    \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->mx[3], NAN, xcache_set))                              \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->mx[TK * D + 1], INFINITY, dcache_set))                \
    X(SRP_ERR_NUMERIC, with_bad_value(w, xatt_kv_gamma(w), INFINITY, xcache_set))                  \
    X(SRP_ERR_NUMERIC, with_bad_value(w, dblk_cross_q_gamma(w), NAN, dcache_set))                  \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->cx[7], NAN, conv_fwd_train))                          \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->cx[0], INFINITY, conv_fwd_eval))                      \
    X(SRP_ERR_NUMERIC, overflowing_conv_forward(w))                                                \
    X(SRP_ERR_NUMERIC, with_bad_value(w, conv_w(w) + 5, NAN, conv_fwd_train))                      \
    X(SRP_ERR_NUMERIC, with_bad_value(w, conv_w(w) + 5, -INFINITY, conv_fwd_eval))                 \
    X(SRP_ERR_NUMERIC, with_bad_value(w, srp_conv2d_gamma(w->conv), NAN, conv_fwd_train))          \
    X(SRP_ERR_NUMERIC, with_bad_value(w, srp_conv2d_bias(w->conv) + 1, INFINITY, conv_fwd_train))  \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->cdy[3], NAN, conv_bwd))                               \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->cx[8], INFINITY, conv_bwd))                           \
    X(SRP_ERR_NUMERIC, with_bad_value(w, srp_embedding_weight(w->emb) + E, NAN, emb_fwd))          \
    X(SRP_ERR_NUMERIC, with_bad_value(w, srp_embedding_weight(w->emb) + 1, INFINITY, emb_logits))  \
    X(SRP_ERR_NUMERIC, with_bad_value(w, srp_linear_weight_grad(w->lin) + 3, NAN, opt_step))       \
    X(SRP_ERR_NUMERIC, with_bad_value(w, srp_linear_gamma_grad(w->lin), INFINITY, opt_step))       \
    X(SRP_ERR_NUMERIC, with_bad_value(w, srp_embedding_weight_grad(w->emb), NAN, clip))            \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->pw[4], NAN, pi_step))                                 \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->pw[4], INFINITY, pi_init))                            \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->pw[4], NAN, exact))                                   \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->logits[2], NAN, ce_fwd))                              \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->heads[1], NAN, watch_update))                         \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->heads[0], INFINITY, watch_update))                    \
    X(SRP_ERR_NUMERIC, with_bad_value(w, lin_w(w) + 2, NAN, avg_update))                           \
    X(SRP_ERR_NUMERIC, with_bad_value(w, srp_embedding_weight(w->emb) + 3, INFINITY, avg_update))  \
    X(SRP_ERR_NUMERIC, with_bad_value(w, &w->logits[2], INFINITY, ce_bwd))
/* clang-format on */

typedef struct {
    srp_status want;
    int loses_activations; /* an attention forward that failed on its output */
    const char *call;
    int cases; /* the call is made with which = 0 .. cases-1 */
} contract_row;

/* The table expands twice, in the same order: into the cases of one
 * switch (numbered by __COUNTER__ from 0) and into the rows. */
enum { CONTRACT_FIRST = __COUNTER__ + 1 };
#define CASE(want, expr)                                                                           \
    case __COUNTER__ - CONTRACT_FIRST:                                                             \
        return (expr);
#define CASE_EACH(want, n, expr) CASE(want, expr)
static srp_status contract_call(world *w, size_t row, int which)
{
    switch (row) {
        CONTRACT(CASE, CASE, CASE_EACH)
    }
    fail_msg("no row %zu", row);
    return SRP_OK;
}
#define ROW(want, expr) {want, 0, #expr, 1},
#define ROW_LOSES(want, expr) {want, 1, #expr, 1},
#define ROW_EACH(want, n, expr) {want, 0, #expr, n},
static const contract_row k_rows[] = {CONTRACT(ROW, ROW_LOSES, ROW_EACH)};
static const size_t k_row_count = sizeof k_rows / sizeof k_rows[0];

/* The world's objects and buffers, as far as a finished step shows them:
 * two worlds that went through the same calls end bit for bit alike. */
static void finish_step(world *w)
{
    backwards_and_step(w);
    forwards(w);
    assert_ok(srp_embedding_logits(w->emb, w->out.ex, NT, w->out.elogits));
    assert_ok(srp_attention_entropy_bound(w->att, w->out.heads));
    /* the next position: what a bad call left in the caches shows here */
    assert_ok(srp_attention_decode(w->catt, w->acache, w->ax + B * D, B, w->out.dec_ay));
    assert_ok(srp_block_decode(w->cblk, w->bcache, w->ax + B * D, B, w->out.dec_by));
    assert_ok(srp_attention_decode(w->xatt, w->xcache, w->ax + B * D, B, w->out.dec_xy));
    assert_ok(srp_block_decode(w->dblk, w->dcache, w->ax + B * D, B, w->out.dec_dy));
}

/* A failure of these kinds says what was wrong (srp_last_error_detail):
 * the call, the argument or tensor, the sizes, the limit. */
static int needs_detail(const contract_row *row)
{
    return row->want == SRP_ERR_INVALID_ARG || row->want == SRP_ERR_SHAPE ||
           row->want == SRP_ERR_FORMAT || row->want == SRP_ERR_VERSION ||
           row->want == SRP_ERR_NOT_FOUND;
}

/* What is wrong after row i's call in w (NULL: nothing); twin never saw
 * the call. s0, o0: w's state and output hashes before it. */
static const char *check_row(size_t i, srp_status got, world *w, world *twin, uLong s0, uLong o0)
{
    const contract_row *row = &k_rows[i];
    if (got != row->want)
        return "status";
    if (needs_detail(row)) {
        const char *d = srp_last_error_detail();
        if (srp_last_error_status() != got ||
            (strncmp(d, "srp_", 4) != 0 && strncmp(d, "tensor not found: ", 18) != 0))
            return "no detail naming the call";
    }
    if (state_hash(w, !row->loses_activations) != s0)
        return "object state";
    if (output_hash(w) != o0 && row->want != SRP_ERR_NUMERIC)
        return "output buffers";
    if (row->loses_activations) {
        /* attention.h, layernorm.h, block.h: the failed forward's
         * activations are gone, nothing else: of the modules whose
         * backward is pending, that one alone has none to run any more */
        const srp_status att = srp_attention_backward(w->att, w->ady, w->out.adx);
        const srp_status xatt = xatt_bwd(w);
        const srp_status ln =
            srp_layernorm_layer_backward(w->ln, w->lnx, w->lndy, LNR, w->out.lndx);
        const srp_status blk = srp_block_backward(w->blk, w->ady, w->out.bdx);
        const int lost = (att == SRP_ERR_UNSUPPORTED) + (xatt == SRP_ERR_UNSUPPORTED) +
                         (ln == SRP_ERR_UNSUPPORTED) + (blk == SRP_ERR_UNSUPPORTED);
        const int done = (att == SRP_OK) + (xatt == SRP_OK) + (ln == SRP_OK) + (blk == SRP_OK);
        if (lost != 1 || done != 3)
            return "the activations of the failed module (and its only) should be gone";
        if (att == SRP_ERR_UNSUPPORTED &&
            (srp_attention_entropy(w->att, w->out.heads, NULL) != SRP_ERR_UNSUPPORTED ||
             srp_attention_entropy_bound_terms(w->att, NULL, NULL, NULL, NULL) !=
                 SRP_ERR_UNSUPPORTED))
            return "the attention's entropies and bound should be gone";
        if (srp_linear_backward(w->lin, w->x, w->dy, N, w->out.dx) != SRP_OK)
            return "the linear's pending backward";
        if (srp_conv2d_backward(w->conv, w->cx, w->cdy, w->out.cdx) != SRP_OK)
            return "the convolution's pending backward";
        if (srp_block_backward_cross(w->dblk, w->ady, w->out.dbdx, w->out.dbdm) != SRP_OK)
            return "the decoder block's pending backward";
        forwards(w); /* and the world goes on */
        backwards_and_step(w);
        return NULL;
    }
    finish_step(w);
    finish_step(twin);
    if (state_hash(w, 1) != state_hash(twin, 1) || output_hash(w) != output_hash(twin))
        return "the next step (hidden state changed)";
    return NULL;
}

static void test_every_row(void **state)
{
    (void)state;
    size_t failures = 0, calls = 0;
    for (size_t i = 0; i < k_row_count; i++)
        for (int which = 0; which < k_rows[i].cases; which++, calls++) {
            world *w = world_make(), *twin = world_make();
            const uLong s0 = state_hash(w, !k_rows[i].loses_activations), o0 = output_hash(w);
            srp_clear_last_error();
            const srp_status got = contract_call(w, i, which);
            const char *wrong = check_row(i, got, w, twin, s0, o0);
            if (wrong) {
                print_error("row %zu: %s, which = %d\n  returned %s, documented %s; wrong: "
                            "%s\n  detail: %s\n",
                            i, k_rows[i].call, which, srp_status_str(got),
                            srp_status_str(k_rows[i].want), wrong, srp_last_error_detail());
                failures++;
            }
            world_free(w);
            world_free(twin);
        }
    print_message("%zu calls checked\n", calls);
    assert_int_equal(failures, 0);
}

/* The details of representative failures, word for word: a maximum
 * exceeded, a NULL argument by name, sizes given and allowed. */
static void test_details_say_what_is_wrong(void **state)
{
    (void)state;
    world *w = world_make();
    assert_status(srp_attention_forward(w->att, w->ax, B + 1, T, w->out.ay, SRP_TRAIN),
                  SRP_ERR_SHAPE);
    assert_string_equal(srp_last_error_detail(),
                        "srp_attention_forward: batch 3 > max_batch 2 or tokens 3 > max_tokens 3 "
                        "(the maxima given at create)");
    assert_int_equal(srp_last_error_status(), SRP_ERR_SHAPE);
    assert_status(srp_linear_forward(w->lin, NULL, N, w->out.y, SRP_TRAIN), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_linear_forward: x is NULL");
    assert_status(srp_linear_forward(w->lin, w->x, SIZE_MAX / 8, w->out.y, SRP_TRAIN),
                  SRP_ERR_INVALID_ARG);
    assert_non_null(strstr(srp_last_error_detail(), "rows is too many for a 6 -> 5 layer"));
    assert_status(srp_embedding_forward(w->emb, (uint32_t[]){1, V}, 2, w->out.ex),
                  SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_embedding_forward: tokens[1] is 7 >= vocab 7");
    srp_attention_config ac = srp_attention_config_default(D, H);
    ac.qkv.power_iters = 0;
    srp_attention *a = NULL;
    assert_status(srp_attention_create(&a, &ac, B, T), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_attention_create: cfg->qkv.power_iters 0 < 1");
    assert_status(srp_cross_entropy_forward(w->logits, (int[]){0, 1, 3, 0}, ROWS, CLASSES, 0.0f,
                                            &w->out.scalar),
                  SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(),
                        "srp_cross_entropy_forward: labels[2] is 3, not in 0..2");
    /* a success leaves the last failure's detail as it was; clear empties it */
    assert_ok(srp_linear_forward(w->lin, w->x, N, w->out.y, SRP_EVAL));
    assert_int_equal(srp_last_error_status(), SRP_ERR_INVALID_ARG);
    srp_clear_last_error();
    assert_string_equal(srp_last_error_detail(), "");
    assert_int_equal(srp_last_error_status(), SRP_OK);
    world_free(w);
}

/* Getters, destructors and zero_grad take NULL without harm. */
static void test_null_handles_elsewhere(void **state)
{
    (void)state;
    srp_linear_destroy(NULL);
    srp_attention_destroy(NULL);
    srp_embedding_destroy(NULL);
    srp_power_iter_destroy(NULL);
    srp_layernorm_destroy(NULL);
    srp_block_destroy(NULL);
    srp_attention_cache_destroy(NULL);
    srp_attention_cache_reset(NULL);
    assert_int_equal(srp_attention_cache_length(NULL), 0);
    srp_block_cache_destroy(NULL);
    srp_block_cache_reset(NULL);
    assert_int_equal(srp_block_cache_length(NULL), 0);
    srp_conv2d_destroy(NULL);
    srp_optim_destroy(NULL);
    srp_safetensors_close(NULL);
    srp_checkpoint_close(NULL);
    assert_int_equal(srp_checkpoint_count(NULL), 0);
    assert_int_equal(srp_checkpoint_metadata_count(NULL), 0);
    assert_null(srp_checkpoint_metadata(NULL, "heads"));
    assert_int_equal(srp_safetensors_metadata_count(NULL), 0);
    assert_null(srp_safetensors_metadata(NULL, "heads"));
    srp_linear_zero_grad(NULL);
    srp_embedding_zero_grad(NULL);
    srp_conv2d_zero_grad(NULL);
    srp_optim_zero_grad(NULL);
    srp_attention_zero_grad(NULL);
    srp_collapse_destroy(NULL);
    srp_weight_average_destroy(NULL);
    assert_int_equal(srp_collapse_max_events(NULL), 0);
    assert_string_equal(srp_collapse_kind_name((srp_collapse_kind)9), "unknown");
    assert_int_equal(srp_weight_average_updates(NULL), 0);
    assert_int_equal(srp_weight_average_swapped(NULL), 0);
    assert_null(srp_linear_weight(NULL));
    assert_null(srp_linear_u(NULL));
    assert_int_equal(srp_linear_in_features(NULL), 0);
    assert_true(isnan(srp_linear_sigma(NULL)));
    assert_null(srp_conv2d_weight(NULL));
    assert_null(srp_conv2d_bias_grad(NULL));
    assert_null(srp_conv2d_gamma(NULL));
    assert_null(srp_conv2d_u(NULL));
    assert_null(srp_conv2d_linear(NULL));
    assert_true(isnan(srp_conv2d_sigma(NULL)));
    assert_null(srp_attention_qkv(NULL));
    assert_null(srp_attention_in_proj(NULL, 0, NULL));
    assert_int_equal(srp_attention_heads(NULL), 0);
    assert_null(srp_attention_dropout_rng(NULL));
    srp_layernorm_zero_grad(NULL);
    assert_null(srp_layernorm_weight(NULL));
    assert_null(srp_layernorm_mean(NULL));
    assert_int_equal(srp_layernorm_dim(NULL), 0);
    srp_block_zero_grad(NULL);
    assert_null(srp_block_attention(NULL));
    assert_null(srp_block_linear(NULL, 0, NULL));
    assert_null(srp_block_norm(NULL, 0, NULL));
    assert_null(srp_block_dropout_rng(NULL));
    assert_int_equal(srp_block_linear_count(NULL), 0);
    assert_int_equal(srp_block_norm_count(NULL), 0);
    assert_null(srp_embedding_weight(NULL));
    assert_int_equal(srp_embedding_vocab(NULL), 0);
    assert_null(srp_power_iter_u(NULL));
    assert_int_equal(srp_optim_param_count(NULL), 0);
    assert_null(srp_optim_param(NULL, 0));
    assert_null(srp_optim_state(NULL, 0, 0));
    assert_int_equal(srp_optim_tensor_count(NULL), 0);
    assert_int_equal(srp_safetensors_count(NULL), 0);
    assert_true(isnan(srp_lr_at(NULL, 3)));
    assert_non_null(srp_status_str((srp_status)999));
}

int main(void)
{
    write_world_files();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_row),
        cmocka_unit_test(test_details_say_what_is_wrong),
        cmocka_unit_test(test_null_handles_elsewhere),
    };
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    remove(CKPT_FILE);
    remove(ST_FILE);
    return failed;
}
