/* Command-line options of vit-lite-train: the struct, its defaults and its
 * table (for the common parser, examples/common/options.h). */
#ifndef VIT_OPTIONS_H
#define VIT_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "common/options.h"
#include "vit_model.h"

typedef enum {
    VIT_DATA_FASHION_MNIST = 0,
    VIT_DATA_MNIST,
    VIT_DATA_CIFAR10,
    VIT_DATA_SYNTHETIC
} vit_dataset_kind;

/* Fashion-MNIST as Debian's dataset-fashion-mnist package installs it. */
#define VIT_DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"

typedef struct {
    ex_train_options run; /* batch, threads, seed, clip, output, resume, collapse watch */
    vit_config model;

    /* optimization */
    int optimizer; /* srp_optim_kind */
    float lr, momentum, weight_decay, lars_eta, min_lr, label_smoothing;
    float gamma_lr_mult, bias_lr_mult; /* gammas; biases, class token, positions */
    int gamma_lars;                    /* LARS trust ratio on the gammas too */
    int nesterov;
    int wd_mode;  /* srp_wd_mode */
    int schedule; /* srp_lr_kind */
    uint64_t warmup_steps;
    int augment;      /* random horizontal flips; -1: by dataset */
    size_t translate; /* random shifts of up to this many pixels (0: none) */
    float erase;      /* random erasing's probability (0: off) */
    float ema;        /* evaluate a weight average with this decay (0: off) */
    int tta_flip;     /* evaluate on each image and its mirror; -1: by dataset */
    const char *stem; /* "16,32/2": channels and strides, parsed into model */
    char stem_text[VIT_STEM_TEXT_MAX]; /* the stem as parsed, where stem then points */

    /* run */
    size_t epochs;
    int dataset; /* vit_dataset_kind */
    const char *data_dir;
    size_t synthetic_train, synthetic_test;
    size_t val; /* hold out the last val training images for the per-epoch evaluation */

    /* output */
    const char *report_at;   /* "0.9,0.92": when each accuracy was first reached */
} vit_options;

/* The table (options.h); its check sets what follows from the flags (flips
 * by dataset, the stem in model) and refuses options that contradict each
 * other. */
extern const ex_opt_table vit_options_table;
/* "fashion-mnist", ... */
const char *vit_dataset_name(int kind);
/* 1 for the datasets whose classes a horizontal mirror keeps (Fashion-
 * MNIST, CIFAR-10): the default of --augment and --tta-flip. */
int vit_flips_keep_class(int kind);

#endif
