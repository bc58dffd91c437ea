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
 * and a plain nn.Linear (--no-sn, and a folded export) only weight and
 * bias (the stem's convolutions and the patch embedding then are
 * nn.Conv2d's: weight [out][in][kh][kw]). The linears are the model's own
 * names: stem.conv<l> (an SNConv2d, its kernel flattened [out][in 3 3]),
 * patch_embed.proj, blocks.<i>.attn.qkv or q, k, v (three SNLinears) or
 * qk, v, .proj, .mlp.fc1, .mlp.fc2, head. The rest keep timm's names:
 * cls_token [1][1][D], pos_embed [1][T][D], the LayerNorms'
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
    float *folded;       /* a folded export: every linear's W_hat, one after another */
    float *staged;       /* with a stem: the patch embedding's W [D][K q q] and u [K q q]
                            in PyTorch's column order (permute_patch_columns) */
    srp_linear *embed;   /* whose they are; NULL when the orders agree */
} official_list;

/* What the list is for: the model's SNLinears written or read, or its
 * folded weights (plain nn.Linear / nn.Conv2d) written. */
typedef enum { OFFICIAL_EXPORT, OFFICIAL_IMPORT, OFFICIAL_FOLDED } official_use;

static void add_named(srp_tensor_list *list, const char *prefix, const char *suffix, size_t ndim,
                      const size_t *shape, float *data)
{
    srp_tensor_list_add(list, prefix, suffix, SRP_DTYPE_F32, ndim, shape, data);
}

static void official_free(official_list *o)
{
    free(o->scalars);
    free(o->scratch);
    free(o->folded);
    free(o->staged);
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

/* With a stem, the patch embedding cuts a channels-last patch: its columns
 * (and u) are in the order (y, x, c), PyTorch's convolution's in (c, y, x).
 * to_torch: ours -> PyTorch's; otherwise back. from, to: [rows][C q q]. */
static void permute_patch_columns(const float *from, float *to, size_t rows, size_t C, size_t q,
                                  int to_torch)
{
    const size_t n = C * q * q;
    for (size_t r = 0; r < rows; r++)
        for (size_t ch = 0; ch < C; ch++)
            for (size_t yx = 0; yx < q * q; yx++) {
                const size_t ours = r * n + yx * C + ch, theirs = r * n + ch * q * q + yx;
                if (to_torch)
                    to[theirs] = from[ours];
                else
                    to[ours] = from[theirs];
            }
}

/* The channels of the map the patch embedding cuts: C, or K_L with a stem
 * (the side of a patch of it: vit_embed_patch). */
static size_t map_channels(const vit_config *c)
{
    return c->stem_layers ? c->stem_channels[c->stem_layers - 1] : c->channels;
}

/* The list of the model's tensors under the official names. For import,
 * spectral_normed_weight.weight points at scratch instead of the model;
 * folded, each linear is weight W_hat (srp_linear_folded_weight: the eval
 * forward's) and bias, the patch embedding a plain nn.Conv2d's. */
static ex_code official_tensors(vit_model *m, official_use use, official_list *o, ex_error *err)
{
    const int for_import = use == OFFICIAL_IMPORT;
    memset(o, 0, sizeof(*o));
    const vit_config *c = vit_get_config(m);
    if (c->pool != VIT_POOL_CLS)
        return ex_fail(err, EX_USAGE,
                       "the official model's head reads the class token: safetensors files need "
                       "--pool cls");
    const size_t C = map_channels(c), q = vit_embed_patch(c);
    const ex_linear_names *lin = vit_linears(m);
    size_t largest = 1, total = 1;
    for (size_t i = 0; i < lin->count; i++) {
        const size_t n =
            srp_linear_in_features(lin->linears[i]) * srp_linear_out_features(lin->linears[i]);
        largest = n > largest ? n : largest;
        total += n;
    }
    o->scalars = calloc(lin->count ? lin->count : 1, sizeof(*o->scalars));
    o->scratch = for_import ? malloc(sizeof(float) * largest) : NULL;
    o->folded = use == OFFICIAL_FOLDED ? malloc(sizeof(float) * total) : NULL;
    if (c->stem_layers && C > 1 && q > 1) {
        o->embed = lin->linears[c->stem_layers]; /* after the stem's: patch_embed.proj */
        o->staged = malloc(sizeof(float) * (c->dim + 1) * C * q * q);
    }
    if (!o->scalars || (for_import && !o->scratch) || (use == OFFICIAL_FOLDED && !o->folded) ||
        (o->embed && !o->staged))
        return ex_fail(err, EX_FAILED, "out of memory");
    srp_status st = srp_tensor_list_create(&o->list);
    if (st == SRP_OK)
        st = add_others(m, o->list);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "the list of the official names");

    const size_t one = 1;
    float *folded = o->folded;
    for (size_t i = 0; i < lin->count; i++) {
        srp_linear *l = lin->linears[i];
        const char *name = lin->names[i];
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        const size_t w_shape[2] = {out, in};
        const int plain = use == OFFICIAL_FOLDED || srp_linear_reparam(l) != SRP_REPARAM_SIGMA;
        float *weight = srp_linear_weight(l), *u = plain ? NULL : srp_linear_u(l);
        if (use == OFFICIAL_FOLDED) {
            if ((st = srp_linear_folded_weight(l, folded)) != SRP_OK)
                return ex_fail_statusf(err, st, "the folded weight of %s", name);
            weight = folded;
            folded += in * out;
        }
        if (l == o->embed) { /* staged in PyTorch's order; an import puts it back */
            if (!for_import) {
                permute_patch_columns(weight, o->staged, out, C, q, 1);
                if (u)
                    permute_patch_columns(u, o->staged + out * in, 1, C, q, 1);
            }
            weight = o->staged;
            u = u ? o->staged + out * in : NULL;
        }
        /* a plain model's convolutions are nn.Conv2d's: [out][in][kh][kw] */
        const int stem = i < c->stem_layers, embed = i == c->stem_layers;
        const size_t conv[4] = {out, stem ? in / 9 : C, stem ? 3 : q, stem ? 3 : q};
        if (plain && (stem || embed))
            add_named(o->list, name, "weight", 4, conv, weight);
        else
            add_named(o->list, name, "weight", 2, w_shape, weight);
        if (srp_linear_bias(l))
            add_named(o->list, name, "bias", 1, &out, srp_linear_bias(l));
        if (plain)
            continue;
        o->scalars[i][0] = srp_linear_sigma(l);
        o->scalars[i][1] = *srp_linear_gamma(l);
        add_named(o->list, name, "sigma", 1, &one, srp_linear_gamma(l));
        add_named(o->list, name, "effective_spectral_norm", 1, &one, &o->scalars[i][1]);
        add_named(o->list, name, "spectral_normed_weight.u", 1, &in, u);
        add_named(o->list, name, "spectral_normed_weight.spectral_norm", 1, &one,
                  &o->scalars[i][0]);
        add_named(o->list, name, "spectral_normed_weight.weight", 2, w_shape,
                  for_import ? o->scratch : weight);
    }
    st = srp_tensor_list_status(o->list);
    return st != SRP_OK ? ex_fail_status(err, st, "the list of the official names") : EX_OK;
}

/* The list o as a safetensors file at path. */
static ex_code write_official(official_list *o, const char *path, const char *weights,
                              ex_error *err)
{
    const char *meta[] = {"format", "pt", "producer", "libsigmareparam vit-lite-train",
                          "weights", weights};
    const srp_status st = srp_safetensors_save(path, srp_tensor_list_refs(o->list),
                                               srp_tensor_list_count(o->list), meta, 3);
    return st == SRP_OK ? EX_OK : ex_fail_statusf(err, st, "writing %s", path);
}

ex_code vit_export_folded(vit_model *m, const char *path, const char *weights, ex_error *err)
{
    official_list o;
    ex_code code = official_tensors(m, OFFICIAL_FOLDED, &o, err);
    if (code == EX_OK)
        code = write_official(&o, path, weights, err);
    official_free(&o);
    return code;
}

ex_code vit_export_safetensors(vit_model *m, const char *path, const char *weights,
                               ex_error *err)
{
    official_list o;
    ex_code code = official_tensors(m, OFFICIAL_EXPORT, &o, err);
    if (code == EX_OK)
        code = write_official(&o, path, weights, err);
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
    ex_code code = official_tensors(m, OFFICIAL_IMPORT, &o, err);
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
    if (code == EX_OK && o.embed) { /* the staged patch embedding, back in our order */
        const vit_config *c = vit_get_config(m);
        const size_t in = srp_linear_in_features(o.embed), out = srp_linear_out_features(o.embed);
        permute_patch_columns(o.staged, srp_linear_weight(o.embed), out, map_channels(c),
                              vit_embed_patch(c), 0);
        if (srp_linear_reparam(o.embed) == SRP_REPARAM_SIGMA)
            permute_patch_columns(o.staged + out * in, srp_linear_u(o.embed), 1, map_channels(c),
                                  vit_embed_patch(c), 0);
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
