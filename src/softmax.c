/* Row softmax with its entropy in the same pass, and its backward.
 *
 * Entropy of p = softmax(s): with m = max_j s_j, e_j = exp(s_j - m), Z = sum e_j,
 *     H = -sum_j p_j log p_j = log Z - sum_j p_j (s_j - m)
 * which needs no log of a probability (no log 0) and costs one multiply-add
 * per entry next to the exp it shares. A logit of -Inf makes that formula
 * 0 * (-Inf) = NaN; such a row (y is finite) takes -sum p log p over its
 * non-zero p instead: a zero-probability term adds 0, the limit of p log p.
 *
 * Speed: the exp is most of a softmax. The loops call libmvec's vector
 * expf (internal.h), 4-8x faster than scalar expf calls. */
#include <math.h>
#include <string.h>

#include "internal.h"

/* -sum p_j log p_j over the p_j > 0 of a softmax row p, for the rare row
 * that met 0 * (-Inf) in the main formula: a logit of -Inf (or s_j - m
 * overflowing) with a finite maximum. A test in the main loop instead would
 * keep it from vectorizing (GCC sees control flow there under
 * -ftrapping-math), and change z's summation order with it. */
static float entropy_of_probabilities(const float *p, size_t keys)
{
    float h = 0.0f;
    for (size_t j = 0; j < keys; j++)
        if (p[j] > 0.0f)
            h -= p[j] * logf(p[j]);
    return h;
}

SRP_VECTOR_CLONES
static float softmax_row(float *row, size_t keys, size_t len, int track)
{
    if (keys == 0) {
        memset(row, 0, len * sizeof(float));
        return 0.0f;
    }
    float m = row[0];
#pragma omp simd reduction(max : m)
    for (size_t j = 1; j < keys; j++)
        m = row[j] > m ? row[j] : m;
    float z = 0.0f, weighted = 0.0f; /* sum e_j, sum e_j (s_j - m) */
    if (track) {
#pragma omp simd reduction(+ : z, weighted)
        for (size_t j = 0; j < keys; j++) {
            const float t = row[j] - m, e = expf(t);
            row[j] = e;
            z += e;
            weighted += e * t;
        }
    } else {
#pragma omp simd reduction(+ : z)
        for (size_t j = 0; j < keys; j++) {
            const float e = expf(row[j] - m);
            row[j] = e;
            z += e;
        }
    }
    const float inv = 1.0f / z;
#pragma omp simd
    for (size_t j = 0; j < keys; j++)
        row[j] *= inv;
    if (keys < len)
        memset(row + keys, 0, (len - keys) * sizeof(float));
    if (!track)
        return 0.0f;
    /* z >= 1 (the max contributes e^0), so the log is finite; rounding can
     * leave a near one-hot row a hair below 0. */
    float h = logf(z) - weighted * inv;
    if (h != h && z == z) /* a t_j of -Inf met its e_j = 0 */
        h = entropy_of_probabilities(row, keys);
    return h < 0.0f ? 0.0f : h; /* NaN stays NaN */
}

SRP_VECTOR_CLONES
static void softmax_backward_row(const float *p, float *da_to_ds, size_t keys, size_t len)
{
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (size_t j = 0; j < keys; j++)
        dot += p[j] * da_to_ds[j];
#pragma omp simd
    for (size_t j = 0; j < keys; j++)
        da_to_ds[j] = p[j] * (da_to_ds[j] - dot);
    if (keys < len)
        memset(da_to_ds + keys, 0, (len - keys) * sizeof(float));
}

float srp_softmax_row(float *row, size_t keys, size_t len, int track)
{
    return softmax_row(row, keys, len, track);
}

void srp_softmax_backward_row(const float *p, float *da_to_ds, size_t keys, size_t len)
{
    softmax_backward_row(p, da_to_ds, keys, len);
}
