/* A trainer's checkpoint file: the tensors, and the model's configuration
 * as metadata (key, value strings), compared on every load so that a run
 * resumed or evaluated with other model options stops with an error that
 * names the option; reads are strict: a tensor in the file that the list
 * does not name is an error, listed by name (else a checkpoint of 8 heads
 * or 2 blocks would load silently into a model of 4 heads or 1 block). */
#ifndef EX_CHECKPOINT_FILE_H
#define EX_CHECKPOINT_FILE_H

#include <stddef.h>

#include <sigmareparam.h>

#include "error.h"

#define EX_METADATA_MAX 32

typedef struct {
    const char *pairs[2 * EX_METADATA_MAX]; /* key, value, key, value, ... */
    char values[EX_METADATA_MAX][64];
    size_t count; /* pairs */
    /* A file without metadata (an older build's): NULL: loaded, its shapes
     * alone checked; else refused, as predating this ("the stem's kernels
     * became OIHW": a change that shapes do not show). */
    const char *predates;
} ex_metadata;

/* An empty configuration but for "model" = model. */
void ex_metadata_init(ex_metadata *m, const char *model, const char *predates);
/* Appends key (a string that outlives m: a literal) = the formatted value;
 * keys are the options' names, so that an error names the option. */
void ex_metadata_add(ex_metadata *m, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends the tensors of a file (a trainer's checkpoint, a model's part of
 * it) to list. */
typedef void (*ex_tensor_fill)(void *ctx, srp_tensor_list *list);
/* Checks an open file before it is read (a resume's training options). */
typedef ex_code (*ex_checkpoint_check)(void *ctx, const srp_checkpoint *c, const char *path,
                                       ex_error *err);

/* The list fill makes, saved to path with meta; on failure the previous
 * file stays. */
ex_code ex_checkpoint_save(ex_tensor_fill fill, void *ctx, const char *path,
                           const ex_metadata *meta, ex_error *err);
/* The list fill makes, read from path once the file's metadata matches
 * meta (a file of another model is a usage error that names each field
 * that differs; one without metadata, as meta->predates says) and check
 * (NULL: none) passes. Strictly: the file holds nothing else; with
 * model_only the list is a model's, and the file may hold a run's state
 * besides ("train.*" and "optim.*"), but no other tensor. All or
 * nothing. */
ex_code ex_checkpoint_load(ex_tensor_fill fill, void *ctx, const char *path, int model_only,
                           const ex_metadata *meta, ex_checkpoint_check check, ex_error *err);

#endif
