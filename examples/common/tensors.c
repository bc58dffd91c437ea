/* Checkpoint tensor lists (tensors.h). */
#include "tensors.h"

#include <stdlib.h>
#include <string.h>

void ex_tensors_init(ex_tensor_list *l) { memset(l, 0, sizeof(*l)); }

void ex_tensors_free(ex_tensor_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->names[i]);
    free(l->names);
    free(l->refs);
    memset(l, 0, sizeof(*l));
}

void ex_tensors_add(ex_tensor_list *l, const char *name, srp_dtype dtype, size_t ndim,
                    const size_t *shape, void *data)
{
    if (l->failed)
        return;
    if (l->count == l->capacity) {
        const size_t cap = l->capacity ? 2 * l->capacity : 64;
        srp_tensor_ref *refs = realloc(l->refs, cap * sizeof(*refs));
        if (refs)
            l->refs = refs;
        char **names = realloc(l->names, cap * sizeof(*names));
        if (names)
            l->names = names;
        if (!refs || !names) {
            l->failed = 1;
            return;
        }
        l->capacity = cap;
    }
    char *copy = malloc(strlen(name) + 1);
    if (!copy || ndim > SRP_CHECKPOINT_MAX_NDIM) {
        free(copy);
        l->failed = 1;
        return;
    }
    strcpy(copy, name);
    srp_tensor_ref *r = &l->refs[l->count];
    memset(r, 0, sizeof(*r));
    r->name = copy;
    r->dtype = dtype;
    r->ndim = ndim;
    for (size_t d = 0; d < ndim; d++)
        r->shape[d] = shape[d];
    r->data = data;
    l->names[l->count++] = copy;
}

void ex_tensors_add_f32(ex_tensor_list *l, const char *name, float *data, size_t n)
{
    ex_tensors_add(l, name, SRP_DTYPE_F32, 1, &n, data);
}

ex_code ex_tensors_save(const ex_tensor_list *l, const char *path, ex_error *err)
{
    if (l->failed)
        return ex_fail(err, EX_FAILED, "out of memory listing the checkpoint's tensors");
    const srp_status st = srp_checkpoint_save(path, l->refs, l->count);
    if (st != SRP_OK) {
        ex_fail_statusf(err, st, "saving the checkpoint %s", path);
        ex_append(err, "%s; the previous checkpoint, if any, is intact",
                  st == SRP_ERR_IO ? " (a full disk?)" : "");
        return EX_FAILED;
    }
    return EX_OK;
}

ex_code ex_tensors_load(const ex_tensor_list *l, size_t count, const char *path, ex_error *err)
{
    if (l->failed)
        return ex_fail(err, EX_FAILED, "out of memory listing the checkpoint's tensors");
    const srp_status st = srp_checkpoint_load(path, l->refs, count ? count : l->count);
    if (st != SRP_OK) {
        ex_fail_statusf(err, st, "loading the checkpoint %s", path);
        if (st == SRP_ERR_SHAPE || st == SRP_ERR_FORMAT || st == SRP_ERR_NOT_FOUND)
            ex_append(err, "; was it written with other model options?");
        return EX_FAILED;
    }
    return EX_OK;
}

int ex_alloc_floats(float **p, size_t n)
{
    *p = calloc(n, sizeof(float));
    return *p != NULL;
}
