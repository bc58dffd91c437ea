/* Data-parallel training over MPI: gradients averaged across ranks, one
 * sigmaReparam state for the whole job, failures that reach every rank.
 * Only in builds configured with SRP_WITH_MPI=ON; not part of
 * <sigmareparam.h> (it needs <mpi.h>): include it next to that.
 *
 * The application owns MPI: it calls MPI_Init before srp_dist_create and
 * MPI_Finalize after srp_dist_destroy. The library works on its own
 * duplicate of the communicator, so its messages never meet the
 * application's.
 *
 * How a data-parallel step goes, on every rank with the same model:
 *   forward and backward on this rank's share of the global batch (each
 *   rank's loss the mean over its share, shares of equal size);
 *   srp_dist_average_gradients(d, status of the above): every gradient
 *   becomes the mean over ranks, which is the gradient of the global
 *   batch's mean loss; then clipping and the optimizer step, which see
 *   the same gradients everywhere;
 *   srp_dist_sync_spectral(d): keeps u, v and sigma one state (below).
 * The global batch and the learning rate therefore mean what they mean in
 * one process.
 *
 * One sigmaReparam state, not one per rank. PyTorch's spectral_norm kept
 * u per replica under DataParallel (updates lost) and needed
 * broadcast_buffers=False under DDP. Here: after the averaged step W is
 * the same on every rank (the allreduce gives every rank the same sums,
 * and the optimizers' updates do not depend on the thread count), so the
 * power step of the next forward gives every rank the same u, v and sigma
 * as long as every rank computes the same bits. That holds when every
 * rank runs the same library build with the same thread count, GEMM
 * backend and OpenBLAS kernels; srp_dist_create compares these across
 * ranks. Where they differ, srp_dist_sync_spectral broadcasts u, v and
 * sigma from rank 0 after each step (a few KB; SRP_DIST_SPECTRAL_AUTO).
 * srp_dist_replicas_identical checks the result.
 *
 * Every call here but the getters is collective: every rank of the
 * communicator makes it, in the same order, or the job hangs. Bad
 * arguments (a NULL handle, n = 0) return SRP_ERR_INVALID_ARG at once,
 * without communicating, so the other ranks would wait: pass the same,
 * valid arguments everywhere. srp_dist_create is the exception: it agrees
 * on every rank's arguments, and fails everywhere when one rank's are
 * bad. MPI errors come back as SRP_ERR_PEER (the library's communicator
 * returns errors instead of aborting). Calls on one srp_dist are not
 * thread-safe. */
#ifndef SIGMAREPARAM_DIST_H
#define SIGMAREPARAM_DIST_H

#include <mpi.h>

#include "sigmareparam.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srp_dist srp_dist;

/* How srp_dist_sync_spectral keeps u, v and sigma one state. */
typedef enum {
    SRP_DIST_SPECTRAL_AUTO = 0,  /* broadcast from rank 0 only when the ranks' numerics differ */
    SRP_DIST_SPECTRAL_BROADCAST, /* broadcast after every step */
    SRP_DIST_SPECTRAL_LOCAL      /* never: each rank keeps its own (for tests) */
} srp_dist_spectral_policy;

/* Collective over comm. params: the list the optimizer steps (gradients
 * are averaged in its order, fused into one buffer taken here); linears:
 * the model's layers, whose u, v and sigma srp_dist_sync_spectral keeps
 * equal (NULL with count 0 when there are none). Both must describe the
 * same shapes on every rank: SRP_ERR_SHAPE on every rank when they do not.
 * Call srp_set_num_threads first: the thread count is part of the numerics
 * compared across ranks. Errors: NULL or count 0 where a list is needed
 * (SRP_ERR_INVALID_ARG), no memory (SRP_ERR_NOMEM), INT_MAX floats of
 * gradients or more (one allreduce's count; SRP_ERR_UNSUPPORTED), an MPI
 * failure (SRP_ERR_PEER); on any error every rank returns an error and
 * *out stays NULL. */
SRP_API srp_status srp_dist_create(srp_dist **out, MPI_Comm comm, const srp_param *params,
                                   size_t nparams, srp_linear *const *linears, size_t nlinears);
/* Collective (frees the duplicated communicator). NULL: nothing. */
SRP_API void srp_dist_destroy(srp_dist *d);

SRP_API int srp_dist_rank(const srp_dist *d);
SRP_API int srp_dist_size(const srp_dist *d);

/* 1 when every rank runs the same thread count, GEMM backend, OpenBLAS
 * kernels and library version (so the power steps agree bit for bit). */
SRP_API int srp_dist_numerics_uniform(const srp_dist *d);
SRP_API void srp_dist_set_spectral_policy(srp_dist *d, srp_dist_spectral_policy policy);
/* 1 when srp_dist_sync_spectral broadcasts under the current policy. */
SRP_API int srp_dist_spectral_broadcasts(const srp_dist *d);

/* Collective. Every entry's gradient becomes its mean over the ranks, in
 * one fused allreduce. local is this rank's status for the step so far:
 * a rank that failed still calls, so that no rank waits for it. When any
 * rank passed a failure, no gradient changes and every rank gets an error:
 * its own status on the failed rank, SRP_ERR_PEER on the others. */
SRP_API srp_status srp_dist_average_gradients(srp_dist *d, srp_status local);

/* Collective. After the optimizer step: broadcasts u, v and sigma of every
 * linear from rank 0 when srp_dist_spectral_broadcasts(d); else nothing. */
SRP_API srp_status srp_dist_sync_spectral(srp_dist *d);

/* Collective. *identical = 1 when every rank holds the same bits in every
 * parameter, and every linear's u, v and sigma (a CRC-32 of each rank's
 * bytes, compared); 0 otherwise. */
SRP_API srp_status srp_dist_replicas_identical(srp_dist *d, int *identical);

/* Collective reductions of small arrays for metrics, in place: the sum of
 * values (double) over the ranks; the minimum of values (float). */
SRP_API srp_status srp_dist_sum(srp_dist *d, double *values, size_t n);
SRP_API srp_status srp_dist_min(srp_dist *d, float *values, size_t n);

/* Collective. Agrees on a status: local when it is a failure; SRP_ERR_PEER
 * when this rank is fine and another is not; SRP_OK when all are. For the
 * points where one rank may fail alone (reading its files, writing a
 * checkpoint on rank 0). */
SRP_API srp_status srp_dist_agree(srp_dist *d, srp_status local);

/* What the gradient allreduce moved and took: bytes per call (the fused
 * buffer), the number of calls and their total seconds (wall clock). */
SRP_API void srp_dist_allreduce_stats(const srp_dist *d, size_t *bytes, uint64_t *calls,
                                      double *seconds);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_DIST_H */
