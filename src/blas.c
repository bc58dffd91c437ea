/* The one door to BLAS and LAPACK, plus small double-precision reductions.
 *
 * Two GEMM backends live behind srp_sgemm, chosen at build time (SRP_GEMM):
 * oneDNN's dnnl_sgemm where it is built in (its AVX-512 kernels run at
 * twice the speed of an OpenBLAS held to AVX2 ones), else OpenBLAS's.
 * oneDNN's convolutions, behind the same door, are in blas_conv.c.
 * OpenBLAS is always there for gemv, the double-precision BLAS and LAPACK.
 * Both use libgomp, as our own loops do: one thread pool. Called inside one
 * of our parallel regions, each runs on the calling thread.
 *
 * Everything is row-major here; cblas takes care of the layout. LAPACK is
 * called through its Fortran symbol (OpenBLAS exports it; Debian ships no
 * LAPACKE with it), so the hidden string-length argument is passed too. */
#define _POSIX_C_SOURCE 200809L /* sysconf */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>
#include <unistd.h>
#ifdef SRP_HAVE_ONEDNN
#include <pthread.h>

#include <oneapi/dnnl/dnnl.h>
#endif

#include "internal.h"

void dgesdd_(const char *jobz, const blasint *m, const blasint *n, double *a, const blasint *lda,
             double *s, double *u, const blasint *ldu, double *vt, const blasint *ldvt,
             double *work, const blasint *lwork, blasint *iwork, blasint *info, size_t jobz_len);

void dsyev_(const char *jobz, const char *uplo, const blasint *n, double *a, const blasint *lda,
            double *w, double *work, const blasint *lwork, blasint *info, size_t jobz_len,
            size_t uplo_len);

int srp_blas_size_ok(size_t n) { return n <= (size_t)INT_MAX; }

/* Here rather than in threads.c, which only holds the count: OpenMP's
 * default (that oneDNN's GEMMs take) and OpenBLAS's own count follow it. */
void srp_set_num_threads(int n)
{
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    srp_threads_store(n);
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int srp_blas_nests_in_openmp(void) { return openblas_get_parallel() == 2; }

const char *srp_gemm_backend(void)
{
#ifdef SRP_HAVE_ONEDNN
    return "onednn";
#else
    return "openblas";
#endif
}

const char *srp_openblas_core(void) { return openblas_get_corename(); }

void srp_sgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a,
               size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc)
{
#ifdef SRP_HAVE_ONEDNN
    /* dnnl_sgemm fails only on arguments we never pass or when it cannot get
     * memory; OpenBLAS then computes the same product, so that no GEMM is
     * ever skipped. */
    if (dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', (dnnl_dim_t)m, (dnnl_dim_t)n,
                   (dnnl_dim_t)k, alpha, a, (dnnl_dim_t)lda, b, (dnnl_dim_t)ldb, beta, c,
                   (dnnl_dim_t)ldc) == dnnl_success)
        return;
#endif
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha, a,
                (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

#ifdef SRP_HAVE_ONEDNN_BF16_GEMM
/* Exported by oneDNN (DNNL_API) but declared in no public header: row-major
 * like dnnl_sgemm, bf16 as its 16 bits (src/CMakeLists.txt checks that it
 * links). */
dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t m, dnnl_dim_t n,
                                    dnnl_dim_t k, float alpha, const uint16_t *a, dnnl_dim_t lda,
                                    const uint16_t *b, dnnl_dim_t ldb, float beta, float *c,
                                    dnnl_dim_t ldc);
#endif

int srp_bf16_gemm_built(void)
{
#ifdef SRP_HAVE_ONEDNN_BF16_GEMM
    return 1;
#else
    return 0;
#endif
}

static float bf16_to_float(uint16_t h)
{
    const uint32_t bits = (uint32_t)h << 16;
    float x;
    memcpy(&x, &bits, sizeof(x));
    return x;
}

/* The product in plain loops: where oneDNN's GEMM fails, and the whole
 * native path of a build without oneDNN (srp_set_precision_bf16_any_cpu
 * tests it there). c: [m][ldc] */
static void bf16_gemm_loops(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                            const uint16_t *a, size_t lda, const uint16_t *b, size_t ldb,
                            float beta, float *c, size_t ldc)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (size_t p = 0; p < k; p++)
                s += bf16_to_float(trans_a ? a[p * lda + i] : a[i * lda + p]) *
                     bf16_to_float(trans_b ? b[j * ldb + p] : b[p * ldb + j]);
            float *cij = c + i * ldc + j;
            *cij = beta == 0.0f ? alpha * s : alpha * s + beta * *cij;
        }
}

void srp_bf16_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                   const uint16_t *a, size_t lda, const uint16_t *b, size_t ldb, float beta,
                   float *c, size_t ldc)
{
#ifdef SRP_HAVE_ONEDNN_BF16_GEMM
    /* It fails only on arguments we never pass or when it cannot get
     * memory; plain loops then compute the same product, slowly,
     * so that no GEMM is ever skipped. */
    if (dnnl_gemm_bf16bf16f32(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', (dnnl_dim_t)m,
                              (dnnl_dim_t)n, (dnnl_dim_t)k, alpha, a, (dnnl_dim_t)lda, b,
                              (dnnl_dim_t)ldb, beta, c, (dnnl_dim_t)ldc) == dnnl_success)
        return;
#endif
    bf16_gemm_loops(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---- batched GEMM plans ---- */

#define BGEMM_ONEDNN_MIN_MNK 20000

struct srp_bgemm {
    srp_bgemm_desc d;
#ifdef SRP_HAVE_ONEDNN
    dnnl_primitive_t prim; /* NULL: the loop below runs instead */
    dnnl_stream_t stream;
    dnnl_memory_t mem_a, mem_b, mem_c, mem_scratch;
    void *scratch;
#endif
};

/* The loop: one (b, h) per iteration, side by side on the library's threads
 * when BLAS may be called from them (see srp_blas_nests_in_openmp), else in
 * turn with BLAS's own threads. */
static void bgemm_loop(const srp_bgemm_desc *d, const float *a, const float *b, float *c)
{
    const long count = (long)(d->batch * d->heads);
    const int threads = srp_blas_nests_in_openmp() && count > 1 ? srp_threads() : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long i = 0; i < count; i++) {
        const size_t bi = (size_t)i / d->heads, hi = (size_t)i % d->heads;
        cblas_sgemm(CblasRowMajor, d->trans_a ? CblasTrans : CblasNoTrans,
                    d->trans_b ? CblasTrans : CblasNoTrans, (blasint)d->m, (blasint)d->n,
                    (blasint)d->k, d->alpha, a + bi * d->a_batch + hi * d->a_head, (blasint)d->lda,
                    b + bi * d->b_batch + hi * d->b_head, (blasint)d->ldb, 0.0f,
                    c + bi * d->c_batch + hi * d->c_head, (blasint)d->ldc);
    }
}

#ifdef SRP_HAVE_ONEDNN
/* One CPU engine for the process, made on first use. */
static dnnl_engine_t g_engine;
static pthread_once_t g_engine_once = PTHREAD_ONCE_INIT;
static void make_engine(void)
{
    if (dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success)
        g_engine = NULL;
}

dnnl_engine_t srp_onednn_engine(void)
{
    pthread_once(&g_engine_once, make_engine);
    return g_engine;
}

/* A [batch][heads][rows][cols] view of a matrix stored with row stride ld,
 * transposed when trans (the stored matrix is then [cols][rows]). */
static int view_desc(dnnl_memory_desc_t *md, const srp_bgemm_desc *d, size_t rows, size_t cols,
                     int trans, size_t ld, size_t batch_stride, size_t head_stride)
{
    dnnl_dims_t dims = {(dnnl_dim_t)d->batch, (dnnl_dim_t)d->heads, (dnnl_dim_t)rows,
                        (dnnl_dim_t)cols};
    dnnl_dims_t strides = {(dnnl_dim_t)batch_stride, (dnnl_dim_t)head_stride,
                           trans ? 1 : (dnnl_dim_t)ld, trans ? (dnnl_dim_t)ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 4, dims, dnnl_f32, strides) == dnnl_success;
}

/* Builds the matmul primitive; on any refusal, leaves g->prim NULL. */
static void bgemm_build_onednn(srp_bgemm *g)
{
    const srp_bgemm_desc *d = &g->d;
    if (!srp_onednn_engine())
        return;
    dnnl_memory_desc_t a_md, b_md, c_md;
    if (!view_desc(&a_md, d, d->m, d->k, d->trans_a, d->lda, d->a_batch, d->a_head) ||
        !view_desc(&b_md, d, d->k, d->n, d->trans_b, d->ldb, d->b_batch, d->b_head) ||
        !view_desc(&c_md, d, d->m, d->n, 0, d->ldc, d->c_batch, d->c_head))
        return;
    dnnl_matmul_desc_t mm;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int ok =
        dnnl_matmul_desc_init(&mm, &a_md, &b_md, NULL, &c_md) == dnnl_success &&
        dnnl_primitive_attr_create(&attr) == dnnl_success &&
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success &&
        (d->alpha == 1.0f ||
         dnnl_primitive_attr_set_output_scales(attr, 1, 0, &d->alpha) == dnnl_success) &&
        dnnl_primitive_desc_create(&pd, &mm, attr, g_engine, NULL) == dnnl_success;
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (!ok) {
        if (pd)
            dnnl_primitive_desc_destroy(pd);
        return;
    }
    const dnnl_memory_desc_t *sp_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    const size_t sp_size = sp_md ? dnnl_memory_desc_get_size(sp_md) : 0;
    if (sp_size)
        g->scratch = malloc(sp_size);
    ok = (!sp_size || g->scratch) && dnnl_primitive_create(&g->prim, pd) == dnnl_success &&
         dnnl_stream_create(&g->stream, g_engine, dnnl_stream_default_flags) == dnnl_success &&
         dnnl_memory_create(&g->mem_a, &a_md, g_engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&g->mem_b, &b_md, g_engine, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&g->mem_c, &c_md, g_engine, DNNL_MEMORY_NONE) == dnnl_success &&
         (!sp_size ||
          dnnl_memory_create(&g->mem_scratch, sp_md, g_engine, g->scratch) == dnnl_success);
    dnnl_primitive_desc_destroy(pd);
    if (!ok) { /* back to the loop: undo what was made */
        if (g->prim)
            dnnl_primitive_destroy(g->prim);
        g->prim = NULL;
    }
}
#endif

srp_status srp_bgemm_create(srp_bgemm **out, const srp_bgemm_desc *d)
{
    *out = NULL;
    if (d->batch == 0 || d->heads == 0 || d->m == 0 || d->n == 0 || d->k == 0 ||
        !srp_blas_size_ok(d->m) || !srp_blas_size_ok(d->n) || !srp_blas_size_ok(d->k) ||
        !srp_blas_size_ok(d->lda) || !srp_blas_size_ok(d->ldb) || !srp_blas_size_ok(d->ldc))
        return SRP_ERR_INVALID_ARG;
    srp_bgemm *g = calloc(1, sizeof(*g));
    if (!g)
        return SRP_ERR_NOMEM;
    g->d = *d;
#ifdef SRP_HAVE_ONEDNN
    /* Below this size per matrix (17x17x32, the ViT-lite's 7x7 patches) the
     * loop of OpenBLAS calls beat oneDNN's batched matmul; above it oneDNN
     * wins or ties (the measurements: docs/PERFORMANCE.md). */
    if (d->m * d->n * d->k >= BGEMM_ONEDNN_MIN_MNK)
        bgemm_build_onednn(g);
#endif
    *out = g;
    return SRP_OK;
}

void srp_bgemm_run(srp_bgemm *g, const float *a, const float *b, float *c)
{
#ifdef SRP_HAVE_ONEDNN
    if (g->prim && dnnl_memory_set_data_handle(g->mem_a, (void *)a) == dnnl_success &&
        dnnl_memory_set_data_handle(g->mem_b, (void *)b) == dnnl_success &&
        dnnl_memory_set_data_handle(g->mem_c, c) == dnnl_success) {
        const dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, g->mem_a},
                                         {DNNL_ARG_WEIGHTS, g->mem_b},
                                         {DNNL_ARG_DST, g->mem_c},
                                         {DNNL_ARG_SCRATCHPAD, g->mem_scratch}};
        if (dnnl_primitive_execute(g->prim, g->stream, g->mem_scratch ? 4 : 3, args) ==
                dnnl_success &&
            dnnl_stream_wait(g->stream) == dnnl_success)
            return;
    }
#endif
    bgemm_loop(&g->d, a, b, c);
}

void srp_bgemm_destroy(srp_bgemm *g)
{
    if (!g)
        return;
#ifdef SRP_HAVE_ONEDNN
    if (g->prim)
        dnnl_primitive_destroy(g->prim);
    if (g->stream)
        dnnl_stream_destroy(g->stream);
    dnnl_memory_t mems[4] = {g->mem_a, g->mem_b, g->mem_c, g->mem_scratch};
    for (int i = 0; i < 4; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    free(g->scratch);
#endif
    free(g);
}

void srp_dsyrk_full(int trans, size_t n, size_t k, const double *a, size_t lda, double *c,
                    size_t ldc)
{
    cblas_dsyrk(CblasRowMajor, CblasUpper, trans ? CblasTrans : CblasNoTrans, (blasint)n,
                (blasint)k, 1.0, a, (blasint)lda, 0.0, c, (blasint)ldc);
    for (size_t i = 0; i < n; i++) /* mirror the upper triangle */
        for (size_t j = 0; j < i; j++)
            c[i * ldc + j] = c[j * ldc + i];
}

void srp_sgemv(int trans, size_t rows, size_t cols, float alpha, const float *a, size_t lda,
               const float *x, float beta, float *y)
{
    cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, (blasint)rows, (blasint)cols,
                alpha, a, (blasint)lda, x, 1, beta, y, 1);
}

int srp_lapack_dgesdd_top(double *a, size_t m, size_t n, double *s, double *u_col, double *vt_row)
{
    const int want_vectors = u_col != NULL && vt_row != NULL;
    const blasint bm = (blasint)m, bn = (blasint)n;
    const blasint k = bm < bn ? bm : bn;
    const char jobz = want_vectors ? 'S' : 'N';
    blasint ldu = want_vectors ? bm : 1, ldvt = want_vectors ? k : 1;
    double *u = NULL, *vt = NULL, *work = NULL, query = 0.0, dummy = 0.0;
    blasint *iwork = malloc(sizeof(blasint) * 8 * (size_t)k);
    blasint lwork = -1, info = 0;

    if (!iwork)
        return SRP_LAPACK_NOMEM;
    if (want_vectors) {
        u = malloc(sizeof(double) * m * (size_t)k);
        vt = malloc(sizeof(double) * (size_t)k * n);
        if (!u || !vt) {
            info = SRP_LAPACK_NOMEM;
            goto done;
        }
    }
    dgesdd_(&jobz, &bm, &bn, a, &bm, s, u ? u : &dummy, &ldu, vt ? vt : &dummy, &ldvt, &query,
            &lwork, iwork, &info, 1);
    if (info != 0)
        goto done;
    lwork = (blasint)query;
    work = malloc(sizeof(double) * (size_t)(lwork > 1 ? lwork : 1));
    if (!work) {
        info = SRP_LAPACK_NOMEM;
        goto done;
    }
    dgesdd_(&jobz, &bm, &bn, a, &bm, s, u ? u : &dummy, &ldu, vt ? vt : &dummy, &ldvt, work, &lwork,
            iwork, &info, 1);
    if (info == 0 && want_vectors) {
        for (size_t i = 0; i < m; i++) /* first column of U */
            u_col[i] = u[i];
        for (size_t j = 0; j < n; j++) /* first row of VT, stride ldvt */
            vt_row[j] = vt[j * (size_t)ldvt];
    }
done:
    free(work);
    free(vt);
    free(u);
    free(iwork);
    return (int)info;
}

int srp_lapack_dsyev(int want_vectors, size_t n, double *a, size_t lda, double *w, double *work,
                     size_t lwork)
{
    const char jobz = want_vectors ? 'V' : 'N', uplo = 'U';
    const blasint bn = (blasint)n, blda = (blasint)lda, blwork = (blasint)lwork;
    blasint info = 0;
    dsyev_(&jobz, &uplo, &bn, a, &blda, w, work, &blwork, &info, 1, 1);
    return (int)info;
}

void srp_dgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a, size_t lda,
               const double *b, size_t ldb, double *c, size_t ldc)
{
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, 1.0, a,
                (blasint)lda, b, (blasint)ldb, 0.0, c, (blasint)ldc);
}

/* Four independent accumulators: a fixed summation order (same bits on every
 * run) that still pipelines. */
double srp_dot_f64(const float *x, const float *y, size_t n)
{
    double acc[4] = {0.0, 0.0, 0.0, 0.0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        acc[0] += (double)x[i] * (double)y[i];
        acc[1] += (double)x[i + 1] * (double)y[i + 1];
        acc[2] += (double)x[i + 2] * (double)y[i + 2];
        acc[3] += (double)x[i + 3] * (double)y[i + 3];
    }
    for (; i < n; i++)
        acc[0] += (double)x[i] * (double)y[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

double srp_sumsq_f64(const float *x, size_t n) { return srp_dot_f64(x, x, n); }

int srp_all_finite(const float *x, size_t n)
{
    /* NaN and +-Inf are the floats whose exponent bits are all ones. An OR
     * of integer tests vectorizes (a float sum would need reassociation),
     * and long arrays are split over the threads: the forwards check every
     * output with this (x: [n]). */
    const uint32_t exponent = 0x7f800000u;
    long bad_blocks = 0;
    const long blocks = (long)((n + 4095) / 4096);
#pragma omp parallel for reduction(+ : bad_blocks) num_threads(srp_threads()) schedule(static)     \
    if (n >= 4 * SRP_PARALLEL_MIN_ELEMS)
    for (long blk = 0; blk < blocks; blk++) {
        const size_t lo = (size_t)blk * 4096, hi = lo + 4096 < n ? lo + 4096 : n;
        unsigned bad = 0;
        for (size_t i = lo; i < hi; i++) {
            uint32_t b;
            memcpy(&b, x + i, sizeof b);
            bad |= (b & exponent) == exponent;
        }
        bad_blocks += bad;
    }
    return bad_blocks == 0;
}
