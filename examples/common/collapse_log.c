/* The trainers' entropy-collapse watch and its reports (collapse_log.h). */
#include "collapse_log.h"

#include <stdio.h>
#include <stdlib.h>

ex_code ex_collapse_log_init(ex_collapse_log *c, const srp_collapse_config *cfg, ex_error *err)
{
    c->config = *cfg;
    c->events = NULL;
    const srp_status st = srp_collapse_create(&c->watch, cfg);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "creating the collapse watch (check --collapse-*)");
    c->events = malloc(sizeof(*c->events) * srp_collapse_max_events(c->watch));
    return c->events ? EX_OK : ex_fail_status(err, SRP_ERR_NOMEM, "the collapse watch");
}

void ex_collapse_log_free(ex_collapse_log *c)
{
    srp_collapse_destroy(c->watch);
    free(c->events);
    c->watch = NULL;
    c->events = NULL;
}

static void report(const ex_collapse_log *c, const srp_collapse_event *e, ex_metrics *m,
                   ex_progress *p)
{
    const float uniform = c->config.uniform;
    ex_progress_break(p);
    if (e->kind == SRP_COLLAPSE_LOW)
        fprintf(stderr,
                "warning: step %llu: entropy collapse: layer %zu head %zu mean attention entropy "
                "%.3f is below %.3f (%.0f%% of uniform attention's %.3f)\n",
                (unsigned long long)e->step, e->layer, e->head, e->entropy, e->reference,
                100.0 * c->config.fraction, uniform);
    else
        fprintf(stderr,
                "warning: step %llu: entropy drop: layer %zu head %zu mean attention entropy "
                "fell to %.3f from %.3f within %llu steps (uniform attention: %.3f)\n",
                (unsigned long long)e->step, e->layer, e->head, e->entropy, e->reference,
                (unsigned long long)c->config.window, uniform);
    ex_metrics_begin(m, "collapse");
    ex_metrics_number(m, "step", (double)e->step);
    ex_metrics_number(m, "layer", (double)e->layer);
    ex_metrics_number(m, "head", (double)e->head);
    ex_metrics_string(m, "kind", srp_collapse_kind_name(e->kind));
    ex_metrics_number(m, "entropy", e->entropy);
    ex_metrics_number(m, "reference", e->reference);
    ex_metrics_number(m, "uniform", uniform);
    ex_metrics_end(m);
}

ex_code ex_collapse_log_update(ex_collapse_log *c, uint64_t step, const float *entropy, int speak,
                               ex_metrics *m, ex_progress *p, size_t *warnings, ex_error *err)
{
    const srp_status st = srp_collapse_update(c->watch, step, entropy, c->events,
                                              srp_collapse_max_events(c->watch), warnings);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "the collapse watch");
    for (size_t i = 0; speak && i < *warnings; i++)
        report(c, &c->events[i], m, p);
    return EX_OK;
}
