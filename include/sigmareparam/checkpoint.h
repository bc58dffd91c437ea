/* Crash-safe checkpoints: a versioned file of named tensors. Part of
 * <sigmareparam.h>; include that.
 *
 * The file knows nothing about models: the caller lists what to save (the
 * parameters, each layer's u, sigma and gamma, srp_optim_tensor_refs, the
 * RNG state, step, epoch, data-order position, ...) as srp_tensor_ref
 * entries, and lists the same entries to load. The byte layout is in
 * docs/FORMAT.md: little-endian, a header, a table of (name, dtype, shape,
 * offset, size), the data, and a CRC32 (zlib) over everything.
 *
 * Saving writes "<path>.tmp", fsyncs it, renames it over path and fsyncs
 * the directory: a crash at any moment leaves either the old or the new
 * complete file under path. Loading reads the whole file into memory and
 * validates it (magic, version, every length and offset against the file
 * size, names, the CRC, then each requested name's dtype and shape) before
 * it copies anything: on any error the caller's buffers are unchanged. */
#ifndef SIGMAREPARAM_CHECKPOINT_H
#define SIGMAREPARAM_CHECKPOINT_H

#include <stddef.h>

#include "sigmareparam/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the file layout written by this library (docs/FORMAT.md). */
#define SRP_CHECKPOINT_FORMAT_VERSION 1
/* Longest tensor name in bytes (no NUL inside), and most dimensions. */
#define SRP_CHECKPOINT_MAX_NAME SRP_TENSOR_MAX_NAME
#define SRP_CHECKPOINT_MAX_NDIM SRP_TENSOR_MAX_NDIM

/* Writes refs[0..count) to path, atomically (see above). Errors: NULL,
 * count = 0, a NULL name or data, an empty, too long or duplicate name, an
 * unknown dtype, ndim > 4, a size that overflows: SRP_ERR_INVALID_ARG and
 * no file is touched; any failure to create, write, sync or rename:
 * SRP_ERR_IO, the temporary file is removed and path keeps its old file
 * (if only the final fsync of the directory fails, SRP_ERR_IO is returned
 * with the new file in place). */
SRP_API srp_status srp_checkpoint_save(const char *path, const srp_tensor_ref *refs, size_t count);

/* Fills refs[0..count) from path; the file may hold more tensors (e.g. the
 * optimizer state when only the model is loaded). All or nothing: on any
 * error no buffer is written. Errors: bad refs as for save:
 * SRP_ERR_INVALID_ARG; the file cannot be opened or read: SRP_ERR_IO; not
 * a checkpoint, truncated, corrupt (CRC, lengths, offsets, names) or a
 * requested name missing: SRP_ERR_FORMAT; another format version:
 * SRP_ERR_VERSION; a requested name with another dtype or shape:
 * SRP_ERR_SHAPE. Memory, during the call only: the file's size plus an index of
 * its table. */
SRP_API srp_status srp_checkpoint_load(const char *path, const srp_tensor_ref *refs, size_t count);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_CHECKPOINT_H */
