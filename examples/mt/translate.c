/* Greedy decoding and beam search over the decoder's caches (translate.h). */
#include "translate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/tensors.h"

struct mt_translator {
    mt_model *m;
    mt_decoder *dec;
    size_t max_sources, beam, width; /* width: max_tgt + 1 bytes a text */
    uint32_t *src;                   /* [max_sources][max_src] */
    size_t *src_len, *limit;         /* [max_sources] */
    /* per sequence (source s, hypothesis j at row s beam + j) */
    uint32_t *tokens;       /* [rows]: the tokens the next step feeds */
    size_t *rows, *len;     /* [rows]: select's rows; each hypothesis's bytes */
    double *score;          /* [rows]: summed log probability (-inf: none) */
    char *text, *next_text; /* [rows][width]: the hypotheses' bytes, and the next ones' */
    /* per source */
    double *best;     /* the best finished score */
    char *best_text;  /* [max_sources][width] */
    size_t *finished; /* how many hypotheses have finished */
    int *done;
    /* beam search's candidates of one source: [2 beam] */
    double *cand_score;
    size_t *cand_parent;
    uint32_t *cand_token;
};

srp_status mt_translator_create(mt_translator **out, mt_model *m, size_t max_sources, size_t beam)
{
    if (!out || !m || max_sources == 0 || beam == 0 || max_sources > mt_get_config(m)->max_batch)
        return SRP_ERR_INVALID_ARG;
    *out = NULL;
    mt_translator *tr = calloc(1, sizeof(*tr));
    if (!tr)
        return SRP_ERR_NOMEM;
    const mt_config *c = mt_get_config(m);
    const size_t rows = max_sources * beam, width = c->max_tgt + 1;
    tr->m = m;
    tr->max_sources = max_sources;
    tr->beam = beam;
    tr->width = width;
    srp_status st = mt_decoder_create(&tr->dec, m, rows);
    tr->src = malloc(sizeof(uint32_t) * max_sources * c->max_src);
    tr->src_len = malloc(sizeof(size_t) * max_sources);
    tr->limit = malloc(sizeof(size_t) * max_sources);
    tr->tokens = malloc(sizeof(uint32_t) * rows);
    tr->rows = malloc(sizeof(size_t) * rows);
    tr->len = malloc(sizeof(size_t) * rows);
    tr->score = malloc(sizeof(double) * rows);
    tr->text = malloc(rows * width);
    tr->next_text = malloc(rows * width);
    tr->best = malloc(sizeof(double) * max_sources);
    tr->best_text = malloc(max_sources * width);
    tr->finished = malloc(sizeof(size_t) * max_sources);
    tr->done = malloc(sizeof(int) * max_sources);
    tr->cand_score = malloc(sizeof(double) * 2 * beam);
    tr->cand_parent = malloc(sizeof(size_t) * 2 * beam);
    tr->cand_token = malloc(sizeof(uint32_t) * 2 * beam);
    if (st == SRP_OK &&
        (!tr->src || !tr->src_len || !tr->limit || !tr->tokens || !tr->rows || !tr->len ||
         !tr->score || !tr->text || !tr->next_text || !tr->best || !tr->best_text ||
         !tr->finished || !tr->done || !tr->cand_score || !tr->cand_parent || !tr->cand_token))
        st = SRP_ERR_NOMEM;
    if (st != SRP_OK) {
        mt_translator_destroy(tr);
        return st;
    }
    *out = tr;
    return SRP_OK;
}

void mt_translator_destroy(mt_translator *tr)
{
    if (!tr)
        return;
    mt_decoder_destroy(tr->dec);
    free(tr->src);
    free(tr->src_len);
    free(tr->limit);
    free(tr->tokens);
    free(tr->rows);
    free(tr->len);
    free(tr->score);
    free(tr->text);
    free(tr->next_text);
    free(tr->best);
    free(tr->best_text);
    free(tr->finished);
    free(tr->done);
    free(tr->cand_score);
    free(tr->cand_parent);
    free(tr->cand_token);
    free(tr);
}

/* The sources, padded to the longest (cut to max_src), encoded; their
 * length limits. */
static srp_status encode(mt_translator *tr, const char *const *sources, size_t n)
{
    const mt_config *c = mt_get_config(tr->m);
    size_t S = 1;
    for (size_t r = 0; r < n; r++) {
        size_t ls = strlen(sources[r]);
        ls = ls > c->max_src ? c->max_src : ls;
        S = ls > S ? ls : S;
        tr->limit[r] = 2 * ls + 16 < c->max_tgt ? 2 * ls + 16 : c->max_tgt;
        tr->src_len[r] = ls ? ls : 1; /* an empty text reads as one byte 0 */
    }
    for (size_t r = 0; r < n; r++)
        for (size_t i = 0; i < S; i++)
            tr->src[r * S + i] = i < tr->src_len[r] ? (uint8_t)sources[r][i] : 0;
    return mt_encode(tr->m, tr->src, tr->src_len, n, S, SRP_EVAL);
}

/* The most likely of the bytes and EOS (BOS is never an output). */
static uint32_t most_likely(const float *z)
{
    uint32_t best = MT_EOS;
    for (uint32_t v = 0; v < 256; v++)
        if (z[v] > z[best])
            best = v;
    return best;
}

static srp_status greedy(mt_translator *tr, size_t n, char **out)
{
    size_t left = n;
    for (size_t r = 0; r < n; r++) {
        tr->len[r] = 0;
        tr->done[r] = 0;
        tr->tokens[r] = MT_BOS;
    }
    EX_TRY(mt_decoder_start(tr->dec));
    while (left > 0) {
        const float *logits;
        EX_TRY(mt_decoder_step(tr->dec, tr->tokens, n, &logits));
        for (size_t r = 0; r < n; r++) {
            const uint32_t v = tr->done[r] ? 0 : most_likely(logits + r * MT_VOCAB);
            if (!tr->done[r] && (v == MT_EOS || tr->len[r] == tr->limit[r])) {
                tr->done[r] = 1;
                left--;
            } else if (!tr->done[r]) {
                out[r][tr->len[r]++] = (char)v;
            }
            tr->tokens[r] = tr->done[r] ? 0 : v;
        }
    }
    for (size_t r = 0; r < n; r++)
        out[r][tr->len[r]] = '\0';
    return SRP_OK;
}

/* A finished hypothesis of source s: row i's bytes, summed log
 * probability `score`, normalised by its length with EOS. */
static void finish_hypothesis(mt_translator *tr, size_t s, size_t i, double score)
{
    const double norm = score / (double)(tr->len[i] + 1);
    if (tr->finished[s]++ == 0 || norm > tr->best[s]) {
        tr->best[s] = norm;
        memcpy(tr->best_text + s * tr->width, tr->text + i * tr->width, tr->len[i]);
        tr->best_text[s * tr->width + tr->len[i]] = '\0';
    }
}

/* Inserts a candidate into source s's list of the best 2 beam, sorted. */
static void offer(mt_translator *tr, size_t *count, double score, size_t parent, uint32_t token)
{
    const size_t cap = 2 * tr->beam;
    if (*count == cap && score <= tr->cand_score[cap - 1])
        return;
    size_t at = *count < cap ? (*count)++ : cap - 1;
    for (; at > 0 && tr->cand_score[at - 1] < score; at--) {
        tr->cand_score[at] = tr->cand_score[at - 1];
        tr->cand_parent[at] = tr->cand_parent[at - 1];
        tr->cand_token[at] = tr->cand_token[at - 1];
    }
    tr->cand_score[at] = score;
    tr->cand_parent[at] = parent;
    tr->cand_token[at] = token;
}

/* Source s's next hypotheses from the logits of its rows. */
static void extend(mt_translator *tr, size_t s, const float *logits)
{
    const size_t K = tr->beam, w = tr->width;
    size_t count = 0;
    for (size_t j = 0; j < K; j++) {
        const size_t i = s * K + j;
        if (tr->score[i] == -INFINITY)
            continue;
        if (tr->len[i] == tr->limit[s]) { /* as long as allowed: finished as it is */
            finish_hypothesis(tr, s, i, tr->score[i]);
            continue;
        }
        const float *z = logits + i * MT_VOCAB;
        double max = z[MT_EOS], sum = 0.0;
        for (uint32_t v = 0; v < 256; v++)
            max = fmax(max, z[v]);
        for (uint32_t v = 0; v <= MT_EOS; v++)
            if (v != MT_BOS)
                sum += exp((double)z[v] - max);
        const double lse = max + log(sum);
        for (uint32_t v = 0; v <= MT_EOS; v++)
            if (v != MT_BOS)
                offer(tr, &count, tr->score[i] + (double)z[v] - lse, i, v);
    }
    size_t kept = 0;
    for (size_t c = 0; c < count && kept < K && tr->finished[s] < K; c++) {
        const size_t parent = tr->cand_parent[c];
        if (tr->cand_token[c] == MT_EOS) {
            finish_hypothesis(tr, s, parent, tr->cand_score[c]);
            continue;
        }
        const size_t i = s * K + kept++;
        tr->rows[i] = parent;
        tr->score[i] = tr->cand_score[c];
        tr->tokens[i] = tr->cand_token[c];
        memcpy(tr->next_text + i * w, tr->text + parent * w, tr->len[parent]);
        tr->next_text[i * w + tr->len[parent]] = (char)tr->cand_token[c];
    }
    if (tr->finished[s] >= K || kept == 0)
        tr->done[s] = 1;
    for (size_t j = kept; j < K; j++) { /* no hypothesis left there */
        const size_t i = s * K + j;
        tr->rows[i] = s * K;
        tr->score[i] = -INFINITY;
        tr->tokens[i] = 0;
    }
}

static srp_status beam_search(mt_translator *tr, size_t n, char **out)
{
    const size_t K = tr->beam, rows = n * K, w = tr->width;
    for (size_t s = 0; s < n; s++) {
        tr->finished[s] = 0;
        tr->done[s] = 0;
        for (size_t j = 0; j < K; j++) {
            const size_t i = s * K + j;
            tr->rows[i] = s; /* K copies of each source's memory */
            tr->len[i] = 0;
            tr->score[i] = j == 0 ? 0.0 : -INFINITY;
            tr->tokens[i] = MT_BOS;
        }
    }
    EX_TRY(mt_decoder_start(tr->dec));
    EX_TRY(mt_decoder_select(tr->dec, tr->rows, rows));
    for (size_t left = n; left > 0;) {
        const float *logits;
        EX_TRY(mt_decoder_step(tr->dec, tr->tokens, rows, &logits));
        /* each source's rows: the next hypotheses (a done one keeps its rows) */
        size_t new_len[rows];
        for (size_t i = 0; i < rows; i++)
            tr->rows[i] = i;
        for (size_t s = 0; s < n; s++) {
            if (tr->done[s])
                continue;
            extend(tr, s, logits);
            left -= tr->done[s];
        }
        for (size_t i = 0; i < rows; i++)
            new_len[i] = tr->done[i / K]             ? tr->len[i]
                         : tr->score[i] == -INFINITY ? 0
                                                     : tr->len[tr->rows[i]] + 1;
        for (size_t i = 0; i < rows; i++)
            if (!tr->done[i / K]) {
                tr->len[i] = new_len[i];
                memcpy(tr->text + i * w, tr->next_text + i * w, tr->len[i]);
            }
        if (left > 0)
            EX_TRY(mt_decoder_select(tr->dec, tr->rows, rows));
    }
    for (size_t s = 0; s < n; s++)
        memcpy(out[s], tr->best_text + s * w, strlen(tr->best_text + s * w) + 1);
    return SRP_OK;
}

srp_status mt_translate(mt_translator *tr, const char *const *sources, size_t n, char **out)
{
    if (!tr || !sources || !out || n == 0 || n > tr->max_sources)
        return SRP_ERR_INVALID_ARG;
    EX_TRY(encode(tr, sources, n));
    return tr->beam == 1 ? greedy(tr, n, out) : beam_search(tr, n, out);
}
