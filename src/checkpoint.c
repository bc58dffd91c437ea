/* Checkpoint files: named tensors, a CRC32 over everything, atomic saves.
 * The byte layout is docs/FORMAT.md; in short (little-endian):
 *
 *     header  [40]   magic "SRPCKPT\0", u32 version, u32 flags (0),
 *                    u64 file size, u64 tensor count, u64 table size
 *     table          per tensor: u32 name length, u32 dtype, u32 ndim,
 *                    u32 reserved (0), u64 shape[4], u64 offset, u64 bytes,
 *                    the name, zero padding to a multiple of 8
 *     data           each tensor at its offset (a multiple of 64), in table
 *                    order, zero padding between them
 *     trailer [4]    u32 CRC-32 (zlib) of every byte before it
 *
 * Save: atomically, through tensor_file.c (a crash leaves the old or the
 * new file whole). Load: the whole file is read into one buffer (its size is
 * the only bound on what is allocated), every field is checked against the
 * file's real size before it is used, then the CRC, then the requested
 * names; only then is anything copied out. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define HEADER_SIZE 40
#define ENTRY_FIXED 64 /* table entry without its name */
#define TRAILER_SIZE 4
#define DATA_ALIGN 64

static const unsigned char MAGIC[8] = {'S', 'R', 'P', 'C', 'K', 'P', 'T', 0};

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* ======================================================================
 * Save
 * ====================================================================== */

/* Layout of the file for refs: table size, data start, file size. */
static int plan_layout(const srp_tensor_ref *refs, size_t count, uint64_t *table_size,
                       uint64_t *data_start, uint64_t *file_size)
{
    uint64_t table = 0;
    for (size_t i = 0; i < count; i++)
        table += ENTRY_FIXED + align_up(strlen(refs[i].name), 8);
    uint64_t at = align_up(HEADER_SIZE + table, DATA_ALIGN);
    *data_start = at;
    for (size_t i = 0; i < count; i++) {
        int ok = 1; /* checked by the caller */
        const uint64_t bytes = srp_ref_bytes(&refs[i], &ok);
        at = align_up(at, DATA_ALIGN);
        if (bytes > UINT64_MAX / 2 - at)
            return 0;
        at += bytes;
    }
    *table_size = table;
    *file_size = at + TRAILER_SIZE;
    return 1;
}

/* What write_checkpoint needs besides the writer. */
typedef struct {
    const srp_tensor_ref *refs;
    size_t count;
    uint64_t table_size, data_start, file_size;
} checkpoint_plan;

static void write_checkpoint(srp_file_writer *w, const void *ctx)
{
    const checkpoint_plan *p = ctx;
    const srp_tensor_ref *refs = p->refs;
    unsigned char h[HEADER_SIZE] = {0};
    memcpy(h, MAGIC, 8);
    srp_put_u32_le(h + 8, SRP_CHECKPOINT_FORMAT_VERSION);
    srp_put_u32_le(h + 12, 0);
    srp_put_u64_le(h + 16, p->file_size);
    srp_put_u64_le(h + 24, p->count);
    srp_put_u64_le(h + 32, p->table_size);
    srp_writer_put(w, h, HEADER_SIZE);

    uint64_t at = p->data_start;
    for (size_t i = 0; i < p->count; i++) {
        const srp_tensor_ref *r = &refs[i];
        uint64_t shape[SRP_CHECKPOINT_MAX_NDIM];
        int ok = 1;
        srp_ref_shape(r, shape);
        const uint64_t bytes = srp_ref_bytes(r, &ok);
        const size_t len = strlen(r->name);
        unsigned char e[ENTRY_FIXED] = {0};
        at = align_up(at, DATA_ALIGN);
        srp_put_u32_le(e, (uint32_t)len);
        srp_put_u32_le(e + 4, (uint32_t)r->dtype);
        srp_put_u32_le(e + 8, (uint32_t)r->ndim);
        for (size_t k = 0; k < SRP_CHECKPOINT_MAX_NDIM; k++)
            srp_put_u64_le(e + 16 + 8 * k, shape[k]);
        srp_put_u64_le(e + 48, at);
        srp_put_u64_le(e + 56, bytes);
        srp_writer_put(w, e, ENTRY_FIXED);
        srp_writer_put(w, r->name, len);
        srp_writer_put_zeros(w, align_up(len, 8) - len);
        at += bytes;
    }

    uint64_t pos = HEADER_SIZE + p->table_size;
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

srp_status srp_checkpoint_save(const char *path, const srp_tensor_ref *refs, size_t count)
{
    if (!path || !path[0])
        return SRP_ERR_INVALID_ARG;
    const srp_status st = srp_tensor_refs_check(refs, count);
    if (st != SRP_OK)
        return st;
    checkpoint_plan plan = {refs, count, 0, 0, 0};
    if (!plan_layout(refs, count, &plan.table_size, &plan.data_start, &plan.file_size))
        return SRP_ERR_INVALID_ARG;
    return srp_save_atomically(path, write_checkpoint, &plan);
}

/* ======================================================================
 * Load
 * ====================================================================== */

typedef struct {
    const unsigned char *name; /* into the file buffer, not NUL-terminated */
    uint32_t name_len;
    srp_dtype dtype;
    uint32_t ndim;
    uint64_t shape[SRP_CHECKPOINT_MAX_NDIM];
    uint64_t offset, bytes;
} entry;

static int names_cmp(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    const size_t n = alen < blen ? alen : blen;
    const int c = memcmp(a, b, n);
    if (c != 0)
        return c;
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

static int entry_cmp(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    return names_cmp(a->name, a->name_len, b->name, b->name_len);
}

/* One table entry at buf[*pos]; advances *pos. *data_end is the end of the
 * previous tensor (the next must start at or after it). */
static srp_status parse_entry(const unsigned char *buf, uint64_t table_end, uint64_t data_start,
                              uint64_t data_limit, uint64_t *pos, uint64_t *data_end, entry *e)
{
    if (table_end - *pos < ENTRY_FIXED)
        return SRP_ERR_FORMAT;
    const unsigned char *p = buf + *pos;
    e->name_len = srp_get_u32_le(p);
    const uint32_t dtype = srp_get_u32_le(p + 4);
    e->ndim = srp_get_u32_le(p + 8);
    if (e->name_len == 0 || e->name_len > SRP_CHECKPOINT_MAX_NAME ||
        srp_dtype_size((srp_dtype)dtype) == 0 || e->ndim > SRP_CHECKPOINT_MAX_NDIM ||
        srp_get_u32_le(p + 12) != 0)
        return SRP_ERR_FORMAT;
    e->dtype = (srp_dtype)dtype;
    for (uint32_t k = 0; k < SRP_CHECKPOINT_MAX_NDIM; k++) {
        e->shape[k] = srp_get_u64_le(p + 16 + 8 * k);
        if (k >= e->ndim && e->shape[k] != 0)
            return SRP_ERR_FORMAT;
    }
    e->offset = srp_get_u64_le(p + 48);
    e->bytes = srp_get_u64_le(p + 56);
    int ok = 1;
    if (srp_tensor_bytes(e->dtype, e->ndim, e->shape, &ok) != e->bytes || !ok)
        return SRP_ERR_FORMAT;
    if (e->offset % DATA_ALIGN != 0 || e->offset < data_start || e->offset < *data_end ||
        e->offset > data_limit || e->bytes > data_limit - e->offset)
        return SRP_ERR_FORMAT;
    *data_end = e->offset + e->bytes;

    const uint64_t padded = align_up(e->name_len, 8);
    if (table_end - *pos - ENTRY_FIXED < padded)
        return SRP_ERR_FORMAT;
    e->name = p + ENTRY_FIXED;
    if (memchr(e->name, 0, e->name_len))
        return SRP_ERR_FORMAT;
    for (uint64_t k = e->name_len; k < padded; k++)
        if (e->name[k] != 0)
            return SRP_ERR_FORMAT;
    *pos += ENTRY_FIXED + padded;
    return SRP_OK;
}

/* Checks everything that does not depend on the caller's list; on success
 * *entries (sorted by name, no duplicates) points into buf. */
static srp_status parse_file(const unsigned char *buf, size_t size, entry **entries, size_t *count)
{
    if (size < sizeof(MAGIC) || memcmp(buf, MAGIC, sizeof(MAGIC)) != 0)
        return SRP_ERR_FORMAT;
    if (size < 12)
        return SRP_ERR_FORMAT;
    if (srp_get_u32_le(buf + 8) != SRP_CHECKPOINT_FORMAT_VERSION)
        return SRP_ERR_VERSION;
    if (size < HEADER_SIZE + TRAILER_SIZE)
        return SRP_ERR_FORMAT;
    const uint64_t file_size = srp_get_u64_le(buf + 16), n = srp_get_u64_le(buf + 24);
    const uint64_t table_size = srp_get_u64_le(buf + 32);
    if (srp_get_u32_le(buf + 12) != 0 || file_size != (uint64_t)size)
        return SRP_ERR_FORMAT;
    const uint64_t data_limit = size - TRAILER_SIZE;
    if (srp_crc32(0, buf, (size_t)data_limit) != srp_get_u32_le(buf + data_limit))
        return SRP_ERR_FORMAT;
    /* Every entry takes at least ENTRY_FIXED + 8 table bytes. */
    if (table_size > data_limit - HEADER_SIZE || n == 0 || n > table_size / (ENTRY_FIXED + 8))
        return SRP_ERR_FORMAT;
    const uint64_t table_end = HEADER_SIZE + table_size;
    const uint64_t data_start = align_up(table_end, DATA_ALIGN);

    entry *e = malloc(sizeof(entry) * (size_t)n);
    if (!e)
        return SRP_ERR_NOMEM;
    uint64_t pos = HEADER_SIZE, data_end = data_start;
    for (uint64_t i = 0; i < n; i++) {
        srp_status st = parse_entry(buf, table_end, data_start, data_limit, &pos, &data_end, &e[i]);
        if (st != SRP_OK) {
            free(e);
            return st;
        }
    }
    if (pos != table_end) {
        free(e);
        return SRP_ERR_FORMAT;
    }
    qsort(e, (size_t)n, sizeof(entry), entry_cmp);
    for (uint64_t i = 1; i < n; i++) {
        if (entry_cmp(&e[i - 1], &e[i]) == 0) {
            free(e);
            return SRP_ERR_FORMAT;
        }
    }
    *entries = e;
    *count = (size_t)n;
    return SRP_OK;
}

static const entry *find_entry(const entry *e, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    const size_t len = strlen(name);
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int c = names_cmp((const unsigned char *)name, len, e[mid].name, e[mid].name_len);
        if (c == 0)
            return &e[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

srp_status srp_checkpoint_load(const char *path, const srp_tensor_ref *refs, size_t count)
{
    if (!path)
        return SRP_ERR_INVALID_ARG;
    srp_status st = srp_tensor_refs_check(refs, count);
    if (st != SRP_OK)
        return st;
    unsigned char *buf = NULL;
    size_t size = 0, n = 0;
    entry *entries = NULL;
    st = srp_read_whole_file(path, &buf, &size);
    if (st == SRP_OK)
        st = parse_file(buf, size, &entries, &n);
    /* Every requested tensor present and alike before anything is copied. */
    for (size_t i = 0; st == SRP_OK && i < count; i++) {
        const entry *e = find_entry(entries, n, refs[i].name);
        uint64_t shape[SRP_CHECKPOINT_MAX_NDIM];
        srp_ref_shape(&refs[i], shape);
        if (!e)
            st = SRP_ERR_FORMAT;
        else if (e->dtype != refs[i].dtype || e->ndim != refs[i].ndim ||
                 memcmp(e->shape, shape, sizeof(shape)) != 0)
            st = SRP_ERR_SHAPE;
    }
    for (size_t i = 0; st == SRP_OK && i < count; i++) {
        const entry *e = find_entry(entries, n, refs[i].name);
        srp_copy_little_endian(refs[i].data, buf + e->offset, (size_t)e->bytes,
                               srp_dtype_size(refs[i].dtype));
    }
    free(entries);
    free(buf);
    return st;
}
