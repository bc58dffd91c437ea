/* The char LM under PyTorch's names (lm_safetensors.h). */
#include "lm_safetensors.h"

/* The model's tensors under the names, for use. */
static ex_code lm_tensors(lm_model *m, ex_official_use use, ex_official *o, ex_error *err)
{
    ex_code code = ex_official_init(o, use, lm_linears(m), err);
    if (code != EX_OK)
        return code;
    const lm_config *c = lm_get_config(m);
    const ex_official_param named[] = {{"wte", "wte.weight", 2, {LM_VOCAB, c->dim}},
                                       {"wpe", "wpe.weight", 2, {c->context, c->dim}}};
    srp_param_list *params = NULL;
    srp_status st = srp_param_list_create(&params);
    if (st == SRP_OK)
        st = lm_model_params(m, params);
    if (st == SRP_OK)
        st = ex_official_add_params(o, params, named, 2);
    srp_param_list_destroy(params);
    return st == SRP_OK ? ex_official_add_linears(o, err)
                        : ex_fail_status(err, st, "the list of the model's tensors");
}

ex_code lm_export(lm_model *m, ex_official_use use, const char *path, const char *weights,
                  ex_error *err)
{
    ex_official o;
    ex_code code = lm_tensors(m, use, &o, err);
    if (code == EX_OK)
        code = ex_official_write(&o, path, "libsigmareparam char-lm-train", weights, err);
    ex_official_free(&o);
    return code;
}

ex_code lm_import(lm_model *m, const char *path, ex_error *err)
{
    ex_official o;
    ex_code code = lm_tensors(m, EX_OFFICIAL_IMPORT, &o, err);
    if (code == EX_OK)
        code = ex_official_import(&o, path, err);
    ex_official_free(&o);
    return code;
}
