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

/* srp_checkpoint_save / _load of the whole list, with a message naming the
 * file (a list whose building failed is refused). load: count = the first
 * `count` entries only (a model out of a training checkpoint), or 0 for
 * all. */
ex_code ex_tensors_save(const srp_tensor_list *l, const char *path, ex_error *err);
ex_code ex_tensors_load(const srp_tensor_list *l, size_t count, const char *path, ex_error *err);

#endif
