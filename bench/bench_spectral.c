/* One power-iteration step against the time to stream W from memory twice
 * (a step is two gemv passes over W, and cannot do better). Goal: <= 1.5x. */
#include <stdio.h>
#include <stdlib.h>

#include <cblas.h>

#include "bench_common.h"
#include "sigmareparam.h"

typedef struct {
    srp_power_iter *p;
    const float *w;
    size_t n;
    float sink;
} spectral_case;

static void run_step(void *ctx)
{
    spectral_case *c = ctx;
    float sigma;
    if (srp_power_iter_step(c->p, c->w, 1, &sigma) != SRP_OK) {
        fprintf(stderr, "bench_spectral: power step failed\n");
        exit(1);
    }
    c->sink += sigma;
}

/* Reading W twice with OpenBLAS's tuned (and threaded) sasum. */
static void run_stream_twice(void *ctx)
{
    spectral_case *c = ctx;
    c->sink += cblas_sasum((blasint)(c->n * c->n), c->w, 1);
    c->sink += cblas_sasum((blasint)(c->n * c->n), c->w, 1);
}

int main(int argc, char **argv)
{
    bench_options o = bench_parse_args(argc, argv, NULL, NULL, NULL);
    const size_t sizes[3] = {256, 1024, 4096};
    int threads[2];
    const int nthreads = bench_thread_list(&o, threads);
    bench_print_setup(&o, "spectral");
    if (!o.json)
        printf("%-8s %6s %12s %14s %8s %14s\n", "threads", "n", "step_ms", "stream2x_ms", "ratio",
               "sgemm_GFLOP/s");
    for (int t = 0; t < nthreads; t++) {
        const bench_peaks peaks = bench_measure_peaks(threads[t]);
        const double peak = peaks.best;
        for (int s = 0; s < 3; s++) {
            const size_t n = sizes[s];
            const int repeats = o.repeats ? o.repeats : (n >= 4096 ? 15 : 101);
            float *w = bench_alloc(sizeof(float) * n * n);
            bench_fill(w, n * n, 3);
            spectral_case c = {NULL, w, n, 0.0f};
            bench_check(srp_power_iter_create(&c.p, n, n, 1), "srp_power_iter_create");
            const double step = bench_time(run_step, &c, repeats);
            const double stream = bench_time(run_stream_twice, &c, repeats);
            if (o.json)
                printf("{\"bench\":\"spectral\",\"threads\":%d,\"n\":%zu,\"step_ms\":%.4f,"
                       "\"stream2x_ms\":%.4f,\"ratio\":%.3f,\"sgemm_peak_gflops\":%.1f,"
                       "\"best_sgemm_peak_gflops\":%.1f}\n",
                       threads[t], n, step * 1e3, stream * 1e3, step / stream, peaks.active, peak);
            else
                printf("%-8d %6zu %12.4f %14.4f %8.2f %14.1f\n", threads[t], n, step * 1e3,
                       stream * 1e3, step / stream, peak);
            srp_power_iter_destroy(c.p);
            free(w);
        }
    }
    return 0;
}
