/* Linears under the official names, in safetensors files (official_file.h). */
#include "official_file.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ex_code ex_official_init(ex_official *o, ex_official_use use, const ex_linear_names *linears,
                         ex_error *err)
{
    memset(o, 0, sizeof(*o));
    o->use = use;
    o->linears = linears;
    size_t largest = 1, total = 1;
    for (size_t i = 0; i < linears->count; i++) {
        const size_t n = srp_linear_in_features(linears->linears[i]) *
                         srp_linear_out_features(linears->linears[i]);
        largest = n > largest ? n : largest;
        total += n;
    }
    o->scalars = calloc(linears->count ? linears->count : 1, sizeof(*o->scalars));
    o->scratch = use == EX_OFFICIAL_IMPORT ? malloc(sizeof(float) * largest) : NULL;
    o->folded = use == EX_OFFICIAL_FOLDED ? malloc(sizeof(float) * total) : NULL;
    if (!o->scalars || (use == EX_OFFICIAL_IMPORT && !o->scratch) ||
        (use == EX_OFFICIAL_FOLDED && !o->folded))
        return ex_fail(err, EX_FAILED, "out of memory");
    const srp_status st = srp_tensor_list_create(&o->list);
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "the list of the official names");
}

void ex_official_free(ex_official *o)
{
    free(o->scalars);
    free(o->scratch);
    free(o->folded);
    srp_tensor_list_destroy(o->list);
    memset(o, 0, sizeof(*o));
}

void ex_official_add(ex_official *o, const char *prefix, const char *suffix, size_t ndim,
                     const size_t *shape, float *data)
{
    srp_tensor_list_add(o->list, prefix, suffix, SRP_DTYPE_F32, ndim, shape, data);
}

srp_status ex_official_add_params(ex_official *o, srp_param_list *params,
                                  const ex_official_param *named, size_t count)
{
    for (size_t k = 0; k < srp_param_list_count(params); k++) {
        const srp_param *p = &srp_param_list_entries(params)[k];
        if (srp_param_list_kind(params, k) == SRP_PARAM_NORM)
            ex_official_add(o, p->name, NULL, 1, &p->size, p->data);
        for (size_t i = 0; i < count; i++)
            if (strcmp(p->name, named[i].name) == 0)
                ex_official_add(o, named[i].file_name, NULL, named[i].ndim, named[i].shape,
                                p->data);
    }
    return srp_tensor_list_status(o->list);
}

int ex_official_plain(const ex_official *o, size_t i)
{
    return o->use == EX_OFFICIAL_FOLDED ||
           srp_linear_reparam(o->linears->linears[i]) != SRP_REPARAM_SIGMA;
}

srp_status ex_official_weight(ex_official *o, size_t i, float **weight)
{
    srp_linear *l = o->linears->linears[i];
    if (o->use != EX_OFFICIAL_FOLDED) {
        *weight = srp_linear_weight(l);
        return SRP_OK;
    }
    size_t at = 0; /* linear i's place among the folded weights */
    for (size_t k = 0; k < i; k++)
        at += srp_linear_in_features(o->linears->linears[k]) *
              srp_linear_out_features(o->linears->linears[k]);
    *weight = o->folded + at;
    return srp_linear_folded_weight(l, *weight);
}

void ex_official_add_linear(ex_official *o, size_t i, float *weight, size_t ndim,
                            const size_t *shape, float *u)
{
    srp_linear *l = o->linears->linears[i];
    const char *name = o->linears->names[i];
    const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l), one = 1;
    const size_t w_shape[2] = {out, in};
    ex_official_add(o, name, "weight", shape ? ndim : 2, shape ? shape : w_shape, weight);
    if (srp_linear_bias(l))
        ex_official_add(o, name, "bias", 1, &out, srp_linear_bias(l));
    if (ex_official_plain(o, i))
        return;
    o->scalars[i][0] = srp_linear_sigma(l);
    o->scalars[i][1] = *srp_linear_gamma(l);
    ex_official_add(o, name, "sigma", 1, &one, srp_linear_gamma(l));
    ex_official_add(o, name, "effective_spectral_norm", 1, &one, &o->scalars[i][1]);
    ex_official_add(o, name, "spectral_normed_weight.u", 1, &in, u);
    ex_official_add(o, name, "spectral_normed_weight.spectral_norm", 1, &one, &o->scalars[i][0]);
    ex_official_add(o, name, "spectral_normed_weight.weight", 2, w_shape,
                    o->use == EX_OFFICIAL_IMPORT ? o->scratch : weight);
}

ex_code ex_official_add_linears(ex_official *o, ex_error *err)
{
    for (size_t i = 0; i < o->linears->count; i++) {
        float *weight;
        const srp_status st = ex_official_weight(o, i, &weight);
        if (st != SRP_OK)
            return ex_fail_statusf(err, st, "the folded weight of %s", o->linears->names[i]);
        ex_official_add_linear(o, i, weight, 0, NULL, srp_linear_u(o->linears->linears[i]));
    }
    const srp_status st = srp_tensor_list_status(o->list);
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "the list of the official names");
}

ex_code ex_official_write(ex_official *o, const char *path, const char *producer,
                          const char *weights, ex_error *err)
{
    const char *meta[] = {"format", "pt", "producer", producer, "weights", weights};
    const srp_status st = srp_safetensors_save(path, srp_tensor_list_refs(o->list),
                                               srp_tensor_list_count(o->list), meta, 3);
    return st == SRP_OK ? EX_OK : ex_fail_statusf(err, st, "writing %s", path);
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
static ex_code check_names(const ex_official *o, const srp_safetensors *f, const char *path,
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

/* The spectral norms, into o's scalars: a bad one is refused before the
 * model changes. */
static ex_code read_spectral_norms(ex_official *o, srp_safetensors *f, const char *path,
                                   ex_error *err)
{
    const srp_tensor_ref *refs = srp_tensor_list_refs(o->list);
    const char *tail = ".spectral_normed_weight.spectral_norm";
    const size_t t = strlen(tail);
    for (size_t k = 0; k < srp_tensor_list_count(o->list); k++) {
        const char *name = refs[k].name;
        const size_t n = strlen(name);
        if (n < t || strcmp(name + n - t, tail) != 0)
            continue;
        const srp_status st = srp_safetensors_read(f, &refs[k], 1);
        const float sigma = *(const float *)refs[k].data;
        if (st != SRP_OK)
            return ex_fail_statusf(err, st, "reading %s from %s", name, path);
        if (!(sigma > 0.0f) || !isfinite(sigma))
            return ex_fail(err, EX_FAILED, "%s: %s must be one positive number", path, name);
    }
    return EX_OK;
}

ex_code ex_official_read(ex_official *o, const char *path, ex_error *err)
{
    srp_safetensors *f = NULL;
    srp_status st = srp_safetensors_open(&f, path);
    ex_code code = st == SRP_OK ? EX_OK : ex_fail_statusf(err, st, "reading %s", path);
    if (code == EX_OK)
        code = check_names(o, f, path, err);
    if (code == EX_OK)
        code = read_spectral_norms(o, f, path, err);
    if (code == EX_OK && (st = srp_safetensors_read(f, srp_tensor_list_refs(o->list),
                                                    srp_tensor_list_count(o->list))) != SRP_OK) {
        code = ex_fail_statusf(err, st, "reading %s", path);
        ex_append(err, "; a tensor's shape or dtype differs from this model's");
    }
    srp_safetensors_close(f);
    return code;
}

/* v = W u / |W u|: what the official forward computes from u first. */
static void v_from_u(srp_linear *l)
{
    const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
    const float *w = srp_linear_weight(l), *u = srp_linear_u(l);
    float *v = srp_linear_v(l);
    double norm = 0.0;
    for (size_t r = 0; r < out; r++) {
        double s = 0.0;
        for (size_t i = 0; i < in; i++)
            s += (double)w[r * in + i] * u[i];
        v[r] = (float)s;
        norm += s * s;
    }
    norm = sqrt(norm);
    for (size_t r = 0; norm > 0.0 && r < out; r++)
        v[r] = (float)(v[r] / norm);
}

void ex_official_commit(ex_official *o)
{
    for (size_t i = 0; i < o->linears->count; i++) {
        srp_linear *l = o->linears->linears[i];
        if (srp_linear_reparam(l) != SRP_REPARAM_SIGMA)
            continue;
        v_from_u(l);
        srp_linear_set_sigma(l, o->scalars[i][0]); /* checked by the read: cannot fail */
    }
}

ex_code ex_official_import(ex_official *o, const char *path, ex_error *err)
{
    const ex_code code = ex_official_read(o, path, err);
    if (code == EX_OK)
        ex_official_commit(o);
    return code;
}

ex_code ex_official_export_run(ex_trainer *t, ex_error *err)
{
    const ex_official_hooks *h = t->hooks->files;
    const char *path = t->opt->export_path, *folded = t->opt->export_folded;
    if ((!path && !folded) || !ex_dist_is_root(&t->dist))
        return EX_OK;
    const int average = srp_weight_average_updates(t->average) > 0;
    const char *weights = average ? "average" : "live";
    const char *said = average ? "the weight average, its sigma recomputed" : "the live weights";
    ex_code code = ex_trainer_swap_in_average(t, err);
    if (code == EX_OK && path &&
        (code = h->write(t, EX_OFFICIAL_EXPORT, path, weights, err)) == EX_OK)
        printf("wrote %s (%s)\n", path, said);
    if (code == EX_OK && folded &&
        (code = h->write(t, EX_OFFICIAL_FOLDED, folded, weights, err)) == EX_OK)
        printf("wrote %s (%s, folded)\n", folded, said);
    ex_trainer_swap_out_average(t);
    return code;
}

/* --eval-only: the model, scored, its logits, its export. */
static ex_code eval_only(ex_trainer *t, ex_error *err)
{
    const ex_official_hooks *h = t->hooks->files;
    const char *path = t->opt->resume_path;
    int average = 0;
    ex_code code = EX_OK;
    if (path)
        code = ex_dist_agree(&t->dist, ex_trainer_load(t, path, 1, err), err);
    if (code == EX_OK && path)
        code = ex_dist_agree(&t->dist, ex_trainer_load_average(t, path, &average, err), err);
    if (code == EX_OK)
        code = h->score(t, average, err);
    if (code == EX_OK && t->opt->logits_path && ex_dist_is_root(&t->dist))
        code = h->write_logits(t, err);
    return code == EX_OK ? ex_official_export_run(t, err) : code;
}

ex_code ex_official_before_training(ex_trainer *t, int *done, ex_error *err)
{
    const ex_official_hooks *h = t->hooks->files;
    const char *from = t->opt->init_from;
    if (from) {
        const ex_code code = ex_dist_agree(&t->dist, h->read(t, from, err), err);
        if (code != EX_OK)
            return code;
        printf("model from %s\n", from);
    }
    *done = t->opt->eval_only;
    return *done ? eval_only(t, err) : EX_OK;
}
