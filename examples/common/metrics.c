/* JSON-lines metrics (metrics.h). */
#define _POSIX_C_SOURCE 200809L /* truncate */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

ex_code ex_metrics_open(ex_metrics *m, const char *path, uint64_t keep_lines, ex_error *err)
{
    memset(m, 0, sizeof(*m));
    if (!path)
        return EX_OK;
    if (keep_lines > 0) {
        /* Keep the lines the checkpoint had seen: cut the file after them in
         * place. One truncate either happens or not, so a run killed here
         * leaves a file that still resumes (rewriting the kept lines into a
         * truncated file did not). */
        FILE *in = fopen(path, "rb");
        if (!in)
            return ex_fail(err, EX_FAILED, "%s: cannot reopen the metrics file to resume", path);
        uint64_t lines = 0;
        long bytes = 0;
        int c;
        while (lines < keep_lines && (c = fgetc(in)) != EOF) {
            bytes++;
            lines += c == '\n';
        }
        fclose(in);
        if (lines < keep_lines)
            return ex_fail(err, EX_FAILED,
                           "%s: has fewer lines than the checkpoint wrote (%llu); it does not "
                           "belong to this checkpoint",
                           path, (unsigned long long)keep_lines);
        if (truncate(path, (off_t)bytes) != 0)
            return ex_fail(err, EX_FAILED, "%s: cannot cut the metrics file to resume", path);
    }
    m->f = fopen(path, keep_lines > 0 ? "ab" : "wb");
    if (!m->f)
        return ex_fail(err, EX_FAILED, "%s: cannot write the metrics file", path);
    m->lines = keep_lines;
    return EX_OK;
}

void ex_metrics_close(ex_metrics *m)
{
    cJSON_Delete(m->line);
    if (m->f)
        fclose(m->f);
    memset(m, 0, sizeof(*m));
}

/* A number as 9 significant digits, or null: added raw, so that cJSON
 * does not widen floats to 17 digits. */
static cJSON *number_item(double value)
{
    char text[32];
    if (isfinite(value))
        snprintf(text, sizeof(text), "%.9g", value);
    else
        snprintf(text, sizeof(text), "null");
    return cJSON_CreateRaw(text);
}

void ex_metrics_begin(ex_metrics *m, const char *type)
{
    if (!m->f)
        return;
    cJSON_Delete(m->line);
    m->line = cJSON_CreateObject();
    cJSON_AddStringToObject(m->line, "type", type);
}

void ex_metrics_number(ex_metrics *m, const char *key, double value)
{
    if (m->line)
        cJSON_AddItemToObject(m->line, key, number_item(value));
}

void ex_metrics_string(ex_metrics *m, const char *key, const char *value)
{
    if (m->line)
        cJSON_AddStringToObject(m->line, key, value);
}

/* values [count] as an array */
static cJSON *array(const float *values, size_t count)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToArray(a, number_item(values[i]));
    return a;
}

void ex_metrics_matrix(ex_metrics *m, const char *key, const float *values, size_t rows,
                       size_t cols)
{
    if (!m->line)
        return;
    cJSON *outer = cJSON_CreateArray();
    for (size_t r = 0; r < rows; r++)
        cJSON_AddItemToArray(outer, array(values + r * cols, cols));
    cJSON_AddItemToObject(m->line, key, outer);
}

void ex_metrics_vector(ex_metrics *m, const char *key, const float *values, size_t count)
{
    if (m->line)
        cJSON_AddItemToObject(m->line, key, array(values, count));
}

void ex_metrics_named(ex_metrics *m, const char *key, const char *const *names, const float *values,
                      size_t count)
{
    if (!m->line)
        return;
    cJSON *obj = cJSON_CreateObject();
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToObject(obj, names[i], number_item(values[i]));
    cJSON_AddItemToObject(m->line, key, obj);
}

void ex_metrics_end(ex_metrics *m)
{
    if (!m->line)
        return;
    char *text = cJSON_PrintUnformatted(m->line);
    cJSON_Delete(m->line);
    m->line = NULL;
    if (!text)
        return;
    fputs(text, m->f);
    fputc('\n', m->f);
    fflush(m->f);
    free(text);
    m->lines++;
}
