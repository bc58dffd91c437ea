/* safetensors files (the layout is in safetensors.h): the header is JSON,
 * written and parsed with cJSON; the data go through tensor_file.c's
 * writer and little-endian copies.
 *
 * Open reads the whole file, parses the header, checks every entry (dtype,
 * shape, offsets as exact integers, bytes = elements x dtype size) and then
 * that the tensors, sorted by offset, tile the data exactly. Only a file
 * that passes all of it becomes an srp_safetensors. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

#define METADATA_KEY "__metadata__"
#define HEADER_ALIGN 8 /* the header is padded with spaces to a multiple of 8 */
/* Sizes and offsets are JSON numbers, i.e. doubles: whole numbers up to
 * 2^53 are exact. */
#define MAX_EXACT_INTEGER ((uint64_t)1 << 53)

typedef struct {
    char *name;
    srp_dtype dtype;
    size_t ndim;
    size_t shape[SRP_TENSOR_MAX_NDIM];
    uint64_t begin, end; /* into the data */
} st_entry;

struct srp_safetensors {
    unsigned char *file; /* the whole file */
    const unsigned char *data;
    st_entry *entries; /* sorted by begin */
    size_t count;
    const st_entry **by_name; /* the entries sorted by name */
    char **metadata;          /* key, value, key, value, ... */
    size_t metadata_count;
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
    if (!path || !path[0] || (metadata_count > 0 && !metadata))
        return SRP_ERR_INVALID_ARG;
    srp_status st = srp_tensor_refs_check(refs, count);
    if (st != SRP_OK)
        return st;
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++) {
        int ok = 1;
        const uint64_t bytes = srp_ref_bytes(&refs[i], &ok);
        if (strcmp(refs[i].name, METADATA_KEY) == 0 || bytes > MAX_EXACT_INTEGER - total)
            return SRP_ERR_INVALID_ARG;
        total += bytes;
    }
    for (size_t i = 0; i < metadata_count; i++) {
        if (!metadata[2 * i] || !metadata[2 * i + 1])
            return SRP_ERR_INVALID_ARG;
        for (size_t j = 0; j < i; j++)
            if (strcmp(metadata[2 * j], metadata[2 * i]) == 0)
                return SRP_ERR_INVALID_ARG;
    }
    char *header = build_header(refs, count, metadata, metadata_count);
    if (!header)
        return SRP_ERR_NOMEM;
    const size_t len = strlen(header);
    const size_t padded = (len + HEADER_ALIGN - 1) / HEADER_ALIGN * HEADER_ALIGN;
    if (padded > SRP_SAFETENSORS_MAX_HEADER) {
        cJSON_free(header);
        return SRP_ERR_INVALID_ARG;
    }
    const safetensors_plan plan = {refs, count, header, len, padded};
    st = srp_save_atomically(path, write_safetensors, &plan);
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

/* One tensor's entry; e->name is set by the caller. *supported = 0 for
 * a valid entry this library cannot read (another dtype, more than 4
 * dimensions): e->dtype is then 0. */
static srp_status parse_entry(const cJSON *t, st_entry *e, int *supported)
{
    if (!cJSON_IsObject(t) || cJSON_GetArraySize(t) != 3)
        return SRP_ERR_FORMAT;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets) ||
        cJSON_GetArraySize(offsets) != 2)
        return SRP_ERR_FORMAT;
    srp_dtype d;
    const size_t elem = parse_dtype(dtype->valuestring, &d);
    if (elem == 0)
        return SRP_ERR_FORMAT;
    uint64_t dims[SRP_TENSOR_MAX_NDIM] = {0}, bytes = elem;
    size_t ndim = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape)
    {
        uint64_t n;
        if (!exact_count(dim, &n) || (n != 0 && bytes > UINT64_MAX / n))
            return SRP_ERR_FORMAT;
        bytes *= n;
        if (ndim < SRP_TENSOR_MAX_NDIM)
            dims[ndim] = n;
        ndim++;
    }
    if (!exact_count(offsets->child, &e->begin) || !exact_count(offsets->child->next, &e->end) ||
        e->begin > e->end || e->end - e->begin != bytes)
        return SRP_ERR_FORMAT;
    *supported = d != 0 && ndim <= SRP_TENSOR_MAX_NDIM;
    e->dtype = *supported ? d : (srp_dtype)0;
    e->ndim = ndim;
    for (size_t k = 0; k < SRP_TENSOR_MAX_NDIM; k++)
        e->shape[k] = (size_t)dims[k];
    return SRP_OK;
}

static srp_status parse_metadata(const cJSON *m, srp_safetensors *f)
{
    if (!cJSON_IsObject(m))
        return SRP_ERR_FORMAT;
    const size_t n = (size_t)cJSON_GetArraySize(m);
    f->metadata = calloc(2 * n + 1, sizeof(char *));
    if (!f->metadata)
        return SRP_ERR_NOMEM;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, m)
    {
        if (!cJSON_IsString(kv))
            return SRP_ERR_FORMAT;
        for (size_t i = 0; i < f->metadata_count; i++)
            if (strcmp(f->metadata[2 * i], kv->string) == 0)
                return SRP_ERR_FORMAT; /* a duplicate key */
        char *key = strdup(kv->string), *value = strdup(kv->valuestring);
        f->metadata[2 * f->metadata_count] = key;
        f->metadata[2 * f->metadata_count + 1] = value;
        f->metadata_count++;
        if (!key || !value)
            return SRP_ERR_NOMEM;
    }
    return SRP_OK;
}

static int by_begin(const void *pa, const void *pb)
{
    const st_entry *a = pa, *b = pb;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    return a->end < b->end ? -1 : (a->end > b->end ? 1 : 0);
}

static int by_name(const void *pa, const void *pb)
{
    return strcmp((*(const st_entry *const *)pa)->name, (*(const st_entry *const *)pb)->name);
}

/* Everything after the file is in memory. */
static srp_status parse_file(srp_safetensors *f, size_t size)
{
    if (size < 8)
        return SRP_ERR_FORMAT;
    const uint64_t n = srp_get_u64_le(f->file);
    if (n < 2 || n > SRP_SAFETENSORS_MAX_HEADER || n > size - 8 || f->file[8] != '{')
        return SRP_ERR_FORMAT;
    const char *text = (const char *)f->file + 8, *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    if (!root)
        return SRP_ERR_FORMAT;
    srp_status st = cJSON_IsObject(root) ? SRP_OK : SRP_ERR_FORMAT;
    /* After the object, only padding: writers pad with spaces, and the
     * reference reader takes any JSON whitespace. */
    for (const char *p = end; st == SRP_OK && p < text + n; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
            st = SRP_ERR_FORMAT;

    const size_t items = st == SRP_OK ? (size_t)cJSON_GetArraySize(root) : 0;
    if (st == SRP_OK) {
        f->entries = calloc(items > 0 ? items : 1, sizeof(st_entry));
        if (!f->entries)
            st = SRP_ERR_NOMEM;
    }
    const cJSON *item = st == SRP_OK ? root->child : NULL;
    int seen_metadata = 0, unsupported = 0;
    for (; st == SRP_OK && item; item = item->next) {
        if (strcmp(item->string, METADATA_KEY) == 0) {
            st = seen_metadata ? SRP_ERR_FORMAT : parse_metadata(item, f);
            seen_metadata = 1;
            continue;
        }
        st_entry *e = &f->entries[f->count];
        if (item->string[0] == 0) {
            st = SRP_ERR_FORMAT;
            break;
        }
        int supported = 1;
        st = parse_entry(item, e, &supported);
        unsupported |= !supported;
        if (st == SRP_OK) {
            e->name = strdup(item->string);
            st = e->name ? SRP_OK : SRP_ERR_NOMEM;
        }
        if (st == SRP_OK)
            f->count++;
    }
    cJSON_Delete(root);
    if (st != SRP_OK)
        return st;

    /* The tensors tile the data: sorted by offset, each begins where the
     * one before ended, and the last ends at the end of the file. */
    qsort(f->entries, f->count, sizeof(st_entry), by_begin);
    const uint64_t data_size = size - 8 - n;
    uint64_t at = 0;
    for (size_t i = 0; i < f->count; i++) {
        if (f->entries[i].begin != at)
            return SRP_ERR_FORMAT;
        at = f->entries[i].end;
    }
    if (at != data_size)
        return SRP_ERR_FORMAT;
    f->data = f->file + 8 + n;

    f->by_name = malloc(sizeof(*f->by_name) * (f->count > 0 ? f->count : 1));
    if (!f->by_name)
        return SRP_ERR_NOMEM;
    for (size_t i = 0; i < f->count; i++)
        f->by_name[i] = &f->entries[i];
    qsort(f->by_name, f->count, sizeof(*f->by_name), by_name);
    for (size_t i = 1; i < f->count; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            return SRP_ERR_FORMAT; /* a duplicate name */
    return unsupported ? SRP_ERR_UNSUPPORTED : SRP_OK;
}

void srp_safetensors_close(srp_safetensors *f)
{
    if (!f)
        return;
    for (size_t i = 0; f->entries && i < f->count; i++)
        free(f->entries[i].name);
    for (size_t i = 0; f->metadata && i < 2 * f->metadata_count; i++)
        free(f->metadata[i]);
    free(f->metadata);
    free(f->by_name);
    free(f->entries);
    free(f->file);
    free(f);
}

srp_status srp_safetensors_open(srp_safetensors **out, const char *path)
{
    if (!out)
        return SRP_ERR_INVALID_ARG;
    *out = NULL;
    if (!path)
        return SRP_ERR_INVALID_ARG;
    srp_safetensors *f = calloc(1, sizeof(*f));
    if (!f)
        return SRP_ERR_NOMEM;
    size_t size = 0;
    srp_status st = srp_read_whole_file(path, &f->file, &size);
    if (st == SRP_OK)
        st = parse_file(f, size);
    if (st != SRP_OK) {
        srp_safetensors_close(f);
        return st;
    }
    *out = f;
    return SRP_OK;
}

/* ======================================================================
 * Queries and reads
 * ====================================================================== */

size_t srp_safetensors_count(const srp_safetensors *f) { return f ? f->count : 0; }

srp_status srp_safetensors_info(const srp_safetensors *f, size_t i, srp_tensor_ref *info)
{
    if (!f || !info || i >= f->count)
        return SRP_ERR_INVALID_ARG;
    const st_entry *e = &f->entries[i];
    memset(info, 0, sizeof(*info));
    info->name = e->name;
    info->dtype = e->dtype;
    info->ndim = e->ndim;
    memcpy(info->shape, e->shape, sizeof(info->shape));
    return SRP_OK;
}

const char *srp_safetensors_metadata(const srp_safetensors *f, const char *key)
{
    if (!f || !key)
        return NULL;
    for (size_t i = 0; i < f->metadata_count; i++)
        if (strcmp(f->metadata[2 * i], key) == 0)
            return f->metadata[2 * i + 1];
    return NULL;
}

static const st_entry *find(const srp_safetensors *f, const char *name)
{
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const st_entry *e = f->by_name[mid];
        const int c = strcmp(name, e->name);
        if (c == 0)
            return e;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

srp_status srp_safetensors_read(const srp_safetensors *f, const srp_tensor_ref *refs, size_t count)
{
    if (!f)
        return SRP_ERR_INVALID_ARG;
    srp_status st = srp_tensor_refs_check(refs, count);
    for (size_t i = 0; st == SRP_OK && i < count; i++) {
        const st_entry *e = find(f, refs[i].name);
        if (!e)
            st = SRP_ERR_FORMAT;
        else if (e->dtype != refs[i].dtype || e->ndim != refs[i].ndim ||
                 memcmp(e->shape, refs[i].shape, e->ndim * sizeof(size_t)) != 0)
            st = SRP_ERR_SHAPE;
    }
    for (size_t i = 0; st == SRP_OK && i < count; i++) {
        const st_entry *e = find(f, refs[i].name);
        srp_copy_little_endian(refs[i].data, f->data + e->begin, (size_t)(e->end - e->begin),
                               srp_dtype_size(e->dtype));
    }
    return st;
}

srp_status srp_safetensors_load(const char *path, const srp_tensor_ref *refs, size_t count)
{
    srp_safetensors *f = NULL;
    srp_status st = srp_safetensors_open(&f, path);
    if (st == SRP_OK)
        st = srp_safetensors_read(f, refs, count);
    srp_safetensors_close(f);
    return st;
}
