/* Plots a metrics file (JSON lines from vit-lite-train) with gnuplot: loss,
 * train and test accuracy, and every layer's per-head attention entropy
 * over the steps (the view of the paper's Figure 1). */
#ifndef VIT_PLOT_H
#define VIT_PLOT_H

#include <stddef.h>

/* 1 when a gnuplot executable is on PATH. */
int vit_have_gnuplot(void);
/* Renders metrics_path to png_path. 0 on success; otherwise 1 with a
 * message in err (size errlen). */
int vit_plot(const char *metrics_path, const char *png_path, char *err, size_t errlen);

#endif
