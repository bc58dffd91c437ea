/* Image datasets for the ViT-lite trainer: IDX (MNIST, Fashion-MNIST; gzip
 * or plain), CIFAR-10 binary batches, and a small built-in synthetic set.
 * Everything is read and normalized once at start-up; batches are gathered
 * into buffers allocated once. */
#ifndef VIT_DATA_H
#define VIT_DATA_H

#include <stddef.h>

#include <sigmareparam.h>

#include "common/error.h"

typedef struct {
    size_t count, channels, height, width;
    float *images; /* [count][channels][height][width] */
    int *labels;   /* [count] */
    int classes;
    float background[3]; /* per channel: a black pixel, normalized (what shifts fill in) */
} vit_dataset;

typedef struct {
    vit_dataset train, val, test; /* val: empty, or vit_split_validation's view of train's end */
    float mean[3], std[3];        /* per channel, from the training file's images */
} vit_data;

/* IDX files in dir: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
 * package_hint (may be NULL) is added to "not found" messages, e.g. the
 * Debian package that ships the default directory. Errors (EX_FAILED)
 * name the file and what is wrong with it. */
ex_code vit_load_idx(const char *dir, const char *package_hint, vit_data *out, ex_error *err);
/* CIFAR-10 binary version: data_batch_{1..5}.bin and test_batch.bin. */
ex_code vit_load_cifar10(const char *dir, vit_data *out, ex_error *err);
/* Class-dependent strokes and blobs on noise, 28x28x1, 10 classes:
 * learnable in seconds, for tests and for trying the program. */
ex_code vit_make_synthetic(size_t train_count, size_t test_count, uint64_t seed, vit_data *out,
                           ex_error *err);
void vit_data_free(vit_data *d);

/* Reads one IDX file (exposed for tests): ubyte data with the expected
 * number of dimensions; *dims gets the sizes, *data a malloc'd copy. */
ex_code vit_read_idx(const char *path, int ndims, size_t dims[3], unsigned char **data,
                     ex_error *err);

/* Makes the last `count` training examples d->val (the validation split,
 * in train's memory; the normalization keeps the training file's
 * statistics). */
ex_code vit_split_validation(vit_data *d, size_t count, ex_error *err);

/* Per-example augmentation of a batch; NULL members are not applied. */
typedef struct {
    const unsigned char *flip; /* [n]: mirror left-right */
    const int *shift;          /* [n][2]: move by (dx, dy) pixels, background filling in */
    const int *erase;          /* [n][4]: x, y, width, height of a rectangle set to the
                                  background after the rest (random erasing); width 0: none */
} vit_augment;

/* Copies the examples order[first .. first + n) into images [n][C][H][W] and
 * labels [n] (order NULL: the examples first .. first + n themselves),
 * augmented by aug (may be NULL). */
void vit_gather_batch(const vit_dataset *d, const uint64_t *order, size_t first, size_t n,
                      const vit_augment *aug, float *images, int *labels);

#endif
