#include "run_state.h"

#include <stdlib.h>
#include <string.h>

#include "progress.h"

double ex_run_seconds(const ex_run_state *r)
{
    return r->seconds + (r->started > 0.0 ? ex_now() - r->started : 0.0);
}

void ex_run_tensors(ex_run_state *r, ex_tensor_list *list)
{
    const size_t fp = EX_FINGERPRINT_LEN;
    ex_tensors_add(list, "train.step", SRP_DTYPE_U64, 0, NULL, &r->step);
    ex_tensors_add(list, "train.metrics_lines", SRP_DTYPE_U64, 0, NULL, &r->metrics_lines);
    ex_tensors_add(list, "train.ranks", SRP_DTYPE_U64, 0, NULL, &r->ranks);
    ex_tensors_add(list, "train.seconds", SRP_DTYPE_F64, 0, NULL, &r->seconds);
    ex_tensors_add(list, "train.fingerprint", SRP_DTYPE_U8, 1, &fp, r->fingerprint);
}

void ex_optim_tensors(srp_optim *o, ex_tensor_list *list)
{
    const size_t n = srp_optim_tensor_count(o);
    srp_tensor_ref *refs = calloc(n ? n : 1, sizeof(*refs));
    if (!refs || srp_optim_tensor_refs(o, refs, n) != SRP_OK)
        list->failed = 1;
    for (size_t i = 0; refs && i < n; i++)
        ex_tensors_add(list, refs[i].name, refs[i].dtype, refs[i].ndim, refs[i].shape,
                       refs[i].data);
    free(refs);
}

ex_code ex_run_save(ex_run_state *r, const ex_tensor_list *list, ex_linear_table *linears,
                    uint64_t metrics_lines, const char *path, const ex_metadata *meta,
                    ex_error *err)
{
    ex_linears_sync_out(linears);
    r->metrics_lines = metrics_lines;
    const double before = r->seconds;
    r->seconds = ex_run_seconds(r);
    const ex_code code = ex_tensors_save(list, path, meta, err);
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

ex_code ex_run_load(ex_run_state *r, const ex_tensor_list *list, size_t count,
                    ex_linear_table *linears, const char *path, const ex_metadata *meta,
                    ex_error *err)
{
    if (list->failed)
        return ex_fail(err, EX_FAILED, "out of memory listing the checkpoint's tensors");
    srp_checkpoint *c = NULL;
    ex_code code = ex_checkpoint_open_checked(&c, path, meta, err);
    if (code == EX_OK && count == 0)
        code = check_run(r, c, path, err);
    /* A model-only load (count) leaves the run's state as it was. */
    if (code == EX_OK)
        code = ex_checkpoint_read_checked(c, path, list->refs, count ? count : list->count,
                                          count != 0, err);
    srp_checkpoint_close(c);
    if (code != EX_OK)
        return code;
    const srp_status st = ex_linears_sync_in(linears);
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "restoring sigma");
}
