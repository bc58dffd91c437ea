/* examples/common/test_hooks.c: the failure a test injects on one rank,
 * step and phase, and the test clock of the char LM's budget. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "common/test_hooks.h"
#include "testutil.h"

static void test_fail_due(void **state)
{
    (void)state;
    unsetenv("EX_TEST_FAIL");
    assert_false(ex_test_fail_due(1, 30, "step"));
    setenv("EX_TEST_FAIL", "1:30:step", 1);
    assert_true(ex_test_fail_due(1, 30, "step"));
    assert_false(ex_test_fail_due(0, 30, "step"));
    assert_false(ex_test_fail_due(1, 29, "step"));
    assert_false(ex_test_fail_due(1, 30, "eval"));
    assert_false(ex_test_fail_due(1, 30, "ste"));
    setenv("EX_TEST_FAIL", "1:30", 1); /* no phase: never */
    assert_false(ex_test_fail_due(1, 30, "step"));
    unsetenv("EX_TEST_FAIL");
    ex_error err;
    assert_int_equal(ex_test_fail(&err, 30, "entropy"), EX_FAILED);
    assert_non_null(strstr(err.message, "in the entropy phase of step 30"));
}

static void test_clock(void **state)
{
    (void)state;
    double seconds = -1.0;
    unsetenv("EX_TEST_CLOCK");
    assert_false(ex_test_clock(10, &seconds));
    assert_true(seconds == -1.0);
    setenv("EX_TEST_CLOCK", "2,0.5", 1); /* A n + B n^2 / 2 */
    assert_true(ex_test_clock(10, &seconds));
    assert_true(seconds == 2.0 * 10 + 0.5 * 0.5 * 100);
    assert_true(ex_test_clock(0, &seconds));
    assert_true(seconds == 0.0);
    setenv("EX_TEST_CLOCK", "2", 1);
    assert_false(ex_test_clock(10, &seconds));
    unsetenv("EX_TEST_CLOCK");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_due),
        cmocka_unit_test(test_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
