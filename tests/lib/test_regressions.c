/* Spectral norm's failure history as regression tests. Almost every bug
 * reported against PyTorch's spectral_norm was about the u/v state, not
 * the maths; each case here names the report it guards against.
 * tests/mutants.sh applies the broken variants those reports describe to
 * the source and shows that this suite fails on each. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define IN 12
#define OUT 9
#define N 5

/* A linear whose W has singular values 3, 2.9, 1, ...: sigma is not 1
 * (so dividing by it twice shows), and the top two are close (so one
 * power step from anything but the top singular vector is visibly off). */
static srp_linear *make_spectrum_linear(uint64_t seed)
{
    srp_linear_config c = srp_linear_config_default(IN, OUT);
    c.seed = seed;
    srp_linear *l = NULL;
    assert_ok(srp_linear_create(&l, &c));
    srp_rng r = seeded_rng(seed + 100);
    double s[OUT], w[OUT * IN];
    for (size_t i = 0; i < OUT; i++)
        s[i] = i == 0 ? 3.0 : i == 1 ? 2.9 : 1.0 / (double)i;
    matrix_with_spectrum(&r, w, OUT, IN, s, NULL, NULL);
    to_float(w, srp_linear_weight(l), OUT * IN);
    for (size_t o = 0; o < OUT; o++)
        srp_linear_bias(l)[o] = 0.1f * (float)o;
    *srp_linear_gamma(l) = 1.7f;
    assert_ok(srp_linear_reinit_sigma(l));
    return l;
}

static void fill_input(float *x, size_t n, uint64_t seed)
{
    srp_rng r = seeded_rng(seed);
    fill_normal_f(&r, x, n, 1.0);
}

/* y = gamma / sigma_exact W x + b in double, sigma_exact = 3. */
static void reference_forward(srp_linear *l, const float *x, double *y)
{
    const float *w = srp_linear_weight(l), *b = srp_linear_bias(l);
    const double scale = (double)*srp_linear_gamma(l) / 3.0;
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < OUT; o++) {
            double acc = 0.0;
            for (size_t i = 0; i < IN; i++)
                acc += (double)w[o * IN + i] * (double)x[n * IN + i];
            y[n * OUT + o] = scale * acc + (double)b[o];
        }
}

typedef struct {
    float u[IN], v[OUT], sigma, gamma, w0;
} spectral_state;

static spectral_state state_of(srp_linear *l)
{
    spectral_state s;
    memcpy(s.u, srp_linear_u(l), sizeof(s.u));
    memcpy(s.v, srp_linear_v(l), sizeof(s.v));
    s.sigma = srp_linear_sigma(l);
    s.gamma = *srp_linear_gamma(l);
    s.w0 = srp_linear_weight(l)[0];
    return s;
}

static void assert_same_state(srp_linear *a, srp_linear *b)
{
    const spectral_state sa = state_of(a), sb = state_of(b);
    assert_memory_equal(&sa, &sb, sizeof(sa));
}

/* The next training forward of a and of b on x: the same bits out, the
 * same state after. */
static void assert_same_next_step(srp_linear *a, srp_linear *b, const float *x)
{
    float ya[N * OUT], yb[N * OUT];
    assert_ok(srp_linear_forward(a, x, N, ya, SRP_TRAIN));
    assert_ok(srp_linear_forward(b, x, N, yb, SRP_TRAIN));
    assert_memory_equal(ya, yb, sizeof(ya));
    assert_same_state(a, b);
}

/* pytorch #8208, PR #8590: an eval forward updated u. Eval forwards change
 * no state, and two of them give the same bits. */
static void test_eval_does_not_touch_state(void **state)
{
    (void)state;
    srp_linear *l = make_spectrum_linear(1);
    float x[N * IN], y1[N * OUT], y2[N * OUT];
    fill_input(x, N * IN, 7);
    assert_ok(srp_linear_forward(l, x, N, y1, SRP_TRAIN)); /* a state a step in */
    const spectral_state before = state_of(l);
    assert_ok(srp_linear_forward(l, x, N, y1, SRP_EVAL));
    assert_ok(srp_linear_forward(l, x, N, y2, SRP_EVAL));
    const spectral_state after = state_of(l);
    assert_memory_equal(y1, y2, sizeof(y1));
    /* u, v, gamma and W do not move (sigma reports the last forward's). */
    assert_memory_equal(before.u, after.u, sizeof(before.u));
    assert_memory_equal(before.v, after.v, sizeof(before.v));
    assert_true(before.gamma == after.gamma && before.w0 == after.w0);
    /* The next training step is the one a twin that never evaluated takes. */
    srp_linear *twin = make_spectrum_linear(1);
    assert_ok(srp_linear_forward(twin, x, N, y2, SRP_TRAIN));
    assert_same_next_step(l, twin, x);
    srp_linear_destroy(twin);
    srp_linear_destroy(l);
}

/* pytorch #51800: a module whose first call was an eval forward gave a
 * wrong output, u being initialized lazily at the first training forward.
 * Here u comes from an SVD at create: the first forward, eval, is right. */
static void test_first_forward_can_be_eval(void **state)
{
    (void)state;
    srp_linear *l = make_spectrum_linear(2);
    float x[N * IN], y[N * OUT];
    double ref[N * OUT];
    fill_input(x, N * IN, 8);
    reference_forward(l, x, ref);
    assert_ok(srp_linear_forward(l, x, N, y, SRP_EVAL));
    for (size_t i = 0; i < N * OUT; i++)
        assert_close_rel(y[i], ref[i], 1e-5, 1.0, "first eval forward against gamma/sigma W x + b");
    assert_close_rel(srp_linear_sigma(l), 3.0, 1e-5, 1.0, "sigma of the first forward");
    srp_linear_destroy(l);
}

/* PRs #13350, #62293: a module applied twice before its backwards
 * (siamese training, a GAN's discriminator on real and fake). Its backward
 * can only differentiate the last forward, so it refuses when that is
 * ambiguous, and changes nothing, rather than return a wrong gradient.
 * A backward consumes its forward: retrying a refused backward, or a second
 * backward of one forward (PyTorch raises there), is refused too, until a
 * forward that can be differentiated. Both once returned SRP_OK: the retry
 * differentiated the eval forward (or the second training forward), the
 * second backward doubled every gradient. */
static void test_several_forwards_before_backward_are_refused(void **state)
{
    (void)state;
    srp_linear *l = make_spectrum_linear(3);
    float x1[N * IN], x2[N * IN], y[N * OUT], dy[N * OUT], dx[N * IN];
    fill_input(x1, N * IN, 9);
    fill_input(x2, N * IN, 10);
    fill_input(dy, N * OUT, 11);
    /* before any forward there is nothing to differentiate */
    assert_status(srp_linear_backward(l, x1, dy, N, dx), SRP_ERR_ORDER);
    /* two training forwards, then the first one's backward; and its retry */
    assert_ok(srp_linear_forward(l, x1, N, y, SRP_TRAIN));
    assert_ok(srp_linear_forward(l, x2, N, y, SRP_TRAIN));
    assert_status(srp_linear_backward(l, x1, dy, N, dx), SRP_ERR_ORDER);
    assert_status(srp_linear_backward(l, x1, dy, N, dx), SRP_ERR_ORDER);
    assert_status(srp_linear_backward(l, x2, dy, N, dx), SRP_ERR_ORDER);
    for (size_t i = 0; i < OUT * IN; i++)
        assert_true(srp_linear_weight_grad(l)[i] == 0.0f);
    assert_true(*srp_linear_gamma_grad(l) == 0.0f);
    /* a training forward, an eval forward (metrics), then the backward, and
     * its retry */
    assert_ok(srp_linear_forward(l, x1, N, y, SRP_TRAIN));
    assert_ok(srp_linear_forward(l, x2, N, y, SRP_EVAL));
    assert_status(srp_linear_backward(l, x1, dy, N, dx), SRP_ERR_ORDER);
    assert_status(srp_linear_backward(l, x1, dy, N, dx), SRP_ERR_ORDER);
    for (size_t i = 0; i < OUT * IN; i++)
        assert_true(srp_linear_weight_grad(l)[i] == 0.0f);
    /* one backward per forward: the second is refused and adds nothing */
    assert_ok(srp_linear_forward(l, x1, N, y, SRP_TRAIN));
    assert_ok(srp_linear_backward(l, x1, dy, N, dx));
    float dw_once[OUT * IN], dgamma_once = *srp_linear_gamma_grad(l);
    memcpy(dw_once, srp_linear_weight_grad(l), sizeof(dw_once));
    assert_status(srp_linear_backward(l, x1, dy, N, dx), SRP_ERR_ORDER);
    assert_memory_equal(srp_linear_weight_grad(l), dw_once, sizeof(dw_once));
    assert_true(*srp_linear_gamma_grad(l) == dgamma_once);
    /* the backward_weight door (convolutions) keeps the same rules */
    float w_hat[OUT * IN];
    assert_ok(srp_linear_forward_weight(l, SRP_TRAIN, w_hat));
    assert_ok(srp_linear_backward_weight(l, dw_once, dy));
    assert_status(srp_linear_backward_weight(l, dw_once, dy), SRP_ERR_ORDER);
    /* eval forwards alone (finite differences) can be differentiated, once */
    assert_ok(srp_linear_forward(l, x1, N, y, SRP_EVAL));
    assert_ok(srp_linear_forward(l, x1, N, y, SRP_EVAL));
    assert_ok(srp_linear_backward(l, x1, dy, N, dx));
    assert_status(srp_linear_backward(l, x1, dy, N, dx), SRP_ERR_ORDER);
    /* an eval forward before the training forward does not matter */
    assert_ok(srp_linear_forward(l, x2, N, y, SRP_EVAL));
    assert_ok(srp_linear_forward(l, x1, N, y, SRP_TRAIN));
    assert_ok(srp_linear_backward(l, x1, dy, N, dx));
    srp_linear_destroy(l);

    /* The attention keeps its activations: the same rules. */
    srp_attention *a = NULL;
    const srp_attention_config c = srp_attention_config_default(8, 2);
    assert_ok(srp_attention_create(&a, &c, 2, 4));
    float ax1[2 * 4 * 8], ax2[2 * 4 * 8], ay[2 * 4 * 8], ady[2 * 4 * 8];
    fill_input(ax1, sizeof(ax1) / sizeof(float), 12);
    fill_input(ax2, sizeof(ax2) / sizeof(float), 13);
    fill_input(ady, sizeof(ady) / sizeof(float), 14);
    assert_ok(srp_attention_forward(a, ax1, 2, 4, ay, SRP_TRAIN));
    assert_ok(srp_attention_forward(a, ax2, 2, 4, ay, SRP_TRAIN));
    assert_status(srp_attention_backward(a, ady, NULL), SRP_ERR_ORDER);
    assert_status(srp_attention_backward(a, ady, NULL), SRP_ERR_ORDER);
    assert_ok(srp_attention_forward(a, ax1, 2, 4, ay, SRP_TRAIN));
    assert_ok(srp_attention_forward(a, ax2, 2, 4, ay, SRP_EVAL));
    assert_status(srp_attention_backward(a, ady, NULL), SRP_ERR_ORDER);
    assert_status(srp_attention_backward(a, ady, NULL), SRP_ERR_ORDER);
    srp_linear *qkv = srp_attention_qkv(a);
    for (size_t i = 0; i < 3 * 8 * 8; i++)
        assert_true(srp_linear_weight_grad(qkv)[i] == 0.0f);
    assert_ok(srp_attention_forward(a, ax1, 2, 4, ay, SRP_TRAIN));
    assert_ok(srp_attention_backward(a, ady, NULL));
    float dqkv_once[3 * 8 * 8];
    memcpy(dqkv_once, srp_linear_weight_grad(qkv), sizeof(dqkv_once));
    assert_status(srp_attention_backward(a, ady, NULL), SRP_ERR_ORDER);
    assert_memory_equal(srp_linear_weight_grad(qkv), dqkv_once, sizeof(dqkv_once));
    srp_attention_destroy(a);
}

/* A linear's whole state as checkpoint tensors: W, b, gamma, u, v, and
 * sigma through *sigma (the layer keeps it behind a getter and a setter). */
static void linear_state_refs(srp_linear *l, float *sigma, srp_tensor_ref refs[6])
{
    const srp_tensor_ref r[6] = {
        {"w", SRP_DTYPE_F32, 2, {OUT, IN}, srp_linear_weight(l)},
        {"b", SRP_DTYPE_F32, 1, {OUT}, srp_linear_bias(l)},
        {"gamma", SRP_DTYPE_F32, 0, {0}, srp_linear_gamma(l)},
        {"u", SRP_DTYPE_F32, 1, {IN}, srp_linear_u(l)},
        {"v", SRP_DTYPE_F32, 1, {OUT}, srp_linear_v(l)},
        {"sigma", SRP_DTYPE_F32, 0, {0}, sigma},
    };
    memcpy(refs, r, sizeof r);
}

/* pytorch #21251: a checkpoint lost u, so a resumed run changed its
 * course. A round trip keeps u, v, sigma and gamma, and the next training
 * step of the restored layer gives the same bits as the original's. */
static void test_checkpoint_keeps_the_state(void **state)
{
    (void)state;
    char dir[256], path[320];
    assert_int_equal(scratch_dir_make(dir, sizeof(dir), "srp_regress"), 0);
    snprintf(path, sizeof(path), "%s/linear.ckpt", dir);
    srp_linear *l = make_spectrum_linear(4);
    float x[N * IN], y[N * OUT];
    fill_input(x, N * IN, 15);
    for (int i = 0; i < 3; i++) /* a state that is not the SVD's */
        assert_ok(srp_linear_forward(l, x, N, y, SRP_TRAIN));
    float sigma = srp_linear_sigma(l);
    srp_tensor_ref refs[6];
    linear_state_refs(l, &sigma, refs);
    assert_ok(srp_checkpoint_save(path, refs, 6));
    srp_linear *r = make_spectrum_linear(5); /* other weights, other state */
    float sigma_r = 0.0f;
    linear_state_refs(r, &sigma_r, refs);
    assert_ok(srp_checkpoint_load(path, refs, 6));
    assert_ok(srp_linear_set_sigma(r, sigma_r));
    assert_same_state(l, r);
    assert_same_next_step(l, r, x);
    srp_linear_destroy(l);
    srp_linear_destroy(r);
    assert_int_equal(scratch_dir_remove(dir), 0);
}

/* The gradient goes through sigma: dW carries -(gamma s / sigma^2) v u^T
 * with u, v of the forward held constant (the official code's semantics).
 * Against a double reference, to a tolerance far below that term's size. */
static void test_gradient_goes_through_sigma(void **state)
{
    (void)state;
    srp_linear *l = make_spectrum_linear(6);
    float x[N * IN], y[N * OUT], dy[N * OUT];
    fill_input(x, N * IN, 16);
    fill_input(dy, N * OUT, 17);
    assert_ok(srp_linear_forward(l, x, N, y, SRP_TRAIN));
    assert_ok(srp_linear_backward(l, x, dy, N, NULL));
    const float *w = srp_linear_weight(l), *u = srp_linear_u(l), *v = srp_linear_v(l);
    const double gamma = *srp_linear_gamma(l), sigma = srp_linear_sigma(l);
    double g[OUT * IN], s = 0.0, term = 0.0;
    for (size_t o = 0; o < OUT; o++)
        for (size_t i = 0; i < IN; i++) {
            double acc = 0.0;
            for (size_t n = 0; n < N; n++)
                acc += (double)dy[n * OUT + o] * (double)x[n * IN + i];
            g[o * IN + i] = acc;
            s += acc * (double)w[o * IN + i];
        }
    for (size_t o = 0; o < OUT; o++)
        for (size_t i = 0; i < IN; i++) {
            const double rank1 = gamma * s / (sigma * sigma) * (double)v[o] * (double)u[i];
            const double ref = gamma / sigma * g[o * IN + i] - rank1;
            term = fmax(term, fabs(rank1));
            assert_close_rel(srp_linear_weight_grad(l)[o * IN + i], ref, 1e-5, 1e-3,
                             "dW with the sigma term");
        }
    assert_true(term > 1e-2); /* the term is large enough to be missed */
    assert_close_rel(*srp_linear_gamma_grad(l), s / sigma, 1e-5, 1e-3, "dgamma = s / sigma");
    srp_linear_destroy(l);
}

/* A causal module's output at token t does not change when later tokens
 * do (an off-by-one in the mask lets token t + 1 in). */
static void test_causal_mask_hides_the_future(void **state)
{
    (void)state;
    enum { B = 2, T = 6, D = 8 };
    srp_attention_config c = srp_attention_config_default(D, 2);
    c.causal = 1;
    srp_attention *a = NULL;
    assert_ok(srp_attention_create(&a, &c, B, T));
    float x[B * T * D], y1[B * T * D], y2[B * T * D];
    fill_input(x, B * T * D, 18);
    assert_ok(srp_attention_forward(a, x, B, T, y1, SRP_EVAL));
    for (size_t t = 0; t + 1 < T; t++) {
        float changed[B * T * D];
        memcpy(changed, x, sizeof(x));
        for (size_t b = 0; b < B; b++)
            for (size_t k = t + 1; k < T; k++)
                for (size_t d = 0; d < D; d++)
                    changed[(b * T + k) * D + d] += 5.0f;
        assert_ok(srp_attention_forward(a, changed, B, T, y2, SRP_EVAL));
        for (size_t b = 0; b < B; b++)
            assert_memory_equal(y1 + b * T * D, y2 + b * T * D, sizeof(float) * (t + 1) * D);
    }
    srp_attention_destroy(a);
}

int main(void)
{
    srp_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_does_not_touch_state),
        cmocka_unit_test(test_first_forward_can_be_eval),
        cmocka_unit_test(test_several_forwards_before_backward_are_refused),
        cmocka_unit_test(test_checkpoint_keeps_the_state),
        cmocka_unit_test(test_gradient_goes_through_sigma),
        cmocka_unit_test(test_causal_mask_hides_the_future),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
