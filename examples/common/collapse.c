/* The entropy-collapse watch (collapse.h). */
#include "collapse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ex_collapse_kind_name(ex_collapse_kind kind)
{
    return kind == EX_COLLAPSE_LOW ? "low" : "drop";
}

ex_code ex_collapse_init(ex_collapse_watch *w, size_t heads_total, uint64_t window, float fraction,
                         float drop, float reference, ex_error *err)
{
    memset(w, 0, sizeof(*w));
    w->heads_total = heads_total;
    w->window = window;
    w->fraction = fraction;
    w->drop = drop;
    w->reference = reference;
    w->ring = calloc(window * heads_total, sizeof(float));
    w->flags = calloc(heads_total * 2, 1);
    if (!w->ring || !w->flags)
        return ex_fail(err, EX_FAILED, "out of memory for the collapse watch");
    return EX_OK;
}

void ex_collapse_free(ex_collapse_watch *w)
{
    free(w->ring);
    free(w->flags);
    memset(w, 0, sizeof(*w));
}

int ex_collapse_update(ex_collapse_watch *w, const float *entropy, ex_collapse_warn_fn warn,
                       void *ctx)
{
    int warnings = 0;
    const float low_line = w->fraction * w->reference;
    for (size_t h = 0; h < w->heads_total; h++) {
        const float e = entropy[h];
        float peak = e;
        for (uint64_t k = 0; k < w->filled; k++)
            peak = fmaxf(peak, w->ring[k * w->heads_total + h]);
        /* A drop counts from a healthy level only: among values already
         * below the low line, halving is noise, not news. */
        const int low = e < low_line;
        const int dropped = peak >= low_line && e < (1.0f - w->drop) * peak;
        if (low && !w->flags[2 * h]) {
            warn(ctx, h, EX_COLLAPSE_LOW, e, low_line);
            warnings++;
            w->flags[2 * h] = 1;
        } else if (e >= EX_COLLAPSE_REARM * low_line) {
            w->flags[2 * h] = 0;
        }
        if (dropped && !w->flags[2 * h + 1]) {
            warn(ctx, h, EX_COLLAPSE_DROP, e, peak);
            warnings++;
            w->flags[2 * h + 1] = 1;
        } else if (e >= (1.0f - 0.5f * w->drop) * peak) {
            w->flags[2 * h + 1] = 0;
        }
        w->ring[w->next * w->heads_total + h] = e;
    }
    w->next = (w->next + 1) % w->window;
    if (w->filled < w->window)
        w->filled++;
    return warnings;
}

void ex_collapse_tensors(ex_collapse_watch *w, const char *prefix, srp_tensor_list *list)
{
    const size_t ring_shape[2] = {w->window, w->heads_total}, flag_shape[2] = {w->heads_total, 2};
    srp_tensor_list_add(list, prefix, "ring", SRP_DTYPE_F32, 2, ring_shape, w->ring);
    srp_tensor_list_add(list, prefix, "filled", SRP_DTYPE_U64, 0, NULL, &w->filled);
    srp_tensor_list_add(list, prefix, "next", SRP_DTYPE_U64, 0, NULL, &w->next);
    srp_tensor_list_add(list, prefix, "flags", SRP_DTYPE_U8, 2, flag_shape, w->flags);
}
