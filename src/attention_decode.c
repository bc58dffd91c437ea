/* Cached (incremental) decoding for causal self-attention (attention.h).
 *
 * Position t of each of the batch's sequences, from its input x_t [B][D]:
 *     [q_t | k_t | v_t] = x_t W_hat^T + b         (the input projections)
 *     per (b, h):  s = K_{0..t} q_t / sqrt(dh)   a = softmax(s)
 *                  o = a^T V_{0..t}
 *     y_t = proj(concat_h o)
 * with K, V the keys and values of positions 0..t, kept in the cache. This
 * is row t of the causal forward over positions 0..t: row t's keys are
 * 0..t only, so what comes later never changes it, and one new row per
 * call gives what a full forward gives, in O(t D) instead of O(t^2 D).
 *
 * W_hat is the eval forward's: each linear's one power step from its
 * stored u, as srp_linear_forward in eval takes it (srp_linear_forward_
 * prepare), taken at position 0 and kept for the sequence; the module's
 * state is not touched (no commit), so decoding changes nothing a training
 * step or a backward reads.
 *
 * A position is written into the cache's next slot and counted only once
 * y is finite (decode_compute, then decode_commit): a failed call leaves
 * the cache as it was. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention_internal.h"

struct srp_attention_cache {
    const srp_attention *owner;
    size_t max_batch, max_tokens;
    size_t batch, length; /* the sequences' count (0 until the first position) and length */
    /* gamma / sigma of the input projections and proj (the last entry),
     * as the eval forward takes them at position 0 */
    float scale[4];
    float *qkv;    /* [max_batch][max_tokens][3D]: each position's [q | k | v] row */
    float *scores; /* [max_tokens]: one (b, h) pair's logits, then its softmax */
    float *o_cat;  /* [max_batch][D]: the heads' outputs side by side, proj's input */
};

static void layout(void *obj, srp_arena *arena)
{
    srp_attention_cache *c = obj;
    const size_t D = c->owner->dim;
    SRP_ARENA_FLOATS(arena, c->max_batch * c->max_tokens * 3 * D, &c->qkv);
    SRP_ARENA_FLOATS(arena, c->max_tokens, &c->scores);
    SRP_ARENA_FLOATS(arena, c->max_batch * D, &c->o_cat);
}

srp_status srp_attention_cache_create(srp_attention_cache **out, const srp_attention *a,
                                      size_t max_batch, size_t max_tokens)
{
    static const char call[] = "srp_attention_cache_create";
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = NULL;
    if (!a)
        return SRP_FAIL_NULL(a);
    if (!a->causal)
        return srp_fail(SRP_ERR_UNSUPPORTED,
                        "%s: the module is not causal (a later position would change the "
                        "earlier ones' outputs, which a cache cannot follow)",
                        call);
    if (max_batch == 0 || max_tokens == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: max_%s is 0", call,
                        max_batch == 0 ? "batch" : "tokens");
    const size_t row = 3 * a->dim; /* dim <= SIZE_MAX / 3: checked at the module's create */
    if (max_tokens > SIZE_MAX / sizeof(float) / row / max_batch ||
        !srp_blas_size_ok(max_tokens * row) || !srp_linear_batch_ok(a->proj, max_batch))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "%s: max_batch %zu x max_tokens %zu at dim %zu: past SIZE_MAX bytes or "
                        "BLAS's int",
                        call, max_batch, max_tokens, a->dim);
    srp_attention_cache *c = SRP_ARENA_NEW(srp_attention_cache, layout, .owner = a,
                                           .max_batch = max_batch, .max_tokens = max_tokens);
    if (!c)
        return SRP_ERR_NOMEM;
    *out = c;
    return SRP_OK;
}

void srp_attention_cache_destroy(srp_attention_cache *c) { free(c); }

void srp_attention_cache_reset(srp_attention_cache *c)
{
    if (c)
        c->batch = c->length = 0;
}

size_t srp_attention_cache_length(const srp_attention_cache *c) { return c ? c->length : 0; }

srp_status srp_attention_decode_check(const srp_attention *a, const srp_attention_cache *c,
                                      size_t batch, const char *call)
{
    if (c->owner != a)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: the cache was made for another module", call);
    if (batch == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: batch is 0", call);
    if (batch > c->max_batch)
        return srp_fail(SRP_ERR_SHAPE, "%s: batch %zu > the cache's max_batch %zu", call, batch,
                        c->max_batch);
    if (c->length > 0 && batch != c->batch)
        return srp_fail(SRP_ERR_SHAPE,
                        "%s: batch %zu, but the cache holds %zu sequences (reset it to start "
                        "others)",
                        call, batch, c->batch);
    if (c->length == c->max_tokens)
        return srp_fail(SRP_ERR_SHAPE, "%s: the cache is full (%zu positions, its max_tokens)",
                        call, c->max_tokens);
    return SRP_OK;
}

/* At position 0: every linear's eval power step (nothing of the module
 * changes), its gamma / sigma kept for the sequence. */
static srp_status take_scales(srp_attention *a, srp_attention_cache *c)
{
    for (size_t i = 0; i <= a->n_in; i++) {
        srp_linear *l = i < a->n_in ? a->in_proj[i] : a->proj;
        const srp_status st = srp_linear_forward_prepare(l, SRP_EVAL);
        if (st != SRP_OK)
            return st;
        c->scale[i] = srp_linear_prepared_scale(l);
    }
    return SRP_OK;
}

/* o = softmax(K q / sqrt(dh))^T V over the keys 0..t of one (b, h) pair.
 * q: [dh]; K, V: [t + 1][dh], rows ld apart; o: [dh] */
static void pair_decode(const srp_attention_cache *c, const float *q, const float *k,
                        const float *v, size_t ld, size_t t, float *o)
{
    const size_t dh = c->owner->head_dim, keys = t + 1;
    const float scale = 1.0f / sqrtf((float)dh);
    srp_sgemv(0, keys, dh, scale, k, ld, q, 0.0f, c->scores); /* s: [keys] */
    srp_softmax_row(c->scores, keys, keys, 0);
    srp_sgemv(1, keys, dh, 1.0f, v, ld, c->scores, 0.0f, o);
}

srp_status srp_attention_decode_compute(srp_attention *a, srp_attention_cache *c, const float *x,
                                        size_t batch, float *y)
{
    if (c->length == 0) {
        const srp_status st = take_scales(a, c);
        if (st != SRP_OK)
            return srp_fail(st, "srp_attention_decode: a projection's sigma or gamma is zero or "
                                "not finite");
    }
    const size_t D = a->dim, dh = a->head_dim, t = c->length, ld = 3 * D;
    const size_t seq = c->max_tokens * ld; /* one sequence's rows in qkv */
    /* x -> the [q | k | v] row of position t of each sequence: [batch][3D], seq apart */
    float *row_t = c->qkv + t * ld;
    for (size_t i = 0; i < a->n_in; i++)
        srp_linear_forward_scaled(a->in_proj[i], c->scale[i], x, batch, row_t + a->in_col[i], seq);
    const uint64_t t0 = srp_profile_begin();
    for (size_t b = 0; b < batch; b++)
        for (size_t h = 0; h < a->heads; h++) {
            const float *base = c->qkv + b * seq + h * dh; /* head h's columns, position 0 */
            pair_decode(c, base + t * ld, base + D, base + 2 * D, ld, t, c->o_cat + b * D + h * dh);
        }
    srp_profile_end(SRP_PROF_ATTENTION_CORE, t0);
    srp_linear_forward_scaled(a->proj, c->scale[a->n_in], c->o_cat, batch, y, D);
    return SRP_OK;
}

void srp_attention_decode_commit(srp_attention_cache *c, size_t batch)
{
    c->batch = batch;
    c->length++;
}

srp_status srp_attention_decode(srp_attention *a, srp_attention_cache *c, const float *x,
                                size_t batch, float *y)
{
    static const char call[] = "srp_attention_decode";
    if (!a || !c || !x || !y)
        return SRP_FAIL_NULL(a, c, x, y);
    srp_status st = srp_attention_decode_check(a, c, batch, call);
    if (st == SRP_OK)
        st = srp_attention_decode_compute(a, c, x, batch, y);
    if (st != SRP_OK)
        return st;
    /* A NaN in x (or an overflow on the way) reaches y: one check covers
     * them all, before the position counts. */
    if (!srp_all_finite(y, batch * a->dim))
        return srp_fail(SRP_ERR_NUMERIC,
                        "%s: NaN or Inf in y (from x, or an overflow); the cache is as it was",
                        call);
    srp_attention_decode_commit(c, batch);
    return SRP_OK;
}
