#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cblas.h>

void dgeqrf_(const blasint *m, const blasint *n, double *a, const blasint *lda, double *tau,
             double *work, const blasint *lwork, blasint *info);
void dorgqr_(const blasint *m, const blasint *n, const blasint *k, double *a, const blasint *lda,
             const double *tau, double *work, const blasint *lwork, blasint *info);

void assert_close_rel(double a, double b, double tol, double floor, const char *what)
{
    double scale = fabs(b) > floor ? fabs(b) : floor;
    if (!(fabs(a - b) <= tol * scale)) {
        print_error("%s: got %.9g, expected %.9g (rel err %.3g > tol %.3g)\n", what, a, b,
                    fabs(a - b) / scale, tol);
        fail();
    }
}

srp_rng seeded_rng(uint64_t seed)
{
    srp_rng r;
    srp_rng_seed(&r, seed);
    return r;
}

void fill_normal_f(srp_rng *r, float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * srp_rng_normal(r));
}

void fill_normal_d(srp_rng *r, double *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * srp_rng_normal(r);
}

void random_orthonormal(srp_rng *r, double *q, size_t n, size_t k)
{
    /* LAPACK is column-major: build A as [k columns of length n], then Q's
     * column j is a[j*n ...]; transpose into row-major q[n][k]. */
    double *a = malloc(sizeof(double) * n * k);
    double *tau = malloc(sizeof(double) * k);
    assert_non_null(a);
    assert_non_null(tau);
    fill_normal_d(r, a, n * k, 1.0);
    blasint m = (blasint)n, kk = (blasint)k, info = 0, lwork = -1;
    double query;
    dgeqrf_(&m, &kk, a, &m, tau, &query, &lwork, &info);
    assert_int_equal(info, 0);
    lwork = (blasint)query;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    assert_non_null(work);
    dgeqrf_(&m, &kk, a, &m, tau, work, &lwork, &info);
    assert_int_equal(info, 0);
    free(work);
    lwork = -1;
    dorgqr_(&m, &kk, &kk, a, &m, tau, &query, &lwork, &info);
    assert_int_equal(info, 0);
    lwork = (blasint)query;
    work = malloc(sizeof(double) * (size_t)lwork);
    assert_non_null(work);
    dorgqr_(&m, &kk, &kk, a, &m, tau, work, &lwork, &info);
    assert_int_equal(info, 0);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < k; j++)
            q[i * k + j] = a[j * n + i];
    free(work);
    free(tau);
    free(a);
}

void matrix_with_spectrum(srp_rng *r, double *w, size_t rows, size_t cols, const double *s,
                          double *u1, double *v1)
{
    const size_t k = rows < cols ? rows : cols;
    double *u = malloc(sizeof(double) * rows * k);
    double *v = malloc(sizeof(double) * cols * k);
    assert_non_null(u);
    assert_non_null(v);
    random_orthonormal(r, u, rows, k);
    random_orthonormal(r, v, cols, k);
    if (u1)
        for (size_t i = 0; i < rows; i++)
            u1[i] = u[i * k];
    if (v1)
        for (size_t j = 0; j < cols; j++)
            v1[j] = v[j * k];
    for (size_t i = 0; i < rows; i++) /* U diag(s) */
        for (size_t j = 0; j < k; j++)
            u[i * k + j] *= s[j];
    /* w = (U diag s) V^T: [rows][k] x [k][cols] */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)cols, (blasint)k,
                1.0, u, (blasint)k, v, (blasint)k, 0.0, w, (blasint)cols);
    free(v);
    free(u);
}

float *alloc_f(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

double *alloc_d(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof(double));
    assert_non_null(p);
    return p;
}

double dot_d(const double *x, const double *y, size_t n)
{
    double acc = 0.0;
    for (size_t i = 0; i < n; i++)
        acc += x[i] * y[i];
    return acc;
}

double norm_d(const double *x, size_t n) { return sqrt(dot_d(x, x, n)); }

void to_float(const double *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = (float)x[i];
}

void to_double(const float *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
}

int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

void *read_file_bytes(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long len = ftell(f);
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    void *buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf && size)
        *size = (size_t)len;
    return buf;
}

void write_file_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n > 0)
        assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

int scratch_dir_make(char *dir, size_t cap, const char *prefix)
{
    const char *base = getenv("TMPDIR");
    const int len = snprintf(dir, cap, "%s/%s_XXXXXX", base && base[0] ? base : "/tmp", prefix);
    return len > 0 && (size_t)len < cap && mkdtemp(dir) ? 0 : -1;
}

int scratch_dir_remove(const char *dir)
{
    char cmd[600];
    const int len = snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return len > 0 && (size_t)len < sizeof(cmd) && system(cmd) == 0 ? 0 : -1;
}

static char g_scratch[512]; /* the test program's scratch directory */

int scratch_setup(void **state)
{
    (void)state;
    return scratch_dir_make(g_scratch, sizeof(g_scratch), "srp_test");
}

int scratch_teardown(void **state)
{
    (void)state;
    return scratch_dir_remove(g_scratch);
}

/* Without scratch_setup the paths would be "/<name>": files in the root
 * folder, shared by every test program that forgot it. */
const char *scratch_dir(void)
{
    if (!g_scratch[0])
        fail_msg("no scratch directory: run the group with scratch_setup, scratch_teardown");
    return g_scratch;
}

void scratch_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", scratch_dir(), name);
}

struct fixture {
    size_t count;
    char **names;
    float **data;
    size_t *sizes;
    unsigned char *raw;
};

static uint32_t read_u32_le(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

fixture *fixture_load(const char *path)
{
    size_t size = 0;
    unsigned char *raw = read_file_bytes(path, &size);
    if (!raw) {
        print_error("cannot read fixture file %s\n", path);
        fail();
    }
    assert_true(size >= 12 && memcmp(raw, "SRPFIX01", 8) == 0);
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->raw = raw;
    fx->count = read_u32_le(raw + 8);
    fx->names = calloc(fx->count, sizeof(char *));
    fx->data = calloc(fx->count, sizeof(float *));
    fx->sizes = calloc(fx->count, sizeof(size_t));
    assert_true(fx->names && fx->data && fx->sizes);
    size_t pos = 12;
    for (size_t i = 0; i < fx->count; i++) {
        assert_true(pos + 4 <= size);
        const size_t len = read_u32_le(raw + pos);
        pos += 4;
        assert_true(pos + len + 4 <= size);
        fx->names[i] = malloc(len + 1);
        assert_non_null(fx->names[i]);
        memcpy(fx->names[i], raw + pos, len);
        fx->names[i][len] = '\0';
        pos += len;
        fx->sizes[i] = read_u32_le(raw + pos);
        pos += 4;
        assert_true(pos + 4 * fx->sizes[i] <= size);
        fx->data[i] = malloc(sizeof(float) * (fx->sizes[i] ? fx->sizes[i] : 1));
        assert_non_null(fx->data[i]);
        for (size_t k = 0; k < fx->sizes[i]; k++) {
            const uint32_t bits = read_u32_le(raw + pos + 4 * k);
            memcpy(&fx->data[i][k], &bits, sizeof(float));
        }
        pos += 4 * fx->sizes[i];
    }
    assert_int_equal(pos, size);
    return fx;
}

static long fixture_find(const fixture *fx, const char *name)
{
    for (size_t i = 0; i < fx->count; i++)
        if (strcmp(fx->names[i], name) == 0)
            return (long)i;
    return -1;
}

int fixture_has(const fixture *fx, const char *name) { return fixture_find(fx, name) >= 0; }

const float *fixture_get(const fixture *fx, const char *name, size_t expected_count, size_t *count)
{
    const long i = fixture_find(fx, name);
    if (i < 0) {
        print_error("fixture has no array '%s'\n", name);
        fail();
    }
    if (expected_count && fx->sizes[i] != expected_count) {
        print_error("fixture array '%s' has %zu values, expected %zu\n", name, fx->sizes[i],
                    expected_count);
        fail();
    }
    if (count)
        *count = fx->sizes[i];
    return fx->data[i];
}

void fixture_free(fixture *fx)
{
    if (!fx)
        return;
    for (size_t i = 0; i < fx->count; i++) {
        free(fx->names[i]);
        free(fx->data[i]);
    }
    free(fx->names);
    free(fx->data);
    free(fx->sizes);
    free(fx->raw);
    free(fx);
}

srp_linear *make_linear(size_t in, size_t out, srp_reparam mode, int bias, uint64_t seed)
{
    srp_linear_config c = srp_linear_config_default(in, out);
    c.reparam = mode;
    c.bias = bias;
    c.seed = seed;
    srp_linear *l = NULL;
    assert_ok(srp_linear_create(&l, &c));
    return l;
}

void randomize_block(srp_block *b, srp_rng *r, float gamma_step)
{
    for (size_t i = 0; i < srp_block_linear_count(b); i++) {
        srp_linear *l = srp_block_linear(b, i, NULL);
        const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
        fill_normal_f(r, srp_linear_weight(l), in * out, 1.2 / sqrt((double)in));
        assert_ok(srp_linear_reinit_sigma(l));
        fill_normal_f(r, srp_linear_bias(l), out, 0.2);
        *srp_linear_gamma(l) = srp_linear_sigma(l) * (0.7f + gamma_step * (float)i);
    }
    for (size_t i = 0; i < srp_block_norm_count(b); i++) {
        srp_layernorm *ln = srp_block_norm(b, i, NULL);
        const size_t d = srp_layernorm_dim(ln);
        for (size_t j = 0; j < d; j++)
            srp_layernorm_weight(ln)[j] = 1.0f + 0.3f * (float)srp_rng_normal(r);
        fill_normal_f(r, srp_layernorm_bias(ln), d, 0.3);
    }
}

void randomize_params(srp_param_list *list, srp_rng *r)
{
    srp_param *params = srp_param_list_entries(list);
    for (size_t i = 0; i < srp_param_list_count(list); i++) {
        const srp_param_kind kind = srp_param_list_kind(list, i);
        if (kind == SRP_PARAM_GAMMA)
            params[i].data[0] = 1.2f + 0.3f * (float)srp_rng_uniform(r);
        else if (kind == SRP_PARAM_BIAS || kind == SRP_PARAM_NORM)
            fill_normal_f(r, params[i].data, params[i].size, 0.3);
        if (kind == SRP_PARAM_NORM && strstr(params[i].name, "weight"))
            for (size_t j = 0; j < params[i].size; j++)
                params[i].data[j] += 1.0f;
        memset(params[i].grad, 0, sizeof(float) * params[i].size);
    }
}

static uint64_t splitmix_mix(uint64_t key, uint64_t i)
{
    uint64_t z = key + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void block_rule_mask(double *m, size_t n, uint64_t key, float p)
{
    const float scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++)
        m[i] = (double)(splitmix_mix(key, i) >> 11) * 0x1.0p-53 >= (double)p ? (double)scale : 0.0;
}

double rel_max_diff(const float *a, const float *b, size_t n)
{
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i]))
            return INFINITY; /* fmax would pass over a NaN */
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return diff / scale;
}

void assert_close_array(const float *a, const float *b, size_t n, double tol, const char *what)
{
    assert_close_array_floor(a, b, n, tol, 0.0, what);
}

void fixture_check_linear_step(const fixture *fx, const char *prefix, srp_linear *l, double tol,
                               double db_floor, float lr)
{
    const size_t in = srp_linear_in_features(l), out = srp_linear_out_features(l);
    char key[160];
    snprintf(key, sizeof(key), "%s/sigma", prefix);
    assert_close_rel(srp_linear_sigma(l), fixture_get(fx, key, 1, NULL)[0], tol, 0.0,
                     "fixture sigma");
    snprintf(key, sizeof(key), "%s/dw", prefix);
    assert_close_array(srp_linear_weight_grad(l), fixture_get(fx, key, in * out, NULL), in * out,
                       tol, "fixture dW");
    snprintf(key, sizeof(key), "%s/db", prefix);
    assert_close_array_floor(srp_linear_bias_grad(l), fixture_get(fx, key, out, NULL), out, tol,
                             db_floor, "fixture db");
    snprintf(key, sizeof(key), "%s/dgamma", prefix);
    /* dgamma = <G^T x, W> / sigma is one reduction of in x out products
     * that cancel, later in a trajectory of steps: its error relative to
     * the result is larger than an element's (1.04e-5 with AVX2 GEMM
     * kernels, under valgrind). A missing or wrong term is off by far more
     * (tests/mutants.sh). */
    assert_close_rel(*srp_linear_gamma_grad(l), fixture_get(fx, key, 1, NULL)[0], 3.0 * tol, 1e-3,
                     "fixture dgamma");
    float *w = srp_linear_weight(l), *b = srp_linear_bias(l);
    for (size_t j = 0; j < in * out; j++)
        w[j] -= lr * srp_linear_weight_grad(l)[j];
    for (size_t j = 0; j < out; j++)
        b[j] -= lr * srp_linear_bias_grad(l)[j];
    *srp_linear_gamma(l) -= lr * *srp_linear_gamma_grad(l);
}

void assert_close_array_floor(const float *a, const float *b, size_t n, double tol, double floor,
                              const char *what)
{
    double max_err = 0.0, max_ref = 0.0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)a[i] - (double)b[i]);
        if (isnan(err)) {
            print_error("%s: [%zu] is %g, expected %g\n", what, i, a[i], b[i]);
            fail();
        }
        if (err > max_err) {
            max_err = err;
            worst = i;
        }
        max_ref = fmax(max_ref, fabs((double)b[i]));
    }
    max_ref = fmax(max_ref, floor);
    if (!(max_err <= tol * max_ref)) {
        print_error("%s: max |err| %.3g at [%zu] (got %.9g, expected %.9g), max |ref| %.3g, "
                    "rel %.3g > tol %.3g\n",
                    what, max_err, worst, a[worst], b[worst], max_ref,
                    max_ref > 0 ? max_err / max_ref : max_err, tol);
        fail();
    }
}

void assert_close_to_double(const float *got, const double *want, size_t n, double tol,
                            double floor, const char *what)
{
    float *wf = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(wf);
    to_float(want, wf, n);
    assert_close_array_floor(got, wf, n, tol, floor, what);
    free(wf);
}
