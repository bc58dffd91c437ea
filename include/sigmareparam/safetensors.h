/* safetensors files: the format of the PyTorch and Hugging Face world, so
 * that a model trained here opens in PyTorch and one trained there loads
 * here. Part of <sigmareparam.h>; include that.
 *
 * The layout (https://github.com/huggingface/safetensors), all of it
 * checked on open:
 *
 *     u64 N          little-endian length of the header
 *     header [N]     a JSON object (UTF-8), padded at its end with spaces:
 *                      "name": {"dtype": "F32", "shape": [out, in],
 *                               "data_offsets": [begin, end]}
 *                    for every tensor, and optionally
 *                      "__metadata__": {"key": "value", ...}
 *     data           the tensors' bytes, little-endian, C order; offsets
 *                    count from the start of the data, and the tensors
 *                    cover it exactly: no gap, no overlap, nothing after
 *
 * dtypes: F32, F64, I64, U64 and U8, the library's srp_dtype; a file with
 * another safetensors dtype (F16, BF16, I32, ...) is refused with
 * SRP_ERR_UNSUPPORTED, anything else that does not follow the layout with
 * SRP_ERR_FORMAT. Unlike checkpoint files there is no checksum: a flipped
 * byte inside a tensor's data goes unseen. Checkpoints (checkpoint.h) stay
 * the format for resuming a run; this one is for exchanging models.
 *
 * Names map to the official PyTorch code's modules in docs/FORMAT.md.
 * Strict reads and metadata checks work as for checkpoints (checkpoint.h
 * shows the calls in order); every failure leaves a detail
 * (srp_last_error_detail). */
#ifndef SIGMAREPARAM_SAFETENSORS_H
#define SIGMAREPARAM_SAFETENSORS_H

#include <stddef.h>

#include "sigmareparam/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest header this library reads or writes (the reference
 * implementation's limit). */
#define SRP_SAFETENSORS_MAX_HEADER 100000000u

/* Writes refs[0..count) to path atomically (as srp_checkpoint_save: a crash
 * leaves the old or the new file), the tensors in the list's order.
 * metadata: metadata_count (key, value) pairs as metadata[2i],
 * metadata[2i + 1], stored as "__metadata__" (NULL when metadata_count is
 * 0). Errors: a bad list (as for checkpoints: NULL, empty, a NULL name or
 * data, an empty, too long or duplicate name, an unknown dtype, ndim > 4),
 * the name "__metadata__", a NULL key or value, a duplicate key:
 * SRP_ERR_INVALID_ARG and no file is touched. SRP_ERR_IO: when creating,
 * writing, syncing or renaming the temporary file fails, it is removed and
 * path keeps its old file; when only the fsync of the directory after the
 * rename fails, path already holds the new file, and a crash before the
 * directory reaches the disk may bring back the old one (either one whole).
 * The detail says which of the two happened. */
SRP_API srp_status srp_safetensors_save(const char *path, const srp_tensor_ref *refs, size_t count,
                                        const char *const *metadata, size_t metadata_count);

/* A file read into memory and checked. */
typedef struct srp_safetensors srp_safetensors;

/* Reads and checks the whole file (see the top of this file). Errors: NULL
 * arguments: SRP_ERR_INVALID_ARG; a file that cannot be read: SRP_ERR_IO;
 * not valid safetensors: SRP_ERR_FORMAT; a valid one with a dtype this
 * library does not read, or a tensor of more than 4 dimensions:
 * SRP_ERR_UNSUPPORTED. *out is NULL on any error. Memory: the file's size
 * plus its index, until srp_safetensors_close. */
SRP_API srp_status srp_safetensors_open(srp_safetensors **out, const char *path);
SRP_API void srp_safetensors_close(srp_safetensors *f);

/* The tensors, in the order of their data in the file. */
SRP_API size_t srp_safetensors_count(const srp_safetensors *f);
/* Tensor i's name, dtype, ndim and shape into *info (info->data = NULL);
 * the name lives as long as f. i out of range or NULL: SRP_ERR_INVALID_ARG. */
SRP_API srp_status srp_safetensors_info(const srp_safetensors *f, size_t i, srp_tensor_ref *info);
/* How many "__metadata__" pairs f holds; the value of one key, or NULL
 * (also for a NULL f or key); it lives as long as f. */
SRP_API size_t srp_safetensors_metadata_count(const srp_safetensors *f);
SRP_API const char *srp_safetensors_metadata(const srp_safetensors *f, const char *key);
/* As srp_checkpoint_check_metadata: SRP_OK when every (key, value) of
 * expected[0..2 count) is in f's metadata; SRP_ERR_SHAPE naming each field
 * that differs or is missing; bad arguments: SRP_ERR_INVALID_ARG. */
SRP_API srp_status srp_safetensors_check_metadata(const srp_safetensors *f,
                                                  const char *const *expected, size_t count);

/* Copies the tensors named in refs[0..count) out of f; f may hold more.
 * All or nothing: every name is looked up and compared before anything is
 * written. Errors: a bad list as for save: SRP_ERR_INVALID_ARG; a name not
 * in f: SRP_ERR_NOT_FOUND ("tensor not found: NAME"); another dtype or
 * shape: SRP_ERR_SHAPE (the detail names the tensor and both shapes). */
SRP_API srp_status srp_safetensors_read(const srp_safetensors *f, const srp_tensor_ref *refs,
                                        size_t count);
/* srp_safetensors_read, and f must hold nothing the list does not name:
 * SRP_ERR_SHAPE otherwise, the left-over names in the detail. */
SRP_API srp_status srp_safetensors_read_strict(const srp_safetensors *f,
                                               const srp_tensor_ref *refs, size_t count);

/* open, read, close; and open, read_strict, close. */
SRP_API srp_status srp_safetensors_load(const char *path, const srp_tensor_ref *refs, size_t count);
SRP_API srp_status srp_safetensors_load_strict(const char *path, const srp_tensor_ref *refs,
                                               size_t count);

#ifdef __cplusplus
}
#endif

#endif /* SIGMAREPARAM_SAFETENSORS_H */
