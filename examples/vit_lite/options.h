/* Command-line options of vit-lite-train: defaults, parsing, usage. */
#ifndef VIT_OPTIONS_H
#define VIT_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"

typedef struct {
    vit_config model;

    /* optimization */
    srp_optim_kind optimizer;
    float lr, momentum, weight_decay, lars_eta, min_lr, clip, label_smoothing;
    float gamma_lr_mult, bias_lr_mult; /* gammas; biases, class token, positions */
    int gamma_lars;                    /* LARS trust ratio on the gammas too */
    int nesterov;
    srp_wd_mode wd_mode;
    srp_lr_kind schedule;
    uint64_t warmup_steps;
    int augment; /* random horizontal flips */

    /* run */
    size_t epochs, batch;
    size_t threads; /* 0: one per CPU */
    uint64_t seed;
    const char *dataset; /* fashion-mnist, mnist, cifar10, synthetic */
    const char *data_dir;
    size_t synthetic_train, synthetic_test;
    uint64_t stop_after_steps; /* 0: run to the end */

    /* output */
    const char *metrics_path, *checkpoint_path, *resume_path, *plot_path, *plot_only;
    uint64_t log_every, bound_every, checkpoint_every;
    int eval_only;

    /* entropy-collapse watch */
    float collapse_fraction; /* warn below this fraction of log T */
    float collapse_drop;     /* warn on a drop by more than this fraction ... */
    uint64_t collapse_window; /* ... within this many steps */
    int stop_on_collapse;
} vit_options;

void vit_options_default(vit_options *o);
/* 0 on success; on a bad or unknown flag prints the problem and the usage
 * to stderr and returns 2; --help prints the usage and returns 1. */
int vit_options_parse(vit_options *o, int argc, char **argv);
void vit_options_usage(const char *prog, FILE *to);
/* The options that define a run's trajectory, as one line: a resumed run
 * must have the same. */
void vit_options_fingerprint(const vit_options *o, char *buf, size_t len);

#endif
