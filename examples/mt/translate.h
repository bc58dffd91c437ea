/* Translating with the model: greedy decoding and beam search, both on
 * the decoder's caches (mt_decoder: one position per call), over a batch
 * of sources.
 *
 * Each source is cut to the model's max_src bytes; its translation ends
 * at EOS, or at 2 len + 16 bytes (and max_tgt), len the source's bytes.
 * Greedy (beam 1): the most likely byte or EOS at each position. Beam
 * search (beam K > 1): K hypotheses a source; each position extends every
 * live one by every byte and EOS and keeps the K best by summed log
 * probability (the first position from one hypothesis, so that they
 * differ); a hypothesis that takes EOS (or reaches the length limit) is
 * finished with the score log P / (its bytes + 1), the length-normalised
 * score; a source is done when K hypotheses have finished, and its
 * translation is the finished one of the best score (at the length limit
 * every live one finishes, so one always has). */
#ifndef MT_TRANSLATE_H
#define MT_TRANSLATE_H

#include <stddef.h>

#include "mt_model.h"

typedef struct mt_translator mt_translator;

/* For up to max_sources sources a call, beam >= 1 (1: greedy); the model's
 * max_batch must hold max_sources, its decoder's max_sources x beam
 * sequences. Refers to the model (destroy it first). */
srp_status mt_translator_create(mt_translator **out, mt_model *m, size_t max_sources, size_t beam);
void mt_translator_destroy(mt_translator *tr);

/* sources[0..n) (NUL-terminated), n <= max_sources -> out[i]: room for
 * max_tgt + 1 bytes, the translation NUL-terminated. Runs the model's
 * encoder in eval (its last encoding is this batch's after). */
srp_status mt_translate(mt_translator *tr, const char *const *sources, size_t n, char **out);

#endif
