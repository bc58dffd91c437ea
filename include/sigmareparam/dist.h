/* Data-parallel training: gradients averaged across ranks, one
 * sigmaReparam state for the whole job, failures that reach every rank.
 * Part of <sigmareparam.h>, in every build.
 *
 * Two ways to make a handle:
 *  - srp_dist_create_single: one process, rank 0 of 1, in any build. Every
 *    collective gives the one-process answer at once (the mean, sum,
 *    minimum or maximum of one rank's values are those values, a broadcast
 *    leaves them, the replicas are identical, an agreement is the local
 *    status), moving and allocating nothing. A program written for several
 *    ranks thus runs unchanged on one.
 *  - srp_dist_create: several processes over an MPI communicator. It is
 *    declared in <sigmareparam/dist_mpi.h>, which includes <mpi.h> and
 *    exists only in builds configured with SRP_WITH_MPI=ON. The
 *    application owns MPI: it calls MPI_Init before srp_dist_create and
 *    MPI_Finalize after srp_dist_destroy. The library works on its own
 *    duplicate of the communicator, so its messages never meet the
 *    application's.
 * Everything else is the same for both.
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

#include <stddef.h>
#include <stdint.h>

#include "sigmareparam/core.h"
#include "sigmareparam/linear.h"
#include "sigmareparam/optim.h"

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

/* One process: rank 0 of 1. params: the list the optimizer steps; linears:
 * the model's layers (NULL with count 0 when there are none). nparams 0
 * (params may then be NULL) makes a handle without a model, for the
 * collectives before one exists; so does srp_dist_create. Errors: params
 * or linears NULL with a count, an entry without data or gradient or of
 * size 0, a NULL linear (SRP_ERR_INVALID_ARG), no memory (SRP_ERR_NOMEM);
 * *out stays NULL. */
SRP_API srp_status srp_dist_create_single(srp_dist **out, const srp_param *params, size_t nparams,
                                          srp_linear *const *linears, size_t nlinears);
/* Collective (frees the duplicated communicator). NULL: nothing. */
SRP_API void srp_dist_destroy(srp_dist *d);

SRP_API int srp_dist_rank(const srp_dist *d);
SRP_API int srp_dist_size(const srp_dist *d);

/* 1 when every rank runs the same thread count, GEMM backend, OpenBLAS
 * kernels and library version (so the power steps agree bit for bit). */
SRP_API int srp_dist_numerics_uniform(const srp_dist *d);
SRP_API void srp_dist_set_spectral_policy(srp_dist *d, srp_dist_spectral_policy policy);
/* 1 when srp_dist_sync_spectral broadcasts under the current policy (never
 * with one rank). */
SRP_API int srp_dist_spectral_broadcasts(const srp_dist *d);

/* Collective. Every entry's gradient becomes its mean over the ranks, in
 * one fused allreduce. local is this rank's status for the step so far:
 * a rank that failed still calls, so that no rank waits for it. When any
 * rank passed a failure, no gradient changes and every rank gets an error:
 * its own status on the failed rank, SRP_ERR_PEER on the others. One rank:
 * local, and nothing moves. */
SRP_API srp_status srp_dist_average_gradients(srp_dist *d, srp_status local);

/* Collective. After the optimizer step: broadcasts u, v and sigma of every
 * linear from rank 0 when srp_dist_spectral_broadcasts(d); else nothing. */
SRP_API srp_status srp_dist_sync_spectral(srp_dist *d);

/* Collective. *identical = 1 when every rank holds the same bits in every
 * parameter, and every linear's u, v and sigma (a CRC-32 of each rank's
 * bytes, compared); 0 otherwise. */
SRP_API srp_status srp_dist_replicas_identical(srp_dist *d, int *identical);
/* Collective. *same = 1 when every rank passed the same len bytes (their
 * CRC-32s compared), such as the options the ranks were started with. */
SRP_API srp_status srp_dist_same_bytes(srp_dist *d, const void *bytes, size_t len, int *same);

/* Collective reductions of small arrays for metrics, in place, over the
 * ranks: the sum (double); the mean of floats, summed in double; the
 * minimum and the maximum (float); rank 0's values (double: a decision
 * taken by rank 0's clock, say). n from 1 to INT_MAX. */
SRP_API srp_status srp_dist_sum(srp_dist *d, double *values, size_t n);
SRP_API srp_status srp_dist_mean(srp_dist *d, float *values, size_t n);
SRP_API srp_status srp_dist_min(srp_dist *d, float *values, size_t n);
SRP_API srp_status srp_dist_max(srp_dist *d, float *values, size_t n);
SRP_API srp_status srp_dist_broadcast(srp_dist *d, double *values, size_t n);

/* Collective. Agrees on a status: local when it is a failure; SRP_ERR_PEER
 * when this rank is fine and another is not; SRP_OK when all are. For the
 * points where one rank may fail alone (reading its files, writing a
 * checkpoint on rank 0). */
SRP_API srp_status srp_dist_agree(srp_dist *d, srp_status local);
/* Collective: srp_dist_sum of values and srp_dist_agree of local in the
 * same allreduce (one per 63 values), for a step's figures taken where one
 * rank could fail alone. On a failed rank the values stay as they were. */
SRP_API srp_status srp_dist_sum_agree(srp_dist *d, double *values, size_t n, srp_status local);

/* What the gradient allreduce moved and took: bytes per call (the fused
 * buffer), the number of calls and their total seconds (wall clock). One
 * rank moves nothing: no calls. */
SRP_API void srp_dist_allreduce_stats(const srp_dist *d, size_t *bytes, uint64_t *calls,
                                      double *seconds);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_DIST_H */
