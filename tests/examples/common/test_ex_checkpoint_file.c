/* examples/common/checkpoint_file.c: a trainer's checkpoint with its
 * model's configuration, checked on every load; strict reads (a model
 * alone may leave a run's state unread, nothing else); all or nothing. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "common/checkpoint_file.h"
#include "testutil.h"

/* A "model" (w, b) and a "run" (train.step, optim.m) with their fills. */
typedef struct {
    float w[6], b[2], step[1], m[6];
    int model_only; /* the fill lists the model's tensors alone */
    int extra;      /* the fill lists one tensor more: "extra" */
    int broken;     /* the fill adds a name twice: a failed list */
    int checks;     /* calls of check */
    ex_code verdict;
} model;

static void fill(void *ctx, srp_tensor_list *list)
{
    model *m = ctx;
    srp_tensor_list_add_f32(list, "layer", "w", m->w, 6);
    srp_tensor_list_add_f32(list, "layer", "b", m->b, 2);
    if (!m->model_only) {
        srp_tensor_list_add_f32(list, "train", "step", m->step, 1);
        srp_tensor_list_add_f32(list, "optim", "m", m->m, 6);
    }
    if (m->extra)
        srp_tensor_list_add_f32(list, NULL, "extra", m->m, 6);
    if (m->broken)
        srp_tensor_list_add_f32(list, "layer", "w", m->w, 6);
}

static ex_code check(void *ctx, const srp_checkpoint *c, const char *path, ex_error *err)
{
    model *m = ctx;
    m->checks++;
    assert_non_null(c);
    return m->verdict == EX_OK ? EX_OK : ex_fail(err, m->verdict, "%s: refused by check", path);
}

static void fill_values(model *m, float base)
{
    memset(m, 0, sizeof(*m));
    for (int i = 0; i < 6; i++)
        m->w[i] = base + (float)i, m->m[i] = -base - (float)i;
    m->b[0] = base * 2, m->b[1] = base * 3, m->step[0] = base * 10;
}

static void meta_of(ex_metadata *meta, const char *heads, const char *predates)
{
    ex_metadata_init(meta, "toy", predates);
    ex_metadata_add(meta, "heads", "%s", heads);
    ex_metadata_add(meta, "dim", "%d", 6);
}

static void assert_same(const model *a, const model *b, int with_run)
{
    assert_memory_equal(a->w, b->w, sizeof(a->w));
    assert_memory_equal(a->b, b->b, sizeof(a->b));
    if (with_run) {
        assert_memory_equal(a->step, b->step, sizeof(a->step));
        assert_memory_equal(a->m, b->m, sizeof(a->m));
    }
}

static void test_metadata(void **state)
{
    (void)state;
    ex_metadata meta;
    meta_of(&meta, "4", NULL);
    assert_int_equal(meta.count, 3);
    assert_string_equal(meta.pairs[0], "model");
    assert_string_equal(meta.pairs[1], "toy");
    assert_string_equal(meta.pairs[4], "dim");
    assert_string_equal(meta.pairs[5], "6");
    for (int i = 3; i < EX_METADATA_MAX + 5; i++) /* a full table takes no more */
        ex_metadata_add(&meta, "k", "%d", i);
    assert_int_equal(meta.count, EX_METADATA_MAX);
    assert_string_equal(meta.pairs[2 * EX_METADATA_MAX - 1], "31");
}

/* Saved and loaded, the run and the model; the model alone from a run's
 * file; the check sees the open file first. */
static void test_round_trip(void **state)
{
    (void)state;
    char path[512];
    scratch_path(path, sizeof(path), "round.ckpt");
    model a, b;
    fill_values(&a, 1.5f);
    fill_values(&b, 0.0f);
    ex_metadata meta;
    meta_of(&meta, "4", "the change");
    ex_error err;
    assert_int_equal(ex_checkpoint_save(fill, &a, path, &meta, &err), EX_OK);
    assert_int_equal(ex_checkpoint_load(fill, &b, path, 0, &meta, check, &err), EX_OK);
    assert_int_equal(b.checks, 1);
    assert_same(&a, &b, 1);

    fill_values(&b, 0.0f);
    b.model_only = 1;
    assert_int_equal(ex_checkpoint_load(fill, &b, path, 1, &meta, NULL, &err), EX_OK);
    assert_same(&a, &b, 0);
    assert_true(b.step[0] == 0.0f);
}

/* Every refusal leaves the model as it was, and says why. */
static void test_refusals(void **state)
{
    (void)state;
    char path[512], bare[512], extra[512];
    scratch_path(path, sizeof(path), "refuse.ckpt");
    scratch_path(bare, sizeof(bare), "bare.ckpt");
    scratch_path(extra, sizeof(extra), "extra.ckpt");
    model a, b, zero;
    fill_values(&a, 2.0f);
    fill_values(&zero, 0.0f);
    ex_metadata meta, other;
    meta_of(&meta, "8", NULL);
    meta_of(&other, "4", NULL);
    ex_error err;
    assert_int_equal(ex_checkpoint_save(fill, &a, path, &meta, &err), EX_OK);

    /* another model: a usage error naming the option, the check not run */
    fill_values(&b, 0.0f);
    assert_int_equal(ex_checkpoint_load(fill, &b, path, 0, &other, check, &err), EX_USAGE);
    assert_non_null(strstr(err.message, "holds another model"));
    assert_non_null(strstr(err.message, "heads is 8 in the file, 4 here"));
    assert_int_equal(b.checks, 0);
    assert_same(&b, &zero, 1);

    /* the check's verdict */
    b.verdict = EX_USAGE;
    assert_int_equal(ex_checkpoint_load(fill, &b, path, 0, &meta, check, &err), EX_USAGE);
    assert_non_null(strstr(err.message, "refused by check"));
    assert_same(&b, &zero, 1);
    b.verdict = EX_OK;

    /* strict: the list lacks the file's run state; a model alone may */
    b.model_only = 1;
    assert_int_equal(ex_checkpoint_load(fill, &b, path, 0, &meta, NULL, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "other model options"));
    assert_same(&b, &zero, 1);
    /* the list names a tensor the file lacks */
    b.model_only = 0;
    b.extra = 1;
    assert_int_equal(ex_checkpoint_load(fill, &b, path, 1, &meta, NULL, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "other model options"));
    assert_same(&b, &zero, 1);
    b.extra = 0;

    /* a model alone from a file with a tensor neither the model's nor a
     * run's: refused, the tensor named */
    a.extra = 1;
    assert_int_equal(ex_checkpoint_save(fill, &a, extra, &meta, &err), EX_OK);
    b.model_only = 1;
    assert_int_equal(ex_checkpoint_load(fill, &b, extra, 1, &meta, NULL, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "tensors this model does not have: extra;"));
    assert_same(&b, &zero, 0);
    a.extra = 0;
    b.model_only = 0;

    /* a file without metadata: read when the model predates nothing,
     * refused (naming what it predates) otherwise */
    srp_tensor_list *l;
    assert_ok(srp_tensor_list_create(&l));
    fill(&a, l);
    assert_ok(srp_checkpoint_save(bare, srp_tensor_list_refs(l), srp_tensor_list_count(l)));
    srp_tensor_list_destroy(l);
    assert_int_equal(ex_checkpoint_load(fill, &b, bare, 0, &meta, NULL, &err), EX_OK);
    assert_same(&a, &b, 1);
    fill_values(&b, 0.0f);
    ex_metadata newer;
    meta_of(&newer, "8", "the kernels became OIHW");
    assert_int_equal(ex_checkpoint_load(fill, &b, bare, 0, &newer, NULL, &err), EX_USAGE);
    assert_non_null(strstr(err.message, "records no model configuration"));
    assert_non_null(strstr(err.message, "before the kernels became OIHW"));
    assert_same(&b, &zero, 1);

    /* no file */
    char missing[512];
    scratch_path(missing, sizeof(missing), "missing.ckpt");
    assert_int_equal(ex_checkpoint_load(fill, &b, missing, 0, &meta, NULL, &err), EX_FAILED);
    assert_non_null(strstr(err.message, missing));

    /* a list that could not be made: neither saved nor read */
    b.broken = 1;
    assert_int_equal(ex_checkpoint_load(fill, &b, path, 0, &meta, NULL, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "listing the checkpoint's tensors"));
    assert_same(&b, &zero, 1);
    char never[512];
    scratch_path(never, sizeof(never), "never.ckpt");
    assert_int_equal(ex_checkpoint_save(fill, &b, never, &meta, &err), EX_FAILED);
    assert_false(file_exists(never));
}

/* A save that fails keeps the previous file and says so. */
static void test_failed_save(void **state)
{
    (void)state;
    model a;
    fill_values(&a, 1.0f);
    ex_metadata meta;
    meta_of(&meta, "4", NULL);
    ex_error err;
    char path[512];
    scratch_path(path, sizeof(path), "no-dir/x.ckpt");
    assert_int_equal(ex_checkpoint_save(fill, &a, path, &meta, &err), EX_FAILED);
    assert_non_null(strstr(err.message, "saving the checkpoint"));
    assert_non_null(strstr(err.message, "the previous checkpoint, if any, is intact"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_failed_save),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
