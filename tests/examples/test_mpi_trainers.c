/* Both trainers data-parallel under mpirun (SRP_WITH_MPI builds), run as a
 * user runs them: 2 ranks at 1 thread each against 1 process with the
 * same global batch (the same losses, entropy bounds and final state, to
 * float rounding), the replica check every step, the u/v/sigma broadcast
 * when the ranks' thread counts differ, one rank's bad data file, a
 * failure injected on one rank in each collective phase, or --help on one
 * rank stopping every rank, exact resume at the same rank count and a
 * clear refusal at another. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "trainer_harness.h"

#define MAX_VALUES 256
#define MAX_ARRAY_VALUES 4096

/* Small runs. The test set (200) is not a multiple of a rank's share of
 * the batch (32), so the last evaluation batch is partial. One fused qkv:
 * with k apart (the trainer's default), the key bias is a tensor of its
 * own whose gradient is only rounding noise (softmax ignores a shift of
 * every score), so its values differ with the summation order entirely. */
#define VIT_ARGS                                                                                   \
    "--dataset synthetic --synthetic-train 512 --synthetic-test 200 --epochs 2 --batch 64 "        \
    "--dim 32 --depth 2 --heads 2 --mlp-dim 64 --patch 7 --stem 4 --qkv-sigma fused "              \
    "--log-every 1 --bound-every 1"
/* SGD, not the LM's default AdamW: the key bias gets no gradient but
 * rounding noise (softmax ignores a shift of every score), which AdamW's
 * normalization turns into full-size steps whose sign differs with the
 * summation order, across ranks as across thread counts. */
#define LM_ARGS                                                                                    \
    "--context 16 --dim 32 --depth 2 --heads 2 --mlp-dim 64 --batch 8 --steps 40 --warmup 5 "      \
    "--eval-every 20 --eval-windows 30 --log-every 1 --bound-every 1 --optimizer sgd --lr 0.1"

/* `exe --threads <threads> args`, on one process or under mpirun. */
static int run_ranks(int ranks, const char *exe, int threads, const char *args, char *out,
                     size_t outlen)
{
    char cmd[8192];
    if (ranks == 1)
        snprintf(cmd, sizeof(cmd), "'%s' --threads %d %s", exe, threads, args);
    else
        snprintf(cmd, sizeof(cmd), "timeout 300 %s -np %d '%s' --threads %d %s", SRP_MPIRUN, ranks,
                 exe, threads, args);
    return run_command(cmd, out, outlen);
}

/* The metrics' values of key on lines of type agree to rel, and there
 * are as many. */
static void assert_metrics_close(const char *a, const char *b, const char *type, const char *key,
                                 double rel)
{
    static double x[MAX_VALUES], y[MAX_VALUES];
    const size_t n = all_values(a, type, key, x, MAX_VALUES);
    assert_true(n > 0);
    assert_int_equal(all_values(b, type, key, y, MAX_VALUES), n);
    for (size_t i = 0; i < n; i++)
        if (!(fabs(x[i] - y[i]) <= rel * fabs(x[i]))) {
            print_error("%s %s #%zu: %.9g on 1 rank, %.9g on 2\n", type, key, i, x[i], y[i]);
            fail();
        }
}

/* The entropy bound, logged at every step on 1 rank (m1) and on 2 (m2),
 * is never above the entropy it bounds (`bounded`: the ViT's per-head
 * minimum, the causal LM's per-head mean) on either. On 2 ranks it must
 * cover both ranks' shares: the ViT's, the least of the ranks' bounds, is
 * the 1-rank bound of the whole batch (the bound falls as s grows, and
 * the batch's s is the larger of the shares'), to float rounding; the
 * LM's, the mean of the ranks' bounds, is at least the 1-rank one. */
static void assert_bounds_hold(const char *m1, const char *m2, const char *bounded, int same)
{
    static double b1[MAX_ARRAY_VALUES], b2[MAX_ARRAY_VALUES], e[MAX_ARRAY_VALUES];
    const size_t n = all_array_values(m1, "train", "entropy_bound", b1, MAX_ARRAY_VALUES);
    assert_true(n > 0 && n < MAX_ARRAY_VALUES);
    assert_int_equal(all_array_values(m2, "train", "entropy_bound", b2, MAX_ARRAY_VALUES), n);
    for (int ranks = 1; ranks <= 2; ranks++) {
        const double *b = ranks == 1 ? b1 : b2;
        assert_int_equal(
            all_array_values(ranks == 1 ? m1 : m2, "train", bounded, e, MAX_ARRAY_VALUES), n);
        for (size_t i = 0; i < n; i++)
            if (!(b[i] <= e[i])) {
                print_error("%d rank(s), value #%zu: bound %.9g above %s %.9g\n", ranks, i, b[i],
                            bounded, e[i]);
                fail();
            }
    }
    for (size_t i = 0; i < n; i++)
        if (same ? !(fabs(b2[i] - b1[i]) <= 1e-5 * fabs(b1[i]) + 1e-6)
                 : !(b2[i] >= b1[i] * (1.0 - 1e-4) - 1e-6)) {
            print_error("bound #%zu: %.9g on 1 rank, %.9g on 2\n", i, b1[i], b2[i]);
            fail();
        }
    /* Its terms are the largest of the ranks': s and ||X X^T||, maxima over
     * the batch's sequences, are the 1-rank ones (||M|| is the weights'),
     * to the rounding of the runs' weights. */
    static const char *const terms[] = {"entropy_bound_s", "entropy_bound_m_norm",
                                        "entropy_bound_x_gram_norm"};
    for (size_t k = 0; k < 3; k++) {
        const size_t nt = all_array_values(m1, "train", terms[k], b1, MAX_ARRAY_VALUES);
        assert_true(nt > 0);
        assert_int_equal(all_array_values(m2, "train", terms[k], b2, MAX_ARRAY_VALUES), nt);
        for (size_t i = 0; i < nt; i++)
            if (!(fabs(b2[i] - b1[i]) <= 1e-4 * fabs(b1[i]))) {
                print_error("%s #%zu: %.9g on 1 rank, %.9g on 2\n", terms[k], i, b1[i], b2[i]);
                fail();
            }
    }
}

static void assert_checkpoints_close(const char *a, const char *b, double rel)
{
    char worst[256] = "";
    const double d = checkpoint_float_difference(a, b, worst, sizeof(worst));
    if (!(d >= 0.0 && d <= rel)) {
        print_error("checkpoints %s and %s: largest relative difference %.3g in %s\n", a, b, d,
                    worst);
        fail();
    }
}

/* The same global batch on 2 ranks as on 1: the same trajectory and final
 * state to float rounding (the ranks sum their halves in another order),
 * and every rank holds the same bits at every step (--check-replicas 1). */
static void test_vit_two_ranks_match_one(void **state)
{
    (void)state;
    static char out[1 << 16];
    char m1[512], m2[512], c1[512], c2[512], args[2048];
    scratch_path(m1, sizeof(m1), "vit1.jsonl");
    scratch_path(m2, sizeof(m2), "vit2.jsonl");
    scratch_path(c1, sizeof(c1), "vit1.ckpt");
    scratch_path(c2, sizeof(c2), "vit2.ckpt");
    snprintf(args, sizeof(args), VIT_ARGS " --metrics %s --checkpoint %s", m1, c1);
    assert_int_equal(run_ranks(1, VIT_TRAIN_EXE, 1, args, out, sizeof(out)), 0);
    snprintf(args, sizeof(args), VIT_ARGS " --metrics %s --checkpoint %s --check-replicas 1", m2,
             c2);
    const int rc = run_ranks(2, VIT_TRAIN_EXE, 1, args, out, sizeof(out));
    if (rc != 0) {
        print_error("%s\n", out);
        fail();
    }
    assert_non_null(strstr(out, "data-parallel over 2 ranks"));
    assert_non_null(strstr(out, "every rank computes the same bits"));
    assert_non_null(strstr(out, "gradient allreduce:"));
    assert_metrics_close(m1, m2, "train", "loss", 1e-5);
    assert_metrics_close(m1, m2, "train", "acc", 0.0);
    assert_metrics_close(m1, m2, "train", "grad_norm", 1e-4);
    assert_metrics_close(m1, m2, "eval", "loss", 1e-5);
    assert_metrics_close(m1, m2, "eval", "acc", 0.0);
    assert_bounds_hold(m1, m2, "entropy_min", 1);
    assert_checkpoints_close(c1, c2, 1e-4);
}

/* The LM's text: 8 KB of short, distinct documents. */
static void write_lm_text(const char *path)
{
    static char body[8192];
    size_t len = 0;
    for (int d = 0; len + 64 < sizeof(body); d++)
        len += (size_t)snprintf(body + len, sizeof(body) - len,
                                "document %d: the quick brown fox %d\n\n", d, d * 7 % 13);
    write_bytes(path, body, len, 0);
}

static void test_lm_two_ranks_match_one(void **state)
{
    (void)state;
    static char out[1 << 16];
    char text[512], m1[512], m2[512], c1[512], c2[512], args[2048];
    scratch_path(text, sizeof(text), "text.txt");
    write_lm_text(text);
    scratch_path(m1, sizeof(m1), "lm1.jsonl");
    scratch_path(m2, sizeof(m2), "lm2.jsonl");
    scratch_path(c1, sizeof(c1), "lm1.ckpt");
    scratch_path(c2, sizeof(c2), "lm2.ckpt");
    snprintf(args, sizeof(args), LM_ARGS " --text %s --metrics %s --checkpoint %s", text, m1, c1);
    assert_int_equal(run_ranks(1, LM_TRAIN_EXE, 1, args, out, sizeof(out)), 0);
    snprintf(args, sizeof(args),
             LM_ARGS " --text %s --metrics %s --checkpoint %s --check-replicas 1", text, m2, c2);
    const int rc = run_ranks(2, LM_TRAIN_EXE, 1, args, out, sizeof(out));
    if (rc != 0) {
        print_error("%s\n", out);
        fail();
    }
    assert_metrics_close(m1, m2, "train", "loss", 1e-5);
    assert_metrics_close(m1, m2, "train", "grad_norm", 1e-4);
    assert_metrics_close(m1, m2, "eval", "bpc", 1e-5);
    assert_bounds_hold(m1, m2, "entropy_mean", 0);
    assert_checkpoints_close(c1, c2, 1e-4);
}

/* Ranks at different thread counts may round differently in the power
 * step: rank 0's u, v and sigma are then broadcast after every step, and
 * the replica check holds at every step. */
static void test_mixed_threads_broadcast_the_spectral_state(void **state)
{
    (void)state;
    static char out[1 << 16];
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "timeout 300 %s -np 1 '%s' --threads 1 " VIT_ARGS " --check-replicas 1 : -np 1 '%s' "
             "--threads 2 " VIT_ARGS " --check-replicas 1",
             SRP_MPIRUN, VIT_TRAIN_EXE, VIT_TRAIN_EXE);
    const int rc = run_command(cmd, out, sizeof(out));
    if (rc != 0 || !strstr(out, "u, v and sigma broadcast from rank 0")) {
        print_error("exit %d\n%s\n", rc, out);
        fail();
    }
}

/* One rank's data file is truncated: that rank says why, the others say
 * which rank failed, and all exit (no hang: the timeout would give 124). */
static void test_one_bad_rank_stops_every_rank(void **state)
{
    (void)state;
    static char out[1 << 16];
    char bad[512], file[600], cmd[4096];
    scratch_path(bad, sizeof(bad), "bad_data");
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", bad);
    assert_int_equal(system(cmd), 0);
    const char *names[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                           "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (int i = 0; i < 4; i++) {
        snprintf(file, sizeof(file), "%s/%s", bad, names[i]);
        write_bytes(file, "\0\0\x08", 3, 1); /* a truncated IDX header */
    }
    snprintf(cmd, sizeof(cmd),
             "timeout 120 %s -np 1 '%s' --threads 1 " VIT_ARGS " : -np 1 '%s' --threads 1 "
             "--data-dir '%s' --epochs 2 --batch 64 --dim 32 --depth 2 --heads 2 --mlp-dim 64 "
             "--patch 7",
             SRP_MPIRUN, VIT_TRAIN_EXE, VIT_TRAIN_EXE, bad);
    const int rc = run_command(cmd, out, sizeof(out));
    if (rc == 0 || rc == 124 || !strstr(out, "error: rank 1: ") ||
        !strstr(out, "error: rank 0: rank 1 failed (its message says why)")) {
        print_error("exit %d\n%s\n", rc, out);
        fail();
    }
}

/* A failure on rank 1 alone, injected (EX_TEST_FAIL, examples/common/
 * test_hooks.h) into each phase that ends in a collective call: after the
 * gradient allreduce (the optimizer step), in reading the entropies, in an
 * evaluation. Every rank exits, rank 1 with the reason and rank 0 naming
 * rank 1 (no hang: the timeout would give 124). */
static void test_a_failure_on_one_rank_stops_every_rank(void **state)
{
    (void)state;
    static char out[1 << 16];
    char text[512], args[2048], cmd[4096], expect[256];
    scratch_path(text, sizeof(text), "text.txt");
    write_lm_text(text);
    const struct {
        const char *exe, *args, *phase;
        int step, lm;
    } cases[] = {
        {VIT_TRAIN_EXE, VIT_ARGS, "step", 5, 0},  {VIT_TRAIN_EXE, VIT_ARGS, "entropy", 5, 0},
        {VIT_TRAIN_EXE, VIT_ARGS, "eval", 8, 0},  {LM_TRAIN_EXE, LM_ARGS, "step", 5, 1},
        {LM_TRAIN_EXE, LM_ARGS, "entropy", 5, 1}, {LM_TRAIN_EXE, LM_ARGS, "eval", 20, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(args, sizeof(args), "%s%s%s", cases[i].args, cases[i].lm ? " --text " : "",
                 cases[i].lm ? text : "");
        snprintf(cmd, sizeof(cmd), "EX_TEST_FAIL=1:%d:%s timeout 120 %s -np 2 '%s' --threads 1 %s",
                 cases[i].step, cases[i].phase, SRP_MPIRUN, cases[i].exe, args);
        const int rc = run_command(cmd, out, sizeof(out));
        snprintf(expect, sizeof(expect),
                 "error: rank 1: a failure injected for a test (EX_TEST_FAIL) in the %s phase of "
                 "step %d\n",
                 cases[i].phase, cases[i].step);
        char peer[256]; /* rank 0's word */
        if (strcmp(cases[i].phase, "step") == 0)
            snprintf(peer, sizeof(peer), "error: rank 0: step %d failed on another rank",
                     cases[i].step);
        else
            snprintf(peer, sizeof(peer), "error: rank 0: rank 1 failed (its message says why)");
        if (rc == 0 || rc == 124 || !strstr(out, expect) || !strstr(out, peer)) {
            print_error("%s at step %d: exit %d\n%s\n", cases[i].phase, cases[i].step, rc, out);
            fail();
        }
    }
}

/* --help given to one rank only: every rank stops (the others with a
 * usage error that says why) instead of training while it has left. */
static void test_help_on_one_rank_stops_every_rank(void **state)
{
    (void)state;
    static char out[1 << 16];
    char cmd[4096];
    for (int helped = 0; helped < 2; helped++) {
        snprintf(cmd, sizeof(cmd),
                 "timeout 120 %s -np 1 '%s' --threads 1 " VIT_ARGS
                 "%s : -np 1 '%s' --threads 1 " VIT_ARGS "%s",
                 SRP_MPIRUN, VIT_TRAIN_EXE, helped == 0 ? " --help" : "", VIT_TRAIN_EXE,
                 helped == 1 ? " --help" : "");
        const int rc = run_command(cmd, out, sizeof(out));
        if (rc == 124 || rc == 0 || !strstr(out, "another rank was given --help")) {
            print_error("--help on rank %d: exit %d\n%s\n", helped, rc, out);
            fail();
        }
    }
}

/* Stopped and resumed on 2 ranks, a run ends as the uninterrupted 2-rank
 * run does, bit for bit; resuming on 1 rank is refused with the reason;
 * a batch the ranks cannot split, and the blocks' regularizers, are usage
 * errors. */
static void test_resume_at_the_same_rank_count(void **state)
{
    (void)state;
    static char out[1 << 16];
    char m_full[512], c_full[512], m_part[512], c_part[512], args[4096];
    scratch_path(m_full, sizeof(m_full), "full.jsonl");
    scratch_path(c_full, sizeof(c_full), "full.ckpt");
    scratch_path(m_part, sizeof(m_part), "part.jsonl");
    scratch_path(c_part, sizeof(c_part), "part.ckpt");
    snprintf(args, sizeof(args), VIT_ARGS " --metrics %s --checkpoint %s", m_full, c_full);
    assert_int_equal(run_ranks(2, VIT_TRAIN_EXE, 1, args, out, sizeof(out)), 0);
    snprintf(args, sizeof(args), VIT_ARGS " --metrics %s --checkpoint %s --stop-after-steps 5",
             m_part, c_part);
    assert_int_equal(run_ranks(2, VIT_TRAIN_EXE, 1, args, out, sizeof(out)), 0);
    snprintf(args, sizeof(args), VIT_ARGS " --metrics %s --checkpoint %s --resume %s", m_part,
             c_part, c_part);
    assert_int_equal(run_ranks(2, VIT_TRAIN_EXE, 1, args, out, sizeof(out)), 0);
    assert_true(same_but_time(m_full, m_part, 0));
    assert_true(same_but_time(c_full, c_part, 1));

    snprintf(args, sizeof(args), VIT_ARGS " --resume %s", c_full);
    assert_int_equal(run_ranks(1, VIT_TRAIN_EXE, 1, args, out, sizeof(out)), 2);
    assert_non_null(strstr(out, "was written by a run on 2 ranks and this run has 1"));

    assert_int_equal(run_ranks(2, VIT_TRAIN_EXE, 1, VIT_ARGS " --batch 63", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "must split evenly over the 2 ranks"));
    /* every rank would draw the same masks for its own examples */
    assert_int_equal(run_ranks(2, VIT_TRAIN_EXE, 1, VIT_ARGS " --drop-path 0.1", out, sizeof(out)),
                     2);
    assert_non_null(strstr(out, "under mpirun every rank would draw the same masks"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vit_two_ranks_match_one),
        cmocka_unit_test(test_lm_two_ranks_match_one),
        cmocka_unit_test(test_mixed_threads_broadcast_the_spectral_state),
        cmocka_unit_test(test_one_bad_rank_stops_every_rank),
        cmocka_unit_test(test_a_failure_on_one_rank_stops_every_rank),
        cmocka_unit_test(test_help_on_one_rank_stops_every_rank),
        cmocka_unit_test(test_resume_at_the_same_rank_count),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
