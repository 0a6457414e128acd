/* A plain memory read loop, the yardstick of `caravan bench`: decode of a model larger than the
   caches is bound by how fast its weights stream from DRAM, so the benchmark reports the bytes
   of weights read per second next to what this loop reads on the same machine. */
#include "ck_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* four independent 32-byte loads per 128 bytes, xor-folded so none is optimized away */
__attribute__((target("avx2"))) static uint64_t ck_read_avx2(const uint8_t *p, size_t n) {
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    a = _mm256_xor_si256(a, _mm256_loadu_si256((const __m256i *)(p + i)));
    b = _mm256_xor_si256(b, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
    c = _mm256_xor_si256(c, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
    d = _mm256_xor_si256(d, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
  }
  const __m256i x = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
  uint64_t r = (uint64_t)_mm256_extract_epi64(x, 0) ^ (uint64_t)_mm256_extract_epi64(x, 1) ^
               (uint64_t)_mm256_extract_epi64(x, 2) ^ (uint64_t)_mm256_extract_epi64(x, 3);
  for (; i < n; i++) r ^= p[i];
  return r;
}
#endif

uint64_t ck_read_bytes(const void *src, size_t n) {
  const uint8_t *p = (const uint8_t *)src;
#if defined(__x86_64__)
  if (ck_isa_best() != CK_ISA_SCALAR) return ck_read_avx2(p, n);
#endif
  uint64_t a = 0, b = 0, c = 0, d = 0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint64_t w[4];
    memcpy(w, p + i, 32);
    a ^= w[0]; b ^= w[1]; c ^= w[2]; d ^= w[3];
  }
  uint64_t r = a ^ b ^ c ^ d;
  for (; i < n; i++) r ^= p[i];
  return r;
}
