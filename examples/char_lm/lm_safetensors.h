/* The char LM's tensors in safetensors files, under the names PyTorch
 * modules of the same model get when apple/ml-sigma-reparam's
 * convert_to_sn turns every nn.Linear into an SNLinear
 * (tests/reference/sigma_reparam.py's CharLM; docs/FORMAT.md): a model
 * trained here opens in PyTorch, one trained there continues here.
 *
 *   wte.weight [256][D] (nn.Embedding), wpe.weight [context][D] (learned
 *   positions only; fixed sinusoids are not state), blocks.<i>.attn.qkv
 *   (or .qk and .v, or .q, .k and .v), blocks.<i>.attn.proj,
 *   blocks.<i>.mlp.fc1, blocks.<i>.mlp.fc2, lm_head (untied head only):
 *   SNLinears (common/official_file.h), plain nn.Linears in the
 *   architectures without sigmaReparam; the LayerNorms' blocks.<i>.ln1,
 *   blocks.<i>.ln2 and ln_f, .weight and .bias [D]. */
#ifndef LM_SAFETENSORS_H
#define LM_SAFETENSORS_H

#include "common/error.h"
#include "common/official_file.h"
#include "lm_model.h"

/* Writes the model to path, with weights ("live" or "average") under the
 * metadata key "weights": as it is (EX_OFFICIAL_EXPORT), or for inference
 * (EX_OFFICIAL_FOLDED): each linear a plain nn.Linear whose weight is
 * W_hat = gamma / sigma * W of the eval forward (srp_linear_folded_weight),
 * no u, sigma or gamma, the rest as it is. */
ex_code lm_export(lm_model *m, ex_official_use use, const char *path, const char *weights,
                  ex_error *err);

/* Reads the model from path: every tensor the model has must be there with
 * its shape and dtype, and nothing else (the message lists what is missing
 * or unknown); all or nothing. The power iteration's state comes from the
 * file's u and spectral_norm (v recomputed from u). */
ex_code lm_import(lm_model *m, const char *path, ex_error *err);

#endif
