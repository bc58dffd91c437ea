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
                    const char *path, const ex_metadata *meta, ex_error *err)
{
    r->metrics_lines = metrics_lines;
    const double before = r->seconds;
    r->seconds = ex_run_seconds(r);
    const ex_code code = ex_tensors_save(fill, ctx, path, meta, err);
    r->seconds = before;
    return code;
}

/* A resume: the file's training options and ranks must be this run's; read
 * alone first, so that a run with other options hears so before any
 * tensor that they add or remove is reported. */
static ex_code check_run(const ex_run_state *r, const srp_checkpoint *c, const char *path,
                         ex_error *err)
{
    char written[EX_FINGERPRINT_LEN];
    uint64_t ranks = 0;
    const srp_tensor_ref refs[2] = {
        {"train.fingerprint", SRP_DTYPE_U8, 1, {EX_FINGERPRINT_LEN}, written},
        {"train.ranks", SRP_DTYPE_U64, 0, {0}, &ranks}};
    if (srp_checkpoint_read(c, refs, 2) != SRP_OK) {
        srp_clear_last_error(); /* the whole read says what is wrong */
        return EX_OK;
    }
    written[EX_FINGERPRINT_LEN - 1] = '\0';
    if (strcmp(written, r->fingerprint) != 0)
        return ex_fail(err, EX_USAGE,
                       "%s was written by a run with other training options; resume with the "
                       "same ones.\n  checkpoint: %s\n  this run:   %s",
                       path, written, r->fingerprint);
    if (ranks != r->ranks)
        return ex_fail(err, EX_USAGE,
                       "%s was written by a run on %llu rank%s and this run has %llu: resume at "
                       "the same number of ranks (mpirun -np %llu)",
                       path, (unsigned long long)ranks, ranks == 1 ? "" : "s",
                       (unsigned long long)r->ranks, (unsigned long long)ranks);
    return EX_OK;
}

ex_code ex_run_load(ex_run_state *r, ex_tensor_fill fill, void *ctx, const char *path,
                    int model_only, const ex_metadata *meta, ex_error *err)
{
    srp_tensor_list *list = NULL;
    ex_code code = ex_tensors_make(&list, fill, ctx, err);
    srp_checkpoint *c = NULL;
    if (code == EX_OK)
        code = ex_checkpoint_open_checked(&c, path, meta, err);
    if (code == EX_OK && !model_only)
        code = check_run(r, c, path, err);
    /* A model-only list leaves the run's state as it was. */
    if (code == EX_OK)
        code = ex_checkpoint_read_checked(c, path, srp_tensor_list_refs(list),
                                          srp_tensor_list_count(list), model_only, err);
    srp_checkpoint_close(c);
    srp_tensor_list_destroy(list);
    return code;
}
