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
 * Save: "<path>.tmp" is written through a small buffer, fsync'ed, renamed
 * over path, and the directory is fsync'ed; a crash leaves the old or the
 * new file whole. Load: the whole file is read into one buffer (its size is
 * the only bound on what is allocated), every field is checked against the
 * file's real size before it is used, then the CRC, then the requested
 * names; only then is anything copied out. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h> /* rename */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "internal.h"

#define HEADER_SIZE 40
#define ENTRY_FIXED 64 /* table entry without its name */
#define TRAILER_SIZE 4
#define DATA_ALIGN 64
#define WRITE_BUFFER (64 * 1024)

static const unsigned char MAGIC[8] = {'S', 'R', 'P', 'C', 'K', 'P', 'T', 0};

size_t srp_dtype_size(srp_dtype dtype)
{
    switch (dtype) {
    case SRP_DTYPE_F32: return 4;
    case SRP_DTYPE_F64: return 8;
    case SRP_DTYPE_U64: return 8;
    case SRP_DTYPE_I64: return 8;
    case SRP_DTYPE_U8: return 1;
    }
    return 0;
}

/* ---- little-endian fields ---- */

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* dst = src with every elem-byte element reversed (host <-> little-endian
 * on a big-endian host). */
static void swap_copy(unsigned char *dst, const unsigned char *src, size_t bytes, size_t elem)
{
    for (size_t i = 0; i < bytes; i += elem)
        for (size_t k = 0; k < elem; k++)
            dst[i + k] = src[i + elem - 1 - k];
}

/* Host-order tensor data to/from the file's little-endian bytes. */
static void copy_tensor(void *dst, const void *src, size_t bytes, size_t elem)
{
    if (elem == 1 || host_is_little_endian())
        memcpy(dst, src, bytes);
    else
        swap_copy(dst, src, bytes, elem);
}

static uint32_t crc_of(uint32_t crc, const unsigned char *p, size_t n)
{
    uLong c = crc;
    while (n > 0) { /* zlib takes uInt lengths */
        const uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* ---- the caller's list ---- */

/* bytes of a tensor, or 0 with *ok = 0 when it overflows (a shape with a
 * zero is a valid empty tensor). */
static uint64_t tensor_bytes(srp_dtype dtype, size_t ndim, const uint64_t *shape, int *ok)
{
    uint64_t n = srp_dtype_size(dtype);
    for (size_t k = 0; k < ndim; k++) {
        if (shape[k] != 0 && n > UINT64_MAX / shape[k]) {
            *ok = 0;
            return 0;
        }
        n *= shape[k];
    }
    return n;
}

/* Longest bounded strlen: SRP_CHECKPOINT_MAX_NAME + 1 means too long. */
static size_t name_length(const char *s)
{
    size_t n = 0;
    while (n <= SRP_CHECKPOINT_MAX_NAME && s[n])
        n++;
    return n;
}

/* The ref's shape as the file stores it: unused dimensions are 0. */
static void ref_shape(const srp_tensor_ref *r, uint64_t *shape)
{
    for (size_t k = 0; k < SRP_CHECKPOINT_MAX_NDIM; k++)
        shape[k] = k < r->ndim ? (uint64_t)r->shape[k] : 0;
}

/* bytes of a caller's tensor, as tensor_bytes. */
static uint64_t ref_bytes(const srp_tensor_ref *r, int *ok)
{
    uint64_t shape[SRP_CHECKPOINT_MAX_NDIM];
    ref_shape(r, shape);
    return tensor_bytes(r->dtype, r->ndim, shape, ok);
}

static srp_status check_refs(const srp_tensor_ref *refs, size_t count)
{
    if (!refs || count == 0)
        return SRP_ERR_INVALID_ARG;
    for (size_t i = 0; i < count; i++) {
        const srp_tensor_ref *r = &refs[i];
        if (!r->name || !r->data || srp_dtype_size(r->dtype) == 0 ||
            r->ndim > SRP_CHECKPOINT_MAX_NDIM)
            return SRP_ERR_INVALID_ARG;
        const size_t len = name_length(r->name);
        if (len == 0 || len > SRP_CHECKPOINT_MAX_NAME)
            return SRP_ERR_INVALID_ARG;
        int ok = 1;
        const uint64_t bytes = ref_bytes(r, &ok);
        if (!ok || bytes > SIZE_MAX)
            return SRP_ERR_INVALID_ARG;
        for (size_t j = 0; j < i; j++)
            if (strcmp(refs[j].name, r->name) == 0)
                return SRP_ERR_INVALID_ARG;
    }
    return SRP_OK;
}

/* ======================================================================
 * Save
 * ====================================================================== */

typedef struct {
    int fd;
    unsigned char *buf;
    size_t used;
    uint32_t crc;
    int failed;
} writer;

static void write_all(writer *w, const unsigned char *p, size_t n)
{
    while (n > 0 && !w->failed) {
        const ssize_t r = write(w->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            w->failed = 1;
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

static void flush_writer(writer *w)
{
    write_all(w, w->buf, w->used);
    w->used = 0;
}

/* Appends n bytes (into the CRC too). */
static void put_bytes(writer *w, const unsigned char *p, size_t n)
{
    w->crc = crc_of(w->crc, p, n);
    while (n > 0 && !w->failed) {
        const size_t room = WRITE_BUFFER - w->used, take = n < room ? n : room;
        memcpy(w->buf + w->used, p, take);
        w->used += take;
        p += take;
        n -= take;
        if (w->used == WRITE_BUFFER)
            flush_writer(w);
    }
}

static void put_zeros(writer *w, uint64_t n)
{
    static const unsigned char zeros[DATA_ALIGN];
    while (n > 0) {
        const size_t take = n < DATA_ALIGN ? (size_t)n : DATA_ALIGN;
        put_bytes(w, zeros, take);
        n -= take;
    }
}

/* A tensor's data in little-endian order, through a bounce buffer when the
 * host is big-endian. */
static void put_tensor(writer *w, const srp_tensor_ref *r, size_t bytes)
{
    const size_t elem = srp_dtype_size(r->dtype);
    const unsigned char *p = r->data;
    if (elem == 1 || host_is_little_endian()) {
        put_bytes(w, p, bytes);
        return;
    }
    unsigned char tmp[4096]; /* a multiple of every element size */
    while (bytes > 0) {
        const size_t take = bytes < sizeof(tmp) ? bytes : sizeof(tmp);
        swap_copy(tmp, p, take, elem);
        put_bytes(w, tmp, take);
        p += take;
        bytes -= take;
    }
}

/* The directory holding path, fsync'ed so that the rename is durable. */
static int sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    if (!slash) {
        dir = malloc(2);
        if (dir)
            memcpy(dir, ".", 2);
    } else {
        const size_t len = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(len + 1);
        if (dir) {
            memcpy(dir, path, len);
            dir[len] = 0;
        }
    }
    if (!dir)
        return -1;
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    if (r != 0 && (errno == EINVAL || errno == ENOTSUP))
        r = 0; /* file systems that cannot sync a directory */
    close(fd);
    return r;
}

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
        const uint64_t bytes = ref_bytes(&refs[i], &ok);
        at = align_up(at, DATA_ALIGN);
        if (bytes > UINT64_MAX / 2 - at)
            return 0;
        at += bytes;
    }
    *table_size = table;
    *file_size = at + TRAILER_SIZE;
    return 1;
}

static void write_checkpoint(writer *w, const srp_tensor_ref *refs, size_t count,
                             uint64_t table_size, uint64_t data_start, uint64_t file_size)
{
    unsigned char h[HEADER_SIZE] = {0};
    memcpy(h, MAGIC, 8);
    put_u32(h + 8, SRP_CHECKPOINT_FORMAT_VERSION);
    put_u32(h + 12, 0);
    put_u64(h + 16, file_size);
    put_u64(h + 24, count);
    put_u64(h + 32, table_size);
    put_bytes(w, h, HEADER_SIZE);

    uint64_t at = data_start;
    for (size_t i = 0; i < count; i++) {
        const srp_tensor_ref *r = &refs[i];
        uint64_t shape[SRP_CHECKPOINT_MAX_NDIM];
        int ok = 1;
        ref_shape(r, shape);
        const uint64_t bytes = ref_bytes(r, &ok);
        const size_t len = strlen(r->name);
        unsigned char e[ENTRY_FIXED] = {0};
        at = align_up(at, DATA_ALIGN);
        put_u32(e, (uint32_t)len);
        put_u32(e + 4, (uint32_t)r->dtype);
        put_u32(e + 8, (uint32_t)r->ndim);
        for (size_t k = 0; k < SRP_CHECKPOINT_MAX_NDIM; k++)
            put_u64(e + 16 + 8 * k, shape[k]);
        put_u64(e + 48, at);
        put_u64(e + 56, bytes);
        put_bytes(w, e, ENTRY_FIXED);
        put_bytes(w, (const unsigned char *)r->name, len);
        put_zeros(w, align_up(len, 8) - len);
        at += bytes;
    }

    uint64_t pos = HEADER_SIZE + table_size;
    for (size_t i = 0; i < count; i++) {
        const srp_tensor_ref *r = &refs[i];
        int ok = 1;
        const uint64_t bytes = ref_bytes(r, &ok);
        put_zeros(w, align_up(pos, DATA_ALIGN) - pos);
        pos = align_up(pos, DATA_ALIGN);
        put_tensor(w, r, (size_t)bytes);
        pos += bytes;
    }

    unsigned char t[TRAILER_SIZE];
    put_u32(t, w->crc);
    w->crc = 0;
    put_bytes(w, t, TRAILER_SIZE);
    flush_writer(w);
}

srp_status srp_checkpoint_save(const char *path, const srp_tensor_ref *refs, size_t count)
{
    if (!path || !path[0])
        return SRP_ERR_INVALID_ARG;
    srp_status st = check_refs(refs, count);
    if (st != SRP_OK)
        return st;
    uint64_t table_size, data_start, file_size;
    if (!plan_layout(refs, count, &table_size, &data_start, &file_size))
        return SRP_ERR_INVALID_ARG;

    const size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    writer w = {-1, malloc(WRITE_BUFFER), 0, 0, 0};
    if (!tmp || !w.buf) {
        free(tmp);
        free(w.buf);
        return SRP_ERR_NOMEM;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    /* A leftover temporary file from a crashed save is ours to replace;
     * O_EXCL then makes sure we write a fresh file, never through a link. */
    unlink(tmp);
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (w.fd < 0) {
        st = SRP_ERR_IO;
        goto done;
    }
    write_checkpoint(&w, refs, count, table_size, data_start, file_size);
    if (!w.failed && fsync(w.fd) != 0)
        w.failed = 1;
    if (close(w.fd) != 0)
        w.failed = 1;
    if (w.failed || rename(tmp, path) != 0) {
        unlink(tmp);
        st = SRP_ERR_IO;
        goto done;
    }
    if (sync_parent_dir(path) != 0)
        st = SRP_ERR_IO; /* the new file is in place, but maybe not durably */
done:
    free(w.buf);
    free(tmp);
    return st;
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

/* The whole file into a new buffer. */
static srp_status read_whole_file(const char *path, unsigned char **out, size_t *size)
{
    /* O_NONBLOCK: a FIFO in place of the file must not hang the open. */
    const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return SRP_ERR_IO;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 0 ||
        (uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return SRP_ERR_IO;
    }
    const size_t n = (size_t)sb.st_size;
    unsigned char *buf = malloc(n > 0 ? n : 1);
    if (!buf) {
        close(fd);
        return SRP_ERR_NOMEM;
    }
    size_t got = 0;
    while (got < n) {
        const ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) { /* a read error, or the file shrank under us */
        free(buf);
        return SRP_ERR_IO;
    }
    *out = buf;
    *size = n;
    return SRP_OK;
}

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
    e->name_len = get_u32(p);
    const uint32_t dtype = get_u32(p + 4);
    e->ndim = get_u32(p + 8);
    if (e->name_len == 0 || e->name_len > SRP_CHECKPOINT_MAX_NAME ||
        srp_dtype_size((srp_dtype)dtype) == 0 || e->ndim > SRP_CHECKPOINT_MAX_NDIM ||
        get_u32(p + 12) != 0)
        return SRP_ERR_FORMAT;
    e->dtype = (srp_dtype)dtype;
    for (uint32_t k = 0; k < SRP_CHECKPOINT_MAX_NDIM; k++) {
        e->shape[k] = get_u64(p + 16 + 8 * k);
        if (k >= e->ndim && e->shape[k] != 0)
            return SRP_ERR_FORMAT;
    }
    e->offset = get_u64(p + 48);
    e->bytes = get_u64(p + 56);
    int ok = 1;
    if (tensor_bytes(e->dtype, e->ndim, e->shape, &ok) != e->bytes || !ok)
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
    if (get_u32(buf + 8) != SRP_CHECKPOINT_FORMAT_VERSION)
        return SRP_ERR_VERSION;
    if (size < HEADER_SIZE + TRAILER_SIZE)
        return SRP_ERR_FORMAT;
    const uint64_t file_size = get_u64(buf + 16), n = get_u64(buf + 24);
    const uint64_t table_size = get_u64(buf + 32);
    if (get_u32(buf + 12) != 0 || file_size != (uint64_t)size)
        return SRP_ERR_FORMAT;
    const uint64_t data_limit = size - TRAILER_SIZE;
    if (crc_of(0, buf, (size_t)data_limit) != get_u32(buf + data_limit))
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
    srp_status st = check_refs(refs, count);
    if (st != SRP_OK)
        return st;
    unsigned char *buf = NULL;
    size_t size = 0, n = 0;
    entry *entries = NULL;
    st = read_whole_file(path, &buf, &size);
    if (st == SRP_OK)
        st = parse_file(buf, size, &entries, &n);
    /* Every requested tensor present and alike before anything is copied. */
    for (size_t i = 0; st == SRP_OK && i < count; i++) {
        const entry *e = find_entry(entries, n, refs[i].name);
        uint64_t shape[SRP_CHECKPOINT_MAX_NDIM];
        ref_shape(&refs[i], shape);
        if (!e)
            st = SRP_ERR_FORMAT;
        else if (e->dtype != refs[i].dtype || e->ndim != refs[i].ndim ||
                 memcmp(e->shape, shape, sizeof(shape)) != 0)
            st = SRP_ERR_SHAPE;
    }
    for (size_t i = 0; st == SRP_OK && i < count; i++) {
        const entry *e = find_entry(entries, n, refs[i].name);
        copy_tensor(refs[i].data, buf + e->offset, (size_t)e->bytes, srp_dtype_size(refs[i].dtype));
    }
    free(entries);
    free(buf);
    return st;
}
