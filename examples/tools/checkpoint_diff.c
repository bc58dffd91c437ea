/* srp-checkpoint-diff [--reshaped] [--ignore NAME]... A B: are two
 * checkpoints the same, tensor by tensor?
 *
 * Tensors are matched by name, so a file that holds the same tensors in
 * another order is the same; dtype, shape and every byte must agree.
 * Prints one line per difference and exits 0 when there is none, 1 when
 * there is, 2 when a file cannot be read. --ignore leaves a tensor's
 * values out (a wall-clock total such as train.seconds), not its presence.
 * --reshaped accepts a tensor whose shape changed but not its dtype, its
 * element count or its bytes (a weight once stored flat, [out·in], now
 * [out, in]): the proof across a change of the stored shapes. Used for
 * the proof that a refactor leaves training bit for bit unchanged
 * (scripts/same-bits.sh). */
#include <sigmareparam.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    srp_checkpoint *file;
    srp_tensor_ref *refs; /* [count]: every tensor's info, data read in */
    size_t count;
} checkpoint_copy;

static size_t element_count(const srp_tensor_ref *r)
{
    size_t n = 1;
    for (size_t d = 0; d < r->ndim; ++d)
        n *= r->shape[d];
    return n;
}

static void copy_free(checkpoint_copy *c)
{
    for (size_t i = 0; c->refs && i < c->count; ++i)
        free(c->refs[i].data);
    free(c->refs);
    srp_checkpoint_close(c->file);
}

/* Opens path and reads every tensor into memory; 0 on failure (printed). */
static int copy_read(checkpoint_copy *c, const char *path)
{
    memset(c, 0, sizeof *c);
    srp_status st = srp_checkpoint_open(&c->file, path);
    if (st == SRP_OK) {
        c->count = srp_checkpoint_count(c->file);
        c->refs = calloc(c->count ? c->count : 1, sizeof *c->refs);
        st = c->refs ? SRP_OK : SRP_ERR_NOMEM;
    }
    for (size_t i = 0; st == SRP_OK && i < c->count; ++i) {
        st = srp_checkpoint_info(c->file, i, &c->refs[i]);
        if (st != SRP_OK)
            break;
        c->refs[i].data = malloc(element_count(&c->refs[i]) * srp_dtype_size(c->refs[i].dtype) + 1);
        if (!c->refs[i].data)
            st = SRP_ERR_NOMEM;
    }
    if (st == SRP_OK)
        st = srp_checkpoint_read(c->file, c->refs, c->count);
    if (st != SRP_OK)
        fprintf(stderr, "srp-checkpoint-diff: %s: %s (%s)\n", path, srp_status_str(st),
                srp_last_error_detail());
    return st == SRP_OK;
}

static const srp_tensor_ref *find(const checkpoint_copy *c, const char *name)
{
    for (size_t i = 0; i < c->count; ++i)
        if (strcmp(c->refs[i].name, name) == 0)
            return &c->refs[i];
    return NULL;
}

/* ignore: argv's "--ignore NAME" pairs, [count][2]. */
static int ignored(const char *name, char **ignore, size_t count)
{
    for (size_t i = 0; i < count; ++i)
        if (strcmp(ignore[2 * i + 1], name) == 0)
            return 1;
    return 0;
}

/* One line per tensor of a that b lacks or (compare) holds otherwise; the
 * count. */
static size_t report(const checkpoint_copy *a, const checkpoint_copy *b, const char *b_path,
                     int compare, int reshaped, char **ignore, size_t ignore_count)
{
    size_t differences = 0;
    for (size_t i = 0; i < a->count; ++i) {
        const srp_tensor_ref *x = &a->refs[i], *y = find(b, x->name);
        if (!y) {
            printf("%s: not in %s\n", x->name, b_path);
            ++differences;
        } else if (!compare || ignored(x->name, ignore, ignore_count)) {
            continue;
        } else if (x->dtype != y->dtype ||
                   (reshaped ? element_count(x) != element_count(y)
                             : x->ndim != y->ndim ||
                                   memcmp(x->shape, y->shape, x->ndim * sizeof *x->shape) != 0)) {
            printf("%s: dtype or shape differs\n", x->name);
            ++differences;
        } else if (memcmp(x->data, y->data,
                                     element_count(x) * srp_dtype_size(x->dtype)) != 0) {
            printf("%s: values differ\n", x->name);
            ++differences;
        }
    }
    return differences;
}

int main(int argc, char **argv)
{
    const int reshaped = argc > 1 && strcmp(argv[1], "--reshaped") == 0;
    int first = 1 + reshaped;
    while (first + 1 < argc && strcmp(argv[first], "--ignore") == 0)
        first += 2;
    if (argc - first != 2) {
        fprintf(stderr, "usage: srp-checkpoint-diff [--reshaped] [--ignore NAME]... A B\n");
        return 2;
    }
    char **ignore = argv + 1 + reshaped;
    const size_t ignore_count = (size_t)(first - 1 - reshaped) / 2;
    const char *path_a = argv[first], *path_b = argv[first + 1];
    checkpoint_copy a, b;
    const int read = copy_read(&a, path_a) & copy_read(&b, path_b);
    size_t differences = 0;
    if (read)
        differences = report(&a, &b, path_b, 1, reshaped, ignore, ignore_count) +
                      report(&b, &a, path_a, 0, reshaped, ignore, ignore_count);
    if (read && differences == 0)
        printf("same: %zu tensors\n", a.count);
    copy_free(&a);
    copy_free(&b);
    return !read ? 2 : differences != 0;
}
