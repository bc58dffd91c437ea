/* JSON-lines metrics and the entropy-collapse watch. */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int vit_metrics_open(vit_metrics *m, const char *path, uint64_t keep_lines, char *err,
                     size_t errlen)
{
    m->f = NULL;
    m->lines = 0;
    if (!path)
        return 0;
    char *kept = NULL;
    size_t kept_len = 0;
    if (keep_lines > 0) { /* keep the lines the checkpoint had seen */
        FILE *in = fopen(path, "rb");
        if (!in) {
            snprintf(err, errlen, "%s: cannot reopen the metrics file to resume", path);
            return 1;
        }
        size_t cap = 1 << 16;
        kept = malloc(cap);
        int c;
        uint64_t lines = 0;
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
            snprintf(err, errlen,
                     "%s: has fewer lines than the checkpoint wrote (%llu); it does not belong "
                     "to this checkpoint",
                     path, (unsigned long long)keep_lines);
            free(kept);
            return 1;
        }
    }
    m->f = fopen(path, "wb");
    if (!m->f) {
        snprintf(err, errlen, "%s: cannot open for writing", path);
        free(kept);
        return 1;
    }
    if (kept_len && fwrite(kept, 1, kept_len, m->f) != kept_len) {
        snprintf(err, errlen, "%s: write error", path);
        free(kept);
        fclose(m->f);
        m->f = NULL;
        return 1;
    }
    free(kept);
    m->lines = keep_lines;
    return 0;
}

void vit_metrics_close(vit_metrics *m)
{
    if (m->f)
        fclose(m->f);
    m->f = NULL;
}

/* JSON has no NaN/Inf: those are written as null. */
static void put_number(FILE *f, double x)
{
    if (isfinite(x))
        fprintf(f, "%.9g", x);
    else
        fputs("null", f);
}

static void put_matrix(FILE *f, const char *key, const float *v, size_t rows, size_t cols)
{
    fprintf(f, ",\"%s\":[", key);
    for (size_t r = 0; r < rows; r++) {
        fputs(r ? ",[" : "[", f);
        for (size_t c = 0; c < cols; c++) {
            if (c)
                fputc(',', f);
            put_number(f, v[r * cols + c]);
        }
        fputc(']', f);
    }
    fputc(']', f);
}

static void end_line(vit_metrics *m)
{
    fputs("}\n", m->f);
    fflush(m->f);
    m->lines++;
}

void vit_metrics_header(vit_metrics *m, const char *fingerprint, vit_model *model)
{
    if (!m->f)
        return;
    const vit_config *c = vit_get_config(model);
    fprintf(m->f, "{\"type\":\"header\",\"layers\":%zu,\"heads\":%zu,\"tokens\":%zu,"
                  "\"log_tokens\":%.9g,\"config\":\"%s\"",
            c->depth, c->heads, vit_tokens(model), log((double)vit_tokens(model)), fingerprint);
    end_line(m);
}

void vit_metrics_train(vit_metrics *m, const vit_train_record *r, vit_model *model)
{
    if (!m->f)
        return;
    const vit_config *c = vit_get_config(model);
    FILE *f = m->f;
    fprintf(f, "{\"type\":\"train\",\"step\":%llu,\"epoch\":%llu,\"loss\":",
            (unsigned long long)r->step, (unsigned long long)r->epoch);
    put_number(f, r->loss);
    fputs(",\"acc\":", f);
    put_number(f, r->acc);
    fputs(",\"lr\":", f);
    put_number(f, r->lr);
    fputs(",\"grad_norm\":", f);
    put_number(f, r->grad_norm);
    put_matrix(f, "entropy_mean", r->entropy_mean, c->depth, c->heads);
    put_matrix(f, "entropy_min", r->entropy_min, c->depth, c->heads);
    if (r->entropy_bound)
        put_matrix(f, "entropy_bound", r->entropy_bound, c->depth, c->heads);
    const char *keys[2] = {"sigma", "gamma"};
    for (int k = 0; k < 2; k++) {
        fprintf(f, ",\"%s\":{", keys[k]);
        for (size_t i = 0; i < vit_linear_count(model); i++) {
            const char *name;
            srp_linear *l = vit_linear_at(model, i, &name);
            fprintf(f, "%s\"%s\":", i ? "," : "", name);
            put_number(f, k == 0 ? srp_linear_sigma(l) : *srp_linear_gamma(l));
        }
        fputc('}', f);
    }
    end_line(m);
}

void vit_metrics_eval(vit_metrics *m, uint64_t step, uint64_t epoch, float loss, float acc)
{
    if (!m->f)
        return;
    fprintf(m->f, "{\"type\":\"eval\",\"step\":%llu,\"epoch\":%llu,\"test_loss\":",
            (unsigned long long)step, (unsigned long long)epoch);
    put_number(m->f, loss);
    fputs(",\"test_acc\":", m->f);
    put_number(m->f, acc);
    end_line(m);
}

void vit_metrics_warning(vit_metrics *m, uint64_t step, size_t layer, size_t head,
                         const char *kind, float entropy, const char *message)
{
    if (!m->f)
        return;
    fprintf(m->f, "{\"type\":\"warning\",\"step\":%llu,\"layer\":%zu,\"head\":%zu,\"kind\":\"%s\","
                  "\"entropy\":",
            (unsigned long long)step, layer, head, kind);
    put_number(m->f, entropy);
    fprintf(m->f, ",\"message\":\"%s\"", message);
    end_line(m);
}

int vit_collapse_init(vit_collapse_watch *w, size_t heads_total, uint64_t window, float fraction,
                      float drop, float log_tokens)
{
    memset(w, 0, sizeof(*w));
    w->heads_total = heads_total;
    w->window = window;
    w->fraction = fraction;
    w->drop = drop;
    w->log_tokens = log_tokens;
    w->ring = calloc(window * heads_total, sizeof(float));
    w->flags = calloc(heads_total * 2, 1);
    return w->ring && w->flags ? 0 : 1;
}

void vit_collapse_free(vit_collapse_watch *w)
{
    free(w->ring);
    free(w->flags);
    memset(w, 0, sizeof(*w));
}

int vit_collapse_update(vit_collapse_watch *w, const float *entropy,
                        void (*warn)(void *ctx, size_t index, const char *kind, float value,
                                     float reference),
                        void *ctx)
{
    int warnings = 0;
    for (size_t h = 0; h < w->heads_total; h++) {
        const float e = entropy[h];
        float peak = e;
        for (uint64_t k = 0; k < w->filled; k++)
            peak = fmaxf(peak, w->ring[k * w->heads_total + h]);
        const float low_line = w->fraction * w->log_tokens;
        const int low = e < low_line, dropped = e < (1.0f - w->drop) * peak;
        if (low && !w->flags[2 * h]) {
            warn(ctx, h, "low", e, low_line);
            warnings++;
        }
        if (dropped && !w->flags[2 * h + 1]) {
            warn(ctx, h, "drop", e, peak);
            warnings++;
        }
        w->flags[2 * h] = (unsigned char)low;
        w->flags[2 * h + 1] = (unsigned char)dropped;
        w->ring[w->next * w->heads_total + h] = e;
    }
    w->next = (w->next + 1) % w->window;
    if (w->filled < w->window)
        w->filled++;
    return warnings;
}
