/* Helpers shared by the AVX2 kernels of the repacked (R8) layouts (ck_repack_avx2.c: the legacy
   quants; ck_repack_kq_avx2.c: the K-quants). x86-64 only. */
#ifndef CK_REPACK_AVX2_H
#define CK_REPACK_AVX2_H

#include "ck_avx2.h"
#include "ck_repack.h"

#if defined(__x86_64__)

/* a 4-byte chunk of an activation, broadcast to the 8 rows */
CK_AVX2_INLINE __m256i r8_bcast(const int8_t *p) {
  int32_t v; memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

/* stores the 8 results of group g (lane r = row 8g + r) that fall into [r0, r1) */
CK_AVX2_INLINE void r8_out(__m256 v, int64_t g, int64_t r0, int64_t r1, float *out) {
  const int64_t base = g * CK_R8;
  if (base >= r0 && base + CK_R8 <= r1) {
    _mm256_storeu_ps(out + base, v);
  } else {
    float t[CK_R8];
    _mm256_storeu_ps(t, v);
    ck_r8_store(t, g, r0, r1, out);
  }
}

#endif /* __x86_64__ */
#endif /* CK_REPACK_AVX2_H */
