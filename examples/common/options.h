/* Command-line options from one table: each flag with its type, range,
 * default and help line, so that parsing, checking, --help and the run's
 * fingerprint agree. A trainer declares its table over its own options
 * struct; the rows every trainer has are written once, in options.c, and
 * a trainer's table takes them in where they belong (EX_OPT_SHARED). */
#ifndef EX_OPTIONS_H
#define EX_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "layers.h"

typedef enum {
    EX_OPT_SIZE,   /* size_t in [lo, hi] */
    EX_OPT_U64,    /* uint64_t in [lo, hi] */
    EX_OPT_FLOAT,  /* float in [lo, hi], finite */
    EX_OPT_FLAG,   /* no value: stores the int `value` */
    EX_OPT_STRING, /* const char * (points into argv), non-empty */
    EX_OPT_CHOICE, /* one of "a|b|c": stores its index in an int, or an enum of int's size */
    /* The shared row of this name, or the shared rows of this group
     * ("output": --metrics, --checkpoint, --resume ...; "collapse": the
     * collapse watch's), their fields at `offset` on; in options.c, a
     * group's first row. */
    EX_OPT_SHARED
} ex_opt_type;

#define EX_OPT_UNLESS_DEFAULT 2

typedef struct {
    const char *name; /* without the leading -- */
    ex_opt_type type;
    size_t offset;       /* of the field in the options struct */
    double lo, hi;       /* numeric range */
    const char *choices; /* EX_OPT_CHOICE; for EX_OPT_STRING, its --help name (NULL: PATH) */
    int value;           /* EX_OPT_FLAG */
    int trajectory;      /* part of the fingerprint: a resumed run must match it;
                            EX_OPT_UNLESS_DEFAULT: only when not at its default (an
                            option added later, so that older runs still resume) */
    /* The default as a command line gives it (a flag: "on", set by
     * default); NULL: the table's defaults function's. An EX_OPT_SHARED
     * row's replaces the shared row's. */
    const char *def;
    const char *help;
} ex_opt_spec;

typedef struct {
    const char *summary; /* the lines under "usage:" */
    const ex_opt_spec *specs;
    size_t count;
    size_t size; /* of the options struct */
    /* The defaults that no row gives (the model's), before the rows'. */
    void (*defaults)(void *opts);
    /* After the rows: the checks that span options, and what follows from
     * them (EX_USAGE with the problem in err); NULL: none. */
    ex_code (*check)(void *opts, ex_error *err);
} ex_opt_table;

/* The options every trainer has, as its options struct holds them (a
 * field `run`, where its "output", "collapse" and "model-files" rows go), and what the
 * trainer skeleton reads (trainer.h). */
typedef struct {
    size_t batch;            /* the global batch, over every rank */
    size_t threads;          /* 0: one per CPU */
    ex_regularizers reg;     /* the blocks' (layers.h): the model's config takes them */
    srp_precision precision; /* of the GEMM inputs (srp_set_precision), or: */
#define EX_PRECISION_BF16_REFERENCE 3 /* bf16 on the library's reference path (core.h) */
    uint64_t seed;
    float clip; /* the gradients' global norm (0: none) */
    uint64_t stop_after_steps, check_replicas;
    const char *metrics_path, *checkpoint_path, *resume_path, *plot_path, *plot_only;
    uint64_t log_every, bound_every, checkpoint_every;
    int profile;
    float collapse_fraction, collapse_drop; /* the collapse watch (collapse.h) */
    uint64_t collapse_window;
    int stop_on_collapse;
    /* the model in safetensors files ("model-files": common/official_file.h) */
    int eval_only;             /* score the --resume or --init-from model and exit */
    const char *logits_path;   /* with eval_only: the evaluated logits */
    const char *export_path;   /* the model evaluated, under PyTorch's names, at the end */
    const char *export_folded; /* the same, W_hat baked in, plain nn.Linear names */
    const char *init_from;     /* start from this safetensors model */
} ex_train_options;

/* What every trainer's check asks of its options: --heads divides --dim,
 * --plot-only has a --plot to draw; EX_USAGE otherwise. */
ex_code ex_train_options_check(const ex_train_options *o, size_t dim, size_t heads, ex_error *err);

/* For a table with the "model-files" rows: they go together (--eval-only
 * needs a model to score, --logits --eval-only, --init-from no --resume);
 * EX_USAGE otherwise. */
ex_code ex_model_files_check(const ex_train_options *o, ex_error *err);

/* The shared choices' values as a command line gives them, which the
 * checkpoints' metadata records: "sigma0", "qk-v" ... */
const char *ex_gamma_init_name(srp_gamma_init g);
const char *ex_qkv_sigma_name(srp_qkv_sigma q);
/* --optimizer's value (srp_optim_kind) as the trainers' lines print it:
 * "SGD", "LARS", "AdamW". */
const char *ex_optimizer_name(int optimizer);

/* Parses argv into opts, which start with the table's defaults, and runs
 * the table's check. --help or -h prints the usage to stdout and returns
 * EX_HELP; a bad or unknown flag returns EX_USAGE with the problem in err
 * (ex_options_usage shows the rest). */
ex_code ex_options_parse(const ex_opt_table *t, void *opts, int argc, char **argv, ex_error *err);
void ex_options_usage(const ex_opt_table *t, const char *prog, FILE *to);
/* "name=value ..." over the trajectory options. */
void ex_options_fingerprint(const ex_opt_table *t, const void *opts, char *buf, size_t len);

#endif
