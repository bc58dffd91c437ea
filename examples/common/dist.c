/* Data-parallel training for the trainers (dist.h), on the library's
 * srp_dist: over MPI_COMM_WORLD when built with MPI (EX_WITH_MPI), one
 * process otherwise. */
#include "dist.h"

#include <string.h>

#include "test_hooks.h"

#ifdef EX_WITH_MPI
#include <sigmareparam/dist_mpi.h>
#endif

/* srp_dist_create over every rank of the job (one process without MPI). */
static srp_status create(srp_dist **out, const srp_param *params, size_t count,
                         srp_linear *const *linears, size_t nlinears)
{
#ifdef EX_WITH_MPI
    return srp_dist_create(out, MPI_COMM_WORLD, params, count, linears, nlinears);
#else
    return srp_dist_create_single(out, params, count, linears, nlinears);
#endif
}

ex_code ex_dist_init(ex_dist *d, int *argc, char ***argv, ex_error *err)
{
    *d = (ex_dist){.size = 1};
#ifdef EX_WITH_MPI
    if (MPI_Init(argc, argv) != MPI_SUCCESS)
        return ex_fail(err, EX_FAILED, "MPI_Init failed");
#else
    (void)argc;
    (void)argv;
#endif
    const srp_status st = create(&d->handle, NULL, 0, NULL, 0);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "setting up data-parallel training");
    d->rank = srp_dist_rank(d->handle);
    d->size = srp_dist_size(d->handle);
    /* Rank 0 speaks for the job; the others' errors still reach stderr. */
    if (d->rank != 0 && !freopen("/dev/null", "w", stdout))
        return ex_fail(err, EX_FAILED, "rank %d: cannot silence stdout", d->rank);
    return EX_OK;
}

void ex_dist_finalize(ex_dist *d)
{
    srp_dist_destroy(d->handle);
    d->handle = NULL;
#ifdef EX_WITH_MPI
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized)
        MPI_Finalize();
#endif
}

int ex_dist_is_root(const ex_dist *d) { return d->rank == 0; }

ex_code ex_dist_agree(ex_dist *d, ex_code code, ex_error *err)
{
    /* [0]: the highest failed rank (-1: none); [1]: whether a rank had --help */
    const float mine[2] = {code != EX_OK && code != EX_HELP ? (float)d->rank : -1.0f,
                           code == EX_HELP};
    float all[2] = {mine[0], mine[1]};
    if (srp_dist_max(d->handle, all, 2) != SRP_OK)
        all[0] = (float)d->rank; /* as if this rank had failed */
    if (mine[0] >= 0.0f)
        return code;
    if (all[0] >= 0.0f)
        return ex_fail(err, EX_FAILED, "rank %d failed (its message says why); every rank stops",
                       (int)all[0]);
    if (all[1] > 0.0f && code != EX_HELP)
        return ex_fail(err, EX_USAGE,
                       "another rank was given --help and this one was not; every rank stops "
                       "(start every rank with the same options)");
    return code;
}

ex_code ex_dist_agree_status(ex_dist *d, srp_status st, const char *what, const char *phase,
                             uint64_t step, ex_error *err)
{
    ex_code code = st == SRP_OK ? EX_OK : ex_fail_status(err, st, what);
    if (code == EX_OK && ex_test_fail_due(d->rank, step, phase))
        code = ex_test_fail(err, step, phase);
    return ex_dist_agree(d, code, err);
}

void ex_dist_print_error(const ex_dist *d, const ex_error *err)
{
    if (d->size > 1)
        fprintf(stderr, "error: rank %d: %s\n", d->rank, err->message);
    else
        fprintf(stderr, "error: %s\n", err->message);
}

ex_code ex_dist_same_options(ex_dist *d, const char *fingerprint, ex_error *err)
{
    int same = 0;
    const srp_status st = srp_dist_same_bytes(d->handle, fingerprint, strlen(fingerprint), &same);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "comparing the ranks' options");
    return same ? EX_OK
                : ex_fail(err, EX_USAGE,
                          "the ranks were started with different training options; start every "
                          "rank with the same ones");
}

ex_code ex_dist_split_batch(ex_dist *d, size_t batch, size_t *local, ex_error *err)
{
    if (batch % (size_t)d->size != 0)
        return ex_fail(err, EX_USAGE,
                       "the batch (%zu) must split evenly over the %d ranks: each rank takes an "
                       "equal share of every global batch",
                       batch, d->size);
    *local = batch / (size_t)d->size;
    return EX_OK;
}

ex_code ex_dist_attach(ex_dist *d, const srp_param *params, size_t count,
                       srp_linear *const *linears, size_t nlinears, ex_error *err)
{
    srp_dist *model = NULL;
    const srp_status st = create(&model, params, count, linears, nlinears);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "setting up data-parallel training");
    srp_dist_destroy(d->handle);
    d->handle = model;
    return EX_OK;
}

ex_code ex_dist_check_replicas(ex_dist *d, uint64_t step, ex_error *err)
{
    int identical = 0;
    const srp_status st = srp_dist_replicas_identical(d->handle, &identical);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "checking the replicas");
    return identical ? EX_OK
                     : ex_fail(err, EX_FAILED,
                               "at step %llu the ranks hold different parameters, u, v or sigma "
                               "(--check-replicas)",
                               (unsigned long long)step);
}

void ex_dist_describe(const ex_dist *d, FILE *f)
{
    if (d->size == 1)
        return;
    fprintf(f, "data-parallel over %d ranks; sigmaReparam state: %s\n", d->size,
            srp_dist_spectral_broadcasts(d->handle)
                ? "u, v and sigma broadcast from rank 0 after each step (the ranks' thread "
                  "counts, GEMM backends or OpenBLAS kernels differ)"
                : "every rank computes the same bits (same threads, GEMM backend, kernels)");
}

void ex_dist_report(const ex_dist *d, double train_seconds, FILE *f)
{
    size_t bytes;
    uint64_t calls;
    double seconds;
    srp_dist_allreduce_stats(d->handle, &bytes, &calls, &seconds);
    if (calls == 0)
        return;
    fprintf(f,
            "gradient allreduce: %.2f MB per step, %.2f ms per step on rank 0 (%.1f%% of the "
            "training time)\n",
            (double)bytes / 1e6, 1e3 * seconds / (double)calls,
            train_seconds > 0.0 ? 100.0 * seconds / train_seconds : 0.0);
}
