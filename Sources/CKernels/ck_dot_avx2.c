/* AVX2+FMA+F16C matmul row kernels. Each weight block is loaded and unpacked once per group of
   up to CK_ACT_GROUP activations; integer dot products inside blocks (maddubs/madd), float
   accumulation across blocks. */
#include "ck_avx2.h"
#include "ck_mm_driver.h"
#include "ck_kq_unpack.h"

#if defined(__x86_64__)

/* ---- Q4_0 / Q5_0 / Q8_0 (signed quants) x Q8_0 ---- */

/* x signed weights, y signed activations: abs(x) * sign(y, x) keeps maddubs in range */
#define ROW_SYM_AVX2(NAME, WT, LOADQ)                                                            \
  CK_AVX2_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g, \
                           float *s) {                                                           \
    __m256 acc[CK_ACT_GROUP];                                                                    \
    for (int j = 0; j < CK_ACT_GROUP; j++) acc[j] = _mm256_setzero_ps();                         \
    const WT *wb = (const WT *)w;                                                                \
    for (int64_t i = 0; i < nblk; i++) {                                                         \
      const __m256i q = LOADQ;                                                                   \
      const __m256i aq = _mm256_sign_epi8(q, q);                                                 \
      const float d = ck_h2f_avx2(wb[i].d);                                                      \
      for (int j = 0; j < g; j++) {                                                              \
        const ck_block_q8_0 *y = (const ck_block_q8_0 *)(x + j * xrow) + i;                      \
        const __m256i yv = _mm256_loadu_si256((const __m256i *)y->qs);                           \
        const __m256 p = _mm256_cvtepi32_ps(ck_dot_us8(aq, _mm256_sign_epi8(yv, q)));            \
        acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * ck_h2f_avx2(y->d)), p, acc[j]);              \
      }                                                                                          \
    }                                                                                            \
    for (int j = 0; j < g; j++) s[j] = ck_hsum_ps(acc[j]);                                       \
  }

/* Q5_0: nibble | 0xF0 where the high bit is clear == nibble + 16*bit - 16 as int8 */
CK_AVX2_INLINE __m256i ck_load_q5_0(const ck_block_q5_0 *b) {
  const __m256i lo = ck_nibbles32(b->qs);
  const __m256i hi = _mm256_andnot_si256(ck_bits32(b->qh), _mm256_set1_epi8((char)0xF0));
  return _mm256_or_si256(lo, hi);
}

ROW_SYM_AVX2(row_q4_0, ck_block_q4_0, _mm256_sub_epi8(ck_nibbles32(wb[i].qs), _mm256_set1_epi8(8)))
ROW_SYM_AVX2(row_q5_0, ck_block_q5_0, ck_load_q5_0(&wb[i]))
ROW_SYM_AVX2(row_q8_0, ck_block_q8_0, _mm256_loadu_si256((const __m256i *)wb[i].qs))

/* ---- Q4_1 / Q5_1 (unsigned quants with a min) x Q8_1 ---- */

#define ROW_MIN_AVX2(NAME, WT, LOADQ)                                                            \
  CK_AVX2_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g, \
                           float *s) {                                                           \
    __m256 acc[CK_ACT_GROUP];                                                                    \
    float macc[CK_ACT_GROUP] = { 0 };                                                            \
    for (int j = 0; j < CK_ACT_GROUP; j++) acc[j] = _mm256_setzero_ps();                         \
    const WT *wb = (const WT *)w;                                                                \
    for (int64_t i = 0; i < nblk; i++) {                                                         \
      const __m256i q = LOADQ;                                                                   \
      const float d = ck_h2f_avx2(wb[i].d), m = ck_h2f_avx2(wb[i].m);                            \
      for (int j = 0; j < g; j++) {                                                              \
        const ck_block_q8_1 *y = (const ck_block_q8_1 *)(x + j * xrow) + i;                      \
        const __m256i yv = _mm256_loadu_si256((const __m256i *)y->qs);                           \
        const __m256 p = _mm256_cvtepi32_ps(ck_dot_us8(q, yv));                                  \
        acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * ck_h2f_avx2(y->d)), p, acc[j]);              \
        macc[j] += m * ck_h2f_avx2(y->s);                                                        \
      }                                                                                          \
    }                                                                                            \
    for (int j = 0; j < g; j++) s[j] = ck_hsum_ps(acc[j]) + macc[j];                             \
  }

CK_AVX2_INLINE __m256i ck_load_q5_1(const ck_block_q5_1 *b) {
  const __m256i hi = _mm256_and_si256(ck_bits32(b->qh), _mm256_set1_epi8(0x10));
  return _mm256_or_si256(ck_nibbles32(b->qs), hi);
}

ROW_MIN_AVX2(row_q4_1, ck_block_q4_1, ck_nibbles32(wb[i].qs))
ROW_MIN_AVX2(row_q5_1, ck_block_q5_1, ck_load_q5_1(&wb[i]))

CK_DEFINE_MM(mm_q4_0, row_q4_0, CK_AVX2)
CK_DEFINE_MM(mm_q4_1, row_q4_1, CK_AVX2)
CK_DEFINE_MM(mm_q5_0, row_q5_0, CK_AVX2)
CK_DEFINE_MM(mm_q5_1, row_q5_1, CK_AVX2)
CK_DEFINE_MM(mm_q8_0, row_q8_0, CK_AVX2)

void ck_fill_avx2_kquants(ck_kernels *k);
void ck_fill_avx2_float(ck_kernels *k);
void ck_fill_avx2_nn(ck_kernels *k);

void ck_fill_avx2(ck_kernels *k) {
  k->mm[CK_TYPE_Q4_0] = mm_q4_0;
  k->mm[CK_TYPE_Q4_1] = mm_q4_1;
  k->mm[CK_TYPE_Q5_0] = mm_q5_0;
  k->mm[CK_TYPE_Q5_1] = mm_q5_1;
  k->mm[CK_TYPE_Q8_0] = mm_q8_0;
  ck_fill_avx2_kquants(k);
  ck_fill_avx2_float(k);
  ck_fill_avx2_nn(k);
}

#else
void ck_fill_avx2(ck_kernels *k) { (void)k; }
#endif
