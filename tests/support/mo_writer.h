/* Writing gettext .mo catalogs byte by byte, as GNU msgfmt lays them out,
 * for the tests of the translation job's reader, corpus and trainer. */
#ifndef MO_WRITER_H
#define MO_WRITER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *original, *translation;
    size_t original_len, translation_len; /* with inner NULs (plurals) */
} mo_entry;

/* An entry of two string literals (their inner NULs kept). */
#define MO_ENTRY(o, t)                                                                             \
    {                                                                                              \
        o, t, sizeof(o) - 1, sizeof(t) - 1                                                         \
    }

/* The header (28 bytes), the original table, the translation table, then
 * the strings, each followed by a NUL, into buf (room for all of it).
 * Returns the size written. */
size_t mo_write(uint8_t *buf, const mo_entry *e, uint32_t n, int big_endian);

#endif
