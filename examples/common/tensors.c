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

void ex_tensors_add_list(ex_tensor_list *l, const srp_tensor_list *from)
{
    const srp_tensor_ref *refs = srp_tensor_list_refs(from);
    if (srp_tensor_list_status(from) != SRP_OK)
        l->failed = 1;
    for (size_t i = 0; i < srp_tensor_list_count(from); i++)
        ex_tensors_add(l, refs[i].name, refs[i].dtype, refs[i].ndim, refs[i].shape, refs[i].data);
}

ex_code ex_tensors_save(const ex_tensor_list *l, const char *path, const ex_metadata *meta,
                        ex_error *err)
{
    if (l->failed)
        return ex_fail(err, EX_FAILED, "out of memory listing the checkpoint's tensors");
    return ex_checkpoint_write(path, l->refs, l->count, meta, err);
}

ex_code ex_tensors_load(const ex_tensor_list *l, size_t count, const char *path,
                        const ex_metadata *meta, ex_error *err)
{
    if (l->failed)
        return ex_fail(err, EX_FAILED, "out of memory listing the checkpoint's tensors");
    return ex_checkpoint_load_checked(path, l->refs, count ? count : l->count, count != 0, meta,
                                      err);
}

int ex_alloc_floats(float **p, size_t n)
{
    *p = calloc(n, sizeof(float));
    return *p != NULL;
}
