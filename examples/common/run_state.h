/* What every trainer's checkpoint holds besides its model and its own
 * counters: the step, the seconds of training over every resumed run, how
 * many metrics lines were written, the options' fingerprint (a resumed run
 * must match it), and the optimizer's state; and the save and load around
 * them that make a resumed run continue bit for bit. */
#ifndef EX_RUN_STATE_H
#define EX_RUN_STATE_H

#include <stdint.h>

#include <sigmareparam.h>

#include "error.h"
#include "tensors.h"

#define EX_FINGERPRINT_LEN 2048

typedef struct {
    uint64_t step;
    uint64_t metrics_lines;
    uint64_t ranks; /* of the data-parallel run (1: one process); resume needs the same */
    double seconds; /* of training before this run started (resumed runs) */
    double started; /* ex_now() when this run began training; 0: not yet */
    char fingerprint[EX_FINGERPRINT_LEN];
} ex_run_state;

/* Seconds of training so far, over every run that resumed this one. */
double ex_run_seconds(const ex_run_state *r);

/* Appends train.step, train.metrics_lines, train.ranks, train.seconds
 * and train.fingerprint. */
void ex_run_tensors(ex_run_state *r, srp_tensor_list *list);

/* Saves the list fill makes (which holds r's tensors) to path, meta as
 * its metadata: the metrics lines and the seconds so far in the file,
 * while r->seconds stays those before this run. */
ex_code ex_run_save(ex_run_state *r, ex_tensor_fill fill, void *ctx, uint64_t metrics_lines,
                    const char *path, const ex_metadata *meta, ex_error *err);
/* Loads the list fill makes from path, after its model configuration is
 * checked against meta (checkpoint_file.h). A whole run (model_only 0):
 * strictly, and a usage error when the file's fingerprint is not r's (a
 * run with other training options) or it was written by a run on another
 * number of ranks. model_only: the list is a model's alone (out of a
 * training checkpoint), and r stays as it was. */
ex_code ex_run_load(ex_run_state *r, ex_tensor_fill fill, void *ctx, const char *path,
                    int model_only, const ex_metadata *meta,
                    ex_error *err);

#endif
