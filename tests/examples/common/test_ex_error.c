/* examples/common/error.c: the programs' error convention: one message,
 * the library's detail appended where it belongs to the status, and one
 * mapping from ex_code to the exit code. */
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "testutil.h"

static void test_messages(void **state)
{
    (void)state;
    ex_error err;
    assert_int_equal(ex_fail(&err, EX_USAGE, "--%s: %d", "lr", 3), EX_USAGE);
    assert_string_equal(err.message, "--lr: 3");
    ex_append(&err, "; and %s", "more");
    assert_string_equal(err.message, "--lr: 3; and more");
    /* a message longer than its buffer is cut, and terminated */
    char long_text[1500];
    memset(long_text, 'a', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    ex_fail(&err, EX_FAILED, "%s", long_text);
    assert_int_equal(strlen(err.message), sizeof(err.message) - 1);
    ex_append(&err, "tail");
    assert_int_equal(strlen(err.message), sizeof(err.message) - 1);
    assert_null(strstr(err.message, "tail"));
}

/* The library's detail goes with its own status only, once. */
static void test_library_detail(void **state)
{
    (void)state;
    float sigma;
    const float w[1] = {1.0f};
    assert_status(srp_spectral_norm_exact(w, 0, 1, &sigma), SRP_ERR_INVALID_ARG);
    const char *detail = srp_last_error_detail();
    assert_true(*detail != '\0');
    char want[1024];
    snprintf(want, sizeof(want), "reading x: %s (%s)", srp_status_str(SRP_ERR_INVALID_ARG), detail);
    ex_error err;
    /* another status: the detail is not this failure's */
    assert_int_equal(ex_fail_status(&err, SRP_ERR_IO, "reading x"), EX_FAILED);
    assert_string_equal(err.message, "reading x: I/O error");
    assert_int_equal(ex_fail_statusf(&err, SRP_ERR_INVALID_ARG, "reading %c", 'x'), EX_FAILED);
    assert_string_equal(err.message, want);
    /* taken: the next failure without a detail has none */
    assert_int_equal(ex_fail_status(&err, SRP_ERR_INVALID_ARG, "again"), EX_FAILED);
    snprintf(want, sizeof(want), "again: %s", srp_status_str(SRP_ERR_INVALID_ARG));
    assert_string_equal(err.message, want);
}

static void test_exit_codes(void **state)
{
    (void)state;
    assert_int_equal(ex_exit_code(EX_OK), 0);
    assert_int_equal(ex_exit_code(EX_HELP), 0);
    assert_int_equal(ex_exit_code(EX_FAILED), 1);
    assert_int_equal(ex_exit_code(EX_USAGE), 2);
    assert_int_equal(ex_exit_code(EX_NONFINITE), 3);
    assert_int_equal(ex_exit_code(EX_COLLAPSE), 4);
    assert_int_equal(ex_exit_code((ex_code)99), 1);
    const char *help = ex_exit_codes_help();
    assert_non_null(strstr(help, "0 done, 1 error"));
    assert_non_null(strstr(help, "2 bad usage, 3 non-finite"));
    assert_non_null(strstr(help, "4 stopped on entropy collapse"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_library_detail),
        cmocka_unit_test(test_exit_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
