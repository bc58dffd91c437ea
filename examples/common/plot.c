/* gnuplot rendering of a metrics file (plot.h). Each line is parsed with
 * cJSON; the data goes to gnuplot inline ($blocks), no temporary files. */
#define _POSIX_C_SOURCE 200809L
#include "plot.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

int ex_have_gnuplot(void) { return system("command -v gnuplot > /dev/null 2>&1") == 0; }

/* A growing text buffer for one gnuplot data block. */
typedef struct {
    char *text;
    size_t len;
    int oom;
} block;

static void block_append(block *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void block_append(block *b, const char *fmt, ...)
{
    char row[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(row, sizeof(row), fmt, ap);
    va_end(ap);
    const size_t add = strlen(row);
    char *grown = b->oom ? NULL : realloc(b->text, b->len + add + 1);
    if (!grown) {
        b->oom = 1;
        return;
    }
    memcpy(grown + b->len, row, add + 1);
    b->text = grown;
    b->len += add;
}

/* Appends one row "step v0 v1 ..." of a [layers][heads] matrix to b,
 * padded with NaN to count values. */
static void block_matrix_row(block *b, double step, const cJSON *matrix, size_t count)
{
    block_append(b, "%.0f", step);
    size_t n = 0;
    const cJSON *row, *x;
    cJSON_ArrayForEach(row, matrix)
    {
        cJSON_ArrayForEach(x, row)
        {
            block_append(b, " %.6g", cJSON_IsNumber(x) ? x->valuedouble : NAN);
            n++;
        }
    }
    for (; n < count; n++)
        block_append(b, " nan");
    block_append(b, "\n");
}

static double number(const cJSON *obj, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static char *read_line(FILE *f)
{
    size_t cap = 4096, len = 0;
    char *line = malloc(cap);
    int c;
    while (line && (c = fgetc(f)) != EOF && c != '\n') {
        if (len + 1 >= cap) {
            char *grown = realloc(line, cap *= 2);
            if (!grown) {
                free(line);
                return NULL;
            }
            line = grown;
        }
        line[len++] = (char)c;
    }
    if (line && len == 0 && feof(f)) {
        free(line);
        return NULL;
    }
    if (line)
        line[len] = '\0';
    return line;
}

ex_code ex_plot(const char *metrics_path, const char *png_path, const ex_plot_spec *spec,
                ex_error *err)
{
    if (!ex_have_gnuplot())
        return ex_fail(err, EX_FAILED,
                       "gnuplot not found (on Debian: sudo apt-get install gnuplot-nox)");
    FILE *in = fopen(metrics_path, "rb");
    if (!in)
        return ex_fail(err, EX_FAILED, "%s: cannot open the metrics file", metrics_path);
    block train = {0}, eval = {0}, entropy = {0}, bound = {0};
    size_t layers = 0, heads = 0, train_rows = 0, bound_rows = 0;
    double log_tokens = NAN;
    char *line;
    while ((line = read_line(in)) != NULL) {
        cJSON *obj = cJSON_Parse(line);
        free(line);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(obj, "type");
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        const double step = number(obj, "step");
        if (strcmp(t, "header") == 0) {
            layers = (size_t)number(obj, "layers");
            heads = (size_t)number(obj, "heads");
            log_tokens = number(obj, "log_tokens");
        } else if (strcmp(t, "train") == 0) {
            block_append(&train, "%.0f %.9g %.9g\n", step, number(obj, "loss"),
                         spec->score_key ? number(obj, spec->score_key) : NAN);
            const cJSON *ent = cJSON_GetObjectItemCaseSensitive(obj, "entropy_mean");
            if (cJSON_IsArray(ent))
                block_matrix_row(&entropy, step, ent, layers * heads);
            const cJSON *bnd = cJSON_GetObjectItemCaseSensitive(obj, "entropy_bound");
            if (cJSON_IsArray(bnd)) {
                block_matrix_row(&bound, step, bnd, layers * heads);
                bound_rows++;
            }
            train_rows++;
        } else if (strcmp(t, "eval") == 0 && spec->eval_key) {
            block_append(&eval, "%.0f %.9g\n", step, number(obj, spec->eval_key));
        }
        cJSON_Delete(obj);
    }
    fclose(in);
    ex_code code = EX_OK;
    if (train.oom || eval.oom || entropy.oom || bound.oom) {
        code = ex_fail(err, EX_FAILED, "%s: out of memory", metrics_path);
        goto done;
    }
    if (train_rows == 0 || layers == 0 || heads == 0) {
        code = ex_fail(err, EX_FAILED, "%s: no header or training lines to plot", metrics_path);
        goto done;
    }
    FILE *gp = popen("gnuplot", "w");
    if (!gp) {
        code = ex_fail(err, EX_FAILED, "cannot start gnuplot");
        goto done;
    }
    const size_t cols = 3, panels = 2 + layers, rows = (panels + cols - 1) / cols;
    fprintf(gp, "set terminal pngcairo size %zu,%zu font ',9'\n", cols * 480, rows * 320);
    fprintf(gp, "set output '%s'\n", png_path);
    fprintf(gp, "$train << EOD\n%sEOD\n", train.text);
    fprintf(gp, "$eval << EOD\n%sEOD\n", eval.text ? eval.text : "");
    fprintf(gp, "$entropy << EOD\n%sEOD\n", entropy.text ? entropy.text : "");
    fprintf(gp, "$bound << EOD\n%sEOD\n", bound.text ? bound.text : "");
    fprintf(gp, "set multiplot layout %zu,%zu\nset grid\nset key top right\nset xlabel 'step'\n",
            rows, cols);
    fprintf(gp,
            "set title 'training loss'\nplot $train using 1:2 with lines lw 1.5 title 'loss'\n");
    fprintf(gp, "set title '%s'\n%sset key bottom right\n", spec->score_title,
            spec->unit_range ? "set yrange [0:1]\n" : "");
    fprintf(gp, "plot $train using 1:3 with lines title '%s'", spec->score_label);
    if (eval.text)
        fprintf(gp, ", $eval using 1:2 with linespoints lw 2 pt 7 title '%s'", spec->eval_label);
    fprintf(gp, "\nunset yrange\n");
    for (size_t l = 0; l < layers; l++) {
        fprintf(gp, "set title 'layer %zu: attention entropy per head (nats)%s'\n", l,
                bound_rows ? ", dashed: Theorem 3.1 bound" : "");
        fprintf(gp, "set key top right horizontal\nset yrange [0:%.6g]\nplot ", log_tokens * 1.3);
        for (size_t h = 0; h < heads; h++) {
            fprintf(gp, "$entropy using 1:%zu with lines lc %zu title 'head %zu', ",
                    2 + l * heads + h, h + 1, h);
            if (bound_rows)
                fprintf(gp, "$bound using 1:%zu with lines dt 2 lc %zu notitle, ",
                        2 + l * heads + h, h + 1);
        }
        fprintf(gp, "%.9g with lines dt 3 lc 'gray' title 'log T'\nunset yrange\n", log_tokens);
    }
    fprintf(gp, "unset multiplot\n");
    const int status = pclose(gp);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        code = ex_fail(err, EX_FAILED, "gnuplot failed to render %s", png_path);
done:
    free(train.text);
    free(eval.text);
    free(entropy.text);
    free(bound.text);
    return code;
}

ex_code ex_plot_at_end(ex_metrics *metrics, const char *metrics_path, const char *plot_path,
                       const ex_plot_spec *spec, ex_error *err)
{
    if (!plot_path)
        return EX_OK;
    if (!metrics_path) {
        fprintf(stderr, "note: --plot needs --metrics FILE (the plot is drawn from it)\n");
        return EX_OK;
    }
    ex_metrics_close(metrics);
    const ex_code code = ex_plot(metrics_path, plot_path, spec, err);
    if (code == EX_OK)
        printf("wrote %s\n", plot_path);
    return code;
}
