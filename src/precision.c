/* The precision of the GEMM inputs (core.h), and the rounding to bf16.
 * fp32 runs everywhere. bf16 runs two ways:
 *  - native: inputs rounded to bf16 here (srp_bf16_pack_rows) and
 *    multiplied by oneDNN's bf16 GEMM with fp32 accumulation (blas.c), on
 *    CPUs with avx512_bf16 or AMX, where it is about twice as fast as fp32;
 *  - the reference path (srp_set_precision_bf16_reference, unstable API):
 *    the same rounded inputs, kept in floats and multiplied by the fp32
 *    GEMM. A product of two bf16 values is exact in fp32, so it gives the
 *    native path's results up to the order of the sums, on any CPU, slower
 *    than fp32: the yardstick the native path is tested against.
 * A bf16 request the build or the CPU cannot serve says why it is refused. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#ifdef SRP_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif
#if defined(SRP_HAVE_ONEDNN_BF16_GEMM) && defined(__x86_64__)
#include <immintrin.h>
#define SRP_HAVE_BF16_INSTRUCTION 1
#endif

const char *srp_precision_name(srp_precision p)
{
    switch (p) {
    case SRP_PRECISION_FP32: return "fp32";
    case SRP_PRECISION_BF16: return "bf16";
    case SRP_PRECISION_AUTO: return "auto";
    }
    return "unknown";
}

/* What layers created from now on multiply with (atomic: any thread may
 * set it, as the thread count). */
static _Atomic srp_gemm_inputs active = SRP_INPUTS_FP32;
/* Whether the CPU's conversion instruction packs bf16 (set when bf16 is
 * found native here): 2.5x the speed of the plain loop. */
static _Atomic int pack_by_instruction;

/* Whether the CPU has avx512_bf16 or AMX (oneDNN's ISA masks nest: AMX
 * includes avx512_bf16); if so, the conversion instruction packs from now
 * on. */
static int cpu_multiplies_bf16(void)
{
#ifdef SRP_HAVE_ONEDNN
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    const unsigned bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    if ((isa & bf16) == bf16) {
        pack_by_instruction = 1;
        return 1;
    }
#endif
    return 0;
}

/* NULL when the native bf16 GEMM can run here: the build has it, the CPU
 * multiplies bf16, and it computes a small product exactly. Otherwise why
 * not, written into why. */
static const char *native_bf16_missing(char *why, size_t size)
{
    if (!srp_bf16_gemm_built()) {
        snprintf(why, size,
                 "bf16 GEMM inputs need the oneDNN backend with its bf16 GEMM; this build has %s",
                 srp_gemm_backend());
        return why;
    }
#ifdef SRP_HAVE_ONEDNN
    if (!cpu_multiplies_bf16()) {
        snprintf(why, size,
                 "bf16 needs a CPU with avx512_bf16 or AMX; this one has neither (oneDNN's ISA "
                 "mask 0x%x)",
                 (unsigned)dnnl_get_effective_cpu_isa());
        return why;
    }
#endif
    /* c = a b^T with small integers, exact in bf16 and in the sums:
     * a: [3][5], b: [4][5], c: [3][4] */
    float a[15], b[20], c[12];
    uint16_t ab[15], bb[20];
    for (int i = 0; i < 15; i++)
        a[i] = (float)(i % 7) - 3.0f;
    for (int i = 0; i < 20; i++)
        b[i] = (float)(i % 5) - 1.0f;
    srp_bf16_pack_rows(a, 5, 3, 5, ab);
    srp_bf16_pack_rows(b, 5, 4, 5, bb);
    srp_bf16_gemm(0, 1, 3, 4, 5, 1.0f, ab, 5, bb, 5, 0.0f, c, 4);
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < 4; j++) {
            float want = 0.0f;
            for (int k = 0; k < 5; k++)
                want += a[r * 5 + k] * b[j * 5 + k];
            if (c[r * 4 + j] != want) {
                snprintf(why, size, "oneDNN's bf16 GEMM failed its check (%g where %g is exact)",
                         (double)c[r * 4 + j], (double)want);
                return why;
            }
        }
    return NULL;
}

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* auto's probe: the best of a few runs of a linear's forward at a model's
 * shape (x: [1024][128], W: [384][128]), fp32 against bf16 with the
 * rounding of x included, as a bf16 layer runs it. Returns bf16's speed-up;
 * 0 when the buffers cannot be had. Runs once, at set-up. */
static double bf16_speedup_probe(void)
{
    enum { N = 1024, IN = 128, OUT = 384, RUNS = 7 };
    float *x = malloc(sizeof(float) * (N * IN + IN * OUT + N * OUT));
    uint16_t *xb = malloc(sizeof(uint16_t) * (N * IN + IN * OUT));
    double speedup = 0.0;
    if (x && xb) {
        float *w = x + N * IN, *y = w + IN * OUT;
        uint16_t *wb = xb + N * IN;
        for (size_t i = 0; i < N * IN + IN * OUT; i++)
            x[i] = (float)((int)(i * 2654435761u % 17u) - 8) * 0.125f;
        srp_bf16_pack_rows(w, IN, OUT, IN, wb);
        double best[2] = {INFINITY, INFINITY};
        for (int run = 0; run < RUNS + 1; run++) /* the first run of each warms up */
            for (int p = 0; p < 2; p++) {
                const double t0 = seconds_now();
                if (p == 0) {
                    srp_sgemm(0, 1, N, OUT, IN, 1.0f, x, IN, w, IN, 0.0f, y, OUT);
                } else {
                    srp_bf16_pack_rows(x, IN, N, IN, xb);
                    srp_bf16_gemm(0, 1, N, OUT, IN, 1.0f, xb, IN, wb, IN, 0.0f, y, OUT);
                }
                const double t = seconds_now() - t0;
                if (run > 0 && t < best[p])
                    best[p] = t;
            }
        speedup = best[1] > 0.0 ? best[0] / best[1] : 0.0;
    }
    free(x);
    free(xb);
    return speedup;
}

/* auto: bf16 where it runs natively and the probe finds it at least 1.1x
 * as fast as fp32; otherwise fp32, silently. Decided once a process, so
 * that every auto request of a run picks the same; the reason is published
 * after it is written, for any thread to read. */
static srp_gemm_inputs auto_inputs = SRP_INPUTS_FP32;
static char auto_reason[192];
static _Atomic(const char *) auto_choice = "";
static pthread_once_t auto_once = PTHREAD_ONCE_INIT;
static void choose_auto(void)
{
    if (!native_bf16_missing(auto_reason, sizeof(auto_reason))) {
        const double speedup = bf16_speedup_probe();
        if (speedup > 0.0)
            snprintf(auto_reason, sizeof(auto_reason),
                     "oneDNN's bf16 GEMM ran %.2fx as fast as fp32 at a model's shape", speedup);
        else
            snprintf(auto_reason, sizeof(auto_reason),
                     "the probe of bf16's speed could not get its buffers");
        auto_inputs = speedup >= 1.1 ? SRP_INPUTS_BF16_NATIVE : SRP_INPUTS_FP32;
    }
    auto_choice = auto_reason;
}

srp_status srp_set_precision(srp_precision p)
{
    switch (p) {
    case SRP_PRECISION_FP32: active = SRP_INPUTS_FP32; return SRP_OK;
    case SRP_PRECISION_AUTO:
        pthread_once(&auto_once, choose_auto);
        active = auto_inputs;
        return SRP_OK;
    case SRP_PRECISION_BF16: {
        char why[192];
        if (native_bf16_missing(why, sizeof(why)))
            return srp_fail(SRP_ERR_UNSUPPORTED, "srp_set_precision: %s", why);
        active = SRP_INPUTS_BF16_NATIVE;
        return SRP_OK;
    }
    }
    return srp_fail(SRP_ERR_INVALID_ARG,
                    "srp_set_precision: precision %d is none of fp32 (0), "
                    "bf16 (1) and auto (2)",
                    (int)p);
}

const char *srp_precision_auto_choice(void) { return auto_choice; }

void srp_set_precision_bf16_reference(void) { active = SRP_INPUTS_BF16_REFERENCE; }

void srp_set_precision_bf16_any_cpu(void)
{
    (void)cpu_multiplies_bf16();
    active = SRP_INPUTS_BF16_NATIVE;
}

srp_gemm_inputs srp_gemm_inputs_active(void) { return active; }

srp_precision srp_precision_active(void)
{
    return active == SRP_INPUTS_FP32 ? SRP_PRECISION_FP32 : SRP_PRECISION_BF16;
}

/* The bits of x rounded to the nearest bf16 (ties to even), in the top half
 * of a float's; NaN stays NaN, and past bf16's largest finite value it
 * gives Inf. */
static uint32_t bf16_round_bits(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof(bits));
    if (isnan(x))
        bits |= 0x00400000u; /* quiet, so that no payload truncates to Inf */
    else
        bits += 0x7fffu + ((bits >> 16) & 1u); /* to nearest, ties to even */
    return bits & 0xffff0000u;
}

float srp_bf16_round(float x)
{
    const uint32_t bits = bf16_round_bits(x);
    memcpy(&x, &bits, sizeof(x));
    return x;
}

void srp_bf16_round_rows(const float *src, size_t ld, size_t rows, size_t cols, float *dst)
{
    const long n = (long)rows;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (rows * cols >= SRP_PARALLEL_MIN_ELEMS)
    for (long r = 0; r < n; r++) {
        const float *s = src + (size_t)r * ld;
        float *d = dst + (size_t)r * cols;
        for (size_t c = 0; c < cols; c++)
            d[c] = srp_bf16_round(s[c]);
    }
}

#ifdef SRP_HAVE_BF16_INSTRUCTION
/* One row with VCVTNEPS2BF16: to nearest, ties to even, as bf16_round_bits,
 * except that it reads subnormal inputs (below 2^-126) as 0. s: [n], d: [n] */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
pack_row_by_instruction(const float *s, size_t n, uint16_t *d)
{
    size_t c = 0;
    for (; c + 16 <= n; c += 16)
        _mm256_storeu_si256((__m256i *)(void *)(d + c),
                            (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(s + c)));
    if (c < n) {
        const __mmask16 m = (__mmask16)((1u << (n - c)) - 1u);
        _mm256_mask_storeu_epi16(d + c, m,
                                 (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s + c)));
    }
}
#endif

void srp_bf16_pack_rows(const float *src, size_t ld, size_t rows, size_t cols, uint16_t *dst)
{
    const long n = (long)rows;
    const int instruction = pack_by_instruction;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (rows * cols >= SRP_PARALLEL_MIN_ELEMS)
    for (long r = 0; r < n; r++) {
        const float *s = src + (size_t)r * ld;
        uint16_t *d = dst + (size_t)r * cols;
#ifdef SRP_HAVE_BF16_INSTRUCTION
        if (instruction) {
            pack_row_by_instruction(s, cols, d);
            continue;
        }
#endif
        for (size_t c = 0; c < cols; c++)
            d[c] = (uint16_t)(bf16_round_bits(s[c]) >> 16);
    }
    (void)instruction;
}
