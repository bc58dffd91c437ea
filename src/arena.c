/* One allocation per object (internal.h): the object's struct, then its
 * buffers, each on an SRP_ARENA_ALIGN boundary. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void *srp_arena_take(srp_arena *a, size_t count, size_t size)
{
    if (count == 0)
        return NULL;
    const size_t step = SRP_ARENA_ALIGN;
    if (size == 0 || count > SIZE_MAX / size || count * size > SIZE_MAX - (step - 1)) {
        a->overflow = 1;
        return NULL;
    }
    const size_t bytes = (count * size + step - 1) / step * step;
    if (bytes > SIZE_MAX / 2 - a->used) {
        a->overflow = 1;
        return NULL;
    }
    const size_t at = a->used;
    a->used += bytes;
    return a->base ? a->base + at : NULL;
}

void srp_arena_floats_into(srp_arena *a, size_t count, float **const *bufs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *bufs[i] = srp_arena_take(a, count, sizeof(float));
}

void srp_arena_doubles_into(srp_arena *a, size_t count, double **const *bufs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *bufs[i] = srp_arena_take(a, count, sizeof(double));
}

void *srp_arena_new(void *proto, size_t size, void (*layout)(void *obj, srp_arena *a))
{
    srp_arena a = {NULL, 0, 0};
    layout(proto, &a); /* sizes only: proto's buffers become NULL */
    if (a.overflow || size > SIZE_MAX / 2 - a.used)
        return NULL;
    /* calloc: large blocks come as fresh zero pages, touched only when used */
    unsigned char *obj = calloc(1, size + SRP_ARENA_ALIGN - 1 + a.used);
    if (!obj)
        return NULL;
    memcpy(obj, proto, size);
    const uintptr_t end = (uintptr_t)(obj + size);
    a.base = obj + size + (SRP_ARENA_ALIGN - end % SRP_ARENA_ALIGN) % SRP_ARENA_ALIGN;
    a.used = 0;
    layout(obj, &a);
    return obj;
}
