/* The translation corpus (corpus.h): catalogs to pairs, de-duplicated,
 * capped and split. */
#define _POSIX_C_SOURCE 200809L /* scandir */
#include "corpus.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chrf.h"
#include "mo.h"

/* Programs' user messages, from packages of Debian's main archive; no
 * lists of names (iso-codes), which teach little about sentences. */
const mt_catalog_source mt_manifest[] = {
    {"apt", "apt"},
    {"bash", "bash"},
    {"coreutils", "coreutils"},
    {"diffutils", "diffutils"},
    {"dpkg", "dpkg"},
    {"dpkg-dev", "libdpkg-perl"},
    {"findutils", "findutils"},
    {"gettext-runtime", "gettext-base"},
    {"gettext-tools", "gettext"},
    {"git", "git"},
    {"glib20", "libglib2.0-data"},
    {"gnupg2", "gnupg-l10n"},
    {"gnutls30", "libgnutls30"},
    {"gprof", "binutils-common"},
    {"grep", "grep"},
    {"ld", "binutils-common"},
    {"libapt-pkg6.0", "libapt-pkg6.0"},
    {"libc", "libc-l10n"},
    {"Linux-PAM", "libpam-runtime"},
    {"m4", "m4"},
    {"make", "make"},
    {"mit-krb5", "krb5-locales"},
    {"opcodes", "binutils-common"},
    {"procps-ng", "procps"},
    {"sed", "sed"},
    {"shadow", "login"},
    {"shared-mime-info", "shared-mime-info"},
    {"tar", "tar"},
    {"wget", "wget"},
    {"xkeyboard-config", "xkb-data"},
};
const size_t mt_manifest_count = sizeof(mt_manifest) / sizeof(mt_manifest[0]);

#define SPLIT_EVERY 20 /* 1 in 20 pairs to test, 1 in 20 to validation */

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

#define FNV_OFFSET 0xcbf29ce484222325ull

mt_split mt_split_of(const char *english)
{
    const uint64_t h = fnv1a(FNV_OFFSET, english, strlen(english)) % SPLIT_EVERY;
    return h == 0 ? MT_TEST : h == 1 ? MT_VALIDATION : MT_TRAIN;
}

/* A pair while the text grows: offsets, since the text may move. */
typedef struct {
    size_t english, translation, english_len, translation_len;
    int dropped;
} pair_at;

typedef struct {
    char *text;
    size_t text_len, text_cap;
    pair_at *pairs;
    size_t count, cap;
} builder;

static int append_text(builder *b, const char *s, size_t n, size_t *at)
{
    if (b->text_len + n + 1 > b->text_cap) {
        size_t cap = b->text_cap ? 2 * b->text_cap : 1 << 16;
        while (cap < b->text_len + n + 1)
            cap *= 2;
        char *grown = realloc(b->text, cap);
        if (!grown)
            return -1;
        b->text = grown;
        b->text_cap = cap;
    }
    *at = b->text_len;
    memcpy(b->text + b->text_len, s, n);
    b->text[b->text_len + n] = '\0';
    b->text_len += n + 1;
    return 0;
}

static int append_pair(builder *b, const mt_mo_pair *p)
{
    if (b->count == b->cap) {
        const size_t cap = b->cap ? 2 * b->cap : 4096;
        pair_at *grown = realloc(b->pairs, sizeof(pair_at) * cap);
        if (!grown)
            return -1;
        b->pairs = grown;
        b->cap = cap;
    }
    pair_at *q = &b->pairs[b->count];
    if (append_text(b, p->english, p->english_len, &q->english) ||
        append_text(b, p->translation, p->translation_len, &q->translation))
        return -1;
    q->english_len = p->english_len;
    q->translation_len = p->translation_len;
    q->dropped = 0;
    b->count++;
    return 0;
}

/* The whole file; NULL with errno set on failure. */
static uint8_t *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct stat st;
    uint8_t *bytes = NULL;
    if (fstat(fileno(f), &st) == 0 && (bytes = malloc((size_t)st.st_size + 1)) != NULL) {
        *len = fread(bytes, 1, (size_t)st.st_size, f);
        if (*len != (size_t)st.st_size) {
            free(bytes);
            bytes = NULL;
            errno = EIO;
        }
    }
    fclose(f);
    return bytes;
}

/* One catalog's pairs into b; a file that cannot be read or parsed is
 * named in log and counted in c->refused. -1: no memory. */
static int add_catalog(builder *b, mt_corpus *c, const char *path, FILE *log)
{
    size_t len = 0;
    uint8_t *bytes = read_whole(path, &len);
    ex_error why;
    mt_mo_catalog cat;
    if (!bytes)
        snprintf(why.message, sizeof(why.message), "%s", strerror(errno));
    if (!bytes || mt_mo_parse(bytes, len, &cat, &why) != EX_OK) {
        if (log)
            fprintf(log, "skipping %s: %s\n", path, why.message);
        c->refused++;
        free(bytes);
        return 0;
    }
    int failed = 0;
    for (size_t i = 0; i < cat.count && !failed; i++)
        failed = append_pair(b, &cat.pairs[i]);
    c->catalogs++;
    c->messages += cat.count;
    mt_mo_free(&cat);
    free(bytes);
    return failed ? -1 : 0;
}

static const builder *g_sorting; /* qsort has no context argument */

/* By English, then translation, then first seen: the first of equal
 * pairs sorts first. */
static int compare_pairs(const void *a, const void *b)
{
    const size_t i = *(const size_t *)a, j = *(const size_t *)b;
    const pair_at *p = &g_sorting->pairs[i], *q = &g_sorting->pairs[j];
    int c = strcmp(g_sorting->text + p->english, g_sorting->text + q->english);
    if (c == 0)
        c = strcmp(g_sorting->text + p->translation, g_sorting->text + q->translation);
    return c ? c : (i > j) - (i < j);
}

/* Marks every repeat of an earlier pair, and then every pair too long. */
static int drop_repeats_and_long(builder *b, mt_corpus *c, size_t max_bytes)
{
    size_t *order = malloc(sizeof(size_t) * (b->count ? b->count : 1));
    if (!order)
        return -1;
    for (size_t i = 0; i < b->count; i++)
        order[i] = i;
    g_sorting = b;
    qsort(order, b->count, sizeof(size_t), compare_pairs);
    for (size_t k = 1; k < b->count; k++) {
        const pair_at *prev = &b->pairs[order[k - 1]], *p = &b->pairs[order[k]];
        if (!strcmp(b->text + prev->english, b->text + p->english) &&
            !strcmp(b->text + prev->translation, b->text + p->translation)) {
            b->pairs[order[k]].dropped = 1;
            c->duplicates++;
        }
    }
    free(order);
    for (size_t i = 0; i < b->count; i++) {
        pair_at *p = &b->pairs[i];
        if (!p->dropped && (p->english_len > max_bytes || p->translation_len > max_bytes)) {
            p->dropped = 1;
            c->too_long++;
        }
    }
    return 0;
}

/* The kept pairs, in the order read, into their splits. */
static int split(builder *b, mt_corpus *c)
{
    mt_split *where = malloc(sizeof(mt_split) * (b->count ? b->count : 1));
    if (!where)
        return -1;
    for (size_t i = 0; i < b->count; i++)
        if (!b->pairs[i].dropped)
            c->count[where[i] = mt_split_of(b->text + b->pairs[i].english)]++;
    for (int s = 0; s < MT_SPLITS; s++)
        if (!(c->pairs[s] = malloc(sizeof(mt_pair) * (c->count[s] ? c->count[s] : 1)))) {
            free(where);
            return -1;
        }
    size_t filled[MT_SPLITS] = {0};
    c->fingerprint = FNV_OFFSET;
    for (size_t i = 0; i < b->count; i++) {
        const pair_at *p = &b->pairs[i];
        if (p->dropped)
            continue;
        c->pairs[where[i]][filled[where[i]]++] =
            (mt_pair){b->text + p->english, b->text + p->translation};
        c->fingerprint = fnv1a(c->fingerprint, b->text + p->english, p->english_len + 1);
        c->fingerprint = fnv1a(c->fingerprint, b->text + p->translation, p->translation_len + 1);
    }
    free(where);
    return 0;
}

ex_code mt_corpus_from_files(mt_corpus *c, const char *const *paths, size_t n, size_t max_bytes,
                             FILE *log, ex_error *err)
{
    memset(c, 0, sizeof(*c));
    if (max_bytes == 0)
        return ex_fail(err, EX_USAGE, "the longest message must be at least 1 byte");
    builder b = {0};
    int failed = 0;
    for (size_t i = 0; i < n && !failed; i++)
        failed = add_catalog(&b, c, paths[i], log);
    if (!failed)
        failed = drop_repeats_and_long(&b, c, max_bytes);
    c->text = b.text; /* the pairs point into it from here on */
    if (!failed)
        failed = split(&b, c);
    free(b.pairs);
    if (failed) {
        mt_corpus_free(c);
        return ex_fail(err, EX_FAILED, "out of memory reading the catalogs");
    }
    if (c->count[MT_TRAIN] + c->count[MT_VALIDATION] + c->count[MT_TEST] == 0) {
        const size_t read = c->catalogs, refused = c->refused;
        mt_corpus_free(c);
        return ex_fail(err, EX_FAILED, "no translated message in %zu catalogs (%zu more refused)",
                       read, refused);
    }
    return EX_OK;
}

static void catalog_path(char *path, size_t size, const char *locale_dir, const char *lang,
                         const char *domain)
{
    snprintf(path, size, "%s/%s/LC_MESSAGES/%s.mo", locale_dir, lang, domain);
}

/* Whether locale_dir/lang holds a catalog of the manifest. */
static int has_catalog(const char *locale_dir, const char *lang)
{
    char path[4096];
    struct stat st;
    for (size_t i = 0; i < mt_manifest_count; i++) {
        catalog_path(path, sizeof(path), locale_dir, lang, mt_manifest[i].domain);
        if (stat(path, &st) == 0)
            return 1;
    }
    return 0;
}

/* EX_USAGE: lang has no catalog; the message lists those that have one. */
static ex_code no_such_language(const char *locale_dir, const char *lang, ex_error *err)
{
    ex_fail(err, EX_USAGE,
            "no catalog of the manifest for --lang %s under %s; languages with "
            "one:",
            lang, locale_dir);
    struct dirent **entries = NULL;
    const int n = scandir(locale_dir, &entries, NULL, alphasort);
    size_t found = 0;
    for (int i = 0; i < n; i++) {
        const char *name = entries[i]->d_name;
        if (name[0] != '.' && has_catalog(locale_dir, name)) {
            ex_append(err, " %s", name);
            found++;
        }
        free(entries[i]);
    }
    free(entries);
    if (found == 0)
        ex_append(err, " none (install them: bash scripts/install-deps.sh mt)");
    return EX_USAGE;
}

ex_code mt_corpus_load(mt_corpus *c, const char *locale_dir, const char *lang, size_t max_bytes,
                       FILE *log, ex_error *err)
{
    memset(c, 0, sizeof(*c));
    if (!lang[0] || strchr(lang, '/') || !strcmp(lang, ".") || !strcmp(lang, ".."))
        return ex_fail(err, EX_USAGE, "--lang %s: not a language name (such as de or pt_BR)", lang);
    char paths[sizeof(mt_manifest) / sizeof(mt_manifest[0])][4096];
    const char *present[sizeof(mt_manifest) / sizeof(mt_manifest[0])];
    size_t n = 0;
    struct stat st;
    for (size_t i = 0; i < mt_manifest_count; i++) {
        catalog_path(paths[n], sizeof(paths[n]), locale_dir, lang, mt_manifest[i].domain);
        if (stat(paths[n], &st) == 0) {
            present[n] = paths[n];
            n++;
        }
    }
    if (n == 0)
        return no_such_language(locale_dir, lang, err);
    const ex_code code = mt_corpus_from_files(c, present, n, max_bytes, log, err);
    if (code == EX_FAILED)
        ex_append(err,
                  " for --lang %s under %s; install the packages that hold them: bash "
                  "scripts/install-deps.sh mt",
                  lang, locale_dir);
    return code;
}

void mt_corpus_free(mt_corpus *c)
{
    for (int s = 0; s < MT_SPLITS; s++)
        free(c->pairs[s]);
    free(c->text);
    memset(c, 0, sizeof(*c));
}

ex_code mt_copy_baseline(const mt_corpus *c, mt_split s, double *score, ex_error *err)
{
    mt_chrf_stats stats = {{0}, {0}, {0}};
    for (size_t i = 0; i < c->count[s]; i++) {
        const mt_pair *p = &c->pairs[s][i];
        if (mt_chrf_add(&stats, p->english, strlen(p->english), p->translation,
                        strlen(p->translation)))
            return ex_fail(err, EX_FAILED, "out of memory scoring the copy baseline");
    }
    *score = mt_chrf_score(&stats);
    return EX_OK;
}
