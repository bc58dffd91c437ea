/* libFuzzer target: the checkpoint parser behind the CRC (src/checkpoint.c):
 * the table, the metadata, and the reads of what the file lists. A mutated
 * input almost never carries a valid CRC-32, so fuzz_checkpoint stops at
 * that check; here the harness repairs the CRC, and the header's file_size
 * (which every mutation that inserts or erases bytes breaks), before it
 * writes the file. fuzz_checkpoint keeps fuzzing the checks up to the CRC. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include <sigmareparam.h>

#include "fuzz_file.h"

/* The input with file_size (offset 16) and the trailing CRC-32 made right. */
static unsigned char *repaired(const uint8_t *data, size_t size)
{
    unsigned char *buf = malloc(size > 0 ? size : 1);
    if (!buf)
        return NULL;
    memcpy(buf, data, size);
    if (size >= 24)
        for (int i = 0; i < 8; i++)
            buf[16 + i] = (unsigned char)((uint64_t)size >> (8 * i));
    if (size >= 4) {
        const uint32_t crc = (uint32_t)crc32(0L, buf, (uInt)(size - 4));
        for (int i = 0; i < 4; i++)
            buf[size - 4 + i] = (unsigned char)(crc >> (8 * i));
    }
    return buf;
}

/* Every tensor the file lists, read into one scratch buffer (the reads do
 * not care that they overlap), one by one and then strictly all at once. */
static void read_everything(const srp_checkpoint *c)
{
    static unsigned char scratch[1 << 16];
    const size_t n = srp_checkpoint_count(c);
    srp_tensor_ref *refs = malloc(sizeof(*refs) * (n > 0 ? n : 1));
    if (!refs)
        return;
    size_t fit = 0;
    for (size_t i = 0; i < n; i++) {
        srp_tensor_ref info;
        if (srp_checkpoint_info(c, i, &info) != SRP_OK)
            continue;
        size_t bytes = srp_dtype_size(info.dtype);
        for (size_t d = 0; d < info.ndim && bytes <= sizeof(scratch); d++)
            bytes = info.shape[d] <= sizeof(scratch) ? bytes * info.shape[d] : sizeof(scratch) + 1;
        if (bytes > sizeof(scratch))
            continue;
        info.data = scratch;
        srp_checkpoint_read(c, &info, 1);
        refs[fit++] = info;
    }
    if (fit > 0)
        srp_checkpoint_read_strict(c, refs, fit);
    free(refs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *buf = repaired(data, size);
    const char *path = buf ? fuzz_write_file("ckpt_table", buf, size) : NULL;
    free(buf);
    if (!path)
        return 0;
    fuzz_load_checkpoint_list(path, 1); /* fuzz_checkpoint's list, plainly and strictly */
    srp_checkpoint *c = NULL;
    if (srp_checkpoint_open(&c, path) != SRP_OK)
        return 0;
    read_everything(c);
    static const char *const config[] = {"heads", "4", "depth", "2"};
    srp_checkpoint_metadata(c, "model");
    srp_checkpoint_check_metadata(c, config, 2);
    srp_checkpoint_close(c);
    return 0;
}
