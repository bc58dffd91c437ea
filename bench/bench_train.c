/* One training step of the ViT-lite: forward, cross-entropy, backward, SGD
 * update. The default is the benchmark configuration (28x28x1, patch 4 ->
 * 50 tokens, D 128, depth 6, 4 heads, MLP 256, batch 128, 10 classes,
 * sigmaReparam, no LayerNorm); the model flags bench any other, such as the
 * trainer's default (--patch 7 --stem 48/2,96/2,128/2,128 --qkv-sigma
 * separate). Reports the median step time, images/s, the model's GFLOP/s
 * and its share of the best sgemm peak measured in the same run (MFU).
 * --breakdown adds where the step's time goes (the library's profiler;
 * "model glue" is the rest: the example's own loops).
 * bench/torch_train_step.py times the same model in PyTorch;
 * experiments/compare-pytorch.sh runs the two in turns. */
#define SRP_UNSTABLE_API /* the library's profile (profile.h), for --breakdown */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "common/progress.h"
#include "vit_model.h"
#include "sigmareparam.h"

typedef struct {
    vit_config model;
    int breakdown;
} train_flags;

/* --qkv-sigma's values, the trainer's spellings, indexed by srp_qkv_sigma */
static const char *const qkv_sigma_names[3] = {"fused", "qk-v", "separate"};

static int parse_size(const char *v, size_t lo, size_t hi, size_t *out)
{
    char *end = NULL;
    const unsigned long long x = v ? strtoull(v, &end, 10) : 0;
    if (!v || *v == '-' || !end || *end != '\0' || x < lo || x > hi)
        return 0;
    *out = (size_t)x;
    return 1;
}

static int on_flag(void *ctx, const char *flag, const char *next)
{
    train_flags *f = ctx;
    struct {
        const char *name;
        size_t *field, lo, hi;
    } sizes[] = {
        {"--patch", &f->model.patch, 1, 28},        {"--dim", &f->model.dim, 4, 4096},
        {"--depth", &f->model.depth, 1, 64},        {"--heads", &f->model.heads, 1, 64},
        {"--mlp-dim", &f->model.mlp_dim, 1, 16384}, {"--batch", &f->model.max_batch, 1, 65536}};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        if (strcmp(flag, sizes[i].name) == 0)
            return parse_size(next, sizes[i].lo, sizes[i].hi, sizes[i].field) ? 2 : 0;
    if (strcmp(flag, "--stem") == 0) { /* "32,32": the stem's channels (and strides: 64/2) */
        const int ok = next && vit_stem_parse(next, &f->model.stem_layers, f->model.stem_channels,
                                              f->model.stem_strides) == 0;
        return ok ? 2 : 0;
    }
    if (strcmp(flag, "--qkv-sigma") == 0) {
        for (size_t i = 0; next && i < 3; i++)
            if (strcmp(next, qkv_sigma_names[i]) == 0) {
                f->model.qkv_sigma = (srp_qkv_sigma)i;
                return 2;
            }
        return 0;
    }
    if (strcmp(flag, "--no-sn") == 0) {
        f->model.sigma_reparam = 0;
        return 1;
    }
    if (strcmp(flag, "--breakdown") == 0) {
        f->breakdown = 1;
        return 1;
    }
    return 0;
}

typedef struct {
    vit_model *model;
    srp_optim *optim;
    const float *images;
    const int *labels;
    float *dlogits;
    size_t batch, classes;
} step_case;

static void run_step(void *ctx)
{
    step_case *c = ctx;
    const float *logits;
    float loss;
    if (vit_forward(c->model, c->images, c->batch, SRP_TRAIN, &logits) != SRP_OK ||
        srp_cross_entropy_forward(logits, c->labels, c->batch, c->classes, 0.0f, &loss) != SRP_OK ||
        srp_cross_entropy_backward(logits, c->labels, c->batch, c->classes, 0.0f, c->dlogits) !=
            SRP_OK ||
        vit_backward(c->model, c->dlogits) != SRP_OK || srp_optim_step(c->optim, 0.01f) != SRP_OK) {
        fprintf(stderr, "bench_train: step failed\n");
        exit(1);
    }
    srp_optim_zero_grad(c->optim);
}

/* Multiply-adds of one step, times 2: three products per linear and per
 * stem convolution (forward, dx, dW; the first layer has no dx, but counts
 * it as the usual convention does) and the attention core's six products. */
static double step_flops(const vit_config *c, size_t tokens)
{
    const double n = (double)c->max_batch * (double)tokens, D = (double)c->dim;
    const double patches = (double)c->max_batch * (double)(tokens - 1);
    const double per_block = 3.0 * 2.0 * n * (3 * D * D + D * D + 2 * D * (double)c->mlp_dim) +
                             12.0 * (double)c->max_batch * (double)tokens * tokens * D;
    double stem = 0.0;
    size_t in = c->channels, side = c->image_size; /* the embedding's input channels */
    for (size_t l = 0; l < c->stem_layers; l++) {
        side = vit_stem_out_side(side, c->stem_strides[l]); /* of this layer's output */
        const double pixels = (double)c->max_batch * (double)(side * side);
        stem += 3.0 * 2.0 * pixels * 9.0 * (double)in * (double)c->stem_channels[l];
        in = c->stem_channels[l];
    }
    const size_t q = vit_embed_patch(c); /* the embedding's patch side on its map */
    const double embed = 3.0 * 2.0 * patches * D * (double)(in * q * q);
    return per_block * (double)c->depth + stem + embed +
           3.0 * 2.0 * (double)c->max_batch * D * c->classes;
}

/* Runs `steps` profiled steps and prints each part's share of them. */
static void print_breakdown(const bench_options *o, step_case *c, int threads, int steps)
{
    srp_profile_reset();
    srp_profile_enable(1);
    const double t0 = bench_now_seconds();
    for (int i = 0; i < steps; i++)
        run_step(c);
    const double total = bench_now_seconds() - t0;
    srp_profile_enable(0);
    if (!o->json) {
        ex_print_profile(stdout, total, (uint64_t)steps, "model glue");
        return;
    }
    double timed = 0.0;
    for (int p = 0; p <= SRP_PROF_COUNT; p++) {
        const int glue = p == SRP_PROF_COUNT;
        const double sec = glue ? total - timed : srp_profile_seconds((srp_profile_part)p);
        timed += glue ? 0.0 : sec;
        printf("{\"bench\":\"train_step_part\",\"threads\":%d,\"part\":\"%s\",\"ms_per_step\":"
               "%.3f,\"share\":%.4f}\n",
               threads, glue ? "model glue" : srp_profile_name((srp_profile_part)p),
               sec * 1e3 / steps, sec / total);
    }
}

int main(int argc, char **argv)
{
    train_flags f = {vit_config_default(), 0};
    bench_options o = bench_parse_args(
        argc, argv,
        "  --patch N, --dim N, --depth N, --heads N, --mlp-dim N, --batch N, --stem LIST,\n"
        "  --qkv-sigma fused|qk-v|separate, --no-sn\n"
        "                the model (default: the benchmark configuration, patch 4, no\n"
        "                stem, one sigma for the fused qkv; the trainer's model is --patch 7\n"
        "                --stem 48/2,96/2,128/2,128 --qkv-sigma separate)\n"
        "  --breakdown   also print where the step's time goes\n",
        on_flag, &f);
    vit_config cfg = f.model;
    if (vit_embed_patch(&cfg) == 0 || cfg.dim % cfg.heads != 0) {
        fprintf(stderr, "bench_train: --patch must divide 28, its grid the stem's last map, and "
                        "--heads must divide --dim\n");
        return 2;
    }
    int threads[2];
    const int nthreads = bench_thread_list(&o, threads);
    bench_print_setup(&o, "train_step");
    const size_t B = cfg.max_batch, image = cfg.channels * cfg.image_size * cfg.image_size;
    float *images = bench_alloc(sizeof(float) * B * image);
    float *dlogits = bench_alloc(sizeof(float) * B * cfg.classes);
    int *labels = bench_alloc(sizeof(int) * B);
    bench_fill(images, B * image, 7);
    for (size_t i = 0; i < B; i++)
        labels[i] = (int)(i % cfg.classes);
    if (!o.json)
        printf("patch %zu, dim %zu, depth %zu, heads %zu, mlp %zu, batch %zu, stem of %zu "
               "layers, %s%s\n",
               cfg.patch, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_dim, B, cfg.stem_layers,
               cfg.sigma_reparam ? "sigmaReparam, qkv sigma " : "plain linears",
               cfg.sigma_reparam ? qkv_sigma_names[cfg.qkv_sigma] : "");
    if (!o.json)
        printf("%-7s %5s | %10s %9s %9s %8s | %9s %9s\n", "threads", "batch", "step_ms", "img/s",
               "GFLOP/s", "MFU", "peak", "best_peak");
    for (int t = 0; t < nthreads; t++) {
        const bench_peaks peaks = bench_measure_peaks(threads[t]);
        vit_model *model = NULL;
        srp_optim *optim = NULL;
        if (vit_create(&model, &cfg) != SRP_OK) {
            fprintf(stderr, "bench_train: model create failed\n");
            return 1;
        }
        srp_param_list *params = NULL;
        srp_optim_config oc = srp_optim_config_default(SRP_OPTIM_SGD);
        if (srp_param_list_create(&params) != SRP_OK || vit_model_params(model, params) != SRP_OK ||
            srp_optim_create(&optim, srp_param_list_entries(params), srp_param_list_count(params),
                             &oc) != SRP_OK) {
            fprintf(stderr, "bench_train: optimizer create failed\n");
            return 1;
        }
        step_case c = {model, optim, images, labels, dlogits, B, cfg.classes};
        const double sec = bench_time(run_step, &c, o.repeats ? o.repeats : 15);
        const double gf = step_flops(&cfg, vit_tokens(model)) / sec * 1e-9;
        if (o.json)
            printf("{\"bench\":\"train_step\",\"threads\":%d,\"batch\":%zu,\"patch\":%zu,"
                   "\"tokens\":%zu,\"dim\":%zu,\"depth\":%zu,"
                   "\"sigma_reparam\":%d,\"qkv_sigma\":\"%s\",\"step_ms\":%.3f,"
                   "\"images_per_s\":%.1f,\"gflops\":%.2f,\"sgemm_peak_gflops\":%.2f,"
                   "\"best_sgemm_peak_gflops\":%.2f,\"mfu\":%.4f}\n",
                   threads[t], B, cfg.patch, vit_tokens(model), cfg.dim, cfg.depth,
                   cfg.sigma_reparam, qkv_sigma_names[cfg.qkv_sigma], sec * 1e3, (double)B / sec,
                   gf, peaks.active, peaks.best, gf / peaks.best);
        else
            printf("%-7d %5zu | %10.2f %9.1f %9.1f %7.1f%% | %9.1f %9.1f\n", threads[t], B,
                   sec * 1e3, (double)B / sec, gf, 100.0 * gf / peaks.best, peaks.active,
                   peaks.best);
        if (f.breakdown)
            print_breakdown(&o, &c, threads[t], o.repeats ? o.repeats : 15);
        srp_optim_destroy(optim);
        vit_destroy(model);
        srp_param_list_destroy(params);
    }
    free(images);
    free(dlogits);
    free(labels);
    return 0;
}
