/* The models' tables of named linears and their blocks' lists (layers.h). */
#include "layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int ex_linear_names_add_block(ex_linear_names *t, srp_block *b, size_t index)
{
    char prefix[EX_LAYER_NAME_MAX];
    snprintf(prefix, sizeof(prefix), "blocks.%zu", index);
    for (size_t i = 0; i < srp_block_linear_count(b); i++) {
        const char *name;
        srp_linear *l = srp_block_linear(b, i, &name);
        if (!ex_linear_names_add(t, l, prefix, name))
            return 0;
    }
    return 1;
}

void ex_linear_names_params(const ex_linear_names *t, srp_param_list *list)
{
    for (size_t i = 0; i < t->count; i++)
        srp_linear_params(t->linears[i], t->names[i], list);
}

void ex_blocks_norm_params(srp_block *const *blocks, size_t depth, srp_param_list *list)
{
    char prefix[EX_LAYER_NAME_MAX];
    for (size_t l = 0; l < depth; l++)
        for (size_t i = 0; i < srp_block_norm_count(blocks[l]); i++) {
            const char *name;
            srp_layernorm *ln = srp_block_norm(blocks[l], i, &name);
            snprintf(prefix, sizeof(prefix), "blocks.%zu.%s", l, name);
            srp_layernorm_params(ln, prefix, list);
        }
}

void ex_blocks_state_refs(srp_block *const *blocks, size_t depth, srp_tensor_list *list)
{
    char prefix[EX_LAYER_NAME_MAX];
    for (size_t l = 0; l < depth; l++) {
        snprintf(prefix, sizeof(prefix), "blocks.%zu", l);
        srp_block_state_refs(blocks[l], prefix, list);
    }
}
