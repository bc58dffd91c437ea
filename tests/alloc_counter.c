#define _GNU_SOURCE
#include "alloc_counter.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t align, size_t n);

static volatile int g_on;
static volatile size_t g_count, g_blas_count;

void alloc_counter_start(void)
{
    g_count = 0;
    g_blas_count = 0;
    g_on = 1;
}

size_t alloc_counter_stop(size_t *blas_count)
{
    g_on = 0;
    if (blas_count)
        *blas_count = g_blas_count;
    return g_count;
}

/* caller: the return address of the interposed function. */
static void note(void *caller)
{
    if (!g_on)
        return;
    Dl_info info;
    if (dladdr(caller, &info) && info.dli_fname && strstr(info.dli_fname, "openblas"))
        __atomic_add_fetch(&g_blas_count, 1, __ATOMIC_RELAXED);
    else
        __atomic_add_fetch(&g_count, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t n)
{
    note(__builtin_return_address(0));
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    note(__builtin_return_address(0));
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    note(__builtin_return_address(0));
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    note(__builtin_return_address(0));
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    note(__builtin_return_address(0));
    return __libc_memalign(align, n);
}
