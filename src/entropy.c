/* Attention entropy: the per-head figures of the last forward, and the lower
 * bound of Theorem 3.1 (Zhai et al. 2023).
 *
 * Theorem 3.1: for logits a = X M X^T with s = ||M||_2 ||X X^T||_2 and
 * beta = exp(-s sqrt(T/(T-1))), every row of softmax(a) has entropy
 *     >= log(1 + (T-1) beta) + s sqrt(T(T-1)) beta / (1 + (T-1) beta),
 * with equality for the logit row z_1 = s sqrt((T-1)/T), z_j = -s/sqrt(T(T-1)).
 * For head h, S = Q K^T / sqrt(dh) with q = x W_hat_q^T + b_q, so with
 * X~ = [X | 1], Q~_h = [W_hat_q,h | b_q,h] (dh x (D+1)) and K~_h alike,
 * S = X~ M_h X~^T, M_h = Q~_h^T K~_h / sqrt(dh).
 * ||M_h||_2^2 = lambda_max(K~^T G_q K~) / dh, whose non-zero eigenvalues are
 * those of the dh x dh product G_q G_k (G_q = Q~ Q~^T, G_k = K~ K~^T): the
 * power iteration runs on that product, M itself is never formed.
 * ||X~ X~^T||_2 = lambda_max of the smaller Gram matrix of X~. */
#include <math.h>
#include <string.h>

#include "attention_internal.h"

srp_status srp_attention_entropy(const srp_attention *a, float *mean_per_head,
                                 float *min_per_head)
{
    if (!a)
        return SRP_ERR_INVALID_ARG;
    if (!a->have_forward || !a->track_entropy)
        return SRP_ERR_UNSUPPORTED;
    const size_t H = a->heads, rows = a->batch * a->tokens;
    for (size_t h = 0; h < H; h++) {
        double sum = 0.0;
        float min = INFINITY;
        for (size_t b = 0; b < a->batch; b++) { /* fixed order: same bits every time */
            const float v = a->pair_min[b * H + h];
            sum += a->pair_sum[b * H + h];
            min = v < min || v != v ? v : min;
        }
        if (mean_per_head)
            mean_per_head[h] = (float)(sum / (double)rows);
        if (min_per_head)
            min_per_head[h] = min;
    }
    return SRP_OK;
}

srp_status srp_attention_entropy_normalized(const srp_attention *a, float *mean_per_head,
                                            float *min_per_head)
{
    if (!a)
        return SRP_ERR_INVALID_ARG;
    if (!a->have_forward || !a->track_entropy)
        return SRP_ERR_UNSUPPORTED;
    const size_t H = a->heads, T = a->tokens;
    /* Rows with a single key (T = 1, or the first query when causal) have
     * entropy 0 = log 1 and are left out. */
    const size_t rows_per_pair = a->causal ? T - 1 : (T >= 2 ? T : 0);
    const size_t rows = a->batch * rows_per_pair;
    for (size_t h = 0; h < H; h++) {
        double sum = 0.0;
        float min = INFINITY;
        for (size_t b = 0; b < a->batch; b++) {
            const float v = a->pair_min_norm[b * H + h];
            sum += a->pair_sum_norm[b * H + h];
            min = v < min || v != v ? v : min;
        }
        if (mean_per_head)
            mean_per_head[h] = rows ? (float)(sum / (double)rows) : 1.0f;
        if (min_per_head)
            min_per_head[h] = rows ? min : 1.0f;
    }
    return SRP_OK;
}

double srp_entropy_lower_bound(double s, size_t tokens)
{
    if (!(s >= 0.0))
        return NAN;
    if (tokens < 2)
        return 0.0; /* one key: the entropy is 0 */
    const double t = (double)tokens, tm1 = t - 1.0;
    if (isinf(s))
        return 0.0;
    const double beta = exp(-s * sqrt(t / tm1));
    const double den = 1.0 + tm1 * beta;
    return log1p(tm1 * beta) + s * sqrt(t * tm1) * beta / den;
}

/* Power iteration for lambda_max(P) with P = G1 G2, G1 and G2 symmetric PSD
 * [n][n] (G2 = NULL: P = G1). P is similar to G2^1/2 G1 G2^1/2, so the
 * estimate (y^T G1 y) / (x^T y), y = G2 x, is a Rayleigh quotient of a
 * symmetric PSD matrix: it never exceeds lambda_max and rises to it. Stops
 * when it changes by less than 1e-13 relative, or after 2000 steps.
 * x, y, z: [n] scratch. */
static double top_eigenvalue(const double *g1, const double *g2, size_t n, double *x, double *y,
                             double *z)
{
    /* A fixed start with no special structure (not orthogonal to anything
     * a Gram matrix favours, such as the all-ones direction). */
    srp_rng rng;
    srp_rng_seed(&rng, 0x5eed);
    double norm = 0.0;
    for (size_t i = 0; i < n; i++) {
        x[i] = 1.0 + 0.5 * srp_rng_uniform(&rng);
        norm += x[i] * x[i];
    }
    norm = sqrt(norm);
    for (size_t i = 0; i < n; i++)
        x[i] /= norm;
    double lambda = 0.0;
    for (int it = 0; it < 2000; it++) {
        const double *gx = x;
        if (g2) { /* y = G2 x */
            for (size_t i = 0; i < n; i++) {
                double acc = 0.0;
                for (size_t j = 0; j < n; j++)
                    acc += g2[i * n + j] * x[j];
                y[i] = acc;
            }
            gx = y;
        }
        double num = 0.0, den = 0.0, zz = 0.0;
        for (size_t i = 0; i < n; i++) { /* z = G1 y */
            double acc = 0.0;
            for (size_t j = 0; j < n; j++)
                acc += g1[i * n + j] * gx[j];
            z[i] = acc;
            num += gx[i] * acc;
            den += x[i] * gx[i];
            zz += acc * acc;
        }
        if (!isfinite(num) || !isfinite(den) || !isfinite(zz))
            return NAN;
        if (!(den > 0.0) || !(zz > 0.0))
            return 0.0; /* x in the null space: the matrix is 0 there */
        const double next = num / den;
        const double inv = 1.0 / sqrt(zz);
        for (size_t i = 0; i < n; i++)
            x[i] = z[i] * inv;
        const int done = fabs(next - lambda) <= 1e-13 * next;
        lambda = next;
        if (done)
            break;
    }
    return lambda;
}

/* ||X~_b||_2^2 for the last forward's example b: X~ = [X_b | 1], [T][D+1]. */
static double input_norm_squared(srp_attention *a, size_t b)
{
    const size_t T = a->tokens, D = a->dim, cols = D + 1;
    double *xt = a->bound_x;
    const float *x = a->x + b * T * D;
    for (size_t t = 0; t < T; t++) {
        for (size_t d = 0; d < D; d++)
            xt[t * cols + d] = x[t * D + d];
        xt[t * cols + D] = 1.0;
    }
    /* The smaller Gram matrix: X~ X~^T [T][T] or X~^T X~ [D+1][D+1]. */
    const int tokens_side = T <= cols;
    const size_t n = tokens_side ? T : cols;
    srp_dsyrk_full(!tokens_side, n, tokens_side ? cols : T, xt, cols, a->bound_gram, n);
    double *v = a->bound_vecs;
    const size_t stride = a->gram_n > cols ? a->gram_n : cols;
    return top_eigenvalue(a->bound_gram, NULL, n, v, v + stride, v + 2 * stride);
}

/* ||M_h||_2 for head h with the weights of the last forward (a copy: the
 * optimizer may have moved the live ones since). */
static double head_logit_norm(srp_attention *a, size_t h)
{
    const size_t D = a->dim, dh = a->head_dim, cols = D + 1;
    const float *w = a->fwd_wqk;    /* [2D][D]: the q rows, then the k rows */
    const float *bias = a->fwd_bqk; /* [2D], zeros without a bias */
    const double scale = a->fwd_scale;
    double *qt = a->bound_qk, *kt = qt + dh * cols;   /* Q~, K~: [dh][D+1] */
    double *gq = kt + dh * cols, *gk = gq + dh * dh;  /* G_q, G_k: [dh][dh] */
    for (size_t r = 0; r < dh; r++) {
        const size_t rq = h * dh + r, rk = D + h * dh + r; /* rows of W_qkv */
        for (size_t d = 0; d < D; d++) {
            qt[r * cols + d] = scale * w[rq * D + d];
            kt[r * cols + d] = scale * w[rk * D + d];
        }
        qt[r * cols + D] = bias[rq]; /* the bias is not rescaled */
        kt[r * cols + D] = bias[rk];
    }
    srp_dsyrk_full(0, dh, cols, qt, cols, gq, dh);
    srp_dsyrk_full(0, dh, cols, kt, cols, gk, dh);
    double *v = a->bound_vecs;
    const size_t stride = a->gram_n > cols ? a->gram_n : cols;
    const double lambda = top_eigenvalue(gq, gk, dh, v, v + stride, v + 2 * stride);
    return sqrt(lambda / (double)dh);
}

srp_status srp_attention_entropy_bound(srp_attention *a, float *bound_per_head)
{
    if (!a || !bound_per_head)
        return SRP_ERR_INVALID_ARG;
    if (a->causal)
        return SRP_ERR_UNSUPPORTED; /* the theorem is for full attention */
    if (!a->have_forward)
        return SRP_ERR_UNSUPPORTED;
    /* The bound falls as s grows, so the batch minimum comes from the
     * example with the largest ||X~ X~^T||. */
    double x_norm = 0.0;
    for (size_t b = 0; b < a->batch; b++) {
        const double v = input_norm_squared(a, b);
        if (!isfinite(v))
            return SRP_ERR_NUMERIC;
        x_norm = v > x_norm ? v : x_norm;
    }
    for (size_t h = 0; h < a->heads; h++) {
        const double m = head_logit_norm(a, h);
        if (!isfinite(m))
            return SRP_ERR_NUMERIC;
        bound_per_head[h] = (float)srp_entropy_lower_bound(m * x_norm, a->tokens);
    }
    return SRP_OK;
}
