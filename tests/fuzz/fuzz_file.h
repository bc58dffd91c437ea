/* What the file-reading fuzz targets share: the input written to a file of
 * this process's own, since the readers under test take paths. */
#ifndef SRP_FUZZ_FILE_H
#define SRP_FUZZ_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Writes data to path (created once per process under $TMPDIR or /tmp,
 * named after tag) and returns that path; NULL if it could not. */
const char *fuzz_write_file(const char *tag, const uint8_t *data, size_t size);

#endif
