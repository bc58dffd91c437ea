/* One error convention for the example programs. Every fallible function
 * returns an ex_code and, when it is not EX_OK, leaves a message for the
 * user in an ex_error; main prints it once and exits with ex_exit_code. */
#ifndef EX_ERROR_H
#define EX_ERROR_H

#include <sigmareparam.h>

typedef enum {
    EX_OK = 0,
    EX_HELP,      /* --help was printed: done, successfully */
    EX_USAGE,     /* the command line or the options do not fit together */
    EX_FAILED,    /* data, files, memory, a library call */
    EX_NONFINITE, /* the loss or a gradient became NaN or Inf */
    EX_COLLAPSE   /* stopped on entropy collapse, as asked (--stop-on-collapse) */
} ex_code;

typedef struct {
    char message[1024];
} ex_error;

/* Sets the message (printf-style) and returns code. */
ex_code ex_fail(ex_error *err, ex_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* EX_FAILED with "what: <the status's text>", and the library's detail in
 * parentheses when it belongs to st (srp_last_error_detail): every place a
 * trainer reports a library status goes through one of these two. */
ex_code ex_fail_status(ex_error *err, srp_status st, const char *what);
/* The same with what printf-style. */
ex_code ex_fail_statusf(ex_error *err, srp_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends to the message (printf-style; truncated at its size). */
void ex_append(ex_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends " (<the library's detail>)" when there is one and it belongs to
 * st, and clears it; for messages of their own about a library status. */
void ex_append_detail(ex_error *err, srp_status st);
/* The process exit code of each ex_code: the one mapping. */
int ex_exit_code(ex_code code);
/* The exit codes as a paragraph for --help. */
const char *ex_exit_codes_help(void);

#endif
