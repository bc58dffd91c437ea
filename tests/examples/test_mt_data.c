#define _POSIX_C_SOURCE 200809L /* fmemopen */
/* The translation job's data (examples/mt): the .mo reader on catalogs
 * written here byte by byte (both byte orders, every kind of entry, every
 * truncation and a corrupt field each), the corpus built from files
 * (repeats, the length cap, the split, the fingerprint, refused files),
 * and chrF2 on examples computed by hand from sacreBLEU's definition. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chrf.h"
#include "corpus.h"
#include "mo.h"
#include "mo_writer.h"
#include "testutil.h"

/* ---- .mo files, written as GNU msgfmt lays them out (mo_writer.h) ---- */

static const mo_entry k_entries[] = {
    MO_ENTRY("", "Content-Type: text/plain; charset=UTF-8\n"), /* the header */
    MO_ENTRY("file", "Datei"),
    MO_ENTRY("menu\4Open", "Öffnen"),                      /* a context */
    MO_ENTRY("%d file\0%d files", "%d Datei\0%d Dateien"), /* a plural */
    MO_ENTRY("untranslated", ""),
    MO_ENTRY("Quit", "Beenden"),
};
#define N_ENTRIES (sizeof(k_entries) / sizeof(k_entries[0]))

static void assert_pair(const mt_mo_pair *p, const char *english, const char *translation)
{
    assert_int_equal(p->english_len, strlen(english));
    assert_memory_equal(p->english, english, p->english_len);
    assert_int_equal(p->translation_len, strlen(translation));
    assert_memory_equal(p->translation, translation, p->translation_len);
}

static void test_mo_reads_both_byte_orders(void **state)
{
    (void)state;
    for (int be = 0; be < 2; be++) {
        uint8_t buf[1024];
        const size_t len = mo_write(buf, k_entries, N_ENTRIES, be);
        mt_mo_catalog cat;
        ex_error err;
        assert_int_equal(mt_mo_parse(buf, len, &cat, &err), EX_OK);
        assert_int_equal(cat.entries, N_ENTRIES);
        assert_int_equal(cat.empty, 1);
        assert_int_equal(cat.untranslated, 1);
        assert_int_equal(cat.count, 4);
        assert_pair(&cat.pairs[0], "file", "Datei");
        assert_pair(&cat.pairs[1], "Open", "Öffnen");
        assert_pair(&cat.pairs[2], "%d file", "%d Datei");
        assert_pair(&cat.pairs[3], "Quit", "Beenden");
        mt_mo_free(&cat);
        assert_null(cat.pairs);
    }
}

/* Catalogs that GNU msgfmt wrote (the fuzz target's seeds, from a .po
 * with a header, a context, a plural and an untranslated message, which
 * msgfmt leaves out), in both byte orders: the same four entries. */
static void test_mo_reads_what_msgfmt_writes(void **state)
{
    (void)state;
    const char *names[2] = {"little.mo", "big.mo"};
    for (int k = 0; k < 2; k++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/../fuzz/corpus/mo/%s", SRP_TEST_DATA_DIR, names[k]);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint8_t buf[1024];
        const size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        mt_mo_catalog cat;
        ex_error err;
        assert_int_equal(mt_mo_parse(buf, len, &cat, &err), EX_OK);
        assert_int_equal(cat.entries, 4);
        assert_int_equal(cat.empty, 1);
        assert_int_equal(cat.count, 3);
        assert_pair(&cat.pairs[0], "%d file", "%d Datei"); /* msgfmt sorts by the original */
        assert_pair(&cat.pairs[1], "file", "Datei");
        assert_pair(&cat.pairs[2], "Open", "Öffnen");
        mt_mo_free(&cat);
    }
}

/* Every prefix of a valid file is refused with a message, and nothing is
 * read past it (the sanitizer build checks that). */
static void test_mo_refuses_every_truncation(void **state)
{
    (void)state;
    uint8_t buf[1024];
    const size_t len = mo_write(buf, k_entries, N_ENTRIES, 0);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exactly cut bytes: ASan sees a read past */
        memcpy(copy, buf, cut);
        mt_mo_catalog cat;
        ex_error err = {{0}};
        assert_int_equal(mt_mo_parse(copy, cut, &cat, &err), EX_FAILED);
        assert_true(err.message[0] != '\0');
        assert_null(cat.pairs);
        free(copy);
    }
}

static void expect_refused(const uint8_t *buf, size_t len, const char *says)
{
    mt_mo_catalog cat;
    ex_error err;
    assert_int_equal(mt_mo_parse(buf, len, &cat, &err), EX_FAILED);
    if (!strstr(err.message, says))
        fail_msg("expected \"%s\" in \"%s\"", says, err.message);
    assert_int_equal(cat.count, 0);
}

static void put_le(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> 8 * k);
}

static void test_mo_refuses_corrupt_fields(void **state)
{
    (void)state;
    uint8_t good[1024], buf[1024];
    const size_t len = mo_write(good, k_entries, N_ENTRIES, 0);
    const uint32_t t = 28 + 8 * N_ENTRIES;
#define CORRUPT(offset, value, says)                                                               \
    do {                                                                                           \
        memcpy(buf, good, len);                                                                    \
        put_le(buf + (offset), (value));                                                           \
        expect_refused(buf, len, says);                                                            \
    } while (0)
    CORRUPT(0, 0x12345678u, "magic");
    CORRUPT(4, 2u << 16, "major revision 2");
    CORRUPT(8, 0x10000000u, "run past the end");           /* N */
    CORRUPT(12, (uint32_t)len, "original table");          /* O */
    CORRUPT(16, (uint32_t)len - 4, "translation table");   /* T */
    CORRUPT(28 + 8 * 1, 0xfffffff0u, "original string 1"); /* a length that wraps in 32 bits */
    CORRUPT(28 + 8 * 1 + 4, (uint32_t)len, "original string 1");
    CORRUPT(t + 8 * 2 + 4, (uint32_t)len - 1, "translation string 2");
    /* A string whose NUL is missing: its length one byte too long. */
    memcpy(buf, good, len);
    put_le(buf + 28 + 8 * 1, 5);
    expect_refused(buf, len, "no NUL");
#undef CORRUPT
    expect_refused(good, 27, "too short");
}

/* ---- the corpus ---- */

static void write_file(const char *name, const uint8_t *bytes, size_t len, char *path, size_t cap)
{
    scratch_path(path, cap, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
}

static size_t count_all(const mt_corpus *c)
{
    return c->count[MT_TRAIN] + c->count[MT_VALIDATION] + c->count[MT_TEST];
}

static void test_corpus_drops_repeats_and_long_pairs_and_splits_by_english(void **state)
{
    (void)state;
    /* a: three pairs; b: one repeat of a's, one new translation of a's
     * English, one too long; then a file that is not a .mo and a missing one. */
    static const mo_entry a[] = {MO_ENTRY("file", "Datei"), MO_ENTRY("Quit", "Beenden"),
                                 MO_ENTRY("Open", "Öffnen")};
    static const mo_entry b[] = {MO_ENTRY("Quit", "Beenden"), MO_ENTRY("file", "Akte"),
                                 MO_ENTRY("a message far too long", "eine viel zu lange Meldung")};
    uint8_t buf[1024];
    char pa[4096], pb[4096], pbad[4096], pmissing[4096];
    write_file("a.mo", buf, mo_write(buf, a, 3, 0), pa, sizeof(pa));
    write_file("b.mo", buf, mo_write(buf, b, 3, 1), pb, sizeof(pb));
    write_file("bad.mo", (const uint8_t *)"not a catalog at all, just text", 31, pbad,
               sizeof(pbad));
    scratch_path(pmissing, sizeof(pmissing), "missing.mo");
    const char *paths[] = {pa, pb, pbad, pmissing};
    char logged[4096] = {0};
    FILE *log = fmemopen(logged, sizeof(logged) - 1, "w");
    mt_corpus c;
    ex_error err;
    assert_int_equal(mt_corpus_from_files(&c, paths, 4, 12, log, &err), EX_OK);
    fclose(log);
    assert_int_equal(c.catalogs, 2);
    assert_int_equal(c.refused, 2);
    assert_non_null(strstr(logged, "bad.mo: not a .mo file"));
    assert_non_null(strstr(logged, "missing.mo: No such file"));
    assert_int_equal(c.messages, 6);
    assert_int_equal(c.duplicates, 1);
    assert_int_equal(c.too_long, 1);
    assert_int_equal(count_all(&c), 4);
    /* Each pair in the split its English hashes to; the English message
     * "file" with both of its translations on one side. */
    const char *expected[4][2] = {
        {"file", "Datei"}, {"Quit", "Beenden"}, {"Open", "Öffnen"}, {"file", "Akte"}};
    for (int k = 0; k < 4; k++) {
        const mt_split s = mt_split_of(expected[k][0]);
        int found = 0;
        for (size_t i = 0; i < c.count[s]; i++)
            found += !strcmp(c.pairs[s][i].english, expected[k][0]) &&
                     !strcmp(c.pairs[s][i].translation, expected[k][1]);
        assert_int_equal(found, 1);
    }
    /* The fingerprint: FNV-1a over the kept pairs in the order read, each
     * side with its NUL; written out here from its definition. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (int k = 0; k < 4; k++)
        for (int side = 0; side < 2; side++)
            for (const char *p = expected[k][side];; p++) {
                h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
                if (!*p)
                    break;
            }
    assert_true(c.fingerprint == h);
    mt_corpus_free(&c);

    assert_int_equal(mt_corpus_from_files(&c, paths + 2, 2, 12, NULL, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "no translated message in 0 catalogs (2 more refused)"));
    assert_int_equal(mt_corpus_from_files(&c, paths, 1, 0, NULL, &err), EX_USAGE);
}

/* The split's shares: about 1 in 20 each to test and validation. */
static void test_split_shares(void **state)
{
    (void)state;
    size_t counts[MT_SPLITS] = {0};
    char english[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(english, sizeof(english), "message %d", i);
        counts[mt_split_of(english)]++;
    }
    /* 1000 expected each; 5 sigma of a binomial(20000, 0.05) is 154. */
    assert_in_range(counts[MT_TEST], 846, 1154);
    assert_in_range(counts[MT_VALIDATION], 846, 1154);
}

static void test_corpus_load_names_languages_and_what_to_install(void **state)
{
    (void)state;
    static const mo_entry a[] = {MO_ENTRY("file", "Datei")};
    char dir[1024], sub[1100], path[1200];
    scratch_path(dir, sizeof(dir), "locale");
    snprintf(sub, sizeof(sub), "%s/xx/LC_MESSAGES", dir);
    snprintf(path, sizeof(path), "%s/xx", dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    uint8_t buf[256];
    const size_t len = mo_write(buf, a, 1, 0);
    snprintf(path, sizeof(path), "%s/%s.mo", sub, mt_manifest[0].domain);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(buf, 1, len, f);
    fclose(f);
    mt_corpus c;
    ex_error err;
    assert_int_equal(mt_corpus_load(&c, dir, "xx", 100, NULL, &err), EX_OK);
    assert_int_equal(count_all(&c), 1);
    assert_int_equal(c.catalogs, 1);
    mt_corpus_free(&c);
    assert_int_equal(mt_corpus_load(&c, dir, "de", 100, NULL, &err), EX_USAGE);
    assert_non_null(strstr(err.message, "languages with one: xx"));
    assert_int_equal(mt_corpus_load(&c, dir, "../xx", 100, NULL, &err), EX_USAGE);
    /* A catalog with no translated message: what to install. */
    static const mo_entry untranslated[] = {MO_ENTRY("file", "")};
    f = fopen(path, "wb");
    fwrite(buf, 1, mo_write(buf, untranslated, 1, 0), f);
    fclose(f);
    assert_int_equal(mt_corpus_load(&c, dir, "xx", 100, NULL, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "install-deps.sh mt"));
}

/* `install-deps.sh mt` installs every package of the manifest: the
 * corpus is then the same wherever it ran. */
static void test_install_deps_installs_the_manifest(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof(path), "%s/../../scripts/install-deps.sh", SRP_TEST_DATA_DIR);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char script[1 << 16];
    const size_t len = fread(script, 1, sizeof(script) - 1, f);
    fclose(f);
    script[len] = '\0';
    char *line = strstr(script, "\n  mt) pkgs=(");
    assert_non_null(line);
    char *end = strstr(line, ") ;;");
    assert_non_null(end);
    *end = '\0';
    for (size_t i = 0; i < mt_manifest_count; i++) {
        char word[128];
        snprintf(word, sizeof(word), " %s", mt_manifest[i].package);
        const char *at = line;
        int found = 0;
        while (!found && (at = strstr(at, word)) != NULL) {
            const char after = at[strlen(word)];
            found = after == ' ' || after == '\n' || after == '\0';
            at++;
        }
        if (!found)
            fail_msg("install-deps.sh mt does not install %s (catalog %s)", mt_manifest[i].package,
                     mt_manifest[i].domain);
    }
}

/* ---- chrF2 ---- */

static double chrf_of(const char *const *hyp, const char *const *ref, int n)
{
    mt_chrf_stats s = {{0}, {0}, {0}};
    for (int i = 0; i < n; i++)
        assert_int_equal(mt_chrf_add(&s, hyp[i], strlen(hyp[i]), ref[i], strlen(ref[i])), 0);
    return mt_chrf_score(&s);
}

/* |got - want| <= tol, false for NaN (cmocka's assert_float_equal is
 * true for NaN). */
static void expect_score(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol))
        fail_msg("chrF %.12g, expected %.12g", got, want);
}

static void test_chrf_hand_computed(void **state)
{
    (void)state;
    /* "ab" against "abc": 1-grams 2 hyp, 3 ref, 2 match; 2-grams 1, 2, 1;
     * 3-grams: none in hyp, so orders 1 and 2 count. P = (1 + 1) / 2 = 1,
     * R = (2/3 + 1/2) / 2 = 7/12; F2 = 5 P R / (4 P + R) = 7/11. */
    const char *h1[] = {"ab"}, *r1[] = {"abc"};
    expect_score(chrf_of(h1, r1, 1), 700.0 / 11.0, 1e-9);
    /* Whitespace is removed before the n-grams: the same score. */
    const char *h2[] = {" a\tb\n"}, *r2[] = {"a b c"};
    expect_score(chrf_of(h2, r2, 1), 700.0 / 11.0, 1e-9);
    /* Repeats match as often as they stand in both: "aaa" against "aa":
     * 1-grams 3, 2, 2; 2-grams 2, 1, 1; P = (2/3 + 1/2) / 2 = 7/12, R = 1;
     * F2 = 5 (7/12) / (4 (7/12) + 1) = 35/40. */
    const char *h3[] = {"aaa"}, *r3[] = {"aa"};
    expect_score(chrf_of(h3, r3, 1), 87.5, 1e-9);
    /* Characters, not bytes: "äb" (3 bytes) against "ab": 1-grams 2, 2, 1;
     * 2-grams 1, 1, 0; P = R = 1/4, F2 = 25. (By bytes it would be 1-grams
     * 3, 2, 1 and a different score.) */
    const char *h4[] = {"\xc3\xa4"
                        "b"},
               *r4[] = {"ab"};
    expect_score(chrf_of(h4, r4, 1), 25.0, 1e-9);
    /* The corpus sums the counts before the score: with "x" against "y"
     * added to the first pair, 1-grams 3, 4, 2 and 2-grams 1, 2, 1:
     * P = (2/3 + 1) / 2 = 5/6, R = (1/2 + 1/2) / 2 = 1/2,
     * F2 = 5 (5/12) / (10/3 + 1/2) = 25/46 (not the mean of 700/11 and 0). */
    const char *h5[] = {"ab", "x"}, *r5[] = {"abc", "y"};
    expect_score(chrf_of(h5, r5, 2), 2500.0 / 46.0, 1e-9);
    /* Identical: 100; nothing in common, or an empty side: 0. */
    const char *h6[] = {"Datei öffnen"}, *r6[] = {"Datei öffnen"};
    expect_score(chrf_of(h6, r6, 1), 100.0, 1e-9);
    const char *h7[] = {"abc"}, *r7[] = {"xyz"};
    expect_score(chrf_of(h7, r7, 1), 0.0, 0.0);
    const char *h8[] = {""}, *r8[] = {"abc"};
    expect_score(chrf_of(h8, r8, 1), 0.0, 0.0);
    /* Orders up to 6 and no more: two 7-character strings that differ in
     * their last character share 6 of 7 1-grams, ..., 1 of 2 6-grams. */
    const char *h9[] = {"abcdefg"}, *r9[] = {"abcdefz"};
    double p = 0.0;
    for (int n = 1; n <= 6; n++)
        p += (double)(7 - n) / (double)(8 - n);
    p /= 6.0; /* = R: both sides have as many n-grams */
    expect_score(chrf_of(h9, r9, 1), 100.0 * p, 1e-9);
}

/* A byte that is not UTF-8 is one character of its own: an invalid lead
 * byte, a cut sequence, an overlong form and a surrogate match only
 * themselves. */
static void test_chrf_invalid_utf8(void **state)
{
    (void)state;
    const char *h[] = {"a\xff"
                       "b"},
               *r[] = {"a\xff"
                       "b"};
    expect_score(chrf_of(h, r, 1), 100.0, 1e-9);
    const char *h2[] = {"\xc0\xaf"}, *r2[] = {"/"}; /* overlong '/' is not '/' */
    expect_score(chrf_of(h2, r2, 1), 0.0, 0.0);
    const char *h3[] = {"\xed\xa0\x80"}, *r3[] = {"\xed\xa0\x80"}; /* a surrogate: 3 chars */
    expect_score(chrf_of(h3, r3, 1), 100.0, 1e-9);
    const char *h4[] = {"\xc3"}, *r4[] = {"\xc3\xa4"}; /* cut short: not ä */
    expect_score(chrf_of(h4, r4, 1), 0.0, 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mo_reads_both_byte_orders),
        cmocka_unit_test(test_mo_reads_what_msgfmt_writes),
        cmocka_unit_test(test_mo_refuses_every_truncation),
        cmocka_unit_test(test_mo_refuses_corrupt_fields),
        cmocka_unit_test(test_corpus_drops_repeats_and_long_pairs_and_splits_by_english),
        cmocka_unit_test(test_split_shares),
        cmocka_unit_test(test_corpus_load_names_languages_and_what_to_install),
        cmocka_unit_test(test_install_deps_installs_the_manifest),
        cmocka_unit_test(test_chrf_hand_computed),
        cmocka_unit_test(test_chrf_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
