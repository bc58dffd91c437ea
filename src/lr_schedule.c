/* Learning-rate schedules: constant, step, cosine, with an optional linear
 * warmup (off by default). The formulas are in optim.h; evaluated in double.
 *
 * The decay phase starts after the warmup (t = step - W over T = total - W,
 * as MAE's and DeiT's recipes), and the warmup ends on base_lr at step W-1
 * so that no step runs with lr 0 and there is no jump at the seam. */
#include <math.h>
#include <string.h>

#include "internal.h"

srp_lr_schedule srp_lr_schedule_default(srp_lr_kind kind, float base_lr, uint64_t total_steps)
{
    srp_lr_schedule s;
    memset(&s, 0, sizeof(s));
    s.kind = kind;
    s.base_lr = base_lr;
    s.total_steps = total_steps;
    s.step_size = total_steps / 3 > 0 ? total_steps / 3 : 1;
    s.step_gamma = 0.1f;
    s.min_lr = 0.0f;
    s.warmup_steps = 0;
    return s;
}

static int finite_nonneg(float x) { return x >= 0.0f && isfinite(x); }

srp_status srp_lr_schedule_check(const srp_lr_schedule *s)
{
    static const char call[] = "srp_lr_schedule_check";
    if (!s)
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: s is NULL", call);
    if (!finite_nonneg(s->base_lr))
        return srp_fail(SRP_ERR_INVALID_ARG, "%s: base_lr %g: must be finite and >= 0", call,
                        (double)s->base_lr);
    switch (s->kind) {
    case SRP_LR_CONSTANT: return SRP_OK;
    case SRP_LR_STEP:
        if (s->step_size == 0)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: step_size is 0", call);
        if (!finite_nonneg(s->step_gamma))
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: step_gamma %g: must be finite and >= 0",
                            call, (double)s->step_gamma);
        return SRP_OK;
    case SRP_LR_COSINE:
        if (s->total_steps <= s->warmup_steps)
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: total_steps %llu <= warmup_steps %llu",
                            call, (unsigned long long)s->total_steps,
                            (unsigned long long)s->warmup_steps);
        if (!finite_nonneg(s->min_lr))
            return srp_fail(SRP_ERR_INVALID_ARG, "%s: min_lr %g: must be finite and >= 0", call,
                            (double)s->min_lr);
        return SRP_OK;
    }
    return srp_fail(SRP_ERR_INVALID_ARG, "%s: kind %d is unknown", call, (int)s->kind);
}

float srp_lr_at(const srp_lr_schedule *s, uint64_t step)
{
    if (srp_lr_schedule_check(s) != SRP_OK)
        return NAN;
    const double base = s->base_lr;
    if (step < s->warmup_steps)
        return (float)(base * ((double)step + 1.0) / (double)s->warmup_steps);
    const uint64_t t = step - s->warmup_steps;
    switch (s->kind) {
    case SRP_LR_CONSTANT: return (float)base;
    case SRP_LR_STEP: return (float)(base * pow((double)s->step_gamma, (double)(t / s->step_size)));
    case SRP_LR_COSINE: {
        const uint64_t span = s->total_steps - s->warmup_steps;
        const double min_lr = s->min_lr;
        if (t >= span)
            return (float)min_lr;
        const double cosv = cos(3.14159265358979323846 * (double)t / (double)span);
        return (float)(min_lr + (base - min_lr) * 0.5 * (1.0 + cosv));
    }
    }
    return NAN;
}
