/* The char LM's --minutes budget: how many steps the learning-rate
 * schedule spans when a run is given minutes instead of steps, and the
 * schedule's lr at each step.
 *
 * The schedule needs its length before the run knows its speed, and a
 * machine's speed drifts (load, the evaluations, turbo), so one estimate
 * from the first steps missed by a fifth both ways. So the plan is made
 * several times:
 *   - first at step LM_BUDGET_FIRST_AT, from the speed since step
 *     LM_BUDGET_FIRST_FROM (the warmup's lr does not depend on it);
 *   - then when the budget's clock passes each of LM_BUDGET_FRACTIONS,
 *     from the speed since the last plan (evaluations and checkpoints
 *     included), so that the steps left fill LM_BUDGET_KEEP of the time
 *     left.
 * A new plan does not restart the schedule: what was left of it is
 * stretched or shrunk over the new number of steps left. The progress p
 * through the decay goes on from where it was, so the lr never jumps:
 *
 *     p(n) = p_i + (1 - p_i) (n - a_i) / (T_i - a_i)   for a_i <= n,
 *
 * plan i made at step s_i with length T_i, a_i = max(s_i, warmup),
 * p_0 = 0 and p_i = the previous plan's p(a_i). The lr is the library's
 * schedule (srp_lr_at) at the progress p, read on a grid 1024 times finer
 * than the first plan's steps: with one plan this is exactly the schedule
 * of length T_0.
 *
 * Every plan is part of the run's state (the checkpoint holds lm_budget),
 * so a resumed run goes on with the same schedule; later plans follow
 * the clock of the run that makes them. The clock is rank 0's under MPI,
 * so every rank plans the same. */
#ifndef LM_BUDGET_H
#define LM_BUDGET_H

#include <stdint.h>

#include <sigmareparam.h>

#define LM_BUDGET_FIRST_FROM 5
#define LM_BUDGET_FIRST_AT 25
#define LM_BUDGET_KEEP 0.97 /* of the time left: a margin for the speed's noise */
#define LM_BUDGET_PLANS 8   /* room for the plans (1 + the fractions) */
#define LM_BUDGET_FRACTION_COUNT 4
extern const double LM_BUDGET_FRACTIONS[LM_BUDGET_FRACTION_COUNT]; /* 0.25, 0.5, 0.75, 0.9 */

typedef struct {
    uint64_t count;                   /* plans made */
    uint64_t steps[LM_BUDGET_PLANS];  /* the step count when each was made */
    uint64_t totals[LM_BUDGET_PLANS]; /* the schedule's length each chose */
    double clocks[LM_BUDGET_PLANS];   /* the budget's clock (seconds) then */
    uint64_t from_step;               /* the first plan measures its speed from here */
    double from_clock;
} lm_budget;

void lm_budget_init(lm_budget *b);

/* After each step: step (steps done), clock (seconds of the budget used;
 * the same on every rank), budget (its seconds), min_total (the shortest
 * schedule allowed: the warmup + 1). Returns 1 when it made a plan (then
 * the last entries hold it and *per_step the seconds per step it used). */
int lm_budget_update(lm_budget *b, double budget, uint64_t step, double clock, uint64_t min_total,
                     double *per_step);

/* The schedule's length: the last plan's; 0 before the first. */
uint64_t lm_budget_total(const lm_budget *b);

/* The lr at step (updates done before it) of the schedule s (its kind,
 * base and min lr, warmup; its length is the plans'): before the first
 * plan, s itself, which should be too long to decay noticeably. */
float lm_budget_lr(const lm_budget *b, const srp_lr_schedule *s, uint64_t step);

#endif
