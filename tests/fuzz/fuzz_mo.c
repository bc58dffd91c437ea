/* libFuzzer target: the .mo catalog reader (examples/mt/mo.c), every
 * offset and length of which comes from the file. */
#include <stdint.h>

#include "mo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mt_mo_catalog cat;
    ex_error err;
    if (mt_mo_parse(data, size, &cat, &err) == EX_OK) {
        size_t bytes = 0; /* touch every pair: ASan checks they lie in data */
        for (size_t i = 0; i < cat.count; i++)
            bytes += (uint8_t)cat.pairs[i].english[cat.pairs[i].english_len] +
                     (uint8_t)cat.pairs[i].translation[cat.pairs[i].translation_len];
        (void)bytes;
        mt_mo_free(&cat);
    }
    return 0;
}
