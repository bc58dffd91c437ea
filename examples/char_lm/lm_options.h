/* Command-line options of char-lm-train: the struct, its defaults and its
 * table (for the common parser, examples/common/options.h). */
#ifndef LM_OPTIONS_H
#define LM_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/budget.h"
#include "common/options.h"
#include "lm_model.h"

typedef struct {
    ex_train_options run; /* batch, threads, seed, clip, output, resume, collapse watch */
    lm_config model;

    ex_schedule_options optim; /* the optimizer, the schedule, --steps, --minutes */

    /* run */
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
