#ifndef CCHECKSUM_H
#define CCHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU computes CRC-32C in hardware (x86-64 SSE4.2 `crc32`, AArch64 CRC extension).
int cchecksum_crc32c_hw_available(void);

/// Continues a CRC-32C over `count` bytes in hardware. `crc` and the result are the inner
/// (pre-/post-inverted) state, as in the table code: callers invert before and after. Only call
/// when `cchecksum_crc32c_hw_available()` is 1.
uint32_t cchecksum_crc32c_hw_update(uint32_t crc, const void *bytes, size_t count);

#endif
