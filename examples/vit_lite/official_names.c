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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The list, and what it points at besides the model: per linear the
 * sigma the file holds and effective_spectral_norm; for import, one
 * scratch matrix that every spectral_normed_weight.weight is read into
 * and dropped. */
typedef struct {
    srp_tensor_list *list;
    float (*scalars)[2]; /* [linears]: sigma, the copy of gamma */
    float *scratch;      /* [the largest linear's out][in] */
} official_list;

static void add_named(srp_tensor_list *list, const char *prefix, const char *suffix, size_t ndim,
                      const size_t *shape, float *data)
{
    srp_tensor_list_add(list, prefix, suffix, SRP_DTYPE_F32, ndim, shape, data);
}

static void official_free(official_list *o)
{
    free(o->scalars);
    free(o->scratch);
    srp_tensor_list_destroy(o->list);
}

/* Everything that is not a linear, with the official shapes. */
static srp_status add_others(vit_model *m, srp_tensor_list *list)
{
    srp_param_list *params = NULL;
    srp_status st = srp_param_list_create(&params);
    if (st == SRP_OK)
        st = vit_model_params(m, params);
    const size_t D = vit_get_config(m)->dim;
    for (size_t k = 0; st == SRP_OK && k < srp_param_list_count(params); k++) {
        const srp_param_kind kind = srp_param_list_kind(params, k);
        const srp_param *p = &srp_param_list_entries(params)[k];
        const size_t token[3] = {1, 1, D}, pos[3] = {1, p->size / D, D};
        if (strcmp(p->name, "cls_token") == 0)
            add_named(list, p->name, NULL, 3, token, p->data);
        else if (strcmp(p->name, "pos_embed") == 0)
            add_named(list, p->name, NULL, 3, pos, p->data);
        else if (kind == SRP_PARAM_NORM)
            add_named(list, p->name, NULL, 1, &p->size, p->data);
    }
    srp_param_list_destroy(params);
    return st;
}

/* The list of the model's tensors under the official names. for_import:
 * spectral_normed_weight.weight points at scratch instead of the model. */
static ex_code official_tensors(vit_model *m, int for_import, official_list *o, ex_error *err)
{
    memset(o, 0, sizeof(*o));
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
    const ex_linear_names *lin = vit_linears(m);
    size_t largest = 1;
    for (size_t i = 0; i < lin->count; i++) {
        const size_t n =
            srp_linear_in_features(lin->linears[i]) * srp_linear_out_features(lin->linears[i]);
        largest = n > largest ? n : largest;
    }
    o->scalars = calloc(lin->count ? lin->count : 1, sizeof(*o->scalars));
    o->scratch = for_import ? malloc(sizeof(float) * largest) : NULL;
    if (!o->scalars || (for_import && !o->scratch))
        return ex_fail(err, EX_FAILED, "out of memory");
    srp_status st = srp_tensor_list_create(&o->list);
    if (st == SRP_OK)
        st = add_others(m, o->list);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "the list of the official names");

    const size_t one = 1;
    for (size_t i = 0; i < lin->count; i++) {
        srp_linear *l = lin->linears[i];
        const char *name = lin->names[i];
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        const size_t w_shape[2] = {out, in}, conv[4] = {out, c->channels, c->patch, c->patch};
        const int sigma = srp_linear_reparam(l) == SRP_REPARAM_SIGMA;
        /* the plain model's patch embedding is timm's nn.Conv2d */
        if (!sigma && strcmp(name, "patch_embed.proj") == 0)
            add_named(o->list, name, "weight", 4, conv, srp_linear_weight(l));
        else
            add_named(o->list, name, "weight", 2, w_shape, srp_linear_weight(l));
        if (srp_linear_bias(l))
            add_named(o->list, name, "bias", 1, &out, srp_linear_bias(l));
        if (!sigma)
            continue;
        o->scalars[i][0] = srp_linear_sigma(l);
        o->scalars[i][1] = *srp_linear_gamma(l);
        add_named(o->list, name, "sigma", 1, &one, srp_linear_gamma(l));
        add_named(o->list, name, "effective_spectral_norm", 1, &one, &o->scalars[i][1]);
        add_named(o->list, name, "spectral_normed_weight.u", 1, &in, srp_linear_u(l));
        add_named(o->list, name, "spectral_normed_weight.spectral_norm", 1, &one,
                  &o->scalars[i][0]);
        add_named(o->list, name, "spectral_normed_weight.weight", 2, w_shape,
                  for_import ? o->scratch : srp_linear_weight(l));
    }
    st = srp_tensor_list_status(o->list);
    return st != SRP_OK ? ex_fail_status(err, st, "the list of the official names") : EX_OK;
}

ex_code vit_export_safetensors(vit_model *m, const char *path, const char *weights,
                               ex_error *err)
{
    official_list o;
    ex_code code = official_tensors(m, 0, &o, err);
    if (code == EX_OK) {
        const char *meta[] = {"format", "pt", "producer", "libsigmareparam vit-lite-train",
                              "weights", weights};
        const srp_status st = srp_safetensors_save(path, srp_tensor_list_refs(o.list),
                                                   srp_tensor_list_count(o.list), meta, 3);
        if (st != SRP_OK)
            code = ex_fail_statusf(err, st, "writing %s", path);
    }
    official_free(&o);
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
    srp_tensor_ref info;
    for (size_t i = 0; i < srp_tensor_list_count(o->list); i++) {
        int found = 0;
        for (size_t k = 0; !found && k < srp_safetensors_count(f); k++)
            found =
                srp_safetensors_info(f, k, &info) == SRP_OK && strcmp(info.name, refs[i].name) == 0;
        if (!found)
            append_name(missing, sizeof(missing), refs[i].name);
    }
    for (size_t k = 0; k < srp_safetensors_count(f); k++)
        if (srp_safetensors_info(f, k, &info) == SRP_OK &&
            srp_tensor_list_find(o->list, info.name) == SIZE_MAX)
            append_name(unknown, sizeof(unknown), info.name);
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
    const ex_linear_names *lin = vit_linears(m);
    ex_code code = official_tensors(m, 1, &o, err);
    srp_safetensors *f = NULL;
    if (code == EX_OK) {
        const srp_status st = srp_safetensors_open(&f, path);
        if (st != SRP_OK)
            code = ex_fail_statusf(err, st, "reading %s", path);
    }
    if (code == EX_OK)
        code = check_names(&o, f, path, err);
    /* The spectral norms first, into the list's scalars: a bad one is
     * refused before the model changes. */
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
    for (size_t i = 0; code == EX_OK && i < lin->count; i++) {
        srp_linear *l = lin->linears[i];
        if (srp_linear_reparam(l) != SRP_REPARAM_SIGMA)
            continue;
        v_from_u(l);
        srp_linear_set_sigma(l, o.scalars[i][0]); /* checked above: cannot fail */
    }
    srp_safetensors_close(f);
    official_free(&o);
    return code;
}
