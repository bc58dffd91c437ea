/* chrF2, the character n-gram F-score (Popović 2015), as sacreBLEU
 * computes its default chrF: character n-grams of orders 1 to 6, with
 * whitespace removed first; statistics summed over the corpus; per order
 * n, precision P_n = matches / hypothesis n-grams and recall R_n = matches /
 * reference n-grams, averaged over the orders where both counts are > 0;
 * then F_beta = (1 + beta^2) P R / (beta^2 P + R) with beta = 2 (recall
 * weighs 4 times as much), times 100. A match counts an n-gram as often as
 * it stands in both (the smaller of the two counts).
 *
 * Characters are Unicode code points decoded from UTF-8 (as Python's str);
 * a byte that is not valid UTF-8 counts as one character of its own, so
 * that a model's broken output is scored, not refused. Whitespace is what
 * Python's str.isspace() says, which sacreBLEU's regex \s follows. */
#ifndef MT_CHRF_H
#define MT_CHRF_H

#include <stddef.h>
#include <stdint.h>

#define MT_CHRF_ORDER 6
#define MT_CHRF_BETA 2.0

/* Counts per order (index n - 1), summed over the sentences added. */
typedef struct {
    uint64_t hypothesis[MT_CHRF_ORDER], reference[MT_CHRF_ORDER], matches[MT_CHRF_ORDER];
} mt_chrf_stats;

/* Adds one sentence pair's counts to stats (start from a zeroed struct).
 * Allocates its work arrays and frees them: -1 when out of memory, and
 * stats unchanged; else 0. */
int mt_chrf_add(mt_chrf_stats *stats, const char *hypothesis, size_t hypothesis_len,
                const char *reference, size_t reference_len);
/* chrF2 of the counts, in [0, 100]; 0 when no order has n-grams on both sides. */
double mt_chrf_score(const mt_chrf_stats *stats);

#endif
