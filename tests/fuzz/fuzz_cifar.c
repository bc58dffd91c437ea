/* libFuzzer target: the CIFAR-10 reader (examples/vit_lite/data.c), with
 * the input as every one of its six files. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <sys/stat.h>

#include "data.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[256];
    if (!dir[0]) {
        fuzz_temp_path(dir, sizeof(dir), "cifar");
        mkdir(dir, 0700);
    }
    static const char *const names[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                        "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    for (int i = 0; i < 6; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "wb");
        if (!f)
            return 0;
        fwrite(data, 1, size, f);
        fclose(f);
    }
    vit_data d = {0};
    ex_error err;
    if (vit_load_cifar10(dir, &d, &err) == EX_OK)
        vit_data_free(&d);
    return 0;
}
