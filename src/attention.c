/* Multi-head softmax attention (timm layout) with sigmaReparam qkv and proj.
 *
 * x: [B][T][D] -> qkv (one sigmaReparam linear D -> 3D) -> per (b, h):
 *     S = Q K^T / sqrt(dh)      A = softmax_rows(S)      O = A V
 * -> o_cat [B][T][D] (head h in columns h*dh..) -> proj (D -> D) -> y.
 * Backward per (b, h), with dO from proj's backward:
 *     dV = A^T dO   dA = dO V^T   dS = A * (dA - rowsum(dA * A))
 *     dQ = dS K / sqrt(dh)       dK = dS^T Q / sqrt(dh)
 *
 * Speed. The per-(b, h) products are small (17x17x32 to 50x50x32 in the
 * ViT-lite), and a GEMM call per pair costs more in set-up than in
 * arithmetic. Each product runs instead as one batched GEMM over the whole
 * [B][H] grid, reading q, k, v and writing dq, dk, dv in place in the
 * [B][T][3D] layout through strides (srp_bgemm: one oneDNN matmul primitive,
 * or a loop of single-threaded GEMMs side by side); what else was tried is
 * in docs/PERFORMANCE.md, "Tried and not kept". The plans are built on the
 * first forward at each (batch, tokens) shape and kept. Between the
 * products, the softmax with its entropy (and its backward) runs over the
 * rows of all pairs, one pair per task.
 *
 * Causal attention computes the full S and masks in the softmax: row i
 * keeps keys 0..i, the rest become 0, so the products after it see zeros.
 * Padding masks (key lengths) work the same way (srp_attention_row_keys):
 * a key past its example's length is cut from every row, and a padded
 * query row of a self-attention keeps no key at all, so its A row, its O
 * row and, through the products, its dq, dk and dv rows are exact zeros;
 * only y's row (proj's bias) and dy's are zeroed by hand.
 *
 * Cross-attention is the same core with queries from x ([B][Tq][D]) and
 * keys and values from a memory ([B][Tk][D]): q in its own buffer, k and
 * v in another, the products' plans built for Tq x Tk (build_plans).
 * Self-attention is the case memory = x with the [q | k | v] rows shared.
 *
 * Dropout on A (training forwards with dropout > 0): Ad = A m / (1 - p)
 * (dropout.h) is kept beside A; O = Ad V, and in the backward dV = Ad^T dO
 * and dA = (dO V^T) m / (1 - p) before the softmax's backward, which uses
 * A. With dropout 0 none of this runs.
 *
 * For a given thread count and GEMM backend the results are the same bits
 * on every run: the GEMMs partition their work statically, each pair's
 * softmax is one task, and per-pair entropy sums are reduced in a fixed
 * order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention_internal.h"
#include "dropout.h"

srp_attention_config srp_attention_config_default(size_t dim, size_t heads)
{
    srp_attention_config c;
    memset(&c, 0, sizeof(c));
    c.dim = dim;
    c.heads = heads;
    c.causal = 0;
    c.track_entropy = 1;
    c.dropout = 0.0f;
    c.qkv_sigma = SRP_QKV_SIGMA_FUSED;
    c.qkv = srp_linear_config_default(dim, 3 * dim);
    c.proj = srp_linear_config_default(dim, dim);
    c.seed = 0;
    c.cross = 0;
    c.max_memory_tokens = 0;
    return c;
}

static int mul_ok(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

/* Every workspace size fits in size_t (as doubles, the widest element), and
 * every GEMM dimension in BLAS's int. */
static int sizes_ok(size_t batch, size_t tokens, size_t keys, size_t dim, size_t heads)
{
    size_t bt, btd, bk, bkd, bh, bht, bhtk;
    const size_t limit = SIZE_MAX / sizeof(double);
    return dim <= SIZE_MAX / 3 && mul_ok(batch, tokens, &bt) && mul_ok(bt, 3 * dim, &btd) &&
           btd <= limit && mul_ok(batch, keys, &bk) && mul_ok(bk, 3 * dim, &bkd) &&
           bkd <= limit && mul_ok(batch, heads, &bh) && mul_ok(bh, tokens, &bht) &&
           mul_ok(bht, keys, &bhtk) && bhtk <= limit && srp_blas_size_ok(bt) &&
           srp_blas_size_ok(bk) && srp_blas_size_ok(3 * dim) && srp_blas_size_ok(tokens) &&
           srp_blas_size_ok(keys);
}

/* The memory's maximum length: cfg's, or max_tokens when it gives none. */
static size_t max_keys_of(const srp_attention_config *cfg, size_t max_tokens)
{
    return cfg->cross && cfg->max_memory_tokens ? cfg->max_memory_tokens : max_tokens;
}

/* The arguments of srp_attention_create, each failure with its detail. */
static srp_status check_config(const srp_attention_config *cfg, size_t max_batch,
                               size_t max_tokens)
{
    static const char call[] = "srp_attention_create";
    if (cfg->dim == 0 || cfg->heads == 0 || cfg->dim % cfg->heads != 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->dim %zu is not a positive multiple of "
                        "cfg->heads %zu", call, cfg->dim, cfg->heads);
    if (max_batch == 0 || max_tokens == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: max_%s is 0", call,
                        max_batch == 0 ? "batch" : "tokens");
    if (!sizes_ok(max_batch, max_tokens, max_keys_of(cfg, max_tokens), cfg->dim, cfg->heads))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: max_batch %zu x max_tokens %zu (memory %zu) at "
                        "dim %zu, %zu heads: a workspace past SIZE_MAX bytes or a GEMM past "
                        "BLAS's int",
                        call, max_batch, max_tokens, max_keys_of(cfg, max_tokens), cfg->dim,
                        cfg->heads);
    if (cfg->qkv_sigma != SRP_QKV_SIGMA_FUSED && cfg->qkv_sigma != SRP_QKV_SIGMA_QK_V &&
        cfg->qkv_sigma != SRP_QKV_SIGMA_SEPARATE)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->qkv_sigma %d is unknown", call,
                        (int)cfg->qkv_sigma);
    if (cfg->cross && cfg->causal)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->cross with cfg->causal: queries and the "
                        "memory have no common order to be causal in", call);
    if (cfg->cross && cfg->qkv_sigma == SRP_QKV_SIGMA_QK_V)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->cross with SRP_QKV_SIGMA_QK_V: q reads x "
                        "and k the memory, so they cannot share a linear (use FUSED: q, kv; or "
                        "SEPARATE: q, k, v)", call);
    if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->dropout %g (want 0 <= dropout < 1)", call,
                        (double)cfg->dropout);
    /* The linears' own settings (their sizes are the module's). */
    srp_linear_config qkv = cfg->qkv, proj = cfg->proj;
    qkv.in_features = qkv.out_features = proj.in_features = proj.out_features = cfg->dim;
    srp_status st = srp_linear_config_check(&qkv, call, "cfg->qkv");
    return st == SRP_OK ? srp_linear_config_check(&proj, call, "cfg->proj") : st;
}

static void free_plans(srp_attention_plans *p)
{
    srp_bgemm *all[6] = {p->qk, p->av, p->dv, p->da, p->dq, p->dk};
    for (int i = 0; i < 6; i++)
        srp_bgemm_destroy(all[i]);
    memset(p, 0, sizeof(*p));
}

/* The module's buffers, in its block (srp_arena_new); att_drop only with
 * dropout. */
static void layout(void *obj, srp_arena *arena)
{
    srp_attention *a = obj;
    const size_t D = a->dim, dh = a->head_dim, B = a->max_batch, T = a->max_tokens;
    const size_t pairs = B * a->heads, Tk = a->max_keys, rows = T > Tk ? T : Tk;
    SRP_ARENA_FLOATS(arena, B * T * D, &a->x, &a->o_cat, &a->d_ocat);
    SRP_ARENA_FLOATS(arena, B * T * (a->cross ? 1 : 3) * D, &a->qkv_out, &a->d_qkv);
    SRP_ARENA_FLOATS(arena, pairs * T * Tk, &a->att, &a->d_att);
    SRP_ARENA_FLOATS(arena, a->dropout > 0.0f ? pairs * T * Tk : 0, &a->att_drop);
    SRP_ARENA_FLOATS(arena, 2 * D * D, &a->fwd_wqk);
    SRP_ARENA_FLOATS(arena, 2 * D, &a->fwd_bqk);
    SRP_ARENA_FLOATS(arena, pairs, &a->pair_min, &a->pair_min_norm);
    SRP_ARENA_DOUBLES(arena, pairs, &a->pair_sum, &a->pair_sum_norm);
    SRP_ARENA_DOUBLES(arena, rows + 1, &a->inv_log_keys);
    SRP_ARENA_DOUBLES(arena, rows * (D + 1), &a->bound_x);
    SRP_ARENA_DOUBLES(arena, a->gram_n * a->gram_n, &a->bound_gram);
    SRP_ARENA_DOUBLES(arena, 4 * a->bound_vec_len, &a->bound_vecs);
    SRP_ARENA_DOUBLES(arena, 2 * dh * (D + 1 + 2 * dh), &a->bound_qk);
    SRP_ARENA_FLOATS(arena, a->cross ? B * Tk * D : 0, &a->mem);
    SRP_ARENA_FLOATS(arena, a->cross ? B * Tk * 2 * D : 0, &a->kv_out, &a->d_kv);
    SRP_ARENA_FLOATS(arena, a->cross ? 0 : B * T * D, &a->dy_masked);
    SRP_ARENA_DOUBLES(arena, B, &a->bound_g);
    a->key_len = srp_arena_take(arena, B, sizeof(size_t));
}

srp_status srp_attention_create(srp_attention **out, const srp_attention_config *cfg,
                                size_t max_batch, size_t max_tokens)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = NULL;
    if (!cfg)
        return SRP_FAIL_NULL(cfg);
    srp_status st = check_config(cfg, max_batch, max_tokens);
    if (st != SRP_OK)
        return st;
    const size_t D = cfg->dim, T = max_tokens, dh = D / cfg->heads;
    const size_t Tk = max_keys_of(cfg, max_tokens), rows = T > Tk ? T : Tk;
    const size_t gram_n = rows < D + 1 ? rows : D + 1;
    srp_attention *a = SRP_ARENA_NEW(
        srp_attention, layout, .dim = D, .heads = cfg->heads, .head_dim = dh,
        .causal = cfg->causal != 0, .track_entropy = cfg->track_entropy != 0,
        .max_batch = max_batch, .max_tokens = T, .qkv_sigma = cfg->qkv_sigma,
        .dropout = cfg->dropout, .gram_n = gram_n, .bound_vec_len = gram_n > dh ? gram_n : dh,
        .cross = cfg->cross != 0, .max_keys = Tk);
    if (!a)
        return SRP_ERR_NOMEM;
    for (size_t k = 0; k <= rows; k++)
        a->inv_log_keys[k] = k >= 2 ? 1.0 / log((double)k) : 0.0;

    /* The input projections, in column order, then proj, each with a seed
     * drawn from the module's. Cross-attention: q, then kv or k and v. */
    static const size_t parts[3][3] = {{3, 0, 0}, {2, 1, 0}, {1, 1, 1}}; /* widths, in D */
    static const size_t cross_parts[3][3] = {{1, 2, 0}, {0}, {1, 1, 1}};
    const size_t *widths = a->cross ? cross_parts[a->qkv_sigma] : parts[a->qkv_sigma];
    srp_rng rng;
    srp_rng_seed(&rng, cfg->seed);
    for (size_t i = 0, col = 0; i < 3 && widths[i] && st == SRP_OK; i++) {
        srp_linear_config c = cfg->qkv;
        c.in_features = D;
        c.out_features = widths[i] * D;
        c.seed = srp_rng_next_u64(&rng);
        a->in_col[i] = col;
        col += c.out_features;
        st = srp_linear_create(&a->in_proj[i], &c);
        a->n_in = i + 1;
    }
    srp_linear_config pc = cfg->proj;
    pc.in_features = D;
    pc.out_features = D;
    pc.seed = srp_rng_next_u64(&rng);
    if (st == SRP_OK)
        st = srp_linear_create(&a->proj, &pc);
    srp_rng_seed(&a->dropout_rng, srp_rng_next_u64(&rng)); /* after the linears' seeds */
    if (st != SRP_OK) {
        srp_attention_destroy(a);
        return st;
    }
    *out = a;
    return SRP_OK;
}

/* fn on every linear of the module: the input projections, then proj. */
static void each_linear(srp_attention *a, void (*fn)(srp_linear *))
{
    for (size_t i = 0; i < a->n_in; i++)
        fn(a->in_proj[i]);
    fn(a->proj);
}

void srp_attention_destroy(srp_attention *a)
{
    if (!a)
        return;
    each_linear(a, srp_linear_destroy);
    for (int i = 0; i < SRP_ATTENTION_PLAN_SHAPES; i++)
        free_plans(&a->plans[i]);
    free(a);
}

srp_linear *srp_attention_qkv(srp_attention *a)
{
    return a && !a->cross && a->qkv_sigma == SRP_QKV_SIGMA_FUSED ? a->in_proj[0] : NULL;
}

size_t srp_attention_in_proj_count(const srp_attention *a) { return a ? a->n_in : 0; }

srp_linear *srp_attention_in_proj(srp_attention *a, size_t i, const char **name)
{
    static const char *names[3][3] = {{"qkv"}, {"qk", "v"}, {"q", "k", "v"}};
    static const char *cross_names[3][3] = {{"q", "kv"}, {0}, {"q", "k", "v"}};
    if (!a || i >= a->n_in)
        return NULL;
    if (name)
        *name = (a->cross ? cross_names : names)[a->qkv_sigma][i];
    return a->in_proj[i];
}
srp_linear *srp_attention_proj(srp_attention *a) { return a ? a->proj : NULL; }
srp_rng *srp_attention_dropout_rng(srp_attention *a) { return a ? &a->dropout_rng : NULL; }
size_t srp_attention_heads(const srp_attention *a) { return a ? a->heads : 0; }
size_t srp_attention_dim(const srp_attention *a) { return a ? a->dim : 0; }

/* Where q, k and v (or dq, dk, dv) sit: q_base holds the queries' rows
 * (qkv_out or d_qkv), kv_base the keys' (kv_out or d_kv, used by a
 * cross-attention only). Self-attention: [q | k | v] rows 3D apart;
 * cross: q rows D apart, [k | v] rows 2D apart. */
typedef struct {
    float *q, *k, *v;
} qkv_view;

static qkv_view view_of(const srp_attention *a, float *q_base, float *kv_base)
{
    const size_t D = a->dim;
    if (!a->cross)
        return (qkv_view){q_base, q_base + D, q_base + 2 * D};
    return (qkv_view){q_base, kv_base, kv_base + D};
}

/* The row strides of view_of's q and [k | v] rows. */
static size_t q_stride(const srp_attention *a) { return a->cross ? a->dim : 3 * a->dim; }
static size_t kv_stride(const srp_attention *a) { return a->cross ? 2 * a->dim : 3 * a->dim; }

/* Input projection i's output columns in that layout, and their row stride. */
static float *in_proj_out(const srp_attention *a, size_t i, float *q_base, float *kv_base,
                          size_t *ld)
{
    if (!a->cross || i == 0) {
        *ld = q_stride(a);
        return q_base + a->in_col[i];
    }
    *ld = kv_stride(a);
    return kv_base + (a->in_col[i] - a->dim);
}

/* The six products for batch x tokens queries and keys keys, in the
 * layouts of the module's buffers (view_of; head h at column h*dh of its
 * part): A and dS in [B][H][T][Tk], O and dO in [B][T][D]. */
static srp_status build_plans(const srp_attention *a, size_t batch, size_t tokens, size_t keys,
                              srp_attention_plans *p)
{
    const size_t T = tokens, Tk = keys, D = a->dim, dh = a->head_dim, H = a->heads;
    const float scale = 1.0f / sqrtf((float)dh);
    /* strides of one (b, h) matrix in each layout: rows, batch, head */
    const size_t q_ld = q_stride(a), q_b = T * q_ld, kv_ld = kv_stride(a), kv_b = Tk * kv_ld;
    const size_t out_ld = D, out_b = T * D;
    const size_t att_ld = Tk, att_b = H * T * Tk, att_h = T * Tk;
    const srp_bgemm_desc descs[6] = {
        /* S = scale Q K^T: [T][Tk] = [T][dh] x [dh][Tk] */
        {batch, H, T, Tk, dh, 0, 1, q_ld, kv_ld, att_ld, q_b, dh, kv_b, dh, att_b, att_h, scale},
        /* O = A V: [T][dh] = [T][Tk] x [Tk][dh] */
        {batch, H, T, dh, Tk, 0, 0, att_ld, kv_ld, out_ld, att_b, att_h, kv_b, dh, out_b, dh,
         1.0f},
        /* dV = A^T dO: [Tk][dh] = [Tk][T] x [T][dh] */
        {batch, H, Tk, dh, T, 1, 0, att_ld, out_ld, kv_ld, att_b, att_h, out_b, dh, kv_b, dh,
         1.0f},
        /* dA = dO V^T: [T][Tk] = [T][dh] x [dh][Tk] */
        {batch, H, T, Tk, dh, 0, 1, out_ld, kv_ld, att_ld, out_b, dh, kv_b, dh, att_b, att_h,
         1.0f},
        /* dQ = scale dS K: [T][dh] = [T][Tk] x [Tk][dh] */
        {batch, H, T, dh, Tk, 0, 0, att_ld, kv_ld, q_ld, att_b, att_h, kv_b, dh, q_b, dh, scale},
        /* dK = scale dS^T Q: [Tk][dh] = [Tk][T] x [T][dh] */
        {batch, H, Tk, dh, T, 1, 0, att_ld, q_ld, kv_ld, att_b, att_h, q_b, dh, kv_b, dh, scale},
    };
    srp_bgemm **slots[6] = {&p->qk, &p->av, &p->dv, &p->da, &p->dq, &p->dk};
    for (int i = 0; i < 6; i++) {
        const srp_status st = srp_bgemm_create(slots[i], &descs[i]);
        if (st != SRP_OK) {
            free_plans(p);
            return st;
        }
    }
    p->batch = batch;
    p->tokens = tokens;
    p->keys = keys;
    return SRP_OK;
}

/* The plans for this shape: kept ones, or new ones in place of the least
 * recently used (which allocates). On failure nothing changes. */
static srp_status plans_for(srp_attention *a, size_t batch, size_t tokens, size_t keys,
                            srp_attention_plans **out)
{
    srp_attention_plans *oldest = &a->plans[0];
    for (int i = 0; i < SRP_ATTENTION_PLAN_SHAPES; i++) {
        srp_attention_plans *p = &a->plans[i];
        if (p->batch == batch && p->tokens == tokens && p->keys == keys) {
            *out = p;
            p->last_used = ++a->plan_clock;
            return SRP_OK;
        }
        if (p->last_used < oldest->last_used)
            oldest = p;
    }
    srp_attention_plans fresh;
    memset(&fresh, 0, sizeof(fresh));
    const srp_status st = build_plans(a, batch, tokens, keys, &fresh);
    if (st != SRP_OK)
        return st;
    free_plans(oldest);
    *oldest = fresh;
    oldest->last_used = ++a->plan_clock;
    *out = oldest;
    return SRP_OK;
}

/* Pairs of the softmax loops run one per task on the library's threads. */
static int pair_threads(size_t pairs, size_t tokens, size_t keys)
{
    return pairs > 1 && pairs * tokens * keys >= SRP_PARALLEL_MIN_ELEMS ? srp_threads() : 1;
}

size_t srp_attention_row_keys(const srp_attention *a, size_t b, size_t r)
{
    const size_t keys = a->causal ? r + 1 : a->keys;
    if (!a->masked)
        return keys;
    const size_t len = a->key_len[b];
    if (!a->cross && r >= len)
        return 0; /* a padded query row */
    return keys < len ? keys : len;
}

/* Softmax of one (b, h) pair's rows of S in place, and their entropy
 * statistics over the rows that attend (a padded query row has none).
 * att: [T][Tk] */
static void pair_softmax(srp_attention *a, size_t p)
{
    const size_t T = a->tokens, Tk = a->keys, b = p / a->heads;
    float *att = a->att + p * T * Tk;
    double sum = 0.0, sum_norm = 0.0;
    float min = INFINITY, min_norm = INFINITY;
    for (size_t r = 0; r < T; r++) {
        const size_t keys = srp_attention_row_keys(a, b, r);
        const float ent = srp_softmax_row(att + r * Tk, keys, Tk, a->track_entropy);
        if (keys == 0)
            continue; /* a padded query row: zeros, no entropy */
        sum += ent;
        min = ent < min || ent != ent ? ent : min; /* a NaN stays in the min too */
        if (keys >= 2) {
            const float en = (float)(ent * a->inv_log_keys[keys]);
            sum_norm += en;
            min_norm = en < min_norm || en != en ? en : min_norm;
        }
    }
    a->pair_sum[p] = sum;
    a->pair_min[p] = min;
    a->pair_sum_norm[p] = sum_norm;
    a->pair_min_norm[p] = min_norm;
}

/* dS = A * (dA - rowsum(dA * A)) in place of dA for one pair. */
static void pair_softmax_backward(srp_attention *a, size_t p)
{
    const size_t T = a->tokens, Tk = a->keys, b = p / a->heads;
    const float *att = a->att + p * T * Tk;
    float *ds = a->d_att + p * T * Tk;
    for (size_t r = 0; r < T; r++)
        srp_softmax_backward_row(att + r * Tk, ds + r * Tk, srp_attention_row_keys(a, b, r), Tk);
}

/* Zeroes the rows of the padded queries (self-attention with key lengths).
 * rows: [B][T][D] */
static void zero_padded_rows(const srp_attention *a, float *rows)
{
    const size_t T = a->tokens, D = a->dim;
    if (!a->masked || a->cross)
        return;
    for (size_t b = 0; b < a->batch; b++)
        if (a->key_len[b] < T)
            memset(rows + (b * T + a->key_len[b]) * D, 0,
                   sizeof(float) * (T - a->key_len[b]) * D);
}

/* dst = src, the rows split among the threads. dst, src: [n][d] */
static void copy_rows(float *dst, const float *src, size_t n, size_t d)
{
    const long rows = (long)n;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n * d >= SRP_PARALLEL_MIN_ELEMS)
    for (long r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * d, src + (size_t)r * d, sizeof(float) * d);
}

/* The bound's copy of the forward's q and k weight rows, biases and scales
 * (fwd_wqk: [2D][D], q's rows then k's; fwd_bqk: [2D]). */
static void copy_qk_weights(srp_attention *a)
{
    const size_t D = a->dim;
    for (size_t part = 0; part < 2; part++) { /* q, then k: columns part*D.. of the row */
        const size_t col = part * D;
        size_t i = 0;
        while (i + 1 < a->n_in && a->in_col[i + 1] <= col)
            i++;
        srp_linear *l = a->in_proj[i];
        const size_t row = col - a->in_col[i]; /* the part's first row in that linear */
        memcpy(a->fwd_wqk + part * D * D, srp_linear_weight(l) + row * D, sizeof(float) * D * D);
        if (srp_linear_bias(l))
            memcpy(a->fwd_bqk + part * D, srp_linear_bias(l) + row, sizeof(float) * D);
        else
            memset(a->fwd_bqk + part * D, 0, sizeof(float) * D);
        *(part == 0 ? &a->fwd_scale_q : &a->fwd_scale_k) = srp_linear_forward_scale(l);
    }
}

/* forward_prepare for tokens queries and keys keys. */
static srp_status prepare_forward(srp_attention *a, size_t batch, size_t tokens, size_t keys,
                                  int training)
{
    srp_status st = plans_for(a, batch, tokens, keys, &a->fwd_plans);
    if (st != SRP_OK)
        return st;
    /* Every linear's power step and checks first: if any fails, nothing of
     * the module has changed. */
    for (size_t i = 0; i < a->n_in && st == SRP_OK; i++)
        st = srp_linear_forward_prepare(a->in_proj[i], training);
    if (st == SRP_OK)
        st = srp_linear_forward_prepare(a->proj, training);
    return st;
}

srp_status srp_attention_forward_prepare(srp_attention *a, size_t batch, size_t tokens,
                                         int training)
{
    return prepare_forward(a, batch, tokens, tokens, training);
}

/* forward_compute of either kind: memory NULL for self-attention (keys =
 * tokens), key_len NULL for no mask (both checked by the caller). */
static srp_status compute_forward(srp_attention *a, const float *x, const float *memory,
                                  size_t batch, size_t tokens, size_t keys,
                                  const size_t *key_len, float *y, int training)
{
    const size_t n = batch * tokens, D = a->dim;
    const srp_attention_plans *plans = a->fwd_plans;
    /* The activations are overwritten from here on: the previous forward
     * can no longer be differentiated, whatever follows. */
    a->have_forward = 0;
    for (size_t i = 0; i < a->n_in; i++) { /* x (and memory) -> [q | k | v] */
        const int from_memory = a->cross && i > 0;
        size_t ld;
        float *out = in_proj_out(a, i, a->qkv_out, a->kv_out, &ld);
        srp_linear_forward_compute(a->in_proj[i], from_memory ? memory : x,
                                   from_memory ? batch * keys : n, out, ld);
    }
    uint64_t t0 = srp_profile_begin();
    copy_rows(a->x, x, n, D);
    if (a->cross)
        copy_rows(a->mem, memory, batch * keys, D);
    a->batch = batch;
    a->tokens = tokens;
    a->keys = keys;
    a->masked = key_len != NULL;
    if (key_len)
        memcpy(a->key_len, key_len, sizeof(size_t) * batch);
    srp_profile_end(SRP_PROF_ATTENTION_COPY, t0);

    t0 = srp_profile_begin();
    const qkv_view view = view_of(a, a->qkv_out, a->kv_out);
    srp_bgemm_run(plans->qk, view.q, view.k, a->att);
    const long pairs = (long)(batch * a->heads);
#pragma omp parallel for num_threads(pair_threads((size_t)pairs, tokens, keys)) schedule(static)
    for (long p = 0; p < pairs; p++)
        pair_softmax(a, (size_t)p);
    int finite = 1;
    a->dropped = training && a->dropout > 0.0f;
    if (a->dropped) {
        srp_rng next = a->dropout_rng; /* the draw is committed with the forward */
        a->dropout_key = srp_rng_next_u64(&next);
        /* A NaN in A (an overflow in the logits) could be dropped from y:
         * it is looked for here. */
        finite = srp_dropout_apply(a->att, a->att_drop, (size_t)pairs * tokens * keys,
                                   a->dropout_key, a->dropout);
    }
    srp_bgemm_run(plans->av, a->dropped ? a->att_drop : a->att, view.v, a->o_cat);
    srp_profile_end(SRP_PROF_ATTENTION_CORE, t0);

    srp_linear_forward_compute(a->proj, a->o_cat, n, y, D);
    zero_padded_rows(a, y); /* proj's bias there */
    /* A NaN anywhere on the way (in x, or from an overflow in the logits)
     * reaches y: one check of y covers them all. On failure no linear
     * takes its power step. */
    t0 = srp_profile_begin();
    finite = finite && srp_all_finite(y, n * D);
    srp_profile_end(SRP_PROF_FINITE_CHECK, t0);
    if (!finite) {
        a->order = SRP_PENDING_NONE; /* no forward is pending any more */
        return SRP_ERR_NUMERIC;
    }
    return SRP_OK;
}

srp_status srp_attention_forward_compute(srp_attention *a, const float *x, size_t batch,
                                         size_t tokens, float *y, int training)
{
    return compute_forward(a, x, NULL, batch, tokens, tokens, NULL, y, training);
}

srp_status srp_attention_forward_prepare_keys(srp_attention *a, size_t batch, size_t tokens,
                                              size_t keys, int training)
{
    return prepare_forward(a, batch, tokens, keys, training);
}

srp_status srp_attention_forward_compute_masked(srp_attention *a, const float *x,
                                                const float *memory, size_t batch, size_t tokens,
                                                size_t keys, const size_t *key_len, float *y,
                                                int training)
{
    return compute_forward(a, x, memory, batch, tokens, keys, key_len, y, training);
}

void srp_attention_forward_commit(srp_attention *a, int training)
{
    for (size_t i = 0; i < a->n_in; i++)
        srp_linear_forward_commit(a->in_proj[i], training);
    srp_linear_forward_commit(a->proj, training);
    copy_qk_weights(a); /* with the committed scales */
    if (a->dropped)
        srp_rng_next_u64(&a->dropout_rng); /* the draw the forward's key came from */
    a->have_forward = 1;
    srp_order_forward(&a->order, training);
}

/* The size checks of every forward: batch and tokens within 1..the maxima
 * (what names the second size and its maximum), and rows that fit a GEMM. */
static srp_status check_sizes(const srp_attention *a, const char *call, size_t batch,
                              size_t tokens, const char *what, size_t max)
{
    if (batch == 0 || tokens == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s is 0", call, batch == 0 ? "batch" : what);
    if (batch > a->max_batch || tokens > max)
        return srp_fail(SRP_ERR_SHAPE,
                        "%s: batch %zu > max_batch %zu or %s %zu > max_%s %zu (the maxima given "
                        "at create)",
                        call, batch, a->max_batch, what, tokens, what, max);
    if (!srp_linear_batch_ok(a->proj, batch * tokens)) /* only when the maxima are at the limit */
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: batch %zu x %s %zu rows are too many", call,
                        batch, what, tokens);
    return SRP_OK;
}

/* Key lengths, when given: each in 1..keys. */
static srp_status check_key_len(const char *call, const size_t *key_len, size_t batch,
                                size_t keys, const char *what)
{
    for (size_t b = 0; key_len && b < batch; b++)
        if (key_len[b] == 0 || key_len[b] > keys)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: key_len[%zu] is %zu (want 1..%s %zu)", call,
                            b, key_len[b], what, keys);
    return SRP_OK;
}

/* Prepare, compute and commit, after the caller's checks. */
static srp_status run_forward(srp_attention *a, const float *x, const float *memory, size_t batch,
                              size_t tokens, size_t keys, const size_t *key_len, float *y,
                              int training)
{
    srp_status st = prepare_forward(a, batch, tokens, keys, training);
    if (st == SRP_OK)
        st = compute_forward(a, x, memory, batch, tokens, keys, key_len, y, training);
    if (st != SRP_OK)
        return st;
    srp_attention_forward_commit(a, training);
    return SRP_OK;
}

/* srp_attention_forward and _masked, after their NULL checks. */
static srp_status forward_self(srp_attention *a, const char *call, const float *x, size_t batch,
                               size_t tokens, const size_t *key_len, float *y, int training)
{
    if (a->cross)
        return srp_fail(SRP_ERR_UNSUPPORTED,
                        "%s: the module is a cross-attention (cfg.cross): use "
                        "srp_attention_forward_cross",
                        call);
    srp_status st = check_sizes(a, call, batch, tokens, "tokens", a->max_tokens);
    if (st == SRP_OK)
        st = check_key_len(call, key_len, batch, tokens, "tokens");
    return st == SRP_OK ? run_forward(a, x, NULL, batch, tokens, tokens, key_len, y, training)
                        : st;
}

srp_status srp_attention_forward(srp_attention *a, const float *x, size_t batch, size_t tokens,
                                 float *y, int training)
{
    if (!a || !x || !y)
        return SRP_FAIL_NULL(a, x, y);
    return forward_self(a, __func__, x, batch, tokens, NULL, y, training);
}

srp_status srp_attention_forward_masked(srp_attention *a, const float *x, size_t batch,
                                        size_t tokens, const size_t *key_len, float *y,
                                        int training)
{
    if (!a || !x || !y)
        return SRP_FAIL_NULL(a, x, y);
    return forward_self(a, __func__, x, batch, tokens, key_len, y, training);
}

srp_status srp_attention_forward_cross(srp_attention *a, const float *x, size_t batch,
                                       size_t tokens, const float *memory, size_t memory_tokens,
                                       const size_t *key_len, float *y, int training)
{
    if (!a || !x || !memory || !y)
        return SRP_FAIL_NULL(a, x, memory, y);
    static const char call[] = "srp_attention_forward_cross";
    if (!a->cross)
        return srp_fail(SRP_ERR_UNSUPPORTED, "%s: the module is a self-attention (create it with "
                        "cfg.cross = 1)", call);
    srp_status st = check_sizes(a, call, batch, tokens, "tokens", a->max_tokens);
    if (st == SRP_OK)
        st = check_sizes(a, call, batch, memory_tokens, "memory_tokens", a->max_keys);
    if (st == SRP_OK)
        st = check_key_len(call, key_len, batch, memory_tokens, "memory_tokens");
    return st == SRP_OK ? run_forward(a, x, memory, batch, tokens, memory_tokens, key_len, y,
                                      training)
                        : st;
}

/* backward_prepare of either kind: dmemory (cross-attention; may be NULL)
 * as dx. */
static srp_status prepare_backward(srp_attention *a, const float *dy, float *dx, float *dmemory)
{
    const size_t n = a->batch * a->tokens, D = a->dim;
    srp_attention_plans *plans;
    srp_status st = plans_for(a, a->batch, a->tokens, a->keys, &plans);
    if (st != SRP_OK)
        return st;
    if (a->masked && !a->cross) { /* the padded rows of y are 0 whatever proj does */
        copy_rows(a->dy_masked, dy, n, D);
        zero_padded_rows(a, a->dy_masked);
        dy = a->dy_masked;
    }
    /* Both layers' gradients are computed and checked before either is
     * added in: a failure leaves every gradient of the module as it was. */
    st = srp_linear_backward_prepare(a->proj, a->o_cat, dy, D, n, a->d_ocat, 0);
    if (st != SRP_OK)
        return st;

    const uint64_t t0 = srp_profile_begin();
    const qkv_view act = view_of(a, a->qkv_out, a->kv_out), grad = view_of(a, a->d_qkv, a->d_kv);
    srp_bgemm_run(plans->dv, a->dropped ? a->att_drop : a->att, a->d_ocat, grad.v);
    srp_bgemm_run(plans->da, a->d_ocat, act.v, a->d_att);
    const long pairs = (long)(a->batch * a->heads);
    if (a->dropped) /* dA through the mask: the forward's, from its key */
        srp_dropout_apply(a->d_att, a->d_att, (size_t)pairs * a->tokens * a->keys, a->dropout_key,
                          a->dropout);
#pragma omp parallel for num_threads(pair_threads((size_t)pairs, a->tokens, a->keys))             \
    schedule(static)
    for (long p = 0; p < pairs; p++)
        pair_softmax_backward(a, (size_t)p);
    srp_bgemm_run(plans->dq, a->d_att, act.k, grad.q);
    srp_bgemm_run(plans->dk, a->d_att, act.q, grad.k);
    srp_profile_end(SRP_PROF_ATTENTION_CORE, t0);

    /* dx = sum over the projections that read x; dmemory likewise */
    for (size_t i = 0; i < a->n_in && st == SRP_OK; i++) {
        const int from_memory = a->cross && i > 0;
        size_t ld;
        const float *g = in_proj_out(a, i, a->d_qkv, a->d_kv, &ld);
        st = srp_linear_backward_prepare(a->in_proj[i], from_memory ? a->mem : a->x, g, ld,
                                         from_memory ? a->batch * a->keys : n,
                                         from_memory ? dmemory : dx, from_memory ? i > 1 : i > 0);
    }
    return st;
}

srp_status srp_attention_backward_prepare(srp_attention *a, const float *dy, float *dx)
{
    return prepare_backward(a, dy, dx, NULL);
}

srp_status srp_attention_backward_prepare_cross(srp_attention *a, const float *dy, float *dx,
                                                float *dmemory)
{
    return prepare_backward(a, dy, dx, dmemory);
}

void srp_attention_backward_commit(srp_attention *a)
{
    each_linear(a, srp_linear_backward_commit); /* each adds its own gradients */
    srp_order_backward_done(&a->order);
}

/* srp_attention_backward and _backward_cross, after their NULL checks. */
static srp_status backward_checked(srp_attention *a, const char *call, int cross, const float *dy,
                                   float *dx, float *dmemory)
{
    if (a->cross != cross)
        return srp_fail(SRP_ERR_UNSUPPORTED, "%s: the module is a %s-attention: use %s", call,
                        a->cross ? "cross" : "self",
                        a->cross ? "srp_attention_backward_cross" : "srp_attention_backward");
    if (!a->have_forward)
        return srp_fail(SRP_ERR_UNSUPPORTED,
                        "%s: no forward to differentiate (none ran, or the last one failed and "
                        "overwrote the activations)",
                        call);
    srp_status st = srp_order_backward(&a->order, call);
    if (st == SRP_OK)
        st = prepare_backward(a, dy, dx, dmemory);
    if (st != SRP_OK)
        return st;
    srp_attention_backward_commit(a);
    return SRP_OK;
}

srp_status srp_attention_backward(srp_attention *a, const float *dy, float *dx)
{
    if (!a || !dy)
        return SRP_FAIL_NULL(a, dy);
    return backward_checked(a, __func__, 0, dy, dx, NULL);
}

srp_status srp_attention_backward_cross(srp_attention *a, const float *dy, float *dx,
                                        float *dmemory)
{
    if (!a || !dy)
        return SRP_FAIL_NULL(a, dy);
    return backward_checked(a, __func__, 1, dy, dx, dmemory);
}

void srp_attention_zero_grad(srp_attention *a)
{
    if (a)
        each_linear(a, srp_linear_zero_grad);
}

/* Projection i of the module in list order: the input projections, then
 * proj (i = n_in); its name "prefix.<name>" goes into buf. A name too long
 * for a list is cut one byte over the limit, so that the list still
 * refuses it (and remembers). */
static srp_linear *projection(srp_attention *a, size_t i, const char *prefix,
                              char buf[SRP_TENSOR_MAX_NAME + 2])
{
    const char *name = "proj";
    srp_linear *l = i < a->n_in ? srp_attention_in_proj(a, i, &name) : a->proj;
    const size_t keep = SRP_TENSOR_MAX_NAME + 1;
    size_t n = 0;
    for (const char *s = prefix ? prefix : ""; *s && n < keep; s++)
        buf[n++] = *s;
    if (n > 0 && n < keep)
        buf[n++] = '.';
    for (const char *s = name; *s && n < keep; s++)
        buf[n++] = *s;
    buf[n] = '\0';
    return l;
}

/* Every projection's parameters into params, or its state into refs (the
 * other NULL). */
static srp_status add_projections(srp_attention *a, const char *prefix, srp_param_list *params,
                                  srp_tensor_list *refs)
{
    char name[SRP_TENSOR_MAX_NAME + 2];
    srp_status st = SRP_OK;
    for (size_t i = 0; i <= a->n_in && st == SRP_OK; i++) {
        srp_linear *l = projection(a, i, prefix, name);
        st = params ? srp_linear_params(l, name, params) : srp_linear_state_refs(l, name, refs);
    }
    return st;
}

srp_status srp_attention_params(srp_attention *a, const char *prefix, srp_param_list *list)
{
    return a && list ? add_projections(a, prefix, list, NULL) : SRP_FAIL_NULL(a, list);
}

srp_status srp_attention_state_refs(srp_attention *a, const char *prefix, srp_tensor_list *list)
{
    return a && list ? add_projections(a, prefix, NULL, list) : SRP_FAIL_NULL(a, list);
}
