/* fuzz_file.h */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <sigmareparam.h>

void fuzz_temp_path(char *buf, size_t cap, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, cap, "%s/srp_fuzz_%s_%ld", tmp && tmp[0] ? tmp : "/tmp", tag, (long)getpid());
}

const char *fuzz_write_file(const char *tag, const uint8_t *data, size_t size)
{
    static char path[512];
    if (!path[0])
        fuzz_temp_path(path, sizeof(path), tag);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    const int ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok ? path : NULL;
}

void fuzz_load_checkpoint_list(const char *path, int strict)
{
    float w[3 * 4], scalar;
    uint64_t step, rng[4];
    unsigned char text[16];
    const srp_tensor_ref refs[] = {
        {"w", SRP_DTYPE_F32, 2, {3, 4}, w},     {"s", SRP_DTYPE_F32, 0, {0}, &scalar},
        {"step", SRP_DTYPE_U64, 0, {0}, &step}, {"rng", SRP_DTYPE_U64, 1, {4}, rng},
        {"text", SRP_DTYPE_U8, 1, {16}, text},
    };
    srp_checkpoint_load(path, refs, 5);
    if (strict)
        srp_checkpoint_load_strict(path, refs, 5);
}
