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
static int sizes_ok(size_t batch, size_t tokens, size_t dim, size_t heads)
{
    size_t bt, btd, bh, bht, bhtt;
    const size_t limit = SIZE_MAX / sizeof(double);
    return dim <= SIZE_MAX / 3 && mul_ok(batch, tokens, &bt) && mul_ok(bt, 3 * dim, &btd) &&
           btd <= limit && mul_ok(batch, heads, &bh) && mul_ok(bh, tokens, &bht) &&
           mul_ok(bht, tokens, &bhtt) && bhtt <= limit && srp_blas_size_ok(bt) &&
           srp_blas_size_ok(3 * dim) && srp_blas_size_ok(tokens);
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
    if (!sizes_ok(max_batch, max_tokens, cfg->dim, cfg->heads))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: max_batch %zu x max_tokens %zu at dim %zu, "
                        "%zu heads: a workspace past SIZE_MAX bytes or a GEMM past BLAS's int",
                        call, max_batch, max_tokens, cfg->dim, cfg->heads);
    if (cfg->qkv_sigma != SRP_QKV_SIGMA_FUSED && cfg->qkv_sigma != SRP_QKV_SIGMA_QK_V &&
        cfg->qkv_sigma != SRP_QKV_SIGMA_SEPARATE)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->qkv_sigma %d is unknown", call,
                        (int)cfg->qkv_sigma);
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
    const size_t pairs = B * a->heads;
    SRP_ARENA_FLOATS(arena, B * T * D, &a->x, &a->o_cat, &a->d_ocat);
    SRP_ARENA_FLOATS(arena, B * T * 3 * D, &a->qkv_out, &a->d_qkv);
    SRP_ARENA_FLOATS(arena, pairs * T * T, &a->att, &a->d_att);
    SRP_ARENA_FLOATS(arena, a->dropout > 0.0f ? pairs * T * T : 0, &a->att_drop);
    SRP_ARENA_FLOATS(arena, 2 * D * D, &a->fwd_wqk);
    SRP_ARENA_FLOATS(arena, 2 * D, &a->fwd_bqk);
    SRP_ARENA_FLOATS(arena, pairs, &a->pair_min, &a->pair_min_norm);
    SRP_ARENA_DOUBLES(arena, pairs, &a->pair_sum, &a->pair_sum_norm);
    SRP_ARENA_DOUBLES(arena, T + 1, &a->inv_log_keys);
    SRP_ARENA_DOUBLES(arena, T * (D + 1), &a->bound_x);
    SRP_ARENA_DOUBLES(arena, a->gram_n * a->gram_n, &a->bound_gram);
    SRP_ARENA_DOUBLES(arena, 4 * a->bound_vec_len, &a->bound_vecs);
    SRP_ARENA_DOUBLES(arena, 2 * dh * (D + 1 + 2 * dh), &a->bound_qk);
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
    const size_t gram_n = T < D + 1 ? T : D + 1;
    srp_attention *a = SRP_ARENA_NEW(
        srp_attention, layout, .dim = D, .heads = cfg->heads, .head_dim = dh,
        .causal = cfg->causal != 0, .track_entropy = cfg->track_entropy != 0,
        .max_batch = max_batch, .max_tokens = T, .qkv_sigma = cfg->qkv_sigma,
        .dropout = cfg->dropout, .gram_n = gram_n, .bound_vec_len = gram_n > dh ? gram_n : dh);
    if (!a)
        return SRP_ERR_NOMEM;
    for (size_t k = 0; k <= T; k++)
        a->inv_log_keys[k] = k >= 2 ? 1.0 / log((double)k) : 0.0;

    /* The input projections, in column order, then proj, each with a seed
     * drawn from the module's. */
    static const size_t parts[3][3] = {{3, 0, 0}, {2, 1, 0}, {1, 1, 1}}; /* widths, in D */
    srp_rng rng;
    srp_rng_seed(&rng, cfg->seed);
    for (size_t i = 0, col = 0; i < 3 && parts[a->qkv_sigma][i] && st == SRP_OK; i++) {
        srp_linear_config c = cfg->qkv;
        c.in_features = D;
        c.out_features = parts[a->qkv_sigma][i] * D;
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
    return a && a->qkv_sigma == SRP_QKV_SIGMA_FUSED ? a->in_proj[0] : NULL;
}

size_t srp_attention_in_proj_count(const srp_attention *a) { return a ? a->n_in : 0; }

srp_linear *srp_attention_in_proj(srp_attention *a, size_t i, const char **name)
{
    static const char *names[3][3] = {{"qkv"}, {"qk", "v"}, {"q", "k", "v"}};
    if (!a || i >= a->n_in)
        return NULL;
    if (name)
        *name = names[a->qkv_sigma][i];
    return a->in_proj[i];
}
srp_linear *srp_attention_proj(srp_attention *a) { return a ? a->proj : NULL; }
srp_rng *srp_attention_dropout_rng(srp_attention *a) { return a ? &a->dropout_rng : NULL; }
size_t srp_attention_heads(const srp_attention *a) { return a ? a->heads : 0; }
size_t srp_attention_dim(const srp_attention *a) { return a ? a->dim : 0; }

/* The six products for batch x tokens, in the layouts of the module's
 * buffers: q, k, v in qkv_out ([B][T][3D], head h at column h*dh of its
 * part), A and dS in [B][H][T][T], O and dO in [B][T][D]. */
static srp_status build_plans(const srp_attention *a, size_t batch, size_t tokens,
                              srp_attention_plans *p)
{
    const size_t T = tokens, D = a->dim, dh = a->head_dim, H = a->heads;
    const float scale = 1.0f / sqrtf((float)dh);
    /* strides of one (b, h) matrix in each layout: rows, batch, head */
    const size_t qkv_ld = 3 * D, qkv_b = T * 3 * D, out_ld = D, out_b = T * D;
    const size_t att_ld = T, att_b = H * T * T, att_h = T * T;
    const srp_bgemm_desc descs[6] = {
        /* S = scale Q K^T: [T][T] = [T][dh] x [dh][T] */
        {batch, H, T, T, dh, 0, 1, qkv_ld, qkv_ld, att_ld, qkv_b, dh, qkv_b, dh, att_b, att_h,
         scale},
        /* O = A V: [T][dh] = [T][T] x [T][dh] */
        {batch, H, T, dh, T, 0, 0, att_ld, qkv_ld, out_ld, att_b, att_h, qkv_b, dh, out_b, dh,
         1.0f},
        /* dV = A^T dO: [T][dh] = [T][T] x [T][dh] */
        {batch, H, T, dh, T, 1, 0, att_ld, out_ld, qkv_ld, att_b, att_h, out_b, dh, qkv_b, dh,
         1.0f},
        /* dA = dO V^T: [T][T] = [T][dh] x [dh][T] */
        {batch, H, T, T, dh, 0, 1, out_ld, qkv_ld, att_ld, out_b, dh, qkv_b, dh, att_b, att_h,
         1.0f},
        /* dQ = scale dS K: [T][dh] = [T][T] x [T][dh] */
        {batch, H, T, dh, T, 0, 0, att_ld, qkv_ld, qkv_ld, att_b, att_h, qkv_b, dh, qkv_b, dh,
         scale},
        /* dK = scale dS^T Q: [T][dh] = [T][T] x [T][dh] */
        {batch, H, T, dh, T, 1, 0, att_ld, qkv_ld, qkv_ld, att_b, att_h, qkv_b, dh, qkv_b, dh,
         scale},
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
    return SRP_OK;
}

/* The plans for this shape: kept ones, or new ones in place of the least
 * recently used (which allocates). On failure nothing changes. */
static srp_status plans_for(srp_attention *a, size_t batch, size_t tokens,
                            srp_attention_plans **out)
{
    srp_attention_plans *oldest = &a->plans[0];
    for (int i = 0; i < SRP_ATTENTION_PLAN_SHAPES; i++) {
        srp_attention_plans *p = &a->plans[i];
        if (p->batch == batch && p->tokens == tokens) {
            *out = p;
            p->last_used = ++a->plan_clock;
            return SRP_OK;
        }
        if (p->last_used < oldest->last_used)
            oldest = p;
    }
    srp_attention_plans fresh;
    memset(&fresh, 0, sizeof(fresh));
    const srp_status st = build_plans(a, batch, tokens, &fresh);
    if (st != SRP_OK)
        return st;
    free_plans(oldest);
    *oldest = fresh;
    oldest->last_used = ++a->plan_clock;
    *out = oldest;
    return SRP_OK;
}

/* Pairs of the softmax loops run one per task on the library's threads. */
static int pair_threads(size_t pairs, size_t tokens)
{
    return pairs > 1 && pairs * tokens * tokens >= SRP_PARALLEL_MIN_ELEMS ? srp_threads() : 1;
}

/* Softmax of one (b, h) pair's rows of S in place, and their entropy
 * statistics. att: [T][T] */
static void pair_softmax(srp_attention *a, size_t p)
{
    const size_t T = a->tokens;
    float *att = a->att + p * T * T;
    double sum = 0.0, sum_norm = 0.0;
    float min = INFINITY, min_norm = INFINITY;
    for (size_t r = 0; r < T; r++) {
        const size_t keys = a->causal ? r + 1 : T;
        const float ent = srp_softmax_row(att + r * T, keys, T, a->track_entropy);
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
    const size_t T = a->tokens;
    const float *att = a->att + p * T * T;
    float *ds = a->d_att + p * T * T;
    for (size_t r = 0; r < T; r++)
        srp_softmax_backward_row(att + r * T, ds + r * T, a->causal ? r + 1 : T, T);
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

srp_status srp_attention_forward_prepare(srp_attention *a, size_t batch, size_t tokens,
                                         int training)
{
    srp_status st = plans_for(a, batch, tokens, &a->fwd_plans);
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

srp_status srp_attention_forward_compute(srp_attention *a, const float *x, size_t batch,
                                         size_t tokens, float *y, int training)
{
    const size_t n = batch * tokens, D = a->dim;
    const srp_attention_plans *plans = a->fwd_plans;
    /* The activations are overwritten from here on: the previous forward
     * can no longer be differentiated, whatever follows. */
    a->have_forward = 0;
    for (size_t i = 0; i < a->n_in; i++) /* x -> [q | k | v]: [n][3D] */
        srp_linear_forward_compute(a->in_proj[i], x, n, a->qkv_out + a->in_col[i], 3 * D);
    uint64_t t0 = srp_profile_begin();
    copy_rows(a->x, x, n, D);
    a->batch = batch;
    a->tokens = tokens;
    srp_profile_end(SRP_PROF_ATTENTION_COPY, t0);

    t0 = srp_profile_begin();
    const float *q = a->qkv_out, *k = q + D, *v = q + 2 * D;
    srp_bgemm_run(plans->qk, q, k, a->att);
    const long pairs = (long)(batch * a->heads);
#pragma omp parallel for num_threads(pair_threads((size_t)pairs, tokens)) schedule(static)
    for (long p = 0; p < pairs; p++)
        pair_softmax(a, (size_t)p);
    int finite = 1;
    a->dropped = training && a->dropout > 0.0f;
    if (a->dropped) {
        srp_rng next = a->dropout_rng; /* the draw is committed with the forward */
        a->dropout_key = srp_rng_next_u64(&next);
        /* A NaN in A (an overflow in the logits) could be dropped from y:
         * it is looked for here. */
        finite = srp_dropout_apply(a->att, a->att_drop, (size_t)pairs * tokens * tokens,
                                   a->dropout_key, a->dropout);
    }
    srp_bgemm_run(plans->av, a->dropped ? a->att_drop : a->att, v, a->o_cat);
    srp_profile_end(SRP_PROF_ATTENTION_CORE, t0);

    srp_linear_forward_compute(a->proj, a->o_cat, n, y, D);
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

srp_status srp_attention_forward(srp_attention *a, const float *x, size_t batch, size_t tokens,
                                 float *y, int training)
{
    if (!a || !x || !y)
        return SRP_FAIL_NULL(a, x, y);
    if (batch == 0 || tokens == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_attention_forward: %s is 0",
                        batch == 0 ? "batch" : "tokens");
    if (batch > a->max_batch || tokens > a->max_tokens)
        return srp_fail(SRP_ERR_SHAPE,
                        "srp_attention_forward: batch %zu > max_batch %zu or tokens %zu > "
                        "max_tokens %zu (the maxima given at create)",
                        batch, a->max_batch, tokens, a->max_tokens);
    const size_t n = batch * tokens;
    if (!srp_linear_batch_ok(a->proj, n)) /* only when the maxima themselves are at the limit */
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_attention_forward: batch %zu x tokens %zu rows are too many", batch,
                        tokens);
    srp_status st = srp_attention_forward_prepare(a, batch, tokens, training);
    if (st == SRP_OK)
        st = srp_attention_forward_compute(a, x, batch, tokens, y, training);
    if (st != SRP_OK)
        return st;
    srp_attention_forward_commit(a, training);
    return SRP_OK;
}

srp_status srp_attention_backward_prepare(srp_attention *a, const float *dy, float *dx)
{
    const size_t n = a->batch * a->tokens, D = a->dim;
    srp_attention_plans *plans;
    srp_status st = plans_for(a, a->batch, a->tokens, &plans);
    if (st != SRP_OK)
        return st;
    /* Both layers' gradients are computed and checked before either is
     * added in: a failure leaves every gradient of the module as it was. */
    st = srp_linear_backward_prepare(a->proj, a->o_cat, dy, D, n, a->d_ocat, 0);
    if (st != SRP_OK)
        return st;

    const uint64_t t0 = srp_profile_begin();
    const float *q = a->qkv_out, *k = q + D, *v = q + 2 * D;
    float *dq = a->d_qkv, *dk = dq + D, *dv = dq + 2 * D;
    srp_bgemm_run(plans->dv, a->dropped ? a->att_drop : a->att, a->d_ocat, dv);
    srp_bgemm_run(plans->da, a->d_ocat, v, a->d_att);
    const long pairs = (long)(a->batch * a->heads);
    if (a->dropped) /* dA through the mask: the forward's, from its key */
        srp_dropout_apply(a->d_att, a->d_att, (size_t)pairs * a->tokens * a->tokens, a->dropout_key,
                          a->dropout);
#pragma omp parallel for num_threads(pair_threads((size_t)pairs, a->tokens)) schedule(static)
    for (long p = 0; p < pairs; p++)
        pair_softmax_backward(a, (size_t)p);
    srp_bgemm_run(plans->dq, a->d_att, k, dq);
    srp_bgemm_run(plans->dk, a->d_att, q, dk);
    srp_profile_end(SRP_PROF_ATTENTION_CORE, t0);

    for (size_t i = 0; i < a->n_in && st == SRP_OK; i++) /* dx = sum over the projections */
        st = srp_linear_backward_prepare(a->in_proj[i], a->x, a->d_qkv + a->in_col[i], 3 * D, n, dx,
                                         i > 0);
    return st;
}

void srp_attention_backward_commit(srp_attention *a)
{
    each_linear(a, srp_linear_backward_commit); /* each adds its own gradients */
    srp_order_backward_done(&a->order);
}

srp_status srp_attention_backward(srp_attention *a, const float *dy, float *dx)
{
    if (!a || !dy)
        return SRP_FAIL_NULL(a, dy);
    if (!a->have_forward)
        return srp_fail(SRP_ERR_UNSUPPORTED,
                        "srp_attention_backward: no forward to differentiate (none ran, or the "
                        "last one failed and overwrote the activations)");
    srp_status st = srp_order_backward(&a->order, "srp_attention_backward");
    if (st == SRP_OK)
        st = srp_attention_backward_prepare(a, dy, dx);
    if (st != SRP_OK)
        return st;
    srp_attention_backward_commit(a);
    return SRP_OK;
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
