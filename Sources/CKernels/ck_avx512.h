/* Shared definitions of the AVX-512 kernels (x86-64 only).
   Normally the intrinsics come from <immintrin.h> and each function carries a target attribute
   (AVX-512 F + BW + VL, plus VNNI for the VNNI variants), so the rest of the library is still
   built for the baseline ISA and the functions only run once ck_detect has seen the CPU support
   them. With CK_AVX512_SIMDE defined (Scripts/avx512-check), the same source is compiled
   against SIMDe's portable implementations of the intrinsics and without the attributes, so the
   kernels run, and are checked bit for bit, on a CPU without AVX-512 (that build needs AVX2,
   FMA and F16C: SIMDe then runs each 512-bit operation as two native 256-bit ones). */
#ifndef CK_AVX512_H
#define CK_AVX512_H

#include "ck_internal.h"

#if defined(CK_AVX512_SIMDE)
#define CK_AVX512_BUILD 1
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
/* SIMDe 0.7.4 aliases _mm512_madd_epi16 with the masked form's four parameters */
#undef _mm512_madd_epi16
#define _mm512_madd_epi16(a, b) simde_mm512_madd_epi16(a, b)

#define CK_AVX512
#define CK_AVX512_VNNI
#define CK_AVX512_INLINE __attribute__((always_inline)) static inline
#define CK_AVX512_VNNI_INLINE __attribute__((always_inline)) static inline

/* SIMDe 0.7.4 has neither _mm512_cvtph_ps nor _mm512_cvtepi32_ps: both halves through the
   256-bit forms (each conversion is exact here: halves to float always, and the integer sums
   of the kernels are below 2^24). */
CK_AVX512_INLINE __m512 ck512_cvtph_ps(__m256i h) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_cvtph_ps(_mm256_castsi256_si128(h))),
                            _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), 1);
}
CK_AVX512_INLINE __m512 ck512_cvtepi32_ps(__m512i v) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_cvtepi32_ps(_mm512_castsi512_si256(v))),
                            _mm256_cvtepi32_ps(_mm512_extracti64x4_epi64(v, 1)), 1);
}

#elif defined(__x86_64__)
#define CK_AVX512_BUILD 1
#include <immintrin.h>

#define CK_AVX512_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl"
#define CK_AVX512 __attribute__((target(CK_AVX512_TARGET)))
#define CK_AVX512_VNNI __attribute__((target(CK_AVX512_TARGET ",avx512vnni")))
#define CK_AVX512_INLINE __attribute__((target(CK_AVX512_TARGET), always_inline)) static inline
#define CK_AVX512_VNNI_INLINE __attribute__((target(CK_AVX512_TARGET ",avx512vnni"), always_inline)) static inline

#define ck512_cvtph_ps _mm512_cvtph_ps
#define ck512_cvtepi32_ps _mm512_cvtepi32_ps
#endif

#if defined(CK_AVX512_BUILD)
/* half -> float (exact, as ck_h2f) */
CK_AVX512_INLINE float ck512_h2f(uint16_t h) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}
#endif

#endif /* CK_AVX512_H */
