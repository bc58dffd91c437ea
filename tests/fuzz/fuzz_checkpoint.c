/* libFuzzer target: the checkpoint loader (src/checkpoint.c) with a fixed
 * list of tensors, one of each kind the trainers use. */
#include <stdint.h>

#include <sigmareparam.h>

#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("ckpt", data, size);
    if (!path)
        return 0;
    float w[3 * 4], scalar;
    uint64_t step, rng[4];
    unsigned char text[16];
    const srp_tensor_ref refs[] = {
        {"w", SRP_DTYPE_F32, 2, {3, 4}, w},     {"s", SRP_DTYPE_F32, 0, {0}, &scalar},
        {"step", SRP_DTYPE_U64, 0, {0}, &step}, {"rng", SRP_DTYPE_U64, 1, {4}, rng},
        {"text", SRP_DTYPE_U8, 1, {16}, text},
    };
    srp_checkpoint_load(path, refs, 5);
    return 0;
}
