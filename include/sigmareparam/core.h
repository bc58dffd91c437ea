/* Version, export macro, status codes, threads, named tensors. Part of
 * <sigmareparam.h>; include that. */
#ifndef SIGMAREPARAM_CORE_H
#define SIGMAREPARAM_CORE_H

#include <stddef.h>
#include <stdint.h>

#define SRP_VERSION_MAJOR 0
#define SRP_VERSION_MINOR 1
#define SRP_VERSION_PATCH 0
#define SRP_VERSION_NUMBER (SRP_VERSION_MAJOR * 10000 + SRP_VERSION_MINOR * 100 + SRP_VERSION_PATCH)
#define SRP_VERSION_STRINGIFY_(x) #x
#define SRP_VERSION_STRINGIFY(x) SRP_VERSION_STRINGIFY_(x)
#define SRP_VERSION_STRING                                                                         \
    SRP_VERSION_STRINGIFY(SRP_VERSION_MAJOR)                                                       \
    "." SRP_VERSION_STRINGIFY(SRP_VERSION_MINOR) "." SRP_VERSION_STRINGIFY(SRP_VERSION_PATCH)

/* Symbols are hidden by default when the library is built; SRP_API marks the
 * public ones. */
#if defined(_WIN32) && defined(SRP_SHARED_BUILD)
#define SRP_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define SRP_API __attribute__((visibility("default")))
#else
#define SRP_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Status, version, threads
 * ====================================================================== */

typedef enum {
    SRP_OK = 0,
    SRP_ERR_INVALID_ARG, /* NULL pointer, zero size, value out of range */
    SRP_ERR_SHAPE,       /* sizes that do not match the object or each other */
    SRP_ERR_NOMEM,       /* allocation failed (only at create/load time) */
    SRP_ERR_NUMERIC,     /* NaN/Inf in an input, or a result that would be */
    SRP_ERR_IO,          /* a file could not be opened, read or written */
    SRP_ERR_FORMAT,      /* a file is truncated, corrupt or not ours */
    SRP_ERR_VERSION,     /* a file from a format version we cannot read */
    SRP_ERR_UNSUPPORTED, /* a valid request this build or object cannot do */
    SRP_ERR_PEER,        /* distributed runs (dist.h): another rank failed, or MPI did */
    SRP_ERR_ORDER,       /* a backward whose forward is no longer the module's last
                            (two training forwards, or an eval forward after the
                            training forward, since the last backward), or that
                            was already differentiated or refused; or a call
                            whose set-up has not run: a decode before its
                            cache's memory is set, a row selection on a cache
                            that holds no sequences */
    SRP_ERR_NOT_FOUND    /* a name asked for is not there (a tensor missing from a
                            file); srp_last_error_detail names it */
} srp_status;

/* The `training` argument of the forwards: a training forward runs the
 * power iteration and keeps what its backward needs; an eval forward
 * changes no state of the layer. */
enum { SRP_EVAL = 0, SRP_TRAIN = 1 };

/* A short English description, never NULL (also for unknown values). */
SRP_API const char *srp_status_str(srp_status s);

/* What the last failure on the calling thread found wrong, in words, beyond
 * its status: the argument or tensor named, the sizes expected and given,
 * the limit exceeded ("srp_attention_forward: batch 200 > max_batch 128";
 * "tensor not found: blocks.0.attn.qkv.weight"). Calls that fail with more
 * to say than their status leave it; it stays until the next such failure
 * on this thread, or srp_clear_last_error. srp_last_error_status is the
 * status it came with (SRP_OK and "" when there is none), so that a caller
 * can tell that a detail belongs to the failure at hand. Never NULL; valid
 * until the thread's next library call. The library still prints nothing. */
SRP_API const char *srp_last_error_detail(void);
SRP_API srp_status srp_last_error_status(void);
SRP_API void srp_clear_last_error(void);

/* "MAJOR.MINOR.PATCH" of the library actually linked (SRP_VERSION_STRING is
 * the one compiled against). */
SRP_API const char *srp_version_string(void);
SRP_API unsigned srp_version_number(void);

/* Threads used by the library, its GEMM backend and OpenBLAS. n <= 0 means
 * one per online CPU. Until it is called, OpenMP's default for the calling
 * thread applies (OMP_NUM_THREADS, else one per CPU). Results for a given
 * thread count and GEMM backend are deterministic. oneDNN follows the
 * calling thread's OpenMP default, which this sets for the calling thread
 * only: a thread of yours that calls the library should call this first,
 * with the same n (calls from several threads at once are safe).
 *
 * Concurrency: distinct objects (layers, optimizers, power iterations)
 * may be used from different threads at the same time; one object must
 * not be used by two threads at once (its workspaces and caches are its
 * own), except for the const accessors while nobody writes it. The
 * stateless functions (nn.h, rng.h on distinct generators, checkpoint and
 * safetensors files with distinct paths) are safe from any thread. The
 * profiler (profile.h) is process-wide: enable it with one thread calling.
 * The library's tests train two modules on two threads at once and get the
 * bits of running them one after the other. */
SRP_API void srp_set_num_threads(int n);
SRP_API int srp_get_num_threads(void);

/* The GEMM backend this library was built with: "onednn" or "openblas"
 * (CMake option SRP_GEMM). OpenBLAS is always linked for LAPACK and gemv. */
SRP_API const char *srp_gemm_backend(void);
/* The kernels OpenBLAS picked on this CPU ("Haswell", "SkylakeX", ...): its
 * environment variable OPENBLAS_CORETYPE can pin them. */
SRP_API const char *srp_openblas_core(void);

/* The precision of the GEMM inputs. Accumulation, outputs and every state
 * (weights, gradients, optimizer state, gamma, sigma, u, v, the power
 * iteration, softmax, the entropies, the loss) stay fp32 in any case.
 *   SRP_PRECISION_FP32: fp32 inputs (the default).
 *   SRP_PRECISION_BF16: the linears' GEMM inputs (x, W and dy, linear.h)
 *     rounded to bf16 (to nearest, ties to even) and multiplied by oneDNN's
 *     bf16 GEMM with fp32 accumulation, about twice as fast as fp32's on
 *     CPUs that multiply bf16 natively (avx512_bf16 or AMX); the
 *     convolution's too (conv2d.h), where oneDNN has a bf16 kernel for
 *     its shape that the tests found right. Refused with
 *     SRP_ERR_UNSUPPORTED elsewhere, srp_last_error_detail() saying what
 *     the build (oneDNN and its bf16 GEMM) or the CPU lacks. The
 *     attention's own products, the embedding and every state stay fp32.
 *   SRP_PRECISION_AUTO: bf16 where it runs natively and a one-time probe
 *     (the first AUTO request of the process, a few milliseconds) finds
 *     it at least 1.1x as fast as fp32 at a model's shape; fp32 otherwise,
 *     without an error. srp_precision_auto_choice() says why.
 * Process-wide, like srp_set_num_threads; set it before creating
 * layers. Another value: SRP_ERR_INVALID_ARG. Nothing changes on failure.
 * Results are bit-identical run to run for a given backend, thread count
 * and precision. */
typedef enum { SRP_PRECISION_FP32 = 0, SRP_PRECISION_BF16, SRP_PRECISION_AUTO } srp_precision;
SRP_API srp_status srp_set_precision(srp_precision p);
/* The precision of the layers created from now on: FP32 or BF16, never
 * AUTO (a layer keeps the one it was created with). */
SRP_API srp_precision srp_precision_active(void);
/* "fp32", "bf16", "auto"; "unknown" for another value. */
SRP_API const char *srp_precision_name(srp_precision p);
/* Why the process's AUTO requests choose what they choose (the choice is
 * srp_precision_active() after one): "oneDNN's bf16 GEMM ran 1.93x as
 * fast as fp32 at a model's shape", or what the build or the CPU lacks
 * ("bf16 needs a CPU with avx512_bf16 or AMX; ..."); "" before any. */
SRP_API const char *srp_precision_auto_choice(void);
#ifdef SRP_UNSTABLE_API
/* Unstable: bf16 GEMM inputs on any CPU through the reference path. Layers
 * created from now on round their GEMMs' inputs to bf16 (to nearest, ties
 * to even) and multiply them with the fp32 GEMM, whose products of bf16
 * values are exact: the results of a native bf16 GEMM with fp32
 * accumulation, up to the order of the sums, and slower than fp32. For
 * tests of what bf16 does to a model and to the entropy bound, and as the
 * yardstick of the native path. srp_set_precision ends it. */
SRP_API void srp_set_precision_bf16_reference(void);
/* Unstable: the native path whatever the CPU and the build, for testing it
 * on every machine: oneDNN's bf16 GEMM, which oneDNN emulates where the CPU
 * lacks avx512_bf16 and AMX; in a build without it, a plain loop (blas.c).
 * Both are slower than fp32 there. srp_set_precision ends it. */
SRP_API void srp_set_precision_bf16_any_cpu(void);
#endif

/* ======================================================================
 * Named tensors: how checkpoints, safetensors files and optimizer state
 * are listed
 * ====================================================================== */

#define SRP_TENSOR_MAX_NDIM 4
/* Longest name a list may give, in bytes (no NUL inside). */
#define SRP_TENSOR_MAX_NAME 255

typedef enum {
    SRP_DTYPE_F32 = 1, /* float */
    SRP_DTYPE_F64 = 2, /* double */
    SRP_DTYPE_U64 = 3, /* uint64_t: counters, RNG state (srp_rng.s) */
    SRP_DTYPE_I64 = 4, /* int64_t */
    SRP_DTYPE_U8 = 5   /* bytes */
} srp_dtype;

/* One tensor the caller owns: ndim 0 is a scalar (one element); shape[ndim..]
 * is ignored. data holds prod(shape) elements of dtype in host order. */
typedef struct {
    const char *name;
    srp_dtype dtype;
    size_t ndim;
    size_t shape[SRP_TENSOR_MAX_NDIM];
    void *data;
} srp_tensor_ref;

/* Bytes of one element of dtype; 0 for an unknown dtype. */
SRP_API size_t srp_dtype_size(srp_dtype dtype);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_CORE_H */
