/* Test-only hooks (test_hooks.h). */
#include "test_hooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ex_test_fail_due(int rank, uint64_t step, const char *phase)
{
    const char *spec = getenv("EX_TEST_FAIL");
    int r;
    unsigned long long s;
    char p[32];
    return spec && sscanf(spec, "%d:%llu:%31s", &r, &s, p) == 3 && r == rank &&
           (uint64_t)s == step && strcmp(p, phase) == 0;
}

ex_code ex_test_fail(ex_error *err, uint64_t step, const char *phase)
{
    return ex_fail(err, EX_FAILED,
                   "a failure injected for a test (EX_TEST_FAIL) in the %s phase of step %llu",
                   phase, (unsigned long long)step);
}

int ex_test_clock(uint64_t steps, double *seconds)
{
    const char *spec = getenv("EX_TEST_CLOCK");
    double a, b;
    if (!spec || sscanf(spec, "%lf,%lf", &a, &b) != 2)
        return 0;
    const double n = (double)steps;
    *seconds = a * n + 0.5 * b * n * n;
    return 1;
}
