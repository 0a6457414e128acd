/* AVX2 K-quant matmul: SIMD unpacking of Q2_K..Q6_K super-blocks into the common form of
   ck_kquant.h, then one integer dot kernel against Q8_K activations (maddubs per 32 quants,
   madd with per-16 scales, mins through the activations' bsums). */
#include "ck_avx2.h"
#include "ck_mm_driver.h"
#include "ck_kquant.h"

#if defined(__x86_64__)

#define LD(p) _mm256_loadu_si256((const __m256i *)(p))
#define ST(p, v) _mm256_store_si256((__m256i *)(p), (v))

/* byte = 0xFF where bit b of the byte is set */
CK_AVX2_INLINE __m256i ck_bitmask(__m256i v, int b) {
  const __m256i m = _mm256_set1_epi8((char)(1 << b));
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, m), m);
}

CK_AVX2 static void unpack_q2_K(const void *blk, ck_kq_unpacked *k) {
  const ck_block_q2_K *b = blk;
  const __m256i m3 = _mm256_set1_epi8(3);
  for (int h = 0; h < 2; h++) {
    const __m256i v = LD(b->qs + 32 * h);
    ST(k->u + 128 * h, _mm256_and_si256(v, m3));
    ST(k->u + 128 * h + 32, _mm256_and_si256(_mm256_srli_epi16(v, 2), m3));
    ST(k->u + 128 * h + 64, _mm256_and_si256(_mm256_srli_epi16(v, 4), m3));
    ST(k->u + 128 * h + 96, _mm256_and_si256(_mm256_srli_epi16(v, 6), m3));
  }
  ck_kq_meta_q2_K(b, k);
}

CK_AVX2 static void unpack_q3_K(const void *blk, ck_kq_unpacked *k) {
  const ck_block_q3_K *b = blk;
  const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
  const __m256i hm = LD(b->hmask);
  for (int h = 0; h < 2; h++) {
    const __m256i v = LD(b->qs + 32 * h);
    for (int j = 0; j < 4; j++) {
      __m256i lo;
      switch (j) {
        case 0: lo = v; break;
        case 1: lo = _mm256_srli_epi16(v, 2); break;
        case 2: lo = _mm256_srli_epi16(v, 4); break;
        default: lo = _mm256_srli_epi16(v, 6); break;
      }
      lo = _mm256_and_si256(lo, m3);
      const __m256i hi = _mm256_and_si256(ck_bitmask(hm, 4 * h + j), four);
      ST(k->u + 128 * h + 32 * j, _mm256_or_si256(lo, hi));
    }
  }
  ck_kq_meta_q3_K(b, k);
}

CK_AVX2 static void unpack_q4_K(const void *blk, ck_kq_unpacked *k) {
  const ck_block_q4_K *b = blk;
  const __m256i mf = _mm256_set1_epi8(0x0F);
  for (int c = 0; c < 4; c++) {
    const __m256i v = LD(b->qs + 32 * c);
    ST(k->u + 64 * c, _mm256_and_si256(v, mf));
    ST(k->u + 64 * c + 32, _mm256_and_si256(_mm256_srli_epi16(v, 4), mf));
  }
  ck_kq_meta_q45_K(b->scales, b->d, b->dmin, k);
}

CK_AVX2 static void unpack_q5_K(const void *blk, ck_kq_unpacked *k) {
  const ck_block_q5_K *b = blk;
  const __m256i mf = _mm256_set1_epi8(0x0F), m16 = _mm256_set1_epi8(0x10);
  const __m256i qh = LD(b->qh);
  for (int c = 0; c < 4; c++) {
    const __m256i v = LD(b->qs + 32 * c);
    const __m256i h0 = _mm256_and_si256(ck_bitmask(qh, 2 * c), m16);
    const __m256i h1 = _mm256_and_si256(ck_bitmask(qh, 2 * c + 1), m16);
    ST(k->u + 64 * c, _mm256_or_si256(_mm256_and_si256(v, mf), h0));
    ST(k->u + 64 * c + 32, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), mf), h1));
  }
  ck_kq_meta_q45_K(b->scales, b->d, b->dmin, k);
}

CK_AVX2 static void unpack_q6_K(const void *blk, ck_kq_unpacked *k) {
  const ck_block_q6_K *b = blk;
  const __m256i mf = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  for (int h = 0; h < 2; h++) {
    const __m256i l0 = LD(b->ql + 64 * h), l1 = LD(b->ql + 64 * h + 32), qh = LD(b->qh + 32 * h);
    uint8_t *u = k->u + 128 * h;
    ST(u, _mm256_or_si256(_mm256_and_si256(l0, mf), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)));
    ST(u + 32, _mm256_or_si256(_mm256_and_si256(l1, mf), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)));
    ST(u + 64, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), mf), _mm256_and_si256(qh, m30)));
    ST(u + 96, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), mf),
                               _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30)));
  }
  ck_kq_meta_q6_K(b, k);
}

typedef void (*ck_kq_unpack_avx2_fn)(const void *blk, ck_kq_unpacked *k);

CK_AVX2_INLINE void row_kq(const uint8_t *w, size_t wbs, ck_kq_unpack_avx2_fn unpack,
                           const uint8_t *x, size_t xrow, int64_t nblk, int g, float *s) {
  __m256 acc[CK_ACT_GROUP];
  for (int j = 0; j < CK_ACT_GROUP; j++) acc[j] = _mm256_setzero_ps();
  ck_kq_unpacked k;
  for (int64_t i = 0; i < nblk; i++) {
    unpack(w + (size_t)i * wbs, &k);
    /* scale vector per 32 quants: low 128 bits group 2c, high 128 bits group 2c+1 */
    __m256i scv[8];
    for (int c = 0; c < 8; c++)
      scv[c] = _mm256_set_m128i(_mm_set1_epi16(k.sc[2 * c + 1]), _mm_set1_epi16(k.sc[2 * c]));
    const __m256i mnv = _mm256_load_si256((const __m256i *)k.mn);
    for (int j = 0; j < g; j++) {
      const ck_block_q8_K *y = (const ck_block_q8_K *)(x + j * xrow) + i;
      __m256i ai = _mm256_setzero_si256();
      for (int c = 0; c < 8; c++) {
        const __m256i p = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(k.u + 32 * c)),
                                               LD(y->qs + 32 * c));
        ai = _mm256_add_epi32(ai, _mm256_madd_epi16(p, scv[c]));
      }
      const __m256i mi = _mm256_madd_epi16(LD(y->bsums), mnv);
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(y->d * k.d), _mm256_cvtepi32_ps(ai), acc[j]);
      acc[j] = _mm256_fnmadd_ps(_mm256_set1_ps(y->d * k.dm), _mm256_cvtepi32_ps(mi), acc[j]);
    }
  }
  for (int j = 0; j < g; j++) s[j] = ck_hsum_ps(acc[j]);
}

#define ROW_KQ(NAME, WT, UNPACK)                                                                 \
  CK_AVX2 static void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g, \
                           float *s) {                                                           \
    row_kq(w, sizeof(WT), UNPACK, x, xrow, nblk, g, s);                                          \
  }
ROW_KQ(row_q2_K, ck_block_q2_K, unpack_q2_K)
ROW_KQ(row_q3_K, ck_block_q3_K, unpack_q3_K)
ROW_KQ(row_q4_K, ck_block_q4_K, unpack_q4_K)
ROW_KQ(row_q5_K, ck_block_q5_K, unpack_q5_K)
ROW_KQ(row_q6_K, ck_block_q6_K, unpack_q6_K)

CK_DEFINE_MM(mm_q2_K, row_q2_K, CK_AVX2)
CK_DEFINE_MM(mm_q3_K, row_q3_K, CK_AVX2)
CK_DEFINE_MM(mm_q4_K, row_q4_K, CK_AVX2)
CK_DEFINE_MM(mm_q5_K, row_q5_K, CK_AVX2)
CK_DEFINE_MM(mm_q6_K, row_q6_K, CK_AVX2)

void ck_fill_avx2_kquants(ck_kernels *k);
void ck_fill_avx2_kquants(ck_kernels *k) {
  k->mm[CK_TYPE_Q2_K] = mm_q2_K;
  k->mm[CK_TYPE_Q3_K] = mm_q3_K;
  k->mm[CK_TYPE_Q4_K] = mm_q4_K;
  k->mm[CK_TYPE_Q5_K] = mm_q5_K;
  k->mm[CK_TYPE_Q6_K] = mm_q6_K;
}

#endif
