/* A checkpoint's list of named tensors, built by appending: it owns the
 * names and grows as needed, so that nobody counts entries by hand. */
#ifndef EX_TENSORS_H
#define EX_TENSORS_H

#include <stddef.h>

#include <sigmareparam.h>

#include "checkpoint_file.h"
#include "error.h"

typedef struct {
    srp_tensor_ref *refs;
    char **names;
    size_t count, capacity;
    int failed; /* an allocation failed: save and load refuse the list */
} ex_tensor_list;

void ex_tensors_init(ex_tensor_list *l);
void ex_tensors_free(ex_tensor_list *l);
/* Appends a tensor of ndim dimensions (0: a scalar; shape may then be NULL). */
void ex_tensors_add(ex_tensor_list *l, const char *name, srp_dtype dtype, size_t ndim,
                    const size_t *shape, void *data);
/* A float vector of n elements. */
void ex_tensors_add_f32(ex_tensor_list *l, const char *name, float *data, size_t n);

/* Appends every entry of a library list (a layer's or module's state refs). */
void ex_tensors_add_list(ex_tensor_list *l, const srp_tensor_list *from);

/* *p = a zeroed float buffer of n elements (the models' activations and
 * gradients); 0 when out of memory. */
int ex_alloc_floats(float **p, size_t n);

/* The whole list saved with the model's configuration (checkpoint_file.h),
 * or loaded after that configuration is checked: count = the first `count`
 * entries only (a model out of a training checkpoint, whose run state the
 * file may hold besides), or 0 for all, strictly (nothing else in the
 * file). */
ex_code ex_tensors_save(const ex_tensor_list *l, const char *path, const ex_metadata *meta,
                        ex_error *err);
ex_code ex_tensors_load(const ex_tensor_list *l, size_t count, const char *path,
                        const ex_metadata *meta, ex_error *err);

#endif
