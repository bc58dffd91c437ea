/* A LayerNorm layer: its weight and bias, their gradients, and the
 * statistics its backward needs. Part of <sigmareparam.h>; include that.
 *
 *     y = (x - mean) * rstd * weight + bias,   rstd = 1 / sqrt(var + eps)
 *
 * over the last dimension, as torch.nn.LayerNorm(dim, eps), on the kernels
 * srp_layernorm_forward/_backward of nn.h (the same bits). nn.h holds the
 * plain kernels over caller-owned arrays; this is the layer object around
 * them, with create/destroy, the order rule of the other layers, and its
 * lists (lists.h). As for a linear, activations are the caller's: y is
 * written to the caller's buffer, and the backward takes x again.
 *
 * weight starts at 1 and bias at 0. Parameter gradients accumulate (+=).
 * Forward and backward allocate nothing. */
#ifndef SIGMAREPARAM_LAYERNORM_H
#define SIGMAREPARAM_LAYERNORM_H

#include <stddef.h>

#include "sigmareparam/core.h"
#include "sigmareparam/lists.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    size_t dim;
    float eps; /* default 1e-5, torch.nn.LayerNorm's (timm's ViT uses 1e-6) */
} srp_layernorm_config;

typedef struct srp_layernorm srp_layernorm;

SRP_API srp_layernorm_config srp_layernorm_config_default(size_t dim);
/* Room for max_rows rows of statistics (and the staging of
 * srp_layernorm_layer_backward_add) is taken here. Errors: NULL, dim or
 * max_rows 0 or too large, eps not finite and > 0: SRP_ERR_INVALID_ARG. */
SRP_API srp_status srp_layernorm_create(srp_layernorm **out, const srp_layernorm_config *cfg,
                                        size_t max_rows);
SRP_API void srp_layernorm_destroy(srp_layernorm *ln);

SRP_API size_t srp_layernorm_dim(const srp_layernorm *ln);
SRP_API float srp_layernorm_eps(const srp_layernorm *ln);
SRP_API float *srp_layernorm_weight(srp_layernorm *ln);      /* [dim] */
SRP_API float *srp_layernorm_weight_grad(srp_layernorm *ln); /* [dim] */
SRP_API float *srp_layernorm_bias(srp_layernorm *ln);        /* [dim] */
SRP_API float *srp_layernorm_bias_grad(srp_layernorm *ln);   /* [dim] */
/* The last forward's row statistics, [rows] each (the kernel's mean and
 * rstd); NULL before any forward. */
SRP_API const float *srp_layernorm_mean(const srp_layernorm *ln);
SRP_API const float *srp_layernorm_rstd(const srp_layernorm *ln);

/* x, y: [rows][dim], y the caller's (it may be x, but the backward needs
 * x). training only matters to the order rule (a LayerNorm computes the
 * same in both modes): SRP_TRAIN or SRP_EVAL, as for a linear. Errors:
 * NULL: SRP_ERR_INVALID_ARG; rows 0 or above max_rows: SRP_ERR_SHAPE. NaN
 * or Inf in y (from x, or from the weight or bias): SRP_ERR_NUMERIC; the
 * parameters are as they were, but the statistics were overwritten: until
 * the next successful forward the backward returns SRP_ERR_UNSUPPORTED. */
SRP_API srp_status srp_layernorm_layer_forward(srp_layernorm *ln, const float *x, size_t rows,
                                               float *y, int training);
/* Backward of the last forward, for the same x and rows (the caller passes
 * x again, as to a linear). dy, dx: [rows][dim]; dx is overwritten and may
 * be dy. dweight and dbias accumulate. The order rule of linear.h: before
 * any forward, or after a failed one: SRP_ERR_UNSUPPORTED; two training
 * forwards since the last backward, an eval forward after a training one,
 * a second backward of one forward: SRP_ERR_ORDER, nothing changed. rows
 * other than the forward's: SRP_ERR_SHAPE. NaN/Inf in dy (or an overflow
 * in dx): SRP_ERR_NUMERIC, no gradient changed (dx may have been written),
 * and the backward may be retried. */
SRP_API srp_status srp_layernorm_layer_backward(srp_layernorm *ln, const float *x, const float *dy,
                                                size_t rows, float *dx);
/* The same, but dx += dL/dx (a residual stream's gradient: the skip path's
 * is already in dx); dx must not overlap dy. The result is staged and
 * added only when finite: on SRP_ERR_NUMERIC dx is untouched. */
SRP_API srp_status srp_layernorm_layer_backward_add(srp_layernorm *ln, const float *x,
                                                    const float *dy, size_t rows, float *dx);
SRP_API void srp_layernorm_zero_grad(srp_layernorm *ln);

/* "prefix.weight" and "prefix.bias", kind SRP_PARAM_NORM (lists.h). */
SRP_API srp_status srp_layernorm_params(srp_layernorm *ln, const char *prefix,
                                        srp_param_list *list);
/* "prefix.weight" [dim] and "prefix.bias" [dim]: the whole state (the
 * statistics are the last forward's activations, not state). */
SRP_API srp_status srp_layernorm_state_refs(srp_layernorm *ln, const char *prefix,
                                            srp_tensor_list *list);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_LAYERNORM_H */
