/* Command-line options of char-lm-train: the struct, its defaults and its
 * table (for the common parser, examples/common/options.h). */
#ifndef LM_OPTIONS_H
#define LM_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/options.h"
#include "model.h"

typedef struct {
    lm_config model;
    int arch, positions, gamma_init, qkv_sigma; /* enums, copied into model */

    /* optimization */
    int optimizer; /* srp_optim_kind */
    float lr, momentum, weight_decay, beta2, min_lr, clip;
    float gamma_lr_mult, embed_lr_mult; /* gammas; embeddings and biases */
    int schedule;                       /* srp_lr_kind */
    uint64_t warmup_steps;

    /* run */
    size_t batch;
    float minutes;   /* wall-clock budget of the training (0: --steps only) */
    uint64_t steps;  /* 0: as many as --minutes allows */
    size_t threads;  /* 0: one per CPU */
    uint64_t seed;
    const char *text_path; /* NULL: the default corpus */
    uint64_t eval_every;   /* steps between validation evaluations */
    size_t eval_windows;   /* context windows of each periodic evaluation (0: all) */
    uint64_t stop_after_steps;
    uint64_t check_replicas; /* under mpirun: steps between replica checks; 0: never */

    /* output */
    const char *metrics_path, *checkpoint_path, *resume_path, *plot_path, *plot_only;
    uint64_t log_every, bound_every, checkpoint_every;
    int profile;

    /* sampling */
    size_t sample;
    float temperature;
    const char *prompt;
    const char *generate_path; /* sample from this checkpoint alone, no training */

    /* entropy-collapse watch */
    float collapse_fraction, collapse_drop;
    uint64_t collapse_window;
    int stop_on_collapse;
} lm_options;

void lm_options_default(lm_options *o);
/* Parses argv and checks the options that depend on each other. EX_HELP
 * after --help; EX_USAGE with the problem in err. */
ex_code lm_options_parse(lm_options *o, int argc, char **argv, ex_error *err);
void lm_options_usage(const char *prog, FILE *to);
/* The options that define a run's trajectory, as one line. */
void lm_options_fingerprint(const lm_options *o, char *buf, size_t len);

#endif
