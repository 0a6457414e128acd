/* AVX2 kernels of the Q4_K and Q5_K R8 layouts (see ck_repack_kq.c for the layout and the arithmetic, which
   the portable kernel follows operation for operation: the same bits).
   A tile is one group of 8 rows x up to KQ_ACTS activations; the 8 rows sit in the lanes of
   every vector. Per 32-byte quant vector (8 quants of each row, two sub-blocks): one mask and
   one shift give the low and high nibbles, each multiplied by a 4-byte chunk of the activation
   broadcast to the 8 rows; the 16-bit products of a sub-block are summed in 16 bits (Q4_K: 8 x
   15 x 127 x 2 < 2^15; Q5_K, whose fifth bits are ORed in from their own vectors: 4 x 31 x
   127 x 2), and one multiply-add per sub-block applies the 8 rows' scales. */
#include "ck_repack_avx2.h"

#if defined(__x86_64__)

#define KQ_ACTS 2        /* activations per tile (16 vector registers) */
#define KQ_ROW_BLOCK 8   /* groups per row block in prefill (8 x 8 rows x k/256 x 1152 bytes) */
/* Decode streams the weights once from DRAM, and the hardware prefetcher alone does not keep one
   thread's stream at a plain read loop's bandwidth. Lines are asked for KQ_PREFETCH bytes ahead
   into L2: nearer distances and L1 hints were slower (Scripts/bench-kernels --kq measures it;
   docs/benchmarks.md has the figures). */
#ifndef KQ_PREFETCH
#define KQ_PREFETCH 8192
#endif

/* pshufb controls: byte j (0..3) of each 32-bit lane into both 16-bit words of the lane */
#define KQ_PICK(a) a, -128, a, -128, a + 4, -128, a + 4, -128, a + 8, -128, a + 8, -128, a + 12, -128, a + 12, -128, \
                   a, -128, a, -128, a + 4, -128, a + 4, -128, a + 8, -128, a + 8, -128, a + 12, -128, a + 12, -128
static const int8_t kq_pick_tab[4][32] __attribute__((aligned(32))) = {
  { KQ_PICK(0) }, { KQ_PICK(1) }, { KQ_PICK(2) }, { KQ_PICK(3) },
};

CK_AVX2_INLINE __m256i kq_pick(const int j) { return _mm256_load_si256((const __m256i *)kq_pick_tab[j]); }

/* h shifted left by n bits (right by -n), n from -3 to 4, in 16-bit lanes (immediate counts) */
CK_AVX2_INLINE __m256i kq_shift(__m256i h, const int n) {
  switch (n) {
    case 4: return _mm256_slli_epi16(h, 4);
    case 3: return _mm256_slli_epi16(h, 3);
    case 2: return _mm256_slli_epi16(h, 2);
    case 1: return _mm256_slli_epi16(h, 1);
    case 0: return h;
    case -1: return _mm256_srli_epi16(h, 1);
    case -2: return _mm256_srli_epi16(h, 2);
    default: return _mm256_srli_epi16(h, 3);
  }
}
#define KQ_SHIFT kq_shift

/* One group (gw: its first super-block) x A activations; res[a]: the 8 rows' results. */
CK_AVX2_INLINE void kq_tile(const uint8_t *gw, const uint8_t *x, size_t xrow, int64_t nblk, const int A, const int five,
                                 __m256 *res, const int pf) {
  __m256 acc[KQ_ACTS];
  for (int a = 0; a < A; a++) acc[a] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F), m6 = _mm256_set1_epi8(0x3F), m2 = _mm256_set1_epi8(0x03);
  const __m256i m16 = _mm256_set1_epi8(0x10);
  for (int64_t i = 0; i < nblk; i++) {
    const uint8_t *o = gw + i * (five ? 1408 : 1152);
    if (pf) {
      for (int off = 0; off < (five ? 1408 : 1152); off += 64) _mm_prefetch((const char *)(o + KQ_PREFETCH + off), _MM_HINT_T1);
    }
    /* the 8 rows' six-bit scales and mins (ck_scale_min_k4 on 8 rows at once): dword r of
       sc_lo holds row r's scales 0-3, sc_hi its scales 4-7, mn_lo / mn_hi its mins */
    const __m256i a0 = _mm256_loadu_si256((const __m256i *)(o + 32));
    const __m256i a1 = _mm256_loadu_si256((const __m256i *)(o + 64));
    const __m256i a2 = _mm256_loadu_si256((const __m256i *)(o + 96));
    const __m256i sc_lo = _mm256_and_si256(a0, m6), mn_lo = _mm256_and_si256(a1, m6);
    const __m256i sc_hi = _mm256_or_si256(_mm256_and_si256(a2, m4),
                                          _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(a0, 6), m2), 4));
    const __m256i mn_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(a2, 4), m4),
                                          _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(a1, 6), m2), 4));
    __m256i isum[KQ_ACTS];
    for (int a = 0; a < A; a++) isum[a] = _mm256_setzero_si256();
    /* unrolled: the fifth-bit shifts of Q5_K need constant counts */
#pragma clang loop unroll(full)
    for (int c = 0; c < 4; c++) {
      __m256i pl[KQ_ACTS], ph[KQ_ACTS], pl2[KQ_ACTS], ph2[KQ_ACTS];
      for (int a = 0; a < A; a++) pl[a] = ph[a] = pl2[a] = ph2[a] = _mm256_setzero_si256();
      for (int m = 0; m < 8; m++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(o + (five ? 384 : 128) + 32 * (8 * c + m)));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (five) {  /* fifth bits 2c (lo) and 2c + 1 (hi) of the m-th qh vector, moved to bit 4 */
          const __m256i h = _mm256_loadu_si256((const __m256i *)(o + 128 + 32 * m));
          lo = _mm256_or_si256(lo, _mm256_and_si256(KQ_SHIFT(h, 4 - 2 * c), m16));
          hi = _mm256_or_si256(hi, _mm256_and_si256(KQ_SHIFT(h, 3 - 2 * c), m16));
        }
        for (int a = 0; a < A; a++) {
          const int8_t *q = ((const ck_block_q8_K *)(x + (size_t)a * xrow) + i)->qs + 64 * c + 4 * m;
          pl[a] = _mm256_add_epi16(pl[a], _mm256_maddubs_epi16(lo, r8_bcast(q)));
          ph[a] = _mm256_add_epi16(ph[a], _mm256_maddubs_epi16(hi, r8_bcast(q + 32)));
        }
        if (five && m == 3) {  /* Q5_K: |pair| <= 31 x 127 x 2, four of them per 16-bit sum */
          for (int a = 0; a < A; a++) { pl2[a] = pl[a]; ph2[a] = ph[a]; pl[a] = ph[a] = _mm256_setzero_si256(); }
        }
      }
      /* sub-blocks 2c and 2c + 1: scale bytes (2c) % 4 and (2c + 1) % 4 of sc_lo (c < 2) or sc_hi */
      const __m256i sv = c < 2 ? sc_lo : sc_hi;
      const __m256i s0 = _mm256_shuffle_epi8(sv, kq_pick((2 * c) % 4));
      const __m256i s1 = _mm256_shuffle_epi8(sv, kq_pick((2 * c + 1) % 4));
      for (int a = 0; a < A; a++) {
        isum[a] = _mm256_add_epi32(isum[a], _mm256_add_epi32(_mm256_madd_epi16(pl[a], s0), _mm256_madd_epi16(ph[a], s1)));
        if (five)
          isum[a] = _mm256_add_epi32(isum[a], _mm256_add_epi32(_mm256_madd_epi16(pl2[a], s0), _mm256_madd_epi16(ph2[a], s1)));
      }
    }
    /* mins: rows 0-3 and 4-7 as 16-bit words (row r at words 4r..4r+3 of its half) */
    const __m256i ml03 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(mn_lo));
    const __m256i ml47 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(mn_lo, 1));
    const __m256i mh03 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(mn_hi));
    const __m256i mh47 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(mn_hi, 1));
    const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o));
    const __m256 dm8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(o + 16)));
    for (int a = 0; a < A; a++) {
      const ck_block_q8_K *y = (const ck_block_q8_K *)(x + (size_t)a * xrow) + i;
      /* sums of the activation per sub-block, q8s[j] = bsums[2j] + bsums[2j+1] */
      const __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
      const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
      const __m256i q03 = _mm256_broadcastq_epi64(q8s), q47 = _mm256_broadcastq_epi64(_mm_srli_si128(q8s, 8));
      const __m256i lo4 = _mm256_add_epi32(_mm256_madd_epi16(ml03, q03), _mm256_madd_epi16(mh03, q47));
      const __m256i hi4 = _mm256_add_epi32(_mm256_madd_epi16(ml47, q03), _mm256_madd_epi16(mh47, q47));
      /* lane pairs -> row sums: hadd gives rows (0 1 4 5 | 2 3 6 7) */
      const __m256i imin = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo4, hi4), 0xD8);
      const __m256 yd = _mm256_set1_ps(y->d);
      acc[a] = _mm256_fmadd_ps(_mm256_mul_ps(d8, yd), _mm256_cvtepi32_ps(isum[a]), acc[a]);
      acc[a] = _mm256_fnmadd_ps(_mm256_mul_ps(dm8, yd), _mm256_cvtepi32_ps(imin), acc[a]);
    }
  }
  for (int a = 0; a < A; a++) res[a] = acc[a];
}

/* Decode and small batches: every group once, prefetched. Larger batches: row blocks of
   KQ_ROW_BLOCK groups (L2-resident) while the activations pass in tiles, the first prefetched. */
CK_AVX2_INLINE void kq_mm(const void *w, const void *x, size_t xrow, int64_t nblk, int64_t r0, int64_t r1,
                          int64_t nb, float *out, int64_t ostride, const int five) {
  const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;
  const int64_t g0 = r0 / CK_R8, g1 = (r1 + CK_R8 - 1) / CK_R8, gstride = nblk * (five ? 1408 : 1152);
  const int64_t block = nb <= KQ_ACTS ? g1 - g0 : KQ_ROW_BLOCK;
  for (int64_t gb = g0; gb < g1; gb += block) {
    const int64_t ge = gb + block < g1 ? gb + block : g1;
    for (int64_t a0 = 0; a0 < nb; a0 += KQ_ACTS) {
      const int A = nb - a0 < KQ_ACTS ? (int)(nb - a0) : KQ_ACTS;
      const uint8_t *xa = X + (size_t)a0 * xrow;
      const int pf = nb <= KQ_ACTS || a0 == 0;  /* a row block's first tile streams it from memory */
      for (int64_t g = gb; g < ge; g++) {
        __m256 res[KQ_ACTS];
        if (A == 2) kq_tile(W + g * gstride, xa, xrow, nblk, 2, five, res, pf);
        else kq_tile(W + g * gstride, xa, xrow, nblk, 1, five, res, pf);
        for (int a = 0; a < A; a++) r8_out(res[a], g, r0, r1, out + (a0 + a) * ostride);
      }
    }
  }
}

CK_AVX2 static void mm_r8_q4_K(const void *w, const void *x, size_t xrow, int64_t nblk,
                               int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  kq_mm(w, x, xrow, nblk, r0, r1, nb, out, ostride, 0);
}

CK_AVX2 static void mm_r8_q5_K(const void *w, const void *x, size_t xrow, int64_t nblk,
                               int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  kq_mm(w, x, xrow, nblk, r0, r1, nb, out, ostride, 1);
}

void ck_fill_r8_kq_avx2(ck_mm_r8_fn *tab) {
  tab[CK_TYPE_Q4_K] = mm_r8_q4_K;
  tab[CK_TYPE_Q5_K] = mm_r8_q5_K;
}

#else
void ck_fill_r8_kq_avx2(ck_mm_r8_fn *tab) { (void)tab; }
#endif
