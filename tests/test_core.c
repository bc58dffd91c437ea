/* Status strings, version and thread settings. */
#include <stdio.h>
#include <string.h>

#include "testutil.h"

static void test_status_strings_are_distinct(void **state)
{
    (void)state;
    const srp_status all[] = {SRP_OK,         SRP_ERR_INVALID_ARG, SRP_ERR_SHAPE,
                              SRP_ERR_NOMEM,  SRP_ERR_NUMERIC,     SRP_ERR_IO,
                              SRP_ERR_FORMAT, SRP_ERR_VERSION,     SRP_ERR_UNSUPPORTED, SRP_ERR_PEER,
                              SRP_ERR_ORDER};
    const size_t n = sizeof(all) / sizeof(all[0]);
    for (size_t i = 0; i < n; i++) {
        const char *s = srp_status_str(all[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 1);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(s, srp_status_str(all[j]));
    }
    assert_string_equal(srp_status_str((srp_status)999), "unknown status");
}

static void test_version_matches_header(void **state)
{
    (void)state;
    char expected[32];
    snprintf(expected, sizeof(expected), "%d.%d.%d", SRP_VERSION_MAJOR, SRP_VERSION_MINOR,
             SRP_VERSION_PATCH);
    assert_string_equal(srp_version_string(), expected);
    assert_string_equal(SRP_VERSION_STRING, expected);
    assert_int_equal(srp_version_number(), SRP_VERSION_NUMBER);
}

static void test_threads_round_trip(void **state)
{
    (void)state;
    srp_set_num_threads(1);
    assert_int_equal(srp_get_num_threads(), 1);
    srp_set_num_threads(2);
    assert_int_equal(srp_get_num_threads(), 2);
    srp_set_num_threads(0); /* one per CPU */
    assert_true(srp_get_num_threads() >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_strings_are_distinct),
        cmocka_unit_test(test_version_matches_header),
        cmocka_unit_test(test_threads_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
