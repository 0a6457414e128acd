/* AVX-512 kernels of the row-interleaved R8 layouts (see ck_repack.h for the layout and the
   arithmetic): Q4_0, Q5_0, Q8_0 and Q4_1, each in two variants, AVX-512 F+BW+VL and the same plus
   VNNI (ck_repack_avx512_tiles.h, included once per variant). A tile computes two groups of 8
   rows at once, one group per 256-bit half of each 512-bit vector, so every lane is one row doing
   exactly the scalar kernel's operations: the results are the scalar and AVX2 kernels' bits.
   Small batches prefetch (r16_prefetch_distance: R16_PREFETCH bytes ahead in each group's stream,
   or the next tile's blocks when groups are short).
   The dispatch table sends one activation (decode) to the AVX2 tiles instead (mm_r8_one in
   ck_internal.h: two streams at once are slower from DRAM); these kernels still take nb == 1
   correctly, and Scripts/avx512-check checks them with it.
   Built normally (x86-64, target attributes) or with CK_AVX512_SIMDE against SIMDe (see
   ck_avx512.h), which is how Scripts/avx512-check runs them on a machine without AVX-512. */
#include "ck_avx512.h"
#include "ck_repack.h"

#if defined(CK_AVX512_BUILD)

#define R16_ACTS 4       /* activations per tile */
#define R16_ROW_BLOCK 8  /* groups per row block in prefill */
#ifndef R16_PREFETCH
#define R16_PREFETCH 3072
#endif

/* bytes of one (group, block) by kernel kind: 0 Q4_0, 1 Q5_0, 2 Q8_0 */
CK_AVX512_INLINE int64_t r16_block_bytes(const int kind) {
  return kind == 0 ? 144 : kind == 1 ? 176 : 272;
}

/* Bytes ahead a small batch prefetches each group's stream (0: none). A tile reads two adjacent
   groups side by side, so R16_PREFETCH ahead of the first group's position lands in the second
   group whenever a group is shorter than that (short rows: 576-wide matrices), where the other
   stream is already reading: half the bytes came from DRAM unannounced and a 2-activation step
   ran at a third of the one-activation stream's speed. With short groups a tile prefetches the
   same blocks of the next tile (two groups ahead) instead. */
CK_AVX512_INLINE int64_t r16_prefetch_distance(int64_t gstride) {
  return 2 * gstride <= 4 * R16_PREFETCH ? 2 * gstride : R16_PREFETCH;
}

CK_AVX512_INLINE void r16_prefetch(const uint8_t *block, int64_t bytes, const int64_t distance) {
  if (!distance) return;
  for (int64_t off = 0; off < bytes; off += 64)
    _mm_prefetch((const char *)(block + distance + off), _MM_HINT_T0);
}

/* 32 bytes at a (group a's vector) in the low half, 32 bytes at b in the high half */
CK_AVX512_INLINE __m512i r16_load(const uint8_t *a, const uint8_t *b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                            _mm256_loadu_si256((const __m256i *)b), 1);
}

/* the 8 halves at a and the 8 at b, as 16 floats */
CK_AVX512_INLINE __m512 r16_halves(const uint8_t *a, const uint8_t *b) {
  const __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)),
                                            _mm_loadu_si128((const __m128i *)b), 1);
  return ck512_cvtph_ps(h);
}

/* a 4-byte chunk of an activation, broadcast to the 16 rows */
CK_AVX512_INLINE __m512i r16_bcast(const int8_t *p) {
  int32_t v; memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

/* offs[a * nblk + i] = mult * (sum of activation a's block i); mult 0: not needed */
CK_AVX512_INLINE void r16_offsets(const uint8_t *xa, size_t xrow, int64_t nblk, int A, int32_t mult,
                                  int32_t *offs) {
  if (mult == 0) return;
  for (int a = 0; a < A; a++) {
    for (int64_t i = 0; i < nblk; i++) {
      const int8_t *q = ((const ck_block_q8_0 *)(xa + a * xrow) + i)->qs;
      int32_t s = 0;
      for (int j = 0; j < CK_QK; j++) s += q[j];
      offs[a * nblk + i] = mult * s;
    }
  }
}

/* stores lanes 0-7 (group g) and, if two, lanes 8-15 (group g + 1), within rows [r0, r1) */
CK_AVX512_INLINE void r16_out(__m512 v, int64_t g, const int two, int64_t r0, int64_t r1, float *out) {
  const int64_t base = g * CK_R8;
  if (two && base >= r0 && base + 2 * CK_R8 <= r1) {
    _mm512_storeu_ps(out + base, v);
    return;
  }
  float t[2 * CK_R8];
  _mm512_storeu_ps(t, v);
  ck_r8_store(t, g, r0, r1, out);
  if (two) ck_r8_store(t + CK_R8, g + 1, r0, r1, out);
}

#define CK512_V 0
#include "ck_repack_avx512_tiles.h"
#undef CK512_V
#define CK512_V 1
#include "ck_repack_avx512_tiles.h"
#undef CK512_V

void ck_fill_r8_avx512(ck_mm_r8_fn *tab, int vnni) {
  if (vnni) fill_vnni(tab);
  else fill_bw(tab);
}

#else
void ck_fill_r8_avx512(ck_mm_r8_fn *tab, int vnni) { (void)tab; (void)vnni; }
#endif
