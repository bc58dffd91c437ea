/* sgemm throughput of each GEMM backend built in (OpenBLAS, and oneDNN
 * where the library has it) at the shapes of the models and at the square
 * ones the other benches take their peak from. */
#include <stdio.h>

#include "bench_common.h"
#include "sigmareparam.h"

int main(int argc, char **argv)
{
    bench_options o = bench_parse_args(argc, argv, NULL, NULL, NULL);
    const int repeats = o.repeats ? o.repeats : 9;
    const size_t shapes[][3] = {{256, 256, 256},    {512, 512, 512},  {1024, 1024, 1024},
                                {2048, 2048, 2048}, {6400, 384, 128}, {4096, 512, 512}};
    int threads[2];
    const int nthreads = bench_thread_list(&o, threads);
    const char *backends[2];
    const int nbackends = bench_backends(backends);
    bench_print_setup(&o, "gemm");
    if (!o.json)
        printf("%-8s %-9s %6s %6s %6s %10s %9s\n", "threads", "backend", "m", "n", "k", "median_ms",
               "GFLOP/s");
    for (int t = 0; t < nthreads; t++) {
        srp_set_num_threads(threads[t]);
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
            for (int b = 0; b < nbackends; b++) {
                double sec;
                const double gf = bench_sgemm_gflops(backends[b], shapes[s][0], shapes[s][1],
                                                     shapes[s][2], repeats, &sec);
                if (o.json)
                    printf("{\"bench\":\"gemm\",\"threads\":%d,\"backend\":\"%s\",\"m\":%zu,"
                           "\"n\":%zu,\"k\":%zu,\"median_ms\":%.4f,\"gflops\":%.2f}\n",
                           threads[t], backends[b], shapes[s][0], shapes[s][1], shapes[s][2],
                           sec * 1e3, gf);
                else
                    printf("%-8d %-9s %6zu %6zu %6zu %10.3f %9.1f\n", threads[t], backends[b],
                           shapes[s][0], shapes[s][1], shapes[s][2], sec * 1e3, gf);
            }
    }
    return 0;
}
