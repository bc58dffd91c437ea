/* Two independent modules driven from two threads at once give the bits
 * they give one after the other: the library keeps no hidden shared state
 * in its forwards, backwards and optimizer steps (sigmareparam.h says which
 * calls may run concurrently). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { B = 4, T = 9, D = 32, H = 4, STEPS = 6 };

/* An attention and a linear head over it, trained a few SGD steps; out
 * gets the final output. */
typedef struct {
    uint64_t seed;
    float out[B * T * D];
    srp_status status;
} job;

static void *train(void *arg)
{
    job *j = arg;
    srp_set_num_threads(1); /* this thread's OpenMP default too (core.h) */
    srp_attention_config c = srp_attention_config_default(D, H);
    c.seed = j->seed;
    srp_attention *a = NULL;
    srp_linear *l = NULL;
    srp_optim *o = NULL;
    srp_linear_config lc = srp_linear_config_default(D, D);
    lc.seed = j->seed + 1;
    j->status = srp_attention_create(&a, &c, B, T);
    if (j->status == SRP_OK)
        j->status = srp_linear_create(&l, &lc);
    srp_param params[3];
    if (j->status == SRP_OK) {
        params[0] = srp_param_make("w", srp_linear_weight(l), srp_linear_weight_grad(l), D * D,
                                   SRP_PARAM_WEIGHT);
        srp_linear *qkv = srp_attention_qkv(a);
        params[1] = srp_param_make("qkv", srp_linear_weight(qkv), srp_linear_weight_grad(qkv),
                                   3 * D * D, SRP_PARAM_WEIGHT);
        params[2] = srp_param_make("gamma", srp_linear_gamma(l), srp_linear_gamma_grad(l), 1,
                                   SRP_PARAM_GAMMA);
        const srp_optim_config oc = srp_optim_config_default(SRP_OPTIM_SGD);
        j->status = srp_optim_create(&o, params, 3, &oc);
    }
    float x[B * T * D], h[B * T * D], dy[B * T * D], dh[B * T * D];
    srp_rng r = seeded_rng(j->seed + 2);
    for (size_t i = 0; i < B * T * D; i++)
        x[i] = (float)srp_rng_normal(&r);
    for (int s = 0; s < STEPS && j->status == SRP_OK; s++) {
        j->status = srp_attention_forward(a, x, B, T, h, SRP_TRAIN);
        if (j->status == SRP_OK)
            j->status = srp_linear_forward(l, h, B * T, j->out, SRP_TRAIN);
        if (j->status == SRP_OK) /* loss = sum(out): dy = 1 */
            for (size_t i = 0; i < B * T * D; i++)
                dy[i] = 1.0f;
        if (j->status == SRP_OK)
            j->status = srp_linear_backward(l, h, dy, B * T, dh);
        if (j->status == SRP_OK)
            j->status = srp_attention_backward(a, dh, NULL);
        if (j->status == SRP_OK)
            j->status = srp_optim_step(o, 1e-3f);
        srp_optim_zero_grad(o);
        srp_linear_zero_grad(srp_attention_proj(a)); /* not in the list */
        srp_linear_zero_grad(l);
        srp_linear_zero_grad(srp_attention_qkv(a));
    }
    srp_optim_destroy(o);
    srp_linear_destroy(l);
    srp_attention_destroy(a);
    return NULL;
}

static void test_two_threads_give_the_serial_bits(void **state)
{
    (void)state;
    job serial[2] = {{.seed = 11}, {.seed = 22}}, parallel[2] = {{.seed = 11}, {.seed = 22}};
    train(&serial[0]);
    train(&serial[1]);
    assert_ok(serial[0].status);
    assert_ok(serial[1].status);
    for (int round = 0; round < 3; round++) {
        pthread_t threads[2];
        for (int k = 0; k < 2; k++)
            assert_int_equal(pthread_create(&threads[k], NULL, train, &parallel[k]), 0);
        for (int k = 0; k < 2; k++)
            assert_int_equal(pthread_join(threads[k], NULL), 0);
        for (int k = 0; k < 2; k++) {
            assert_ok(parallel[k].status);
            assert_memory_equal(parallel[k].out, serial[k].out, sizeof(serial[k].out));
        }
    }
}

int main(void)
{
    srp_set_num_threads(1); /* an application that parallelizes over modules */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_threads_give_the_serial_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
