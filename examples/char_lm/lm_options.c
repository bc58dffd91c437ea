/* char-lm-train's options: one table of flags for the common parser. */
#include "lm_options.h"

#include <string.h>

#define OFF(field) offsetof(lm_options, field)
#define ARCHS "sigma|sigma-preln|preln|postln|sigma-postln"

/* name, type, field, lo, hi, choices, flag value, trajectory, help */
static const ex_opt_spec k_specs[] = {
    /* model */
    {"arch", EX_OPT_CHOICE, OFF(arch), 0, 0, ARCHS, 0, 1,
     "sigmaReparam without LayerNorm, with pre-LN; plain pre-LN, post-LN; sigmaReparam + post-LN"},
    {"context", EX_OPT_SIZE, OFF(model.context), 2, 4096, NULL, 0, 1,
     "bytes of context (the sequence length)"},
    {"dim", EX_OPT_SIZE, OFF(model.dim), 4, 4096, NULL, 0, 1, "model width D"},
    {"depth", EX_OPT_SIZE, OFF(model.depth), 1, 64, NULL, 0, 1, "transformer blocks"},
    {"heads", EX_OPT_SIZE, OFF(model.heads), 1, 64, NULL, 0, 1,
     "attention heads (must divide --dim)"},
    {"mlp-dim", EX_OPT_SIZE, OFF(model.mlp_dim), 1, 16384, NULL, 0, 1, "hidden width of the MLPs"},
    {"positions", EX_OPT_CHOICE, OFF(positions), 0, 0, "learned|fixed", 0, 1,
     "learned position embeddings or fixed sinusoids"},
    {"tied-head", EX_OPT_FLAG, OFF(model.tied_head), 0, 0, NULL, 1, 1,
     "the output head is the token embedding transposed"},
    {"untied-head", EX_OPT_FLAG, OFF(model.tied_head), 0, 0, NULL, 0, 1,
     "the output head is its own linear (default)"},
    {"gamma-init", EX_OPT_CHOICE, OFF(gamma_init), 0, 0, "sigma0|one", 0, 1,
     "gamma0 = sigma(W0) (official PyTorch) or 1 (the paper)"},
    {"qkv-sigma", EX_OPT_CHOICE, OFF(qkv_sigma), 0, 0, "fused|qk-v|separate", 0, 1,
     "one sigma for the fused qkv, q and k sharing one, or q, k, v one each"},
    {"init-gain", EX_OPT_FLOAT, OFF(model.init_gain), 1e-4, 100, NULL, 0, 1,
     "linear weights ~ truncated N(0, (0.02 gain)^2)"},
    {"embed-std", EX_OPT_FLOAT, OFF(model.embed_std), 1e-6, 100, NULL, 0, 1,
     "std of the token and position embeddings at init (and the fixed positions' scale)"},
    /* optimization */
    {"optimizer", EX_OPT_CHOICE, OFF(optimizer), 0, 0, "sgd|lars|adamw", 0, 1, "optimizer"},
    {"lr", EX_OPT_FLOAT, OFF(lr), 0, 1e4, NULL, 0, 1, "peak learning rate"},
    {"momentum", EX_OPT_FLOAT, OFF(momentum), 0, 0.9999, NULL, 0, 1, "SGD/LARS momentum"},
    {"beta2", EX_OPT_FLOAT, OFF(beta2), 0, 0.99999, NULL, 0, 1, "AdamW's beta2"},
    {"weight-decay", EX_OPT_FLOAT, OFF(weight_decay), 0, 10, NULL, 0, 1,
     "weight decay (matrices only; decoupled for AdamW)"},
    {"gamma-lr-mult", EX_OPT_FLOAT, OFF(gamma_lr_mult), 0, 1e4, NULL, 0, 1,
     "lr multiplier of the sigmaReparam gammas"},
    {"embed-lr-mult", EX_OPT_FLOAT, OFF(embed_lr_mult), 0, 1e4, NULL, 0, 1,
     "lr multiplier of the embeddings and biases"},
    {"schedule", EX_OPT_CHOICE, OFF(schedule), 0, 0, "constant|step|cosine", 0, 1,
     "learning-rate schedule"},
    {"warmup", EX_OPT_U64, OFF(warmup_steps), 0, 1e9, NULL, 0, 1, "linear warmup steps (0: none)"},
    {"min-lr", EX_OPT_FLOAT, OFF(min_lr), 0, 1e4, NULL, 0, 1, "final lr of the cosine schedule"},
    {"clip", EX_OPT_FLOAT, OFF(clip), 0, 1e9, NULL, 0, 1,
     "clip the gradient norm to this (0: off)"},
    /* run */
    {"batch", EX_OPT_SIZE, OFF(batch), 1, 65536, NULL, 0, 1, "sequences per step"},
    {"minutes", EX_OPT_FLOAT, OFF(minutes), 0, 1e6, NULL, 0, 0,
     "wall-clock budget of the training, evaluations included (0: no limit; see --steps)"},
    {"steps", EX_OPT_U64, OFF(steps), 0, 1e12, NULL, 0, 1,
     "training steps; 0: as many as --minutes allows (the schedule's length is then estimated "
     "from the first steps' speed)"},
    {"threads", EX_OPT_SIZE, OFF(threads), 0, 1024, NULL, 0, 0, "threads, 0 = one per CPU"},
    {"seed", EX_OPT_U64, OFF(seed), 0, 1.8e19, NULL, 0, 1,
     "seed of the weights and the data order"},
    {"text", EX_OPT_STRING, OFF(text_path), 0, 0, NULL, 0, 1,
     "train on this file (plain or .gz; paragraphs are its documents) instead of the default "
     "corpus (fortunes and the Jargon File)"},
    {"eval-every", EX_OPT_U64, OFF(eval_every), 1, 1e12, NULL, 0, 0,
     "steps between validation evaluations"},
    {"eval-windows", EX_OPT_SIZE, OFF(eval_windows), 0, 1e9, NULL, 0, 0,
     "context windows in each periodic evaluation (0: the whole validation text; the final "
     "one always uses it all)"},
    {"stop-after-steps", EX_OPT_U64, OFF(stop_after_steps), 1, 1e15, NULL, 0, 0,
     "stop (with a checkpoint) after this many steps in all; resume later"},
    /* output */
    {"metrics", EX_OPT_STRING, OFF(metrics_path), 0, 0, NULL, 0, 0,
     "write metrics as JSON lines here"},
    {"log-every", EX_OPT_U64, OFF(log_every), 1, 1e9, NULL, 0, 0, "steps between metrics lines"},
    {"bound-every", EX_OPT_U64, OFF(bound_every), 0, 1e9, NULL, 0, 0,
     "steps between entropy bounds in the metrics (0: never)"},
    {"checkpoint", EX_OPT_STRING, OFF(checkpoint_path), 0, 0, NULL, 0, 0, "checkpoint file"},
    {"checkpoint-every", EX_OPT_U64, OFF(checkpoint_every), 1, 1e9, NULL, 0, 0,
     "steps between checkpoints (also saved at the end)"},
    {"resume", EX_OPT_STRING, OFF(resume_path), 0, 0, NULL, 0, 0, "continue from this checkpoint"},
    {"profile", EX_OPT_FLAG, OFF(profile), 0, 0, NULL, 1, 0,
     "at the end, print where the training time went"},
    {"plot", EX_OPT_STRING, OFF(plot_path), 0, 0, NULL, 0, 0,
     "render loss, bits per character and entropy curves to this PNG (gnuplot)"},
    {"plot-only", EX_OPT_STRING, OFF(plot_only), 0, 0, NULL, 0, 0,
     "plot an existing metrics file to --plot, without training"},
    /* sampling */
    {"sample", EX_OPT_SIZE, OFF(sample), 0, 1e7, NULL, 0, 0,
     "after training, print this many generated bytes"},
    {"temperature", EX_OPT_FLOAT, OFF(temperature), 1e-3, 100, NULL, 0, 0,
     "sampling temperature"},
    {"prompt", EX_OPT_STRING, OFF(prompt), 0, 0, "TEXT", 0, 0, "text the sample continues"},
    {"generate", EX_OPT_STRING, OFF(generate_path), 0, 0, NULL, 0, 0,
     "no training: load the model from this checkpoint (its own configuration) and print "
     "--sample bytes"},
    /* collapse watch */
    {"collapse-fraction", EX_OPT_FLOAT, OFF(collapse_fraction), 0, 1, NULL, 0, 1,
     "warn when a head's mean entropy falls below this fraction of uniform attention's"},
    {"collapse-drop", EX_OPT_FLOAT, OFF(collapse_drop), 0, 1, NULL, 0, 1,
     "warn when it drops by more than this fraction ..."},
    {"collapse-window", EX_OPT_U64, OFF(collapse_window), 1, 1e9, NULL, 0, 1,
     "... within this many steps"},
    {"stop-on-collapse", EX_OPT_FLAG, OFF(stop_on_collapse), 0, 0, NULL, 1, 1,
     "stop training at a collapse warning (exit code 4)"},
};

static const ex_opt_table k_table = {
    "Trains a character-level (byte-level) causal language model with sigmaReparam on the\n"
    "text of Debian's fortunes and jargon-text packages (or --text FILE), watching every\n"
    "attention head's entropy; prints validation bits per character and a sample.\n",
    k_specs, sizeof(k_specs) / sizeof(k_specs[0])};

/* The defaults: the recipe measured best for sigmaReparam without
 * LayerNorm on 2 cores (docs/char-lm-recipe.md): the stream at unit scale
 * (embeddings at std 1, weights at 4x the usual init, gamma0 = sigma(W0)),
 * AdamW at a high rate (sigmaReparam turns W rather than growing it), weight
 * decay 0.1, 100 warmup steps, cosine decay. The LayerNorm baselines train
 * best with their own flags (scripts/lm-compare.sh has each arm's). */
void lm_options_default(lm_options *o)
{
    memset(o, 0, sizeof(*o));
    o->model = lm_config_default();
    o->model.embed_std = 1.0f;
    o->model.init_gain = 4.0f;
    o->arch = LM_ARCH_SIGMA;
    o->positions = LM_POS_LEARNED;
    o->gamma_init = SRP_GAMMA_INIT_SIGMA0;
    o->qkv_sigma = SRP_QKV_SIGMA_FUSED;
    o->optimizer = SRP_OPTIM_ADAMW;
    o->lr = 0.016f;
    o->momentum = 0.9f;
    o->beta2 = 0.99f;
    o->weight_decay = 0.1f;
    o->gamma_lr_mult = 1.0f;
    o->embed_lr_mult = 1.0f;
    o->schedule = SRP_LR_COSINE;
    o->warmup_steps = 100;
    o->min_lr = 0.0f;
    o->clip = 1.0f;
    o->batch = 32;
    o->minutes = 8.0f;
    o->steps = 0;
    o->eval_every = 500;
    o->eval_windows = 256;
    o->log_every = 10;
    o->bound_every = 100;
    o->checkpoint_every = 1000;
    o->temperature = 0.8f;
    o->collapse_fraction = 0.1f;
    o->collapse_drop = 0.8f;
    o->collapse_window = 200;
}

void lm_options_usage(const char *prog, FILE *to)
{
    lm_options d;
    lm_options_default(&d);
    ex_options_usage(&k_table, &d, prog, to);
}

ex_code lm_options_parse(lm_options *o, int argc, char **argv, ex_error *err)
{
    lm_options defaults;
    lm_options_default(&defaults);
    const ex_code code = ex_options_parse(&k_table, o, &defaults, argc, argv, err);
    if (code != EX_OK)
        return code;
    o->model.arch = (lm_arch)o->arch;
    o->model.positions = (lm_positions)o->positions;
    o->model.gamma_init = (srp_gamma_init)o->gamma_init;
    o->model.qkv_sigma = (srp_qkv_sigma)o->qkv_sigma;
    o->model.max_batch = o->batch;
    o->model.seed = o->seed;
    if (o->model.dim % o->model.heads != 0)
        return ex_fail(err, EX_USAGE, "--heads %zu must divide --dim %zu", o->model.heads,
                       o->model.dim);
    if (o->plot_only && !o->plot_path)
        return ex_fail(err, EX_USAGE, "--plot-only needs --plot FILE.png");
    if (o->generate_path && o->sample == 0)
        return ex_fail(err, EX_USAGE, "--generate needs --sample N (how many bytes)");
    if (!o->generate_path && !o->plot_only && o->steps == 0 && !(o->minutes > 0.0f))
        return ex_fail(err, EX_USAGE, "give --steps N or --minutes M (or both)");
    return EX_OK;
}

void lm_options_fingerprint(const lm_options *o, char *buf, size_t len)
{
    ex_options_fingerprint(&k_table, o, buf, len);
}
