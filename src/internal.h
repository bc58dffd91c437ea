/* Private helpers shared by the library's source files. Not installed. */
#ifndef SRP_INTERNAL_H
#define SRP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "crc32.h"
#define SRP_UNSTABLE_API /* the library times its own parts (profile.h) */
#include "sigmareparam.h"

/* ---- the last error's detail (status.c) ----
 * Returns status after recording a detail for srp_last_error_detail
 * (printf-style; cut at SRP_ERROR_DETAIL_MAX - 1 bytes). Only on failure
 * paths: it formats a string. Name the call and what was wrong with what:
 *     return srp_fail(SRP_ERR_SHAPE, "srp_attention_forward: batch %zu > max_batch %zu", ...); */
#define SRP_ERROR_DETAIL_MAX 512
srp_status srp_fail(srp_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* SRP_ERR_INVALID_ARG naming the first NULL of a call's pointer arguments:
 *     if (!l || !x || !y)
 *         return SRP_FAIL_NULL(l, x, y);   // "srp_linear_forward: x is NULL"
 * The call is __func__: use it in the public function itself. */
#define SRP_FAIL_NULL(...)                                                                         \
    srp_fail_null(__func__, #__VA_ARGS__, (const void *const[]){__VA_ARGS__},                      \
                  sizeof((const void *const[]){__VA_ARGS__}) / sizeof(const void *))
srp_status srp_fail_null(const char *call, const char *names, const void *const *ptrs, size_t n);
/* "[3, 4]" ("[]" for a scalar) into buf, which it returns. */
#define SRP_SHAPE_STR_MAX 96
const char *srp_shape_str(char *buf, size_t ndim, const uint64_t *shape);
/* "f32", "u64", ...; "unknown" for another value. */
const char *srp_dtype_str(srp_dtype dtype);
/* Items for a detail (names, fields), in the order added: as many as fit
 * in SRP_DETAIL_LIST_MAX bytes, then ", and N more". */
#define SRP_DETAIL_LIST_MAX 320
typedef struct {
    char text[SRP_DETAIL_LIST_MAX];
    size_t len;
    size_t items;  /* added */
    size_t listed; /* in text */
} srp_detail_list;
void srp_detail_list_init(srp_detail_list *l);
void srp_detail_list_add(srp_detail_list *l, const char *item);
/* The list, with ", and N more" when some did not fit. */
const char *srp_detail_list_text(srp_detail_list *l);

/* ---- one allocation per object (arena.c) ----
 * A create names the object's buffers in a layout function,
 *     static void layout(void *obj, srp_arena *a)
 *     { srp_x *x = obj;  SRP_ARENA_FLOATS(a, x->n, &x->w, &x->dw);  ... }
 * and srp_arena_new runs it twice: on a prototype that holds the sizes, to
 * add them up (every buffer NULL), then on the new object, a copy of the
 * prototype, to hand the buffers out of the same zeroed block. So a create
 * has one allocation to check, and a destroy frees its sub-objects and
 * then the object. Each buffer starts on an SRP_ARENA_ALIGN-byte boundary
 * (a cache line; malloc gives 16). */
#define SRP_ARENA_ALIGN 64
typedef struct {
    unsigned char *base; /* NULL while sizing */
    size_t used;         /* bytes handed out, each buffer rounded up to the alignment */
    int overflow;        /* the sizes add up past SIZE_MAX / 2 */
} srp_arena;
/* count elements of size bytes, zeroed; NULL for count 0 (a buffer the
 * object does not need) and while sizing. */
void *srp_arena_take(srp_arena *a, size_t count, size_t size);
/* Points each of the pointers after count at count zeroed elements. */
#define SRP_ARENA_FLOATS(a, count, ...)                                                            \
    srp_arena_floats_into(a, count, (float **const[]){__VA_ARGS__},                                \
                          sizeof((float **const[]){__VA_ARGS__}) / sizeof(float **))
#define SRP_ARENA_DOUBLES(a, count, ...)                                                           \
    srp_arena_doubles_into(a, count, (double **const[]){__VA_ARGS__},                              \
                           sizeof((double **const[]){__VA_ARGS__}) / sizeof(double **))
void srp_arena_floats_into(srp_arena *a, size_t count, float **const *bufs, size_t n);
void srp_arena_doubles_into(srp_arena *a, size_t count, double **const *bufs, size_t n);
/* A copy of proto (size bytes) and its buffers, in one zeroed block:
 * free() it. NULL when out of memory or when the sizes overflow. */
void *srp_arena_new(void *proto, size_t size, void (*layout)(void *obj, srp_arena *a));
/* srp_arena_new of a compound literal of type, the fields given and the
 * rest 0:  srp_x *x = SRP_ARENA_NEW(srp_x, layout, .n = n, .m = m); */
#define SRP_ARENA_NEW(type, layout, ...)                                                           \
    ((type *)srp_arena_new(&(type){__VA_ARGS__}, sizeof(type), layout))

/* ---- BLAS/LAPACK wrapper (blas.c): every BLAS call of the library goes
 * through here. Row-major; callers check sizes with srp_blas_size_ok(). ---- */

/* Largest dimension (and leading dimension) OpenBLAS's int can take. */
int srp_blas_size_ok(size_t n);
/* 1 when BLAS may be called from inside our OpenMP parallel regions: the
 * OpenMP build of OpenBLAS then runs it on the calling thread. */
int srp_blas_nests_in_openmp(void);

/* ---- vector math ----
 * glibc (2.35 and later) ships vector versions of erfcf and expf in
 * libmvec, but <math.h> declares them only under -ffast-math. Declared here,
 * they let the compiler call them 4, 8 or 16 at a time from `omp simd`
 * loops, within a few ulp; elsewhere those loops call the scalar functions.
 * SRP_VECTOR_CLONES builds a function for AVX-512, AVX2 and baseline x86-64
 * and picks one at load time. Use it on static functions only: GCC exports
 * the ifunc of a non-static clone even from a library built hidden. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) &&       \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#include <math.h>
#pragma omp declare simd notinbranch
float erfcf(float);
#pragma omp declare simd notinbranch
float expf(float);
#define SRP_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SRP_VECTOR_CLONES
#endif

/* ---- profiling (profile.c): wrap a leaf of work as
 *     const uint64_t t0 = srp_profile_begin();  ...  srp_profile_end(PART, t0);
 * begin returns 0 when profiling is off, and end then does nothing. ---- */
uint64_t srp_profile_begin(void);
void srp_profile_end(srp_profile_part part, uint64_t start);

/* ---- which forward a backward differentiates (linear.c, attention.c) ----
 * A module keeps the activations and the sigma of its last forward only, so
 * its backward differentiates that forward, once. It refuses, with
 * SRP_ERR_ORDER and no gradient changed:
 *  - when two training forwards ran since the last backward (a shared
 *    module applied twice, as in siamese training: the first backward would
 *    get the second forward's activations);
 *  - when an eval forward ran after the training forward (its caches
 *    replaced the training forward's);
 *  - when that forward was already differentiated, or its backward was
 *    refused: a second backward would add the same gradients again, and a
 *    retry would differentiate the forward the refusal was about.
 * A backward, done or refused, consumes what was pending: the next backward
 * needs a new forward that can be differentiated, a training forward, or
 * eval forwards with no training forward pending (finite differences). */
typedef enum {
    SRP_PENDING_NONE = 0,  /* nothing to differentiate: created, or consumed by a backward */
    SRP_PENDING_EVAL,      /* eval forwards only since then: the last one is meant */
    SRP_PENDING_TRAIN,     /* one training forward, nothing after it */
    SRP_PENDING_AMBIGUOUS  /* two training forwards, or an eval forward after the training one */
} srp_call_order;

static inline void srp_order_forward(srp_call_order *o, int training)
{
    const int training_pending = *o == SRP_PENDING_TRAIN || *o == SRP_PENDING_AMBIGUOUS;
    if (training_pending)
        *o = SRP_PENDING_AMBIGUOUS;
    else
        *o = training ? SRP_PENDING_TRAIN : SRP_PENDING_EVAL;
}

/* SRP_OK when the backward may go on. Else SRP_ERR_ORDER, with a detail
 * that says which rule refused `call`, and the pending forward consumed:
 * the refusal lasts until the next forward that can be differentiated. A
 * backward that fails for another reason (NaN in dy, say) changes nothing
 * and may be retried. */
srp_status srp_order_backward(srp_call_order *o, const char *call);

/* A successful backward consumes its forward. */
static inline void srp_order_backward_done(srp_call_order *o) { *o = SRP_PENDING_NONE; }

/* Threads for the library's OpenMP loops (threads.c). */
int srp_threads(void);
/* Stores the count srp_set_num_threads (blas.c) resolved. */
void srp_threads_store(int n);
/* Below this many elements an elementwise loop stays on one thread: waking
 * the second costs more than it saves. */
#define SRP_PARALLEL_MIN_ELEMS 32768

/* C = alpha op(A) op(B) + beta C; op(A): [m][k], op(B): [k][n], C: [m][n]. */
void srp_sgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a,
               size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc);
/* Batched GEMM over a [batch][heads] grid of equally shaped matrices that
 * sit at fixed strides in memory (such as the heads of an attention layer):
 * for every (b, h),
 *     C_bh = alpha op(A_bh) op(B_bh),   A_bh = a + b a_batch + h a_head,
 * op(A_bh): [m][k], op(B_bh): [k][n], C_bh: [m][n]; lda, ldb, ldc are the row
 * strides of A, B, C as stored (before op). A plan fixes all of it but the
 * three base pointers; creating it allocates (set-up time), running it
 * allocates nothing in this library. With oneDNN it is one matmul primitive
 * over the whole grid; otherwise (or where oneDNN refuses the shape) a
 * parallel loop of single-threaded GEMMs. */
typedef struct {
    size_t batch, heads, m, n, k;
    int trans_a, trans_b;
    size_t lda, ldb, ldc;
    size_t a_batch, a_head, b_batch, b_head, c_batch, c_head;
    float alpha;
} srp_bgemm_desc;
typedef struct srp_bgemm srp_bgemm;
srp_status srp_bgemm_create(srp_bgemm **out, const srp_bgemm_desc *d);
void srp_bgemm_run(srp_bgemm *g, const float *a, const float *b, float *c);
void srp_bgemm_destroy(srp_bgemm *g);

/* A convolution for one shape (the door's, blas_conv.c): oneDNN's direct
 * convolution where the build has oneDNN and oneDNN has a real kernel for
 * the shape. x, dx: [batch][in_ch][height][width]; y, dy: [batch][out_ch]
 * [out_h][out_w] (zero padding, out_h = (height + 2 padding - kernel) /
 * stride + 1); w_hat, dw_hat: [out_ch][in_ch][kernel][kernel]; b, db:
 * [out_ch], used only with bias. create leaves *out NULL, with SRP_OK, where
 * there is no such convolution (the OpenBLAS build, a refused shape):
 * conv2d.c then runs im2col and srp_sgemm. Creating allocates; running
 * allocates nothing in this library. forward writes y = conv(x, w_hat) + b;
 * backward writes dw_hat and db (overwritten) and, unless dx is NULL, dx.
 * Both return 1 when done, 0 when oneDNN failed (the caller computes the
 * same another way). */
typedef struct {
    size_t batch, in_ch, out_ch, height, width, kernel, stride, padding;
    int bias;
    /* x, w_hat and dy rounded to bf16 (the native path), where oneDNN has
     * a kernel for the shape that is found right; fp32 otherwise */
    int bf16_inputs;
} srp_conv_desc;
typedef struct srp_conv srp_conv;
srp_status srp_conv_create(srp_conv **out, const srp_conv_desc *d);
int srp_conv_forward(srp_conv *p, const float *x, const float *w_hat, const float *b, float *y);
int srp_conv_backward(srp_conv *p, const float *x, const float *w_hat, const float *dy,
                      float *dw_hat, float *db, float *dx);
void srp_conv_destroy(srp_conv *p);
#ifdef SRP_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
/* The process's one oneDNN CPU engine, made on first use (blas.c); NULL
 * when oneDNN cannot make one. */
dnnl_engine_t srp_onednn_engine(void);
#endif

/* C = op(A) op(A)^T, both triangles; op(A): [n][k], C: [n][n], in double. */
void srp_dsyrk_full(int trans, size_t n, size_t k, const double *a, size_t lda, double *c,
                    size_t ldc);
/* y = alpha op(A) x + beta y; A: [rows][cols] with leading dimension lda. */
void srp_sgemv(int trans, size_t rows, size_t cols, float alpha, const float *a, size_t lda,
               const float *x, float beta, float *y);
/* What srp_lapack_dgesdd_top returns when it cannot get its workspace (LAPACK
 * itself returns info >= -n). */
#define SRP_LAPACK_NOMEM (-1000)
/* Singular values of the column-major double matrix a [m x n] (destroyed),
 * largest first, into s (min(m,n)). With u_col/vt_row non-NULL, also the
 * first left singular vector (length m) and the first right one (length n).
 * Returns LAPACK's info (0 = success), or SRP_LAPACK_NOMEM. */
int srp_lapack_dgesdd_top(double *a, size_t m, size_t n, double *s, double *u_col, double *vt_row);

/* Eigenvalues (ascending, into w [n]) of the symmetric matrix a [n][n]
 * (both triangles set; destroyed). With want_vectors, a is overwritten by
 * the eigenvectors: eigenvector j is a[j * lda .. j * lda + n). work:
 * lwork >= 3n doubles. Returns LAPACK's info (0 = success). */
int srp_lapack_dsyev(int want_vectors, size_t n, double *a, size_t lda, double *w, double *work,
                     size_t lwork);
/* C = op(A) op(B) in double; op(A): [m][k], op(B): [k][n], C: [m][n]. */
void srp_dgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, const double *a, size_t lda,
               const double *b, size_t ldb, double *c, size_t ldc);

/* ---- small reductions in double (blas.c) ---- */
double srp_dot_f64(const float *x, const float *y, size_t n);
double srp_sumsq_f64(const float *x, size_t n);
int srp_all_finite(const float *x, size_t n);

/* ---- spectral norm helpers (spectral.c), shared with the linear layer ---- */

/* eps of torch.nn.functional.normalize. */
#define SRP_NORMALIZE_EPS 1e-12

/* The buffer-level core of srp_power_iter_step (spectral.h), which the
 * linear runs on its own u, v (it commits them only once its forward
 * succeeds): iters >= 1 power steps on W [rows][cols] from (u, v) into
 * (u_out, v_out);
 * u_out/v_out must not alias u/v. If W u or W^T v is exactly zero, the
 * outputs are copies of u and v and sigma is 0. Non-finite: SRP_ERR_NUMERIC. */
srp_status srp_power_steps_into(const float *w, size_t rows, size_t cols, int iters, const float *u,
                                const float *v, float *u_out, float *v_out, float *sigma);
/* Top singular triplet of W by a double SVD; u (cols) and v (rows) may both
 * be NULL for the value only. Allocates: set-up time only. */
srp_status srp_svd_top(const float *w, size_t rows, size_t cols, float *u, float *v, float *sigma);
/* A seeded random unit vector (never constant). */
void srp_random_unit(srp_rng *rng, float *x, size_t n);

/* ---- the softmax's row kernels (softmax.c) ---- */

/* Softmax of one row of logits in place, over its first `keys` entries (the
 * rest are masked and set to 0). Subtracts the row max. Returns the row's
 * entropy log Z - sum_j p_j (s_j - m), or 0 when track is 0. keys = 0 gives
 * a zero row and entropy 0. row: [len] */
float srp_softmax_row(float *row, size_t keys, size_t len, int track);
/* ds = p * (da - <da, p>) over the first `keys` entries, 0 after. */
void srp_softmax_backward_row(const float *p, float *da_to_ds, size_t keys, size_t len);

/* ---- bf16 GEMM inputs (precision.c) ---- */

/* bf16's unit roundoff: 8 significant bits, rounded to nearest. */
#define SRP_BF16_UNIT 0x1p-8
/* x rounded to the nearest bf16 (ties to even), kept in a float; NaN stays
 * NaN, and past bf16's largest finite value it gives Inf. */
float srp_bf16_round(float x);
/* dst = bf16(src) for rows of cols floats. src: [rows][ld], dst: [rows][cols] */
void srp_bf16_round_rows(const float *src, size_t ld, size_t rows, size_t cols, float *dst);
/* Rows a layer rounds at a time: its bf16 scratch holds this many (the
 * reference path's; the native path's larger chunks pay for the GEMM's
 * fixed cost per call). */
#define SRP_BF16_CHUNK_ROWS 256
#define SRP_BF16_NATIVE_CHUNK_ROWS 1024
/* dst = the bits of bf16(src), rounded as srp_bf16_round does.
 * src: [rows][ld], dst: [rows][cols] */
void srp_bf16_pack_rows(const float *src, size_t ld, size_t rows, size_t cols, uint16_t *dst);
/* How the layers created from now on multiply (core.h's precision, and
 * which of bf16's two paths). */
typedef enum {
    SRP_INPUTS_FP32 = 0,
    SRP_INPUTS_BF16_REFERENCE, /* rounded in floats, the fp32 GEMM */
    SRP_INPUTS_BF16_NATIVE     /* packed to bf16, srp_bf16_gemm */
} srp_gemm_inputs;
srp_gemm_inputs srp_gemm_inputs_active(void);
/* Whether this build has the native bf16 GEMM (oneDNN's). */
int srp_bf16_gemm_built(void);
/* c = alpha op(a) op(b) + beta c with bf16 inputs (their bits) and fp32
 * accumulation and output, as srp_sgemm (blas.c): oneDNN's bf16 GEMM, or
 * plain loops where it fails or the build lacks it. */
void srp_bf16_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                   const uint16_t *a, size_t lda, const uint16_t *b, size_t ldb, float beta,
                   float *c, size_t ldc);

/* ---- linear layer internals (linear.c) ---- */

/* Whether the layer rounds its GEMMs' inputs to bf16. */
int srp_linear_rounds_to_bf16(const srp_linear *l);
/* srp_linear_create for a module that multiplies W itself (conv2d.c): no
 * bf16 rounding or its scratch, whatever the precision. */
srp_status srp_linear_create_fp32(srp_linear **out, const srp_linear_config *cfg);
/* gamma / sigma as used by the last forward (1 in NONE and STATS_ONLY). */
float srp_linear_forward_scale(const srp_linear *l);
/* gamma / sigma of the forward srp_linear_forward_prepare has just prepared
 * (a module that computes the product itself, conv2d.c, scales with it). */
float srp_linear_prepared_scale(const srp_linear *l);
/* A forward in two halves, so that a module of several layers can check
 * them all before changing any. prepare runs the power step into scratch
 * and checks sigma and gamma; nothing changes. compute (after a successful
 * prepare, with arguments srp_linear_forward would accept) writes y with
 * that step's scale, rows ldy >= out apart (a module writes several
 * layers' outputs side by side); the layer's state does not change (a bf16
 * layer's rounding scratch does). commit makes
 * the step the layer's state, once the caller has accepted y; neither can
 * fail. */
srp_status srp_linear_forward_prepare(srp_linear *l, int training);
void srp_linear_forward_compute(srp_linear *l, const float *x, size_t n, float *y, size_t ldy);
void srp_linear_forward_commit(srp_linear *l, int training);
/* forward_compute with a scale of the caller's instead of the prepared
 * one: a cached decoder (attention_decode.c) keeps the eval forward's
 * gamma / sigma (srp_linear_prepared_scale after an eval prepare) for a
 * whole sequence rather than taking the power step at every position. */
void srp_linear_forward_scaled(srp_linear *l, float scale, const float *x, size_t n, float *y,
                               size_t ldy);
/* A backward in two halves, for the same reason. prepare (arguments as
 * srp_linear_backward takes them, already checked; dy's rows lddy apart)
 * writes dx (adds to it with add_dx) and the layer's scratch, and checks
 * that the gradients are finite; no parameter gradient changes. commit,
 * after a successful prepare and before the layer's next forward or
 * prepare, adds them in; it cannot fail. */
srp_status srp_linear_backward_prepare(srp_linear *l, const float *x, const float *dy, size_t lddy,
                                       size_t n, float *dx, int add_dx);
void srp_linear_backward_commit(srp_linear *l);
/* The order rules of a backward (srp_call_order), for a module that
 * computes the product's gradients itself before srp_linear_backward_weight
 * adds them in: SRP_OK when the backward may go on (nothing changes), else
 * SRP_ERR_ORDER naming call, the pending forward consumed. */
srp_status srp_linear_backward_order(srp_linear *l, const char *call);
/* n rows fit the layer's GEMMs. */
int srp_linear_batch_ok(const srp_linear *l, size_t n);
/* The checks of srp_linear_create on a configuration: SRP_ERR_INVALID_ARG
 * with a detail naming call and the field of `what` ("cfg->qkv") that is
 * wrong, or SRP_OK. */
srp_status srp_linear_config_check(const srp_linear_config *c, const char *call, const char *what);

/* ---- files of named tensors (tensor_file.c), shared by checkpoint.c and
 * safetensors.c ---- */

/* SRP_OK when the items of items[0..count) (stride bytes apart, each
 * starting with its name as a const char *) have different names;
 * SRP_ERR_INVALID_ARG, with no detail (the caller's to leave), and the
 * indices of two with the same name in *first < *second; SRP_ERR_NOMEM.
 * O(n log n): it sorts pointers to the names. */
srp_status srp_unique_names(const void *items, size_t count, size_t stride, size_t *first,
                            size_t *second);

/* bytes of a tensor, or 0 with *ok = 0 when it overflows (a shape with a
 * zero is a valid empty tensor). */
uint64_t srp_tensor_bytes(srp_dtype dtype, size_t ndim, const uint64_t *shape, int *ok);
/* The ref's shape into shape[SRP_TENSOR_MAX_NDIM], unused dimensions 0;
 * its bytes. */
void srp_ref_shape(const srp_tensor_ref *r, uint64_t *shape);
uint64_t srp_ref_bytes(const srp_tensor_ref *r, int *ok);
/* A list to save or load: not NULL or empty; each name 1..SRP_TENSOR_MAX_NAME
 * bytes and unique, data set, a known dtype, ndim <= 4, a size that fits:
 * otherwise SRP_ERR_INVALID_ARG with a detail naming call and the entry.
 * O(n log n) (the duplicate check sorts; SRP_ERR_NOMEM possible). */
srp_status srp_tensor_refs_check(const srp_tensor_ref *refs, size_t count, const char *call);
/* Little-endian fixed-width fields, whatever the host's order. */
void srp_put_u32_le(unsigned char *p, uint32_t v);
void srp_put_u64_le(unsigned char *p, uint64_t v);
uint32_t srp_get_u32_le(const unsigned char *p);
uint64_t srp_get_u64_le(const unsigned char *p);
/* Host-order tensor data to/from little-endian bytes (elem: element size). */
void srp_copy_little_endian(void *dst, const void *src, size_t bytes, size_t elem);

/* Buffered writes; the first failure sticks in `failed` (its errno). crc:
 * zlib's CRC-32 of every byte put so far (a format may reset it). */
typedef struct {
    int fd;
    unsigned char *buf;
    size_t used;
    uint32_t crc;
    int failed;
} srp_file_writer;
void srp_writer_put(srp_file_writer *w, const void *data, size_t n);
void srp_writer_put_zeros(srp_file_writer *w, uint64_t n);
/* A tensor's data in little-endian order. */
void srp_writer_put_tensor(srp_file_writer *w, const srp_tensor_ref *r, size_t bytes);
/* emit(w, ctx) writes the whole file into "<path>.tmp", which is fsync'ed
 * and renamed over path. SRP_ERR_IO (the temporary file removed, path as
 * it was) when anything up to the rename fails; SRP_ERR_IO with the new
 * file in place when only the fsync of the directory after it does (a
 * crash may then still bring back the old file). The detail says which. */
srp_status srp_save_atomically(const char *path, void (*emit)(srp_file_writer *, const void *),
                               const void *ctx, const char *call);
/* The whole of a regular file into a new buffer (free it). SRP_ERR_IO
 * with a detail naming call, the path and the reason. */
srp_status srp_read_whole_file(const char *path, unsigned char **out, size_t *size,
                               const char *call);

/* ---- a checked file's index (file_index.c), shared by checkpoint.c and
 * safetensors.c ---- */

/* One tensor of a file that passed its format's checks. */
typedef struct {
    const char *name; /* NUL-terminated, owned by the format's object */
    srp_dtype dtype;
    size_t ndim;
    uint64_t shape[SRP_TENSOR_MAX_NDIM]; /* 0 past ndim */
    uint64_t offset, bytes;              /* little-endian data, from the file's start */
} srp_file_tensor;

typedef struct {
    srp_file_tensor *tensors; /* [count], in the order of their data in the file */
    const srp_file_tensor **by_name;
    size_t count;
} srp_file_index;

/* Builds by_name; a name found twice: SRP_ERR_FORMAT (detail: call, name). */
srp_status srp_file_index_sort(srp_file_index *ix, const char *call);
/* The tensor named name, or NULL (binary search). */
const srp_file_tensor *srp_file_index_find(const srp_file_index *ix, const char *name);
/* Copies the tensors refs[0..count) name out of file, all or nothing:
 * first every name is looked up (missing: SRP_ERR_NOT_FOUND, "tensor not
 * found: NAME") and its dtype and shape compared (SRP_ERR_SHAPE naming the
 * tensor and both shapes); with strict, a file tensor that no ref names is
 * SRP_ERR_SHAPE, the names listed. Bad refs: SRP_ERR_INVALID_ARG. */
srp_status srp_file_index_read(const srp_file_index *ix, const unsigned char *file,
                               const srp_tensor_ref *refs, size_t count, int strict,
                               const char *call);

/* String metadata (key, value), sorted by key once complete; the strings
 * live in one block (fewer allocations, and a sort that stays in cache). */
typedef struct {
    const char *key, *value;
} srp_metadata_pair;
typedef struct {
    srp_metadata_pair *pairs; /* owned */
    size_t count;
    char *text; /* owned: every key and value, NUL-terminated */
    size_t text_used;
} srp_metadata;
/* Room for n pairs whose keys and values take text_bytes in all, a NUL
 * each included. */
srp_status srp_metadata_reserve(srp_metadata *m, size_t n, size_t text_bytes);
/* Copies of key[0..key_len) and value[0..value_len), NUL added, within
 * what was reserved. */
void srp_metadata_append(srp_metadata *m, const char *key, size_t key_len, const char *value,
                         size_t value_len);
/* Sorts by key; a key found twice: SRP_ERR_FORMAT (detail: call, key). */
srp_status srp_metadata_sort(srp_metadata *m, const char *call);
/* The value of key, or NULL (binary search, after srp_metadata_sort). */
const char *srp_metadata_get(const srp_metadata *m, const char *key);
/* SRP_OK when every expected pair (count of them, as metadata[2i],
 * metadata[2i + 1]) is in m with the same value; SRP_ERR_SHAPE listing the
 * fields that differ or are missing. */
srp_status srp_metadata_check(const srp_metadata *m, const char *const *expected, size_t count,
                              const char *call);
/* Pairs a caller gives: not NULL when count > 0, no NULL key or value,
 * key lengths in min_key..max_key, no key twice: else SRP_ERR_INVALID_ARG
 * with a detail. O(n log n). */
srp_status srp_metadata_args_check(const char *const *metadata, size_t count, size_t min_key,
                                   size_t max_key, const char *call);

/* A file of named tensors read whole and checked: what an opened
 * srp_checkpoint or srp_safetensors is (its first member). Each format
 * has its parser; opening, closing, and reading out are shared. */
typedef struct {
    unsigned char *file;  /* the whole file */
    srp_file_index index; /* offsets from the file's start */
    srp_metadata metadata;
    char *names; /* the tensors' names, NUL-terminated, one after another */
} srp_named_file;
/* Checks f->file (size bytes) and fills f's index, metadata and names;
 * SRP_ERR_FORMAT with a detail naming call when the file is not right. */
typedef srp_status (*srp_named_file_parser)(srp_named_file *f, size_t size, const char *call);
/* A new object of object_size bytes that begins with an srp_named_file,
 * path read into it and parsed. NULL on failure, with *st: a NULL path
 * (SRP_ERR_INVALID_ARG), the read's error, or the parser's. */
void *srp_named_file_open(size_t object_size, const char *path, srp_named_file_parser parse,
                          const char *call, srp_status *st);
/* Frees f and the object it begins; NULL: nothing. */
void srp_named_file_close(srp_named_file *f);
/* Tensor i's name, dtype, ndim and shape into *info (data NULL); i out of
 * range: SRP_ERR_INVALID_ARG naming call. */
srp_status srp_named_file_info(const srp_named_file *f, size_t i, srp_tensor_ref *info,
                               const char *call);
/* Opens path, reads refs out of it (srp_file_index_read) and closes it. */
srp_status srp_named_file_load(const char *path, srp_named_file_parser parse,
                               const srp_tensor_ref *refs, size_t count, int strict,
                               const char *call);

#endif
