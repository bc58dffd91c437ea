/* What the ViT-lite tests share (vit_fixtures.h). */
#include "vit_fixtures.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "testutil.h"

size_t make_idx(unsigned char *buf, int ndims, const size_t *dims, size_t data_len)
{
    buf[0] = 0;
    buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = (unsigned char)ndims;
    for (int i = 0; i < ndims; i++) {
        buf[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
        buf[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        buf[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
        buf[7 + 4 * i] = (unsigned char)dims[i];
    }
    const size_t head = 4 + 4 * (size_t)ndims;
    for (size_t i = 0; i < data_len; i++)
        buf[head + i] = (unsigned char)(i * 7 % 10); /* also valid labels */
    return head + data_len;
}

void make_idx_dir_sized(const char *dir, int gzip, size_t train, size_t test)
{
    const char *names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    const size_t counts[4] = {train, train, test, test};
    unsigned char *buf = malloc(4 + 12 + (train > test ? train : test) * 28 * 28);
    assert_non_null(buf);
    mkdir(dir, 0700);
    for (int i = 0; i < 4; i++) {
        const size_t dims[3] = {counts[i], 28, 28};
        const int nd = i % 2 == 0 ? 3 : 1;
        const size_t n = make_idx(buf, nd, dims, nd == 3 ? counts[i] * 28 * 28 : counts[i]);
        char path[512];
        snprintf(path, sizeof(path), "%s/%s%s", dir, names[i], gzip ? ".gz" : "");
        write_bytes(path, buf, n, gzip);
    }
    free(buf);
}

void make_idx_dir(const char *dir, int gzip) { make_idx_dir_sized(dir, gzip, 20, 10); }

vit_config small_config(size_t dim, size_t max_batch)
{
    vit_config c = vit_config_default();
    c.patch = 7;
    c.dim = dim;
    c.depth = 2;
    c.heads = 2;
    c.mlp_dim = 16;
    c.max_batch = max_batch;
    return c;
}
