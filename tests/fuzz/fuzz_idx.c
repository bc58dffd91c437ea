/* libFuzzer target: the IDX reader (examples/vit_lite/data.c), as images
 * (3 dimensions) and as labels (1). */
#include <stdlib.h>

#include "data.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("idx", data, size);
    if (!path)
        return 0;
    for (int ndims = 1; ndims <= 3; ndims += 2) {
        size_t dims[3];
        unsigned char *values = NULL;
        ex_error err;
        if (vit_read_idx(path, ndims, dims, &values, &err) == EX_OK) {
            size_t n = 1;
            for (int d = 0; d < ndims; d++)
                n *= dims[d];
            volatile unsigned sum = 0;
            for (size_t i = 0; i < n; i++) /* every byte it claims is there */
                sum += values[i];
        }
        free(values);
    }
    return 0;
}
