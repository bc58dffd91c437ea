/* Forward + backward of the sigmaReparam linear (SIGMA) against the plain
 * linear with the same API (NONE) and against the three bare sgemm calls a
 * linear layer needs (y = x W^T, dx = dy W, dW += dy^T x), all on the
 * library's GEMM backend.
 * Goals: SIGMA at most 2% slower than NONE; NONE at least 90% of bare. */
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"
#include "sigmareparam.h"

typedef struct {
    size_t n, in, out;
    const float *x, *dy, *w;
    float *y, *dx, *dw;
} bare_case;

static void run_bare(void *ctx)
{
    bare_case *c = ctx;
    bench_sgemm(0, 1, c->n, c->out, c->in, 1.0f, c->x, c->in, c->w, c->in, 0.0f, c->y, c->out);
    bench_sgemm(0, 0, c->n, c->in, c->out, 1.0f, c->dy, c->out, c->w, c->in, 0.0f, c->dx, c->in);
    bench_sgemm(1, 0, c->out, c->in, c->n, 1.0f, c->dy, c->out, c->x, c->in, 1.0f, c->dw, c->in);
}

int main(int argc, char **argv)
{
    bench_options o = bench_parse_args(argc, argv, NULL, NULL, NULL);
    const size_t shapes[4][3] = {
        {4096, 512, 512}, {6400, 128, 384}, {6400, 128, 256}, {4096, 1024, 1024}};
    int threads[2];
    const int nthreads = bench_thread_list(&o, threads);
    bench_print_setup(&o, "linear");
    if (!o.json)
        printf("%-7s %5s %5s %5s | %9s %9s %9s | %10s %10s | %8s %9s\n", "threads", "n", "in",
               "out", "sigma_ms", "none_ms", "bare_ms", "sigma/none", "none/bare", "GFLOP/s",
               "of_peak");
    for (int t = 0; t < nthreads; t++) {
        const bench_peaks peaks = bench_measure_peaks(threads[t]);
        const double peak = peaks.best;
        for (int s = 0; s < 4; s++) {
            const size_t n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
            const int repeats = o.repeats ? o.repeats : 21;
            float *x = bench_alloc(sizeof(float) * n * in),
                  *dy = bench_alloc(sizeof(float) * n * out);
            float *y = bench_alloc(sizeof(float) * n * out),
                  *dx = bench_alloc(sizeof(float) * n * in);
            float *dw = bench_alloc(sizeof(float) * in * out);
            bench_fill(x, n * in, 1);
            bench_fill(dy, n * out, 2);
            srp_linear *sig = bench_make_linear(in, out, SRP_REPARAM_SIGMA),
                       *none = bench_make_linear(in, out, SRP_REPARAM_NONE);
            bench_linear_case cs = {sig, n, x, dy, y, dx};
            bench_linear_case cn = {none, n, x, dy, y, dx};
            bare_case cb = {n, in, out, x, dy, srp_linear_weight(none), y, dx, dw};
            void (*fns[3])(void *) = {bench_run_linear, bench_run_linear, run_bare};
            void *ctxs[3] = {&cs, &cn, &cb};
            double med[3];
            bench_time_interleaved(fns, ctxs, 3, repeats, med);
            const double flops = 3.0 * 2.0 * (double)n * (double)in * (double)out;
            const double gf = flops / med[0] * 1e-9;
            if (o.json)
                printf("{\"bench\":\"linear\",\"threads\":%d,\"n\":%zu,\"in\":%zu,\"out\":%zu,"
                       "\"sigma_ms\":%.4f,\"none_ms\":%.4f,\"bare_sgemm_ms\":%.4f,"
                       "\"sigma_over_none\":%.4f,\"none_over_bare\":%.4f,\"sigma_gflops\":%.2f,"
                       "\"sgemm_peak_gflops\":%.2f,\"best_sgemm_peak_gflops\":%.2f,"
                       "\"sigma_of_peak\":%.3f}\n",
                       threads[t], n, in, out, med[0] * 1e3, med[1] * 1e3, med[2] * 1e3,
                       med[0] / med[1], med[1] / med[2], gf, peaks.active, peak, gf / peak);
            else
                printf("%-7d %5zu %5zu %5zu | %9.3f %9.3f %9.3f | %10.4f %10.4f | %8.1f %8.1f%%\n",
                       threads[t], n, in, out, med[0] * 1e3, med[1] * 1e3, med[2] * 1e3,
                       med[0] / med[1], med[1] / med[2], gf, 100.0 * gf / peak);
            srp_linear_destroy(sig);
            srp_linear_destroy(none);
            free(x);
            free(dy);
            free(y);
            free(dx);
            free(dw);
        }
    }
    printf("%s", o.json ? ""
                        : "sigma/none: goal <= 1.02; none/bare: time ratio, goal <= 1.11 (>= 90% "
                          "throughput)\n");
    return 0;
}
