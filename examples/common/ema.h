/* An exponential moving average of a model's parameters, for evaluation.
 * sigmaReparam layers get what sigmaReparam needs: u and v are never
 * averaged (an average of power-iteration vectors is no singular vector of
 * the averaged weights); when the averaged weights are swapped in, each
 * layer's u, v and sigma are recomputed for them by an exact SVD, and the
 * live ones are put back by the swap out. */
#ifndef EX_EMA_H
#define EX_EMA_H

#include <stddef.h>
#include <stdint.h>

#include <sigmareparam.h>

#include "error.h"
#include "tensors.h"

typedef struct {
    const srp_param *params;
    size_t nparams, total; /* total: floats over all params */
    size_t *offsets;       /* [nparams]: where each param's average starts in shadow */
    srp_linear *const *linears;
    size_t nlinears;
    float decay;
    uint64_t updates;
    float *shadow;      /* [total]: the averages */
    float *saved;       /* [total]: the live parameters during a swap */
    float *saved_state; /* each linear's live u, v and sigma during a swap */
    int swapped;
} ex_ema;

/* Averages params[0..nparams); linears are the model's layers whose
 * sigma must follow the weights. decay in (0, 1). */
ex_code ex_ema_init(ex_ema *e, const srp_param *params, size_t nparams, srp_linear *const *linears,
                    size_t nlinears, float decay, ex_error *err);
void ex_ema_free(ex_ema *e);
/* After an optimizer step: shadow = d shadow + (1 - d) p, with the usual
 * warm-up d = min(decay, (1 + t) / (10 + t)) for the t-th update, so that
 * the first averages are not dominated by the initial weights; the first
 * update (t = 0) copies p. */
void ex_ema_update(ex_ema *e);
/* Puts the averages into the model (and sigma for them); swap_out restores
 * the live model exactly. */
ex_code ex_ema_swap_in(ex_ema *e, ex_error *err);
void ex_ema_swap_out(ex_ema *e);
/* The averages and the update count, for checkpoints, names under prefix. */
void ex_ema_tensors(ex_ema *e, const char *prefix, srp_tensor_list *list);

#endif
