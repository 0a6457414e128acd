/* Row-interleaved ("R8") weight layouts made at load time, and their matmul kernels.

   A matrix of `rows` rows is cut into groups of 8 consecutive rows (the last group padded with
   zero rows). Group g, block i (32 elements of each of the 8 rows) is stored at
   (g * nblk + i) * RBLOCK bytes, where nblk = k / 32:
     - scales: the 8 rows' d (IEEE halves, row order); Q4_1 then the 8 rows' m;
     - Q5_0 then 32 bytes of fifth bits: byte r*4+b, bit h (0..3) = the fifth bit of element
       4h + b of row r, bit 4 + h = that of element 16 + 4h + b (so each quant vector below finds
       its bits with one 16-bit shift);
     - quants, cut in 4-byte chunks so that one 32-byte vector holds one chunk of all 8 rows
       (byte r * 4 + b of a vector belongs to row r):
       Q4_0 / Q4_1 / Q5_0: 4 vectors; vector h byte r*4+b = the file's qs[4h + b] of row r, so its low
         nibbles are elements 4h..4h+3 and its high nibbles elements 16+4h..16+4h+3;
       Q8_0: 8 vectors; vector c byte r*4+b = element 4c + b of row r.
   Kernels compute the 8 rows of a group against one activation block at once: each 4-byte chunk
   of the activation is broadcast to the 8 rows, integer products are summed per row in integer
   arithmetic (exact), and:
   - Q4_0, Q5_0, Q8_0: each row keeps one float accumulator over blocks,
       acc_r = fma(d_r * d_y, (float)isum_r, acc_r)
     (Q4_0 / Q5_0: isum = sum(u*y) - 8 or 16 * sum(y), u the unsigned quant)
     This order differs from ggml's vec_dot (8 lanes across blocks, then a horizontal sum), so
     results are close to ck_matmul's, not bit-identical.
   - Q4_1: ggml's order exactly (8 accumulators, one per 4-element chunk, summed as ggml's
     hsum_float_8, plus the min term fma(m, s_y, .)), so equal to ck_matmul's AVX2 bits: the
     default model's golden tests compare greedy tokens with llama.cpp, which does not repack Q4_1.
   Every path (scalar, AVX2, AVX-512, any grouping or row split) gives the same bits for the same
   output. */
#ifndef CK_REPACK_H
#define CK_REPACK_H

#include "ck_internal.h"

#define CK_R8 8  /* rows per group */

/* bytes of one (group, block) */
static inline int64_t ck_r8_block_bytes(int wtype) {
  switch (wtype) {
    case CK_TYPE_Q4_0: return 16 + 128;
    case CK_TYPE_Q4_1: return 32 + 128;
    case CK_TYPE_Q8_0: return 16 + 256;
    case CK_TYPE_Q5_0: return 16 + 32 + 128;
    case CK_TYPE_Q4_K: return CK_R8 * 144;
    case CK_TYPE_Q5_K: return CK_R8 * 176;
    case CK_TYPE_Q6_K: return CK_R8 * 210;
    default: return 0;
  }
}

/* elements of a block of each row in a (group, block): 256 for the K-quants, else 32 */
static inline int64_t ck_r8_block_elements(int wtype) {
  return wtype == CK_TYPE_Q4_K || wtype == CK_TYPE_Q5_K || wtype == CK_TYPE_Q6_K ? CK_QK_K : CK_QK;
}


/* offset of the quant vectors in a (group, block) */
static inline int64_t ck_r8_qs_offset(int wtype) {
  switch (wtype) {
    case CK_TYPE_Q4_1: return 32;
    case CK_TYPE_Q5_0: return 48;
    default: return 16;
  }
}

/* Repacked matmul kernel: groups covering rows [r0, r1); arguments validated. */
typedef void (*ck_mm_r8_fn)(const void *w, const void *x, size_t xrow, int64_t nblk,
                            int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride);

void ck_fill_r8_scalar(ck_mm_r8_fn *tab);   /* indexed by weight type, 31 entries */
/* K-quant R8 layouts (ck_repack_kq.c): repacks nblk super-blocks of `rows` (<= 8) rows, src_row
   bytes apart, into the group at dst; rebuilds row r's file super-block from a (group, block) */
void ck_repack_kq_group(int wtype, const uint8_t *src, size_t src_row, int rows, int64_t nblk, uint8_t *dst);
void ck_unrepack_kq_block(int wtype, const uint8_t *o, int r, uint8_t *blk);
void ck_fill_r8_kq_scalar(ck_mm_r8_fn *tab);
void ck_fill_r8_kq_avx2(ck_mm_r8_fn *tab);  /* no-op when not built for x86-64 */
/* the AVX-512 VNNI Q4_K, Q5_K and Q6_K R8 kernels when vnni != 0 (else nothing); no-op when not built for x86-64 */
void ck_fill_r8_kq_avx512(ck_mm_r8_fn *tab, int vnni);
void ck_fill_r8_avx2(ck_mm_r8_fn *tab);     /* no-op when not built for x86-64 */
/* AVX-512 F+BW+VL kernels of Q4_0, Q4_1, Q5_0, Q8_0 (vnni != 0: their AVX512-VNNI variants;
   the kernels run only on a CPU with those extensions); no-op when not built for x86-64 */
void ck_fill_r8_avx512(ck_mm_r8_fn *tab, int vnni);

/* the half at p + 2r as float */
static inline float ck_r8_half(const uint8_t *p, int r) {
  uint16_t h; memcpy(&h, p + 2 * r, 2);
  return ck_h2f(h);
}

/* Stores the 8 results of a group (lane r = row g*8 + r) that fall into [r0, r1). */
static inline void ck_r8_store(const float *v, int64_t g, int64_t r0, int64_t r1, float *out) {
  const int64_t base = g * CK_R8;
  if (base >= r0 && base + CK_R8 <= r1) {
    memcpy(out + base, v, CK_R8 * sizeof(float));
    return;
  }
  for (int r = 0; r < CK_R8; r++) {
    if (base + r >= r0 && base + r < r1) out[base + r] = v[r];
  }
}

#endif /* CK_REPACK_H */
