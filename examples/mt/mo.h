/* GNU gettext message catalogs (.mo files): the English messages of a
 * program with their translations, the translation job's parallel text.
 *
 * The format (GNU gettext manual, "The Format of GNU MO Files"): a header
 * of 32-bit words in the file's byte order, which the magic 0x950412de
 * tells (either order is read): magic, revision, N, O, T, ... Then two
 * tables of N (length, offset) pairs at O (the original strings) and T
 * (the translations); string i is `length` bytes at `offset`, followed by
 * a NUL. An original "ctxt\4id" has a context; "id\0plural" is a plural
 * entry, whose translation holds its forms separated by NULs. Entry 0 is
 * usually the header (the empty message), whose translation is metadata.
 *
 * Every offset and length is checked against the file's size before it
 * is read: a truncated, corrupt or foreign file is refused with what is
 * wrong, never read past its end. */
#ifndef MT_MO_H
#define MT_MO_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define MT_MO_MAGIC 0x950412deu
#define MT_MO_HEADER_BYTES 28 /* magic, revision, N, O, T, hash size, hash offset */

/* One message: pointers into the buffer given to mt_mo_parse (not NUL-
 * terminated at len: plural forms follow a NUL inside). */
typedef struct {
    const char *english, *translation;
    size_t english_len, translation_len;
} mt_mo_pair;

typedef struct {
    mt_mo_pair *pairs; /* the messages kept, in the file's order */
    size_t count;
    size_t entries;      /* N: every entry of the file */
    size_t empty;        /* skipped: the header entry, or another empty message */
    size_t untranslated; /* skipped: an empty translation */
} mt_mo_catalog;

/* Parses a whole .mo file held in bytes[0..len). Keeps each message with
 * a translation: the message without its context (the text after "\4"),
 * and of a plural entry the singular and the first translated form.
 * Errors (EX_FAILED, the message says which field at which offset, and
 * cat is left empty): fewer than 28 bytes; a wrong magic; a major revision
 * other than 0 or 1; a table or string that runs past the end; a string
 * without its NUL. No memory: EX_FAILED. */
ex_code mt_mo_parse(const uint8_t *bytes, size_t len, mt_mo_catalog *cat, ex_error *err);
void mt_mo_free(mt_mo_catalog *cat);

#endif
