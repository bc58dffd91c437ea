/* The exponential moving average of a model's parameters (ema.h). */
#include "ema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ex_code ex_ema_init(ex_ema *e, const srp_param *params, size_t nparams, srp_linear *const *linears,
                    size_t nlinears, float decay, ex_error *err)
{
    memset(e, 0, sizeof(*e));
    e->params = params;
    e->nparams = nparams;
    e->linears = linears;
    e->nlinears = nlinears;
    e->decay = decay;
    e->offsets = malloc(sizeof(size_t) * (nparams ? nparams : 1));
    if (!e->offsets)
        return ex_fail(err, EX_FAILED, "out of memory for the weight average");
    for (size_t i = 0; i < nparams; i++) {
        e->offsets[i] = e->total;
        e->total += params[i].size;
    }
    size_t state = 0; /* u, v, sigma of every linear */
    for (size_t i = 0; i < nlinears; i++)
        state += srp_linear_in_features(linears[i]) + srp_linear_out_features(linears[i]) + 1;
    e->shadow = malloc(sizeof(float) * e->total);
    e->saved = malloc(sizeof(float) * e->total);
    e->saved_state = malloc(sizeof(float) * (state ? state : 1));
    if (!e->shadow || !e->saved || !e->saved_state)
        return ex_fail(err, EX_FAILED, "out of memory for the weight average");
    return EX_OK;
}

void ex_ema_free(ex_ema *e)
{
    free(e->offsets);
    free(e->shadow);
    free(e->saved);
    free(e->saved_state);
    memset(e, 0, sizeof(*e));
}

void ex_ema_update(ex_ema *e)
{
    const float warm = (1.0f + (float)e->updates) / (10.0f + (float)e->updates);
    const float d = warm < e->decay ? warm : e->decay;
    const long count = (long)e->nparams;
    /* Whole tensors to each thread (elementwise: the same bits for any
     * count), as the library's optimizer does. */
#pragma omp parallel for num_threads(srp_get_num_threads()) schedule(dynamic)
    for (long i = 0; i < count; i++) {
        const float *p = e->params[i].data;
        float *s = e->shadow + e->offsets[i];
        const size_t n = e->params[i].size;
        /* The first update copies: the shadow starts uninitialized, and
         * 0 * s would keep a NaN that its bytes happened to hold. */
        if (e->updates == 0)
            memcpy(s, p, sizeof(float) * n);
        else
            for (size_t k = 0; k < n; k++)
                s[k] = d * s[k] + (1.0f - d) * p[k];
    }
    e->updates++;
}

/* Copies the live u, v, sigma of every linear to or from saved_state. */
static void copy_linear_state(ex_ema *e, int restore)
{
    float *st = e->saved_state;
    for (size_t i = 0; i < e->nlinears; i++) {
        srp_linear *l = e->linears[i];
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        float *u = srp_linear_u(l), *v = srp_linear_v(l);
        if (restore) {
            memcpy(u, st, sizeof(float) * in);
            memcpy(v, st + in, sizeof(float) * out);
            srp_linear_set_sigma(l, st[in + out]); /* the value it had: cannot fail */
        } else {
            memcpy(st, u, sizeof(float) * in);
            memcpy(st + in, v, sizeof(float) * out);
            st[in + out] = srp_linear_sigma(l);
        }
        st += in + out + 1;
    }
}

ex_code ex_ema_swap_in(ex_ema *e, ex_error *err)
{
    if (e->swapped || e->updates == 0)
        return EX_OK; /* nothing averaged yet: evaluate the live model */
    const float *s = e->shadow;
    float *saved = e->saved;
    for (size_t i = 0; i < e->nparams; i++) {
        const size_t n = e->params[i].size;
        memcpy(saved, e->params[i].data, sizeof(float) * n);
        memcpy(e->params[i].data, s, sizeof(float) * n);
        s += n;
        saved += n;
    }
    copy_linear_state(e, 0);
    e->swapped = 1;
    for (size_t i = 0; i < e->nlinears; i++) {
        const srp_status st = srp_linear_reinit_sigma(e->linears[i]);
        if (st != SRP_OK) {
            ex_ema_swap_out(e);
            return ex_fail_status(err, st, "sigma of the averaged weights");
        }
    }
    return EX_OK;
}

void ex_ema_swap_out(ex_ema *e)
{
    if (!e->swapped)
        return;
    const float *saved = e->saved;
    for (size_t i = 0; i < e->nparams; i++) {
        memcpy(e->params[i].data, saved, sizeof(float) * e->params[i].size);
        saved += e->params[i].size;
    }
    copy_linear_state(e, 1);
    e->swapped = 0;
}

void ex_ema_tensors(ex_ema *e, const char *prefix, srp_tensor_list *list)
{
    srp_tensor_list_add_f32(list, prefix, "average", e->shadow, e->total);
    srp_tensor_list_add(list, prefix, "updates", SRP_DTYPE_U64, 0, NULL, &e->updates);
}
