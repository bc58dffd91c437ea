/* A LayerNorm layer for the example models: its parameters, their
 * gradients and the statistics its backward needs, over the library's
 * srp_layernorm_* kernels. A norm set up disabled (a model without
 * LayerNorm) holds nothing and passes the data through. */
#ifndef EX_NORM_H
#define EX_NORM_H

#include <stddef.h>

#include <sigmareparam.h>

#include "params.h"

typedef struct {
    size_t dim;
    int enabled;
    float eps;
    float *w, *b, *dw, *db;   /* [dim] each; w starts at 1, b at 0 */
    float *out, *mean, *rstd; /* [rows][dim], [rows], [rows] */
} ex_norm;

/* 0 when out of memory (ex_norm_free cleans up either way). */
int ex_norm_init(ex_norm *n, int enabled, size_t dim, size_t max_rows, float eps);
void ex_norm_free(ex_norm *n);
/* y = LayerNorm(x) into n->out; disabled: *y = x. x: [rows][dim]. */
srp_status ex_norm_forward(ex_norm *n, const float *x, size_t rows, const float **y);
/* d_stream += d(LayerNorm)/dx^T dy (disabled: += dy); scratch: [rows][dim].
 * x: the forward's input. The parameter gradients accumulate. */
srp_status ex_norm_backward_add(ex_norm *n, const float *x, const float *dy, size_t rows,
                                float *d_stream, float *scratch);
/* "prefix.weight" and "prefix.bias" (kind SRP_PARAM_NORM); none when
 * disabled. */
void ex_norm_params(ex_norm *n, const char *prefix, ex_param_list *list);

#endif
