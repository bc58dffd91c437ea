/* The entropy-collapse watch: per head, the mean attention entropy of every
 * step is kept for the last `window` steps. A head warns when its entropy
 * falls below fraction * reference (reference: log T, or 1 for entropies
 * normalized per row, so the fraction is of uniform attention), or by more
 * than `drop` of the highest value in the window when that value was above
 * the low line. Each warning fires once, then re-arms only when the head
 * recovers: to EX_COLLAPSE_REARM times the low line, or to within half the
 * drop of the window's peak; so a head that stays collapsed, or hovers at
 * a line, does not warn at every step. The state is plain arrays, so that
 * checkpoints keep it (ex_collapse_tensors). */
#ifndef EX_COLLAPSE_H
#define EX_COLLAPSE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "tensors.h"

#define EX_COLLAPSE_REARM 1.25f

typedef enum {
    EX_COLLAPSE_LOW, /* below fraction * reference */
    EX_COLLAPSE_DROP /* fell by more than drop within the window */
} ex_collapse_kind;

/* "low" or "drop", as the metrics write it. */
const char *ex_collapse_kind_name(ex_collapse_kind kind);

typedef struct {
    size_t heads_total; /* layers * heads */
    uint64_t window;
    float fraction, drop, reference;
    float *ring;           /* [window][heads_total] */
    uint64_t filled, next; /* entries in use, the next slot */
    unsigned char *flags;  /* [heads_total][2]: low, drop warned */
} ex_collapse_watch;

/* Called for each new warning: head index (layer * heads + head), its
 * entropy, and what it fell below (the low line, or the window's peak). */
typedef void (*ex_collapse_warn_fn)(void *ctx, size_t index, ex_collapse_kind kind, float value,
                                    float reference);

ex_code ex_collapse_init(ex_collapse_watch *w, size_t heads_total, uint64_t window, float fraction,
                         float drop, float reference, ex_error *err);
void ex_collapse_free(ex_collapse_watch *w);
/* Feeds one step's mean entropies [heads_total]; returns the number of new
 * warnings. */
int ex_collapse_update(ex_collapse_watch *w, const float *entropy, ex_collapse_warn_fn warn,
                       void *ctx);
/* Adds the watch's state to a checkpoint's list, names under prefix. */
void ex_collapse_tensors(ex_collapse_watch *w, const char *prefix, srp_tensor_list *list);

#endif
