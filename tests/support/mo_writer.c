/* .mo catalogs for the tests (mo_writer.h). */
#include "mo_writer.h"

#include <string.h>

#include "mo.h"

size_t mo_write(uint8_t *buf, const mo_entry *e, uint32_t n, int big_endian)
{
    size_t at = 0;
#define PUT(v)                                                                                     \
    do {                                                                                           \
        const uint32_t w = (v);                                                                    \
        for (int k = 0; k < 4; k++)                                                                \
            buf[at + (size_t)k] = (uint8_t)(w >> (big_endian ? 24 - 8 * k : 8 * k));               \
        at += 4;                                                                                   \
    } while (0)
    const uint32_t o = 28, t = o + 8 * n;
    PUT(MT_MO_MAGIC);
    PUT(0);
    PUT(n);
    PUT(o);
    PUT(t);
    PUT(0);
    PUT(t + 8 * n);
    uint32_t strings = t + 8 * n;
    for (int side = 0; side < 2; side++)
        for (uint32_t i = 0; i < n; i++) {
            const uint32_t len = (uint32_t)(side ? e[i].translation_len : e[i].original_len);
            PUT(len);
            PUT(strings);
            strings += len + 1;
        }
    for (int side = 0; side < 2; side++)
        for (uint32_t i = 0; i < n; i++) {
            const size_t len = side ? e[i].translation_len : e[i].original_len;
            memcpy(buf + at, side ? e[i].translation : e[i].original, len);
            at += len;
            buf[at++] = 0;
        }
#undef PUT
    return at;
}
