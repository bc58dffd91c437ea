/* What both example models share over the library's layers: a table of
 * their linears with their names (for the metrics' sigma and gamma, the
 * weight average and data-parallel training), their linears'
 * configuration, and their trunk: a stack of srp_blocks named blocks.<l>
 * over the residual stream, then an optional final LayerNorm. */
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
/* Every linear's srp_linear_params under its name, in table order. */
void ex_linear_names_params(const ex_linear_names *t, srp_param_list *list);

/* A model's --arch: sigmaReparam or plain linears, the LayerNorms'
 * placement. */
typedef struct {
    const char *name;
    int sigma;
    srp_norm_placement norm;
} ex_arch;

/* A linear of a model whose linears share their mode (sigmaReparam or
 * plain), gamma_init and gain: weights ~ N(0, (0.02 gain)^2), truncated;
 * the seed drawn from rng (NULL: left to whoever creates it). */
srp_linear_config ex_linear_config(size_t in, size_t out, int sigma, srp_gamma_init gamma_init,
                                   float init_gain, srp_rng *rng);

/* The blocks' regularizers (srp_block_config's rates; all 0: off), which
 * every trainer takes as --attn-dropout, --mlp-dropout and --drop-path.
 * drop_path is the last block's: a stack rises to it linearly from 0 at
 * its first block (DeiT's and timm's rule; a stack of one block has none). */
typedef struct {
    float attn_dropout, mlp_dropout, drop_path;
} ex_regularizers;

/* The rates that are on, as the trainers' model lines print them:
 * ", attention dropout 0.1, drop path 0.2"; "" with none. Returns buf. */
const char *ex_regularizers_text(const ex_regularizers *r, char *buf, size_t len);

/* A block of such a model (srp_block_config_default of dim, heads and
 * mlp_dim) with its four linears so configured (ex_linear_config) and reg's
 * rates; the seeds are left to ex_stack_init. */
srp_block_config ex_block_config(size_t dim, size_t heads, size_t mlp_dim, int sigma,
                                 srp_gamma_init gamma_init, float init_gain,
                                 const ex_regularizers *reg);

/* The trunk: x_{l+1} = block_l(x_l) for l < depth, then the final
 * LayerNorm (when it has one) of x_depth; rows = batch x tokens. */
typedef struct {
    size_t depth, rows;  /* rows: of the last forward */
    srp_block **blocks;  /* [depth] */
    const char *prefix;  /* the blocks' names: <prefix>.<l> ("blocks") */
    srp_layernorm *norm; /* the final LayerNorm; NULL: none */
    const char *norm_name;
    float **xs;      /* [depth + 1] of [max rows][D]: xs[0] the input, which the model writes */
    float *normed;   /* [max rows][D]: the final LayerNorm's output */
    float *d_stream; /* [max rows][D]: backward: the stream's gradient; at the end d(xs[0]) */
    float *d_normed; /* [max rows][D]: the gradient of normed */
} ex_stack;

/* depth blocks of bc for max_batch x max_tokens rows, their linears
 * appended to names under blocks.<l>; a final LayerNorm of bc's eps named
 * norm_name (NULL: none). Free it either way. The seeds are drawn from
 * rng, block by block, in the order attention, fc1, fc2 and (a decoder
 * block) its cross-attention; each block's regularizer state is seeded
 * from its attention's seed, so that its masks are its own and turning a
 * regularizer on leaves the initial weights as they were. */
srp_status ex_stack_init(ex_stack *s, const srp_block_config *bc, size_t depth,
                         const char *norm_name, size_t max_batch, size_t max_tokens, srp_rng *rng,
                         ex_linear_names *names);
/* ex_stack_init with the blocks named <prefix>.<l> (a string that outlives
 * the stack): two stacks of one model (an encoder's and a decoder's). */
srp_status ex_stack_init_named(ex_stack *s, const srp_block_config *bc, size_t depth,
                               const char *prefix, const char *norm_name, size_t max_batch,
                               size_t max_tokens, srp_rng *rng, ex_linear_names *names);
void ex_stack_free(ex_stack *s);
/* xs[0] [batch][tokens][D] -> *out [batch][tokens][D], valid until the
 * next forward. */
srp_status ex_stack_forward(ex_stack *s, size_t batch, size_t tokens, int training,
                            const float **out);
/* Where the caller writes the gradient of the last forward's output before
 * ex_stack_backward, which leaves d(xs[0]) in d_stream. */
float *ex_stack_output_grad(ex_stack *s);
srp_status ex_stack_backward(ex_stack *s);
/* Each block's LayerNorms' parameters (blocks.<l>.<its norm name>), then
 * the final one's. The models list them after all their linears and
 * embeddings: the order the optimizer state, the weight average and the
 * gradient norm have always had. */
void ex_stack_norm_params(ex_stack *s, srp_param_list *list);
/* Each block's srp_block_state_refs under blocks.<l>, then the final
 * LayerNorm's. */
void ex_stack_state_refs(ex_stack *s, srp_tensor_list *list);
/* Block layer's attention (NULL out of range). */
srp_attention *ex_stack_attention(ex_stack *s, size_t layer);

/* Cached decoding through a trunk (srp_block_decode): the eval forward
 * one position at a time, each block's keys and values kept in its cache,
 * for up to max_batch sequences of up to max_tokens positions. */
typedef struct {
    const ex_stack *stack;
    srp_block_cache **caches; /* [depth] */
    float *x;                 /* [max_batch][D]: the new position's input, which the model writes */
    float *normed;            /* [max_batch][D]: the final LayerNorm's output */
} ex_stack_cache;

/* For a stack of at least one block (SRP_ERR_INVALID_ARG otherwise). Free
 * it either way. */
srp_status ex_stack_cache_init(ex_stack_cache *c, const ex_stack *s, size_t max_batch,
                               size_t max_tokens);
void ex_stack_cache_free(ex_stack_cache *c);
void ex_stack_cache_reset(ex_stack_cache *c);
/* Positions decoded since the last reset. */
size_t ex_stack_cache_length(const ex_stack_cache *c);
/* x [batch][D] through the blocks, each from its cache, then the final
 * LayerNorm: *out [batch][D], x itself or normed. */
srp_status ex_stack_decode(ex_stack_cache *c, size_t batch, const float **out);

#endif
