#define _GNU_SOURCE
#include "alloc_counter.h"

#include <errno.h>
#include <stdlib.h>

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t align, size_t n);

static volatile int g_on;
static volatile size_t g_count;

void alloc_counter_start(void)
{
    g_count = 0;
    g_on = 1;
}

size_t alloc_counter_stop(void)
{
    g_on = 0;
    return g_count;
}

static void note(void)
{
    if (g_on)
        __atomic_add_fetch(&g_count, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t n)
{
    note();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    note();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    note();
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    note();
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    note();
    return __libc_memalign(align, n);
}
