/* The one skeleton of the example trainers: main, the run's phases, the
 * training loop, the update (gradients averaged over the ranks, clipped,
 * the optimizer's step, the weight average), what follows each step (the
 * per-head entropies and the Theorem 3.1 bound, the collapse watch, the
 * metrics, the progress line), checkpoints and their model check. A
 * trainer adds what is its own through a table of hooks: its options, its
 * data and model, the forward and backward of a step, its evaluation and
 * its lines. docs/ARCHITECTURE.md, "Adding a trainer", walks through one.
 *
 * A trainer's struct holds an ex_trainer first; its hooks get that and cast
 * it back. Its options struct holds an ex_train_options (options.h), which
 * its table fills (the shared rows "output", "collapse", "threads" ...). */
#ifndef EX_TRAINER_H
#define EX_TRAINER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <sigmareparam.h>

#include "checkpoint_file.h"
#include "dist.h"
#include "error.h"
#include "layers.h"
#include "metrics.h"
#include "options.h"
#include "plot.h"
#include "progress.h"

#define EX_FINGERPRINT_LEN 2048

/* What every checkpoint holds besides the model, the optimizer and the
 * trainer's own: the step, how many metrics lines were written, the ranks
 * and the options' fingerprint (a resumed run must have the same), the
 * seconds of training over every resumed run. */
typedef struct {
    uint64_t step;
    uint64_t metrics_lines;
    uint64_t ranks; /* of the data-parallel run (1: one process) */
    double seconds; /* of training before this run started (resumed runs) */
    double started; /* ex_now() when this run began training; 0: not yet */
    char fingerprint[EX_FINGERPRINT_LEN];
} ex_run_state;

/* Seconds of training so far, over every run that resumed this one. */
double ex_run_seconds(const ex_run_state *r);

/* One step's figures: the loss and the trainer's own sums (the ViT's
 * correct answers), summed over the ranks; lr and the gradients' norm. */
#define EX_STEP_SUMS 2
typedef struct {
    float loss, lr, grad_norm;
    double sums[EX_STEP_SUMS];
} ex_step_record;

typedef struct ex_trainer ex_trainer;
typedef struct ex_official_hooks ex_official_hooks; /* official_file.h */

typedef struct {
    const char *program; /* "vit-lite-train", for the banner */
    const ex_plot_spec *plot;
    size_t step_sums; /* how many of ex_step_record.sums forward_backward fills */
    /* The options' table: argv, --help, the fingerprint. */
    const ex_opt_table *options;
    /* The phases of a run, in order; NULL where a trainer has nothing.
     * other_job: a job instead of training (*done 1: --generate). build:
     * the data and the model for local_batch; it sets the model's fields
     * of ex_trainer and the optimizer (ex_trainer_create_optimizer).
     * describe_data: lines about the data. before_training: --init-from,
     * --eval-only (*done 1: no training). start_fresh: a fresh run's
     * first data order. header: the header line's own fields (after
     * layers, heads, tokens and log_tokens; "config" follows).
     * describe_model: its line. */
    ex_code (*other_job)(ex_trainer *t, int *done, ex_error *err);
    ex_code (*build)(ex_trainer *t, ex_error *err);
    void (*describe_data)(ex_trainer *t);
    ex_code (*before_training)(ex_trainer *t, int *done, ex_error *err);
    void (*start_fresh)(ex_trainer *t);
    void (*header)(ex_trainer *t, ex_metrics *m);
    void (*describe_model)(ex_trainer *t);
    /* The loop. before_step: an epoch's end, a --minutes plan (*done 1: the
     * training is over). forward_backward: this rank's share of the next
     * batch, forward, loss, backward, its own sums; *stage the part under
     * way, for an error; a failure goes on to the other ranks. position:
     * " (epoch 3)", for messages. train_fields: the train line's fields
     * between "step" and "lr". progress: the progress line, when due or
     * progress_due says so. after_step: before the periodic checkpoint (the
     * LM's evaluations). finish: the last checkpoint (ex_trainer_save) and
     * the final figures. after_run: --export, a sample. */
    ex_code (*before_step)(ex_trainer *t, int *done, ex_error *err);
    srp_status (*forward_backward)(ex_trainer *t, float *loss, double *sums, const char **stage);
    float (*lr_at)(ex_trainer *t, uint64_t step);
    void (*position)(ex_trainer *t, char *buf, size_t len);
    void (*train_fields)(ex_trainer *t, ex_metrics *m, const ex_step_record *rec);
    void (*progress)(ex_trainer *t, const ex_step_record *rec);
    int (*progress_due)(ex_trainer *t);
    ex_code (*after_step)(ex_trainer *t, ex_error *err);
    ex_code (*finish)(ex_trainer *t, ex_error *err);
    ex_code (*after_run)(ex_trainer *t, ex_error *err);
    /* Checkpoints: the model's tensors, the trainer's own run state, the
     * model's configuration (checkpoint_file.h). */
    void (*model_refs)(ex_trainer *t, srp_tensor_list *list);
    void (*state_refs)(ex_trainer *t, srp_tensor_list *list);
    void (*metadata)(ex_trainer *t, ex_metadata *meta);
    void (*cleanup)(ex_trainer *t);
    /* The model in safetensors files (official_file.h: --init-from,
     * --eval-only, --export); NULL: none. */
    const ex_official_hooks *files;
} ex_trainer_hooks;

struct ex_trainer {
    const ex_trainer_hooks *hooks;
    void *options;         /* the trainer's options */
    ex_train_options *opt; /* their shared part, their first member */
    ex_dist dist;          /* one process, or this rank of an mpirun job */
    size_t local_batch;    /* this rank's share of the batch */

    /* The model, as build sets it. */
    srp_param_list *params;
    srp_optim *optim;
    const ex_linear_names *linears;
    srp_attention *(*attention_at)(ex_trainer *t, size_t layer);
    size_t layers, heads, tokens; /* tokens: T, the attention's longest rows */
    int normalized;               /* 1: watch the entropies normalized per row (causal) */
    float uniform;       /* the entropy of uniform attention: log T (nats), or 1 if normalized */
    float average_decay; /* > 0: evaluate a weight average with this decay */
    srp_weight_average *average;

    /* The run. */
    ex_run_state run;
    srp_rng data_rng; /* the data order's generator, seeded seed ^ 0xda7a5eed */
    uint64_t steps_this_run;
    ex_metrics metrics;
    ex_progress progress;
    srp_collapse *watch;
    srp_collapse_event *events; /* [srp_collapse_max_events]: its warnings */

    /* The last step's entropies and bound, [layers][heads] (x_norm:
     * [layers]); ent_norm with normalized. One block, from ent_mean. */
    float *ent_mean, *ent_min, *ent_norm, *bound, *bound_s, *bound_m_norm, *bound_x_norm;
    float *linear_values; /* [linears]: the metrics' sigma and gamma maps */
};

/* The whole program: options (into opts, the options struct of
 * hooks->options, whose first member is its ex_train_options), the run,
 * the error, the exit code. */
int ex_trainer_main(ex_trainer *t, const ex_trainer_hooks *hooks, void *opts, int argc,
                    char **argv);

/* For build: the optimizer over the model's parameters (t->params, which
 * build fills), each kind at lr_mult[kind] (SRP_PARAM_WEIGHT ...
 * SRP_PARAM_EMBEDDING) and, with gamma_lars, LARS's trust ratio on the
 * gammas; what to check names the options at fault. */
ex_code ex_trainer_create_optimizer(ex_trainer *t, const srp_optim_config *oc,
                                    const float lr_mult[5], int gamma_lars, const char *check,
                                    ex_error *err);

/* Checkpoints: rank 0 writes, every rank learns whether that worked (no
 * path: nothing); a load of the whole run, or of the model alone. */
ex_code ex_trainer_save(ex_trainer *t, ex_error *err);
ex_code ex_trainer_load(ex_trainer *t, const char *path, int model_only, ex_error *err);
/* A job without training (--generate, --init) takes its model out of a
 * checkpoint: first the model's shape, the n numbers that model_refs
 * lists as "model.config" (ex_trainer_shape_ref), to build the model
 * with; then the model alone (ex_trainer_load), each sigma that the file
 * wrote into the model's linears checked. */
void ex_trainer_shape_ref(srp_tensor_list *list, uint64_t *shape, size_t n);
ex_code ex_trainer_load_shape(const char *path, uint64_t *shape, size_t n, ex_error *err);
ex_code ex_trainer_load_model(ex_trainer *t, const char *path, const ex_linear_names *linears,
                              ex_error *err);
/* --eval-only: the weight average out of a training checkpoint, when the
 * run has one and the file too (*found). */
ex_code ex_trainer_load_average(ex_trainer *t, const char *path, int *found, ex_error *err);
/* What an evaluation scores: the weight average, when there is one, in
 * place of the weights until the swap out. */
ex_code ex_trainer_swap_in_average(ex_trainer *t, ex_error *err);
void ex_trainer_swap_out_average(ex_trainer *t);

/* One batch of an evaluation: items first .. first + n - 1, forward, its
 * figures added to sums (sums[0]: the loss summed over the batch's items).
 * SRP_ERR_NUMERIC: a diverged model, whose batch then adds an infinite
 * loss and nothing else (the run says so and goes on). */
typedef srp_status (*ex_eval_batch)(ex_trainer *t, size_t first, size_t n, double *sums);
/* An evaluation of count items in batches of local_batch, in eval mode
 * (the weight average swapped in, when there is one): the ranks take
 * turns at the batches, and sums[nsums] (zero before) are summed over the
 * ranks. */
ex_code ex_trainer_evaluate(ex_trainer *t, size_t count, ex_eval_batch batch, double *sums,
                            size_t nsums, ex_error *err);

/* For the progress line: seconds per step in this run; the lowest watched
 * head entropy. */
double ex_trainer_seconds_per_step(const ex_trainer *t);
float ex_trainer_lowest_entropy(const ex_trainer *t);

#endif
