/* A model's table of linear layers with their names: for the metrics (each
 * one's sigma and gamma), the optimizer's list, and checkpoints, which keep
 * each sigmaReparam layer's power-iteration state (u, v, sigma) beside the
 * parameters so that a resumed run continues bit for bit. */
#ifndef EX_LINEARS_H
#define EX_LINEARS_H

#include <stddef.h>

#include <sigmareparam.h>

#include "params.h"
#include "tensors.h"

typedef struct {
    srp_linear **linears; /* not owned */
    char **names;
    float *sigmas; /* [count]: staging for checkpoints */
    size_t count;
} ex_linear_table;

/* 0 when out of memory. */
int ex_linears_add(ex_linear_table *t, srp_linear *linear, const char *name);
void ex_linears_free(ex_linear_table *t);
/* NULL for i out of range; name may be NULL. */
srp_linear *ex_linears_at(const ex_linear_table *t, size_t i, const char **name);
/* Every layer's parameters (ex_params_add_linear), in table order. */
void ex_linears_params(const ex_linear_table *t, ex_param_list *list);
/* "<name>.u", ".v" and ".sigma" of every layer that tracks sigma. Before
 * a save, call ex_linears_sync_out; after a load, ex_linears_sync_in (it
 * pushes the loaded sigmas into the layers). */
void ex_linears_state_tensors(ex_linear_table *t, ex_tensor_list *list);
/* A model's checkpoint state: every parameter of params as a float tensor
 * under its name, then the linears' u, v and sigma. */
void ex_model_state_tensors(const ex_param_list *params, ex_linear_table *t, ex_tensor_list *list);
void ex_linears_sync_out(ex_linear_table *t);
srp_status ex_linears_sync_in(ex_linear_table *t);

#endif
