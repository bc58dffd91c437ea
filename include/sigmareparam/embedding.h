/* Token embeddings, and the output head tied to them. Part of
 * <sigmareparam.h>; include that.
 *
 * E: [vocab][dim]. Forward: x[i] = E[token[i]] (a lookup). Backward: the
 * rows of dE that the tokens picked get dx added (a scatter-add). Tied
 * head: logits = h E^T, and its backward adds dlogits^T h to dE.
 *
 * Embeddings are not sigma-reparametrized: the official code applies
 * sigmaReparam to linear layers only (an embedding is a lookup, not a
 * matrix product, and the paper's argument is about attention logits). A
 * head tied to the embedding shares its weights, so it is not
 * reparametrized either. Init: N(0, init_std^2), truncated at +-2 std. */
#ifndef SIGMAREPARAM_EMBEDDING_H
#define SIGMAREPARAM_EMBEDDING_H

#include <stddef.h>
#include <stdint.h>

#include "sigmareparam/core.h"
#include "sigmareparam/lists.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srp_embedding srp_embedding;

/* vocab, dim >= 1; init_std finite and > 0. */
SRP_API srp_status srp_embedding_create(srp_embedding **out, size_t vocab, size_t dim,
                                        float init_std, uint64_t seed);
SRP_API void srp_embedding_destroy(srp_embedding *e);
SRP_API size_t srp_embedding_vocab(const srp_embedding *e);
SRP_API size_t srp_embedding_dim(const srp_embedding *e);
/* The table and its gradient, owned by the layer: [vocab][dim]. */
SRP_API float *srp_embedding_weight(srp_embedding *e);
SRP_API float *srp_embedding_weight_grad(srp_embedding *e);
SRP_API void srp_embedding_zero_grad(srp_embedding *e);
/* Appends the table to list (lists.h) under the name prefix itself, no
 * suffix ("wte", as GPT-2 and the example LM name it), as
 * SRP_PARAM_EMBEDDING (no weight decay). Errors as srp_param_list_add
 * (a NULL or empty prefix is an empty name). */
SRP_API srp_status srp_embedding_params(srp_embedding *e, const char *prefix, srp_param_list *list);
/* The table as a named tensor [vocab][dim] under prefix: the layer's whole
 * state. Errors as srp_tensor_list_add. */
SRP_API srp_status srp_embedding_state_refs(srp_embedding *e, const char *prefix,
                                            srp_tensor_list *list);

/* tokens: [n], each < vocab; x: [n][dim] = the tokens' rows.
 * Errors: NULL, n = 0: SRP_ERR_INVALID_ARG; a token out of range:
 * SRP_ERR_INVALID_ARG, and nothing written; a non-finite row (NaN or Inf
 * in the table): SRP_ERR_NUMERIC, x written. */
SRP_API srp_status srp_embedding_forward(const srp_embedding *e, const uint32_t *tokens, size_t n,
                                         float *x);
/* dE[tokens[i]] += dx[i] for every i (in the order of i: the same bits for
 * any thread count). NaN/Inf in dx: SRP_ERR_NUMERIC, nothing changed. */
SRP_API srp_status srp_embedding_backward(srp_embedding *e, const uint32_t *tokens, const float *dx,
                                          size_t n);
/* The tied head: logits = h E^T. h: [n][dim], logits: [n][vocab].
 * NaN/Inf in the logits (from h, from the table, or an overflow):
 * SRP_ERR_NUMERIC, logits written. The layer never changes here. */
SRP_API srp_status srp_embedding_logits(const srp_embedding *e, const float *h, size_t n,
                                        float *logits);
/* Its backward: dE += dlogits^T h, dh = dlogits E (overwritten; may be
 * NULL). NaN/Inf in dlogits or h: SRP_ERR_NUMERIC, dE unchanged. */
SRP_API srp_status srp_embedding_logits_backward(srp_embedding *e, const float *h,
                                                 const float *dlogits, size_t n, float *dh);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_EMBEDDING_H */
