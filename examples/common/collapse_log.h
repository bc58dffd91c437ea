/* The entropy-collapse watch of a trainer: the library's srp_collapse fed
 * each step's per-head entropies, and each warning told the same way in
 * every trainer: a line on stderr for people, and a metrics line of the
 * one schema collapse.h defines, {"type": "collapse", "step", "layer",
 * "head", "kind", "entropy", "reference", "uniform"}. */
#ifndef EX_COLLAPSE_LOG_H
#define EX_COLLAPSE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include <sigmareparam.h>

#include "error.h"
#include "metrics.h"
#include "progress.h"

typedef struct {
    srp_collapse *watch;
    srp_collapse_config config;
    srp_collapse_event *events; /* [srp_collapse_max_events] */
} ex_collapse_log;

/* The watch of cfg (its uniform: log T for entropies in nats, 1 for
 * normalized ones). */
ex_code ex_collapse_log_init(ex_collapse_log *c, const srp_collapse_config *cfg, ex_error *err);
void ex_collapse_log_free(ex_collapse_log *c);
/* Feeds the step's mean entropies [layers][heads]; with speak (rank 0:
 * every rank sees the same entropies, one speaks) prints and logs each new
 * warning; *warnings = how many. */
ex_code ex_collapse_log_update(ex_collapse_log *c, uint64_t step, const float *entropy, int speak,
                               ex_metrics *m, ex_progress *p, size_t *warnings, ex_error *err);

#endif
