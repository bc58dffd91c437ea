/* The precision of the GEMM inputs (core.h), and the rounding to bf16.
 * fp32 runs everywhere. bf16 runs in this version only as the reference
 * path (srp_set_precision_bf16_reference, unstable API): inputs rounded to
 * bf16 here, multiplied by the fp32 GEMM. Its products are those of a
 * native bf16 GEMM with fp32 accumulation (a product of two bf16 values is
 * exact in fp32), so it is the yardstick a native path is held to, and it
 * runs on any CPU; it is slower than fp32. A plain bf16 request says why
 * it is refused, naming what the build or the CPU lacks. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

#ifdef SRP_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
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

/* Why bf16 GEMM inputs cannot run here: the build, the CPU, or this
 * version (oneDNN's ISA masks nest: AMX includes avx512_bf16). */
static srp_status bf16_refusal(void)
{
#ifdef SRP_HAVE_ONEDNN
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    const unsigned bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    if ((isa & bf16) != bf16)
        return srp_fail(SRP_ERR_UNSUPPORTED,
                        "srp_set_precision: bf16 needs a CPU with avx512_bf16 or AMX; this one "
                        "has neither (oneDNN's ISA mask 0x%x)",
                        isa);
    return srp_fail(SRP_ERR_UNSUPPORTED,
                    "srp_set_precision: the CPU multiplies bf16 (oneDNN's ISA mask 0x%x), but "
                    "this version of the library has no native bf16 GEMM path yet",
                    isa);
#else
    return srp_fail(SRP_ERR_UNSUPPORTED,
                    "srp_set_precision: bf16 GEMM inputs need the oneDNN backend; this build "
                    "has %s",
                    srp_gemm_backend());
#endif
}

/* What layers created from now on multiply with: FP32 or BF16 (atomic:
 * any thread may set it, as the thread count). */
static _Atomic srp_precision active = SRP_PRECISION_FP32;

srp_status srp_set_precision(srp_precision p)
{
    switch (p) {
    case SRP_PRECISION_FP32:
    case SRP_PRECISION_AUTO: /* no native bf16 path to pick yet: fp32 */
        active = SRP_PRECISION_FP32;
        return SRP_OK;
    case SRP_PRECISION_BF16: return bf16_refusal();
    }
    return srp_fail(SRP_ERR_INVALID_ARG,
                    "srp_set_precision: precision %d is none of fp32 (0), "
                    "bf16 (1) and auto (2)",
                    (int)p);
}

void srp_set_precision_bf16_reference(void) { active = SRP_PRECISION_BF16; }

srp_precision srp_precision_active(void) { return active; }

float srp_bf16_round(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof(bits));
    if (isnan(x))
        bits |= 0x00400000u; /* quiet, so that no payload truncates to Inf */
    else
        bits += 0x7fffu + ((bits >> 16) & 1u); /* to nearest, ties to even */
    bits &= 0xffff0000u;
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
