/* A trainer's checkpoint file (checkpoint_file.h). */
#include "checkpoint_file.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void ex_metadata_init(ex_metadata *m, const char *model, const char *predates)
{
    memset(m, 0, sizeof(*m));
    m->predates = predates;
    ex_metadata_add(m, "model", "%s", model);
}

void ex_metadata_add(ex_metadata *m, const char *key, const char *fmt, ...)
{
    if (m->count == EX_METADATA_MAX)
        return; /* a programming error: the tests' round trips would miss the key */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->values[m->count], sizeof(m->values[0]), fmt, ap);
    va_end(ap);
    m->pairs[2 * m->count] = key;
    m->pairs[2 * m->count + 1] = m->values[m->count];
    m->count++;
}

/* path opened, its metadata compared with meta. */
static ex_code open_checked(srp_checkpoint **out, const char *path, const ex_metadata *meta,
                            ex_error *err)
{
    srp_checkpoint *c = NULL;
    srp_status st = srp_checkpoint_open(&c, path);
    if (st != SRP_OK)
        return ex_fail_statusf(err, st, "loading the checkpoint %s", path);
    if (srp_checkpoint_metadata_count(c) == 0) { /* an older build's */
        if (!meta->predates) {
            *out = c; /* the strict read's shapes alone decide */
            return EX_OK;
        }
        srp_checkpoint_close(c);
        return ex_fail(err, EX_USAGE,
                       "%s records no model configuration: it was written by an older build, "
                       "before the checkpoints recorded their model and before %s, and this "
                       "model would misread it without an error",
                       path, meta->predates);
    }
    st = srp_checkpoint_check_metadata(c, meta->pairs, meta->count);
    if (st != SRP_OK) {
        srp_checkpoint_close(c);
        ex_fail_statusf(err, st, "%s holds another model", path);
        ex_append(err, "; resume or evaluate it with the model options it was written with");
        return EX_USAGE;
    }
    *out = c;
    return EX_OK;
}

/* A run's own tensors, and the blocks' mask states, which only training
 * reads: a model alone loads without them. */
static int is_run_state(const char *name)
{
    const char *masks = ".dropout_rng";
    const size_t n = strlen(name), m = strlen(masks);
    return strncmp(name, "train.", 6) == 0 || strncmp(name, "optim.", 6) == 0 ||
           (n > m && strcmp(name + n - m, masks) == 0);
}

/* model_only: the file's tensors that are neither the model's (list) nor
 * a run's, listed in the message; SRP_OK when there are none. */
static srp_status find_unexpected(const srp_checkpoint *c, const srp_tensor_list *list, char *names,
                                  size_t len)
{
    size_t found = 0, used = 0;
    names[0] = '\0';
    for (size_t i = 0; i < srp_checkpoint_count(c); i++) {
        srp_tensor_ref info;
        if (srp_checkpoint_info(c, i, &info) != SRP_OK || is_run_state(info.name) ||
            srp_tensor_list_find(list, info.name) != SIZE_MAX)
            continue;
        if (used < len) {
            const int n = snprintf(names + used, len - used, "%s%s", found ? ", " : "", info.name);
            used += n > 0 ? (size_t)n : 0;
        }
        found++;
    }
    return found ? SRP_ERR_SHAPE : SRP_OK;
}

/* The list read out of c: strictly, or as a model's (model_only). */
static ex_code read_checked(const srp_checkpoint *c, const char *path, const srp_tensor_list *list,
                            int model_only, ex_error *err)
{
    const srp_tensor_ref *refs = srp_tensor_list_refs(list);
    const size_t count = srp_tensor_list_count(list);
    srp_status st;
    if (model_only) {
        char names[512];
        if ((st = find_unexpected(c, list, names, sizeof(names))) != SRP_OK)
            return ex_fail(err, EX_FAILED,
                           "loading the checkpoint %s: it holds tensors this model does not "
                           "have: %s; was it written with other model options?",
                           path, names);
        st = srp_checkpoint_read(c, refs, count);
    } else {
        st = srp_checkpoint_read_strict(c, refs, count);
    }
    if (st != SRP_OK) {
        ex_fail_statusf(err, st, "loading the checkpoint %s", path);
        if (st == SRP_ERR_SHAPE || st == SRP_ERR_NOT_FOUND)
            ex_append(err, "; was it written with other model options?");
        return EX_FAILED;
    }
    return EX_OK;
}

/* *out = the list fill(ctx, .) makes; a list whose building failed is
 * refused, *out NULL. */
static ex_code make_list(srp_tensor_list **out, ex_tensor_fill fill, void *ctx, ex_error *err)
{
    srp_status st = srp_tensor_list_create(out);
    if (st == SRP_OK) {
        fill(ctx, *out);
        st = srp_tensor_list_status(*out);
    }
    if (st == SRP_OK)
        return EX_OK;
    srp_tensor_list_destroy(*out);
    *out = NULL;
    return ex_fail_status(err, st, "listing the checkpoint's tensors");
}

ex_code ex_checkpoint_save(ex_tensor_fill fill, void *ctx, const char *path,
                           const ex_metadata *meta, ex_error *err)
{
    srp_tensor_list *l = NULL;
    ex_code code = make_list(&l, fill, ctx, err);
    const srp_status st =
        code != EX_OK
            ? SRP_OK
            : srp_checkpoint_save_with_metadata(path, srp_tensor_list_refs(l),
                                                srp_tensor_list_count(l), meta->pairs, meta->count);
    srp_tensor_list_destroy(l);
    if (st != SRP_OK) {
        ex_fail_statusf(err, st, "saving the checkpoint %s", path);
        ex_append(err, "%s; the previous checkpoint, if any, is intact",
                  st == SRP_ERR_IO ? " (a full disk?)" : "");
        return EX_FAILED;
    }
    return code;
}

ex_code ex_checkpoint_load(ex_tensor_fill fill, void *ctx, const char *path, int model_only,
                           const ex_metadata *meta, ex_checkpoint_check check, ex_error *err)
{
    srp_tensor_list *list = NULL;
    srp_checkpoint *c = NULL;
    ex_code code = make_list(&list, fill, ctx, err);
    if (code == EX_OK)
        code = open_checked(&c, path, meta, err);
    if (code == EX_OK && check)
        code = check(ctx, c, path, err);
    if (code == EX_OK)
        code = read_checked(c, path, list, model_only, err);
    srp_checkpoint_close(c);
    srp_tensor_list_destroy(list);
    return code;
}
