/* vit-lite-train's options: one table of flags for the common parser. */
#include "vit_options.h"

#include <stdlib.h>
#include <string.h>

#define OFF(field) offsetof(vit_options, field)
#define DATASETS "fashion-mnist|mnist|cifar10|synthetic"

/* name, type, field, lo, hi, choices, flag value, trajectory, help */
static const ex_opt_spec k_specs[] = {
    /* model */
    {"dim", EX_OPT_SIZE, OFF(model.dim), 4, 4096, NULL, 0, 1, "model width D"},
    {"depth", EX_OPT_SIZE, OFF(model.depth), 1, 64, NULL, 0, 1, "transformer blocks"},
    {"heads", EX_OPT_SIZE, OFF(model.heads), 1, 64, NULL, 0, 1,
     "attention heads (must divide --dim)"},
    {"mlp-dim", EX_OPT_SIZE, OFF(model.mlp_dim), 1, 16384, NULL, 0, 1, "hidden width of the MLPs"},
    {"patch", EX_OPT_SIZE, OFF(model.patch), 1, 64, NULL, 0, 1,
     "patch side (must divide the image side): the tokens' grid; a stem's last map is cut "
     "into the same grid"},
    {"stem", EX_OPT_STRING, OFF(stem), 0, 0, "LIST", 0, 1,
     "a convolutional stem before the patch embedding: one 3x3 sigmaReparam convolution and "
     "GELU per entry, K channels, K/s for a stride of s (28 -> 14 -> 7 -> 4 pixels at "
     "stride 2); its last map must split into the patches' grid (default "
     "48/2,96/2,128/2,128; 0: none)"},
    {"no-sn", EX_OPT_FLAG, OFF(sigma_reparam), 0, 0, NULL, 0, 1,
     "plain linears instead of sigmaReparam (the paper's baseline)"},
    {"layernorm", EX_OPT_FLAG, OFF(layernorm), 0, 0, NULL, 1, 1,
     "add the LayerNorms (off by default)"},
    {"gamma-init", EX_OPT_CHOICE, OFF(gamma_init), 0, 0, "sigma0|one", 0, 1,
     "gamma0 = sigma(W0) (official PyTorch) or 1 (the paper)"},
    {"qkv-sigma", EX_OPT_CHOICE, OFF(qkv_sigma), 0, 0, "fused|qk-v|separate", 0, 1,
     "one sigma for the fused qkv, q and k sharing one, or q, k, v one each"},
    {"pool", EX_OPT_CHOICE, OFF(pool), 0, 0, "cls|mean", 0, 1,
     "what the head reads: the class token, or the mean of all tokens"},
    {"init-gain", EX_OPT_FLOAT, OFF(model.init_gain), 1e-4, 100, NULL, 0, 1,
     "weights ~ truncated N(0, 0.02 gain)"},
    /* optimization */
    {"optimizer", EX_OPT_CHOICE, OFF(optimizer), 0, 0, "sgd|lars|adamw", 0, 1, "optimizer"},
    {"lr", EX_OPT_FLOAT, OFF(lr), 0, 1e4, NULL, 0, 1, "peak learning rate"},
    {"momentum", EX_OPT_FLOAT, OFF(momentum), 0, 0.9999, NULL, 0, 1, "SGD/LARS momentum"},
    {"nesterov", EX_OPT_FLAG, OFF(nesterov), 0, 0, NULL, 1, 1,
     "Nesterov momentum for SGD and LARS (default; needs --momentum > 0)"},
    {"no-nesterov", EX_OPT_FLAG, OFF(nesterov), 0, 0, NULL, 0, 1, "plain (heavy-ball) momentum"},
    {"weight-decay", EX_OPT_FLOAT, OFF(weight_decay), 0, 10, NULL, 0, 1,
     "weight decay (matrices only)"},
    {"wd-mode", EX_OPT_CHOICE, OFF(wd_mode), 0, 0, "coupled|decoupled", 0, 1,
     "weight decay added to the gradient, or applied to the weights"},
    {"lars-eta", EX_OPT_FLOAT, OFF(lars_eta), 1e-8, 10, NULL, 0, 1, "LARS trust coefficient"},
    {"gamma-lr-mult", EX_OPT_FLOAT, OFF(gamma_lr_mult), 0, 1e4, NULL, 0, 1,
     "lr multiplier of the sigmaReparam gammas"},
    {"gamma-lars", EX_OPT_FLAG, OFF(gamma_lars), 0, 0, NULL, 1, 1,
     "LARS: apply the trust ratio to the gammas too (a relative step; default)"},
    {"no-gamma-lars", EX_OPT_FLAG, OFF(gamma_lars), 0, 0, NULL, 0, 1,
     "LARS: plain SGD momentum steps for the gammas"},
    {"bias-lr-mult", EX_OPT_FLOAT, OFF(bias_lr_mult), 0, 1e4, NULL, 0, 1,
     "lr multiplier of biases, LayerNorm scales and shifts, class token and position "
     "embedding: vectors that LARS steps plainly, without its trust ratio, so that at "
     "LARS's lr they need a small one (with SGD or AdamW, use 1)"},
    {"schedule", EX_OPT_CHOICE, OFF(schedule), 0, 0, "constant|step|cosine", 0, 1,
     "learning-rate schedule"},
    {"warmup", EX_OPT_U64, OFF(warmup_steps), 0, 1e9, NULL, 0, 1, "linear warmup steps (0: none)"},
    {"min-lr", EX_OPT_FLOAT, OFF(min_lr), 0, 1e4, NULL, 0, 1, "final lr of the cosine schedule"},
    {"clip", EX_OPT_FLOAT, OFF(run.clip), 0, 1e9, NULL, 0, 1,
     "clip the gradient norm to this (0: off)"},
    {"label-smoothing", EX_OPT_FLOAT, OFF(label_smoothing), 0, 1, NULL, 0, 1, "label smoothing"},
    {"augment", EX_OPT_FLAG, OFF(augment), 0, 0, NULL, 1, 1,
     "random horizontal flips (default for fashion-mnist and cifar10, whose classes a mirror "
     "keeps)"},
    {"no-augment", EX_OPT_FLAG, OFF(augment), 0, 0, NULL, 0, 1,
     "no random flips (default for mnist and synthetic, whose classes a mirror changes: digits, "
     "stroke angles)"},
    {"translate", EX_OPT_SIZE, OFF(translate), 0, 8, NULL, 0, 1,
     "random shifts of up to N pixels each way (0: none)"},
    {"erase", EX_OPT_FLOAT, OFF(erase), 0, 1, NULL, 0, 1,
     "random erasing: with this probability, set a random rectangle of 2-40% of the image to "
     "the background (0: off)"},
    {"ema", EX_OPT_FLOAT, OFF(ema), 0, 0.99999, NULL, 0, 1,
     "evaluate a moving average of the weights with this decay, sigma recomputed (0: off)"},
    {"tta-flip", EX_OPT_FLAG, OFF(tta_flip), 0, 0, NULL, 1, 1,
     "evaluate on each image and its mirror, logits averaged (default where flips are: "
     "fashion-mnist, cifar10)"},
    {"no-tta-flip", EX_OPT_FLAG, OFF(tta_flip), 0, 0, NULL, 0, 1,
     "evaluate on each image alone (default for mnist and synthetic)"},
    /* run */
    {"epochs", EX_OPT_SIZE, OFF(epochs), 1, 10000, NULL, 0, 1, "epochs"},
    {"batch", EX_OPT_SIZE, OFF(run.batch), 1, 65536, NULL, 0, 1, "batch size"},
    {"threads", EX_OPT_SIZE, OFF(run.threads), 0, 1024, NULL, 0, 0, "threads, 0 = one per CPU"},
    {"seed", EX_OPT_U64, OFF(run.seed), 0, 1.8e19, NULL, 0, 1,
     "seed of the weights and the data order"},
    {"dataset", EX_OPT_CHOICE, OFF(dataset), 0, 0, DATASETS, 0, 1, "dataset"},
    {"data-dir", EX_OPT_STRING, OFF(data_dir), 0, 0, NULL, 0, 0,
     "dataset folder (default: " VIT_DEFAULT_DATA_DIR ")"},
    {"synthetic-train", EX_OPT_SIZE, OFF(synthetic_train), 1, 1e7, NULL, 0, 1,
     "synthetic training images"},
    {"synthetic-test", EX_OPT_SIZE, OFF(synthetic_test), 1, 1e7, NULL, 0, 1,
     "synthetic test images"},
    {"val", EX_OPT_SIZE, OFF(val), 0, 1e7, NULL, 0, 1,
     "hold out the last N training images: each epoch is evaluated on them, the test set "
     "only once at the end"},
    /* output */
    EX_RUN_OPTION_ROWS(vit_options),
    {"eval-only", EX_OPT_FLAG, OFF(eval_only), 0, 0, NULL, 1, 0,
     "evaluate the --resume checkpoint's (or the --init-from) model on the test set and exit: "
     "its weight average when it has one (as the run reported it; --ema 0: the weights)"},
    {"export", EX_OPT_STRING, OFF(export_path), 0, 0, NULL, 0, 0,
     "at the end, write the model to this safetensors file under the official PyTorch code's "
     "names (docs/FORMAT.md)"},
    {"logits", EX_OPT_STRING, OFF(logits_path), 0, 0, NULL, 0, 0,
     "with --eval-only, also write the test set's logits to this safetensors file (tensor "
     "\"logits\" [images, classes], in the test set's order)"},
    {"init-from", EX_OPT_STRING, OFF(init_from), 0, 0, NULL, 0, 0,
     "start from the model in this safetensors file (official names, e.g. trained in "
     "PyTorch) instead of a random init"},
    {"report-at", EX_OPT_STRING, OFF(report_at), 0, 0, "LIST", 0, 0,
     "accuracies: print when each was first reached (time to accuracy; default 0.9,0.925)"},
    {"plot", EX_OPT_STRING, OFF(run.plot_path), 0, 0, NULL, 0, 0,
     "render loss, accuracy and entropy curves to this PNG (gnuplot)"},
    EX_COLLAPSE_OPTION_ROWS(vit_options),
};

static void defaults(void *o) { vit_options_default(o); }

static const ex_opt_table k_table = {
    "Trains a ViT-lite with sigmaReparam on Fashion-MNIST (by default) and watches the\n"
    "entropy of every attention head.\n",
    k_specs, sizeof(k_specs) / sizeof(k_specs[0]), sizeof(vit_options), defaults};

int vit_flips_keep_class(int kind)
{
    /* A mirrored shirt is a shirt and a mirrored cat a cat (flips are
     * CIFAR-10's standard augmentation); a mirrored 2 or 7 is no digit,
     * and a mirrored stroke has the angle of another synthetic class. */
    return kind == VIT_DATA_FASHION_MNIST || kind == VIT_DATA_CIFAR10;
}

const char *vit_dataset_name(int kind)
{
    static const char *names[] = {"fashion-mnist", "mnist", "cifar10", "synthetic"};
    return kind >= 0 && kind < 4 ? names[kind] : "unknown";
}

/* The defaults are the recipe chosen on the validation split for
 * Fashion-MNIST within a 10-minute budget on 2 cores (docs/vit-lite-recipe.md):
 * sigmaReparam with the official gamma0 = sigma(W0) on weights 4x the usual
 * init, q, k and v each under their own sigma, a stem of four 3x3
 * convolutions (48, 96 and 128 channels at stride 2: 28 -> 14 -> 7 -> 4
 * pixels, then 128 at stride 1) whose 4x4 map gives the 16 tokens (+ CLS)
 * of 7x7 patches, LARS with Nesterov momentum and the trust ratio on the
 * gammas too, label smoothing 0.1, random flips and erasing, 12 epochs, and
 * evaluation of a weight average with test-time flips; no warmup, no
 * LayerNorm, no weight decay. Flips, in training and at test time, are on
 * by default only where a mirror keeps the class (vit_flips_keep_class). */
void vit_options_default(vit_options *o)
{
    memset(o, 0, sizeof(*o));
    ex_train_options_default(&o->run);
    o->model = vit_config_default();
    o->model.patch = 7;
    o->model.init_gain = 4.0f;
    o->sigma_reparam = 1;
    o->layernorm = 0;
    o->gamma_init = SRP_GAMMA_INIT_SIGMA0;
    o->qkv_sigma = SRP_QKV_SIGMA_SEPARATE;
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
    o->min_lr = 0.5f;
    o->label_smoothing = 0.1f;
    o->augment = -1; /* by dataset, after parsing */
    o->erase = 0.25f;
    o->ema = 0.998f;
    o->tta_flip = -1; /* by dataset, after parsing */
    o->stem = "48/2,96/2,128/2,128";
    o->report_at = "0.9,0.925";
    o->epochs = 12;
    o->run.batch = 128;
    o->dataset = VIT_DATA_FASHION_MNIST;
    o->synthetic_train = 4096;
    o->synthetic_test = 1024;
    o->run.checkpoint_every = 500;
    vit_stem_parse(o->stem, &o->model.stem_layers, o->model.stem_channels,
                   o->model.stem_strides); /* as the string says */
}

void vit_options_usage(const char *prog, FILE *to) { ex_options_usage(&k_table, prog, to); }

ex_code vit_options_parse(vit_options *o, int argc, char **argv, ex_error *err)
{
    const ex_code code = ex_options_parse(&k_table, o, argc, argv, err);
    if (code != EX_OK)
        return code;
    /* Flips unless asked otherwise where a mirror keeps the class. */
    if (o->augment < 0)
        o->augment = vit_flips_keep_class(o->dataset);
    if (o->tta_flip < 0)
        o->tta_flip = vit_flips_keep_class(o->dataset);
    o->model.sigma_reparam = o->sigma_reparam;
    o->model.layernorm = o->layernorm;
    o->model.gamma_init = (srp_gamma_init)o->gamma_init;
    o->model.qkv_sigma = (srp_qkv_sigma)o->qkv_sigma;
    o->model.pool = (vit_pool)o->pool;
    if (vit_stem_parse(o->stem, &o->model.stem_layers, o->model.stem_channels,
                       o->model.stem_strides) != 0)
        return ex_fail(err, EX_USAGE,
                       "--stem %s: give 0, or up to %d channel counts from 1 to 1024, each with "
                       "an optional stride from 1 to %d, e.g. 16,32/2",
                       o->stem, VIT_STEM_MAX_LAYERS, VIT_STEM_MAX_STRIDE);
    if (o->model.dim % o->model.heads != 0)
        return ex_fail(err, EX_USAGE, "--heads %zu must divide --dim %zu", o->model.heads,
                       o->model.dim);
    if (o->eval_only && !o->run.resume_path && !o->init_from)
        return ex_fail(err, EX_USAGE,
                       "--eval-only needs --resume CHECKPOINT or --init-from MODEL.safetensors");
    if (o->logits_path && !o->eval_only)
        return ex_fail(err, EX_USAGE, "--logits goes with --eval-only");
    if (o->init_from && o->run.resume_path)
        return ex_fail(err, EX_USAGE,
                       "--init-from starts a new run and --resume continues one: give one of them");
    if (o->run.plot_only && !o->run.plot_path)
        return ex_fail(err, EX_USAGE, "--plot-only needs --plot FILE.png");
    if ((o->dataset == VIT_DATA_MNIST || o->dataset == VIT_DATA_CIFAR10) && !o->data_dir)
        return ex_fail(err, EX_USAGE, "--dataset %s needs --data-dir (%s)",
                       vit_dataset_name(o->dataset),
                       o->dataset == VIT_DATA_MNIST ? "the folder of the four IDX files"
                                                    : "the CIFAR-10 binary version's folder");
    return EX_OK;
}

void vit_options_fingerprint(const vit_options *o, char *buf, size_t len)
{
    /* The stem as parsed, so that "32, 32" and "32,32" are the same run. */
    char stem[VIT_STEM_TEXT_MAX];
    vit_stem_format(o->model.stem_layers, o->model.stem_channels, o->model.stem_strides, stem,
                    sizeof(stem));
    vit_options canonical = *o;
    canonical.stem = stem;
    ex_options_fingerprint(&k_table, &canonical, buf, len);
}
