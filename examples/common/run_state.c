#include "run_state.h"

#include <stdlib.h>
#include <string.h>

#include "progress.h"

double ex_run_seconds(const ex_run_state *r)
{
    return r->seconds + (r->started > 0.0 ? ex_now() - r->started : 0.0);
}

void ex_run_tensors(ex_run_state *r, srp_tensor_list *list)
{
    const size_t fp = EX_FINGERPRINT_LEN;
    srp_tensor_list_add(list, "train.step", NULL, SRP_DTYPE_U64, 0, NULL, &r->step);
    srp_tensor_list_add(list, "train.metrics_lines", NULL, SRP_DTYPE_U64, 0, NULL,
                        &r->metrics_lines);
    srp_tensor_list_add(list, "train.ranks", NULL, SRP_DTYPE_U64, 0, NULL, &r->ranks);
    srp_tensor_list_add(list, "train.seconds", NULL, SRP_DTYPE_F64, 0, NULL, &r->seconds);
    srp_tensor_list_add(list, "train.fingerprint", NULL, SRP_DTYPE_U8, 1, &fp, r->fingerprint);
}

ex_code ex_run_save(ex_run_state *r, ex_tensor_fill fill, void *ctx, uint64_t metrics_lines,
                    const char *path, ex_error *err)
{
    r->metrics_lines = metrics_lines;
    const double before = r->seconds;
    r->seconds = ex_run_seconds(r);
    const ex_code code = ex_tensors_save(fill, ctx, path, err);
    r->seconds = before;
    return code;
}

ex_code ex_run_load(ex_run_state *r, ex_tensor_fill fill, void *ctx, const char *path,
                    ex_error *err)
{
    char expected[EX_FINGERPRINT_LEN];
    memcpy(expected, r->fingerprint, sizeof(expected));
    const uint64_t ranks = r->ranks;
    const ex_code code = ex_tensors_load(fill, ctx, path, err);
    if (code != EX_OK)
        return code;
    /* A model-only load leaves the fingerprint as it was. */
    if (strcmp(expected, r->fingerprint) != 0)
        return ex_fail(err, EX_USAGE,
                       "%s was written by a run with other training options; resume with the "
                       "same ones.\n  checkpoint: %s\n  this run:   %s",
                       path, r->fingerprint, expected);
    if (r->ranks != ranks) {
        const uint64_t written = r->ranks;
        r->ranks = ranks;
        return ex_fail(err, EX_USAGE,
                       "%s was written by a run on %llu rank%s and this run has %llu: resume at "
                       "the same number of ranks (mpirun -np %llu)",
                       path, (unsigned long long)written, written == 1 ? "" : "s",
                       (unsigned long long)ranks, (unsigned long long)written);
    }
    return EX_OK;
}
