/* Parameter lists, SGD (momentum, Nesterov), LARS, AdamW, gradient clipping
 * and learning-rate schedules. Part of <sigmareparam.h>; include that.
 *
 * Update rules, per entry with data p, gradient g, lr_e = lr * lr_mult and
 * wd = weight_decay if the entry decays, else 0 (t = steps taken before):
 *
 * SGD, torch.optim.SGD (coupled decay, the default):
 *     d = g + wd p
 *     buf = d                                   at t = 0
 *     buf = momentum buf + (1 - dampening) d    after
 *     d = nesterov ? d + momentum buf : buf     (momentum > 0 only)
 *     p = p - lr_e d
 *   decoupled decay (SGDW, as AdamW does it): d = g, and p is first scaled,
 *     p = p (1 - lr_e wd), before the same update.
 *
 * LARS (You et al. 2017, "Large batch training of convolutional networks",
 * Algorithm 1), for entries with lars = 1:
 *     trust = eta ||p|| / (||g|| + wd ||p||)    (1 when ||p|| or the
 *                                                denominator is 0)
 *     d = trust (g + wd p)
 *   then the SGD momentum rule above on d (buf = d at t = 0, so the buffer
 *   behaves as a zero-initialised one). Entries with lars = 0 get plain SGD.
 *   Norms are per entry, in double. LARS decay is always coupled: it is
 *   part of the trust ratio.
 *
 * AdamW, torch.optim.AdamW (amsgrad off), t counted from 1:
 *     p = p (1 - lr_e wd)
 *     m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
 *     p = p - (lr_e / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 *   coupled decay instead (torch.optim.Adam's L2): g = g + wd p, no scaling.
 *
 * A step reads the gradients and never changes them (zero them with
 * srp_optim_zero_grad). Steps allocate nothing; all state is taken at
 * create and exposed for checkpoints. */
#ifndef SIGMAREPARAM_OPTIM_H
#define SIGMAREPARAM_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "sigmareparam/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Parameter list
 * ====================================================================== */

/* One trainable tensor. data and grad belong to the caller (usually a
 * layer); the optimizer keeps the pointers, and copies the name. */
typedef struct {
    const char *name; /* unique in a list; names the state in checkpoints */
    float *data;
    float *grad;
    size_t size;      /* number of floats */
    int weight_decay; /* 1: the optimizer's weight decay applies */
    float lr_mult;    /* the entry's lr is lr * lr_mult; default 1 */
    int lars;         /* 1: LARS's trust ratio applies (LARS only) */
} srp_param;

/* What an entry is, for its defaults. */
typedef enum {
    SRP_PARAM_WEIGHT = 0, /* matrices: decay, LARS */
    SRP_PARAM_BIAS,       /* no decay, no LARS */
    SRP_PARAM_GAMMA,      /* the sigmaReparam scalar: no decay, no LARS */
    SRP_PARAM_NORM,       /* LayerNorm scale and shift: no decay, no LARS */
    SRP_PARAM_EMBEDDING   /* position embeddings, class token: no decay, no LARS */
} srp_param_kind;

/* An entry with the defaults of its kind (lr_mult 1). The gamma of a
 * sigmaReparam layer is one scalar fed by the whole layer's gradient: give
 * it its own entry (size 1) and, if needed, its own lr_mult. */
SRP_API srp_param srp_param_make(const char *name, float *data, float *grad, size_t size,
                                 srp_param_kind kind);

/* ======================================================================
 * Optimizers
 * ====================================================================== */

typedef enum { SRP_OPTIM_SGD = 0, SRP_OPTIM_LARS, SRP_OPTIM_ADAMW } srp_optim_kind;

typedef enum {
    SRP_WD_COUPLED = 0, /* g += wd p (torch.optim.SGD) */
    SRP_WD_DECOUPLED    /* p *= 1 - lr wd (AdamW, SGDW) */
} srp_wd_mode;

typedef struct {
    srp_optim_kind kind;
    float weight_decay;  /* >= 0. SGD, LARS: 0; AdamW: 0.01 (torch's) */
    srp_wd_mode wd_mode; /* SGD: COUPLED by default (torch.optim.SGD);
                            AdamW: DECOUPLED by default, COUPLED gives
                            torch.optim.Adam; LARS: COUPLED only */
    /* SGD and LARS */
    float momentum;  /* in [0, 1): 0.9 (torch's default is 0) */
    float dampening; /* in [0, 1]: 0 */
    int nesterov;    /* 0; needs momentum > 0 and dampening 0, as torch */
    float lars_eta;  /* LARS trust coefficient, > 0: 0.001 */
    /* AdamW */
    float beta1, beta2; /* in [0, 1): 0.9, 0.999 */
    float eps;          /* > 0: 1e-8 */
} srp_optim_config;

typedef struct srp_optim srp_optim;

SRP_API srp_optim_config srp_optim_config_default(srp_optim_kind kind);

/* Copies the list (and the names); state buffers are zeroed. Errors: NULL,
 * count = 0, an entry with NULL name/data/grad, size 0, a name longer than
 * SRP_TENSOR_MAX_NAME - 32, a duplicate name, lr_mult not finite or
 * < 0, a config value out of range: SRP_ERR_INVALID_ARG; a decoupled LARS:
 * SRP_ERR_UNSUPPORTED; no memory: SRP_ERR_NOMEM. */
SRP_API srp_status srp_optim_create(srp_optim **out, const srp_param *params, size_t count,
                                    const srp_optim_config *cfg);
SRP_API void srp_optim_destroy(srp_optim *o);

/* One update of every entry with learning rate lr (finite, >= 0). The
 * gradients are checked first: NaN/Inf anywhere gives SRP_ERR_NUMERIC and
 * no parameter or state changes. */
SRP_API srp_status srp_optim_step(srp_optim *o, float lr);
/* Sets every entry's gradient to 0. */
SRP_API void srp_optim_zero_grad(srp_optim *o);

SRP_API size_t srp_optim_param_count(const srp_optim *o);
/* The optimizer's copy of entry i (NULL when out of range). */
SRP_API const srp_param *srp_optim_param(const srp_optim *o, size_t i);

/* ---- state, for checkpoints ---- */

/* State buffers per entry: 0 (SGD without momentum), 1 (the momentum
 * buffer) or 2 (AdamW: exp_avg, exp_avg_sq). */
SRP_API size_t srp_optim_state_buffers(const srp_optim *o);
/* Buffer b of entry i: size floats (the entry's size); NULL out of range. */
SRP_API float *srp_optim_state(srp_optim *o, size_t i, size_t b);
/* Steps taken (0 until the first step: the momentum buffers are then
 * initialised from the gradient, and AdamW's bias correction uses it). */
SRP_API uint64_t srp_optim_step_count(const srp_optim *o);
SRP_API void srp_optim_set_step_count(srp_optim *o, uint64_t steps);
/* The whole state as named tensors for srp_checkpoint_save/load:
 * "optim.step" (u64 scalar, the step count), then per entry and buffer
 * "optim.<name>.momentum_buffer" or "optim.<name>.exp_avg" and
 * "optim.<name>.exp_avg_sq" (f32, [size]); torch's state names. Names and
 * data point into the optimizer (valid until destroy). count = 1 +
 * entries * buffers; refs must hold srp_optim_tensor_count(o) entries. */
SRP_API size_t srp_optim_tensor_count(const srp_optim *o);
SRP_API srp_status srp_optim_tensor_refs(srp_optim *o, srp_tensor_ref *refs, size_t capacity);
/* The same tensors appended to a model's state list (lists.h), as the
 * layers' srp_*_state_refs do. Errors as srp_tensor_list_add; on one, the
 * entries appended before it stay. */
typedef struct srp_tensor_list srp_tensor_list;
SRP_API srp_status srp_optim_state_refs(srp_optim *o, srp_tensor_list *list);

/* ======================================================================
 * Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_)
 * ====================================================================== */

/* norm = ||all gradients||_2 (in double); c = max_norm / (norm + 1e-6);
 * when c < 1 every gradient is scaled by c. *norm_out (may be NULL)
 * gets the norm before clipping. Errors: NULL list, count = 0, an entry
 * with NULL grad, max_norm not finite or <= 0: SRP_ERR_INVALID_ARG; a
 * non-finite norm: SRP_ERR_NUMERIC, nothing scaled, *norm_out written. */
SRP_API srp_status srp_clip_grad_norm(const srp_param *params, size_t count, float max_norm,
                                      float *norm_out);
/* The same over an optimizer's list. */
SRP_API srp_status srp_optim_clip_grad_norm(srp_optim *o, float max_norm, float *norm_out);

/* ======================================================================
 * Learning-rate schedules
 *
 * lr_at(step), step = number of updates done before (0 for the first).
 * With W = warmup_steps > 0, steps 0 .. W-1 ramp linearly up to base_lr:
 *     lr = base_lr (step + 1) / W
 * After it, with t = step - W and T = total_steps - W:
 *     CONSTANT  base_lr
 *     STEP      base_lr * step_gamma ^ floor(t / step_size)
 *     COSINE    min_lr + (base_lr - min_lr) (1 + cos(pi t / T)) / 2,
 *               and min_lr once t >= T
 * Warmup is off by default: sigmaReparam is meant to need none.
 * ====================================================================== */

typedef enum { SRP_LR_CONSTANT = 0, SRP_LR_STEP, SRP_LR_COSINE } srp_lr_kind;

typedef struct {
    srp_lr_kind kind;
    float base_lr;         /* finite, >= 0 */
    uint64_t total_steps;  /* COSINE: steps including warmup, > warmup_steps */
    uint64_t step_size;    /* STEP: > 0; default total_steps / 3 (at least 1) */
    float step_gamma;      /* STEP: factor per step_size, default 0.1 */
    float min_lr;          /* COSINE: final lr, default 0 */
    uint64_t warmup_steps; /* default 0 */
} srp_lr_schedule;

SRP_API srp_lr_schedule srp_lr_schedule_default(srp_lr_kind kind, float base_lr,
                                                uint64_t total_steps);
/* SRP_OK, or SRP_ERR_INVALID_ARG for a schedule lr_at cannot evaluate. */
SRP_API srp_status srp_lr_schedule_check(const srp_lr_schedule *s);
/* Pure; NaN for a NULL or invalid schedule (which srp_optim_step rejects). */
SRP_API float srp_lr_at(const srp_lr_schedule *s, uint64_t step);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_OPTIM_H */
