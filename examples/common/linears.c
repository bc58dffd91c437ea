/* Tables of named linear layers (linears.h). */
#include "linears.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ex_linears_add(ex_linear_table *t, srp_linear *linear, const char *name)
{
    const size_t n = t->count + 1;
    srp_linear **linears = realloc(t->linears, n * sizeof(*linears));
    if (linears)
        t->linears = linears;
    char **names = realloc(t->names, n * sizeof(*names));
    if (names)
        t->names = names;
    float *sigmas = realloc(t->sigmas, n * sizeof(*sigmas));
    if (sigmas)
        t->sigmas = sigmas;
    char *copy = linears && names && sigmas ? malloc(strlen(name) + 1) : NULL;
    if (!copy)
        return 0;
    strcpy(copy, name);
    t->linears[t->count] = linear;
    t->names[t->count] = copy;
    t->sigmas[t->count] = 0.0f;
    t->count = n;
    return 1;
}

void ex_linears_free(ex_linear_table *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->names[i]);
    free(t->names);
    free(t->linears);
    free(t->sigmas);
    memset(t, 0, sizeof(*t));
}

srp_linear *ex_linears_at(const ex_linear_table *t, size_t i, const char **name)
{
    if (i >= t->count)
        return NULL;
    if (name)
        *name = t->names[i];
    return t->linears[i];
}

void ex_linears_params(const ex_linear_table *t, ex_param_list *list)
{
    for (size_t i = 0; i < t->count; i++)
        ex_params_add_linear(list, t->names[i], t->linears[i]);
}

void ex_linears_state_tensors(ex_linear_table *t, ex_tensor_list *list)
{
    char name[SRP_CHECKPOINT_MAX_NAME];
    for (size_t i = 0; i < t->count; i++) {
        srp_linear *l = t->linears[i];
        if (srp_linear_reparam(l) == SRP_REPARAM_NONE)
            continue;
        snprintf(name, sizeof(name), "%s.u", t->names[i]);
        ex_tensors_add_f32(list, name, srp_linear_u(l), srp_linear_in_features(l));
        snprintf(name, sizeof(name), "%s.v", t->names[i]);
        ex_tensors_add_f32(list, name, srp_linear_v(l), srp_linear_out_features(l));
        snprintf(name, sizeof(name), "%s.sigma", t->names[i]);
        ex_tensors_add(list, name, SRP_DTYPE_F32, 0, NULL, &t->sigmas[i]);
    }
}

void ex_linears_sync_out(ex_linear_table *t)
{
    for (size_t i = 0; i < t->count; i++)
        t->sigmas[i] = srp_linear_sigma(t->linears[i]);
}

srp_status ex_linears_sync_in(ex_linear_table *t)
{
    for (size_t i = 0; i < t->count; i++)
        if (srp_linear_reparam(t->linears[i]) != SRP_REPARAM_NONE) {
            const srp_status st = srp_linear_set_sigma(t->linears[i], t->sigmas[i]);
            if (st != SRP_OK)
                return st;
        }
    return SRP_OK;
}

void ex_model_state_tensors(const ex_param_list *params, ex_linear_table *t, ex_tensor_list *list)
{
    list->failed |= params->failed;
    for (size_t k = 0; k < params->count; k++)
        ex_tensors_add_f32(list, params->params[k].name, params->params[k].data,
                           params->params[k].size);
    ex_linears_state_tensors(t, list);
}
