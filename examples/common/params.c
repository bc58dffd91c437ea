/* Parameter lists (params.h). */
#include "params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ex_params_init(ex_param_list *l) { memset(l, 0, sizeof(*l)); }

void ex_params_free(ex_param_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->names[i]);
    free(l->names);
    free(l->params);
    free(l->kinds);
    memset(l, 0, sizeof(*l));
}

static int grow(ex_param_list *l)
{
    const size_t cap = l->capacity ? 2 * l->capacity : 64;
    srp_param *params = realloc(l->params, cap * sizeof(*params));
    if (params)
        l->params = params;
    srp_param_kind *kinds = realloc(l->kinds, cap * sizeof(*kinds));
    if (kinds)
        l->kinds = kinds;
    char **names = realloc(l->names, cap * sizeof(*names));
    if (names)
        l->names = names;
    if (!params || !kinds || !names)
        return 0;
    l->capacity = cap;
    return 1;
}

void ex_params_add(ex_param_list *l, const char *prefix, const char *suffix, float *data,
                   float *grad, size_t size, srp_param_kind kind)
{
    if (l->failed || (l->count == l->capacity && !grow(l))) {
        l->failed = 1;
        return;
    }
    const size_t len = strlen(prefix) + (suffix ? strlen(suffix) + 1 : 0) + 1;
    char *name = malloc(len);
    if (!name) {
        l->failed = 1;
        return;
    }
    snprintf(name, len, "%s%s%s", prefix, suffix ? "." : "", suffix ? suffix : "");
    l->names[l->count] = name;
    l->kinds[l->count] = kind;
    l->params[l->count] = srp_param_make(name, data, grad, size, kind);
    l->count++;
}

void ex_params_add_linear(ex_param_list *l, const char *name, srp_linear *linear)
{
    const size_t in = srp_linear_in_features(linear), out = srp_linear_out_features(linear);
    ex_params_add(l, name, "weight", srp_linear_weight(linear), srp_linear_weight_grad(linear),
                  in * out, SRP_PARAM_WEIGHT);
    if (srp_linear_bias(linear))
        ex_params_add(l, name, "bias", srp_linear_bias(linear), srp_linear_bias_grad(linear), out,
                      SRP_PARAM_BIAS);
    if (srp_linear_reparam(linear) == SRP_REPARAM_SIGMA)
        ex_params_add(l, name, "gamma", srp_linear_gamma(linear), srp_linear_gamma_grad(linear), 1,
                      SRP_PARAM_GAMMA);
}
