/* The ViT-lite's tensors under the names the official PyTorch code gives
 * them (a timm ViT converted by apple/ml-sigma-reparam's convert_to_sn, its
 * linears SNLinear), written to and read from safetensors files: a model
 * trained here opens in PyTorch, one trained there continues here. The
 * table of names is in docs/FORMAT.md. */
#ifndef VIT_OFFICIAL_NAMES_H
#define VIT_OFFICIAL_NAMES_H

#include "common/error.h"
#include "common/official_file.h"
#include "vit_model.h"

/* Writes the model to path, with weights (what they are: "live" or
 * "average") under the metadata key "weights". Any stem and any
 * --qkv-sigma (separate: three SNLinears q, k, v); the head must read the
 * class token (--pool cls): EX_USAGE otherwise. */
ex_code vit_export_safetensors(vit_model *m, const char *path, const char *weights,
                               ex_error *err);

/* Writes the model for inference to path, as a plain PyTorch model holds
 * it: each linear's weight W_hat = gamma / sigma * W of the eval forward
 * (srp_linear_folded_weight) and its bias, no u, sigma or gamma; the patch
 * embedding is nn.Conv2d's [D][C][p][p]; the rest as
 * vit_export_safetensors. The same models as it. */
ex_code vit_export_folded(vit_model *m, const char *path, const char *weights, ex_error *err);

/* Reads the model from path: every tensor the model has must be there with
 * its shape and dtype, and nothing else; the message lists what is missing
 * or unknown. All or nothing. The power-iteration state comes from the
 * file's u and spectral_norm (v is recomputed from u, as the official
 * forward does); effective_spectral_norm, a copy of gamma that lags it by
 * a step, is read and not used. */
ex_code vit_import_safetensors(vit_model *m, const char *path, ex_error *err);

#endif
