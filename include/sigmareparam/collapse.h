/* The entropy-collapse watch: an early warning that a head's attention is
 * collapsing (Zhai et al. 2023: entropy collapse comes with, and often
 * before, training instability). Part of <sigmareparam.h>; include that.
 *
 * Fed, once per step, the mean attention entropy of every head of every
 * layer (srp_attention_entropy's mean in nats, or
 * srp_attention_entropy_normalized's, where 1 is uniform attention), it
 * keeps those of the last `window` steps and warns, per head, when
 *  - LOW: the entropy e falls below the low line L = fraction * uniform
 *    (uniform: the entropy of uniform attention in the unit fed: log T for
 *    nats, 1 for normalized entropies); or
 *  - DROP: e < (1 - drop) * P, where P, the window's peak, is the highest
 *    of e and the window's entries, and P >= L (among values already below
 *    the low line, halving is noise, not news).
 * Each warning fires once, then re-arms only when the head has recovered
 * for a whole window: LOW when the window's trough (the lowest of e and the
 * window's entries) is >= SRP_COLLAPSE_REARM * L, DROP when the trough is
 * >= (1 - drop / 2) * P (the window's lowest within half the drop of its
 * highest: any wider spread, a recovery included, keeps DROP disarmed).
 * So a head that stays collapsed, or hovers at a line with the step-to-step
 * noise of its batches (batches of other lengths, say), warns once, not at
 * every crossing; the price is that a head that recovers and falls again
 * within one window is not warned again. The step's entropies enter the
 * window after the checks.
 *
 * uniform: 1 for normalized entropies (srp_attention_entropy_normalized
 * divides each row by the log of its own number of keys, so 1 is uniform
 * for causal, padded and cross-attention alike); log T in nats is uniform
 * for full, unmasked self-attention only (a causal row i sees i + 1 keys):
 * feed masked attention's entropies normalized.
 *
 * The state (the window, its fill, the armed flags) is listed by
 * srp_collapse_state_refs, so that a checkpoint keeps it and a resumed run
 * warns exactly where an uninterrupted one would.
 *
 * ---- One schema for every metrics file ----
 * A program that logs events as JSON lines writes one line per event:
 *     {"type": "collapse", "step": 1200, "layer": 3, "head": 1,
 *      "kind": "low", "entropy": 0.041, "reference": 0.1, "uniform": 1}
 *  - "type": "collapse";
 *  - "step", "layer", "head", "entropy", "reference": the event's fields
 *    (reference: the low line for "low", the window's peak for "drop");
 *  - "kind": srp_collapse_kind_name(kind), "low" or "drop";
 *  - "uniform": the config's uniform, so that entropy / uniform is the
 *    fraction of uniform attention whatever unit the program fed;
 *  - a program may add "message", a sentence for people. */
#ifndef SIGMAREPARAM_COLLAPSE_H
#define SIGMAREPARAM_COLLAPSE_H

#include <stddef.h>
#include <stdint.h>

#include "sigmareparam/core.h"
#include "sigmareparam/lists.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A LOW warning re-arms at this multiple of the low line. */
#define SRP_COLLAPSE_REARM 1.25f

typedef enum {
    SRP_COLLAPSE_LOW = 0, /* below fraction * uniform */
    SRP_COLLAPSE_DROP     /* fell by more than drop below the window's peak */
} srp_collapse_kind;

/* "low" or "drop", as a metrics line writes it; "unknown" for other values. */
SRP_API const char *srp_collapse_kind_name(srp_collapse_kind kind);

typedef struct {
    size_t layers, heads; /* >= 1: the entropies come as [layers][heads] */
    uint64_t window;      /* steps kept, >= 1; default 200 */
    float fraction;       /* the low line, a fraction of uniform in [0, 1]; default 0.1 */
    float drop;           /* the fall from the peak that warns, in [0, 1]; default 0.8 */
    float uniform;        /* > 0: log T for entropies in nats; default 1 (normalized) */
} srp_collapse_config;

/* One warning. */
typedef struct {
    uint64_t step; /* as given to srp_collapse_update */
    size_t layer, head;
    srp_collapse_kind kind;
    float entropy;   /* the head's entropy at that step */
    float reference; /* what it fell below: the low line, or the window's peak */
} srp_collapse_event;

typedef struct srp_collapse srp_collapse;

SRP_API srp_collapse_config srp_collapse_config_default(size_t layers, size_t heads);
/* Errors: NULL, layers, heads or window 0, a window of more than
 * SIZE_MAX / 4 / (layers * heads) entries, fraction or drop outside [0, 1],
 * uniform not finite and > 0 (NaN anywhere): SRP_ERR_INVALID_ARG;
 * SRP_ERR_NOMEM. */
SRP_API srp_status srp_collapse_create(srp_collapse **out, const srp_collapse_config *cfg);
SRP_API void srp_collapse_destroy(srp_collapse *w);
/* The most events one update can give: 2 * layers * heads. */
SRP_API size_t srp_collapse_max_events(const srp_collapse *w);

/* Feeds one step's mean entropies, entropy: [layers][heads]. Writes the
 * new warnings to events (in the order of layer, head, then LOW before
 * DROP) and their number to *count. Allocates nothing.
 * Errors, with the watch, events and *count unchanged: NULL w, entropy or
 * count, or NULL events with capacity > 0: SRP_ERR_INVALID_ARG; NaN/Inf in
 * entropy: SRP_ERR_NUMERIC; more warnings than capacity: SRP_ERR_SHAPE,
 * and the detail (srp_last_error_detail) says how many (capacity >=
 * srp_collapse_max_events always suffices); a loaded state that cannot be
 * (a fill above the window, a position outside it): SRP_ERR_FORMAT. */
SRP_API srp_status srp_collapse_update(srp_collapse *w, uint64_t step, const float *entropy,
                                       srp_collapse_event *events, size_t capacity, size_t *count);

/* Appends the watch's state to list (lists.h): "prefix.ring" f32
 * [window][layers * heads] (the entropies kept, a ring), "prefix.filled" and
 * "prefix.next" (u64 scalars: the ring's entries in use and its next slot),
 * "prefix.flags" u8 [layers * heads][2] (LOW, DROP warned and not yet
 * re-armed). Load them between updates. Errors as srp_tensor_list_add; on
 * one, the entries appended before it stay. */
SRP_API srp_status srp_collapse_state_refs(srp_collapse *w, const char *prefix,
                                           srp_tensor_list *list);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_COLLAPSE_H */
