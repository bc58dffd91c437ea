/* Command-line options from one table: each flag with its type, range and
 * help line, so that parsing, checking, --help and the run's fingerprint
 * agree. A trainer declares its table over its own options struct. */
#ifndef EX_OPTIONS_H
#define EX_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
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
    size_t size;                  /* of the options struct */
    void (*defaults)(void *opts); /* fills one with the defaults */
} ex_opt_table;

/* The options every trainer has, as its options struct holds them (a
 * field `run`), and what the trainer skeleton reads (trainer.h). */
typedef struct {
    size_t batch;   /* the global batch, over every rank */
    size_t threads; /* 0: one per CPU */
    uint64_t seed;
    float clip; /* the gradients' global norm (0: none) */
    uint64_t stop_after_steps, check_replicas;
    const char *metrics_path, *checkpoint_path, *resume_path, *plot_path, *plot_only;
    uint64_t log_every, bound_every, checkpoint_every;
    int profile;
    float collapse_fraction, collapse_drop; /* the collapse watch (collapse.h) */
    uint64_t collapse_window;
    int stop_on_collapse;
} ex_train_options;

/* The defaults every trainer shares: a metrics line every 10 steps, the
 * bound every 100, the collapse watch at 0.1 of uniform or a drop by 0.8
 * within 200 steps; the rest 0 or NULL. */
void ex_train_options_default(ex_train_options *r);

/* clang-format off */
/* Rows every trainer's table holds, over its options struct `type`, which
 * has an ex_train_options `run`. Output and resume (none is part of the
 * fingerprint): */
#define EX_RUN_OPTION_ROWS(type)                                                                   \
    {"stop-after-steps", EX_OPT_U64, offsetof(type, run.stop_after_steps), 1, 1e15, NULL, 0, 0,        \
     "stop (with a checkpoint) after this many steps in all; resume later"},                       \
        {"metrics", EX_OPT_STRING, offsetof(type, run.metrics_path), 0, 0, NULL, 0, 0,                 \
         "write metrics as JSON lines here"},                                                      \
        {"log-every", EX_OPT_U64, offsetof(type, run.log_every), 1, 1e9, NULL, 0, 0,                   \
         "steps between metrics lines"},                                                           \
        {"bound-every", EX_OPT_U64, offsetof(type, run.bound_every), 0, 1e9, NULL, 0, 0,               \
         "steps between Theorem 3.1 entropy bounds in the metrics (0: never)"},                    \
        {"checkpoint", EX_OPT_STRING, offsetof(type, run.checkpoint_path), 0, 0, NULL, 0, 0,           \
         "checkpoint file"},                                                                       \
        {"checkpoint-every", EX_OPT_U64, offsetof(type, run.checkpoint_every), 1, 1e9, NULL, 0, 0,     \
         "steps between checkpoints (also saved at the end)"},                                     \
        {"resume", EX_OPT_STRING, offsetof(type, run.resume_path), 0, 0, NULL, 0, 0,                   \
         "continue from this checkpoint"},                                                         \
        {"profile", EX_OPT_FLAG, offsetof(type, run.profile), 0, 0, NULL, 1, 0,                        \
         "at the end, print where the training time went (the library's profiler)"},               \
        {"plot-only", EX_OPT_STRING, offsetof(type, run.plot_only), 0, 0, NULL, 0, 0,                  \
         "plot an existing metrics file to --plot, without training"},                             \
        {"check-replicas", EX_OPT_U64, offsetof(type, run.check_replicas), 0, 1e9, NULL, 0, 0,         \
         "under mpirun: steps between checks that every rank holds the same parameters, u, v "     \
         "and sigma (0: never)"}
/* The entropy-collapse watch (collapse.h; part of the fingerprint): */
#define EX_COLLAPSE_OPTION_ROWS(type)                                                              \
    {"collapse-fraction", EX_OPT_FLOAT, offsetof(type, run.collapse_fraction), 0, 1, NULL, 0, 1,       \
     "warn when a head's mean entropy falls below this fraction of uniform attention's"},          \
        {"collapse-drop", EX_OPT_FLOAT, offsetof(type, run.collapse_drop), 0, 1, NULL, 0, 1,           \
         "warn when it drops by more than this fraction ..."},                                     \
        {"collapse-window", EX_OPT_U64, offsetof(type, run.collapse_window), 1, 1e9, NULL, 0, 1,       \
         "... within this many steps"},                                                            \
        {"stop-on-collapse", EX_OPT_FLAG, offsetof(type, run.stop_on_collapse), 0, 0, NULL, 1, 1,      \
         "stop training at a collapse warning (exit code 4)"}
/* clang-format on */

/* Parses argv into opts, which start with the table's defaults. --help or
 * -h prints the usage to stdout and returns EX_HELP; a bad or unknown flag
 * returns EX_USAGE with the problem in err (ex_options_usage shows the
 * rest). */
ex_code ex_options_parse(const ex_opt_table *t, void *opts, int argc, char **argv, ex_error *err);
void ex_options_usage(const ex_opt_table *t, const char *prog, FILE *to);
/* "name=value ..." over the trajectory options. */
void ex_options_fingerprint(const ex_opt_table *t, const void *opts, char *buf, size_t len);
/* The text of choice `index` of "a|b|c" into buf. */
void ex_options_choice_name(const char *choices, int index, char *buf, size_t len);

#endif
