/* The char LM's text (text.h): reading, splitting into documents, dropping
 * their repeats, the train/validation split and the count-model baselines. */
#define _POSIX_C_SOURCE 200809L /* scandir, open_memstream, lstat */

#include "text.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* Bytes to split into documents: at lines holding only "%" (fortune
 * files) or at blank lines (paragraphs); owned: what to free. */
typedef struct {
    const uint8_t *bytes;
    size_t len;
    int fortune_format;
    char *owned;
} raw_text;

/* The whole file into s; gzread reads plain files as they are, and a
 * memstream grows as it is written. */
static ex_code read_file(const char *path, raw_text *s, ex_error *err)
{
    gzFile f = gzopen(path, "rb");
    if (!f)
        return ex_fail(err, EX_FAILED, "cannot open %s: %s", path,
                       errno ? strerror(errno) : "out of memory");
    FILE *out = open_memstream(&s->owned, &s->len);
    char chunk[1 << 16];
    int n = 0, zerr = Z_OK;
    while (out && (n = gzread(f, chunk, sizeof(chunk))) > 0)
        fwrite(chunk, 1, (size_t)n, out);
    ex_code code =
        n < 0 ? ex_fail(err, EX_FAILED, "cannot read %s: %s", path, gzerror(f, &zerr)) : EX_OK;
    gzclose(f);
    const int held = out != NULL && fclose(out) == 0; /* every byte written */
    if (code == EX_OK && !held)
        code = ex_fail_status(err, SRP_ERR_NOMEM, "reading the text");
    s->bytes = (const uint8_t *)s->owned;
    return code;
}

/* A document's bytes, its trailing newlines cut; repeat: a document before
 * it holds the same bytes. */
typedef struct {
    const uint8_t *bytes;
    size_t len;
    int repeat;
} document;

static int blank_line(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return 0;
    return 1;
}

/* One document, its trailing newlines cut; an empty one is left out. */
static size_t add_document(document *docs, size_t count, const uint8_t *p, size_t n)
{
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    if (n > 0 && docs)
        docs[count] = (document){p, n, 0};
    return count + (n > 0);
}

/* The documents of s, into docs (NULL: counted only); how many. */
static size_t split_documents(const raw_text *s, document *docs)
{
    const uint8_t *text = s->bytes;
    size_t doc = 0, line = 0, count = 0;
    while (line < s->len) {
        const uint8_t *nl = memchr(text + line, '\n', s->len - line);
        const size_t end = nl ? (size_t)(nl - text) + 1 : s->len;
        const uint8_t *l = text + line;
        const size_t ll = end - line;
        const int separator = s->fortune_format
                                  ? (ll >= 1 && l[0] == '%' && blank_line(l + 1, ll - 1))
                                  : blank_line(l, ll);
        if (separator) {
            count = add_document(docs, count, text + doc, line - doc);
            doc = end;
        }
        line = end;
    }
    return add_document(docs, count, text + doc, s->len - doc);
}

static int compare_bytes(const document *x, const document *y)
{
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->bytes, y->bytes, x->len);
}

/* qsort's order of documents: by their bytes, copies in text order. */
static int by_bytes(const void *a, const void *b)
{
    const document *x = *(document *const *)a, *y = *(document *const *)b;
    const int c = compare_bytes(x, y);
    return c ? c : (x > y) - (x < y);
}

/* Marks every document that repeats the bytes of one before it: a repeated
 * fortune or Jargon File paragraph on both sides of the split would be
 * validation text the model has trained on. */
static int mark_repeats(document *docs, size_t count)
{
    document **sorted = malloc(sizeof(*sorted) * (count ? count : 1));
    if (!sorted)
        return 0;
    for (size_t i = 0; i < count; i++)
        sorted[i] = &docs[i];
    qsort(sorted, count, sizeof(*sorted), by_bytes);
    for (size_t i = 1; i < count; i++)
        sorted[i]->repeat = compare_bytes(sorted[i - 1], sorted[i]) == 0;
    free(sorted);
    return 1;
}

/* The split of the texts' documents, repeats dropped: every 10th kept
 * document validates, the others train, each followed by one "\n"; with
 * no 10th, the last tenth of the bytes validates. */
static ex_code split_texts(lm_text *t, const raw_text *src, size_t n, ex_error *err)
{
    memset(t, 0, sizeof(*t));
    size_t count = 0, size[2] = {0, 0}; /* train, val */
    for (size_t i = 0; i < n; i++)
        count += split_documents(&src[i], NULL);
    document *docs = malloc(sizeof(*docs) * (count ? count : 1));
    for (size_t i = 0, at = 0; docs && i < n; i++)
        at += split_documents(&src[i], docs + at);
    if (!docs || !mark_repeats(docs, count)) {
        free(docs);
        return ex_fail_status(err, SRP_ERR_NOMEM, "splitting the text");
    }
    for (size_t i = 0; i < count; i++)
        if (!docs[i].repeat)
            size[++t->documents % LM_VAL_EVERY == 0] += docs[i].len + 1;
    t->duplicates = count - t->documents;
    const size_t tenth = size[1] ? 0 : size[0] / LM_VAL_EVERY;
    uint8_t *part[2] = {size[0] ? malloc(size[0]) : NULL, malloc(size[1] + tenth + 1)};
    if (!part[0] || !part[1]) {
        free(docs);
        free(part[0]);
        free(part[1]);
        return size[0] ? ex_fail_status(err, SRP_ERR_NOMEM, "splitting the text")
                       : ex_fail(err, EX_USAGE, "the text is empty (no document holds a byte)");
    }
    size_t at[2] = {0, 0}, kept = 0;
    for (size_t i = 0; i < count; i++) {
        if (docs[i].repeat)
            continue;
        const int v = ++kept % LM_VAL_EVERY == 0;
        memcpy(part[v] + at[v], docs[i].bytes, docs[i].len);
        part[v][at[v] + docs[i].len] = '\n';
        at[v] += docs[i].len + 1;
    }
    free(docs);
    memcpy(part[1], part[0] + size[0] - tenth, tenth);
    t->train = part[0];
    t->train_len = size[0] - tenth;
    t->val = part[1];
    t->val_len = size[1] + tenth;
    return EX_OK;
}

ex_code lm_text_from_buffer(lm_text *t, const uint8_t *bytes, size_t len, ex_error *err)
{
    const raw_text s = {bytes, len, 0, NULL};
    return split_texts(t, &s, 1, err);
}

ex_code lm_text_load_file(lm_text *t, const char *path, ex_error *err)
{
    raw_text s = {NULL, 0, 0, NULL};
    ex_code code = read_file(path, &s, err);
    if (code == EX_OK && s.len == 0)
        code = ex_fail(err, EX_USAGE, "%s is empty", path);
    if (code == EX_OK && (code = split_texts(t, &s, 1, err)) != EX_OK)
        snprintf(err->message + strlen(err->message), sizeof(err->message) - strlen(err->message),
                 " (%s)", path);
    free(s.owned);
    return code;
}

/* The fortune files: not the .dat indexes; the .u8 links lstat leaves out. */
static int fortune_name(const struct dirent *e)
{
    const size_t n = strlen(e->d_name);
    return e->d_name[0] != '.' && !(n >= 4 && strcmp(e->d_name + n - 4, ".dat") == 0);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

ex_code lm_text_load_default(lm_text *t, ex_error *err)
{
    struct dirent **names;
    const int count = scandir(LM_FORTUNES_DIR, &names, fortune_name, by_name);
    if (count < 0)
        return ex_fail(err, EX_FAILED,
                       "cannot open %s (%s): install the text with sudo apt-get install fortunes "
                       "jargon-text, or pass --text FILE",
                       LM_FORTUNES_DIR, strerror(errno));
    raw_text *s = calloc((size_t)count + 1, sizeof(*s)); /* the fortune files, the Jargon File */
    size_t n = 0;
    struct stat st;
    ex_code code = s ? EX_OK : ex_fail_status(err, SRP_ERR_NOMEM, "reading the text");
    for (int i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", LM_FORTUNES_DIR, names[i]->d_name);
        if (code == EX_OK && lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            s[n].fortune_format = 1;
            code = read_file(path, &s[n++], err);
        }
        free(names[i]);
    }
    free(names);
    if (code == EX_OK && n == 0)
        code = ex_fail(err, EX_FAILED,
                       "no fortune files in %s: sudo apt-get install fortunes, or pass --text FILE",
                       LM_FORTUNES_DIR);
    else if (code == EX_OK && stat(LM_JARGON_FILE, &st) != 0)
        code = ex_fail(err, EX_FAILED,
                       "%s is missing: sudo apt-get install jargon-text, or pass --text FILE",
                       LM_JARGON_FILE);
    else if (code == EX_OK)
        code = read_file(LM_JARGON_FILE, &s[n++], err);
    if (code == EX_OK)
        code = split_texts(t, s, n, err);
    for (size_t i = 0; i < n; i++)
        free(s[i].owned);
    free(s);
    return code;
}

void lm_text_free(lm_text *t)
{
    free(t->train);
    free(t->val);
    memset(t, 0, sizeof(*t));
}

ex_code lm_text_check_context(const lm_text *t, size_t context, const char *source, ex_error *err)
{
    if (t->train_len <= context || t->val_len <= context)
        return ex_fail(err, EX_USAGE,
                       "%s is too short for a context of %zu bytes: its training text has %zu "
                       "bytes and its validation text %zu; both need more than the context "
                       "(use a longer text or a smaller --context)",
                       source, context, t->train_len, t->val_len);
    return EX_OK;
}

ex_code lm_baselines_compute(const lm_text *t, lm_baselines *out, ex_error *err)
{
    if (t->train_len < 2 || t->val_len < 2)
        return ex_fail(err, EX_USAGE, "the text is too short for the count models");
    double *pair = calloc(256 * 256, sizeof(double)); /* [a][b]: count of ab */
    if (!pair)
        return ex_fail_status(err, SRP_ERR_NOMEM, "bigram counts");
    double single[256] = {0}, context[256] = {0}, followers[256] = {0}, unigram[256];
    for (size_t i = 0; i < t->train_len; i++)
        single[t->train[i]] += 1.0;
    for (size_t i = 0; i + 1 < t->train_len; i++) {
        double *c = &pair[t->train[i] * 256 + t->train[i + 1]];
        followers[t->train[i]] += *c == 0.0;
        *c += 1.0;
        context[t->train[i]] += 1.0;
    }
    for (int b = 0; b < 256; b++)
        unigram[b] = (single[b] + 1.0) / ((double)t->train_len + 256.0);
    double uni_bits = -log2(unigram[t->val[0]]), bi_bits = 0.0;
    for (size_t i = 1; i < t->val_len; i++) {
        const uint8_t a = t->val[i - 1], b = t->val[i];
        uni_bits -= log2(unigram[b]);
        const double p = context[a] > 0.0 ? (pair[a * 256 + b] + followers[a] * unigram[b]) /
                                                (context[a] + followers[a])
                                          : unigram[b];
        bi_bits -= log2(p);
    }
    free(pair);
    out->unigram_bpc = uni_bits / (double)t->val_len;
    out->bigram_bpc = bi_bits / (double)(t->val_len - 1);
    return EX_OK;
}
