/* examples/common/progress.c: when a progress line is due (every 50 steps
 * to a file, every 0.2 s on a terminal), how it is written (a new line, or
 * one line rewritten in place), durations as H:MM:SS, and the profile's
 * table. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/progress.h"
#include "testutil.h"
#include "trainer_harness.h"

static void test_duration(void **state)
{
    (void)state;
    static const struct {
        double seconds;
        const char *text;
    } cases[] = {{0.0, "0:00:00"},        {59.99, "0:00:59"}, {3725.9, "1:02:05"},
                 {360000.0, "100:00:00"}, {-5.0, "0:00:00"},  {1e8, "0:00:00"},
                 {0.0 / 0.0, "0:00:00"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        ex_format_duration(cases[i].seconds, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].text);
    }
}

/* To a file: due every 50 steps after the last line; lines end with a
 * newline and need no break. */
static void lines_to_file(void *ctx)
{
    ex_progress *p = ctx;
    ex_progress_start(p);
    p->interactive = 0; /* whatever runs the test */
    assert_false(ex_progress_due(p, 49));
    assert_true(ex_progress_due(p, 50));
    ex_progress_print(p, 50, "step %d", 50);
    assert_false(ex_progress_due(p, 99));
    assert_true(ex_progress_due(p, 100));
    ex_progress_print(p, 120, "step %d", 120);
    assert_false(ex_progress_due(p, 169));
    assert_true(ex_progress_due(p, 170));
    ex_progress_break(p);
}

/* On a terminal: due 0.2 s after the last line; a line is rewritten in
 * place (a carriage return first, spaces after), and a break ends it once. */
static void lines_on_terminal(void *ctx)
{
    ex_progress *p = ctx;
    ex_progress_start(p);
    p->interactive = 1;
    p->last_print = ex_now();
    assert_false(ex_progress_due(p, 1000));
    p->last_print = ex_now() - 0.3;
    assert_true(ex_progress_due(p, 1));
    ex_progress_print(p, 1, "a");
    assert_int_equal(p->in_line, 1);
    assert_false(ex_progress_due(p, 2));
    ex_progress_print(p, 2, "b");
    ex_progress_break(p);
    assert_int_equal(p->in_line, 0);
    ex_progress_break(p);
}

static void test_progress_lines(void **state)
{
    (void)state;
    char path[512];
    scratch_path(path, sizeof(path), "progress.txt");
    ex_progress p;
    stdout_into(path, lines_to_file, &p);
    char *text = read_text(path);
    assert_string_equal(text, "step 50\nstep 120\n");
    free(text);
    stdout_into(path, lines_on_terminal, &p);
    text = read_text(path);
    assert_string_equal(text, "\ra   \rb   \n");
    free(text);
}

static void test_clock(void **state)
{
    (void)state;
    const double a = ex_now();
    const struct timespec pause = {0, 20000000};
    nanosleep(&pause, NULL);
    const double b = ex_now();
    assert_true(b - a >= 0.019 && b - a < 5.0);
}

/* With the profiler off every part is 0: the whole time is the rest. */
static void test_profile_table(void **state)
{
    (void)state;
    char path[512];
    scratch_path(path, sizeof(path), "profile.txt");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    ex_print_profile(f, 1.0, 4, "the trainer");
    fclose(f);
    char *text = read_text(path);
    assert_string_equal(text, "where the time went (4 steps, 250.00 ms per step):\n"
                              "    the trainer                250.00 ms  100.0%\n");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_progress_lines),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_profile_table),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
