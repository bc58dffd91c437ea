/* mt-train's options: one table of flags for the common parser. */
#include "mt_options.h"

#include "corpus.h"

#define OFF(field) offsetof(mt_options, field)
#define ARCHS "sigma-postln|sigma|postln|preln"
_Static_assert(sizeof(mt_arch) == sizeof(int) && sizeof(srp_gamma_init) == sizeof(int) &&
                   sizeof(srp_qkv_sigma) == sizeof(int) && sizeof(mt_tie) == sizeof(int),
               "the choices' enums are stored as ints");

/* The defaults: the recipe chosen on the validation split for a run of
 * scripts/mt.sh (docs/translation.md). Rows: name, type, field, lo, hi,
 * choices, flag value, trajectory, default, help. */
static const ex_opt_spec k_specs[] = {
    /* model */
    {"arch", EX_OPT_CHOICE, OFF(model.arch), 0, 0, ARCHS, 0, 1, "preln",
     "sigmaReparam with post-LN or without LayerNorm; plain post-LN (give it --warmup), pre-LN"},
    {"enc-layers", EX_OPT_SIZE, OFF(model.enc_layers), 1, 64, NULL, 0, 1, "2", "encoder blocks"},
    {"dec-layers", EX_OPT_SIZE, OFF(model.dec_layers), 1, 64, NULL, 0, 1, "2", "decoder blocks"},
    {.name = "dim", .type = EX_OPT_SHARED, .offset = OFF(model.dim), .def = "128"},
    {.name = "heads", .type = EX_OPT_SHARED, .offset = OFF(model.heads), .def = "4"},
    {.name = "mlp-dim", .type = EX_OPT_SHARED, .offset = OFF(model.mlp_dim), .def = "512"},
    {.name = "gamma-init", .type = EX_OPT_SHARED, .offset = OFF(model.gamma_init)},
    {.name = "qkv-sigma", .type = EX_OPT_SHARED, .offset = OFF(model.qkv_sigma)},
    {"init-gain", EX_OPT_FLOAT, OFF(model.init_gain), 1e-4, 100, NULL, 0, 1, "1",
     "linear weights ~ truncated N(0, (0.02 gain)^2)"},
    {"embed-std", EX_OPT_FLOAT, OFF(model.embed_std), 1e-6, 100, NULL, 0, 1, "1",
     "std of the token and position embeddings at init"},
    {"tie-embeddings", EX_OPT_CHOICE, OFF(model.tie), 0, 0, "none|enc-dec|all", 0, 1, "none",
     "share one byte table between the encoder and decoder embeddings (enc-dec), and the head "
     "too (all: its transpose, scaled as in the original Transformer)"},
    {"max-bytes", EX_OPT_SIZE, OFF(max_bytes), 2, 1024, NULL, 0, 1, "128",
     "the corpus keeps the pairs whose two sides fit this many bytes (the model's length "
     "caps; the splits and the copy baseline of docs/translation-corpus.md are at 128)"},
    {.name = "regularizers", .type = EX_OPT_SHARED, .offset = OFF(run)},
    /* optimization */
    {.name = "optimizer", .type = EX_OPT_SHARED, .offset = OFF(optim.optimizer), .def = "adamw"},
    {.name = "lr", .type = EX_OPT_SHARED, .offset = OFF(optim.lr), .def = "0.002"},
    {.name = "momentum", .type = EX_OPT_SHARED, .offset = OFF(optim.momentum)},
    {"beta2", EX_OPT_FLOAT, OFF(optim.beta2), 0, 0.99999, NULL, 0, 1, "0.98", "AdamW's beta2"},
    {"weight-decay", EX_OPT_FLOAT, OFF(optim.weight_decay), 0, 10, NULL, 0, 1, "0.01",
     "weight decay (matrices only; decoupled for AdamW)"},
    {.name = "gamma-lr-mult", .type = EX_OPT_SHARED, .offset = OFF(optim.gamma_lr_mult)},
    {"embed-lr-mult", EX_OPT_FLOAT, OFF(optim.embed_lr_mult), 0, 1e4, NULL, 0, 1, "1",
     "lr multiplier of the embeddings and biases"},
    {.name = "schedule", .type = EX_OPT_SHARED, .offset = OFF(optim.schedule)},
    {.name = "warmup", .type = EX_OPT_SHARED, .offset = OFF(optim.warmup_steps), .def = "100"},
    {.name = "min-lr", .type = EX_OPT_SHARED, .offset = OFF(optim.min_lr)},
    {.name = "clip", .type = EX_OPT_SHARED, .offset = OFF(run.clip), .def = "1"},
    {"label-smoothing", EX_OPT_FLOAT, OFF(label_smoothing), 0, 1, NULL, 0, 1, "0.1",
     "label smoothing of the training loss"},
    /* data and run */
    {"lang", EX_OPT_STRING, OFF(lang), 0, 0, "LANG", 0, 1, "de",
     "the target language: a folder of the locale directory (de, fr, pt_BR, ...)"},
    {"locale-dir", EX_OPT_STRING, OFF(locale_dir), 0, 0, "DIR", 0, 1, MT_LOCALE_DIR,
     "where the catalogs are"},
    {"batch", EX_OPT_SIZE, OFF(run.batch), 1, 65536, NULL, 0, 1, "32", "pairs per step"},
    {"minutes", EX_OPT_FLOAT, OFF(optim.minutes), 0, 1e6, NULL, 0, 0, NULL,
     "wall-clock budget of the training, evaluations included (0: no limit; see --steps)"},
    {"steps", EX_OPT_U64, OFF(optim.steps), 0, 1e12, NULL, 0, 1, NULL,
     "training steps; 0: as many as --minutes allows (the schedule's length is then planned "
     "from the steps' speed)"},
    {.name = "threads", .type = EX_OPT_SHARED, .offset = OFF(run.threads)},
    {.name = "precision", .type = EX_OPT_SHARED, .offset = OFF(run.precision)},
    {.name = "seed", .type = EX_OPT_SHARED, .offset = OFF(run.seed)},
    {"eval-every", EX_OPT_U64, OFF(eval_every), 1, 1e12, NULL, 0, 0, "500",
     "steps between validation cross-entropies"},
    {"eval-pairs", EX_OPT_SIZE, OFF(eval_pairs), 0, 1e9, NULL, 0, 0, "256",
     "validation pairs of each periodic evaluation (0: all; the final one takes them all)"},
    /* output */
    {.name = "output", .type = EX_OPT_SHARED, .offset = OFF(run)},
    {"plot", EX_OPT_STRING, OFF(run.plot_path), 0, 0, NULL, 0, 0, NULL,
     "render loss, bits per byte and entropy curves to this PNG (gnuplot)"},
    /* translation */
    {"chrf", EX_OPT_CHOICE, OFF(chrf), 0, 0, "none|val|test|both", 0, 0, "both",
     "after training, translate these splits and print their chrF2"},
    {"beam", EX_OPT_SIZE, OFF(beam), 1, 64, NULL, 0, 0, "1",
     "translate by beam search with this many hypotheses, length-normalised (1: greedy)"},
    {"show", EX_OPT_SIZE, OFF(show), 0, 1e6, NULL, 0, 0, "5",
     "sample translations printed (of the test split's first pairs)"},
    {"translate", EX_OPT_STRING, OFF(translate), 0, 0, "TEXT", 0, 0, NULL,
     "translate this English text (its first --max-bytes bytes) after training, or with "
     "--init instead of training"},
    {"translate-file", EX_OPT_STRING, OFF(translate_file), 0, 0, NULL, 0, 0, NULL,
     "translate each line of this file, one translation a line"},
    {"init", EX_OPT_STRING, OFF(init_path), 0, 0, NULL, 0, 0, NULL,
     "no training: load the model from this checkpoint (its own configuration) and "
     "--translate"},
    /* collapse watch */
    {.name = "collapse", .type = EX_OPT_SHARED, .offset = OFF(run)},
};

/* What the rows do not say: the model's defaults, a checkpoint every 1000
 * steps. */
static void defaults(void *opts)
{
    mt_options *o = opts;
    o->model = mt_config_default();
    o->run.checkpoint_every = 1000;
}

/* After the rows: the model's sizes, batch and seed, the checks that span
 * options. */
static ex_code check(void *opts, ex_error *err)
{
    mt_options *o = opts;
    o->model.max_batch = o->run.batch;
    o->model.seed = o->run.seed;
    o->model.reg = o->run.reg;
    o->model.max_src = o->max_bytes;
    o->model.max_tgt = o->max_bytes;
    const ex_code common = ex_train_options_check(&o->run, o->model.dim, o->model.heads, err);
    if (common != EX_OK)
        return common;
    if (o->init_path && !o->translate && !o->translate_file)
        return ex_fail(err, EX_USAGE, "--init needs --translate TEXT or --translate-file FILE");
    if (!o->init_path && !o->run.plot_only && o->optim.steps == 0 && !(o->optim.minutes > 0.0f))
        return ex_fail(err, EX_USAGE, "give --steps N or --minutes M (or both)");
    return EX_OK;
}

const ex_opt_table mt_options_table = {
    "Trains a byte-level encoder-decoder with sigmaReparam (or a LayerNorm baseline) to\n"
    "translate the English messages of Debian's gettext catalogs (docs/translation-corpus.md)\n"
    "into German (or --lang), watching every attention head's entropy; prints validation\n"
    "bits per byte, greedy translations' chrF2 next to the copy baseline's, and samples.\n",
    k_specs,
    sizeof(k_specs) / sizeof(k_specs[0]),
    sizeof(mt_options),
    defaults,
    check};
