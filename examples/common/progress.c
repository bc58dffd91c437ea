/* Progress lines (progress.h). */
#define _POSIX_C_SOURCE 200809L
#define SRP_UNSTABLE_API /* the library's profile (profile.h), for --profile */
#include "progress.h"

#include <sigmareparam.h>

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

double ex_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ex_progress_start(ex_progress *p)
{
    p->interactive = isatty(STDOUT_FILENO);
    p->in_line = 0;
    p->last_print = ex_now();
    p->last_step = 0;
}

int ex_progress_due(ex_progress *p, uint64_t step)
{
    return p->interactive ? ex_now() - p->last_print > 0.2 : step - p->last_step >= 50;
}

void ex_progress_print(ex_progress *p, uint64_t step, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (p->interactive)
        fputs("\r", stdout);
    vprintf(fmt, ap);
    va_end(ap);
    fputs(p->interactive ? "   " : "\n", stdout);
    fflush(stdout);
    p->in_line = p->interactive;
    p->last_print = ex_now();
    p->last_step = step;
}

void ex_progress_break(ex_progress *p)
{
    if (p->in_line) {
        fputs("\n", stdout);
        p->in_line = 0;
    }
}

void ex_format_duration(double seconds, char *buf, size_t len)
{
    const long s = seconds > 0 && seconds < 1e7 ? (long)seconds : 0;
    snprintf(buf, len, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

void ex_print_profile(FILE *to, double total, uint64_t steps, const char *rest_name)
{
    const double per = steps ? 1e3 / (double)steps : 0.0;
    double timed = 0.0;
    fprintf(to, "where the time went (%llu steps, %.2f ms per step):\n", (unsigned long long)steps,
            total * per);
    for (int p = 0; p <= SRP_PROF_COUNT; p++) {
        const int rest = p == SRP_PROF_COUNT;
        const double sec = rest ? total - timed : srp_profile_seconds((srp_profile_part)p);
        timed += rest ? 0.0 : sec;
        if (sec > 0.0 || rest)
            fprintf(to, "    %-24s %8.2f ms %6.1f%%\n",
                    rest ? rest_name : srp_profile_name((srp_profile_part)p), sec * per,
                    total > 0.0 ? 100.0 * sec / total : 0.0);
    }
}
