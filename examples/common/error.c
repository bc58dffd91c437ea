/* The examples' error convention (error.h). */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

ex_code ex_fail(ex_error *err, ex_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return code;
}

void ex_append(ex_error *err, const char *fmt, ...)
{
    const size_t used = strlen(err->message);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message + used, sizeof(err->message) - used, fmt, ap);
    va_end(ap);
}

ex_code ex_fail_status(ex_error *err, srp_status st, const char *what)
{
    return ex_fail_statusf(err, st, "%s", what);
}

ex_code ex_fail_statusf(ex_error *err, srp_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    ex_append(err, ": %s", srp_status_str(st));
    ex_append_detail(err, st);
    return EX_FAILED;
}

void ex_append_detail(ex_error *err, srp_status st)
{
    /* The library's detail, when it belongs to this failure. */
    if (srp_last_error_status() == st && *srp_last_error_detail()) {
        ex_append(err, " (%s)", srp_last_error_detail());
        srp_clear_last_error();
    }
}

int ex_exit_code(ex_code code)
{
    switch (code) {
    case EX_OK:
    case EX_HELP: return 0;
    case EX_FAILED: return 1;
    case EX_USAGE: return 2;
    case EX_NONFINITE: return 3;
    case EX_COLLAPSE: return 4;
    }
    return 1;
}

const char *ex_exit_codes_help(void)
{
    return "Exit codes: 0 done, 1 error (data, files), 2 bad usage, 3 non-finite loss or\n"
           "gradient (the last good checkpoint is kept), 4 stopped on entropy collapse.\n";
}
