/* Data-parallel training for the trainers: one process, or many under
 * mpirun when built with SRP_WITH_MPI (the library's dist.h underneath).
 * Without MPI every call is the one-process answer, so a trainer has one
 * code path.
 *
 * What a trainer does with it: ex_dist_init first thing in main (MPI_Init;
 * ranks other than 0 send their stdout to /dev/null, so rank 0 speaks for
 * the job); ex_dist_agree after each phase where one rank can fail alone
 * (its files, its memory, rank 0's checkpoint writes), so every rank stops
 * together instead of waiting; ex_dist_attach once the model and its
 * parameter list exist; then per step ex_dist_average_gradients between
 * backward and clipping, and ex_dist_sync_spectral after the optimizer
 * step; ex_dist_sum and ex_dist_mean_min for the metrics. Only rank 0
 * writes files (ex_dist_is_root). */
#ifndef EX_DIST_H
#define EX_DIST_H

#include <stddef.h>
#include <stdio.h>

#include <sigmareparam.h>

#include "error.h"
#include "linears.h"

typedef struct {
    int rank, size;
    void *handle; /* the srp_dist, with MPI */
} ex_dist;

/* MPI_Init with MPI (a run without mpirun is one rank); else rank 0 of 1. */
ex_code ex_dist_init(ex_dist *d, int *argc, char ***argv, ex_error *err);
/* Releases the srp_dist and calls MPI_Finalize. */
void ex_dist_finalize(ex_dist *d);
int ex_dist_is_root(const ex_dist *d);

/* Collective. code on a rank that failed (its message prefixed with its
 * rank when there are several); EX_FAILED, naming a failed rank, on the
 * others; EX_OK when every rank is. */
ex_code ex_dist_agree(ex_dist *d, ex_code code, ex_error *err);
/* Collective: a usage error on every rank unless all were started with
 * the same options (their fingerprints). */
ex_code ex_dist_same_options(ex_dist *d, const char *fingerprint, ex_error *err);
/* The global batch must split evenly over the ranks (the same answer on
 * every rank); *local gets each rank's share. */
ex_code ex_dist_split_batch(ex_dist *d, size_t batch, size_t *local, ex_error *err);
/* Collective: the data-parallel state over the model's parameter list and
 * linears (srp_dist_create). */
ex_code ex_dist_attach(ex_dist *d, const srp_param *params, size_t count,
                       const ex_linear_table *linears, ex_error *err);

/* Per step, collective (srp_dist_average_gradients, _sync_spectral). */
srp_status ex_dist_average_gradients(ex_dist *d, srp_status local);
srp_status ex_dist_sync_spectral(ex_dist *d);
/* Rank 0's values on every rank, in place (decisions taken by its clock). */
srp_status ex_dist_broadcast(ex_dist *d, double *values, size_t n);
/* values summed over the ranks, in place. */
srp_status ex_dist_sum(ex_dist *d, double *values, size_t n);
/* mean: averaged over the ranks; min (if not NULL): their minimum (in
 * place, n each). */
srp_status ex_dist_mean_min(ex_dist *d, float *mean, float *min, size_t n);
/* Collective: a failure unless every rank holds the same parameters, u, v
 * and sigma (srp_dist_replicas_identical). */
ex_code ex_dist_check_replicas(ex_dist *d, uint64_t step, ex_error *err);
/* With several ranks: a line on how the ranks keep one sigmaReparam state,
 * and at the end one on what the allreduce moved and took. */
void ex_dist_describe(const ex_dist *d, FILE *f);
void ex_dist_report(const ex_dist *d, double train_seconds, FILE *f);

#endif
