/* CRC-32 of any length: zlib's crc32() takes a uInt length (32 bits), so
 * buffers of 4 GiB or more go through it in chunks, the CRC carried from
 * one chunk to the next. Checkpoints (their trailer) and the replica check
 * of dist.c use it. */
#include <zlib.h>

#include "crc32.h"

uint32_t srp_crc32_in_chunks(uint32_t crc, const unsigned char *p, size_t n, size_t chunk)
{
    uLong c = crc;
    while (n > 0) {
        const size_t take = n < chunk ? n : chunk;
        c = crc32(c, p, (uInt)take);
        p += take;
        n -= take;
    }
    return (uint32_t)c;
}

uint32_t srp_crc32(uint32_t crc, const unsigned char *p, size_t n)
{
    return srp_crc32_in_chunks(crc, p, n, SRP_CRC32_CHUNK);
}
