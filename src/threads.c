/* One thread count for the library's OpenMP loops, oneDNN and OpenBLAS.
 *
 * Loops pass it explicitly (num_threads clause) because omp_set_num_threads
 * only sets the calling thread's default; oneDNN's GEMMs take that default,
 * OpenBLAS keeps its own. */
#define _POSIX_C_SOURCE 200809L
#include <unistd.h>

#include <omp.h>

#include "internal.h"

#include <stdatomic.h>

/* 0: not set, follow OpenMP's default. Atomic: threads that each call
 * srp_set_num_threads (as they should, for their own OpenMP default) may
 * do so at once. */
static _Atomic int g_threads;

void srp_set_num_threads(int n)
{
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    g_threads = n;
    omp_set_num_threads(n);
    srp_blas_set_num_threads(n);
}

int srp_get_num_threads(void) { return srp_threads(); }

int srp_threads(void)
{
    if (g_threads > 0)
        return g_threads;
    const int n = omp_get_max_threads();
    return n > 0 ? n : 1;
}
