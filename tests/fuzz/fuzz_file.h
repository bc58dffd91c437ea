/* What the file-reading fuzz targets share: the input written to a file of
 * this process's own, since the readers under test take paths. */
#ifndef SRP_FUZZ_FILE_H
#define SRP_FUZZ_FILE_H

#include <stddef.h>
#include <stdint.h>

/* buf = "$TMPDIR/srp_fuzz_<tag>_<pid>" ($TMPDIR or /tmp): a name of this
 * process's own for a fuzz target's file or folder. */
void fuzz_temp_path(char *buf, size_t cap, const char *tag);

/* Writes data to path (fuzz_temp_path's, named once per process) and
 * returns that path; NULL if it could not. */
const char *fuzz_write_file(const char *tag, const uint8_t *data, size_t size);

/* srp_checkpoint_load of path into a fixed list of tensors, one of each
 * kind the trainers use; with strict, srp_checkpoint_load_strict too. */
void fuzz_load_checkpoint_list(const char *path, int strict);

#endif
