/* Command-line options of mt-train: the struct, its defaults and its
 * table (for the common parser, examples/common/options.h). */
#ifndef MT_OPTIONS_H
#define MT_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "common/budget.h"
#include "common/options.h"
#include "mt_model.h"

/* Which splits the final evaluation translates and scores with chrF2. */
typedef enum { MT_CHRF_NONE = 0, MT_CHRF_VAL, MT_CHRF_TEST, MT_CHRF_BOTH } mt_chrf_splits;

typedef struct {
    ex_train_options run; /* batch, threads, seed, clip, output, resume, collapse watch */
    mt_config model;

    ex_schedule_options optim; /* the optimizer, the schedule, --steps, --minutes */
    float label_smoothing;

    /* data and run */
    const char *lang, *locale_dir;
    size_t max_bytes;    /* the corpus's cap on either side (the splits depend on it) */
    uint64_t eval_every; /* steps between validation cross-entropies */
    size_t eval_pairs;   /* validation pairs of each periodic evaluation (0: all) */

    /* translation */
    int chrf;    /* mt_chrf_splits */
    size_t show; /* sample translations printed */
    size_t beam; /* hypotheses of the beam search (1: greedy) */
    const char *translate, *translate_file, *init_path;
} mt_options;

extern const ex_opt_table mt_options_table;

#endif
