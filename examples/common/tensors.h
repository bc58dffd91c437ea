/* Checkpoints of a list of named tensors (the library's srp_tensor_list,
 * lists.h), with messages that name the file; and the models' zeroed
 * buffers. */
#ifndef EX_TENSORS_H
#define EX_TENSORS_H

#include <stddef.h>

#include <sigmareparam.h>

#include "error.h"

/* *p = a zeroed float buffer of n elements (the models' activations and
 * gradients); 0 when out of memory. */
int ex_alloc_floats(float **p, size_t n);

/* Appends the tensors of a file (a trainer's checkpoint, a model's part of
 * it) to list. */
typedef void (*ex_tensor_fill)(void *ctx, srp_tensor_list *list);

/* srp_checkpoint_save / _load of the list that fill(ctx, .) makes, with a
 * message naming the file (a list whose building failed is refused). */
ex_code ex_tensors_save(ex_tensor_fill fill, void *ctx, const char *path, ex_error *err);
ex_code ex_tensors_load(ex_tensor_fill fill, void *ctx, const char *path, ex_error *err);

#endif
