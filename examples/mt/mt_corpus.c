/* mt-corpus: the translation job's corpus, as the trainer will read it:
 * which catalogs, how many pairs each split holds, the fingerprint that
 * says whether two machines read the same text, and the score to beat:
 * chrF2 of copying the English message as its own translation (the
 * catalogs are full of names and format strings that pass through). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/options.h"
#include "corpus.h"

typedef struct {
    const char *lang, *locale_dir;
    size_t max_bytes, show;
} corpus_options;

#define OFF(field) offsetof(corpus_options, field)
static const ex_opt_spec k_specs[] = {
    {"lang", EX_OPT_STRING, OFF(lang), 0, 0, "LANG", 0, 0, "de",
     "the target language: a folder of the locale directory (de, fr, pt_BR, ...)"},
    {"locale-dir", EX_OPT_STRING, OFF(locale_dir), 0, 0, "DIR", 0, 0, MT_LOCALE_DIR,
     "where the catalogs are"},
    {"max-bytes", EX_OPT_SIZE, OFF(max_bytes), 1, 1 << 20, NULL, 0, 0, "128",
     "drop the pairs with a side longer than this"},
    {"show", EX_OPT_SIZE, OFF(show), 0, 1 << 20, NULL, 0, 0, "5", "print this many test pairs"},
};
static const ex_opt_table k_table = {
    .summary = "English messages and their translations out of the gettext catalogs of the\n"
               "packages in examples/mt/corpus.c (bash scripts/install-deps.sh mt installs them):\n"
               "prints the split, a fingerprint and the copy baseline's chrF2.\n",
    .specs = k_specs,
    .count = sizeof(k_specs) / sizeof(k_specs[0]),
    .size = sizeof(corpus_options),
};

static ex_code run(int argc, char **argv, ex_error *err)
{
    corpus_options o;
    ex_code code = ex_options_parse(&k_table, &o, argc, argv, err);
    if (code != EX_OK)
        return code;
    mt_corpus c;
    code = mt_corpus_load(&c, o.locale_dir, o.lang, o.max_bytes, stderr, err);
    if (code != EX_OK)
        return code;
    printf("%s under %s: %zu catalogs of %zu in the manifest (%zu refused), %zu translated "
           "messages; dropped %zu repeats and %zu with a side over %zu bytes\n",
           o.lang, o.locale_dir, c.catalogs, mt_manifest_count, c.refused, c.messages, c.duplicates,
           c.too_long, o.max_bytes);
    printf("pairs: %zu train, %zu validation, %zu test; fingerprint %016llx\n", c.count[MT_TRAIN],
           c.count[MT_VALIDATION], c.count[MT_TEST], (unsigned long long)c.fingerprint);
    double val = 0.0, test = 0.0;
    code = mt_copy_baseline(&c, MT_VALIDATION, &val, err);
    if (code == EX_OK)
        code = mt_copy_baseline(&c, MT_TEST, &test, err);
    if (code == EX_OK)
        printf("copy baseline (the English as its translation), chrF2: validation %.2f, test "
               "%.2f\n",
               val, test);
    for (size_t i = 0; code == EX_OK && i < o.show && i < c.count[MT_TEST]; i++)
        printf("  %s => %s\n", c.pairs[MT_TEST][i].english, c.pairs[MT_TEST][i].translation);
    mt_corpus_free(&c);
    return code;
}

int main(int argc, char **argv)
{
    ex_error err;
    const ex_code code = run(argc, argv, &err);
    if (code == EX_USAGE) {
        fprintf(stderr, "%s: %s\n\n", argv[0], err.message);
        ex_options_usage(&k_table, argv[0], stderr);
    } else if (code != EX_OK && code != EX_HELP) {
        fprintf(stderr, "%s: %s\n", argv[0], err.message);
    }
    return ex_exit_code(code);
}
