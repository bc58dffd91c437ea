/* A two-block transformer classifier written only against the installed
 * library: it names the token after a marker in a sequence (attention
 * across positions). AdamW, the weight average, the collapse watch, and a
 * checkpoint of the whole run: stopped and resumed, a run saves the same
 * file as one run through. [--steps S] [--checkpoint PATH] [--resume PATH] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sigmareparam.h>

enum { V = 8, MARK = V, T = 6, D = 32, H = 2, L = 2, B = 64, N = 1024 };

/* Every failure goes up to main, which prints it and its detail. */
/* clang-format off */
#define TRY(call) do { srp_status st_ = (call); if (st_ != SRP_OK) return st_; } while (0)
/* clang-format on */

static srp_embedding *tok, *pos;
static srp_block *block[L];
static srp_layernorm *norm;
static srp_linear *head;
static srp_param_list *params; /* for AdamW and the weight average */
static srp_tensor_list *state; /* the whole run, for the checkpoint */
static srp_optim *opt;
static srp_weight_average *avg;
static srp_collapse *watch;
static srp_rng data; /* draws the training batches */

/* A batch (B sequences to train, the N of the test set) and its activations. */
static uint32_t tokens[N * T], positions[N * T];
static int labels[N];
static float x[N * T * D], h1[N * T * D], h2[N * T * D], h3[N * T * D], dh[N * T * D];
static float pooled[N * D], dpooled[N * D], logits[N * V], dlogits[N * V];

static void draw(srp_rng *r, size_t n)
{
    for (size_t i = 0; i < n * T; i++)
        tokens[i] = (uint32_t)srp_rng_below(r, V);
    for (size_t b = 0; b < n; b++) {
        size_t at = b * T + (size_t)srp_rng_below(r, T - 1);
        tokens[at] = MARK;
        labels[b] = (int)tokens[at + 1];
    }
}

static srp_status forward(size_t n, int training)
{
    TRY(srp_embedding_forward(tok, tokens, n * T, x));
    TRY(srp_embedding_forward(pos, positions, n * T, h1));
    TRY(srp_residual_add(x, h1, n * T * D, x));
    TRY(srp_block_forward(block[0], x, n, T, h1, training));
    TRY(srp_block_forward(block[1], h1, n, T, h2, training));
    TRY(srp_layernorm_layer_forward(norm, h2, n * T, h3, training));
    TRY(srp_mean_pool_forward(h3, n, T, D, pooled));
    return srp_linear_forward(head, pooled, n, logits, training);
}

static srp_status train_step(uint64_t step, float *loss)
{
    draw(&data, B);
    TRY(forward(B, SRP_TRAIN));
    TRY(srp_cross_entropy_forward(logits, labels, B, V, 0.0f, loss));
    TRY(srp_cross_entropy_backward(logits, labels, B, V, 0.0f, dlogits));
    TRY(srp_linear_backward(head, pooled, dlogits, B, dpooled));
    TRY(srp_mean_pool_backward(dpooled, B, T, D, dh));
    TRY(srp_layernorm_layer_backward(norm, h2, dh, B * T, dh));
    TRY(srp_block_backward(block[1], dh, dh)); /* in place: the residual stream */
    TRY(srp_block_backward(block[0], dh, dh));
    TRY(srp_embedding_backward(tok, tokens, dh, B * T));
    TRY(srp_embedding_backward(pos, positions, dh, B * T));
    TRY(srp_optim_step(opt, 5e-3f));
    srp_optim_zero_grad(opt);
    TRY(srp_weight_average_update(avg));
    float entropy[L * H]; /* each head's mean entropy, 1 = uniform attention */
    srp_collapse_event ev[2 * L * H];
    size_t n;
    for (size_t l = 0; l < L; l++)
        TRY(srp_attention_entropy_normalized(srp_block_attention(block[l]), entropy + l * H, NULL));
    TRY(srp_collapse_update(watch, step, entropy, ev, 2 * L * H, &n));
    for (size_t i = 0; i < n; i++)
        printf("collapse watch: step %" PRIu64 ", block %zu head %zu: %s, entropy %.3f < %.3f\n",
               ev[i].step, ev[i].layer, ev[i].head, srp_collapse_kind_name(ev[i].kind),
               ev[i].entropy, ev[i].reference);
    return SRP_OK;
}

/* Accuracy in % on the test set: the same N sequences every time. */
static srp_status evaluate(float *accuracy)
{
    srp_rng r;
    size_t correct;
    srp_rng_seed(&r, 12345);
    draw(&r, N);
    TRY(forward(N, SRP_EVAL));
    TRY(srp_accuracy_count(logits, labels, N, V, &correct));
    *accuracy = 100.0f * (float)correct / N;
    return SRP_OK;
}

static srp_status run(uint64_t steps, const char *checkpoint, const char *resume)
{
    for (size_t i = 0; i < N * T; i++)
        positions[i] = (uint32_t)(i % T);
    srp_rng_seed(&data, 7);
    TRY(srp_embedding_create(&tok, V + 1, D, 0.02f, 1));
    TRY(srp_embedding_create(&pos, T, D, 0.02f, 2));
    srp_layernorm_config nc = srp_layernorm_config_default(D);
    TRY(srp_layernorm_create(&norm, &nc, N * T));
    srp_linear_config hc = srp_linear_config_default(D, V);
    TRY(srp_linear_create(&head, &hc));
    TRY(srp_param_list_create(&params)); /* appends are checked once, at the end */
    TRY(srp_tensor_list_create(&state));
    srp_embedding_params(tok, "tok", params), srp_embedding_state_refs(tok, "tok", state);
    srp_embedding_params(pos, "pos", params), srp_embedding_state_refs(pos, "pos", state);
    for (size_t l = 0; l < L; l++) {
        srp_block_config bc = srp_block_config_default(D, H, 4 * D);
        char name[16];
        srp_block_config_seed(&bc, 3 + l);
        snprintf(name, sizeof name, "blocks.%zu", l);
        TRY(srp_block_create(&block[l], &bc, N, T));
        srp_block_params(block[l], name, params), srp_block_state_refs(block[l], name, state);
    }
    srp_layernorm_params(norm, "norm", params), srp_layernorm_state_refs(norm, "norm", state);
    srp_linear_params(head, "head", params), srp_linear_state_refs(head, "head", state);
    TRY(srp_param_list_status(params));
    srp_optim_config oc = srp_optim_config_default(SRP_OPTIM_ADAMW);
    TRY(srp_optim_create(&opt, srp_param_list_entries(params), srp_param_list_count(params), &oc));
    srp_linear *linears[L * 6 + 1] = {head}; /* whose sigma follows the averaged weights */
    size_t n = 1;
    for (size_t l = 0; l < L; l++) /* at most 6 linears a block (block.h) */
        for (size_t i = 0; i < srp_block_linear_count(block[l]); i++)
            linears[n++] = srp_block_linear(block[l], i, NULL);
    srp_weight_average_config ac = srp_weight_average_config_default();
    TRY(srp_weight_average_create(&avg, params, linears, n, &ac));
    srp_collapse_config cc = srp_collapse_config_default(L, H);
    TRY(srp_collapse_create(&watch, &cc));
    srp_weight_average_state_refs(avg, "average", state);
    srp_collapse_state_refs(watch, "watch", state);
    srp_tensor_list_add(state, NULL, "data_rng", SRP_DTYPE_U64, 1, (size_t[]){4}, data.s);
    srp_optim_state_refs(opt, state); /* the moments of every parameter */
    TRY(srp_tensor_list_status(state));
    const srp_tensor_ref *refs = srp_tensor_list_refs(state);
    size_t nrefs = srp_tensor_list_count(state);
    if (resume)
        TRY(srp_checkpoint_load(resume, refs, nrefs));
    float loss = 0.0f, live, averaged;
    for (uint64_t step = srp_optim_step_count(opt); step < steps;) {
        TRY(train_step(++step, &loss));
        if (step % 100 == 0)
            printf("step %" PRIu64 ": loss %.4f\n", step, loss);
    }
    TRY(evaluate(&live));
    TRY(srp_weight_average_swap_in(avg)); /* a failure ends the run: no swap out needed */
    TRY(evaluate(&averaged));
    TRY(srp_weight_average_swap_out(avg));
    printf("test accuracy %.2f%%, weight average %.2f%%\n", live, averaged);
    return checkpoint ? srp_checkpoint_save(checkpoint, refs, nrefs) : SRP_OK;
}

int main(int argc, char **argv)
{
    uint64_t steps = 500;
    char *checkpoint = NULL, *resume = NULL, *end = "";
    int i = 1;
    for (; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--steps") == 0)
            steps = strtoull(argv[i + 1], &end, 10);
        else if (strcmp(argv[i], "--checkpoint") == 0)
            checkpoint = argv[i + 1];
        else if (strcmp(argv[i], "--resume") == 0)
            resume = argv[i + 1];
        else
            break;
    }
    if (i != argc || *end) {
        fprintf(stderr, "usage: %s [--steps S] [--checkpoint PATH] [--resume PATH]\n", argv[0]);
        return 2;
    }
    srp_status st = run(steps, checkpoint, resume);
    if (st != SRP_OK) /* before any other library call, which may clear the detail */
        fprintf(stderr, "error: %s. %s\n", srp_status_str(st), srp_last_error_detail());
    srp_collapse_destroy(watch);
    srp_weight_average_destroy(avg);
    srp_optim_destroy(opt);
    srp_tensor_list_destroy(state);
    srp_param_list_destroy(params);
    srp_linear_destroy(head);
    srp_layernorm_destroy(norm);
    for (size_t l = 0; l < L; l++)
        srp_block_destroy(block[l]);
    srp_embedding_destroy(pos);
    srp_embedding_destroy(tok);
    return st == SRP_OK ? 0 : 1;
}
