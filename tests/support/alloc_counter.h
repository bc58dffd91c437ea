/* Counts heap allocations made through malloc/calloc/realloc/posix_memalign
 * while enabled, by interposing them (glibc's __libc_* do the real work).
 * Only for the non-sanitizer build: ASan has its own allocator.
 *
 * Calls made from inside a BLAS backend are counted apart: OpenBLAS's
 * threaded GEMMs malloc and free a job table on every call (the Debian build
 * has MAX_THREADS = 64), and oneDNN's GEMMs take their packing buffers from
 * the heap, which no caller can avoid. What the tests assert is that the
 * library's own code allocates nothing. */
#ifndef SRP_ALLOC_COUNTER_H
#define SRP_ALLOC_COUNTER_H

#include <stddef.h>

void alloc_counter_start(void);
/* Stops counting and returns the number of allocations since start, not
 * counting those made inside OpenBLAS or oneDNN (*blas_count gets them; may
 * be NULL). */
size_t alloc_counter_stop(size_t *blas_count);

#endif
