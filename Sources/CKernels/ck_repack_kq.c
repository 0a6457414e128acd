/* Row-interleaved (R8) layouts of Q4_K and Q5_K (the bulk of Q4_K_M and Q5_K_M files), and their
   portable kernels: the arithmetic that every ISA's kernels follow operation for operation (same
   bits).

   Why: at 70B width these matrices stream from DRAM and the file-layout kernel is bound by its
   instructions (per row and super-block: unpacking, eight scale vectors, horizontal sums).
   With 8 rows side by side, each 4-byte chunk of an activation is broadcast once to 8 rows, the
   integer products of a 32-quant sub-block are summed in 16 bits, and each scale vector serves
   8 rows: about half the instructions per weight.

   Group g (rows 8g..8g+7, the last group padded with zero rows), super-block i is stored at
   (g * nblk + i) * RB bytes, RB = 8 x the file's super-block (the same size as the file);
   Q4_K (RB 1152):
     [0, 16)    the 8 rows' d (IEEE halves, row order)     [16, 32)  their dmin
     [32, 128)  the 12 packed scale bytes as three 32-byte vectors: bytes 0-3, 4-7 and 8-11 of
                the file's scales, row r at 4r (the 6-bit unpacking runs on 8 rows at once)
     [128, 1152) 32 quant vectors: vector v byte 4r + b = the file's qs[4v + b] of row r; with
                c = v / 8 and m = v % 8 its low nibbles are quants 64c + 4m + b (sub-block 2c)
                and its high nibbles quants 64c + 32 + 4m + b (sub-block 2c + 1)
   Q6_K (RB 1680, repacked only where the AVX-512 VNNI kernel runs):
     [0, 16)    the 8 rows' d                              [16, 144) scales in row pairs: byte
                16 + 16p + 2r + e = row r's int8 scale of 16-quant group 2p + e
     [144, 1680) for h = 0, 1 and m = 0..7, three vectors at 144 + 32 * (3 * (8h + m) + t): t = 0:
                ql[64h + 4m + b], t = 1: ql[64h + 32 + 4m + b], t = 2: qh[32h + 4m + b] (byte 4r + b
                of row r); with l = 4m + b they hold quants 128h + l (t0 low nibble, qh bits 0-1),
                128h + 32 + l (t1 low, bits 2-3), 128h + 64 + l (t0 high, bits 4-5) and 128h + 96 + l
                (t1 high, bits 6-7): quant 128h + 32q + l lies in 16-quant group 8h + 2q + m / 4
   Q5_K (RB 1408): the same header as Q4_K, then [128, 384) 8 vectors of fifth bits (vector m byte 4r + b =
     the file's qh[4m + b] of row r: bit 2c is that of quant 64c + 4m + b, bit 2c + 1 that of
     quant 64c + 32 + 4m + b), then [384, 1408) the 32 quant vectors as above.

   Arithmetic (per row r, super-block i, Q8_K activation block y; integers exact):
     isum = sum_j sc_j * sum_{e in sub-block j} u_e * y_e (u: the nibble, Q5_K + 16 * fifth bit), imin = sum_j mn_j * (bsums[2j] + bsums[2j+1]);
     acc = fma(d * y.d, (float)isum, acc); acc = fma(-(dmin * y.d), (float)imin, acc)
     Q6_K: isum = sum_s sc_s * sum_{e in group s} u_e * y_e - 32 * sum_s sc_s * bsums[s];
           acc = fma(d * y.d, (float)isum, acc)
   The integer sums are exactly ggml's; only the float combination differs from ggml's vec_dot
   (one rounding of the whole super-block's integer instead of eight partial lanes), so results
   agree with ck_matmul within float rounding, and are bit-identical across ISAs, batch sizes and
   row splits. */
#include "ck_repack.h"

/* ---- layout ---- */

static void ck_repack_q6_K_group(const uint8_t *src, size_t src_row, int rows, int64_t nblk, uint8_t *dst) {
  for (int64_t i = 0; i < nblk; i++) {
    uint8_t *o = dst + i * 1680;
    memset(o, 0, 1680);
    for (int r = 0; r < rows; r++) {
      const ck_block_q6_K *b = (const ck_block_q6_K *)(src + (size_t)r * src_row) + i;
      memcpy(o + 2 * r, &b->d, 2);
      for (int g = 0; g < 16; g++) o[16 + 16 * (g / 2) + 2 * r + g % 2] = (uint8_t)b->scales[g];
      for (int h = 0; h < 2; h++) {
        for (int m = 0; m < 8; m++) {
          uint8_t *q = o + 144 + 32 * 3 * (8 * h + m) + 4 * r;
          memcpy(q, b->ql + 64 * h + 4 * m, 4);
          memcpy(q + 32, b->ql + 64 * h + 32 + 4 * m, 4);
          memcpy(q + 64, b->qh + 32 * h + 4 * m, 4);
        }
      }
    }
  }
}

static void ck_unrepack_q6_K_block(const uint8_t *o, int r, uint8_t *blk) {
  ck_block_q6_K *b = (ck_block_q6_K *)blk;
  memcpy(&b->d, o + 2 * r, 2);
  for (int g = 0; g < 16; g++) b->scales[g] = (int8_t)o[16 + 16 * (g / 2) + 2 * r + g % 2];
  for (int h = 0; h < 2; h++) {
    for (int m = 0; m < 8; m++) {
      const uint8_t *q = o + 144 + 32 * 3 * (8 * h + m) + 4 * r;
      memcpy(b->ql + 64 * h + 4 * m, q, 4);
      memcpy(b->ql + 64 * h + 32 + 4 * m, q + 32, 4);
      memcpy(b->qh + 32 * h + 4 * m, q + 64, 4);
    }
  }
}

/* Q4_K and Q5_K share d, dmin and scales at the front of the file block; Q5_K's qh follows */
void ck_repack_kq_group(int wtype, const uint8_t *src, size_t src_row, int rows, int64_t nblk, uint8_t *dst) {
  if (wtype == CK_TYPE_Q6_K) { ck_repack_q6_K_group(src, src_row, rows, nblk, dst); return; }
  const int64_t rb = ck_r8_block_bytes(wtype), fb = ck_block_bytes(wtype);
  const int five = wtype == CK_TYPE_Q5_K, qoff = five ? 384 : 128;
  for (int64_t i = 0; i < nblk; i++) {
    uint8_t *o = dst + i * rb;
    memset(o, 0, (size_t)rb);
    for (int r = 0; r < rows; r++) {
      const uint8_t *b = src + (size_t)r * src_row + i * fb;
      memcpy(o + 2 * r, b, 2);
      memcpy(o + 16 + 2 * r, b + 2, 2);
      for (int t = 0; t < 3; t++) memcpy(o + 32 + 32 * t + 4 * r, b + 4 + 4 * t, 4);
      if (five) for (int m = 0; m < 8; m++) memcpy(o + 128 + 32 * m + 4 * r, b + 16 + 4 * m, 4);
      for (int v = 0; v < 32; v++) memcpy(o + qoff + 32 * v + 4 * r, b + (five ? 48 : 16) + 4 * v, 4);
    }
  }
}

void ck_unrepack_kq_block(int wtype, const uint8_t *o, int r, uint8_t *b) {
  if (wtype == CK_TYPE_Q6_K) { ck_unrepack_q6_K_block(o, r, b); return; }
  const int five = wtype == CK_TYPE_Q5_K, qoff = five ? 384 : 128;
  memcpy(b, o + 2 * r, 2);
  memcpy(b + 2, o + 16 + 2 * r, 2);
  for (int t = 0; t < 3; t++) memcpy(b + 4 + 4 * t, o + 32 + 32 * t + 4 * r, 4);
  if (five) for (int m = 0; m < 8; m++) memcpy(b + 16 + 4 * m, o + 128 + 32 * m + 4 * r, 4);
  for (int v = 0; v < 32; v++) memcpy(b + (five ? 48 : 16) + 4 * v, o + qoff + 32 * v + 4 * r, 4);
}

/* ---- portable kernels ---- */

static void mm_r8_q45_K(const void *w, const void *x, size_t xrow, int64_t nblk,
                        int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride, const int five) {
  const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;
  const int64_t rb = five ? 1408 : 1152, qoff = five ? 384 : 128;
  for (int64_t g = r0 / CK_R8; g * CK_R8 < r1; g++) {
    for (int64_t b = 0; b < nb; b++) {
      float acc[CK_R8] = {0};
      for (int64_t i = 0; i < nblk; i++) {
        const uint8_t *o = W + (g * nblk + i) * rb;
        const ck_block_q8_K *y = (const ck_block_q8_K *)(X + (size_t)b * xrow) + i;
        for (int r = 0; r < CK_R8; r++) {
          uint8_t sc8[12];
          for (int t = 0; t < 3; t++) memcpy(sc8 + 4 * t, o + 32 + 32 * t + 4 * r, 4);
          int32_t isum = 0, imin = 0;
          for (int j = 0; j < 8; j++) {
            uint8_t sc, mn;
            ck_scale_min_k4(j, sc8, &sc, &mn);
            const int c = j / 2, hi = j % 2;
            int32_t s = 0;
            for (int m = 0; m < 8; m++) {
              for (int e = 0; e < 4; e++) {
                const uint8_t q = o[qoff + 32 * (8 * c + m) + 4 * r + e];
                const int h5 = five ? ((o[128 + 32 * m + 4 * r + e] >> j) & 1) << 4 : 0;
                s += ((hi ? q >> 4 : q & 0xF) | h5) * y->qs[32 * j + 4 * m + e];
              }
            }
            isum += sc * s;
            imin += mn * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
          }
          acc[r] = fmaf(ck_r8_half(o, r) * y->d, (float)isum, acc[r]);
          acc[r] = fmaf(-(ck_r8_half(o + 16, r) * y->d), (float)imin, acc[r]);
        }
      }
      ck_r8_store(acc, g, r0, r1, out + b * ostride);
    }
  }
}

static void mm_r8_q4_K(const void *w, const void *x, size_t xrow, int64_t nblk,
                       int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  mm_r8_q45_K(w, x, xrow, nblk, r0, r1, nb, out, ostride, 0);
}

static void mm_r8_q5_K(const void *w, const void *x, size_t xrow, int64_t nblk,
                       int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  mm_r8_q45_K(w, x, xrow, nblk, r0, r1, nb, out, ostride, 1);
}

static void mm_r8_q6_K(const void *w, const void *x, size_t xrow, int64_t nblk,
                       int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;
  for (int64_t g = r0 / CK_R8; g * CK_R8 < r1; g++) {
    for (int64_t b = 0; b < nb; b++) {
      float acc[CK_R8] = {0};
      for (int64_t i = 0; i < nblk; i++) {
        const uint8_t *o = W + (g * nblk + i) * 1680;
        const ck_block_q8_K *y = (const ck_block_q8_K *)(X + (size_t)b * xrow) + i;
        for (int r = 0; r < CK_R8; r++) {
          int32_t gs[16] = {0};  /* sum u * y per 16-quant group */
          for (int h = 0; h < 2; h++) {
            for (int m = 0; m < 8; m++) {
              const uint8_t *q = o + 144 + 32 * 3 * (8 * h + m) + 4 * r;
              for (int e = 0; e < 4; e++) {
                const int A = q[e], B = q[32 + e], H = q[64 + e];
                const int u[4] = { (A & 0xF) | ((H & 3) << 4), (B & 0xF) | (((H >> 2) & 3) << 4),
                                   (A >> 4) | (((H >> 4) & 3) << 4), (B >> 4) | (((H >> 6) & 3) << 4) };
                for (int t = 0; t < 4; t++) gs[8 * h + 2 * t + m / 4] += u[t] * y->qs[128 * h + 32 * t + 4 * m + e];
              }
            }
          }
          int32_t isum = 0, imin = 0;
          for (int s2 = 0; s2 < 16; s2++) {
            const int sc = (int8_t)o[16 + 16 * (s2 / 2) + 2 * r + s2 % 2];
            isum += sc * gs[s2];
            imin += sc * y->bsums[s2];
          }
          acc[r] = fmaf(ck_r8_half(o, r) * y->d, (float)(isum - 32 * imin), acc[r]);
        }
      }
      ck_r8_store(acc, g, r0, r1, out + b * ostride);
    }
  }
}

void ck_fill_r8_kq_scalar(ck_mm_r8_fn *tab) {
  tab[CK_TYPE_Q6_K] = mm_r8_q6_K;
  tab[CK_TYPE_Q4_K] = mm_r8_q4_K;
  tab[CK_TYPE_Q5_K] = mm_r8_q5_K;
}
