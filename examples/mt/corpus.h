/* The translation job's parallel text: English messages and their
 * translations out of the gettext catalogs that Debian packages install
 * (/usr/share/locale/<lang>/LC_MESSAGES/<domain>.mo).
 *
 * Which catalogs: the manifest below, each with the package that installs
 * it (`scripts/install-deps.sh mt` installs them all), so that the corpus
 * is the same on every machine of one Debian release. What is kept: each
 * catalog's translated messages (mo.h: no header, no untranslated entry,
 * no context, a plural's first forms); then one of each repeated
 * (English, translation) pair, across catalogs too; then the pairs whose
 * two sides both fit max_bytes. Split by a hash of the English message,
 * so that no English message stands on two sides: 1 in 20 to the test
 * split, 1 in 20 to validation, the rest to training. The fingerprint
 * (FNV-1a, 64 bits, over every kept pair in order) says whether two
 * machines read the same corpus. */
#ifndef MT_CORPUS_H
#define MT_CORPUS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/error.h"

#define MT_LOCALE_DIR "/usr/share/locale"

typedef struct {
    const char *domain;  /* the catalog: <domain>.mo */
    const char *package; /* the Debian package that installs it */
} mt_catalog_source;

extern const mt_catalog_source mt_manifest[];
extern const size_t mt_manifest_count;

typedef enum { MT_TRAIN = 0, MT_VALIDATION, MT_TEST, MT_SPLITS } mt_split;

/* NUL-terminated UTF-8 (as the catalogs hold it), owned by the corpus. */
typedef struct {
    const char *english, *translation;
} mt_pair;

typedef struct {
    mt_pair *pairs[MT_SPLITS];
    size_t count[MT_SPLITS];
    size_t catalogs;   /* read */
    size_t refused;    /* skipped: truncated, corrupt or not a .mo file (each named in the log) */
    size_t messages;   /* translated messages in the catalogs read */
    size_t duplicates; /* dropped: a pair seen before */
    size_t too_long;   /* dropped: a side longer than max_bytes */
    uint64_t fingerprint;
    char *text; /* the pairs' bytes */
} mt_corpus;

/* The pairs of the catalogs at paths[0..n), in that order. A file that
 * cannot be read or parsed is skipped, named once in log with why, and
 * counted. Errors: max_bytes 0 (EX_USAGE); no memory; no pair left
 * (EX_FAILED, saying how many files were read and refused). */
ex_code mt_corpus_from_files(mt_corpus *c, const char *const *paths, size_t n, size_t max_bytes,
                             FILE *log, ex_error *err);
/* The manifest's catalogs for lang under locale_dir (a catalog the
 * machine lacks is left out: the count and the fingerprint say so). No
 * catalog for lang: EX_USAGE, listing the languages that have one. An
 * empty corpus: EX_FAILED, naming the command that installs the packages. */
ex_code mt_corpus_load(mt_corpus *c, const char *locale_dir, const char *lang, size_t max_bytes,
                       FILE *log, ex_error *err);
void mt_corpus_free(mt_corpus *c);

/* chrF2 (chrf.h) of split s with each English message taken as its own
 * translation: the score a translator has to beat. */
ex_code mt_copy_baseline(const mt_corpus *c, mt_split s, double *score, ex_error *err);

/* Which split an English message belongs to. */
mt_split mt_split_of(const char *english);

#endif
