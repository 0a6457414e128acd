/* AVX-512 VNNI kernels of the Q4_K, Q5_K and Q6_K R8 layouts (see ck_repack_kq.c for the layout and arithmetic;
   ck_repack_kq_avx2.c for the AVX2 tile this follows). Two differences, both for prefill, where
   the AVX2 tile is bound by its instructions: vpdpbusd multiplies and accumulates the 4-quant
   products of a sub-block straight into 32-bit sums (the AVX2 tile needs a multiply, a 16-bit
   add and a final multiply-add), the 8 rows' scales then apply with one 32-bit multiply; and the
   32 vector registers of AVX-512 hold a tile of 4 activations instead of 2. The integer sums
   are the same exact integers, so the results are the AVX2 and scalar kernels' bits.
   Three shapes: decode and small batches stream one group at a time in 256-bit vectors (kqv_tile);
   batches pair two groups in 512-bit vectors (kqz_tile); from KQU_MIN_ACTS activations, pairs of
   groups are unpacked once per row block into ready code vectors (kqu_block), so the activations'
   pass is loads and vpdpbusd alone.
   Built normally (x86-64, target attributes) or with CK_AVX512_SIMDE against SIMDe (see
   ck_avx512.h), which is how Scripts/avx512-check runs it on a CPU without AVX-512. */
#include "ck_avx512.h"
#include "ck_repack.h"
#include "ck_repack_avx2.h"
#include <stdlib.h>

#if defined(CK_AVX512_BUILD)

#define KQV_ACTS 4        /* activations per tile */
#define KQV_ROW_BLOCK 8   /* groups per row block in prefill */
#ifndef KQU_MIN_ACTS
#define KQU_MIN_ACTS 24   /* from this many activations the unpacked path (kqu_block) pays */
#endif
#ifndef KQV_PREFETCH
#define KQV_PREFETCH 8192 /* as the AVX2 tile (see KQ_PREFETCH there) */
#endif

/* pshufb controls: byte j (0..3) of each 32-bit lane into the lane's low byte, the rest zero */
#define KQV_PICK(a) a, -128, -128, -128, a + 4, -128, -128, -128, a + 8, -128, -128, -128, a + 12, -128, -128, -128, \
                    a, -128, -128, -128, a + 4, -128, -128, -128, a + 8, -128, -128, -128, a + 12, -128, -128, -128
static const int8_t kqv_pick_tab[4][32] __attribute__((aligned(32))) = {
  { KQV_PICK(0) }, { KQV_PICK(1) }, { KQV_PICK(2) }, { KQV_PICK(3) },
};

CK_AVX512_VNNI_INLINE __m256i kqv_pick(const int j) { return _mm256_load_si256((const __m256i *)kqv_pick_tab[j]); }

/* sum_j mn_j * q8s_j of one group's 8 rows: mn_lo / mn_hi hold row r's mins 0-3 / 4-7 at dword r,
   q03 / q47 the activation's sub-block sums 0-3 / 4-7 (each 64-bit lane); rows 0-3 and 4-7 as
   16-bit words, lane pairs summed into rows by hadd (rows 0 1 4 5 | 2 3 6 7), then reordered */
CK_AVX512_VNNI_INLINE __m256i kqv_mins(__m256i mn_lo, __m256i mn_hi, __m256i q03, __m256i q47) {
  const __m256i ml03 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(mn_lo));
  const __m256i ml47 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(mn_lo, 1));
  const __m256i mh03 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(mn_hi));
  const __m256i mh47 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(mn_hi, 1));
  const __m256i lo4 = _mm256_add_epi32(_mm256_madd_epi16(ml03, q03), _mm256_madd_epi16(mh03, q47));
  const __m256i hi4 = _mm256_add_epi32(_mm256_madd_epi16(ml47, q03), _mm256_madd_epi16(mh47, q47));
  return _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo4, hi4), 0xD8);
}

CK_AVX512_VNNI_INLINE void kqv_tile(const uint8_t *gw, const uint8_t *x, size_t xrow, int64_t nblk, const int A, const int five,
                                    __m256 *res, const int pf) {
  __m256 acc[KQV_ACTS];
  for (int a = 0; a < A; a++) acc[a] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F), m6 = _mm256_set1_epi8(0x3F), m2 = _mm256_set1_epi8(0x03);
  const __m256i m16 = _mm256_set1_epi8(0x10);
  for (int64_t i = 0; i < nblk; i++) {
    const uint8_t *o = gw + i * (five ? 1408 : 1152);
    if (pf) {
      for (int off = 0; off < (five ? 1408 : 1152); off += 64) _mm_prefetch((const char *)(o + KQV_PREFETCH + off), _MM_HINT_T1);
    }
    const __m256i a0 = _mm256_loadu_si256((const __m256i *)(o + 32));
    const __m256i a1 = _mm256_loadu_si256((const __m256i *)(o + 64));
    const __m256i a2 = _mm256_loadu_si256((const __m256i *)(o + 96));
    const __m256i sc_lo = _mm256_and_si256(a0, m6), mn_lo = _mm256_and_si256(a1, m6);
    const __m256i sc_hi = _mm256_or_si256(_mm256_and_si256(a2, m4),
                                          _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(a0, 6), m2), 4));
    const __m256i mn_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(a2, 4), m4),
                                          _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(a1, 6), m2), 4));
    __m256i isum[KQV_ACTS];
    for (int a = 0; a < A; a++) isum[a] = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
      const __m128i cnt = _mm_cvtsi32_si128(2 * c);  /* Q5_K: fifth bits 2c and 2c + 1 down to bits 0, 1 */
      __m256i pl[KQV_ACTS], ph[KQV_ACTS];
      for (int a = 0; a < A; a++) pl[a] = ph[a] = _mm256_setzero_si256();
      for (int m = 0; m < 8; m++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(o + (five ? 384 : 128) + 32 * (8 * c + m)));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (five) {  /* fifth bits 2c (lo) and 2c + 1 (hi) of the m-th qh vector, moved to bit 4 */
          const __m256i h = _mm256_loadu_si256((const __m256i *)(o + 128 + 32 * m));
          const __m256i t = _mm256_srl_epi16(h, cnt);
          lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(t, 4), m16));
          hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(t, 3), m16));
        }
        for (int a = 0; a < A; a++) {
          const int8_t *q = ((const ck_block_q8_K *)(x + (size_t)a * xrow) + i)->qs + 64 * c + 4 * m;
          pl[a] = _mm256_dpbusd_epi32(pl[a], lo, r8_bcast(q));
          ph[a] = _mm256_dpbusd_epi32(ph[a], hi, r8_bcast(q + 32));
        }
      }
      const __m256i sv = c < 2 ? sc_lo : sc_hi;
      const __m256i s0 = _mm256_shuffle_epi8(sv, kqv_pick((2 * c) % 4));
      const __m256i s1 = _mm256_shuffle_epi8(sv, kqv_pick((2 * c + 1) % 4));
      for (int a = 0; a < A; a++)
        isum[a] = _mm256_add_epi32(isum[a], _mm256_add_epi32(_mm256_mullo_epi32(pl[a], s0), _mm256_mullo_epi32(ph[a], s1)));
    }
    const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o));
    const __m256 dm8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(o + 16)));
    for (int a = 0; a < A; a++) {
      const ck_block_q8_K *y = (const ck_block_q8_K *)(x + (size_t)a * xrow) + i;
      const __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
      const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
      const __m256i q03 = _mm256_broadcastq_epi64(q8s), q47 = _mm256_broadcastq_epi64(_mm_srli_si128(q8s, 8));
      const __m256i imin = kqv_mins(mn_lo, mn_hi, q03, q47);
      const __m256 yd = _mm256_set1_ps(y->d);
      acc[a] = _mm256_fmadd_ps(_mm256_mul_ps(d8, yd), _mm256_cvtepi32_ps(isum[a]), acc[a]);
      acc[a] = _mm256_fnmadd_ps(_mm256_mul_ps(dm8, yd), _mm256_cvtepi32_ps(imin), acc[a]);
    }
  }
  for (int a = 0; a < A; a++) res[a] = acc[a];
}

/* Q6_K (layout in ck_repack_kq.c): per (h, m) three vectors give four of 6-bit quants; each
   16-quant group's products accumulate in 32 bits (vpdpbusd) over the four m of the group, then
   its 8 rows' scales apply with one 32-bit multiply; the -32 offset comes off once per super-block
   through the activation's bsums. A = 1..4 activations. */
CK_AVX512_VNNI_INLINE void kqv6_tile(const uint8_t *gw, const uint8_t *x, size_t xrow, int64_t nblk, const int A,
                                     __m256 *res, const int pf) {
  __m256 acc[KQV_ACTS];
  for (int a = 0; a < A; a++) acc[a] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  for (int64_t i = 0; i < nblk; i++) {
    const uint8_t *o = gw + i * 1680;
    if (pf) {
      for (int off = 0; off < 1680; off += 64) _mm_prefetch((const char *)(o + KQV_PREFETCH + off), _MM_HINT_T1);
    }
    __m256i isum[KQV_ACTS], imin[KQV_ACTS];
    for (int a = 0; a < A; a++) isum[a] = imin[a] = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
      for (int half = 0; half < 2; half++) {  /* m = 4 half .. 4 half + 3: groups 8h + 2t + half */
        __m256i p[KQV_ACTS][4];
        for (int a = 0; a < A; a++) p[a][0] = p[a][1] = p[a][2] = p[a][3] = _mm256_setzero_si256();
        for (int mm = 0; mm < 4; mm++) {
          const int m = 4 * half + mm;
          const uint8_t *q = o + 144 + 32 * 3 * (8 * h + m);
          const __m256i va = _mm256_loadu_si256((const __m256i *)q);
          const __m256i vb = _mm256_loadu_si256((const __m256i *)(q + 32));
          const __m256i vh = _mm256_loadu_si256((const __m256i *)(q + 64));
          const __m256i u0 = _mm256_or_si256(_mm256_and_si256(va, m4), _mm256_and_si256(_mm256_slli_epi16(vh, 4), m30));
          const __m256i u1 = _mm256_or_si256(_mm256_and_si256(vb, m4), _mm256_and_si256(_mm256_slli_epi16(vh, 2), m30));
          const __m256i u2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(va, 4), m4), _mm256_and_si256(vh, m30));
          const __m256i u3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(vb, 4), m4),
                                             _mm256_and_si256(_mm256_srli_epi16(vh, 2), m30));
          for (int a = 0; a < A; a++) {
            const int8_t *y = ((const ck_block_q8_K *)(x + (size_t)a * xrow) + i)->qs + 128 * h + 4 * m;
            p[a][0] = _mm256_dpbusd_epi32(p[a][0], u0, r8_bcast(y));
            p[a][1] = _mm256_dpbusd_epi32(p[a][1], u1, r8_bcast(y + 32));
            p[a][2] = _mm256_dpbusd_epi32(p[a][2], u2, r8_bcast(y + 64));
            p[a][3] = _mm256_dpbusd_epi32(p[a][3], u3, r8_bcast(y + 96));
          }
        }
        /* scales of groups 8h + 2t + half (t = 0..3): pair p = 4h + t, element half */
        for (int t = 0; t < 4; t++) {
          const __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(o + 16 + 16 * (4 * h + t))));
          const __m256i sc = half ? _mm256_srai_epi32(w, 16) : _mm256_srai_epi32(_mm256_slli_epi32(w, 16), 16);
          for (int a = 0; a < A; a++) isum[a] = _mm256_add_epi32(isum[a], _mm256_mullo_epi32(p[a][t], sc));
        }
      }
    }
    /* sum_s sc_s * bsums[s]: pairs of groups in 16-bit lanes against the activation's bsums pairs */
    for (int pr = 0; pr < 8; pr++) {
      const __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(o + 16 + 16 * pr)));
      for (int a = 0; a < A; a++) {
        const ck_block_q8_K *y = (const ck_block_q8_K *)(x + (size_t)a * xrow) + i;
        int32_t bp; memcpy(&bp, y->bsums + 2 * pr, 4);
        imin[a] = _mm256_add_epi32(imin[a], _mm256_madd_epi16(w, _mm256_set1_epi32(bp)));
      }
    }
    const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o));
    for (int a = 0; a < A; a++) {
      const ck_block_q8_K *y = (const ck_block_q8_K *)(x + (size_t)a * xrow) + i;
      const __m256i tot = _mm256_sub_epi32(isum[a], _mm256_slli_epi32(imin[a], 5));
      acc[a] = _mm256_fmadd_ps(_mm256_mul_ps(d8, _mm256_set1_ps(y->d)), _mm256_cvtepi32_ps(tot), acc[a]);
    }
  }
  for (int a = 0; a < A; a++) res[a] = acc[a];
}

/* Prefill: two groups at once in 512-bit vectors (lanes 0-7 rows of group g, lanes 8-15 rows of
   group g + 1; 256-bit halves loaded from the two groups' streams). vpdpbusd on a 512-bit vector
   issues as fast as on a 256-bit one here (Zen 4), so this tile does twice the products per
   instruction; every lane still does the 256-bit tile's operations in its order (same bits). */
CK_AVX512_VNNI_INLINE __m512i kqz_load(const uint8_t *a, const uint8_t *b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                            _mm256_loadu_si256((const __m256i *)b), 1);
}

/* the 8 half-precision values at `off` of both groups, as 16 floats */
CK_AVX512_VNNI_INLINE __m512 kqz_halves(const uint8_t *oa, const uint8_t *ob, int64_t off) {
  return ck512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(oa + off))),
                                                _mm_loadu_si128((const __m128i *)(ob + off)), 1));
}

/* Q4_K/Q5_K: the 6-bit scales and mins of sub-blocks 0-3 (lo) and 4-7 (hi), byte j of each lane */
CK_AVX512_VNNI_INLINE void kqz_scales(const uint8_t *oa, const uint8_t *ob, __m512i *sc_lo, __m512i *sc_hi,
                                      __m512i *mn_lo, __m512i *mn_hi) {
  const __m512i m4 = _mm512_set1_epi8(0x0F), m6 = _mm512_set1_epi8(0x3F), m2 = _mm512_set1_epi8(0x03);
  const __m512i a0 = kqz_load(oa + 32, ob + 32), a1 = kqz_load(oa + 64, ob + 64), a2 = kqz_load(oa + 96, ob + 96);
  *sc_lo = _mm512_and_si512(a0, m6);
  *mn_lo = _mm512_and_si512(a1, m6);
  *sc_hi = _mm512_or_si512(_mm512_and_si512(a2, m4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(a0, 6), m2), 4));
  *mn_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(a2, 4), m4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(a1, 6), m2), 4));
}

/* sub-block j's scale as a 32-bit value per row */
CK_AVX512_VNNI_INLINE __m512i kqz_scale(__m512i sc_lo, __m512i sc_hi, const int j) {
  return _mm512_shuffle_epi8(j < 4 ? sc_lo : sc_hi, _mm512_broadcast_i64x4(kqv_pick(j % 4)));
}

/* Q4_K/Q5_K: the codes of quants 4m..4m+3 of sub-blocks 2c (lo) and 2c + 1 (hi), Q5_K's fifth bit added */
CK_AVX512_VNNI_INLINE void kqz_codes(const uint8_t *oa, const uint8_t *ob, const int five, const int c, const int m,
                                     __m512i *lo, __m512i *hi) {
  const __m512i m4 = _mm512_set1_epi8(0x0F), m16 = _mm512_set1_epi8(0x10);
  const int64_t off = (five ? 384 : 128) + 32 * (8 * c + m);
  const __m512i v = kqz_load(oa + off, ob + off);
  *lo = _mm512_and_si512(v, m4);
  *hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
  if (five) {  /* fifth bits 2c and 2c + 1 of the m-th qh vector, moved to bit 4 */
    const __m512i t = _mm512_srl_epi16(kqz_load(oa + 128 + 32 * m, ob + 128 + 32 * m), _mm_cvtsi32_si128(2 * c));
    *lo = _mm512_or_si512(*lo, _mm512_and_si512(_mm512_slli_epi16(t, 4), m16));
    *hi = _mm512_or_si512(*hi, _mm512_and_si512(_mm512_slli_epi16(t, 3), m16));
  }
}

/* one super-block's end for one activation: acc + d * isum - dmin * (mins . bsums), in that order */
CK_AVX512_VNNI_INLINE __m512 kqz_block_end(__m512 acc, __m512i isum, __m512i mn_lo, __m512i mn_hi, __m512 d16, __m512 dm16,
                                           const ck_block_q8_K *y) {
  const __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
  const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
  const __m256i q03 = _mm256_broadcastq_epi64(q8s), q47 = _mm256_broadcastq_epi64(_mm_srli_si128(q8s, 8));
  const __m512i imin = _mm512_inserti64x4(
      _mm512_castsi256_si512(kqv_mins(_mm512_castsi512_si256(mn_lo), _mm512_castsi512_si256(mn_hi), q03, q47)),
      kqv_mins(_mm512_extracti64x4_epi64(mn_lo, 1), _mm512_extracti64x4_epi64(mn_hi, 1), q03, q47), 1);
  const __m512 yd = _mm512_set1_ps(y->d);
  acc = _mm512_fmadd_ps(_mm512_mul_ps(d16, yd), ck512_cvtepi32_ps(isum), acc);
  return _mm512_fnmadd_ps(_mm512_mul_ps(dm16, yd), ck512_cvtepi32_ps(imin), acc);
}

CK_AVX512_VNNI_INLINE void kqz_tile(const uint8_t *ga, const uint8_t *gb, const uint8_t *x, size_t xrow, int64_t nblk,
                                    const int A, const int five, __m512 *res, const int pf) {
  __m512 acc[KQV_ACTS];
  for (int a = 0; a < A; a++) acc[a] = _mm512_setzero_ps();
  const int64_t rb = five ? 1408 : 1152;
  for (int64_t i = 0; i < nblk; i++) {
    const uint8_t *oa = ga + i * rb, *ob = gb + i * rb;
    if (pf) {
      for (int off = 0; off < rb; off += 64) {
        _mm_prefetch((const char *)(oa + KQV_PREFETCH + off), _MM_HINT_T1);
        _mm_prefetch((const char *)(ob + KQV_PREFETCH + off), _MM_HINT_T1);
      }
    }
    __m512i sc_lo, sc_hi, mn_lo, mn_hi;
    kqz_scales(oa, ob, &sc_lo, &sc_hi, &mn_lo, &mn_hi);
    __m512i isum[KQV_ACTS];
    for (int a = 0; a < A; a++) isum[a] = _mm512_setzero_si512();
    for (int c = 0; c < 4; c++) {
      __m512i pl[KQV_ACTS], ph[KQV_ACTS];
      for (int a = 0; a < A; a++) pl[a] = ph[a] = _mm512_setzero_si512();
      for (int m = 0; m < 8; m++) {
        __m512i lo, hi;
        kqz_codes(oa, ob, five, c, m, &lo, &hi);
        for (int a = 0; a < A; a++) {
          const int8_t *q = ((const ck_block_q8_K *)(x + (size_t)a * xrow) + i)->qs + 64 * c + 4 * m;
          int32_t y0, y1;
          memcpy(&y0, q, 4); memcpy(&y1, q + 32, 4);
          pl[a] = _mm512_dpbusd_epi32(pl[a], lo, _mm512_set1_epi32(y0));
          ph[a] = _mm512_dpbusd_epi32(ph[a], hi, _mm512_set1_epi32(y1));
        }
      }
      const __m512i s0 = kqz_scale(sc_lo, sc_hi, 2 * c), s1 = kqz_scale(sc_lo, sc_hi, 2 * c + 1);
      for (int a = 0; a < A; a++)
        isum[a] = _mm512_add_epi32(isum[a], _mm512_add_epi32(_mm512_mullo_epi32(pl[a], s0), _mm512_mullo_epi32(ph[a], s1)));
    }
    const __m512 d16 = kqz_halves(oa, ob, 0), dm16 = kqz_halves(oa, ob, 16);
    for (int a = 0; a < A; a++)
      acc[a] = kqz_block_end(acc[a], isum[a], mn_lo, mn_hi, d16, dm16, (const ck_block_q8_K *)(x + (size_t)a * xrow) + i);
  }
  for (int a = 0; a < A; a++) res[a] = acc[a];
}

/* Prefill of many activations: a row block's pairs of groups are unpacked once per k-chunk into
   a scratch of ready 512-bit code vectors (Q5_K's fifth bit already added), scale vectors, mins
   and half scales, and the activation tiles then pass over it with loads and vpdpbusd alone: the
   unpacking, which bounds the tile above, is paid once per KQU_ACTS activations instead of once per
   tile. Same integer sums and the same float order per block as kqz_tile (same bits). */
#define KQU_PB 4864        /* scratch bytes per pair and super-block: 4096 codes, 512 scales, 128 mins, 128 d/dmin */
#ifndef KQU_KC
#define KQU_KC 16          /* super-blocks per k-chunk */
#endif
#define KQU_ACTS 128       /* activations per pass over a chunk */
#define KQU_PAIRS (KQV_ROW_BLOCK / 2)

static _Thread_local uint8_t *kqu_scratch;
static _Thread_local size_t kqu_scratch_bytes;

static uint8_t *kqu_buffer(size_t bytes) {
  if (kqu_scratch_bytes < bytes) {
    free(kqu_scratch);
    kqu_scratch = aligned_alloc(64, bytes);
    kqu_scratch_bytes = kqu_scratch ? bytes : 0;
  }
  return kqu_scratch;
}

CK_AVX512_VNNI_INLINE void kqu_unpack(const uint8_t *oa, const uint8_t *ob, const int five, uint8_t *P) {
  __m512i sc_lo, sc_hi, mn_lo, mn_hi;
  kqz_scales(oa, ob, &sc_lo, &sc_hi, &mn_lo, &mn_hi);
  for (int c = 0; c < 4; c++) {
    for (int m = 0; m < 8; m++) {
      __m512i lo, hi;
      kqz_codes(oa, ob, five, c, m, &lo, &hi);
      _mm512_store_si512((__m512i *)(P + 128 * (8 * c + m)), lo);
      _mm512_store_si512((__m512i *)(P + 128 * (8 * c + m) + 64), hi);
    }
    _mm512_store_si512((__m512i *)(P + 4096 + 128 * c), kqz_scale(sc_lo, sc_hi, 2 * c));
    _mm512_store_si512((__m512i *)(P + 4096 + 128 * c + 64), kqz_scale(sc_lo, sc_hi, 2 * c + 1));
  }
  _mm512_store_si512((__m512i *)(P + 4608), mn_lo);
  _mm512_store_si512((__m512i *)(P + 4672), mn_hi);
  _mm512_store_ps((float *)(P + 4736), kqz_halves(oa, ob, 0));
  _mm512_store_ps((float *)(P + 4800), kqz_halves(oa, ob, 16));
}

/* A activations (rows of x from block i0) over nb blocks of one pair's scratch; acc in and out */
CK_AVX512_VNNI_INLINE void kqu_tile(const uint8_t *S, const uint8_t *x, size_t xrow, int64_t i0, int64_t nb, const int A, __m512 *accp) {
  __m512 acc[KQV_ACTS];
  for (int a = 0; a < A; a++) acc[a] = accp[a];
  for (int64_t i = 0; i < nb; i++) {
    const uint8_t *P = S + i * KQU_PB;
    __m512i isum[KQV_ACTS];
    for (int a = 0; a < A; a++) isum[a] = _mm512_setzero_si512();
    for (int c = 0; c < 4; c++) {
      __m512i pl[KQV_ACTS], ph[KQV_ACTS];
      for (int a = 0; a < A; a++) pl[a] = ph[a] = _mm512_setzero_si512();
      for (int m = 0; m < 8; m++) {
        const __m512i lo = _mm512_load_si512((const __m512i *)(P + 128 * (8 * c + m)));
        const __m512i hi = _mm512_load_si512((const __m512i *)(P + 128 * (8 * c + m) + 64));
        for (int a = 0; a < A; a++) {
          const int8_t *q = ((const ck_block_q8_K *)(x + (size_t)a * xrow) + i0 + i)->qs + 64 * c + 4 * m;
          int32_t y0, y1;
          memcpy(&y0, q, 4); memcpy(&y1, q + 32, 4);
          pl[a] = _mm512_dpbusd_epi32(pl[a], lo, _mm512_set1_epi32(y0));
          ph[a] = _mm512_dpbusd_epi32(ph[a], hi, _mm512_set1_epi32(y1));
        }
      }
      const __m512i s0 = _mm512_load_si512((const __m512i *)(P + 4096 + 128 * c));
      const __m512i s1 = _mm512_load_si512((const __m512i *)(P + 4096 + 128 * c + 64));
      for (int a = 0; a < A; a++)
        isum[a] = _mm512_add_epi32(isum[a], _mm512_add_epi32(_mm512_mullo_epi32(pl[a], s0), _mm512_mullo_epi32(ph[a], s1)));
    }
    const __m512i mn_lo = _mm512_load_si512((const __m512i *)(P + 4608)), mn_hi = _mm512_load_si512((const __m512i *)(P + 4672));
    const __m512 d16 = _mm512_load_ps((const float *)(P + 4736)), dm16 = _mm512_load_ps((const float *)(P + 4800));
    for (int a = 0; a < A; a++)
      acc[a] = kqz_block_end(acc[a], isum[a], mn_lo, mn_hi, d16, dm16, (const ck_block_q8_K *)(x + (size_t)a * xrow) + i0 + i);
  }
  for (int a = 0; a < A; a++) accp[a] = acc[a];
}

/* Q6_K's scratch per pair and super-block (KQU_PB6): 64 code vectors (h, m, t: 6-bit codes of
   sub-block 8h + 2t + m / 4 for quants 4m..4m+3), 16 scale vectors (h, half, t: the 32-bit scale
   of group 8h + 2t + half per row), the 8 scale-pair vectors in 16-bit words (for the -32 offset
   through bsums) and the 16 rows' d. */
#define KQU_PB6 5696

CK_AVX512_VNNI_INLINE void kqu_unpack6(const uint8_t *oa, const uint8_t *ob, uint8_t *P) {
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  for (int h = 0; h < 2; h++)
    for (int m = 0; m < 8; m++) {
      const int64_t q = 144 + 32 * 3 * (8 * h + m);
      const __m512i va = kqz_load(oa + q, ob + q), vb = kqz_load(oa + q + 32, ob + q + 32), vh = kqz_load(oa + q + 64, ob + q + 64);
      uint8_t *d = P + 256 * (8 * h + m);
      _mm512_store_si512((__m512i *)d, _mm512_or_si512(_mm512_and_si512(va, m4), _mm512_and_si512(_mm512_slli_epi16(vh, 4), m30)));
      _mm512_store_si512((__m512i *)(d + 64), _mm512_or_si512(_mm512_and_si512(vb, m4), _mm512_and_si512(_mm512_slli_epi16(vh, 2), m30)));
      _mm512_store_si512((__m512i *)(d + 128), _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(va, 4), m4), _mm512_and_si512(vh, m30)));
      _mm512_store_si512((__m512i *)(d + 192), _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(vb, 4), m4),
                                                                _mm512_and_si512(_mm512_srli_epi16(vh, 2), m30)));
    }
  for (int pr = 0; pr < 8; pr++) {  /* pr = 4h + t */
    const __m512i w = _mm512_cvtepi8_epi16(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(oa + 16 + 16 * pr))),
                                                                   _mm_loadu_si128((const __m128i *)(ob + 16 + 16 * pr)), 1));
    _mm512_store_si512((__m512i *)(P + 5120 + 64 * pr), w);
    const int h = pr / 4, t = pr % 4;
    /* the low and the high word of each lane, sign-extended (a multiply-add by 1 and 0) */
    _mm512_store_si512((__m512i *)(P + 4096 + 64 * (8 * h + t)), _mm512_madd_epi16(w, _mm512_set1_epi32(1)));
    _mm512_store_si512((__m512i *)(P + 4096 + 64 * (8 * h + 4 + t)), _mm512_madd_epi16(w, _mm512_set1_epi32(0x10000)));
  }
  _mm512_store_ps((float *)(P + 5632), kqz_halves(oa, ob, 0));
}

/* kqu_tile for Q6_K (kqv6_tile's sums and order) */
CK_AVX512_VNNI_INLINE void kqu_tile6(const uint8_t *S, const uint8_t *x, size_t xrow, int64_t i0, int64_t nb, const int A, __m512 *accp) {
  __m512 acc[KQV_ACTS];
  for (int a = 0; a < A; a++) acc[a] = accp[a];
  for (int64_t i = 0; i < nb; i++) {
    const uint8_t *P = S + i * KQU_PB6;
    __m512i isum[KQV_ACTS], imin[KQV_ACTS];
    for (int a = 0; a < A; a++) isum[a] = imin[a] = _mm512_setzero_si512();
    for (int h = 0; h < 2; h++) {
      for (int half = 0; half < 2; half++) {
        __m512i p[KQV_ACTS][4];
        for (int a = 0; a < A; a++) p[a][0] = p[a][1] = p[a][2] = p[a][3] = _mm512_setzero_si512();
        for (int mm = 0; mm < 4; mm++) {
          const int m = 4 * half + mm;
          const uint8_t *d = P + 256 * (8 * h + m);
          const __m512i u0 = _mm512_load_si512((const __m512i *)d), u1 = _mm512_load_si512((const __m512i *)(d + 64));
          const __m512i u2 = _mm512_load_si512((const __m512i *)(d + 128)), u3 = _mm512_load_si512((const __m512i *)(d + 192));
          for (int a = 0; a < A; a++) {
            const int8_t *y = ((const ck_block_q8_K *)(x + (size_t)a * xrow) + i0 + i)->qs + 128 * h + 4 * m;
            int32_t y0, y1, y2, y3;
            memcpy(&y0, y, 4); memcpy(&y1, y + 32, 4); memcpy(&y2, y + 64, 4); memcpy(&y3, y + 96, 4);
            p[a][0] = _mm512_dpbusd_epi32(p[a][0], u0, _mm512_set1_epi32(y0));
            p[a][1] = _mm512_dpbusd_epi32(p[a][1], u1, _mm512_set1_epi32(y1));
            p[a][2] = _mm512_dpbusd_epi32(p[a][2], u2, _mm512_set1_epi32(y2));
            p[a][3] = _mm512_dpbusd_epi32(p[a][3], u3, _mm512_set1_epi32(y3));
          }
        }
        for (int t = 0; t < 4; t++) {
          const __m512i sc = _mm512_load_si512((const __m512i *)(P + 4096 + 64 * (8 * h + 4 * half + t)));
          for (int a = 0; a < A; a++) isum[a] = _mm512_add_epi32(isum[a], _mm512_mullo_epi32(p[a][t], sc));
        }
      }
    }
    for (int pr = 0; pr < 8; pr++) {
      const __m512i w = _mm512_load_si512((const __m512i *)(P + 5120 + 64 * pr));
      for (int a = 0; a < A; a++) {
        const ck_block_q8_K *y = (const ck_block_q8_K *)(x + (size_t)a * xrow) + i0 + i;
        int32_t bp; memcpy(&bp, y->bsums + 2 * pr, 4);
        imin[a] = _mm512_add_epi32(imin[a], _mm512_madd_epi16(w, _mm512_set1_epi32(bp)));
      }
    }
    const __m512 d16 = _mm512_load_ps((const float *)(P + 5632));
    for (int a = 0; a < A; a++) {
      const ck_block_q8_K *y = (const ck_block_q8_K *)(x + (size_t)a * xrow) + i0 + i;
      const __m512i tot = _mm512_sub_epi32(isum[a], _mm512_slli_epi32(imin[a], 5));
      acc[a] = _mm512_fmadd_ps(_mm512_mul_ps(d16, _mm512_set1_ps(y->d)), ck512_cvtepi32_ps(tot), acc[a]);
    }
  }
  for (int a = 0; a < A; a++) accp[a] = acc[a];
}

/* groups [gb, gb + 2 np) of a row block, every activation; 0 when the scratch cannot be had */
CK_AVX512_VNNI_INLINE int kqu_block(const uint8_t *W, int64_t gstride, const uint8_t *X, size_t xrow, int64_t nblk,
                                    int64_t gb, int np, int64_t nbat, int64_t r0, int64_t r1, float *out, int64_t ostride, const int kind) {
  const int64_t rb = kind == 0 ? 1152 : kind == 1 ? 1408 : 1680, pb = kind == 2 ? KQU_PB6 : KQU_PB;
  const int64_t kc = nblk < KQU_KC ? nblk : KQU_KC;
  uint8_t *S = kqu_buffer((size_t)KQU_PAIRS * (size_t)kc * (size_t)pb + (size_t)KQU_ACTS * KQU_PAIRS * 64);
  if (!S) return 0;
  __m512 *accb = (__m512 *)(S + (size_t)KQU_PAIRS * (size_t)kc * (size_t)pb);  /* [activation][pair] */
  for (int64_t ao = 0; ao < nbat; ao += KQU_ACTS) {
    const int64_t na = nbat - ao < KQU_ACTS ? nbat - ao : KQU_ACTS;
    for (int64_t j = 0; j < na * np; j++) accb[j] = _mm512_setzero_ps();
    for (int64_t k0 = 0; k0 < nblk; k0 += kc) {
      const int64_t nk = nblk - k0 < kc ? nblk - k0 : kc;
      for (int p = 0; p < np; p++) {
        const uint8_t *ga = W + (gb + 2 * p) * gstride, *gbp = W + (gb + 2 * p + 1) * gstride;
        for (int64_t i = 0; i < nk; i++) {
          uint8_t *P = S + ((size_t)p * (size_t)kc + (size_t)i) * (size_t)pb;
          if (kind == 2) kqu_unpack6(ga + (k0 + i) * rb, gbp + (k0 + i) * rb, P);
          else kqu_unpack(ga + (k0 + i) * rb, gbp + (k0 + i) * rb, kind == 1, P);
        }
      }
      for (int64_t a0 = 0; a0 < na; a0 += KQV_ACTS) {
        const int A = na - a0 < KQV_ACTS ? (int)(na - a0) : KQV_ACTS;
        const uint8_t *xa = X + (size_t)(ao + a0) * xrow;
        for (int p = 0; p < np; p++) {
          __m512 t[KQV_ACTS];
          for (int a = 0; a < A; a++) t[a] = accb[(a0 + a) * np + p];
          const uint8_t *Sp = S + (size_t)p * (size_t)kc * (size_t)pb;
          if (kind == 2) {
            switch (A) {
              case 4: kqu_tile6(Sp, xa, xrow, k0, nk, 4, t); break;
              case 3: kqu_tile6(Sp, xa, xrow, k0, nk, 3, t); break;
              case 2: kqu_tile6(Sp, xa, xrow, k0, nk, 2, t); break;
              default: kqu_tile6(Sp, xa, xrow, k0, nk, 1, t); break;
            }
          } else {
            switch (A) {
              case 4: kqu_tile(Sp, xa, xrow, k0, nk, 4, t); break;
              case 3: kqu_tile(Sp, xa, xrow, k0, nk, 3, t); break;
              case 2: kqu_tile(Sp, xa, xrow, k0, nk, 2, t); break;
              default: kqu_tile(Sp, xa, xrow, k0, nk, 1, t); break;
            }
          }
          for (int a = 0; a < A; a++) accb[(a0 + a) * np + p] = t[a];
        }
      }
    }
    for (int64_t a = 0; a < na; a++)
      for (int p = 0; p < np; p++) {
        const __m512 v = accb[a * np + p];
        r8_out(_mm512_castps512_ps256(v), gb + 2 * p, r0, r1, out + (ao + a) * ostride);
        r8_out(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)), gb + 2 * p + 1, r0, r1, out + (ao + a) * ostride);
      }
  }
  return 1;
}

/* kind: 0 Q4_K, 1 Q5_K, 2 Q6_K (a constant in every inlined copy). Decode and small batches:
   every group once, prefetched; larger batches: row blocks of KQV_ROW_BLOCK groups, unpacked in
   pairs (kqu_block) from KQU_MIN_ACTS activations, else the activations pass in tiles (the first
   prefetched), Q4_K and Q5_K groups in pairs (kqz_tile); an odd group left goes alone. */
CK_AVX512_VNNI_INLINE void kqv_mm(const void *w, const void *x, size_t xrow, int64_t nblk, int64_t r0, int64_t r1,
                                  int64_t nb, float *out, int64_t ostride, const int kind) {
  const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;
  const int five = kind == 1;
  const int64_t g0 = r0 / CK_R8, g1 = (r1 + CK_R8 - 1) / CK_R8;
  const int64_t gstride = nblk * (kind == 0 ? 1152 : kind == 1 ? 1408 : 1680);
  const int64_t block = nb <= KQV_ACTS ? g1 - g0 : KQV_ROW_BLOCK;
  const int pf = nb <= KQV_ACTS;
  for (int64_t gb = g0; gb < g1; gb += block) {
    const int64_t ge = gb + block < g1 ? gb + block : g1;
    int64_t gs = gb;  /* the first group the tiles below multiply */
    if (nb >= KQU_MIN_ACTS && ge - gb >= 2 && kqu_block(W, gstride, X, xrow, nblk, gb, (int)((ge - gb) / 2), nb, r0, r1, out, ostride, kind))
      gs = gb + ((ge - gb) & ~(int64_t)1);
    for (int64_t a0 = 0; a0 < nb && gs < ge; a0 += KQV_ACTS) {
      const int A = nb - a0 < KQV_ACTS ? (int)(nb - a0) : KQV_ACTS;
      const uint8_t *xa = X + (size_t)a0 * xrow;
      /* a row block's first tile streams its groups from memory (the later ones find them in
         L2): it prefetches as decode does, or 5-23 activations cost more than two passes of 4 */
      const int pft = pf || a0 == 0;
      int64_t g = gs;
      if (!pf && kind != 2) {  /* prefill: pairs of groups in 512-bit tiles */
        for (; g + 1 < ge; g += 2) {
          __m512 rz[KQV_ACTS];
          const uint8_t *wa = W + g * gstride, *wb = W + (g + 1) * gstride;
          switch (A) {
            case 4: kqz_tile(wa, wb, xa, xrow, nblk, 4, five, rz, pf); break;
            case 3: kqz_tile(wa, wb, xa, xrow, nblk, 3, five, rz, pf); break;
            case 2: kqz_tile(wa, wb, xa, xrow, nblk, 2, five, rz, pf); break;
            default: kqz_tile(wa, wb, xa, xrow, nblk, 1, five, rz, pf); break;
          }
          for (int a = 0; a < A; a++) {
            r8_out(_mm512_castps512_ps256(rz[a]), g, r0, r1, out + (a0 + a) * ostride);
            r8_out(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(rz[a]), 1)), g + 1, r0, r1, out + (a0 + a) * ostride);
          }
        }
      }
      for (; g < ge; g++) {
        __m256 res[KQV_ACTS];
        const uint8_t *wg = W + g * gstride;
        if (kind == 2) {
          switch (A) {
            case 4: kqv6_tile(wg, xa, xrow, nblk, 4, res, pft); break;
            case 3: kqv6_tile(wg, xa, xrow, nblk, 3, res, pft); break;
            case 2: kqv6_tile(wg, xa, xrow, nblk, 2, res, pft); break;
            default: kqv6_tile(wg, xa, xrow, nblk, 1, res, pft); break;
          }
        } else {
          switch (A) {
            case 4: kqv_tile(wg, xa, xrow, nblk, 4, five, res, pft); break;
            case 3: kqv_tile(wg, xa, xrow, nblk, 3, five, res, pft); break;
            case 2: kqv_tile(wg, xa, xrow, nblk, 2, five, res, pft); break;
            default: kqv_tile(wg, xa, xrow, nblk, 1, five, res, pft); break;
          }
        }
        for (int a = 0; a < A; a++) r8_out(res[a], g, r0, r1, out + (a0 + a) * ostride);
      }
    }
  }
}

CK_AVX512_VNNI static void mm_r8_q4_K_vnni(const void *w, const void *x, size_t xrow, int64_t nblk,
                                           int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  kqv_mm(w, x, xrow, nblk, r0, r1, nb, out, ostride, 0);
}

CK_AVX512_VNNI static void mm_r8_q5_K_vnni(const void *w, const void *x, size_t xrow, int64_t nblk,
                                           int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  kqv_mm(w, x, xrow, nblk, r0, r1, nb, out, ostride, 1);
}

CK_AVX512_VNNI static void mm_r8_q6_K_vnni(const void *w, const void *x, size_t xrow, int64_t nblk,
                                           int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  kqv_mm(w, x, xrow, nblk, r0, r1, nb, out, ostride, 2);
}

void ck_fill_r8_kq_avx512(ck_mm_r8_fn *tab, int vnni) {
  if (!vnni) return;
  tab[CK_TYPE_Q6_K] = mm_r8_q6_K_vnni;
  tab[CK_TYPE_Q4_K] = mm_r8_q4_K_vnni;
  tab[CK_TYPE_Q5_K] = mm_r8_q5_K_vnni;
}

#else
void ck_fill_r8_kq_avx512(ck_mm_r8_fn *tab, int vnni) { (void)tab; (void)vnni; }
#endif
