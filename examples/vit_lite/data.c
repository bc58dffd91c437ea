/* Dataset readers: IDX through zlib (gzopen reads gzip and plain files
 * alike), CIFAR-10 binary batches, and the synthetic set. Every length is
 * checked before it is trusted; a bad file gives a message, never a crash. */
#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

static int file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fclose(f);
    return 1;
}

/* Limits well above any real IDX image set; they bound the allocation a
 * corrupt header could ask for. */
#define IDX_MAX_COUNT 10000000u
#define IDX_MAX_SIDE 4096u

/* Reads what is left of f, up to max bytes, into *data (malloc'd; *len:
 * how many came). The buffer grows with the data that arrives: a short
 * file that claims 200 GB costs what it holds, not 200 GB (fuzz_idx found
 * the up-front allocation). 0 when out of memory. */
static int read_rest(gzFile f, size_t max, unsigned char **data, size_t *len)
{
    size_t cap = max < ((size_t)1 << 20) ? max : (size_t)1 << 20;
    unsigned char *buf = malloc(cap);
    *len = 0;
    while (buf && *len < max) {
        if (*len == cap) {
            const size_t grown = cap > max / 2 ? max : 2 * cap;
            unsigned char *more = realloc(buf, grown);
            if (!more)
                free(buf);
            buf = more;
            cap = grown;
            continue;
        }
        const size_t room = cap - *len;
        const int got = gzread(f, buf + *len, (unsigned)(room > (1u << 30) ? (1u << 30) : room));
        if (got <= 0)
            break;
        *len += (size_t)got;
    }
    *data = buf;
    return buf != NULL;
}

ex_code vit_read_idx(const char *path, int ndims, size_t dims[3], unsigned char **data,
                     ex_error *err)
{
    *data = NULL;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return ex_fail(err, EX_FAILED, "%s: cannot open (%s)", path,
                       strerror(errno ? errno : ENOENT));
    unsigned char head[4 + 4 * 3];
    const int head_len = 4 + 4 * ndims, got = gzread(f, head, (unsigned)head_len);
    ex_code rc = EX_OK;
    if (got != head_len)
        rc = ex_fail(err, EX_FAILED, "%s: truncated or unreadable IDX header (%d of %d bytes)",
                     path, got < 0 ? 0 : got, head_len);
    else if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] != ndims)
        rc = ex_fail(err, EX_FAILED,
                     "%s: not an IDX file of unsigned bytes with %d dimensions (magic %02x %02x "
                     "%02x %02x, expected 00 00 08 %02x)",
                     path, ndims, head[0], head[1], head[2], head[3], ndims);
    size_t total = 1, len = 0;
    for (int i = 0; rc == EX_OK && i < ndims; i++) {
        const unsigned char *p = head + 4 + 4 * i;
        dims[i] = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        const size_t limit = i == 0 ? IDX_MAX_COUNT : IDX_MAX_SIDE;
        if (dims[i] == 0 || dims[i] > limit)
            rc = ex_fail(err, EX_FAILED, "%s: dimension %d is %zu (expected 1..%zu)", path, i,
                         dims[i], limit);
        total *= dims[i];
    }
    /* one byte more than the header claims: a longer file is refused */
    if (rc == EX_OK && !read_rest(f, total + 1, data, &len))
        rc = ex_fail(err, EX_FAILED, "%s: out of memory for %zu bytes", path, total);
    int zerr = 0;
    const char *msg = gzerror(f, &zerr);
    if (rc == EX_OK && len < total)
        rc = ex_fail(err, EX_FAILED, "%s: truncated: %zu of %zu data bytes%s%s", path, len, total,
                     zerr != Z_OK ? ", " : "", zerr != Z_OK ? msg : "");
    else if (rc == EX_OK && len > total)
        rc = ex_fail(err, EX_FAILED, "%s: longer than its header says (%zu data bytes)", path,
                     total);
    gzclose(f);
    if (rc != EX_OK) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

/* Normalizes images (bytes) per channel with the training set's statistics. */
static void compute_stats(const unsigned char *pixels, size_t count, size_t channels, size_t plane,
                          float *mean, float *std)
{
    for (size_t c = 0; c < channels; c++) {
        double sum = 0.0, sumsq = 0.0;
        for (size_t i = 0; i < count; i++) {
            const unsigned char *p = pixels + (i * channels + c) * plane;
            for (size_t k = 0; k < plane; k++) {
                const double v = p[k] / 255.0;
                sum += v;
                sumsq += v * v;
            }
        }
        const double n = (double)count * (double)plane, m = sum / n;
        const double var = sumsq / n - m * m;
        mean[c] = (float)m;
        std[c] = (float)(var > 1e-12 ? sqrt(var) : 1.0);
    }
}

static ex_code to_dataset(const unsigned char *pixels, const unsigned char *labels, size_t count,
                          size_t channels, size_t height, size_t width, const float *mean,
                          const float *std, vit_dataset *d, const char *labels_path, ex_error *err)
{
    const size_t plane = height * width;
    d->count = count;
    d->channels = channels;
    d->height = height;
    d->width = width;
    d->classes = 10;
    for (size_t c = 0; c < channels; c++)
        d->background[c] = -mean[c] / std[c];
    d->images = malloc(sizeof(float) * count * channels * plane);
    d->labels = malloc(sizeof(int) * count);
    if (!d->images || !d->labels)
        return ex_fail(err, EX_FAILED, "out of memory for %zu images", count);
    for (size_t i = 0; i < count; i++) {
        if (labels[i] >= 10)
            return ex_fail(err, EX_FAILED, "%s: label %u of example %zu is not in 0..9",
                           labels_path, labels[i], i);
        d->labels[i] = labels[i];
        for (size_t c = 0; c < channels; c++) {
            const unsigned char *p = pixels + (i * channels + c) * plane;
            float *q = d->images + (i * channels + c) * plane;
            for (size_t k = 0; k < plane; k++)
                q[k] = (p[k] / 255.0f - mean[c]) / std[c];
        }
    }
    return EX_OK;
}

/* The training and the test set (of 10 classes), from pixel and label
 * bytes after a reader's rc, normalized with the training images'
 * statistics; the bytes are freed, and out too on failure. */
static ex_code make_sets(ex_code rc, unsigned char *pix[2], unsigned char *lab[2],
                         const size_t count[2], size_t channels, size_t height, size_t width,
                         const char *const labels_path[2], vit_data *out, ex_error *err)
{
    if (rc == EX_OK)
        compute_stats(pix[0], count[0], channels, height * width, out->mean, out->std);
    for (int s = 0; s < 2 && rc == EX_OK; s++)
        rc = to_dataset(pix[s], lab[s], count[s], channels, height, width, out->mean, out->std,
                        s ? &out->test : &out->train, labels_path[s], err);
    for (int s = 0; s < 2; s++) {
        free(pix[s]);
        free(lab[s]);
    }
    if (rc != EX_OK)
        vit_data_free(out);
    return rc;
}

/* Finds dir/name.gz or dir/name. */
static int find_idx(const char *dir, const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.gz", dir, name);
    if (file_exists(path))
        return 1;
    snprintf(path, len, "%s/%s", dir, name);
    return file_exists(path);
}

ex_code vit_load_idx(const char *dir, const char *package_hint, vit_data *out, ex_error *err)
{
    memset(out, 0, sizeof(*out));
    /* train images, train labels, test images, test labels */
    static const char *names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                   "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    char paths[4][1024];
    for (int i = 0; i < 4; i++)
        if (!find_idx(dir, names[i], paths[i], sizeof(paths[i])))
            return ex_fail(err, EX_FAILED, "%s/%s(.gz): no such file%s%s", dir, names[i],
                           package_hint ? "; " : "", package_hint ? package_hint : "");
    unsigned char *pix[2] = {NULL, NULL}, *lab[2] = {NULL, NULL};
    size_t dims[4][3] = {{0}};
    ex_code rc = EX_OK;
    for (int i = 0; i < 4 && rc == EX_OK; i++)
        rc = vit_read_idx(paths[i], i % 2 == 0 ? 3 : 1, dims[i], i % 2 ? &lab[i / 2] : &pix[i / 2],
                          err);
    for (int i = 0; i < 4 && rc == EX_OK; i += 2)
        if (dims[i][0] != dims[i + 1][0])
            rc = ex_fail(err, EX_FAILED, "%s has %zu images but %s has %zu labels", paths[i],
                         dims[i][0], paths[i + 1], dims[i + 1][0]);
    if (rc == EX_OK && (dims[0][1] != dims[2][1] || dims[0][2] != dims[2][2]))
        rc = ex_fail(err, EX_FAILED, "%s holds %zux%zu images but %s holds %zux%zu", paths[0],
                     dims[0][1], dims[0][2], paths[2], dims[2][1], dims[2][2]);
    const size_t count[2] = {rc == EX_OK ? dims[0][0] : 0, rc == EX_OK ? dims[2][0] : 0};
    const char *const labels_path[2] = {paths[1], paths[3]};
    return make_sets(rc, pix, lab, count, 1, dims[0][1], dims[0][2], labels_path, out, err);
}

/* One CIFAR-10 batch file, appended to pixels/labels: records of 1 label
 * byte + 3x32x32 pixel bytes (channel-major). */
static ex_code read_cifar_file(const char *path, unsigned char **pixels, unsigned char **labels,
                               size_t *count, ex_error *err)
{
    enum { RECORD = 1 + 3 * 32 * 32, PER_FILE_MAX = 100000 };
    FILE *f = fopen(path, "rb");
    if (!f)
        return ex_fail(err, EX_FAILED, "%s: cannot open (%s)", path, strerror(errno));
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    ex_code rc = EX_OK;
    if (size <= 0 || size % RECORD != 0 || size / RECORD > PER_FILE_MAX || fseek(f, 0, SEEK_SET))
        rc = ex_fail(err, EX_FAILED,
                     "%s: size %ld is not a whole number (1..%d) of %d-byte CIFAR-10 records", path,
                     size, PER_FILE_MAX, RECORD);
    const size_t n = rc == EX_OK ? (size_t)size / RECORD : 0;
    unsigned char *p = realloc(*pixels, (*count + n) * (RECORD - 1) + 1);
    if (p)
        *pixels = p;
    unsigned char *l = realloc(*labels, *count + n + 1);
    if (l)
        *labels = l;
    if (rc == EX_OK && (!p || !l))
        rc = ex_fail(err, EX_FAILED, "%s: out of memory", path);
    unsigned char rec[RECORD];
    for (size_t i = 0; i < n && rc == EX_OK; i++) {
        if (fread(rec, 1, RECORD, f) != RECORD)
            rc = ex_fail(err, EX_FAILED, "%s: read error at record %zu", path, i);
        else if (rec[0] >= 10)
            rc = ex_fail(err, EX_FAILED, "%s: record %zu has label %u (expected 0..9)", path, i,
                         rec[0]);
        else {
            (*labels)[*count + i] = rec[0];
            memcpy(*pixels + (*count + i) * (RECORD - 1), rec + 1, RECORD - 1);
        }
    }
    fclose(f);
    *count += n;
    return rc;
}

ex_code vit_load_cifar10(const char *dir, vit_data *out, ex_error *err)
{
    memset(out, 0, sizeof(*out));
    unsigned char *pix[2] = {NULL, NULL}, *lab[2] = {NULL, NULL};
    size_t count[2] = {0, 0};
    char path[1024];
    ex_code rc = EX_OK;
    for (int i = 1; i <= 5 && rc == EX_OK; i++) {
        snprintf(path, sizeof(path), "%s/data_batch_%d.bin", dir, i);
        rc = read_cifar_file(path, &pix[0], &lab[0], &count[0], err);
    }
    if (rc == EX_OK) {
        snprintf(path, sizeof(path), "%s/test_batch.bin", dir);
        rc = read_cifar_file(path, &pix[1], &lab[1], &count[1], err);
    }
    const char *const labels_path[2] = {"CIFAR-10 training batches", path};
    return make_sets(rc, pix, lab, count, 3, 32, 32, labels_path, out, err);
}

/* A stroke through the middle at the class's angle (10 angles, 18 degrees
 * apart), shifted a little, on noise. */
static void draw_synthetic(srp_rng *r, int label, unsigned char *img)
{
    const double pi = 3.14159265358979323846;
    const double angle = label * pi / 10.0 + (srp_rng_uniform(r) - 0.5) * 0.15;
    const double cx = 13.5 + (srp_rng_uniform(r) - 0.5) * 6.0;
    const double cy = 13.5 + (srp_rng_uniform(r) - 0.5) * 6.0;
    const double dx = cos(angle), dy = sin(angle);
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++) {
            const double px = x - cx, py = y - cy;
            const double along = px * dx + py * dy, across = fabs(-px * dy + py * dx);
            double v = 40.0 * srp_rng_uniform(r);
            if (across < 1.6 && fabs(along) < 10.0)
                v += 200.0;
            img[y * 28 + x] = (unsigned char)(v > 255.0 ? 255.0 : v);
        }
}

ex_code vit_make_synthetic(size_t train_count, size_t test_count, uint64_t seed, vit_data *out,
                           ex_error *err)
{
    memset(out, 0, sizeof(*out));
    const size_t counts[2] = {train_count, test_count};
    unsigned char *pix[2] = {NULL, NULL}, *lab[2] = {NULL, NULL};
    srp_rng r;
    srp_rng_seed(&r, seed);
    ex_code rc = EX_OK;
    for (int s = 0; s < 2 && rc == EX_OK; s++) {
        pix[s] = malloc(counts[s] * 28 * 28 + 1);
        lab[s] = malloc(counts[s] + 1);
        if (!pix[s] || !lab[s]) {
            rc = ex_fail(err, EX_FAILED, "out of memory for the synthetic dataset");
            break;
        }
        for (size_t i = 0; i < counts[s]; i++) {
            lab[s][i] = (unsigned char)srp_rng_below(&r, 10);
            draw_synthetic(&r, lab[s][i], pix[s] + i * 28 * 28);
        }
    }
    const char *const labels_path[2] = {"synthetic", "synthetic"};
    return make_sets(rc, pix, lab, counts, 1, 28, 28, labels_path, out, err);
}

void vit_data_free(vit_data *d)
{
    free(d->train.images); /* val is a view of it */
    free(d->train.labels);
    free(d->test.images);
    free(d->test.labels);
    memset(d, 0, sizeof(*d));
}

ex_code vit_split_validation(vit_data *d, size_t count, ex_error *err)
{
    vit_dataset *tr = &d->train;
    if (count >= tr->count)
        return ex_fail(err, EX_USAGE, "--val %zu leaves no training images (there are %zu)", count,
                       tr->count);
    const size_t first = tr->count - count;
    d->val = *tr;
    d->val.count = count;
    d->val.images = tr->images + first * tr->channels * tr->height * tr->width;
    d->val.labels = tr->labels + first;
    tr->count = first;
    return EX_OK;
}

/* One image, mirrored and/or moved by (dx, dy) pixels, the uncovered
 * pixels set to the background. in, out: [C][H][W] */
static void augment_image(const vit_dataset *d, const float *in, int flip, int dx, int dy,
                          float *out)
{
    const long H = (long)d->height, W = (long)d->width;
    for (size_t c = 0; c < d->channels; c++)
        for (long y = 0; y < H; y++)
            for (long x = 0; x < W; x++) {
                const long sy = y - dy, sx0 = x - dx, sx = flip ? W - 1 - sx0 : sx0;
                out[(long)c * H * W + y * W + x] = sy >= 0 && sy < H && sx0 >= 0 && sx0 < W
                                                       ? in[(long)c * H * W + sy * W + sx]
                                                       : d->background[c];
            }
}

/* Sets rect = {x, y, width, height} of image [C][H][W] to the background. */
static void erase_rectangle(const vit_dataset *d, const int *rect, float *image)
{
    for (size_t c = 0; c < d->channels; c++)
        for (int y = rect[1]; y < rect[1] + rect[3]; y++)
            for (int x = rect[0]; x < rect[0] + rect[2]; x++)
                image[(c * d->height + (size_t)y) * d->width + (size_t)x] = d->background[c];
}

void vit_gather_batch(const vit_dataset *d, const uint64_t *order, size_t first, size_t n,
                      const vit_augment *aug, float *images, int *labels)
{
    const size_t size = d->channels * d->height * d->width;
    for (size_t i = 0; i < n; i++) {
        const size_t src = order ? (size_t)order[first + i] : first + i;
        const float *in = d->images + src * size;
        float *out = images + i * size;
        labels[i] = d->labels[src];
        const int flip = aug && aug->flip && aug->flip[i];
        const int dx = aug && aug->shift ? aug->shift[2 * i] : 0;
        const int dy = aug && aug->shift ? aug->shift[2 * i + 1] : 0;
        if (!flip && dx == 0 && dy == 0)
            memcpy(out, in, sizeof(float) * size);
        else
            augment_image(d, in, flip, dx, dy, out);
        if (aug && aug->erase)
            erase_rectangle(d, aug->erase + 4 * i, out);
    }
}
