/* vit-lite-train: trains the ViT-lite on Fashion-MNIST (or MNIST, CIFAR-10,
 * a synthetic set) with sigmaReparam, watching every attention head's
 * entropy; checkpoints and resumes exactly. `vit-lite-train --help`. */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sigmareparam.h>

#include "data.h"
#include "metrics.h"
#include "model.h"
#include "options.h"
#include "plot.h"

enum { EXIT_USAGE = 2, EXIT_NONFINITE = 3, EXIT_COLLAPSE = 4 };
#define DEFAULT_FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define FINGERPRINT_LEN 1024

/* Everything besides the model and the optimizer that a resumed run needs
 * to continue exactly. */
typedef struct {
    srp_rng data_rng, aug_rng;
    uint64_t step, epoch, pos; /* pos: batches done in this epoch */
    uint64_t metrics_lines;
    uint64_t *order; /* [train count]: this epoch's example order */
    char fingerprint[FINGERPRINT_LEN];
} train_state;

typedef struct {
    vit_options opt;
    vit_data data;
    vit_model *model;
    srp_param *params;
    size_t nparams;
    srp_optim *optim;
    srp_lr_schedule schedule;
    train_state st;
    vit_metrics metrics;
    vit_collapse_watch watch;
    uint64_t steps_per_epoch, total_steps;
    /* per-step buffers */
    float *images, *dlogits;
    int *labels;
    size_t *order_tmp;
    unsigned char *flip;
    float *ent_mean, *ent_min, *ent_bound; /* [layers][heads] */
    int interactive;
} trainer;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail_status(const char *what, srp_status st)
{
    fprintf(stderr, "error: %s: %s\n", what, srp_status_str(st));
    return 1;
}

static int load_data(trainer *t)
{
    vit_error err;
    const vit_options *o = &t->opt;
    int rc;
    if (strcmp(o->dataset, "synthetic") == 0) {
        rc = vit_make_synthetic(o->synthetic_train, o->synthetic_test, o->seed ^ 0x5717, &t->data,
                                &err);
    } else if (strcmp(o->dataset, "cifar10") == 0) {
        if (!o->data_dir) {
            fprintf(stderr, "error: --dataset cifar10 needs --data-dir (the CIFAR-10 binary "
                            "version's folder)\n");
            return EXIT_USAGE;
        }
        rc = vit_load_cifar10(o->data_dir, &t->data, &err);
    } else {
        const int fashion = strcmp(o->dataset, "fashion-mnist") == 0;
        if (!fashion && !o->data_dir) {
            fprintf(stderr, "error: --dataset mnist needs --data-dir (the folder of the four "
                            "IDX files)\n");
            return EXIT_USAGE;
        }
        const char *dir = o->data_dir ? o->data_dir : DEFAULT_FMNIST_DIR;
        rc = vit_load_idx(dir, o->data_dir ? NULL
                                           : "install the Debian package dataset-fashion-mnist "
                                             "(sudo apt-get install dataset-fashion-mnist) or "
                                             "pass --data-dir",
                          &t->data, &err);
    }
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err.text);
        return 1;
    }
    return 0;
}

static int build(trainer *t)
{
    vit_options *o = &t->opt;
    const vit_dataset *tr = &t->data.train;
    if (tr->height != tr->width || tr->height % o->model.patch != 0) {
        fprintf(stderr, "error: images are %zux%zu, which patches of %zu do not tile\n", tr->height,
                tr->width, o->model.patch);
        return EXIT_USAGE;
    }
    if (tr->count < o->batch) {
        fprintf(stderr, "error: the training set (%zu images) is smaller than a batch (%zu)\n",
                tr->count, o->batch);
        return EXIT_USAGE;
    }
    o->model.channels = tr->channels;
    o->model.image_size = tr->height;
    o->model.classes = (size_t)tr->classes;
    o->model.max_batch = o->batch;
    o->model.seed = o->seed;
    srp_status st = vit_create(&t->model, &o->model);
    if (st != SRP_OK)
        return fail_status("creating the model", st);

    t->nparams = vit_params(t->model, NULL, NULL);
    t->params = malloc(sizeof(srp_param) * t->nparams);
    srp_param_kind *kinds = malloc(sizeof(srp_param_kind) * t->nparams);
    if (!t->params || !kinds) {
        free(kinds);
        return fail_status("parameter list", SRP_ERR_NOMEM);
    }
    vit_params(t->model, t->params, kinds);
    for (size_t i = 0; i < t->nparams; i++) {
        if (kinds[i] == SRP_PARAM_GAMMA) {
            t->params[i].lr_mult = o->gamma_lr_mult;
            t->params[i].lars = o->gamma_lars;
        } else if (kinds[i] == SRP_PARAM_BIAS || kinds[i] == SRP_PARAM_EMBEDDING) {
            t->params[i].lr_mult = o->bias_lr_mult;
        }
    }
    free(kinds);
    srp_optim_config oc = srp_optim_config_default(o->optimizer);
    oc.weight_decay = o->weight_decay;
    oc.wd_mode = o->optimizer == SRP_OPTIM_LARS ? SRP_WD_COUPLED : o->wd_mode;
    oc.momentum = o->momentum;
    oc.nesterov = o->nesterov && o->momentum > 0.0f; /* torch: Nesterov needs momentum */
    oc.lars_eta = o->lars_eta;
    st = srp_optim_create(&t->optim, t->params, t->nparams, &oc);
    if (st != SRP_OK)
        return fail_status("creating the optimizer (check --momentum, --nesterov, --wd-mode)", st);

    t->steps_per_epoch = tr->count / o->batch;
    t->total_steps = t->steps_per_epoch * o->epochs;
    t->schedule = srp_lr_schedule_default(o->schedule, o->lr, t->total_steps);
    t->schedule.warmup_steps = o->warmup_steps;
    t->schedule.min_lr = o->min_lr;
    if (srp_lr_schedule_check(&t->schedule) != SRP_OK) {
        fprintf(stderr, "error: the schedule does not fit the run (--warmup %llu must be below "
                        "the %llu steps)\n",
                (unsigned long long)o->warmup_steps, (unsigned long long)t->total_steps);
        return EXIT_USAGE;
    }

    const vit_config *c = vit_get_config(t->model);
    const size_t image = tr->channels * tr->height * tr->width, lh = c->depth * c->heads;
    t->images = malloc(sizeof(float) * o->batch * image);
    t->dlogits = malloc(sizeof(float) * o->batch * c->classes);
    t->labels = malloc(sizeof(int) * o->batch);
    t->order_tmp = malloc(sizeof(size_t) * tr->count);
    t->flip = malloc(o->batch);
    t->st.order = malloc(sizeof(uint64_t) * tr->count);
    t->ent_mean = malloc(sizeof(float) * lh);
    t->ent_min = malloc(sizeof(float) * lh);
    t->ent_bound = malloc(sizeof(float) * lh);
    if (!t->images || !t->dlogits || !t->labels || !t->order_tmp || !t->flip || !t->st.order ||
        !t->ent_mean || !t->ent_min || !t->ent_bound ||
        vit_collapse_init(&t->watch, lh, o->collapse_window, o->collapse_fraction,
                          o->collapse_drop, (float)log((double)vit_tokens(t->model))))
        return fail_status("buffers", SRP_ERR_NOMEM);
    return 0;
}

/* The next epoch's order: a seeded shuffle, drawn when the previous epoch
 * ends (so a checkpoint always holds the order of the epoch it is in). */
static void shuffle_epoch(trainer *t)
{
    const size_t n = t->data.train.count;
    for (size_t i = 0; i < n; i++)
        t->order_tmp[i] = i;
    srp_rng_shuffle(&t->st.data_rng, t->order_tmp, n);
    for (size_t i = 0; i < n; i++)
        t->st.order[i] = t->order_tmp[i];
}

/* All tensors of a checkpoint: model, optimizer, trainer. */
static srp_tensor_ref *checkpoint_refs(trainer *t, size_t *count)
{
    const size_t nm = vit_state_tensors(t->model, NULL), no = srp_optim_tensor_count(t->optim);
    const size_t n = nm + no + 12;
    srp_tensor_ref *refs = calloc(n, sizeof(*refs));
    if (!refs)
        return NULL;
    vit_state_tensors(t->model, refs);
    if (srp_optim_tensor_refs(t->optim, refs + nm, no) != SRP_OK) {
        free(refs);
        return NULL;
    }
    srp_tensor_ref *r = refs + nm + no;
    const size_t train_count = t->data.train.count;
    r[0] = (srp_tensor_ref){"train.data_rng", SRP_DTYPE_U64, 1, {4}, t->st.data_rng.s};
    r[1] = (srp_tensor_ref){"train.aug_rng", SRP_DTYPE_U64, 1, {4}, t->st.aug_rng.s};
    r[2] = (srp_tensor_ref){"train.step", SRP_DTYPE_U64, 0, {0}, &t->st.step};
    r[3] = (srp_tensor_ref){"train.epoch", SRP_DTYPE_U64, 0, {0}, &t->st.epoch};
    r[4] = (srp_tensor_ref){"train.position", SRP_DTYPE_U64, 0, {0}, &t->st.pos};
    r[5] = (srp_tensor_ref){"train.order", SRP_DTYPE_U64, 1, {train_count}, t->st.order};
    r[6] = (srp_tensor_ref){"train.metrics_lines", SRP_DTYPE_U64, 0, {0}, &t->st.metrics_lines};
    r[7] = (srp_tensor_ref){"train.fingerprint", SRP_DTYPE_U8, 1, {FINGERPRINT_LEN},
                            t->st.fingerprint};
    vit_collapse_watch *w = &t->watch;
    r[8] = (srp_tensor_ref){"train.collapse_ring", SRP_DTYPE_F32, 2, {w->window, w->heads_total},
                            w->ring};
    r[9] = (srp_tensor_ref){"train.collapse_filled", SRP_DTYPE_U64, 0, {0}, &w->filled};
    r[10] = (srp_tensor_ref){"train.collapse_next", SRP_DTYPE_U64, 0, {0}, &w->next};
    r[11] = (srp_tensor_ref){"train.collapse_flags", SRP_DTYPE_U8, 2, {w->heads_total, 2},
                             w->flags};
    *count = n;
    return refs;
}

static int save_checkpoint(trainer *t)
{
    if (!t->opt.checkpoint_path)
        return 0;
    size_t n;
    srp_tensor_ref *refs = checkpoint_refs(t, &n);
    if (!refs)
        return fail_status("checkpoint table", SRP_ERR_NOMEM);
    vit_state_sync_out(t->model);
    t->st.metrics_lines = t->metrics.lines;
    const srp_status st = srp_checkpoint_save(t->opt.checkpoint_path, refs, n);
    free(refs);
    if (st != SRP_OK) {
        fprintf(stderr, "error: saving the checkpoint %s: %s\n", t->opt.checkpoint_path,
                srp_status_str(st));
        return 1;
    }
    return 0;
}

/* Loads a checkpoint into the model (model_only) or the whole run. */
static int load_checkpoint(trainer *t, const char *path, int model_only)
{
    size_t n;
    srp_tensor_ref *refs = checkpoint_refs(t, &n);
    if (!refs)
        return fail_status("checkpoint table", SRP_ERR_NOMEM);
    char expected[FINGERPRINT_LEN];
    memcpy(expected, t->st.fingerprint, sizeof(expected));
    const size_t count = model_only ? vit_state_tensors(t->model, NULL) : n;
    srp_status st = srp_checkpoint_load(path, refs, count);
    free(refs);
    if (st != SRP_OK) {
        fprintf(stderr, "error: loading the checkpoint %s: %s%s\n", path, srp_status_str(st),
                st == SRP_ERR_SHAPE || st == SRP_ERR_FORMAT
                    ? " (was it written with other model options?)"
                    : "");
        return 1;
    }
    if (!model_only && strcmp(expected, t->st.fingerprint) != 0) {
        fprintf(stderr,
                "error: %s was written by a run with other training options; resume with the "
                "same ones.\n  checkpoint: %s\n  this run:   %s\n",
                path, t->st.fingerprint, expected);
        return EXIT_USAGE;
    }
    st = vit_state_sync_in(t->model);
    if (st != SRP_OK)
        return fail_status("restoring sigma", st);
    return 0;
}

/* Mean loss and accuracy over a dataset, in eval mode. */
static int evaluate(trainer *t, const vit_dataset *d, float *loss, float *acc)
{
    const size_t batch = t->opt.batch, classes = vit_get_config(t->model)->classes;
    double loss_sum = 0.0;
    size_t correct = 0;
    for (size_t first = 0; first < d->count; first += batch) {
        const size_t n = d->count - first < batch ? d->count - first : batch;
        vit_gather_batch(d, NULL, first, n, NULL, t->images, t->labels);
        const float *logits;
        srp_status st = vit_forward(t->model, t->images, n, 0, &logits);
        float l = 0.0f;
        size_t c = 0;
        if (st == SRP_OK) {
            st = srp_cross_entropy_forward(logits, t->labels, n, classes, 0.0f, &l);
            if (st == SRP_ERR_NUMERIC) { /* a diverged model: say so, do not stop */
                l = INFINITY;
                st = SRP_OK;
            }
        }
        if (st == SRP_OK)
            st = srp_accuracy_count(logits, t->labels, n, classes, &c);
        if (st != SRP_OK)
            return fail_status("evaluation", st);
        loss_sum += (double)l * (double)n;
        correct += c;
    }
    *loss = (float)(loss_sum / (double)d->count);
    *acc = (float)correct / (float)d->count;
    return 0;
}

typedef struct {
    trainer *t;
} warn_ctx;

static void on_collapse(void *ctx, size_t index, const char *kind, float value, float reference)
{
    trainer *t = ((warn_ctx *)ctx)->t;
    const size_t heads = vit_get_config(t->model)->heads;
    const size_t layer = index / heads, head = index % heads;
    char msg[256];
    if (strcmp(kind, "low") == 0)
        snprintf(msg, sizeof(msg),
                 "entropy collapse: layer %zu head %zu mean attention entropy %.3f nats is below "
                 "%.3f (%.0f%% of log T)",
                 layer, head, value, reference, 100.0 * t->opt.collapse_fraction);
    else
        snprintf(msg, sizeof(msg),
                 "entropy drop: layer %zu head %zu mean attention entropy fell to %.3f nats from "
                 "%.3f within %llu steps",
                 layer, head, value, reference, (unsigned long long)t->opt.collapse_window);
    fprintf(stderr, "%swarning: step %llu: %s\n", t->interactive ? "\n" : "",
            (unsigned long long)t->st.step, msg);
    vit_metrics_warning(&t->metrics, t->st.step, layer, head, kind, value, msg);
}

static void format_eta(double seconds, char *buf, size_t len)
{
    const long s = seconds > 0 && seconds < 1e7 ? (long)seconds : 0;
    snprintf(buf, len, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

/* One optimization step; fills the record for metrics. Returns 0, or an
 * exit code. */
static int train_step(trainer *t, vit_train_record *rec)
{
    const vit_options *o = &t->opt;
    const size_t batch = o->batch, classes = vit_get_config(t->model)->classes;
    if (o->augment)
        for (size_t i = 0; i < batch; i++)
            t->flip[i] = (unsigned char)srp_rng_below(&t->st.aug_rng, 2);
    for (size_t i = 0; i < batch; i++)
        t->order_tmp[i] = (size_t)t->st.order[t->st.pos * batch + i];
    vit_gather_batch(&t->data.train, t->order_tmp, 0, batch, o->augment ? t->flip : NULL,
                     t->images, t->labels);
    const float *logits;
    float loss = NAN, norm = NAN;
    size_t correct = 0;
    srp_status st = vit_forward(t->model, t->images, batch, 1, &logits);
    if (st == SRP_OK)
        st = srp_cross_entropy_forward(logits, t->labels, batch, classes, o->label_smoothing, &loss);
    if (st == SRP_OK)
        st = srp_accuracy_count(logits, t->labels, batch, classes, &correct);
    if (st == SRP_OK)
        st = srp_cross_entropy_backward(logits, t->labels, batch, classes, o->label_smoothing,
                                        t->dlogits);
    if (st == SRP_OK)
        st = vit_backward(t->model, t->dlogits);
    if (st == SRP_OK)
        st = srp_optim_clip_grad_norm(t->optim, o->clip > 0.0f ? o->clip : FLT_MAX, &norm);
    const float lr = srp_lr_at(&t->schedule, t->st.step);
    if (st == SRP_OK)
        st = srp_optim_step(t->optim, lr);
    if (st == SRP_ERR_NUMERIC) {
        fprintf(stderr,
                "%serror: the %s became non-finite at step %llu (epoch %llu); training stopped. "
                "%s%s\n",
                t->interactive ? "\n" : "", isfinite(loss) ? "gradient" : "loss",
                (unsigned long long)t->st.step, (unsigned long long)t->st.epoch,
                o->checkpoint_path ? "The last good checkpoint is " : "",
                o->checkpoint_path ? o->checkpoint_path : "");
        return EXIT_NONFINITE;
    }
    if (st != SRP_OK)
        return fail_status("training step", st);
    srp_optim_zero_grad(t->optim); /* every trainable tensor is in its list */
    rec->loss = loss;
    rec->acc = (float)correct / (float)batch;
    rec->lr = lr;
    rec->grad_norm = norm;
    return 0;
}

static int collect_entropy(trainer *t, int with_bound)
{
    const vit_config *c = vit_get_config(t->model);
    for (size_t l = 0; l < c->depth; l++) {
        srp_attention *a = vit_attention_at(t->model, l);
        srp_status st = srp_attention_entropy(a, t->ent_mean + l * c->heads, t->ent_min + l * c->heads);
        if (st == SRP_OK && with_bound)
            st = srp_attention_entropy_bound(a, t->ent_bound + l * c->heads);
        if (st != SRP_OK)
            return fail_status("attention entropy", st);
    }
    return 0;
}

static int run(trainer *t)
{
    vit_options *o = &t->opt;
    const vit_config *c = vit_get_config(t->model);
    const size_t lh = c->depth * c->heads;
    double t_start = now_seconds(), t_last = t_start;
    uint64_t steps_this_run = 0, last_print_step = t->st.step;
    warn_ctx wctx = {t};
    while (t->st.epoch < o->epochs) {
        while (t->st.pos < t->steps_per_epoch) {
            if (o->stop_after_steps && t->st.step >= o->stop_after_steps) {
                printf("%sstopped after step %llu as asked (--stop-after-steps); resume with "
                       "--resume %s\n",
                       t->interactive ? "\n" : "", (unsigned long long)t->st.step,
                       o->checkpoint_path ? o->checkpoint_path : "(no --checkpoint given)");
                return save_checkpoint(t);
            }
            vit_train_record rec;
            memset(&rec, 0, sizeof(rec));
            int rc = train_step(t, &rec);
            if (rc)
                return rc;
            t->st.step++;
            t->st.pos++;
            steps_this_run++;
            const int log_now = t->st.step % o->log_every == 0;
            const int bound_now = o->bound_every && t->st.step % o->bound_every == 0;
            if ((rc = collect_entropy(t, bound_now)))
                return rc;
            if (vit_collapse_update(&t->watch, t->ent_mean, on_collapse, &wctx) && o->stop_on_collapse) {
                fprintf(stderr, "stopping on entropy collapse (--stop-on-collapse)\n");
                rc = save_checkpoint(t);
                return rc ? rc : EXIT_COLLAPSE;
            }
            if (log_now || bound_now) {
                rec.step = t->st.step;
                rec.epoch = t->st.epoch;
                rec.entropy_mean = t->ent_mean;
                rec.entropy_min = t->ent_min;
                rec.entropy_bound = bound_now ? t->ent_bound : NULL;
                vit_metrics_train(&t->metrics, &rec, t->model);
            }
            const double now = now_seconds();
            const int print_now = t->interactive ? now - t_last > 0.2
                                                 : t->st.step - last_print_step >= 50;
            if (print_now || t->st.pos == t->steps_per_epoch) {
                float lowest = INFINITY;
                for (size_t i = 0; i < lh; i++)
                    lowest = fminf(lowest, t->ent_mean[i]);
                const double per_step = (now - t_start) / (double)steps_this_run;
                char eta[32];
                format_eta(per_step * (double)(t->total_steps - t->st.step), eta, sizeof(eta));
                printf("%sepoch %llu/%zu step %llu/%llu | %.0f img/s | loss %.4f acc %.3f | "
                       "lr %.4g | lowest head entropy %.3f | ETA %s%s",
                       t->interactive ? "\r" : "", (unsigned long long)t->st.epoch + 1, o->epochs,
                       (unsigned long long)t->st.step, (unsigned long long)t->total_steps,
                       (double)o->batch / per_step, rec.loss, rec.acc, rec.lr, lowest, eta,
                       t->interactive ? "   " : "\n");
                fflush(stdout);
                t_last = now;
                last_print_step = t->st.step;
            }
            if (t->st.step % o->checkpoint_every == 0 && (rc = save_checkpoint(t)))
                return rc;
        }
        float loss, acc;
        const double t0 = now_seconds();
        int rc = evaluate(t, &t->data.test, &loss, &acc);
        if (rc)
            return rc;
        vit_metrics_eval(&t->metrics, t->st.step, t->st.epoch, loss, acc);
        printf("%sepoch %llu: test accuracy %.4f, test loss %.4f (%.0f s elapsed, eval %.1f s)\n",
               t->interactive ? "\n" : "", (unsigned long long)t->st.epoch + 1, acc, loss,
               now_seconds() - t_start, now_seconds() - t0);
        t->st.epoch++;
        t->st.pos = 0;
        if (t->st.epoch < o->epochs)
            shuffle_epoch(t);
    }
    return save_checkpoint(t);
}

static void cleanup(trainer *t)
{
    vit_metrics_close(&t->metrics);
    vit_collapse_free(&t->watch);
    srp_optim_destroy(t->optim);
    vit_destroy(t->model);
    vit_data_free(&t->data);
    free(t->params);
    free(t->images);
    free(t->dlogits);
    free(t->labels);
    free(t->order_tmp);
    free(t->flip);
    free(t->st.order);
    free(t->ent_mean);
    free(t->ent_min);
    free(t->ent_bound);
}

int main(int argc, char **argv)
{
    static trainer t;
    vit_options_default(&t.opt);
    int rc = vit_options_parse(&t.opt, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    vit_options *o = &t.opt;
    char err[512];
    if (o->plot_only) {
        if (vit_plot(o->plot_only, o->plot_path, err, sizeof(err))) {
            fprintf(stderr, "error: %s\n", err);
            return 1;
        }
        printf("wrote %s\n", o->plot_path);
        return 0;
    }
    srp_set_num_threads((int)o->threads);
    printf("vit-lite-train: libsigmareparam %s, GEMM backend %s, OpenBLAS kernels %s, %d threads\n",
           srp_version_string(), srp_gemm_backend(), srp_openblas_core(), srp_get_num_threads());
    t.interactive = isatty(STDOUT_FILENO);
    if ((rc = load_data(&t)) || (rc = build(&t))) {
        cleanup(&t);
        return rc;
    }
    vit_options_fingerprint(o, t.st.fingerprint, sizeof(t.st.fingerprint));
    srp_rng_seed(&t.st.data_rng, o->seed ^ 0xda7a5eedull);
    srp_rng_seed(&t.st.aug_rng, o->seed ^ 0xa0a0a0a0ull);

    if (o->eval_only) {
        float loss, acc;
        rc = load_checkpoint(&t, o->resume_path, 1);
        if (!rc)
            rc = evaluate(&t, &t.data.test, &loss, &acc);
        if (!rc)
            printf("test accuracy %.4f, test loss %.4f (%zu images)\n", acc, loss,
                   t.data.test.count);
        cleanup(&t);
        return rc;
    }
    if (o->resume_path) {
        if ((rc = load_checkpoint(&t, o->resume_path, 0))) {
            cleanup(&t);
            return rc;
        }
        printf("resumed from %s at step %llu (epoch %llu)\n", o->resume_path,
               (unsigned long long)t.st.step, (unsigned long long)t.st.epoch + 1);
    } else {
        shuffle_epoch(&t);
    }
    if (vit_metrics_open(&t.metrics, o->metrics_path, o->resume_path ? t.st.metrics_lines : 0, err,
                         sizeof(err))) {
        fprintf(stderr, "error: %s\n", err);
        cleanup(&t);
        return 1;
    }
    if (!o->resume_path)
        vit_metrics_header(&t.metrics, t.st.fingerprint, t.model);
    const vit_config *c = vit_get_config(t.model);
    printf("ViT-lite: %zu blocks, dim %zu, %zu heads, %zu tokens, %s%s | %s, %zu train / %zu test "
           "| %llu steps of %zu | %d threads\n",
           c->depth, c->dim, c->heads, vit_tokens(t.model),
           c->sigma_reparam ? "sigmaReparam" : "plain linears", c->layernorm ? " + LayerNorm" : "",
           o->dataset, t.data.train.count, t.data.test.count,
           (unsigned long long)t.total_steps, o->batch, srp_get_num_threads());
    rc = run(&t);
    if (rc == 0 && o->plot_path && o->metrics_path) {
        vit_metrics_close(&t.metrics);
        if (vit_plot(o->metrics_path, o->plot_path, err, sizeof(err))) {
            fprintf(stderr, "error: %s\n", err);
            rc = 1;
        } else {
            printf("wrote %s\n", o->plot_path);
        }
    } else if (rc == 0 && o->plot_path) {
        fprintf(stderr, "note: --plot needs --metrics FILE (the plot is drawn from it)\n");
    }
    cleanup(&t);
    return rc;
}
