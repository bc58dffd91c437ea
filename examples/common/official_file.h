/* A model's linears under the names the official PyTorch code gives them
 * (apple/ml-sigma-reparam's SNLinear, or a plain nn.Linear), in a
 * safetensors file, both ways: what every trainer's --export,
 * --export-folded and --init-from share. A trainer lists its other
 * tensors (embeddings, LayerNorms) and its linears with their shapes; the
 * file is written, or read all or nothing, here. docs/FORMAT.md has the
 * names. An SNLinear L:
 *
 *     L.weight                                [out][in]  W
 *     L.bias                                  [out]
 *     L.sigma                                 [1]        gamma (the learned scale)
 *     L.effective_spectral_norm               [1]        a copy of gamma (a buffer)
 *     L.spectral_normed_weight.u              [in]       the power iteration's u
 *     L.spectral_normed_weight.spectral_norm  [1]        sigma of the last training forward
 *     L.spectral_normed_weight.weight         [out][in]  W again (the same parameter)
 *
 * a plain linear (a model without sigmaReparam, and every linear of a
 * folded export) only weight and bias. */
#ifndef EX_OFFICIAL_FILE_H
#define EX_OFFICIAL_FILE_H

#include <stddef.h>

#include <sigmareparam.h>

#include "error.h"
#include "layers.h"
#include "trainer.h"

/* What the list is for: the model's linears written or read, or their
 * folded weights (plain nn.Linear: W_hat = gamma / sigma * W) written. */
typedef enum { EX_OFFICIAL_EXPORT, EX_OFFICIAL_IMPORT, EX_OFFICIAL_FOLDED } ex_official_use;

typedef struct {
    ex_official_use use;
    const ex_linear_names *linears;
    srp_tensor_list *list;
    float (*scalars)[2]; /* [linears]: sigma, the copy of gamma */
    float *scratch;      /* import: [the largest linear's out][in], where every
                            spectral_normed_weight.weight is read and dropped */
    float *folded;       /* folded: every linear's W_hat, one after another */
} ex_official;

/* An empty list for the model's linears (not owned); free it either way. */
ex_code ex_official_init(ex_official *o, ex_official_use use, const ex_linear_names *linears,
                         ex_error *err);
void ex_official_free(ex_official *o);
/* Appends "prefix.suffix" (suffix NULL: prefix) of shape [ndim] at data. */
void ex_official_add(ex_official *o, const char *prefix, const char *suffix, size_t ndim,
                     const size_t *shape, float *data);
/* The model's parameters (params, of srp_*_params) that are not its
 * linears': those that named lists, each under its file name with its
 * shape (the same elements), and every LayerNorm's (SRP_PARAM_NORM)
 * weight and bias [D] under its own name; the rest are the linears'. */
typedef struct {
    const char *name, *file_name;
    size_t ndim, shape[3];
} ex_official_param;
srp_status ex_official_add_params(ex_official *o, srp_param_list *params,
                                  const ex_official_param *named, size_t count);
/* 1 when linear i goes as a plain nn.Linear: folded, or not sigmaReparam. */
int ex_official_plain(const ex_official *o, size_t i);
/* Linear i's weight as written: W, or folded W_hat (srp_linear_folded_weight,
 * the eval forward's), computed into o's buffer. */
srp_status ex_official_weight(ex_official *o, size_t i, float **weight);
/* Linear i under its name: weight at weight (shape [ndim]; NULL: [out][in]),
 * bias, and as an SNLinear (not plain) gamma, u at u, sigma and the rest. */
void ex_official_add_linear(ex_official *o, size_t i, float *weight, size_t ndim,
                            const size_t *shape, float *u);
/* Every linear as ex_official_add_linear writes it with its own W and u. */
ex_code ex_official_add_linears(ex_official *o, ex_error *err);
/* The list at path, with metadata "format" "pt", "producer" producer and
 * "weights" weights ("live" or "average"). */
ex_code ex_official_write(ex_official *o, const char *path, const char *producer,
                          const char *weights, ex_error *err);
/* Import, into the model: every tensor the list names must be in the file
 * with its shape and dtype, and nothing else (the message lists what is
 * missing or unknown), and every spectral_norm positive and finite; only
 * then is anything copied. ex_official_commit then recomputes each
 * SNLinear's v from u (as the official forward does first) and sets its
 * sigma to the file's. */
ex_code ex_official_read(ex_official *o, const char *path, ex_error *err);
void ex_official_commit(ex_official *o);

/* The whole of an import of a model whose tensors the list holds as they
 * are (no permutation): read, then commit. */
ex_code ex_official_import(ex_official *o, const char *path, ex_error *err);

/* What a trainer's model files need of it (the "model-files" options,
 * options.h; ex_trainer_hooks.files): read: --init-from, the model from path (its import);
 * write: --export and --export-folded (use EX_OFFICIAL_EXPORT or
 * EX_OFFICIAL_FOLDED), with weights "average" or "live"; score:
 * --eval-only, the trainer's final evaluation of the model as it stands
 * and its line (average: the weight average is the one scored);
 * write_logits: --logits. */
struct ex_official_hooks {
    ex_code (*read)(ex_trainer *t, const char *path, ex_error *err);
    ex_code (*write)(ex_trainer *t, ex_official_use use, const char *path, const char *weights,
                     ex_error *err);
    ex_code (*score)(ex_trainer *t, int average, ex_error *err);
    ex_code (*write_logits)(ex_trainer *t, ex_error *err);
};

/* A trainer's before_training: --init-from (every rank agrees, a line
 * says so); then --eval-only (*done 1): the --resume checkpoint's model
 * (with its weight average, when it has one and the run keeps one: the
 * model the run reported) or the --init-from one, scored; --logits; the
 * --export of it. */
ex_code ex_official_before_training(ex_trainer *t, int *done, ex_error *err);

/* --export and --export-folded, at the end (after_run; rank 0 only): the
 * model the run evaluated, the weight average with its own sigma when it
 * has been updated (what ex_trainer_evaluate swaps in), the live weights
 * otherwise. A line says what each file holds. */
ex_code ex_official_export_run(ex_trainer *t, ex_error *err);

#endif
