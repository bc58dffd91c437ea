/* The sigma-aware weight average: an exponential moving average of a
 * model's parameters, for evaluation. Part of <sigmareparam.h>; include
 * that.
 *
 * After each optimizer step, every parameter p of the list gets
 *     a = d a + (1 - d) p,   d = min(decay, (1 + t) / (10 + t))
 * for the t-th update (t = 0, 1, ...): the usual warm-up, so that the first
 * averages are not dominated by the initial weights; the first update
 * (t = 0) copies p. The arithmetic is float, element by element, so the
 * bits are the same for any thread count.
 *
 * What sigmaReparam needs: a linear's u and v are never averaged (an
 * average of power-iteration vectors is no singular vector of the averaged
 * weights). When the averages are swapped in, every linear given at create
 * gets u, v and sigma of its averaged weight by an exact SVD (the one
 * srp_linear_reinit_sigma runs: the same bits), so that the averaged model
 * is evaluated with its own sigma; the swap out puts the live weights, u,
 * v and sigma back, every bit of them. gamma, when in the list, is
 * averaged as any parameter. */
#ifndef SIGMAREPARAM_WEIGHT_AVERAGE_H
#define SIGMAREPARAM_WEIGHT_AVERAGE_H

#include <stddef.h>
#include <stdint.h>

#include "sigmareparam/core.h"
#include "sigmareparam/linear.h"
#include "sigmareparam/lists.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float decay; /* in [0, 1); default 0.999 */
} srp_weight_average_config;

typedef struct srp_weight_average srp_weight_average;

SRP_API srp_weight_average_config srp_weight_average_config_default(void);
/* Averages the entries of params (their data, as listed now: entries
 * appended later are not averaged). linears[0..nlinears) are the model's
 * layers whose sigma must follow the weights (nlinears may be 0, and
 * linears then NULL); their weights should be in params. The list and the
 * linears must outlive the average; the array linears is copied (it may be
 * the caller's local). Takes 2 floats per parameter element and
 * 2 (in + out + 1) per linear.
 * Errors: NULL out, params or cfg, an empty list, a list that failed an
 * append (srp_param_list_status), a NULL linear, NULL linears with
 * nlinears > 0, decay outside [0, 1) or NaN: SRP_ERR_INVALID_ARG;
 * SRP_ERR_NOMEM. */
SRP_API srp_status srp_weight_average_create(srp_weight_average **out, srp_param_list *params,
                                             srp_linear *const *linears, size_t nlinears,
                                             const srp_weight_average_config *cfg);
SRP_API void srp_weight_average_destroy(srp_weight_average *a);

/* One update (the rule at the top), after an optimizer step. Allocates
 * nothing. Errors, with the average unchanged: NULL: SRP_ERR_INVALID_ARG;
 * while swapped in (it would average the averages): SRP_ERR_ORDER; NaN/Inf
 * in a parameter: SRP_ERR_NUMERIC. */
SRP_API srp_status srp_weight_average_update(srp_weight_average *a);
/* The number of updates so far (0 for NULL). */
SRP_API uint64_t srp_weight_average_updates(const srp_weight_average *a);

/* Puts the averages into the model's parameters and every linear's u, v
 * and sigma for them (a linear whose weight is not in the list gets them
 * for its live weight, which stays). Before the first update there is no
 * average: the model stays live and SRP_OK is returned (the swap out is
 * then a no-op), so that an evaluation can always swap. While swapped in,
 * evaluate (eval forwards); no backward, no optimizer step. The swap in
 * writes nothing else of a linear: after the swap out the model is as it
 * was, what a pending backward uses included. Allocates (the SVD's
 * workspace). Errors, with the model unchanged: NULL: SRP_ERR_INVALID_ARG;
 * already swapped in: SRP_ERR_ORDER; NaN/Inf in an average (a corrupt
 * load), or an averaged weight of a SIGMA linear that is all zero:
 * SRP_ERR_NUMERIC; SRP_ERR_NOMEM. */
SRP_API srp_status srp_weight_average_swap_in(srp_weight_average *a);
/* Puts the live model back exactly: parameters, u, v, sigma. Not swapped
 * in: nothing to do. NULL: SRP_ERR_INVALID_ARG. */
SRP_API srp_status srp_weight_average_swap_out(srp_weight_average *a);
/* 1 while the averages are in the model. */
SRP_API int srp_weight_average_swapped(const srp_weight_average *a);

/* Appends the average's state to list (lists.h): "prefix.average" f32
 * [total] (the averages of the entries, one after another in list order)
 * and "prefix.updates" (u64 scalar). Load them while swapped out. Errors
 * as srp_tensor_list_add; on one, the entries appended before it stay. */
SRP_API srp_status srp_weight_average_state_refs(srp_weight_average *a, const char *prefix,
                                                 srp_tensor_list *list);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_WEIGHT_AVERAGE_H */
