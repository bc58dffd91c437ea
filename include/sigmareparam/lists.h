/* A model's lists: its trainable parameters (for the optimizer, clipping,
 * the weight average) and its whole state as named tensors (for checkpoints
 * and safetensors files). Part of <sigmareparam.h>; include that.
 *
 * Both grow as entries are appended and own the names they are given, so
 * that a model builds them in one pass over its layers, each layer adding
 * its own entries under a prefix:
 *
 *     srp_param_list *params;   srp_param_list_create(&params);
 *     srp_linear_params(fc1, "blocks.0.mlp.fc1", params);   ...
 *     srp_optim_create(&opt, srp_param_list_entries(params),
 *                      srp_param_list_count(params), &oc);
 *
 *     srp_tensor_list *state;   srp_tensor_list_create(&state);
 *     srp_linear_state_refs(fc1, "blocks.0.mlp.fc1", state);   ...
 *     srp_checkpoint_save(path, srp_tensor_list_refs(state),
 *                         srp_tensor_list_count(state));
 *
 * An append that fails leaves the list as it was and is remembered:
 * srp_*_list_status returns the first failure, so a model may append
 * everything and check once. Names are "prefix.suffix" (either may be NULL
 * or empty, and then no dot), at most SRP_TENSOR_MAX_NAME bytes, unique in
 * their list. The data the entries point to stays the caller's (a layer's). */
#ifndef SIGMAREPARAM_LISTS_H
#define SIGMAREPARAM_LISTS_H

#include <stddef.h>

#include "sigmareparam/core.h"
#include "sigmareparam/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- parameters ---- */

typedef struct srp_param_list srp_param_list;

SRP_API srp_status srp_param_list_create(srp_param_list **out);
SRP_API void srp_param_list_destroy(srp_param_list *l);
/* Appends one entry named "prefix.suffix" with srp_param_make's defaults for
 * its kind. Errors: NULL list, data or grad, size 0, an empty, too long or
 * duplicate name: SRP_ERR_INVALID_ARG; SRP_ERR_NOMEM. Either way the list
 * is as it was, and a failure is remembered (srp_param_list_status). */
SRP_API srp_status srp_param_list_add(srp_param_list *l, const char *prefix, const char *suffix,
                                      float *data, float *grad, size_t size, srp_param_kind kind);
SRP_API size_t srp_param_list_count(const srp_param_list *l);
/* The entries, contiguous, in the order they were added: what
 * srp_optim_create and srp_clip_grad_norm take. Writable, so that a trainer
 * can set an entry's lr_mult, weight_decay or lars. Valid until the next
 * append. NULL when empty. */
SRP_API srp_param *srp_param_list_entries(srp_param_list *l);
/* The kind entry i was added with (SRP_PARAM_WEIGHT when out of range). */
SRP_API srp_param_kind srp_param_list_kind(const srp_param_list *l, size_t i);
/* The index of the entry named name, or SIZE_MAX. */
SRP_API size_t srp_param_list_find(const srp_param_list *l, const char *name);
/* SRP_OK, or the first failure of an append (NULL: SRP_ERR_INVALID_ARG). */
SRP_API srp_status srp_param_list_status(const srp_param_list *l);

/* ---- state tensors ---- */

typedef struct srp_tensor_list srp_tensor_list;

SRP_API srp_status srp_tensor_list_create(srp_tensor_list **out);
SRP_API void srp_tensor_list_destroy(srp_tensor_list *l);
/* Appends a tensor named "prefix.suffix" of ndim dimensions (0: a scalar,
 * and shape may be NULL). Errors: NULL list or data, ndim above
 * SRP_TENSOR_MAX_NDIM, an unknown dtype, an empty, too long or duplicate
 * name: SRP_ERR_INVALID_ARG; SRP_ERR_NOMEM. As for srp_param_list_add, the
 * list is as it was and the failure is remembered. */
SRP_API srp_status srp_tensor_list_add(srp_tensor_list *l, const char *prefix, const char *suffix,
                                       srp_dtype dtype, size_t ndim, const size_t *shape,
                                       void *data);
/* A float vector of n elements. */
SRP_API srp_status srp_tensor_list_add_f32(srp_tensor_list *l, const char *prefix,
                                           const char *suffix, float *data, size_t n);
/* Every entry of params as a float vector under its name. */
SRP_API srp_status srp_tensor_list_add_params(srp_tensor_list *l, srp_param_list *params);
SRP_API size_t srp_tensor_list_count(const srp_tensor_list *l);
/* The refs, contiguous, in the order they were added: what
 * srp_checkpoint_save/_load and srp_safetensors_save/_load take. Valid
 * until the next append. NULL when empty. */
SRP_API const srp_tensor_ref *srp_tensor_list_refs(const srp_tensor_list *l);
/* The index of the tensor named name, or SIZE_MAX. */
SRP_API size_t srp_tensor_list_find(const srp_tensor_list *l, const char *name);
/* SRP_OK, or the first failure of an append (NULL: SRP_ERR_INVALID_ARG). */
SRP_API srp_status srp_tensor_list_status(const srp_tensor_list *l);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_LISTS_H */
