/* The tests' double-precision reference (reference_model.h). */
#include "reference_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

double ref_power_step(const double *w, size_t out, size_t in, const double *u0, double *v,
                      double *u1)
{
    for (size_t o = 0; o < out; o++)
        v[o] = dot_d(w + o * in, u0, in);
    const double nv = norm_d(v, out);
    for (size_t o = 0; o < out; o++)
        v[o] /= fmax(nv, 1e-12);
    for (size_t i = 0; i < in; i++) {
        u1[i] = 0.0;
        for (size_t o = 0; o < out; o++)
            u1[i] += w[o * in + i] * v[o];
    }
    const double nu = norm_d(u1, in);
    for (size_t i = 0; i < in; i++)
        u1[i] /= fmax(nu, 1e-12);
    double sigma = 0.0;
    for (size_t o = 0; o < out; o++)
        sigma += v[o] * dot_d(w + o * in, u1, in);
    return sigma;
}

void ref_linear_init(ref_linear *L, srp_linear *l)
{
    L->in = srp_linear_in_features(l);
    L->out = srp_linear_out_features(l);
    L->sigma_mode = srp_linear_reparam(l) == SRP_REPARAM_SIGMA;
    L->w = malloc(sizeof(double) * L->in * L->out);
    L->b = calloc(L->out, sizeof(double));
    L->u = malloc(sizeof(double) * L->in);
    L->v = malloc(sizeof(double) * L->out);
    double *u0 = malloc(sizeof(double) * L->in);
    assert_true(L->w && L->b && L->u && L->v && u0);
    to_double(srp_linear_weight(l), L->w, L->in * L->out);
    if (srp_linear_bias(l))
        to_double(srp_linear_bias(l), L->b, L->out);
    L->gamma = *srp_linear_gamma(l);
    to_double(srp_linear_u(l), u0, L->in);
    ref_power_step(L->w, L->out, L->in, u0, L->v, L->u);
    free(u0);
}

void ref_linear_free(ref_linear *L)
{
    free(L->w);
    free(L->b);
    free(L->u);
    free(L->v);
}

double ref_linear_sigma(const ref_linear *L)
{
    double sigma = 0.0;
    for (size_t o = 0; o < L->out; o++)
        sigma += L->v[o] * dot_d(L->w + o * L->in, L->u, L->in);
    return sigma;
}

void ref_linear_forward(const ref_linear *L, const double *x, size_t n, double *y)
{
    const double scale = L->sigma_mode ? L->gamma / ref_linear_sigma(L) : 1.0;
    for (size_t r = 0; r < n; r++)
        for (size_t o = 0; o < L->out; o++)
            y[r * L->out + o] = scale * dot_d(x + r * L->in, L->w + o * L->in, L->in) + L->b[o];
}

void ref_attention_init(ref_attention *R, srp_attention *a, size_t batch, size_t tokens, int causal)
{
    R->B = batch;
    R->T = tokens;
    R->D = srp_attention_dim(a);
    R->H = srp_attention_heads(a);
    R->causal = causal;
    R->n_in = srp_attention_in_proj_count(a);
    for (size_t i = 0, col = 0; i < R->n_in; i++) {
        ref_linear_init(&R->in_proj[i], srp_attention_in_proj(a, i, NULL));
        R->in_col[i] = col;
        col += R->in_proj[i].out;
    }
    ref_linear_init(&R->proj, srp_attention_proj(a));
    R->drop = NULL;
    R->cross = 0;
    R->Tk = tokens;
    R->key_len = NULL;
}

void ref_attention_init_cross(ref_attention *R, srp_attention *a, size_t batch, size_t tokens,
                              size_t keys)
{
    ref_attention_init(R, a, batch, tokens, 0);
    R->cross = 1;
    R->Tk = keys;
}

void ref_attention_free(ref_attention *R)
{
    for (size_t i = 0; i < R->n_in; i++)
        ref_linear_free(&R->in_proj[i]);
    ref_linear_free(&R->proj);
}

void ref_attention_forward(const ref_attention *R, const double *x, double *y, double *ent)
{
    ref_attention_forward_memory(R, x, x, y, ent);
}

void ref_attention_forward_memory(const ref_attention *R, const double *x, const double *memory,
                                  double *y, double *ent)
{
    const size_t B = R->B, T = R->T, Tk = R->Tk, D = R->D, H = R->H, dh = D / H;
    /* q: [B][T][D]; k, v: [B][Tk][D] */
    double *q = malloc(sizeof(double) * B * T * D), *kv = malloc(sizeof(double) * 2 * B * Tk * D);
    double *o = calloc(B * T * D, sizeof(double)), *p = malloc(sizeof(double) * Tk);
    assert_true(q && kv && o && p);
    double *parts[3] = {q, kv, kv + B * Tk * D};
    for (size_t i = 0; i < R->n_in; i++) { /* each projection's columns of [q | k | v] */
        const ref_linear *L = &R->in_proj[i];
        const int from_memory = R->cross && i > 0;
        const size_t rows = B * (from_memory ? Tk : T);
        double *out = malloc(sizeof(double) * rows * L->out);
        assert_non_null(out);
        ref_linear_forward(L, from_memory ? memory : x, rows, out);
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < L->out; c++) {
                const size_t col = R->in_col[i] + c;
                parts[col / D][r * D + col % D] = out[r * L->out + c];
            }
        free(out);
    }
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < T; i++) {
                const size_t len = R->key_len ? R->key_len[b] : Tk;
                size_t keys = R->causal ? i + 1 : Tk;
                keys = keys < len ? keys : len;
                if (R->key_len && !R->cross && i >= len)
                    keys = 0; /* a padded query row */
                const double *qi = q + (b * T + i) * D + h * dh;
                double m = -INFINITY, z = 0.0;
                for (size_t j = 0; j < keys; j++) {
                    p[j] = dot_d(qi, kv + (b * Tk + j) * D + h * dh, dh) / sqrt((double)dh);
                    m = fmax(m, p[j]);
                }
                for (size_t j = 0; j < keys; j++)
                    z += (p[j] = exp(p[j] - m));
                double e = 0.0;
                const double *drop = R->drop ? R->drop + ((b * H + h) * T + i) * Tk : NULL;
                for (size_t j = 0; j < keys; j++) {
                    p[j] /= z;
                    if (p[j] > 0.0)
                        e -= p[j] * log(p[j]);
                    const double *v = parts[2] + (b * Tk + j) * D + h * dh;
                    const double pj = drop ? p[j] * drop[j] : p[j];
                    for (size_t d = 0; d < dh; d++)
                        o[(b * T + i) * D + h * dh + d] += pj * v[d];
                }
                if (ent)
                    ent[(b * H + h) * T + i] = keys ? e : NAN;
            }
    ref_linear_forward(&R->proj, o, B * T, y);
    for (size_t b = 0; R->key_len && !R->cross && b < B; b++) /* padded query rows: y = 0 */
        for (size_t i = R->key_len[b]; i < T; i++)
            memset(y + (b * T + i) * D, 0, sizeof(double) * D);
    free(q);
    free(kv);
    free(o);
    free(p);
}

double ref_row_mean(const double *x, size_t d, double eps, double *rstd)
{
    double mean = 0.0, var = 0.0;
    for (size_t j = 0; j < d; j++)
        mean += x[j];
    mean /= (double)d;
    for (size_t j = 0; j < d; j++)
        var += (x[j] - mean) * (x[j] - mean);
    *rstd = 1.0 / sqrt(var / (double)d + eps); /* the biased variance, as PyTorch's */
    return mean;
}

void ref_layernorm_forward(const double *x, const double *w, const double *b, size_t n, size_t d,
                           double eps, double *y)
{
    for (size_t i = 0; i < n; i++) {
        double rstd;
        const double mean = ref_row_mean(x + i * d, d, eps, &rstd);
        for (size_t j = 0; j < d; j++)
            y[i * d + j] = (x[i * d + j] - mean) * rstd * (w ? w[j] : 1.0) + (b ? b[j] : 0.0);
    }
}

double ref_gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

void ref_block_init(ref_block *R, srp_block *b, size_t batch, size_t tokens, int causal)
{
    memset(R, 0, sizeof(*R));
    R->B = batch;
    R->T = tokens;
    R->D = srp_block_dim(b);
    R->norm = srp_block_norm_placement(b);
    const size_t n_lin = srp_block_linear_count(b);
    ref_attention_init(&R->att, srp_block_attention(b), batch, tokens, causal);
    ref_linear_init(&R->fc1, srp_block_linear(b, n_lin - 2, NULL));
    ref_linear_init(&R->fc2, srp_block_linear(b, n_lin - 1, NULL));
    R->M = R->fc1.out;
    for (size_t i = 0; i < srp_block_norm_count(b); i++) {
        srp_layernorm *ln = srp_block_norm(b, i, NULL);
        R->eps = srp_layernorm_eps(ln);
        R->ln_w[i] = malloc(sizeof(double) * R->D);
        R->ln_b[i] = malloc(sizeof(double) * R->D);
        assert_true(R->ln_w[i] && R->ln_b[i]);
        to_double(srp_layernorm_weight(ln), R->ln_w[i], R->D);
        to_double(srp_layernorm_bias(ln), R->ln_b[i], R->D);
    }
}

void ref_block_init_cross(ref_block *R, srp_block *b, size_t batch, size_t tokens, int causal,
                          size_t memory_tokens)
{
    ref_block_init(R, b, batch, tokens, causal);
    R->cross = 1;
    ref_attention_init_cross(&R->xatt, srp_block_cross_attention(b), batch, tokens,
                             memory_tokens);
}

void ref_block_free(ref_block *R)
{
    ref_attention_free(&R->att);
    if (R->cross)
        ref_attention_free(&R->xatt);
    ref_linear_free(&R->fc1);
    ref_linear_free(&R->fc2);
    for (int i = 0; i < 3; i++) {
        free(R->ln_w[i]);
        free(R->ln_b[i]);
    }
}

/* x[b][..] *= s[b] over rows of len; s NULL: nothing. */
static void scale_examples(double *x, size_t batch, size_t len, const double *s)
{
    for (size_t b = 0; s && b < batch; b++)
        for (size_t j = 0; j < len; j++)
            x[b * len + j] *= s[b];
}

void ref_block_forward(const ref_block *R, const double *x, double *y)
{
    const size_t rows = R->B * R->T, D = R->D, n = rows * D;
    const int pre = R->norm == SRP_NORM_PRE, post = R->norm == SRP_NORM_POST;
    double *a_in = malloc(sizeof(double) * n), *mid = malloc(sizeof(double) * n);
    double *m_in = malloc(sizeof(double) * n), *branch = malloc(sizeof(double) * n);
    double *h = malloc(sizeof(double) * rows * R->M);
    assert_true(a_in && mid && m_in && branch && h);
    if (pre)
        ref_layernorm_forward(x, R->ln_w[0], R->ln_b[0], rows, D, R->eps, a_in);
    else
        memcpy(a_in, x, sizeof(double) * n);
    ref_attention_forward(&R->att, a_in, branch, NULL);
    scale_examples(branch, R->B, R->T * D, R->path_attn);
    for (size_t i = 0; i < n; i++)
        mid[i] = x[i] + branch[i];
    if (R->cross) { /* mid becomes the stream after the cross-attention (block.h) */
        if (pre || post)
            ref_layernorm_forward(mid, R->ln_w[pre ? 2 : 0], R->ln_b[pre ? 2 : 0], rows, D, R->eps,
                                  a_in);
        else
            memcpy(a_in, mid, sizeof(double) * n);
        ref_attention_forward_memory(&R->xatt, a_in, R->memory, branch, NULL);
        scale_examples(branch, R->B, R->T * D, R->path_cross);
        for (size_t i = 0; i < n; i++)
            mid[i] = (post ? a_in[i] : mid[i]) + branch[i];
    }
    /* The LayerNorm before the MLP: pre ln2; post ln1, or lnc after a cross. */
    const size_t mlp_ln = pre ? 1 : R->cross ? 2 : 0;
    if (pre || post)
        ref_layernorm_forward(mid, R->ln_w[mlp_ln], R->ln_b[mlp_ln], rows, D, R->eps, m_in);
    else
        memcpy(m_in, mid, sizeof(double) * n);
    ref_linear_forward(&R->fc1, m_in, rows, h);
    for (size_t i = 0; i < rows * R->M; i++)
        h[i] = ref_gelu(h[i]);
    ref_linear_forward(&R->fc2, h, rows, branch);
    for (size_t i = 0; R->mlp_drop && i < n; i++)
        branch[i] *= R->mlp_drop[i];
    scale_examples(branch, R->B, R->T * D, R->path_mlp);
    const double *skip = post ? m_in : mid;
    for (size_t i = 0; i < n; i++)
        branch[i] += skip[i];
    if (post)
        ref_layernorm_forward(branch, R->ln_w[1], R->ln_b[1], rows, D, R->eps, y);
    else
        memcpy(y, branch, sizeof(double) * n);
    for (size_t b = 0; R->att.key_len && b < R->B; b++) /* padded rows: y = 0 (block.h) */
        for (size_t i = R->att.key_len[b]; i < R->T; i++)
            memset(y + (b * R->T + i) * D, 0, sizeof(double) * D);
    free(a_in);
    free(mid);
    free(m_in);
    free(branch);
    free(h);
}

double ref_quadratic_loss(const double *y, const double *r, size_t n)
{
    return 0.5 * dot_d(y, y, n) + dot_d(r, y, n);
}

void ref_central_differences(ref_loss_fn loss, void *ctx, double *p, size_t count, double *grad)
{
    for (size_t i = 0; i < count; i++) {
        const double keep = p[i], h = 1e-6 * fmax(1.0, fabs(keep));
        p[i] = keep + h;
        const double up = loss(ctx);
        p[i] = keep - h;
        const double down = loss(ctx);
        p[i] = keep;
        grad[i] = (up - down) / (2.0 * h);
    }
}

double ref_central_difference_f(ref_loss_fn loss, void *ctx, float *p, float h)
{
    const float keep = *p, hi = keep + h, lo = keep - h; /* the steps as taken, in float */
    *p = hi;
    const double up = loss(ctx);
    *p = lo;
    const double down = loss(ctx);
    *p = keep;
    return (up - down) / ((double)hi - (double)lo);
}

double ref_assert_gradient(ref_loss_fn loss, void *ctx, double *p, size_t count, const float *got,
                           double tol, double floor, const char *what)
{
    double *g = alloc_d(count), scale = 0.0;
    ref_central_differences(loss, ctx, p, count, g);
    assert_close_to_double(got, g, count, tol, floor, what);
    for (size_t i = 0; i < count; i++)
        scale = fmax(scale, fabs(g[i]));
    free(g);
    return scale;
}

void ref_assert_linear_gradients(ref_loss_fn loss, void *ctx, ref_linear *L, srp_linear *l,
                                 double tol, double floor, const char *name)
{
    char what[80];
    snprintf(what, sizeof(what), "%s dW", name);
    const double dw_scale = ref_assert_gradient(loss, ctx, L->w, L->in * L->out,
                                                srp_linear_weight_grad(l), tol, floor, what);
    snprintf(what, sizeof(what), "%s db", name);
    ref_assert_gradient(loss, ctx, L->b, L->out, srp_linear_bias_grad(l), tol,
                        fmax(floor, dw_scale), what);
    double dgamma;
    ref_central_differences(loss, ctx, &L->gamma, 1, &dgamma);
    snprintf(what, sizeof(what), "%s dgamma", name);
    assert_close_rel(*srp_linear_gamma_grad(l), dgamma, tol, 1e-3, what);
}
