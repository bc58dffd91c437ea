/* What the ViT-lite tests share (tests/examples/vit_lite/): Fashion-MNIST
 * files made up on the spot, the small model of the in-process tests, and
 * vit-lite-train's small run (its path from CMake, VIT_TRAIN_EXE). */
#ifndef VIT_FIXTURES_H
#define VIT_FIXTURES_H

#include <stddef.h>

#include "trainer_harness.h"
#include "vit_model.h"

/* Runs vit-lite-train with the options fmt formats (trainer_harness.h); out
 * is an array, its size taken. */
#define run_train(out, ...) run_programf(VIT_TRAIN_EXE, out, sizeof(out), __VA_ARGS__)

/* The trainer tests' model: small, on the synthetic set. */
#define SMALL_MODEL                                                                                \
    "--dataset synthetic --synthetic-train 2048 --synthetic-test 512 --dim 32 --depth 2 "          \
    "--heads 2 --mlp-dim 64 --batch 64 --log-every 4 --bound-every 8 " PLAIN_RECIPE
/* The tests' model predates the stem, separate q, k, v sigmas, erasing,
 * weight average, test-time flips and the cosine's floor of the default
 * recipe (and is the official model, for --export);
 * test_vit_checkpoints' test_resume_is_bit_exact runs them too. */
#define PLAIN_RECIPE "--stem 0 --qkv-sigma fused --erase 0 --ema 0 --no-tta-flip --min-lr 0 "

/* An IDX file of unsigned bytes into buf: the header for dims, then
 * data_len bytes (i * 7 % 10, also valid labels). Returns its length. */
size_t make_idx(unsigned char *buf, int ndims, const size_t *dims, size_t data_len);
/* A folder with the four Fashion-MNIST files, of train and test images
 * each (gzip-compressed when gzip is set). */
void make_idx_dir_sized(const char *dir, int gzip, size_t train, size_t test);
/* The tiny folder most tests use: 20 train, 10 test images. */
void make_idx_dir(const char *dir, int gzip);

/* A small model: 7x7 patches (17 tokens), 2 blocks of 2 heads, MLP 16. */
vit_config small_config(size_t dim, size_t max_batch);

#endif
