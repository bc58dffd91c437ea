/* Where the time goes: cumulative wall time per part of the library's work.
 * Part of <sigmareparam.h>; include that.
 *
 * Off by default, when it costs one branch per timed call. On, each timed
 * call reads the monotonic clock twice. The parts are leaves (none contains
 * another), so their times add up; what the caller's own code takes between
 * library calls is the step time minus their sum. The counters are
 * process-wide: profile while one thread drives the library.
 *
 * Unstable API: the parts name the library's internal costs, so they are
 * added, split and renumbered as its code changes, from one version to the
 * next. It is declared only where SRP_UNSTABLE_API is defined before
 * <sigmareparam.h> is included (as zstd's ZSTD_STATIC_LINKING_ONLY): a
 * program that uses it says so, and knows to rebuild with each version. */
#ifndef SIGMAREPARAM_PROFILE_H
#define SIGMAREPARAM_PROFILE_H
#ifndef SRP_UNSTABLE_API
#error "sigmareparam/profile.h is unstable API: define SRP_UNSTABLE_API before including <sigmareparam.h>"
#endif

#include <stdint.h>

#include "sigmareparam/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SRP_PROF_LINEAR_GEMM = 0, /* the linear layers' GEMMs: forward, dx, dW */
    SRP_PROF_LINEAR_EXTRA,    /* bias rows, <G^T x, W>, bias sums, the dW update */
    SRP_PROF_POWER_ITER,      /* power-iteration steps (two gemv per layer) */
    SRP_PROF_ATTENTION_CORE,  /* QK^T, softmax with entropy, AV, and their backward */
    SRP_PROF_ATTENTION_COPY,  /* the attention's copies of its input and q/k weights */
    SRP_PROF_ACTIVATION,      /* GELU forward and backward */
    SRP_PROF_ELEMENTWISE,     /* residual adds, accumulation, pooling, token select */
    SRP_PROF_LAYERNORM,       /* LayerNorm forward and backward */
    SRP_PROF_LOSS,            /* cross-entropy and accuracy */
    SRP_PROF_OPTIMIZER,       /* optimizer steps, zeroing and clipping of gradients */
    SRP_PROF_ENTROPY,         /* entropy statistics and the Theorem 3.1 bound */
    SRP_PROF_FINITE_CHECK,    /* the forwards' checks of their outputs for NaN/Inf */
    SRP_PROF_BF16_ROUNDING,   /* bf16 GEMM inputs: rounding x, W and dy (core.h) */
    SRP_PROF_CONVOLUTION,     /* srp_conv2d's passes: oneDNN's kernels, or im2col and GEMMs */
    SRP_PROF_COUNT
} srp_profile_part;

/* Turns timing on (1) or off (0); the counters keep their values. */
SRP_API void srp_profile_enable(int on);
SRP_API void srp_profile_reset(void);
/* Seconds and calls in a part since the last reset; 0 for an unknown part. */
SRP_API double srp_profile_seconds(srp_profile_part part);
SRP_API uint64_t srp_profile_calls(srp_profile_part part);
/* A short name ("linear gemm", ...), never NULL. */
SRP_API const char *srp_profile_name(srp_profile_part part);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_PROFILE_H */
