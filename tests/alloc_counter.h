/* Counts heap allocations made through malloc/calloc/realloc/posix_memalign
 * while enabled, by interposing them (glibc's __libc_* do the real work).
 * Only for the non-sanitizer build: ASan has its own allocator. */
#ifndef SRP_ALLOC_COUNTER_H
#define SRP_ALLOC_COUNTER_H

#include <stddef.h>

void alloc_counter_start(void);
/* Stops counting and returns the number of allocations since start. */
size_t alloc_counter_stop(void);

#endif
