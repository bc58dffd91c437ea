/* Test helpers for the example trainers (trainer_harness.h). */
#define _POSIX_C_SOURCE 200809L
#include "trainer_harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "testutil.h"

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int run_command(const char *cmd, char *out, size_t outlen)
{
    char full[4096];
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t len = 0;
    size_t got;
    while (len + 1 < outlen && (got = fread(out + len, 1, outlen - 1 - len, p)) > 0)
        len += got;
    out[len] = '\0';
    char sink[4096];
    while (fread(sink, 1, sizeof(sink), p) > 0) {
    }
    const int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int run_programf(const char *exe, char *out, size_t outlen, const char *fmt, ...)
{
    char cmd[8192];
    const int len = snprintf(cmd, sizeof(cmd), "'%s' --threads 1 ", exe);
    va_list ap;
    va_start(ap, fmt);
    const int more = vsnprintf(cmd + len, sizeof(cmd) - (size_t)len, fmt, ap);
    va_end(ap);
    assert_true(more >= 0 && (size_t)(len + more) < sizeof(cmd));
    return run_command(cmd, out, outlen);
}

void write_bytes(const char *path, const void *data, size_t n, int gzip)
{
    if (gzip) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, data, (unsigned)n), (int)n);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
    }
}

char *read_text(const char *path)
{
    size_t size;
    char *text = read_file_bytes(path, &size);
    assert_non_null(text);
    text[size] = '\0';
    return text;
}

/* The numbers after "key": on the lines of type `type`, in order (all of an
 * array's, nested ones flattened, with array; else the one number): the
 * first cap into out, the last of all into *last (NaN when none); returns
 * how many went into out. A null (NaN, Inf) reads as NaN. */
static size_t scan_values(const char *metrics_path, const char *type, const char *key, int array,
                          double *out, size_t cap, double *last)
{
    char *text = read_text(metrics_path);
    size_t n = 0;
    char type_pat[64], key_pat[64];
    snprintf(type_pat, sizeof(type_pat), "\"type\":\"%s\"", type);
    snprintf(key_pat, sizeof(key_pat), "\"%s\":%s", key, array ? "[" : "");
    *last = NAN;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *p = strstr(line, key_pat);
        if (!strstr(line, type_pat) || !p)
            continue;
        p += strlen(key_pat);
        /* depth: the arrays open around p; 0 after one plain number */
        for (int depth = array; *p;) {
            if (*p == '[' || *p == ']' || *p == ',') {
                depth += *p == '[' ? 1 : *p == ']' ? -1 : 0;
                p++;
                if (depth == 0)
                    break;
                continue;
            }
            char *end;
            *last = strtod(p, &end);
            if (end == p) { /* null */
                *last = NAN;
                while (*p && *p != ',' && *p != ']' && *p != '}')
                    p++;
            } else {
                p = end;
            }
            if (n < cap)
                out[n++] = *last;
            if (depth == 0)
                break;
        }
    }
    free(text);
    return n;
}

void stdout_into(const char *path, void (*f)(void *ctx), void *ctx)
{
    fflush(stdout);
    const int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_non_null(freopen(path, "w", stdout));
    f(ctx);
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) == STDOUT_FILENO);
    close(saved);
}

double last_value(const char *metrics_path, const char *type, const char *key)
{
    double last;
    scan_values(metrics_path, type, key, 0, NULL, 0, &last);
    return last;
}

size_t all_values(const char *metrics_path, const char *type, const char *key, double *out,
                  size_t cap)
{
    double last;
    return scan_values(metrics_path, type, key, 0, out, cap, &last);
}

size_t all_array_values(const char *metrics_path, const char *type, const char *key, double *out,
                        size_t cap)
{
    double last;
    return scan_values(metrics_path, type, key, 1, out, cap, &last);
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Where a checkpoint's table starts: after the header, 40 bytes in
 * version 1, 48 in version 2 (metadata_size; docs/FORMAT.md). */
static size_t table_start(const unsigned char *file)
{
    return file[8] == 2 ? 48 : 40;
}

/* Blanks the data of the checkpoint tensor `name` and the CRC (the layout
 * of docs/FORMAT.md). */
static void blank_tensor(unsigned char *file, size_t size, const char *name)
{
    const uint64_t count = le64(file + 24);
    size_t at = table_start(file);
    for (uint64_t i = 0; i < count; i++) {
        const size_t len = (size_t)(file[at] | file[at + 1] << 8);
        const uint64_t offset = le64(file + at + 48), bytes = le64(file + at + 56);
        if (len == strlen(name) && memcmp(file + at + 64, name, len) == 0)
            memset(file + offset, 0, (size_t)bytes);
        at += 64 + (len + 7) / 8 * 8;
    }
    memset(file + size - 4, 0, 4);
}

/* text without the keys that wall time changes and their numbers (in
 * place): "seconds", and the --minutes budget's "budget_seconds",
 * "budget_used" and "ms_per_step". */
static void drop_seconds(char *text)
{
    static const char *keys[] = {
        "\"seconds\":", "\"budget_seconds\":", "\"budget_used\":", "\"ms_per_step\":"};
    char *out = text;
    for (const char *in = text; *in;) {
        size_t k = 0;
        while (k < sizeof(keys) / sizeof(keys[0]) && strncmp(in, keys[k], strlen(keys[k])) != 0)
            k++;
        if (k < sizeof(keys) / sizeof(keys[0])) {
            in += strlen(keys[k]);
            while (*in && *in != ',' && *in != '}')
                in++;
            continue;
        }
        *out++ = *in++;
    }
    *out = '\0';
}

int same_but_time(const char *a, const char *b, int checkpoint)
{
    size_t na, nb;
    char *x = read_file_bytes(a, &na), *y = read_file_bytes(b, &nb);
    int same = x && y;
    if (same && checkpoint) {
        same = na == nb;
        if (same) {
            blank_tensor((unsigned char *)x, na, "train.seconds");
            blank_tensor((unsigned char *)y, nb, "train.seconds");
            same = memcmp(x, y, na) == 0;
        }
    } else if (same) {
        x[na] = '\0';
        y[nb] = '\0';
        drop_seconds(x);
        drop_seconds(y);
        same = strcmp(x, y) == 0;
    }
    free(x);
    free(y);
    return same;
}

int same_bytes(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = read_file_bytes(a, &na), *y = read_file_bytes(b, &nb);
    const int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

double checkpoint_float_difference(const char *a, const char *b, char *worst, size_t worstlen)
{
    size_t na, nb;
    unsigned char *x = read_file_bytes(a, &na), *y = read_file_bytes(b, &nb);
    assert_non_null(x);
    assert_non_null(y);
    double largest = -1.0;
    const uint64_t count = le64(x + 24);
    if (na == nb && count == le64(y + 24)) {
        largest = 0.0;
        size_t at = table_start(x);
        for (uint64_t i = 0; i < count && largest >= 0.0; i++) {
            const size_t len = le32(x + at);
            const uint64_t offset = le64(x + at + 48), bytes = le64(x + at + 56);
            if (memcmp(x + at, y + at, 64 + len) != 0) { /* other tables */
                largest = -1.0;
                break;
            }
            if (le32(x + at + 4) == 1 /* F32 */) {
                const size_t n = (size_t)bytes / 4;
                double diff = 0.0, scale = 0.0;
                for (size_t k = 0; k < n; k++) {
                    float u, v;
                    memcpy(&u, x + offset + 4 * k, 4);
                    memcpy(&v, y + offset + 4 * k, 4);
                    diff = fmax(diff, fabs((double)u - (double)v));
                    scale = fmax(scale, fabs((double)u));
                }
                const double rel = scale > 0.0 ? diff / scale : diff;
                if (rel > largest) {
                    largest = rel;
                    snprintf(worst, worstlen, "%.*s", (int)len, (const char *)x + at + 64);
                }
            }
            at += 64 + (len + 7) / 8 * 8;
        }
    }
    free(x);
    free(y);
    return largest;
}

void resume_files_init(resume_files *f, const char *prefix)
{
    snprintf(f->m_full, sizeof(f->m_full), "%s/%sfull.jsonl", scratch_dir(), prefix);
    snprintf(f->c_full, sizeof(f->c_full), "%s/%sfull.ckpt", scratch_dir(), prefix);
    snprintf(f->m_part, sizeof(f->m_part), "%s/%spart.jsonl", scratch_dir(), prefix);
    snprintf(f->c_part, sizeof(f->c_part), "%s/%spart.ckpt", scratch_dir(), prefix);
}

void assert_resume_is_bit_exact(const char *command, const int stops[2], const resume_files *f)
{
    static char out[1 << 16];
    char cmd[8192], said[64];
    for (int k = 0; k < 3; k++) {
        int len = snprintf(cmd, sizeof(cmd), "%s --metrics %s --checkpoint %s", command, f->m_part,
                           f->c_part);
        if (k < 2)
            len +=
                snprintf(cmd + len, sizeof(cmd) - (size_t)len, " --stop-after-steps %d", stops[k]);
        if (k > 0)
            snprintf(cmd + len, sizeof(cmd) - (size_t)len, " --resume %s", f->c_part);
        assert_int_equal(run_command(cmd, out, sizeof(out)), 0);
        snprintf(said, sizeof(said), "stopped after step %d", k < 2 ? stops[k] : 0);
        assert_true(k == 2 || strstr(out, said));
        assert_true(k == 0 || strstr(out, "resumed from"));
    }
    assert_true(same_but_time(f->m_full, f->m_part, 0));
    assert_true(same_but_time(f->c_full, f->c_part, 1));
}

void assert_budget_run_resumes(const char *command, const char *minutes, const int stops[2],
                               const resume_files *f)
{
    static char out[1 << 16];
    char cmd[8192], said[128];
    snprintf(cmd, sizeof(cmd), "%s --metrics %s --checkpoint %s", command, f->m_full, f->c_full);
    assert_int_equal(run_command(cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "plan 1 at step 25"));
    assert_non_null(strstr(out, "plan 5 at step"));
    snprintf(said, sizeof(said), "%% of the %s-minute budget; the schedule ran to its end",
             minutes);
    assert_non_null(strstr(out, said));
    const double used = last_value(f->m_full, "budget", "budget_used");
    assert_true(used > 0.97 && used <= 1.0);
    assert_true(last_value(f->m_full, "budget", "plans") == 5.0);
    assert_resume_is_bit_exact(command, stops, f);
}

void rewrite_checkpoint(const char *src, const char *dst, const char *const *keys, size_t nkeys,
                        const char *drop_key, const char *extra)
{
    srp_checkpoint *c = NULL;
    assert_int_equal(srp_checkpoint_open(&c, src), SRP_OK);
    const size_t n = srp_checkpoint_count(c);
    srp_tensor_ref *refs = calloc(n + 1, sizeof(*refs));
    void **data = calloc(n + 1, sizeof(*data));
    const char **meta = calloc(2 * nkeys + 1, sizeof(*meta));
    assert_true(refs && data && meta);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(srp_checkpoint_info(c, i, &refs[i]), SRP_OK);
        size_t bytes = srp_dtype_size(refs[i].dtype);
        for (size_t d = 0; d < refs[i].ndim; d++)
            bytes *= refs[i].shape[d];
        data[i] = refs[i].data = malloc(bytes ? bytes : 1);
        assert_non_null(data[i]);
    }
    assert_int_equal(srp_checkpoint_read(c, refs, n), SRP_OK);
    size_t count = n, pairs = 0;
    static float one = 1.0f;
    if (extra)
        refs[count++] = (srp_tensor_ref){extra, SRP_DTYPE_F32, 1, {1}, &one};
    for (size_t k = 0; k < nkeys; k++) {
        if (drop_key && strcmp(keys[k], drop_key) == 0)
            continue;
        meta[2 * pairs] = keys[k];
        meta[2 * pairs + 1] = srp_checkpoint_metadata(c, keys[k]);
        assert_non_null(meta[2 * pairs + 1]);
        pairs++;
    }
    assert_int_equal(srp_checkpoint_save_with_metadata(dst, refs, count, meta, pairs), SRP_OK);
    srp_checkpoint_close(c);
    for (size_t i = 0; i < n; i++)
        free(data[i]);
    free(data);
    free(refs);
    free(meta);
}

/* The bound's terms beside it in every metrics line that has the bound
 * (trainer_harness: all_array_values): s and ||M|| per head, ||X X^T|| per
 * layer, finite, and s = ||M|| ||X X^T|| (both rounded up to float). */
void assert_bound_terms_logged(const char *metrics, size_t layers, size_t heads)
{
    enum { CAP = 4096 };
    static double bound[CAP], s[CAP], m[CAP], x[CAP];
    const size_t nb = all_array_values(metrics, "train", "entropy_bound", bound, CAP);
    const size_t ns = all_array_values(metrics, "train", "entropy_bound_s", s, CAP);
    const size_t nm = all_array_values(metrics, "train", "entropy_bound_m_norm", m, CAP);
    const size_t nx = all_array_values(metrics, "train", "entropy_bound_x_gram_norm", x, CAP);
    assert_true(nb > 0 && nb % (layers * heads) == 0);
    assert_true(ns == nb && nm == nb && nx == nb / heads);
    for (size_t i = 0; i < nb; i++) {
        assert_true(isfinite(bound[i]) && bound[i] >= 0.0);
        assert_true(isfinite(s[i]) && isfinite(m[i]) && isfinite(x[i / heads]));
        assert_true(m[i] > 0.0 && x[i / heads] > 0.0);
        assert_close_rel(s[i], m[i] * x[i / heads], 1e-5, 0.0, "s = ||M|| ||X X^T||");
    }
}
