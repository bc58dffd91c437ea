/* Status strings and the run-time version. */
#include "internal.h"

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
        return "backward out of order: another forward ran after the one it differentiates";
    }
    return "unknown status";
}

const char *srp_version_string(void) { return SRP_VERSION_STRING; }

unsigned srp_version_number(void) { return SRP_VERSION_NUMBER; }
