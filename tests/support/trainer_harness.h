/* What the tests of the example trainers share: running a trainer as a
 * user does (its output and exit code), small files, and reading metrics
 * and checkpoints back. cmocka assertions inside; the scratch folder is
 * testutil.h's. */
#ifndef TRAINER_HARNESS_H
#define TRAINER_HARNESS_H

#include <stddef.h>

double now_seconds(void); /* monotonic */

/* Runs a shell command line, stdout and stderr into out (truncated to
 * outlen). Returns the exit code, or -1 if it did not exit normally. */
int run_command(const char *cmd, char *out, size_t outlen);
/* Runs `'exe' --threads 1 args`, args formatted from fmt, stdout and
 * stderr into out (truncated to outlen). Returns the exit code, or -1 if
 * it did not exit normally. One thread, as every test runs by default
 * (tests/CMakeLists.txt says why); a test that compares with such a run
 * runs on one thread too (results are deterministic per thread count). */
int run_programf(const char *exe, char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes n bytes to path, gzip-compressed when gzip is set. */
void write_bytes(const char *path, const void *data, size_t n, int gzip);
/* A whole text file, NUL-terminated (fails the test when unreadable). */
char *read_text(const char *path);
/* Runs f(ctx) with the process's stdout written to path (for what a
 * program prints there: --help, progress lines). */
void stdout_into(const char *path, void (*f)(void *ctx), void *ctx);
/* The number after "key": on the last line of the metrics file whose type
 * is `type`; NaN when there is none. */
double last_value(const char *metrics_path, const char *type, const char *key);
/* Every value after "key": on the lines of type `type`, in order, into
 * out (at most cap); returns how many. */
size_t all_values(const char *metrics_path, const char *type, const char *key, double *out,
                  size_t cap);
/* Every number of the array (or nested arrays) after "key": on the lines
 * of type `type`, flattened in order, into out (at most cap); returns how
 * many. */
size_t all_array_values(const char *metrics_path, const char *type, const char *key, double *out,
                        size_t cap);
/* Two checkpoints with the same tensors (names, shapes, order): the
 * largest difference of a float tensor's values, relative to the tensor's
 * largest magnitude in a, over all float tensors; that tensor's name into
 * worst. -1 when the tables differ. For runs that differ only by rounding. */
double checkpoint_float_difference(const char *a, const char *b, char *worst, size_t worstlen);
/* The two files hold the same bytes, but for what wall time changes: the
 * metrics' "seconds", "budget_seconds", "budget_used" and "ms_per_step"
 * (checkpoint 0) or the checkpoint's train.seconds (checkpoint 1). */
int same_but_time(const char *a, const char *b, int checkpoint);
/* The two files hold the same bytes (both readable). */
int same_bytes(const char *a, const char *b);

/* The files of a resume test in the scratch folder: the metrics and
 * checkpoint of a run through (<prefix>full.jsonl, .ckpt) and of the same
 * run stopped and resumed (<prefix>part.jsonl, .ckpt). */
typedef struct {
    char m_full[512], c_full[512], m_part[512], c_part[512];
} resume_files;
void resume_files_init(resume_files *f, const char *prefix);
/* Runs `command` (a trainer and its options; run_command) into m_part and
 * c_part stopped after stops[0] steps, resumed and stopped after stops[1],
 * resumed to the end, each saying so: the same metrics and final
 * checkpoint, bit for bit, as m_full and c_full of the run through. */
void assert_resume_is_bit_exact(const char *command, const int stops[2], const resume_files *f);
/* A --minutes run of `command` (with EX_TEST_CLOCK, so that its plans are
 * the same on every machine) into m_full and c_full: it plans at step 25
 * and at each fraction of the budget (5 plans), uses 97-100% of the budget
 * ("% of the <minutes>-minute budget; the schedule ran to its end"); then
 * the same run stopped and resumed at stops (assert_resume_is_bit_exact). */
void assert_budget_run_resumes(const char *command, const char *minutes, const int stops[2],
                               const resume_files *f);

/* Copies the checkpoint src to dst with the metadata keys[0..nkeys) of src
 * but drop_key (none: NULL; nkeys 0: a file without metadata, as older
 * builds wrote), and with extra (not NULL) a tensor of that name added. */
void rewrite_checkpoint(const char *src, const char *dst, const char *const *keys, size_t nkeys,
                        const char *drop_key, const char *extra);

/* Every metrics line with the entropy bound has its terms beside it:
 * entropy_bound_s and entropy_bound_m_norm [layers][heads],
 * entropy_bound_x_gram_norm [layers], finite, s = ||M|| ||X X^T||. */
void assert_bound_terms_logged(const char *metrics, size_t layers, size_t heads);

#endif
