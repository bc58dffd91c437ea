/* One training step of the ViT-lite in the benchmark configuration (28x28x1,
 * patch 4 -> 50 tokens, D 128, depth 6, 4 heads, MLP 256, batch 128, 10
 * classes, sigmaReparam, no LayerNorm): forward, cross-entropy, backward,
 * SGD update. Reports the median step time, images/s and GFLOP/s next to
 * the sgemm peak of the same run. bench/torch_train_step.py times the same
 * model in PyTorch; scripts/compare-pytorch.sh runs the two in turns. */
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"
#include "model.h"
#include "sigmareparam.h"

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
    if (vit_forward(c->model, c->images, c->batch, 1, &logits) != SRP_OK ||
        srp_cross_entropy_forward(logits, c->labels, c->batch, c->classes, 0.0f, &loss) != SRP_OK ||
        srp_cross_entropy_backward(logits, c->labels, c->batch, c->classes, 0.0f, c->dlogits) !=
            SRP_OK ||
        vit_backward(c->model, c->dlogits) != SRP_OK || srp_optim_step(c->optim, 0.01f) != SRP_OK) {
        fprintf(stderr, "bench_train: step failed\n");
        exit(1);
    }
    srp_optim_zero_grad(c->optim);
}

/* Multiply-adds of one step, times 2: three GEMMs per linear (forward, dx,
 * dW) and the attention core's six products. */
static double step_flops(const vit_config *c, size_t tokens)
{
    const double n = (double)c->max_batch * (double)tokens, D = (double)c->dim;
    const double patches = (double)c->max_batch * (double)(tokens - 1);
    const double per_block = 3.0 * 2.0 * n * (3 * D * D + D * D + 2 * D * (double)c->mlp_dim) +
                             12.0 * (double)c->max_batch * (double)tokens * tokens * D;
    const double embed = 3.0 * 2.0 * patches * D * (double)(c->channels * c->patch * c->patch);
    return per_block * (double)c->depth + embed + 3.0 * 2.0 * (double)c->max_batch * D * c->classes;
}

int main(int argc, char **argv)
{
    bench_options o = bench_parse_args(argc, argv, NULL);
    int threads[2];
    const int nthreads = bench_thread_list(&o, threads);
    vit_config cfg = vit_config_default();
    const size_t B = cfg.max_batch, image = cfg.channels * cfg.image_size * cfg.image_size;
    float *images = bench_alloc(sizeof(float) * B * image);
    float *dlogits = bench_alloc(sizeof(float) * B * cfg.classes);
    int *labels = bench_alloc(sizeof(int) * B);
    bench_fill(images, B * image, 7);
    for (size_t i = 0; i < B; i++)
        labels[i] = (int)(i % cfg.classes);
    if (!o.json)
        printf("%-7s %5s | %10s %9s %9s %8s | %9s\n", "threads", "batch", "step_ms", "img/s",
               "GFLOP/s", "of_peak", "peak");
    for (int t = 0; t < nthreads; t++) {
        srp_set_num_threads(threads[t]);
        const double peak = bench_sgemm_gflops(1024, 1024, 1024, 5, NULL);
        vit_model *model = NULL;
        srp_optim *optim = NULL;
        if (vit_create(&model, &cfg) != SRP_OK) {
            fprintf(stderr, "bench_train: model create failed\n");
            return 1;
        }
        const size_t np = vit_params(model, NULL, NULL);
        srp_param *params = bench_alloc(sizeof(srp_param) * np);
        vit_params(model, params, NULL);
        srp_optim_config oc = srp_optim_config_default(SRP_OPTIM_SGD);
        if (srp_optim_create(&optim, params, np, &oc) != SRP_OK) {
            fprintf(stderr, "bench_train: optimizer create failed\n");
            return 1;
        }
        step_case c = {model, optim, images, labels, dlogits, B, cfg.classes};
        const double sec = bench_time(run_step, &c, o.repeats ? o.repeats : 15);
        const double gf = step_flops(&cfg, vit_tokens(model)) / sec * 1e-9;
        if (o.json)
            printf("{\"bench\":\"train_step\",\"threads\":%d,\"batch\":%zu,\"step_ms\":%.3f,"
                   "\"images_per_s\":%.1f,\"gflops\":%.2f,\"sgemm_peak_gflops\":%.2f}\n",
                   threads[t], B, sec * 1e3, (double)B / sec, gf, peak);
        else
            printf("%-7d %5zu | %10.2f %9.1f %9.1f %7.1f%% | %9.1f\n", threads[t], B, sec * 1e3,
                   (double)B / sec, gf, 100.0 * gf / peak, peak);
        srp_optim_destroy(optim);
        vit_destroy(model);
        free(params);
    }
    free(images);
    free(dlogits);
    free(labels);
    return 0;
}
