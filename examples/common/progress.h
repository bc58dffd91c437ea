/* A training run's clock and its progress lines: on a terminal one line
 * rewritten in place every 0.2 s, otherwise a line every 50 steps; and
 * where the time went (the library's profile). */
#ifndef EX_PROGRESS_H
#define EX_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    int interactive;
    int in_line; /* the last output was a line to be overwritten */
    double last_print;
    uint64_t last_step;
} ex_progress;

double ex_now(void); /* monotonic seconds */
void ex_progress_start(ex_progress *p);
/* 1 when a progress line is due at this step. */
int ex_progress_due(ex_progress *p, uint64_t step);
/* Prints a progress line (printf-style, no newline). */
void ex_progress_print(ex_progress *p, uint64_t step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Before any other output: ends a line being overwritten. */
void ex_progress_break(ex_progress *p);
/* H:MM:SS */
void ex_format_duration(double seconds, char *buf, size_t len);

/* Prints the library's profile (srp_profile_*) of `steps` steps that took
 * `total` seconds: each part's milliseconds per step and share, and the
 * rest (the program's own work) as `rest_name`. */
void ex_print_profile(FILE *to, double total, uint64_t steps, const char *rest_name);

#endif
