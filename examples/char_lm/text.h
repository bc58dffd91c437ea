/* The char LM's text: bytes, split by document into training and
 * validation text, and the count models it is measured against.
 *
 * Default corpus: every fortune file of Debian's fortunes packages
 * (/usr/share/games/fortunes, documents separated by lines holding only
 * "%") and the Jargon File of jargon-text (jargon.txt.gz, documents =
 * paragraphs between blank lines), in sorted file order. --text FILE: its
 * paragraphs. A document whose bytes (trailing newlines aside) repeat
 * one seen before is dropped, so that no text is on both sides of the
 * split (the default corpus repeats 2,536 of its 27,074 documents: short
 * Jargon File paragraphs such as "[SI] See {quantifiers}." and its
 * contents' headings, and 83 fortunes, 79 of them across files). Every
 * 10th document kept (the 10th, 20th, ...) is validation text, the rest
 * training text; each document keeps its own bytes and is followed by one
 * "\n", so no document straddles the two. A text of fewer than 10
 * documents is split by bytes instead: its last tenth validates. */
#ifndef LM_TEXT_H
#define LM_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define LM_FORTUNES_DIR "/usr/share/games/fortunes"
#define LM_JARGON_FILE "/usr/share/doc/jargon-text/jargon.txt.gz"
#define LM_VAL_EVERY 10 /* every 10th document is validation text */

typedef struct {
    uint8_t *train, *val;
    size_t train_len, val_len;
    size_t documents;  /* kept, in all */
    size_t duplicates; /* dropped: repeats of a document kept */
} lm_text;

/* The default corpus; a missing package is an error that names it. */
ex_code lm_text_load_default(lm_text *t, ex_error *err);
/* Any file (plain, or gzip-compressed when it ends in .gz). Errors: a
 * missing or unreadable file, an empty one. */
ex_code lm_text_load_file(lm_text *t, const char *path, ex_error *err);
/* Builds the split from a buffer holding the whole text (for tests):
 * paragraphs as documents. */
ex_code lm_text_from_buffer(lm_text *t, const uint8_t *bytes, size_t len, ex_error *err);
void lm_text_free(lm_text *t);

/* Both parts must hold more than one context (context + 1 bytes: the
 * inputs and the next byte of the last). */
ex_code lm_text_check_context(const lm_text *t, size_t context, const char *source, ex_error *err);

/* Bits per character on the validation text of count models fit on the
 * training text, from exact counts: the unigram with add-one smoothing
 * over the 256 bytes, and the bigram interpolated with it by Witten-Bell
 * (P(b|a) = (c(ab) + n(a) P(b)) / (c(a) + n(a)), n(a) = the number of
 * different bytes seen after a), which needs no tuned constant. */
typedef struct {
    double unigram_bpc, bigram_bpc;
} lm_baselines;
ex_code lm_baselines_compute(const lm_text *t, lm_baselines *out, ex_error *err);

#endif
