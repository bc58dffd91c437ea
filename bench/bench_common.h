/* Shared by the bench binaries: timing, medians, the sgemm peak of this run,
 * and output as a table (stdout) or JSON lines (--json). */
#ifndef SRP_BENCH_COMMON_H
#define SRP_BENCH_COMMON_H

#include <stddef.h>

typedef struct {
    int json;    /* --json: one JSON object per line instead of a table */
    int repeats; /* --repeats N: timed repeats per case (median reported) */
    int threads; /* --threads N: only this thread count (0: 1 and 2) */
} bench_options;

/* Parses --json, --repeats N, --threads N, --help; exits 2 on a bad flag. */
bench_options bench_parse_args(int argc, char **argv, const char *usage_extra);

double bench_now_seconds(void);
double bench_median(double *values, int n); /* sorts values */

/* Median seconds of `repeats` calls of fn(ctx) after one warm-up call. */
double bench_time(void (*fn)(void *), void *ctx, int repeats);

/* Median seconds of each of k functions, timed in turns (fn[0], fn[1], ...,
 * fn[0], ...) so that drift of the machine hits them alike; medians[k]. */
void bench_time_interleaved(void (*const *fns)(void *), void *const *ctxs, int k, int repeats,
                            double *medians);

/* OpenBLAS sgemm GFLOP/s for C[m][n] = A[m][k] B[k][n] at the current
 * thread count: the peak every bench reports its figures against. */
double bench_sgemm_gflops(size_t m, size_t n, size_t k, int repeats, double *median_seconds);

/* Fills x with uniform values in [-1, 1) from a fixed seed. */
void bench_fill(float *x, size_t n, unsigned seed);
/* malloc that exits with a message: bench binaries only. */
void *bench_alloc(size_t bytes);

/* Thread counts to run: {1, 2} or the one given with --threads. */
int bench_thread_list(const bench_options *o, int *list);

#endif
