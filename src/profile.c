/* Per-part wall time of the library's work (profile.h). Counters are
 * nanoseconds in atomics, so that a stray call from another thread cannot
 * tear them. */
#define _POSIX_C_SOURCE 200809L
#include <time.h>

#include "internal.h"

static int g_enabled;
static uint64_t g_nanos[SRP_PROF_COUNT], g_calls[SRP_PROF_COUNT];

static const char *const k_names[SRP_PROF_COUNT] = {
    "linear gemm", "linear extra", "power iteration", "attention core", "attention copy",
    "gelu",        "elementwise",  "layernorm",       "loss",           "optimizer",
    "entropy",     "finite check", "bf16 rounding",   "convolution",
};

void srp_profile_enable(int on) { __atomic_store_n(&g_enabled, on != 0, __ATOMIC_RELAXED); }

void srp_profile_reset(void)
{
    for (int i = 0; i < SRP_PROF_COUNT; i++) {
        __atomic_store_n(&g_nanos[i], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&g_calls[i], 0, __ATOMIC_RELAXED);
    }
}

static int part_ok(srp_profile_part part) { return (int)part >= 0 && part < SRP_PROF_COUNT; }

double srp_profile_seconds(srp_profile_part part)
{
    return part_ok(part) ? 1e-9 * (double)__atomic_load_n(&g_nanos[part], __ATOMIC_RELAXED) : 0.0;
}

uint64_t srp_profile_calls(srp_profile_part part)
{
    return part_ok(part) ? __atomic_load_n(&g_calls[part], __ATOMIC_RELAXED) : 0;
}

const char *srp_profile_name(srp_profile_part part)
{
    return part_ok(part) ? k_names[part] : "unknown";
}

static uint64_t now_nanos(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t srp_profile_begin(void)
{
    return __atomic_load_n(&g_enabled, __ATOMIC_RELAXED) ? now_nanos() : 0;
}

void srp_profile_end(srp_profile_part part, uint64_t start)
{
    if (start == 0)
        return;
    __atomic_fetch_add(&g_nanos[part], now_nanos() - start, __ATOMIC_RELAXED);
    __atomic_fetch_add(&g_calls[part], 1, __ATOMIC_RELAXED);
}
