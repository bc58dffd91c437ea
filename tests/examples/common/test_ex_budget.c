/* examples/common/budget.c: the trainers' lr schedule, --steps long or
 * planned to fill --minutes (ex_budget's plans, ex_schedule), checked on
 * plans worked out by hand, on a simulated clock that drifts, and through
 * the before_step hook on the test clock (EX_TEST_CLOCK). */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/budget.h"
#include "common/trainer.h"
#include "testutil.h"
#include "trainer_harness.h"

/* A step takes 0.5 s and the budget is 60 s. The first plan, at step 25
 * (clock 12.5), measures from step 5 (clock 2.5): 0.5 s a step, 47.5 s
 * left, 0.97 of them 92.15 s: 25 + 92 = 117 steps. The next ones, at the
 * first step whose clock reaches 15, 30, 45 and 54 s (steps 30, 60, 90,
 * 108), have 45, 30, 15 and 6 s left: 30 + floor(87.3) = 117,
 * 60 + floor(58.2) = 118, 90 + floor(29.1) = 119, 108 + floor(11.64) = 119. */
static const uint64_t k_plan_steps[] = {25, 30, 60, 90, 108};
static const uint64_t k_plan_totals[] = {117, 117, 118, 119, 119};

static void test_plans_by_hand(void **state)
{
    (void)state;
    ex_budget b;
    ex_budget_init(&b);
    size_t made = 0;
    for (uint64_t n = 0; n <= 119; n++) {
        double per_step = -1.0;
        if (ex_budget_plan(&b, 60.0, n, 0.5 * (double)n, 1, &per_step)) {
            assert_true(made < 5);
            assert_int_equal(n, k_plan_steps[made]);
            assert_int_equal(ex_budget_total(&b), k_plan_totals[made]);
            assert_true(per_step == 0.5);
            made++;
        }
    }
    assert_int_equal(made, 5);
    assert_int_equal(b.count, 5);
    /* no plan before the first; a long warmup sets the shortest length */
    ex_budget_init(&b);
    double per_step;
    assert_int_equal(ex_budget_total(&b), 0);
    for (uint64_t n = 0; n < 25; n++)
        assert_false(ex_budget_plan(&b, 60.0, n, 0.5 * (double)n, 301, &per_step));
    assert_true(ex_budget_plan(&b, 60.0, 25, 12.5, 301, &per_step));
    assert_int_equal(ex_budget_total(&b), 301);
    /* the budget spent by the first plan: one more step */
    ex_budget_init(&b);
    assert_false(ex_budget_plan(&b, 10.0, 5, 2.5, 1, &per_step));
    assert_true(ex_budget_plan(&b, 10.0, 25, 12.5, 1, &per_step));
    assert_int_equal(ex_budget_total(&b), 26);
}

/* The --minutes plans (budget.h), on a simulated clock whose step time
 * starts at a and grows by b a step: steps run until the schedule ends or
 * the budget does. Returns the fraction of the budget used; *ended: the
 * schedule ran to its end. replan 0: only the first plan (the trainer
 * before re-planning). */
static double simulate_budget(double a, double b, double budget, int replan, ex_budget *out,
                              int *ended)
{
    ex_budget_init(out);
    uint64_t n = 0;
    double clock = 0.0, per_step;
    for (;;) {
        if (replan || out->count == 0)
            ex_budget_plan(out, budget, n, clock, 101, &per_step);
        const uint64_t total = ex_budget_total(out);
        if ((total && n >= total) || clock >= budget)
            break;
        clock += a + b * (double)n;
        n++;
    }
    *ended = ex_budget_total(out) && n >= ex_budget_total(out);
    return clock / budget;
}

/* With a step time that drifts by half over the run, one plan from the
 * first steps' speed runs out of time before its schedule ends (slowing)
 * or ends with a fifth of the budget unused (speeding up); the re-plans at
 * 25, 50, 75 and 90% of the budget end the schedule within the last
 * percents of it, both ways. */
static void test_budget_plans_fill_the_budget(void **state)
{
    (void)state;
    const double budget = 480.0;
    const double drift[2][2] = {{0.2, 5e-5}, {0.3, -5e-5}}; /* slowing, speeding up */
    for (int k = 0; k < 2; k++) {
        ex_budget b;
        int ended;
        const double once = simulate_budget(drift[k][0], drift[k][1], budget, 0, &b, &ended);
        if (k == 0)
            assert_false(ended); /* out of time before the schedule's end */
        else
            assert_true(once < 0.85);
        const double used = simulate_budget(drift[k][0], drift[k][1], budget, 1, &b, &ended);
        if (!ended || !(used > 0.97 && used <= 1.001)) { /* 1.001: the last step may cross it */
            print_error("drift %d: used %.4f of the budget (one plan: %.4f), schedule %s\n", k,
                        used, once, ended ? "ended" : "cut short");
            fail();
        }
        /* the first plan at step 25, then one at each fraction of the budget */
        assert_int_equal(b.count, 1 + EX_BUDGET_FRACTION_COUNT);
        assert_int_equal(b.steps[0], EX_BUDGET_FIRST_AT);
        for (uint64_t i = 1; i < b.count; i++) {
            assert_true(b.clocks[i] >= EX_BUDGET_FRACTIONS[i - 1] * budget);
            assert_true(b.clocks[i] < EX_BUDGET_FRACTIONS[i - 1] * budget + 0.31); /* one step */
        }
    }
}

/* The lr: with one plan it is the library's schedule of that length, bit
 * for bit, warmup included; a later plan changes no lr before it, moves on
 * from the same lr at its step (no jump), decays monotonically and ends on
 * min_lr at its last step. */
static void test_budget_lr_is_continuous(void **state)
{
    (void)state;
    srp_lr_schedule s = srp_lr_schedule_default(SRP_LR_COSINE, 0.016f, (uint64_t)1 << 40);
    s.warmup_steps = 100;
    s.min_lr = 0.001f;
    ex_budget one, two;
    ex_budget_init(&one);
    one.count = 1;
    one.steps[0] = 25;
    one.totals[0] = 1000;
    srp_lr_schedule lib = s;
    lib.total_steps = 1000;
    for (uint64_t n = 0; n < 1010; n++) {
        const float got = ex_budget_lr(&one, &s, n), want = srp_lr_at(&lib, n);
        assert_memory_equal(&got, &want, sizeof(float));
    }
    two = one;
    two.count = 2;
    two.steps[1] = 400;
    two.totals[1] = 1600;
    for (uint64_t n = 0; n < 400; n++)
        assert_true(ex_budget_lr(&two, &s, n) == ex_budget_lr(&one, &s, n));
    /* at the new plan's step: the lr the first plan would have given */
    assert_close_rel(ex_budget_lr(&two, &s, 400), ex_budget_lr(&one, &s, 400), 1e-5, 0.0,
                     "lr at the re-plan");
    float last = ex_budget_lr(&two, &s, 399);
    for (uint64_t n = 400; n < 1600; n++) {
        const float lr = ex_budget_lr(&two, &s, n);
        assert_true(lr <= last && lr > s.min_lr);
        /* a step moves the lr by at most the stretched cosine's steepest slope */
        assert_true(last - lr <= (s.base_lr - s.min_lr) * 3.1416f / 2.0f / 1000.0f);
        last = lr;
    }
    assert_true(ex_budget_lr(&two, &s, 1600) == s.min_lr);
    /* before any plan: the schedule too long to decay noticeably */
    ex_budget none;
    ex_budget_init(&none);
    assert_true(ex_budget_lr(&none, &s, 50) == srp_lr_at(&lib, 50));
    assert_close_rel(ex_budget_lr(&none, &s, 500), s.base_lr, 1e-6, 0.0, "lr before a plan");
}

/* --steps: the library's schedule of that length, an end at that step, a
 * warmup that must be shorter; --minutes alone: no end before a plan. */
static void test_schedule_of_steps(void **state)
{
    (void)state;
    ex_schedule s;
    ex_error err;
    assert_int_equal(ex_schedule_init(&s, SRP_LR_COSINE, 0.01f, 0.001f, 10, 100, 0.0f, &err),
                     EX_OK);
    srp_lr_schedule lib = srp_lr_schedule_default(SRP_LR_COSINE, 0.01f, 100);
    lib.warmup_steps = 10;
    lib.min_lr = 0.001f;
    for (uint64_t n = 0; n < 110; n++) {
        const float got = ex_schedule_lr(&s, n), want = srp_lr_at(&lib, n);
        assert_memory_equal(&got, &want, sizeof(float));
    }
    assert_int_equal(ex_schedule_steps(&s), 100);
    assert_false(ex_schedule_ended(&s, 99));
    assert_true(ex_schedule_ended(&s, 100));
    assert_int_equal(ex_schedule_init(&s, SRP_LR_COSINE, 0.01f, 0.0f, 100, 100, 0.0f, &err),
                     EX_USAGE);
    assert_string_equal(err.message, "--warmup 100 must be below --steps 100");
    assert_int_equal(ex_schedule_init(&s, SRP_LR_COSINE, 0.01f, 0.0f, 100, 0, 1.0f, &err), EX_OK);
    assert_int_equal(ex_schedule_steps(&s), 0);
    assert_false(ex_schedule_ended(&s, 1000000));
}

/* A trainer with no model: the step count, the metrics file, the ranks'
 * handle that before_step and the report use. */
typedef struct {
    ex_trainer t;
    ex_schedule s;
    uint64_t stopped; /* the step before_step ended the training at */
} schedule_run;

static void run_schedule(void *ctx)
{
    schedule_run *r = ctx;
    r->t.run.step = 0;
    while (!ex_schedule_before_step(&r->s, &r->t))
        r->t.run.step++;
    r->stopped = r->t.run.step;
    ex_schedule_report(&r->s, &r->t);
    fflush(stdout);
}

static void run_on_test_clock(schedule_run *r, const char *clock, uint64_t steps, const char *name)
{
    char metrics[512], out[600];
    ex_error err;
    memset(r, 0, sizeof(*r));
    scratch_path(metrics, sizeof(metrics), name);
    assert_int_equal(srp_dist_create_single(&r->t.dist.handle, NULL, 0, NULL, 0), SRP_OK);
    assert_int_equal(ex_metrics_open(&r->t.metrics, metrics, 0, &err), EX_OK);
    assert_int_equal(ex_schedule_init(&r->s, SRP_LR_COSINE, 0.01f, 0.0f, 10, steps, 1.0f, &err),
                     EX_OK);
    assert_int_equal(setenv("EX_TEST_CLOCK", clock, 1), 0);
    snprintf(out, sizeof(out), "%s.out", metrics);
    stdout_into(out, run_schedule, r);
    unsetenv("EX_TEST_CLOCK");
    ex_metrics_close(&r->t.metrics);
    srp_dist_destroy(r->t.dist.handle);
}

/* What the run_on_test_clock of metrics file name printed holds line. */
static void assert_printed(const char *name, const char *line)
{
    char path[600];
    scratch_path(path, sizeof(path), name);
    strcat(path, ".out");
    char *out = read_text(path);
    if (!strstr(out, line))
        fail_msg("\"%s\" not in what the run printed:\n%s", line, out);
    free(out);
}

/* --minutes 1 on a test clock of 0.5 s a step: the hand-made plans above,
 * each a metrics line; the schedule ends at step 119 (59.5 s), the report
 * says so. With --steps 200 too: no plan, and the budget ends the
 * training at step 120, when the clock reads 60 s. */
static void test_before_step_on_the_test_clock(void **state)
{
    (void)state;
    schedule_run r;
    char path[512];
    run_on_test_clock(&r, "0.5,0", 0, "minutes.jsonl");
    assert_int_equal(r.stopped, 119);
    scratch_path(path, sizeof(path), "minutes.jsonl");
    double steps[8], totals[8];
    assert_int_equal(all_values(path, "plan", "step", steps, 8), 5);
    assert_int_equal(all_values(path, "plan", "schedule_steps", totals, 8), 5);
    for (size_t i = 0; i < 5; i++) {
        assert_true(steps[i] == (double)k_plan_steps[i]);
        assert_true(totals[i] == (double)k_plan_totals[i]);
    }
    /* 9 significant digits in the file */
    assert_true(fabs(last_value(path, "budget", "budget_used") - 59.5 / 60.0) < 1e-8);
    assert_true(last_value(path, "budget", "plans") == 5.0);
    assert_printed("minutes.jsonl", "plan 1 at step 25 (21% of the budget): 500 ms per step, so "
                                    "the schedule runs 117 steps in the 1 minutes\n");
    assert_printed("minutes.jsonl", "trained 119 steps in 0 s: 99.2% of the 1-minute budget; the "
                                    "schedule ran to its end\n");

    run_on_test_clock(&r, "0.5,0", 200, "steps.jsonl");
    assert_int_equal(r.stopped, 120);
    scratch_path(path, sizeof(path), "steps.jsonl");
    assert_true(isnan(last_value(path, "plan", "step")));
    assert_true(last_value(path, "budget", "schedule_steps") == 200.0);
    assert_printed("steps.jsonl", "the budget ran out at step 120 of the schedule's 200\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plans_by_hand),
        cmocka_unit_test(test_budget_plans_fill_the_budget),
        cmocka_unit_test(test_budget_lr_is_continuous),
        cmocka_unit_test(test_schedule_of_steps),
        cmocka_unit_test(test_before_step_on_the_test_clock),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
