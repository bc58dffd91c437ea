/* Uses the installed library from C: version, a spectral norm, a power step. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <sigmareparam.h>

int main(void)
{
    if (strcmp(srp_version_string(), SRP_VERSION_STRING) != 0) {
        fprintf(stderr, "header %s but library %s\n", SRP_VERSION_STRING, srp_version_string());
        return 1;
    }
    /* diag(3, 2): sigma = 3 */
    const float w[4] = {3.0f, 0.0f, 0.0f, 2.0f};
    float sigma = 0.0f;
    if (srp_spectral_norm_exact(w, 2, 2, &sigma) != SRP_OK || fabsf(sigma - 3.0f) > 1e-6f)
        return 1;
    srp_power_iter *p = NULL;
    srp_status st = srp_power_iter_create(&p, 2, 2, 1);
    if (st == SRP_OK)
        st = srp_power_iter_step(p, w, 30, &sigma);
    srp_power_iter_destroy(p);
    if (st != SRP_OK || fabsf(sigma - 3.0f) > 1e-4f) {
        fprintf(stderr, "power iteration: %s, sigma %g\n", srp_status_str(st), sigma);
        return 1;
    }
    printf("consumer_c: libsigmareparam %s ok\n", srp_version_string());
    return 0;
}
