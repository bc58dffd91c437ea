/* safetensors files (the layout is in safetensors.h): the header is JSON,
 * written and parsed with cJSON; the data go through tensor_file.c's
 * writer and little-endian copies.
 *
 * Open reads the whole file, parses the header, checks every entry (dtype,
 * shape, offsets as exact integers, bytes = elements x dtype size) and then
 * that the tensors, sorted by offset, tile the data exactly. Only a file
 * that passes all of it becomes an srp_safetensors; its tensors and
 * metadata are then looked up and read through file_index.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

#define METADATA_KEY "__metadata__"
#define HEADER_ALIGN 8 /* the header is padded with spaces to a multiple of 8 */
/* Sizes and offsets are JSON numbers, i.e. doubles: whole numbers up to
 * 2^53 are exact. */
#define MAX_EXACT_INTEGER ((uint64_t)1 << 53)

struct srp_safetensors {
    srp_named_file named; /* first: file_index.c opens and closes it */
};

/* ---- dtypes ---- */

static const struct {
    const char *name;
    srp_dtype dtype;
} k_dtypes[] = {{"F32", SRP_DTYPE_F32},
                {"F64", SRP_DTYPE_F64},
                {"I64", SRP_DTYPE_I64},
                {"U64", SRP_DTYPE_U64},
                {"U8", SRP_DTYPE_U8}};

/* safetensors dtypes this library has no srp_dtype for, with their sizes
 * (a file holding them is checked whole, then refused as unsupported). */
static const struct {
    const char *name;
    size_t size;
} k_other_dtypes[] = {{"BOOL", 1},    {"I8", 1},      {"U16", 2},     {"I16", 2},
                      {"F16", 2},     {"BF16", 2},    {"U32", 4},     {"I32", 4},
                      {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1}, {"C64", 8}};

static const char *dtype_name(srp_dtype d)
{
    for (size_t i = 0; i < sizeof(k_dtypes) / sizeof(k_dtypes[0]); i++)
        if (k_dtypes[i].dtype == d)
            return k_dtypes[i].name;
    return NULL;
}

/* The element size of a dtype name, 0 when the format has no such dtype;
 * *d: the library's dtype, 0 when it has none. */
static size_t parse_dtype(const char *s, srp_dtype *d)
{
    *d = (srp_dtype)0;
    for (size_t i = 0; i < sizeof(k_dtypes) / sizeof(k_dtypes[0]); i++)
        if (strcmp(s, k_dtypes[i].name) == 0) {
            *d = k_dtypes[i].dtype;
            return srp_dtype_size(*d);
        }
    for (size_t i = 0; i < sizeof(k_other_dtypes) / sizeof(k_other_dtypes[0]); i++)
        if (strcmp(s, k_other_dtypes[i].name) == 0)
            return k_other_dtypes[i].size;
    return 0;
}

/* ======================================================================
 * Save
 * ====================================================================== */

/* The JSON header for refs, or NULL when out of memory. */
static char *build_header(const srp_tensor_ref *refs, size_t count, const char *const *metadata,
                          size_t metadata_count)
{
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok && metadata_count > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, METADATA_KEY);
        ok = meta != NULL;
        for (size_t i = 0; ok && i < metadata_count; i++)
            ok = cJSON_AddStringToObject(meta, metadata[2 * i], metadata[2 * i + 1]) != NULL;
    }
    uint64_t at = 0;
    for (size_t i = 0; ok && i < count; i++) {
        const srp_tensor_ref *r = &refs[i];
        int fits = 1;
        const uint64_t bytes = srp_ref_bytes(r, &fits); /* checked by the caller */
        /* The keys in the order the reference implementation writes them. */
        cJSON *t = cJSON_AddObjectToObject(root, r->name);
        ok = t && cJSON_AddStringToObject(t, "dtype", dtype_name(r->dtype));
        cJSON *shape = ok ? cJSON_AddArrayToObject(t, "shape") : NULL;
        ok = shape != NULL;
        for (size_t k = 0; ok && k < r->ndim; k++) {
            cJSON *dim = cJSON_CreateNumber((double)r->shape[k]);
            ok = dim && cJSON_AddItemToArray(shape, dim);
        }
        cJSON *offsets = ok ? cJSON_AddArrayToObject(t, "data_offsets") : NULL;
        cJSON *b = cJSON_CreateNumber((double)at), *e = cJSON_CreateNumber((double)(at + bytes));
        ok = offsets && b && e;
        if (ok) {
            cJSON_AddItemToArray(offsets, b);
            cJSON_AddItemToArray(offsets, e);
        } else {
            cJSON_Delete(b);
            cJSON_Delete(e);
        }
        at += bytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

typedef struct {
    const srp_tensor_ref *refs;
    size_t count;
    const char *header;
    size_t header_len, padded_len;
} safetensors_plan;

static void write_safetensors(srp_file_writer *w, const void *ctx)
{
    const safetensors_plan *p = ctx;
    unsigned char n[8];
    srp_put_u64_le(n, p->padded_len);
    srp_writer_put(w, n, 8);
    srp_writer_put(w, p->header, p->header_len);
    for (size_t i = p->header_len; i < p->padded_len; i++)
        srp_writer_put(w, " ", 1);
    for (size_t i = 0; i < p->count; i++) {
        int ok = 1;
        srp_writer_put_tensor(w, &p->refs[i], (size_t)srp_ref_bytes(&p->refs[i], &ok));
    }
}

srp_status srp_safetensors_save(const char *path, const srp_tensor_ref *refs, size_t count,
                                const char *const *metadata, size_t metadata_count)
{
    static const char call[] = "srp_safetensors_save";
    if (!path || !path[0])
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: path is %s", call, path ? "empty" : "NULL");
    srp_status st = srp_tensor_refs_check(refs, count, call);
    if (st == SRP_OK)
        st = srp_metadata_args_check(metadata, metadata_count, 0, SIZE_MAX, call);
    if (st != SRP_OK)
        return st;
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++) {
        int ok = 1;
        const uint64_t bytes = srp_ref_bytes(&refs[i], &ok);
        if (strcmp(refs[i].name, METADATA_KEY) == 0)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: refs[%zu] is named %s, the format's "
                            "metadata key", call, i, METADATA_KEY);
        if (bytes > MAX_EXACT_INTEGER - total)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: the data pass 2^53 bytes at tensor %s "
                            "(offsets are JSON numbers)", call, refs[i].name);
        total += bytes;
    }
    char *header = build_header(refs, count, metadata, metadata_count);
    if (!header)
        return SRP_ERR_NOMEM;
    const size_t len = strlen(header);
    const size_t padded = (len + HEADER_ALIGN - 1) / HEADER_ALIGN * HEADER_ALIGN;
    if (padded > SRP_SAFETENSORS_MAX_HEADER) {
        cJSON_free(header);
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: the header would take %zu bytes > %u (the "
                        "format's limit)", call, padded, SRP_SAFETENSORS_MAX_HEADER);
    }
    const safetensors_plan plan = {refs, count, header, len, padded};
    st = srp_save_atomically(path, write_safetensors, &plan, call);
    cJSON_free(header);
    return st;
}

/* ======================================================================
 * Open
 * ====================================================================== */

/* A JSON number that is a whole number in [0, 2^53]. */
static int exact_count(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return 0;
    const double d = j->valuedouble;
    if (!(d >= 0.0 && d <= (double)MAX_EXACT_INTEGER) || floor(d) != d)
        return 0;
    *out = (uint64_t)d;
    return 1;
}

/* SRP_ERR_FORMAT: tensor `name`'s entry in the header is wrong in `what`. */
static srp_status entry_fail(const char *call, const char *name, const char *what)
{
    return srp_fail(SRP_ERR_FORMAT, "%s: the header's entry for tensor \"%.200s\": %s", call,
                    name, what);
}

/* One tensor's entry (the JSON item t) into *e, its offsets from the start
 * of the data; e->name is set by the caller. *supported = 0 for a valid
 * entry this library cannot read (another dtype, more than 4 dimensions):
 * e->dtype is then 0. */
static srp_status parse_entry(const cJSON *t, srp_file_tensor *e, int *supported, const char *call)
{
    const char *name = t->string;
    if (!cJSON_IsObject(t) || cJSON_GetArraySize(t) != 3)
        return entry_fail(call, name, "not an object of the three keys dtype, shape, data_offsets");
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets) ||
        cJSON_GetArraySize(offsets) != 2)
        return entry_fail(call, name, "wants a dtype string, a shape array and two data_offsets");
    srp_dtype d;
    const size_t elem = parse_dtype(dtype->valuestring, &d);
    if (elem == 0)
        return entry_fail(call, name, "unknown dtype");
    uint64_t dims[SRP_TENSOR_MAX_NDIM] = {0}, bytes = elem, begin, end;
    size_t ndim = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape)
    {
        uint64_t n;
        if (!exact_count(dim, &n))
            return entry_fail(call, name, "a dimension is not a whole number in 0..2^53");
        if (n != 0 && bytes > UINT64_MAX / n)
            return entry_fail(call, name, "the shape's size overflows");
        bytes *= n;
        if (ndim < SRP_TENSOR_MAX_NDIM)
            dims[ndim] = n;
        ndim++;
    }
    if (!exact_count(offsets->child, &begin) || !exact_count(offsets->child->next, &end))
        return entry_fail(call, name, "an offset is not a whole number in 0..2^53");
    if (begin > end || end - begin != bytes) {
        char what[160];
        snprintf(what, sizeof(what), "data_offsets [%llu, %llu] hold %s bytes, dtype and shape "
                 "make %llu", (unsigned long long)begin, (unsigned long long)end,
                 begin > end ? "negative" : "other", (unsigned long long)bytes);
        return entry_fail(call, name, what);
    }
    *supported = d != 0 && ndim <= SRP_TENSOR_MAX_NDIM;
    e->dtype = *supported ? d : (srp_dtype)0;
    e->ndim = ndim;
    memcpy(e->shape, dims, sizeof(dims));
    e->offset = begin;
    e->bytes = bytes;
    return SRP_OK;
}

static srp_status parse_metadata(const cJSON *m, srp_named_file *f, const char *call)
{
    if (!cJSON_IsObject(m))
        return srp_fail(SRP_ERR_FORMAT, "%s: %s is not an object", call, METADATA_KEY);
    size_t pairs = 0, text = 0;
    for (const cJSON *kv = m->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return srp_fail(SRP_ERR_FORMAT, "%s: %s[\"%.200s\"] is not a string", call,
                            METADATA_KEY, kv->string);
        pairs++;
        text += strlen(kv->string) + strlen(kv->valuestring) + 2;
    }
    const srp_status st = srp_metadata_reserve(&f->metadata, pairs, text);
    if (st != SRP_OK)
        return st;
    for (const cJSON *kv = m->child; kv; kv = kv->next)
        srp_metadata_append(&f->metadata, kv->string, strlen(kv->string), kv->valuestring,
                            strlen(kv->valuestring));
    /* Sorting finds a key given twice in O(n log n): a header within the
     * limit may hold millions of keys. */
    return srp_metadata_sort(&f->metadata, call);
}

static int by_offset(const void *pa, const void *pb)
{
    const srp_file_tensor *a = pa, *b = pb;
    if (a->offset != b->offset)
        return a->offset < b->offset ? -1 : 1;
    return a->bytes < b->bytes ? -1 : (a->bytes > b->bytes ? 1 : 0);
}

/* The items of the header's object: the tensors into f->index (offsets
 * still from the start of the data), the metadata into f->metadata.
 * *unsupported: a tensor this library cannot read. */
static srp_status parse_items(const cJSON *root, srp_named_file *f, int *unsupported,
                              const char *call)
{
    const size_t items = (size_t)cJSON_GetArraySize(root);
    srp_file_index *ix = &f->index;
    ix->tensors = calloc(items > 0 ? items : 1, sizeof(*ix->tensors));
    size_t name_bytes = 0; /* the names, a NUL each, in one block */
    for (const cJSON *item = root->child; item; item = item->next)
        name_bytes += strcmp(item->string, METADATA_KEY) != 0 ? strlen(item->string) + 1 : 0;
    f->names = malloc(name_bytes > 0 ? name_bytes : 1);
    if (!ix->tensors || !f->names)
        return SRP_ERR_NOMEM;
    char *name = f->names;
    int seen_metadata = 0;
    srp_status st = SRP_OK;
    for (const cJSON *item = root->child; st == SRP_OK && item; item = item->next) {
        if (strcmp(item->string, METADATA_KEY) == 0) {
            st = seen_metadata ? srp_fail(SRP_ERR_FORMAT, "%s: %s appears twice", call,
                                          METADATA_KEY)
                               : parse_metadata(item, f, call);
            seen_metadata = 1;
            continue;
        }
        if (item->string[0] == 0)
            return srp_fail(SRP_ERR_FORMAT, "%s: a tensor's name is empty", call);
        srp_file_tensor *e = &ix->tensors[ix->count];
        int supported = 1;
        st = parse_entry(item, e, &supported, call);
        if (st == SRP_OK && !supported && !*unsupported)
            srp_fail(SRP_ERR_UNSUPPORTED, "%s: tensor %.200s is %s with %zu dimensions; this "
                     "library reads F32, F64, I64, U64, U8 of at most %d", call, item->string,
                     cJSON_GetObjectItemCaseSensitive(item, "dtype")->valuestring, e->ndim,
                     SRP_TENSOR_MAX_NDIM);
        *unsupported |= !supported;
        if (st == SRP_OK) {
            const size_t bytes = strlen(item->string) + 1;
            memcpy(name, item->string, bytes);
            e->name = name;
            name += bytes;
            ix->count++;
        }
    }
    return st;
}

/* Everything after the file is in memory (an srp_named_file_parser). */
static srp_status parse_file(srp_named_file *f, size_t size, const char *call)
{
    if (size < 8)
        return srp_fail(SRP_ERR_FORMAT, "%s: %zu bytes, fewer than the 8 of the header's "
                        "length", call, size);
    const uint64_t n = srp_get_u64_le(f->file);
    if (n < 2 || n > SRP_SAFETENSORS_MAX_HEADER || n > size - 8)
        return srp_fail(SRP_ERR_FORMAT, "%s: the header's length (the first 8 bytes) is %llu: "
                        "%s", call, (unsigned long long)n,
                        n < 2 ? "too short for an object"
                              : (n > SRP_SAFETENSORS_MAX_HEADER ? "above the format's limit"
                                                                : "past the end of the file"));
    if (f->file[8] != '{')
        return srp_fail(SRP_ERR_FORMAT, "%s: the header (offset 8) does not start with '{'",
                        call);
    const char *text = (const char *)f->file + 8, *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        /* cJSON points end at a parse error (not at the global error
         * pointer, which threads would share). */
        const size_t at = !root && end ? (size_t)(end - text) : 0;
        cJSON_Delete(root);
        return srp_fail(SRP_ERR_FORMAT, "%s: the header is not a JSON object (%s near offset %zu)",
                        call, root ? "another value" : "a syntax error", at + 8);
    }
    srp_status st = SRP_OK;
    /* After the object, only padding: writers pad with spaces, and the
     * reference reader takes any JSON whitespace. */
    for (const char *p = end; st == SRP_OK && p < text + n; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
            st = srp_fail(SRP_ERR_FORMAT, "%s: the header holds more than its object (offset "
                          "%zu)", call, (size_t)(p - (const char *)f->file));
    int unsupported = 0;
    if (st == SRP_OK)
        st = parse_items(root, f, &unsupported, call);
    cJSON_Delete(root);
    if (st != SRP_OK)
        return st;

    /* The tensors tile the data: sorted by offset, each begins where the
     * one before ended, and the last ends at the end of the file. */
    srp_file_index *ix = &f->index;
    qsort(ix->tensors, ix->count, sizeof(*ix->tensors), by_offset);
    const uint64_t data_size = size - 8 - n;
    uint64_t at = 0;
    for (size_t i = 0; i < ix->count; i++) {
        if (ix->tensors[i].offset != at)
            return srp_fail(SRP_ERR_FORMAT, "%s: tensor %s's data begins at %llu, the data "
                            "before it end at %llu (a gap or an overlap)", call,
                            ix->tensors[i].name, (unsigned long long)ix->tensors[i].offset,
                            (unsigned long long)at);
        at += ix->tensors[i].bytes;
    }
    if (at != data_size)
        return srp_fail(SRP_ERR_FORMAT, "%s: the tensors' data end at %llu, the file's at %llu",
                        call, (unsigned long long)at, (unsigned long long)data_size);
    for (size_t i = 0; i < ix->count; i++)
        ix->tensors[i].offset += 8 + n; /* from the start of the file */
    st = srp_file_index_sort(ix, call);
    if (st == SRP_OK && unsupported)
        st = SRP_ERR_UNSUPPORTED; /* its detail was left when it was found */
    return st;
}

void srp_safetensors_close(srp_safetensors *f) { srp_named_file_close(f ? &f->named : NULL); }

srp_status srp_safetensors_open(srp_safetensors **out, const char *path)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    srp_status st;
    *out = srp_named_file_open(sizeof(**out), path, parse_file, "srp_safetensors_open", &st);
    return st;
}

/* ======================================================================
 * Queries and reads
 * ====================================================================== */

size_t srp_safetensors_count(const srp_safetensors *f) { return f ? f->named.index.count : 0; }

srp_status srp_safetensors_info(const srp_safetensors *f, size_t i, srp_tensor_ref *info)
{
    return f && info ? srp_named_file_info(&f->named, i, info, __func__) : SRP_FAIL_NULL(f, info);
}

size_t srp_safetensors_metadata_count(const srp_safetensors *f)
{
    return f ? f->named.metadata.count : 0;
}

const char *srp_safetensors_metadata(const srp_safetensors *f, const char *key)
{
    return f && key ? srp_metadata_get(&f->named.metadata, key) : NULL;
}

srp_status srp_safetensors_check_metadata(const srp_safetensors *f, const char *const *expected,
                                          size_t count)
{
    return f ? srp_metadata_check(&f->named.metadata, expected, count, __func__) : SRP_FAIL_NULL(f);
}

srp_status srp_safetensors_read(const srp_safetensors *f, const srp_tensor_ref *refs, size_t count)
{
    return f ? srp_file_index_read(&f->named.index, f->named.file, refs, count, 0, __func__)
             : SRP_FAIL_NULL(f);
}

srp_status srp_safetensors_read_strict(const srp_safetensors *f, const srp_tensor_ref *refs,
                                       size_t count)
{
    return f ? srp_file_index_read(&f->named.index, f->named.file, refs, count, 1, __func__)
             : SRP_FAIL_NULL(f);
}

srp_status srp_safetensors_load(const char *path, const srp_tensor_ref *refs, size_t count)
{
    return srp_named_file_load(path, parse_file, refs, count, 0, "srp_safetensors_load");
}

srp_status srp_safetensors_load_strict(const char *path, const srp_tensor_ref *refs, size_t count)
{
    return srp_named_file_load(path, parse_file, refs, count, 1, "srp_safetensors_load_strict");
}
