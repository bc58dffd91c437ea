/* libFuzzer target: the char LM's text loader (examples/char_lm/text.c):
 * the split into documents and the baselines over it. */
#include <stdint.h>

#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lm_text t = {0};
    ex_error err;
    if (lm_text_from_buffer(&t, data, size, &err) == EX_OK) {
        lm_baselines b;
        lm_text_check_context(&t, 16, "fuzz", &err);
        lm_baselines_compute(&t, &b, &err);
    }
    lm_text_free(&t);
    return 0;
}
