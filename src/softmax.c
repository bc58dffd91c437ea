/* Row softmax with its entropy in the same pass, and its backward.
 *
 * Entropy of p = softmax(s): with m = max_j s_j, e_j = exp(s_j - m), Z = sum e_j,
 *     H = -sum_j p_j log p_j = log Z - sum_j p_j (s_j - m)
 * which needs no log of a probability (no log 0) and costs one multiply-add
 * per entry next to the exp it shares.
 *
 * Speed: the exp is most of a softmax, and libm's expf is a scalar call
 * (about 4 ns an entry here). exp_approx below is branch-free arithmetic
 * that the compiler vectorizes; the loops are compiled for AVX-512, AVX2
 * and baseline x86-64 and picked at load time (target_clones), which makes
 * a row 4x (AVX2) to 8x (AVX-512) faster than with expf. This file is built
 * with -fno-trapping-math so that the compares can become vector selects; it
 * changes no result (the library reads no floating-point exception flags). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "attention_internal.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SRP_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SRP_VECTOR_CLONES
#endif

/* exp(x) in float, within 1.4 ulp of the true value on [-87.3, 88.7]:
 * x = n ln2 + r with |r| <= ln2/2 (Cody-Waite, ln2 in two parts), e^r by a
 * degree-7 Taylor-like polynomial (Cephes expf coefficients), 2^n from the
 * exponent bits. Below -87.3 the result is 0, from about 88.4 up it is inf
 * (the softmax only passes arguments <= 0), and NaN stays NaN. */
static inline float exp_approx(float x)
{
    const float lo = -87.33654f, hi = 88.72283f;
    float xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    /* n = round(x / ln2), via the 1.5 * 2^23 trick: n lands in k's mantissa */
    const float k = xc * 1.44269504088896341f + 12582912.0f;
    const float n = k - 12582912.0f;
    float r = xc - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* Unsigned: for NaN input the bits are garbage (the result is replaced
     * by NaN below), and signed arithmetic on them could overflow. */
    uint32_t bits;
    memcpy(&bits, &k, sizeof(bits));
    const uint32_t exponent = (bits - 0x4B400000u + 127u) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &exponent, sizeof(scale));
    const float res = x < lo ? 0.0f : p * scale;
    return x == x ? res : x;
}

/* The clones are static: GCC exports the ifunc of a non-static clone even
 * from a library built with hidden visibility. */
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
            const float t = row[j] - m, e = exp_approx(t);
            row[j] = e;
            z += e;
            weighted += e * t;
        }
    } else {
#pragma omp simd reduction(+ : z)
        for (size_t j = 0; j < keys; j++) {
            const float e = exp_approx(row[j] - m);
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
    const float h = logf(z) - weighted * inv;
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
