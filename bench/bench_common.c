#define _POSIX_C_SOURCE 200809L
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#ifdef SRP_BENCH_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

#include "sigmareparam.h"

static void usage(const char *prog, const char *extra, FILE *to)
{
    fprintf(to,
            "usage: %s [--json] [--repeats N] [--threads N] [--precision P]\n"
            "  --json        JSON lines instead of a table\n"
            "  --repeats N   timed repeats per case; the median is reported\n"
            "  --threads N   run only with N threads (default: 1 and 2)\n"
            "  --precision P the GEMM inputs' precision: fp32 (default), bf16, or auto (bf16\n"
            "                where the CPU does it fast); bf16 where it cannot run: exit 2\n%s",
            prog, extra ? extra : "");
}

/* --precision NAME: sets it for the library, or exits 2 saying why not. */
static void set_precision(const char *prog, const char *name, const char *usage_extra)
{
    for (int p = SRP_PRECISION_FP32; p <= SRP_PRECISION_AUTO; p++)
        if (strcmp(name, srp_precision_name((srp_precision)p)) == 0) {
            if (srp_set_precision((srp_precision)p) == SRP_OK)
                return;
            fprintf(stderr, "%s: --precision %s: %s\n", prog, name, srp_last_error_detail());
            exit(2);
        }
    fprintf(stderr, "%s: --precision %s: one of fp32, bf16 and auto\n", prog, name);
    usage(prog, usage_extra, stderr);
    exit(2);
}

bench_options bench_parse_args(int argc, char **argv, const char *usage_extra,
                               bench_flag_fn on_flag, void *ctx)
{
    bench_options o = {0, 0, 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            o.json = 1;
        } else if ((strcmp(argv[i], "--repeats") == 0 || strcmp(argv[i], "--threads") == 0) &&
                   i + 1 < argc) {
            char *end = NULL;
            long v = strtol(argv[i + 1], &end, 10);
            if (!end || *end != '\0' || v < 1 || v > 100000) {
                fprintf(stderr, "%s: bad value '%s' for %s\n", argv[0], argv[i + 1], argv[i]);
                usage(argv[0], usage_extra, stderr);
                exit(2);
            }
            if (argv[i][2] == 'r')
                o.repeats = (int)v;
            else
                o.threads = (int)v;
            i++;
        } else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc) {
            set_precision(argv[0], argv[++i], usage_extra);
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(argv[0], usage_extra, stdout);
            exit(0);
        } else {
            const int took = on_flag ? on_flag(ctx, argv[i], i + 1 < argc ? argv[i + 1] : NULL) : 0;
            if (took <= 0) {
                fprintf(stderr, "%s: unknown or incomplete argument '%s'\n", argv[0], argv[i]);
                usage(argv[0], usage_extra, stderr);
                exit(2);
            }
            i += took - 1;
        }
    }
    return o;
}

double bench_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *values, int n)
{
    qsort(values, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double bench_time(void (*fn)(void *), void *ctx, int repeats)
{
    double *t = bench_alloc(sizeof(double) * (size_t)repeats);
    fn(ctx); /* warm-up: caches, page faults, thread pool start */
    for (int i = 0; i < repeats; i++) {
        const double t0 = bench_now_seconds();
        fn(ctx);
        t[i] = bench_now_seconds() - t0;
    }
    const double med = bench_median(t, repeats);
    free(t);
    return med;
}

void bench_time_interleaved(void (*const *fns)(void *), void *const *ctxs, int k, int repeats,
                            double *medians)
{
    double *t = bench_alloc(sizeof(double) * (size_t)(repeats * k));
    for (int j = 0; j < k; j++)
        fns[j](ctxs[j]); /* warm-up */
    for (int i = 0; i < repeats; i++)
        for (int j = 0; j < k; j++) {
            const double t0 = bench_now_seconds();
            fns[j](ctxs[j]);
            t[j * repeats + i] = bench_now_seconds() - t0;
        }
    for (int j = 0; j < k; j++)
        medians[j] = bench_median(t + j * repeats, repeats);
    free(t);
}

typedef struct {
    size_t m, n, k;
    float *a, *b, *c;
    int onednn;
} gemm_case;

static void sgemm_with(int onednn, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                       float alpha, const float *a, size_t lda, const float *b, size_t ldb,
                       float beta, float *c, size_t ldc)
{
#ifdef SRP_BENCH_ONEDNN
    if (onednn) {
        dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', (dnnl_dim_t)m, (dnnl_dim_t)n,
                   (dnnl_dim_t)k, alpha, a, (dnnl_dim_t)lda, b, (dnnl_dim_t)ldb, beta, c,
                   (dnnl_dim_t)ldc);
        return;
    }
#else
    (void)onednn;
#endif
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha, a,
                (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

void bench_sgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                 const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                 size_t ldc)
{
    sgemm_with(strcmp(srp_gemm_backend(), "onednn") == 0, trans_a, trans_b, m, n, k, alpha, a, lda,
               b, ldb, beta, c, ldc);
}

static void run_gemm(void *p)
{
    gemm_case *g = p;
    sgemm_with(g->onednn, 0, 0, g->m, g->n, g->k, 1.0f, g->a, g->k, g->b, g->n, 0.0f, g->c, g->n);
}

int bench_backends(const char *names[2])
{
    names[0] = "openblas";
#ifdef SRP_BENCH_ONEDNN
    names[1] = "onednn";
    return 2;
#else
    return 1;
#endif
}

double bench_sgemm_gflops(const char *backend, size_t m, size_t n, size_t k, int repeats,
                          double *median_seconds)
{
    const int onednn = strcmp(backend, "onednn") == 0;
#ifndef SRP_BENCH_ONEDNN
    if (onednn)
        return 0.0;
#endif
    gemm_case g = {m,
                   n,
                   k,
                   bench_alloc(sizeof(float) * m * k),
                   bench_alloc(sizeof(float) * k * n),
                   bench_alloc(sizeof(float) * m * n),
                   onednn};
    bench_fill(g.a, m * k, 1);
    bench_fill(g.b, k * n, 2);
    const double s = bench_time(run_gemm, &g, repeats);
    free(g.a);
    free(g.b);
    free(g.c);
    if (median_seconds)
        *median_seconds = s;
    return 2.0 * (double)m * (double)n * (double)k / s * 1e-9;
}

bench_peaks bench_measure_peaks(int threads)
{
    srp_set_num_threads(threads);
    const char *names[2];
    const int count = bench_backends(names);
    bench_peaks p = {0.0, 0.0};
    for (int i = 0; i < count; i++) {
        const double gf = bench_sgemm_gflops(names[i], 2048, 2048, 2048, 9, NULL);
        if (strcmp(names[i], srp_gemm_backend()) == 0)
            p.active = gf;
        if (gf > p.best)
            p.best = gf;
    }
    return p;
}

void bench_print_setup(const bench_options *o, const char *bench)
{
    if (o->json)
        printf("{\"bench\":\"%s\",\"setup\":true,\"version\":\"%s\",\"gemm_backend\":\"%s\","
               "\"openblas_core\":\"%s\",\"precision\":\"%s\"}\n",
               bench, srp_version_string(), srp_gemm_backend(), srp_openblas_core(),
               srp_precision_name(srp_precision_active()));
    else
        printf("%s: libsigmareparam %s, GEMM backend %s, OpenBLAS kernels %s, precision %s%s%s%s\n",
               bench, srp_version_string(), srp_gemm_backend(), srp_openblas_core(),
               srp_precision_name(srp_precision_active()),
               srp_precision_auto_choice()[0] ? " (auto: " : "", srp_precision_auto_choice(),
               srp_precision_auto_choice()[0] ? ")" : "");
}

void bench_fill(float *x, size_t n, unsigned seed)
{
    unsigned long long s = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    }
}

void *bench_alloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

void bench_check(srp_status st, const char *what)
{
    if (st != SRP_OK) {
        fprintf(stderr, "%s failed: %s (%s)\n", what, srp_status_str(st), srp_last_error_detail());
        exit(1);
    }
}

srp_linear *bench_make_linear(size_t in, size_t out, srp_reparam mode)
{
    srp_linear_config cfg = srp_linear_config_default(in, out);
    cfg.reparam = mode;
    srp_linear *l = NULL;
    bench_check(srp_linear_create(&l, &cfg), "srp_linear_create");
    return l;
}

void bench_run_linear(void *ctx)
{
    bench_linear_case *c = ctx;
    bench_check(srp_linear_forward(c->l, c->x, c->n, c->y, SRP_TRAIN), "srp_linear_forward");
    bench_check(srp_linear_backward(c->l, c->x, c->dy, c->n, c->dx), "srp_linear_backward");
}

int bench_thread_list(const bench_options *o, int *list)
{
    if (o->threads > 0) {
        list[0] = o->threads;
        return 1;
    }
    list[0] = 1;
    list[1] = 2;
    return 2;
}
