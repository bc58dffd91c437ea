/* Generating with a stack of causal blocks: cached decoding
 * (srp_block_decode) against recomputing the window for every position
 * (srp_block_forward in eval), as the char LM's sampling did before the
 * cache. Default: the char LM's model (4 blocks, dim 128, 4 heads, MLP
 * 512, sigmaReparam without LayerNorm, context 128) and 512 generated
 * positions, batch 1.
 *
 * Each new position's input is a fixed random vector picked from the last
 * output (a stand-in for embedding the sampled byte), so both runs make
 * the same work. Recomputation: a forward over the whole window of
 * `context` rows (the text so far, zero-padded, as the LM fed it), the
 * oldest row leaving once it is full. Cached: one decode per position;
 * when the cache is full it restarts from the last context/2 positions
 * (the LM's policy). Also printed: the largest relative difference between
 * a decoded position and the full forward's row over the same prefix
 * (the goal is 1e-6), and the speed-up (goal: 5x). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "sigmareparam.h"

#define TABLE 256

typedef struct {
    size_t context, positions, depth, dim, heads, mlp;
} decode_shape;

typedef struct {
    const decode_shape *s;
    srp_block **blocks;
    srp_block_cache **caches;
    const float *table; /* [TABLE][dim]: the inputs a position may get */
    float *y, *x;       /* [context][dim]: a block's output; [dim]: a decoded one */
} decode_run;

static int flag(void *ctx, const char *f, const char *next)
{
    decode_shape *s = ctx;
    size_t *slot = strcmp(f, "--context") == 0     ? &s->context
                   : strcmp(f, "--positions") == 0 ? &s->positions
                   : strcmp(f, "--depth") == 0     ? &s->depth
                                                   : NULL;
    if (!slot || !next)
        return 0;
    const long v = strtol(next, NULL, 10);
    if (v < 1 || v > 100000)
        return 0;
    *slot = (size_t)v;
    return 2;
}

/* The next input's row of the table, from an output row [dim]. */
static size_t pick(const float *y, size_t dim)
{
    double s = 0.0;
    for (size_t i = 0; i < dim; i++)
        s += fabs((double)y[i]);
    return (size_t)(s * 1e3) % TABLE;
}

/* The stack's eval forward over rows [tokens][dim] of x, in place. */
static void stack_forward(decode_run *r, float *x, size_t tokens)
{
    for (size_t l = 0; l < r->s->depth; l++) {
        bench_check(srp_block_forward(r->blocks[l], x, 1, tokens, r->y, SRP_EVAL),
                    "srp_block_forward");
        memcpy(x, r->y, sizeof(float) * tokens * r->s->dim);
    }
}

static void stack_decode(decode_run *r, const float *x, float *out)
{
    memcpy(out, x, sizeof(float) * r->s->dim);
    for (size_t l = 0; l < r->s->depth; l++)
        bench_check(srp_block_decode(r->blocks[l], r->caches[l], out, 1, out), "srp_block_decode");
}

static void recompute(void *ctx)
{
    decode_run *r = ctx;
    const size_t T = r->s->context, D = r->s->dim;
    size_t *rows = bench_alloc(sizeof(size_t) * T), used = 1;
    rows[0] = 0;
    float *work = bench_alloc(sizeof(float) * T * D);
    for (size_t k = 0; k < r->s->positions; k++) {
        memset(work, 0, sizeof(float) * T * D);
        for (size_t i = 0; i < used; i++)
            memcpy(work + i * D, r->table + rows[i] * D, sizeof(float) * D);
        stack_forward(r, work, T);
        const size_t next = pick(work + (used - 1) * D, D);
        if (used == T)
            memmove(rows, rows + 1, sizeof(size_t) * --used);
        rows[used++] = next;
    }
    free(rows);
    free(work);
}

static void cached(void *ctx)
{
    decode_run *r = ctx;
    const size_t T = r->s->context, D = r->s->dim, keep = T / 2;
    size_t *rows = bench_alloc(sizeof(size_t) * T), used = 1;
    rows[0] = 0;
    for (size_t l = 0; l < r->s->depth; l++)
        srp_block_cache_reset(r->caches[l]);
    stack_decode(r, r->table, r->x);
    for (size_t k = 0; k < r->s->positions; k++) {
        const size_t next = pick(r->x, D);
        if (used == T) { /* full: again from the last keep positions */
            memmove(rows, rows + T - keep, sizeof(size_t) * keep);
            used = keep;
            for (size_t l = 0; l < r->s->depth; l++)
                srp_block_cache_reset(r->caches[l]);
            for (size_t i = 0; i < used; i++)
                stack_decode(r, r->table + rows[i] * D, r->x);
        }
        rows[used++] = next;
        stack_decode(r, r->table + next * D, r->x);
    }
    free(rows);
}

/* Largest relative difference of a decoded position from the full
 * forward's row over the same prefix, over a window of table rows. */
static double decode_error(decode_run *r)
{
    const size_t T = r->s->context, D = r->s->dim;
    float *work = bench_alloc(sizeof(float) * T * D), *out = bench_alloc(sizeof(float) * D);
    for (size_t i = 0; i < T; i++)
        memcpy(work + i * D, r->table + (i * 7 % TABLE) * D, sizeof(float) * D);
    for (size_t l = 0; l < r->s->depth; l++)
        srp_block_cache_reset(r->caches[l]);
    double worst = 0.0;
    float *prefix = bench_alloc(sizeof(float) * T * D);
    for (size_t t = 0; t < T; t++) {
        stack_decode(r, work + t * D, out);
        memcpy(prefix, work, sizeof(float) * (t + 1) * D);
        stack_forward(r, prefix, t + 1);
        double diff = 0.0, scale = 0.0;
        for (size_t i = 0; i < D; i++) {
            diff = fmax(diff, fabs((double)out[i] - prefix[t * D + i]));
            scale = fmax(scale, fabs((double)prefix[t * D + i]));
        }
        worst = fmax(worst, diff / scale);
    }
    free(work);
    free(out);
    free(prefix);
    return worst;
}

int main(int argc, char **argv)
{
    decode_shape s = {128, 512, 4, 128, 4, 512};
    bench_options o = bench_parse_args(argc, argv,
                                       "  --context N    the window (default 128)\n"
                                       "  --positions N  positions generated (default 512)\n"
                                       "  --depth N      blocks (default 4)\n",
                                       flag, &s);
    const int repeats = o.repeats ? o.repeats : 3;
    int threads[2];
    const int nthreads = bench_thread_list(&o, threads);
    bench_print_setup(&o, "decode");
    decode_run r = {.s = &s};
    r.blocks = bench_alloc(sizeof(srp_block *) * s.depth);
    r.caches = bench_alloc(sizeof(srp_block_cache *) * s.depth);
    for (size_t l = 0; l < s.depth; l++) {
        srp_block_config c = srp_block_config_default(s.dim, s.heads, s.mlp);
        c.norm = SRP_NORM_NONE;
        c.causal = 1;
        srp_block_config_seed(&c, l + 1);
        bench_check(srp_block_create(&r.blocks[l], &c, 1, s.context), "srp_block_create");
        bench_check(srp_block_cache_create(&r.caches[l], r.blocks[l], 1, s.context),
                    "srp_block_cache_create");
    }
    float *table = bench_alloc(sizeof(float) * TABLE * s.dim);
    bench_fill(table, TABLE * s.dim, 1);
    r.table = table;
    r.y = bench_alloc(sizeof(float) * s.context * s.dim);
    r.x = bench_alloc(sizeof(float) * s.dim);
    const double error = decode_error(&r);
    for (int t = 0; t < nthreads; t++) {
        srp_set_num_threads(threads[t]);
        void (*fns[2])(void *) = {recompute, cached};
        void *ctxs[2] = {&r, &r};
        double med[2];
        bench_time_interleaved(fns, ctxs, 2, repeats, med);
        if (o.json)
            printf("{\"bench\":\"decode\",\"threads\":%d,\"context\":%zu,\"positions\":%zu,"
                   "\"depth\":%zu,\"dim\":%zu,\"recompute_s\":%.4f,\"cached_s\":%.4f,"
                   "\"speedup\":%.2f,\"max_rel_diff\":%.3g}\n",
                   threads[t], s.context, s.positions, s.depth, s.dim, med[0], med[1],
                   med[0] / med[1], error);
        else
            printf("threads %d, context %zu, %zu positions, %zu blocks of dim %zu: recompute "
                   "%.3f s, cached %.3f s, speed-up %.1fx (goal 5x); decoded vs full forward: "
                   "%.2g relative (goal 1e-6)\n",
                   threads[t], s.context, s.positions, s.depth, s.dim, med[0], med[1],
                   med[0] / med[1], error);
    }
    for (size_t l = 0; l < s.depth; l++) {
        srp_block_cache_destroy(r.caches[l]);
        srp_block_destroy(r.blocks[l]);
    }
    free(r.blocks);
    free(r.caches);
    free(table);
    free(r.y);
    free(r.x);
    return 0;
}
