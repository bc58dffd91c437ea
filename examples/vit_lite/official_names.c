/* The official names (official_names.h, docs/FORMAT.md). A linear L of the
 * official SNLinear holds:
 *
 *     L.weight                                [out][in]  W
 *     L.bias                                  [out]
 *     L.sigma                                 [1]        gamma (the learned scale)
 *     L.effective_spectral_norm               [1]        a copy of gamma (a buffer)
 *     L.spectral_normed_weight.u              [in]       the power iteration's u
 *     L.spectral_normed_weight.spectral_norm  [1]        sigma of the last training forward
 *     L.spectral_normed_weight.weight         [out][in]  W again (the same parameter)
 *
 * and a plain nn.Linear (--no-sn) only weight and bias (the patch
 * embedding then is timm's nn.Conv2d: weight [D][C][p][p]). The rest keep
 * timm's names: cls_token [1][1][D], pos_embed [1][T][D], the LayerNorms'
 * blocks.<i>.norm1/norm2 and norm, weight and bias [D]. */
#include "official_names.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Scalars the list points at, one set per linear: sigma as the file holds
 * it, and the two copies that import reads and drops. */
typedef struct {
    float sigma, effective_gamma;
    float *weight_alias; /* [out][in] */
} linear_extras;

typedef struct {
    srp_tensor_list *list;
    linear_extras *extras; /* [linears] */
} official_list;

static void add_named(srp_tensor_list *list, const char *prefix, const char *suffix, size_t ndim,
                      const size_t *shape, float *data)
{
    srp_tensor_list_add(list, prefix, suffix, SRP_DTYPE_F32, ndim, shape, data);
}

static void official_free(official_list *o, size_t nlinears)
{
    for (size_t i = 0; o->extras && i < nlinears; i++)
        free(o->extras[i].weight_alias);
    free(o->extras);
    srp_tensor_list_destroy(o->list);
}

/* The list of the model's tensors under the official names. for_import:
 * the aliases point at scratch buffers instead of the model. */
static ex_code official_tensors(vit_model *m, int for_import, official_list *o, ex_error *err)
{
    o->extras = NULL;
    srp_status st = srp_tensor_list_create(&o->list);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "the list of the official names");
    const size_t nlin = vit_linears(m)->count;
    const vit_config *c = vit_get_config(m);
    if (c->sigma_reparam && c->qkv_sigma != SRP_QKV_SIGMA_FUSED)
        return ex_fail(err, EX_USAGE,
                       "the official model has one qkv linear per block: safetensors files need "
                       "--qkv-sigma fused");
    if (c->pool != VIT_POOL_CLS)
        return ex_fail(err, EX_USAGE,
                       "the official model's head reads the class token: safetensors files need "
                       "--pool cls");
    if (c->stem_layers)
        return ex_fail(err, EX_USAGE,
                       "the official model has no convolutional stem: safetensors files need "
                       "--stem 0");
    o->extras = calloc(nlin ? nlin : 1, sizeof(*o->extras));
    if (!o->extras)
        return ex_fail(err, EX_FAILED, "out of memory");

    /* Everything that is not a linear, with the official shapes. */
    srp_param_list *params = NULL;
    st = srp_param_list_create(&params);
    if (st == SRP_OK)
        st = vit_model_params(m, params);
    const size_t D = c->dim, one = 1;
    for (size_t k = 0; st == SRP_OK && k < srp_param_list_count(params); k++) {
        const srp_param_kind kind = srp_param_list_kind(params, k);
        if (kind != SRP_PARAM_EMBEDDING && kind != SRP_PARAM_NORM)
            continue;
        const srp_param *p = &srp_param_list_entries(params)[k];
        const size_t token[3] = {1, 1, D}, pos[3] = {1, p->size / D, D};
        if (strcmp(p->name, "cls_token") == 0)
            add_named(o->list, p->name, NULL, 3, token, p->data);
        else if (strcmp(p->name, "pos_embed") == 0)
            add_named(o->list, p->name, NULL, 3, pos, p->data);
        else
            add_named(o->list, p->name, NULL, 1, &p->size, p->data);
    }
    srp_param_list_destroy(params);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "the model's parameter list");

    for (size_t i = 0; i < nlin; i++) {
        srp_linear *l = vit_linears(m)->linears[i];
        const char *name = vit_linears(m)->names[i];
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        const size_t w_shape[2] = {out, in};
        linear_extras *x = &o->extras[i];
        if (srp_linear_reparam(l) != SRP_REPARAM_SIGMA && strcmp(name, "patch_embed.proj") == 0) {
            /* the plain model's patch embedding is timm's nn.Conv2d */
            const size_t conv[4] = {out, c->channels, c->patch, c->patch};
            add_named(o->list, name, "weight", 4, conv, srp_linear_weight(l));
        } else {
            add_named(o->list, name, "weight", 2, w_shape, srp_linear_weight(l));
        }
        if (srp_linear_bias(l))
            add_named(o->list, name, "bias", 1, &out, srp_linear_bias(l));
        if (srp_linear_reparam(l) != SRP_REPARAM_SIGMA)
            continue;
        x->sigma = srp_linear_sigma(l);
        x->effective_gamma = *srp_linear_gamma(l);
        x->weight_alias = for_import ? malloc(sizeof(float) * in * out) : NULL;
        if (for_import && !x->weight_alias)
            return ex_fail(err, EX_FAILED, "out of memory");
        add_named(o->list, name, "sigma", 1, &one, srp_linear_gamma(l));
        add_named(o->list, name, "effective_spectral_norm", 1, &one, &x->effective_gamma);
        add_named(o->list, name, "spectral_normed_weight.u", 1, &in, srp_linear_u(l));
        add_named(o->list, name, "spectral_normed_weight.spectral_norm", 1, &one, &x->sigma);
        add_named(o->list, name, "spectral_normed_weight.weight", 2, w_shape,
                  for_import ? x->weight_alias : srp_linear_weight(l));
    }
    st = srp_tensor_list_status(o->list);
    return st != SRP_OK ? ex_fail_status(err, st, "the list of the official names") : EX_OK;
}

ex_code vit_export_safetensors(vit_model *m, const char *path, ex_error *err)
{
    official_list o;
    ex_code code = official_tensors(m, 0, &o, err);
    if (code == EX_OK) {
        const char *meta[] = {"format", "pt", "producer", "libsigmareparam vit-lite-train"};
        const srp_status st = srp_safetensors_save(path, srp_tensor_list_refs(o.list),
                                                   srp_tensor_list_count(o.list), meta, 2);
        if (st != SRP_OK)
            code = ex_fail_statusf(err, st, "writing %s", path);
    }
    official_free(&o, vit_linears(m)->count);
    return code;
}

/* Appends ", name" to what (a message being built), or "..." once full. */
static void append_name(char *what, size_t cap, const char *name)
{
    const size_t used = strlen(what);
    if (used + strlen(name) + 8 < cap)
        snprintf(what + used, cap - used, "%s%s", used ? ", " : "", name);
    else if (used + 5 < cap && strcmp(what + used - 3, "...") != 0)
        snprintf(what + used, cap - used, ", ...");
}

/* The names the model has and the file lacks, and the other way round. */
static ex_code check_names(const official_list *o, const srp_safetensors *f, const char *path,
                           ex_error *err)
{
    char missing[512] = "", unknown[512] = "";
    const srp_tensor_ref *refs = srp_tensor_list_refs(o->list);
    const size_t count = srp_tensor_list_count(o->list);
    for (size_t i = 0; i < count; i++) {
        int found = 0;
        for (size_t k = 0; !found && k < srp_safetensors_count(f); k++) {
            srp_tensor_ref info;
            found =
                srp_safetensors_info(f, k, &info) == SRP_OK && strcmp(info.name, refs[i].name) == 0;
        }
        if (!found)
            append_name(missing, sizeof(missing), refs[i].name);
    }
    for (size_t k = 0; k < srp_safetensors_count(f); k++) {
        srp_tensor_ref info;
        int found = 0;
        if (srp_safetensors_info(f, k, &info) != SRP_OK)
            continue;
        for (size_t i = 0; !found && i < count; i++)
            found = strcmp(info.name, refs[i].name) == 0;
        if (!found)
            append_name(unknown, sizeof(unknown), info.name);
    }
    if (missing[0] || unknown[0])
        return ex_fail(err, EX_FAILED, "%s does not hold this model's tensors:%s%s%s%s", path,
                       missing[0] ? "\n  missing: " : "", missing,
                       unknown[0] ? "\n  unknown: " : "", unknown);
    return EX_OK;
}

/* v = W u / |W u|: what the official forward computes from u first. */
static void v_from_u(srp_linear *l)
{
    const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
    const float *w = srp_linear_weight(l), *u = srp_linear_u(l);
    float *v = srp_linear_v(l);
    double norm = 0.0;
    for (size_t o = 0; o < out; o++) {
        double s = 0.0;
        for (size_t i = 0; i < in; i++)
            s += (double)w[o * in + i] * u[i];
        v[o] = (float)s;
        norm += s * s;
    }
    norm = sqrt(norm);
    for (size_t o = 0; norm > 0.0 && o < out; o++)
        v[o] = (float)(v[o] / norm);
}

ex_code vit_import_safetensors(vit_model *m, const char *path, ex_error *err)
{
    official_list o;
    const size_t nlin = vit_linears(m)->count;
    ex_code code = official_tensors(m, 1, &o, err);
    srp_safetensors *f = NULL;
    if (code == EX_OK) {
        const srp_status st = srp_safetensors_open(&f, path);
        if (st != SRP_OK)
            code = ex_fail_statusf(err, st, "reading %s", path);
    }
    if (code == EX_OK)
        code = check_names(&o, f, path, err);
    /* The spectral norms first, into the list's scratch scalars: a bad one
     * is refused before the model changes. */
    const srp_tensor_ref *refs = srp_tensor_list_refs(o.list);
    const size_t count = srp_tensor_list_count(o.list);
    for (size_t k = 0; code == EX_OK && k < count; k++) {
        const char *name = refs[k].name, *tail = ".spectral_normed_weight.spectral_norm";
        const size_t n = strlen(name), t = strlen(tail);
        if (n < t || strcmp(name + n - t, tail) != 0)
            continue;
        const srp_status st = srp_safetensors_read(f, &refs[k], 1);
        const float sigma = *(const float *)refs[k].data;
        if (st != SRP_OK)
            code = ex_fail_statusf(err, st, "reading %s from %s", name, path);
        else if (!(sigma > 0.0f) || !isfinite(sigma))
            code = ex_fail(err, EX_FAILED, "%s: %s must be one positive number", path, name);
    }
    if (code == EX_OK) {
        const srp_status st = srp_safetensors_read(f, refs, count);
        if (st != SRP_OK) {
            code = ex_fail_statusf(err, st, "reading %s", path);
            ex_append(err, "; a tensor's shape or dtype differs from this model's");
        }
    }
    for (size_t i = 0; code == EX_OK && i < nlin; i++) {
        srp_linear *l = vit_linears(m)->linears[i];
        if (srp_linear_reparam(l) != SRP_REPARAM_SIGMA)
            continue;
        v_from_u(l);
        srp_linear_set_sigma(l, o.extras[i].sigma); /* checked above: cannot fail */
    }
    srp_safetensors_close(f);
    official_free(&o, nlin);
    return code;
}
