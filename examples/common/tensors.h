/* Checkpoints of a list of named tensors (the library's srp_tensor_list,
 * lists.h), saved with the model's configuration and loaded strictly
 * (checkpoint_file.h), with messages that name the file; and the models'
 * zeroed buffers. */
#ifndef EX_TENSORS_H
#define EX_TENSORS_H

#include <stddef.h>

#include <sigmareparam.h>

#include "checkpoint_file.h"
#include "error.h"

/* *p = a zeroed float buffer of n elements (the models' activations and
 * gradients); 0 when out of memory. */
int ex_alloc_floats(float **p, size_t n);

/* Appends the tensors of a file (a trainer's checkpoint, a model's part of
 * it) to list. */
typedef void (*ex_tensor_fill)(void *ctx, srp_tensor_list *list);

/* *out = the list fill(ctx, .) makes (srp_tensor_list_destroy it); a list
 * whose building failed is refused, *out NULL. */
ex_code ex_tensors_make(srp_tensor_list **out, ex_tensor_fill fill, void *ctx, ex_error *err);
/* The list saved with meta as its metadata, or loaded after the file's
 * metadata is checked against meta: strictly (the file holds nothing
 * else), or with model_only the list is a model's and the file may hold a
 * run's state besides (ex_checkpoint_read_checked). */
ex_code ex_tensors_save(ex_tensor_fill fill, void *ctx, const char *path, const ex_metadata *meta,
                        ex_error *err);
ex_code ex_tensors_load(ex_tensor_fill fill, void *ctx, const char *path, int model_only,
                        const ex_metadata *meta, ex_error *err);

#endif
