/* gnuplot rendering of a metrics file (plot.h). Each line is parsed with
 * cJSON; the data goes to gnuplot inline ($blocks), no temporary files. */
#define _POSIX_C_SOURCE 200809L
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

static int have_gnuplot(void) { return system("command -v gnuplot > /dev/null 2>&1") == 0; }

/* The gnuplot data blocks, written into memory. */
enum { TRAIN, EVAL, ENTROPY, BOUND, BLOCKS };
static const char *const k_block_names[BLOCKS] = {"train", "eval", "entropy", "bound"};

typedef struct {
    char *text;
    size_t len;
    FILE *f;
} block;

/* Appends one row "step v0 v1 ..." of a [layers][heads] matrix to f,
 * padded with NaN to count values. */
static void matrix_row(FILE *f, double step, const cJSON *matrix, size_t count)
{
    fprintf(f, "%.0f", step);
    size_t n = 0;
    const cJSON *row, *x;
    cJSON_ArrayForEach(row, matrix)
    {
        cJSON_ArrayForEach(x, row)
        {
            fprintf(f, " %.6g", cJSON_IsNumber(x) ? x->valuedouble : NAN);
            n++;
        }
    }
    for (; n < count; n++)
        fprintf(f, " nan");
    fprintf(f, "\n");
}

static double number(const cJSON *obj, const char *key)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

ex_code ex_plot(const char *metrics_path, const char *png_path, const ex_plot_spec *spec,
                ex_error *err)
{
    if (!have_gnuplot())
        return ex_fail(err, EX_FAILED,
                       "gnuplot not found (on Debian: sudo apt-get install gnuplot-nox)");
    FILE *in = fopen(metrics_path, "rb");
    if (!in)
        return ex_fail(err, EX_FAILED, "%s: cannot open the metrics file", metrics_path);
    block b[BLOCKS];
    int oom = 0;
    memset(b, 0, sizeof(b));
    for (int i = 0; i < BLOCKS; i++)
        oom |= !(b[i].f = open_memstream(&b[i].text, &b[i].len));
    size_t layers = 0, heads = 0, train_rows = 0, bound_rows = 0;
    double log_tokens = NAN;
    char *line = NULL;
    size_t cap = 0;
    while (!oom && getline(&line, &cap, in) != -1) {
        cJSON *obj = cJSON_Parse(line);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(obj, "type");
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        const double step = number(obj, "step");
        if (strcmp(t, "header") == 0) {
            layers = (size_t)number(obj, "layers");
            heads = (size_t)number(obj, "heads");
            log_tokens = number(obj, "log_tokens");
        } else if (strcmp(t, "train") == 0) {
            fprintf(b[TRAIN].f, "%.0f %.9g %.9g\n", step, number(obj, "loss"),
                    spec->score_key ? number(obj, spec->score_key) : NAN);
            const cJSON *ent = cJSON_GetObjectItemCaseSensitive(obj, "entropy_mean");
            if (cJSON_IsArray(ent))
                matrix_row(b[ENTROPY].f, step, ent, layers * heads);
            const cJSON *bnd = cJSON_GetObjectItemCaseSensitive(obj, "entropy_bound");
            if (cJSON_IsArray(bnd)) {
                matrix_row(b[BOUND].f, step, bnd, layers * heads);
                bound_rows++;
            }
            train_rows++;
        } else if (strcmp(t, "eval") == 0 && spec->eval_key) {
            fprintf(b[EVAL].f, "%.0f %.9g\n", step, number(obj, spec->eval_key));
        }
        cJSON_Delete(obj);
    }
    free(line);
    fclose(in);
    for (int i = 0; i < BLOCKS; i++)
        if (b[i].f) {
            oom |= ferror(b[i].f) != 0;
            oom |= fclose(b[i].f) != 0;
        }
    ex_code code = EX_OK;
    FILE *gp = NULL;
    if (oom)
        code = ex_fail(err, EX_FAILED, "%s: out of memory", metrics_path);
    else if (train_rows == 0 || layers == 0 || heads == 0)
        code = ex_fail(err, EX_FAILED, "%s: no header or training lines to plot", metrics_path);
    else if (!(gp = popen("gnuplot", "w")))
        code = ex_fail(err, EX_FAILED, "cannot start gnuplot");
    if (gp) {
        const size_t cols = 3, panels = 2 + layers, rows = (panels + cols - 1) / cols;
        fprintf(gp, "set terminal pngcairo size %zu,%zu font ',9'\n", cols * 480, rows * 320);
        fprintf(gp, "set output '%s'\n", png_path);
        for (int i = 0; i < BLOCKS; i++)
            fprintf(gp, "$%s << EOD\n%sEOD\n", k_block_names[i], b[i].text);
        fprintf(gp,
                "set multiplot layout %zu,%zu\nset grid\nset key top right\nset xlabel 'step'\n",
                rows, cols);
        fprintf(
            gp,
            "set title 'training loss'\nplot $train using 1:2 with lines lw 1.5 title 'loss'\n");
        fprintf(gp, "set title '%s'\n%sset key bottom right\n", spec->score_title,
                spec->unit_range ? "set yrange [0:1]\n" : "");
        fprintf(gp, "plot $train using 1:3 with lines title '%s'", spec->score_label);
        if (b[EVAL].len > 0)
            fprintf(gp, ", $eval using 1:2 with linespoints lw 2 pt 7 title '%s'",
                    spec->eval_label);
        fprintf(gp, "\nunset yrange\n");
        for (size_t l = 0; l < layers; l++) {
            fprintf(gp, "set title 'layer %zu: attention entropy per head (nats)%s'\n", l,
                    bound_rows ? ", dashed: Theorem 3.1 bound" : "");
            fprintf(gp, "set key top right horizontal\nset yrange [0:%.6g]\nplot ",
                    log_tokens * 1.3);
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
        else
            printf("wrote %s\n", png_path);
    }
    for (int i = 0; i < BLOCKS; i++)
        free(b[i].text);
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
    return ex_plot(metrics_path, plot_path, spec, err);
}
