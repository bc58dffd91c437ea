/* The library's thread count, and only that: srp_set_num_threads (blas.c,
 * the one door to OpenBLAS) stores it here and hands it to OpenMP and
 * OpenBLAS. Loops pass it explicitly (num_threads clause) because
 * omp_set_num_threads only sets the calling thread's default. */
#include <omp.h>

#include "internal.h"

#include <stdatomic.h>

/* 0: not set, follow OpenMP's default. Atomic: threads that each call
 * srp_set_num_threads (as they should, for their own OpenMP default) may
 * do so at once. */
static _Atomic int g_threads;

void srp_threads_store(int n) { g_threads = n; }

int srp_get_num_threads(void) { return srp_threads(); }

int srp_threads(void)
{
    if (g_threads > 0)
        return g_threads;
    const int n = omp_get_max_threads();
    return n > 0 ? n : 1;
}
