/* Data-parallel training for the trainers: one process, or many under
 * mpirun when built with SRP_WITH_MPI. The library's srp_dist (dist.h)
 * does the work, giving the one-process answer on one rank, so a trainer
 * has one code path; what is here is the trainers' own (MPI_Init, their
 * messages, agreeing on --help and on the options).
 *
 * What a trainer does with it: ex_dist_init first thing in main (ranks
 * other than 0 send their stdout to /dev/null, so rank 0 speaks for the
 * job); ex_dist_agree after each phase where one rank can fail alone (its
 * files, its memory, rank 0's checkpoint writes), so every rank stops
 * together instead of waiting; ex_dist_attach once the model and its
 * parameter list exist; then per step, on d->handle,
 * srp_dist_average_gradients between backward and clipping,
 * srp_dist_sum_agree after the optimizer step, then srp_dist_sync_spectral;
 * srp_dist_sum, _mean, _min and _max for the metrics. Only rank 0 writes
 * files (ex_dist_is_root).
 *
 * The rule that keeps a job from hanging: every rank reaches each
 * collective call, or none does. A rank that fails never returns early
 * from a phase that ends in a collective call; the phase ends in an
 * agreement (ex_dist_agree, srp_dist_sum_agree, or the failure status that
 * srp_dist_average_gradients carries), and every rank takes the same
 * branch after it. */
#ifndef EX_DIST_H
#define EX_DIST_H

#include <stdio.h>

#include <sigmareparam.h>

#include "error.h"

typedef struct {
    int rank, size;
    /* The library's, for its collectives (srp_dist_sum, _max, ...); from
     * ex_dist_attach on, over the model's gradients and u, v, sigma too. */
    srp_dist *handle;
} ex_dist;

/* MPI_Init with MPI (a run without mpirun is one rank); else rank 0 of 1. */
ex_code ex_dist_init(ex_dist *d, int *argc, char ***argv, ex_error *err);
/* Releases the srp_dist and calls MPI_Finalize. */
void ex_dist_finalize(ex_dist *d);
int ex_dist_is_root(const ex_dist *d);

/* Collective. code on a rank that failed; EX_FAILED, naming a failed
 * rank, on the others; EX_OK when every rank is. EX_HELP (--help, parsed)
 * stops every rank: the ranks that were not given it get a usage error
 * that says so, instead of training while the others have left. */
ex_code ex_dist_agree(ex_dist *d, ex_code code, ex_error *err);
/* Collective: the end of a phase each rank went through alone, whose
 * library status was st (what: the phase, for the message), with the
 * test-only failure of that phase at step (EX_TEST_FAIL, test_hooks.h);
 * then ex_dist_agree. */
ex_code ex_dist_agree_status(ex_dist *d, srp_status st, const char *what, const char *phase,
                             uint64_t step, ex_error *err);
/* main's last word: "error: <message>" on stderr, after "rank N: " when
 * there are several ranks (every rank prints its own). */
void ex_dist_print_error(const ex_dist *d, const ex_error *err);
/* Collective: a usage error on every rank unless all were started with
 * the same options (their fingerprints). */
ex_code ex_dist_same_options(ex_dist *d, const char *fingerprint, ex_error *err);
/* The global batch must split evenly over the ranks (the same answer on
 * every rank); *local gets each rank's share. */
ex_code ex_dist_split_batch(ex_dist *d, size_t batch, size_t *local, ex_error *err);
/* Collective: d->handle becomes one over the model's parameter list and
 * its nlinears linears (srp_dist_create). */
ex_code ex_dist_attach(ex_dist *d, const srp_param *params, size_t count,
                       srp_linear *const *linears, size_t nlinears, ex_error *err);

/* Collective: a failure unless every rank holds the same parameters, u, v
 * and sigma (srp_dist_replicas_identical). */
ex_code ex_dist_check_replicas(ex_dist *d, uint64_t step, ex_error *err);
/* With several ranks: a line on how the ranks keep one sigmaReparam state,
 * and at the end one on what the allreduce moved and took. */
void ex_dist_describe(const ex_dist *d, FILE *f);
void ex_dist_report(const ex_dist *d, double train_seconds, FILE *f);

#endif
