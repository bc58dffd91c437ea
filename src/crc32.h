/* CRC-32 of any length (crc32.c). Private to the library; internal.h
 * includes it. Kept apart so that a test can compile crc32.c alone. */
#ifndef SRP_CRC32_H
#define SRP_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* zlib's CRC-32 of n bytes, continuing crc (0 to start), whatever n: zlib
 * takes at most a uInt at a time, so n goes in chunks of at most `chunk`
 * bytes (srp_crc32: SRP_CRC32_CHUNK, 1 GiB). */
#define SRP_CRC32_CHUNK ((size_t)1 << 30)
uint32_t srp_crc32(uint32_t crc, const unsigned char *p, size_t n);
uint32_t srp_crc32_in_chunks(uint32_t crc, const unsigned char *p, size_t n, size_t chunk);

#endif
