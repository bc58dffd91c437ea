/* The entropy-collapse watch (collapse.h): when it warns, that each warning
 * fires once and re-arms when a whole window has recovered, the drop
 * window, its state through a checkpoint, bad input. The expected events
 * are worked out by hand from the rules in collapse.h, step by step in the
 * comments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#ifdef SRP_COUNT_ALLOCS
#include "alloc_counter.h"
#endif

static srp_collapse *make(size_t layers, size_t heads, uint64_t window, float fraction, float drop,
                          float uniform)
{
    srp_collapse_config c = srp_collapse_config_default(layers, heads);
    c.window = window;
    c.fraction = fraction;
    c.drop = drop;
    c.uniform = uniform;
    srp_collapse *w = NULL;
    assert_ok(srp_collapse_create(&w, &c));
    return w;
}

/* Feeds one step; returns the number of events, which land in ev. */
static size_t feed(srp_collapse *w, uint64_t step, const float *e, srp_collapse_event *ev)
{
    size_t count = 99;
    assert_ok(srp_collapse_update(w, step, e, ev, srp_collapse_max_events(w), &count));
    return count;
}

static void assert_event(const srp_collapse_event *ev, uint64_t step, size_t layer, size_t head,
                         srp_collapse_kind kind, float entropy, float reference)
{
    assert_int_equal(ev->step, step);
    assert_int_equal(ev->layer, layer);
    assert_int_equal(ev->head, head);
    assert_int_equal(ev->kind, kind);
    assert_true(ev->entropy == entropy);
    assert_true(ev->reference == reference);
}

/* Field by field: the struct has padding. */
static int same_events(const srp_collapse_event *a, const srp_collapse_event *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].step != b[i].step || a[i].layer != b[i].layer || a[i].head != b[i].head ||
            a[i].kind != b[i].kind || memcmp(&a[i].entropy, &b[i].entropy, sizeof(float)) != 0 ||
            memcmp(&a[i].reference, &b[i].reference, sizeof(float)) != 0)
            return 0;
    return 1;
}

static void test_defaults_and_names(void **state)
{
    (void)state;
    const srp_collapse_config c = srp_collapse_config_default(3, 4);
    assert_int_equal(c.layers, 3);
    assert_int_equal(c.heads, 4);
    assert_int_equal(c.window, 200);
    assert_true(c.fraction == 0.1f && c.drop == 0.8f && c.uniform == 1.0f);
    srp_collapse *w = NULL;
    assert_ok(srp_collapse_create(&w, &c));
    assert_int_equal(srp_collapse_max_events(w), 24);
    assert_int_equal(srp_collapse_max_events(NULL), 0);
    assert_string_equal(srp_collapse_kind_name(SRP_COLLAPSE_LOW), "low");
    assert_string_equal(srp_collapse_kind_name(SRP_COLLAPSE_DROP), "drop");
    assert_string_equal(srp_collapse_kind_name((srp_collapse_kind)7), "unknown");
    srp_collapse_destroy(w);
    srp_collapse_destroy(NULL);
}

/* Low line L = 0.5 (fraction 0.5 of uniform 1), re-armed at 0.625 once
 * the window (3 steps) and the step are all at or above it; drop 0.9 (a
 * fall to a tenth of the peak), so that only LOW fires here. */
static void test_low_fires_once_and_rearms(void **state)
{
    (void)state;
    srp_collapse *w = make(1, 1, 3, 0.5f, 0.9f, 1.0f);
    srp_collapse_event ev[2];
    const float e[] = {1.0f,   0.5f,   0.4f,   0.7f,   0.45f, 0.7f, 0.6f,
                       0.625f, 0.625f, 0.625f, 0.625f, 0.45f, 0.3f};
    /* s0 1.0: healthy. s1 0.5 = L is not below L. s2 0.4 < L: LOW.
     * s3 0.7 >= 0.625, but the window (1.0, 0.5, 0.4) holds 0.4: not
     * re-armed. s4 0.45 < L: still warned, no event (re-armed at s3 by
     * the step alone, it would warn again: the flood of a noisy head).
     * s5 0.7. s6 0.6: above L, under 0.625. s7-s9 0.625: the window holds
     * 0.6 (or less) until s10, whose window (s7-s9) and itself are all
     * 0.625 = 1.25 L: re-armed. s11 0.45 < L: LOW again. s12 0.3: warned. */
    const size_t want[] = {0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0};
    for (size_t s = 0; s < sizeof e / sizeof e[0]; s++) {
        const size_t n = feed(w, 100 + s, &e[s], ev);
        assert_int_equal(n, want[s]);
        if (n)
            assert_event(&ev[0], 100 + s, 0, 0, SRP_COLLAPSE_LOW, e[s], 0.5f);
    }
    srp_collapse_destroy(w);
}

/* mt-train's flood: a head whose entropy hovers at the low line, the
 * batches (of other lengths each step) lifting it over the re-arm line
 * every other step. L = 0.1, re-armed at 0.125, window 10; the head
 * alternates 0.09 and 0.13 for 100 steps: one LOW (step 0), not 50. Then
 * it recovers: at 0.5 for 10 steps the window still holds 0.13 (no
 * re-arm); at the 11th (step 110) all of it is 0.5: re-armed; at 0.05
 * (step 111) it warns again. Drop 0.95: the DROP line (0.05 of the peak,
 * 0.13 or 0.5) is never crossed. */
static void test_hovering_head_warns_once(void **state)
{
    (void)state;
    srp_collapse *w = make(1, 1, 10, 0.1f, 0.95f, 1.0f);
    srp_collapse_event ev[2];
    size_t events = 0;
    for (uint64_t s = 0; s < 100; s++) {
        const float e = s % 2 ? 0.13f : 0.09f;
        const size_t n = feed(w, s, &e, ev);
        events += n;
        if (n)
            assert_event(&ev[0], 0, 0, 0, SRP_COLLAPSE_LOW, 0.09f, 0.1f);
    }
    assert_int_equal(events, 1);
    const float healthy = 0.5f, low = 0.05f;
    for (uint64_t s = 100; s < 111; s++)
        assert_int_equal(feed(w, s, &healthy, ev), 0);
    assert_int_equal(feed(w, 111, &low, ev), 1);
    assert_event(&ev[0], 111, 0, 0, SRP_COLLAPSE_LOW, low, 0.1f);
    srp_collapse_destroy(w);
}

/* Fraction 0: no LOW ever; drop 0.5 over a window of 3, re-armed once
 * the window and the step are all at or above 0.75 of their peak. */
static void test_drop_within_the_window(void **state)
{
    (void)state;
    srp_collapse *w = make(1, 1, 3, 0.0f, 0.5f, 1.0f);
    srp_collapse_event ev[2];
    /* step 0: 1.0.  1-3: 0.8 (peak 1.0: 0.8 is not under 0.5).
     * step 4: 0.45. The window holds steps 1-3 (0.8 each); 1.0 has left it:
     * peak 0.8, 0.45 is not under 0.4: nothing, though 0.45 is under half
     * of 1.0. step 5: 0.39 < 0.4 (peak 0.8): DROP, reference 0.8.
     * step 6: 0.3: warned. step 7: 0.32: the window (0.45, 0.39, 0.3) and
     * the step have peak 0.45, trough 0.3 < 0.75 * 0.45: not re-armed.
     * step 8: 0.15: under half its peak 0.39, but still warned: nothing.
     * step 9: 0.7, its own peak, but the trough is 0.15: not re-armed (by
     * the step alone it would be, and step 10, 0.2 < 0.5 * 0.7, would warn).
     * step 10: 0.2: nothing. steps 11-13: 0.7, 0.5, 0.7: the window holds
     * 0.2 or 0.15. step 14: 0.7: the window (0.7, 0.5, 0.7) has peak 0.7,
     * trough 0.5 < 0.525: a fall of more than half the drop is still in
     * it: not re-armed (at the whole drop, 0.35, it would be). step 15: 0.7,
     * trough 0.5 still. step 16: 0.7, all of it 0.7: re-armed. step 17:
     * 0.2 < 0.5 * 0.7: DROP, reference 0.7. */
    const float e[] = {1.0f, 0.8f, 0.8f, 0.8f, 0.45f, 0.39f, 0.3f, 0.32f, 0.15f,
                       0.7f, 0.2f, 0.7f, 0.5f, 0.7f,  0.7f,  0.7f, 0.7f,  0.2f};
    const size_t want[] = {0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const float ref[] = {0, 0, 0, 0, 0, 0.8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.7f};
    for (size_t s = 0; s < sizeof e / sizeof e[0]; s++) {
        const size_t n = feed(w, s, &e[s], ev);
        assert_int_equal(n, want[s]);
        if (n)
            assert_event(&ev[0], s, 0, 0, SRP_COLLAPSE_DROP, e[s], ref[s]);
    }
    srp_collapse_destroy(w);

    /* The same sequence with a window of 4 keeps 1.0 at step 4: DROP there. */
    w = make(1, 1, 4, 0.0f, 0.5f, 1.0f);
    for (size_t s = 0; s < 4; s++)
        assert_int_equal(feed(w, s, &e[s], ev), 0);
    assert_int_equal(feed(w, 4, &e[4], ev), 1);
    assert_event(&ev[0], 4, 0, 0, SRP_COLLAPSE_DROP, 0.45f, 1.0f);
    srp_collapse_destroy(w);
}

/* A drop counts from a healthy peak only; entropies in nats with
 * uniform = log T; several layers and heads; both kinds in one step. */
static void test_layers_heads_and_both_kinds(void **state)
{
    (void)state;
    const float uniform = logf(16.0f), low = 0.2f * uniform; /* L = 0.5545 */
    srp_collapse *w = make(2, 3, 5, 0.2f, 0.6f, uniform);
    srp_collapse_event ev[12];
    float e[6] = {2.5f, 2.5f, 2.5f, 0.5f, 2.5f, 2.5f};
    /* step 0: layer 1 head 0 is at 0.5 < L: LOW (its peak, 0.5, is under
     * L: no DROP). */
    assert_int_equal(feed(w, 0, e, ev), 1);
    assert_event(&ev[0], 0, 1, 0, SRP_COLLAPSE_LOW, 0.5f, low);
    /* step 1: layer 1 head 0 falls to 0.15 (under 0.4 * 0.5, but from a
     * peak below L: no DROP); layer 0 head 2 falls 2.5 -> 0.5: LOW
     * (reference L) and DROP (0.5 < 0.4 * 2.5, reference 2.5), in that
     * order; layer 1 head 2 falls 2.5 -> 0.9: DROP only (0.9 >= L). */
    e[2] = 0.5f;
    e[3] = 0.15f;
    e[5] = 0.9f;
    assert_int_equal(feed(w, 1, e, ev), 3);
    assert_event(&ev[0], 1, 0, 2, SRP_COLLAPSE_LOW, 0.5f, low);
    assert_event(&ev[1], 1, 0, 2, SRP_COLLAPSE_DROP, 0.5f, 2.5f);
    assert_event(&ev[2], 1, 1, 2, SRP_COLLAPSE_DROP, 0.9f, 2.5f);
    assert_int_equal(feed(w, 2, e, ev), 0); /* the same again: all warned */
    srp_collapse_destroy(w);
}

/* Too small an events array: SRP_ERR_SHAPE and the watch unchanged (the
 * events come when the array is large enough); NaN/Inf; NULLs. */
static void test_bad_input_changes_nothing(void **state)
{
    (void)state;
    srp_collapse *w = make(1, 2, 3, 0.5f, 0.5f, 1.0f), *twin = make(1, 2, 3, 0.5f, 0.5f, 1.0f);
    srp_collapse_event ev[4], untouched;
    memset(&untouched, 0x5a, sizeof untouched);
    const float healthy[2] = {1.0f, 1.0f}, both[2] = {0.1f, 0.2f};
    assert_int_equal(feed(w, 0, healthy, ev), 0);
    assert_int_equal(feed(twin, 0, healthy, ev), 0);
    size_t count = 77;
    ev[0] = untouched;
    assert_status(srp_collapse_update(w, 1, both, ev, 3, &count), SRP_ERR_SHAPE); /* 4 needed */
    assert_non_null(strstr(srp_last_error_detail(), "4 warnings for events[3]"));
    assert_int_equal(count, 77);
    assert_memory_equal(&ev[0], &untouched, sizeof untouched);
    assert_status(srp_collapse_update(w, 1, both, NULL, 0, &count), SRP_ERR_SHAPE);
    const float nan2[2] = {0.3f, NAN}, inf2[2] = {INFINITY, 1.0f};
    assert_status(srp_collapse_update(w, 1, nan2, ev, 4, &count), SRP_ERR_NUMERIC);
    assert_status(srp_collapse_update(w, 1, inf2, ev, 4, &count), SRP_ERR_NUMERIC);
    assert_status(srp_collapse_update(NULL, 1, both, ev, 4, &count), SRP_ERR_INVALID_ARG);
    assert_status(srp_collapse_update(w, 1, NULL, ev, 4, &count), SRP_ERR_INVALID_ARG);
    assert_status(srp_collapse_update(w, 1, both, ev, 4, NULL), SRP_ERR_INVALID_ARG);
    assert_status(srp_collapse_update(w, 1, both, NULL, 4, &count), SRP_ERR_INVALID_ARG);
    assert_int_equal(count, 77);
    /* now both watches take the step and the next: the same events */
    srp_collapse_event evt[4];
    for (uint64_t s = 1; s < 4; s++) {
        const float *e = s == 3 ? healthy : both;
        const size_t n = feed(w, s, e, ev), nt = feed(twin, s, e, evt);
        assert_int_equal(n, nt);
        assert_int_equal(n, s == 1 ? 4 : 0);
        assert_true(same_events(ev, evt, n));
    }
    /* an update with room for nothing, when nothing fires, is fine */
    assert_ok(srp_collapse_update(w, 4, healthy, NULL, 0, &count));
    assert_int_equal(count, 0);

    /* configs */
    srp_collapse *bad = (srp_collapse *)&count;
    srp_collapse_config c = srp_collapse_config_default(2, 2);
    assert_status(srp_collapse_create(NULL, &c), SRP_ERR_INVALID_ARG);
    assert_status(srp_collapse_create(&bad, NULL), SRP_ERR_INVALID_ARG);
    assert_null(bad);
    srp_collapse_config cases[10];
    for (int i = 0; i < 10; i++)
        cases[i] = c;
    cases[0].layers = 0;
    cases[1].heads = 0;
    cases[2].window = 0;
    cases[3].window = SIZE_MAX / 2;
    cases[4].fraction = NAN;
    cases[5].fraction = 1.5f;
    cases[6].drop = -0.1f;
    cases[7].uniform = 0.0f;
    cases[8].uniform = INFINITY;
    cases[9].heads = SIZE_MAX / 2;
    for (int i = 0; i < 10; i++) {
        bad = (srp_collapse *)&count;
        assert_status(srp_collapse_create(&bad, &cases[i]), SRP_ERR_INVALID_ARG);
        assert_null(bad);
    }
    srp_collapse_destroy(w);
    srp_collapse_destroy(twin);
}

/* A pseudo-random walk of entropies that collapse and recover now and
 * then: many events of both kinds. [steps][heads] */
static void walk(float *e, size_t steps, size_t heads, uint64_t seed)
{
    srp_rng r = seeded_rng(seed);
    for (size_t h = 0; h < heads; h++) {
        double x = 2.0;
        for (size_t s = 0; s < steps; s++) {
            x += 0.3 * srp_rng_normal(&r);
            if (srp_rng_uniform(&r) < 0.03) /* a sudden collapse */
                x *= 0.1;
            x = x < 0.0 ? 0.01 : x > 3.0 ? 3.0 : x;
            e[s * heads + h] = (float)x;
        }
    }
}

/* Resumed from a checkpoint of its state at any step, a watch warns
 * exactly where the uninterrupted one does; a fresh one does not. */
static void test_state_refs_resume_exactly(void **state)
{
    (void)state;
    enum { STEPS = 400, L = 2, HH = 3, HT = L * HH };
    float *e = malloc(sizeof(float) * STEPS * HT);
    assert_non_null(e);
    walk(e, STEPS, HT, 17);
    char dir[512], path[600];
    assert_int_equal(scratch_dir_make(dir, sizeof(dir), "srp_collapse"), 0);
    snprintf(path, sizeof(path), "%s/watch.ckpt", dir);
    srp_collapse *ref = make(L, HH, 25, 0.3f, 0.7f, 3.0f);
    srp_collapse_event ev[2 * HT], evr[2 * HT];
    size_t total = 0, kinds[2] = {0, 0};
    const size_t stops[3] = {40, 131, 250};
    size_t next_stop = 0, mismatched_fresh = 0;
    srp_collapse *resumed = NULL, *fresh = NULL;
    for (size_t s = 0; s < STEPS; s++) {
        if (next_stop < 3 && s == stops[next_stop]) {
            /* save ref's state, load it into a new watch */
            srp_tensor_list *tr = NULL, *tn = NULL;
            assert_ok(srp_tensor_list_create(&tr));
            assert_ok(srp_tensor_list_create(&tn));
            srp_collapse_destroy(resumed);
            srp_collapse_destroy(fresh);
            resumed = make(L, HH, 25, 0.3f, 0.7f, 3.0f);
            fresh = make(L, HH, 25, 0.3f, 0.7f, 3.0f);
            assert_ok(srp_collapse_state_refs(ref, "train.collapse", tr));
            assert_ok(srp_collapse_state_refs(resumed, "train.collapse", tn));
            assert_int_equal(srp_tensor_list_count(tr), 4);
            const char *names[4] = {"train.collapse.ring", "train.collapse.filled",
                                    "train.collapse.next", "train.collapse.flags"};
            const srp_dtype types[4] = {SRP_DTYPE_F32, SRP_DTYPE_U64, SRP_DTYPE_U64, SRP_DTYPE_U8};
            for (size_t i = 0; i < 4; i++) {
                assert_string_equal(srp_tensor_list_refs(tr)[i].name, names[i]);
                assert_int_equal(srp_tensor_list_refs(tr)[i].dtype, types[i]);
            }
            assert_int_equal(srp_tensor_list_refs(tr)[0].shape[0], 25);
            assert_int_equal(srp_tensor_list_refs(tr)[0].shape[1], HT);
            assert_ok(
                srp_checkpoint_save(path, srp_tensor_list_refs(tr), srp_tensor_list_count(tr)));
            assert_ok(
                srp_checkpoint_load(path, srp_tensor_list_refs(tn), srp_tensor_list_count(tn)));
            srp_tensor_list_destroy(tr);
            srp_tensor_list_destroy(tn);
            next_stop++;
        }
        const size_t n = feed(ref, s, e + s * HT, ev);
        total += n;
        for (size_t i = 0; i < n; i++)
            kinds[ev[i].kind]++;
        if (resumed) {
            const size_t nr = feed(resumed, s, e + s * HT, evr);
            assert_int_equal(nr, n);
            assert_true(same_events(ev, evr, n));
            const size_t nf = feed(fresh, s, e + s * HT, evr);
            mismatched_fresh += nf != n || !same_events(ev, evr, n);
        }
    }
    /* the walk exercised both kinds, and the state mattered */
    assert_true(kinds[SRP_COLLAPSE_LOW] >= 5 && kinds[SRP_COLLAPSE_DROP] >= 5);
    assert_true(mismatched_fresh > 0);
    print_message("%zu events (%zu low, %zu drop); a fresh watch differed at %zu steps\n", total,
                  kinds[0], kinds[1], mismatched_fresh);
    srp_collapse_destroy(ref);
    srp_collapse_destroy(resumed);
    srp_collapse_destroy(fresh);
    assert_int_equal(scratch_dir_remove(dir), 0);
    free(e);
}

/* A loaded state that cannot be is refused; so are bad lists. */
static void test_corrupt_state_refused(void **state)
{
    (void)state;
    srp_collapse *w = make(1, 2, 4, 0.5f, 0.5f, 1.0f);
    srp_tensor_list *t = NULL;
    assert_ok(srp_tensor_list_create(&t));
    assert_ok(srp_collapse_state_refs(w, "c", t));
    uint64_t *filled = srp_tensor_list_refs(t)[1].data, *next = srp_tensor_list_refs(t)[2].data;
    const float e[2] = {1.0f, 1.0f};
    srp_collapse_event ev[4];
    size_t count = 5;
    *filled = 5;
    assert_status(srp_collapse_update(w, 0, e, ev, 4, &count), SRP_ERR_FORMAT);
    *filled = 0;
    *next = 4;
    assert_status(srp_collapse_update(w, 0, e, ev, 4, &count), SRP_ERR_FORMAT);
    assert_non_null(strstr(srp_last_error_detail(), "next 4 for a window of 4"));
    *next = 0;
    assert_ok(srp_collapse_update(w, 0, e, ev, 4, &count));
    assert_status(srp_collapse_state_refs(w, "c", t), SRP_ERR_INVALID_ARG); /* names taken */
    assert_status(srp_collapse_state_refs(NULL, "c", t), SRP_ERR_INVALID_ARG);
    assert_status(srp_collapse_state_refs(w, "c", NULL), SRP_ERR_INVALID_ARG);
    srp_tensor_list_destroy(t);
    srp_collapse_destroy(w);
}

#ifdef SRP_COUNT_ALLOCS
static void test_update_allocates_nothing(void **state)
{
    (void)state;
    enum { STEPS = 300, HT = 12 };
    float *e = malloc(sizeof(float) * STEPS * HT);
    assert_non_null(e);
    walk(e, STEPS, HT, 3);
    srp_collapse *w = make(3, 4, 50, 0.3f, 0.7f, 3.0f);
    srp_collapse_event ev[2 * HT];
    size_t count = 0, events = 0;
    /* the counter must see the library's mallocs, or this proves nothing
     * (as test_optim, skip where it does not) */
    alloc_counter_start();
    srp_collapse *probe = make(1, 1, 1, 0.1f, 0.8f, 1.0f);
    const int counts_library = alloc_counter_stop(NULL) > 0;
    srp_collapse_destroy(probe);
    if (!counts_library) {
        print_message("alloc counter does not see the library's mallocs: skipped\n");
        srp_collapse_destroy(w);
        free(e);
        return;
    }
    alloc_counter_start();
    for (size_t s = 0; s < STEPS; s++) {
        assert_ok(srp_collapse_update(w, s, e + s * HT, ev, 2 * HT, &count));
        events += count;
    }
    assert_int_equal(alloc_counter_stop(NULL), 0);
    assert_true(events > 0);
    srp_collapse_destroy(w);
    free(e);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_names),
        cmocka_unit_test(test_low_fires_once_and_rearms),
        cmocka_unit_test(test_hovering_head_warns_once),
        cmocka_unit_test(test_drop_within_the_window),
        cmocka_unit_test(test_layers_heads_and_both_kinds),
        cmocka_unit_test(test_bad_input_changes_nothing),
        cmocka_unit_test(test_state_refs_resume_exactly),
        cmocka_unit_test(test_corrupt_state_refused),
#ifdef SRP_COUNT_ALLOCS
        cmocka_unit_test(test_update_allocates_nothing),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
