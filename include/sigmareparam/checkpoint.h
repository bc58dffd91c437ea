/* Crash-safe checkpoints: a versioned file of named tensors and string
 * metadata. Part of <sigmareparam.h>; include that.
 *
 * The file knows nothing about models: the caller lists what to save (the
 * parameters, each layer's u, sigma and gamma, srp_optim_tensor_refs, the
 * RNG state, step, epoch, data-order position, ...) as srp_tensor_ref
 * entries, and lists the same entries to load. What the model is (its
 * architecture: heads, depth, widths) can go with them as metadata, string
 * keys and values, read back without the tensors and compared on load. The
 * byte layout is in docs/FORMAT.md: little-endian, a header, a table of
 * (name, dtype, shape, offset, size), the metadata, the data, and a CRC32
 * (zlib) over everything.
 *
 * Saving writes "<path>.tmp", fsyncs it, renames it over path and fsyncs
 * the directory: a crash at any moment leaves either the old or the new
 * complete file under path. Opening reads the whole file into memory and
 * validates it (magic, version, every length and offset against the file
 * size, names, metadata, the CRC); a read then checks each requested name's
 * presence, dtype and shape before it copies anything: on any error the
 * caller's buffers are unchanged. Every failure leaves a detail
 * (srp_last_error_detail): the field and offset of a corrupt file, the
 * tensor and both shapes of a mismatch, the missing or unexpected names.
 *
 * Loading into a model of another architecture. A plain load fills the
 * listed tensors and ignores the file's others (so a model loads without
 * its optimizer state). The strict calls refuse a file holding tensors the
 * list does not name (a checkpoint of 2 blocks into a model of 1); a list
 * naming tensors the file lacks is SRP_ERR_NOT_FOUND either way, and
 * another shape (8 heads' qkv against 4) SRP_ERR_SHAPE. What shapes cannot
 * tell (a head count, for one qkv weight of the same size) the metadata
 * can: save the model's configuration with it, and before reading compare
 * it with srp_checkpoint_check_metadata, which names every field that
 * differs:
 *
 *     const char *config[] = {"model", "vit-lite", "heads", "4", "depth", "2"};
 *     srp_checkpoint_save_with_metadata(path, refs, n, config, 3);
 *     ...
 *     srp_checkpoint *c;
 *     srp_status st = srp_checkpoint_open(&c, path);
 *     if (st == SRP_OK && srp_checkpoint_metadata_count(c) > 0)  // 0: older file
 *         st = srp_checkpoint_check_metadata(c, config, 3);
 *     if (st == SRP_OK)
 *         st = srp_checkpoint_read_strict(c, refs, n);
 *     srp_checkpoint_close(c);   // on failure: srp_last_error_detail() says why */
#ifndef SIGMAREPARAM_CHECKPOINT_H
#define SIGMAREPARAM_CHECKPOINT_H

#include <stddef.h>

#include "sigmareparam/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The newest file layout (docs/FORMAT.md): a save with metadata writes
 * version 2, one without writes version 1 (readable by older builds); both
 * are read. */
#define SRP_CHECKPOINT_FORMAT_VERSION 2
/* A tensor name, and a metadata key, is at most SRP_TENSOR_MAX_NAME bytes
 * (no NUL inside); a tensor has at most SRP_TENSOR_MAX_NDIM dimensions
 * (core.h). */

/* Writes refs[0..count) to path, atomically (see above). Errors: NULL,
 * count = 0, a NULL name or data, an empty, too long or duplicate name, an
 * unknown dtype, ndim > 4, a size that overflows: SRP_ERR_INVALID_ARG and
 * no file is touched; any failure to create, write, sync or rename:
 * SRP_ERR_IO, the temporary file is removed and path keeps its old file
 * (if only the final fsync of the directory fails, SRP_ERR_IO is returned
 * with the new file in place, which a crash may still undo: the detail
 * says which). */
SRP_API srp_status srp_checkpoint_save(const char *path, const srp_tensor_ref *refs, size_t count);

/* srp_checkpoint_save with metadata: metadata_count (key, value) pairs as
 * metadata[2i], metadata[2i + 1], C strings, keys 1..SRP_TENSOR_MAX_NAME
 * bytes and unique, values shorter than 4 GiB. Errors as for save, and for
 * the pairs (NULL array, key or value, a key too long, empty or given
 * twice): SRP_ERR_INVALID_ARG. With metadata_count 0 the file is the one
 * srp_checkpoint_save writes. */
SRP_API srp_status srp_checkpoint_save_with_metadata(const char *path, const srp_tensor_ref *refs,
                                                     size_t count, const char *const *metadata,
                                                     size_t metadata_count);

/* Fills refs[0..count) from path; the file may hold more tensors (e.g. the
 * optimizer state when only the model is loaded). All or nothing: on any
 * error no buffer is written. Errors: bad refs as for save:
 * SRP_ERR_INVALID_ARG; the file cannot be opened or read: SRP_ERR_IO; not
 * a checkpoint, truncated or corrupt (CRC, lengths, offsets, names):
 * SRP_ERR_FORMAT; another format version: SRP_ERR_VERSION; a requested
 * name missing: SRP_ERR_NOT_FOUND (detail "tensor not found: NAME", with
 * the list's other missing names after it); a requested name with another
 * dtype or shape: SRP_ERR_SHAPE (the detail names it and both shapes).
 * Memory, during the call only: the file's size plus an index of its
 * table. */
SRP_API srp_status srp_checkpoint_load(const char *path, const srp_tensor_ref *refs, size_t count);

/* srp_checkpoint_load, and the file must hold nothing the list does not
 * name: a tensor left over is SRP_ERR_SHAPE (the model is not the file's
 * architecture), the left-over names in the detail (as many as fit, then
 * "and N more"), no buffer written. */
SRP_API srp_status srp_checkpoint_load_strict(const char *path, const srp_tensor_ref *refs,
                                              size_t count);

/* ---- a checkpoint opened once, for its metadata and its tensors ---- */

typedef struct srp_checkpoint srp_checkpoint;

/* Reads and checks the whole file, as load does before it copies. Errors:
 * NULL arguments: SRP_ERR_INVALID_ARG; SRP_ERR_IO, SRP_ERR_FORMAT,
 * SRP_ERR_VERSION as for load (a metadata key given twice is
 * SRP_ERR_FORMAT). *out is NULL on any error. Memory: the file's size plus
 * its index, until srp_checkpoint_close. */
SRP_API srp_status srp_checkpoint_open(srp_checkpoint **out, const char *path);
/* NULL: nothing. */
SRP_API void srp_checkpoint_close(srp_checkpoint *c);

/* The tensors, in the order of the file's table (0 for NULL). */
SRP_API size_t srp_checkpoint_count(const srp_checkpoint *c);
/* Tensor i's name, dtype, ndim and shape into *info (info->data = NULL);
 * the name lives as long as c. NULL or i out of range: SRP_ERR_INVALID_ARG. */
SRP_API srp_status srp_checkpoint_info(const srp_checkpoint *c, size_t i, srp_tensor_ref *info);

/* How many metadata pairs the file holds (0 for a file saved without, or
 * by an older build), and the value of one key, or NULL when absent (or c
 * or key NULL); it lives as long as c. */
SRP_API size_t srp_checkpoint_metadata_count(const srp_checkpoint *c);
SRP_API const char *srp_checkpoint_metadata(const srp_checkpoint *c, const char *key);
/* Compares the file's metadata with expected[0..2 count) (key, value
 * pairs, as for save): SRP_OK when every key is in the file with that
 * value (the file may hold more keys); SRP_ERR_SHAPE when not, the detail
 * naming each field that differs with both values, or that is missing
 * ("heads is 4 in the file, 8 here"). Bad arguments (NULL c, NULL pairs,
 * a key twice): SRP_ERR_INVALID_ARG. */
SRP_API srp_status srp_checkpoint_check_metadata(const srp_checkpoint *c,
                                                 const char *const *expected, size_t count);

/* Copies the tensors named in refs[0..count) out of c, as load does (the
 * same errors, all or nothing); _strict as load_strict. */
SRP_API srp_status srp_checkpoint_read(const srp_checkpoint *c, const srp_tensor_ref *refs,
                                       size_t count);
SRP_API srp_status srp_checkpoint_read_strict(const srp_checkpoint *c, const srp_tensor_ref *refs,
                                              size_t count);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_CHECKPOINT_H */
