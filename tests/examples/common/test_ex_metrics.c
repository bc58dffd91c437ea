/* examples/common/metrics.c: the JSON-lines writer (its exact text: 9
 * significant digits, NaN and Inf as null, nested arrays, named values),
 * its count of lines, and a resume that keeps a checkpoint's lines. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"
#include "testutil.h"
#include "trainer_harness.h"

static void write_line(ex_metrics *m, double step)
{
    ex_metrics_begin(m, "train");
    ex_metrics_number(m, "step", step);
    ex_metrics_end(m);
}

static void test_line_text(void **state)
{
    (void)state;
    char path[512];
    scratch_path(path, sizeof(path), "text.jsonl");
    ex_metrics m;
    ex_error err;
    assert_int_equal(ex_metrics_open(&m, path, 0, &err), EX_OK);
    const float matrix[2][3] = {{1.0f, 0.5f, -2.0f}, {NAN, 0.1f, 3e-12f}};
    const float vector[2] = {INFINITY, 1e9f};
    const char *const names[2] = {"blocks.0.attn.qkv", "head"};
    const float named[2] = {1.25f, 16777217.0f};
    ex_metrics_begin(&m, "train");
    ex_metrics_number(&m, "step", 12);
    ex_metrics_number(&m, "loss", 2.302585092994046); /* 9 digits, not 17 */
    ex_metrics_number(&m, "lr", (double)0.1f);        /* a float's 9 digits */
    ex_metrics_number(&m, "nan", NAN);
    ex_metrics_number(&m, "inf", -INFINITY);
    ex_metrics_string(&m, "set", "val \"quoted\"");
    ex_metrics_matrix(&m, "entropy", &matrix[0][0], 2, 3);
    ex_metrics_vector(&m, "v", vector, 2);
    ex_metrics_named(&m, "sigma", names, named, 2);
    ex_metrics_end(&m);
    assert_int_equal(m.lines, 1);
    ex_metrics_begin(&m, "eval"); /* a line begun again drops what it had */
    ex_metrics_number(&m, "dropped", 1);
    ex_metrics_begin(&m, "eval");
    ex_metrics_number(&m, "acc", 0.75);
    ex_metrics_end(&m);
    ex_metrics_end(&m); /* nothing begun: nothing written */
    assert_int_equal(m.lines, 2);
    ex_metrics_close(&m);
    assert_null(m.f);

    char *text = read_text(path);
    assert_string_equal(text, "{\"type\":\"train\",\"step\":12,\"loss\":2.30258509,"
                              "\"lr\":0.100000001,\"nan\":null,\"inf\":null,"
                              "\"set\":\"val \\\"quoted\\\"\","
                              "\"entropy\":[[1,0.5,-2],[null,0.100000001,2.99999999e-12]],"
                              "\"v\":[null,1e+09],"
                              "\"sigma\":{\"blocks.0.attn.qkv\":1.25,\"head\":16777216}}\n"
                              "{\"type\":\"eval\",\"acc\":0.75}\n");
    free(text);
}

/* No path: no file, and every call does nothing. */
static void test_no_file(void **state)
{
    (void)state;
    ex_metrics m;
    ex_error err;
    assert_int_equal(ex_metrics_open(&m, NULL, 0, &err), EX_OK);
    write_line(&m, 1);
    const float v[1] = {1.0f};
    ex_metrics_begin(&m, "x");
    ex_metrics_vector(&m, "v", v, 1);
    ex_metrics_end(&m);
    assert_null(m.line);
    assert_int_equal(m.lines, 0);
    ex_metrics_close(&m);
}

/* A resume keeps the first keep_lines lines (those its checkpoint saw),
 * drops the rest, and appends; a file with fewer lines, or none, is an
 * error that names it, and the file is left as it was. */
static void test_resume_keeps_lines(void **state)
{
    (void)state;
    char path[512];
    scratch_path(path, sizeof(path), "resume.jsonl");
    ex_metrics m;
    ex_error err;
    assert_int_equal(ex_metrics_open(&m, path, 0, &err), EX_OK);
    for (int i = 1; i <= 4; i++)
        write_line(&m, i);
    ex_metrics_close(&m);

    assert_int_equal(ex_metrics_open(&m, path, 2, &err), EX_OK);
    assert_int_equal(m.lines, 2);
    write_line(&m, 30);
    assert_int_equal(m.lines, 3);
    ex_metrics_close(&m);
    char *text = read_text(path);
    assert_string_equal(text, "{\"type\":\"train\",\"step\":1}\n{\"type\":\"train\",\"step\":2}\n"
                              "{\"type\":\"train\",\"step\":30}\n");
    free(text);

    assert_int_equal(ex_metrics_open(&m, path, 4, &err), EX_FAILED);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "fewer lines than the checkpoint wrote (4)"));
    text = read_text(path);
    assert_int_equal(strlen(text), 3 * strlen("{\"type\":\"train\",\"step\":1}\n") + 1);
    free(text);
    /* exactly as many lines: all kept */
    assert_int_equal(ex_metrics_open(&m, path, 3, &err), EX_OK);
    ex_metrics_close(&m);
    text = read_text(path);
    assert_non_null(strstr(text, "\"step\":30}\n"));
    free(text);

    char missing[512];
    scratch_path(missing, sizeof(missing), "missing.jsonl");
    assert_int_equal(ex_metrics_open(&m, missing, 1, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "cannot reopen the metrics file"));
    assert_false(file_exists(missing));
    scratch_path(missing, sizeof(missing), "no-dir/m.jsonl");
    assert_int_equal(ex_metrics_open(&m, missing, 0, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "cannot write the metrics file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_text),
        cmocka_unit_test(test_no_file),
        cmocka_unit_test(test_resume_keeps_lines),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
