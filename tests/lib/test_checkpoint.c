/* Checkpoints: bit-exact round trips, the documented byte layout (read here
 * with an independent CRC-32), rejection of every truncation and of random
 * corruption with the destination untouched, the status of each kind of
 * mismatch, crash safety of saving (including a process killed mid-write),
 * and a training run resumed from a checkpoint continuing bit for bit. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crc32.h" /* srp_crc32_in_chunks: src/crc32.c is compiled into this test */
#include "testutil.h"

/* CRC-32 (ISO-HDLC, reflected 0xEDB88320), bit by bit: what zlib's crc32
 * computes, written independently of the library. */
static uint32_t crc32_ref(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void set_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* The chunk loop behind every CRC of the library (the checkpoint trailer,
 * dist.c's replica check): zlib takes 32-bit lengths, so srp_crc32 feeds it
 * 1 GiB at a time. A buffer of 4 GiB is not needed to test that loop: it
 * is the same function with a smaller chunk, here every split of short
 * buffers (chunk 1, a prime, a multiple and a divisor of the length, the
 * length itself and more), each against the bit-by-bit reference. */
static void test_crc_in_chunks(void **state)
{
    (void)state;
    unsigned char buf[1000];
    srp_rng r = seeded_rng(42);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)srp_rng_next_u64(&r);
    static const size_t lengths[] = {0, 1, 7, 8, 63, 64, 500, 999, 1000};
    static const size_t chunks[] = {1, 7, 8, 64, 100, 999, 1000, 1001, SRP_CRC32_CHUNK};
    for (size_t a = 0; a < sizeof(lengths) / sizeof(lengths[0]); a++) {
        const size_t n = lengths[a];
        const uint32_t want = crc32_ref(buf, n);
        for (size_t b = 0; b < sizeof(chunks) / sizeof(chunks[0]); b++)
            assert_int_equal(srp_crc32_in_chunks(0, buf, n, chunks[b]), want);
        assert_int_equal(srp_crc32(0, buf, n), want);
        /* continued from an earlier CRC, as the replica check chains tensors */
        assert_int_equal(srp_crc32_in_chunks(srp_crc32(0, buf, n / 3), buf + n / 3, n - n / 3, 7),
                         want);
    }
}

/* Recomputes the trailer of a file image after an edit. */
static void fix_crc(unsigned char *img, size_t size)
{
    set_le32(img + size - 4, crc32_ref(img, size - 4));
}

/* ======================================================================
 * A small set of tensors of every dtype and rank
 * ====================================================================== */

enum { NT = 7 };

typedef struct {
    float a[3][5];
    double b[2];
    uint64_t step;
    int64_t c[2][2][1][1];
    unsigned char bytes[7];
    float empty[1]; /* shape [0][3]: no elements */
    float u[33];
    srp_tensor_ref refs[NT];
} tensors;

static void tensors_init(tensors *t, uint64_t seed, int fill)
{
    memset(t, 0, sizeof(*t));
    srp_rng r = seeded_rng(seed);
    if (fill) {
        fill_normal_f(&r, &t->a[0][0], 15, 1.0);
        t->a[0][0] = -0.0f;                               /* bit patterns that a careless copy */
        t->a[0][1] = 1e-42f;                              /* (through a conversion) would lose */
        memcpy(&t->a[0][2], &(uint32_t){0x7fc00123u}, 4); /* a NaN payload */
        t->b[0] = 1.0 / 3.0;
        t->b[1] = -1e300;
        t->step = 0xfedcba9876543210ull;
        t->c[0][0][0][0] = -5;
        t->c[1][1][0][0] = INT64_MIN;
        for (int i = 0; i < 7; i++)
            t->bytes[i] = (unsigned char)(0xF0 + i);
        fill_normal_f(&r, t->u, 33, 1.0);
    }
    const srp_tensor_ref refs[NT] = {
        {"model.a", SRP_DTYPE_F32, 2, {3, 5, 0, 0}, t->a},
        {"model.b", SRP_DTYPE_F64, 1, {2, 0, 0, 0}, t->b},
        {"train.step", SRP_DTYPE_U64, 0, {0, 0, 0, 0}, &t->step},
        {"c4", SRP_DTYPE_I64, 4, {2, 2, 1, 1}, t->c},
        {"raw bytes", SRP_DTYPE_U8, 1, {7, 0, 0, 0}, t->bytes},
        {"empty", SRP_DTYPE_F32, 2, {0, 3, 0, 0}, t->empty},
        {"blocks.0.attn.qkv.u", SRP_DTYPE_F32, 1, {33, 0, 0, 0}, t->u},
    };
    memcpy(t->refs, refs, sizeof(refs));
}

/* Data of t and s equal, byte for byte. */
static void assert_same_data(const tensors *t, const tensors *s)
{
    assert_memory_equal(t->a, s->a, sizeof(t->a));
    assert_memory_equal(t->b, s->b, sizeof(t->b));
    assert_memory_equal(&t->step, &s->step, sizeof(t->step));
    assert_memory_equal(t->c, s->c, sizeof(t->c));
    assert_memory_equal(t->bytes, s->bytes, sizeof(t->bytes));
    assert_memory_equal(t->u, s->u, sizeof(t->u));
}

static unsigned char *saved_image(tensors *t, const char *path, size_t *size)
{
    assert_ok(srp_checkpoint_save(path, t->refs, NT));
    unsigned char *img = read_file_bytes(path, size);
    assert_non_null(img);
    return img;
}

/* A test of bad files: src (seed) saved as <name>.ckpt, whose bytes are
 * img; dst (seed + 1) to load edited copies into, written as
 * <name>_bad.ckpt; keep for a copy of dst. */
typedef struct {
    char path[300], bad[300];
    tensors src, dst, keep;
    unsigned char *img;
    size_t size;
} bad_files;

static void bad_files_init(bad_files *f, const char *name, uint64_t seed)
{
    char file[64];
    snprintf(file, sizeof(file), "%s.ckpt", name);
    scratch_path(f->path, sizeof(f->path), file);
    snprintf(file, sizeof(file), "%s_bad.ckpt", name);
    scratch_path(f->bad, sizeof(f->bad), file);
    tensors_init(&f->src, seed, 1);
    tensors_init(&f->dst, seed + 1, 1);
    f->img = saved_image(&f->src, f->path, &f->size);
}

static void bad_files_free(bad_files *f) { free(f->img); }

/* ======================================================================
 * Round trip and layout
 * ====================================================================== */

static void test_round_trip_is_bit_exact(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "rt.ckpt");
    tensors src, dst;
    tensors_init(&src, 1, 1);
    tensors_init(&dst, 2, 0);
    assert_ok(srp_checkpoint_save(path, src.refs, NT));
    assert_ok(srp_checkpoint_load(path, dst.refs, NT));
    assert_same_data(&src, &dst);
    /* saving twice gives the same bytes (no time stamps, zeroed padding) */
    size_t n1, n2;
    unsigned char *f1 = read_file_bytes(path, &n1);
    assert_ok(srp_checkpoint_save(path, dst.refs, NT));
    unsigned char *f2 = read_file_bytes(path, &n2);
    assert_non_null(f1);
    assert_non_null(f2);
    assert_int_equal(n1, n2);
    assert_memory_equal(f1, f2, n1);
    /* a subset (and another order) loads too */
    tensors part;
    tensors_init(&part, 3, 0);
    const srp_tensor_ref sub[2] = {part.refs[6], part.refs[0]};
    assert_ok(srp_checkpoint_load(path, sub, 2));
    assert_memory_equal(part.u, src.u, sizeof(src.u));
    assert_memory_equal(part.a, src.a, sizeof(src.a));
    free(f1);
    free(f2);
}

/* The bytes follow docs/FORMAT.md. */
static void test_layout_matches_format_doc(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "layout.ckpt");
    tensors t;
    tensors_init(&t, 4, 1);
    size_t size;
    unsigned char *img = saved_image(&t, path, &size);
    assert_int_equal(crc32_ref((const unsigned char *)"123456789", 9), 0xCBF43926u);
    assert_memory_equal(img, "SRPCKPT\0", 8);
    assert_int_equal(le32(img + 8), 1);  /* version */
    assert_int_equal(le32(img + 12), 0); /* flags */
    assert_int_equal(le64(img + 16), size);
    assert_int_equal(le64(img + 24), NT);
    const uint64_t table = le64(img + 32);
    assert_int_equal(le32(img + size - 4), crc32_ref(img, size - 4));
    size_t pos = 40;
    for (int i = 0; i < NT; i++) {
        const srp_tensor_ref *r = &t.refs[i];
        const unsigned char *e = img + pos;
        const size_t len = strlen(r->name);
        assert_int_equal(le32(e), len);
        assert_int_equal(le32(e + 4), r->dtype);
        assert_int_equal(le32(e + 8), r->ndim);
        assert_int_equal(le32(e + 12), 0);
        size_t elems = 1;
        for (size_t k = 0; k < 4; k++) {
            assert_int_equal(le64(e + 16 + 8 * k), k < r->ndim ? r->shape[k] : 0);
            elems *= k < r->ndim ? r->shape[k] : 1;
        }
        const uint64_t off = le64(e + 48), bytes = le64(e + 56);
        assert_int_equal(bytes, elems * srp_dtype_size(r->dtype));
        assert_int_equal(off % 64, 0);
        assert_true(off >= 40 + table && off + bytes <= size - 4);
        assert_memory_equal(e + 64, r->name, len);
        assert_memory_equal(img + off, r->data, bytes); /* little-endian host */
        pos += 64 + (len + 7) / 8 * 8;
    }
    assert_int_equal(pos, 40 + table);
    free(img);
}

/* ======================================================================
 * Corruption: every truncation, random flips, structural edits
 * ====================================================================== */

static void test_every_truncation_is_rejected(void **state)
{
    (void)state;
    bad_files f;
    bad_files_init(&f, "trunc", 5);
    assert_true(f.size > 600);
    for (size_t len = 0; len < f.size; len++) {
        write_file_bytes(f.bad, f.img, len);
        f.keep = f.dst;
        assert_status(srp_checkpoint_load(f.bad, f.dst.refs, NT), SRP_ERR_FORMAT);
        assert_same_data(&f.dst, &f.keep);
    }
    /* and one byte too many */
    unsigned char *longer = malloc(f.size + 1);
    assert_non_null(longer);
    memcpy(longer, f.img, f.size);
    longer[f.size] = 0;
    write_file_bytes(f.bad, longer, f.size + 1);
    assert_status(srp_checkpoint_load(f.bad, f.dst.refs, NT), SRP_ERR_FORMAT);
    assert_same_data(&f.dst, &f.keep);
    free(longer);
    bad_files_free(&f);
}

static void test_random_corruption_is_rejected(void **state)
{
    (void)state;
    bad_files f;
    bad_files_init(&f, "flip", 7);
    unsigned char *mut = malloc(f.size);
    assert_non_null(mut);
    const size_t data_start = (size_t)((40 + le64(f.img + 32) + 63) / 64 * 64);
    srp_rng r = seeded_rng(99);
    int accepted_in_data = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(mut, f.img, f.size);
        const int flips = 1 + (int)srp_rng_below(&r, 4);
        size_t first = f.size;
        for (int k = 0; k < flips; k++) {
            const size_t at = (size_t)srp_rng_below(&r, f.size);
            mut[at] ^= (unsigned char)(1 + srp_rng_below(&r, 255));
            first = at < first ? at : first;
        }
        /* Half the trials repair the CRC: the parser itself must then catch
         * (or, in tensor data, accept) the edit, and never crash. */
        const int repaired = trial % 2 == 1 && first < f.size - 4;
        if (repaired)
            fix_crc(mut, f.size);
        if (memcmp(mut, f.img, f.size) == 0)
            continue; /* flips that cancelled out */
        write_file_bytes(f.bad, mut, f.size);
        f.keep = f.dst;
        const srp_status st = srp_checkpoint_load(f.bad, f.dst.refs, NT);
        if (st == SRP_OK) {
            /* only a CRC-valid edit of tensor bytes can load */
            assert_true(repaired && first >= data_start);
            accepted_in_data++;
            tensors_init(&f.dst, 8, 1); /* back to the reference contents */
            continue;
        }
        /* a repaired edit of a name loses a tensor: SRP_ERR_NOT_FOUND */
        assert_true(st == SRP_ERR_FORMAT || st == SRP_ERR_VERSION || st == SRP_ERR_SHAPE ||
                    st == SRP_ERR_NOT_FOUND);
        if (!repaired)
            assert_true(st == SRP_ERR_FORMAT || st == SRP_ERR_VERSION);
        assert_same_data(&f.dst, &f.keep);
    }
    assert_true(accepted_in_data > 0); /* the repaired trials did reach the data */
    free(mut);
    bad_files_free(&f);
}

/* Structural edits with a valid CRC: each must be caught by its own check. */
static void test_structural_edits_are_rejected(void **state)
{
    (void)state;
    bad_files f;
    bad_files_init(&f, "edit", 9);
    unsigned char *mut = malloc(f.size);
    assert_non_null(mut);
    const size_t e0 = 40, e1 = 40 + 64 + 8; /* entries 0 ("model.a") and 1 */
    /* file: a fault of the file itself, caught whatever is requested (also
     * when only tensors 2.. are); otherwise only the full list catches it. */
    typedef struct {
        size_t at;
        uint64_t value;
        int width;
        srp_status want;
        int file;
        const char *what;
    } edit;
    const edit edits[] = {
        {0, 'X', 1, SRP_ERR_FORMAT, 1, "magic"},
        {8, 3, 4, SRP_ERR_VERSION, 1, "version 3"},
        {8, 0, 4, SRP_ERR_VERSION, 1, "version 0"},
        {12, 1, 4, SRP_ERR_FORMAT, 1, "flags"},
        {16, 1u << 20, 8, SRP_ERR_FORMAT, 1, "file size"},
        {24, 1000000, 8, SRP_ERR_FORMAT, 1, "huge tensor count"},
        {24, NT - 1, 8, SRP_ERR_FORMAT, 1, "count below the table"},
        {24, 0, 8, SRP_ERR_FORMAT, 1, "no tensors"},
        {32, UINT64_MAX - 7, 8, SRP_ERR_FORMAT, 1, "table size past the end"},
        {32, 64, 8, SRP_ERR_FORMAT, 1, "table size too small"},
        {e0, 0, 4, SRP_ERR_FORMAT, 1, "empty name"},
        {e0, 256, 4, SRP_ERR_FORMAT, 1, "name too long"},
        {e0, 6, 4, SRP_ERR_FORMAT, 1, "name length into the padding"},
        {e0, 8, 4, SRP_ERR_FORMAT, 1, "name ending in NUL"},
        {e0 + 4, 9, 4, SRP_ERR_FORMAT, 1, "unknown dtype"},
        {e0 + 4, SRP_DTYPE_U8, 4, SRP_ERR_FORMAT, 1, "dtype not matching the byte count"},
        {e0 + 8, 5, 4, SRP_ERR_FORMAT, 1, "ndim 5"},
        {e0 + 12, 1, 4, SRP_ERR_FORMAT, 1, "reserved"},
        {e0 + 16, 1u << 30, 8, SRP_ERR_FORMAT, 1, "shape not matching the byte count"},
        {e0 + 32, 1, 8, SRP_ERR_FORMAT, 1, "a dimension past ndim"},
        {e0 + 48, 8, 8, SRP_ERR_FORMAT, 1, "offset inside the header"},
        {e0 + 48, 1u << 30, 8, SRP_ERR_FORMAT, 1, "offset past the end"},
        {e0 + 56, UINT64_MAX, 8, SRP_ERR_FORMAT, 1, "byte count overflowing"},
        {e0 + 64, 0, 1, SRP_ERR_FORMAT, 1, "NUL in a name"},
        {e0 + 64 + 7, 'x', 1, SRP_ERR_FORMAT, 1, "non-zero name padding"},
        {e1 + 48, 0, 8, SRP_ERR_FORMAT, 1, "offset 0"},
        {e1 + 48, le64(f.img + e0 + 48), 8, SRP_ERR_FORMAT, 1, "tensor 1 overlapping tensor 0"},
        {e1 + 64 + 6, 'a', 1, SRP_ERR_FORMAT, 1, "duplicate name (model.b -> model.a)"},
        {e0 + 64, 'M', 1, SRP_ERR_NOT_FOUND, 0, "renamed: a requested name is missing"},
    };
    const srp_tensor_ref *tail = f.dst.refs + 2; /* all but entries 0 and 1 */
    for (size_t k = 0; k < sizeof(edits) / sizeof(edits[0]); k++) {
        memcpy(mut, f.img, f.size);
        for (int b = 0; b < edits[k].width; b++)
            mut[edits[k].at + (size_t)b] = (unsigned char)(edits[k].value >> (8 * b));
        fix_crc(mut, f.size);
        write_file_bytes(f.bad, mut, f.size);
        f.keep = f.dst;
        srp_status st = srp_checkpoint_load(f.bad, f.dst.refs, NT);
        if (st == edits[k].want && edits[k].file)
            st = srp_checkpoint_load(f.bad, tail, NT - 2);
        if (st != edits[k].want) {
            print_error("edit '%s': got %s\n", edits[k].what, srp_status_str(st));
            fail();
        }
        assert_same_data(&f.dst, &f.keep);
    }
    /* the tail alone does load from the intact file */
    assert_ok(srp_checkpoint_load(f.path, tail, NT - 2));
    free(mut);
    bad_files_free(&f);
}

/* ======================================================================
 * Files of older builds, metadata, strict loads, what the details say
 * ====================================================================== */

static void set_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* tests/reference/checkpoint_v1.ckpt: written by srp_checkpoint_save of
 * the build before format version 2 (commit e79714e) from these values. */
typedef struct {
    float w[3][2], sigma;
    uint64_t step, order[3];
    unsigned char note[5];
    srp_tensor_ref refs[5];
} v1_model;

static void v1_model_init(v1_model *m, int fill)
{
    memset(m, 0, sizeof(*m));
    if (fill) {
        const float w[3][2] = {{0.5f, -1.0f}, {2.0f, 0.25f}, {-0.125f, 3.0f}};
        memcpy(m->w, w, sizeof(w));
        m->sigma = 1.5f;
        m->step = 1234567890123ull;
        m->order[0] = 2;
        m->order[1] = 0;
        m->order[2] = 1;
        memcpy(m->note, "hello", 5);
    }
    const srp_tensor_ref refs[5] = {
        {"blocks.0.attn.qkv.weight", SRP_DTYPE_F32, 2, {3, 2}, m->w},
        {"blocks.0.attn.qkv.sigma", SRP_DTYPE_F32, 0, {0}, &m->sigma},
        {"optim.step", SRP_DTYPE_U64, 0, {0}, &m->step},
        {"data.order", SRP_DTYPE_U64, 1, {3}, m->order},
        {"note", SRP_DTYPE_U8, 1, {5}, m->note},
    };
    memcpy(m->refs, refs, sizeof(refs));
}

static void test_version_1_files_still_load(void **state)
{
    (void)state;
    const char *old = SRP_TEST_DATA_DIR "/checkpoint_v1.ckpt";
    v1_model want, got;
    v1_model_init(&want, 1);
    v1_model_init(&got, 0);
    assert_ok(srp_checkpoint_load_strict(old, got.refs, 5));
    assert_memory_equal(got.w, want.w, sizeof(want.w));
    assert_memory_equal(&got.sigma, &want.sigma, sizeof(want.sigma));
    assert_int_equal(got.step, want.step);
    assert_memory_equal(got.order, want.order, sizeof(want.order));
    assert_memory_equal(got.note, want.note, sizeof(want.note));

    srp_checkpoint *c = NULL;
    assert_ok(srp_checkpoint_open(&c, old));
    assert_int_equal(srp_checkpoint_count(c), 5);
    assert_int_equal(srp_checkpoint_metadata_count(c), 0);
    assert_null(srp_checkpoint_metadata(c, "heads"));
    srp_tensor_ref info;
    assert_ok(srp_checkpoint_info(c, 0, &info)); /* the table's order */
    assert_string_equal(info.name, "blocks.0.attn.qkv.weight");
    assert_int_equal(info.ndim, 2);
    assert_int_equal(info.shape[0], 3);
    assert_int_equal(info.shape[1], 2);
    assert_null(info.data);
    srp_checkpoint_close(c);

    /* A save without metadata still writes version 1, byte for byte. */
    char path[300];
    scratch_path(path, sizeof(path), "v1_again.ckpt");
    assert_ok(srp_checkpoint_save(path, want.refs, 5));
    size_t n_old = 0, n_new = 0;
    unsigned char *a = read_file_bytes(old, &n_old), *b = read_file_bytes(path, &n_new);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(n_old, n_new);
    assert_memory_equal(a, b, n_old);
    free(a);
    free(b);
}

/* The configuration the metadata tests record, as a trainer would. */
static const char *const k_config[] = {"model", "vit-lite", "heads", "4", "depth", "2",
                                       "note", ""};
enum { K_CONFIG_PAIRS = 4 };

static void test_metadata_round_trip_and_layout(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "meta.ckpt");
    tensors src, dst;
    tensors_init(&src, 31, 1);
    tensors_init(&dst, 32, 0);
    assert_ok(srp_checkpoint_save_with_metadata(path, src.refs, NT, k_config, K_CONFIG_PAIRS));
    size_t size = 0;
    unsigned char *img = read_file_bytes(path, &size);
    assert_non_null(img);

    /* docs/FORMAT.md, version 2: a 48-byte header ending in metadata_size,
     * the table, then the pairs, each 8-aligned, then the data. */
    assert_int_equal(le32(img + 8), 2);
    assert_int_equal(le64(img + 16), size);
    const uint64_t table = le64(img + 32), meta = le64(img + 40);
    assert_int_equal(le32(img + size - 4), crc32_ref(img, size - 4));
    size_t pos = 48 + (size_t)table;
    for (int i = 0; i < K_CONFIG_PAIRS; i++) {
        const char *key = k_config[2 * i], *value = k_config[2 * i + 1];
        const size_t klen = strlen(key), vlen = strlen(value), padded = (klen + vlen + 7) / 8 * 8;
        assert_int_equal(le32(img + pos), klen);
        assert_int_equal(le32(img + pos + 4), vlen);
        assert_memory_equal(img + pos + 8, key, klen);
        assert_memory_equal(img + pos + 8 + klen, value, vlen);
        for (size_t k = klen + vlen; k < padded; k++)
            assert_int_equal(img[pos + 8 + k], 0);
        pos += 8 + padded;
    }
    assert_int_equal(pos, 48 + table + meta);
    const uint64_t first_offset = le64(img + 48 + 48); /* entry 0's data offset */
    assert_int_equal(first_offset, (pos + 63) / 64 * 64);

    /* The metadata without the tensors, then the tensors. */
    srp_checkpoint *c = NULL;
    assert_ok(srp_checkpoint_open(&c, path));
    assert_int_equal(srp_checkpoint_metadata_count(c), K_CONFIG_PAIRS);
    assert_string_equal(srp_checkpoint_metadata(c, "heads"), "4");
    assert_string_equal(srp_checkpoint_metadata(c, "model"), "vit-lite");
    assert_string_equal(srp_checkpoint_metadata(c, "note"), "");
    assert_null(srp_checkpoint_metadata(c, "width"));
    assert_null(srp_checkpoint_metadata(c, NULL));
    assert_ok(srp_checkpoint_check_metadata(c, k_config, K_CONFIG_PAIRS));
    assert_ok(srp_checkpoint_check_metadata(c, k_config + 2, 1)); /* a subset */
    assert_ok(srp_checkpoint_read_strict(c, dst.refs, NT));
    assert_same_data(&src, &dst);
    srp_checkpoint_close(c);
    tensors_init(&dst, 32, 0);
    assert_ok(srp_checkpoint_load(path, dst.refs, NT)); /* a plain load ignores the metadata */
    assert_same_data(&src, &dst);

    /* No metadata: the version 1 file of srp_checkpoint_save. */
    char plain[300];
    scratch_path(plain, sizeof(plain), "meta_none.ckpt");
    assert_ok(srp_checkpoint_save_with_metadata(plain, src.refs, NT, NULL, 0));
    size_t size1 = 0, size2 = 0;
    unsigned char *a = read_file_bytes(plain, &size1);
    assert_ok(srp_checkpoint_save(plain, src.refs, NT));
    unsigned char *b = read_file_bytes(plain, &size2);
    assert_int_equal(le32(a + 8), 1);
    assert_int_equal(size1, size2);
    assert_memory_equal(a, b, size1);
    free(a);
    free(b);
    free(img);
}

/* A trainer's comparison: every field that differs, by name, both values. */
static void test_metadata_check_names_each_field(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "meta_check.ckpt");
    tensors src;
    tensors_init(&src, 33, 1);
    assert_ok(srp_checkpoint_save_with_metadata(path, src.refs, NT, k_config, K_CONFIG_PAIRS));
    srp_checkpoint *c = NULL;
    assert_ok(srp_checkpoint_open(&c, path));
    const char *other[] = {"model", "vit-lite", "heads", "8", "depth", "1", "stem", "1"};
    assert_status(srp_checkpoint_check_metadata(c, other, 4), SRP_ERR_SHAPE);
    const char *detail = srp_last_error_detail();
    assert_int_equal(srp_last_error_status(), SRP_ERR_SHAPE);
    assert_non_null(strstr(detail, "3 fields"));
    assert_non_null(strstr(detail, "heads is 4 in the file, 8 here"));
    assert_non_null(strstr(detail, "depth is 2 in the file, 1 here"));
    assert_non_null(strstr(detail, "stem is not in the file (1 here)"));
    assert_null(strstr(detail, "model"));
    const char *dup[] = {"heads", "4", "heads", "4"};
    assert_status(srp_checkpoint_check_metadata(c, dup, 2), SRP_ERR_INVALID_ARG);
    assert_status(srp_checkpoint_check_metadata(c, NULL, 1), SRP_ERR_INVALID_ARG);
    assert_status(srp_checkpoint_check_metadata(NULL, k_config, 1), SRP_ERR_INVALID_ARG);
    srp_checkpoint_close(c);
}

static void test_metadata_edits_are_rejected(void **state)
{
    (void)state;
    char path[300], bad[300];
    scratch_path(path, sizeof(path), "meta_edit.ckpt");
    scratch_path(bad, sizeof(bad), "meta_edit_bad.ckpt");
    tensors src, dst, keep;
    tensors_init(&src, 34, 1);
    tensors_init(&dst, 35, 1);
    const char *meta[] = {"heads", "4", "depth", "2"};
    assert_ok(srp_checkpoint_save_with_metadata(path, src.refs, NT, meta, 2));
    size_t size = 0;
    unsigned char *img = read_file_bytes(path, &size);
    assert_non_null(img);
    unsigned char *mut = malloc(size);
    assert_non_null(mut);
    const size_t m0 = 48 + (size_t)le64(img + 32), m1 = m0 + 8 + 8; /* "heads" "4": 6 bytes */
    const uint64_t meta_size = le64(img + 40);
    typedef struct {
        size_t at;
        uint64_t value;
        int width;
        const char *detail; /* a part of the detail */
        const char *what;
    } edit;
    const edit edits[] = {
        {40, meta_size + 8, 8, "metadata entry 2", "metadata_size past its pairs"},
        {40, meta_size - 8, 8, "metadata entry 1", "metadata_size cutting a pair"},
        {40, UINT64_MAX - 100, 8, "metadata_size (offset 40)", "metadata_size past the file"},
        {m0, 0, 4, "key_len 0", "an empty key"},
        {m0, 256, 4, "key_len 256", "a key too long"},
        {m0 + 4, 1000, 4, "run past the metadata's end", "a value past the section"},
        {m0 + 8 + 1, 0, 1, "NUL byte", "a NUL in a key"},
        {m0 + 8 + 6, 'x', 1, "padding", "non-zero padding"},
        {m1 + 8, 'h', 1, "key \"heads\" appears twice", "a duplicate key (depth -> heads)"},
    };
    for (size_t k = 0; k < sizeof(edits) / sizeof(edits[0]); k++) {
        memcpy(mut, img, size);
        for (int b = 0; b < edits[k].width; b++)
            mut[edits[k].at + (size_t)b] = (unsigned char)(edits[k].value >> (8 * b));
        if (k == sizeof(edits) / sizeof(edits[0]) - 1)
            memcpy(mut + m1 + 8, "heads4\0\0", 8); /* key_len 5, value_len 1: "heads" "4" */
        if (k == sizeof(edits) / sizeof(edits[0]) - 1) {
            set_le32(mut + m1, 5);
            set_le32(mut + m1 + 4, 1);
        }
        fix_crc(mut, size);
        write_file_bytes(bad, mut, size);
        keep = dst;
        const srp_status st = srp_checkpoint_load(bad, dst.refs, NT);
        if (st != SRP_ERR_FORMAT || !strstr(srp_last_error_detail(), edits[k].detail)) {
            print_error("edit '%s': got %s, \"%s\"\n", edits[k].what, srp_status_str(st),
                        srp_last_error_detail());
            fail();
        }
        assert_same_data(&dst, &keep);
    }
    free(mut);
    free(img);
}

static void test_metadata_arguments(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "meta_args.ckpt");
    tensors t;
    tensors_init(&t, 36, 1);
    char long_key[300];
    memset(long_key, 'k', 256);
    long_key[256] = 0;
    const char *null_key[] = {NULL, "v"}, *null_value[] = {"k", NULL}, *empty_key[] = {"", "v"},
               *too_long[] = {long_key, "v"}, *dup[] = {"k", "a", "j", "b", "k", "c"};
    assert_status(srp_checkpoint_save_with_metadata(path, t.refs, NT, NULL, 1),
                  SRP_ERR_INVALID_ARG);
    assert_status(srp_checkpoint_save_with_metadata(path, t.refs, NT, null_key, 1),
                  SRP_ERR_INVALID_ARG);
    assert_status(srp_checkpoint_save_with_metadata(path, t.refs, NT, null_value, 1),
                  SRP_ERR_INVALID_ARG);
    assert_status(srp_checkpoint_save_with_metadata(path, t.refs, NT, empty_key, 1),
                  SRP_ERR_INVALID_ARG);
    assert_status(srp_checkpoint_save_with_metadata(path, t.refs, NT, too_long, 1),
                  SRP_ERR_INVALID_ARG);
    assert_non_null(strstr(srp_last_error_detail(), "256 bytes"));
    assert_status(srp_checkpoint_save_with_metadata(path, t.refs, NT, dup, 3),
                  SRP_ERR_INVALID_ARG);
    assert_non_null(strstr(srp_last_error_detail(), "\"k\" is given twice"));
    assert_false(file_exists(path));
    long_key[255] = 0; /* the longest key */
    assert_ok(srp_checkpoint_save_with_metadata(path, t.refs, NT, too_long, 1));
    srp_checkpoint *c = NULL;
    assert_ok(srp_checkpoint_open(&c, path));
    assert_string_equal(srp_checkpoint_metadata(c, long_key), "v");
    srp_checkpoint_close(c);
}

/* Strict loads: the file's tensors that the list leaves out are an error,
 * listed by name, and nothing is written. */
static void test_strict_load_refuses_left_over_tensors(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "strict.ckpt");
    tensors src, dst, keep;
    tensors_init(&src, 37, 1);
    tensors_init(&dst, 38, 1);
    assert_ok(srp_checkpoint_save(path, src.refs, NT));
    keep = dst;
    const srp_tensor_ref *tail = dst.refs + 2; /* leaves out model.a and model.b */
    assert_ok(srp_checkpoint_load(path, tail, NT - 2));
    tensors_init(&dst, 38, 1);
    assert_status(srp_checkpoint_load_strict(path, tail, NT - 2), SRP_ERR_SHAPE);
    assert_string_equal(srp_last_error_detail(),
                        "srp_checkpoint_load_strict: the file holds 2 tensors that the list does "
                        "not ask for (strict read): model.a, model.b");
    assert_same_data(&dst, &keep);
    srp_checkpoint *c = NULL;
    assert_ok(srp_checkpoint_open(&c, path));
    assert_status(srp_checkpoint_read_strict(c, tail, NT - 2), SRP_ERR_SHAPE);
    assert_same_data(&dst, &keep);
    assert_ok(srp_checkpoint_read_strict(c, dst.refs, NT));
    assert_same_data(&dst, &src);
    srp_checkpoint_close(c);

    /* Many left over (a model of 1 block, a file of 100): as many names as
     * fit, then how many more. */
    enum { MANY = 100 };
    static float values[MANY];
    static char names[MANY][64];
    srp_tensor_ref many[MANY];
    for (int i = 0; i < MANY; i++) {
        snprintf(names[i], sizeof(names[i]), "blocks.%d.attn.qkv.weight", i);
        many[i] = (srp_tensor_ref){names[i], SRP_DTYPE_F32, 0, {0}, &values[i]};
    }
    assert_ok(srp_checkpoint_save(path, many, MANY));
    assert_status(srp_checkpoint_load_strict(path, many, 1), SRP_ERR_SHAPE);
    const char *detail = srp_last_error_detail();
    assert_non_null(strstr(detail, "99 tensors"));
    assert_non_null(strstr(detail, "blocks.1.attn.qkv.weight, blocks.2.attn.qkv.weight"));
    size_t listed = 0;
    for (const char *p = strstr(detail, "blocks."); p; p = strstr(p + 1, "blocks."))
        listed++;
    const char *more = strstr(detail, ", and ");
    assert_non_null(more);
    assert_int_equal(listed + strtoul(more + 6, NULL, 10), MANY - 1);
    assert_true(strlen(detail) < 512);
}

/* What the details say for representative failures. */
static void test_details_name_what_is_wrong(void **state)
{
    (void)state;
    bad_files f;
    bad_files_init(&f, "detail", 39);
    f.keep = f.dst;
    srp_tensor_ref refs[NT];

    /* a name missing from the file: its own status, not "corrupt" */
    memcpy(refs, f.dst.refs, sizeof(refs));
    refs[6].name = "blocks.0.attn.qkv.v";
    assert_status(srp_checkpoint_load(f.path, refs, NT), SRP_ERR_NOT_FOUND);
    assert_string_equal(srp_last_error_detail(), "tensor not found: blocks.0.attn.qkv.v");
    assert_int_equal(srp_last_error_status(), SRP_ERR_NOT_FOUND);
    refs[1].name = "model.z";
    assert_status(srp_checkpoint_load(f.path, refs, NT), SRP_ERR_NOT_FOUND);
    assert_string_equal(srp_last_error_detail(),
                        "tensor not found: model.z (nor 1 more of the list: blocks.0.attn.qkv.v)");
    assert_same_data(&f.dst, &f.keep);

    /* a shape mismatch names the tensor and both shapes */
    memcpy(refs, f.dst.refs, sizeof(refs));
    refs[0].shape[1] = 4;
    assert_status(srp_checkpoint_load(f.path, refs, NT), SRP_ERR_SHAPE);
    assert_string_equal(srp_last_error_detail(), "srp_checkpoint_load: tensor model.a is f32 "
                                                 "[3, 5] in the file, the list asks for f32 [3, 4]");
    refs[0] = f.dst.refs[0];
    refs[2].dtype = SRP_DTYPE_I64;
    assert_status(srp_checkpoint_load(f.path, refs, NT), SRP_ERR_SHAPE);
    assert_string_equal(srp_last_error_detail(), "srp_checkpoint_load: tensor train.step is u64 "
                                                 "[] in the file, the list asks for i64 []");
    assert_same_data(&f.dst, &f.keep);

    /* a bad list names the entry */
    memcpy(refs, f.dst.refs, sizeof(refs));
    refs[3].data = NULL;
    assert_status(srp_checkpoint_load(f.path, refs, NT), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(), "srp_checkpoint_load: tensor c4: data is NULL");
    refs[3] = f.dst.refs[3];
    refs[5].name = refs[1].name;
    assert_status(srp_checkpoint_save(f.bad, refs, NT), SRP_ERR_INVALID_ARG);
    assert_string_equal(srp_last_error_detail(),
                        "srp_checkpoint_save: the list names model.b twice (refs[1] and refs[5])");

    /* a corrupt file: the field, its offset, the values */
    unsigned char *mut = malloc(f.size);
    assert_non_null(mut);
    memcpy(mut, f.img, f.size);
    mut[f.size / 2] ^= 1;
    write_file_bytes(f.bad, mut, f.size);
    assert_status(srp_checkpoint_load(f.bad, f.dst.refs, NT), SRP_ERR_FORMAT);
    assert_non_null(strstr(srp_last_error_detail(), "srp_checkpoint_load: CRC-32 0x"));
    memcpy(mut, f.img, f.size);
    set_le32(mut + 40 + 4, 9); /* entry 0's dtype */
    fix_crc(mut, f.size);
    write_file_bytes(f.bad, mut, f.size);
    assert_status(srp_checkpoint_load(f.bad, f.dst.refs, NT), SRP_ERR_FORMAT);
    assert_string_equal(srp_last_error_detail(),
                        "srp_checkpoint_load: table entry 0 at offset 40: dtype 9 is unknown");
    memcpy(mut, f.img, f.size);
    set_le64(mut + 16, f.size + 1);
    fix_crc(mut, f.size);
    write_file_bytes(f.bad, mut, f.size);
    assert_status(srp_checkpoint_load(f.bad, f.dst.refs, NT), SRP_ERR_FORMAT);
    assert_non_null(strstr(srp_last_error_detail(), "file_size (offset 16)"));
    memcpy(mut, f.img, f.size);
    set_le32(mut + 8, 7);
    write_file_bytes(f.bad, mut, f.size);
    assert_status(srp_checkpoint_load(f.bad, f.dst.refs, NT), SRP_ERR_VERSION);
    assert_string_equal(srp_last_error_detail(), "srp_checkpoint_load: format version 7; this "
                                                 "library reads versions 1 and 2");
    assert_same_data(&f.dst, &f.keep);
    char missing[300];
    scratch_path(missing, sizeof(missing), "no_such.ckpt");
    assert_status(srp_checkpoint_load(missing, f.dst.refs, NT), SRP_ERR_IO);
    assert_non_null(strstr(srp_last_error_detail(), "no_such.ckpt"));
    free(mut);
    bad_files_free(&f);
}

/* ======================================================================
 * Mismatches against the caller's list, missing files, bad arguments
 * ====================================================================== */

static void test_mismatch_statuses(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "mm.ckpt");
    tensors src, dst, keep;
    tensors_init(&src, 11, 1);
    tensors_init(&dst, 12, 1);
    assert_ok(srp_checkpoint_save(path, src.refs, NT));
    keep = dst;
    for (int k = 0; k < 6; k++) {
        srp_tensor_ref refs[NT];
        memcpy(refs, dst.refs, sizeof(refs));
        srp_status want = SRP_ERR_SHAPE;
        switch (k) {
        case 0: refs[0].shape[1] = 4; break; /* [3][4] for [3][5] */
        case 1:
            refs[0].ndim = 1;
            refs[0].shape[0] = 15;
            break;                                    /* same count, other rank */
        case 2: refs[1].dtype = SRP_DTYPE_U64; break; /* same size, other dtype */
        case 3:
            refs[2].ndim = 1;
            refs[2].shape[0] = 1;
            break; /* [1] for a scalar */
        case 4:
            refs[6].name = "blocks.0.attn.qkv.v";
            want = SRP_ERR_NOT_FOUND;
            break;
        case 5:
            refs[4].name = "raw bytes ";
            want = SRP_ERR_NOT_FOUND;
            break; /* prefix */
        }
        assert_status(srp_checkpoint_load(path, refs, NT), want);
        assert_same_data(&dst, &keep);
    }
    char missing[300], dir[300];
    scratch_path(missing, sizeof(missing), "no_such.ckpt");
    assert_status(srp_checkpoint_load(missing, dst.refs, NT), SRP_ERR_IO);
    scratch_path(dir, sizeof(dir), "a_directory");
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_status(srp_checkpoint_load(dir, dst.refs, NT), SRP_ERR_IO);
    char fifo[300];
    scratch_path(fifo, sizeof(fifo), "a_fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_status(srp_checkpoint_load(fifo, dst.refs, NT), SRP_ERR_IO); /* and no hang */
    assert_same_data(&dst, &keep);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "args.ckpt");
    tensors t;
    tensors_init(&t, 13, 1);
    char long_name[300];
    memset(long_name, 'n', 256);
    long_name[256] = 0;
    for (int k = 0; k < 9; k++) {
        srp_tensor_ref refs[NT];
        memcpy(refs, t.refs, sizeof(refs));
        switch (k) {
        case 0: refs[3].name = NULL; break;
        case 1: refs[3].name = ""; break;
        case 2: refs[3].name = long_name; break;
        case 3: refs[3].name = refs[0].name; break; /* duplicate */
        case 4: refs[3].dtype = (srp_dtype)0; break;
        case 5: refs[3].dtype = (srp_dtype)6; break;
        case 6: refs[3].ndim = 5; break;
        case 7: refs[3].data = NULL; break;
        case 8: refs[0].shape[0] = SIZE_MAX; break; /* bytes overflow */
        }
        assert_status(srp_checkpoint_save(path, refs, NT), SRP_ERR_INVALID_ARG);
        assert_status(srp_checkpoint_load(path, refs, NT), SRP_ERR_INVALID_ARG);
        assert_false(file_exists(path));
    }
    long_name[255] = 0; /* 255 bytes is allowed */
    srp_tensor_ref one = t.refs[0];
    one.name = long_name;
    assert_ok(srp_checkpoint_save(path, &one, 1));
    assert_ok(srp_checkpoint_load(path, &one, 1));
    assert_status(srp_checkpoint_save(NULL, t.refs, NT), SRP_ERR_INVALID_ARG);
    assert_status(srp_checkpoint_save("", t.refs, NT), SRP_ERR_INVALID_ARG);
    assert_status(srp_checkpoint_save(path, NULL, NT), SRP_ERR_INVALID_ARG);
    assert_status(srp_checkpoint_save(path, t.refs, 0), SRP_ERR_INVALID_ARG);
    assert_status(srp_checkpoint_load(NULL, t.refs, NT), SRP_ERR_INVALID_ARG);
    assert_status(srp_checkpoint_load(path, t.refs, 0), SRP_ERR_INVALID_ARG);
    assert_int_equal(srp_dtype_size(SRP_DTYPE_F32), 4);
    assert_int_equal(srp_dtype_size(SRP_DTYPE_U8), 1);
    assert_int_equal(srp_dtype_size((srp_dtype)42), 0);
}

/* ======================================================================
 * Crash safety
 * ====================================================================== */

/* The old checkpoint at path still loads and holds old's data. */
static void assert_old_intact(const char *path, const tensors *old)
{
    tensors now;
    tensors_init(&now, 0, 0);
    assert_ok(srp_checkpoint_load(path, now.refs, NT));
    assert_same_data(&now, old);
}

static void test_failed_saves_keep_the_old_file(void **state)
{
    (void)state;
    char path[300], tmp[310], nodir[300];
    scratch_path(path, sizeof(path), "safe.ckpt");
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    tensors old, fresh;
    tensors_init(&old, 20, 1);
    tensors_init(&fresh, 21, 1);
    assert_ok(srp_checkpoint_save(path, old.refs, NT));

    /* the temporary file cannot be created (a directory is in the way) */
    assert_int_equal(mkdir(tmp, 0700), 0);
    assert_status(srp_checkpoint_save(path, fresh.refs, NT), SRP_ERR_IO);
    assert_old_intact(path, &old);
    assert_int_equal(rmdir(tmp), 0); /* still there: not ours to remove */

    /* a directory that does not exist */
    scratch_path(nodir, sizeof(nodir), "missing_dir/x.ckpt");
    assert_status(srp_checkpoint_save(nodir, fresh.refs, NT), SRP_ERR_IO);
    assert_false(file_exists(nodir));

    /* the disk fills up mid-write (a file-size limit, SIGXFSZ ignored so
     * that write fails with EFBIG): the temporary file is removed */
    enum { BIG = 200000 };
    float *big = calloc(BIG, sizeof(float));
    assert_non_null(big);
    const srp_tensor_ref big_ref = {"big", SRP_DTYPE_F32, 1, {BIG, 0, 0, 0}, big};
    struct rlimit saved, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = saved;
    lim.rlim_cur = 100000;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    const srp_status st = srp_checkpoint_save(path, &big_ref, 1);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, old_handler);
    assert_status(st, SRP_ERR_IO);
    assert_false(file_exists(tmp));
    assert_old_intact(path, &old);

    /* renaming over a directory fails: temp removed, nothing else moved */
    char dirpath[300];
    scratch_path(dirpath, sizeof(dirpath), "is_a_dir.ckpt");
    assert_int_equal(mkdir(dirpath, 0700), 0);
    assert_status(srp_checkpoint_save(dirpath, fresh.refs, NT), SRP_ERR_IO);
    char dirtmp[310];
    snprintf(dirtmp, sizeof(dirtmp), "%s.tmp", dirpath);
    assert_false(file_exists(dirtmp));
    free(big);
}

/* A process killed in the middle of writing (SIGXFSZ at a file-size limit)
 * leaves the previous checkpoint whole; the next save succeeds. */
static void test_crash_mid_save(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "crash.ckpt");
    tensors old;
    tensors_init(&old, 30, 1);
    assert_ok(srp_checkpoint_save(path, old.refs, NT));
    enum { BIG = 100000 };
    const size_t limits[3] = {100, 5000, 300000};
    for (int k = 0; k < 3; k++) {
        fflush(NULL);
        const pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct rlimit lim = {0, 0};
            setrlimit(RLIMIT_CORE, &lim);
            lim.rlim_cur = lim.rlim_max = limits[k];
            setrlimit(RLIMIT_FSIZE, &lim);
            signal(SIGXFSZ, SIG_DFL);
            float *big = calloc(BIG, sizeof(float));
            const srp_tensor_ref ref = {"big", SRP_DTYPE_F32, 1, {BIG, 0, 0, 0}, big};
            srp_checkpoint_save(path, &ref, 1);
            _exit(0); /* not reached: the kernel kills us at the limit */
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ);
        assert_old_intact(path, &old);
    }
    tensors fresh;
    tensors_init(&fresh, 31, 1);
    assert_ok(srp_checkpoint_save(path, fresh.refs, NT)); /* over the leftover .tmp */
    assert_old_intact(path, &fresh);
}

/* ======================================================================
 * A training run resumed from a checkpoint continues bit for bit
 * ====================================================================== */

enum { IN = 6, HID = 12, CLS = 3, NDATA = 24, BATCH = 4 };

typedef struct {
    srp_linear *fc1, *fc2;
    float ln_w[HID], ln_b[HID], dln_w[HID], dln_b[HID];
    srp_optim *opt;
    srp_rng rng;
    uint64_t step, epoch, pos;
    uint64_t order[NDATA];
    float sigma[2];
} run;

static void run_create(run *r, uint64_t seed)
{
    memset(r, 0, sizeof(*r));
    srp_linear_config c1 = srp_linear_config_default(IN, HID);
    srp_linear_config c2 = srp_linear_config_default(HID, CLS);
    c1.seed = seed;
    c2.seed = seed + 1;
    assert_ok(srp_linear_create(&r->fc1, &c1));
    assert_ok(srp_linear_create(&r->fc2, &c2));
    for (int j = 0; j < HID; j++)
        r->ln_w[j] = 1.0f;
    srp_linear *ls[2] = {r->fc1, r->fc2};
    const size_t sizes[2] = {IN * HID, HID * CLS}, outs[2] = {HID, CLS};
    static const char *names[2][3] = {{"fc1.weight", "fc1.bias", "fc1.gamma"},
                                      {"fc2.weight", "fc2.bias", "fc2.gamma"}};
    srp_param p[8];
    for (int l = 0; l < 2; l++) {
        p[3 * l] = srp_param_make(names[l][0], srp_linear_weight(ls[l]),
                                  srp_linear_weight_grad(ls[l]), sizes[l], SRP_PARAM_WEIGHT);
        p[3 * l + 1] = srp_param_make(names[l][1], srp_linear_bias(ls[l]),
                                      srp_linear_bias_grad(ls[l]), outs[l], SRP_PARAM_BIAS);
        p[3 * l + 2] = srp_param_make(names[l][2], srp_linear_gamma(ls[l]),
                                      srp_linear_gamma_grad(ls[l]), 1, SRP_PARAM_GAMMA);
    }
    p[6] = srp_param_make("ln.weight", r->ln_w, r->dln_w, HID, SRP_PARAM_NORM);
    p[7] = srp_param_make("ln.bias", r->ln_b, r->dln_b, HID, SRP_PARAM_NORM);
    srp_optim_config oc = srp_optim_config_default(SRP_OPTIM_ADAMW);
    assert_ok(srp_optim_create(&r->opt, p, 8, &oc));
    srp_rng_seed(&r->rng, seed + 2);
    for (int i = 0; i < NDATA; i++)
        r->order[i] = (uint64_t)i;
}

static void run_destroy(run *r)
{
    srp_linear_destroy(r->fc1);
    srp_linear_destroy(r->fc2);
    srp_optim_destroy(r->opt);
}

/* The run's whole state: model, sigmaReparam state, optimizer, RNG, counters. */
static size_t run_refs(run *r, srp_tensor_ref *refs)
{
    size_t n = 0;
    srp_linear *ls[2] = {r->fc1, r->fc2};
    static const char *names[2][6] = {
        {"fc1.weight", "fc1.bias", "fc1.gamma", "fc1.u", "fc1.v", "fc1.sigma"},
        {"fc2.weight", "fc2.bias", "fc2.gamma", "fc2.u", "fc2.v", "fc2.sigma"}};
    for (int l = 0; l < 2; l++) {
        const size_t in = srp_linear_in_features(ls[l]), out = srp_linear_out_features(ls[l]);
        const srp_tensor_ref layer[6] = {
            {names[l][0], SRP_DTYPE_F32, 2, {out, in, 0, 0}, srp_linear_weight(ls[l])},
            {names[l][1], SRP_DTYPE_F32, 1, {out, 0, 0, 0}, srp_linear_bias(ls[l])},
            {names[l][2], SRP_DTYPE_F32, 0, {0}, srp_linear_gamma(ls[l])},
            {names[l][3], SRP_DTYPE_F32, 1, {in, 0, 0, 0}, srp_linear_u(ls[l])},
            {names[l][4], SRP_DTYPE_F32, 1, {out, 0, 0, 0}, srp_linear_v(ls[l])},
            {names[l][5], SRP_DTYPE_F32, 0, {0}, &r->sigma[l]},
        };
        memcpy(refs + n, layer, sizeof(layer));
        n += 6;
    }
    refs[n++] = (srp_tensor_ref){"ln.weight", SRP_DTYPE_F32, 1, {HID, 0, 0, 0}, r->ln_w};
    refs[n++] = (srp_tensor_ref){"ln.bias", SRP_DTYPE_F32, 1, {HID, 0, 0, 0}, r->ln_b};
    refs[n++] = (srp_tensor_ref){"rng", SRP_DTYPE_U64, 1, {4, 0, 0, 0}, r->rng.s};
    refs[n++] = (srp_tensor_ref){"train.step", SRP_DTYPE_U64, 0, {0}, &r->step};
    refs[n++] = (srp_tensor_ref){"train.epoch", SRP_DTYPE_U64, 0, {0}, &r->epoch};
    refs[n++] = (srp_tensor_ref){"data.position", SRP_DTYPE_U64, 0, {0}, &r->pos};
    refs[n++] = (srp_tensor_ref){"data.order", SRP_DTYPE_U64, 1, {NDATA, 0, 0, 0}, r->order};
    assert_ok(srp_optim_tensor_refs(r->opt, refs + n, srp_optim_tensor_count(r->opt)));
    return n + srp_optim_tensor_count(r->opt);
}

/* One step: the next BATCH examples in this epoch's shuffled order through
 * fc1 -> LayerNorm -> GELU -> fc2 -> cross-entropy, then AdamW on a cosine
 * schedule. The data is a fixed function of the example index. */
static void run_step(run *r)
{
    if (r->pos == 0) {
        size_t idx[NDATA];
        for (int i = 0; i < NDATA; i++)
            idx[i] = (size_t)r->order[i];
        srp_rng_shuffle(&r->rng, idx, NDATA);
        for (int i = 0; i < NDATA; i++)
            r->order[i] = idx[i];
    }
    float x[BATCH * IN], h[BATCH * HID], hn[BATCH * HID], a[BATCH * HID], z[BATCH * CLS];
    float dz[BATCH * CLS], da[BATCH * HID], dhn[BATCH * HID], dh[BATCH * HID];
    float mean[BATCH], rstd[BATCH], loss;
    int labels[BATCH];
    for (int b = 0; b < BATCH; b++) {
        const uint64_t ex = r->order[r->pos + (uint64_t)b];
        for (int j = 0; j < IN; j++)
            x[b * IN + j] = (float)sin((double)(ex * 7 + (uint64_t)j));
        labels[b] = (int)(ex % CLS);
    }
    srp_optim_zero_grad(r->opt);
    assert_ok(srp_linear_forward(r->fc1, x, BATCH, h, SRP_TRAIN));
    assert_ok(srp_layernorm_forward(h, r->ln_w, r->ln_b, BATCH, HID, 1e-5f, hn, mean, rstd));
    assert_ok(srp_gelu_forward(hn, BATCH * HID, a));
    assert_ok(srp_linear_forward(r->fc2, a, BATCH, z, SRP_TRAIN));
    assert_ok(srp_cross_entropy_forward(z, labels, BATCH, CLS, 0.1f, &loss));
    assert_ok(srp_cross_entropy_backward(z, labels, BATCH, CLS, 0.1f, dz));
    assert_ok(srp_linear_backward(r->fc2, a, dz, BATCH, da));
    assert_ok(srp_gelu_backward(hn, da, BATCH * HID, dhn));
    assert_ok(
        srp_layernorm_backward(h, r->ln_w, mean, rstd, dhn, BATCH, HID, dh, r->dln_w, r->dln_b));
    assert_ok(srp_linear_backward(r->fc1, x, dh, BATCH, NULL));
    assert_ok(srp_optim_clip_grad_norm(r->opt, 1.0f, NULL));
    srp_lr_schedule s = srp_lr_schedule_default(SRP_LR_COSINE, 0.01f, 40);
    assert_ok(srp_optim_step(r->opt, srp_lr_at(&s, r->step)));
    r->step++;
    r->pos += BATCH;
    if (r->pos == NDATA) {
        r->pos = 0;
        r->epoch++;
    }
    r->sigma[0] = srp_linear_sigma(r->fc1);
    r->sigma[1] = srp_linear_sigma(r->fc2);
}

static void test_resumed_run_continues_exactly(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "run.ckpt");
    srp_tensor_ref ra[64], rb[64];
    /* run A: 9 steps (an epoch is 6), checkpoint, 9 more */
    run a, b;
    run_create(&a, 1);
    for (int t = 0; t < 9; t++)
        run_step(&a);
    const size_t n = run_refs(&a, ra);
    assert_true(n <= 64);
    assert_ok(srp_checkpoint_save(path, ra, n));
    for (int t = 0; t < 9; t++)
        run_step(&a);
    /* run B: another init, resumed from the checkpoint */
    run_create(&b, 777);
    assert_int_equal(run_refs(&b, rb), n);
    assert_ok(srp_checkpoint_load(path, rb, n));
    assert_ok(srp_linear_set_sigma(b.fc1, b.sigma[0]));
    assert_ok(srp_linear_set_sigma(b.fc2, b.sigma[1]));
    assert_true(b.step == 9 && b.epoch == 1 && b.pos == 12);
    assert_true(srp_optim_step_count(b.opt) == 9);
    for (int t = 0; t < 9; t++)
        run_step(&b);
    /* every tensor of the state, bit for bit */
    run_refs(&a, ra);
    run_refs(&b, rb);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(ra[i].name, rb[i].name);
        size_t bytes = srp_dtype_size(ra[i].dtype);
        for (size_t k = 0; k < ra[i].ndim; k++)
            bytes *= ra[i].shape[k];
        assert_memory_equal(ra[i].data, rb[i].data, bytes);
    }
    run_destroy(&a);
    run_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_is_bit_exact),
        cmocka_unit_test(test_layout_matches_format_doc),
        cmocka_unit_test(test_crc_in_chunks),
        cmocka_unit_test(test_every_truncation_is_rejected),
        cmocka_unit_test(test_random_corruption_is_rejected),
        cmocka_unit_test(test_structural_edits_are_rejected),
        cmocka_unit_test(test_version_1_files_still_load),
        cmocka_unit_test(test_metadata_round_trip_and_layout),
        cmocka_unit_test(test_metadata_check_names_each_field),
        cmocka_unit_test(test_metadata_edits_are_rejected),
        cmocka_unit_test(test_metadata_arguments),
        cmocka_unit_test(test_strict_load_refuses_left_over_tensors),
        cmocka_unit_test(test_details_name_what_is_wrong),
        cmocka_unit_test(test_mismatch_statuses),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_failed_saves_keep_the_old_file),
        cmocka_unit_test(test_crash_mid_save),
        cmocka_unit_test(test_resumed_run_continues_exactly),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
