/* Shared helpers of the AVX2+FMA+F16C kernels (x86-64 only). Functions carry the target
   attribute, so the rest of the library is still built for the baseline ISA. */
#ifndef CK_AVX2_H
#define CK_AVX2_H

#include "ck_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define CK_AVX2 __attribute__((target("avx2,fma,f16c")))
#define CK_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) static inline

CK_AVX2_INLINE float ck_hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

CK_AVX2_INLINE int32_t ck_hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

/* unsigned bytes x signed bytes -> 8 int32 sums of 4 adjacent products */
CK_AVX2_INLINE __m256i ck_dot_us8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* 16 packed nibble bytes -> 32 bytes: low nibbles first, then high nibbles (ggml block order) */
CK_AVX2_INLINE __m256i ck_nibbles32(const uint8_t *qs) {
  const __m128i t = _mm_loadu_si128((const __m128i *)qs);
  const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
  return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, byte i = 0xFF if bit i is set, else 0 */
CK_AVX2_INLINE __m256i ck_bits32(const uint8_t *p) {
  uint32_t bits; memcpy(&bits, p, 4);
  const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL,
                                          0x0202020202020202LL, 0x0303030303030303LL);
  __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
  v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7FBFDFEFF7FBFDFELL));
  return _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
}

CK_AVX2_INLINE float ck_h2f_avx2(uint16_t h) { return _cvtsh_ss(h); }

#endif /* __x86_64__ */
#endif /* CK_AVX2_H */
