/* A model's list of trainable tensors for the optimizer, built by
 * appending: it owns the names ("blocks.0.mlp.fc1.weight", timm-style) and
 * keeps each entry's kind, so that a trainer can give kinds their own
 * learning rates. */
#ifndef EX_PARAMS_H
#define EX_PARAMS_H

#include <stddef.h>

#include <sigmareparam.h>

typedef struct {
    srp_param *params;
    srp_param_kind *kinds;
    char **names;
    size_t count, capacity;
    int failed; /* an allocation failed: the list is incomplete */
} ex_param_list;

void ex_params_init(ex_param_list *l);
void ex_params_free(ex_param_list *l);
/* Appends "prefix.suffix" (suffix NULL: "prefix") with the defaults of
 * its kind (srp_param_make). */
void ex_params_add(ex_param_list *l, const char *prefix, const char *suffix, float *data,
                   float *grad, size_t size, srp_param_kind kind);
/* A linear layer's weight, bias (if any) and gamma (sigmaReparam only). */
void ex_params_add_linear(ex_param_list *l, const char *name, srp_linear *linear);

#endif
