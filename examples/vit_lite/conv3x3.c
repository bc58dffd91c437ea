/* The 3x3 convolution on oneDNN (conv3x3.h): per batch size, a forward, a
 * backward-data and a backward-weights primitive, with reorders between
 * the caller's OHWI weights and the blocked layouts oneDNN's fast kernels
 * ask for (given OHWI itself, it falls back to its reference kernel, some
 * hundred times slower). */
#include "conv3x3.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "stem.h"

#define PLAN_SHAPES 3

/* A primitive with the scratchpad it runs in, allocated with it (user
 * mode), so that running it allocates nothing. */
typedef struct {
    dnnl_primitive_t prim; /* NULL: not needed */
    dnnl_memory_t scratch;
    void *scratch_buf;
} step;

/* oneDNN's layout of a weight-shaped tensor: its own memory and the
 * reorder to or from the caller's, or none when the layouts agree. */
typedef struct {
    dnnl_memory_t mem; /* NULL: the caller's buffer is used as it is */
    step reorder;
} weight_layout;

typedef struct {
    size_t batch; /* 0: unused */
    uint64_t last_used;
    step fwd, bwd_data, bwd_weights;
    weight_layout w_fwd, w_bwd_data, dw_conv;
    dnnl_memory_t x, y, b, w, dy, dx, dw, db; /* the caller's buffers; handles set per call */
} plan;

struct vit_conv3x3 {
    size_t in_side, out_side, stride, c_in, c_out;
    int input_grad;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    uint64_t clock;
    plan plans[PLAN_SHAPES];
};

static void step_free(step *s)
{
    if (s->prim)
        dnnl_primitive_destroy(s->prim);
    if (s->scratch)
        dnnl_memory_destroy(s->scratch);
    free(s->scratch_buf);
    memset(s, 0, sizeof(*s));
}

/* The primitive of pd with its scratchpad. */
static int step_make(step *s, const_dnnl_primitive_desc_t pd, dnnl_engine_t engine)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    const size_t bytes = md ? dnnl_memory_desc_get_size(md) : 0;
    if (bytes && (!(s->scratch_buf = malloc(bytes)) ||
                  dnnl_memory_create(&s->scratch, md, engine, s->scratch_buf) != dnnl_success))
        return 0;
    return dnnl_primitive_create(&s->prim, pd) == dnnl_success;
}

static dnnl_primitive_attr_t user_scratchpad_attr(void)
{
    dnnl_primitive_attr_t attr = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success)
        return NULL;
    if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return NULL;
    }
    return attr;
}

/* A primitive for op_desc (hint: the forward's, for a backward); *pd_out
 * keeps its descriptor when asked for (the caller destroys it). */
static int op_make(step *s, const_dnnl_op_desc_t op_desc, const_dnnl_primitive_desc_t hint,
                   dnnl_engine_t engine, dnnl_primitive_desc_t *pd_out)
{
    dnnl_primitive_attr_t attr = user_scratchpad_attr();
    dnnl_primitive_desc_t pd = NULL;
    const int ok =
        attr && dnnl_primitive_desc_create(&pd, op_desc, attr, engine, hint) == dnnl_success;
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    const int made = ok && step_make(s, pd, engine);
    if (made && pd_out)
        *pd_out = pd;
    else if (pd)
        dnnl_primitive_desc_destroy(pd);
    return made;
}

/* oneDNN's layout `want` of a weight whose caller's layout is `user`; to_user
 * says which way the reorder runs. */
static int layout_make(weight_layout *l, const dnnl_memory_desc_t *want,
                       const dnnl_memory_desc_t *user, int to_user, dnnl_engine_t engine)
{
    if (!want)
        return 0;
    if (dnnl_memory_desc_equal(want, user))
        return 1;
    if (dnnl_memory_create(&l->mem, want, engine, DNNL_MEMORY_ALLOCATE) != dnnl_success)
        return 0;
    dnnl_primitive_attr_t attr = user_scratchpad_attr();
    dnnl_primitive_desc_t pd = NULL;
    const int ok = attr && dnnl_reorder_primitive_desc_create(&pd, to_user ? want : user, engine,
                                                              to_user ? user : want, engine,
                                                              attr) == dnnl_success;
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    const int made = ok && step_make(&l->reorder, pd, engine);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return made;
}

static void layout_free(weight_layout *l)
{
    if (l->mem)
        dnnl_memory_destroy(l->mem);
    step_free(&l->reorder);
    memset(l, 0, sizeof(*l));
}

static void plan_free(plan *p)
{
    step_free(&p->fwd);
    step_free(&p->bwd_data);
    step_free(&p->bwd_weights);
    layout_free(&p->w_fwd);
    layout_free(&p->w_bwd_data);
    layout_free(&p->dw_conv);
    dnnl_memory_t mems[8] = {p->x, p->y, p->b, p->w, p->dy, p->dx, p->dw, p->db};
    for (int i = 0; i < 8; i++)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    memset(p, 0, sizeof(*p));
}

static int plan_make(const vit_conv3x3 *c, size_t batch, plan *p)
{
    const dnnl_dim_t B = (dnnl_dim_t)batch, C = (dnnl_dim_t)c->c_in, K = (dnnl_dim_t)c->c_out,
                     S = (dnnl_dim_t)c->in_side, O = (dnnl_dim_t)c->out_side,
                     s = (dnnl_dim_t)c->stride;
    /* padding 1 on both sides: (S - 3 + 2) / s + 1 = O, as PyTorch's */
    const dnnl_dims_t x_dims = {B, C, S, S}, y_dims = {B, K, O, O}, w_dims = {K, C, 3, 3},
                      b_dims = {K}, strides = {s, s}, pad = {1, 1};
    dnnl_memory_desc_t x_md, y_md, w_md, w_any, b_md;
    if (dnnl_memory_desc_init_by_tag(&x_md, 4, x_dims, dnnl_f32, dnnl_nhwc) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&y_md, 4, y_dims, dnnl_f32, dnnl_nhwc) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&w_md, 4, w_dims, dnnl_f32, dnnl_ohwi) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&w_any, 4, w_dims, dnnl_f32, dnnl_format_tag_any) !=
            dnnl_success ||
        dnnl_memory_desc_init_by_tag(&b_md, 1, b_dims, dnnl_f32, dnnl_a) != dnnl_success)
        return 0;

    dnnl_convolution_desc_t fwd_d, data_d, weights_d;
    dnnl_primitive_desc_t fwd_pd = NULL;
    int ok = dnnl_convolution_forward_desc_init(&fwd_d, dnnl_forward_training,
                                                dnnl_convolution_direct, &x_md, &w_any, &b_md,
                                                &y_md, strides, pad, pad) == dnnl_success &&
             op_make(&p->fwd, &fwd_d, NULL, c->engine, &fwd_pd) &&
             layout_make(&p->w_fwd, dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_weights_md, 0),
                         &w_md, 0, c->engine);
    if (ok && c->input_grad) {
        dnnl_primitive_desc_t data_pd = NULL;
        ok = dnnl_convolution_backward_data_desc_init(&data_d, dnnl_convolution_direct, &x_md,
                                                      &w_any, &y_md, strides, pad,
                                                      pad) == dnnl_success &&
             op_make(&p->bwd_data, &data_d, fwd_pd, c->engine, &data_pd) &&
             layout_make(&p->w_bwd_data,
                         dnnl_primitive_desc_query_md(data_pd, dnnl_query_weights_md, 0), &w_md, 0,
                         c->engine);
        if (data_pd)
            dnnl_primitive_desc_destroy(data_pd);
    }
    if (ok) {
        dnnl_primitive_desc_t weights_pd = NULL;
        ok = dnnl_convolution_backward_weights_desc_init(&weights_d, dnnl_convolution_direct, &x_md,
                                                         &w_any, &b_md, &y_md, strides, pad,
                                                         pad) == dnnl_success &&
             op_make(&p->bwd_weights, &weights_d, fwd_pd, c->engine, &weights_pd) &&
             layout_make(&p->dw_conv,
                         dnnl_primitive_desc_query_md(weights_pd, dnnl_query_diff_weights_md, 0),
                         &w_md, 1, c->engine);
        if (weights_pd)
            dnnl_primitive_desc_destroy(weights_pd);
    }
    if (fwd_pd)
        dnnl_primitive_desc_destroy(fwd_pd);
    /* the caller's buffers, bound to their data per call */
    const struct {
        dnnl_memory_t *mem;
        const dnnl_memory_desc_t *md;
    } user[8] = {{&p->x, &x_md},  {&p->y, &y_md},  {&p->b, &b_md},  {&p->w, &w_md},
                 {&p->dy, &y_md}, {&p->dx, &x_md}, {&p->dw, &w_md}, {&p->db, &b_md}};
    for (int i = 0; ok && i < 8; i++)
        ok = dnnl_memory_create(user[i].mem, user[i].md, c->engine, DNNL_MEMORY_NONE) ==
             dnnl_success;
    if (!ok) {
        plan_free(p);
        return 0;
    }
    p->batch = batch;
    return 1;
}

srp_status vit_conv3x3_create(vit_conv3x3 **out, size_t in_side, size_t stride, size_t in_channels,
                              size_t out_channels, int input_grad)
{
    *out = NULL;
    if (in_side == 0 || stride == 0 || in_channels == 0 || out_channels == 0)
        return SRP_ERR_INVALID_ARG;
    vit_conv3x3 *c = calloc(1, sizeof(*c));
    if (!c)
        return SRP_ERR_NOMEM;
    c->in_side = in_side;
    c->stride = stride;
    c->out_side = vit_stem_out_side(in_side, stride);
    c->c_in = in_channels;
    c->c_out = out_channels;
    c->input_grad = input_grad != 0;
    if (dnnl_engine_create(&c->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&c->stream, c->engine, dnnl_stream_default_flags) != dnnl_success) {
        vit_conv3x3_destroy(c);
        return SRP_ERR_UNSUPPORTED;
    }
    *out = c;
    return SRP_OK;
}

void vit_conv3x3_destroy(vit_conv3x3 *c)
{
    if (!c)
        return;
    for (int i = 0; i < PLAN_SHAPES; i++)
        plan_free(&c->plans[i]);
    if (c->stream)
        dnnl_stream_destroy(c->stream);
    if (c->engine)
        dnnl_engine_destroy(c->engine);
    free(c);
}

/* The plan for this batch size: a kept one, or a new one in place of the
 * least recently used. */
static plan *plan_for(vit_conv3x3 *c, size_t batch)
{
    plan *oldest = &c->plans[0];
    for (int i = 0; i < PLAN_SHAPES; i++) {
        plan *p = &c->plans[i];
        if (p->batch == batch) {
            p->last_used = ++c->clock;
            return p;
        }
        if (p->last_used < oldest->last_used)
            oldest = p;
    }
    plan fresh;
    memset(&fresh, 0, sizeof(fresh));
    if (!plan_make(c, batch, &fresh))
        return NULL;
    plan_free(oldest);
    *oldest = fresh;
    oldest->last_used = ++c->clock;
    return oldest;
}

static int bind(dnnl_memory_t mem, const float *data)
{
    return dnnl_memory_set_data_handle(mem, (void *)data) == dnnl_success;
}

/* Runs s with args, its scratchpad added. */
static int run(vit_conv3x3 *c, const step *s, int count, const dnnl_exec_arg_t *args)
{
    dnnl_exec_arg_t all[6];
    memcpy(all, args, sizeof(dnnl_exec_arg_t) * (size_t)count);
    if (s->scratch)
        all[count++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, s->scratch};
    return dnnl_primitive_execute(s->prim, c->stream, count, all) == dnnl_success &&
           dnnl_stream_wait(c->stream) == dnnl_success;
}

/* The caller's weights w in oneDNN's layout l (a reorder when they differ). */
static dnnl_memory_t weights_in(vit_conv3x3 *c, weight_layout *l, dnnl_memory_t w, int *ok)
{
    if (!l->mem)
        return w;
    const dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, w}, {DNNL_ARG_TO, l->mem}};
    *ok = *ok && run(c, &l->reorder, 2, args);
    return l->mem;
}

srp_status vit_conv3x3_forward(vit_conv3x3 *c, size_t batch, const float *x, const float *w,
                               const float *b, float *y)
{
    if (!c || !x || !w || !b || !y || batch == 0)
        return SRP_ERR_INVALID_ARG;
    plan *p = plan_for(c, batch);
    if (!p)
        return SRP_ERR_UNSUPPORTED;
    int ok = bind(p->x, x) && bind(p->w, w) && bind(p->b, b) && bind(p->y, y);
    const dnnl_memory_t wf = weights_in(c, &p->w_fwd, p->w, &ok);
    const dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, p->x}, {DNNL_ARG_WEIGHTS, wf}, {DNNL_ARG_BIAS, p->b}, {DNNL_ARG_DST, p->y}};
    return ok && run(c, &p->fwd, 4, args) ? SRP_OK : SRP_ERR_UNSUPPORTED;
}

srp_status vit_conv3x3_backward(vit_conv3x3 *c, size_t batch, const float *x, const float *w,
                                const float *dy, float *dw, float *db, float *dx)
{
    if (!c || !x || !w || !dy || !dw || !db || batch == 0 || (c->input_grad && !dx))
        return SRP_ERR_INVALID_ARG;
    plan *p = plan_for(c, batch);
    if (!p)
        return SRP_ERR_UNSUPPORTED;
    int ok =
        bind(p->x, x) && bind(p->w, w) && bind(p->dy, dy) && bind(p->dw, dw) && bind(p->db, db);
    if (ok && c->input_grad) {
        ok = bind(p->dx, dx);
        const dnnl_memory_t wb = weights_in(c, &p->w_bwd_data, p->w, &ok);
        const dnnl_exec_arg_t args[3] = {
            {DNNL_ARG_DIFF_DST, p->dy}, {DNNL_ARG_WEIGHTS, wb}, {DNNL_ARG_DIFF_SRC, p->dx}};
        ok = ok && run(c, &p->bwd_data, 3, args);
    }
    const dnnl_memory_t dwc = p->dw_conv.mem ? p->dw_conv.mem : p->dw;
    const dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->x},
                                     {DNNL_ARG_DIFF_DST, p->dy},
                                     {DNNL_ARG_DIFF_WEIGHTS, dwc},
                                     {DNNL_ARG_DIFF_BIAS, p->db}};
    ok = ok && run(c, &p->bwd_weights, 4, args);
    if (ok && p->dw_conv.mem) {
        const dnnl_exec_arg_t back[2] = {{DNNL_ARG_FROM, dwc}, {DNNL_ARG_TO, p->dw}};
        ok = run(c, &p->dw_conv.reorder, 2, back);
    }
    return ok ? SRP_OK : SRP_ERR_UNSUPPORTED;
}
