/* AVX2 K-quant matmul: SIMD unpacking of Q2_K..Q6_K super-blocks (quants to unsigned bytes,
   scales and mins to int16 vectors, signed offsets folded into the mins as in ck_kquant.h), then
   integer dot kernels against Q8_K activations (maddubs per 32 quants, madd with per-16
   scales, mins through the activations' bsums).
   Every output keeps its own accumulators, updated super-block by super-block in the same way for
   any group size (batch invariant). Each type follows the float arithmetic of ggml's AVX2 vec_dot
   for it exactly (same integer lanes, fma order and horizontal sums: bit-identical results):
   Q2_K mins then scaled sums in one accumulator; Q3_K / Q6_K offsets inside the integer sums;
   Q4_K mins in a 4-lane accumulator; Q5_K mins summed to one integer and a scalar fma.
   Activations must lie in [-127, 127] (what every Q8_K quantizer produces): the sign trick used
   for Q3_K cannot represent -(-128). */
#include "ck_avx2.h"
#include "ck_mm_driver.h"

#if defined(__x86_64__)

#define LD(p) _mm256_loadu_si256((const __m256i *)(p))
#define ST(p, v) _mm256_store_si256((__m256i *)(p), (v))

/* byte = 0xFF where bit b of the byte is set */
CK_AVX2_INLINE __m256i ck_bitmask(__m256i v, int b) {
  const __m256i m = _mm256_set1_epi8((char)(1 << b));
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, m), m);
}

/* Unpacked super-block: quants in k->u (memory, reused by several activations), the 16
   per-16 scales and mins as int16 vectors, the two float super-block scales. */
typedef struct {
  __m256i sc, mn;
  __m128i mins8;  /* Q4_K / Q5_K: the 8 mins (one per 32 quants) as int16 */
  float d, dm;
} ck_kq_meta;

CK_AVX2_INLINE void unpack_q2_K(const void *blk, uint8_t *u, ck_kq_meta *m) {
  const ck_block_q2_K *b = blk;
  const __m256i m3 = _mm256_set1_epi8(3);
  for (int h = 0; h < 2; h++) {
    const __m256i v = LD(b->qs + 32 * h);
    ST(u + 128 * h, _mm256_and_si256(v, m3));
    ST(u + 128 * h + 32, _mm256_and_si256(_mm256_srli_epi16(v, 2), m3));
    ST(u + 128 * h + 64, _mm256_and_si256(_mm256_srli_epi16(v, 4), m3));
    ST(u + 128 * h + 96, _mm256_and_si256(_mm256_srli_epi16(v, 6), m3));
  }
  const __m128i s = _mm_loadu_si128((const __m128i *)b->scales), mf = _mm_set1_epi8(0x0F);
  m->sc = _mm256_cvtepu8_epi16(_mm_and_si128(s, mf));
  m->mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), mf));
  m->d = ck_h2f_avx2(b->d); m->dm = ck_h2f_avx2(b->dmin);
}

CK_AVX2_INLINE void unpack_q3_K(const void *blk, uint8_t *u, ck_kq_meta *m) {
  const ck_block_q3_K *b = blk;
  const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
  const __m256i hm = LD(b->hmask);
  for (int h = 0; h < 2; h++) {
    const __m256i v = LD(b->qs + 32 * h);
    const __m256i lo[4] = { v, _mm256_srli_epi16(v, 2), _mm256_srli_epi16(v, 4), _mm256_srli_epi16(v, 6) };
    for (int j = 0; j < 4; j++) {
      const __m256i hi = _mm256_and_si256(ck_bitmask(hm, 4 * h + j), four);
      ST(u + 128 * h + 32 * j, _mm256_or_si256(_mm256_and_si256(lo[j], m3), hi));
    }
  }
  /* scale i: low nibble from byte i (i < 8) or the high nibble of byte i-8, bits 4-5 from
     byte 8 + i%4 shifted by 2*(i/4); stored biased by 32 */
  uint32_t hb; memcpy(&hb, b->scales + 8, 4);
  const __m128i v = _mm_loadl_epi64((const __m128i *)b->scales);
  const __m128i lo = _mm_and_si128(_mm_unpacklo_epi64(v, _mm_srli_epi16(v, 4)), _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_setr_epi32((int)hb, (int)(hb >> 2), (int)(hb >> 4), (int)(hb >> 6)),
                                   _mm_set1_epi8(3));
  const __m128i sc8 = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
  m->sc = _mm256_cvtepi8_epi16(sc8);
  m->mn = _mm256_slli_epi16(m->sc, 2);
  m->d = m->dm = ck_h2f_avx2(b->d);
}

/* Q4_K / Q5_K: 8 six-bit scales and mins from 12 bytes, each duplicated over its two 16-groups */
CK_AVX2_INLINE void ck_scales_k4(const uint8_t *q, ck_kq_meta *m) {
  uint32_t a0, a1, a2;
  memcpy(&a0, q, 4); memcpy(&a1, q + 4, 4); memcpy(&a2, q + 8, 4);
  const uint32_t sc_lo = a0 & 0x3F3F3F3Fu, mn_lo = a1 & 0x3F3F3F3Fu;
  const uint32_t sc_hi = (a2 & 0x0F0F0F0Fu) | (((a0 >> 6) & 0x03030303u) << 4);
  const uint32_t mn_hi = ((a2 >> 4) & 0x0F0F0F0Fu) | (((a1 >> 6) & 0x03030303u) << 4);
  const __m128i sc = _mm_setr_epi32((int)sc_lo, (int)sc_hi, 0, 0);
  const __m128i mn = _mm_setr_epi32((int)mn_lo, (int)mn_hi, 0, 0);
  m->sc = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sc, sc));
  m->mn = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));
  m->mins8 = _mm_cvtepu8_epi16(mn);
}

CK_AVX2_INLINE void unpack_q4_K(const void *blk, uint8_t *u, ck_kq_meta *m) {
  const ck_block_q4_K *b = blk;
  const __m256i mf = _mm256_set1_epi8(0x0F);
  for (int c = 0; c < 4; c++) {
    const __m256i v = LD(b->qs + 32 * c);
    ST(u + 64 * c, _mm256_and_si256(v, mf));
    ST(u + 64 * c + 32, _mm256_and_si256(_mm256_srli_epi16(v, 4), mf));
  }
  ck_scales_k4(b->scales, m);
  m->d = ck_h2f_avx2(b->d); m->dm = ck_h2f_avx2(b->dmin);
}

CK_AVX2_INLINE void unpack_q5_K(const void *blk, uint8_t *u, ck_kq_meta *m) {
  const ck_block_q5_K *b = blk;
  const __m256i mf = _mm256_set1_epi8(0x0F), m16 = _mm256_set1_epi8(0x10);
  const __m256i qh = LD(b->qh);
  for (int c = 0; c < 4; c++) {
    const __m256i v = LD(b->qs + 32 * c);
    const __m256i h0 = _mm256_and_si256(ck_bitmask(qh, 2 * c), m16);
    const __m256i h1 = _mm256_and_si256(ck_bitmask(qh, 2 * c + 1), m16);
    ST(u + 64 * c, _mm256_or_si256(_mm256_and_si256(v, mf), h0));
    ST(u + 64 * c + 32, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), mf), h1));
  }
  ck_scales_k4(b->scales, m);
  m->d = ck_h2f_avx2(b->d); m->dm = ck_h2f_avx2(b->dmin);
}

CK_AVX2_INLINE void unpack_q6_K(const void *blk, uint8_t *u, ck_kq_meta *m) {
  const ck_block_q6_K *b = blk;
  const __m256i mf = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  for (int h = 0; h < 2; h++) {
    const __m256i l0 = LD(b->ql + 64 * h), l1 = LD(b->ql + 64 * h + 32), qh = LD(b->qh + 32 * h);
    uint8_t *uh = u + 128 * h;
    ST(uh, _mm256_or_si256(_mm256_and_si256(l0, mf), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)));
    ST(uh + 32, _mm256_or_si256(_mm256_and_si256(l1, mf), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)));
    ST(uh + 64, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), mf), _mm256_and_si256(qh, m30)));
    ST(uh + 96, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), mf),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30)));
  }
  m->sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
  m->mn = _mm256_slli_epi16(m->sc, 5);
  m->d = m->dm = ck_h2f_avx2(b->d);
}

typedef void (*ck_kq_unpack_avx2_fn)(const void *blk, uint8_t *u, ck_kq_meta *m);

CK_AVX2_INLINE void row_kq(const uint8_t *w, size_t wbs, ck_kq_unpack_avx2_fn unpack,
                           const uint8_t *x, size_t xrow, int64_t nblk, int g, float *s) {
  __m256 acc[CK_ACT_GROUP];
  for (int j = 0; j < CK_ACT_GROUP; j++) acc[j] = _mm256_setzero_ps();
  _Alignas(32) uint8_t u[CK_QK_K];
  /* picks int16 pair c of a 128-bit lane into all 8 words: low lane word 2c, high lane 2c+1 */
  const __m256i pick = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                        2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
  for (int64_t i = 0; i < nblk; i++) {
    ck_kq_meta m;
    unpack(w + (size_t)i * wbs, u, &m);
    /* scale vector per 32 quants: low 128 bits group 2c, high 128 bits group 2c+1 */
    __m256i scv[8];
    for (int c = 0; c < 8; c++)
      scv[c] = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(m.sc, _mm256_set1_epi32(c)), pick);
    for (int j = 0; j < g; j++) {
      const ck_block_q8_K *y = (const ck_block_q8_K *)(x + j * xrow) + i;
      __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
      for (int c = 0; c < 8; c += 2) {
        const __m256i p0 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(u + 32 * c)), LD(y->qs + 32 * c));
        const __m256i p1 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(u + 32 * c + 32)),
                                                LD(y->qs + 32 * c + 32));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(p0, scv[c]));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(p1, scv[c + 1]));
      }
      /* as ggml's Q2_K: first the mins (lanes: groups 2k, 2k+1), then the scaled sums */
      const __m256i mi = _mm256_madd_epi16(LD(y->bsums), m.mn);
      acc[j] = _mm256_fnmadd_ps(_mm256_set1_ps(y->d * m.dm), _mm256_cvtepi32_ps(mi), acc[j]);
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(y->d * m.d), _mm256_cvtepi32_ps(_mm256_add_epi32(a0, a1)), acc[j]);
    }
  }
  for (int j = 0; j < g; j++) s[j] = ck_hsum_ps(acc[j]);
}

/* Scale vectors per 32 quants: low 128 bits group 2c, high 128 bits group 2c+1. */
CK_AVX2_INLINE void ck_kq_scale_vectors(__m256i sc, __m256i scv[8]) {
  const __m256i pick = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                        2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
  for (int c = 0; c < 8; c++)
    scv[c] = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(sc, _mm256_set1_epi32(c)), pick);
}

/* Q4_K / Q5_K with ggml's AVX2 float arithmetic (ggml_vec_dot_q4_K_q8_K / _q5_K_q8_K): per output,
   block by block, acc = fma(y.d * d, float(scaled integer sums in 8 lanes), acc) and the mins in
   4 lanes: accm = fma(-y.d * dmin, float(mins[2k] * q8s[2k] + mins[2k+1] * q8s[2k+1]), accm) with
   q8s the sums of the activation per 32; result hsum(acc) + ((m0 + m2) + (m1 + m3)). */
CK_AVX2_INLINE void row_kq_mins(const uint8_t *w, size_t wbs, ck_kq_unpack_avx2_fn unpack, int scalar_mins,
                                const uint8_t *x, size_t xrow, int64_t nblk, int g, float *s) {
  __m256 acc[CK_ACT_GROUP];
  __m128 accm[CK_ACT_GROUP];
  for (int j = 0; j < CK_ACT_GROUP; j++) { acc[j] = _mm256_setzero_ps(); accm[j] = _mm_setzero_ps(); }
  _Alignas(32) uint8_t u[CK_QK_K];
  for (int64_t i = 0; i < nblk; i++) {
    ck_kq_meta m;
    unpack(w + (size_t)i * wbs, u, &m);
    __m256i scv[8];
    ck_kq_scale_vectors(m.sc, scv);
    for (int j = 0; j < g; j++) {
      const ck_block_q8_K *y = (const ck_block_q8_K *)(x + j * xrow) + i;
      __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
      for (int c = 0; c < 8; c += 2) {
        const __m256i p0 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(u + 32 * c)), LD(y->qs + 32 * c));
        const __m256i p1 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(u + 32 * c + 32)),
                                                LD(y->qs + 32 * c + 32));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(p0, scv[c]));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(p1, scv[c + 1]));
      }
      const __m256i bs = LD(y->bsums);
      const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
      const __m128i prod = _mm_madd_epi16(m.mins8, q8s);
      if (scalar_mins) { /* Q5_K: the 4 lanes summed in the integers, one scalar fma (lane 0) */
        const __m128i h = _mm_add_epi32(prod, _mm_shuffle_epi32(prod, 0x4E));
        const __m128i t = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
        accm[j] = _mm_fmadd_ss(_mm_set_ss(-y->d * m.dm), _mm_cvtepi32_ps(t), accm[j]);
      } else {
        accm[j] = _mm_fmadd_ps(_mm_set1_ps(-y->d * m.dm), _mm_cvtepi32_ps(prod), accm[j]);
      }
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(y->d * m.d), _mm256_cvtepi32_ps(_mm256_add_epi32(a0, a1)), acc[j]);
    }
  }
  for (int j = 0; j < g; j++) {
    __m128 t = accm[j];
    if (!scalar_mins) {
      t = _mm_add_ps(t, _mm_movehl_ps(t, t));
      t = _mm_add_ss(t, _mm_movehdup_ps(t));
    }
    s[j] = ck_hsum_ps(acc[j]) + _mm_cvtss_f32(t);
  }
}

/* Q6_K with ggml's AVX2 float arithmetic (ggml_vec_dot_q6_K_q8_K): the -32 offset is taken off in
   the integers through the bsums (lane k: groups 2k, 2k+1), then acc = fma(y.d * d, float(sums), acc),
   result hsum(acc). */
CK_AVX2_INLINE void row_q6_K_exact(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g,
                                   float *s) {
  __m256 acc[CK_ACT_GROUP];
  for (int j = 0; j < CK_ACT_GROUP; j++) acc[j] = _mm256_setzero_ps();
  _Alignas(32) uint8_t u[CK_QK_K];
  for (int64_t i = 0; i < nblk; i++) {
    ck_kq_meta m;
    unpack_q6_K(w + (size_t)i * sizeof(ck_block_q6_K), u, &m);
    __m256i scv[8];
    ck_kq_scale_vectors(m.sc, scv);
    for (int j = 0; j < g; j++) {
      const ck_block_q8_K *y = (const ck_block_q8_K *)(x + j * xrow) + i;
      __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
      for (int c = 0; c < 8; c += 2) {
        const __m256i p0 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(u + 32 * c)), LD(y->qs + 32 * c));
        const __m256i p1 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(u + 32 * c + 32)),
                                                LD(y->qs + 32 * c + 32));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(p0, scv[c]));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(p1, scv[c + 1]));
      }
      const __m256i mi = _mm256_madd_epi16(LD(y->bsums), m.mn);
      const __m256i sum = _mm256_sub_epi32(_mm256_add_epi32(a0, a1), mi);
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(y->d * m.d), _mm256_cvtepi32_ps(sum), acc[j]);
    }
  }
  for (int j = 0; j < g; j++) s[j] = ck_hsum_ps(acc[j]);
}

/* Q3_K with ggml's AVX2 float arithmetic (ggml_vec_dot_q3_K_q8_K): the -4 offset applied per
   quant inside the integer sums (signed quants through the sign trick), acc = fma(y.d * d,
   float(sums), acc), result hsum(acc). */
CK_AVX2_INLINE void row_q3_K_exact(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g,
                                   float *s) {
  __m256 acc[CK_ACT_GROUP];
  for (int j = 0; j < CK_ACT_GROUP; j++) acc[j] = _mm256_setzero_ps();
  _Alignas(32) uint8_t u[CK_QK_K];
  _Alignas(32) int8_t q[CK_QK_K];  /* u - 4 */
  for (int64_t i = 0; i < nblk; i++) {
    ck_kq_meta m;
    unpack_q3_K(w + (size_t)i * sizeof(ck_block_q3_K), u, &m);
    for (int c = 0; c < 8; c++) {
      const __m256i v = _mm256_sub_epi8(_mm256_load_si256((const __m256i *)(u + 32 * c)), _mm256_set1_epi8(4));
      _mm256_store_si256((__m256i *)(q + 32 * c), v);
      _mm256_store_si256((__m256i *)(u + 32 * c), _mm256_sign_epi8(v, v));  /* |u - 4| */
    }
    __m256i scv[8];
    ck_kq_scale_vectors(m.sc, scv);
    for (int j = 0; j < g; j++) {
      const ck_block_q8_K *y = (const ck_block_q8_K *)(x + j * xrow) + i;
      __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
      for (int c = 0; c < 8; c += 2) {
        const __m256i p0 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(u + 32 * c)),
            _mm256_sign_epi8(LD(y->qs + 32 * c), _mm256_load_si256((const __m256i *)(q + 32 * c))));
        const __m256i p1 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(u + 32 * c + 32)),
            _mm256_sign_epi8(LD(y->qs + 32 * c + 32), _mm256_load_si256((const __m256i *)(q + 32 * c + 32))));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(p0, scv[c]));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(p1, scv[c + 1]));
      }
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(y->d * m.d), _mm256_cvtepi32_ps(_mm256_add_epi32(a0, a1)), acc[j]);
    }
  }
  for (int j = 0; j < g; j++) s[j] = ck_hsum_ps(acc[j]);
}

#define ROW_KQ(NAME, WT, UNPACK)                                                                 \
  CK_AVX2_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g, \
                           float *s) {                                                           \
    row_kq(w, sizeof(WT), UNPACK, x, xrow, nblk, g, s);                                          \
  }
ROW_KQ(row_q2_K, ck_block_q2_K, unpack_q2_K)
#define row_q3_K row_q3_K_exact
CK_AVX2_INLINE void row_q4_K(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g, float *s) {
  row_kq_mins(w, sizeof(ck_block_q4_K), unpack_q4_K, 0, x, xrow, nblk, g, s);
}
CK_AVX2_INLINE void row_q5_K(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g, float *s) {
  row_kq_mins(w, sizeof(ck_block_q5_K), unpack_q5_K, 1, x, xrow, nblk, g, s);
}
#define row_q6_K row_q6_K_exact

CK_DEFINE_MM_G(mm_q2_K, row_q2_K, CK_AVX2, 8)
CK_DEFINE_MM_G(mm_q3_K, row_q3_K, CK_AVX2, 8)
CK_DEFINE_MM_G(mm_q4_K, row_q4_K, CK_AVX2, 8)
CK_DEFINE_MM_G(mm_q5_K, row_q5_K, CK_AVX2, 8)
CK_DEFINE_MM_G(mm_q6_K, row_q6_K, CK_AVX2, 8)

void ck_fill_avx2_kquants(ck_kernels *k);
void ck_fill_avx2_kquants(ck_kernels *k) {
  k->mm[CK_TYPE_Q2_K] = mm_q2_K;
  k->mm[CK_TYPE_Q3_K] = mm_q3_K;
  k->mm[CK_TYPE_Q4_K] = mm_q4_K;
  k->mm[CK_TYPE_Q5_K] = mm_q5_K;
  k->mm[CK_TYPE_Q6_K] = mm_q6_K;
}

#endif
