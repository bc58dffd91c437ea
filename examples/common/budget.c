/* The trainers' schedule and its --minutes budget (budget.h). */
#include "budget.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "test_hooks.h"
#include "trainer.h"

const double EX_BUDGET_FRACTIONS[EX_BUDGET_FRACTION_COUNT] = {0.25, 0.5, 0.75, 0.9};

#define FINE 10 /* the lr's grid: 2^10 points per step of the first plan */

void ex_budget_init(ex_budget *b)
{
    memset(b, 0, sizeof(*b));
    b->from_clock = -1.0; /* not measured yet */
}

uint64_t ex_budget_total(const ex_budget *b) { return b->count ? b->totals[b->count - 1] : 0; }

/* The plan that clock is due for: the first fraction after the last plan's
 * clock (fractions passed by then are skipped); -1 when none is left. */
static double next_fraction(const ex_budget *b, double budget)
{
    for (int i = 0; i < EX_BUDGET_FRACTION_COUNT; i++)
        if (EX_BUDGET_FRACTIONS[i] * budget > b->clocks[b->count - 1])
            return EX_BUDGET_FRACTIONS[i];
    return -1.0;
}

int ex_budget_plan(ex_budget *b, double budget, uint64_t step, double clock, uint64_t min_total,
                   double *per_step)
{
    if (b->count == EX_BUDGET_PLANS)
        return 0;
    uint64_t since_step;
    double since_clock;
    if (b->count == 0) {
        if (step == EX_BUDGET_FIRST_FROM) {
            b->from_step = step;
            b->from_clock = clock;
        }
        if (step < EX_BUDGET_FIRST_AT || b->from_clock < 0.0)
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
    uint64_t total = step + (uint64_t)(left / speed * EX_BUDGET_KEEP);
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
static double progress(const ex_budget *b, uint64_t warmup, uint64_t n)
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

float ex_budget_lr(const ex_budget *b, const srp_lr_schedule *s, uint64_t step)
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

/* ---- a trainer's schedule ---- */

ex_code ex_schedule_init(ex_schedule *s, srp_lr_kind kind, float lr, float min_lr, uint64_t warmup,
                         uint64_t steps, float minutes, ex_error *err)
{
    if (steps && warmup >= steps)
        return ex_fail(err, EX_USAGE, "--warmup %llu must be below --steps %llu",
                       (unsigned long long)warmup, (unsigned long long)steps);
    memset(s, 0, sizeof(*s));
    s->lr = srp_lr_schedule_default(kind, lr, steps ? steps : (uint64_t)1 << 40);
    s->lr.warmup_steps = warmup;
    s->lr.min_lr = min_lr;
    s->steps = steps;
    s->minutes = minutes;
    ex_budget_init(&s->budget);
    return EX_OK;
}

uint64_t ex_schedule_steps(const ex_schedule *s)
{
    return s->steps ? s->steps : ex_budget_total(&s->budget);
}

int ex_schedule_ended(const ex_schedule *s, uint64_t step)
{
    return ex_schedule_steps(s) && step >= ex_schedule_steps(s);
}

float ex_schedule_lr(const ex_schedule *s, uint64_t step)
{
    return s->steps ? srp_lr_at(&s->lr, step) : ex_budget_lr(&s->budget, &s->lr, step);
}

/* With --minutes and no --steps: the schedule's length, planned and
 * planned again as the budget is used; a line and a metrics line each. */
static void plan(ex_schedule *s, ex_trainer *t)
{
    double per_step;
    const double budget = (double)s->minutes * 60.0;
    if (s->steps || !ex_budget_plan(&s->budget, budget, t->run.step, s->clock,
                                    s->lr.warmup_steps + 1, &per_step))
        return;
    const uint64_t total = ex_budget_total(&s->budget);
    ex_progress_break(&t->progress);
    printf("plan %llu at step %llu (%.0f%% of the budget): %.0f ms per step, so the schedule runs "
           "%llu steps in the %.4g minutes\n",
           (unsigned long long)s->budget.count, (unsigned long long)t->run.step,
           100.0 * s->clock / budget, per_step * 1e3, (unsigned long long)total,
           (double)s->minutes);
    ex_metrics_begin(&t->metrics, "plan");
    ex_metrics_number(&t->metrics, "step", (double)t->run.step);
    ex_metrics_number(&t->metrics, "budget_seconds", s->clock);
    ex_metrics_number(&t->metrics, "ms_per_step", per_step * 1e3);
    ex_metrics_number(&t->metrics, "schedule_steps", (double)total);
    ex_metrics_end(&t->metrics);
}

int ex_schedule_before_step(ex_schedule *s, ex_trainer *t)
{
    const double budget = (double)s->minutes * 60.0;
    if (budget > 0.0) { /* one broadcast a step */
        if (!ex_test_clock(t->run.step, &s->clock))
            s->clock = ex_run_seconds(&t->run);
        srp_dist_broadcast(t->dist.handle, &s->clock, 1);
    }
    plan(s, t);
    return ex_schedule_ended(s, t->run.step) || (budget > 0.0 && s->clock >= budget);
}

void ex_schedule_report(const ex_schedule *s, ex_trainer *t)
{
    ex_progress_break(&t->progress);
    printf("trained %llu steps in %.0f s", (unsigned long long)t->run.step,
           ex_run_seconds(&t->run));
    if (!(s->minutes > 0.0f)) {
        printf("\n");
        return;
    }
    const double budget = (double)s->minutes * 60.0, used = s->clock / budget;
    const uint64_t total = ex_schedule_steps(s);
    printf(": %.1f%% of the %.4g-minute budget; ", 100.0 * used, (double)s->minutes);
    if (ex_schedule_ended(s, t->run.step))
        printf("the schedule ran to its end\n");
    else
        printf("the budget ran out at step %llu of the schedule's %llu\n",
               (unsigned long long)t->run.step, (unsigned long long)total);
    ex_metrics_begin(&t->metrics, "budget");
    ex_metrics_number(&t->metrics, "step", (double)t->run.step);
    ex_metrics_number(&t->metrics, "schedule_steps", (double)total);
    ex_metrics_number(&t->metrics, "minutes", s->minutes);
    ex_metrics_number(&t->metrics, "budget_used", used);
    ex_metrics_number(&t->metrics, "plans", (double)s->budget.count);
    ex_metrics_end(&t->metrics);
}

void ex_schedule_state_refs(ex_schedule *s, srp_tensor_list *list)
{
    ex_budget *b = &s->budget;
    const size_t plans = EX_BUDGET_PLANS;
    srp_tensor_list_add(list, "train.budget.count", NULL, SRP_DTYPE_U64, 0, NULL, &b->count);
    srp_tensor_list_add(list, "train.budget.steps", NULL, SRP_DTYPE_U64, 1, &plans, b->steps);
    srp_tensor_list_add(list, "train.budget.totals", NULL, SRP_DTYPE_U64, 1, &plans, b->totals);
    srp_tensor_list_add(list, "train.budget.clocks", NULL, SRP_DTYPE_F64, 1, &plans, b->clocks);
    srp_tensor_list_add(list, "train.budget.from_step", NULL, SRP_DTYPE_U64, 0, NULL,
                        &b->from_step);
    srp_tensor_list_add(list, "train.budget.from_clock", NULL, SRP_DTYPE_F64, 0, NULL,
                        &b->from_clock);
}

ex_code ex_schedule_build(ex_schedule *s, const ex_schedule_options *o, ex_trainer *t,
                          ex_error *err)
{
    const float e = o->embed_lr_mult, lr_mult[5] = {1.0f, e, o->gamma_lr_mult, 1.0f, e};
    srp_optim_config oc = srp_optim_config_default((srp_optim_kind)o->optimizer);
    oc.weight_decay = o->weight_decay;
    oc.momentum = o->momentum;
    oc.beta2 = o->beta2;
    const ex_code code = ex_trainer_create_optimizer(t, &oc, lr_mult, 0, NULL, err);
    return code == EX_OK ? ex_schedule_init(s, (srp_lr_kind)o->schedule, o->lr, o->min_lr,
                                            o->warmup_steps, o->steps, o->minutes, err)
                         : code;
}
