/* Shared by the bench binaries: timing, medians, the sgemm peak of this run,
 * and output as a table (stdout) or JSON lines (--json). */
#ifndef SRP_BENCH_COMMON_H
#define SRP_BENCH_COMMON_H

#include <stddef.h>

#include "sigmareparam.h"

typedef struct {
    int json;    /* --json: one JSON object per line instead of a table */
    int repeats; /* --repeats N: timed repeats per case (median reported) */
    int threads; /* --threads N: only this thread count (0: 1 and 2) */
} bench_options;

/* A bench's own flags: called for each flag the common parser does not know,
 * with the next argument (NULL at the end); returns how many arguments it
 * took (1 for a flag alone, 2 with its value), or 0 for an unknown flag. */
typedef int (*bench_flag_fn)(void *ctx, const char *flag, const char *next);

/* Parses --json, --repeats N, --threads N, --help and, through on_flag (may
 * be NULL), the bench's own; exits 2 on a bad flag. usage_extra lists the
 * bench's own flags for --help. */
bench_options bench_parse_args(int argc, char **argv, const char *usage_extra,
                               bench_flag_fn on_flag, void *ctx);

double bench_now_seconds(void);
double bench_median(double *values, int n); /* sorts values */

/* Median seconds of `repeats` calls of fn(ctx) after one warm-up call. */
double bench_time(void (*fn)(void *), void *ctx, int repeats);

/* Median seconds of each of k functions, timed in turns (fn[0], fn[1], ...,
 * fn[0], ...) so that drift of the machine hits them alike; medians[k]. */
void bench_time_interleaved(void (*const *fns)(void *), void *const *ctxs, int k, int repeats,
                            double *medians);

/* sgemm GFLOP/s of one backend ("openblas" or "onednn") for
 * C[m][n] = A[m][k] B[k][n] at the current thread count; 0 when that
 * backend is not built in. */
double bench_sgemm_gflops(const char *backend, size_t m, size_t n, size_t k, int repeats,
                          double *median_seconds);
/* C = alpha op(A) op(B) + beta C (row-major) with the library's active
 * backend: what a bare GEMM costs next to a layer's call. */
void bench_sgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                 const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                 size_t ldc);
/* The backends built in: {"openblas"} or {"openblas", "onednn"}; returns the count. */
int bench_backends(const char *names[2]);

/* The peaks every bench divides by, measured in the same run at 2048^3:
 * the active backend's (srp_gemm_backend) and the best built-in one's,
 * after setting the library's thread count to threads. */
typedef struct {
    double active, best;
} bench_peaks;
bench_peaks bench_measure_peaks(int threads);

/* The first line of every bench: the GEMM backend, OpenBLAS's kernels
 * (OPENBLAS_CORETYPE pins them) and the library version; JSON or text. */
void bench_print_setup(const bench_options *o, const char *bench);

/* Fills x with uniform values in [-1, 1) from a fixed seed. */
void bench_fill(float *x, size_t n, unsigned seed);
/* malloc that exits with a message: bench binaries only. */
void *bench_alloc(size_t bytes);
/* Exits 1 with "<what> failed: <status> (<detail>)" unless st is SRP_OK. */
void bench_check(srp_status st, const char *what);
/* A linear of the default config with reparam mode (bench_check'd). */
srp_linear *bench_make_linear(size_t in, size_t out, srp_reparam mode);
/* A linear's training forward and backward on n rows, timed by
 * bench_time(bench_run_linear, &c, ...). x, dx: [n][in]; y, dy: [n][out] */
typedef struct {
    srp_linear *l;
    size_t n;
    const float *x, *dy;
    float *y, *dx;
} bench_linear_case;
void bench_run_linear(void *ctx);

/* Thread counts to run: {1, 2} or the one given with --threads. */
int bench_thread_list(const bench_options *o, int *list);

#endif
