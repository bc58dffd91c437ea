/* A model's parameter list and its state-tensor list (lists.h): growable
 * arrays of entries whose names the list owns, with a hash index of the
 * names so that appending n entries, with the duplicate check, is O(n). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The names of a list, in order, and an open-addressing index over them
 * (slots hold index + 1; 0 is empty; at most half full). */
typedef struct {
    char **names;
    size_t count, capacity;
    size_t *slots;
    size_t nslots;
    srp_status failed; /* the first failed append */
} name_table;

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static size_t names_find(const name_table *t, const char *name)
{
    if (!t->nslots)
        return SIZE_MAX;
    for (size_t s = name_hash(name) & (t->nslots - 1);; s = (s + 1) & (t->nslots - 1)) {
        if (!t->slots[s])
            return SIZE_MAX;
        if (strcmp(t->names[t->slots[s] - 1], name) == 0)
            return t->slots[s] - 1;
    }
}

static void index_insert(size_t *slots, size_t nslots, const char *name, size_t index)
{
    size_t s = name_hash(name) & (nslots - 1);
    while (slots[s])
        s = (s + 1) & (nslots - 1);
    slots[s] = index + 1;
}

/* Room for one more name in the index (the arrays are the caller's). */
static int index_reserve(name_table *t)
{
    if (2 * (t->count + 1) <= t->nslots)
        return 1;
    const size_t n = t->nslots ? 2 * t->nslots : 64;
    size_t *slots = calloc(n, sizeof(*slots));
    if (!slots)
        return 0;
    for (size_t i = 0; i < t->count; i++)
        index_insert(slots, n, t->names[i], i);
    free(t->slots);
    t->slots = slots;
    t->nslots = n;
    return 1;
}

/* "prefix.suffix" in a new string, after the checks every append makes.
 * NULL with *st set on failure; the table is unchanged either way. */
static char *new_name(name_table *t, const char *prefix, const char *suffix, const char *call,
                      srp_status *st)
{
    const char *p = prefix ? prefix : "", *s = suffix ? suffix : "";
    const size_t lp = strlen(p), ls = strlen(s), len = lp + ls + (lp && ls ? 1 : 0);
    if (len == 0 || len > SRP_TENSOR_MAX_NAME) {
        *st = srp_fail(SRP_ERR_INVALID_ARG, "%s: name \"%s%s%s\" is %s", call, p, lp && ls ? "." : "",
                       s, len ? "longer than SRP_TENSOR_MAX_NAME" : "empty");
        return NULL;
    }
    char *name = malloc(len + 1);
    if (!name) {
        *st = SRP_ERR_NOMEM;
        return NULL;
    }
    memcpy(name, p, lp);
    if (lp && ls)
        name[lp] = '.';
    memcpy(name + len - ls, s, ls);
    name[len] = '\0';
    if (names_find(t, name) != SIZE_MAX) {
        *st = srp_fail(SRP_ERR_INVALID_ARG, "%s: \"%s\" is already in the list", call, name);
        free(name);
        return NULL;
    }
    if (!index_reserve(t)) {
        free(name);
        *st = SRP_ERR_NOMEM;
        return NULL;
    }
    *st = SRP_OK;
    return name;
}

/* Grows the names to hold one more (the entries' arrays grow with them). */
static int names_grow(name_table *t, size_t cap)
{
    char **names = realloc(t->names, cap * sizeof(*names));
    if (!names)
        return 0;
    t->names = names;
    return 1;
}

static void names_push(name_table *t, char *name)
{
    t->names[t->count] = name;
    index_insert(t->slots, t->nslots, name, t->count);
    t->count++;
}

/* Back to the first `count` names; the index is rebuilt in place. */
static void names_truncate(name_table *t, size_t count)
{
    for (size_t i = count; i < t->count; i++)
        free(t->names[i]);
    t->count = count;
    memset(t->slots, 0, t->nslots * sizeof(*t->slots));
    for (size_t i = 0; i < count; i++)
        index_insert(t->slots, t->nslots, t->names[i], i);
}

static void names_free(name_table *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->names[i]);
    free(t->names);
    free(t->slots);
}

static srp_status remember(name_table *t, srp_status st)
{
    if (st != SRP_OK && t->failed == SRP_OK)
        t->failed = st;
    return st;
}

/* ---- parameters ---- */

struct srp_param_list {
    name_table names;
    srp_param *params;
    srp_param_kind *kinds;
};

srp_status srp_param_list_create(srp_param_list **out)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = calloc(1, sizeof(**out));
    return *out ? SRP_OK : SRP_ERR_NOMEM;
}

void srp_param_list_destroy(srp_param_list *l)
{
    if (!l)
        return;
    names_free(&l->names);
    free(l->params);
    free(l->kinds);
    free(l);
}

srp_status srp_param_list_add(srp_param_list *l, const char *prefix, const char *suffix,
                              float *data, float *grad, size_t size, srp_param_kind kind)
{
    if (!l)
        return SRP_FAIL_NULL(l);
    name_table *t = &l->names;
    if (!data || !grad || size == 0 || kind < SRP_PARAM_WEIGHT || kind > SRP_PARAM_EMBEDDING)
        return remember(t, srp_fail(SRP_ERR_INVALID_ARG,
                                    "srp_param_list_add: %s.%s: NULL data or grad, size 0, or an "
                                    "unknown kind",
                                    prefix ? prefix : "", suffix ? suffix : ""));
    if (t->count == t->capacity) {
        const size_t cap = t->capacity ? 2 * t->capacity : 64;
        srp_param *params = realloc(l->params, cap * sizeof(*params));
        if (params)
            l->params = params;
        srp_param_kind *kinds = realloc(l->kinds, cap * sizeof(*kinds));
        if (kinds)
            l->kinds = kinds;
        if (!params || !kinds || !names_grow(t, cap))
            return remember(t, SRP_ERR_NOMEM);
        t->capacity = cap;
    }
    srp_status st;
    char *name = new_name(t, prefix, suffix, "srp_param_list_add", &st);
    if (!name)
        return remember(t, st);
    l->params[t->count] = srp_param_make(name, data, grad, size, kind);
    l->kinds[t->count] = kind;
    names_push(t, name);
    return SRP_OK;
}

size_t srp_param_list_count(const srp_param_list *l) { return l ? l->names.count : 0; }

srp_param *srp_param_list_entries(srp_param_list *l)
{
    return l && l->names.count ? l->params : NULL;
}

srp_param_kind srp_param_list_kind(const srp_param_list *l, size_t i)
{
    return l && i < l->names.count ? l->kinds[i] : SRP_PARAM_WEIGHT;
}

size_t srp_param_list_find(const srp_param_list *l, const char *name)
{
    return l && name ? names_find(&l->names, name) : SIZE_MAX;
}

srp_status srp_param_list_status(const srp_param_list *l)
{
    return l ? l->names.failed : SRP_ERR_INVALID_ARG;
}

/* ---- state tensors ---- */

struct srp_tensor_list {
    name_table names;
    srp_tensor_ref *refs;
};

srp_status srp_tensor_list_create(srp_tensor_list **out)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = calloc(1, sizeof(**out));
    return *out ? SRP_OK : SRP_ERR_NOMEM;
}

void srp_tensor_list_destroy(srp_tensor_list *l)
{
    if (!l)
        return;
    names_free(&l->names);
    free(l->refs);
    free(l);
}

srp_status srp_tensor_list_add(srp_tensor_list *l, const char *prefix, const char *suffix,
                               srp_dtype dtype, size_t ndim, const size_t *shape, void *data)
{
    if (!l)
        return SRP_FAIL_NULL(l);
    name_table *t = &l->names;
    if (!data || ndim > SRP_TENSOR_MAX_NDIM || (ndim > 0 && !shape) || srp_dtype_size(dtype) == 0)
        return remember(t, srp_fail(SRP_ERR_INVALID_ARG,
                                    "srp_tensor_list_add: %s.%s: NULL data, ndim %zu above %d, "
                                    "NULL shape or an unknown dtype",
                                    prefix ? prefix : "", suffix ? suffix : "", ndim,
                                    SRP_TENSOR_MAX_NDIM));
    if (t->count == t->capacity) {
        const size_t cap = t->capacity ? 2 * t->capacity : 64;
        srp_tensor_ref *refs = realloc(l->refs, cap * sizeof(*refs));
        if (refs)
            l->refs = refs;
        if (!refs || !names_grow(t, cap))
            return remember(t, SRP_ERR_NOMEM);
        t->capacity = cap;
    }
    srp_status st;
    char *name = new_name(t, prefix, suffix, "srp_tensor_list_add", &st);
    if (!name)
        return remember(t, st);
    srp_tensor_ref *r = &l->refs[t->count];
    memset(r, 0, sizeof(*r));
    r->name = name;
    r->dtype = dtype;
    r->ndim = ndim;
    for (size_t d = 0; d < ndim; d++)
        r->shape[d] = shape[d];
    r->data = data;
    names_push(t, name);
    return SRP_OK;
}

srp_status srp_tensor_list_add_f32(srp_tensor_list *l, const char *prefix, const char *suffix,
                                   float *data, size_t n)
{
    return srp_tensor_list_add(l, prefix, suffix, SRP_DTYPE_F32, 1, &n, data);
}

srp_status srp_tensor_list_add_params(srp_tensor_list *l, srp_param_list *params)
{
    if (!l)
        return SRP_FAIL_NULL(l);
    if (!params)
        return remember(&l->names, SRP_FAIL_NULL(params));
    if (params->names.failed != SRP_OK) /* an incomplete model would save as a complete one */
        return remember(&l->names, params->names.failed);
    const size_t before = l->names.count;
    for (size_t i = 0; i < params->names.count; i++) {
        const srp_param *p = &params->params[i];
        const srp_status st = srp_tensor_list_add_f32(l, p->name, NULL, p->data, p->size);
        if (st != SRP_OK) {
            names_truncate(&l->names, before); /* all or nothing */
            return st;
        }
    }
    return SRP_OK;
}

size_t srp_tensor_list_count(const srp_tensor_list *l) { return l ? l->names.count : 0; }

const srp_tensor_ref *srp_tensor_list_refs(const srp_tensor_list *l)
{
    return l && l->names.count ? l->refs : NULL;
}

size_t srp_tensor_list_find(const srp_tensor_list *l, const char *name)
{
    return l && name ? names_find(&l->names, name) : SIZE_MAX;
}

srp_status srp_tensor_list_status(const srp_tensor_list *l)
{
    return l ? l->names.failed : SRP_ERR_INVALID_ARG;
}
