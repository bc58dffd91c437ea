/* Status strings, the last error's detail (and helpers that word it) and
 * the run-time version. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
        return "call out of order: a backward whose forward was replaced by another or "
               "already differentiated, or a decode or selection before its cache is set up";
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

srp_status srp_fail_null(const char *call, const char *names, const void *const *ptrs, size_t n)
{
    /* names is "a, b, c" as the macro wrote the arguments: find the i-th. */
    size_t i = 0;
    while (i < n && ptrs[i])
        i++;
    const char *name = names;
    for (size_t k = 0; k < i && name; k++) {
        name = strchr(name, ',');
        if (name)
            name += 1 + strspn(name + 1, " ");
    }
    if (i == n || !name)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: a pointer argument is NULL", call);
    return srp_fail(SRP_ERR_INVALID_ARG, "%s: %.*s is NULL", call, (int)strcspn(name, ","), name);
}

const char *srp_shape_str(char *buf, size_t ndim, const uint64_t *shape)
{
    size_t len = (size_t)snprintf(buf, SRP_SHAPE_STR_MAX, "[");
    for (size_t k = 0; k < ndim && len < SRP_SHAPE_STR_MAX; k++)
        len += (size_t)snprintf(buf + len, SRP_SHAPE_STR_MAX - len, "%s%llu", k ? ", " : "",
                                (unsigned long long)shape[k]);
    if (len < SRP_SHAPE_STR_MAX)
        snprintf(buf + len, SRP_SHAPE_STR_MAX - len, "]");
    return buf;
}

void srp_detail_list_init(srp_detail_list *l)
{
    l->text[0] = 0;
    l->len = l->items = l->listed = 0;
}

void srp_detail_list_add(srp_detail_list *l, const char *item)
{
    /* Room is kept for ", and N more"; once one item is left out, the
     * later ones are too, so that the list keeps its order. */
    enum { TAIL = 32 };
    const size_t sep = l->listed ? 2 : 0, len = strlen(item);
    if (l->items == l->listed && l->len + sep + len + TAIL < SRP_DETAIL_LIST_MAX) {
        memcpy(l->text + l->len, ", ", sep);
        memcpy(l->text + l->len + sep, item, len + 1);
        l->len += sep + len;
        l->listed++;
    }
    l->items++;
}

const char *srp_detail_list_text(srp_detail_list *l)
{
    if (l->items > l->listed)
        snprintf(l->text + l->len, SRP_DETAIL_LIST_MAX - l->len, "%sand %zu more",
                 l->listed ? ", " : "", l->items - l->listed);
    return l->text;
}

const char *srp_last_error_detail(void) { return last_error.text; }

srp_status srp_last_error_status(void) { return last_error.status; }

void srp_clear_last_error(void)
{
    last_error.status = SRP_OK;
    last_error.text[0] = '\0';
}

srp_status srp_order_backward(srp_call_order *o, const char *call)
{
    const srp_call_order pending = *o;
    if (pending == SRP_PENDING_TRAIN || pending == SRP_PENDING_EVAL)
        return SRP_OK;
    *o = SRP_PENDING_NONE;
    return srp_fail(SRP_ERR_ORDER, "%s: %s", call,
                    pending == SRP_PENDING_AMBIGUOUS
                        ? "two training forwards, or an eval forward after the training "
                          "forward, ran since the last backward"
                        : "no forward to differentiate: none ran yet, or the last one was "
                          "already differentiated (or its backward refused); run a new forward");
}
