/* libFuzzer target: both trainers' option parsers (examples/common/options.c
 * and the tables of vit_options.c and lm_options.c). The input is split at
 * NUL bytes into the arguments. */
#include <stdlib.h>
#include <string.h>

#include "lm_options.h"
#include "vit_options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAX_ARGS = 64 };
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "fuzz";
    for (size_t i = 0; i <= size && argc < MAX_ARGS + 1;) {
        argv[argc++] = copy + i;
        i += strlen(copy + i) + 1;
    }
    argv[argc] = NULL;
    ex_error err;
    vit_options v;
    lm_options l;
    char fp[4096];
    if (ex_options_parse(&vit_options_table, &v, argc, argv, &err) == EX_OK)
        ex_options_fingerprint(&vit_options_table, &v, fp, sizeof(fp));
    if (ex_options_parse(&lm_options_table, &l, argc, argv, &err) == EX_OK)
        ex_options_fingerprint(&lm_options_table, &l, fp, sizeof(fp));
    free(copy);
    return 0;
}
