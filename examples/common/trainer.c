/* The example trainers' one skeleton (trainer.h). */
#define _POSIX_C_SOURCE 200809L /* SIGXFSZ */
#define SRP_UNSTABLE_API        /* the library's profile (profile.h), for --profile */
#include "trainer.h"

#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "test_hooks.h"

/* ---- set-up ---- */

ex_code ex_trainer_create_optimizer(ex_trainer *t, const srp_optim_config *oc,
                                    const float lr_mult[5], int gamma_lars, const char *check,
                                    ex_error *err)
{
    srp_param *p = srp_param_list_entries(t->params);
    for (size_t i = 0; i < srp_param_list_count(t->params); i++) {
        const srp_param_kind kind = srp_param_list_kind(t->params, i);
        p[i].lr_mult = lr_mult[kind];
        if (kind == SRP_PARAM_GAMMA)
            p[i].lars = gamma_lars;
    }
    const srp_status st = srp_optim_create(&t->optim, p, srp_param_list_count(t->params), oc);
    if (st != SRP_OK)
        return ex_fail_statusf(err, st, "creating the optimizer%s%s%s", check ? " (check " : "",
                               check ? check : "", check ? ")" : "");
    return EX_OK;
}

/* This rank's share of the batch, the trainer's data and model, and what
 * the skeleton keeps besides: entropy buffers, the collapse watch, the
 * weight average. */
static ex_code build(ex_trainer *t, ex_error *err)
{
    const ex_regularizers *reg = &t->opt->reg;
    /* Every rank draws the same masks for its own examples (the blocks
     * index them by the example's place in the local batch). */
    if (t->dist.size > 1 &&
        (reg->attn_dropout > 0.0f || reg->mlp_dropout > 0.0f || reg->drop_path > 0.0f))
        return ex_fail(err, EX_USAGE,
                       "--attn-dropout, --mlp-dropout and --drop-path run in one process only: "
                       "under mpirun every rank would draw the same masks");
    ex_code code = ex_dist_split_batch(&t->dist, t->opt->batch, &t->local_batch, err);
    if (code == EX_OK)
        code = t->hooks->build(t, err);
    if (code != EX_OK)
        return code;
    t->uniform = t->normalized ? 1.0f : (float)log((double)t->tokens); /* in nats */
    const size_t lh = t->layers * t->heads;
    /* One block: six [layers][heads], then [layers] and [linears]. */
    if (!(t->ent_mean = malloc(sizeof(float) * (6 * lh + t->layers + t->linears->count))))
        return ex_fail_status(err, SRP_ERR_NOMEM, "buffers");
    t->ent_min = t->ent_mean + lh;
    t->ent_norm = t->ent_min + lh;
    t->bound = t->ent_norm + lh;
    t->bound_s = t->bound + lh;
    t->bound_m_norm = t->bound_s + lh;
    t->bound_x_norm = t->bound_m_norm + lh;
    t->linear_values = t->bound_x_norm + t->layers;
    srp_status st = SRP_OK;
    if (t->average_decay > 0.0f) { /* each linear's sigma recomputed for the averages */
        srp_weight_average_config ac = srp_weight_average_config_default();
        ac.decay = t->average_decay;
        st = srp_weight_average_create(&t->average, t->params, t->linears->linears,
                                       t->linears->count, &ac);
    }
    if (st != SRP_OK)
        return ex_fail_status(err, st, "creating the weight average");
    srp_collapse_config cc = srp_collapse_config_default(t->layers, t->heads);
    cc.window = t->opt->collapse_window;
    cc.fraction = t->opt->collapse_fraction;
    cc.drop = t->opt->collapse_drop;
    cc.uniform = t->uniform;
    if ((st = srp_collapse_create(&t->watch, &cc)) != SRP_OK)
        return ex_fail_status(err, st, "creating the collapse watch (check --collapse-*)");
    t->events = malloc(sizeof(*t->events) * srp_collapse_max_events(t->watch));
    return t->events ? EX_OK : ex_fail_status(err, SRP_ERR_NOMEM, "the collapse watch");
}

/* ---- checkpoints ---- */

double ex_run_seconds(const ex_run_state *r)
{
    return r->seconds + (r->started > 0.0 ? ex_now() - r->started : 0.0);
}

/* All tensors of a checkpoint: the model's first, then the optimizer's,
 * the run's, the trainer's own, the collapse watch's and the average's. */
static void checkpoint_fill(void *ctx, srp_tensor_list *list)
{
    ex_trainer *t = ctx;
    ex_run_state *r = &t->run;
    const size_t four = 4, fp = EX_FINGERPRINT_LEN;
    t->hooks->model_refs(t, list);
    srp_optim_state_refs(t->optim, list);
    srp_tensor_list_add(list, "train.step", NULL, SRP_DTYPE_U64, 0, NULL, &r->step);
    srp_tensor_list_add(list, "train.metrics_lines", NULL, SRP_DTYPE_U64, 0, NULL,
                        &r->metrics_lines);
    srp_tensor_list_add(list, "train.ranks", NULL, SRP_DTYPE_U64, 0, NULL, &r->ranks);
    srp_tensor_list_add(list, "train.seconds", NULL, SRP_DTYPE_F64, 0, NULL, &r->seconds);
    srp_tensor_list_add(list, "train.fingerprint", NULL, SRP_DTYPE_U8, 1, &fp, r->fingerprint);
    srp_tensor_list_add(list, "train.data_rng", NULL, SRP_DTYPE_U64, 1, &four, t->data_rng.s);
    if (t->hooks->state_refs)
        t->hooks->state_refs(t, list);
    srp_collapse_state_refs(t->watch, "train.collapse", list);
    if (t->average)
        srp_weight_average_state_refs(t->average, "train.ema", list);
}

static void model_fill(void *ctx, srp_tensor_list *list)
{
    ((ex_trainer *)ctx)->hooks->model_refs(ctx, list);
}

ex_code ex_trainer_save(ex_trainer *t, ex_error *err)
{
    if (!t->opt->checkpoint_path)
        return EX_OK;
    ex_code code = EX_OK;
    if (ex_dist_is_root(&t->dist)) {
        ex_metadata meta;
        t->hooks->metadata(t, &meta);
        /* The file gets the metrics lines and the seconds so far; run.seconds
         * stays those before this run. */
        const double before = t->run.seconds;
        t->run.metrics_lines = t->metrics.lines;
        t->run.seconds = ex_run_seconds(&t->run);
        code = ex_checkpoint_save(checkpoint_fill, t, t->opt->checkpoint_path, &meta, err);
        t->run.seconds = before;
    }
    return ex_dist_agree(&t->dist, code, err);
}

/* A resume: the file's training options and ranks must be this run's; read
 * alone first, so that a run with other options hears so before any
 * tensor that they add or remove is reported. */
static ex_code check_run(void *ctx, const srp_checkpoint *c, const char *path, ex_error *err)
{
    const ex_run_state *r = &((const ex_trainer *)ctx)->run;
    char written[EX_FINGERPRINT_LEN];
    uint64_t ranks = 0;
    const srp_tensor_ref refs[2] = {
        {"train.fingerprint", SRP_DTYPE_U8, 1, {EX_FINGERPRINT_LEN}, written},
        {"train.ranks", SRP_DTYPE_U64, 0, {0}, &ranks}};
    if (srp_checkpoint_read(c, refs, 2) != SRP_OK) {
        srp_clear_last_error(); /* the whole read says what is wrong */
        return EX_OK;
    }
    written[EX_FINGERPRINT_LEN - 1] = '\0';
    if (strcmp(written, r->fingerprint) != 0)
        return ex_fail(err, EX_USAGE,
                       "%s was written by a run with other training options; resume with the "
                       "same ones.\n  checkpoint: %s\n  this run:   %s",
                       path, written, r->fingerprint);
    if (ranks != r->ranks)
        return ex_fail(err, EX_USAGE,
                       "%s was written by a run on %llu rank%s and this run has %llu: resume at "
                       "the same number of ranks (mpirun -np %llu)",
                       path, (unsigned long long)ranks, ranks == 1 ? "" : "s",
                       (unsigned long long)r->ranks, (unsigned long long)ranks);
    return EX_OK;
}

ex_code ex_trainer_load(ex_trainer *t, const char *path, int model_only, ex_error *err)
{
    ex_metadata meta;
    t->hooks->metadata(t, &meta);
    /* A model's alone leaves the run's state as it was. */
    return model_only ? ex_checkpoint_load(model_fill, t, path, 1, &meta, NULL, err)
                      : ex_checkpoint_load(checkpoint_fill, t, path, 0, &meta, check_run, err);
}

#define SHAPE_NAME "model.config"

void ex_trainer_shape_ref(srp_tensor_list *list, uint64_t *shape, size_t n)
{
    srp_tensor_list_add(list, SHAPE_NAME, NULL, SRP_DTYPE_U64, 1, &n, shape);
}

ex_code ex_trainer_load_shape(const char *path, uint64_t *shape, size_t n, ex_error *err)
{
    const srp_tensor_ref ref = {SHAPE_NAME, SRP_DTYPE_U64, 1, {n}, shape};
    const srp_status st = srp_checkpoint_load(path, &ref, 1);
    return st == SRP_OK ? EX_OK : ex_fail_statusf(err, st, "loading the checkpoint %s", path);
}

ex_code ex_trainer_load_model(ex_trainer *t, const char *path, const ex_linear_names *linears,
                              ex_error *err)
{
    ex_code code = ex_trainer_load(t, path, 1, err);
    /* The file wrote each sigma into its layer: a bad one is refused. */
    for (size_t i = 0; code == EX_OK && i < linears->count; i++) {
        srp_linear *l = linears->linears[i];
        const srp_status st = srp_linear_set_sigma(l, srp_linear_sigma(l));
        if (st != SRP_OK)
            code = ex_fail_statusf(err, st, "%s: a sigma in it is not valid", path);
    }
    return code;
}

ex_code ex_trainer_load_average(ex_trainer *t, const char *path, int *found, ex_error *err)
{
    *found = 0;
    if (!t->average)
        return EX_OK;
    srp_tensor_list *list = NULL;
    srp_status st = srp_tensor_list_create(&list);
    if (st == SRP_OK)
        st = srp_weight_average_state_refs(t->average, "train.ema", list);
    if (st == SRP_OK)
        st = srp_checkpoint_load(path, srp_tensor_list_refs(list), srp_tensor_list_count(list));
    srp_tensor_list_destroy(list);
    if (st == SRP_ERR_NOT_FOUND) { /* written without an average */
        srp_clear_last_error();
        return EX_OK;
    }
    if (st != SRP_OK)
        return ex_fail_statusf(err, st, "loading the weight average from %s", path);
    *found = 1;
    return EX_OK;
}

ex_code ex_trainer_swap_in_average(ex_trainer *t, ex_error *err)
{
    const srp_status st = t->average ? srp_weight_average_swap_in(t->average) : SRP_OK;
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "sigma of the averaged weights");
}

void ex_trainer_swap_out_average(ex_trainer *t)
{
    if (t->average)
        srp_weight_average_swap_out(t->average); /* swapped in, or nothing to do: cannot fail */
}

ex_code ex_trainer_evaluate(ex_trainer *t, size_t count, ex_eval_batch batch, double *sums,
                            size_t nsums, ex_error *err)
{
    const size_t B = t->local_batch, ranks = (size_t)t->dist.size;
    ex_code code = ex_trainer_swap_in_average(t, err);
    for (size_t first = (size_t)t->dist.rank * B; first < count && code == EX_OK;
         first += ranks * B) {
        srp_status st = batch(t, first, count - first < B ? count - first : B, sums);
        if (st == SRP_ERR_NUMERIC) {
            sums[0] += INFINITY;
            st = SRP_OK;
        }
        if (st == SRP_OK && ex_test_fail_due(t->dist.rank, t->run.step, "eval"))
            code = ex_test_fail(err, t->run.step, "eval");
        else if (st != SRP_OK)
            code = ex_fail_status(err, st, "evaluation");
    }
    ex_trainer_swap_out_average(t);
    code = ex_dist_agree(&t->dist, code, err);
    const srp_status st = code == EX_OK ? srp_dist_sum(t->dist.handle, sums, nsums) : SRP_OK;
    return st == SRP_OK ? code : ex_fail_status(err, st, "summing the evaluation over the ranks");
}

/* ---- one step ---- */

static void position(ex_trainer *t, char *buf, size_t len)
{
    buf[0] = '\0';
    if (t->hooks->position)
        t->hooks->position(t, buf, len);
}

/* One optimization step: this rank's share of the batch, its gradients
 * averaged with the other ranks', clipped, the optimizer's step, the
 * weight average's update. */
static ex_code train_step(ex_trainer *t, ex_step_record *rec, ex_error *err)
{
    const uint64_t step = t->run.step;
    double sums[1 + EX_STEP_SUMS] = {0.0};
    float loss = NAN, grad_norm = NAN;
    const char *stage = "activations"; /* the part of the step under way, for its error */
    srp_status st = t->hooks->forward_backward(t, &loss, sums + 1, &stage);
    st = srp_dist_average_gradients(t->dist.handle, st); /* every rank, failed or not */
    if (st == SRP_OK)
        st = srp_optim_clip_grad_norm(t->optim, t->opt->clip > 0.0f ? t->opt->clip : FLT_MAX,
                                      &grad_norm);
    const float lr = t->hooks->lr_at(t, step);
    if (st == SRP_OK) {
        stage = "weights";
        st = srp_optim_step(t->optim, lr);
    }
    const int injected = st == SRP_OK && ex_test_fail_due(t->dist.rank, step + 1, "step");
    if (injected)
        st = SRP_ERR_UNSUPPORTED;
    /* The batch's figures over the ranks, and whether every rank got
     * through its optimizer step: a rank that failed alone there must not
     * leave the others waiting in the next collective call. */
    sums[0] = loss;
    st = srp_dist_sum_agree(t->dist.handle, sums, 1 + t->hooks->step_sums, st);
    if (st == SRP_OK)
        st = srp_dist_sync_spectral(t->dist.handle);
    if (injected)
        return ex_test_fail(err, step + 1, "step");
    if (st == SRP_ERR_PEER)
        return ex_fail(err, EX_FAILED,
                       "step %llu failed on another rank (its message says why); every rank stops",
                       (unsigned long long)step + 1);
    if (st == SRP_ERR_NUMERIC) {
        char where[64];
        position(t, where, sizeof(where));
        ex_fail(err, EX_NONFINITE, "the %s became non-finite at step %llu%s; training stopped.%s%s",
                stage, (unsigned long long)step, where,
                t->opt->checkpoint_path ? " The last good checkpoint is " : "",
                t->opt->checkpoint_path ? t->opt->checkpoint_path : "");
        ex_append_detail(err, st);
        return EX_NONFINITE;
    }
    if (st != SRP_OK)
        return ex_fail_status(err, st, "training step");
    srp_optim_zero_grad(t->optim); /* every trainable tensor is in its list */
    if (t->average && (st = srp_weight_average_update(t->average)) != SRP_OK)
        return ex_fail_status(err, st, "the weight average");
    rec->loss = (float)(sums[0] / (double)t->dist.size);
    rec->lr = lr;
    rec->grad_norm = grad_norm;
    memcpy(rec->sums, sums + 1, sizeof(rec->sums));
    return EX_OK;
}

/* ---- after each step ---- */

/* Per-head entropy of the last forward, and with_bound the bound and its
 * terms, of the whole global batch: every rank reads its share's, they
 * agree that every rank could, then the figures are reduced over the
 * ranks (attention.h derives each reduction). */
static ex_code collect_entropy(ex_trainer *t, int with_bound, ex_error *err)
{
    const size_t H = t->heads, lh = t->layers * H;
    srp_status st = SRP_OK;
    for (size_t l = 0; l < t->layers && st == SRP_OK; l++) {
        srp_attention *a = t->attention_at(t, l);
        st = srp_attention_entropy(a, t->ent_mean + l * H, t->ent_min + l * H);
        if (st == SRP_OK && t->normalized)
            st = srp_attention_entropy_normalized(a, t->ent_norm + l * H, NULL);
        if (st == SRP_OK && with_bound)
            st = srp_attention_entropy_bound_terms(a, t->bound + l * H, t->bound_s + l * H,
                                                   t->bound_m_norm + l * H, t->bound_x_norm + l);
    }
    const ex_code code =
        ex_dist_agree_status(&t->dist, st, "attention entropy", "entropy", t->run.step, err);
    if (code != EX_OK)
        return code;
    /* Means averaged over the ranks' equal shares; minimums the least of
     * the ranks'. Full attention's bound is on each rank's minimum: the
     * least of the ranks' bounds every row of the batch. Causal attention's
     * is on each rank's mean row entropy: the mean of the ranks' bounds
     * bounds the mean of their means over equal shares. s and the norms are
     * the largest of the ranks': the bound at the largest s is the least. */
    srp_dist *dist = t->dist.handle;
    st = srp_dist_mean(dist, t->ent_mean, lh);
    if (st == SRP_OK)
        st = srp_dist_min(dist, t->ent_min, lh);
    if (st == SRP_OK && t->normalized)
        st = srp_dist_mean(dist, t->ent_norm, lh);
    if (st == SRP_OK && with_bound)
        st = t->normalized ? srp_dist_mean(dist, t->bound, lh) : srp_dist_min(dist, t->bound, lh);
    if (st == SRP_OK && with_bound)
        st = srp_dist_max(dist, t->bound_s, lh);
    if (st == SRP_OK && with_bound)
        st = srp_dist_max(dist, t->bound_m_norm, lh);
    if (st == SRP_OK && with_bound)
        st = srp_dist_max(dist, t->bound_x_norm, t->layers);
    return st == SRP_OK ? EX_OK : ex_fail_status(err, st, "attention entropy over the ranks");
}

/* The entropies the collapse watch sees and the progress line reports. */
static const float *watched(const ex_trainer *t)
{
    return t->normalized ? t->ent_norm : t->ent_mean;
}

static void write_train_metrics(ex_trainer *t, const ex_step_record *rec, int with_bound)
{
    ex_metrics *m = &t->metrics;
    const size_t L = t->layers, H = t->heads;
    ex_metrics_begin(m, "train");
    ex_metrics_number(m, "step", (double)t->run.step);
    t->hooks->train_fields(t, m, rec);
    ex_metrics_number(m, "lr", rec->lr);
    ex_metrics_number(m, "grad_norm", rec->grad_norm);
    ex_metrics_matrix(m, "entropy_mean", t->ent_mean, L, H);
    ex_metrics_matrix(m, "entropy_min", t->ent_min, L, H);
    if (t->normalized)
        ex_metrics_matrix(m, "entropy_normalized", t->ent_norm, L, H);
    if (with_bound) {
        ex_metrics_matrix(m, "entropy_bound", t->bound, L, H);
        ex_metrics_matrix(m, "entropy_bound_s", t->bound_s, L, H);
        ex_metrics_matrix(m, "entropy_bound_m_norm", t->bound_m_norm, L, H);
        ex_metrics_vector(m, "entropy_bound_x_gram_norm", t->bound_x_norm, L);
    }
    for (int which = 0; which < 2; which++) {
        for (size_t i = 0; i < t->linears->count; i++) {
            srp_linear *l = t->linears->linears[i];
            t->linear_values[i] = which == 0 ? srp_linear_sigma(l) : *srp_linear_gamma(l);
        }
        ex_metrics_named(m, which == 0 ? "sigma" : "gamma", t->linears->names, t->linear_values,
                         t->linears->count);
    }
    ex_metrics_end(m);
}

/* A collapse warning, the same in every trainer: a line on stderr for
 * people, and a metrics line of the one schema collapse.h defines. */
static void report_collapse(ex_trainer *t, const srp_collapse_event *e)
{
    const float uniform = t->uniform;
    ex_metrics *m = &t->metrics;
    ex_progress_break(&t->progress);
    if (e->kind == SRP_COLLAPSE_LOW)
        fprintf(stderr,
                "warning: step %llu: entropy collapse: layer %zu head %zu mean attention entropy "
                "%.3f is below %.3f (%.0f%% of uniform attention's %.3f)\n",
                (unsigned long long)e->step, e->layer, e->head, e->entropy, e->reference,
                100.0 * t->opt->collapse_fraction, uniform);
    else
        fprintf(stderr,
                "warning: step %llu: entropy drop: layer %zu head %zu mean attention entropy "
                "fell to %.3f from %.3f within %llu steps (uniform attention: %.3f)\n",
                (unsigned long long)e->step, e->layer, e->head, e->entropy, e->reference,
                (unsigned long long)t->opt->collapse_window, uniform);
    ex_metrics_begin(m, "collapse");
    ex_metrics_number(m, "step", (double)e->step);
    ex_metrics_number(m, "layer", (double)e->layer);
    ex_metrics_number(m, "head", (double)e->head);
    ex_metrics_string(m, "kind", srp_collapse_kind_name(e->kind));
    ex_metrics_number(m, "entropy", e->entropy);
    ex_metrics_number(m, "reference", e->reference);
    ex_metrics_number(m, "uniform", uniform);
    ex_metrics_end(m);
}

/* After each step: entropies and the collapse watch (every rank sees the
 * same entropies; rank 0 reports), the replicas' check, metrics, the
 * progress line, the trainer's own, the periodic checkpoint. */
static ex_code after_step(ex_trainer *t, const ex_step_record *rec, ex_error *err)
{
    const ex_train_options *o = t->opt;
    const uint64_t step = t->run.step;
    const int bound_now = o->bound_every && step % o->bound_every == 0;
    ex_code code = collect_entropy(t, bound_now, err);
    if (code != EX_OK)
        return code;
    size_t warnings = 0;
    const srp_status st = srp_collapse_update(t->watch, step, watched(t), t->events,
                                              srp_collapse_max_events(t->watch), &warnings);
    if (st != SRP_OK)
        return ex_fail_status(err, st, "the collapse watch");
    for (size_t i = 0; ex_dist_is_root(&t->dist) && i < warnings; i++)
        report_collapse(t, &t->events[i]);
    if (warnings && o->stop_on_collapse) {
        code = ex_trainer_save(t, err);
        return code != EX_OK ? code
                             : ex_fail(err, EX_COLLAPSE,
                                       "stopped on entropy collapse (--stop-on-collapse)%s%s",
                                       o->checkpoint_path ? "; checkpoint " : "",
                                       o->checkpoint_path ? o->checkpoint_path : "");
    }
    if (o->check_replicas && step % o->check_replicas == 0 &&
        (code = ex_dist_check_replicas(&t->dist, step, err)) != EX_OK)
        return code;
    if (step % o->log_every == 0 || bound_now)
        write_train_metrics(t, rec, bound_now);
    if (ex_progress_due(&t->progress, step) ||
        (t->hooks->progress_due && t->hooks->progress_due(t)))
        t->hooks->progress(t, rec);
    if (t->hooks->after_step && (code = t->hooks->after_step(t, err)) != EX_OK)
        return code;
    return step % o->checkpoint_every == 0 ? ex_trainer_save(t, err) : EX_OK;
}

double ex_trainer_seconds_per_step(const ex_trainer *t)
{
    return (ex_now() - t->run.started) / (double)(t->steps_this_run ? t->steps_this_run : 1);
}

float ex_trainer_lowest_entropy(const ex_trainer *t)
{
    float lowest = INFINITY;
    for (size_t i = 0; i < t->layers * t->heads; i++)
        lowest = fminf(lowest, watched(t)[i]);
    return lowest;
}

/* ---- the run ---- */

static ex_code train(ex_trainer *t, ex_error *err)
{
    const ex_train_options *o = t->opt;
    t->run.started = ex_now();
    ex_progress_start(&t->progress);
    t->progress.last_step = t->run.step;
    srp_profile_enable(o->profile);
    for (;;) {
        int done = 0;
        ex_code code = t->hooks->before_step(t, &done, err);
        if (code != EX_OK)
            return code;
        if (done)
            break;
        if (o->stop_after_steps && t->run.step >= o->stop_after_steps) {
            ex_progress_break(&t->progress);
            printf("stopped after step %llu as asked (--stop-after-steps; %.1f ms per step in "
                   "this run); resume with --resume %s\n",
                   (unsigned long long)t->run.step, 1e3 * ex_trainer_seconds_per_step(t),
                   o->checkpoint_path ? o->checkpoint_path : "(no --checkpoint given)");
            return ex_trainer_save(t, err);
        }
        ex_step_record rec = {NAN, NAN, NAN, {0.0}};
        if ((code = train_step(t, &rec, err)) != EX_OK)
            return code;
        t->run.step++;
        t->steps_this_run++;
        if ((code = after_step(t, &rec, err)) != EX_OK)
            return code;
    }
    return t->hooks->finish(t, err);
}

/* The fingerprint, the ranks, the data order's generator: what every run
 * starts from; then the trainer's --init-from or --eval-only. */
static ex_code prepare(ex_trainer *t, int *done, ex_error *err)
{
    ex_options_fingerprint(t->hooks->options, t->options, t->run.fingerprint,
                           sizeof(t->run.fingerprint));
    t->run.ranks = (uint64_t)t->dist.size;
    ex_code code = ex_dist_same_options(&t->dist, t->run.fingerprint, err);
    if (code == EX_OK)
        code = ex_dist_attach(&t->dist, srp_param_list_entries(t->params),
                              srp_param_list_count(t->params), t->linears->linears,
                              t->linears->count, err);
    if (code != EX_OK)
        return code;
    ex_dist_describe(&t->dist, stdout);
    srp_rng_seed(&t->data_rng, t->opt->seed ^ 0xda7a5eedull);
    return t->hooks->before_training ? t->hooks->before_training(t, done, err) : EX_OK;
}

/* Resumed or fresh; the metrics file opened (a resumed run keeps the lines
 * its checkpoint had seen), its header for a fresh one. */
static ex_code start(ex_trainer *t, ex_error *err)
{
    const ex_train_options *o = t->opt;
    ex_code code;
    if (o->resume_path) {
        if ((code = ex_dist_agree(&t->dist, ex_trainer_load(t, o->resume_path, 0, err), err)) !=
            EX_OK)
            return code;
        char where[64];
        position(t, where, sizeof(where));
        printf("resumed from %s at step %llu%s\n", o->resume_path, (unsigned long long)t->run.step,
               where);
    } else if (t->hooks->start_fresh) {
        t->hooks->start_fresh(t);
    }
    code = ex_metrics_open(&t->metrics, ex_dist_is_root(&t->dist) ? o->metrics_path : NULL,
                           o->resume_path ? t->run.metrics_lines : 0, err);
    if ((code = ex_dist_agree(&t->dist, code, err)) != EX_OK)
        return code;
    if (!o->resume_path) {
        ex_metrics_begin(&t->metrics, "header");
        ex_metrics_number(&t->metrics, "layers", (double)t->layers);
        ex_metrics_number(&t->metrics, "heads", (double)t->heads);
        ex_metrics_number(&t->metrics, "tokens", (double)t->tokens);
        ex_metrics_number(&t->metrics, "log_tokens", log((double)t->tokens));
        if (t->hooks->header)
            t->hooks->header(t, &t->metrics);
        ex_metrics_string(&t->metrics, "config", t->run.fingerprint);
        ex_metrics_end(&t->metrics);
    }
    return EX_OK;
}

/* The jobs of a run after the options: plot a metrics file; or another
 * job; or build, prepare, start, train, and what follows. */
static ex_code run(ex_trainer *t, ex_error *err)
{
    const ex_trainer_hooks *h = t->hooks;
    const ex_train_options *o = t->opt;
    if (o->plot_only)
        return ex_dist_is_root(&t->dist) ? ex_plot(o->plot_only, o->plot_path, h->plot, err)
                                         : EX_OK;
    srp_set_num_threads((int)o->threads);
    const int reference = (int)o->precision == EX_PRECISION_BF16_REFERENCE;
    if (reference)
        srp_set_precision_bf16_reference();
    else if (srp_set_precision(o->precision) != SRP_OK)
        return ex_fail(err, EX_USAGE, "--precision %s: %s", srp_precision_name(o->precision),
                       srp_last_error_detail());
    int done = 0;
    ex_code code = h->other_job ? h->other_job(t, &done, err) : EX_OK;
    if (code != EX_OK || done)
        return code;
    /* auto resolved: what runs is what the checkpoint's fingerprint
     * records, so that a resume where auto picks otherwise (another CPU, a
     * busy one) is refused rather than silently not bit-exact */
    const int automatic = o->precision == SRP_PRECISION_AUTO;
    if (automatic)
        t->opt->precision = srp_precision_active();
    printf("%s: libsigmareparam %s, GEMM backend %s, OpenBLAS kernels %s, %d threads, "
           "precision %s%s%s%s\n",
           h->program, srp_version_string(), srp_gemm_backend(), srp_openblas_core(),
           srp_get_num_threads(), srp_precision_name(srp_precision_active()),
           automatic   ? " (auto: "
           : reference ? " (reference path)"
                       : "",
           automatic ? srp_precision_auto_choice() : "", automatic ? ")" : "");
    if ((code = ex_dist_agree(&t->dist, build(t, err), err)) != EX_OK)
        return code;
    if (h->describe_data)
        h->describe_data(t);
    if ((code = prepare(t, &done, err)) != EX_OK || done)
        return code;
    if ((code = start(t, err)) != EX_OK)
        return code;
    h->describe_model(t);
    if ((code = train(t, err)) != EX_OK)
        return code;
    if (o->profile)
        ex_print_profile(stdout, ex_now() - t->run.started, t->steps_this_run,
                         "the trainer's own work");
    ex_dist_report(&t->dist, ex_now() - t->run.started, stdout);
    if (h->after_run && (code = h->after_run(t, err)) != EX_OK)
        return code;
    return ex_dist_is_root(&t->dist)
               ? ex_plot_at_end(&t->metrics, o->metrics_path, o->plot_path, h->plot, err)
               : EX_OK;
}

static void cleanup(ex_trainer *t)
{
    if (t->hooks->cleanup)
        t->hooks->cleanup(t);
    ex_metrics_close(&t->metrics);
    srp_collapse_destroy(t->watch);
    free(t->events);
    srp_weight_average_destroy(t->average);
    srp_optim_destroy(t->optim);
    srp_param_list_destroy(t->params);
    free(t->ent_mean); /* the entropy buffers' block */
}

int ex_trainer_main(ex_trainer *t, const ex_trainer_hooks *hooks, void *opts, int argc, char **argv)
{
    ex_error err = {""};
    t->hooks = hooks;
    t->options = opts;
    t->opt = opts;
#ifdef SIGXFSZ
    /* Writes past a file-size limit (ulimit -f) then fail with an error
     * that is reported, instead of the signal killing the run mid-write. */
    signal(SIGXFSZ, SIG_IGN);
#endif
    ex_code code = ex_dist_init(&t->dist, &argc, &argv, &err);
    if (code == EX_OK)
        code =
            ex_dist_agree(&t->dist, ex_options_parse(hooks->options, opts, argc, argv, &err), &err);
    if (code == EX_USAGE) {
        fprintf(stderr, "%s: %s\n\n", argv[0], err.message);
        if (ex_dist_is_root(&t->dist))
            ex_options_usage(hooks->options, argv[0], stderr);
        ex_dist_finalize(&t->dist);
        return ex_exit_code(code);
    }
    if (code == EX_OK)
        code = run(t, &err);
    ex_progress_break(&t->progress);
    if (code != EX_OK && code != EX_HELP)
        ex_dist_print_error(&t->dist, &err);
    cleanup(t);
    ex_dist_finalize(&t->dist);
    return ex_exit_code(code);
}
