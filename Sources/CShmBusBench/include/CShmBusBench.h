#ifndef CSHMBUS_BENCH_H
#define CSHMBUS_BENCH_H

/* The benchmark's own C code, apart from the segment format's shim (CShmBusLinux):
 * nothing in the library links it. */

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A checksum that reads every byte at memory bandwidth (sixteen vectorized lanes of
 * 64-bit sums and sums of sums, combined at the end), so that a benchmark proves each
 * byte was read and every path pays the same for it. Not part of the segment format:
 * records are checked with CShmBusLinux's shmbus_mix64. */
uint64_t shmbus_sum64(const void *data, size_t length);

#ifdef __cplusplus
}
#endif

#endif
