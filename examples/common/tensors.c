/* Checkpoints of tensor lists, and the models' buffers (tensors.h). */
#include "tensors.h"

#include <stdlib.h>
#include <string.h>

/* The list fill makes, saved to path (save) or loaded from it. */
static ex_code save_or_load(ex_tensor_fill fill, void *ctx, const char *path, int save,
                            ex_error *err)
{
    srp_tensor_list *l = NULL;
    srp_status st = srp_tensor_list_create(&l);
    if (st == SRP_OK) {
        fill(ctx, l);
        st = srp_tensor_list_status(l);
    }
    if (st != SRP_OK) {
        srp_tensor_list_destroy(l);
        return ex_fail_status(err, st, "listing the checkpoint's tensors");
    }
    const srp_tensor_ref *refs = srp_tensor_list_refs(l);
    const size_t count = srp_tensor_list_count(l);
    st = save ? srp_checkpoint_save(path, refs, count) : srp_checkpoint_load(path, refs, count);
    srp_tensor_list_destroy(l);
    if (st == SRP_OK)
        return EX_OK;
    ex_fail_statusf(err, st, "%s the checkpoint %s", save ? "saving" : "loading", path);
    if (save)
        ex_append(err, "%s; the previous checkpoint, if any, is intact",
                  st == SRP_ERR_IO ? " (a full disk?)" : "");
    else if (st == SRP_ERR_SHAPE || st == SRP_ERR_FORMAT || st == SRP_ERR_NOT_FOUND)
        ex_append(err, "; was it written with other model options?");
    return EX_FAILED;
}

ex_code ex_tensors_save(ex_tensor_fill fill, void *ctx, const char *path, ex_error *err)
{
    return save_or_load(fill, ctx, path, 1, err);
}

ex_code ex_tensors_load(ex_tensor_fill fill, void *ctx, const char *path, ex_error *err)
{
    return save_or_load(fill, ctx, path, 0, err);
}

int ex_alloc_floats(float **p, size_t n)
{
    *p = calloc(n, sizeof(float));
    return *p != NULL;
}
