/* Private: the masks of dropout and drop path (dropout.c). */
#ifndef SRP_DROPOUT_H
#define SRP_DROPOUT_H

#include <stddef.h>
#include <stdint.h>

/* Element i of a mask drawn with key is kept when u_i >= p, where
 * u_i = (h >> 11) 2^-53 and h is splitmix64's output mix of
 * key + (i + 1) 0x9E3779B97F4A7C15: a function of the key and the index
 * only, so the mask is the same for any thread count, and a backward
 * recomputes its forward's mask from the key instead of storing it. A
 * kept element is scaled by 1 / (1 - p) (in float), a dropped one is 0. */
int srp_dropout_keeps(uint64_t key, uint64_t index, float p);

/* y[i] = keep(i) ? x[i] / (1 - p) : 0 for i < n; y may be x. Returns 1
 * when every x[i] is finite (a NaN in a dropped element is still found). */
int srp_dropout_apply(const float *x, float *y, size_t n, uint64_t key, float p);

/* Drop path (stochastic depth): scale[b] = keep(b) ? 1 / (1 - p) : 0 for
 * each of batch examples. */
void srp_drop_path_scales(float *scale, size_t batch, uint64_t key, float p);

/* y[b][j] = x[b][j] scale[b] over batch rows of len; y may be x. Returns 1
 * when every x is finite. */
int srp_scale_examples(const float *x, float *y, size_t batch, size_t len, const float *scale);

#endif
