/* The trainers' learning-rate schedule (ex_schedule): --steps long, or,
 * given --minutes instead, as many steps as the budget's plans (ex_budget)
 * expect to fit in them; the end of the training, at the schedule's last
 * step or the budget's last second. The LM and the translator share it.
 *
 * The schedule needs its length before the run knows its speed, and a
 * machine's speed drifts (load, the evaluations, turbo), so one estimate
 * from the first steps missed by a fifth both ways. So the plan is made
 * several times:
 *   - first at step EX_BUDGET_FIRST_AT, from the speed since step
 *     EX_BUDGET_FIRST_FROM (the warmup's lr does not depend on it);
 *   - then when the budget's clock passes each of EX_BUDGET_FRACTIONS,
 *     from the speed since the last plan (evaluations and checkpoints
 *     included), so that the steps left fill EX_BUDGET_KEEP of the time
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
 * Every plan is part of the run's state (the checkpoint holds ex_budget:
 * ex_schedule_state_refs), so a resumed run goes on with the same
 * schedule; later plans follow the clock of the run that makes them. The
 * clock is rank 0's under MPI (or the test clock, EX_TEST_CLOCK in
 * test_hooks.h), so every rank plans and stops at the same step. */
#ifndef EX_BUDGET_H
#define EX_BUDGET_H

#include <stdint.h>

#include <sigmareparam.h>

#include "error.h"

typedef struct ex_trainer ex_trainer; /* trainer.h */

/* ---- the plans ---- */

#define EX_BUDGET_FIRST_FROM 5
#define EX_BUDGET_FIRST_AT 25
#define EX_BUDGET_KEEP 0.97 /* of the time left: a margin for the speed's noise */
#define EX_BUDGET_PLANS 8   /* room for the plans (1 + the fractions) */
#define EX_BUDGET_FRACTION_COUNT 4
extern const double EX_BUDGET_FRACTIONS[EX_BUDGET_FRACTION_COUNT]; /* 0.25, 0.5, 0.75, 0.9 */

typedef struct {
    uint64_t count;                   /* plans made */
    uint64_t steps[EX_BUDGET_PLANS];  /* the step count when each was made */
    uint64_t totals[EX_BUDGET_PLANS]; /* the schedule's length each chose */
    double clocks[EX_BUDGET_PLANS];   /* the budget's clock (seconds) then */
    uint64_t from_step;               /* the first plan measures its speed from here */
    double from_clock;
} ex_budget;

void ex_budget_init(ex_budget *b);

/* Before each step: step (steps done), clock (seconds of the budget used;
 * the same on every rank), budget (its seconds), min_total (the shortest
 * schedule allowed: the warmup + 1). Returns 1 when a plan was due and
 * made (then the last entries hold it and *per_step the seconds per step
 * it used). */
int ex_budget_plan(ex_budget *b, double budget, uint64_t step, double clock, uint64_t min_total,
                   double *per_step);

/* The schedule's length: the last plan's; 0 before the first. */
uint64_t ex_budget_total(const ex_budget *b);

/* The lr at step (updates done before it) of the schedule s (its kind,
 * base and min lr, warmup; its length is the plans'): before the first
 * plan, s itself, which should be too long to decay noticeably. */
float ex_budget_lr(const ex_budget *b, const srp_lr_schedule *s, uint64_t step);

/* ---- a trainer's schedule ---- */

typedef struct {
    /* Its kind, base and min lr, warmup; --steps long, or with --minutes
     * alone too long to decay before the first plan. */
    srp_lr_schedule lr;
    uint64_t steps;   /* --steps; 0: the budget's plans give the length */
    float minutes;    /* --minutes; 0: no budget */
    ex_budget budget; /* --minutes without --steps: the plans (in the checkpoint) */
    double clock;     /* --minutes: the budget's seconds used, by rank 0's clock */
} ex_schedule;

/* From the options: the kind, lr and min_lr, warmup, steps and minutes
 * (0: none). EX_USAGE: a warmup not below --steps. */
ex_code ex_schedule_init(ex_schedule *s, srp_lr_kind kind, float lr, float min_lr, uint64_t warmup,
                         uint64_t steps, float minutes, ex_error *err);

/* The schedule's length; 0 while the budget has not planned it yet. */
uint64_t ex_schedule_steps(const ex_schedule *s);
/* 1 once step (steps done) reached the schedule's length. */
int ex_schedule_ended(const ex_schedule *s, uint64_t step);
/* The lr at step (updates done before it): a trainer's lr_at hook. */
float ex_schedule_lr(const ex_schedule *s, uint64_t step);

/* A trainer's before_step hook: with --minutes, rank 0's clock (the test
 * clock with EX_TEST_CLOCK) on every rank; a plan when one is due (its
 * line and its "plan" metrics line); 1 when the training is over, at the
 * schedule's steps or the minutes. */
int ex_schedule_before_step(ex_schedule *s, ex_trainer *t);

/* The training's last line: the steps and time, and with --minutes how
 * much of the budget the run used and whether the schedule ended (and a
 * "budget" metrics line). */
void ex_schedule_report(const ex_schedule *s, ex_trainer *t);

/* The plans in the checkpoint, as train.budget.*. */
void ex_schedule_state_refs(ex_schedule *s, srp_tensor_list *list);

/* ---- the options of a trainer on this schedule ---- */

/* Its optimizer's and its schedule's options (the LM's, the translator's),
 * a member of its options struct that its table's rows fill. */
typedef struct {
    int optimizer; /* srp_optim_kind */
    float lr, momentum, weight_decay, beta2, min_lr;
    float gamma_lr_mult, embed_lr_mult; /* gammas; embeddings and biases */
    int schedule;                       /* srp_lr_kind */
    uint64_t warmup_steps;
    float minutes;  /* wall-clock budget of the training (0: --steps only) */
    uint64_t steps; /* 0: as many as --minutes allows */
} ex_schedule_options;

/* For build, once t->params holds the model's parameters: the optimizer
 * (gammas at gamma_lr_mult, embeddings and biases at embed_lr_mult, the
 * rest at the lr) and the schedule s. */
ex_code ex_schedule_build(ex_schedule *s, const ex_schedule_options *o, ex_trainer *t,
                          ex_error *err);

#endif
