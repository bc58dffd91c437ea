/* Reading .mo message catalogs (mo.h). */
#define _POSIX_C_SOURCE 200809L /* strnlen */
#include "mo.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *bytes;
    size_t len;
    int big_endian;
} mo_file;

/* The 32-bit word at offset at (the caller has checked at + 4 <= len). */
static uint32_t word_at(const mo_file *f, size_t at)
{
    const uint8_t *p = f->bytes + at;
    return f->big_endian ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                         : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* String i of the table at table_offset: its bytes and length, checked
 * against the file's end (in 64 bits: offset + length cannot wrap). */
static ex_code string_at(const mo_file *f, uint32_t table_offset, size_t i, const char *table,
                         const char **s, size_t *n, ex_error *err)
{
    const uint64_t entry = (uint64_t)table_offset + 8u * (uint64_t)i;
    const uint32_t length = word_at(f, (size_t)entry), offset = word_at(f, (size_t)entry + 4);
    if ((uint64_t)offset + length + 1 > f->len)
        return ex_fail(err, EX_FAILED,
                       "%s string %zu (table entry at offset %llu): %u bytes at offset %u run "
                       "past the end of the file (%zu bytes)",
                       table, i, (unsigned long long)entry, length, offset, f->len);
    if (f->bytes[(size_t)offset + length] != 0)
        return ex_fail(err, EX_FAILED, "%s string %zu at offset %u: no NUL after its %u bytes",
                       table, i, offset, length);
    *s = (const char *)f->bytes + offset;
    *n = length;
    return EX_OK;
}

/* The message an original string holds: after its context's "\4", and
 * before the plural's NUL. */
static void message_of(const char **s, size_t *n)
{
    const char *ctx = memchr(*s, '\4', *n);
    if (ctx) {
        *n -= (size_t)(ctx + 1 - *s);
        *s = ctx + 1;
    }
    *n = strnlen(*s, *n);
}

static ex_code parse_header(mo_file *f, uint32_t *n, uint32_t *o, uint32_t *t, ex_error *err)
{
    if (f->len < MT_MO_HEADER_BYTES)
        return ex_fail(err, EX_FAILED, "%zu bytes: too short for a .mo header (%d bytes)", f->len,
                       MT_MO_HEADER_BYTES);
    f->big_endian = 0;
    if (word_at(f, 0) != MT_MO_MAGIC) {
        f->big_endian = 1;
        if (word_at(f, 0) != MT_MO_MAGIC)
            return ex_fail(err, EX_FAILED,
                           "not a .mo file: the magic is 0x%08x, not 0x%08x in "
                           "either byte order",
                           word_at(f, 0), MT_MO_MAGIC);
    }
    const uint32_t revision = word_at(f, 4);
    if (revision >> 16 > 1)
        return ex_fail(err, EX_FAILED, "major revision %u (offset 4): only 0 and 1 are known",
                       revision >> 16);
    *n = word_at(f, 8);
    *o = word_at(f, 12);
    *t = word_at(f, 16);
    const uint32_t offsets[2] = {*o, *t};
    for (int k = 0; k < 2; k++)
        if ((uint64_t)offsets[k] + 8u * (uint64_t)*n > f->len)
            return ex_fail(err, EX_FAILED,
                           "the %s table (offset %d): %u entries at offset %u run past the end "
                           "of the file (%zu bytes)",
                           k ? "translation" : "original", k ? 16 : 12, *n, offsets[k], f->len);
    return EX_OK;
}

ex_code mt_mo_parse(const uint8_t *bytes, size_t len, mt_mo_catalog *cat, ex_error *err)
{
    memset(cat, 0, sizeof(*cat));
    mo_file f = {bytes, len, 0};
    uint32_t n = 0, o = 0, t = 0;
    ex_code code = parse_header(&f, &n, &o, &t, err);
    if (code != EX_OK)
        return code;
    cat->pairs = malloc(sizeof(mt_mo_pair) * (n ? n : 1));
    if (!cat->pairs)
        return ex_fail(err, EX_FAILED, "no memory for %u messages", n);
    cat->entries = n;
    for (size_t i = 0; i < n && code == EX_OK; i++) {
        mt_mo_pair p;
        code = string_at(&f, o, i, "original", &p.english, &p.english_len, err);
        if (code == EX_OK)
            code = string_at(&f, t, i, "translation", &p.translation, &p.translation_len, err);
        if (code != EX_OK)
            break;
        message_of(&p.english, &p.english_len);
        p.translation_len = strnlen(p.translation, p.translation_len); /* the first form */
        if (p.english_len == 0)
            cat->empty++;
        else if (p.translation_len == 0)
            cat->untranslated++;
        else
            cat->pairs[cat->count++] = p;
    }
    if (code != EX_OK)
        mt_mo_free(cat);
    return code;
}

void mt_mo_free(mt_mo_catalog *cat)
{
    free(cat->pairs);
    memset(cat, 0, sizeof(*cat));
}
