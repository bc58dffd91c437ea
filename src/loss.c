/* Softmax cross-entropy with label smoothing, as
 * torch.nn.CrossEntropyLoss(label_smoothing=s), mean over rows.
 *
 * z: one row of logits [C], label y, m = max z, lse = m + log sum exp(z - m):
 *     -log p_c = lse - z_c
 *     loss     = (1 - s)(lse - z_y) + (s / C) sum_c (lse - z_c)
 *              = lse - (1 - s) z_y - s mean(z)
 *     dloss/dz = softmax(z) - (1 - s) onehot(y) - s / C
 * Subtracting m keeps exp from overflowing; sums are in double.
 * The mean over rows is summed over a fixed number of row chunks combined
 * in order, so the loss has the same bits for any thread count. */
#include <math.h>

#include "internal.h"

/* Row chunks of the loss sum (partials on the stack). */
#define LOSS_CHUNKS 64

/* The arguments every loss call takes, and its output out: SRP_OK, or
 * SRP_ERR_INVALID_ARG naming call and what is wrong. */
static srp_status check_args(const float *logits, const int *labels, size_t n, size_t classes,
                             float label_smoothing, const void *out, const char *call)
{
    if (!logits || !labels || !out)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: %s is NULL", call,
                        !logits ? "logits" : (!labels ? "labels" : "the output"));
    if (n == 0 || classes == 0 || n > SIZE_MAX / classes)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: n %zu, classes %zu: %s", call, n, classes,
                        n == 0 || classes == 0 ? "a size is 0" : "n x classes overflows");
    if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: label_smoothing %g is not in [0, 1]", call,
                        (double)label_smoothing);
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || (size_t)labels[i] >= classes)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: labels[%zu] is %d, not in 0..%zu", call, i,
                            labels[i], classes - 1);
    return SRP_OK;
}

static float row_max(const float *z, size_t classes)
{
    float m = z[0];
    for (size_t c = 1; c < classes; c++)
        m = z[c] > m ? z[c] : m;
    return m;
}

/* sum_c exp(z_c - m) in double. z: [classes] */
static double sum_exp(const float *z, size_t classes, float m)
{
    double s = 0.0;
    for (size_t c = 0; c < classes; c++)
        s += (double)expf(z[c] - m);
    return s;
}

/* The smoothed loss of one row. z: [classes] */
static double row_loss(const float *z, size_t classes, int label, double smoothing)
{
    const float m = row_max(z, classes);
    const double lse = (double)m + log(sum_exp(z, classes, m));
    double sum_z = 0.0;
    for (size_t c = 0; c < classes; c++)
        sum_z += z[c];
    return lse - (1.0 - smoothing) * (double)z[label] - smoothing * (sum_z / (double)classes);
}

/* logits: [n][classes], labels: [n]. The profile times the arithmetic,
 * after the arguments' checks. */
srp_status srp_cross_entropy_forward(const float *logits, const int *labels, size_t n,
                                     size_t classes, float label_smoothing, float *loss)
{
    const srp_status st = check_args(logits, labels, n, classes, label_smoothing, loss,
                                     "srp_cross_entropy_forward");
    if (st != SRP_OK)
        return st;
    const uint64_t t0 = srp_profile_begin();
    const size_t chunks = n < LOSS_CHUNKS ? n : LOSS_CHUNKS;
    const size_t per = n / chunks, extra = n % chunks;
    double partial[LOSS_CHUNKS];
    const long nc = (long)chunks;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n * classes >= SRP_PARALLEL_MIN_ELEMS)
    for (long k = 0; k < nc; k++) {
        /* The first `extra` chunks take one row more. */
        const size_t kk = (size_t)k;
        const size_t lo = kk * per + (kk < extra ? kk : extra);
        const size_t hi = lo + per + (kk < extra ? 1 : 0);
        double acc = 0.0;
        for (size_t i = lo; i < hi; i++)
            acc += row_loss(logits + i * classes, classes, labels[i], (double)label_smoothing);
        partial[k] = acc;
    }
    double total = 0.0;
    for (size_t k = 0; k < chunks; k++)
        total += partial[k];
    const float mean = (float)(total / (double)n);
    srp_profile_end(SRP_PROF_LOSS, t0);
    if (!isfinite(mean))
        return SRP_ERR_NUMERIC;
    *loss = mean;
    return SRP_OK;
}

/* logits, dlogits: [n][classes], labels: [n] */
srp_status srp_cross_entropy_backward(const float *logits, const int *labels, size_t n,
                                      size_t classes, float label_smoothing, float *dlogits)
{
    const srp_status st = check_args(logits, labels, n, classes, label_smoothing, dlogits,
                                     "srp_cross_entropy_backward");
    if (st != SRP_OK)
        return st;
    /* Inf logits would give NaN probabilities: refuse before writing. */
    if (!srp_all_finite(logits, n * classes))
        return SRP_ERR_NUMERIC;
    const uint64_t t0 = srp_profile_begin();
    const double s = (double)label_smoothing, inv_n = 1.0 / (double)n;
    const double off = s / (double)classes, on = 1.0 - s;
    const long rows = (long)n;
#pragma omp parallel for num_threads(srp_threads())                                                \
    schedule(static) if (n * classes >= SRP_PARALLEL_MIN_ELEMS)
    for (long i = 0; i < rows; i++) {
        const float *z = logits + (size_t)i * classes;
        float *dz = dlogits + (size_t)i * classes;
        const float m = row_max(z, classes);
        const double inv_sum = 1.0 / sum_exp(z, classes, m);
        for (size_t c = 0; c < classes; c++) {
            const double p = (double)expf(z[c] - m) * inv_sum;
            const double target = off + ((size_t)labels[i] == c ? on : 0.0);
            dz[c] = (float)((p - target) * inv_n);
        }
    }
    srp_profile_end(SRP_PROF_LOSS, t0);
    return SRP_OK;
}

/* logits: [n][classes], labels: [n] */
srp_status srp_accuracy_count(const float *logits, const int *labels, size_t n, size_t classes,
                              size_t *correct)
{
    const srp_status st =
        check_args(logits, labels, n, classes, 0.0f, correct, "srp_accuracy_count");
    if (st != SRP_OK)
        return st;
    const uint64_t t0 = srp_profile_begin();
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        const float *z = logits + i * classes;
        size_t best = 0;
        for (size_t c = 1; c < classes; c++)
            if (z[c] > z[best] || (z[best] != z[best] && z[c] == z[c]))
                best = c; /* strictly greater: the first max wins; NaN loses */
        hits += best == (size_t)labels[i];
    }
    srp_profile_end(SRP_PROF_LOSS, t0);
    *correct = hits;
    return SRP_OK;
}
