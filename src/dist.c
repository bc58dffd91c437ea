/* Data-parallel training (dist.h): the fused gradient allreduce, the
 * sigmaReparam state kept one across ranks, agreement on failure, and the
 * small collectives of the metrics; over MPI (dist_mpi.h, built with
 * SRP_HAVE_MPI) or in one process.
 *
 * Every message goes through collective(), which with one rank returns
 * at once: the values in place are then the answer (the sum, minimum,
 * maximum or broadcast of one rank's values are those values). So a
 * one-process handle runs the code an MPI one runs, and a build without
 * MPI needs no second version of it. The calls whose work is only there
 * for other ranks (packing the gradients, hashing the replicas) return
 * before it.
 *
 * The gradients travel in one buffer of floats taken at create: every
 * entry's gradient in the parameter list's order, then one slot counting
 * the ranks that failed this step. Summing that slot with the gradients
 * costs nothing extra and means a rank that failed before the allreduce
 * still meets the others there, so no rank waits for a message that never
 * comes. One allreduce per step rather than buckets overlapped with the
 * backward: on 2 ranks the allreduce of the ViT-lite's 0.8 M gradients
 * took 1-10% of a step, most of it waiting for the slower rank
 * (docs/SCALING.md says where overlap would start to pay). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "sigmareparam/dist.h"
#ifdef SRP_HAVE_MPI
#include "sigmareparam/dist_mpi.h"
#endif

struct srp_dist {
#ifdef SRP_HAVE_MPI
    MPI_Comm comm; /* our duplicate of the application's; MPI_COMM_NULL in one process */
#endif
    int rank, size;
    srp_param *params; /* copies of the entries (pointers into the caller's model) */
    size_t nparams;
    srp_linear **linears; /* those with sigmaReparam state (u, v, sigma) */
    size_t nlinears;
    float *fused;     /* [sum of entry sizes + 1]: gradients, then the failure count */
    size_t fused_len; /* floats, the failure slot included */
    float *spectral;  /* [sum over linears of in + out + 1]: u, v, sigma */
    size_t spectral_len;
    int numerics_uniform;
    srp_dist_spectral_policy policy;
    uint64_t allreduce_calls;
    double allreduce_seconds;
};

typedef enum { DIST_SUM, DIST_MIN, DIST_MAX, DIST_BROADCAST } dist_op;

/* values[n] (doubles when is_double, else floats) in place: their sum,
 * minimum or maximum over the ranks, or rank 0's. 1 when it went through,
 * 0 on an MPI failure. */
static int collective(const srp_dist *d, void *values, size_t n, int is_double, dist_op op)
{
#ifdef SRP_HAVE_MPI
    if (d->size > 1) {
        const MPI_Datatype type = is_double ? MPI_DOUBLE : MPI_FLOAT;
        if (op == DIST_BROADCAST)
            return MPI_Bcast(values, (int)n, type, 0, d->comm) == MPI_SUCCESS;
        const MPI_Op reduce = op == DIST_SUM ? MPI_SUM : op == DIST_MIN ? MPI_MIN : MPI_MAX;
        return MPI_Allreduce(MPI_IN_PLACE, values, (int)n, type, reduce, d->comm) == MPI_SUCCESS;
    }
#endif
    (void)d;
    (void)values;
    (void)n;
    (void)is_double;
    (void)op;
    return 1; /* one rank: the values are the answer */
}

/* Every rank's status into one: local when it is a failure; SRP_ERR_PEER
 * when another rank's is (the largest code over the ranks is not SRP_OK)
 * or MPI failed; SRP_OK when all are fine. */
static srp_status agree(const srp_dist *d, srp_status local)
{
    double worst = (double)local;
    const int reduced = collective(d, &worst, 1, 1, DIST_MAX);
    if (local != SRP_OK)
        return local;
    return reduced && worst == (double)SRP_OK ? SRP_OK : SRP_ERR_PEER;
}

/* lo, hi: the least and the largest over the ranks of each of mine[n]
 * (equal where every rank holds the same value). 0 on an MPI failure. */
static int min_max(const srp_dist *d, const double *mine, double *lo, double *hi, size_t n)
{
    memcpy(lo, mine, sizeof(double) * n);
    memcpy(hi, mine, sizeof(double) * n);
    const int low = collective(d, lo, n, 1, DIST_MIN), high = collective(d, hi, n, 1, DIST_MAX);
    return low && high;
}

/* *same = 1 when every rank's crc is this one's. */
static srp_status same_crc(const srp_dist *d, uint32_t crc, int *same)
{
    const double mine = crc;
    double lo, hi;
    if (!min_max(d, &mine, &lo, &hi, 1))
        return SRP_ERR_PEER;
    *same = lo == hi;
    return SRP_OK;
}

static double wall_seconds(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A handle of one rank whose lists are still empty. */
static srp_dist *dist_new(void)
{
    srp_dist *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
#ifdef SRP_HAVE_MPI
    d->comm = MPI_COMM_NULL;
#endif
    d->size = 1;
    d->numerics_uniform = 1;
    d->policy = SRP_DIST_SPECTRAL_AUTO;
    return d;
}

/* Checks the arguments of call and takes the buffers, for d->size ranks;
 * a local status, not yet agreed. */
static srp_status dist_init(srp_dist *d, const srp_param *params, size_t nparams,
                            srp_linear *const *linears, size_t nlinears, const char *call)
{
    if (nparams > 0 && !params)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: params is NULL with nparams %zu", call, nparams);
    if (nlinears > 0 && !linears)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: linears is NULL with nlinears %zu", call,
                        nlinears);
    size_t total = 0;
    for (size_t i = 0; i < nparams; i++) {
        if (!params[i].grad || !params[i].data || params[i].size == 0)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: params[%zu]: %s", call, i,
                            params[i].size == 0
                                ? "size is 0"
                                : (params[i].data ? "grad is NULL" : "data is NULL"));
        /* Past INT_MAX the sum stops growing (it could wrap): refused below. */
        total = params[i].size < (size_t)INT_MAX - total ? total + params[i].size : (size_t)INT_MAX;
    }
    const int several = d->size > 1; /* one rank moves nothing: no buffers to move it in */
    /* One allreduce takes an int count. */
    if (several && total >= (size_t)INT_MAX)
        return srp_fail(SRP_ERR_UNSUPPORTED,
                        "%s: the gradients take INT_MAX floats or more, "
                        "past one allreduce's int count",
                        call);
    size_t spectral = 0, with_state = 0;
    for (size_t i = 0; i < nlinears; i++) {
        if (!linears[i])
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: linears[%zu] is NULL", call, i);
        if (srp_linear_reparam(linears[i]) != SRP_REPARAM_NONE) {
            spectral +=
                srp_linear_out_features(linears[i]) + srp_linear_in_features(linears[i]) + 1;
            with_state++;
        }
    }
    d->params = malloc(sizeof(*d->params) * (nparams ? nparams : 1));
    d->fused = malloc(sizeof(float) * (several ? total + 1 : 1));
    d->linears = malloc(sizeof(*d->linears) * (with_state ? with_state : 1));
    d->spectral = malloc(sizeof(float) * (several && spectral ? spectral : 1));
    if (!d->params || !d->fused || !d->linears || !d->spectral)
        return SRP_ERR_NOMEM;
    if (nparams)
        memcpy(d->params, params, sizeof(*d->params) * nparams);
    d->nparams = nparams;
    d->fused_len = total + 1;
    for (size_t i = 0; i < nlinears; i++)
        if (srp_linear_reparam(linears[i]) != SRP_REPARAM_NONE)
            d->linears[d->nlinears++] = linears[i];
    d->spectral_len = spectral;
    return SRP_OK;
}

srp_status srp_dist_create_single(srp_dist **out, const srp_param *params, size_t nparams,
                                  srp_linear *const *linears, size_t nlinears)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = NULL;
    srp_dist *d = dist_new();
    const srp_status st =
        d ? dist_init(d, params, nparams, linears, nlinears, __func__) : SRP_ERR_NOMEM;
    if (st != SRP_OK) {
        srp_dist_destroy(d);
        return st;
    }
    *out = d;
    return SRP_OK;
}

#ifdef SRP_HAVE_MPI
/* The numerics that decide a power step's bits on this rank. */
static uint32_t numerics_signature(void)
{
    char text[256];
    snprintf(text, sizeof(text), "%s|%d|%s|%s", srp_version_string(), srp_get_num_threads(),
             srp_gemm_backend(), srp_openblas_core());
    return srp_crc32(0, (const unsigned char *)text, strlen(text));
}

srp_status srp_dist_create(srp_dist **out, MPI_Comm comm, const srp_param *params, size_t nparams,
                           srp_linear *const *linears, size_t nlinears)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = NULL;
    /* The communicator alone, for the agreement below: it runs on every
     * rank, one whose handle could not be allocated too. */
    srp_dist link = {.size = 1};
    if (MPI_Comm_dup(comm, &link.comm) != MPI_SUCCESS)
        return srp_fail(SRP_ERR_PEER, "srp_dist_create: MPI_Comm_dup failed");
    /* Our checks of MPI's return codes, not MPI's default of aborting. */
    MPI_Comm_set_errhandler(link.comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(link.comm, &link.rank);
    MPI_Comm_size(link.comm, &link.size);
    srp_dist *d = dist_new();
    srp_status st = SRP_ERR_NOMEM;
    if (d) {
        d->comm = link.comm;
        d->rank = link.rank;
        d->size = link.size;
        st = dist_init(d, params, nparams, linears, nlinears, __func__);
    }
    st = agree(&link, st);
    /* Same shapes everywhere, and the numerics: min and max of each. */
    if (st == SRP_OK) {
        const double mine[3] = {(double)d->fused_len, (double)d->spectral_len,
                                (double)numerics_signature()};
        double lo[3], hi[3];
        if (!min_max(&link, mine, lo, hi, 3))
            st = SRP_ERR_PEER;
        else if (lo[0] != hi[0] || lo[1] != hi[1])
            st = srp_fail(SRP_ERR_SHAPE,
                          "srp_dist_create: the ranks' models differ: %.0f to %.0f gradient "
                          "floats, %.0f to %.0f floats of u, v and sigma (here %.0f and %.0f)",
                          lo[0] - 1, hi[0] - 1, lo[1], hi[1], mine[0] - 1, mine[1]);
        else
            d->numerics_uniform = lo[2] == hi[2];
    }
    if (st != SRP_OK) {
        if (d)
            srp_dist_destroy(d); /* and the communicator with it */
        else
            MPI_Comm_free(&link.comm);
        return st;
    }
    *out = d;
    return SRP_OK;
}
#endif

void srp_dist_destroy(srp_dist *d)
{
    if (!d)
        return;
#ifdef SRP_HAVE_MPI
    if (d->comm != MPI_COMM_NULL)
        MPI_Comm_free(&d->comm);
#endif
    free(d->params);
    free(d->fused);
    free(d->linears);
    free(d->spectral);
    free(d);
}

int srp_dist_rank(const srp_dist *d) { return d ? d->rank : 0; }

int srp_dist_size(const srp_dist *d) { return d ? d->size : 1; }

int srp_dist_numerics_uniform(const srp_dist *d) { return d ? d->numerics_uniform : 1; }

void srp_dist_set_spectral_policy(srp_dist *d, srp_dist_spectral_policy policy)
{
    if (d && (policy == SRP_DIST_SPECTRAL_AUTO || policy == SRP_DIST_SPECTRAL_BROADCAST ||
              policy == SRP_DIST_SPECTRAL_LOCAL))
        d->policy = policy;
}

int srp_dist_spectral_broadcasts(const srp_dist *d)
{
    if (!d || d->size == 1)
        return 0;
    return d->policy == SRP_DIST_SPECTRAL_BROADCAST ||
           (d->policy == SRP_DIST_SPECTRAL_AUTO && !d->numerics_uniform);
}

srp_status srp_dist_agree(srp_dist *d, srp_status local)
{
    if (!d)
        return SRP_FAIL_NULL(d);
    return agree(d, local);
}

srp_status srp_dist_average_gradients(srp_dist *d, srp_status local)
{
    if (!d)
        return SRP_FAIL_NULL(d);
    if (d->size == 1)
        return local; /* the mean of one rank's gradients is its own */
    /* fused: [gradients of every entry][failed ranks] */
    float *p = d->fused;
    for (size_t i = 0; i < d->nparams; i++) {
        memcpy(p, d->params[i].grad, sizeof(float) * d->params[i].size);
        p += d->params[i].size;
    }
    *p = local != SRP_OK ? 1.0f : 0.0f;
    const double t0 = wall_seconds();
    const int reduced = collective(d, d->fused, d->fused_len, 0, DIST_SUM);
    d->allreduce_seconds += wall_seconds() - t0;
    d->allreduce_calls++;
    if (local != SRP_OK)
        return local;
    if (!reduced || *p != 0.0f)
        return SRP_ERR_PEER;
    const float scale = 1.0f / (float)d->size;
    p = d->fused;
    for (size_t i = 0; i < d->nparams; i++) {
        float *g = d->params[i].grad;
        for (size_t k = 0; k < d->params[i].size; k++)
            g[k] = p[k] * scale;
        p += d->params[i].size;
    }
    return SRP_OK;
}

srp_status srp_dist_sync_spectral(srp_dist *d)
{
    if (!d)
        return SRP_FAIL_NULL(d);
    if (!srp_dist_spectral_broadcasts(d) || d->spectral_len == 0)
        return SRP_OK;
    /* spectral: per linear [u: in][v: out][sigma] */
    float *p = d->spectral;
    for (size_t i = 0; i < d->nlinears; i++) {
        srp_linear *l = d->linears[i];
        const size_t out = srp_linear_out_features(l), in = srp_linear_in_features(l);
        memcpy(p, srp_linear_u(l), sizeof(float) * in);
        memcpy(p + in, srp_linear_v(l), sizeof(float) * out);
        p[in + out] = srp_linear_sigma(l);
        p += out + in + 1;
    }
    if (!collective(d, d->spectral, d->spectral_len, 0, DIST_BROADCAST))
        return SRP_ERR_PEER;
    p = d->spectral;
    srp_status st = SRP_OK;
    for (size_t i = 0; i < d->nlinears; i++) {
        srp_linear *l = d->linears[i];
        const size_t out = srp_linear_out_features(l), in = srp_linear_in_features(l);
        memcpy(srp_linear_u(l), p, sizeof(float) * in);
        memcpy(srp_linear_v(l), p + in, sizeof(float) * out);
        const srp_status s = srp_linear_set_sigma(l, p[in + out]);
        if (st == SRP_OK)
            st = s; /* rank 0's sigma is not finite: every rank says so */
        p += out + in + 1;
    }
    return st;
}

srp_status srp_dist_replicas_identical(srp_dist *d, int *identical)
{
    if (!d || !identical)
        return SRP_FAIL_NULL(d, identical);
    if (d->size == 1) {
        *identical = 1; /* one replica */
        return SRP_OK;
    }
    /* srp_crc32 feeds zlib in chunks: a tensor of 1 Gi floats or more
     * would not fit crc32()'s uInt length. */
    uint32_t crc = 0;
    for (size_t i = 0; i < d->nparams; i++)
        crc = srp_crc32(crc, (const unsigned char *)d->params[i].data,
                        sizeof(float) * d->params[i].size);
    for (size_t i = 0; i < d->nlinears; i++) {
        srp_linear *l = d->linears[i];
        const float sigma = srp_linear_sigma(l);
        crc = srp_crc32(crc, (const unsigned char *)srp_linear_u(l),
                        sizeof(float) * srp_linear_in_features(l));
        crc = srp_crc32(crc, (const unsigned char *)srp_linear_v(l),
                        sizeof(float) * srp_linear_out_features(l));
        crc = srp_crc32(crc, (const unsigned char *)&sigma, sizeof(sigma));
    }
    return same_crc(d, crc, identical);
}

srp_status srp_dist_same_bytes(srp_dist *d, const void *bytes, size_t len, int *same)
{
    if (!d || !bytes || !same)
        return SRP_FAIL_NULL(d, bytes, same);
    return same_crc(d, srp_crc32(0, bytes, len), same);
}

/* The arguments of the collectives on values[n]. */
static srp_status values_check(const srp_dist *d, const void *values, size_t n, const char *call)
{
    if (!d || !values)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s is NULL", call, d ? "values" : "d");
    if (n == 0 || n > (size_t)INT_MAX)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: n %zu is 0 or past INT_MAX", call, n);
    return SRP_OK;
}

/* srp_dist_sum, _min, _max and _broadcast: one collective on values[n]. */
static srp_status values_collective(srp_dist *d, void *values, size_t n, int is_double, dist_op op,
                                    const char *call)
{
    const srp_status st = values_check(d, values, n, call);
    if (st != SRP_OK)
        return st;
    return collective(d, values, n, is_double, op) ? SRP_OK : SRP_ERR_PEER;
}

srp_status srp_dist_sum(srp_dist *d, double *values, size_t n)
{
    return values_collective(d, values, n, 1, DIST_SUM, __func__);
}

srp_status srp_dist_min(srp_dist *d, float *values, size_t n)
{
    return values_collective(d, values, n, 0, DIST_MIN, __func__);
}

srp_status srp_dist_max(srp_dist *d, float *values, size_t n)
{
    return values_collective(d, values, n, 0, DIST_MAX, __func__);
}

srp_status srp_dist_broadcast(srp_dist *d, double *values, size_t n)
{
    return values_collective(d, values, n, 1, DIST_BROADCAST, __func__);
}

/* Chunks of these many doubles on the stack: nothing allocated. */
#define DIST_CHUNK 64

srp_status srp_dist_mean(srp_dist *d, float *values, size_t n)
{
    const srp_status st = values_check(d, values, n, __func__);
    if (st != SRP_OK || d->size == 1)
        return st; /* the mean of one value is itself */
    double sums[DIST_CHUNK];
    int reduced = 1;
    for (size_t first = 0; first < n; first += DIST_CHUNK) {
        const size_t m = n - first < DIST_CHUNK ? n - first : DIST_CHUNK;
        for (size_t i = 0; i < m; i++)
            sums[i] = values[first + i];
        if (!collective(d, sums, m, 1, DIST_SUM)) {
            reduced = 0; /* the later chunks still go, as on the other ranks */
            continue;
        }
        for (size_t i = 0; i < m; i++)
            values[first + i] = (float)(sums[i] / (double)d->size);
    }
    return reduced ? SRP_OK : SRP_ERR_PEER;
}

srp_status srp_dist_sum_agree(srp_dist *d, double *values, size_t n, srp_status local)
{
    const srp_status st = values_check(d, values, n, __func__);
    if (st != SRP_OK)
        return st;
    /* chunk: [up to DIST_CHUNK - 1 values][failed ranks] */
    double chunk[DIST_CHUNK];
    int reduced = 1, failed = 0;
    for (size_t first = 0; first < n; first += DIST_CHUNK - 1) {
        const size_t m = n - first < DIST_CHUNK - 1 ? n - first : DIST_CHUNK - 1;
        memcpy(chunk, values + first, sizeof(double) * m);
        chunk[m] = local != SRP_OK ? 1.0 : 0.0;
        if (!collective(d, chunk, m + 1, 1, DIST_SUM)) {
            reduced = 0;
            continue;
        }
        failed |= chunk[m] != 0.0;
        if (local == SRP_OK)
            memcpy(values + first, chunk, sizeof(double) * m);
    }
    if (local != SRP_OK)
        return local;
    return reduced && !failed ? SRP_OK : SRP_ERR_PEER;
}

void srp_dist_allreduce_stats(const srp_dist *d, size_t *bytes, uint64_t *calls, double *seconds)
{
    if (bytes)
        *bytes = d ? sizeof(float) * d->fused_len : 0;
    if (calls)
        *calls = d ? d->allreduce_calls : 0;
    if (seconds)
        *seconds = d ? d->allreduce_seconds : 0.0;
}
