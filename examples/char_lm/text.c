/* The char LM's text (text.h): reading, splitting into documents, the
 * train/validation split and the count-model baselines. */
#define _POSIX_C_SOURCE 200809L /* opendir, lstat, strdup */

#include "text.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* A growing byte buffer. */
typedef struct {
    uint8_t *data;
    size_t len, cap;
} byte_buf;

static int buf_append(byte_buf *b, const uint8_t *p, size_t n)
{
    if (n == 0) /* nothing to copy, and b->data may still be NULL */
        return 1;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 1;
}

/* The whole file; gzread reads plain files as they are. */
static ex_code read_file(const char *path, byte_buf *out, ex_error *err)
{
    gzFile f = gzopen(path, "rb");
    if (!f)
        return ex_fail(err, EX_FAILED, "cannot open %s: %s", path,
                       errno ? strerror(errno) : "out of memory");
    uint8_t chunk[1 << 16];
    int n;
    while ((n = gzread(f, chunk, sizeof(chunk))) > 0)
        if (!buf_append(out, chunk, (size_t)n)) {
            gzclose(f);
            return ex_fail_status(err, SRP_ERR_NOMEM, "reading the text");
        }
    int zerr = Z_OK;
    const char *msg = n < 0 ? gzerror(f, &zerr) : NULL;
    gzclose(f);
    if (n < 0)
        return ex_fail(err, EX_FAILED, "cannot read %s: %s", path, msg);
    return EX_OK;
}

/* A document already split: where its bytes went (train or val buffer,
 * offset, length), and their hash; hash 0 marks an empty slot. */
typedef struct {
    uint64_t hash;
    size_t offset, len;
    int in_val;
} seen_doc;

/* Where the documents go, one after the other, and the ones seen so far
 * (an open-addressing table), so that a repeat is dropped. */
typedef struct {
    byte_buf train, val;
    size_t documents, duplicates;
    seen_doc *seen;
    size_t seen_cap; /* a power of 2, kept at most half full */
} splitter;

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h ? h : 1;
}

/* Doubles the table (or makes its first one): 0 when out of memory. */
static int seen_grow(splitter *s)
{
    const size_t cap = s->seen_cap ? 2 * s->seen_cap : 1024;
    seen_doc *table = calloc(cap, sizeof(*table));
    if (!table)
        return 0;
    for (size_t i = 0; i < s->seen_cap; i++)
        if (s->seen[i].hash) {
            size_t k = (size_t)s->seen[i].hash & (cap - 1);
            while (table[k].hash)
                k = (k + 1) & (cap - 1);
            table[k] = s->seen[i];
        }
    free(s->seen);
    s->seen = table;
    s->seen_cap = cap;
    return 1;
}

/* The document's slot: the one holding the same bytes, or the empty one
 * where they go. */
static seen_doc *seen_find(splitter *s, const uint8_t *p, size_t n, uint64_t hash)
{
    size_t k = (size_t)hash & (s->seen_cap - 1);
    for (;; k = (k + 1) & (s->seen_cap - 1)) {
        seen_doc *e = &s->seen[k];
        if (!e->hash)
            return e;
        const uint8_t *bytes = (e->in_val ? s->val.data : s->train.data) + e->offset;
        if (e->hash == hash && e->len == n && memcmp(bytes, p, n) == 0)
            return e;
    }
}

/* Appends a document to its side of the split, unless the same bytes are
 * there already: a repeated fortune or Jargon File paragraph on both sides
 * would be validation text the model has trained on. */
static int add_document(splitter *s, const uint8_t *p, size_t n)
{
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    if (n == 0)
        return 1;
    if (2 * (s->documents + 1) > s->seen_cap && !seen_grow(s))
        return 0;
    const uint64_t hash = fnv1a(p, n);
    seen_doc *e = seen_find(s, p, n, hash);
    if (e->hash) {
        s->duplicates++;
        return 1;
    }
    s->documents++;
    const int in_val = s->documents % LM_VAL_EVERY == 0;
    byte_buf *to = in_val ? &s->val : &s->train;
    *e = (seen_doc){hash, to->len, n, in_val};
    const uint8_t nl = '\n';
    return buf_append(to, p, n) && buf_append(to, &nl, 1);
}

static int blank_line(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return 0;
    return 1;
}

/* Splits text into documents: at lines holding only "%" (fortune files)
 * or at blank lines (paragraphs). */
static int split_documents(splitter *s, const uint8_t *text, size_t len, int fortune_format)
{
    size_t doc = 0, line = 0;
    while (line < len) {
        const uint8_t *nl = memchr(text + line, '\n', len - line);
        const size_t end = nl ? (size_t)(nl - text) + 1 : len;
        const uint8_t *l = text + line;
        const size_t ll = end - line;
        const int separator = fortune_format ? (ll >= 1 && l[0] == '%' && blank_line(l + 1, ll - 1))
                                             : blank_line(l, ll);
        if (separator) {
            if (!add_document(s, text + doc, line - doc))
                return 0;
            doc = end;
        }
        line = end;
    }
    return add_document(s, text + doc, len - doc);
}

static ex_code finish(lm_text *t, splitter *s, ex_error *err)
{
    memset(t, 0, sizeof(*t));
    free(s->seen);
    t->documents = s->documents;
    t->duplicates = s->duplicates;
    if (s->train.len == 0) {
        free(s->val.data);
        return ex_fail(err, EX_USAGE, "the text is empty (no document holds a byte)");
    }
    if (s->val.len == 0) {
        /* Too few documents for the split by document: the last tenth. */
        const size_t cut = s->train.len - s->train.len / LM_VAL_EVERY;
        if (!buf_append(&s->val, s->train.data + cut, s->train.len - cut)) {
            free(s->train.data);
            return ex_fail_status(err, SRP_ERR_NOMEM, "splitting the text");
        }
        s->train.len = cut;
    }
    t->train = s->train.data;
    t->train_len = s->train.len;
    t->val = s->val.data;
    t->val_len = s->val.len;
    return EX_OK;
}

ex_code lm_text_from_buffer(lm_text *t, const uint8_t *bytes, size_t len, ex_error *err)
{
    splitter s;
    memset(&s, 0, sizeof(s));
    if (!split_documents(&s, bytes, len, 0)) {
        free(s.train.data);
        free(s.val.data);
        free(s.seen);
        return ex_fail_status(err, SRP_ERR_NOMEM, "splitting the text");
    }
    return finish(t, &s, err);
}

ex_code lm_text_load_file(lm_text *t, const char *path, ex_error *err)
{
    byte_buf raw = {NULL, 0, 0};
    ex_code code = read_file(path, &raw, err);
    if (code == EX_OK && raw.len == 0)
        code = ex_fail(err, EX_USAGE, "%s is empty", path);
    if (code == EX_OK) {
        code = lm_text_from_buffer(t, raw.data, raw.len, err);
        if (code != EX_OK)
            snprintf(err->message + strlen(err->message),
                     sizeof(err->message) - strlen(err->message), " (%s)", path);
    }
    free(raw.data);
    return code;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *suffix)
{
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The fortune files of dir (regular files; not the .dat indexes nor the
 * .u8 links), sorted. */
static ex_code list_fortune_files(const char *dir, char ***names, size_t *count, ex_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return ex_fail(err, EX_FAILED,
                       "cannot open %s (%s): install the text with sudo apt-get install fortunes "
                       "jargon-text, or pass --text FILE",
                       dir, strerror(errno));
    size_t n = 0, cap = 0;
    char **list = NULL;
    const struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || ends_with(e->d_name, ".dat") || lstat(path, &st) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(list, sizeof(char *) * cap);
            if (!grown)
                break;
            list = grown;
        }
        if (!(list[n] = strdup(e->d_name)))
            break;
        n++;
    }
    const int incomplete = e != NULL;
    closedir(d);
    if (incomplete) {
        for (size_t i = 0; i < n; i++)
            free(list[i]);
        free(list);
        return ex_fail_status(err, SRP_ERR_NOMEM, "listing the fortune files");
    }
    qsort(list, n, sizeof(char *), compare_names);
    *names = list;
    *count = n;
    return EX_OK;
}

ex_code lm_text_load_default(lm_text *t, ex_error *err)
{
    char **names = NULL;
    size_t count = 0;
    ex_code code = list_fortune_files(LM_FORTUNES_DIR, &names, &count, err);
    if (code == EX_OK && count == 0)
        code = ex_fail(err, EX_FAILED,
                       "no fortune files in %s: sudo apt-get install fortunes, or pass --text FILE",
                       LM_FORTUNES_DIR);
    splitter s;
    memset(&s, 0, sizeof(s));
    char path[4096];
    for (size_t i = 0; i < count && code == EX_OK; i++) {
        byte_buf raw = {NULL, 0, 0};
        snprintf(path, sizeof(path), "%s/%s", LM_FORTUNES_DIR, names[i]);
        code = read_file(path, &raw, err);
        if (code == EX_OK && !split_documents(&s, raw.data, raw.len, 1))
            code = ex_fail_status(err, SRP_ERR_NOMEM, "splitting the text");
        free(raw.data);
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    if (code == EX_OK) {
        byte_buf raw = {NULL, 0, 0};
        struct stat st;
        if (stat(LM_JARGON_FILE, &st) != 0)
            code = ex_fail(err, EX_FAILED,
                           "%s is missing: sudo apt-get install jargon-text, or pass --text FILE",
                           LM_JARGON_FILE);
        else if ((code = read_file(LM_JARGON_FILE, &raw, err)) == EX_OK &&
                 !split_documents(&s, raw.data, raw.len, 0))
            code = ex_fail_status(err, SRP_ERR_NOMEM, "splitting the text");
        free(raw.data);
    }
    if (code != EX_OK) {
        free(s.train.data);
        free(s.val.data);
        free(s.seen);
        return code;
    }
    return finish(t, &s, err);
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
