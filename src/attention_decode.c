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
 * the cache as it was.
 *
 * Cross-attention (cfg.cross): the keys and values are the memory's,
 * projected once by srp_attention_cache_set_memory (with every linear's
 * eval scale, taken there), [k | v] rows of sequence b at
 * kv + b * memory_tokens * 2D; per (b, h) the new query attends to the
 * memory's first key_len[b] rows:
 *     q_t = x_t W_hat_q^T + b_q    o = softmax(K_{0..L-1} q_t / sqrt(dh))^T V_{0..L-1}
 * which is row t of the eval srp_attention_forward_cross whatever t is (no
 * causal mask); the length still counts the positions decoded.
 *
 * Beam search reorders the sequences (srp_attention_cache_select): new
 * row i is old row rows[i], gathered one position at a time through a
 * [max_batch][row] scratch taken at create, so that rows may repeat or
 * drop without a second copy of the cache. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention_internal.h"

struct srp_attention_cache {
    const srp_attention *owner;
    int cross; /* the module's cfg.cross */
    size_t max_batch, max_tokens;
    size_t max_memory; /* cross: the module's longest memory */
    /* the sequences' count (0 until the first position, or the memory) and length */
    size_t batch, length;
    /* gamma / sigma of the input projections and proj (the last entry),
     * as the eval forward takes them at position 0 (cross: at set_memory) */
    float scale[4];
    /* self: [max_batch][max_tokens][3D], each position's [q | k | v] row;
     * cross: [max_batch][D], the new position's q rows */
    float *qkv;
    /* cross: the memory set, its length, each sequence's keys, and its
     * [k | v] rows [batch][memory_tokens][2D] (room for max_memory) */
    int has_memory;
    size_t memory_tokens;
    size_t *key_len; /* [max_batch] */
    float *kv;
    float *scores; /* [max(max_tokens, max_memory)]: one (b, h) pair's logits, then its softmax */
    float *o_cat;  /* [max_batch][D]: the heads' outputs side by side, proj's input */
    /* select's scratch: one position of every row ([max_batch][3D], cross
     * [max_batch][2D]), and the key lengths */
    float *gather;
    size_t *gather_len;
};

/* The floats of one position's row in the cache: [q | k | v], or cross [k | v]. */
static size_t row_width(const srp_attention_cache *c) { return (c->cross ? 2 : 3) * c->owner->dim; }

static void layout(void *obj, srp_arena *arena)
{
    srp_attention_cache *c = obj;
    const size_t D = c->owner->dim, B = c->max_batch;
    SRP_ARENA_FLOATS(arena, c->cross ? B * D : B * c->max_tokens * 3 * D, &c->qkv);
    SRP_ARENA_FLOATS(arena, c->cross ? B * c->max_memory * 2 * D : 0, &c->kv);
    SRP_ARENA_FLOATS(arena, c->max_tokens > c->max_memory ? c->max_tokens : c->max_memory,
                     &c->scores);
    SRP_ARENA_FLOATS(arena, B * D, &c->o_cat);
    SRP_ARENA_FLOATS(arena, B * row_width(c), &c->gather);
    c->key_len = srp_arena_take(arena, c->cross ? B : 0, sizeof(size_t));
    c->gather_len = srp_arena_take(arena, c->cross ? B : 0, sizeof(size_t));
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
    if (!a->causal && !a->cross)
        return srp_fail(SRP_ERR_UNSUPPORTED,
                        "%s: the module is neither causal nor a cross-attention (a later "
                        "position would change the earlier ones' outputs, which a cache cannot "
                        "follow)",
                        call);
    if (max_batch == 0 || max_tokens == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: max_%s is 0", call,
                        max_batch == 0 ? "batch" : "tokens");
    const size_t row = 3 * a->dim; /* dim <= SIZE_MAX / 3: checked at the module's create */
    /* self: the positions' rows; cross: the memory's [k | v] rows, max_tokens only counted */
    const size_t kept = a->cross ? a->max_keys : max_tokens;
    if (kept > SIZE_MAX / sizeof(float) / row / max_batch || !srp_blas_size_ok(kept * row) ||
        !srp_linear_batch_ok(a->proj, max_batch) ||
        (a->cross && !srp_linear_batch_ok(a->in_proj[1], max_batch * kept)))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "%s: max_batch %zu x %s %zu at dim %zu: past SIZE_MAX bytes or "
                        "BLAS's int",
                        call, max_batch, a->cross ? "max_memory_tokens" : "max_tokens", kept,
                        a->dim);
    srp_attention_cache *c = SRP_ARENA_NEW(
        srp_attention_cache, layout, .owner = a, .cross = a->cross, .max_batch = max_batch,
        .max_tokens = max_tokens, .max_memory = a->cross ? a->max_keys : 0);
    if (!c)
        return SRP_ERR_NOMEM;
    *out = c;
    return SRP_OK;
}

void srp_attention_cache_destroy(srp_attention_cache *c) { free(c); }

void srp_attention_cache_reset(srp_attention_cache *c)
{
    if (c) {
        c->batch = c->length = 0;
        c->has_memory = 0;
    }
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
    if (c->cross && !c->has_memory)
        return srp_fail(SRP_ERR_ORDER,
                        "%s: the cross-attention's cache has no memory (set it with "
                        "srp_attention_cache_set_memory, or srp_block_cache_set_memory, after "
                        "create or reset)",
                        call);
    if (c->cross && batch != c->batch)
        return srp_fail(SRP_ERR_SHAPE, "%s: batch %zu, but the memory holds %zu sequences", call,
                        batch, c->batch);
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

/* At position 0 (cross: at set_memory): every linear's eval power step
 * (in the linears' scratch; nothing of the module changes), its gamma /
 * sigma into scale [n_in + 1], kept for the sequence. */
static srp_status take_scales(const srp_attention *a, float *scale)
{
    for (size_t i = 0; i <= a->n_in; i++) {
        srp_linear *l = i < a->n_in ? a->in_proj[i] : a->proj;
        const srp_status st = srp_linear_forward_prepare(l, SRP_EVAL);
        if (st != SRP_OK)
            return st;
        scale[i] = srp_linear_prepared_scale(l);
    }
    return SRP_OK;
}

/* o = softmax(K q / sqrt(dh))^T V over the first `keys` keys of one (b, h)
 * pair. q: [dh]; K, V: [keys][dh], rows ld apart; o: [dh] */
static void pair_decode(const srp_attention_cache *c, const float *q, const float *k,
                        const float *v, size_t ld, size_t keys, float *o)
{
    const size_t dh = c->owner->head_dim;
    const float scale = 1.0f / sqrtf((float)dh);
    srp_sgemv(0, keys, dh, scale, k, ld, q, 0.0f, c->scores); /* s: [keys] */
    srp_softmax_row(c->scores, keys, keys, 0);
    srp_sgemv(1, keys, dh, 1.0f, v, ld, c->scores, 0.0f, o);
}

/* decode_compute of a cross-attention's cache: q of the new position,
 * each (b, h) pair against the memory's first key_len[b] keys, proj. */
static void decode_cross(srp_attention *a, srp_attention_cache *c, const float *x, size_t batch,
                         float *y)
{
    const size_t D = a->dim, dh = a->head_dim, ld = 2 * D, seq = c->memory_tokens * ld;
    srp_linear_forward_scaled(a->in_proj[0], c->scale[0], x, batch, c->qkv, D); /* q: [batch][D] */
    const uint64_t t0 = srp_profile_begin();
    for (size_t b = 0; b < batch; b++)
        for (size_t h = 0; h < a->heads; h++) {
            const float *base = c->kv + b * seq + h * dh; /* head h's k columns, key 0 */
            pair_decode(c, c->qkv + b * D + h * dh, base, base + D, ld, c->key_len[b],
                        c->o_cat + b * D + h * dh);
        }
    srp_profile_end(SRP_PROF_ATTENTION_CORE, t0);
    srp_linear_forward_scaled(a->proj, c->scale[a->n_in], c->o_cat, batch, y, D);
}

srp_status srp_attention_decode_compute(srp_attention *a, srp_attention_cache *c, const float *x,
                                        size_t batch, float *y)
{
    if (c->cross) {
        decode_cross(a, c, x, batch, y);
        return SRP_OK;
    }
    if (c->length == 0) {
        const srp_status st = take_scales(a, c->scale);
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
            pair_decode(c, base + t * ld, base + D, base + 2 * D, ld, t + 1,
                        c->o_cat + b * D + h * dh);
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

/* ---- the memory of a cross-attention's cache ---- */

srp_status srp_attention_memory_check(const srp_attention_cache *c, size_t batch,
                                      size_t memory_tokens, const size_t *memory_key_len,
                                      const char *call)
{
    if (!c->cross)
        return srp_fail(SRP_ERR_UNSUPPORTED,
                        "%s: the cache is a self-attention's: only a cross-attention (cfg.cross) "
                        "has a memory",
                        call);
    if (batch == 0 || memory_tokens == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s is 0", call,
                        batch == 0 ? "batch" : "memory_tokens");
    if (batch > c->max_batch)
        return srp_fail(SRP_ERR_SHAPE, "%s: batch %zu > the cache's max_batch %zu", call, batch,
                        c->max_batch);
    if (memory_tokens > c->max_memory)
        return srp_fail(SRP_ERR_SHAPE, "%s: memory_tokens %zu > the module's max_memory_tokens %zu",
                        call, memory_tokens, c->max_memory);
    for (size_t b = 0; memory_key_len && b < batch; b++)
        if (memory_key_len[b] == 0 || memory_key_len[b] > memory_tokens)
            return srp_fail(SRP_ERR_INVALID_ARG,
                            "%s: memory_key_len[%zu] is %zu (want 1..memory_tokens %zu)", call, b,
                            memory_key_len[b], memory_tokens);
    return SRP_OK;
}

srp_status srp_attention_memory_set(srp_attention_cache *c, const float *memory, size_t batch,
                                    size_t memory_tokens, const size_t *memory_key_len,
                                    const char *call)
{
    const srp_attention *a = c->owner;
    const size_t D = a->dim, n = batch * memory_tokens;
    /* What can fail without touching the cache first: the input, the scales. */
    if (!srp_all_finite(memory, n * D))
        return srp_fail(SRP_ERR_NUMERIC, "%s: NaN or Inf in memory; the cache is as it was", call);
    float scale[4];
    if (take_scales(a, scale) != SRP_OK)
        return srp_fail(SRP_ERR_NUMERIC,
                        "%s: a projection's sigma or gamma is zero or not finite; the cache is as "
                        "it was",
                        call);
    /* memory -> [k | v] rows: [batch][memory_tokens][2D] */
    for (size_t i = 1; i < a->n_in; i++)
        srp_linear_forward_scaled(a->in_proj[i], scale[i], memory, n, c->kv + (a->in_col[i] - D),
                                  2 * D);
    c->batch = c->length = 0;
    c->has_memory = 0;
    if (!srp_all_finite(c->kv, n * 2 * D))
        return srp_fail(SRP_ERR_NUMERIC,
                        "%s: the memory's keys or values overflowed; the cache is empty now (as "
                        "after a reset)",
                        call);
    memcpy(c->scale, scale, sizeof scale);
    for (size_t b = 0; b < batch; b++)
        c->key_len[b] = memory_key_len ? memory_key_len[b] : memory_tokens;
    c->memory_tokens = memory_tokens;
    c->batch = batch;
    c->has_memory = 1;
    return SRP_OK;
}

srp_status srp_attention_cache_set_memory(srp_attention_cache *c, const float *memory, size_t batch,
                                          size_t memory_tokens, const size_t *memory_key_len)
{
    static const char call[] = "srp_attention_cache_set_memory";
    if (!c || !memory)
        return SRP_FAIL_NULL(c, memory);
    const srp_status st = srp_attention_memory_check(c, batch, memory_tokens, memory_key_len, call);
    return st == SRP_OK
               ? srp_attention_memory_set(c, memory, batch, memory_tokens, memory_key_len, call)
               : st;
}

/* ---- row selection (beam search) ---- */

/* The sequences the cache holds: 0 before the first position (self) or
 * without a memory (cross). */
static size_t held(const srp_attention_cache *c)
{
    return (c->cross ? c->has_memory : c->length > 0) ? c->batch : 0;
}

srp_status srp_attention_cache_select_check(const srp_attention_cache *c, const size_t *rows,
                                            size_t batch, const char *call)
{
    if (batch == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: batch is 0", call);
    if (batch > c->max_batch)
        return srp_fail(SRP_ERR_SHAPE, "%s: batch %zu > the cache's max_batch %zu", call, batch,
                        c->max_batch);
    const size_t old = held(c);
    if (old == 0)
        return srp_fail(SRP_ERR_ORDER, "%s: the cache holds no sequences yet (nothing decoded%s)",
                        call, c->cross ? ", no memory set" : "");
    for (size_t i = 0; i < batch; i++)
        if (rows[i] >= old)
            return srp_fail(SRP_ERR_INVALID_ARG,
                            "%s: rows[%zu] is %zu (want < %zu, the sequences the cache holds)",
                            call, i, rows[i], old);
    return SRP_OK;
}

/* Row i of every position becomes old row rows[i], one position at a
 * time through scratch. data: row r's position p at r * seq + p * width;
 * scratch: [batch][width] */
static void gather_rows(float *data, size_t seq, size_t positions, size_t width, const size_t *rows,
                        size_t batch, float *scratch)
{
    for (size_t p = 0; p < positions; p++) {
        for (size_t i = 0; i < batch; i++)
            memcpy(scratch + i * width, data + rows[i] * seq + p * width, sizeof(float) * width);
        for (size_t i = 0; i < batch; i++)
            memcpy(data + i * seq + p * width, scratch + i * width, sizeof(float) * width);
    }
}

void srp_attention_cache_select_apply(srp_attention_cache *c, const size_t *rows, size_t batch)
{
    if (held(c) == 0)
        return; /* a block's self-attention before its first position: nothing to move */
    const size_t width = row_width(c);
    if (c->cross) {
        gather_rows(c->kv, c->memory_tokens * width, c->memory_tokens, width, rows, batch,
                    c->gather);
        for (size_t i = 0; i < batch; i++)
            c->gather_len[i] = c->key_len[rows[i]];
        memcpy(c->key_len, c->gather_len, sizeof(size_t) * batch);
    } else {
        gather_rows(c->qkv, c->max_tokens * width, c->length, width, rows, batch, c->gather);
    }
    c->batch = batch;
}

srp_status srp_attention_cache_select(srp_attention_cache *c, const size_t *rows, size_t batch)
{
    static const char call[] = "srp_attention_cache_select";
    if (!c || !rows)
        return SRP_FAIL_NULL(c, rows);
    const srp_status st = srp_attention_cache_select_check(c, rows, batch, call);
    if (st == SRP_OK)
        srp_attention_cache_select_apply(c, rows, batch);
    return st;
}
