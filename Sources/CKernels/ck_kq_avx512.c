/* AVX-512 (F + BW + VL) K-quant matmul on the file layout: Q4_K, Q5_K and Q6_K, the types of the
   Q4_K_M / Q5_K_M files that 70B-class models ship in.
   Why a second set next to ck_kq_avx2.c: at 70B width the weights stream from DRAM and the AVX2
   row kernel is bound by its instructions, not by memory (it unpacks each super-block through a
   stack buffer and builds eight scale vectors per super-block). Here a super-block is unpacked
   straight into four 512-bit registers of 64 quants in element order (one broadcast load, one
   variable shift and one mask per register), its scales into four registers, and every activation
   of a group multiplies against those registers: half the dot-product instructions and none of
   the stores.
   Bits: each output equals the AVX2 kernel's (and so ggml's AVX2 vec_dot's). The integer sums
   are formed per 32-quant chunk and 4-quant lane exactly as there (a 512-bit product holds two
   chunks; its two 256-bit halves are added, which in integers is exact and gives the AVX2
   kernel's eight lanes), then converted and accumulated with the same fma and mins arithmetic
   in the same order.
   Built normally (x86-64, target attributes) or with CK_AVX512_SIMDE against SIMDe (see
   ck_avx512.h), which is how Scripts/avx512-check runs these kernels on a CPU without AVX-512. */
#include "ck_avx512.h"

#if defined(CK_AVX512_BUILD)

/* Decode streams each row once from DRAM (rows are contiguous: one sequential stream); lines
   are asked for KQ512_PREFETCH bytes ahead into L2, as the Q4_K R8 kernel does. */
#ifndef KQ512_PREFETCH
#define KQ512_PREFETCH 16384
#endif
#ifndef KQ512_HINT
#define KQ512_HINT _MM_HINT_T1
#endif
#define KQ512_GROUP 8  /* activations per weight super-block in a batch */

typedef struct {
  __m512i w[4];   /* quants 64j..64j+63 in element order, unsigned */
  __m512i s[4];   /* int16 scale of each 16-quant group, 128-bit lane q = group 4j + q */
  __m128i mins8;  /* Q4_K / Q5_K: the 8 mins as int16 */
  __m256i mn;     /* Q6_K: 32 * scale per 16-group as int16 (the -32 offset through the bsums) */
  float d, dm;
} kq512;

/* Q4_K / Q5_K scales: 8 six-bit scales and mins from 12 bytes (as ck_scales_k4). Scale
   register j lanes 0-1 take sub-block 2j's scale, lanes 2-3 sub-block 2j+1's. */
CK_AVX512_INLINE void kq512_scales_k4(const uint8_t *q, kq512 *m) {
  uint32_t a0, a1, a2;
  memcpy(&a0, q, 4); memcpy(&a1, q + 4, 4); memcpy(&a2, q + 8, 4);
  const uint32_t sc_lo = a0 & 0x3F3F3F3Fu, mn_lo = a1 & 0x3F3F3F3Fu;
  const uint32_t sc_hi = (a2 & 0x0F0F0F0Fu) | (((a0 >> 6) & 0x03030303u) << 4);
  const uint32_t mn_hi = ((a2 >> 4) & 0x0F0F0F0Fu) | (((a1 >> 6) & 0x03030303u) << 4);
  const __m128i sc = _mm_cvtepu8_epi16(_mm_setr_epi32((int)sc_lo, (int)sc_hi, 0, 0));
  m->mins8 = _mm_cvtepu8_epi16(_mm_setr_epi32((int)mn_lo, (int)mn_hi, 0, 0));
  const __m512i b = _mm512_broadcast_i32x4(sc);
  /* lane q of register j picks word 2j + q/2 */
  for (int j = 0; j < 4; j++) {
    const char w0 = (char)(2 * (2 * j)), w1 = (char)(2 * (2 * j + 1));
    const __m512i ctl = _mm512_set_epi8(
        w1 + 1, w1, w1 + 1, w1, w1 + 1, w1, w1 + 1, w1, w1 + 1, w1, w1 + 1, w1, w1 + 1, w1, w1 + 1, w1,
        w1 + 1, w1, w1 + 1, w1, w1 + 1, w1, w1 + 1, w1, w1 + 1, w1, w1 + 1, w1, w1 + 1, w1, w1 + 1, w1,
        w0 + 1, w0, w0 + 1, w0, w0 + 1, w0, w0 + 1, w0, w0 + 1, w0, w0 + 1, w0, w0 + 1, w0, w0 + 1, w0,
        w0 + 1, w0, w0 + 1, w0, w0 + 1, w0, w0 + 1, w0, w0 + 1, w0, w0 + 1, w0, w0 + 1, w0, w0 + 1, w0);
    m->s[j] = _mm512_shuffle_epi8(b, ctl);
  }
}

/* 32 bytes at p in both 256-bit halves */
CK_AVX512_INLINE __m512i kq512_bcast256(const uint8_t *p) {
  return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

CK_AVX512_INLINE void kq512_unpack_q4_K(const uint8_t *blk, kq512 *m) {
  const ck_block_q4_K *b = (const ck_block_q4_K *)blk;
  /* register c: low nibbles of qs[32c..32c+31] (quants 64c..64c+31), then their high nibbles */
  const __m512i sh = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4);
  const __m512i mf = _mm512_set1_epi8(0x0F);
  for (int c = 0; c < 4; c++) m->w[c] = _mm512_and_si512(_mm512_srlv_epi32(kq512_bcast256(b->qs + 32 * c), sh), mf);
  kq512_scales_k4(b->scales, m);
  m->d = ck512_h2f(b->d); m->dm = ck512_h2f(b->dmin);
}

CK_AVX512_INLINE void kq512_unpack_q5_K(const uint8_t *blk, kq512 *m) {
  const ck_block_q5_K *b = (const ck_block_q5_K *)blk;
  const __m512i sh = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4);
  const __m512i mf = _mm512_set1_epi8(0x0F), m16 = _mm512_set1_epi8(0x10);
  const __m512i qh = kq512_bcast256(b->qh);
  for (int c = 0; c < 4; c++) {
    /* fifth bit: bit 2c of qh[e] for quant 64c + e, bit 2c + 1 for quant 64c + 32 + e */
    const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * c))),
                                           _mm256_set1_epi8((char)(1 << (2 * c + 1))), 1);
    const __mmask64 k = _mm512_test_epi8_mask(qh, bit);
    const __m512i lo = _mm512_and_si512(_mm512_srlv_epi32(kq512_bcast256(b->qs + 32 * c), sh), mf);
    m->w[c] = _mm512_mask_add_epi8(lo, k, lo, m16);
  }
  kq512_scales_k4(b->scales, m);
  m->d = ck512_h2f(b->d); m->dm = ck512_h2f(b->dmin);
}

CK_AVX512_INLINE void kq512_unpack_q6_K(const uint8_t *blk, kq512 *m) {
  const ck_block_q6_K *b = (const ck_block_q6_K *)blk;
  const __m512i mf = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  /* ql[64h..64h+31] -> quants 128h + 0..31 (low nibbles) and 128h + 64..95 (high nibbles);
     ql[64h+32..64h+63] -> 128h + 32..63 and 128h + 96..127; qh[32h + e] holds their two top bits
     at bits 0-1, 2-3, 4-5 and 6-7 in that order */
  const __m512i shl = _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 2, 2, 2, 2, 2, 2, 2, 2);
  const __m512i shr = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
  for (int h = 0; h < 2; h++) {
    const __m512i l = _mm512_loadu_si512((const void *)(b->ql + 64 * h));
    const __m512i qh = kq512_bcast256(b->qh + 32 * h);
    m->w[2 * h] = _mm512_or_si512(_mm512_and_si512(l, mf), _mm512_and_si512(_mm512_sllv_epi32(qh, shl), m30));
    m->w[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), mf),
                                      _mm512_and_si512(_mm512_srlv_epi32(qh, shr), m30));
  }
  const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
  m->mn = _mm256_slli_epi16(sc, 5);
  const __m512i s = _mm512_castsi256_si512(sc);
  for (int j = 0; j < 4; j++) {
    const short g = (short)(4 * j);
    const __m512i idx = _mm512_set_epi16(g + 3, g + 3, g + 3, g + 3, g + 3, g + 3, g + 3, g + 3,
                                         g + 2, g + 2, g + 2, g + 2, g + 2, g + 2, g + 2, g + 2,
                                         g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1,
                                         g, g, g, g, g, g, g, g);
    m->s[j] = _mm512_permutexvar_epi16(idx, s);
  }
  m->d = m->dm = ck512_h2f(b->d);
}

/* The scaled integer sums of one activation block against the unpacked super-block, in the AVX2
   kernel's eight lanes (lane l: quants 4l..4l+3 of every 32-quant chunk). */
CK_AVX512_INLINE __m256i kq512_isum(const kq512 *m, const ck_block_q8_K *y) {
  __m512i p = _mm512_madd_epi16(_mm512_maddubs_epi16(m->w[0], _mm512_loadu_si512((const void *)y->qs)), m->s[0]);
  for (int j = 1; j < 4; j++)
    p = _mm512_add_epi32(p, _mm512_madd_epi16(_mm512_maddubs_epi16(m->w[j], _mm512_loadu_si512((const void *)(y->qs + 64 * j))),
                                              m->s[j]));
  return _mm256_add_epi32(_mm512_castsi512_si256(p), _mm512_extracti64x4_epi64(p, 1));
}

/* kind: 0 Q4_K, 1 Q5_K, 2 Q6_K (a constant in every inlined copy) */
CK_AVX512_INLINE void kq512_unpack(const int kind, const uint8_t *blk, kq512 *m) {
  if (kind == 0) kq512_unpack_q4_K(blk, m);
  else if (kind == 1) kq512_unpack_q5_K(blk, m);
  else kq512_unpack_q6_K(blk, m);
}

CK_AVX512_INLINE size_t kq512_block_bytes(const int kind) {
  return kind == 0 ? sizeof(ck_block_q4_K) : kind == 1 ? sizeof(ck_block_q5_K) : sizeof(ck_block_q6_K);
}

CK_AVX512_INLINE float kq512_hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* One weight row against g activations (g a constant per inlined copy): the accumulation of
   ck_kq_avx2.c's row_kq_mins (Q4_K, Q5_K) and row_q6_K_exact (Q6_K), operation for operation. */
CK_AVX512_INLINE void kq512_row(const int kind, const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk,
                                const int g, const int pf, float *s) {
  __m256 acc[KQ512_GROUP];
  __m128 accm[KQ512_GROUP];
  for (int j = 0; j < g; j++) { acc[j] = _mm256_setzero_ps(); accm[j] = _mm_setzero_ps(); }
  const size_t bb = kq512_block_bytes(kind);
  for (int64_t i = 0; i < nblk; i++) {
    const uint8_t *blk = w + (size_t)i * bb;
    if (pf) {
      for (size_t off = 0; off < bb; off += 64) _mm_prefetch((const char *)(blk + KQ512_PREFETCH + off), KQ512_HINT);
    }
    kq512 m;
    kq512_unpack(kind, blk, &m);
    for (int j = 0; j < g; j++) {
      const ck_block_q8_K *y = (const ck_block_q8_K *)(x + (size_t)j * xrow) + i;
      const __m256i isum = kq512_isum(&m, y);
      if (kind == 2) {
        const __m256i mi = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), m.mn);
        acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(y->d * m.d), _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, mi)), acc[j]);
        continue;
      }
      const __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
      const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
      const __m128i prod = _mm_madd_epi16(m.mins8, q8s);
      if (kind == 1) { /* Q5_K: the 4 lanes summed in the integers, one scalar fma (lane 0) */
        const __m128i h = _mm_add_epi32(prod, _mm_shuffle_epi32(prod, 0x4E));
        const __m128i t = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
        accm[j] = _mm_fmadd_ss(_mm_set_ss(-y->d * m.dm), _mm_cvtepi32_ps(t), accm[j]);
      } else {
        accm[j] = _mm_fmadd_ps(_mm_set1_ps(-y->d * m.dm), _mm_cvtepi32_ps(prod), accm[j]);
      }
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(y->d * m.d), _mm256_cvtepi32_ps(isum), acc[j]);
    }
  }
  for (int j = 0; j < g; j++) {
    if (kind == 2) { s[j] = kq512_hsum_ps(acc[j]); continue; }
    __m128 t = accm[j];
    if (kind == 0) {
      t = _mm_add_ps(t, _mm_movehl_ps(t, t));
      t = _mm_add_ss(t, _mm_movehdup_ps(t));
    }
    s[j] = kq512_hsum_ps(acc[j]) + _mm_cvtss_f32(t);
  }
}

/* Rows [r0, r1) against nb activations: one activation streams each row once (prefetched);
   a batch takes the activations in groups of up to 8 per row, in row tiles so a tile's rows stay
   in cache while the groups pass (as CK_DEFINE_MM_G). */
CK_AVX512_INLINE void kq512_mm(const int kind, const void *w, size_t wrow, const void *x, size_t xrow, int64_t nblk,
                               int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;
  if (nb == 1) {
    for (int64_t r = r0; r < r1; r++) kq512_row(kind, W + (size_t)r * wrow, X, xrow, nblk, 1, 1, out + r);
    return;
  }
  for (int64_t rt = r0; rt < r1; rt += CK_ROW_TILE) {
    const int64_t re = rt + CK_ROW_TILE < r1 ? rt + CK_ROW_TILE : r1;
    for (int64_t b0 = 0; b0 < nb;) {
      const int64_t rem = nb - b0;
      const int g = rem >= 8 ? 8 : rem >= 4 ? 4 : (int)rem;
      for (int64_t r = rt; r < re; r++) {
        float s[KQ512_GROUP];
        const uint8_t *wr = W + (size_t)r * wrow, *xg = X + (size_t)b0 * xrow;
        switch (g) {
          case 8: kq512_row(kind, wr, xg, xrow, nblk, 8, 0, s); break;
          case 4: kq512_row(kind, wr, xg, xrow, nblk, 4, 0, s); break;
          case 3: kq512_row(kind, wr, xg, xrow, nblk, 3, 0, s); break;
          case 2: kq512_row(kind, wr, xg, xrow, nblk, 2, 0, s); break;
          default: kq512_row(kind, wr, xg, xrow, nblk, 1, 0, s); break;
        }
        for (int j = 0; j < g; j++) out[(b0 + j) * ostride + r] = s[j];
      }
      b0 += g;
    }
  }
}

CK_AVX512 static void mm512_q4_K(const void *w, size_t wrow, const void *x, size_t xrow, int64_t nblk,
                                 int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  kq512_mm(0, w, wrow, x, xrow, nblk, r0, r1, nb, out, ostride);
}
CK_AVX512 static void mm512_q5_K(const void *w, size_t wrow, const void *x, size_t xrow, int64_t nblk,
                                 int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  kq512_mm(1, w, wrow, x, xrow, nblk, r0, r1, nb, out, ostride);
}
CK_AVX512 static void mm512_q6_K(const void *w, size_t wrow, const void *x, size_t xrow, int64_t nblk,
                                 int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  kq512_mm(2, w, wrow, x, xrow, nblk, r0, r1, nb, out, ostride);
}

void ck_fill_kq_avx512(ck_kernels *k) {
  k->mm[CK_TYPE_Q4_K] = mm512_q4_K;
  k->mm[CK_TYPE_Q5_K] = mm512_q5_K;
  k->mm[CK_TYPE_Q6_K] = mm512_q6_K;
}

#else
void ck_fill_kq_avx512(ck_kernels *k) { (void)k; }
#endif
