/* Command-line parsing for vit-lite-train: one table of flags, each with its
 * type, range and help line, so that parsing, checking and --help agree. */
#include "options.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"

typedef enum { OPT_SIZE, OPT_U64, OPT_FLOAT, OPT_FLAG, OPT_STRING, OPT_CHOICE } opt_type;

typedef struct {
    const char *name;
    opt_type type;
    size_t offset;       /* in vit_options */
    double lo, hi;       /* numeric range */
    const char *choices; /* OPT_CHOICE: "a|b|c", stored as the index (int) */
    const char *help;
} opt_spec;

#define OFF(field) offsetof(vit_options, field)

static const opt_spec k_specs[] = {
    /* model */
    {"dim", OPT_SIZE, OFF(model.dim), 4, 4096, NULL, "model width D"},
    {"depth", OPT_SIZE, OFF(model.depth), 1, 64, NULL, "transformer blocks"},
    {"heads", OPT_SIZE, OFF(model.heads), 1, 64, NULL, "attention heads (must divide --dim)"},
    {"mlp-dim", OPT_SIZE, OFF(model.mlp_dim), 1, 16384, NULL, "hidden width of the MLPs"},
    {"patch", OPT_SIZE, OFF(model.patch), 1, 64, NULL, "patch side (must divide the image side)"},
    {"no-sn", OPT_FLAG, OFF(model.sigma_reparam), 0, 0, NULL,
     "plain linears instead of sigmaReparam (the paper's baseline)"},
    {"layernorm", OPT_FLAG, OFF(model.layernorm), 1, 0, NULL, "add the LayerNorms (off by default)"},
    {"gamma-init", OPT_CHOICE, OFF(model.gamma_init), 0, 0, "sigma0|one",
     "gamma0 = sigma(W0) (official PyTorch) or 1 (the paper)"},
    {"init-gain", OPT_FLOAT, OFF(model.init_gain), 1e-4, 100, NULL,
     "weights ~ truncated N(0, 0.02 gain)"},
    /* optimization */
    {"optimizer", OPT_CHOICE, OFF(optimizer), 0, 0, "sgd|lars|adamw", "optimizer"},
    {"lr", OPT_FLOAT, OFF(lr), 0, 1e4, NULL, "peak learning rate"},
    {"momentum", OPT_FLOAT, OFF(momentum), 0, 0.9999, NULL, "SGD/LARS momentum"},
    {"nesterov", OPT_FLAG, OFF(nesterov), 1, 0, NULL, "Nesterov momentum for SGD and LARS (default; needs --momentum > 0)"},
    {"no-nesterov", OPT_FLAG, OFF(nesterov), 0, 0, NULL, "plain (heavy-ball) momentum"},
    {"weight-decay", OPT_FLOAT, OFF(weight_decay), 0, 10, NULL, "weight decay (matrices only)"},
    {"wd-mode", OPT_CHOICE, OFF(wd_mode), 0, 0, "coupled|decoupled",
     "weight decay added to the gradient, or applied to the weights"},
    {"lars-eta", OPT_FLOAT, OFF(lars_eta), 1e-8, 10, NULL, "LARS trust coefficient"},
    {"gamma-lr-mult", OPT_FLOAT, OFF(gamma_lr_mult), 0, 1e4, NULL,
     "lr multiplier of the sigmaReparam gammas"},
    {"gamma-lars", OPT_FLAG, OFF(gamma_lars), 1, 0, NULL,
     "LARS: apply the trust ratio to the gammas too (a relative step; default)"},
    {"no-gamma-lars", OPT_FLAG, OFF(gamma_lars), 0, 0, NULL,
     "LARS: plain SGD momentum steps for the gammas"},
    {"bias-lr-mult", OPT_FLOAT, OFF(bias_lr_mult), 0, 1e4, NULL,
     "lr multiplier of biases, class token and position embedding"},
    {"schedule", OPT_CHOICE, OFF(schedule), 0, 0, "constant|step|cosine", "learning-rate schedule"},
    {"warmup", OPT_U64, OFF(warmup_steps), 0, 1e9, NULL, "linear warmup steps (0: none)"},
    {"min-lr", OPT_FLOAT, OFF(min_lr), 0, 1e4, NULL, "final lr of the cosine schedule"},
    {"clip", OPT_FLOAT, OFF(clip), 0, 1e9, NULL, "clip the gradient norm to this (0: off)"},
    {"label-smoothing", OPT_FLOAT, OFF(label_smoothing), 0, 1, NULL, "label smoothing"},
    {"augment", OPT_FLAG, OFF(augment), 1, 0, NULL, "random horizontal flips (default)"},
    {"no-augment", OPT_FLAG, OFF(augment), 0, 0, NULL, "no random flips"},
    /* run */
    {"epochs", OPT_SIZE, OFF(epochs), 1, 10000, NULL, "epochs"},
    {"batch", OPT_SIZE, OFF(batch), 1, 65536, NULL, "batch size"},
    {"threads", OPT_SIZE, OFF(threads), 0, 1024, NULL, "threads, 0 = one per CPU"},
    {"seed", OPT_U64, OFF(seed), 0, 1.8e19, NULL, "seed of the weights and the data order"},
    {"dataset", OPT_CHOICE, OFF(dataset), 0, 0, "fashion-mnist|mnist|cifar10|synthetic",
     "dataset"},
    {"data-dir", OPT_STRING, OFF(data_dir), 0, 0, NULL,
     "dataset folder (default: " DEFAULT_DATA_DIR ")"},
    {"synthetic-train", OPT_SIZE, OFF(synthetic_train), 1, 1e7, NULL, "synthetic training images"},
    {"synthetic-test", OPT_SIZE, OFF(synthetic_test), 1, 1e7, NULL, "synthetic test images"},
    {"stop-after-steps", OPT_U64, OFF(stop_after_steps), 1, 1e15, NULL,
     "stop (with a checkpoint) after this many steps in all; resume later"},
    /* output */
    {"metrics", OPT_STRING, OFF(metrics_path), 0, 0, NULL, "write metrics as JSON lines here"},
    {"log-every", OPT_U64, OFF(log_every), 1, 1e9, NULL, "steps between metrics lines"},
    {"bound-every", OPT_U64, OFF(bound_every), 0, 1e9, NULL,
     "steps between Theorem 3.1 bounds in the metrics (0: never)"},
    {"checkpoint", OPT_STRING, OFF(checkpoint_path), 0, 0, NULL, "checkpoint file"},
    {"checkpoint-every", OPT_U64, OFF(checkpoint_every), 1, 1e9, NULL,
     "steps between checkpoints (also saved at the end)"},
    {"resume", OPT_STRING, OFF(resume_path), 0, 0, NULL, "continue from this checkpoint"},
    {"eval-only", OPT_FLAG, OFF(eval_only), 1, 0, NULL,
     "evaluate the --resume checkpoint on the test set and exit"},
    {"plot", OPT_STRING, OFF(plot_path), 0, 0, NULL,
     "render loss, accuracy and entropy curves to this PNG (gnuplot)"},
    {"plot-only", OPT_STRING, OFF(plot_only), 0, 0, NULL,
     "plot an existing metrics file to --plot, without training"},
    {"collapse-fraction", OPT_FLOAT, OFF(collapse_fraction), 0, 1, NULL,
     "warn when a head's mean entropy falls below this fraction of log T"},
    {"collapse-drop", OPT_FLOAT, OFF(collapse_drop), 0, 1, NULL,
     "warn when it drops by more than this fraction ..."},
    {"collapse-window", OPT_U64, OFF(collapse_window), 1, 1e9, NULL, "... within this many steps"},
    {"stop-on-collapse", OPT_FLAG, OFF(stop_on_collapse), 1, 0, NULL,
     "stop training at a collapse warning"},
};

static const char *k_dataset_names[] = {"fashion-mnist", "mnist", "cifar10", "synthetic"};

/* The defaults are the recipe measured to do best on Fashion-MNIST within a
 * 10-minute budget on 2 cores (README, "The main job"): sigmaReparam with
 * the official gamma0 = sigma(W0) on weights 4x the usual init, LARS with
 * Nesterov momentum and the trust ratio on the gammas too, label smoothing
 * 0.1, random flips, 12 epochs, no warmup, no LayerNorm, no weight decay,
 * and 7x7 patches (16 tokens + CLS), 3x faster than 4x4 ones. */
void vit_options_default(vit_options *o)
{
    memset(o, 0, sizeof(*o));
    o->model = vit_config_default();
    o->model.patch = 7;
    o->model.gamma_init = SRP_GAMMA_INIT_SIGMA0;
    o->model.init_gain = 4.0f;
    o->optimizer = SRP_OPTIM_LARS;
    o->lr = 2.0f;
    o->momentum = 0.9f;
    o->nesterov = 1;
    o->weight_decay = 0.0f;
    o->wd_mode = SRP_WD_COUPLED;
    o->lars_eta = 0.001f;
    o->gamma_lr_mult = 1.0f;
    o->gamma_lars = 1;
    o->bias_lr_mult = 0.01f;
    o->schedule = SRP_LR_COSINE;
    o->min_lr = 0.0f;
    o->clip = 0.0f;
    o->label_smoothing = 0.1f;
    o->augment = 1;
    o->epochs = 12;
    o->batch = 128;
    o->threads = 0;
    o->seed = 0;
    o->dataset = k_dataset_names[0];
    o->data_dir = NULL;
    o->synthetic_train = 4096;
    o->synthetic_test = 1024;
    o->log_every = 10;
    o->bound_every = 100;
    o->checkpoint_every = 500;
    o->collapse_fraction = 0.1f;
    o->collapse_drop = 0.8f;
    o->collapse_window = 200;
}

void vit_options_usage(const char *prog, FILE *to)
{
    vit_options d;
    vit_options_default(&d);
    fprintf(to,
            "usage: %s [options]\n"
            "Trains a ViT-lite with sigmaReparam on Fashion-MNIST (by default) and watches the\n"
            "entropy of every attention head.\n\n",
            prog);
    for (size_t i = 0; i < sizeof(k_specs) / sizeof(k_specs[0]); i++) {
        const opt_spec *s = &k_specs[i];
        char left[64];
        const char *arg = s->type == OPT_FLAG     ? ""
                          : s->type == OPT_CHOICE ? s->choices
                          : s->type == OPT_STRING ? "PATH"
                          : s->type == OPT_FLOAT  ? "X"
                                                  : "N";
        snprintf(left, sizeof(left), "--%s%s%s", s->name, *arg ? " " : "", arg);
        char def[64] = "";
        const char *base = (const char *)&d + s->offset;
        switch (s->type) {
        case OPT_SIZE: snprintf(def, sizeof(def), " [%zu]", *(const size_t *)base); break;
        case OPT_U64: snprintf(def, sizeof(def), " [%llu]", (unsigned long long)*(const uint64_t *)base); break;
        case OPT_FLOAT: snprintf(def, sizeof(def), " [%g]", *(const float *)base); break;
        case OPT_CHOICE: {
            if (s->offset == OFF(dataset)) {
                snprintf(def, sizeof(def), " [%s]", d.dataset);
                break;
            }
            const char *p = s->choices;
            for (int index = *(const int *)base; index > 0 && strchr(p, '|'); index--)
                p = strchr(p, '|') + 1;
            const size_t len = strchr(p, '|') ? (size_t)(strchr(p, '|') - p) : strlen(p);
            snprintf(def, sizeof(def), " [%.*s]", (int)len, p);
            break;
        }
        default: break;
        }
        fprintf(to, "  %-42s %s%s\n", left, s->help, def);
    }
    fprintf(to, "  %-42s %s\n\n", "--help", "this text");
    fprintf(to, "Exit codes: 0 done, 1 error (data, files), 2 bad usage, 3 non-finite loss or\n"
                "gradient (the last good checkpoint is kept), 4 stopped on entropy collapse.\n");
}

static int bad(const char *prog, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n\n");
    vit_options_usage(prog, stderr);
    return 2;
}

static int parse_value(const opt_spec *s, const char *v, vit_options *o, const char *prog)
{
    char *base = (char *)o + s->offset;
    char *end = NULL;
    errno = 0;
    switch (s->type) {
    case OPT_SIZE:
    case OPT_U64: {
        if (*v == '-' || *v == '\0')
            return bad(prog, "--%s needs a non-negative integer, not '%s'", s->name, v);
        const unsigned long long x = strtoull(v, &end, 10);
        if (errno || *end != '\0' || (double)x < s->lo || (double)x > s->hi)
            return bad(prog, "--%s: '%s' is not an integer in range", s->name, v);
        if (s->type == OPT_SIZE) {
            *(size_t *)base = (size_t)x;
        } else {
            *(uint64_t *)base = (uint64_t)x;
        }
        return 0;
    }
    case OPT_FLOAT: {
        const double x = strtod(v, &end);
        if (errno || end == v || *end != '\0' || !isfinite(x) || x < s->lo || x > s->hi)
            return bad(prog, "--%s: '%s' is not a number in range", s->name, v);
        *(float *)base = (float)x;
        return 0;
    }
    case OPT_STRING:
        if (*v == '\0')
            return bad(prog, "--%s needs a value%s", s->name, "");
        *(const char **)base = v;
        return 0;
    case OPT_CHOICE: {
        int index = 0;
        const char *p = s->choices;
        while (*p) {
            const char *bar = strchr(p, '|');
            const size_t len = bar ? (size_t)(bar - p) : strlen(p);
            if (strlen(v) == len && strncmp(p, v, len) == 0) {
                if (s->offset == OFF(dataset))
                    o->dataset = k_dataset_names[index];
                else
                    *(int *)base = index;
                return 0;
            }
            index++;
            p += len + (bar ? 1 : 0);
        }
        return bad(prog, "--%s must be one of %s", s->name, s->choices);
    }
    case OPT_FLAG: break;
    }
    return 0;
}

int vit_options_parse(vit_options *o, int argc, char **argv)
{
    const char *prog = argc > 0 ? argv[0] : "vit-lite-train";
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            vit_options_usage(prog, stdout);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0)
            return bad(prog, "unexpected argument '%s'%s", arg, "");
        const char *name = arg + 2, *eq = strchr(name, '=');
        const size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const opt_spec *s = NULL;
        for (size_t k = 0; k < sizeof(k_specs) / sizeof(k_specs[0]); k++)
            if (strlen(k_specs[k].name) == len && strncmp(k_specs[k].name, name, len) == 0)
                s = &k_specs[k];
        if (!s)
            return bad(prog, "unknown option '%s'%s", arg, "");
        if (s->type == OPT_FLAG) {
            if (eq)
                return bad(prog, "--%s takes no value%s", s->name, "");
            *(int *)((char *)o + s->offset) = (int)s->lo;
            continue;
        }
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!value)
            return bad(prog, "--%s needs a value%s", s->name, "");
        const int rc = parse_value(s, value, o, prog);
        if (rc)
            return rc;
    }
    if (o->model.dim % o->model.heads != 0)
        return bad(prog, "--heads must divide --dim%s%s", "", "");
    if (o->eval_only && !o->resume_path)
        return bad(prog, "--eval-only needs --resume CHECKPOINT%s%s", "", "");
    if (o->plot_only && !o->plot_path)
        return bad(prog, "--plot-only needs --plot FILE.png%s%s", "", "");
    return 0;
}

void vit_options_fingerprint(const vit_options *o, char *buf, size_t len)
{
    const vit_config *m = &o->model;
    snprintf(buf, len,
             "dataset=%s dim=%zu depth=%zu heads=%zu mlp=%zu patch=%zu sn=%d ln=%d gamma_init=%d "
             "gain=%.9g opt=%d lr=%.9g mom=%.9g nesterov=%d wd=%.9g wd_mode=%d eta=%.9g "
             "gamma_lr=%.9g gamma_lars=%d bias_lr=%.9g sched=%d warmup=%llu min_lr=%.9g clip=%.9g ls=%.9g aug=%d epochs=%zu "
             "batch=%zu seed=%llu synth=%zu/%zu",
             o->dataset, m->dim, m->depth, m->heads, m->mlp_dim, m->patch, m->sigma_reparam,
             m->layernorm, (int)m->gamma_init, m->init_gain, (int)o->optimizer, o->lr, o->momentum,
             o->nesterov, o->weight_decay, (int)o->wd_mode, o->lars_eta, o->gamma_lr_mult, o->gamma_lars, o->bias_lr_mult,
             (int)o->schedule, (unsigned long long)o->warmup_steps, o->min_lr, o->clip,
             o->label_smoothing, o->augment, o->epochs, o->batch, (unsigned long long)o->seed,
             o->synthetic_train, o->synthetic_test);
}
