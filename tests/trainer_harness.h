/* What the tests of the example trainers share: a scratch folder, running
 * a trainer as a user does (its output and exit code), small files, and
 * reading metrics and checkpoints back. cmocka assertions inside. */
#ifndef TRAINER_HARNESS_H
#define TRAINER_HARNESS_H

#include <stddef.h>

double now_seconds(void); /* monotonic */

/* A fresh folder /tmp/<prefix>_XXXXXX for the test program; teardown
 * removes it. 0 on success (cmocka's group setup convention). */
int scratch_setup(const char *prefix);
int scratch_teardown(void);
const char *scratch_dir(void);
/* buf = "<scratch folder>/<name>" */
void scratch_path(char *buf, size_t len, const char *name);

/* Runs a shell command line, stdout and stderr into out (truncated to
 * outlen). Returns the exit code, or -1 if it did not exit normally. */
int run_command(const char *cmd, char *out, size_t outlen);
/* Runs `'exe' --threads 2 args`, stdout and stderr into out (truncated to
 * outlen). Returns the exit code, or -1 if it did not exit normally. */
int run_program(const char *exe, const char *args, char *out, size_t outlen);

/* Writes n bytes to path, gzip-compressed when gzip is set. */
void write_bytes(const char *path, const void *data, size_t n, int gzip);
/* A whole text file, NUL-terminated (fails the test when unreadable). */
char *read_text(const char *path);
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
