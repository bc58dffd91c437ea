/* Attention entropy: the per-head figures of the last forward, and the lower
 * bound of Theorem 3.1 (Zhai et al. 2023).
 *
 * Theorem 3.1: for logits a = X M X^T with s = ||M||_2 ||X X^T||_2 and
 * beta = exp(-s sqrt(T/(T-1))), every row of softmax(a) has entropy
 *     >= log(1 + (T-1) beta) + s sqrt(T(T-1)) beta / (1 + (T-1) beta),
 * with equality for the logit row z_1 = s sqrt((T-1)/T), z_j = -s/sqrt(T(T-1)).
 * For head h, S = Q K^T / sqrt(dh) with q = x W_hat_q^T + b_q and k alike.
 * With X~ = [X | 1], Q~_h = [W_hat_q,h | b_q,h] (dh x (D+1)) and
 * K~_h = [W_hat_k,h | 0]: S = X~ M_h X~^T + c 1^T, M_h = Q~_h^T K~_h / sqrt(dh),
 * c_i = q_i . b_k,h / sqrt(dh). The key bias adds the same c_i to every
 * logit of row i, which the softmax ignores (attention.h has the proof), so
 * the theorem applies to X~ M_h X~^T, whose s leaves the key bias out.
 * ||M_h||_2^2 = lambda_max(K~^T G_q K~) / dh, whose non-zero eigenvalues are
 * those of the dh x dh product G_q G_k (G_q = Q~ Q~^T, G_k = K~ K~^T, which
 * is W_hat_k,h W_hat_k,h^T); M itself is never formed. ||X~ X~^T||_2 =
 * lambda_max of the smaller Gram matrix of X~. Eigenvalues come from
 * LAPACK (dsyev), raised by its error bound, so that every norm is an upper
 * bound and the entropy bound a lower one; see entropy_bound_terms for the
 * float margins.
 *
 * Causal rows (attention.h has the derivation): row i is a softmax over
 * k = i + 1 logits of 2-norm <= s too, so its entropy is >= f(s, k), and
 * the mean over the rows of a sequence is >= (1/T) sum_k f(s, k).
 * Padding masks and cross-attention (attention.h has the derivations):
 * per example, s_b from its unmasked rows (and its memory's), and f at
 * each row's number of unmasked keys. */
#include <math.h>
#include <string.h>

#include "attention_internal.h"

/* Per head: the mean over `rows` rows from the per-(b, h) sums, and the min
 * of the per-(b, h) minima, in a fixed order (the same bits every time);
 * empty (rows 0) gives `empty` for both. sums, mins: [B][H] */
static void reduce_per_head(const srp_attention *a, const double *sums, const float *mins,
                            size_t rows, float empty, float *mean_per_head, float *min_per_head)
{
    const size_t H = a->heads;
    for (size_t h = 0; h < H; h++) {
        double sum = 0.0;
        float min = INFINITY;
        for (size_t b = 0; b < a->batch; b++) {
            const float v = mins[b * H + h];
            sum += sums[b * H + h];
            min = v < min || v != v ? v : min; /* a NaN stays in the min */
        }
        if (mean_per_head)
            mean_per_head[h] = rows ? (float)(sum / (double)rows) : empty;
        if (min_per_head)
            min_per_head[h] = rows ? min : empty;
    }
}

/* The query rows of the last forward with at least min_keys keys: those
 * that the entropies count (1), or the normalized ones (2). The same for
 * every head. */
static size_t counted_rows(const srp_attention *a, size_t min_keys)
{
    size_t rows = 0;
    for (size_t b = 0; b < a->batch; b++)
        for (size_t r = 0; r < a->tokens; r++)
            rows += srp_attention_row_keys(a, b, r) >= min_keys;
    return rows;
}

srp_status srp_attention_entropy(const srp_attention *a, float *mean_per_head, float *min_per_head)
{
    if (!a)
        return SRP_FAIL_NULL(a);
    if (!a->have_forward || !a->track_entropy)
        return SRP_ERR_UNSUPPORTED;
    const uint64_t t0 = srp_profile_begin();
    reduce_per_head(a, a->pair_sum, a->pair_min, counted_rows(a, 1), 0.0f, mean_per_head,
                    min_per_head);
    srp_profile_end(SRP_PROF_ENTROPY, t0);
    return SRP_OK;
}

srp_status srp_attention_entropy_normalized(const srp_attention *a, float *mean_per_head,
                                            float *min_per_head)
{
    if (!a)
        return SRP_FAIL_NULL(a);
    if (!a->have_forward || !a->track_entropy)
        return SRP_ERR_UNSUPPORTED;
    const uint64_t t0 = srp_profile_begin();
    /* Rows with a single key (T = 1, the first query when causal, a key
     * length of 1) have entropy 0 = log 1 and are left out, as are padded
     * query rows; none left: 1 (uniform). */
    reduce_per_head(a, a->pair_sum_norm, a->pair_min_norm, counted_rows(a, 2), 1.0f,
                    mean_per_head, min_per_head);
    srp_profile_end(SRP_PROF_ENTROPY, t0);
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

/* Rounding units: float's u, and double's. */
#define F32_UNIT 0x1p-24
#define F64_UNIT 0x1p-53

/* gamma_k = k u / (1 - k u): the classic bound on the relative error of k
 * float operations in a row (Higham, Accuracy and Stability, 3.1). */
static double gamma_f32(double k) { return k * F32_UNIT / (1.0 - k * F32_UNIT); }

/* An upper bound on lambda_max of the symmetric PSD matrix g [n][n] (both
 * triangles; destroyed) whose entries carry rounding errors of at most
 * k_rounding double operations: LAPACK's eigenvalue plus its error bound
 * (p(n) eps ||g||, with ||g||_2 <= trace for PSD g), plus the entries' own. */
static double top_eigenvalue_upper(srp_attention *a, double *g, size_t n, double k_rounding)
{
    double trace = 0.0;
    for (size_t i = 0; i < n; i++)
        trace += g[i * n + i];
    double *w = a->bound_vecs, *work = w + a->bound_vec_len;
    if (!isfinite(trace) || srp_lapack_dsyev(0, n, g, n, w, work, 3 * a->bound_vec_len) != 0 ||
        !isfinite(w[n - 1]))
        return NAN;
    const double top = w[n - 1] > 0.0 ? w[n - 1] : 0.0;
    return top + (16.0 * (double)n + k_rounding) * F64_UNIT * trace;
}

/* X~ = [X | 1] ([T][D+1]) of T rows of x ([T][D]: one example's first
 * rows); returns an upper bound on ||X~||_2^2 = ||X~ X~^T||_2, and
 * *frobenius2 = ||X~||_F^2. */
static double input_gram_norm(srp_attention *a, const float *x, size_t T, double *frobenius2)
{
    const size_t D = a->dim, cols = D + 1;
    double *xt = a->bound_x;
    double f2 = 0.0;
    for (size_t t = 0; t < T; t++) {
        for (size_t d = 0; d < D; d++) {
            xt[t * cols + d] = x[t * D + d];
            f2 += (double)x[t * D + d] * x[t * D + d];
        }
        xt[t * cols + D] = 1.0;
        f2 += 1.0;
    }
    *frobenius2 = f2;
    /* The smaller Gram matrix: X~ X~^T [T][T] or X~^T X~ [D+1][D+1]. */
    const int tokens_side = T <= cols;
    const size_t n = tokens_side ? T : cols, k = tokens_side ? cols : T;
    srp_dsyrk_full(!tokens_side, n, k, xt, cols, a->bound_gram, n);
    return top_eigenvalue_upper(a, a->bound_gram, n, (double)k);
}

/* For head h with the weights of the last forward (a copy: the optimizer may
 * have moved the live ones since): an upper bound on ||M_h||_2, and the
 * Frobenius norms of [W_hat_q,h | b_q,h] and [W_hat_k,h | b_k,h] (the
 * forward's k has its bias, M_h does not).
 * ||M_h||_2^2 dh = lambda_max(G_q G_k) = lambda_max(L^T G_q L) with
 * G_k = V Lambda V^T and L = V Lambda^1/2: a symmetric dh x dh problem. */
static double head_logit_norm(srp_attention *a, size_t h, double *q_fro, double *k_fro)
{
    const size_t D = a->dim, dh = a->head_dim, cols = D + 1;
    const float *w = a->fwd_wqk;    /* [2D][D]: the q rows, then the k rows */
    const float *bias = a->fwd_bqk; /* [2D], zeros without a bias */
    const double scale_q = a->fwd_scale_q, scale_k = a->fwd_scale_k;
    double *qt = a->bound_qk, *kt = qt + dh * cols;  /* Q~, K~: [dh][D+1] */
    double *gq = kt + dh * cols, *gk = gq + dh * dh; /* G_q, G_k: [dh][dh] */
    double *tmp = gk + dh * dh, *bm = tmp + dh * dh; /* [dh][dh] each */
    for (size_t r = 0; r < dh; r++) {
        const size_t rq = h * dh + r, rk = D + h * dh + r; /* rows of [W_q; W_k] */
        for (size_t d = 0; d < D; d++) {
            qt[r * cols + d] = scale_q * w[rq * D + d];
            kt[r * cols + d] = scale_k * w[rk * D + d];
        }
        qt[r * cols + D] = bias[rq]; /* the bias is not rescaled */
    }
    srp_dsyrk_full(0, dh, cols, qt, cols, gq, dh);
    srp_dsyrk_full(0, dh, D, kt, cols, gk, dh); /* K~'s last column is 0 */
    double tq = 0.0, tk = 0.0, bk2 = 0.0;
    for (size_t i = 0; i < dh; i++) {
        tq += gq[i * dh + i];
        tk += gk[i * dh + i];
        bk2 += (double)bias[D + h * dh + i] * bias[D + h * dh + i];
    }
    *q_fro = sqrt(tq);
    *k_fro = sqrt(tk + bk2);
    if (!isfinite(tq) || !isfinite(tk + bk2))
        return NAN;
    /* G_k = V Lambda V^T; V's columns overwrite gk (column j at gk[j * dh]). */
    double *lambda = a->bound_vecs, *work = lambda + a->bound_vec_len;
    if (srp_lapack_dsyev(1, dh, gk, dh, lambda, work, 3 * a->bound_vec_len) != 0)
        return NAN;
    /* L^T G_q L with L = V Lambda^1/2; rows of gk are V's columns. */
    srp_dgemm(0, 1, dh, dh, dh, gq, dh, gk, dh, tmp, dh); /* tmp = G_q V */
    srp_dgemm(0, 0, dh, dh, dh, gk, dh, tmp, dh, bm, dh); /* bm = V^T G_q V */
    for (size_t i = 0; i < dh; i++)
        for (size_t j = 0; j < dh; j++)
            bm[i * dh + j] *= sqrt(fmax(lambda[i], 0.0) * fmax(lambda[j], 0.0));
    /* Errors of the decomposition and the products are at most a few dh
     * eps ||G_q|| ||G_k||, both norms below their traces. */
    const double top = top_eigenvalue_upper(a, bm, dh, 0.0);
    const double upper = top + 64.0 * (double)(dh + cols) * F64_UNIT * tq * tk;
    return sqrt(upper / (double)dh);
}

/* max over the batch of ||Q_b,h||_F and ||K_b,h||_F of the float q and k
 * that the forward computed (qkv_out). */
static void head_output_norms(const srp_attention *a, size_t h, double *q_max, double *k_max)
{
    const size_t T = a->tokens, Tk = a->keys, D = a->dim, dh = a->head_dim;
    /* attention.c's layouts: [q | k | v] rows, or q and [k | v] rows */
    const size_t q_ld = a->cross ? D : 3 * D, k_ld = a->cross ? 2 * D : 3 * D;
    const float *q0 = a->qkv_out + h * dh, *k0 = a->cross ? a->kv_out + h * dh : q0 + D;
    *q_max = *k_max = 0.0;
    for (size_t b = 0; b < a->batch; b++) {
        const float *q = q0 + b * T * q_ld, *k = k0 + b * Tk * k_ld;
        double sq = 0.0, sk = 0.0;
        for (size_t t = 0; t < T; t++)
            for (size_t j = 0; j < dh; j++)
                sq += (double)q[t * q_ld + j] * q[t * q_ld + j];
        for (size_t t = 0; t < Tk; t++)
            for (size_t j = 0; j < dh; j++)
                sk += (double)k[t * k_ld + j] * k[t * k_ld + j];
        *q_max = fmax(*q_max, sqrt(sq));
        *k_max = fmax(*k_max, sqrt(sk));
    }
}

/* The largest float at or below x, and the smallest at or above it. */
static float float_at_most(double x)
{
    float f = (float)x;
    if ((double)f > x)
        f = nextafterf(f, -INFINITY);
    return f;
}

static float float_at_least(double x)
{
    float f = (float)x;
    if ((double)f < x)
        f = nextafterf(f, INFINITY);
    return f;
}

/* eps of 1. below: a bound on how far a float logit row is from the exact
 * one, from xf and kf (the largest ||X~||_F of the rows that make q and
 * k), the Frobenius norms of [W_q | b_q] and [W_k | b_k] of the head, and
 * nq, nk (those of its float Q and K). */
static double logit_rounding(const srp_attention *a, double xf, double kf, double q_fro,
                             double k_fro, double nq, double nk)
{
    const size_t D = a->dim, dh = a->head_dim;
    const double g2 = gamma_f32(2.0), scale = 1.0 / sqrt((double)dh);
    double projection = gamma_f32((double)D + 2.0);
    if (srp_linear_rounds_to_bf16(a->in_proj[0])) {
        const double r = (1.0 + SRP_BF16_UNIT) * (1.0 + SRP_BF16_UNIT);
        projection = (r - 1.0) + r * projection;
    }
    const double eq = projection * xf * q_fro;
    const double ek = projection * kf * k_fro;
    return scale * (g2 * nq * nk + eq * nk + (nq + eq) * ek +
                    (1.0 + g2) * gamma_f32((double)dh + 1.0) * nq * nk);
}

/* Head h's terms: *m, an upper bound on ||M_h||_2, and *eps, the logits'
 * rounding (logit_rounding with xf, kf); *overflowed when the forward's q
 * or k of the head holds an Inf (its bound is then 0). SRP_ERR_NUMERIC
 * when the weights are not finite. */
static srp_status head_terms(srp_attention *a, const char *call, size_t h, double xf, double kf,
                             double *m, double *eps, int *overflowed)
{
    double q_fro, k_fro, nq, nk;
    *m = head_logit_norm(a, h, &q_fro, &k_fro);
    if (!isfinite(*m))
        return srp_fail(SRP_ERR_NUMERIC,
                        "%s: head %zu's query or key weights or biases (as of the last "
                        "forward) hold a NaN or Inf, or their Gram matrices overflow",
                        call, h);
    head_output_norms(a, h, &nq, &nk);
    *eps = logit_rounding(a, xf, kf, q_fro, k_fro, nq, nk);
    *overflowed = isinf(nq) || isinf(nk);
    return SRP_OK;
}

/* max_i ||x~_i||^2 over the T rows of x ([T][D]) with x~_i = [x_i | 1],
 * raised by the rounding of the double sums; *frobenius2 = ||X~||_F^2. */
static double max_row_norm2(const float *x, size_t T, size_t D, double *frobenius2)
{
    double top = 0.0, f2 = 0.0;
    for (size_t t = 0; t < T; t++) {
        double r = 1.0;
        for (size_t d = 0; d < D; d++)
            r += (double)x[t * D + d] * x[t * D + d];
        top = fmax(top, r);
        f2 += r;
    }
    *frobenius2 = f2;
    return top * (1.0 + 2.0 * ((double)D + 2.0) * F64_UNIT);
}

/* The bound of a forward with key lengths, or of a cross-attention (the
 * derivations are in attention.h): per example b, g_b is s's input
 * factor, s_b = ||M_h|| g_b, with
 *   self-attention: g_b = ||X~_b X~_b^T||_2 over its first key_len[b]
 *     rows (the unmasked ones: no logit of an unmasked row and key reads
 *     another);
 *   cross-attention: g_b = max_i ||x~_i|| ||Mem~_b||_2, Mem~_b over the
 *     memory's unmasked rows (logit row i is x~_i^T M Mem~_b^T).
 * Every row of example b has len = key_len[b] unmasked keys (causal: row
 * i has i + 1): the minimum over the batch of f(s_b', len), or for causal
 * the mean over the unmasked rows of f(s_b', i + 1), each lowered by the
 * margins of entropy_bound_terms, with rows of Tk keys at most. */
static srp_status masked_bound_terms(srp_attention *a, const char *call, float *bound_per_head,
                                     float *s_per_head, float *m_norm_per_head,
                                     float *x_gram_norm_out)
{
    const size_t T = a->tokens, Tk = a->keys, D = a->dim;
    double g_max = 0.0, x_fro2 = 0.0, k_fro2 = 0.0;
    for (size_t b = 0; b < a->batch; b++) {
        const size_t len = a->masked ? a->key_len[b] : Tk;
        double f2, xf2, g;
        if (!a->cross) {
            g = input_gram_norm(a, a->x + b * T * D, len, &f2);
            xf2 = f2;
        } else {
            const double r2 = max_row_norm2(a->x + b * T * D, T, D, &xf2);
            g = sqrt(r2 * input_gram_norm(a, a->mem + b * Tk * D, len, &f2)) *
                (1.0 + 4.0 * F64_UNIT);
        }
        if (!isfinite(g))
            return srp_fail(SRP_ERR_NUMERIC,
                            "%s: the last forward's input x or memory (example %zu) holds a NaN "
                            "or Inf in an unmasked row, or its Gram matrix overflows",
                            call, b);
        a->bound_g[b] = g;
        g_max = fmax(g_max, g);
        x_fro2 = fmax(x_fro2, xf2);
        k_fro2 = fmax(k_fro2, f2);
    }
    const double c_softmax = gamma_f32(2.0 * (double)Tk + 32.0);
    for (size_t h = 0; h < a->heads; h++) {
        double m, eps;
        int overflowed;
        const srp_status st =
            head_terms(a, call, h, sqrt(x_fro2), sqrt(k_fro2), &m, &eps, &overflowed);
        if (st != SRP_OK)
            return st;
        double lowest = INFINITY, sum = 0.0;
        size_t rows = 0;
        for (size_t b = 0; b < a->batch; b++) {
            const size_t len = a->masked ? a->key_len[b] : Tk;
            const double s_float = overflowed ? INFINITY
                                   : (m * a->bound_g[b] + eps) *
                                         (1.0 + 2.0 * F32_UNIT * sqrt((double)Tk));
            if (!a->causal) {
                const double f = srp_entropy_lower_bound(s_float, len);
                lowest = fmin(lowest, f - c_softmax * (1.0 + f) - 1e-12);
                continue;
            }
            for (size_t k = 2; k <= len; k++) {
                const double f = srp_entropy_lower_bound(s_float, k);
                sum += fmax(f - c_softmax * (1.0 + f), 0.0);
            }
            rows += len;
        }
        const double lowered =
            a->causal ? sum / (double)rows * (1.0 - 0x1p-23) - 1e-12 : lowest;
        if (bound_per_head)
            bound_per_head[h] = lowered > 0.0 ? float_at_most(lowered) : 0.0f;
        if (s_per_head)
            s_per_head[h] = float_at_least(m * g_max);
        if (m_norm_per_head)
            m_norm_per_head[h] = float_at_least(m);
    }
    if (x_gram_norm_out)
        *x_gram_norm_out = float_at_least(g_max);
    return SRP_OK;
}

/* Theorem 3.1 holds for exact logits; what the forward measured are float
 * logits through a float softmax. The bound returned is lowered by proven
 * margins for both, so that it is never above the measured minimum:
 *  1. Logit rounding. The theorem's bound is the least entropy over logit
 *     rows of 2-norm <= s. Row i of the exact logits is z + c_i 1 with
 *     ||z|| <= s (c_i: the key bias's shift, see the top), and the float
 *     row S_f differs from it by e with ||e|| <= eps; so r = S_f - c_i 1, a
 *     shift that the softmax ignores, has ||r|| <= s + eps. eps comes from
 *     the standard GEMM error bound |fl(A B) - A B| <= gamma_k |A| |B| (any
 *     summation order, FMA or not) applied to q, k (k = D + 2: products,
 *     alpha and the bias) and S (k = dh + 1), and from the scale
 *     alpha_f = 1/sqrtf(dh), within gamma_2 of a = 1/sqrt(dh). With
 *     S_f - S = (alpha_f - a) Q_f K_f^T + a (Q_f K_f^T - Q K^T) + E,
 *     |E| <= gamma_{dh+1} alpha_f |Q_f| |K_f|^T, F = Frobenius norms,
 *     xf = ||X~||_F, and nq, nk those of the float Q_f, K_f of the head:
 *         eq = gamma_{D+2} xf ||[W_q | b_q]||_F    (>= ||Q_f - Q||_F)
 *         ek = gamma_{D+2} xf ||[W_k | b_k]||_F    (the forward's k has b_k)
 *         eps = a (gamma_2 nq nk + eq nk + (nq + eq) ek
 *                  + (1 + gamma_2) gamma_{dh+1} nq nk).
 *     With bf16 GEMM inputs (precision.c), q and k are products of x and W
 *     each rounded to bf16 (|x_b - x| <= u_b |x|, u_b = 2^-8): with
 *     r = (1 + u_b)^2, |x_b W_b^T - x W^T| <= (r - 1) |x| |W|^T, and the
 *     float GEMM of the rounded factors errs by gamma_{D+2} r times the
 *     same: so gamma_{D+2} in eq and ek becomes (r - 1) + r gamma_{D+2}
 *     (barring underflow, which the fp32 model also sets aside: below
 *     2^-126 bf16's error is absolute, at most 2^-134, and up to 2^-126
 *     where the CPU's conversion instruction reads a subnormal as 0).
 *     The attention's own products (S and P V) stay fp32.
 *     No term is a multiple of the exact row's norm, which the shift c_i
 *     can make much larger than s. The softmax's t_j = fl(s_j - m) errs by
 *     at most u |s_j - m| = u |r_j - max r| <= 2u ||r||, which moves the row
 *     by at most 2u sqrt(T) ||r||: so s' = (s + eps)(1 + 2u sqrt(T)).
 *     An overflow on the way (a logit or a k of -Inf, with y finite) needs
 *     a |q . k| or a |s_j - m| above FLT_MAX: then s' > 1e31, or nq or nk
 *     is infinite and s' is taken as infinite, and the bound is 0.
 *  2. The softmax pass (softmax.c: exp within 4 ulp, z and the weighted sum
 *     over T same-signed terms, logf within 1 ulp) computes a row entropy
 *     H as h with |h - H| <= c_T (1 + H), c_T = gamma_{2T+32}. Since
 *     H >= f(s'), h >= f(s') - c_T (1 + f(s')). (exp results below
 *     FLT_MIN, with an absolute error instead, change H and h by less than
 *     T 2^-118 nats: far below c_T. A row with a t_j of -Inf takes another
 *     formula, but its bound is 0: see the overflows in 1.)
 *  3. The result is rounded down to a float, and 1e-12 covers f's own
 *     double rounding.
 * The margins are of order 1e-6 nats at small s, where the bound is tight,
 * and vanish next to the bound's own slack elsewhere. */
static srp_status entropy_bound_terms(srp_attention *a, const char *call, float *bound_per_head,
                                      float *s_per_head, float *m_norm_per_head,
                                      float *x_gram_norm_out)
{
    if (!a->have_forward)
        return srp_fail(SRP_ERR_UNSUPPORTED,
                        "%s: no forward to bound (none ran yet, or the last one failed)", call);
    if (a->masked || a->cross)
        return masked_bound_terms(a, call, bound_per_head, s_per_head, m_norm_per_head,
                                  x_gram_norm_out);
    const size_t T = a->tokens, D = a->dim;
    /* The bound falls as s grows, so the batch minimum comes from the
     * example with the largest ||X~ X~^T||. */
    double x_gram_norm = 0.0, x_fro2 = 0.0;
    for (size_t b = 0; b < a->batch; b++) {
        double f2;
        const double v = input_gram_norm(a, a->x + b * T * D, T, &f2);
        if (!isfinite(v))
            return srp_fail(SRP_ERR_NUMERIC,
                            "%s: the last forward's input x (example %zu) "
                            "holds a NaN or Inf, or its Gram matrix overflows",
                            call, b);
        x_gram_norm = fmax(x_gram_norm, v);
        x_fro2 = fmax(x_fro2, f2);
    }
    const double xf = sqrt(x_fro2), u = F32_UNIT;
    const double c_softmax = gamma_f32(2.0 * (double)T + 32.0);
    for (size_t h = 0; h < a->heads; h++) {
        double m, eps;
        int overflowed; /* q or k overflowed in the forward; no bound but 0 */
        const srp_status st = head_terms(a, call, h, xf, xf, &m, &eps, &overflowed);
        if (st != SRP_OK)
            return st;
        const double s = m * x_gram_norm;
        const double s_float =
            overflowed ? INFINITY : (s + eps) * (1.0 + 2.0 * u * sqrt((double)T));
        double lowered;
        if (!a->causal) {
            const double f = srp_entropy_lower_bound(s_float, T);
            lowered = f - c_softmax * (1.0 + f) - 1e-12;
        } else {
            /* The mean of the rows' bounds (each margin taken at T >= k:
             * gamma and sqrt grow with it). The reported mean entropy is a
             * double sum rounded to float: 2^-23 relative covers that. */
            double sum = 0.0;
            for (size_t k = 2; k <= T; k++) {
                const double f = srp_entropy_lower_bound(s_float, k);
                sum += fmax(f - c_softmax * (1.0 + f), 0.0);
            }
            lowered = sum / (double)T * (1.0 - 0x1p-23) - 1e-12;
        }
        if (bound_per_head)
            bound_per_head[h] = lowered > 0.0 ? float_at_most(lowered) : 0.0f;
        if (s_per_head)
            s_per_head[h] = float_at_least(s);
        if (m_norm_per_head)
            m_norm_per_head[h] = float_at_least(m);
    }
    if (x_gram_norm_out)
        *x_gram_norm_out = float_at_least(x_gram_norm);
    return SRP_OK;
}

srp_status srp_attention_entropy_bound(srp_attention *a, float *bound_per_head)
{
    if (!a || !bound_per_head)
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_attention_entropy_bound: %s is NULL",
                        !a ? "the module" : "bound_per_head");
    const uint64_t t0 = srp_profile_begin();
    const srp_status st =
        entropy_bound_terms(a, "srp_attention_entropy_bound", bound_per_head, NULL, NULL, NULL);
    srp_profile_end(SRP_PROF_ENTROPY, t0);
    return st;
}

srp_status srp_attention_entropy_bound_terms(srp_attention *a, float *bound_per_head,
                                             float *s_per_head, float *m_norm_per_head,
                                             float *x_gram_norm)
{
    if (!a)
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_attention_entropy_bound_terms: the module is NULL");
    const uint64_t t0 = srp_profile_begin();
    const srp_status st =
        entropy_bound_terms(a, "srp_attention_entropy_bound_terms", bound_per_head, s_per_head,
                            m_norm_per_head, x_gram_norm);
    srp_profile_end(SRP_PROF_ENTROPY, t0);
    return st;
}
