/* Checkpoints of tensor lists, and the models' buffers (tensors.h). */
#include "tensors.h"

#include <stdlib.h>
#include <string.h>

ex_code ex_tensors_make(srp_tensor_list **out, ex_tensor_fill fill, void *ctx, ex_error *err)
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

ex_code ex_tensors_save(ex_tensor_fill fill, void *ctx, const char *path, const ex_metadata *meta,
                        ex_error *err)
{
    srp_tensor_list *l = NULL;
    ex_code code = ex_tensors_make(&l, fill, ctx, err);
    if (code == EX_OK)
        code = ex_checkpoint_write(path, srp_tensor_list_refs(l), srp_tensor_list_count(l), meta,
                                   err);
    srp_tensor_list_destroy(l);
    return code;
}

ex_code ex_tensors_load(ex_tensor_fill fill, void *ctx, const char *path, int model_only,
                        const ex_metadata *meta, ex_error *err)
{
    srp_tensor_list *l = NULL;
    ex_code code = ex_tensors_make(&l, fill, ctx, err);
    if (code == EX_OK)
        code = ex_checkpoint_load_checked(path, srp_tensor_list_refs(l), srp_tensor_list_count(l),
                                          model_only, meta, err);
    srp_tensor_list_destroy(l);
    return code;
}

int ex_alloc_floats(float **p, size_t n)
{
    *p = calloc(n, sizeof(float));
    return *p != NULL;
}
