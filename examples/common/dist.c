/* Data-parallel training for the trainers (dist.h): MPI through the
 * library's srp_dist when built with it (EX_WITH_MPI), one process
 * otherwise. */
#include "dist.h"

#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "test_hooks.h"

#ifdef EX_WITH_MPI
#include <sigmareparam/dist.h>
#endif

int ex_dist_is_root(const ex_dist *d) { return d->rank == 0; }

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

#ifdef EX_WITH_MPI

ex_code ex_dist_init(ex_dist *d, int *argc, char ***argv, ex_error *err)
{
    memset(d, 0, sizeof(*d));
    d->size = 1;
    if (MPI_Init(argc, argv) != MPI_SUCCESS)
        return ex_fail(err, EX_FAILED, "MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    /* Rank 0 speaks for the job; the others' errors still reach stderr. */
    if (d->rank != 0 && !freopen("/dev/null", "w", stdout))
        return ex_fail(err, EX_FAILED, "rank %d: cannot silence stdout", d->rank);
    return EX_OK;
}

void ex_dist_finalize(ex_dist *d)
{
    srp_dist_destroy(d->handle);
    d->handle = NULL;
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized)
        MPI_Finalize();
}

ex_code ex_dist_agree(ex_dist *d, ex_code code, ex_error *err)
{
    if (d->size == 1)
        return code;
    /* [0]: the highest failed rank (-1: none); [1]: whether a rank had --help */
    int mine[2] = {code != EX_OK && code != EX_HELP ? d->rank : -1, code == EX_HELP}, all[2];
    if (MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) {
        all[0] = d->rank;
        all[1] = 0;
    }
    if (mine[0] >= 0)
        return code;
    if (all[0] >= 0)
        return ex_fail(err, EX_FAILED, "rank %d failed (its message says why); every rank stops",
                       all[0]);
    if (all[1] && code != EX_HELP)
        return ex_fail(err, EX_USAGE,
                       "another rank was given --help and this one was not; every rank stops "
                       "(start every rank with the same options)");
    return code;
}

ex_code ex_dist_same_options(ex_dist *d, const char *fingerprint, ex_error *err)
{
    if (d->size == 1)
        return EX_OK;
    const unsigned long mine = crc32(0L, (const Bytef *)fingerprint, (uInt)strlen(fingerprint));
    unsigned long lo = 0, hi = 0;
    MPI_Allreduce(&mine, &lo, 1, MPI_UNSIGNED_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&mine, &hi, 1, MPI_UNSIGNED_LONG, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi ? EX_OK
                    : ex_fail(err, EX_USAGE,
                              "the ranks were started with different training options; start "
                              "every rank with the same ones");
}

ex_code ex_dist_attach(ex_dist *d, const srp_param *params, size_t count,
                       srp_linear *const *linears, size_t nlinears, ex_error *err)
{
    if (d->size == 1)
        return EX_OK;
    srp_dist *handle = NULL;
    const srp_status st =
        srp_dist_create(&handle, MPI_COMM_WORLD, params, count, linears, nlinears);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "setting up data-parallel training");
    d->handle = handle;
    return EX_OK;
}

srp_status ex_dist_average_gradients(ex_dist *d, srp_status local)
{
    return d->handle ? srp_dist_average_gradients(d->handle, local) : local;
}

srp_status ex_dist_sync_spectral(ex_dist *d)
{
    return d->handle ? srp_dist_sync_spectral(d->handle) : SRP_OK;
}

srp_status ex_dist_broadcast(ex_dist *d, double *values, size_t n)
{
    if (d->size == 1)
        return SRP_OK;
    return MPI_Bcast(values, (int)n, MPI_DOUBLE, 0, MPI_COMM_WORLD) == MPI_SUCCESS ? SRP_OK
                                                                                   : SRP_ERR_PEER;
}

srp_status ex_dist_sum(ex_dist *d, double *values, size_t n)
{
    return d->handle ? srp_dist_sum(d->handle, values, n) : SRP_OK;
}

srp_status ex_dist_sum_agree(ex_dist *d, double *values, size_t n, srp_status local)
{
    if (!d->handle)
        return local;
    double all[16]; /* the values, then how many ranks failed */
    if (n >= sizeof(all) / sizeof(all[0]))
        return SRP_ERR_INVALID_ARG;
    memcpy(all, values, sizeof(double) * n);
    all[n] = local != SRP_OK;
    const srp_status st = srp_dist_sum(d->handle, all, n + 1);
    if (local != SRP_OK)
        return local;
    if (st != SRP_OK)
        return st;
    memcpy(values, all, sizeof(double) * n);
    return all[n] > 0.0 ? SRP_ERR_PEER : SRP_OK;
}

srp_status ex_dist_mean_min(ex_dist *d, float *mean, float *min, size_t n)
{
    if (!d->handle)
        return SRP_OK;
    srp_status st = min ? srp_dist_min(d->handle, min, n) : SRP_OK;
    /* The mean through the double sum: a few floats, once per step. */
    double sums[256];
    for (size_t first = 0; mean && st == SRP_OK && first < n; first += 256) {
        const size_t m = n - first < 256 ? n - first : 256;
        for (size_t i = 0; i < m; i++)
            sums[i] = mean[first + i];
        st = srp_dist_sum(d->handle, sums, m);
        for (size_t i = 0; st == SRP_OK && i < m; i++)
            mean[first + i] = (float)(sums[i] / (double)d->size);
    }
    return st;
}

srp_status ex_dist_max(ex_dist *d, float *values, size_t n)
{
    if (!d->handle)
        return SRP_OK;
    /* max = -min(-x): negation is exact. */
    for (size_t i = 0; i < n; i++)
        values[i] = -values[i];
    const srp_status st = srp_dist_min(d->handle, values, n);
    for (size_t i = 0; i < n; i++)
        values[i] = -values[i];
    return st;
}

ex_code ex_dist_check_replicas(ex_dist *d, uint64_t step, ex_error *err)
{
    if (!d->handle)
        return EX_OK;
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
    if (!d->handle)
        return;
    fprintf(f, "data-parallel over %d ranks; sigmaReparam state: %s\n", d->size,
            srp_dist_spectral_broadcasts(d->handle)
                ? "u, v and sigma broadcast from rank 0 after each step (the ranks' thread "
                  "counts, GEMM backends or OpenBLAS kernels differ)"
                : "every rank computes the same bits (same threads, GEMM backend, kernels)");
}

void ex_dist_report(const ex_dist *d, double train_seconds, FILE *f)
{
    if (!d->handle)
        return;
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

#else /* one process */

ex_code ex_dist_init(ex_dist *d, int *argc, char ***argv, ex_error *err)
{
    (void)argc;
    (void)argv;
    (void)err;
    memset(d, 0, sizeof(*d));
    d->size = 1;
    return EX_OK;
}

void ex_dist_finalize(ex_dist *d) { (void)d; }

ex_code ex_dist_agree(ex_dist *d, ex_code code, ex_error *err)
{
    (void)d;
    (void)err;
    return code;
}

ex_code ex_dist_same_options(ex_dist *d, const char *fingerprint, ex_error *err)
{
    (void)d;
    (void)fingerprint;
    (void)err;
    return EX_OK;
}

ex_code ex_dist_attach(ex_dist *d, const srp_param *params, size_t count,
                       srp_linear *const *linears, size_t nlinears, ex_error *err)
{
    (void)d;
    (void)params;
    (void)count;
    (void)linears;
    (void)nlinears;
    (void)err;
    return EX_OK;
}

srp_status ex_dist_average_gradients(ex_dist *d, srp_status local)
{
    (void)d;
    return local;
}

srp_status ex_dist_sync_spectral(ex_dist *d)
{
    (void)d;
    return SRP_OK;
}

srp_status ex_dist_broadcast(ex_dist *d, double *values, size_t n)
{
    (void)d;
    (void)values;
    (void)n;
    return SRP_OK;
}

srp_status ex_dist_sum(ex_dist *d, double *values, size_t n)
{
    (void)d;
    (void)values;
    (void)n;
    return SRP_OK;
}

srp_status ex_dist_sum_agree(ex_dist *d, double *values, size_t n, srp_status local)
{
    (void)d;
    (void)values;
    (void)n;
    return local;
}

srp_status ex_dist_mean_min(ex_dist *d, float *mean, float *min, size_t n)
{
    (void)d;
    (void)mean;
    (void)min;
    (void)n;
    return SRP_OK;
}

srp_status ex_dist_max(ex_dist *d, float *values, size_t n)
{
    (void)d;
    (void)values;
    (void)n;
    return SRP_OK;
}

ex_code ex_dist_check_replicas(ex_dist *d, uint64_t step, ex_error *err)
{
    (void)d;
    (void)step;
    (void)err;
    return EX_OK;
}

void ex_dist_describe(const ex_dist *d, FILE *f)
{
    (void)d;
    (void)f;
}

void ex_dist_report(const ex_dist *d, double train_seconds, FILE *f)
{
    (void)d;
    (void)train_seconds;
    (void)f;
}

#endif
