/* fuzz_file.h */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char *fuzz_write_file(const char *tag, const uint8_t *data, size_t size)
{
    static char path[512];
    if (!path[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof(path), "%s/srp_fuzz_%s_%ld", tmp ? tmp : "/tmp", tag, (long)getpid());
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    const int ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok ? path : NULL;
}
