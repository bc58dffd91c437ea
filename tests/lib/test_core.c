/* Status strings, version and thread settings. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

static void test_status_strings_are_distinct(void **state)
{
    (void)state;
    const srp_status all[] = {SRP_OK,         SRP_ERR_INVALID_ARG, SRP_ERR_SHAPE,
                              SRP_ERR_NOMEM,  SRP_ERR_NUMERIC,     SRP_ERR_IO,
                              SRP_ERR_FORMAT, SRP_ERR_VERSION,     SRP_ERR_UNSUPPORTED,
                              SRP_ERR_PEER,   SRP_ERR_ORDER,       SRP_ERR_NOT_FOUND};
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

/* The detail of a failure names what was wrong, comes with its status,
 * stays until the next failure or a clear, and is the calling thread's. */
static void *fail_on_another_thread(void *arg)
{
    (void)arg;
    srp_attention *a = NULL;
    const srp_attention_config c = srp_attention_config_default(8, 2);
    if (srp_attention_create(&a, &c, 2, 4) != SRP_OK)
        return NULL;
    float x[3 * 4 * 8] = {0}, y[3 * 4 * 8];
    const srp_status st = srp_attention_forward(a, x, 3, 4, y, SRP_TRAIN);
    srp_attention_destroy(a);
    return st == SRP_ERR_SHAPE && strstr(srp_last_error_detail(), "batch 3") ? (void *)1 : NULL;
}

static void test_last_error_detail(void **state)
{
    (void)state;
    srp_clear_last_error();
    assert_string_equal(srp_last_error_detail(), "");
    assert_int_equal(srp_last_error_status(), SRP_OK);

    srp_attention *a = NULL;
    const srp_attention_config c = srp_attention_config_default(8, 2);
    assert_ok(srp_attention_create(&a, &c, 2, 4));
    float x[2 * 5 * 8] = {0}, y[2 * 5 * 8];
    assert_status(srp_attention_forward(a, x, 2, 5, y, SRP_TRAIN), SRP_ERR_SHAPE);
    assert_int_equal(srp_last_error_status(), SRP_ERR_SHAPE);
    assert_non_null(strstr(srp_last_error_detail(), "srp_attention_forward"));
    assert_non_null(strstr(srp_last_error_detail(), "tokens 5 > max_tokens 4"));
    /* a success leaves it; another thread's failure does not touch it */
    assert_ok(srp_attention_forward(a, x, 2, 4, y, SRP_TRAIN));
    pthread_t th;
    void *other_ok = NULL;
    assert_int_equal(pthread_create(&th, NULL, fail_on_another_thread, NULL), 0);
    assert_int_equal(pthread_join(th, &other_ok), 0);
    assert_non_null(other_ok);
    assert_non_null(strstr(srp_last_error_detail(), "tokens 5 > max_tokens 4"));
    /* the next failure replaces it */
    assert_ok(srp_attention_backward(a, y, NULL));
    assert_status(srp_attention_backward(a, y, NULL), SRP_ERR_ORDER);
    assert_int_equal(srp_last_error_status(), SRP_ERR_ORDER);
    assert_non_null(strstr(srp_last_error_detail(), "already differentiated"));
    srp_clear_last_error();
    assert_string_equal(srp_last_error_detail(), "");
    srp_attention_destroy(a);
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
    srp_set_num_threads(1); /* the tests' default (tests/CMakeLists.txt) */
}

/* fp32 always runs; bf16 runs where the build has oneDNN's bf16 GEMM and
 * the CPU avx512_bf16 or AMX, and is refused elsewhere with the reason;
 * auto takes one of the two and says why; a refused or invalid request
 * changes nothing. */
static void test_precision(void **state)
{
    (void)state;
    assert_int_equal(srp_precision_active(), SRP_PRECISION_FP32);
    assert_string_equal(srp_precision_auto_choice(), "");
    const srp_status bf16 = srp_set_precision(SRP_PRECISION_BF16);
    if (bf16 == SRP_OK) {
        assert_int_equal(srp_precision_active(), SRP_PRECISION_BF16);
    } else {
        assert_int_equal(bf16, SRP_ERR_UNSUPPORTED);
        const char *why = srp_last_error_detail();
        assert_non_null(strstr(why, "srp_set_precision: "));
        assert_true(strstr(why, "avx512_bf16 or AMX") || strstr(why, "oneDNN"));
        assert_int_equal(srp_precision_active(), SRP_PRECISION_FP32);
    }
    print_message("bf16 here: %s\n", bf16 == SRP_OK ? "runs" : srp_last_error_detail());
    assert_int_equal(srp_set_precision(SRP_PRECISION_FP32), SRP_OK);
    assert_int_equal(srp_set_precision(SRP_PRECISION_AUTO), SRP_OK);
    const srp_precision chosen = srp_precision_active();
    const char *why = srp_precision_auto_choice();
    print_message("auto: %s (%s)\n", srp_precision_name(chosen), why);
    if (bf16 != SRP_OK) /* auto can only fall back, and says what is missing */
        assert_int_equal(chosen, SRP_PRECISION_FP32);
    else /* auto measured */
        assert_non_null(strstr(why, "as fast as fp32"));
    assert_int_not_equal(chosen, SRP_PRECISION_AUTO);
    assert_int_equal(srp_set_precision(SRP_PRECISION_AUTO), SRP_OK); /* decided once */
    assert_int_equal(srp_precision_active(), chosen);
    assert_int_equal(srp_set_precision((srp_precision)7), SRP_ERR_INVALID_ARG);
    assert_non_null(strstr(srp_last_error_detail(), "precision 7"));
    assert_int_equal(srp_precision_active(), chosen);
    assert_int_equal(srp_set_precision(SRP_PRECISION_FP32), SRP_OK);
    assert_int_equal(srp_precision_active(), SRP_PRECISION_FP32);
    assert_string_equal(srp_precision_name(SRP_PRECISION_FP32), "fp32");
    assert_string_equal(srp_precision_name(SRP_PRECISION_BF16), "bf16");
    assert_string_equal(srp_precision_name(SRP_PRECISION_AUTO), "auto");
    assert_string_equal(srp_precision_name((srp_precision)7), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_strings_are_distinct),
        cmocka_unit_test(test_last_error_detail),
        cmocka_unit_test(test_version_matches_header),
        cmocka_unit_test(test_threads_round_trip),
        cmocka_unit_test(test_precision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
