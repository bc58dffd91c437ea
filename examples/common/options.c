/* Table-driven command-line parsing (options.h). */
#include "options.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void ex_options_choice_name(const char *choices, int index, char *buf, size_t len)
{
    const char *p = choices;
    for (; index > 0 && strchr(p, '|'); index--)
        p = strchr(p, '|') + 1;
    const size_t n = strchr(p, '|') ? (size_t)(strchr(p, '|') - p) : strlen(p);
    snprintf(buf, len, "%.*s", (int)n, p);
}

/* The shortest decimal text that reads back as the same float. */
static void float_text(float x, char *buf, size_t len)
{
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, len, "%.*g", digits, x);
        if (strtof(buf, NULL) == x)
            return;
    }
}

/* The value of one option as text (for --help and the fingerprint); a flag
 * is 1 when its field holds the flag's value. */
static void value_text(const ex_opt_spec *s, const void *opts, char *buf, size_t len)
{
    const char *base = (const char *)opts + s->offset;
    switch (s->type) {
    case EX_OPT_SIZE: snprintf(buf, len, "%zu", *(const size_t *)base); break;
    case EX_OPT_U64: snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)base); break;
    case EX_OPT_FLOAT: float_text(*(const float *)base, buf, len); break;
    case EX_OPT_FLAG: snprintf(buf, len, "%d", *(const int *)base == s->value); break;
    case EX_OPT_STRING: {
        const char *v = *(const char *const *)base;
        snprintf(buf, len, "%s", v ? v : "");
        break;
    }
    case EX_OPT_CHOICE: ex_options_choice_name(s->choices, *(const int *)base, buf, len); break;
    }
}

void ex_train_options_default(ex_train_options *r)
{
    memset(r, 0, sizeof(*r));
    r->log_every = 10;
    r->bound_every = 100;
    r->collapse_fraction = 0.1f;
    r->collapse_drop = 0.8f;
    r->collapse_window = 200;
}

void ex_options_usage(const ex_opt_table *t, const char *prog, FILE *to)
{
    void *defaults = malloc(t->size);
    if (!defaults)
        return;
    t->defaults(defaults);
    fprintf(to, "usage: %s [options]\n%s\n", prog, t->summary);
    for (size_t i = 0; i < t->count; i++) {
        const ex_opt_spec *s = &t->specs[i];
        const char *arg = s->type == EX_OPT_FLAG     ? ""
                          : s->type == EX_OPT_CHOICE ? s->choices
                          : s->type == EX_OPT_STRING ? (s->choices ? s->choices : "PATH")
                          : s->type == EX_OPT_FLOAT  ? "X"
                                                     : "N";
        char left[96], def[96] = "";
        snprintf(left, sizeof(left), "--%s%s%s", s->name, *arg ? " " : "", arg);
        if (s->type != EX_OPT_FLAG && s->type != EX_OPT_STRING) {
            char v[64];
            value_text(s, defaults, v, sizeof(v));
            snprintf(def, sizeof(def), " [%s]", v);
        }
        fprintf(to, "  %-40s %s%s\n", left, s->help, def);
    }
    fprintf(to, "  %-40s %s\n\n%s", "--help", "this text", ex_exit_codes_help());
    free(defaults);
}

static ex_code parse_value(const ex_opt_spec *s, const char *v, void *opts, ex_error *err)
{
    char *base = (char *)opts + s->offset;
    char *end = NULL;
    errno = 0;
    switch (s->type) {
    case EX_OPT_SIZE:
    case EX_OPT_U64: {
        if (*v == '-' || *v == '\0')
            return ex_fail(err, EX_USAGE, "--%s needs a non-negative integer, not '%s'", s->name,
                           v);
        const unsigned long long x = strtoull(v, &end, 10);
        if (errno || *end != '\0' || (double)x < s->lo || (double)x > s->hi)
            return ex_fail(err, EX_USAGE, "--%s: '%s' is not an integer in %.0f..%.0f", s->name, v,
                           s->lo, s->hi);
        if (s->type == EX_OPT_SIZE)
            *(size_t *)base = (size_t)x;
        else
            *(uint64_t *)base = (uint64_t)x;
        return EX_OK;
    }
    case EX_OPT_FLOAT: {
        const double x = strtod(v, &end);
        if (errno || end == v || *end != '\0' || !isfinite(x) || x < s->lo || x > s->hi)
            return ex_fail(err, EX_USAGE, "--%s: '%s' is not a number in %g..%g", s->name, v, s->lo,
                           s->hi);
        *(float *)base = (float)x;
        return EX_OK;
    }
    case EX_OPT_STRING:
        if (*v == '\0')
            return ex_fail(err, EX_USAGE, "--%s needs a value", s->name);
        *(const char **)base = v;
        return EX_OK;
    case EX_OPT_CHOICE: {
        int index = 0;
        for (const char *p = s->choices; *p; index++) {
            const char *bar = strchr(p, '|');
            const size_t len = bar ? (size_t)(bar - p) : strlen(p);
            if (strlen(v) == len && strncmp(p, v, len) == 0) {
                *(int *)base = index;
                return EX_OK;
            }
            p += len + (bar ? 1 : 0);
        }
        return ex_fail(err, EX_USAGE, "--%s must be one of %s, not '%s'", s->name, s->choices, v);
    }
    case EX_OPT_FLAG: break;
    }
    return EX_OK;
}

ex_code ex_options_parse(const ex_opt_table *t, void *opts, int argc, char **argv, ex_error *err)
{
    const char *prog = argc > 0 ? argv[0] : "program";
    t->defaults(opts);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            ex_options_usage(t, prog, stdout);
            return EX_HELP;
        }
        if (strncmp(arg, "--", 2) != 0)
            return ex_fail(err, EX_USAGE, "unexpected argument '%s'", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        const size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const ex_opt_spec *s = NULL;
        for (size_t k = 0; k < t->count; k++)
            if (strlen(t->specs[k].name) == len && strncmp(t->specs[k].name, name, len) == 0)
                s = &t->specs[k];
        if (!s)
            return ex_fail(err, EX_USAGE, "unknown option '%s'", arg);
        if (s->type == EX_OPT_FLAG) {
            if (eq)
                return ex_fail(err, EX_USAGE, "--%s takes no value", s->name);
            *(int *)((char *)opts + s->offset) = s->value;
            continue;
        }
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!value)
            return ex_fail(err, EX_USAGE, "--%s needs a value", s->name);
        const ex_code code = parse_value(s, value, opts, err);
        if (code != EX_OK)
            return code;
    }
    return EX_OK;
}

void ex_options_fingerprint(const ex_opt_table *t, const void *opts, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < t->count && used + 1 < len; i++) {
        const ex_opt_spec *s = &t->specs[i];
        int seen = 0; /* a field set by several flags (--x / --no-x) counts once */
        for (size_t k = 0; k < i; k++)
            seen |= t->specs[k].trajectory && t->specs[k].offset == s->offset;
        if (!s->trajectory || seen)
            continue;
        char v[128];
        value_text(s, opts, v, sizeof(v));
        used += (size_t)snprintf(buf + used, len - used, "%s%s=%s", used ? " " : "", s->name, v);
    }
}
