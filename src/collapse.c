/* The entropy-collapse watch (collapse.h).
 *
 * ring: [window][heads_total], the entropies of the last `filled` steps,
 * `next` the slot the coming step takes. An update checks every head
 * against the low line and the window's peak (re-arming on the window's
 * trough), works out the new flags and the warnings into scratch, and
 * commits them (flags, the step's row of the ring) only when the warnings
 * fit the caller's array. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct srp_collapse {
    srp_collapse_config cfg;
    size_t heads_total; /* layers * heads */
    float *ring;        /* [window][heads_total] */
    uint64_t filled, next;
    unsigned char *flags; /* [heads_total][2]: LOW, DROP warned (not re-armed) */
    /* scratch of an update */
    unsigned char *new_flags; /* [heads_total][2] */
    float *peak, *trough;     /* [heads_total]: the window's highest and lowest */
};

/* The five, in the block of the watch (srp_arena_new). */
static void layout(void *obj, srp_arena *a)
{
    srp_collapse *w = obj;
    SRP_ARENA_FLOATS(a, (size_t)w->cfg.window * w->heads_total, &w->ring);
    w->flags = srp_arena_take(a, 2 * w->heads_total, 1);
    w->new_flags = srp_arena_take(a, 2 * w->heads_total, 1);
    SRP_ARENA_FLOATS(a, w->heads_total, &w->peak, &w->trough);
}

const char *srp_collapse_kind_name(srp_collapse_kind kind)
{
    switch (kind) {
    case SRP_COLLAPSE_LOW: return "low";
    case SRP_COLLAPSE_DROP: return "drop";
    }
    return "unknown";
}

srp_collapse_config srp_collapse_config_default(size_t layers, size_t heads)
{
    srp_collapse_config c;
    memset(&c, 0, sizeof(c));
    c.layers = layers;
    c.heads = heads;
    c.window = 200;
    c.fraction = 0.1f;
    c.drop = 0.8f;
    c.uniform = 1.0f;
    return c;
}

static int unit_interval(float x) { return x >= 0.0f && x <= 1.0f; } /* NaN: 0 */

srp_status srp_collapse_create(srp_collapse **out, const srp_collapse_config *cfg)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = NULL;
    if (!cfg)
        return SRP_FAIL_NULL(cfg);
    if (cfg->layers == 0 || cfg->heads == 0 || cfg->window == 0 ||
        cfg->heads > SIZE_MAX / 4 / cfg->layers ||
        cfg->window > SIZE_MAX / 4 / (cfg->layers * cfg->heads))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_collapse_create: layers %zu, heads %zu, window %llu: zero, or a "
                        "window too large to hold",
                        cfg->layers, cfg->heads, (unsigned long long)cfg->window);
    if (!unit_interval(cfg->fraction) || !unit_interval(cfg->drop) || !isfinite(cfg->uniform) ||
        !(cfg->uniform > 0.0f))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_collapse_create: fraction %g, drop %g (each in [0, 1]), uniform %g "
                        "(finite, > 0)",
                        (double)cfg->fraction, (double)cfg->drop, (double)cfg->uniform);
    srp_collapse *w =
        SRP_ARENA_NEW(srp_collapse, layout, .cfg = *cfg, .heads_total = cfg->layers * cfg->heads);
    if (!w)
        return SRP_ERR_NOMEM;
    *out = w;
    return SRP_OK;
}

void srp_collapse_destroy(srp_collapse *w) { free(w); }

size_t srp_collapse_max_events(const srp_collapse *w) { return w ? 2 * w->heads_total : 0; }

srp_status srp_collapse_update(srp_collapse *w, uint64_t step, const float *entropy,
                               srp_collapse_event *events, size_t capacity, size_t *count)
{
    if (!w || !entropy || !count || (!events && capacity > 0))
        return SRP_FAIL_NULL(w, entropy, count, events);
    const size_t n = w->heads_total;
    if (w->filled > w->cfg.window || w->next >= w->cfg.window)
        return srp_fail(SRP_ERR_FORMAT,
                        "srp_collapse_update: loaded state has filled %llu, next %llu for a "
                        "window of %llu",
                        (unsigned long long)w->filled, (unsigned long long)w->next,
                        (unsigned long long)w->cfg.window);
    for (size_t h = 0; h < n; h++)
        if (!isfinite(entropy[h]))
            return srp_fail(SRP_ERR_NUMERIC, "srp_collapse_update: entropy[%zu] is %g", h,
                            (double)entropy[h]);

    /* The window's peak and trough of every head, this step's entropy
     * included. */
    for (size_t h = 0; h < n; h++)
        w->peak[h] = w->trough[h] = entropy[h];
    for (uint64_t k = 0; k < w->filled; k++) {
        const float *row = w->ring + (size_t)k * n;
        for (size_t h = 0; h < n; h++) {
            w->peak[h] = fmaxf(w->peak[h], row[h]);
            w->trough[h] = fminf(w->trough[h], row[h]);
        }
    }
    const float low_line = w->cfg.fraction * w->cfg.uniform, drop = w->cfg.drop;
    size_t fired = 0;
    for (size_t h = 0; h < n; h++) {
        /* A warning re-arms on the trough: when the whole window is
         * above the re-arm line, not one step that the batch's noise
         * lifts over it. */
        const float e = entropy[h], peak = w->peak[h], trough = w->trough[h];
        const unsigned char warned_low = w->flags[2 * h], warned_drop = w->flags[2 * h + 1];
        unsigned char low = warned_low, dropped = warned_drop;
        if (e < low_line && !warned_low) {
            low = 1;
            fired++;
        } else if (trough >= SRP_COLLAPSE_REARM * low_line) {
            low = 0;
        }
        if (peak >= low_line && e < (1.0f - drop) * peak && !warned_drop) {
            dropped = 1;
            fired++;
        } else if (trough >= (1.0f - 0.5f * drop) * peak) {
            dropped = 0;
        }
        w->new_flags[2 * h] = low;
        w->new_flags[2 * h + 1] = dropped;
    }
    if (fired > capacity)
        return srp_fail(
            SRP_ERR_SHAPE,
            "srp_collapse_update: %zu warnings for events[%zu] (srp_collapse_max_events "
            "is %zu)",
            fired, capacity, 2 * n);

    /* Commit: the warnings are the flags that went from 0 to 1. */
    size_t c = 0;
    for (size_t h = 0; h < n; h++)
        for (int kind = 0; kind < 2; kind++) {
            if (w->flags[2 * h + kind] || !w->new_flags[2 * h + kind])
                continue;
            srp_collapse_event *ev = &events[c++];
            ev->step = step;
            ev->layer = h / w->cfg.heads;
            ev->head = h % w->cfg.heads;
            ev->kind = kind == 0 ? SRP_COLLAPSE_LOW : SRP_COLLAPSE_DROP;
            ev->entropy = entropy[h];
            ev->reference = kind == 0 ? low_line : w->peak[h];
        }
    memcpy(w->flags, w->new_flags, 2 * n);
    memcpy(w->ring + (size_t)w->next * n, entropy, n * sizeof(float));
    w->next = (w->next + 1) % w->cfg.window;
    if (w->filled < w->cfg.window)
        w->filled++;
    *count = c;
    return SRP_OK;
}

srp_status srp_collapse_state_refs(srp_collapse *w, const char *prefix, srp_tensor_list *list)
{
    if (!w || !list)
        return SRP_FAIL_NULL(w, list);
    const size_t ring_shape[2] = {(size_t)w->cfg.window, w->heads_total};
    const size_t flag_shape[2] = {w->heads_total, 2};
    srp_status st =
        srp_tensor_list_add(list, prefix, "ring", SRP_DTYPE_F32, 2, ring_shape, w->ring);
    if (st == SRP_OK)
        st = srp_tensor_list_add(list, prefix, "filled", SRP_DTYPE_U64, 0, NULL, &w->filled);
    if (st == SRP_OK)
        st = srp_tensor_list_add(list, prefix, "next", SRP_DTYPE_U64, 0, NULL, &w->next);
    if (st == SRP_OK)
        st = srp_tensor_list_add(list, prefix, "flags", SRP_DTYPE_U8, 2, flag_shape, w->flags);
    return st;
}
