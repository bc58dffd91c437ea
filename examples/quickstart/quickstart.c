/* The smallest complete use of the library (the README shows it): one
 * sigmaReparam linear layer learns y = A x with SGD. Exit code 0 when it
 * fitted (loss below 1e-4). */
#include <stdio.h>

#include <sigmareparam.h>

int main(void)
{
    enum { N = 64, IN = 8, OUT = 4 };
    float x[N * IN], y[N * OUT], target[N * OUT], dy[N * OUT], loss = 0.0f;
    srp_rng rng;
    srp_rng_seed(&rng, 1);
    for (int i = 0; i < N * IN; i++)
        x[i] = (float)srp_rng_normal(&rng);
    for (int i = 0; i < N * OUT; i++) /* target = A x, A a fixed 4x8 matrix */
        target[i] = x[i / OUT * IN + i % OUT] - 0.5f * x[i / OUT * IN + i % OUT + 4];

    srp_linear_config cfg = srp_linear_config_default(IN, OUT); /* W_hat = gamma / sigma(W) W */
    srp_linear *layer;
    srp_param_list *params; /* the layer's weight, bias and gamma, by name */
    if (srp_linear_create(&layer, &cfg) != SRP_OK || srp_param_list_create(&params) != SRP_OK ||
        srp_linear_params(layer, "layer", params) != SRP_OK)
        return 1;
    srp_optim_config oc = srp_optim_config_default(SRP_OPTIM_SGD);
    oc.momentum = 0.9f;
    srp_optim *opt;
    if (srp_optim_create(&opt, srp_param_list_entries(params), srp_param_list_count(params), &oc) !=
        SRP_OK)
        return 1;

    for (int step = 0; step < 300; step++) {
        srp_linear_forward(layer, x, N, y, SRP_TRAIN); /* one power step, then x W_hat^T + b */
        loss = 0.0f;
        for (int i = 0; i < N * OUT; i++) { /* mean squared error and its gradient */
            dy[i] = (y[i] - target[i]) / N;
            loss += 0.5f * (y[i] - target[i]) * (y[i] - target[i]) / N;
        }
        srp_linear_backward(layer, x, dy, N, NULL); /* dW, db, dgamma accumulate */
        srp_optim_step(opt, 0.1f);
        srp_optim_zero_grad(opt);
    }
    printf("loss %.2e, sigma %.3f, gamma %.3f\n", loss, srp_linear_sigma(layer),
           *srp_linear_gamma(layer));
    srp_optim_destroy(opt);
    srp_param_list_destroy(params);
    srp_linear_destroy(layer);
    return loss < 1e-4f ? 0 : 1;
}
