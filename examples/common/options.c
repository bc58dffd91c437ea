/* Table-driven command-line parsing (options.h). */
#include "options.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RUN(field) offsetof(ex_train_options, field)
_Static_assert(sizeof(srp_precision) == sizeof(int) && SRP_PRECISION_FP32 == 0 &&
                   SRP_PRECISION_BF16 == 1 && SRP_PRECISION_AUTO == 2 &&
                   EX_PRECISION_BF16_REFERENCE == 3,
               "--precision's choices are srp_precision's values and then the reference "
               "path's, stored as an int");
#define MAX_ROWS 128

/* The rows every trainer has: a single row's field is where the trainer's
 * EX_OPT_SHARED row says; a group's, at their place in the
 * ex_train_options there. */
static const ex_opt_spec k_shared[] = {
    {"dim", EX_OPT_SIZE, 0, 4, 4096, NULL, 0, 1, NULL, "model width D"},
    {"depth", EX_OPT_SIZE, 0, 1, 64, NULL, 0, 1, NULL, "transformer blocks"},
    {"heads", EX_OPT_SIZE, 0, 1, 64, NULL, 0, 1, NULL, "attention heads (must divide --dim)"},
    {"mlp-dim", EX_OPT_SIZE, 0, 1, 16384, NULL, 0, 1, NULL, "hidden width of the MLPs"},
    {"gamma-init", EX_OPT_CHOICE, 0, 0, 0, "sigma0|one", 0, 1, NULL,
     "gamma0 = sigma(W0) (official PyTorch) or 1 (the paper)"},
    {"qkv-sigma", EX_OPT_CHOICE, 0, 0, 0, "fused|qk-v|separate", 0, 1, NULL,
     "one sigma for the fused qkv, q and k sharing one, or q, k, v one each"},
    {"optimizer", EX_OPT_CHOICE, 0, 0, 0, "sgd|lars|adamw", 0, 1, NULL, "optimizer"},
    {"lr", EX_OPT_FLOAT, 0, 0, 1e4, NULL, 0, 1, NULL, "peak learning rate"},
    {"momentum", EX_OPT_FLOAT, 0, 0, 0.9999, NULL, 0, 1, "0.9", "SGD/LARS momentum"},
    {"gamma-lr-mult", EX_OPT_FLOAT, 0, 0, 1e4, NULL, 0, 1, "1",
     "lr multiplier of the sigmaReparam gammas"},
    {"schedule", EX_OPT_CHOICE, 0, 0, 0, "constant|step|cosine", 0, 1, "cosine",
     "learning-rate schedule"},
    {"warmup", EX_OPT_U64, 0, 0, 1e9, NULL, 0, 1, NULL, "linear warmup steps (0: none)"},
    {"min-lr", EX_OPT_FLOAT, 0, 0, 1e4, NULL, 0, 1, NULL, "final lr of the cosine schedule"},
    {"clip", EX_OPT_FLOAT, 0, 0, 1e9, NULL, 0, 1, NULL, "clip the gradient norm to this (0: off)"},
    {"threads", EX_OPT_SIZE, 0, 0, 1024, NULL, 0, 0, NULL, "threads, 0 = one per CPU"},
    {"precision", EX_OPT_CHOICE, 0, 0, 0, "fp32|bf16|auto|bf16-reference", 0, 1, "fp32",
     "the GEMM inputs' precision: bf16 where the CPU does it fast, with auto (fp32 elsewhere); "
     "bf16-reference: bf16's results on any CPU, slower than fp32"},
    {"seed", EX_OPT_U64, 0, 0, 1.8e19, NULL, 0, 1, NULL, "seed of the weights and the data order"},
    /* the blocks' regularizers (layers.h), in training forwards only; a
     * checkpoint of a run without them resumes as before */
    {.name = "regularizers", .type = EX_OPT_SHARED},
    {"attn-dropout", EX_OPT_FLOAT, RUN(reg.attn_dropout), 0, 0.99, NULL, 0, EX_OPT_UNLESS_DEFAULT,
     "0", "dropout on the attention weights after the softmax (0: off)"},
    {"mlp-dropout", EX_OPT_FLOAT, RUN(reg.mlp_dropout), 0, 0.99, NULL, 0, EX_OPT_UNLESS_DEFAULT,
     "0", "dropout on each MLP's output (0: off)"},
    {"drop-path", EX_OPT_FLOAT, RUN(reg.drop_path), 0, 0.99, NULL, 0, EX_OPT_UNLESS_DEFAULT, "0",
     "stochastic depth: each block's attention and MLP branches dropped per example, with "
     "this probability in the last block, rising to it from 0 in the first (0: off)"},
    /* output and resume (none is part of the fingerprint) */
    {.name = "output", .type = EX_OPT_SHARED},
    {"stop-after-steps", EX_OPT_U64, RUN(stop_after_steps), 1, 1e15, NULL, 0, 0, NULL,
     "stop (with a checkpoint) after this many steps in all; resume later"},
    {"metrics", EX_OPT_STRING, RUN(metrics_path), 0, 0, NULL, 0, 0, NULL,
     "write metrics as JSON lines here"},
    {"log-every", EX_OPT_U64, RUN(log_every), 1, 1e9, NULL, 0, 0, "10",
     "steps between metrics lines"},
    {"bound-every", EX_OPT_U64, RUN(bound_every), 0, 1e9, NULL, 0, 0, "100",
     "steps between Theorem 3.1 entropy bounds in the metrics (0: never)"},
    {"checkpoint", EX_OPT_STRING, RUN(checkpoint_path), 0, 0, NULL, 0, 0, NULL, "checkpoint file"},
    {"checkpoint-every", EX_OPT_U64, RUN(checkpoint_every), 1, 1e9, NULL, 0, 0, NULL,
     "steps between checkpoints (also saved at the end)"},
    {"resume", EX_OPT_STRING, RUN(resume_path), 0, 0, NULL, 0, 0, NULL,
     "continue from this checkpoint"},
    {"profile", EX_OPT_FLAG, RUN(profile), 0, 0, NULL, 1, 0, NULL,
     "at the end, print where the training time went (the library's profiler)"},
    {"plot-only", EX_OPT_STRING, RUN(plot_only), 0, 0, NULL, 0, 0, NULL,
     "plot an existing metrics file to --plot, without training"},
    {"check-replicas", EX_OPT_U64, RUN(check_replicas), 0, 1e9, NULL, 0, 0, NULL,
     "under mpirun: steps between checks that every rank holds the same parameters, u, v and "
     "sigma (0: never)"},
    /* the entropy-collapse watch (collapse.h) */
    {.name = "collapse", .type = EX_OPT_SHARED},
    {"collapse-fraction", EX_OPT_FLOAT, RUN(collapse_fraction), 0, 1, NULL, 0, 1, "0.1",
     "warn when a head's mean entropy falls below this fraction of uniform attention's"},
    {"collapse-drop", EX_OPT_FLOAT, RUN(collapse_drop), 0, 1, NULL, 0, 1, "0.8",
     "warn when it drops by more than this fraction ..."},
    {"collapse-window", EX_OPT_U64, RUN(collapse_window), 1, 1e9, NULL, 0, 1, "200",
     "... within this many steps"},
    {"stop-on-collapse", EX_OPT_FLAG, RUN(stop_on_collapse), 0, 0, NULL, 1, 1, NULL,
     "stop training at a collapse warning (exit code 4)"},
    /* the model in safetensors files, to and from PyTorch (official_file.h) */
    {.name = "model-files", .type = EX_OPT_SHARED},
    {"eval-only", EX_OPT_FLAG, RUN(eval_only), 0, 0, NULL, 1, 0, NULL,
     "score the --resume checkpoint's (or the --init-from) model as the run's final evaluation "
     "does and exit: its weight average when it has one (as the run reported it; --ema 0: the "
     "weights)"},
    {"export", EX_OPT_STRING, RUN(export_path), 0, 0, NULL, 0, 0, NULL,
     "at the end, write the model the run evaluated to this safetensors file under the "
     "official PyTorch code's names (docs/FORMAT.md)"},
    {"export-folded", EX_OPT_STRING, RUN(export_folded), 0, 0, NULL, 0, 0, NULL,
     "at the end, write that model for inference to this safetensors file: each linear's "
     "gamma / sigma * W baked into a plain nn.Linear / nn.Conv2d weight (docs/FORMAT.md)"},
    {"logits", EX_OPT_STRING, RUN(logits_path), 0, 0, NULL, 0, 0, NULL,
     "with --eval-only, also write the evaluated logits to this safetensors file (tensor "
     "\"logits\": the ViT's test set [images, classes]; the LM's --eval-windows validation "
     "windows [windows, context, 256], with their bytes, \"tokens\")"},
    {"init-from", EX_OPT_STRING, RUN(init_from), 0, 0, NULL, 0, 0, NULL,
     "start from the model in this safetensors file (official names, e.g. trained in "
     "PyTorch) instead of a random init"},
};

ex_code ex_train_options_check(const ex_train_options *o, size_t dim, size_t heads, ex_error *err)
{
    if (dim % heads != 0)
        return ex_fail(err, EX_USAGE, "--heads %zu must divide --dim %zu", heads, dim);
    if (o->plot_only && !o->plot_path)
        return ex_fail(err, EX_USAGE, "--plot-only needs --plot FILE.png");
    return EX_OK;
}

const char *ex_gamma_init_name(srp_gamma_init g)
{
    static const char *const names[] = {"sigma0", "one"};
    return (size_t)g < sizeof(names) / sizeof(names[0]) ? names[g] : "unknown";
}

const char *ex_qkv_sigma_name(srp_qkv_sigma q)
{
    static const char *const names[] = {"fused", "qk-v", "separate"};
    return (size_t)q < sizeof(names) / sizeof(names[0]) ? names[q] : "unknown";
}

const char *ex_optimizer_name(int optimizer)
{
    return optimizer == SRP_OPTIM_ADAMW ? "AdamW" : optimizer == SRP_OPTIM_LARS ? "LARS" : "SGD";
}

/* The table's rows with the shared ones taken in: *rows[MAX_ROWS]. */
static size_t table_rows(const ex_opt_table *t, ex_opt_spec *rows)
{
    const size_t shared = sizeof(k_shared) / sizeof(k_shared[0]);
    size_t n = 0;
    for (size_t i = 0; i < t->count && n < MAX_ROWS; i++) {
        const ex_opt_spec *r = &t->specs[i];
        size_t k = 0;
        while (r->type == EX_OPT_SHARED && k < shared && strcmp(k_shared[k].name, r->name) != 0)
            k++;
        if (r->type != EX_OPT_SHARED || k == shared) { /* a name that is none: parsing says so */
            rows[n++] = *r;
            continue;
        }
        /* A group's rows follow its first, up to the next group's. */
        const int group = k_shared[k].type == EX_OPT_SHARED;
        for (k += group; k < shared && k_shared[k].type != EX_OPT_SHARED && n < MAX_ROWS; k++) {
            rows[n] = k_shared[k];
            rows[n].offset += r->offset;
            rows[n++].def = r->def ? r->def : k_shared[k].def;
            if (!group)
                break;
        }
    }
    return n;
}

/* The text of choice `index` of "a|b|c" into buf. */
static void choice_name(const char *choices, int index, char *buf, size_t len)
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
    case EX_OPT_CHOICE: choice_name(s->choices, *(const int *)base, buf, len); break;
    case EX_OPT_SHARED: break;
    }
}

/* One option's value from its text (a flag's: none). */
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
    case EX_OPT_FLAG: *(int *)base = s->value; return EX_OK;
    case EX_OPT_SHARED: break;
    }
    return EX_OK;
}

/* opts: zero, then the table's defaults function's, then the rows'. */
static void set_defaults(const ex_opt_table *t, const ex_opt_spec *rows, size_t n, void *opts)
{
    memset(opts, 0, t->size);
    if (t->defaults)
        t->defaults(opts);
    ex_error ignored; /* the rows' defaults are in their ranges (--help shows them) */
    for (size_t i = 0; i < n; i++)
        if (rows[i].def)
            parse_value(&rows[i], rows[i].def, opts, &ignored);
}

void ex_options_usage(const ex_opt_table *t, const char *prog, FILE *to)
{
    ex_opt_spec rows[MAX_ROWS];
    const size_t n = table_rows(t, rows);
    void *defaults = malloc(t->size);
    if (!defaults)
        return;
    set_defaults(t, rows, n, defaults);
    fprintf(to, "usage: %s [options]\n%s\n", prog, t->summary);
    for (size_t i = 0; i < n; i++) {
        const ex_opt_spec *s = &rows[i];
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

ex_code ex_options_parse(const ex_opt_table *t, void *opts, int argc, char **argv, ex_error *err)
{
    const char *prog = argc > 0 ? argv[0] : "program";
    ex_opt_spec rows[MAX_ROWS];
    const size_t n = table_rows(t, rows);
    for (size_t k = 0; k < n; k++)
        if (rows[k].type == EX_OPT_SHARED)
            return ex_fail(err, EX_FAILED, "the options' table names no shared row '%s'",
                           rows[k].name);
    set_defaults(t, rows, n, opts);
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
        for (size_t k = 0; k < n; k++)
            if (strlen(rows[k].name) == len && strncmp(rows[k].name, name, len) == 0)
                s = &rows[k];
        if (!s)
            return ex_fail(err, EX_USAGE, "unknown option '%s'", arg);
        if (s->type == EX_OPT_FLAG && eq)
            return ex_fail(err, EX_USAGE, "--%s takes no value", s->name);
        const char *value = s->type == EX_OPT_FLAG ? ""
                            : eq                   ? eq + 1
                            : i + 1 < argc         ? argv[++i]
                                                   : NULL;
        if (!value)
            return ex_fail(err, EX_USAGE, "--%s needs a value", s->name);
        const ex_code code = parse_value(s, value, opts, err);
        if (code != EX_OK)
            return code;
    }
    return t->check ? t->check(opts, err) : EX_OK;
}

void ex_options_fingerprint(const ex_opt_table *t, const void *opts, char *buf, size_t len)
{
    ex_opt_spec rows[MAX_ROWS];
    const size_t n = table_rows(t, rows);
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used + 1 < len; i++) {
        const ex_opt_spec *s = &rows[i];
        int seen = 0; /* a field set by several flags (--x / --no-x) counts once */
        for (size_t k = 0; k < i; k++)
            seen |= rows[k].trajectory && rows[k].offset == s->offset;
        if (!s->trajectory || seen)
            continue;
        char v[128];
        value_text(s, opts, v, sizeof(v));
        if (s->trajectory == EX_OPT_UNLESS_DEFAULT && s->def && strcmp(v, s->def) == 0)
            continue;
        used += (size_t)snprintf(buf + used, len - used, "%s%s=%s", used ? " " : "", s->name, v);
    }
}

ex_code ex_model_files_check(const ex_train_options *o, ex_error *err)
{
    if (o->eval_only && !o->resume_path && !o->init_from)
        return ex_fail(err, EX_USAGE,
                       "--eval-only needs --resume CHECKPOINT or --init-from MODEL.safetensors");
    if (o->logits_path && !o->eval_only)
        return ex_fail(err, EX_USAGE, "--logits goes with --eval-only");
    if (o->init_from && o->resume_path)
        return ex_fail(err, EX_USAGE,
                       "--init-from starts a new run and --resume continues one: give one of them");
    return EX_OK;
}
