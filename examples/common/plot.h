/* Plots a metrics file (our JSON lines) with gnuplot: the training loss,
 * a score (accuracy, bits per character) with its evaluations, and every
 * layer's per-head attention entropy over the steps with the Theorem 3.1
 * bound beside it (the view of the paper's Figure 1). */
#ifndef EX_PLOT_H
#define EX_PLOT_H

#include "error.h"
#include "metrics.h"

typedef struct {
    const char *score_key;   /* on "train" lines, e.g. "acc" (NULL: none) */
    const char *eval_key;    /* on "eval" lines, e.g. "test_acc" (NULL: none) */
    const char *score_title; /* the panel's title, e.g. "accuracy" */
    const char *score_label; /* the train curve's legend */
    const char *eval_label;  /* the eval curve's legend */
    int unit_range;          /* 1: the score lies in [0, 1] */
} ex_plot_spec;

/* Renders metrics_path to png_path, and says so. */
ex_code ex_plot(const char *metrics_path, const char *png_path, const ex_plot_spec *spec,
                ex_error *err);

/* At a run's end, with --plot: closes the metrics file and renders it to
 * plot_path; with --plot but no --metrics, a note that the plot is drawn
 * from the metrics. */
ex_code ex_plot_at_end(ex_metrics *metrics, const char *metrics_path, const char *plot_path,
                       const ex_plot_spec *spec, ex_error *err);

#endif
