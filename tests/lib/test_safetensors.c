/* safetensors files: bit-exact round trips, the byte layout the format
 * specifies (written out here by hand), files laid out as other writers
 * do, and every way a file can be wrong: truncations, flipped bytes,
 * tensors past the end, overlapping or with gaps, unknown dtypes, sizes
 * that do not match. Run under ASan in CI. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "testutil.h"

static srp_tensor_ref ref(const char *name, srp_dtype dtype, size_t ndim, const size_t *shape,
                          void *data)
{
    srp_tensor_ref r;
    memset(&r, 0, sizeof(r));
    r.name = name;
    r.dtype = dtype;
    r.ndim = ndim;
    for (size_t k = 0; k < ndim; k++)
        r.shape[k] = shape[k];
    r.data = data;
    return r;
}

/* A file of u64 header length, the header text, then `data` bytes. */
static void write_raw(const char *path, const char *header, const unsigned char *data,
                      size_t data_len)
{
    const size_t n = strlen(header);
    unsigned char *buf = malloc(8 + n + data_len + 1);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    if (data_len)
        memcpy(buf + 8 + n, data, data_len);
    write_file_bytes(path, buf, 8 + n + data_len);
    free(buf);
}

/* ---------------- round trips and layout ---------------- */

#define NREF 7

typedef struct {
    float w[2][3];
    double d[4];
    int64_t step;
    uint64_t rng[4];
    unsigned char bytes[5];
    float cube[2][1][2][2];
    float empty[1]; /* shape [0, 4]: no bytes */
    srp_tensor_ref refs[NREF];
} sample;

static void sample_init(sample *s, uint64_t seed)
{
    srp_rng r = seeded_rng(seed);
    fill_normal_f(&r, &s->w[0][0], 6, 1.0);
    s->w[1][2] = NAN; /* payload bits must survive too */
    fill_normal_d(&r, s->d, 4, 1.0);
    s->step = -(int64_t)seed - 7;
    for (int i = 0; i < 4; i++)
        s->rng[i] = srp_rng_next_u64(&r);
    for (int i = 0; i < 5; i++)
        s->bytes[i] = (unsigned char)srp_rng_next_u64(&r);
    fill_normal_f(&r, &s->cube[0][0][0][0], 8, 1.0);
    s->empty[0] = 0.0f;
    const size_t sw[2] = {2, 3}, sd[1] = {4}, sr[1] = {4}, sb[1] = {5}, sc[4] = {2, 1, 2, 2},
                 se[2] = {0, 4};
    s->refs[0] = ref("blocks.0.attn.qkv.weight", SRP_DTYPE_F32, 2, sw, s->w);
    s->refs[1] = ref("d", SRP_DTYPE_F64, 1, sd, s->d);
    s->refs[2] = ref("step", SRP_DTYPE_I64, 0, NULL, &s->step); /* a scalar: shape [] */
    s->refs[3] = ref("rng", SRP_DTYPE_U64, 1, sr, s->rng);
    s->refs[4] = ref("bytes", SRP_DTYPE_U8, 1, sb, s->bytes);
    s->refs[5] = ref("cube", SRP_DTYPE_F32, 4, sc, s->cube);
    s->refs[6] = ref("empty", SRP_DTYPE_F32, 2, se, s->empty);
}

static void test_round_trip_is_bit_exact(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "round.safetensors");
    sample a, b;
    sample_init(&a, 1);
    sample_init(&b, 2); /* other values everywhere */
    const char *meta[] = {"format", "pt", "producer", "libsigmareparam \"test\"\n"};
    assert_ok(srp_safetensors_save(path, a.refs, NREF, meta, 2));

    srp_safetensors *f = NULL;
    assert_ok(srp_safetensors_open(&f, path));
    assert_int_equal(srp_safetensors_count(f), NREF);
    for (size_t i = 0; i < NREF; i++) { /* in the list's order */
        srp_tensor_ref info;
        assert_ok(srp_safetensors_info(f, i, &info));
        assert_string_equal(info.name, a.refs[i].name);
        assert_int_equal(info.dtype, a.refs[i].dtype);
        assert_int_equal(info.ndim, a.refs[i].ndim);
        assert_memory_equal(info.shape, a.refs[i].shape, info.ndim * sizeof(size_t));
        assert_null(info.data);
    }
    assert_string_equal(srp_safetensors_metadata(f, "format"), "pt");
    assert_string_equal(srp_safetensors_metadata(f, "producer"), meta[3]);
    assert_null(srp_safetensors_metadata(f, "missing"));
    assert_ok(srp_safetensors_read(f, b.refs, NREF));
    srp_safetensors_close(f);
    assert_memory_equal(a.w, b.w, sizeof(a.w));
    assert_memory_equal(a.d, b.d, sizeof(a.d));
    assert_int_equal(a.step, b.step);
    assert_memory_equal(a.rng, b.rng, sizeof(a.rng));
    assert_memory_equal(a.bytes, b.bytes, sizeof(a.bytes));
    assert_memory_equal(a.cube, b.cube, sizeof(a.cube));

    /* load: a subset, in another order */
    sample c;
    sample_init(&c, 3);
    srp_tensor_ref two[2] = {c.refs[5], c.refs[0]};
    assert_ok(srp_safetensors_load(path, two, 2));
    assert_memory_equal(a.cube, c.cube, sizeof(a.cube));
    assert_memory_equal(a.w, c.w, sizeof(a.w));

    /* no metadata at all */
    assert_ok(srp_safetensors_save(path, a.refs, 1, NULL, 0));
    assert_ok(srp_safetensors_open(&f, path));
    assert_null(srp_safetensors_metadata(f, "format"));
    srp_safetensors_close(f);
}

/* The bytes the format prescribes, spelled out from its description: the
 * header's length, the JSON (keys dtype, shape, data_offsets) padded with
 * spaces to a multiple of 8, then the data in little-endian order. */
static void test_layout_follows_the_format(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "layout.safetensors");
    float b[2] = {1.0f, -2.0f};
    unsigned char a[3] = {1, 2, 3};
    const size_t sb[1] = {2}, sa[1] = {3};
    srp_tensor_ref refs[2] = {ref("b", SRP_DTYPE_F32, 1, sb, b), ref("a", SRP_DTYPE_U8, 1, sa, a)};
    const char *meta[] = {"k", "v"};
    assert_ok(srp_safetensors_save(path, refs, 2, meta, 1));

    const char *json = "{\"__metadata__\":{\"k\":\"v\"},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}";
    const size_t len = strlen(json), padded = (len + 7) / 8 * 8;
    unsigned char want[512];
    for (int i = 0; i < 8; i++)
        want[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(want + 8, json, len);
    memset(want + 8 + len, ' ', padded - len);
    const unsigned char data[11] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 1, 2, 3};
    memcpy(want + 8 + padded, data, sizeof(data));

    size_t size = 0;
    unsigned char *got = read_file_bytes(path, &size);
    assert_non_null(got);
    assert_int_equal(size, 8 + padded + sizeof(data));
    assert_memory_equal(got, want, size);
    free(got);
}

/* What other writers do: keys in any order, whitespace in the JSON, the
 * metadata anywhere, data in another order than the header's, a header
 * length that is not a multiple of 8. */
static void test_reads_files_laid_out_otherwise(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "other.safetensors");
    const char *header = "{ \"w\" : {\"data_offsets\": [8, 24], \"shape\": [2, 2],\n"
                         "          \"dtype\": \"F32\"},\n"
                         "  \"__metadata__\": {\"format\": \"pt\"},\n"
                         "  \"step\": {\"shape\": [], \"dtype\": \"I64\", \"data_offsets\": [0, 8]}"
                         "}   ";
    unsigned char data[24] = {0};
    data[0] = 42; /* step = 42, little-endian */
    const float w[4] = {0.5f, -1.5f, 3.0f, 1e-3f};
    for (int i = 0; i < 4; i++) {
        uint32_t bits;
        memcpy(&bits, &w[i], 4);
        for (int k = 0; k < 4; k++)
            data[8 + 4 * i + k] = (unsigned char)(bits >> (8 * k));
    }
    write_raw(path, header, data, sizeof(data));

    srp_safetensors *f = NULL;
    assert_ok(srp_safetensors_open(&f, path));
    assert_int_equal(srp_safetensors_count(f), 2);
    srp_tensor_ref info;
    assert_ok(srp_safetensors_info(f, 0, &info)); /* in the order of the data */
    assert_string_equal(info.name, "step");
    assert_int_equal(info.ndim, 0);
    assert_ok(srp_safetensors_info(f, 1, &info));
    assert_string_equal(info.name, "w");
    assert_string_equal(srp_safetensors_metadata(f, "format"), "pt");
    float got[4];
    int64_t step = 0;
    const size_t s22[2] = {2, 2};
    srp_tensor_ref refs[2] = {ref("w", SRP_DTYPE_F32, 2, s22, got),
                              ref("step", SRP_DTYPE_I64, 0, NULL, &step)};
    assert_ok(srp_safetensors_read(f, refs, 2));
    assert_memory_equal(got, w, sizeof(w));
    assert_int_equal(step, 42);
    srp_safetensors_close(f);

    /* an empty file of tensors is valid */
    write_raw(path, "{}", NULL, 0);
    assert_ok(srp_safetensors_open(&f, path));
    assert_int_equal(srp_safetensors_count(f), 0);
    srp_safetensors_close(f);
}

/* ---------------- files that are wrong ---------------- */

static void expect_open_status(const char *path, srp_status want)
{
    srp_safetensors *f = (srp_safetensors *)&f; /* must be reset to NULL */
    const srp_status st = srp_safetensors_open(&f, path);
    if (st != want)
        print_error("open: status %d, expected %d\n", (int)st, (int)want);
    assert_int_equal(st, want);
    if (st == SRP_OK)
        srp_safetensors_close(f);
    else
        assert_null(f);
}

static void test_malformed_headers_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *header;
        size_t data_len;
        srp_status want;
        const char *what;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, SRP_OK, "valid"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, SRP_ERR_FORMAT,
         "a tensor past the end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, SRP_ERR_FORMAT,
         "bytes after the last tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, SRP_ERR_FORMAT, "overlapping tensors"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         12, SRP_ERR_FORMAT, "a gap between tensors"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
         16, SRP_ERR_FORMAT, "a duplicate name"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, SRP_ERR_UNSUPPORTED,
         "a dtype the library lacks"},
        {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, SRP_ERR_FORMAT,
         "a dtype the library lacks, with the wrong size"},
        {"{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, SRP_ERR_FORMAT,
         "no such dtype"},
        {"{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, SRP_ERR_FORMAT,
         "a dtype that is not a string"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, SRP_ERR_FORMAT,
         "a shape that does not fill its bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
         SRP_ERR_UNSUPPORTED, "five dimensions"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,8]}}",
         8, SRP_ERR_FORMAT, "a shape whose size overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, SRP_ERR_FORMAT,
         "a negative dimension"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, SRP_ERR_FORMAT,
         "a negative offset"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0.5,8.5]}}", 9, SRP_ERR_FORMAT,
         "fractional offsets"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, SRP_ERR_FORMAT,
         "an end before the begin"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 16, SRP_ERR_FORMAT,
         "three offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",\"8\"]}}", 8,
         SRP_ERR_FORMAT, "offsets as strings"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 0, SRP_ERR_FORMAT, "no offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8,
         SRP_ERR_FORMAT, "an extra key"},
        {"{\"a\":[1,2]}", 0, SRP_ERR_FORMAT, "an entry that is not an object"},
        {"{\"\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, SRP_ERR_FORMAT,
         "an empty name"},
        {"{\"__metadata__\":[\"pt\"]}", 0, SRP_ERR_FORMAT, "metadata that is not an object"},
        {"{\"__metadata__\":{\"format\":1}}", 0, SRP_ERR_FORMAT, "a metadata value not a string"},
        {"{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, SRP_ERR_FORMAT,
         "a duplicate metadata key"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, SRP_ERR_FORMAT, "metadata twice"},
        {"{\"a\":", 0, SRP_ERR_FORMAT, "JSON cut short"},
        {"{} x", 0, SRP_ERR_FORMAT, "text after the object"},
        {"{} \n\t\r ", 0, SRP_OK, "JSON whitespace after the object"},
        {"{} .", 0, SRP_ERR_FORMAT, "padding that is not whitespace"},
        {" {}", 0, SRP_ERR_FORMAT, "a header that does not start with {"},
        {"[1]", 0, SRP_ERR_FORMAT, "an array"},
        {"{", 0, SRP_ERR_FORMAT, "one byte"},
    };
    char path[300];
    scratch_path(path, sizeof(path), "bad.safetensors");
    unsigned char zeros[32] = {0};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("  %s\n", cases[i].what);
        write_raw(path, cases[i].header, zeros, cases[i].data_len);
        expect_open_status(path, cases[i].want);
    }

    /* the length field: zero, beyond the file, beyond the format's limit */
    unsigned char raw[16] = {0};
    write_file_bytes(path, raw, 16);
    expect_open_status(path, SRP_ERR_FORMAT);
    raw[0] = 9; /* 9 header bytes, 8 present */
    memcpy(raw + 8, "{}      ", 8);
    write_file_bytes(path, raw, 16);
    expect_open_status(path, SRP_ERR_FORMAT);
    memset(raw, 0xff, 8);
    write_file_bytes(path, raw, 16);
    expect_open_status(path, SRP_ERR_FORMAT);
    write_file_bytes(path, raw, 5); /* shorter than the length field */
    expect_open_status(path, SRP_ERR_FORMAT);
    write_file_bytes(path, raw, 0);
    expect_open_status(path, SRP_ERR_FORMAT);
    scratch_path(path, sizeof(path), "missing.safetensors");
    expect_open_status(path, SRP_ERR_IO);
    expect_open_status(scratch_dir(), SRP_ERR_IO); /* a directory */
}

static void test_every_truncation_is_refused(void **state)
{
    (void)state;
    char path[300], bad[300];
    scratch_path(path, sizeof(path), "whole.safetensors");
    scratch_path(bad, sizeof(bad), "cut.safetensors");
    sample a;
    sample_init(&a, 4);
    assert_ok(srp_safetensors_save(path, a.refs, NREF, NULL, 0));
    size_t size = 0;
    unsigned char *img = read_file_bytes(path, &size);
    assert_non_null(img);
    for (size_t len = 0; len < size; len++) {
        write_file_bytes(bad, img, len);
        expect_open_status(bad, SRP_ERR_FORMAT);
    }
    free(img);
}

/* No checksum: a flip inside a tensor's bytes cannot be seen. A flip
 * anywhere must still give a clean status (ASan watches the parsing), and
 * a file that opens must read as what its header says. */
static void test_flipped_bytes_are_handled(void **state)
{
    (void)state;
    char path[300], bad[300];
    scratch_path(path, sizeof(path), "whole.safetensors");
    scratch_path(bad, sizeof(bad), "flipped.safetensors");
    sample a, b;
    sample_init(&a, 5);
    const char *meta[] = {"format", "pt"};
    assert_ok(srp_safetensors_save(path, a.refs, NREF, meta, 1));
    size_t size = 0;
    unsigned char *img = read_file_bytes(path, &size);
    assert_non_null(img);
    unsigned char *mut = malloc(size);
    assert_non_null(mut);
    size_t refused = 0, header_flips = 0;
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = (header_len << 8) | img[i];
    static const unsigned char masks[] = {0x01, 0x20, 0x80, 0xff};
    for (size_t pos = 0; pos < size; pos++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            memcpy(mut, img, size);
            mut[pos] ^= masks[m];
            write_file_bytes(bad, mut, size);
            srp_safetensors *f = NULL;
            const srp_status st = srp_safetensors_open(&f, bad);
            if (pos < 8 + header_len)
                header_flips++;
            if (st != SRP_OK) {
                assert_true(st == SRP_ERR_FORMAT || st == SRP_ERR_UNSUPPORTED);
                assert_null(f);
                refused++;
                continue;
            }
            /* It opened: every tensor it lists must be readable as listed. */
            for (size_t i = 0; i < srp_safetensors_count(f); i++) {
                srp_tensor_ref info;
                assert_ok(srp_safetensors_info(f, i, &info));
                size_t elems = 1;
                for (size_t k = 0; k < info.ndim; k++)
                    elems *= info.shape[k];
                void *buf = malloc(elems * srp_dtype_size(info.dtype) + 1);
                assert_non_null(buf);
                info.data = buf;
                assert_ok(srp_safetensors_read(f, &info, 1));
                free(buf);
            }
            /* and reading the original list gives a status, never garbage */
            sample_init(&b, 6);
            const srp_status rs = srp_safetensors_read(f, b.refs, NREF);
            assert_true(rs == SRP_OK || rs == SRP_ERR_NOT_FOUND || rs == SRP_ERR_SHAPE ||
                        rs == SRP_ERR_INVALID_ARG);
            srp_safetensors_close(f);
        }
    }
    print_message("  %zu of %zu flips refused (%zu in the length and header)\n", refused,
                  size * sizeof(masks), header_flips);
    /* Every flip in the length field changes where the header ends. */
    assert_true(refused >= 8 * sizeof(masks));
    free(mut);
    free(img);
}

/* ---------------- the caller's side ---------------- */

static void test_read_errors_write_nothing(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "read.safetensors");
    sample a, b, keep;
    sample_init(&a, 7);
    assert_ok(srp_safetensors_save(path, a.refs, NREF, NULL, 0));
    srp_safetensors *f = NULL;
    assert_ok(srp_safetensors_open(&f, path));

    sample_init(&b, 8);
    sample_init(&keep, 8);
    srp_tensor_ref list[2] = {b.refs[0], b.refs[1]};
    list[1].name = "not there";
    assert_status(srp_safetensors_read(f, list, 2), SRP_ERR_NOT_FOUND);
    list[1] = b.refs[1];
    list[1].dtype = SRP_DTYPE_F32; /* the file has F64 */
    assert_status(srp_safetensors_read(f, list, 2), SRP_ERR_SHAPE);
    list[1] = b.refs[1];
    list[1].shape[0] = 3;
    assert_status(srp_safetensors_read(f, list, 2), SRP_ERR_SHAPE);
    list[1] = b.refs[1];
    list[1].ndim = 2;
    list[1].shape[1] = 1;
    assert_status(srp_safetensors_read(f, list, 2), SRP_ERR_SHAPE);
    list[1] = b.refs[0]; /* the same name twice */
    assert_status(srp_safetensors_read(f, list, 2), SRP_ERR_INVALID_ARG);
    assert_memory_equal(b.w, keep.w, sizeof(b.w)); /* the first ref was valid */
    assert_memory_equal(b.d, keep.d, sizeof(b.d));

    assert_status(srp_safetensors_read(NULL, list, 1), SRP_ERR_INVALID_ARG);
    assert_status(srp_safetensors_read(f, NULL, 1), SRP_ERR_INVALID_ARG);
    assert_status(srp_safetensors_read(f, list, 0), SRP_ERR_INVALID_ARG);
    srp_tensor_ref info;
    assert_status(srp_safetensors_info(f, NREF, &info), SRP_ERR_INVALID_ARG);
    assert_status(srp_safetensors_info(f, 0, NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_safetensors_info(NULL, 0, &info), SRP_ERR_INVALID_ARG);
    assert_null(srp_safetensors_metadata(f, NULL));
    assert_int_equal(srp_safetensors_count(NULL), 0);
    srp_safetensors_close(f);
    srp_safetensors_close(NULL);
    assert_status(srp_safetensors_open(NULL, path), SRP_ERR_INVALID_ARG);
    assert_status(srp_safetensors_open(&f, NULL), SRP_ERR_INVALID_ARG);
    assert_null(f);
    assert_status(srp_safetensors_load(path, list, 0), SRP_ERR_INVALID_ARG);
}

static void test_save_rejects_bad_input(void **state)
{
    (void)state;
    char path[300], fresh[300];
    scratch_path(path, sizeof(path), "keep.safetensors");
    scratch_path(fresh, sizeof(fresh), "never.safetensors");
    sample a;
    sample_init(&a, 9);
    assert_ok(srp_safetensors_save(path, a.refs, NREF, NULL, 0));
    size_t size0 = 0;
    unsigned char *before = read_file_bytes(path, &size0);
    assert_non_null(before);

    const char *ok_meta[] = {"k", "v"}, *null_value[] = {"k", NULL}, *dup[] = {"k", "a", "k", "b"};
    srp_tensor_ref bad[2] = {a.refs[0], a.refs[1]};
    const char *paths[2] = {path, fresh};
    for (int p = 0; p < 2; p++) {
        const char *at = paths[p];
        assert_status(srp_safetensors_save(at, NULL, 1, NULL, 0), SRP_ERR_INVALID_ARG);
        assert_status(srp_safetensors_save(at, a.refs, 0, NULL, 0), SRP_ERR_INVALID_ARG);
        assert_status(srp_safetensors_save(at, a.refs, 1, NULL, 1), SRP_ERR_INVALID_ARG);
        assert_status(srp_safetensors_save(at, a.refs, 1, null_value, 1), SRP_ERR_INVALID_ARG);
        assert_status(srp_safetensors_save(at, a.refs, 1, dup, 2), SRP_ERR_INVALID_ARG);
        bad[1].name = bad[0].name;
        assert_status(srp_safetensors_save(at, bad, 2, NULL, 0), SRP_ERR_INVALID_ARG);
        bad[1].name = "__metadata__";
        assert_status(srp_safetensors_save(at, bad, 2, ok_meta, 1), SRP_ERR_INVALID_ARG);
        bad[1] = a.refs[1];
        bad[1].dtype = (srp_dtype)99;
        assert_status(srp_safetensors_save(at, bad, 2, NULL, 0), SRP_ERR_INVALID_ARG);
        bad[1] = a.refs[1];
        bad[1].ndim = 5;
        assert_status(srp_safetensors_save(at, bad, 2, NULL, 0), SRP_ERR_INVALID_ARG);
        bad[1] = a.refs[1];
        bad[1].data = NULL;
        assert_status(srp_safetensors_save(at, bad, 2, NULL, 0), SRP_ERR_INVALID_ARG);
        bad[1] = a.refs[1];
    }
    assert_status(srp_safetensors_save(NULL, a.refs, 1, NULL, 0), SRP_ERR_INVALID_ARG);
    assert_status(srp_safetensors_save("", a.refs, 1, NULL, 0), SRP_ERR_INVALID_ARG);
    char nodir[300];
    scratch_path(nodir, sizeof(nodir), "missing_dir/x.safetensors");
    assert_status(srp_safetensors_save(nodir, a.refs, 1, NULL, 0), SRP_ERR_IO);

    struct stat sb;
    assert_int_equal(stat(fresh, &sb), -1); /* never created */
    size_t size1 = 0;
    unsigned char *after = read_file_bytes(path, &size1);
    assert_non_null(after);
    assert_int_equal(size0, size1); /* the old file untouched */
    assert_memory_equal(before, after, size0);
    free(before);
    free(after);
}

/* ---------------- strict reads, metadata checks, details ---------------- */

static void test_strict_reads_and_metadata_checks(void **state)
{
    (void)state;
    char path[300];
    scratch_path(path, sizeof(path), "strict.safetensors");
    sample a, b, keep;
    sample_init(&a, 11);
    sample_init(&b, 12);
    keep = b;
    const char *config[] = {"heads", "4", "depth", "2"};
    assert_ok(srp_safetensors_save(path, a.refs, NREF, config, 2));
    srp_safetensors *f = NULL;
    assert_ok(srp_safetensors_open(&f, path));
    assert_int_equal(srp_safetensors_metadata_count(f), 2);
    assert_ok(srp_safetensors_check_metadata(f, config, 2));
    const char *other[] = {"heads", "8", "depth", "2"};
    assert_status(srp_safetensors_check_metadata(f, other, 2), SRP_ERR_SHAPE);
    assert_string_equal(srp_last_error_detail(), "srp_safetensors_check_metadata: the file's "
                                                 "metadata differs in 1 field: heads is 4 in the "
                                                 "file, 8 here");

    /* the list without "d" and "cube": refused, both named, nothing written */
    srp_tensor_ref part[NREF - 2] = {b.refs[0], b.refs[2], b.refs[3], b.refs[4], b.refs[6]};
    assert_ok(srp_safetensors_read(f, part, NREF - 2));
    b = keep;
    sample_init(&b, 12);
    assert_status(srp_safetensors_read_strict(f, part, NREF - 2), SRP_ERR_SHAPE);
    assert_string_equal(srp_last_error_detail(),
                        "srp_safetensors_read_strict: the file holds 2 tensors that the list does "
                        "not ask for (strict read): d, cube");
    assert_memory_equal(b.w, keep.w, sizeof(b.w));
    assert_ok(srp_safetensors_read_strict(f, b.refs, NREF));
    assert_memory_equal(b.cube, a.cube, sizeof(a.cube));
    srp_safetensors_close(f);
    sample_init(&b, 12);
    assert_status(srp_safetensors_load_strict(path, part, NREF - 2), SRP_ERR_SHAPE);
    assert_memory_equal(b.w, keep.w, sizeof(b.w));
    assert_ok(srp_safetensors_load_strict(path, b.refs, NREF));

    /* a missing name and a shape mismatch, as their details say them */
    sample_init(&b, 12);
    srp_tensor_ref list[2] = {b.refs[0], b.refs[1]};
    list[0].name = "blocks.1.attn.qkv.weight";
    assert_status(srp_safetensors_load(path, list, 2), SRP_ERR_NOT_FOUND);
    assert_string_equal(srp_last_error_detail(), "tensor not found: blocks.1.attn.qkv.weight");
    list[0] = b.refs[0];
    list[0].shape[0] = 6;
    list[0].shape[1] = 1;
    assert_status(srp_safetensors_load(path, list, 2), SRP_ERR_SHAPE);
    assert_string_equal(srp_last_error_detail(),
                        "srp_safetensors_load: tensor blocks.0.attn.qkv.weight is f32 [2, 3] in "
                        "the file, the list asks for f32 [6, 1]");
    assert_memory_equal(b.w, keep.w, sizeof(b.w));
}

/* Process CPU time in seconds: what the open costs, not what the machine's
 * other work takes from it. */
static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A file whose __metadata__ holds n distinct keys, in no sorted order, and
 * one tensor. */
static void write_many_keys(const char *path, size_t n)
{
    const size_t cap = 64 + n * 24;
    char *json = malloc(cap);
    assert_non_null(json);
    size_t len = (size_t)snprintf(json, cap, "{\"__metadata__\":{");
    for (size_t i = 0; i < n; i++) {
        const size_t key = (i * 2654435761u) % 1000003; /* distinct for n < 1000003 */
        len += (size_t)snprintf(json + len, cap - len, "%s\"k%zu\":\"v\"", i ? "," : "", key);
    }
    snprintf(json + len, cap - len, "},\"t\":{\"dtype\":\"U8\",\"shape\":[1],"
                                    "\"data_offsets\":[0,1]}}");
    write_raw(path, json, (const unsigned char *)"x", 1);
    free(json);
}

/* The least CPU time of `reps` opens of path (each must succeed). */
static double open_seconds(const char *path, size_t keys, int reps)
{
    double best = INFINITY;
    for (int r = 0; r < reps; r++) {
        srp_safetensors *f = NULL;
        const double t0 = cpu_seconds();
        assert_ok(srp_safetensors_open(&f, path));
        const double t = cpu_seconds() - t0;
        assert_int_equal(srp_safetensors_metadata_count(f), keys);
        srp_safetensors_close(f);
        best = t < best ? t : best;
    }
    return best;
}

/* The duplicate check on metadata keys must not be quadratic: a header
 * within the format's limit can hold millions of keys, and this reader is
 * meant for untrusted files. This guards the complexity, not the speed
 * (the project never asserts speed): ten times the keys must take well
 * under the hundred times a pairwise check would (n log n: about 12x;
 * measured 11.7-12.2x). Doubling the keys (the 100,000 ->
 * 200,000) is printed, not asserted: its 2.1x against a quadratic 4x
 * leaves too little margin on a loaded machine (measured 2.5x with the
 * files not alternated, over 3x under ctest -j2 beside the trainers). To keep other work out of it, it measures
 * process CPU time and takes the least of five opens, the files
 * alternated. */
static void test_many_metadata_keys_open_in_n_log_n(void **state)
{
    (void)state;
    static const size_t keys[3] = {20000, 100000, 200000};
    char paths[3][300];
    double best[3] = {INFINITY, INFINITY, INFINITY};
    for (int i = 0; i < 3; i++) {
        static const char *const names[3] = {"keys_20k.safetensors", "keys_100k.safetensors",
                                             "keys_200k.safetensors"};
        scratch_path(paths[i], sizeof(paths[i]), names[i]);
        write_many_keys(paths[i], keys[i]);
    }
    for (int round = 0; round < 5; round++)
        for (int i = 0; i < 3; i++) {
            const double t = open_seconds(paths[i], keys[i], 1);
            best[i] = t < best[i] ? t : best[i];
        }
    print_message("  open: 20,000 keys %.1f ms, 100,000 keys %.1f ms, 200,000 keys %.1f ms "
                  "(CPU, best of 5): 10x the keys %.1fx the time, 2x %.2fx\n",
                  1e3 * best[0], 1e3 * best[1], 1e3 * best[2], best[2] / best[0],
                  best[2] / best[1]);
    assert_true(best[2] < 40.0 * best[0]);
    for (int i = 0; i < 3; i++)
        remove(paths[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_is_bit_exact),
        cmocka_unit_test(test_layout_follows_the_format),
        cmocka_unit_test(test_reads_files_laid_out_otherwise),
        cmocka_unit_test(test_malformed_headers_are_refused),
        cmocka_unit_test(test_every_truncation_is_refused),
        cmocka_unit_test(test_flipped_bytes_are_handled),
        cmocka_unit_test(test_read_errors_write_nothing),
        cmocka_unit_test(test_save_rejects_bad_input),
        cmocka_unit_test(test_strict_reads_and_metadata_checks),
        cmocka_unit_test(test_many_metadata_keys_open_in_n_log_n),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
