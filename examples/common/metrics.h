/* Training metrics as JSON lines, one object per line, written with cJSON.
 * Lines are counted so that a resumed run keeps exactly the lines its
 * checkpoint had seen. Numbers go out with 9 significant digits (every
 * float round-trips); NaN and Inf as null. */
#ifndef EX_METRICS_H
#define EX_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "error.h"

typedef struct {
    FILE *f; /* NULL: no metrics file, every call does nothing */
    uint64_t lines;
    cJSON *line; /* the line being built */
} ex_metrics;

/* Opens path for writing (path NULL: no metrics). With keep_lines > 0
 * (resuming) the file's first keep_lines lines are kept and the rest
 * dropped; a file with fewer is an error. */
ex_code ex_metrics_open(ex_metrics *m, const char *path, uint64_t keep_lines, ex_error *err);
void ex_metrics_close(ex_metrics *m);

/* A line: begin (with its "type"), fields, end (writes and flushes it). */
void ex_metrics_begin(ex_metrics *m, const char *type);
void ex_metrics_number(ex_metrics *m, const char *key, double value);
void ex_metrics_string(ex_metrics *m, const char *key, const char *value);
/* values [rows][cols] as nested arrays */
void ex_metrics_matrix(ex_metrics *m, const char *key, const float *values, size_t rows,
                       size_t cols);
/* values [count] as an array */
void ex_metrics_vector(ex_metrics *m, const char *key, const float *values, size_t count);
/* {"names[0]": values[0], ...} */
void ex_metrics_named(ex_metrics *m, const char *key, const char *const *names, const float *values,
                      size_t count);
void ex_metrics_end(ex_metrics *m);

#endif
