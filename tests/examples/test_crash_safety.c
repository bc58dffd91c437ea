/* The trainer's checkpoints under a crash and a full disk, run as a user
 * runs it: SIGKILL at random moments (most of them inside a checkpoint
 * write, with a checkpoint every step) 50 times, each time resuming from
 * whatever is on disk, must end bit for bit where an uninterrupted run
 * ends; a checkpoint write that hits a file-size limit fails with a
 * message and a non-zero exit, and leaves the previous checkpoint as it
 * was. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "trainer_harness.h"

#define KILLS 50

/* A tiny model with a checkpoint at every step: about 1,000 steps, so
 * that the time goes mostly into checkpoint writes. */
static const char *const k_args[] = {"--threads",
                                     "1",
                                     "--dataset",
                                     "synthetic",
                                     "--synthetic-train",
                                     "1024",
                                     "--synthetic-test",
                                     "64",
                                     "--epochs",
                                     "30",
                                     "--batch",
                                     "32",
                                     "--dim",
                                     "16",
                                     "--depth",
                                     "1",
                                     "--heads",
                                     "2",
                                     "--mlp-dim",
                                     "32",
                                     "--no-augment",
                                     "--stem",
                                     "4",
                                     "--checkpoint-every",
                                     "1",
                                     "--log-every",
                                     "7",
                                     NULL};

/* Starts the trainer with k_args, then extra (NULL-terminated), output to
 * log; fsize_limit > 0 caps the size of any file it writes. */
static pid_t start(const char *const *extra, const char *log, rlim_t fsize_limit)
{
    const char *argv[64];
    size_t n = 0;
    argv[n++] = VIT_TRAIN_EXE;
    for (size_t i = 0; k_args[i]; i++)
        argv[n++] = k_args[i];
    for (size_t i = 0; extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    fflush(NULL);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (fsize_limit > 0) {
            struct rlimit lim = {fsize_limit, fsize_limit};
            setrlimit(RLIMIT_FSIZE, &lim);
        }
        execv(VIT_TRAIN_EXE, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void fail_with_log(const char *what, const char *log)
{
    char *text = read_text(log);
    const size_t len = strlen(text);
    print_error("%s; the end of the trainer's output:\n%s\n", what,
                text + (len > 1500 ? len - 1500 : 0));
    free(text);
    fail();
}

static void test_killed_fifty_times_ends_bit_for_bit(void **state)
{
    (void)state;
    char ref_ckpt[512], ref_metrics[512], ckpt[512], tmp[600], metrics[512], log[512];
    scratch_path(ref_ckpt, sizeof(ref_ckpt), "ref.ckpt");
    scratch_path(ref_metrics, sizeof(ref_metrics), "ref.jsonl");
    scratch_path(ckpt, sizeof(ckpt), "run.ckpt");
    snprintf(tmp, sizeof(tmp), "%s.tmp", ckpt);
    scratch_path(metrics, sizeof(metrics), "run.jsonl");
    scratch_path(log, sizeof(log), "run.log");

    const double t0 = now_seconds();
    const char *ref[] = {"--checkpoint", ref_ckpt, "--metrics", ref_metrics, NULL};
    if (wait_exit(start(ref, log, 0)) != 0)
        fail_with_log("the uninterrupted run failed", log);
    const double run_seconds = now_seconds() - t0;

    srand(20261130);
    int kills = 0, in_write = 0, fresh_starts = 0;
    for (int attempt = 0; kills < KILLS; attempt++) {
        if (attempt > 20 * KILLS)
            fail_with_log("the run kept finishing before it could be killed", log);
        const char *resume[] = {"--checkpoint", ckpt, "--metrics", metrics, "--resume", ckpt, NULL};
        const char *fresh[] = {"--checkpoint", ckpt, "--metrics", metrics, NULL};
        const int have = file_exists(ckpt);
        fresh_starts += !have;
        const pid_t pid = start(have ? resume : fresh, log, 0);
        /* A random moment within the run's expected length. */
        const double delay = 0.02 + (run_seconds / 4.0) * (double)rand() / RAND_MAX;
        struct timespec ts = {(time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9)};
        nanosleep(&ts, NULL);
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            /* It ended by itself: it must have finished cleanly, and then
             * starts again from scratch for more kills. */
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_with_log("a resumed run failed (its checkpoint did not load?)", log);
            remove(ckpt);
            continue;
        }
        kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        kills++;
        in_write += file_exists(tmp); /* killed with a checkpoint half written */
    }
    /* Resume once more, to the end. */
    const char *resume[] = {"--checkpoint", ckpt, "--metrics", metrics, "--resume", ckpt, NULL};
    const char *fresh[] = {"--checkpoint", ckpt, "--metrics", metrics, NULL};
    if (wait_exit(start(file_exists(ckpt) ? resume : fresh, log, 0)) != 0)
        fail_with_log("the last resumed run failed", log);
    assert_true(same_but_time(ref_ckpt, ckpt, 1));
    assert_true(same_but_time(ref_metrics, metrics, 0));
    print_message("%d kills (%d with a checkpoint half written, %d before the first checkpoint); "
                  "the final checkpoint and metrics equal the uninterrupted run's\n",
                  kills, in_write, fresh_starts);
    assert_true(in_write > 0);
}

/* A checkpoint write beyond the file-size limit (a full disk) fails: the
 * trainer says so and exits 1; the previous checkpoint is unchanged and
 * still resumes. */
static void test_full_disk_keeps_the_previous_checkpoint(void **state)
{
    (void)state;
    char ckpt[512], log[512];
    scratch_path(ckpt, sizeof(ckpt), "disk.ckpt");
    scratch_path(log, sizeof(log), "disk.log");
    const char *first[] = {"--checkpoint", ckpt, "--stop-after-steps", "3", NULL};
    if (wait_exit(start(first, log, 0)) != 0)
        fail_with_log("the first run failed", log);
    size_t size_before = 0;
    unsigned char *before = read_file_bytes(ckpt, &size_before);
    assert_non_null(before);
    remove(log);

    const char *full[] = {"--checkpoint", ckpt, "--resume", ckpt, "--stop-after-steps", "6", NULL};
    const int code = wait_exit(start(full, log, (rlim_t)(size_before / 2)));
    char *out = read_text(log);
    if (code != 1 || !strstr(out, "saving the checkpoint") || !strstr(out, "is intact")) {
        print_error("exit %d:\n%s\n", code, out);
        fail();
    }
    free(out);
    size_t size_after = 0;
    unsigned char *after = read_file_bytes(ckpt, &size_after);
    assert_non_null(after);
    assert_int_equal(size_after, size_before);
    assert_memory_equal(after, before, size_before);
    remove(log);
    if (wait_exit(start(full, log, 0)) != 0)
        fail_with_log("resuming after the failed write failed", log);
    free(before);
    free(after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_killed_fifty_times_ends_bit_for_bit),
        cmocka_unit_test(test_full_disk_keeps_the_previous_checkpoint),
    };
    return cmocka_run_group_tests(tests, scratch_setup, scratch_teardown);
}
