/* Multi-head softmax attention (timm layout) with sigmaReparam qkv and proj.
 *
 * x: [B][T][D] -> qkv (one sigmaReparam linear D -> 3D) -> per (b, h):
 *     S = Q K^T / sqrt(dh)      A = softmax_rows(S)      O = A V
 * -> o_cat [B][T][D] (head h in columns h*dh..) -> proj (D -> D) -> y.
 * Backward per (b, h), with dO from proj's backward:
 *     dV = A^T dO   dA = dO V^T   dS = A * (dA - rowsum(dA * A))
 *     dQ = dS K / sqrt(dh)       dK = dS^T Q / sqrt(dh)
 *
 * Threads. The per-(b, h) products are small (50x50x32 in the ViT-lite), and
 * OpenBLAS spends more on each call's set-up than on its arithmetic there, so
 * handing each call two threads gains nothing. What scales is running whole
 * (b, h) pairs side by side, one per thread, each with single-threaded GEMMs:
 * the OpenMP build of OpenBLAS does exactly that when called inside our
 * parallel region (it sees omp_in_parallel). With another OpenBLAS build we
 * must not call it from our threads, so the pairs run in turn and each GEMM
 * uses OpenBLAS's own threads. Rows of S are processed in blocks small
 * enough to stay in L2 from the GEMM that writes them, through the softmax,
 * to the GEMM that reads them. For a given thread count the results are the
 * same bits on every run: each pair is computed by one thread, and per-pair
 * entropy sums are reduced in a fixed order. (Across thread counts OpenBLAS
 * itself rounds differently.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "attention_internal.h"

srp_attention_config srp_attention_config_default(size_t dim, size_t heads)
{
    srp_attention_config c;
    memset(&c, 0, sizeof(c));
    c.dim = dim;
    c.heads = heads;
    c.causal = 0;
    c.track_entropy = 1;
    c.qkv = srp_linear_config_default(dim, 3 * dim);
    c.proj = srp_linear_config_default(dim, dim);
    c.seed = 0;
    return c;
}

size_t srp_attention_rows_per_block(size_t tokens)
{
    size_t rows = 65536 / (tokens ? tokens : 1); /* a 256 KiB block of S */
    if (rows < 16)
        rows = 16;
    return rows < tokens ? rows : tokens;
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

srp_status srp_attention_create(srp_attention **out, const srp_attention_config *cfg,
                                size_t max_batch, size_t max_tokens)
{
    if (!out)
        return SRP_ERR_INVALID_ARG;
    *out = NULL;
    if (!cfg || cfg->dim == 0 || cfg->heads == 0 || cfg->dim % cfg->heads != 0 ||
        max_batch == 0 || max_tokens == 0 ||
        !sizes_ok(max_batch, max_tokens, cfg->dim, cfg->heads))
        return SRP_ERR_INVALID_ARG;
    srp_attention *a = calloc(1, sizeof(*a));
    if (!a)
        return SRP_ERR_NOMEM;
    const size_t D = cfg->dim, H = cfg->heads, B = max_batch, T = max_tokens;
    a->dim = D;
    a->heads = H;
    a->head_dim = D / H;
    a->causal = cfg->causal != 0;
    a->track_entropy = cfg->track_entropy != 0;
    a->max_batch = B;
    a->max_tokens = T;

    /* The two projections get their own seeds, drawn from the module's. */
    srp_rng rng;
    srp_rng_seed(&rng, cfg->seed);
    srp_linear_config qc = cfg->qkv, pc = cfg->proj;
    qc.in_features = D;
    qc.out_features = 3 * D;
    qc.seed = srp_rng_next_u64(&rng);
    pc.in_features = D;
    pc.out_features = D;
    pc.seed = srp_rng_next_u64(&rng);
    srp_status st = srp_linear_create(&a->qkv, &qc);
    if (st == SRP_OK)
        st = srp_linear_create(&a->proj, &pc);
    if (st != SRP_OK) {
        srp_attention_destroy(a);
        return st;
    }

    int slots = omp_get_num_procs();
    if (srp_threads() > slots)
        slots = srp_threads();
    a->slots = slots;
    a->gram_n = T < D + 1 ? T : D + 1;
    a->bound_vec_len = a->gram_n > a->head_dim ? a->gram_n : a->head_dim;
    a->x = malloc(sizeof(float) * B * T * D);
    a->fwd_wqk = malloc(sizeof(float) * 2 * D * D);
    a->fwd_bqk = calloc(2 * D, sizeof(float));
    a->qkv_out = malloc(sizeof(float) * B * T * 3 * D);
    a->att = malloc(sizeof(float) * B * H * T * T);
    a->o_cat = malloc(sizeof(float) * B * T * D);
    a->d_ocat = malloc(sizeof(float) * B * T * D);
    a->d_qkv = malloc(sizeof(float) * B * T * 3 * D);
    /* A block is rows_per_block(t) * t floats, which is not monotone in t:
     * t * t up to 256 tokens, then at most max(65536, 16 t). */
    a->slot_stride = 65536 > 16 * T ? 65536 : 16 * T;
    if (a->slot_stride > T * T)
        a->slot_stride = T * T;
    a->d_att = malloc(sizeof(float) * (size_t)slots * a->slot_stride);
    a->pair_sum = malloc(sizeof(double) * B * H);
    a->pair_sum_norm = malloc(sizeof(double) * B * H);
    a->pair_min = malloc(sizeof(float) * B * H);
    a->pair_min_norm = malloc(sizeof(float) * B * H);
    a->inv_log_keys = malloc(sizeof(double) * (T + 1));
    a->bound_x = malloc(sizeof(double) * T * (D + 1));
    a->bound_gram = malloc(sizeof(double) * a->gram_n * a->gram_n);
    a->bound_vecs = malloc(sizeof(double) * 4 * a->bound_vec_len);
    a->bound_qk = malloc(sizeof(double) * 2 * a->head_dim * (D + 1 + 2 * a->head_dim));
    if (!a->x || !a->fwd_wqk || !a->fwd_bqk || !a->qkv_out || !a->att || !a->o_cat || !a->d_ocat || !a->d_qkv || !a->d_att ||
        !a->pair_sum || !a->pair_sum_norm || !a->pair_min || !a->pair_min_norm ||
        !a->inv_log_keys || !a->bound_x || !a->bound_gram || !a->bound_vecs || !a->bound_qk) {
        srp_attention_destroy(a);
        return SRP_ERR_NOMEM;
    }
    for (size_t k = 0; k <= T; k++)
        a->inv_log_keys[k] = k >= 2 ? 1.0 / log((double)k) : 0.0;
    *out = a;
    return SRP_OK;
}

void srp_attention_destroy(srp_attention *a)
{
    if (!a)
        return;
    srp_linear_destroy(a->qkv);
    srp_linear_destroy(a->proj);
    free(a->x);
    free(a->fwd_wqk);
    free(a->fwd_bqk);
    free(a->qkv_out);
    free(a->att);
    free(a->o_cat);
    free(a->d_ocat);
    free(a->d_qkv);
    free(a->d_att);
    free(a->pair_sum);
    free(a->pair_sum_norm);
    free(a->pair_min);
    free(a->pair_min_norm);
    free(a->inv_log_keys);
    free(a->bound_x);
    free(a->bound_gram);
    free(a->bound_vecs);
    free(a->bound_qk);
    free(a);
}

srp_linear *srp_attention_qkv(srp_attention *a) { return a ? a->qkv : NULL; }
srp_linear *srp_attention_proj(srp_attention *a) { return a ? a->proj : NULL; }
size_t srp_attention_heads(const srp_attention *a) { return a ? a->heads : 0; }
size_t srp_attention_dim(const srp_attention *a) { return a ? a->dim : 0; }

/* Threads for the (b, h) loop: > 1 only when OpenBLAS may be called from
 * them, and never more than there are scratch slots. */
static int pair_threads(const srp_attention *a, size_t pairs)
{
    if (!srp_blas_nests_in_openmp() || pairs < 2)
        return 1;
    int t = srp_threads();
    if (t > a->slots)
        t = a->slots;
    return t;
}

/* Forward of one (b, h) pair: A = softmax(Q K^T / sqrt(dh)), O = A V, and
 * the entropy statistics of its rows.
 * q, k, v: [T][dh] with row stride 3D; att: [T][T]; o: [T][dh], stride D. */
static void pair_forward(srp_attention *a, size_t b, size_t h)
{
    const size_t T = a->tokens, D = a->dim, dh = a->head_dim, ld = 3 * D;
    const float *q = a->qkv_out + b * T * ld + h * dh, *k = q + D, *v = q + 2 * D;
    float *att = a->att + (b * a->heads + h) * T * T;
    float *o = a->o_cat + b * T * D + h * dh;
    const float scale = 1.0f / sqrtf((float)dh);
    const size_t rb = srp_attention_rows_per_block(T);
    double sum = 0.0, sum_norm = 0.0;
    float min = INFINITY, min_norm = INFINITY;
    for (size_t r0 = 0; r0 < T; r0 += rb) {
        const size_t rows = r0 + rb < T ? rb : T - r0;
        const size_t cols = a->causal ? r0 + rows : T; /* keys any row here sees */
        float *s = att + r0 * T;
        /* S_blk = scale Q_blk K^T: [rows][cols] (row stride T) */
        srp_sgemm(0, 1, rows, cols, dh, scale, q + r0 * ld, ld, k, ld, 0.0f, s, T);
        for (size_t r = 0; r < rows; r++) {
            const size_t keys = a->causal ? r0 + r + 1 : T;
            const float ent = srp_softmax_row(s + r * T, keys, T, a->track_entropy);
            sum += ent;
            min = ent < min || ent != ent ? ent : min; /* a NaN stays in the min too */
            if (keys >= 2) {
                const float en = (float)(ent * a->inv_log_keys[keys]);
                sum_norm += en;
                min_norm = en < min_norm || en != en ? en : min_norm;
            }
        }
        /* O_blk = A_blk V: [rows][dh] = [rows][cols] x [cols][dh] */
        srp_sgemm(0, 0, rows, dh, cols, 1.0f, s, T, v, ld, 0.0f, o + r0 * D, D);
    }
    const size_t p = b * a->heads + h;
    a->pair_sum[p] = sum;
    a->pair_min[p] = min;
    a->pair_sum_norm[p] = sum_norm;
    a->pair_min_norm[p] = min_norm;
}

srp_status srp_attention_forward(srp_attention *a, const float *x, size_t batch, size_t tokens,
                                 float *y, int training)
{
    if (!a || !x || !y || batch == 0 || tokens == 0)
        return SRP_ERR_INVALID_ARG;
    if (batch > a->max_batch || tokens > a->max_tokens)
        return SRP_ERR_SHAPE;
    const size_t n = batch * tokens, D = a->dim;
    if (!srp_linear_batch_ok(a->qkv, n))
        return SRP_ERR_INVALID_ARG;
    /* Both layers' power steps and checks first: if either fails, nothing
     * of the module has changed. */
    srp_status st = srp_linear_forward_prepare(a->qkv, training);
    if (st == SRP_OK)
        st = srp_linear_forward_prepare(a->proj, training);
    if (st != SRP_OK)
        return st;

    srp_linear_forward_commit(a->qkv, x, n, a->qkv_out, training);
    memcpy(a->x, x, sizeof(float) * n * D);
    memcpy(a->fwd_wqk, srp_linear_weight(a->qkv), sizeof(float) * 2 * D * D);
    if (srp_linear_bias(a->qkv))
        memcpy(a->fwd_bqk, srp_linear_bias(a->qkv), sizeof(float) * 2 * D);
    a->fwd_scale = srp_linear_forward_scale(a->qkv);
    a->batch = batch;
    a->tokens = tokens;

    const long pairs = (long)(batch * a->heads);
    const size_t H = a->heads;
#pragma omp parallel for num_threads(pair_threads(a, (size_t)pairs)) schedule(static)
    for (long p = 0; p < pairs; p++)
        pair_forward(a, (size_t)p / H, (size_t)p % H);

    srp_linear_forward_commit(a->proj, a->o_cat, n, y, training);
    a->have_forward = 1;
    return SRP_OK;
}

/* Backward of one (b, h) pair into d_qkv; ds: this thread's [rb][T] scratch.
 * dO: [T][dh], stride D; dq, dk, dv: [T][dh], stride 3D. */
static void pair_backward(srp_attention *a, size_t b, size_t h, float *ds)
{
    const size_t T = a->tokens, D = a->dim, dh = a->head_dim, ld = 3 * D;
    const float *q = a->qkv_out + b * T * ld + h * dh, *k = q + D, *v = q + 2 * D;
    const float *att = a->att + (b * a->heads + h) * T * T;
    const float *d_o = a->d_ocat + b * T * D + h * dh;
    float *dq = a->d_qkv + b * T * ld + h * dh, *dk = dq + D, *dv = dq + 2 * D;
    const float scale = 1.0f / sqrtf((float)dh);
    const size_t rb = srp_attention_rows_per_block(T);
    /* dK and dV gather contributions from every block of queries. */
    for (size_t t = 0; t < T; t++) {
        memset(dk + t * ld, 0, sizeof(float) * dh);
        memset(dv + t * ld, 0, sizeof(float) * dh);
    }
    for (size_t r0 = 0; r0 < T; r0 += rb) {
        const size_t rows = r0 + rb < T ? rb : T - r0;
        const size_t cols = a->causal ? r0 + rows : T;
        const float *p = att + r0 * T;
        /* dV += A_blk^T dO_blk: [cols][dh] = [cols][rows] x [rows][dh] */
        srp_sgemm(1, 0, cols, dh, rows, 1.0f, p, T, d_o + r0 * D, D, 1.0f, dv, ld);
        /* dA_blk = dO_blk V^T: [rows][cols] = [rows][dh] x [dh][cols] */
        srp_sgemm(0, 1, rows, cols, dh, 1.0f, d_o + r0 * D, D, v, ld, 0.0f, ds, T);
        for (size_t r = 0; r < rows; r++)
            srp_softmax_backward_row(p + r * T, ds + r * T, a->causal ? r0 + r + 1 : T, cols);
        /* dQ_blk = scale dS_blk K: [rows][dh] = [rows][cols] x [cols][dh] */
        srp_sgemm(0, 0, rows, dh, cols, scale, ds, T, k, ld, 0.0f, dq + r0 * ld, ld);
        /* dK += scale dS_blk^T Q_blk: [cols][dh] = [cols][rows] x [rows][dh] */
        srp_sgemm(1, 0, cols, dh, rows, scale, ds, T, q + r0 * ld, ld, 1.0f, dk, ld);
    }
}

srp_status srp_attention_backward(srp_attention *a, const float *dy, float *dx)
{
    if (!a || !dy)
        return SRP_ERR_INVALID_ARG;
    if (!a->have_forward)
        return SRP_ERR_UNSUPPORTED;
    const size_t n = a->batch * a->tokens;
    /* Both layers' gradients are computed and checked before either is
     * added in: a failure leaves every gradient of the module as it was. */
    srp_status st = srp_linear_backward_prepare(a->proj, a->o_cat, dy, n, a->d_ocat);
    if (st != SRP_OK)
        return st;

    const long pairs = (long)(a->batch * a->heads);
    const size_t H = a->heads;
#pragma omp parallel for num_threads(pair_threads(a, (size_t)pairs)) schedule(static)
    for (long p = 0; p < pairs; p++)
        pair_backward(a, (size_t)p / H, (size_t)p % H,
                      a->d_att + (size_t)omp_get_thread_num() * a->slot_stride);

    st = srp_linear_backward_prepare(a->qkv, a->x, a->d_qkv, n, dx);
    if (st != SRP_OK)
        return st;
    srp_linear_backward_commit(a->proj);
    srp_linear_backward_commit(a->qkv);
    return SRP_OK;
}
