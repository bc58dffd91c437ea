/* The models' tables of named linears, their linears' configuration and
 * their trunk of blocks (layers.h). */
#include "layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tensors.h"

int ex_linear_names_init(ex_linear_names *t, size_t capacity)
{
    memset(t, 0, sizeof(*t));
    t->linears = calloc(capacity ? capacity : 1, sizeof(*t->linears));
    t->names = calloc(capacity ? capacity : 1, sizeof(*t->names));
    t->buf = calloc(capacity ? capacity : 1, sizeof(*t->buf));
    t->capacity = capacity;
    return t->linears && t->names && t->buf;
}

void ex_linear_names_free(ex_linear_names *t)
{
    free(t->linears);
    free(t->names);
    free(t->buf);
    memset(t, 0, sizeof(*t));
}

int ex_linear_names_add(ex_linear_names *t, srp_linear *l, const char *prefix, const char *name)
{
    if (t->count == t->capacity ||
        snprintf(t->buf[t->count], EX_LAYER_NAME_MAX, "%s%s%s", prefix ? prefix : "",
                 prefix ? "." : "", name) >= EX_LAYER_NAME_MAX)
        return 0;
    t->names[t->count] = t->buf[t->count];
    t->linears[t->count++] = l;
    return 1;
}

void ex_linear_names_params(const ex_linear_names *t, srp_param_list *list)
{
    for (size_t i = 0; i < t->count; i++)
        srp_linear_params(t->linears[i], t->names[i], list);
}

srp_linear_config ex_linear_config(size_t in, size_t out, int sigma, srp_gamma_init gamma_init,
                                   float init_gain, srp_rng *rng)
{
    srp_linear_config lc = srp_linear_config_default(in, out);
    lc.reparam = sigma ? SRP_REPARAM_SIGMA : SRP_REPARAM_NONE;
    lc.gamma_init = gamma_init;
    lc.init_std = 0.02f * init_gain;
    if (rng)
        lc.seed = srp_rng_next_u64(rng);
    return lc;
}

const char *ex_regularizers_text(const ex_regularizers *r, char *buf, size_t len)
{
    const struct {
        const char *name;
        float rate;
    } rates[] = {{"attention dropout", r->attn_dropout},
                 {"MLP dropout", r->mlp_dropout},
                 {"drop path", r->drop_path}};
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++)
        if (rates[i].rate > 0.0f && used < len)
            used += (size_t)snprintf(buf + used, len - used, ", %s %g", rates[i].name,
                                     (double)rates[i].rate);
    return buf;
}

srp_block_config ex_block_config(size_t dim, size_t heads, size_t mlp_dim, int sigma,
                                 srp_gamma_init gamma_init, float init_gain,
                                 const ex_regularizers *reg)
{
    const size_t D = dim;
    srp_block_config bc = srp_block_config_default(D, heads, mlp_dim);
    bc.qkv = ex_linear_config(D, 3 * D, sigma, gamma_init, init_gain, NULL);
    bc.proj = ex_linear_config(D, D, sigma, gamma_init, init_gain, NULL);
    bc.fc1 = ex_linear_config(D, mlp_dim, sigma, gamma_init, init_gain, NULL);
    bc.fc2 = ex_linear_config(mlp_dim, D, sigma, gamma_init, init_gain, NULL);
    bc.attn_dropout = reg->attn_dropout;
    bc.mlp_dropout = reg->mlp_dropout;
    bc.drop_path = reg->drop_path;
    return bc;
}

srp_status ex_stack_init(ex_stack *s, const srp_block_config *bc, size_t depth,
                         const char *norm_name, size_t max_batch, size_t max_tokens, srp_rng *rng,
                         ex_linear_names *names)
{
    return ex_stack_init_named(s, bc, depth, "blocks", norm_name, max_batch, max_tokens, rng,
                               names);
}

srp_status ex_stack_init_named(ex_stack *s, const srp_block_config *bc, size_t depth,
                               const char *prefix_name, const char *norm_name, size_t max_batch,
                               size_t max_tokens, srp_rng *rng, ex_linear_names *names)
{
    memset(s, 0, sizeof(*s));
    s->prefix = prefix_name;
    const size_t D = bc->dim, rows = max_batch * max_tokens;
    s->blocks = calloc(depth, sizeof(*s->blocks));
    s->xs = calloc(depth + 1, sizeof(*s->xs));
    if (!s->blocks || !s->xs)
        return SRP_ERR_NOMEM;
    s->depth = depth;
    for (size_t l = 0; l <= depth; l++)
        if (!ex_alloc_floats(&s->xs[l], rows * D))
            return SRP_ERR_NOMEM;
    char prefix[EX_LAYER_NAME_MAX];
    for (size_t l = 0; l < depth; l++) {
        srp_block_config c = *bc;
        c.attn_seed = srp_rng_next_u64(rng);
        c.fc1.seed = srp_rng_next_u64(rng);
        c.fc2.seed = srp_rng_next_u64(rng);
        if (c.cross)
            c.cross_seed = srp_rng_next_u64(rng);
        srp_rng masks; /* not drawn from rng: the weights stay those of the run without */
        srp_rng_seed(&masks, c.attn_seed ^ UINT64_C(0x6d61736b73)); /* "masks" */
        c.dropout_seed = srp_rng_next_u64(&masks);
        /* stochastic depth's linear rule (DeiT, timm): 0 at the first block */
        c.drop_path = depth > 1 ? bc->drop_path * (float)l / (float)(depth - 1) : 0.0f;
        EX_TRY(srp_block_create(&s->blocks[l], &c, max_batch, max_tokens));
        snprintf(prefix, sizeof(prefix), "%s.%zu", s->prefix, l);
        for (size_t i = 0; i < srp_block_linear_count(s->blocks[l]); i++) {
            const char *name;
            srp_linear *lin = srp_block_linear(s->blocks[l], i, &name);
            if (!ex_linear_names_add(names, lin, prefix, name))
                return SRP_ERR_INVALID_ARG;
        }
    }
    if (!ex_alloc_floats(&s->d_stream, rows * D))
        return SRP_ERR_NOMEM;
    if (!norm_name)
        return SRP_OK;
    srp_layernorm_config nc = srp_layernorm_config_default(D);
    nc.eps = bc->norm_eps;
    s->norm_name = norm_name;
    EX_TRY(srp_layernorm_create(&s->norm, &nc, rows));
    return ex_alloc_floats(&s->normed, rows * D) && ex_alloc_floats(&s->d_normed, rows * D)
               ? SRP_OK
               : SRP_ERR_NOMEM;
}

void ex_stack_free(ex_stack *s)
{
    for (size_t l = 0; s->blocks && l < s->depth; l++)
        srp_block_destroy(s->blocks[l]);
    for (size_t l = 0; s->xs && l <= s->depth; l++)
        free(s->xs[l]);
    free(s->blocks);
    free(s->xs);
    srp_layernorm_destroy(s->norm);
    free(s->normed);
    free(s->d_stream);
    free(s->d_normed);
    memset(s, 0, sizeof(*s));
}

srp_status ex_stack_forward(ex_stack *s, size_t batch, size_t tokens, int training,
                            const float **out)
{
    s->rows = batch * tokens;
    for (size_t l = 0; l < s->depth; l++)
        EX_TRY(srp_block_forward(s->blocks[l], s->xs[l], batch, tokens, s->xs[l + 1], training));
    *out = s->xs[s->depth];
    if (s->norm) {
        EX_TRY(srp_layernorm_layer_forward(s->norm, *out, s->rows, s->normed, training));
        *out = s->normed;
    }
    return SRP_OK;
}

float *ex_stack_output_grad(ex_stack *s) { return s->norm ? s->d_normed : s->d_stream; }

srp_status ex_stack_backward(ex_stack *s)
{
    float *ds = s->d_stream;
    if (s->norm)
        EX_TRY(srp_layernorm_layer_backward(s->norm, s->xs[s->depth], s->d_normed, s->rows, ds));
    for (size_t l = s->depth; l-- > 0;)
        EX_TRY(srp_block_backward(s->blocks[l], ds, ds)); /* d(xs[l + 1]) -> d(xs[l]) */
    return SRP_OK;
}

void ex_stack_norm_params(ex_stack *s, srp_param_list *list)
{
    char prefix[EX_LAYER_NAME_MAX];
    for (size_t l = 0; l < s->depth; l++)
        for (size_t i = 0; i < srp_block_norm_count(s->blocks[l]); i++) {
            const char *name;
            srp_layernorm *ln = srp_block_norm(s->blocks[l], i, &name);
            snprintf(prefix, sizeof(prefix), "%s.%zu.%s", s->prefix, l, name);
            srp_layernorm_params(ln, prefix, list);
        }
    if (s->norm)
        srp_layernorm_params(s->norm, s->norm_name, list);
}

void ex_stack_state_refs(ex_stack *s, srp_tensor_list *list)
{
    char prefix[EX_LAYER_NAME_MAX];
    for (size_t l = 0; l < s->depth; l++) {
        snprintf(prefix, sizeof(prefix), "%s.%zu", s->prefix, l);
        srp_block_state_refs(s->blocks[l], prefix, list);
    }
    if (s->norm)
        srp_layernorm_state_refs(s->norm, s->norm_name, list);
}

srp_attention *ex_stack_attention(ex_stack *s, size_t layer)
{
    return layer < s->depth ? srp_block_attention(s->blocks[layer]) : NULL;
}

srp_status ex_stack_cache_init(ex_stack_cache *c, const ex_stack *s, size_t max_batch,
                               size_t max_tokens)
{
    memset(c, 0, sizeof(*c));
    c->stack = s;
    if (s->depth == 0)
        return SRP_ERR_INVALID_ARG;
    const size_t dim = srp_block_dim(s->blocks[0]);
    c->caches = calloc(s->depth, sizeof(*c->caches));
    if (!c->caches || !ex_alloc_floats(&c->x, max_batch * dim) ||
        !ex_alloc_floats(&c->normed, max_batch * dim))
        return SRP_ERR_NOMEM;
    for (size_t l = 0; l < s->depth; l++)
        EX_TRY(srp_block_cache_create(&c->caches[l], s->blocks[l], max_batch, max_tokens));
    return SRP_OK;
}

void ex_stack_cache_free(ex_stack_cache *c)
{
    for (size_t l = 0; c->caches && l < c->stack->depth; l++)
        srp_block_cache_destroy(c->caches[l]);
    free(c->caches);
    free(c->x);
    free(c->normed);
    memset(c, 0, sizeof(*c));
}

void ex_stack_cache_reset(ex_stack_cache *c)
{
    for (size_t l = 0; l < c->stack->depth; l++)
        srp_block_cache_reset(c->caches[l]);
}

size_t ex_stack_cache_length(const ex_stack_cache *c)
{
    return srp_block_cache_length(c->caches[0]);
}

srp_status ex_stack_decode(ex_stack_cache *c, size_t batch, const float **out)
{
    const ex_stack *s = c->stack;
    for (size_t l = 0; l < s->depth; l++)
        EX_TRY(srp_block_decode(s->blocks[l], c->caches[l], c->x, batch, c->x));
    *out = c->x;
    srp_layernorm *ln = s->norm;
    if (ln) {
        EX_TRY(srp_layernorm_forward(c->x, srp_layernorm_weight(ln), srp_layernorm_bias(ln), batch,
                                     srp_layernorm_dim(ln), srp_layernorm_eps(ln), c->normed, NULL,
                                     NULL));
        *out = c->normed;
    }
    return SRP_OK;
}
