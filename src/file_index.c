/* What the two readers of named-tensor files (checkpoint.c, safetensors.c)
 * share: a file read whole for the format's parser, and once it is parsed
 * and checked, its tensors by name, the caller's list matched against them
 * (every name found, every dtype and shape equal, and in a strict read
 * nothing in the file left over) before anything is copied out, and its
 * string metadata by key. Sorting keeps every lookup
 * and every duplicate check O(n log n) in the file's size: the files come
 * from users. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int tensor_by_name(const void *pa, const void *pb)
{
    return strcmp((*(const srp_file_tensor *const *)pa)->name,
                  (*(const srp_file_tensor *const *)pb)->name);
}

srp_status srp_file_index_sort(srp_file_index *ix, const char *call)
{
    ix->by_name = malloc(sizeof(*ix->by_name) * (ix->count > 0 ? ix->count : 1));
    if (!ix->by_name)
        return SRP_ERR_NOMEM;
    for (size_t i = 0; i < ix->count; i++)
        ix->by_name[i] = &ix->tensors[i];
    qsort(ix->by_name, ix->count, sizeof(*ix->by_name), tensor_by_name);
    for (size_t i = 1; i < ix->count; i++)
        if (strcmp(ix->by_name[i - 1]->name, ix->by_name[i]->name) == 0)
            return srp_fail(SRP_ERR_FORMAT, "%s: the tensor name \"%s\" appears twice in the file",
                            call, ix->by_name[i]->name);
    return SRP_OK;
}

static int name_vs_tensor(const void *key, const void *item)
{
    return strcmp(key, (*(const srp_file_tensor *const *)item)->name);
}

const srp_file_tensor *srp_file_index_find(const srp_file_index *ix, const char *name)
{
    if (ix->count == 0) /* by_name may be NULL: bsearch takes no NULL */
        return NULL;
    const srp_file_tensor *const *t =
        bsearch(name, ix->by_name, ix->count, sizeof(*ix->by_name), name_vs_tensor);
    return t ? *t : NULL;
}

/* "tensor not found: NAME", and the list's other names missing from the
 * file after it, as many as fit. */
static srp_status not_found(const srp_file_index *ix, const srp_tensor_ref *refs, size_t count,
                            size_t first)
{
    srp_detail_list more;
    srp_detail_list_init(&more);
    for (size_t i = first + 1; i < count; i++)
        if (!srp_file_index_find(ix, refs[i].name))
            srp_detail_list_add(&more, refs[i].name);
    if (more.items == 0)
        return srp_fail(SRP_ERR_NOT_FOUND, "tensor not found: %s", refs[first].name);
    return srp_fail(SRP_ERR_NOT_FOUND, "tensor not found: %s (nor %zu more of the list: %s)",
                    refs[first].name, more.items, srp_detail_list_text(&more));
}

/* The file's tensors that refs[0..count) (all found) do not name. */
static srp_status unexpected(const srp_file_index *ix, const srp_tensor_ref *refs, size_t count,
                             const char *call)
{
    const size_t extra = ix->count - count;
    unsigned char *asked = calloc(ix->count, 1);
    if (!asked)
        return srp_fail(SRP_ERR_SHAPE,
                        "%s: the file holds %zu tensors that the list does not ask for "
                        "(strict read)",
                        call, extra);
    for (size_t i = 0; i < count; i++)
        asked[srp_file_index_find(ix, refs[i].name) - ix->tensors] = 1;
    srp_detail_list names;
    srp_detail_list_init(&names);
    for (size_t i = 0; i < ix->count; i++)
        if (!asked[i])
            srp_detail_list_add(&names, ix->tensors[i].name);
    free(asked);
    return srp_fail(SRP_ERR_SHAPE,
                    "%s: the file holds %zu tensor%s that the list does not ask for (strict "
                    "read): %s",
                    call, extra, extra == 1 ? "" : "s", srp_detail_list_text(&names));
}

srp_status srp_file_index_read(const srp_file_index *ix, const unsigned char *file,
                               const srp_tensor_ref *refs, size_t count, int strict,
                               const char *call)
{
    srp_status st = srp_tensor_refs_check(refs, count, call);
    if (st != SRP_OK)
        return st;
    /* Every requested tensor present and alike before anything is copied. */
    for (size_t i = 0; i < count; i++) {
        const srp_file_tensor *t = srp_file_index_find(ix, refs[i].name);
        if (!t)
            return not_found(ix, refs, count, i);
        uint64_t shape[SRP_TENSOR_MAX_NDIM];
        srp_ref_shape(&refs[i], shape);
        if (t->dtype != refs[i].dtype || t->ndim != refs[i].ndim ||
            memcmp(t->shape, shape, sizeof(shape)) != 0) {
            char in_file[SRP_SHAPE_STR_MAX], asked[SRP_SHAPE_STR_MAX];
            return srp_fail(SRP_ERR_SHAPE, "%s: tensor %s is %s %s in the file, the list asks for %s %s",
                            call, t->name, srp_dtype_str(t->dtype),
                            srp_shape_str(in_file, t->ndim, t->shape), srp_dtype_str(refs[i].dtype),
                            srp_shape_str(asked, refs[i].ndim, shape));
        }
    }
    /* The names are unique on both sides, so count < ix->count means that
     * some of the file's tensors were not asked for. */
    if (strict && count != ix->count)
        return unexpected(ix, refs, count, call);
    for (size_t i = 0; i < count; i++) {
        const srp_file_tensor *t = srp_file_index_find(ix, refs[i].name);
        srp_copy_little_endian(refs[i].data, file + t->offset, (size_t)t->bytes,
                               srp_dtype_size(t->dtype));
    }
    return SRP_OK;
}

/* ======================================================================
 * Metadata
 * ====================================================================== */

srp_status srp_metadata_reserve(srp_metadata *m, size_t n, size_t text_bytes)
{
    m->pairs = calloc(n > 0 ? n : 1, sizeof(*m->pairs));
    m->text = malloc(text_bytes > 0 ? text_bytes : 1);
    m->count = m->text_used = 0;
    return m->pairs && m->text ? SRP_OK : SRP_ERR_NOMEM;
}

/* A copy of s[0..len) and a NUL, in the text block. */
static char *copy_string(srp_metadata *m, const char *s, size_t len)
{
    char *c = m->text + m->text_used;
    memcpy(c, s, len);
    c[len] = 0;
    m->text_used += len + 1;
    return c;
}

void srp_metadata_append(srp_metadata *m, const char *key, size_t key_len, const char *value,
                         size_t value_len)
{
    m->pairs[m->count].key = copy_string(m, key, key_len);
    m->pairs[m->count].value = copy_string(m, value, value_len);
    m->count++;
}

static int pair_by_key(const void *pa, const void *pb)
{
    return strcmp(((const srp_metadata_pair *)pa)->key, ((const srp_metadata_pair *)pb)->key);
}

srp_status srp_metadata_sort(srp_metadata *m, const char *call)
{
    qsort(m->pairs, m->count, sizeof(*m->pairs), pair_by_key);
    for (size_t i = 1; i < m->count; i++)
        if (strcmp(m->pairs[i - 1].key, m->pairs[i].key) == 0)
            return srp_fail(SRP_ERR_FORMAT, "%s: the metadata key \"%s\" appears twice in the file",
                            call, m->pairs[i].key);
    return SRP_OK;
}

static int key_vs_pair(const void *key, const void *item)
{
    return strcmp(key, ((const srp_metadata_pair *)item)->key);
}

const char *srp_metadata_get(const srp_metadata *m, const char *key)
{
    if (m->count == 0) /* pairs may be NULL: bsearch takes no NULL */
        return NULL;
    const srp_metadata_pair *p = bsearch(key, m->pairs, m->count, sizeof(*m->pairs), key_vs_pair);
    return p ? p->value : NULL;
}

srp_status srp_metadata_check(const srp_metadata *m, const char *const *expected, size_t count,
                              const char *call)
{
    srp_status st = srp_metadata_args_check(expected, count, 0, SIZE_MAX, call);
    if (st != SRP_OK)
        return st;
    srp_detail_list differ;
    srp_detail_list_init(&differ);
    for (size_t i = 0; i < count; i++) {
        const char *key = expected[2 * i], *want = expected[2 * i + 1];
        const char *got = srp_metadata_get(m, key);
        if (got && strcmp(got, want) == 0)
            continue;
        char item[SRP_ERROR_DETAIL_MAX];
        if (got)
            snprintf(item, sizeof(item), "%s is %s in the file, %s here", key, got, want);
        else
            snprintf(item, sizeof(item), "%s is not in the file (%s here)", key, want);
        srp_detail_list_add(&differ, item);
    }
    if (differ.items == 0)
        return SRP_OK;
    return srp_fail(SRP_ERR_SHAPE, "%s: the file's metadata differs in %zu field%s: %s", call,
                    differ.items, differ.items == 1 ? "" : "s", srp_detail_list_text(&differ));
}

srp_status srp_metadata_args_check(const char *const *metadata, size_t count, size_t min_key,
                                   size_t max_key, const char *call)
{
    if (count == 0)
        return SRP_OK;
    if (!metadata)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: the (key, value) array is NULL, count %zu",
                        call, count);
    for (size_t i = 0; i < count; i++) {
        const char *key = metadata[2 * i], *value = metadata[2 * i + 1];
        if (!key || !value)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: metadata pair %zu has a NULL %s", call, i,
                            key ? "value" : "key");
        const size_t len = strlen(key);
        if (len < min_key || len > max_key)
            return srp_fail(SRP_ERR_INVALID_ARG,
                            "%s: metadata key \"%.64s\" is %zu bytes, not in %zu..%zu", call, key,
                            len, min_key, max_key);
    }
    /* The pairs are items of two strings, each starting with its key. */
    size_t a = 0, b = 0;
    const srp_status st = srp_unique_names(metadata, count, 2 * sizeof(*metadata), &a, &b);
    if (st != SRP_ERR_INVALID_ARG)
        return st;
    return srp_fail(st, "%s: metadata key \"%.64s\" is given twice", call, metadata[2 * a]);
}

/* Everything f holds freed; f empty again. */
static void free_named_file(srp_named_file *f)
{
    free(f->index.tensors);
    free(f->index.by_name);
    free(f->metadata.pairs);
    free(f->metadata.text);
    free(f->names);
    free(f->file);
    memset(f, 0, sizeof(*f));
}

/* path read whole into f (empty) and parsed; on failure f is empty again. */
static srp_status read_named_file(srp_named_file *f, const char *path, srp_named_file_parser parse,
                                  const char *call)
{
    if (!path)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: path is NULL", call);
    size_t size = 0;
    srp_status st = srp_read_whole_file(path, &f->file, &size, call);
    if (st == SRP_OK)
        st = parse(f, size, call);
    if (st != SRP_OK)
        free_named_file(f);
    return st;
}

void *srp_named_file_open(size_t object_size, const char *path, srp_named_file_parser parse,
                          const char *call, srp_status *st)
{
    srp_named_file *f = calloc(1, object_size);
    *st = f ? read_named_file(f, path, parse, call) : SRP_ERR_NOMEM;
    if (*st == SRP_OK)
        return f;
    free(f);
    return NULL;
}

void srp_named_file_close(srp_named_file *f)
{
    if (f)
        free_named_file(f);
    free(f);
}

srp_status srp_named_file_info(const srp_named_file *f, size_t i, srp_tensor_ref *info,
                               const char *call)
{
    if (i >= f->index.count)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: i %zu >= count %zu", call, i, f->index.count);
    const srp_file_tensor *t = &f->index.tensors[i];
    memset(info, 0, sizeof(*info));
    info->name = t->name;
    info->dtype = t->dtype;
    info->ndim = t->ndim;
    for (size_t k = 0; k < SRP_TENSOR_MAX_NDIM; k++)
        info->shape[k] = (size_t)t->shape[k];
    return SRP_OK;
}

srp_status srp_named_file_load(const char *path, srp_named_file_parser parse,
                               const srp_tensor_ref *refs, size_t count, int strict,
                               const char *call)
{
    srp_named_file f = {0};
    srp_status st = read_named_file(&f, path, parse, call);
    if (st == SRP_OK)
        st = srp_file_index_read(&f.index, f.file, refs, count, strict, call);
    free_named_file(&f);
    return st;
}
