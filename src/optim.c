/* Parameter lists and the optimizers: SGD (momentum, Nesterov, coupled or
 * decoupled decay), LARS, AdamW, and clipping by global norm.
 *
 * The update rules, with the choices made, are written out in optim.h; the
 * code follows torch.optim's single-tensor implementations step by step
 * (SGD: momentum buffer = d on the first step, then m buf + (1 - damp) d;
 * AdamW: p *= 1 - lr wd, m.lerp_(g, 1 - b1), v = b2 v + (1 - b2) g^2, eps
 * after the bias-corrected sqrt). Every update is elementwise in float, so
 * any thread count gives the same bits; the few reductions (norms for LARS
 * and clipping) are in double, each tensor's on one thread, combined in a
 * fixed order. The passes over many tensors share them out among the
 * threads, whole tensors to each: most tensors are too small to split.
 *
 * The state (momentum buffers or Adam's m and v) is one block taken at
 * create: entry i's buffer b is state + offset[i] * buffers + b * size_i. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Longest parameter name: leaves room for "optim." and ".momentum_buffer". */
#define MAX_PARAM_NAME (SRP_TENSOR_MAX_NAME - 32)

struct srp_optim {
    srp_optim_config cfg;
    size_t count;
    srp_param *params;        /* copies, names pointing into `names` */
    size_t buffers;           /* state buffers per entry */
    size_t *offset;           /* [count] first float of each entry in a buffer */
    float *state;             /* buffers * sum(size) floats */
    const char **state_names; /* [count * buffers] */
    char *names;              /* all the strings above */
    uint64_t steps;
    float *trust; /* [count] scratch: each entry's LARS trust ratio */
    size_t total, chars; /* floats of a buffer, bytes of names */
};

srp_param srp_param_make(const char *name, float *data, float *grad, size_t size,
                         srp_param_kind kind)
{
    srp_param p;
    p.name = name;
    p.data = data;
    p.grad = grad;
    p.size = size;
    p.weight_decay = kind == SRP_PARAM_WEIGHT;
    p.lr_mult = 1.0f;
    p.lars = kind == SRP_PARAM_WEIGHT;
    return p;
}

srp_optim_config srp_optim_config_default(srp_optim_kind kind)
{
    srp_optim_config c;
    memset(&c, 0, sizeof(c));
    c.kind = kind;
    c.weight_decay = kind == SRP_OPTIM_ADAMW ? 0.01f : 0.0f;
    c.wd_mode = kind == SRP_OPTIM_ADAMW ? SRP_WD_DECOUPLED : SRP_WD_COUPLED;
    c.momentum = 0.9f;
    c.dampening = 0.0f;
    c.nesterov = 0;
    c.lars_eta = 0.001f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    return c;
}

static int in_unit(float x) { return x >= 0.0f && x < 1.0f; } /* [0, 1), false for NaN */

static srp_status check_config(const srp_optim_config *c)
{
    static const char call[] = "srp_optim_create";
    if (c->kind != SRP_OPTIM_SGD && c->kind != SRP_OPTIM_LARS && c->kind != SRP_OPTIM_ADAMW)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->kind %d is unknown", call, (int)c->kind);
    if (!(c->weight_decay >= 0.0f) || !isfinite(c->weight_decay))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->weight_decay %g: must be finite and >= 0",
                        call, (double)c->weight_decay);
    if (c->wd_mode != SRP_WD_COUPLED && c->wd_mode != SRP_WD_DECOUPLED)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->wd_mode %d is unknown", call,
                        (int)c->wd_mode);
    if (c->kind == SRP_OPTIM_ADAMW) {
        if (!in_unit(c->beta1) || !in_unit(c->beta2))
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->beta%d %g is not in [0, 1)", call,
                            in_unit(c->beta1) ? 2 : 1,
                            (double)(in_unit(c->beta1) ? c->beta2 : c->beta1));
        if (!(c->eps > 0.0f) || !isfinite(c->eps))
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->eps %g: must be finite and > 0", call,
                            (double)c->eps);
        return SRP_OK;
    }
    if (!in_unit(c->momentum))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->momentum %g is not in [0, 1)", call,
                        (double)c->momentum);
    if (!(c->dampening >= 0.0f && c->dampening <= 1.0f))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->dampening %g is not in [0, 1]", call,
                        (double)c->dampening);
    if (c->nesterov && (c->momentum == 0.0f || c->dampening != 0.0f))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->nesterov needs momentum > 0 and "
                        "dampening 0 (as torch), got %g and %g", call, (double)c->momentum,
                        (double)c->dampening);
    if (c->kind == SRP_OPTIM_LARS) {
        if (!(c->lars_eta > 0.0f) || !isfinite(c->lars_eta))
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: cfg->lars_eta %g: must be finite and > 0",
                            call, (double)c->lars_eta);
        if (c->wd_mode == SRP_WD_DECOUPLED) /* the decay is part of the trust ratio */
            return srp_fail(SRP_ERR_UNSUPPORTED, "%s: LARS takes coupled weight decay only (it "
                            "is part of the trust ratio)", call);
    }
    return SRP_OK;
}

static srp_status check_params(const srp_param *params, size_t count)
{
    static const char call[] = "srp_optim_create";
    for (size_t i = 0; i < count; i++) {
        const srp_param *p = &params[i];
        if (!p->name)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: params[%zu].name is NULL", call, i);
        if (!p->data || !p->grad)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: params[%zu] (%s): %s is NULL", call, i,
                            p->name, p->data ? "grad" : "data");
        if (p->size == 0)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: params[%zu] (%s): size is 0", call, i,
                            p->name);
        const size_t len = strlen(p->name);
        if (len == 0 || len > MAX_PARAM_NAME)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: params[%zu].name is %zu bytes, not in "
                            "1..%d", call, i, len, MAX_PARAM_NAME);
        if (!(p->lr_mult >= 0.0f) || !isfinite(p->lr_mult))
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: params[%zu] (%s): lr_mult %g: must be "
                            "finite and >= 0", call, i, p->name, (double)p->lr_mult);
    }
    size_t a = 0, b = 0;
    const srp_status st = srp_unique_names(params, count, sizeof(*params), &a, &b);
    if (st != SRP_ERR_INVALID_ARG)
        return st;
    return srp_fail(st, "%s: params[%zu] and params[%zu] are both named %s", call, a, b,
                    params[a].name);
}

static const char *buffer_suffix(const srp_optim *o, size_t b)
{
    if (o->cfg.kind == SRP_OPTIM_ADAMW)
        return b == 0 ? "exp_avg" : "exp_avg_sq";
    return "momentum_buffer";
}

/* The arrays, in the block of the optimizer (srp_arena_new); the state
 * buffers start at zero. */
static void layout(void *obj, srp_arena *a)
{
    srp_optim *o = obj;
    o->params = srp_arena_take(a, o->count, sizeof(srp_param));
    o->offset = srp_arena_take(a, o->count, sizeof(size_t));
    SRP_ARENA_FLOATS(a, o->count, &o->trust);
    o->names = srp_arena_take(a, o->chars, 1);
    SRP_ARENA_FLOATS(a, o->total * o->buffers, &o->state);
    o->state_names = srp_arena_take(a, o->count * o->buffers, sizeof(char *));
}

srp_status srp_optim_create(srp_optim **out, const srp_param *params, size_t count,
                            const srp_optim_config *cfg)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = NULL;
    if (!params || !cfg)
        return SRP_FAIL_NULL(params, cfg);
    if (count == 0 || count > SIZE_MAX / sizeof(srp_param))
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_optim_create: count %zu: %s", count,
                        count == 0 ? "an empty list" : "too many");
    srp_status st = check_config(cfg);
    if (st == SRP_OK)
        st = check_params(params, count);
    if (st != SRP_OK)
        return st;

    srp_optim proto = {.cfg = *cfg, .count = count};
    proto.buffers = cfg->kind == SRP_OPTIM_ADAMW ? 2 : (cfg->momentum > 0.0f ? 1 : 0);
    /* Sizes first, with overflow checks: sum of entry sizes, then strings. */
    for (size_t i = 0; i < count; i++) {
        if (params[i].size > SIZE_MAX / sizeof(float) / 2 - proto.total)
            return srp_fail(SRP_ERR_INVALID_ARG, "srp_optim_create: the entries' sizes add up "
                                                 "to more floats than memory can address");
        proto.total += params[i].size;
        /* name + NUL, and per buffer "optim." name "." suffix NUL */
        proto.chars += (strlen(params[i].name) + 1) * (1 + proto.buffers) + proto.buffers * 24;
    }
    srp_optim *o = srp_arena_new(&proto, sizeof(proto), layout);
    if (!o)
        return SRP_ERR_NOMEM;
    char *cursor = o->names;
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        o->params[i] = params[i];
        const size_t len = strlen(params[i].name);
        memcpy(cursor, params[i].name, len + 1);
        o->params[i].name = cursor;
        cursor += len + 1;
        o->offset[i] = at;
        at += params[i].size;
        for (size_t b = 0; b < o->buffers; b++) {
            const char *suffix = buffer_suffix(o, b);
            const size_t slen = strlen(suffix);
            o->state_names[i * o->buffers + b] = cursor;
            memcpy(cursor, "optim.", 6);
            memcpy(cursor + 6, params[i].name, len);
            cursor[6 + len] = '.';
            memcpy(cursor + 7 + len, suffix, slen + 1);
            cursor += 7 + len + slen + 1;
        }
    }
    *out = o;
    return SRP_OK;
}

void srp_optim_destroy(srp_optim *o) { free(o); }

static float *buffer_of(srp_optim *o, size_t i, size_t b)
{
    return o->state + o->offset[i] * o->buffers + b * o->params[i].size;
}

/* ---- the updates, one entry at a time; p, g, buf: [n] ---- */

/* SGD from torch.optim.SGD, with the LARS trust ratio folded into d when
 * trust != 1. decay: coupled wd (into d) or decoupled factor (on p). */
static void sgd_update(float *p, const float *g, float *buf, size_t n, const srp_optim_config *c,
                       float lr, float wd, int decoupled, float trust, int first)
{
    const float mom = c->momentum, damp = 1.0f - c->dampening;
    const float coupled_wd = decoupled ? 0.0f : wd;
    const float shrink = (float)(1.0 - (double)lr * (double)(decoupled ? wd : 0.0f));
    const int nesterov = c->nesterov;
    const long len = (long)n;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n >= SRP_PARALLEL_MIN_ELEMS)
    for (long k = 0; k < len; k++) {
        float d = g[k] + coupled_wd * p[k];
        if (trust != 1.0f)
            d *= trust;
        if (buf) {
            const float b = first ? d : mom * buf[k] + damp * d;
            buf[k] = b;
            d = nesterov ? d + mom * b : b;
        }
        p[k] = p[k] * shrink - lr * d;
    }
}

/* AdamW from torch.optim.AdamW; wd coupled (torch.optim.Adam) or decoupled. */
static void adam_update(float *p, const float *g, float *m, float *v, size_t n,
                        const srp_optim_config *c, float lr, float wd, int decoupled, uint64_t t)
{
    const double bc1 = 1.0 - pow((double)c->beta1, (double)t);
    const double bc2 = 1.0 - pow((double)c->beta2, (double)t);
    const float step_size = (float)((double)lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float shrink = (float)(1.0 - (double)lr * (double)(decoupled ? wd : 0.0f));
    const float coupled_wd = decoupled ? 0.0f : wd;
    const float one_minus_b1 = 1.0f - c->beta1, b2 = c->beta2, one_minus_b2 = 1.0f - c->beta2;
    const float eps = c->eps;
    const long len = (long)n;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n >= SRP_PARALLEL_MIN_ELEMS)
    for (long k = 0; k < len; k++) {
        const float pk = p[k] * shrink;
        const float gk = g[k] + coupled_wd * p[k];
        const float mk = m[k] + one_minus_b1 * (gk - m[k]);
        const float vk = b2 * v[k] + one_minus_b2 * gk * gk;
        m[k] = mk;
        v[k] = vk;
        const float denom = sqrtf(vk) / bc2_sqrt + eps;
        p[k] = pk - step_size * (mk / denom);
    }
}

/* eta ||p|| / (||g|| + wd ||p||), 1 when a norm makes it undefined. */
static float lars_trust(const float *p, const float *g, size_t n, double eta, double wd)
{
    const double pn = sqrt(srp_sumsq_f64(p, n)), gn = sqrt(srp_sumsq_f64(g, n));
    const double denom = gn + wd * pn;
    if (!(pn > 0.0) || !(denom > 0.0))
        return 1.0f;
    const double trust = eta * pn / denom;
    return isfinite(trust) ? (float)trust : 1.0f;
}

/* The weight decay of one entry: the config's, for the entries that take it. */
static float entry_weight_decay(const srp_optim_config *c, const srp_param *p)
{
    return p->weight_decay ? c->weight_decay : 0.0f;
}

static srp_status srp_optim_step_impl(srp_optim *o, float lr)
{
    if (!o)
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_optim_step: o is NULL");
    if (!(lr >= 0.0f) || !isfinite(lr))
        return srp_fail(SRP_ERR_INVALID_ARG, "srp_optim_step: lr %g: must be finite and >= 0",
                        (double)lr);
    const srp_optim_config *c = &o->cfg;
    const int decoupled = c->wd_mode == SRP_WD_DECOUPLED;
    /* Every gradient checked, and the LARS ratios taken, before any entry
     * changes: a non-finite gradient leaves the parameters as they were. */
    const long count = (long)o->count;
    int finite = 1;
#pragma omp parallel for num_threads(srp_threads()) schedule(dynamic) reduction(&& : finite)
    for (long i = 0; i < count; i++) {
        const srp_param *p = &o->params[i];
        finite = finite && srp_all_finite(p->grad, p->size);
        o->trust[i] = c->kind == SRP_OPTIM_LARS && p->lars
                          ? lars_trust(p->data, p->grad, p->size, (double)c->lars_eta,
                                       (double)entry_weight_decay(c, p))
                          : 1.0f;
    }
    if (!finite)
        return SRP_ERR_NUMERIC;
    for (size_t i = 0; i < o->count; i++) {
        const srp_param *p = &o->params[i];
        const float lr_e = lr * p->lr_mult;
        const float wd = entry_weight_decay(c, p);
        if (c->kind == SRP_OPTIM_ADAMW) {
            adam_update(p->data, p->grad, buffer_of(o, i, 0), buffer_of(o, i, 1), p->size, c, lr_e,
                        wd, decoupled, o->steps + 1);
            continue;
        }
        float *buf = o->buffers > 0 ? buffer_of(o, i, 0) : NULL;
        sgd_update(p->data, p->grad, buf, p->size, c, lr_e, wd, decoupled, o->trust[i],
                   o->steps == 0);
    }
    o->steps++;
    return SRP_OK;
}

srp_status srp_optim_step(srp_optim *o, float lr)
{
    const uint64_t t0 = srp_profile_begin();
    const srp_status st = srp_optim_step_impl(o, lr);
    srp_profile_end(SRP_PROF_OPTIMIZER, t0);
    return st;
}

static void srp_optim_zero_grad_impl(srp_optim *o)
{
    if (!o)
        return;
    const long count = (long)o->count;
#pragma omp parallel for num_threads(srp_threads()) schedule(dynamic)
    for (long i = 0; i < count; i++)
        memset(o->params[i].grad, 0, o->params[i].size * sizeof(float));
}

void srp_optim_zero_grad(srp_optim *o)
{
    const uint64_t t0 = srp_profile_begin();
    srp_optim_zero_grad_impl(o);
    srp_profile_end(SRP_PROF_OPTIMIZER, t0);
}

size_t srp_optim_param_count(const srp_optim *o) { return o ? o->count : 0; }

const srp_param *srp_optim_param(const srp_optim *o, size_t i)
{
    return o && i < o->count ? &o->params[i] : NULL;
}

size_t srp_optim_state_buffers(const srp_optim *o) { return o ? o->buffers : 0; }

float *srp_optim_state(srp_optim *o, size_t i, size_t b)
{
    return o && i < o->count && b < o->buffers ? buffer_of(o, i, b) : NULL;
}

uint64_t srp_optim_step_count(const srp_optim *o) { return o ? o->steps : 0; }

void srp_optim_set_step_count(srp_optim *o, uint64_t steps)
{
    if (o)
        o->steps = steps;
}

size_t srp_optim_tensor_count(const srp_optim *o) { return o ? 1 + o->count * o->buffers : 0; }

srp_status srp_optim_tensor_refs(srp_optim *o, srp_tensor_ref *refs, size_t capacity)
{
    if (!o || !refs)
        return SRP_FAIL_NULL(o, refs);
    if (capacity < srp_optim_tensor_count(o))
        return srp_fail(SRP_ERR_INVALID_ARG,
                        "srp_optim_tensor_refs: capacity %zu < srp_optim_tensor_count %zu",
                        capacity, srp_optim_tensor_count(o));
    memset(refs, 0, sizeof(srp_tensor_ref) * srp_optim_tensor_count(o));
    refs[0].name = "optim.step";
    refs[0].dtype = SRP_DTYPE_U64;
    refs[0].ndim = 0;
    refs[0].data = &o->steps;
    for (size_t i = 0; i < o->count; i++) {
        for (size_t b = 0; b < o->buffers; b++) {
            srp_tensor_ref *r = &refs[1 + i * o->buffers + b];
            r->name = o->state_names[i * o->buffers + b];
            r->dtype = SRP_DTYPE_F32;
            r->ndim = 1;
            r->shape[0] = o->params[i].size;
            r->data = buffer_of(o, i, b);
        }
    }
    return SRP_OK;
}

srp_status srp_optim_state_refs(srp_optim *o, srp_tensor_list *list)
{
    if (!o || !list)
        return SRP_FAIL_NULL(o, list);
    srp_status st = srp_tensor_list_add(list, "optim.step", NULL, SRP_DTYPE_U64, 0, NULL, &o->steps);
    for (size_t i = 0; i < o->count && st == SRP_OK; i++)
        for (size_t b = 0; b < o->buffers && st == SRP_OK; b++)
            st = srp_tensor_list_add_f32(list, o->state_names[i * o->buffers + b], NULL,
                                         buffer_of(o, i, b), o->params[i].size);
    return st;
}

/* ---- clipping ---- */

static srp_status srp_clip_grad_norm_impl(const srp_param *params, size_t count, float max_norm,
                                          float *norm_out, const char *call)
{
    if (!params)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: params is NULL", call);
    if (count == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: count is 0", call);
    if (!(max_norm > 0.0f) || !isfinite(max_norm))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: max_norm %g: must be finite and > 0", call,
                        (double)max_norm);
    for (size_t i = 0; i < count; i++)
        if (!params[i].grad || params[i].size == 0)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: params[%zu]: %s", call, i,
                            params[i].grad ? "size is 0" : "grad is NULL");
    /* Each tensor's sum of squares on one thread, a group at a time, added
     * in order: the bits of one thread. */
    enum { GROUP = 64 };
    double sumsq = 0.0, group_sums[GROUP];
    for (size_t first = 0; first < count; first += GROUP) {
        const long in_group = (long)(count - first < GROUP ? count - first : GROUP);
#pragma omp parallel for num_threads(srp_threads()) schedule(dynamic)
        for (long j = 0; j < in_group; j++)
            group_sums[j] =
                srp_sumsq_f64(params[first + (size_t)j].grad, params[first + (size_t)j].size);
        for (long j = 0; j < in_group; j++)
            sumsq += group_sums[j];
    }
    const double norm = sqrt(sumsq);
    if (norm_out)
        *norm_out = (float)norm;
    if (!isfinite(norm))
        return SRP_ERR_NUMERIC;
    const double coef = (double)max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        const float cf = (float)coef;
        for (size_t i = 0; i < count; i++) {
            float *g = params[i].grad;
            const long len = (long)params[i].size;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (len >= SRP_PARALLEL_MIN_ELEMS)
            for (long k = 0; k < len; k++)
                g[k] *= cf;
        }
    }
    return SRP_OK;
}

srp_status srp_clip_grad_norm(const srp_param *params, size_t count, float max_norm,
                              float *norm_out)
{
    const uint64_t t0 = srp_profile_begin();
    const srp_status st =
        srp_clip_grad_norm_impl(params, count, max_norm, norm_out, "srp_clip_grad_norm");
    srp_profile_end(SRP_PROF_OPTIMIZER, t0);
    return st;
}

srp_status srp_optim_clip_grad_norm(srp_optim *o, float max_norm, float *norm_out)
{
    if (!o)
        return SRP_FAIL_NULL(o);
    const uint64_t t0 = srp_profile_begin();
    const srp_status st = srp_clip_grad_norm_impl(o->params, o->count, max_norm, norm_out,
                                                  "srp_optim_clip_grad_norm");
    srp_profile_end(SRP_PROF_OPTIMIZER, t0);
    return st;
}
