/* One thread count for the library and for OpenBLAS underneath it. */
#define _POSIX_C_SOURCE 200809L
#include <unistd.h>

#include "internal.h"

void srp_set_num_threads(int n)
{
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    srp_blas_set_num_threads(n);
}

int srp_get_num_threads(void) { return srp_blas_get_num_threads(); }
