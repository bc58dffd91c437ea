/* libFuzzer target: the checkpoint loader (src/checkpoint.c) with a fixed
 * list of tensors, one of each kind the trainers use (fuzz_file.c). */
#include <stdint.h>

#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("ckpt", data, size);
    if (!path)
        return 0;
    fuzz_load_checkpoint_list(path, 0);
    return 0;
}
