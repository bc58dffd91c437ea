/* The char LM's --minutes budget (budget.h). */
#include "budget.h"

#include <math.h>
#include <string.h>

const double LM_BUDGET_FRACTIONS[LM_BUDGET_FRACTION_COUNT] = {0.25, 0.5, 0.75, 0.9};

#define FINE 10 /* the lr's grid: 2^10 points per step of the first plan */

void lm_budget_init(lm_budget *b)
{
    memset(b, 0, sizeof(*b));
    b->from_clock = -1.0; /* not measured yet */
}

uint64_t lm_budget_total(const lm_budget *b) { return b->count ? b->totals[b->count - 1] : 0; }

/* The plan that clock is due for: the first fraction after the last plan's
 * clock (fractions passed by then are skipped); -1 when none is left. */
static double next_fraction(const lm_budget *b, double budget)
{
    for (int i = 0; i < LM_BUDGET_FRACTION_COUNT; i++)
        if (LM_BUDGET_FRACTIONS[i] * budget > b->clocks[b->count - 1])
            return LM_BUDGET_FRACTIONS[i];
    return -1.0;
}

int lm_budget_update(lm_budget *b, double budget, uint64_t step, double clock, uint64_t min_total,
                     double *per_step)
{
    if (b->count == LM_BUDGET_PLANS)
        return 0;
    uint64_t since_step;
    double since_clock;
    if (b->count == 0) {
        if (step == LM_BUDGET_FIRST_FROM) {
            b->from_step = step;
            b->from_clock = clock;
        }
        if (step < LM_BUDGET_FIRST_AT || b->from_clock < 0.0)
            return 0;
        since_step = b->from_step;
        since_clock = b->from_clock;
    } else {
        const double f = next_fraction(b, budget);
        if (f < 0.0 || clock < f * budget || step == b->steps[b->count - 1])
            return 0;
        since_step = b->steps[b->count - 1];
        since_clock = b->clocks[b->count - 1];
    }
    const double speed = fmax((clock - since_clock) / (double)(step - since_step), 1e-9);
    const double left = fmax(budget - clock, 0.0);
    uint64_t total = step + (uint64_t)(left / speed * LM_BUDGET_KEEP);
    if (total < min_total)
        total = min_total;
    if (total <= step)
        total = step + 1;
    b->steps[b->count] = step;
    b->totals[b->count] = total;
    b->clocks[b->count] = clock;
    b->count++;
    *per_step = speed;
    return 1;
}

/* Plan i's progress at step n: from p at its start a to 1 at its end T. */
static double segment(double p, uint64_t a, uint64_t total, uint64_t n)
{
    const double x = p + (1.0 - p) * ((double)n - (double)a) / (double)(total - a);
    return fmin(fmax(x, 0.0), 1.0);
}

/* The progress p(n) through the decay (budget.h), in [0, 1]. */
static double progress(const lm_budget *b, uint64_t warmup, uint64_t n)
{
    double p = 0.0; /* p_i */
    uint64_t a = b->steps[0] > warmup ? b->steps[0] : warmup, total = b->totals[0];
    for (uint64_t i = 1; i < b->count; i++) {
        const uint64_t next = b->steps[i] > warmup ? b->steps[i] : warmup;
        if (n < next)
            break;
        p = segment(p, a, total, next);
        a = next;
        total = b->totals[i];
    }
    return segment(p, a, total, n);
}

float lm_budget_lr(const lm_budget *b, const srp_lr_schedule *s, uint64_t step)
{
    if (b->count == 0)
        return srp_lr_at(s, step);
    srp_lr_schedule v = *s;
    const uint64_t w = s->warmup_steps;
    /* The grid: the first plan's decay, 2^FINE points per step. */
    const uint64_t a0 = b->steps[0] > w ? b->steps[0] : w;
    const uint64_t span = (b->totals[0] - a0) << FINE;
    const srp_lr_schedule first = srp_lr_schedule_default(s->kind, s->base_lr, b->totals[0]);
    v.total_steps = w + span;
    v.step_size = first.step_size << FINE;
    if (step < w)
        return srp_lr_at(&v, step);
    return srp_lr_at(&v, w + (uint64_t)llround(progress(b, w, step) * (double)span));
}
