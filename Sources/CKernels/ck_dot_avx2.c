/* AVX2+FMA+F16C matmul row kernels. Each weight block is loaded and unpacked once per group of
   up to CK_ACT_GROUP activations; integer dot products inside blocks (maddubs/madd), float
   accumulation across blocks.
   Batch invariance: every output (weight row, activation) has its own accumulators, updated block
   by block in block order with the same operations whatever the group size, the row pairing or
   the row range, so results are bit-identical however a product is split. The per-output
   arithmetic is that of ggml's AVX2 vec_dot kernels (one 8-lane fma accumulator, hsum_float_8
   order, then the Q4_1/Q5_1 min term). */
#include "ck_avx2.h"
#include "ck_mm_driver.h"
#include "ck_kq_unpack.h"
#include "ck_repack.h"

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
      const __m256i q = LOADQ(i);                                                                \
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

#define LOADQ_Q4_0(ib) _mm256_sub_epi8(ck_nibbles32(wb[ib].qs), _mm256_set1_epi8(8))
#define LOADQ_Q5_0(ib) ck_load_q5_0(&wb[ib])
#define LOADQ_Q8_0(ib) _mm256_loadu_si256((const __m256i *)wb[ib].qs)
ROW_SYM_AVX2(row_q4_0, ck_block_q4_0, LOADQ_Q4_0)
ROW_SYM_AVX2(row_q5_0, ck_block_q5_0, LOADQ_Q5_0)
ROW_SYM_AVX2(row_q8_0, ck_block_q8_0, LOADQ_Q8_0)

/* ---- Q4_1 / Q5_1 (unsigned quants with a min) x Q8_1 ---- */

/* Per output, exactly as ggml's AVX2 ggml_vec_dot_q4_1_q8_1 / _q5_1_q8_1, block by block in
   block order: acc = fma(d*dy, float(pair sums), acc) in 8 lanes, and the min term
   summs = fma(m, s, summs) in a scalar; result hsum(acc) + summs.
   The weight's (d, m) and the activation's (d, s) half pairs are converted together: lane 0 of
   their product is d*dy; lane 1 of fma(dm, ds, macc) is fma(m, s, summs). */
#define MIN_STEP(LOADQ, IB)                                                                      \
  do {                                                                                           \
    const __m256i q = LOADQ(IB);                                                                 \
    uint32_t wdm; memcpy(&wdm, &wb[IB], 4);                                                      \
    const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)wdm));                                 \
    for (int j = 0; j < g; j++) {                                                                \
      const ck_block_q8_1 *y = (const ck_block_q8_1 *)(x + j * xrow) + (IB);                     \
      uint32_t yds; memcpy(&yds, y, 4);                                                          \
      const __m128 ds = _mm_cvtph_ps(_mm_cvtsi32_si128((int)yds));                               \
      const __m128 prod = _mm_mul_ps(dm, ds);                                                    \
      const __m256i yv = _mm256_loadu_si256((const __m256i *)y->qs);                             \
      const __m256 p = _mm256_cvtepi32_ps(ck_dot_us8(q, yv));                                    \
      acc[j] = _mm256_fmadd_ps(_mm256_broadcastss_ps(prod), p, acc[j]);                          \
      macc[j] = _mm_fmadd_ps(dm, ds, macc[j]);                                                   \
    }                                                                                            \
  } while (0)

#define ROW_MIN_AVX2(NAME, WT, LOADQ)                                                            \
  CK_AVX2_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g, \
                           float *s) {                                                           \
    __m256 acc[CK_ACT_GROUP];                                                                    \
    __m128 macc[CK_ACT_GROUP];                                                                   \
    for (int j = 0; j < CK_ACT_GROUP; j++) {                                                     \
      acc[j] = _mm256_setzero_ps();                                                              \
      macc[j] = _mm_setzero_ps();                                                                \
    }                                                                                            \
    const WT *wb = (const WT *)w;                                                                \
    for (int64_t i = 0; i < nblk; i++) MIN_STEP(LOADQ, i);                                       \
    for (int j = 0; j < g; j++)                                                                  \
      s[j] = ck_hsum_ps(acc[j]) + _mm_cvtss_f32(_mm_shuffle_ps(macc[j], macc[j], 1));            \
  }

CK_AVX2_INLINE __m256i ck_load_q5_1(const ck_block_q5_1 *b) {
  const __m256i hi = _mm256_and_si256(ck_bits32(b->qh), _mm256_set1_epi8(0x10));
  return _mm256_or_si256(ck_nibbles32(b->qs), hi);
}

#define LOADQ_Q4_1(ib) ck_nibbles32(wb[ib].qs)
#define LOADQ_Q5_1(ib) ck_load_q5_1(&wb[ib])
ROW_MIN_AVX2(row_q4_1, ck_block_q4_1, LOADQ_Q4_1)
ROW_MIN_AVX2(row_q5_1, ck_block_q5_1, LOADQ_Q5_1)

/* ---- two rows against one activation (decode) ---- */

#define SYM2_STEP(LOADQ, WB, IB, YV, DY, ACC)                                                    \
  do {                                                                                           \
    const WT_ *wb = (WB);                                                                        \
    const __m256i q = LOADQ(IB);                                                                 \
    const __m256 p = _mm256_cvtepi32_ps(ck_dot_us8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(YV, q))); \
    ACC = _mm256_fmadd_ps(_mm256_set1_ps(ck_h2f_avx2(wb[IB].d) * (DY)), p, ACC);                 \
  } while (0)

#define ROW2_SYM_AVX2(NAME, WT, LOADQ)                                                           \
  CK_AVX2_INLINE void NAME(const uint8_t *w, size_t wrow, const uint8_t *x, int64_t nblk, float *s) { \
    typedef WT WT_;                                                                              \
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                   \
    const WT *w0 = (const WT *)w, *w1 = (const WT *)(w + wrow);                                  \
    const ck_block_q8_0 *y = (const ck_block_q8_0 *)x;                                           \
    for (int64_t i = 0; i < nblk; i++) {                                                         \
      const __m256i yv = _mm256_loadu_si256((const __m256i *)y[i].qs);                           \
      const float dy = ck_h2f_avx2(y[i].d);                                                      \
      SYM2_STEP(LOADQ, w0, i, yv, dy, a0);                                                       \
      SYM2_STEP(LOADQ, w1, i, yv, dy, a1);                                                       \
    }                                                                                            \
    s[0] = ck_hsum_ps(a0); s[1] = ck_hsum_ps(a1);                                                \
  }

/* Same per-output arithmetic as MIN_STEP / ROW_MIN_AVX2 (only the activation loads shared). */
#define MIN2_STEP(LOADQ, WB, IB, YV, YDS, ACC, MACC)                                             \
  do {                                                                                           \
    const WT_ *wb = (WB);                                                                        \
    const __m256i q = LOADQ(IB);                                                                 \
    uint32_t wdm; memcpy(&wdm, &wb[IB], 4);                                                      \
    const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)wdm));                                 \
    const __m128 prod = _mm_mul_ps(dm, YDS);                                                     \
    ACC = _mm256_fmadd_ps(_mm256_broadcastss_ps(prod), _mm256_cvtepi32_ps(ck_dot_us8(q, YV)), ACC); \
    MACC = _mm_fmadd_ps(dm, YDS, MACC);                                                          \
  } while (0)

#define ROW2_MIN_AVX2(NAME, WT, LOADQ)                                                           \
  CK_AVX2_INLINE void NAME(const uint8_t *w, size_t wrow, const uint8_t *x, int64_t nblk, float *s) { \
    typedef WT WT_;                                                                              \
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                   \
    __m128 m0 = _mm_setzero_ps(), m1 = _mm_setzero_ps();                                         \
    const WT *w0 = (const WT *)w, *w1 = (const WT *)(w + wrow);                                  \
    const ck_block_q8_1 *y = (const ck_block_q8_1 *)x;                                           \
    for (int64_t i = 0; i < nblk; i++) {                                                         \
      const __m256i yv = _mm256_loadu_si256((const __m256i *)y[i].qs);                           \
      uint32_t yds32; memcpy(&yds32, &y[i], 4);                                                  \
      const __m128 yds = _mm_cvtph_ps(_mm_cvtsi32_si128((int)yds32));                            \
      MIN2_STEP(LOADQ, w0, i, yv, yds, a0, m0);                                                  \
      MIN2_STEP(LOADQ, w1, i, yv, yds, a1, m1);                                                  \
    }                                                                                            \
    s[0] = ck_hsum_ps(a0) + _mm_cvtss_f32(_mm_shuffle_ps(m0, m0, 1));                            \
    s[1] = ck_hsum_ps(a1) + _mm_cvtss_f32(_mm_shuffle_ps(m1, m1, 1));                            \
  }

ROW2_SYM_AVX2(row2_q4_0, ck_block_q4_0, LOADQ_Q4_0)
ROW2_SYM_AVX2(row2_q5_0, ck_block_q5_0, LOADQ_Q5_0)
ROW2_SYM_AVX2(row2_q8_0, ck_block_q8_0, LOADQ_Q8_0)
ROW2_MIN_AVX2(row2_q4_1, ck_block_q4_1, LOADQ_Q4_1)
ROW2_MIN_AVX2(row2_q5_1, ck_block_q5_1, LOADQ_Q5_1)

CK_DEFINE_MM_R2(mm_q4_0, row_q4_0, row2_q4_0, CK_AVX2)
CK_DEFINE_MM_R2(mm_q4_1, row_q4_1, row2_q4_1, CK_AVX2)
CK_DEFINE_MM_R2(mm_q5_0, row_q5_0, row2_q5_0, CK_AVX2)
CK_DEFINE_MM_R2(mm_q5_1, row_q5_1, row2_q5_1, CK_AVX2)
CK_DEFINE_MM_R2(mm_q8_0, row_q8_0, row2_q8_0, CK_AVX2)


void ck_fill_avx2_kquants(ck_kernels *k);
void ck_fill_avx2_float(ck_kernels *k);
void ck_fill_avx2_nn(ck_kernels *k);
void ck_fill_avx2_attention(ck_kernels *k);
void ck_fill_avx2_f16_gemm(ck_kernels *k);

void ck_fill_avx2(ck_kernels *k) {
  k->mm[CK_TYPE_Q4_0] = mm_q4_0;
  k->mm[CK_TYPE_Q4_1] = mm_q4_1;
  k->mm[CK_TYPE_Q5_0] = mm_q5_0;
  k->mm[CK_TYPE_Q5_1] = mm_q5_1;
  k->mm[CK_TYPE_Q8_0] = mm_q8_0;
  ck_fill_avx2_kquants(k);
  ck_fill_avx2_float(k);
  ck_fill_avx2_nn(k);
  ck_fill_avx2_attention(k);
  ck_fill_avx2_f16_gemm(k);
  ck_fill_r8_avx2(k->mm_r8);
  k->r8_fast[CK_TYPE_Q4_0] = 1;
  k->r8_fast[CK_TYPE_Q4_1] = 1;
  k->r8_fast[CK_TYPE_Q8_0] = 1;
  k->r8_fast[CK_TYPE_Q5_0] = 1;
  k->r8_fast[CK_TYPE_Q4_K] = 1;
  k->r8_fast[CK_TYPE_Q5_K] = 1;
}

#else
void ck_fill_avx2(ck_kernels *k) { (void)k; }
#endif
