/* The precision of the GEMM inputs (core.h). Only fp32 runs in this
 * version; this file says why a bf16 request is refused, naming what the
 * build or the CPU lacks, so that programs can print it and a bf16 path
 * can later be chosen here in one place. */
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
                    "this version of the library has no bf16 GEMM path yet",
                    isa);
#else
    return srp_fail(SRP_ERR_UNSUPPORTED,
                    "srp_set_precision: bf16 GEMM inputs need the oneDNN backend; this build "
                    "has %s",
                    srp_gemm_backend());
#endif
}

srp_status srp_set_precision(srp_precision p)
{
    switch (p) {
    case SRP_PRECISION_FP32:
    case SRP_PRECISION_AUTO: /* no bf16 path to pick yet: fp32 stays */ return SRP_OK;
    case SRP_PRECISION_BF16: return bf16_refusal();
    }
    return srp_fail(SRP_ERR_INVALID_ARG,
                    "srp_set_precision: precision %d is none of fp32 (0), "
                    "bf16 (1) and auto (2)",
                    (int)p);
}

/* Nothing but fp32 runs until a bf16 path exists. */
srp_precision srp_precision_active(void) { return SRP_PRECISION_FP32; }
