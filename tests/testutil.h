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

/* Double helpers. */
double dot_d(const double *x, const double *y, size_t n);
double norm_d(const double *x, size_t n);
void to_float(const double *x, float *y, size_t n);
void to_double(const float *x, double *y, size_t n);

/* Reads a whole binary file into a malloc'd buffer; NULL when missing. */
void *read_file_bytes(const char *path, size_t *size);

#endif
