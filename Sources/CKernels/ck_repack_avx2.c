/* AVX2 kernels of the row-interleaved R8 layouts (see ck_repack.h for the layout and the
   arithmetic, which the portable kernels in ck_repack.c follow operation for operation).
   A tile is one group of 8 rows x up to 4 activations: 8 rows in the lanes of one float
   accumulator per activation, so no horizontal sums. Prefill tiles rows in blocks of 8 groups
   (64 rows, L2-resident) while the activations stream past in fours. */
#include "ck_repack_avx2.h"

#if defined(__x86_64__)

#define R8_ACTS 4       /* activations per tile */
#define R8_ROW_BLOCK 8  /* groups per row block in prefill */
#ifndef R8_PREFETCH
#define R8_PREFETCH 3072 /* bytes ahead a decode tile asks for (see r8_prefetch) */
#endif

/* Decode streams every weight once from memory, and the hardware prefetcher alone leaves a
   single-thread stream well below the bus; asking for the lines R8_PREFETCH bytes ahead of the
   block being multiplied keeps more of them in flight (Scripts/bench-kernels measures it; the
   figures are in docs/benchmarks/history.md). Batches of more than 4 rows tile row blocks in L2
   and do not prefetch (no gain measured). */
CK_AVX2_INLINE void r8_prefetch(const uint8_t *block, int64_t bytes, const int on) {
  if (!on) return;
  for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch((const char *)(block + R8_PREFETCH + off), _MM_HINT_T0);
}

/* 8 * sum of a Q8_0 block's quants */
CK_AVX2_INLINE int32_t r8_sum8(const int8_t *qs) {
  const __m256i v = _mm256_loadu_si256((const __m256i *)qs);
  const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v), _mm256_set1_epi16(1));
  return 8 * ck_hsum_epi32(s);
}

/* ---- Q4_0 / Q5_0 x Q8_0 ----
   Unsigned quants u (Q4_0: the nibble; Q5_0: nibble + 16 * fifth bit) against the signed
   activation, minus the offset times the activation's sum: isum = sum(u*y) - off * sum(y). */

/* one group (gw: its first block) x A activations; offs[a * nblk + i] = off * sum(y_a block i) */
CK_AVX2_INLINE void r8_nib_tile(const uint8_t *gw, const uint8_t *x, size_t xrow, int64_t nblk, int A,
                                const int32_t *offs, __m256 *res, const int five, const int pf) {
  __m256 acc[R8_ACTS];
  for (int a = 0; a < R8_ACTS; a++) acc[a] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10), ones = _mm256_set1_epi16(1);
  const int64_t rb = five ? 176 : 144, qoff = five ? 48 : 16;
  for (int64_t i = 0; i < nblk; i++) {
    const uint8_t *o = gw + i * rb;
    r8_prefetch(o, rb, pf);
    const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o));
    const __m256i H = five ? _mm256_loadu_si256((const __m256i *)(o + 16)) : _mm256_setzero_si256();
    __m256i t[R8_ACTS], u[R8_ACTS];
    for (int a = 0; a < A; a++) t[a] = u[a] = _mm256_setzero_si256();
    for (int h = 0; h < 4; h++) {
      const __m256i R = _mm256_loadu_si256((const __m256i *)(o + qoff + 32 * h));
      __m256i lo = _mm256_and_si256(R, m4), hi = _mm256_and_si256(_mm256_srli_epi16(R, 4), m4);
      if (five) {  /* fifth bits: lo element's at bit h of H, hi element's at bit 4 + h */
        __m256i hl;
        switch (h) {  /* shift counts must be immediates */
          case 0: hl = _mm256_slli_epi16(H, 4); break;
          case 1: hl = _mm256_slli_epi16(H, 3); break;
          case 2: hl = _mm256_slli_epi16(H, 2); break;
          default: hl = _mm256_slli_epi16(H, 1); break;
        }
        lo = _mm256_or_si256(lo, _mm256_and_si256(hl, b4));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_srli_epi16(H, h), b4));
      }
      for (int a = 0; a < A; a++) {
        const int8_t *q = ((const ck_block_q8_0 *)(x + a * xrow) + i)->qs;
        const __m256i pl = _mm256_maddubs_epi16(lo, r8_bcast(q + 4 * h));
        const __m256i ph = _mm256_maddubs_epi16(hi, r8_bcast(q + 16 + 4 * h));
        if (five) {  /* |pair| <= 31*127*2: four chunks per int16 sum */
          t[a] = _mm256_add_epi16(t[a], pl);
          u[a] = _mm256_add_epi16(u[a], ph);
        } else {     /* |pair| <= 15*127*2: all eight */
          t[a] = _mm256_add_epi16(t[a], _mm256_add_epi16(pl, ph));
        }
      }
    }
    for (int a = 0; a < A; a++) {
      const ck_block_q8_0 *y = (const ck_block_q8_0 *)(x + a * xrow) + i;
      __m256i s = _mm256_madd_epi16(t[a], ones);
      if (five) s = _mm256_add_epi32(s, _mm256_madd_epi16(u[a], ones));
      s = _mm256_sub_epi32(s, _mm256_set1_epi32(offs[a * nblk + i]));
      const __m256 scale = _mm256_mul_ps(d8, _mm256_set1_ps(ck_h2f_avx2(y->d)));
      acc[a] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(s), acc[a]);
    }
  }
  for (int a = 0; a < A; a++) res[a] = acc[a];
}

CK_AVX2_INLINE void r8_nib_tile_n(const uint8_t *gw, const uint8_t *x, size_t xrow, int64_t nblk, int A,
                                  const int32_t *offs, __m256 *res, const int five, const int pf) {
  switch (A) {
    case 4: r8_nib_tile(gw, x, xrow, nblk, 4, offs, res, five, pf); break;
    case 3: r8_nib_tile(gw, x, xrow, nblk, 3, offs, res, five, pf); break;
    case 2: r8_nib_tile(gw, x, xrow, nblk, 2, offs, res, five, pf); break;
    default: r8_nib_tile(gw, x, xrow, nblk, 1, offs, res, five, pf); break;
  }
}

CK_AVX2_INLINE void r8_offsets(const uint8_t *xa, size_t xrow, int64_t nblk, int A, int mult, int32_t *offs) {
  for (int a = 0; a < A; a++)
    for (int64_t i = 0; i < nblk; i++)
      offs[a * nblk + i] = mult * r8_sum8(((const ck_block_q8_0 *)(xa + a * xrow) + i)->qs);
}

CK_AVX2_INLINE void mm_r8_nib(const void *w, const void *x, size_t xrow, int64_t nblk,
                              int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride, const int five) {
  const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;
  const int64_t g0 = r0 / CK_R8, g1 = (r1 + CK_R8 - 1) / CK_R8, gstride = nblk * (five ? 176 : 144);
  const int mult = five ? 2 : 1;  /* r8_sum8 is 8 * sum */
  int32_t offs[R8_ACTS * nblk];
  if (nb <= R8_ACTS) {  /* decode, small batches: activation sums once, all groups */
    const int A = (int)nb;
    r8_offsets(X, xrow, nblk, A, mult, offs);
    for (int64_t g = g0; g < g1; g++) {
      __m256 res[R8_ACTS];
      r8_nib_tile_n(W + g * gstride, X, xrow, nblk, A, offs, res, five, 1);
      for (int a = 0; a < A; a++) r8_out(res[a], g, r0, r1, out + a * ostride);
    }
    return;
  }
  for (int64_t gb = g0; gb < g1; gb += R8_ROW_BLOCK) {
    const int64_t ge = gb + R8_ROW_BLOCK < g1 ? gb + R8_ROW_BLOCK : g1;
    for (int64_t a0 = 0; a0 < nb; a0 += R8_ACTS) {
      const int A = nb - a0 < R8_ACTS ? (int)(nb - a0) : R8_ACTS;
      const uint8_t *xa = X + a0 * xrow;
      r8_offsets(xa, xrow, nblk, A, mult, offs);
      for (int64_t g = gb; g < ge; g++) {
        __m256 res[R8_ACTS];
        r8_nib_tile_n(W + g * gstride, xa, xrow, nblk, A, offs, res, five, 0);
        for (int a = 0; a < A; a++) r8_out(res[a], g, r0, r1, out + (a0 + a) * ostride);
      }
    }
  }
}

CK_AVX2 static void mm_r8_q4_0(const void *w, const void *x, size_t xrow, int64_t nblk,
                               int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  mm_r8_nib(w, x, xrow, nblk, r0, r1, nb, out, ostride, 0);
}

CK_AVX2 static void mm_r8_q5_0(const void *w, const void *x, size_t xrow, int64_t nblk,
                               int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  mm_r8_nib(w, x, xrow, nblk, r0, r1, nb, out, ostride, 1);
}

/* ---- Q4_1 x Q8_1: ggml's exact order ----
   Lane c of ggml's 8-lane accumulator holds chunk c of a row (elements 4c..4c+3); here chunk c
   of the 8 rows is one vector, so accumulator c (lanes = rows) is ggml's lane c of each row, and
   the final sum adds accumulators in hsum_float_8's order: results equal ck_matmul's bits. */
CK_AVX2_INLINE __m256 r8_q4_1_one(const uint8_t *gw, const uint8_t *xa, int64_t nblk, const int pf) {
  __m256 acc[8];
  for (int c = 0; c < 8; c++) acc[c] = _mm256_setzero_ps();
  __m256 macc = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < nblk; i++) {
    const uint8_t *o = gw + i * 160;
    r8_prefetch(o, 160, pf);
    const ck_block_q8_1 *y = (const ck_block_q8_1 *)xa + i;
    const __m256 scale = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o)),
                                       _mm256_set1_ps(ck_h2f_avx2(y->d)));
    const __m256 m8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(o + 16)));
    for (int h = 0; h < 4; h++) {
      const __m256i R = _mm256_loadu_si256((const __m256i *)(o + 32 + 32 * h));
      const __m256i lo = _mm256_and_si256(R, m4), hi = _mm256_and_si256(_mm256_srli_epi16(R, 4), m4);
      const __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, r8_bcast(y->qs + 4 * h)), ones);
      const __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, r8_bcast(y->qs + 16 + 4 * h)), ones);
      acc[h] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(pl), acc[h]);
      acc[h + 4] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(ph), acc[h + 4]);
    }
    macc = _mm256_fmadd_ps(m8, _mm256_set1_ps(ck_h2f_avx2(y->s)), macc);
  }
  const __m256 r = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6])),
                                 _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7])));
  return _mm256_add_ps(r, macc);
}

CK_AVX2 static void mm_r8_q4_1(const void *w, const void *x, size_t xrow, int64_t nblk,
                               int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;
  const int64_t g0 = r0 / CK_R8, g1 = (r1 + CK_R8 - 1) / CK_R8, gstride = nblk * 160;
  for (int64_t gb = g0; gb < g1; gb += R8_ROW_BLOCK) {
    const int64_t ge = gb + R8_ROW_BLOCK < g1 ? gb + R8_ROW_BLOCK : g1;
    if (nb == 1) {  /* decode: stream the rows once, prefetching */
      for (int64_t g = gb; g < ge; g++) r8_out(r8_q4_1_one(W + g * gstride, X, nblk, 1), g, r0, r1, out);
      continue;
    }
    for (int64_t b = 0; b < nb; b++) {
      for (int64_t g = gb; g < ge; g++)
        r8_out(r8_q4_1_one(W + g * gstride, X + b * xrow, nblk, 0), g, r0, r1, out + b * ostride);
    }
  }
}

/* ---- Q8_0 x Q8_0 ---- */

/* |w| x sign(y, w) keeps maddubs exact (|w| <= 128, |y| <= 127); int32 sums per chunk */
CK_AVX2_INLINE void r8_q8_0_tile(const uint8_t *gw, const uint8_t *x, size_t xrow, int64_t nblk, int A,
                                 __m256 *res, const int pf) {
  __m256 acc[R8_ACTS];
  for (int a = 0; a < R8_ACTS; a++) acc[a] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < nblk; i++) {
    const uint8_t *o = gw + i * 272;
    r8_prefetch(o, 272, pf);
    const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o));
    __m256i s[R8_ACTS];
    for (int a = 0; a < A; a++) s[a] = _mm256_setzero_si256();
    for (int c = 0; c < 8; c++) {
      const __m256i R = _mm256_loadu_si256((const __m256i *)(o + 16 + 32 * c));
      const __m256i aw = _mm256_sign_epi8(R, R);
      for (int a = 0; a < A; a++) {
        const int8_t *q = ((const ck_block_q8_0 *)(x + a * xrow) + i)->qs;
        const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(r8_bcast(q + 4 * c), R));
        s[a] = _mm256_add_epi32(s[a], _mm256_madd_epi16(p, ones));
      }
    }
    for (int a = 0; a < A; a++) {
      const ck_block_q8_0 *y = (const ck_block_q8_0 *)(x + a * xrow) + i;
      const __m256 scale = _mm256_mul_ps(d8, _mm256_set1_ps(ck_h2f_avx2(y->d)));
      acc[a] = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(s[a]), acc[a]);
    }
  }
  for (int a = 0; a < A; a++) res[a] = acc[a];
}

/* Drivers for the kernels without activation sums. */
#define R8_DRIVER(NAME, TILE, RB)                                                                \
  CK_AVX2 static void NAME(const void *w, const void *x, size_t xrow, int64_t nblk,               \
                           int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {    \
    const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;                              \
    const int64_t g0 = r0 / CK_R8, g1 = (r1 + CK_R8 - 1) / CK_R8, gstride = nblk * (RB);         \
    for (int64_t gb = g0; gb < g1; gb += R8_ROW_BLOCK) {                                         \
      const int64_t ge = gb + R8_ROW_BLOCK < g1 ? gb + R8_ROW_BLOCK : g1;                        \
      for (int64_t a0 = 0; a0 < nb; a0 += R8_ACTS) {                                             \
        const int A = nb - a0 < R8_ACTS ? (int)(nb - a0) : R8_ACTS;                              \
        const uint8_t *xa = X + a0 * xrow;                                                       \
        const int pf = nb <= R8_ACTS; /* decode and small batches: one pass, prefetch */         \
        for (int64_t g = gb; g < ge; g++) {                                                      \
          __m256 res[R8_ACTS];                                                                   \
          switch (A) {                                                                           \
            case 4: TILE(W + g * gstride, xa, xrow, nblk, 4, res, pf); break;                    \
            case 3: TILE(W + g * gstride, xa, xrow, nblk, 3, res, pf); break;                    \
            case 2: TILE(W + g * gstride, xa, xrow, nblk, 2, res, pf); break;                    \
            default: TILE(W + g * gstride, xa, xrow, nblk, 1, res, pf); break;                   \
          }                                                                                      \
          for (int a = 0; a < A; a++) r8_out(res[a], g, r0, r1, out + (a0 + a) * ostride);       \
        }                                                                                        \
      }                                                                                          \
    }                                                                                            \
  }

R8_DRIVER(mm_r8_q8_0, r8_q8_0_tile, 272)

void ck_fill_r8_avx2(ck_mm_r8_fn *tab) {
  tab[CK_TYPE_Q4_0] = mm_r8_q4_0;
  tab[CK_TYPE_Q5_0] = mm_r8_q5_0;
  tab[CK_TYPE_Q4_1] = mm_r8_q4_1;
  tab[CK_TYPE_Q8_0] = mm_r8_q8_0;
  ck_fill_r8_kq_avx2(tab);
}

#else
void ck_fill_r8_avx2(ck_mm_r8_fn *tab) { (void)tab; }
#endif
