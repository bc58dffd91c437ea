/* Private to layernorm.c and block.c: the LayerNorm layer's state, and its
 * forward and backward in the halves a module of several layers needs to
 * check all of them before it changes any (as linear.c's are). */
#ifndef SRP_LAYERNORM_INTERNAL_H
#define SRP_LAYERNORM_INTERNAL_H

#include <stddef.h>

#include "internal.h"

struct srp_layernorm {
    size_t dim, max_rows;
    float eps;
    float *w, *b, *dw, *db; /* [dim] each */
    /* The last forward. */
    size_t rows;
    int have_forward;
    srp_call_order order;
    float *mean, *rstd; /* [max_rows] */
    /* The pending backward: the parameter gradients before they are added
     * in ([dim] each), and backward_add's staging of dx ([max_rows][dim]). */
    float *pending_dw, *pending_db;
    float *stage;
};

/* y = LayerNorm(x), the statistics kept; nothing checked (the caller
 * checks what y feeds). Until commit, the layer has no forward to
 * differentiate. x, y: [rows][dim], rows <= max_rows. */
void srp_layernorm_layer_compute(srp_layernorm *ln, const float *x, size_t rows, float *y);
void srp_layernorm_layer_commit(srp_layernorm *ln, int training);
/* dx = dL/dx (may be dy) and the parameter gradients into pending_dw/db,
 * for the last forward's rows; SRP_ERR_NUMERIC when those are not finite
 * (a NaN or Inf in dy always reaches the bias's). No gradient changes. */
srp_status srp_layernorm_layer_backward_prepare(srp_layernorm *ln, const float *x, const float *dy,
                                                float *dx);
/* Adds the prepared gradients in; consumes the forward. */
void srp_layernorm_layer_backward_commit(srp_layernorm *ln);

#endif
