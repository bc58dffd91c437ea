/* gnuplot rendering of a metrics file. The metrics are our own JSON lines,
 * so a small reader that finds a key and parses the numbers after it is
 * enough; the data goes to gnuplot inline ($blocks), no temporary files. */
#define _POSIX_C_SOURCE 200809L
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

int vit_have_gnuplot(void) { return system("command -v gnuplot > /dev/null 2>&1") == 0; }

/* The number after "key": in line, or NAN. */
static double number_after(const char *line, const char *key)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\":", key);
    const char *p = strstr(line, pattern);
    if (!p)
        return NAN;
    char *end = NULL;
    const double x = strtod(p + strlen(pattern), &end);
    return end == p + strlen(pattern) ? NAN : x;
}

/* Up to max numbers of the (nested) array after "key": into out. */
static size_t numbers_after(const char *line, const char *key, double *out, size_t max)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\":[", key);
    const char *p = strstr(line, pattern);
    if (!p)
        return 0;
    p += strlen(pattern);
    size_t n = 0;
    int depth = 1;
    while (*p && depth > 0 && n < max) {
        if (*p == '[') {
            depth++;
            p++;
        } else if (*p == ']') {
            depth--;
            p++;
        } else if (*p == ',' || *p == ' ') {
            p++;
        } else if (strncmp(p, "null", 4) == 0) {
            out[n++] = NAN;
            p += 4;
        } else {
            char *end = NULL;
            out[n++] = strtod(p, &end);
            if (end == p)
                return n - 1;
            p = end;
        }
    }
    return n;
}

typedef struct {
    char *train, *eval, *entropy; /* gnuplot data blocks being built */
    size_t train_len, eval_len, entropy_len;
} blocks;

static int append(char **buf, size_t *len, const char *text)
{
    const size_t add = strlen(text);
    char *grown = realloc(*buf, *len + add + 1);
    if (!grown)
        return 1;
    memcpy(grown + *len, text, add + 1);
    *buf = grown;
    *len += add;
    return 0;
}

static char *read_line(FILE *f)
{
    size_t cap = 4096, len = 0;
    char *line = malloc(cap);
    int c;
    while (line && (c = fgetc(f)) != EOF) {
        if (len + 1 >= cap) {
            char *grown = realloc(line, cap *= 2);
            if (!grown) {
                free(line);
                return NULL;
            }
            line = grown;
        }
        if (c == '\n')
            break;
        line[len++] = (char)c;
    }
    if (!line || (len == 0 && feof(f))) {
        free(line);
        return NULL;
    }
    line[len] = '\0';
    return line;
}

int vit_plot(const char *metrics_path, const char *png_path, char *err, size_t errlen)
{
    if (!vit_have_gnuplot()) {
        snprintf(err, errlen, "gnuplot not found (on Debian: sudo apt-get install gnuplot-nox)");
        return 1;
    }
    FILE *in = fopen(metrics_path, "rb");
    if (!in) {
        snprintf(err, errlen, "%s: cannot open the metrics file", metrics_path);
        return 1;
    }
    blocks b = {NULL, NULL, NULL, 0, 0, 0};
    size_t layers = 0, heads = 0, train_rows = 0;
    double log_tokens = NAN;
    double values[4096];
    char row[65536];
    int oom = 0;
    char *line;
    while (!oom && (line = read_line(in)) != NULL) {
        if (strstr(line, "\"type\":\"header\"")) {
            layers = (size_t)number_after(line, "layers");
            heads = (size_t)number_after(line, "heads");
            log_tokens = number_after(line, "log_tokens");
        } else if (strstr(line, "\"type\":\"train\"")) {
            const double step = number_after(line, "step");
            snprintf(row, sizeof(row), "%.0f %.9g %.9g\n", step, number_after(line, "loss"),
                     number_after(line, "acc"));
            oom |= append(&b.train, &b.train_len, row);
            const size_t n = numbers_after(line, "entropy_mean", values, 4096);
            if (n > 0 && n == layers * heads) {
                size_t len = (size_t)snprintf(row, sizeof(row), "%.0f", step);
                for (size_t i = 0; i < n && len + 32 < sizeof(row); i++)
                    len += (size_t)snprintf(row + len, sizeof(row) - len, " %.6g", values[i]);
                snprintf(row + len, sizeof(row) - len, "\n");
                oom |= append(&b.entropy, &b.entropy_len, row);
            }
            train_rows++;
        } else if (strstr(line, "\"type\":\"eval\"")) {
            snprintf(row, sizeof(row), "%.0f %.9g\n", number_after(line, "step"),
                     number_after(line, "test_acc"));
            oom |= append(&b.eval, &b.eval_len, row);
        }
        free(line);
    }
    fclose(in);
    int rc = 0;
    if (oom || train_rows == 0 || layers == 0 || heads == 0) {
        snprintf(err, errlen, "%s: %s", metrics_path,
                 oom ? "out of memory" : "no header or training lines to plot");
        rc = 1;
        goto done;
    }
    FILE *gp = popen("gnuplot", "w");
    if (!gp) {
        snprintf(err, errlen, "cannot start gnuplot");
        rc = 1;
        goto done;
    }
    const size_t cols = 3, panels = 2 + layers, rows = (panels + cols - 1) / cols;
    fprintf(gp, "set terminal pngcairo size %zu,%zu font ',9'\n", cols * 480, rows * 320);
    fprintf(gp, "set output '%s'\n", png_path);
    fprintf(gp, "$train << EOD\n%sEOD\n", b.train);
    fprintf(gp, "$eval << EOD\n%sEOD\n", b.eval ? b.eval : "");
    fprintf(gp, "$entropy << EOD\n%sEOD\n", b.entropy ? b.entropy : "");
    fprintf(gp, "set multiplot layout %zu,%zu\nset grid\nset key top right\nset xlabel 'step'\n",
            rows, cols);
    /* Loss falls, accuracy rises, entropies fall from log T: keys where
     * the curves are not. */
    fprintf(gp, "set title 'training loss'\nplot $train using 1:2 with lines lw 1.5 title 'loss'\n");
    fprintf(gp, "set title 'accuracy'\nset yrange [0:1]\nset key bottom right\n"
                "plot $train using 1:3 with lines title 'train (batch)'%s\nunset yrange\n",
            b.eval ? ", $eval using 1:2 with linespoints lw 2 pt 7 title 'test'" : "");
    for (size_t l = 0; l < layers; l++) {
        fprintf(gp, "set title 'layer %zu: attention entropy per head (nats)'\n", l);
        fprintf(gp, "set key bottom left\n");
        fprintf(gp, "set yrange [0:%.6g]\nplot ", log_tokens * 1.05);
        for (size_t h = 0; h < heads; h++)
            fprintf(gp, "$entropy using 1:%zu with lines title 'head %zu', ", 2 + l * heads + h, h);
        fprintf(gp, "%.9g with lines dt 2 lc 'gray' title 'log T'\nunset yrange\n", log_tokens);
    }
    fprintf(gp, "unset multiplot\n");
    const int status = pclose(gp);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(err, errlen, "gnuplot failed to render %s", png_path);
        rc = 1;
    }
done:
    free(b.train);
    free(b.eval);
    free(b.entropy);
    return rc;
}
