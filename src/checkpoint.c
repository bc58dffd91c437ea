/* Checkpoint files: named tensors, string metadata, a CRC32 over
 * everything, atomic saves. The byte layout is docs/FORMAT.md; in short
 * (little-endian):
 *
 *     header  [40]   magic "SRPCKPT\0", u32 version, u32 flags (0),
 *                    u64 file size, u64 tensor count, u64 table size
 *             [+8]   version 2 only: u64 metadata size
 *     table          per tensor: u32 name length, u32 dtype, u32 ndim,
 *                    u32 reserved (0), u64 shape[4], u64 offset, u64 bytes,
 *                    the name, zero padding to a multiple of 8
 *     metadata       version 2 only, per pair: u32 key length, u32 value
 *                    length, the key, the value, zero padding to 8
 *     data           each tensor at its offset (a multiple of 64), in table
 *                    order, zero padding between them
 *     trailer [4]    u32 CRC-32 (zlib) of every byte before it
 *
 * A save with metadata writes version 2, one without writes version 1 (the
 * bytes of before, which older builds read); both are read.
 *
 * Save: atomically, through tensor_file.c (a crash leaves the old or the
 * new file whole). Open: the whole file is read into one buffer (its size is
 * the only bound on what is allocated), every field is checked against the
 * file's real size before it is used, then the CRC, then the table and the
 * metadata; reads then go through file_index.c, which checks the requested
 * names before anything is copied out. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define HEADER_V1 40
#define HEADER_V2 48 /* + u64 metadata size */
#define ENTRY_FIXED 64 /* table entry without its name */
#define META_FIXED 8   /* metadata entry without its key and value */
#define TRAILER_SIZE 4
#define DATA_ALIGN 64
#define MAX_KEY SRP_TENSOR_MAX_NAME

static const unsigned char MAGIC[8] = {'S', 'R', 'P', 'C', 'K', 'P', 'T', 0};

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

struct srp_checkpoint {
    srp_named_file named; /* first: file_index.c opens and closes it */
};

/* ======================================================================
 * Save
 * ====================================================================== */

/* What write_checkpoint needs besides the writer. */
typedef struct {
    const srp_tensor_ref *refs;
    size_t count;
    const char *const *metadata;
    size_t metadata_count;
    uint64_t header_size, table_size, metadata_size, data_start, file_size;
} checkpoint_plan;

/* The file's layout: its sections' sizes and where the data starts. 0 when
 * the sizes overflow. */
static int plan_layout(checkpoint_plan *p)
{
    uint64_t table = 0, meta = 0;
    for (size_t i = 0; i < p->count; i++)
        table += ENTRY_FIXED + align_up(strlen(p->refs[i].name), 8);
    for (size_t i = 0; i < p->metadata_count; i++) {
        const uint64_t kv = strlen(p->metadata[2 * i]) + (uint64_t)strlen(p->metadata[2 * i + 1]);
        if (kv > UINT32_MAX || meta > UINT64_MAX / 4)
            return 0;
        meta += META_FIXED + align_up(kv, 8);
    }
    p->header_size = p->metadata_count > 0 ? HEADER_V2 : HEADER_V1;
    p->table_size = table;
    p->metadata_size = meta;
    uint64_t at = align_up(p->header_size + table + meta, DATA_ALIGN);
    p->data_start = at;
    for (size_t i = 0; i < p->count; i++) {
        int ok = 1; /* checked by the caller */
        const uint64_t bytes = srp_ref_bytes(&p->refs[i], &ok);
        at = align_up(at, DATA_ALIGN);
        if (bytes > UINT64_MAX / 2 - at)
            return 0;
        at += bytes;
    }
    p->file_size = at + TRAILER_SIZE;
    return 1;
}

static void write_checkpoint(srp_file_writer *w, const void *ctx)
{
    const checkpoint_plan *p = ctx;
    const srp_tensor_ref *refs = p->refs;
    unsigned char h[HEADER_V2] = {0};
    memcpy(h, MAGIC, 8);
    srp_put_u32_le(h + 8, p->metadata_count > 0 ? 2 : 1);
    srp_put_u32_le(h + 12, 0);
    srp_put_u64_le(h + 16, p->file_size);
    srp_put_u64_le(h + 24, p->count);
    srp_put_u64_le(h + 32, p->table_size);
    srp_put_u64_le(h + 40, p->metadata_size);
    srp_writer_put(w, h, (size_t)p->header_size);

    uint64_t at = p->data_start;
    for (size_t i = 0; i < p->count; i++) {
        const srp_tensor_ref *r = &refs[i];
        uint64_t shape[SRP_TENSOR_MAX_NDIM];
        int ok = 1;
        srp_ref_shape(r, shape);
        const uint64_t bytes = srp_ref_bytes(r, &ok);
        const size_t len = strlen(r->name);
        unsigned char e[ENTRY_FIXED] = {0};
        at = align_up(at, DATA_ALIGN);
        srp_put_u32_le(e, (uint32_t)len);
        srp_put_u32_le(e + 4, (uint32_t)r->dtype);
        srp_put_u32_le(e + 8, (uint32_t)r->ndim);
        for (size_t k = 0; k < SRP_TENSOR_MAX_NDIM; k++)
            srp_put_u64_le(e + 16 + 8 * k, shape[k]);
        srp_put_u64_le(e + 48, at);
        srp_put_u64_le(e + 56, bytes);
        srp_writer_put(w, e, ENTRY_FIXED);
        srp_writer_put(w, r->name, len);
        srp_writer_put_zeros(w, align_up(len, 8) - len);
        at += bytes;
    }

    for (size_t i = 0; i < p->metadata_count; i++) {
        const char *key = p->metadata[2 * i], *value = p->metadata[2 * i + 1];
        const size_t klen = strlen(key), vlen = strlen(value);
        unsigned char e[META_FIXED];
        srp_put_u32_le(e, (uint32_t)klen);
        srp_put_u32_le(e + 4, (uint32_t)vlen);
        srp_writer_put(w, e, META_FIXED);
        srp_writer_put(w, key, klen);
        srp_writer_put(w, value, vlen);
        srp_writer_put_zeros(w, align_up(klen + vlen, 8) - (klen + vlen));
    }

    uint64_t pos = p->header_size + p->table_size + p->metadata_size;
    for (size_t i = 0; i < p->count; i++) {
        const srp_tensor_ref *r = &refs[i];
        int ok = 1;
        const uint64_t bytes = srp_ref_bytes(r, &ok);
        srp_writer_put_zeros(w, align_up(pos, DATA_ALIGN) - pos);
        pos = align_up(pos, DATA_ALIGN);
        srp_writer_put_tensor(w, r, (size_t)bytes);
        pos += bytes;
    }

    unsigned char t[TRAILER_SIZE];
    srp_put_u32_le(t, w->crc);
    srp_writer_put(w, t, TRAILER_SIZE);
}

static srp_status save(const char *path, const srp_tensor_ref *refs, size_t count,
                       const char *const *metadata, size_t metadata_count, const char *call)
{
    if (!path || !path[0])
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: path is %s", call, path ? "empty" : "NULL");
    srp_status st = srp_tensor_refs_check(refs, count, call);
    if (st == SRP_OK)
        st = srp_metadata_args_check(metadata, metadata_count, 1, MAX_KEY, call);
    if (st != SRP_OK)
        return st;
    checkpoint_plan plan = {refs, count, metadata, metadata_count, 0, 0, 0, 0, 0};
    if (!plan_layout(&plan))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: the tensors or metadata add up to more bytes "
                        "than a file can hold", call);
    return srp_save_atomically(path, write_checkpoint, &plan, call);
}

srp_status srp_checkpoint_save(const char *path, const srp_tensor_ref *refs, size_t count)
{
    return save(path, refs, count, NULL, 0, "srp_checkpoint_save");
}

srp_status srp_checkpoint_save_with_metadata(const char *path, const srp_tensor_ref *refs,
                                             size_t count, const char *const *metadata,
                                             size_t metadata_count)
{
    return save(path, refs, count, metadata, metadata_count, "srp_checkpoint_save_with_metadata");
}

/* ======================================================================
 * Open
 * ====================================================================== */

/* Where parsing is: the file, its checked header fields, the call for the
 * details. */
typedef struct {
    const unsigned char *buf;
    uint64_t header_size, table_end, metadata_end, data_start, data_limit;
    const char *call;
} parser;

/* SRP_ERR_FORMAT: entry i of a section ("table", "metadata"), at offset
 * `at`, is wrong as fmt says. */
static srp_status entry_fail(const parser *ps, const char *section, uint64_t i, uint64_t at,
                             const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static srp_status entry_fail(const parser *ps, const char *section, uint64_t i, uint64_t at,
                             const char *fmt, ...)
{
    char what[SRP_ERROR_DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return srp_fail(SRP_ERR_FORMAT, "%s: %s entry %llu at offset %llu: %s", ps->call, section,
                    (unsigned long long)i, (unsigned long long)at, what);
}

/* Table entry i at *pos; advances *pos. *data_end is the end of the
 * previous tensor (the next must start at or after it). */
static srp_status parse_entry(const parser *ps, uint64_t i, uint64_t *pos, uint64_t *data_end,
                              srp_file_tensor *t, uint32_t *name_len)
{
    const uint64_t at = *pos;
    if (ps->table_end - at < ENTRY_FIXED)
        return entry_fail(ps, "table", i, at, "runs past the table's end at %llu",
                          (unsigned long long)ps->table_end);
    const unsigned char *p = ps->buf + at;
    const uint32_t len = srp_get_u32_le(p), dtype = srp_get_u32_le(p + 4);
    const uint32_t ndim = srp_get_u32_le(p + 8), reserved = srp_get_u32_le(p + 12);
    if (len == 0 || len > SRP_TENSOR_MAX_NAME)
        return entry_fail(ps, "table", i, at, "name_len %u is not in 1..%d", len, SRP_TENSOR_MAX_NAME);
    if (srp_dtype_size((srp_dtype)dtype) == 0)
        return entry_fail(ps, "table", i, at, "dtype %u is unknown", dtype);
    if (ndim > SRP_TENSOR_MAX_NDIM)
        return entry_fail(ps, "table", i, at, "ndim %u > %d", ndim, SRP_TENSOR_MAX_NDIM);
    if (reserved != 0)
        return entry_fail(ps, "table", i, at, "the reserved field is %u, not 0", reserved);
    t->dtype = (srp_dtype)dtype;
    t->ndim = ndim;
    for (uint32_t k = 0; k < SRP_TENSOR_MAX_NDIM; k++) {
        t->shape[k] = srp_get_u64_le(p + 16 + 8 * k);
        if (k >= ndim && t->shape[k] != 0)
            return entry_fail(ps, "table", i, at, "shape[%u] is %llu past ndim %u", k,
                              (unsigned long long)t->shape[k], ndim);
    }
    t->offset = srp_get_u64_le(p + 48);
    t->bytes = srp_get_u64_le(p + 56);
    int ok = 1;
    const uint64_t want = srp_tensor_bytes(t->dtype, t->ndim, t->shape, &ok);
    if (!ok)
        return entry_fail(ps, "table", i, at, "the shape's size overflows");
    if (t->bytes != want)
        return entry_fail(ps, "table", i, at, "bytes %llu, but dtype and shape make %llu",
                          (unsigned long long)t->bytes, (unsigned long long)want);
    if (t->offset % DATA_ALIGN != 0)
        return entry_fail(ps, "table", i, at, "data offset %llu is not a multiple of %d",
                          (unsigned long long)t->offset, DATA_ALIGN);
    if (t->offset < ps->data_start || t->offset < *data_end)
        return entry_fail(ps, "table", i, at, "data offset %llu is before %llu (%s)",
                          (unsigned long long)t->offset,
                          (unsigned long long)(*data_end > ps->data_start ? *data_end
                                                                          : ps->data_start),
                          *data_end > ps->data_start ? "the previous tensor's end"
                                                     : "the start of the data");
    if (t->offset > ps->data_limit || t->bytes > ps->data_limit - t->offset)
        return entry_fail(ps, "table", i, at, "data [%llu, +%llu) runs past the data's end at %llu",
                          (unsigned long long)t->offset, (unsigned long long)t->bytes,
                          (unsigned long long)ps->data_limit);
    *data_end = t->offset + t->bytes;

    const uint64_t padded = align_up(len, 8);
    if (ps->table_end - at - ENTRY_FIXED < padded)
        return entry_fail(ps, "table", i, at, "the name (%u bytes) runs past the table's end", len);
    const unsigned char *name = p + ENTRY_FIXED;
    if (memchr(name, 0, len))
        return entry_fail(ps, "table", i, at, "the name holds a NUL byte");
    for (uint64_t k = len; k < padded; k++)
        if (name[k] != 0)
            return entry_fail(ps, "table", i, at, "the padding after the name is not zero");
    *name_len = len;
    *pos = at + ENTRY_FIXED + padded;
    return SRP_OK;
}

/* The metadata section (version 2), into f->metadata. */
static srp_status parse_metadata(const parser *ps, srp_named_file *f)
{
    /* Every pair takes at least META_FIXED + 8 bytes, its key and value
     * with two NULs at most its size. */
    const uint64_t size = ps->metadata_end - ps->table_end;
    const srp_status st =
        srp_metadata_reserve(&f->metadata, (size_t)(size / (META_FIXED + 8)), (size_t)size);
    if (st != SRP_OK)
        return st;
    uint64_t pos = ps->table_end;
    for (uint64_t i = 0; pos < ps->metadata_end; i++) {
        const uint64_t at = pos;
        if (ps->metadata_end - at < META_FIXED + 8)
            return entry_fail(ps, "metadata", i, at, "runs past the metadata's end at %llu",
                              (unsigned long long)ps->metadata_end);
        const unsigned char *p = ps->buf + at;
        const uint32_t klen = srp_get_u32_le(p), vlen = srp_get_u32_le(p + 4);
        const uint64_t padded = align_up((uint64_t)klen + vlen, 8);
        const char *key = (const char *)p + META_FIXED, *value = key + klen;
        if (klen == 0 || klen > MAX_KEY)
            return entry_fail(ps, "metadata", i, at, "key_len %u is not in 1..%d", klen, MAX_KEY);
        if (ps->metadata_end - at - META_FIXED < padded)
            return entry_fail(ps, "metadata", i, at,
                              "key and value (%u + %u bytes) run past the metadata's end at %llu",
                              klen, vlen, (unsigned long long)ps->metadata_end);
        if (memchr(key, 0, (size_t)klen + vlen))
            return entry_fail(ps, "metadata", i, at, "the key or the value holds a NUL byte");
        for (uint64_t k = (uint64_t)klen + vlen; k < padded; k++)
            if (key[k] != 0)
                return entry_fail(ps, "metadata", i, at, "the padding after the value is not zero");
        srp_metadata_append(&f->metadata, key, klen, value, vlen);
        pos = at + META_FIXED + padded;
    }
    return srp_metadata_sort(&f->metadata, ps->call);
}

/* The table, into f->index (names copied into f->names). */
static srp_status parse_table(const parser *ps, uint64_t n, srp_named_file *f)
{
    srp_file_index *ix = &f->index;
    ix->tensors = calloc((size_t)n, sizeof(*ix->tensors));
    /* The names fit in the table's bytes, a NUL each included. */
    f->names = malloc((size_t)(ps->table_end - ps->header_size));
    if (!ix->tensors || !f->names)
        return SRP_ERR_NOMEM;
    uint64_t pos = ps->header_size, data_end = ps->data_start;
    char *name = f->names;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t len = 0;
        const uint64_t at = pos;
        const srp_status st = parse_entry(ps, i, &pos, &data_end, &ix->tensors[i], &len);
        if (st != SRP_OK)
            return st;
        memcpy(name, ps->buf + at + ENTRY_FIXED, len);
        name[len] = 0;
        ix->tensors[i].name = name;
        name += len + 1;
        ix->count++;
    }
    if (pos != ps->table_end)
        return srp_fail(SRP_ERR_FORMAT, "%s: the %llu table entries end at offset %llu, "
                        "table_size (offset 32) ends the table at %llu", ps->call,
                        (unsigned long long)n, (unsigned long long)pos,
                        (unsigned long long)ps->table_end);
    return srp_file_index_sort(ix, ps->call);
}

/* Checks the whole file in f->file and builds its index, names and
 * metadata (an srp_named_file_parser). */
static srp_status parse_file(srp_named_file *f, size_t size, const char *call)
{
    const unsigned char *buf = f->file;
    if (size < sizeof(MAGIC) || memcmp(buf, MAGIC, sizeof(MAGIC)) != 0)
        return srp_fail(SRP_ERR_FORMAT, "%s: not a checkpoint (the file does not start with "
                        "\"SRPCKPT\")", call);
    if (size < 12)
        return srp_fail(SRP_ERR_FORMAT, "%s: truncated at %zu bytes, in the header", call, size);
    const uint32_t version = srp_get_u32_le(buf + 8);
    if (version != 1 && version != 2)
        return srp_fail(SRP_ERR_VERSION, "%s: format version %u; this library reads versions 1 "
                        "and 2", call, version);
    parser ps = {buf, version == 1 ? HEADER_V1 : HEADER_V2, 0, 0, 0, 0, call};
    if (size < ps.header_size + TRAILER_SIZE)
        return srp_fail(SRP_ERR_FORMAT, "%s: truncated at %zu bytes, in the header", call, size);
    const uint32_t flags = srp_get_u32_le(buf + 12);
    const uint64_t file_size = srp_get_u64_le(buf + 16), n = srp_get_u64_le(buf + 24);
    const uint64_t table_size = srp_get_u64_le(buf + 32);
    const uint64_t metadata_size = version == 1 ? 0 : srp_get_u64_le(buf + 40);
    if (flags != 0)
        return srp_fail(SRP_ERR_FORMAT, "%s: flags (offset 12) are 0x%x, not 0", call, flags);
    if (file_size != (uint64_t)size)
        return srp_fail(SRP_ERR_FORMAT, "%s: file_size (offset 16) says %llu bytes, the file "
                        "has %zu: truncated or extended", call, (unsigned long long)file_size,
                        size);
    ps.data_limit = size - TRAILER_SIZE;
    const uint32_t stored = srp_get_u32_le(buf + ps.data_limit);
    const uint32_t crc = srp_crc32(0, buf, (size_t)ps.data_limit);
    if (crc != stored)
        return srp_fail(SRP_ERR_FORMAT, "%s: CRC-32 0x%08x stored, 0x%08x computed: the file "
                        "is corrupt", call, stored, crc);
    if (table_size > ps.data_limit - ps.header_size)
        return srp_fail(SRP_ERR_FORMAT, "%s: table_size (offset 32) %llu runs past the end of "
                        "the file", call, (unsigned long long)table_size);
    if (metadata_size > ps.data_limit - ps.header_size - table_size)
        return srp_fail(SRP_ERR_FORMAT, "%s: metadata_size (offset 40) %llu runs past the end "
                        "of the file", call, (unsigned long long)metadata_size);
    /* Every entry takes at least ENTRY_FIXED + 8 table bytes. */
    if (n == 0 || n > table_size / (ENTRY_FIXED + 8))
        return srp_fail(SRP_ERR_FORMAT, "%s: count (offset 24) %llu is 0 or more than "
                        "table_size %llu can hold", call, (unsigned long long)n,
                        (unsigned long long)table_size);
    ps.table_end = ps.header_size + table_size;
    ps.metadata_end = ps.table_end + metadata_size;
    ps.data_start = align_up(ps.metadata_end, DATA_ALIGN);
    srp_status st = parse_table(&ps, n, f);
    if (st == SRP_OK)
        st = parse_metadata(&ps, f);
    return st;
}

void srp_checkpoint_close(srp_checkpoint *c) { srp_named_file_close(c ? &c->named : NULL); }

srp_status srp_checkpoint_open(srp_checkpoint **out, const char *path)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    srp_status st;
    *out = srp_named_file_open(sizeof(**out), path, parse_file, "srp_checkpoint_open", &st);
    return st;
}

/* ======================================================================
 * Queries and reads
 * ====================================================================== */

size_t srp_checkpoint_count(const srp_checkpoint *c) { return c ? c->named.index.count : 0; }

srp_status srp_checkpoint_info(const srp_checkpoint *c, size_t i, srp_tensor_ref *info)
{
    return c && info ? srp_named_file_info(&c->named, i, info, __func__) : SRP_FAIL_NULL(c, info);
}

size_t srp_checkpoint_metadata_count(const srp_checkpoint *c)
{
    return c ? c->named.metadata.count : 0;
}

const char *srp_checkpoint_metadata(const srp_checkpoint *c, const char *key)
{
    return c && key ? srp_metadata_get(&c->named.metadata, key) : NULL;
}

srp_status srp_checkpoint_check_metadata(const srp_checkpoint *c, const char *const *expected,
                                         size_t count)
{
    return c ? srp_metadata_check(&c->named.metadata, expected, count, __func__) : SRP_FAIL_NULL(c);
}

srp_status srp_checkpoint_read(const srp_checkpoint *c, const srp_tensor_ref *refs, size_t count)
{
    return c ? srp_file_index_read(&c->named.index, c->named.file, refs, count, 0, __func__)
             : SRP_FAIL_NULL(c);
}

srp_status srp_checkpoint_read_strict(const srp_checkpoint *c, const srp_tensor_ref *refs,
                                      size_t count)
{
    return c ? srp_file_index_read(&c->named.index, c->named.file, refs, count, 1, __func__)
             : SRP_FAIL_NULL(c);
}

/* open, read, close, with the list checked before the file is read. */
static srp_status load(const char *path, const srp_tensor_ref *refs, size_t count, int strict,
                       const char *call)
{
    if (!path)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: path is NULL", call);
    const srp_status st = srp_tensor_refs_check(refs, count, call);
    return st == SRP_OK ? srp_named_file_load(path, parse_file, refs, count, strict, call) : st;
}

srp_status srp_checkpoint_load(const char *path, const srp_tensor_ref *refs, size_t count)
{
    return load(path, refs, count, 0, "srp_checkpoint_load");
}

srp_status srp_checkpoint_load_strict(const char *path, const srp_tensor_ref *refs, size_t count)
{
    return load(path, refs, count, 1, "srp_checkpoint_load_strict");
}
