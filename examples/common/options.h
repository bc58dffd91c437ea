/* Command-line options from one table: each flag with its type, range and
 * help line, so that parsing, checking, --help and the run's fingerprint
 * agree. A trainer declares its table over its own options struct. */
#ifndef EX_OPTIONS_H
#define EX_OPTIONS_H

#include <stddef.h>
#include <stdio.h>

#include "error.h"

typedef enum {
    EX_OPT_SIZE,   /* size_t in [lo, hi] */
    EX_OPT_U64,    /* uint64_t in [lo, hi] */
    EX_OPT_FLOAT,  /* float in [lo, hi], finite */
    EX_OPT_FLAG,   /* no value: stores the int `value` */
    EX_OPT_STRING, /* const char * (points into argv), non-empty */
    EX_OPT_CHOICE  /* one of "a|b|c": stores its index as an int */
} ex_opt_type;

typedef struct {
    const char *name; /* without the leading -- */
    ex_opt_type type;
    size_t offset;       /* of the field in the options struct */
    double lo, hi;       /* numeric range */
    const char *choices; /* EX_OPT_CHOICE; for EX_OPT_STRING, its --help name (NULL: PATH) */
    int value;           /* EX_OPT_FLAG */
    int trajectory;      /* part of the fingerprint: a resumed run must match it */
    const char *help;
} ex_opt_spec;

typedef struct {
    const char *summary; /* the lines under "usage:" */
    const ex_opt_spec *specs;
    size_t count;
} ex_opt_table;

/* Parses argv into opts (which holds the defaults on entry). --help or -h
 * prints the usage to stdout and returns EX_HELP; a bad or unknown flag
 * returns EX_USAGE with the problem in err (ex_options_usage shows the
 * rest). defaults: the same struct as it was before parsing, for --help. */
ex_code ex_options_parse(const ex_opt_table *t, void *opts, const void *defaults, int argc,
                         char **argv, ex_error *err);
void ex_options_usage(const ex_opt_table *t, const void *defaults, const char *prog, FILE *to);
/* "name=value ..." over the trajectory options. */
void ex_options_fingerprint(const ex_opt_table *t, const void *opts, char *buf, size_t len);
/* The text of choice `index` of "a|b|c" into buf. */
void ex_options_choice_name(const char *choices, int index, char *buf, size_t len);

#endif
