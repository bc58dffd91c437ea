/* Dropout and drop path masks from a key (dropout.h).
 *
 * Dropout (Srivastava et al. 2014; PyTorch's F.dropout): in training,
 * y = x m / (1 - p) with m_i ~ Bernoulli(1 - p), so that E[y] = x.
 * Drop path (stochastic depth as in DeiT, timm's drop_path): the same with
 * one m per example, applied to a whole residual branch. The backward is
 * the same mask on the gradient. Counter-based draws (one key per forward,
 * an index per element) make the mask independent of the thread count and
 * free to recompute. */
#include <math.h>

#include "dropout.h"
#include "internal.h"

/* splitmix64's output function at step index + 1 from key. */
static uint64_t mix(uint64_t key, uint64_t index)
{
    uint64_t z = key + (index + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int srp_dropout_keeps(uint64_t key, uint64_t index, float p)
{
    return (double)(mix(key, index) >> 11) * 0x1.0p-53 >= (double)p;
}

int srp_dropout_apply(const float *x, float *y, size_t n, uint64_t key, float p)
{
    const float scale = 1.0f / (1.0f - p);
    const long len = (long)n;
    int finite = 1;
#pragma omp parallel for num_threads(srp_threads()) schedule(static)                               \
    reduction(&& : finite) if (n >= SRP_PARALLEL_MIN_ELEMS)
    for (long i = 0; i < len; i++) {
        const float v = x[i];
        finite = finite && isfinite(v);
        y[i] = srp_dropout_keeps(key, (uint64_t)i, p) ? v * scale : 0.0f;
    }
    return finite;
}

void srp_drop_path_scales(float *scale, size_t batch, uint64_t key, float p)
{
    const float keep_scale = 1.0f / (1.0f - p);
    for (size_t b = 0; b < batch; b++)
        scale[b] = srp_dropout_keeps(key, b, p) ? keep_scale : 0.0f;
}

int srp_scale_examples(const float *x, float *y, size_t batch, size_t len, const float *scale)
{
    const long rows = (long)batch;
    int finite = 1;
#pragma omp parallel for num_threads(srp_threads()) schedule(static)                               \
    reduction(&& : finite) if (batch * len >= SRP_PARALLEL_MIN_ELEMS)
    for (long b = 0; b < rows; b++) {
        const float *xb = x + (size_t)b * len;
        float *yb = y + (size_t)b * len;
        const float s = scale[b];
        for (size_t j = 0; j < len; j++) {
            finite = finite && isfinite(xb[j]);
            yb[j] = xb[j] * s;
        }
    }
    return finite;
}
