// Uses the installed library from C++: the header must compile as C++.
#include <cmath>
#include <cstdio>
#include <vector>

#include <sigmareparam.h>

int main()
{
    std::vector<float> w = {0.0f, 4.0f, 0.0f, 0.0f, 0.0f, 1.0f}; // 2x3, sigma = 4
    float sigma = 0.0f;
    if (srp_spectral_norm_exact(w.data(), 2, 3, &sigma) != SRP_OK ||
        std::fabs(sigma - 4.0f) > 1e-6f)
        return 1;
    srp_rng rng;
    srp_rng_seed(&rng, 7);
    double z = srp_rng_normal(&rng);
    if (!std::isfinite(z))
        return 1;
    std::printf("consumer_cpp: libsigmareparam %s ok (%s)\n", srp_version_string(),
                srp_status_str(SRP_OK));
    return 0;
}
