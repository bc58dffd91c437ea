/* Checkpoints of tensor lists, and the models' buffers (tensors.h). */
#include "tensors.h"

#include <stdlib.h>
#include <string.h>

/* A list that could not be built completely. */
static ex_code list_failed(const srp_tensor_list *l, ex_error *err)
{
    return ex_fail_status(err, srp_tensor_list_status(l), "listing the checkpoint's tensors");
}

ex_code ex_tensors_save(const srp_tensor_list *l, const char *path, ex_error *err)
{
    if (srp_tensor_list_status(l) != SRP_OK)
        return list_failed(l, err);
    const srp_status st =
        srp_checkpoint_save(path, srp_tensor_list_refs(l), srp_tensor_list_count(l));
    if (st != SRP_OK) {
        ex_fail_statusf(err, st, "saving the checkpoint %s", path);
        ex_append(err, "%s; the previous checkpoint, if any, is intact",
                  st == SRP_ERR_IO ? " (a full disk?)" : "");
        return EX_FAILED;
    }
    return EX_OK;
}

ex_code ex_tensors_load(const srp_tensor_list *l, size_t count, const char *path, ex_error *err)
{
    if (srp_tensor_list_status(l) != SRP_OK)
        return list_failed(l, err);
    const srp_status st = srp_checkpoint_load(path, srp_tensor_list_refs(l),
                                              count ? count : srp_tensor_list_count(l));
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
