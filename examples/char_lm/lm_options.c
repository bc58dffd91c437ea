/* char-lm-train's options: one table of flags for the common parser. */
#include "lm_options.h"

#define OFF(field) offsetof(lm_options, field)
#define ARCHS "sigma|sigma-preln|preln|postln|sigma-postln"
_Static_assert(sizeof(lm_arch) == sizeof(int) && sizeof(lm_positions) == sizeof(int) &&
                   sizeof(srp_gamma_init) == sizeof(int) && sizeof(srp_qkv_sigma) == sizeof(int),
               "the choices' enums are stored as ints");

/* The defaults: the recipe measured best for sigmaReparam without
 * LayerNorm on 2 cores (docs/char-lm-recipe.md): the stream at unit scale
 * (embeddings at std 1, weights at 4x the usual init, gamma0 = sigma(W0)),
 * AdamW at a high rate (sigmaReparam turns W rather than growing it), weight
 * decay 0.1, 100 warmup steps, cosine decay. The LayerNorm baselines train
 * best with their own flags (experiments/lm-compare.sh has each arm's).
 *
 * Rows: name, type, field, lo, hi, choices, flag value, trajectory,
 * default, help. */
static const ex_opt_spec k_specs[] = {
    /* model */
    {"arch", EX_OPT_CHOICE, OFF(model.arch), 0, 0, ARCHS, 0, 1, NULL,
     "sigmaReparam without LayerNorm, with pre-LN; plain pre-LN, post-LN; sigmaReparam + post-LN"},
    {"context", EX_OPT_SIZE, OFF(model.context), 2, 4096, NULL, 0, 1, NULL,
     "bytes of context (the sequence length)"},
    {.name = "dim", .type = EX_OPT_SHARED, .offset = OFF(model.dim)},
    {.name = "depth", .type = EX_OPT_SHARED, .offset = OFF(model.depth)},
    {.name = "heads", .type = EX_OPT_SHARED, .offset = OFF(model.heads)},
    {.name = "mlp-dim", .type = EX_OPT_SHARED, .offset = OFF(model.mlp_dim)},
    {"positions", EX_OPT_CHOICE, OFF(model.positions), 0, 0, "learned|fixed", 0, 1, NULL,
     "learned position embeddings or fixed sinusoids"},
    {"tied-head", EX_OPT_FLAG, OFF(model.tied_head), 0, 0, NULL, 1, 1, NULL,
     "the output head is the token embedding transposed"},
    {"untied-head", EX_OPT_FLAG, OFF(model.tied_head), 0, 0, NULL, 0, 1, NULL,
     "the output head is its own linear (default)"},
    {.name = "gamma-init", .type = EX_OPT_SHARED, .offset = OFF(model.gamma_init)},
    {.name = "qkv-sigma", .type = EX_OPT_SHARED, .offset = OFF(model.qkv_sigma)},
    {"init-gain", EX_OPT_FLOAT, OFF(model.init_gain), 1e-4, 100, NULL, 0, 1, "4",
     "linear weights ~ truncated N(0, (0.02 gain)^2)"},
    {"embed-std", EX_OPT_FLOAT, OFF(model.embed_std), 1e-6, 100, NULL, 0, 1, "1",
     "std of the token and position embeddings at init (and the fixed positions' scale)"},
    {.name = "regularizers", .type = EX_OPT_SHARED, .offset = OFF(run)},
    /* optimization */
    {.name = "optimizer", .type = EX_OPT_SHARED, .offset = OFF(optim.optimizer), .def = "adamw"},
    {.name = "lr", .type = EX_OPT_SHARED, .offset = OFF(optim.lr), .def = "0.016"},
    {.name = "momentum", .type = EX_OPT_SHARED, .offset = OFF(optim.momentum)},
    {"beta2", EX_OPT_FLOAT, OFF(optim.beta2), 0, 0.99999, NULL, 0, 1, "0.99", "AdamW's beta2"},
    {"weight-decay", EX_OPT_FLOAT, OFF(optim.weight_decay), 0, 10, NULL, 0, 1, "0.1",
     "weight decay (matrices only; decoupled for AdamW)"},
    {.name = "gamma-lr-mult", .type = EX_OPT_SHARED, .offset = OFF(optim.gamma_lr_mult)},
    {"embed-lr-mult", EX_OPT_FLOAT, OFF(optim.embed_lr_mult), 0, 1e4, NULL, 0, 1, "1",
     "lr multiplier of the embeddings and biases"},
    {.name = "schedule", .type = EX_OPT_SHARED, .offset = OFF(optim.schedule)},
    {.name = "warmup", .type = EX_OPT_SHARED, .offset = OFF(optim.warmup_steps), .def = "100"},
    {.name = "min-lr", .type = EX_OPT_SHARED, .offset = OFF(optim.min_lr)},
    {.name = "clip", .type = EX_OPT_SHARED, .offset = OFF(run.clip), .def = "1"},
    /* run */
    {"batch", EX_OPT_SIZE, OFF(run.batch), 1, 65536, NULL, 0, 1, "32", "sequences per step"},
    {"minutes", EX_OPT_FLOAT, OFF(optim.minutes), 0, 1e6, NULL, 0, 0, "8",
     "wall-clock budget of the training, evaluations included (0: no limit; see --steps)"},
    {"steps", EX_OPT_U64, OFF(optim.steps), 0, 1e12, NULL, 0, 1, NULL,
     "training steps; 0: as many as --minutes allows (the schedule's length is then estimated "
     "from the first steps' speed)"},
    {.name = "threads", .type = EX_OPT_SHARED, .offset = OFF(run.threads)},
    {.name = "precision", .type = EX_OPT_SHARED, .offset = OFF(run.precision)},
    {.name = "seed", .type = EX_OPT_SHARED, .offset = OFF(run.seed)},
    {"text", EX_OPT_STRING, OFF(text_path), 0, 0, NULL, 0, 1, NULL,
     "train on this file (plain or .gz; paragraphs are its documents) instead of the default "
     "corpus (fortunes and the Jargon File)"},
    {"eval-every", EX_OPT_U64, OFF(eval_every), 1, 1e12, NULL, 0, 0, "500",
     "steps between validation evaluations"},
    {"eval-windows", EX_OPT_SIZE, OFF(eval_windows), 0, 1e9, NULL, 0, 0, "256",
     "context windows in each periodic evaluation (0: the whole validation text; the final "
     "one always uses it all)"},
    {"ema", EX_OPT_FLOAT, OFF(ema), 0, 0.99999, NULL, 0, EX_OPT_UNLESS_DEFAULT, "0",
     "evaluate (and --export) a moving average of the weights with this decay, sigma "
     "recomputed (0: off)"},
    /* output */
    {.name = "output", .type = EX_OPT_SHARED, .offset = OFF(run)},
    {.name = "model-files", .type = EX_OPT_SHARED, .offset = OFF(run)},
    {"plot", EX_OPT_STRING, OFF(run.plot_path), 0, 0, NULL, 0, 0, NULL,
     "render loss, bits per character and entropy curves to this PNG (gnuplot)"},
    /* sampling */
    {"sample", EX_OPT_SIZE, OFF(sample), 0, 1e7, NULL, 0, 0, NULL,
     "after training, print this many generated bytes (with --ema, from the weight average; "
     "cached decoding: once the context is full, each byte sees the last context/2 to "
     "context bytes)"},
    {"temperature", EX_OPT_FLOAT, OFF(temperature), 1e-3, 100, NULL, 0, 0, "0.8",
     "sampling temperature"},
    {"prompt", EX_OPT_STRING, OFF(prompt), 0, 0, "TEXT", 0, 0, NULL, "text the sample continues"},
    {"generate", EX_OPT_STRING, OFF(generate_path), 0, 0, NULL, 0, 0, NULL,
     "no training: load the model from this checkpoint (its own configuration; its weights, "
     "not a --ema average) and print --sample bytes"},
    /* collapse watch */
    {.name = "collapse", .type = EX_OPT_SHARED, .offset = OFF(run)},
};

/* What the rows do not say: the model's defaults, a checkpoint every 1000
 * steps. */
static void defaults(void *opts)
{
    lm_options *o = opts;
    o->model = lm_config_default();
    o->run.checkpoint_every = 1000;
}

/* After the rows: the model's batch and seed, the checks that span
 * options. */
static ex_code check(void *opts, ex_error *err)
{
    lm_options *o = opts;
    o->model.max_batch = o->run.batch;
    o->model.seed = o->run.seed;
    o->model.reg = o->run.reg;
    const ex_code common = ex_train_options_check(&o->run, o->model.dim, o->model.heads, err);
    if (common != EX_OK)
        return common;
    if (o->generate_path && o->sample == 0)
        return ex_fail(err, EX_USAGE, "--generate needs --sample N (how many bytes)");
    const ex_code files = ex_model_files_check(&o->run, err);
    if (files != EX_OK)
        return files;
    if (!o->generate_path && !o->run.plot_only && !o->run.eval_only && o->optim.steps == 0 &&
        !(o->optim.minutes > 0.0f))
        return ex_fail(err, EX_USAGE, "give --steps N or --minutes M (or both)");
    return EX_OK;
}

const ex_opt_table lm_options_table = {
    "Trains a character-level (byte-level) causal language model with sigmaReparam on the\n"
    "text of Debian's fortunes and jargon-text packages (or --text FILE), watching every\n"
    "attention head's entropy; prints validation bits per character and a sample.\n",
    k_specs,
    sizeof(k_specs) / sizeof(k_specs[0]),
    sizeof(lm_options),
    defaults,
    check};
