/* The GEMM door's convolution (internal.h, srp_conv_*): oneDNN's direct
 * convolution for one NCHW shape, where the build has oneDNN and oneDNN has
 * a real kernel for the shape; otherwise no plan, and the caller runs
 * im2col and srp_sgemm (conv2d.c).
 *
 * The caller's tensors are NCHW (x, y, dy, dx) and OIHW (the kernel and its
 * gradient); oneDNN's fast kernels want layouts of their own (blocked
 * channels, or channels last). The plan asks the forward for its preferred
 * layouts, gives the backward passes the same ones (so that one reordered
 * copy of each tensor serves both), and reorders at the edges. It tries, in
 * turn: the layouts oneDNN prefers, channels last, the caller's NCHW, and
 * keeps the first where none of the three passes falls back to oneDNN's
 * reference kernel (some hundred times slower: with one input channel, the
 * backward on the preferred layouts does). The order is measured
 * (docs/PERFORMANCE.md): preferred layouts, then channels last, then NCHW.
 *
 * Everything a pass needs is made at create, a scratchpad included, so that
 * running one allocates nothing in this library. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#ifdef SRP_HAVE_ONEDNN

#include <oneapi/dnnl/dnnl.h>

/* A tensor the caller holds in its layout and a pass wants in another: the
 * pass's copy and the reorder between them (none when the layouts agree,
 * and the caller's buffer is used as it is). */
typedef struct {
    dnnl_memory_t user; /* the caller's buffer, bound per call */
    dnnl_memory_t own;  /* NULL: the pass reads or writes user itself */
    dnnl_primitive_t reorder;
} tensor;

struct srp_conv {
    int bias;
    dnnl_stream_t stream;
    dnnl_primitive_t fwd, bwd_data, bwd_weights;
    tensor x, y, dy, dx, w_fwd, w_bwd, dw;
    dnnl_memory_t b, db;
    dnnl_memory_t scratch; /* one scratchpad, the largest any step asks for */
    void *scratch_buf;
};

static int ok(dnnl_status_t s) { return s == dnnl_success; }

/* dims in the layout tag (NCHW, OIHW, a vector, or oneDNN's choice). */
static int plain_md(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims,
                    dnnl_format_tag_t tag, dnnl_data_type_t type)
{
    return ok(dnnl_memory_desc_init_by_tag(md, ndims, dims, type, tag));
}

/* md in another data type, its layout kept (a blocked layout's strides
 * count elements, so they hold for any type). */
static dnnl_memory_desc_t retyped(const dnnl_memory_desc_t *md, dnnl_data_type_t type)
{
    dnnl_memory_desc_t t = *md;
    t.data_type = type;
    return t;
}

static dnnl_primitive_attr_t user_scratchpad(void)
{
    dnnl_primitive_attr_t attr = NULL;
    if (!ok(dnnl_primitive_attr_create(&attr)))
        return NULL;
    if (!ok(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user))) {
        dnnl_primitive_attr_destroy(attr);
        return NULL;
    }
    return attr;
}

static size_t scratch_bytes(const_dnnl_primitive_desc_t pd)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

/* 1 when pd runs one of oneDNN's real kernels, not its reference one. */
static int fast_kernel(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    return ok(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl)) && impl &&
           strncmp(impl, "ref", 3) != 0;
}

/* With bf16 inputs, 1 only for the kernels test_conv2d found right: in
 * oneDNN 2.6 the bf16 1x1 kernel's backward-data pass and the GEMM-based
 * forward write wrong fp32 outputs at some shapes. */
static int trusted_bf16_kernel(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    return ok(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl)) && impl &&
           (strcmp(impl, "jit_bf16:avx512_core_bf16") == 0 ||
            strcmp(impl, "brgconv:avx512_core_bf16") == 0);
}

/* oneDNN's first offer for op_desc that kernel accepts, or NULL: its offers
 * are in its order of preference. */
static dnnl_primitive_desc_t first_accepted(const_dnnl_op_desc_t op_desc,
                                            const_dnnl_primitive_attr_t attr, dnnl_engine_t engine,
                                            const_dnnl_primitive_desc_t hint,
                                            int (*kernel)(const_dnnl_primitive_desc_t))
{
    dnnl_primitive_desc_iterator_t it = NULL;
    if (!ok(dnnl_primitive_desc_iterator_create(&it, op_desc, attr, engine, hint)))
        return NULL;
    dnnl_primitive_desc_t found = NULL;
    do {
        dnnl_primitive_desc_t pd = dnnl_primitive_desc_iterator_fetch(it);
        if (pd && kernel(pd))
            found = pd;
        else if (pd)
            dnnl_primitive_desc_destroy(pd);
    } while (!found && ok(dnnl_primitive_desc_iterator_next(it)));
    dnnl_primitive_desc_iterator_destroy(it);
    return found;
}

/* A primitive of op_desc (hint: the forward's, for a backward pass); the
 * largest scratchpad so far in *scratch. *pd_out keeps the descriptor when
 * asked for (the caller destroys it). In fp32, oneDNN's first offer, which
 * must not be its reference kernel; with bf16 inputs, its first trusted
 * one. */
static int make_pass(dnnl_primitive_t *prim, const_dnnl_op_desc_t op_desc,
                     const_dnnl_primitive_desc_t hint, dnnl_engine_t engine, int bf16,
                     size_t *scratch, dnnl_primitive_desc_t *pd_out)
{
    dnnl_primitive_attr_t attr = user_scratchpad();
    dnnl_primitive_desc_t pd = NULL;
    int made = 0;
    if (attr && bf16) {
        pd = first_accepted(op_desc, attr, engine, hint, trusted_bf16_kernel);
        made = pd && ok(dnnl_primitive_create(prim, pd));
    } else if (attr) {
        made = ok(dnnl_primitive_desc_create(&pd, op_desc, attr, engine, hint)) &&
               fast_kernel(pd) && ok(dnnl_primitive_create(prim, pd));
    }
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (made && scratch_bytes(pd) > *scratch)
        *scratch = scratch_bytes(pd);
    if (made && pd_out)
        *pd_out = pd;
    else if (pd)
        dnnl_primitive_desc_destroy(pd);
    return made;
}

/* t for a tensor whose caller's layout is user and whose pass wants want;
 * to_user: the reorder runs from the pass's copy to the caller's buffer. */
static int make_tensor(tensor *t, const dnnl_memory_desc_t *user, const dnnl_memory_desc_t *want,
                       int to_user, dnnl_engine_t engine, size_t *scratch)
{
    if (!want || !ok(dnnl_memory_create(&t->user, user, engine, DNNL_MEMORY_NONE)))
        return 0;
    if (dnnl_memory_desc_equal(user, want))
        return 1;
    if (!ok(dnnl_memory_create(&t->own, want, engine, DNNL_MEMORY_ALLOCATE)))
        return 0;
    dnnl_primitive_attr_t attr = user_scratchpad();
    dnnl_primitive_desc_t pd = NULL;
    const int made = attr &&
                     ok(dnnl_reorder_primitive_desc_create(&pd, to_user ? want : user, engine,
                                                           to_user ? user : want, engine, attr)) &&
                     ok(dnnl_primitive_create(&t->reorder, pd));
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (made && scratch_bytes(pd) > *scratch)
        *scratch = scratch_bytes(pd);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return made;
}

static void free_tensor(tensor *t)
{
    if (t->reorder)
        dnnl_primitive_destroy(t->reorder);
    if (t->own)
        dnnl_memory_destroy(t->own);
    if (t->user)
        dnnl_memory_destroy(t->user);
    memset(t, 0, sizeof(*t));
}

void srp_conv_destroy(srp_conv *p)
{
    if (!p)
        return;
    dnnl_primitive_t prims[3] = {p->fwd, p->bwd_data, p->bwd_weights};
    for (int i = 0; i < 3; i++)
        if (prims[i])
            dnnl_primitive_destroy(prims[i]);
    tensor *ts[7] = {&p->x, &p->y, &p->dy, &p->dx, &p->w_fwd, &p->w_bwd, &p->dw};
    for (int i = 0; i < 7; i++)
        free_tensor(ts[i]);
    dnnl_memory_t mems[3] = {p->b, p->db, p->scratch};
    for (int i = 0; i < 3; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    free(p->scratch_buf);
    if (p->stream)
        dnnl_stream_destroy(p->stream);
    free(p);
}

/* The three passes and the reorders around them, with the activations in
 * layout `tag` (dnnl_format_tag_any: oneDNN's choice). 0 when oneDNN
 * refuses, or offers only its reference kernel. With bf16 inputs, the
 * passes read x, the weight and dy in bf16 (the reorders into their layouts
 * round them, to nearest even) and write y, dx and dW in fp32. */
static int build(srp_conv *p, const srp_conv_desc *d, dnnl_format_tag_t tag, dnnl_engine_t engine)
{
    const size_t oh = (d->height + 2 * d->padding - d->kernel) / d->stride + 1;
    const size_t ow = (d->width + 2 * d->padding - d->kernel) / d->stride + 1;
    const dnnl_dims_t x_dims = {(dnnl_dim_t)d->batch, (dnnl_dim_t)d->in_ch, (dnnl_dim_t)d->height,
                                (dnnl_dim_t)d->width},
                      y_dims = {(dnnl_dim_t)d->batch, (dnnl_dim_t)d->out_ch, (dnnl_dim_t)oh,
                                (dnnl_dim_t)ow},
                      w_dims = {(dnnl_dim_t)d->out_ch, (dnnl_dim_t)d->in_ch, (dnnl_dim_t)d->kernel,
                                (dnnl_dim_t)d->kernel},
                      b_dims = {(dnnl_dim_t)d->out_ch},
                      strides = {(dnnl_dim_t)d->stride, (dnnl_dim_t)d->stride},
                      pad = {(dnnl_dim_t)d->padding, (dnnl_dim_t)d->padding};
    const dnnl_data_type_t in = d->bf16_inputs ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t x_user, y_user, w_user, b_md, x_want, y_want, w_any, dw_any;
    if (!plain_md(&x_user, 4, x_dims, dnnl_nchw, dnnl_f32) ||
        !plain_md(&y_user, 4, y_dims, dnnl_nchw, dnnl_f32) ||
        !plain_md(&w_user, 4, w_dims, dnnl_oihw, dnnl_f32) ||
        !plain_md(&b_md, 1, b_dims, dnnl_a, dnnl_f32) || !plain_md(&x_want, 4, x_dims, tag, in) ||
        !plain_md(&y_want, 4, y_dims, tag, dnnl_f32) ||
        !plain_md(&w_any, 4, w_dims, dnnl_format_tag_any, in) ||
        !plain_md(&dw_any, 4, w_dims, dnnl_format_tag_any, dnnl_f32))
        return 0;
    const dnnl_memory_desc_t *bias = d->bias ? &b_md : NULL;

    size_t scratch = 0;
    dnnl_convolution_desc_t op;
    dnnl_primitive_desc_t fwd_pd = NULL, data_pd = NULL, weights_pd = NULL;
    int made =
        ok(dnnl_convolution_forward_desc_init(&op, dnnl_forward_training, dnnl_convolution_direct,
                                              &x_want, &w_any, bias, &y_want, strides, pad, pad)) &&
        make_pass(&p->fwd, &op, NULL, engine, d->bf16_inputs, &scratch, &fwd_pd);
    /* The backward passes on the forward's layouts of x and y: dy in the
     * inputs' type, dx in fp32. */
    const dnnl_memory_desc_t *x_md =
        made ? dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_src_md, 0) : NULL;
    const dnnl_memory_desc_t *y_md =
        made ? dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_dst_md, 0) : NULL;
    dnnl_memory_desc_t dy_md, dx_md;
    if (made && x_md && y_md) {
        dy_md = retyped(y_md, in);
        dx_md = retyped(x_md, dnnl_f32);
    }
    made = made && x_md && y_md &&
           ok(dnnl_convolution_backward_data_desc_init(&op, dnnl_convolution_direct, &dx_md, &w_any,
                                                       &dy_md, strides, pad, pad)) &&
           make_pass(&p->bwd_data, &op, fwd_pd, engine, d->bf16_inputs, &scratch, &data_pd) &&
           ok(dnnl_convolution_backward_weights_desc_init(
               &op, dnnl_convolution_direct, x_md, &dw_any, bias, &dy_md, strides, pad, pad)) &&
           make_pass(&p->bwd_weights, &op, fwd_pd, engine, d->bf16_inputs, &scratch, &weights_pd);
    made = made && make_tensor(&p->x, &x_user, x_md, 0, engine, &scratch) &&
           make_tensor(&p->y, &y_user, y_md, 1, engine, &scratch) &&
           make_tensor(&p->dy, &y_user, &dy_md, 0, engine, &scratch) &&
           make_tensor(&p->dx, &x_user, &dx_md, 1, engine, &scratch) &&
           make_tensor(&p->w_fwd, &w_user,
                       dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_weights_md, 0), 0, engine,
                       &scratch) &&
           make_tensor(&p->w_bwd, &w_user,
                       dnnl_primitive_desc_query_md(data_pd, dnnl_query_weights_md, 0), 0, engine,
                       &scratch) &&
           make_tensor(&p->dw, &w_user,
                       dnnl_primitive_desc_query_md(weights_pd, dnnl_query_diff_weights_md, 0), 1,
                       engine, &scratch) &&
           (!d->bias || (ok(dnnl_memory_create(&p->b, &b_md, engine, DNNL_MEMORY_NONE)) &&
                         ok(dnnl_memory_create(&p->db, &b_md, engine, DNNL_MEMORY_NONE))));
    if (made && scratch) {
        /* Every pass and reorder runs with this one buffer: a plan serves
         * one caller at a time. */
        dnnl_memory_desc_t sp;
        const dnnl_dims_t bytes = {(dnnl_dim_t)scratch};
        made = (p->scratch_buf = malloc(scratch)) != NULL &&
               ok(dnnl_memory_desc_init_by_tag(&sp, 1, bytes, dnnl_u8, dnnl_a)) &&
               ok(dnnl_memory_create(&p->scratch, &sp, engine, p->scratch_buf));
    }
    dnnl_primitive_desc_t pds[3] = {fwd_pd, data_pd, weights_pd};
    for (int i = 0; i < 3; i++)
        if (pds[i])
            dnnl_primitive_desc_destroy(pds[i]);
    return made;
}

srp_status srp_conv_create(srp_conv **out, const srp_conv_desc *d)
{
    *out = NULL;
    dnnl_engine_t engine = srp_onednn_engine();
    if (!engine)
        return SRP_OK;
    /* oneDNN's preferred layouts, channels last, the caller's NCHW; with
     * bf16 inputs where a kernel for them is found right, else in fp32 */
    const dnnl_format_tag_t tags[3] = {dnnl_format_tag_any, dnnl_nhwc, dnnl_nchw};
    srp_conv_desc as = *d;
    for (int i = 0; i < 6; i++) {
        if (i == 3) {
            if (!d->bf16_inputs)
                break;
            as.bf16_inputs = 0;
        }
        srp_conv *p = calloc(1, sizeof(*p));
        if (!p)
            return SRP_ERR_NOMEM;
        p->bias = d->bias;
        if (ok(dnnl_stream_create(&p->stream, engine, dnnl_stream_default_flags)) &&
            build(p, &as, tags[i % 3], engine)) {
            *out = p;
            return SRP_OK;
        }
        srp_conv_destroy(p);
    }
    return SRP_OK;
}

static int bind(dnnl_memory_t mem, const float *data)
{
    return ok(dnnl_memory_set_data_handle(mem, (void *)data));
}

/* Runs prim with args (count of them), the scratchpad added. */
static int run(srp_conv *p, dnnl_primitive_t prim, int count, const dnnl_exec_arg_t *args)
{
    dnnl_exec_arg_t all[6];
    memcpy(all, args, sizeof(dnnl_exec_arg_t) * (size_t)count);
    if (p->scratch)
        all[count++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    return ok(dnnl_primitive_execute(prim, p->stream, count, all)) &&
           ok(dnnl_stream_wait(p->stream));
}

/* The caller's data in the pass's layout: what the pass reads. */
static dnnl_memory_t input(srp_conv *p, tensor *t, const float *data, int *good)
{
    *good = *good && bind(t->user, data);
    if (!t->own)
        return t->user;
    const dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, t->user}, {DNNL_ARG_TO, t->own}};
    *good = *good && run(p, t->reorder, 2, args);
    return t->own;
}

/* Where the pass writes what goes to data; output_done moves it there. */
static dnnl_memory_t output(tensor *t, float *data, int *good)
{
    *good = *good && bind(t->user, data);
    return t->own ? t->own : t->user;
}

static void output_done(srp_conv *p, tensor *t, int *good)
{
    if (!t->own || !*good)
        return;
    const dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, t->own}, {DNNL_ARG_TO, t->user}};
    *good = run(p, t->reorder, 2, args);
}

int srp_conv_forward(srp_conv *p, const float *x, const float *w_hat, const float *b, float *y)
{
    int good = !p->bias || bind(p->b, b);
    const dnnl_memory_t src = input(p, &p->x, x, &good), w = input(p, &p->w_fwd, w_hat, &good),
                        dst = output(&p->y, y, &good);
    const dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dst}, {DNNL_ARG_BIAS, p->b}};
    good = good && run(p, p->fwd, p->bias ? 4 : 3, args);
    output_done(p, &p->y, &good);
    return good;
}

int srp_conv_backward(srp_conv *p, const float *x, const float *w_hat, const float *dy,
                      float *dw_hat, float *db, float *dx)
{
    int good = !p->bias || bind(p->db, db);
    const dnnl_memory_t g = input(p, &p->dy, dy, &good);
    if (dx) {
        const dnnl_memory_t w = input(p, &p->w_bwd, w_hat, &good),
                            d_src = output(&p->dx, dx, &good);
        const dnnl_exec_arg_t args[3] = {
            {DNNL_ARG_DIFF_DST, g}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, d_src}};
        good = good && run(p, p->bwd_data, 3, args);
        output_done(p, &p->dx, &good);
    }
    const dnnl_memory_t src = input(p, &p->x, x, &good), d_w = output(&p->dw, dw_hat, &good);
    const dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src},
                                     {DNNL_ARG_DIFF_DST, g},
                                     {DNNL_ARG_DIFF_WEIGHTS, d_w},
                                     {DNNL_ARG_DIFF_BIAS, p->db}};
    good = good && run(p, p->bwd_weights, p->bias ? 4 : 3, args);
    output_done(p, &p->dw, &good);
    return good;
}

#else /* no oneDNN: no plan, conv2d.c runs im2col */

srp_status srp_conv_create(srp_conv **out, const srp_conv_desc *d)
{
    (void)d;
    *out = NULL;
    return SRP_OK;
}
int srp_conv_forward(srp_conv *p, const float *x, const float *w_hat, const float *b, float *y)
{
    (void)p, (void)x, (void)w_hat, (void)b, (void)y;
    return 0;
}
int srp_conv_backward(srp_conv *p, const float *x, const float *w_hat, const float *dy,
                      float *dw_hat, float *db, float *dx)
{
    (void)p, (void)x, (void)w_hat, (void)dy, (void)dw_hat, (void)db, (void)dx;
    return 0;
}
void srp_conv_destroy(srp_conv *p) { (void)p; }

#endif
