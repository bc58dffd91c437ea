/* Multi-head attention, forward + backward (training): the whole module, the
 * attention core (softmax(QK^T)V and its backward, without qkv and proj),
 * and the cost of entropy tracking.
 *
 * The core is timed as module minus its two linears, each run on its own at
 * the same shapes in the same interleaved loop. Entropy cost: the same
 * module with track_entropy = 0 (the option exists for this measurement).
 * Goals: core >= 50% of the sgemm peak at the two larger shapes; entropy
 * tracking <= 3% of the module's time. */
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"
#include "sigmareparam.h"

typedef struct {
    srp_attention *a;
    size_t batch, tokens;
    const float *x, *dy;
    float *y, *dx;
} attn_case;

static void run_attention(void *ctx)
{
    attn_case *c = ctx;
    if (srp_attention_forward(c->a, c->x, c->batch, c->tokens, c->y, SRP_TRAIN) != SRP_OK ||
        srp_attention_backward(c->a, c->dy, c->dx) != SRP_OK) {
        fprintf(stderr, "bench_attention: attention call failed\n");
        exit(1);
    }
}

static srp_attention *make_attention(size_t b, size_t t, size_t d, size_t h, int track)
{
    srp_attention_config c = srp_attention_config_default(d, h);
    c.track_entropy = track;
    srp_attention *a = NULL;
    bench_check(srp_attention_create(&a, &c, b, t), "srp_attention_create");
    return a;
}

int main(int argc, char **argv)
{
    bench_options o = bench_parse_args(argc, argv, NULL, NULL, NULL);
    /* the ViT-lite trainer's (7x7 patches), the benchmark configuration's, two longer */
    const size_t shapes[4][4] = {
        {128, 17, 128, 4}, {128, 50, 128, 4}, {16, 256, 256, 4}, {4, 1024, 512, 8}};
    int threads[2];
    const int nthreads = bench_thread_list(&o, threads);
    bench_print_setup(&o, "attention");
    if (!o.json)
        printf("%-7s %4s %5s %4s %2s | %9s %8s %8s | %9s %8s | %9s %8s | %8s\n", "threads", "B",
               "T", "D", "H", "module_ms", "GFLOP/s", "of_peak", "core_ms", "GFLOP/s", "core_peak",
               "entropy", "peak");
    for (int t = 0; t < nthreads; t++) {
        const bench_peaks peaks = bench_measure_peaks(threads[t]);
        const double peak = peaks.best;
        for (int s = 0; s < 4; s++) {
            const size_t B = shapes[s][0], T = shapes[s][1], D = shapes[s][2], H = shapes[s][3];
            const size_t n = B * T;
            const int repeats = o.repeats ? o.repeats : 15;
            float *x = bench_alloc(sizeof(float) * n * D), *dy = bench_alloc(sizeof(float) * n * D);
            float *y = bench_alloc(sizeof(float) * n * 3 * D),
                  *dx = bench_alloc(sizeof(float) * n * D);
            float *dy3 = bench_alloc(sizeof(float) * n * 3 * D);
            bench_fill(x, n * D, 1);
            bench_fill(dy, n * D, 2);
            bench_fill(dy3, n * 3 * D, 3);
            attn_case with = {make_attention(B, T, D, H, 1), B, T, x, dy, y, dx};
            attn_case without = {make_attention(B, T, D, H, 0), B, T, x, dy, y, dx};
            bench_linear_case qkv = {
                bench_make_linear(D, 3 * D, SRP_REPARAM_SIGMA), n, x, dy3, y, dx};
            bench_linear_case proj = {bench_make_linear(D, D, SRP_REPARAM_SIGMA), n, x, dy, y, dx};
            void (*fns[4])(void *) = {run_attention, run_attention, bench_run_linear,
                                      bench_run_linear};
            void *ctxs[4] = {&with, &without, &qkv, &proj};
            double med[4];
            bench_time_interleaved(fns, ctxs, 4, repeats, med);
            const double core = med[0] - med[2] - med[3];
            const double lin_flops = 3.0 * 2.0 * (double)n * D * (3.0 * D + D);
            const double core_flops = 12.0 * (double)B * T * T * D;
            const double gf = (lin_flops + core_flops) / med[0] * 1e-9;
            const double core_gf = core_flops / core * 1e-9;
            const double entropy_share = (med[0] - med[1]) / med[0];
            if (o.json)
                printf("{\"bench\":\"attention\",\"threads\":%d,\"B\":%zu,\"T\":%zu,\"D\":%zu,"
                       "\"H\":%zu,\"module_ms\":%.4f,\"module_gflops\":%.2f,\"core_ms\":%.4f,"
                       "\"core_gflops\":%.2f,\"core_of_peak\":%.3f,\"no_entropy_ms\":%.4f,"
                       "\"entropy_share\":%.4f,\"sgemm_peak_gflops\":%.2f,\"best_sgemm_peak_"
                       "gflops\":%.2f}\n",
                       threads[t], B, T, D, H, med[0] * 1e3, gf, core * 1e3, core_gf,
                       core_gf / peak, med[1] * 1e3, entropy_share, peaks.active, peak);
            else
                printf("%-7d %4zu %5zu %4zu %2zu | %9.2f %8.1f %7.1f%% | %9.2f %8.1f %8.1f%% | "
                       "%7.2f%% | %8.1f\n",
                       threads[t], B, T, D, H, med[0] * 1e3, gf, 100.0 * gf / peak, core * 1e3,
                       core_gf, 100.0 * core_gf / peak, 100.0 * entropy_share, peak);
            srp_attention_destroy(with.a);
            srp_attention_destroy(without.a);
            srp_linear_destroy(qkv.l);
            srp_linear_destroy(proj.l);
            free(x);
            free(dy);
            free(y);
            free(dx);
            free(dy3);
        }
    }
    if (!o.json)
        printf("entropy = extra time of tracking entropy, share of the module (goal <= 3%%)\n");
    return 0;
}
