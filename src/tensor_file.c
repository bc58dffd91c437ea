/* What the two files of named tensors (checkpoint.c, safetensors.c) share:
 * the check of a caller's tensor list, little-endian fields, tensor data to
 * and from little-endian bytes, a buffered writer, atomic saves and reading
 * a whole file into memory.
 *
 * An atomic save writes "<path>.tmp", fsyncs it, renames it over path and
 * fsyncs the directory: a crash at any moment leaves either the old or the
 * new complete file under path. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h> /* rename */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define WRITE_BUFFER (64 * 1024)

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

/* ---- the caller's list ---- */

uint64_t srp_tensor_bytes(srp_dtype dtype, size_t ndim, const uint64_t *shape, int *ok)
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

void srp_ref_shape(const srp_tensor_ref *r, uint64_t *shape)
{
    for (size_t k = 0; k < SRP_TENSOR_MAX_NDIM; k++)
        shape[k] = k < r->ndim ? (uint64_t)r->shape[k] : 0;
}

uint64_t srp_ref_bytes(const srp_tensor_ref *r, int *ok)
{
    uint64_t shape[SRP_TENSOR_MAX_NDIM];
    srp_ref_shape(r, shape);
    return srp_tensor_bytes(r->dtype, r->ndim, shape, ok);
}

const char *srp_dtype_str(srp_dtype dtype)
{
    switch (dtype) {
    case SRP_DTYPE_F32: return "f32";
    case SRP_DTYPE_F64: return "f64";
    case SRP_DTYPE_U64: return "u64";
    case SRP_DTYPE_I64: return "i64";
    case SRP_DTYPE_U8: return "u8";
    }
    return "unknown";
}

/* Bounded strlen: SRP_TENSOR_MAX_NAME + 1 means too long. */
static size_t name_length(const char *s)
{
    size_t n = 0;
    while (n <= SRP_TENSOR_MAX_NAME && s[n])
        n++;
    return n;
}

static int by_pointed_name(const void *pa, const void *pb)
{
    return strcmp(**(const char *const *const *)pa, **(const char *const *const *)pb);
}

srp_status srp_unique_names(const void *items, size_t count, size_t stride, size_t *first,
                            size_t *second)
{
    if (count < 2)
        return SRP_OK;
    const char *const **names = malloc(sizeof(*names) * count);
    if (!names)
        return SRP_ERR_NOMEM;
    const unsigned char *base = items;
    for (size_t i = 0; i < count; i++)
        names[i] = (const char *const *)(const void *)(base + i * stride);
    qsort(names, count, sizeof(*names), by_pointed_name);
    int found = 0;
    for (size_t i = 1; i < count && !found; i++) {
        if (strcmp(*names[i - 1], *names[i]) == 0) {
            const size_t a = (size_t)((const unsigned char *)names[i - 1] - base) / stride;
            const size_t b = (size_t)((const unsigned char *)names[i] - base) / stride;
            *first = a < b ? a : b;
            *second = a < b ? b : a;
            found = 1;
        }
    }
    free(names);
    return found ? SRP_ERR_INVALID_ARG : SRP_OK;
}

srp_status srp_tensor_refs_check(const srp_tensor_ref *refs, size_t count, const char *call)
{
    if (!refs)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: refs is NULL", call);
    if (count == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: count is 0 (an empty list)", call);
    for (size_t i = 0; i < count; i++) {
        const srp_tensor_ref *r = &refs[i];
        if (!r->name)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: refs[%zu].name is NULL", call, i);
        const size_t len = name_length(r->name);
        if (len == 0 || len > SRP_TENSOR_MAX_NAME)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: refs[%zu].name is %s (1 to %d bytes)", call,
                            i, len ? "too long" : "empty", SRP_TENSOR_MAX_NAME);
        if (!r->data)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: tensor %s: data is NULL", call, r->name);
        if (srp_dtype_size(r->dtype) == 0)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: tensor %s: dtype %d is unknown", call,
                            r->name, (int)r->dtype);
        if (r->ndim > SRP_TENSOR_MAX_NDIM)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: tensor %s: ndim %zu > %d", call, r->name,
                            r->ndim, SRP_TENSOR_MAX_NDIM);
        int ok = 1;
        const uint64_t bytes = srp_ref_bytes(r, &ok);
        if (!ok || bytes > SIZE_MAX) {
            uint64_t shape[SRP_TENSOR_MAX_NDIM];
            char str[SRP_SHAPE_STR_MAX];
            srp_ref_shape(r, shape);
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: tensor %s: %s %s overflows size_t in bytes",
                            call, r->name, srp_dtype_str(r->dtype),
                            srp_shape_str(str, r->ndim, shape));
        }
    }
    size_t a = 0, b = 0;
    const srp_status st = srp_unique_names(refs, count, sizeof(*refs), &a, &b);
    if (st != SRP_ERR_INVALID_ARG)
        return st;
    return srp_fail(st, "%s: the list names %s twice (refs[%zu] and refs[%zu])", call, refs[a].name,
                    a, b);
}

/* ---- little-endian fields ---- */

void srp_put_u32_le(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

void srp_put_u64_le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

uint32_t srp_get_u32_le(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t srp_get_u64_le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* ---- little-endian data ---- */

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

void srp_copy_little_endian(void *dst, const void *src, size_t bytes, size_t elem)
{
    if (elem == 1 || host_is_little_endian())
        memcpy(dst, src, bytes);
    else
        swap_copy(dst, src, bytes, elem);
}

/* ---- the writer ---- */

static void write_all(srp_file_writer *w, const unsigned char *p, size_t n)
{
    while (n > 0 && !w->failed) {
        const ssize_t r = write(w->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            w->failed = r < 0 ? errno : EIO;
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

static void flush_writer(srp_file_writer *w)
{
    write_all(w, w->buf, w->used);
    w->used = 0;
}

void srp_writer_put(srp_file_writer *w, const void *data, size_t n)
{
    const unsigned char *p = data;
    w->crc = srp_crc32(w->crc, p, n);
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

void srp_writer_put_zeros(srp_file_writer *w, uint64_t n)
{
    static const unsigned char zeros[64];
    while (n > 0) {
        const size_t take = n < sizeof(zeros) ? (size_t)n : sizeof(zeros);
        srp_writer_put(w, zeros, take);
        n -= take;
    }
}

void srp_writer_put_tensor(srp_file_writer *w, const srp_tensor_ref *r, size_t bytes)
{
    const size_t elem = srp_dtype_size(r->dtype);
    const unsigned char *p = r->data;
    if (elem == 1 || host_is_little_endian()) {
        srp_writer_put(w, p, bytes);
        return;
    }
    unsigned char tmp[4096]; /* a multiple of every element size */
    while (bytes > 0) {
        const size_t take = bytes < sizeof(tmp) ? bytes : sizeof(tmp);
        swap_copy(tmp, p, take, elem);
        srp_writer_put(w, tmp, take);
        p += take;
        bytes -= take;
    }
}

/* The directory holding path, fsync'ed so that the rename is durable: 0,
 * or the errno of the failure. */
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
        return ENOMEM;
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const int open_err = errno;
    free(dir);
    if (fd < 0)
        return open_err;
    int err = fsync(fd) == 0 ? 0 : errno;
    if (err == EINVAL || err == ENOTSUP)
        err = 0; /* file systems that cannot sync a directory */
    close(fd);
    return err;
}

srp_status srp_save_atomically(const char *path, void (*emit)(srp_file_writer *, const void *),
                               const void *ctx, const char *call)
{
    const size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    srp_file_writer w = {-1, malloc(WRITE_BUFFER), 0, 0, 0};
    srp_status st = SRP_OK;
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
        st = srp_fail(SRP_ERR_IO, "%s: cannot create %s: %s (%s is as it was)", call, tmp,
                      strerror(errno), path);
        goto done;
    }
    emit(&w, ctx);
    flush_writer(&w);
    if (!w.failed && fsync(w.fd) != 0)
        w.failed = errno;
    if (close(w.fd) != 0 && !w.failed)
        w.failed = errno;
    const int renamed = !w.failed && rename(tmp, path) == 0;
    if (!renamed) {
        const int err = w.failed ? w.failed : errno;
        unlink(tmp);
        st = srp_fail(SRP_ERR_IO, "%s: %s %s: %s (%s is as it was)", call,
                      w.failed ? "writing" : "renaming", tmp, strerror(err), path);
        goto done;
    }
    /* The new file is in place; until the directory reaches the disk, a
     * crash may still bring the old one back (either one whole). */
    const int dir_err = sync_parent_dir(path);
    if (dir_err != 0)
        st = srp_fail(SRP_ERR_IO,
                      "%s: %s now holds the new file, but syncing its directory failed (%s): "
                      "after a crash it may hold the old one",
                      call, path, strerror(dir_err));
done:
    free(w.buf);
    free(tmp);
    return st;
}

/* ---- reading ---- */

srp_status srp_read_whole_file(const char *path, unsigned char **out, size_t *size,
                               const char *call)
{
    /* O_NONBLOCK: a FIFO in place of the file must not hang the open. */
    const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return srp_fail(SRP_ERR_IO, "%s: cannot open %s: %s", call, path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 0 ||
        (uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return srp_fail(SRP_ERR_IO, "%s: %s is not a regular file", call, path);
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
        return srp_fail(SRP_ERR_IO, "%s: reading %s stopped at byte %zu of %zu", call, path, got,
                        n);
    }
    *out = buf;
    *size = n;
    return SRP_OK;
}
