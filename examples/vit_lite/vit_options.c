/* vit-lite-train's options: one table of flags for the common parser. */
#include "vit_options.h"

#define OFF(field) offsetof(vit_options, field)
#define DATASETS "fashion-mnist|mnist|cifar10|synthetic"
_Static_assert(sizeof(srp_gamma_init) == sizeof(int) && sizeof(srp_qkv_sigma) == sizeof(int) &&
                   sizeof(vit_pool) == sizeof(int),
               "the choices' enums are stored as ints");

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
 * by default only where a mirror keeps the class (vit_flips_keep_class).
 *
 * Rows: name, type, field, lo, hi, choices, flag value, trajectory,
 * default, help. */
static const ex_opt_spec k_specs[] = {
    /* model */
    {.name = "dim", .type = EX_OPT_SHARED, .offset = OFF(model.dim)},
    {.name = "depth", .type = EX_OPT_SHARED, .offset = OFF(model.depth)},
    {.name = "heads", .type = EX_OPT_SHARED, .offset = OFF(model.heads)},
    {.name = "mlp-dim", .type = EX_OPT_SHARED, .offset = OFF(model.mlp_dim)},
    {"patch", EX_OPT_SIZE, OFF(model.patch), 1, 64, NULL, 0, 1, "7",
     "patch side (must divide the image side): the tokens' grid; a stem's last map is cut "
     "into the same grid"},
    {"stem", EX_OPT_STRING, OFF(stem), 0, 0, "LIST", 0, 1, "48/2,96/2,128/2,128",
     "a convolutional stem before the patch embedding: one 3x3 sigmaReparam convolution and "
     "GELU per entry, K channels, K/s for a stride of s (28 -> 14 -> 7 -> 4 pixels at "
     "stride 2); its last map must split into the patches' grid (default "
     "48/2,96/2,128/2,128; 0: none)"},
    {"no-sn", EX_OPT_FLAG, OFF(model.sigma_reparam), 0, 0, NULL, 0, 1, NULL,
     "plain linears instead of sigmaReparam (the paper's baseline)"},
    {"layernorm", EX_OPT_FLAG, OFF(model.layernorm), 0, 0, NULL, 1, 1, NULL,
     "add the LayerNorms (off by default)"},
    {.name = "gamma-init", .type = EX_OPT_SHARED, .offset = OFF(model.gamma_init)},
    {.name = "qkv-sigma", .type = EX_OPT_SHARED, .offset = OFF(model.qkv_sigma), .def = "separate"},
    {"pool", EX_OPT_CHOICE, OFF(model.pool), 0, 0, "cls|mean", 0, 1, NULL,
     "what the head reads: the class token, or the mean of all tokens"},
    {"init-gain", EX_OPT_FLOAT, OFF(model.init_gain), 1e-4, 100, NULL, 0, 1, "4",
     "weights ~ truncated N(0, 0.02 gain)"},
    {.name = "regularizers", .type = EX_OPT_SHARED, .offset = OFF(run)},
    /* optimization */
    {.name = "optimizer", .type = EX_OPT_SHARED, .offset = OFF(optimizer), .def = "lars"},
    {.name = "lr", .type = EX_OPT_SHARED, .offset = OFF(lr), .def = "2"},
    {.name = "momentum", .type = EX_OPT_SHARED, .offset = OFF(momentum)},
    {"nesterov", EX_OPT_FLAG, OFF(nesterov), 0, 0, NULL, 1, 1, "on",
     "Nesterov momentum for SGD and LARS (default; needs --momentum > 0)"},
    {"no-nesterov", EX_OPT_FLAG, OFF(nesterov), 0, 0, NULL, 0, 1, NULL,
     "plain (heavy-ball) momentum"},
    {"weight-decay", EX_OPT_FLOAT, OFF(weight_decay), 0, 10, NULL, 0, 1, NULL,
     "weight decay (matrices only)"},
    {"wd-mode", EX_OPT_CHOICE, OFF(wd_mode), 0, 0, "coupled|decoupled", 0, 1, NULL,
     "weight decay added to the gradient, or applied to the weights"},
    {"lars-eta", EX_OPT_FLOAT, OFF(lars_eta), 1e-8, 10, NULL, 0, 1, "0.001",
     "LARS trust coefficient"},
    {.name = "gamma-lr-mult", .type = EX_OPT_SHARED, .offset = OFF(gamma_lr_mult)},
    {"gamma-lars", EX_OPT_FLAG, OFF(gamma_lars), 0, 0, NULL, 1, 1, "on",
     "LARS: apply the trust ratio to the gammas too (a relative step; default)"},
    {"no-gamma-lars", EX_OPT_FLAG, OFF(gamma_lars), 0, 0, NULL, 0, 1, NULL,
     "LARS: plain SGD momentum steps for the gammas"},
    {"bias-lr-mult", EX_OPT_FLOAT, OFF(bias_lr_mult), 0, 1e4, NULL, 0, 1, "0.01",
     "lr multiplier of biases, LayerNorm scales and shifts, class token and position "
     "embedding: vectors that LARS steps plainly, without its trust ratio, so that at "
     "LARS's lr they need a small one (with SGD or AdamW, use 1)"},
    {.name = "schedule", .type = EX_OPT_SHARED, .offset = OFF(schedule)},
    {.name = "warmup", .type = EX_OPT_SHARED, .offset = OFF(warmup_steps)},
    {.name = "min-lr", .type = EX_OPT_SHARED, .offset = OFF(min_lr), .def = "0.5"},
    {.name = "clip", .type = EX_OPT_SHARED, .offset = OFF(run.clip)},
    {"label-smoothing", EX_OPT_FLOAT, OFF(label_smoothing), 0, 1, NULL, 0, 1, "0.1",
     "label smoothing"},
    {"augment", EX_OPT_FLAG, OFF(augment), 0, 0, NULL, 1, 1, NULL,
     "random horizontal flips (default for fashion-mnist and cifar10, whose classes a mirror "
     "keeps)"},
    {"no-augment", EX_OPT_FLAG, OFF(augment), 0, 0, NULL, 0, 1, NULL,
     "no random flips (default for mnist and synthetic, whose classes a mirror changes: digits, "
     "stroke angles)"},
    {"translate", EX_OPT_SIZE, OFF(translate), 0, 8, NULL, 0, 1, NULL,
     "random shifts of up to N pixels each way (0: none)"},
    {"erase", EX_OPT_FLOAT, OFF(erase), 0, 1, NULL, 0, 1, "0.25",
     "random erasing: with this probability, set a random rectangle of 2-40% of the image to "
     "the background (0: off)"},
    {"ema", EX_OPT_FLOAT, OFF(ema), 0, 0.99999, NULL, 0, 1, "0.998",
     "evaluate a moving average of the weights with this decay, sigma recomputed (0: off)"},
    {"tta-flip", EX_OPT_FLAG, OFF(tta_flip), 0, 0, NULL, 1, 1, NULL,
     "evaluate on each image and its mirror, logits averaged (default where flips are: "
     "fashion-mnist, cifar10)"},
    {"no-tta-flip", EX_OPT_FLAG, OFF(tta_flip), 0, 0, NULL, 0, 1, NULL,
     "evaluate on each image alone (default for mnist and synthetic)"},
    /* run */
    {"epochs", EX_OPT_SIZE, OFF(epochs), 1, 10000, NULL, 0, 1, "12", "epochs"},
    {"batch", EX_OPT_SIZE, OFF(run.batch), 1, 65536, NULL, 0, 1, "128", "batch size"},
    {.name = "threads", .type = EX_OPT_SHARED, .offset = OFF(run.threads)},
    {.name = "precision", .type = EX_OPT_SHARED, .offset = OFF(run.precision)},
    {.name = "seed", .type = EX_OPT_SHARED, .offset = OFF(run.seed)},
    {"dataset", EX_OPT_CHOICE, OFF(dataset), 0, 0, DATASETS, 0, 1, NULL, "dataset"},
    {"data-dir", EX_OPT_STRING, OFF(data_dir), 0, 0, NULL, 0, 0, NULL,
     "dataset folder (default: " VIT_DEFAULT_DATA_DIR ")"},
    {"synthetic-train", EX_OPT_SIZE, OFF(synthetic_train), 1, 1e7, NULL, 0, 1, "4096",
     "synthetic training images"},
    {"synthetic-test", EX_OPT_SIZE, OFF(synthetic_test), 1, 1e7, NULL, 0, 1, "1024",
     "synthetic test images"},
    {"val", EX_OPT_SIZE, OFF(val), 0, 1e7, NULL, 0, 1, NULL,
     "hold out the last N training images: each epoch is evaluated on them, the test set "
     "only once at the end"},
    /* output */
    {.name = "output", .type = EX_OPT_SHARED, .offset = OFF(run)},
    {.name = "model-files", .type = EX_OPT_SHARED, .offset = OFF(run)},
    {"report-at", EX_OPT_STRING, OFF(report_at), 0, 0, "LIST", 0, 0, "0.9,0.925",
     "accuracies: print when each was first reached (time to accuracy; default 0.9,0.925)"},
    {"plot", EX_OPT_STRING, OFF(run.plot_path), 0, 0, NULL, 0, 0, NULL,
     "render loss, accuracy and entropy curves to this PNG (gnuplot)"},
    {.name = "collapse", .type = EX_OPT_SHARED, .offset = OFF(run)},
};

/* What the rows do not say: the model's defaults, flips by dataset (after
 * parsing), a checkpoint every 500 steps. */
static void defaults(void *opts)
{
    vit_options *o = opts;
    o->model = vit_config_default();
    o->augment = -1;
    o->tta_flip = -1;
    o->run.checkpoint_every = 500;
}

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

/* After the rows: flips by dataset, the stem, the checks that span
 * options. */
static ex_code check(void *opts, ex_error *err)
{
    vit_options *o = opts;
    /* Flips unless asked otherwise where a mirror keeps the class. */
    if (o->augment < 0)
        o->augment = vit_flips_keep_class(o->dataset);
    if (o->tta_flip < 0)
        o->tta_flip = vit_flips_keep_class(o->dataset);
    if (vit_stem_parse(o->stem, &o->model.stem_layers, o->model.stem_channels,
                       o->model.stem_strides) != 0)
        return ex_fail(err, EX_USAGE,
                       "--stem %s: give 0, or up to %d channel counts from 1 to 1024, each with "
                       "an optional stride from 1 to %d, e.g. 16,32/2",
                       o->stem, VIT_STEM_MAX_LAYERS, VIT_STEM_MAX_STRIDE);
    /* The stem as parsed, so that "32, 32" and "32,32" are the same run. */
    vit_stem_format(o->model.stem_layers, o->model.stem_channels, o->model.stem_strides,
                    o->stem_text, sizeof(o->stem_text));
    o->stem = o->stem_text;
    const ex_code common = ex_train_options_check(&o->run, o->model.dim, o->model.heads, err);
    if (common != EX_OK)
        return common;
    const ex_code files = ex_model_files_check(&o->run, err);
    if (files != EX_OK)
        return files;
    if ((o->dataset == VIT_DATA_MNIST || o->dataset == VIT_DATA_CIFAR10) && !o->data_dir)
        return ex_fail(err, EX_USAGE, "--dataset %s needs --data-dir (%s)",
                       vit_dataset_name(o->dataset),
                       o->dataset == VIT_DATA_MNIST ? "the folder of the four IDX files"
                                                    : "the CIFAR-10 binary version's folder");
    return EX_OK;
}

const ex_opt_table vit_options_table = {
    "Trains a ViT-lite with sigmaReparam on Fashion-MNIST (by default) and watches the\n"
    "entropy of every attention head.\n",
    k_specs,
    sizeof(k_specs) / sizeof(k_specs[0]),
    sizeof(vit_options),
    defaults,
    check};
