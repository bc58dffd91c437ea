/* Checkpoints of tensor lists, and the models' buffers (tensors.h). */
#include "tensors.h"

#include <stdlib.h>
#include <string.h>

/* The list fill makes into *out; a message when it cannot be built. */
static ex_code make_list(ex_tensor_fill fill, void *ctx, srp_tensor_list **out, ex_error *err)
{
    srp_status st = srp_tensor_list_create(out);
    if (st == SRP_OK) {
        fill(ctx, *out);
        st = srp_tensor_list_status(*out);
    }
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "listing the checkpoint's tensors");
}

ex_code ex_tensors_save(ex_tensor_fill fill, void *ctx, const char *path, ex_error *err)
{
    srp_tensor_list *l = NULL;
    ex_code code = make_list(fill, ctx, &l, err);
    const srp_status st = code != EX_OK ? SRP_OK
                                        : srp_checkpoint_save(path, srp_tensor_list_refs(l),
                                                              srp_tensor_list_count(l));
    srp_tensor_list_destroy(l);
    if (st != SRP_OK) {
        ex_fail_statusf(err, st, "saving the checkpoint %s", path);
        ex_append(err, "%s; the previous checkpoint, if any, is intact",
                  st == SRP_ERR_IO ? " (a full disk?)" : "");
        code = EX_FAILED;
    }
    return code;
}

ex_code ex_tensors_load(ex_tensor_fill fill, void *ctx, const char *path, ex_error *err)
{
    srp_tensor_list *l = NULL;
    ex_code code = make_list(fill, ctx, &l, err);
    const srp_status st = code != EX_OK ? SRP_OK
                                        : srp_checkpoint_load(path, srp_tensor_list_refs(l),
                                                              srp_tensor_list_count(l));
    srp_tensor_list_destroy(l);
    if (st != SRP_OK) {
        ex_fail_statusf(err, st, "loading the checkpoint %s", path);
        if (st == SRP_ERR_SHAPE || st == SRP_ERR_FORMAT || st == SRP_ERR_NOT_FOUND)
            ex_append(err, "; was it written with other model options?");
        code = EX_FAILED;
    }
    return code;
}

int ex_alloc_floats(float **p, size_t n)
{
    *p = calloc(n, sizeof(float));
    return *p != NULL;
}
