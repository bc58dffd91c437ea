/* Test-only hooks of the trainers, read from the environment. They exist
 * so that tests can reach paths a healthy run never takes; they are not
 * options, --help does not list them, and a user has no reason to set
 * them.
 *
 *   EX_TEST_FAIL=RANK:STEP:PHASE
 *     rank RANK fails alone in PHASE of step STEP (the step count after
 *     that step, as the metrics give it): "step" (the optimizer step,
 *     after the gradient allreduce), "entropy" (reading the attention
 *     entropies after the step) or "eval" (an evaluation at that step).
 *     tests/examples/test_mpi_trainers.c uses it to check that every rank stops
 *     with the reason instead of waiting for the failed one.
 *
 *   EX_TEST_CLOCK=A,B
 *     the char LM's --minutes budget reads a clock that says
 *     A n + B n^2 / 2 seconds after n steps (a step time of A growing by
 *     B a step) instead of the wall clock, so that the schedule's plan is
 *     the same on every machine and at any load (tests/examples/test_char_lm.c). */
#ifndef EX_TEST_HOOKS_H
#define EX_TEST_HOOKS_H

#include <stdint.h>

#include "error.h"

/* 1 when EX_TEST_FAIL names this rank, step and phase. */
int ex_test_fail_due(int rank, uint64_t step, const char *phase);
/* The failure's message, EX_FAILED. */
ex_code ex_test_fail(ex_error *err, uint64_t step, const char *phase);

/* 1 and *seconds = the test clock after `steps` steps when EX_TEST_CLOCK
 * is set; else 0. */
int ex_test_clock(uint64_t steps, double *seconds);

#endif
