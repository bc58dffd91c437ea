/* Token embeddings and the tied head (embedding.h).
 *
 * E: [vocab][dim]. Lookup and scatter-add are plain row copies and adds;
 * the tied head's products go through the GEMM wrapper:
 *     logits = h E^T     dh = dlogits E     dE += dlogits^T h
 * The head's dE term is computed into scratch first, so that a non-finite
 * gradient is refused before anything is added. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct srp_embedding {
    size_t vocab, dim;
    float *w, *dw;  /* [vocab][dim] */
    float *scratch; /* [vocab][dim]: the head's dE term */
};

/* The three, in the block of the table (srp_arena_new). */
static void layout(void *obj, srp_arena *a)
{
    srp_embedding *e = obj;
    SRP_ARENA_FLOATS(a, e->vocab * e->dim, &e->w, &e->dw, &e->scratch);
}

srp_status srp_embedding_create(srp_embedding **out, size_t vocab, size_t dim, float init_std,
                                uint64_t seed)
{
    static const char call[] = "srp_embedding_create";
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = NULL;
    if (vocab == 0 || dim == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s is 0", call, vocab == 0 ? "vocab" : "dim");
    if (!srp_blas_size_ok(vocab) || !srp_blas_size_ok(dim) ||
        vocab > SIZE_MAX / sizeof(float) / dim)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: vocab %zu x dim %zu is too large (past BLAS's "
                        "int, or the bytes past SIZE_MAX)", call, vocab, dim);
    if (!isfinite(init_std) || !(init_std > 0.0f))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: init_std %g: must be finite and > 0", call,
                        (double)init_std);
    srp_embedding *e = SRP_ARENA_NEW(srp_embedding, layout, .vocab = vocab, .dim = dim);
    if (!e)
        return SRP_ERR_NOMEM;
    srp_rng rng;
    srp_rng_seed(&rng, seed);
    srp_rng_fill_trunc_normal(&rng, e->w, vocab * dim, init_std);
    *out = e;
    return SRP_OK;
}

void srp_embedding_destroy(srp_embedding *e) { free(e); }

size_t srp_embedding_vocab(const srp_embedding *e) { return e ? e->vocab : 0; }
size_t srp_embedding_dim(const srp_embedding *e) { return e ? e->dim : 0; }
float *srp_embedding_weight(srp_embedding *e) { return e ? e->w : NULL; }
float *srp_embedding_weight_grad(srp_embedding *e) { return e ? e->dw : NULL; }

void srp_embedding_zero_grad(srp_embedding *e)
{
    if (e)
        memset(e->dw, 0, sizeof(float) * e->vocab * e->dim);
}

/* n rows fit the GEMMs and their buffers: SRP_OK, or SRP_ERR_INVALID_ARG
 * naming call. */
static srp_status rows_check(const srp_embedding *e, size_t n, const char *call)
{
    if (n == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: n is 0", call);
    if (!srp_blas_size_ok(n) ||
        n > SIZE_MAX / sizeof(float) / (e->vocab > e->dim ? e->vocab : e->dim))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "%s: n %zu rows is too many for vocab %zu, dim %zu "
                        "(past BLAS's int, or the bytes past SIZE_MAX)",
                        call, n, e->vocab, e->dim);
    return SRP_OK;
}

/* rows_check, and every token below the vocabulary's size. */
static srp_status tokens_check(const srp_embedding *e, const uint32_t *tokens, size_t n,
                               const char *call)
{
    const srp_status st = rows_check(e, n, call);
    for (size_t i = 0; st == SRP_OK && i < n; i++)
        if (tokens[i] >= e->vocab)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: tokens[%zu] is %u >= vocab %zu", call, i,
                            tokens[i], e->vocab);
    return st;
}

/* tokens: [n], x: [n][dim] */
srp_status srp_embedding_forward(const srp_embedding *e, const uint32_t *tokens, size_t n, float *x)
{
    if (!e || !tokens || !x)
        return SRP_FAIL_NULL(e, tokens, x);
    const srp_status st = tokens_check(e, tokens, n, "srp_embedding_forward");
    if (st != SRP_OK)
        return st;
    const uint64_t t0 = srp_profile_begin();
    for (size_t i = 0; i < n; i++)
        memcpy(x + i * e->dim, e->w + (size_t)tokens[i] * e->dim, sizeof(float) * e->dim);
    srp_profile_end(SRP_PROF_ELEMENTWISE, t0);
    return srp_all_finite(x, n * e->dim) ? SRP_OK : SRP_ERR_NUMERIC;
}

/* tokens: [n], dx: [n][dim] */
srp_status srp_embedding_backward(srp_embedding *e, const uint32_t *tokens, const float *dx,
                                  size_t n)
{
    if (!e || !tokens || !dx)
        return SRP_FAIL_NULL(e, tokens, dx);
    const srp_status st = tokens_check(e, tokens, n, "srp_embedding_backward");
    if (st != SRP_OK)
        return st;
    if (!srp_all_finite(dx, n * e->dim))
        return SRP_ERR_NUMERIC;
    const uint64_t t0 = srp_profile_begin();
    for (size_t i = 0; i < n; i++) {
        float *row = e->dw + (size_t)tokens[i] * e->dim;
        const float *d = dx + i * e->dim;
        for (size_t k = 0; k < e->dim; k++)
            row[k] += d[k];
    }
    srp_profile_end(SRP_PROF_ELEMENTWISE, t0);
    return SRP_OK;
}

/* h: [n][dim], logits: [n][vocab] */
srp_status srp_embedding_logits(const srp_embedding *e, const float *h, size_t n, float *logits)
{
    if (!e || !h || !logits)
        return SRP_FAIL_NULL(e, h, logits);
    const srp_status st = rows_check(e, n, "srp_embedding_logits");
    if (st != SRP_OK)
        return st;
    const uint64_t t0 = srp_profile_begin();
    /* logits = h E^T: [n][vocab] = [n][dim] x [dim][vocab] */
    srp_sgemm(0, 1, n, e->vocab, e->dim, 1.0f, h, e->dim, e->w, e->dim, 0.0f, logits, e->vocab);
    srp_profile_end(SRP_PROF_LINEAR_GEMM, t0);
    return srp_all_finite(logits, n * e->vocab) ? SRP_OK : SRP_ERR_NUMERIC;
}

/* h: [n][dim], dlogits: [n][vocab], dh: [n][dim] */
srp_status srp_embedding_logits_backward(srp_embedding *e, const float *h, const float *dlogits,
                                         size_t n, float *dh)
{
    if (!e || !h || !dlogits)
        return SRP_FAIL_NULL(e, h, dlogits);
    const srp_status st = rows_check(e, n, "srp_embedding_logits_backward");
    if (st != SRP_OK)
        return st;
    const uint64_t t0 = srp_profile_begin();
    /* scratch = dlogits^T h: [vocab][dim] = [vocab][n] x [n][dim] */
    srp_sgemm(1, 0, e->vocab, e->dim, n, 1.0f, dlogits, e->vocab, h, e->dim, 0.0f, e->scratch,
              e->dim);
    const size_t m = e->vocab * e->dim;
    const int finite = srp_all_finite(e->scratch, m);
    if (finite) {
        if (dh) /* dh = dlogits E: [n][dim] = [n][vocab] x [vocab][dim] */
            srp_sgemm(0, 0, n, e->dim, e->vocab, 1.0f, dlogits, e->vocab, e->w, e->dim, 0.0f, dh,
                      e->dim);
        for (size_t i = 0; i < m; i++)
            e->dw[i] += e->scratch[i];
    }
    srp_profile_end(SRP_PROF_LINEAR_GEMM, t0);
    return finite ? SRP_OK : SRP_ERR_NUMERIC;
}

srp_status srp_embedding_params(srp_embedding *e, const char *prefix, srp_param_list *list)
{
    if (!e || !list)
        return SRP_FAIL_NULL(e, list);
    return srp_param_list_add(list, prefix, NULL, e->w, e->dw, e->vocab * e->dim,
                              SRP_PARAM_EMBEDDING);
}

srp_status srp_embedding_state_refs(srp_embedding *e, const char *prefix, srp_tensor_list *list)
{
    if (!e || !list)
        return SRP_FAIL_NULL(e, list);
    const size_t shape[2] = {e->vocab, e->dim};
    return srp_tensor_list_add(list, prefix, NULL, SRP_DTYPE_F32, 2, shape, e->w);
}
