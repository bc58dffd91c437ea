/* What both example models share over the library's layers: a table of
 * their linears with their names (for the metrics' sigma and gamma, the
 * weight average and data-parallel training), and the lists of a stack of
 * srp_blocks named blocks.<l> (lists.h). */
#ifndef EX_LAYERS_H
#define EX_LAYERS_H

#include <stddef.h>

#include <sigmareparam.h>

#define EX_LAYER_NAME_MAX 64

typedef struct {
    srp_linear **linears; /* [count], not owned */
    const char **names;   /* [count]: "blocks.0.mlp.fc1", ... */
    char (*buf)[EX_LAYER_NAME_MAX];
    size_t count, capacity;
} ex_linear_names;

/* Room for capacity linears; 0 when out of memory (free it either way). */
int ex_linear_names_init(ex_linear_names *t, size_t capacity);
void ex_linear_names_free(ex_linear_names *t);
/* Appends l named "prefix.name" (prefix NULL: name); 0 when full or the
 * name is too long. */
int ex_linear_names_add(ex_linear_names *t, srp_linear *l, const char *prefix, const char *name);
/* Appends block index's linears (srp_block_linear's order) under
 * blocks.<index>; 0 as ex_linear_names_add. */
int ex_linear_names_add_block(ex_linear_names *t, srp_block *b, size_t index);
/* Every linear's srp_linear_params under its name, in table order. */
void ex_linear_names_params(const ex_linear_names *t, srp_param_list *list);

/* Each block's LayerNorms' parameters (srp_layernorm_params under
 * blocks.<l>.<its norm name>), block by block. The models list them after
 * all their linears, cls_token or the embeddings: the order the optimizer
 * state, the weight average and the gradient norm have always had. */
void ex_blocks_norm_params(srp_block *const *blocks, size_t depth, srp_param_list *list);
/* Each block's srp_block_state_refs under blocks.<l>. */
void ex_blocks_state_refs(srp_block *const *blocks, size_t depth, srp_tensor_list *list);

#endif
