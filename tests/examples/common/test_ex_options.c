/* examples/common/options.c: the table-driven parser, its defaults, the
 * shared rows and groups taken into a trainer's table, --help, and the
 * fingerprint a resume must match. */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/options.h"
#include "testutil.h"
#include "trainer_harness.h"

/* A trainer's options: one field of each type, and the shared rows'. */
typedef struct {
    ex_train_options run;
    size_t width;
    uint64_t steps;
    float rate, lr, momentum;
    int fast;  /* --fast 1, --slow 0 */
    int color; /* red|green|blue */
    const char *data;
    int checked; /* set by check */
} opts;

#define OFF(field) offsetof(opts, field)

static void defaults(void *p)
{
    opts *o = p;
    o->width = 7;  /* no row gives it a default */
    o->steps = 99; /* the row's default replaces it */
}

static ex_code check(void *p, ex_error *err)
{
    opts *o = p;
    o->checked = 1;
    if (o->width == 13)
        return ex_fail(err, EX_USAGE, "--width 13 does not go with --fast");
    return EX_OK;
}

static const ex_opt_spec k_rows[] = {
    {"width", EX_OPT_SIZE, OFF(width), 1, 64, NULL, 0, 1, NULL, "the width"},
    {"steps", EX_OPT_U64, OFF(steps), 0, 1000, NULL, 0, 1, "20", "the steps"},
    {"rate", EX_OPT_FLOAT, OFF(rate), -1, 1, NULL, 0, 1, "0.1", "the rate"},
    {"fast", EX_OPT_FLAG, OFF(fast), 0, 0, NULL, 1, 1, "on", "go fast"},
    {"slow", EX_OPT_FLAG, OFF(fast), 0, 0, NULL, 0, 1, NULL, "go slow"},
    {"color", EX_OPT_CHOICE, OFF(color), 0, 0, "red|green|blue", 0, 1, "green", "the color"},
    {"data", EX_OPT_STRING, OFF(data), 0, 0, "DIR", 0, 0, NULL, "the data"},
    {.name = "lr", .type = EX_OPT_SHARED, .offset = OFF(lr), .def = "0.25"},
    {.name = "momentum", .type = EX_OPT_SHARED, .offset = OFF(momentum)},
    {.name = "output", .type = EX_OPT_SHARED, .offset = OFF(run)},
};
static const ex_opt_table k_table = {
    "  a test's options", k_rows,   sizeof(k_rows) / sizeof(k_rows[0]),
    sizeof(opts),         defaults, check};

/* Parses the arguments (after a program name) into *o. */
static ex_code parse(opts *o, ex_error *err, const char *const *args, int n)
{
    char *argv[24] = {"prog"};
    assert_true(n < 24);
    for (int i = 0; i < n && i < 23; i++)
        argv[i + 1] = (char *)args[i];
    err->message[0] = '\0';
    return ex_options_parse(&k_table, o, n + 1, argv, err);
}
#define PARSE(o, err, ...)                                                                         \
    parse(o, err, (const char *const[]){__VA_ARGS__},                                              \
          (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))

/* Defaults: the table's function first, then the rows' (a shared row's own
 * default replaces the shared one's), the group's at their offsets; the
 * check runs after them. */
static void test_defaults(void **state)
{
    (void)state;
    opts o;
    memset(&o, 0xab, sizeof(o));
    ex_error err;
    assert_int_equal(parse(&o, &err, NULL, 0), EX_OK);
    assert_int_equal(o.width, 7);
    assert_int_equal(o.steps, 20);
    assert_true(o.rate == 0.1f);
    assert_int_equal(o.fast, 1);
    assert_int_equal(o.color, 1);
    assert_null(o.data);
    assert_true(o.lr == 0.25f);      /* the trainer's row's default */
    assert_true(o.momentum == 0.9f); /* the shared row's */
    assert_int_equal(o.run.log_every, 10);
    assert_int_equal(o.run.bound_every, 100);
    assert_null(o.run.metrics_path);
    assert_int_equal(o.run.collapse_window, 0); /* not in this table */
    assert_int_equal(o.checked, 1);
}

/* Every type, as "--name value" and as "--name=value". */
static void test_values(void **state)
{
    (void)state;
    opts o;
    ex_error err;
    assert_int_equal(PARSE(&o, &err, "--width", "64", "--steps=0", "--rate", "-1", "--slow",
                           "--color", "blue", "--data=a=b", "--lr", "1e-3", "--metrics", "m.jsonl",
                           "--log-every", "3", "--profile"),
                     EX_OK);
    assert_int_equal(o.width, 64);
    assert_int_equal(o.steps, 0);
    assert_true(o.rate == -1.0f);
    assert_int_equal(o.fast, 0);
    assert_int_equal(o.color, 2);
    assert_string_equal(o.data, "a=b");
    assert_true(o.lr == 1e-3f);
    assert_string_equal(o.run.metrics_path, "m.jsonl");
    assert_int_equal(o.run.log_every, 3);
    assert_int_equal(o.run.profile, 1);
    /* the last one given wins */
    assert_int_equal(PARSE(&o, &err, "--slow", "--fast", "--color", "red"), EX_OK);
    assert_int_equal(o.fast, 1);
    assert_int_equal(o.color, 0);
}

/* Each bad command line is EX_USAGE with a message that names the flag. */
static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *args[3];
        int n;
        const char *expect;
    } cases[] = {
        {{"--nope"}, 1, "unknown option '--nope'"},
        {{"--widthx", "3"}, 2, "unknown option '--widthx'"},
        {{"stray"}, 1, "unexpected argument 'stray'"},
        {{"--width", "65"}, 2, "--width: '65' is not an integer in 1..64"},
        {{"--width", "0"}, 2, "--width: '0' is not an integer in 1..64"},
        {{"--width", "-3"}, 2, "--width needs a non-negative integer, not '-3'"},
        {{"--width", "3x"}, 2, "--width: '3x' is not an integer"},
        {{"--width="}, 1, "--width needs a non-negative integer, not ''"},
        {{"--steps", "99999999999999999999999"}, 2, "--steps: '99999999999999999999999'"},
        {{"--rate", "1.5"}, 2, "--rate: '1.5' is not a number in -1..1"},
        {{"--rate", "nan"}, 2, "--rate: 'nan' is not a number"},
        {{"--rate", "inf"}, 2, "--rate: 'inf' is not a number"},
        {{"--rate", ""}, 2, "--rate: '' is not a number"},
        {{"--color", "gre"}, 2, "--color must be one of red|green|blue, not 'gre'"},
        {{"--color", "greenish"}, 2, "--color must be one of red|green|blue"},
        {{"--data", ""}, 2, "--data needs a value"},
        {{"--fast=1"}, 1, "--fast takes no value"},
        {{"--width"}, 1, "--width needs a value"},
        {{"--lr", "-1"}, 2, "--lr: '-1' is not a number in 0..10000"},
        {{"--width", "13"}, 2, "--width 13 does not go with --fast"}, /* the check's */
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        opts o;
        ex_error err;
        const ex_code code = parse(&o, &err, cases[c].args, cases[c].n);
        if (code != EX_USAGE || !strstr(err.message, cases[c].expect)) {
            print_error("%s: code %d, '%s'; expected '%s'\n", cases[c].args[0], (int)code,
                        err.message, cases[c].expect);
            fail();
        }
    }
    /* the range's ends are in it */
    opts o;
    ex_error err;
    assert_int_equal(PARSE(&o, &err, "--width", "1", "--rate", "1", "--steps", "1000"), EX_OK);
    assert_int_equal(o.width, 1);
    assert_true(o.rate == 1.0f);

    /* a table naming a shared row that does not exist is the program's
     * error, not the user's */
    static const ex_opt_spec bad_rows[] = {{.name = "no-such-row", .type = EX_OPT_SHARED}};
    const ex_opt_table bad = {"", bad_rows, 1, sizeof(opts), NULL, NULL};
    char *argv[] = {"prog"};
    assert_int_equal(ex_options_parse(&bad, &o, 1, argv, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "no shared row 'no-such-row'"));
}

/* --help ends the parse before a bad flag after it; -h as well. */
static void parse_help(void *ctx)
{
    (void)ctx;
    opts o;
    ex_error err;
    assert_int_equal(PARSE(&o, &err, "--width", "3", "--help", "--nope"), EX_HELP);
    assert_int_equal(PARSE(&o, &err, "-h"), EX_HELP);
}

/* The usage text: every row with its argument's kind, its help and its
 * default (the shared rows' too), then the exit codes. */
static void test_usage(void **state)
{
    (void)state;
    char path[512];
    scratch_path(path, sizeof(path), "usage.txt");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    ex_options_usage(&k_table, "prog", f);
    fclose(f);
    char *text = read_text(path);
    static const char *const want[] = {
        "usage: prog [options]\n  a test's options\n",
        "  --width N ",
        "the width [7]\n",
        "the steps [20]\n",
        "  --rate X ",
        "the rate [0.1]\n",
        "  --fast  ",
        "go fast\n",
        "  --color red|green|blue ",
        "the color [green]\n",
        "  --data DIR ",
        "the data\n",
        "peak learning rate [0.25]\n",
        "SGD/LARS momentum [0.9]\n",
        "  --metrics PATH ",
        "steps between metrics lines [10]\n",
        "  --help ",
        "Exit codes: 0 done",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(text, want[i])) {
            print_error("'%s' is not in\n%s\n", want[i], text);
            fail();
        }
    assert_null(strstr(text, "--collapse")); /* a group the table does not take */
    free(text);

    /* --help (and -h) print it to stdout and end the parse */
    stdout_into(path, parse_help, NULL);
    text = read_text(path);
    assert_true(strncmp(text, "usage: prog", 11) == 0);
    assert_non_null(strstr(strstr(text, "usage: prog") + 1, "usage: prog")); /* twice */
    free(text);
}

/* The fingerprint: the trajectory rows only, in table order, each
 * "name=value" once (a field two flags set counts once), floats in the
 * shortest text that reads back, choices by name. */
static void test_fingerprint(void **state)
{
    (void)state;
    opts o;
    ex_error err;
    assert_int_equal(PARSE(&o, &err, "--rate", "0.3", "--slow", "--data", "x", "--metrics", "m"),
                     EX_OK);
    char fp[512];
    ex_options_fingerprint(&k_table, &o, fp, sizeof(fp));
    assert_string_equal(fp, "width=7 steps=20 rate=0.3 fast=0 color=green lr=0.25 momentum=0.9");
    o.rate = 1.0f / 3.0f; /* 8 digits to read back */
    o.fast = 1;
    o.color = 2;
    ex_options_fingerprint(&k_table, &o, fp, sizeof(fp));
    assert_string_equal(fp,
                        "width=7 steps=20 rate=0.33333334 fast=1 color=blue lr=0.25 momentum=0.9");
    /* a small buffer: cut, terminated */
    char small[12];
    memset(small, 'x', sizeof(small));
    ex_options_fingerprint(&k_table, &o, small, sizeof(small));
    assert_true(memchr(small, '\0', sizeof(small)) != NULL);
    assert_true(strncmp(small, "width=7 ste", strlen(small)) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),    cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),      cmocka_unit_test(test_usage),
        cmocka_unit_test(test_fingerprint),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
