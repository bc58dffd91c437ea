/* Shared by the tests: cmocka, double-precision references, matrix builders. */
#ifndef SRP_TESTUTIL_H
#define SRP_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sigmareparam.h"

#define assert_status(expr, expected) assert_int_equal((int)(expr), (int)(expected))
#define assert_ok(expr) assert_status(expr, SRP_OK)

/* |a - b| <= tol * max(|b|, floor); prints both on failure. */
void assert_close_rel(double a, double b, double tol, double floor, const char *what);

/* A generator seeded with seed (srp_rng_seed). */
srp_rng seeded_rng(uint64_t seed);

/* Random N(0, 1) values into x (float or double). */
void fill_normal_f(srp_rng *r, float *x, size_t n, double scale);
void fill_normal_d(srp_rng *r, double *x, size_t n, double scale);

/* q: [n][k] (row-major) with orthonormal columns, k <= n, from a Householder
 * QR (LAPACK dgeqrf/dorgqr) of a Gaussian matrix. */
void random_orthonormal(srp_rng *r, double *q, size_t n, size_t k);

/* w: [rows][cols] = U diag(s) V^T with random orthonormal U: [rows][k],
 * V: [cols][k], k = min(rows, cols). Optionally returns the first columns
 * of U (u1: [rows]) and V (v1: [cols]). */
void matrix_with_spectrum(srp_rng *r, double *w, size_t rows, size_t cols, const double *s,
                          double *u1, double *v1);

/* n zeros (at least one element), freed with free(); fails the test
 * when out of memory. */
float *alloc_f(size_t n);
double *alloc_d(size_t n);

/* Double helpers. */
double dot_d(const double *x, const double *y, size_t n);
double norm_d(const double *x, size_t n);
void to_float(const double *x, float *y, size_t n);
void to_double(const float *x, double *y, size_t n);

/* 1 when path names an existing file (or folder). */
int file_exists(const char *path);
/* Reads a whole binary file into a malloc'd buffer; NULL when missing. */
void *read_file_bytes(const char *path, size_t *size);
/* Writes p[0..n) as the whole of path (fails the test when it cannot). */
void write_file_bytes(const char *path, const void *p, size_t n);

/* A fresh directory for a test's files under $TMPDIR (or /tmp), named
 * <prefix>_XXXXXX, into dir; 0 on success. scratch_dir_remove deletes it
 * with its contents; 0 on success. */
int scratch_dir_make(char *dir, size_t cap, const char *prefix);
int scratch_dir_remove(const char *dir);
/* The test program's own scratch directory, made by scratch_dir_make:
 * cmocka_run_group_tests(tests, scratch_setup, scratch_teardown) makes it
 * before the tests and removes it after them. */
int scratch_setup(void **state);
int scratch_teardown(void **state);
const char *scratch_dir(void);
/* buf = "<scratch_dir()>/<name>" */
void scratch_path(char *buf, size_t len, const char *name);

/* Reference fixtures written by tests/reference/gen_*.py: named float
 * arrays (format: tests/reference/fixture_io.py). */
typedef struct fixture fixture;
fixture *fixture_load(const char *path); /* fails the test when unreadable */
/* The array called name; fails the test when missing or of another length
 * (expected_count 0 accepts any length, returned in *count if non-NULL). */
const float *fixture_get(const fixture *fx, const char *name, size_t expected_count, size_t *count);
int fixture_has(const fixture *fx, const char *name);
void fixture_free(fixture *fx);
/* A sigmaReparam linear after a training step against a fixture step's
 * "<prefix>/sigma", "/dw", "/db" and "/dgamma" (tol relative; db with its
 * largest value taken as at least db_floor, 0 for none; dgamma, one
 * reduction of products that cancel, at 3 tol), then one SGD step of
 * rate lr on its weight, bias and gamma, as fixture_io.py's sgd_step. */
void fixture_check_linear_step(const fixture *fx, const char *prefix, srp_linear *l, double tol,
                               double db_floor, float lr);

/* A linear layer of the given reparametrization, bias and seed (the rest
 * the defaults), created under the precision active now. */
srp_linear *make_linear(size_t in, size_t out, srp_reparam mode, int bias, uint64_t seed);

/* A block's parameters at O(1) scale, for the block tests: each linear's
 * weight ~ N(0, (1.2 / sqrt(in))^2) with its sigma by SVD, bias ~ N(0, 0.2^2)
 * and gamma = sigma (0.7 + gamma_step i) for linear i (so gamma != sigma);
 * each LayerNorm's weight ~ 1 + N(0, 0.3^2) and bias ~ N(0, 0.3^2). */
void randomize_block(srp_block *b, srp_rng *r, float gamma_step);
/* A whole model's parameters made non-trivial for its gradient check, by
 * kind: each gamma 1.2 + U(0, 0.3), biases and LayerNorm parameters
 * ~ N(0, 0.3^2) (the LayerNorm weights 1 more); the rest kept; every
 * gradient zeroed. */
void randomize_params(srp_param_list *list, srp_rng *r);
/* The dropout and drop-path masks' rule that block.h documents, written
 * out again so that the tests check the library against its header:
 * m[i] = 1 / (1 - p) (as the float scale the library applies) when
 * (h >> 11) 2^-53 >= p with h = splitmix64's output mix of
 * key + (i + 1) 0x9E3779B97F4A7C15, else 0. m: [n] */
void block_rule_mask(double *m, size_t n, uint64_t key, float p);

/* max_i |a_i - b_i| / max_i |b_i| (relative error in the max norm): [n];
 * Inf when either holds a NaN or Inf. */
double rel_max_diff(const float *a, const float *b, size_t n);
/* rel_max_diff(a, b, n) <= tol. */
void assert_close_array(const float *a, const float *b, size_t n, double tol, const char *what);
/* The same with max |b| taken as at least floor: for arrays whose true value
 * is a cancellation (near 0) of terms of size floor. */
void assert_close_array_floor(const float *a, const float *b, size_t n, double tol, double floor,
                              const char *what);
/* assert_close_array_floor against a double reference (a gradient from
 * central differences, say). */
void assert_close_to_double(const float *got, const double *want, size_t n, double tol,
                            double floor, const char *what);

#endif
