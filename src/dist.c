/* Data-parallel training over MPI (dist.h): the fused gradient allreduce,
 * the sigmaReparam state kept one across ranks, and agreement on failure.
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

#include "internal.h"
#include "sigmareparam/dist.h"

struct srp_dist {
    MPI_Comm comm; /* our duplicate of the application's */
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

/* The numerics that decide a power step's bits on this rank. */
static uint32_t numerics_signature(void)
{
    char text[256];
    snprintf(text, sizeof(text), "%s|%d|%s|%s", srp_version_string(), srp_get_num_threads(),
             srp_gemm_backend(), srp_openblas_core());
    return srp_crc32(0, (const unsigned char *)text, strlen(text));
}

/* Every rank's local status into one: the worst (largest) code, so all see
 * that something failed. MPI failure: SRP_ERR_PEER. */
static srp_status agree_status(MPI_Comm comm, srp_status local)
{
    int mine = (int)local, worst = 0;
    if (MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS)
        return local != SRP_OK ? local : SRP_ERR_PEER;
    if (local != SRP_OK)
        return local;
    return worst != SRP_OK ? SRP_ERR_PEER : SRP_OK;
}

/* lo, hi: the minimum and the maximum over the ranks of each of mine[n]
 * (equal where every rank holds the same value). 0 on an MPI failure. */
static int min_max(MPI_Comm comm, const unsigned long long *mine, unsigned long long *lo,
                   unsigned long long *hi, int n)
{
    return MPI_Allreduce(mine, lo, n, MPI_UNSIGNED_LONG_LONG, MPI_MIN, comm) == MPI_SUCCESS &&
           MPI_Allreduce(mine, hi, n, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm) == MPI_SUCCESS;
}

srp_status srp_dist_agree(srp_dist *d, srp_status local)
{
    if (!d)
        return SRP_FAIL_NULL(d);
    return agree_status(d->comm, local);
}

/* Checks the arguments and takes the buffers; a local status, not yet
 * agreed. */
static srp_status dist_init(srp_dist *d, const srp_param *params, size_t nparams,
                            srp_linear *const *linears, size_t nlinears)
{
    static const char call[] = "srp_dist_create";
    if (!params || nparams == 0)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s", call,
                        params ? "nparams is 0" : "params is NULL");
    if (nlinears > 0 && !linears)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: linears is NULL with nlinears %zu", call,
                        nlinears);
    size_t total = 0;
    for (size_t i = 0; i < nparams; i++) {
        if (!params[i].grad || !params[i].data || params[i].size == 0)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: params[%zu]: %s", call, i,
                            params[i].size == 0 ? "size is 0"
                                                : (params[i].data ? "grad is NULL" : "data is NULL"));
        /* Past INT_MAX the sum stops growing (it could wrap): refused below. */
        total = params[i].size < (size_t)INT_MAX - total ? total + params[i].size : (size_t)INT_MAX;
    }
    /* One allreduce takes an int count. */
    if (total >= (size_t)INT_MAX)
        return srp_fail(SRP_ERR_UNSUPPORTED, "%s: the gradients take INT_MAX floats or more, "
                        "past one allreduce's int count", call);
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
    d->params = malloc(sizeof(*d->params) * nparams);
    d->fused = malloc(sizeof(float) * (total + 1));
    d->linears = malloc(sizeof(*d->linears) * (with_state ? with_state : 1));
    d->spectral = malloc(sizeof(float) * (spectral ? spectral : 1));
    if (!d->params || !d->fused || !d->linears || !d->spectral)
        return SRP_ERR_NOMEM;
    memcpy(d->params, params, sizeof(*d->params) * nparams);
    d->nparams = nparams;
    d->fused_len = total + 1;
    for (size_t i = 0; i < nlinears; i++)
        if (srp_linear_reparam(linears[i]) != SRP_REPARAM_NONE)
            d->linears[d->nlinears++] = linears[i];
    d->spectral_len = spectral;
    return SRP_OK;
}

static void dist_free(srp_dist *d)
{
    free(d->params);
    free(d->fused);
    free(d->linears);
    free(d->spectral);
    free(d);
}

srp_status srp_dist_create(srp_dist **out, MPI_Comm comm, const srp_param *params, size_t nparams,
                           srp_linear *const *linears, size_t nlinears)
{
    if (!out)
        return SRP_FAIL_NULL(out);
    *out = NULL;
    MPI_Comm dup;
    if (MPI_Comm_dup(comm, &dup) != MPI_SUCCESS)
        return SRP_ERR_PEER;
    /* Our checks of MPI's return codes, not MPI's default of aborting. */
    MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
    /* A rank that fails here still takes part in the agreement. */
    srp_dist *d = calloc(1, sizeof(*d));
    srp_status st = d ? dist_init(d, params, nparams, linears, nlinears) : SRP_ERR_NOMEM;
    st = agree_status(dup, st);
    /* Same shapes everywhere, and the numerics: min and max of each. */
    unsigned long long lo[3], hi[3];
    if (st == SRP_OK) {
        const unsigned long long mine[3] = {d->fused_len, d->spectral_len, numerics_signature()};
        if (!min_max(dup, mine, lo, hi, 3))
            st = SRP_ERR_PEER;
        else if (lo[0] != hi[0] || lo[1] != hi[1])
            st = srp_fail(SRP_ERR_SHAPE,
                          "srp_dist_create: the ranks' models differ: %llu to %llu gradient "
                          "floats, %llu to %llu floats of u, v and sigma (here %llu and %llu)",
                          lo[0] - 1, hi[0] - 1, lo[1], hi[1], mine[0] - 1, mine[1]);
    }
    if (st != SRP_OK) {
        MPI_Comm_free(&dup);
        if (d)
            dist_free(d);
        return st;
    }
    d->comm = dup;
    MPI_Comm_rank(dup, &d->rank);
    MPI_Comm_size(dup, &d->size);
    d->numerics_uniform = lo[2] == hi[2];
    d->policy = SRP_DIST_SPECTRAL_AUTO;
    *out = d;
    return SRP_OK;
}

void srp_dist_destroy(srp_dist *d)
{
    if (!d)
        return;
    MPI_Comm_free(&d->comm);
    dist_free(d);
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
    if (!d)
        return 0;
    return d->policy == SRP_DIST_SPECTRAL_BROADCAST ||
           (d->policy == SRP_DIST_SPECTRAL_AUTO && !d->numerics_uniform);
}

srp_status srp_dist_average_gradients(srp_dist *d, srp_status local)
{
    if (!d)
        return SRP_FAIL_NULL(d);
    /* fused: [gradients of every entry][failed ranks] */
    float *p = d->fused;
    for (size_t i = 0; i < d->nparams; i++) {
        memcpy(p, d->params[i].grad, sizeof(float) * d->params[i].size);
        p += d->params[i].size;
    }
    *p = local != SRP_OK ? 1.0f : 0.0f;
    const double t0 = MPI_Wtime();
    const int rc =
        MPI_Allreduce(MPI_IN_PLACE, d->fused, (int)d->fused_len, MPI_FLOAT, MPI_SUM, d->comm);
    d->allreduce_seconds += MPI_Wtime() - t0;
    d->allreduce_calls++;
    if (rc != MPI_SUCCESS)
        return local != SRP_OK ? local : SRP_ERR_PEER;
    if (local != SRP_OK)
        return local;
    if (*p != 0.0f)
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
    if (MPI_Bcast(d->spectral, (int)d->spectral_len, MPI_FLOAT, 0, d->comm) != MPI_SUCCESS)
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
    const unsigned long long mine = crc;
    unsigned long long lo = 0, hi = 0;
    if (!min_max(d->comm, &mine, &lo, &hi, 1))
        return SRP_ERR_PEER;
    *identical = lo == hi;
    return SRP_OK;
}

/* The arguments of srp_dist_sum and srp_dist_min. */
static srp_status reduce_args_check(const srp_dist *d, const void *values, size_t n,
                                    const char *call)
{
    if (!d || !values)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s is NULL", call, d ? "values" : "d");
    if (n == 0 || n > (size_t)INT_MAX)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: n %zu is 0 or past INT_MAX", call, n);
    return SRP_OK;
}

srp_status srp_dist_sum(srp_dist *d, double *values, size_t n)
{
    const srp_status st = reduce_args_check(d, values, n, "srp_dist_sum");
    if (st != SRP_OK)
        return st;
    return MPI_Allreduce(MPI_IN_PLACE, values, (int)n, MPI_DOUBLE, MPI_SUM, d->comm) == MPI_SUCCESS
               ? SRP_OK
               : SRP_ERR_PEER;
}

srp_status srp_dist_min(srp_dist *d, float *values, size_t n)
{
    const srp_status st = reduce_args_check(d, values, n, "srp_dist_min");
    if (st != SRP_OK)
        return st;
    return MPI_Allreduce(MPI_IN_PLACE, values, (int)n, MPI_FLOAT, MPI_MIN, d->comm) == MPI_SUCCESS
               ? SRP_OK
               : SRP_ERR_PEER;
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
