/* The one door to BLAS and LAPACK, plus small double-precision reductions.
 *
 * Two GEMM backends live behind srp_sgemm, chosen at build time (SRP_GEMM):
 * oneDNN's dnnl_sgemm where it is built in (its AVX-512 kernels run at
 * twice the speed of an OpenBLAS held to AVX2 ones), else OpenBLAS's.
 * OpenBLAS is always there for gemv, the double-precision BLAS and LAPACK.
 * Both use libgomp, as our own loops do: one thread pool. Called inside one
 * of our parallel regions, each runs on the calling thread.
 *
 * Everything is row-major here; cblas takes care of the layout. LAPACK is
 * called through its Fortran symbol (OpenBLAS exports it; Debian ships no
 * LAPACKE with it), so the hidden string-length argument is passed too. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include <cblas.h>
#ifdef SRP_HAVE_ONEDNN
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

void srp_blas_set_num_threads(int n) { openblas_set_num_threads(n); }

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

void srp_sgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
               const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
               size_t ldc)
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

void srp_sger(size_t rows, size_t cols, float alpha, const float *x, const float *y, float *a,
              size_t lda)
{
    cblas_sger(CblasRowMajor, (blasint)rows, (blasint)cols, alpha, x, 1, y, 1, a, (blasint)lda);
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
        return -1000;
    if (want_vectors) {
        u = malloc(sizeof(double) * m * (size_t)k);
        vt = malloc(sizeof(double) * (size_t)k * n);
        if (!u || !vt) {
            info = -1000;
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
        info = -1000;
        goto done;
    }
    dgesdd_(&jobz, &bm, &bn, a, &bm, s, u ? u : &dummy, &ldu, vt ? vt : &dummy, &ldvt, work,
            &lwork, iwork, &info, 1);
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

void srp_dgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a,
               size_t lda, const double *b, size_t ldb, double *c, size_t ldc)
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
    /* x - x is 0 for finite x and NaN for NaN/Inf; one branch at the end. */
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += x[i] - x[i];
    return acc == 0.0f;
}
