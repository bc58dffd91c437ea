/* Command-line options of char-lm-train: the struct, its defaults and its
 * table (for the common parser, examples/common/options.h). */
#ifndef LM_OPTIONS_H
#define LM_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/options.h"
#include "lm_model.h"

typedef struct {
    ex_train_options run; /* batch, threads, seed, clip, output, resume, collapse watch */
    lm_config model;

    /* optimization */
    int optimizer; /* srp_optim_kind */
    float lr, momentum, weight_decay, beta2, min_lr;
    float gamma_lr_mult, embed_lr_mult; /* gammas; embeddings and biases */
    int schedule;                       /* srp_lr_kind */
    uint64_t warmup_steps;

    /* run */
    float minutes;         /* wall-clock budget of the training (0: --steps only) */
    uint64_t steps;        /* 0: as many as --minutes allows */
    const char *text_path; /* NULL: the default corpus */
    uint64_t eval_every;   /* steps between validation evaluations */
    size_t eval_windows;   /* context windows of each periodic evaluation (0: all) */

    float ema; /* evaluate (and export) a weight average with this decay (0: off) */

    /* sampling */
    size_t sample;
    float temperature;
    const char *prompt;
    const char *generate_path; /* sample from this checkpoint alone, no training */
} lm_options;

/* The table (options.h); its check refuses options that contradict each
 * other. */
extern const ex_opt_table lm_options_table;

#endif
