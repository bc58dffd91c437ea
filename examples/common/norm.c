/* LayerNorm layers of the example models (norm.h). */
#include "norm.h"

#include <stdlib.h>
#include <string.h>

int ex_norm_init(ex_norm *n, int enabled, size_t dim, size_t max_rows, float eps)
{
    memset(n, 0, sizeof(*n));
    n->dim = dim;
    n->enabled = enabled;
    n->eps = eps;
    if (!enabled)
        return 1;
    n->w = malloc(sizeof(float) * dim);
    n->b = calloc(dim, sizeof(float));
    n->dw = calloc(dim, sizeof(float));
    n->db = calloc(dim, sizeof(float));
    n->out = malloc(sizeof(float) * max_rows * dim);
    n->mean = malloc(sizeof(float) * max_rows);
    n->rstd = malloc(sizeof(float) * max_rows);
    if (!n->w || !n->b || !n->dw || !n->db || !n->out || !n->mean || !n->rstd)
        return 0;
    for (size_t i = 0; i < dim; i++)
        n->w[i] = 1.0f;
    return 1;
}

void ex_norm_free(ex_norm *n)
{
    free(n->w);
    free(n->b);
    free(n->dw);
    free(n->db);
    free(n->out);
    free(n->mean);
    free(n->rstd);
    n->w = n->b = n->dw = n->db = n->out = n->mean = n->rstd = NULL;
}

srp_status ex_norm_forward(ex_norm *n, const float *x, size_t rows, const float **y)
{
    if (!n->enabled) {
        *y = x;
        return SRP_OK;
    }
    *y = n->out;
    return srp_layernorm_forward(x, n->w, n->b, rows, n->dim, n->eps, n->out, n->mean, n->rstd);
}

srp_status ex_norm_backward_add(ex_norm *n, const float *x, const float *dy, size_t rows,
                                float *d_stream, float *scratch)
{
    if (!n->enabled)
        return srp_accumulate(d_stream, dy, rows * n->dim);
    const srp_status st =
        srp_layernorm_backward(x, n->w, n->mean, n->rstd, dy, rows, n->dim, scratch, n->dw, n->db);
    return st != SRP_OK ? st : srp_accumulate(d_stream, scratch, rows * n->dim);
}

void ex_norm_params(ex_norm *n, const char *prefix, ex_param_list *list)
{
    if (!n->enabled)
        return;
    ex_params_add(list, prefix, "weight", n->w, n->dw, n->dim, SRP_PARAM_NORM);
    ex_params_add(list, prefix, "bias", n->b, n->db, n->dim, SRP_PARAM_NORM);
}
