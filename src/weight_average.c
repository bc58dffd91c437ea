/* The sigma-aware weight average (weight_average.h).
 *
 * average: [total] floats, entry i's at offsets[i] (list order). A swap in
 * first computes every linear's u, v, sigma for its averaged weight into
 * new_state (prepare: nothing changes if one fails), then keeps the live
 * parameters in saved [total] and the live u, v, sigma in saved_state,
 * and puts the averages and new_state in (commit); the swap out copies the
 * saved ones back. Each state holds in + out + 1 floats per linear, in the
 * linears' order: u [in], v [out], sigma.
 *
 * The SVD is srp_svd_top, the one srp_linear_reinit_sigma runs, so u, v
 * and sigma are the bits reinit would give; but it writes only u, v and
 * sigma, not what the linear keeps of its last forward for a pending
 * backward, so that a swap in and out changes no hidden state either. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct {
    float *data;
    size_t size;
} entry;

struct srp_weight_average {
    float decay;
    entry *entries;
    size_t count, total;
    size_t *offsets; /* [count] */
    srp_linear **linears;
    size_t nlinears;
    const float **weights; /* [nlinears]: each linear's weight as swapped in */
    uint64_t updates;
    float *average;     /* [total] */
    float *saved;       /* [total]: the live parameters during a swap */
    float *saved_state; /* the linears' live u, v, sigma during a swap */
    float *new_state;   /* their u, v, sigma for the averaged weights */
    size_t state_floats; /* of saved_state, and of new_state */
    int swapped;
};

srp_weight_average_config srp_weight_average_config_default(void)
{
    srp_weight_average_config c;
    memset(&c, 0, sizeof(c));
    c.decay = 0.999f;
    return c;
}

/* The arrays, in the block of the average (srp_arena_new). average starts
 * at zero: never read before the first update, which copies, zeros keep a
 * state save before it deterministic. */
static void layout(void *obj, srp_arena *b)
{
    srp_weight_average *a = obj;
    a->entries = srp_arena_take(b, a->count, sizeof(*a->entries));
    a->offsets = srp_arena_take(b, a->count, sizeof(*a->offsets));
    a->linears = srp_arena_take(b, a->nlinears, sizeof(*a->linears));
    a->weights = srp_arena_take(b, a->nlinears, sizeof(*a->weights));
    SRP_ARENA_FLOATS(b, a->total, &a->average, &a->saved);
    SRP_ARENA_FLOATS(b, a->state_floats, &a->saved_state, &a->new_state);
}

srp_status srp_weight_average_create(srp_weight_average **out, srp_param_list *params,
                                     srp_linear *const *linears, size_t nlinears,
                                     const srp_weight_average_config *cfg)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = NULL;
    if (!params || !cfg || (!linears && nlinears > 0))
        return SRP_FAIL_NULL(params, cfg, linears);
    const size_t count = srp_param_list_count(params);
    if (count == 0 || srp_param_list_status(params) != SRP_OK)
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_weight_average_create: the parameter list is empty (%zu entries) or "
                        "failed an append",
                        count);
    if (!(cfg->decay >= 0.0f && cfg->decay < 1.0f))
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_weight_average_create: decay %g not in [0, 1)",
                        (double)cfg->decay);
    const srp_param *p = srp_param_list_entries(params);
    size_t total = 0, state = 0;
    for (size_t i = 0; i < count; i++) {
        if (p[i].size > SIZE_MAX / 2 / sizeof(float) - total)
            return srp_fail(SRP_ERR_INVALID_ARG, "srp_weight_average_create: sizes overflow");
        total += p[i].size;
    }
    for (size_t i = 0; i < nlinears; i++) {
        if (!linears[i])
            return srp_fail(SRP_ERR_INVALID_ARG, "srp_weight_average_create: linears[%zu] is NULL",
                            i);
        state += srp_linear_in_features(linears[i]) + srp_linear_out_features(linears[i]) + 1;
    }
    srp_weight_average *a =
        SRP_ARENA_NEW(srp_weight_average, layout, .decay = cfg->decay, .count = count,
                      .total = total, .nlinears = nlinears, .state_floats = state);
    if (!a)
        return SRP_ERR_NOMEM;
    for (size_t i = 0, off = 0; i < count; i++) {
        a->entries[i] = (entry){p[i].data, p[i].size};
        a->offsets[i] = off;
        off += p[i].size;
    }
    /* A linear whose weight is averaged gets sigma of the average; one
     * whose weight is not in the list keeps its live weight in the swap,
     * and gets sigma of that. */
    for (size_t i = 0; i < nlinears; i++) {
        a->linears[i] = linears[i];
        a->weights[i] = srp_linear_weight(linears[i]);
        for (size_t j = 0; j < count; j++)
            if (p[j].data == a->weights[i]) {
                a->weights[i] = a->average + a->offsets[j];
                break;
            }
    }
    *out = a;
    return SRP_OK;
}

void srp_weight_average_destroy(srp_weight_average *a) { free(a); }

srp_status srp_weight_average_update(srp_weight_average *a)
{
    if (!a)
        return SRP_FAIL_NULL(a);
    if (a->swapped)
        return srp_fail(SRP_ERR_ORDER, "srp_weight_average_update: the averages are swapped in");
    const long count = (long)a->count;
    const int parallel = a->total >= SRP_PARALLEL_MIN_ELEMS;
    /* Whole tensors to each thread, as the optimizer does: the arithmetic
     * is elementwise, so the bits are the same for any thread count. */
    int finite = 1;
#pragma omp parallel for num_threads(srp_threads()) schedule(dynamic) reduction(&& : finite)       \
    if (parallel)
    for (long i = 0; i < count; i++)
        finite = finite && srp_all_finite(a->entries[i].data, a->entries[i].size);
    if (!finite)
        return srp_fail(SRP_ERR_NUMERIC, "srp_weight_average_update: NaN/Inf in a parameter");
    const uint64_t t = a->updates;
    const float warm = (1.0f + (float)t) / (10.0f + (float)t);
    const float d = warm < a->decay ? warm : a->decay, keep = 1.0f - d;
#pragma omp parallel for num_threads(srp_threads()) schedule(dynamic) if (parallel)
    for (long i = 0; i < count; i++) {
        /* p: [size], s: [size] */
        const float *p = a->entries[i].data;
        float *s = a->average + a->offsets[i];
        const size_t n = a->entries[i].size;
        if (t == 0) /* the average starts as the parameters */
            memcpy(s, p, n * sizeof(float));
        else
            for (size_t k = 0; k < n; k++)
                s[k] = d * s[k] + keep * p[k];
    }
    a->updates++;
    return SRP_OK;
}

uint64_t srp_weight_average_updates(const srp_weight_average *a) { return a ? a->updates : 0; }
int srp_weight_average_swapped(const srp_weight_average *a) { return a ? a->swapped : 0; }

/* Copies every parameter between the model and buf (to_model: buf into the
 * model). */
static void copy_params(srp_weight_average *a, float *buf, int to_model)
{
    for (size_t i = 0; i < a->count; i++) {
        float *model = a->entries[i].data, *b = buf + a->offsets[i];
        const size_t bytes = a->entries[i].size * sizeof(float);
        if (to_model)
            memcpy(model, b, bytes);
        else
            memcpy(b, model, bytes);
    }
}

/* Copies every linear's u, v and sigma between the linears and state
 * (to_linears: state into the linears; its sigmas are valid for them). */
static void copy_linear_state(srp_weight_average *a, float *state, int to_linears)
{
    float *st = state;
    for (size_t i = 0; i < a->nlinears; i++) {
        srp_linear *l = a->linears[i];
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        float *u = srp_linear_u(l), *v = srp_linear_v(l);
        if (to_linears) {
            memcpy(u, st, in * sizeof(float));
            memcpy(v, st + in, out * sizeof(float));
            (void)srp_linear_set_sigma(l, st[in + out]);
        } else {
            memcpy(st, u, in * sizeof(float));
            memcpy(st + in, v, out * sizeof(float));
            st[in + out] = srp_linear_sigma(l);
        }
        st += in + out + 1;
    }
}

/* new_state: each linear's u, v, sigma for the weight it will have
 * swapped in, by an exact SVD (as srp_linear_reinit_sigma; NONE mode keeps
 * its state). Nothing of the model changes. */
static srp_status prepare_linear_state(srp_weight_average *a)
{
    copy_linear_state(a, a->new_state, 0);
    float *st = a->new_state;
    for (size_t i = 0; i < a->nlinears; i++) {
        srp_linear *l = a->linears[i];
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        const srp_reparam mode = srp_linear_reparam(l);
        if (mode != SRP_REPARAM_NONE) {
            float sigma = 0.0f;
            const srp_status status = srp_svd_top(a->weights[i], out, in, st, st + in, &sigma);
            if (status != SRP_OK || (mode == SRP_REPARAM_SIGMA && !(sigma > 0.0f)))
                return srp_fail(status != SRP_OK ? status : SRP_ERR_NUMERIC,
                                "srp_weight_average_swap_in: sigma of linears[%zu]'s averaged "
                                "weight [%zu][%zu] (%s)",
                                i, out, in, status != SRP_OK ? "SVD failed" : "an all-zero weight");
            st[in + out] = sigma;
        }
        st += in + out + 1;
    }
    return SRP_OK;
}

srp_status srp_weight_average_swap_in(srp_weight_average *a)
{
    if (!a)
        return SRP_FAIL_NULL(a);
    if (a->swapped)
        return srp_fail(SRP_ERR_ORDER, "srp_weight_average_swap_in: already swapped in");
    if (a->updates == 0)
        return SRP_OK; /* nothing averaged yet: the live model is evaluated */
    if (!srp_all_finite(a->average, a->total))
        return srp_fail(SRP_ERR_NUMERIC, "srp_weight_average_swap_in: NaN/Inf in the averages");
    const srp_status st = prepare_linear_state(a);
    if (st != SRP_OK)
        return st;
    copy_params(a, a->saved, 0);
    copy_params(a, a->average, 1);
    copy_linear_state(a, a->saved_state, 0);
    copy_linear_state(a, a->new_state, 1);
    a->swapped = 1;
    return SRP_OK;
}

srp_status srp_weight_average_swap_out(srp_weight_average *a)
{
    if (!a)
        return SRP_FAIL_NULL(a);
    if (!a->swapped)
        return SRP_OK;
    copy_params(a, a->saved, 1);
    copy_linear_state(a, a->saved_state, 1);
    a->swapped = 0;
    return SRP_OK;
}

srp_status srp_weight_average_state_refs(srp_weight_average *a, const char *prefix,
                                         srp_tensor_list *list)
{
    if (!a || !list)
        return SRP_FAIL_NULL(a, list);
    srp_status st = srp_tensor_list_add_f32(list, prefix, "average", a->average, a->total);
    if (st == SRP_OK)
        st = srp_tensor_list_add(list, prefix, "updates", SRP_DTYPE_U64, 0, NULL, &a->updates);
    return st;
}
