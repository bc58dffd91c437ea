/* Status strings, the last error's detail and the run-time version. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

/* One per thread: a failure on one thread does not overwrite another's. */
static _Thread_local struct {
    srp_status status;
    char text[SRP_ERROR_DETAIL_MAX];
} last_error;

const char *srp_status_str(srp_status s)
{
    switch (s) {
    case SRP_OK: return "ok";
    case SRP_ERR_INVALID_ARG:
        return "invalid argument (NULL pointer, zero size or value out of range)";
    case SRP_ERR_SHAPE: return "shape mismatch";
    case SRP_ERR_NOMEM: return "out of memory";
    case SRP_ERR_NUMERIC: return "non-finite value (NaN or Inf) in input or result";
    case SRP_ERR_IO: return "I/O error";
    case SRP_ERR_FORMAT: return "malformed or corrupt data";
    case SRP_ERR_VERSION: return "unsupported format version";
    case SRP_ERR_UNSUPPORTED: return "unsupported operation";
    case SRP_ERR_PEER: return "another rank of the distributed run failed";
    case SRP_ERR_ORDER:
        return "backward out of order: its forward was replaced by another, or already "
               "differentiated";
    case SRP_ERR_NOT_FOUND: return "not found";
    }
    return "unknown status";
}

const char *srp_version_string(void) { return SRP_VERSION_STRING; }

unsigned srp_version_number(void) { return SRP_VERSION_NUMBER; }

srp_status srp_fail(srp_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error.text, sizeof(last_error.text), fmt, ap);
    va_end(ap);
    last_error.status = status;
    return status;
}

const char *srp_last_error_detail(void) { return last_error.text; }

srp_status srp_last_error_status(void) { return last_error.status; }

void srp_clear_last_error(void)
{
    last_error.status = SRP_OK;
    last_error.text[0] = '\0';
}

srp_status srp_order_refusal(const char *call, srp_call_order pending)
{
    return srp_fail(SRP_ERR_ORDER, "%s: %s", call,
                    pending == SRP_PENDING_AMBIGUOUS
                        ? "two training forwards, or an eval forward after the training "
                          "forward, ran since the last backward"
                        : "no forward to differentiate: none ran yet, or the last one was "
                          "already differentiated (or its backward refused); run a new forward");
}
