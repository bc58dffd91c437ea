/* chrF2 (chrf.h): n-grams as sorted keys, matches by a merge. */
#include "chrf.h"

#include <stdlib.h>
#include <string.h>

/* A character that is not valid UTF-8: above every code point. */
#define INVALID_BYTE_BASE 0x110000u

/* str.isspace(): Unicode White_Space less the few that are not (none in
 * this list), i.e. bidirectional class WS, B or S, or category Zs. */
static int is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* The code point at s[0..len) and its byte count; an invalid sequence
 * (bad lead or continuation byte, overlong, a surrogate, past U+10FFFF,
 * cut short) is one character INVALID_BYTE_BASE + its first byte. */
static uint32_t decode(const uint8_t *s, size_t len, size_t *used)
{
    const uint8_t b = s[0];
    size_t n = b < 0x80             ? 1
               : (b & 0xe0) == 0xc0 ? 2
               : (b & 0xf0) == 0xe0 ? 3
               : (b & 0xf8) == 0xf0 ? 4
                                    : 0;
    static const uint32_t k_min[5] = {0, 0, 0x80, 0x800, 0x10000};
    *used = 1;
    if (n == 1)
        return b;
    if (n == 0 || n > len)
        return INVALID_BYTE_BASE + b;
    uint32_t c = b & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return INVALID_BYTE_BASE + b;
        c = c << 6 | (s[i] & 0x3f);
    }
    if (c < k_min[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return INVALID_BYTE_BASE + b;
    *used = n;
    return c;
}

/* The characters of s[0..len) that are not whitespace, into chars (room
 * for len); their count. */
static size_t characters(const char *s, size_t len, uint32_t *chars)
{
    size_t count = 0;
    for (size_t at = 0, used; at < len; at += used) {
        const uint32_t c = decode((const uint8_t *)s + at, len - at, &used);
        if (!is_space(c))
            chars[count++] = c;
    }
    return count;
}

/* An n-gram of up to 6 characters of 21 bits each, 3 to a word. */
typedef struct {
    uint64_t hi, lo;
} ngram_key;

static int key_compare(const void *a, const void *b)
{
    const ngram_key *x = a, *y = b;
    if (x->hi != y->hi)
        return x->hi < y->hi ? -1 : 1;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* The count - n + 1 n-grams of chars, sorted, into keys; their number. */
static size_t ngrams(const uint32_t *chars, size_t count, size_t n, ngram_key *keys)
{
    if (count < n)
        return 0;
    const size_t m = count - n + 1;
    for (size_t i = 0; i < m; i++) {
        ngram_key k = {0, 0};
        for (size_t j = 0; j < n; j++) {
            uint64_t *word = j < 3 ? &k.hi : &k.lo;
            *word = *word << 21 | chars[i + j];
        }
        keys[i] = k;
    }
    qsort(keys, m, sizeof(ngram_key), key_compare);
    return m;
}

/* sum over distinct n-grams of min(count in a, count in b): a merge of
 * the two sorted lists. */
static uint64_t common(const ngram_key *a, size_t na, const ngram_key *b, size_t nb)
{
    uint64_t matches = 0;
    size_t i = 0, j = 0;
    while (i < na && j < nb) {
        const int c = key_compare(&a[i], &b[j]);
        if (c == 0)
            matches++;
        i += c <= 0;
        j += c >= 0;
    }
    return matches;
}

int mt_chrf_add(mt_chrf_stats *stats, const char *hypothesis, size_t hypothesis_len,
                const char *reference, size_t reference_len)
{
    const size_t room = hypothesis_len + reference_len + 1;
    uint32_t *chars = malloc(sizeof(uint32_t) * room);
    ngram_key *keys = malloc(sizeof(ngram_key) * room);
    if (!chars || !keys) {
        free(chars);
        free(keys);
        return -1;
    }
    uint32_t *hyp = chars, *ref = chars + hypothesis_len;
    const size_t nh = characters(hypothesis, hypothesis_len, hyp);
    const size_t nr = characters(reference, reference_len, ref);
    for (size_t n = 1; n <= MT_CHRF_ORDER; n++) {
        ngram_key *kh = keys, *kr = keys + hypothesis_len;
        const size_t mh = ngrams(hyp, nh, n, kh), mr = ngrams(ref, nr, n, kr);
        stats->hypothesis[n - 1] += mh;
        stats->reference[n - 1] += mr;
        stats->matches[n - 1] += common(kh, mh, kr, mr);
    }
    free(chars);
    free(keys);
    return 0;
}

double mt_chrf_score(const mt_chrf_stats *stats)
{
    double precision = 0.0, recall = 0.0;
    int orders = 0;
    for (int i = 0; i < MT_CHRF_ORDER; i++)
        if (stats->hypothesis[i] > 0 && stats->reference[i] > 0) {
            precision += (double)stats->matches[i] / (double)stats->hypothesis[i];
            recall += (double)stats->matches[i] / (double)stats->reference[i];
            orders++;
        }
    if (orders == 0 || precision + recall == 0.0)
        return 0.0;
    precision /= orders;
    recall /= orders;
    const double b2 = MT_CHRF_BETA * MT_CHRF_BETA;
    return 100.0 * (1.0 + b2) * precision * recall / (b2 * precision + recall);
}
