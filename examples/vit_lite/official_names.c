/* The ViT-lite under the official names (official_names.h, docs/FORMAT.md):
 * the linears as common/official_file.h writes and reads them, under the
 * model's own names: stem.conv<l> (an SNConv2d, its kernel flattened
 * [out][in 3 3]), patch_embed.proj, blocks.<i>.attn.qkv or q, k, v (three
 * SNLinears) or qk, v, .proj, .mlp.fc1, .mlp.fc2, head; plain (--no-sn,
 * and a folded export), the stem's convolutions and the patch embedding
 * are nn.Conv2d's: weight [out][in][kh][kw]. The rest keep timm's names:
 * cls_token [1][1][D], pos_embed [1][T][D], the LayerNorms'
 * blocks.<i>.norm1/norm2 and norm, weight and bias [D]. */
#include "official_names.h"

#include <stdlib.h>
#include <string.h>

/* The list, and with a stem the patch embedding's W and u staged in
 * PyTorch's column order. */
typedef struct {
    ex_official common;
    float *staged;     /* the patch embedding's W [D][K q q] and u [K q q]
                          in PyTorch's column order (permute_patch_columns) */
    srp_linear *embed; /* whose they are; NULL when the orders agree */
} official_list;

static void official_free(official_list *o)
{
    free(o->staged);
    ex_official_free(&o->common);
}

/* Everything that is not a linear, with the official shapes. */
static srp_status add_others(vit_model *m, ex_official *o)
{
    srp_param_list *params = NULL;
    srp_status st = srp_param_list_create(&params);
    if (st == SRP_OK)
        st = vit_model_params(m, params);
    const size_t D = vit_get_config(m)->dim;
    const ex_official_param named[] = {{"cls_token", "cls_token", 3, {1, 1, D}},
                                       {"pos_embed", "pos_embed", 3, {1, vit_tokens(m), D}}};
    if (st == SRP_OK)
        st = ex_official_add_params(o, params, named, 2);
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
static ex_code official_tensors(vit_model *m, ex_official_use use, official_list *o, ex_error *err)
{
    memset(o, 0, sizeof(*o));
    const vit_config *c = vit_get_config(m);
    const ex_linear_names *lin = vit_linears(m);
    ex_code code = ex_official_init(&o->common, use, lin, err);
    if (code != EX_OK)
        return code;
    if (c->pool != VIT_POOL_CLS)
        return ex_fail(err, EX_USAGE,
                       "the official model's head reads the class token: safetensors files need "
                       "--pool cls");
    const size_t C = map_channels(c), q = vit_embed_patch(c);
    if (c->stem_layers && C > 1 && q > 1) {
        o->embed = lin->linears[c->stem_layers]; /* after the stem's: patch_embed.proj */
        if (!(o->staged = malloc(sizeof(float) * (c->dim + 1) * C * q * q)))
            return ex_fail(err, EX_FAILED, "out of memory");
    }
    srp_status st = add_others(m, &o->common);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "the list of the official names");

    for (size_t i = 0; i < lin->count; i++) {
        srp_linear *l = lin->linears[i];
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        const int plain = ex_official_plain(&o->common, i);
        float *weight, *u = plain ? NULL : srp_linear_u(l);
        if ((st = ex_official_weight(&o->common, i, &weight)) != SRP_OK)
            return ex_fail_statusf(err, st, "the folded weight of %s", lin->names[i]);
        if (l == o->embed) { /* staged in PyTorch's order; an import puts it back */
            if (use != EX_OFFICIAL_IMPORT) {
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
        ex_official_add_linear(&o->common, i, weight, plain && (stem || embed) ? 4 : 0,
                               plain && (stem || embed) ? conv : NULL, u);
    }
    st = srp_tensor_list_status(o->common.list);
    return st != SRP_OK ? ex_fail_status(err, st, "the list of the official names") : EX_OK;
}

/* A file of the model for use (export or folded) at path. */
static ex_code write_model(vit_model *m, ex_official_use use, const char *path, const char *weights,
                           ex_error *err)
{
    official_list o;
    ex_code code = official_tensors(m, use, &o, err);
    if (code == EX_OK)
        code = ex_official_write(&o.common, path, "libsigmareparam vit-lite-train", weights, err);
    official_free(&o);
    return code;
}

ex_code vit_export_folded(vit_model *m, const char *path, const char *weights, ex_error *err)
{
    return write_model(m, EX_OFFICIAL_FOLDED, path, weights, err);
}

ex_code vit_export_safetensors(vit_model *m, const char *path, const char *weights, ex_error *err)
{
    return write_model(m, EX_OFFICIAL_EXPORT, path, weights, err);
}

ex_code vit_import_safetensors(vit_model *m, const char *path, ex_error *err)
{
    official_list o;
    ex_code code = official_tensors(m, EX_OFFICIAL_IMPORT, &o, err);
    if (code == EX_OK)
        code = ex_official_read(&o.common, path, err);
    if (code == EX_OK && o.embed) { /* the staged patch embedding, back in our order */
        const vit_config *c = vit_get_config(m);
        const size_t in = srp_linear_in_features(o.embed), out = srp_linear_out_features(o.embed);
        permute_patch_columns(o.staged, srp_linear_weight(o.embed), out, map_channels(c),
                              vit_embed_patch(c), 0);
        if (srp_linear_reparam(o.embed) == SRP_REPARAM_SIGMA)
            permute_patch_columns(o.staged + out * in, srp_linear_u(o.embed), 1, map_channels(c),
                                  vit_embed_patch(c), 0);
    }
    if (code == EX_OK)
        ex_official_commit(&o.common);
    official_free(&o);
    return code;
}
