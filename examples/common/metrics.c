/* JSON-lines metrics (metrics.h). */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ex_code ex_metrics_open(ex_metrics *m, const char *path, uint64_t keep_lines, ex_error *err)
{
    memset(m, 0, sizeof(*m));
    if (!path)
        return EX_OK;
    char *kept = NULL;
    size_t kept_len = 0;
    if (keep_lines > 0) { /* keep the lines the checkpoint had seen */
        FILE *in = fopen(path, "rb");
        if (!in)
            return ex_fail(err, EX_FAILED, "%s: cannot reopen the metrics file to resume", path);
        size_t cap = 1 << 16;
        kept = malloc(cap);
        uint64_t lines = 0;
        int c;
        while (kept && lines < keep_lines && (c = fgetc(in)) != EOF) {
            if (kept_len + 1 >= cap) {
                char *grown = realloc(kept, cap *= 2);
                if (!grown) {
                    free(kept);
                    kept = NULL;
                    break;
                }
                kept = grown;
            }
            kept[kept_len++] = (char)c;
            lines += c == '\n';
        }
        fclose(in);
        if (!kept || lines < keep_lines) {
            free(kept);
            return ex_fail(err, EX_FAILED,
                           "%s: has fewer lines than the checkpoint wrote (%llu); it does not "
                           "belong to this checkpoint",
                           path, (unsigned long long)keep_lines);
        }
    }
    m->f = fopen(path, "wb");
    const int written = m->f && fwrite(kept ? kept : "", 1, kept_len, m->f) == kept_len;
    free(kept);
    if (!written) {
        if (m->f)
            fclose(m->f);
        m->f = NULL;
        return ex_fail(err, EX_FAILED, "%s: cannot write the metrics file", path);
    }
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

void ex_metrics_matrix(ex_metrics *m, const char *key, const float *values, size_t rows,
                       size_t cols)
{
    if (!m->line)
        return;
    cJSON *outer = cJSON_CreateArray();
    for (size_t r = 0; r < rows; r++) {
        cJSON *row = cJSON_CreateArray();
        for (size_t c = 0; c < cols; c++)
            cJSON_AddItemToArray(row, number_item(values[r * cols + c]));
        cJSON_AddItemToArray(outer, row);
    }
    cJSON_AddItemToObject(m->line, key, outer);
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
