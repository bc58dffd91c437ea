/* Training metrics as JSON lines, and the entropy-collapse watch. */
#ifndef VIT_METRICS_H
#define VIT_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "model.h"

/* One line per call, flushed, counted (a resumed run keeps exactly the
 * lines its checkpoint had seen). f may be NULL: nothing is written. */
typedef struct {
    FILE *f;
    uint64_t lines;
} vit_metrics;

/* Opens path for writing. With keep_lines > 0 (resuming) the file's first
 * keep_lines lines are kept and the rest dropped; fewer than that: error.
 * Returns 0, or 1 with a message in err (size errlen). */
int vit_metrics_open(vit_metrics *m, const char *path, uint64_t keep_lines, char *err,
                     size_t errlen);
void vit_metrics_close(vit_metrics *m);

typedef struct {
    uint64_t step, epoch;
    float loss, acc, lr, grad_norm;
    const float *entropy_mean, *entropy_min; /* [layers][heads] */
    const float *entropy_bound;              /* [layers][heads] or NULL */
} vit_train_record;

void vit_metrics_header(vit_metrics *m, const char *fingerprint, vit_model *model);
void vit_metrics_train(vit_metrics *m, const vit_train_record *r, vit_model *model);
void vit_metrics_eval(vit_metrics *m, uint64_t step, uint64_t epoch, float loss, float acc);
void vit_metrics_warning(vit_metrics *m, uint64_t step, size_t layer, size_t head,
                         const char *kind, float entropy, const char *message);

/* The collapse watch: per head, the mean entropy of every step is kept for
 * the last `window` steps. A head warns when it falls below fraction * log T,
 * or by more than drop of the highest value in the window; each warns once
 * until it recovers. The whole state is plain arrays for checkpoints. */
typedef struct {
    size_t heads_total; /* layers * heads */
    uint64_t window;
    float fraction, drop, log_tokens;
    float *ring;           /* [window][heads_total] */
    uint64_t filled, next; /* [0] entries in use, [1] next slot: as u64[2] in checkpoints */
    unsigned char *flags;  /* [heads_total][2]: low, drop warned */
} vit_collapse_watch;

int vit_collapse_init(vit_collapse_watch *w, size_t heads_total, uint64_t window, float fraction,
                      float drop, float log_tokens);
void vit_collapse_free(vit_collapse_watch *w);
/* Feeds one step's mean entropies [heads_total]; calls warn() for each new
 * warning and returns how many there were. */
int vit_collapse_update(vit_collapse_watch *w, const float *entropy,
                        void (*warn)(void *ctx, size_t index, const char *kind, float value,
                                     float reference),
                        void *ctx);

#endif
