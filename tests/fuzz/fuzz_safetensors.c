/* libFuzzer target: the safetensors reader (src/safetensors.c): open, list
 * every tensor, read each one that fits a small buffer. */
#include <stdint.h>

#include <sigmareparam.h>

#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("st", data, size);
    srp_safetensors *f = NULL;
    if (!path || srp_safetensors_open(&f, path) != SRP_OK)
        return 0;
    static unsigned char buf[1 << 16];
    for (size_t i = 0; i < srp_safetensors_count(f); i++) {
        srp_tensor_ref info;
        if (srp_safetensors_info(f, i, &info) != SRP_OK)
            continue;
        size_t elems = 1;
        for (size_t d = 0; d < info.ndim; d++)
            elems *= info.shape[d];
        if (elems * 8 <= sizeof(buf)) {
            info.data = buf;
            srp_safetensors_read(f, &info, 1);
        }
    }
    srp_safetensors_metadata(f, "format");
    srp_safetensors_close(f);
    return 0;
}
