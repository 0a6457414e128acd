/* Load-time repacking into the row-interleaved R8 layouts (see ck_repack.h), the portable R8
   kernels, and the public entry points. */
#include "ck_repack.h"
#include <stdlib.h>

static int ck_r8_type(int wtype) { return ck_r8_block_bytes(wtype) > 0; }

static int ck_r8_kquant(int wtype) { return ck_r8_block_elements(wtype) == CK_QK_K; }

int64_t ck_repack_bytes(int wtype, int64_t rows, int64_t k) {
  if (!ck_r8_type(wtype) || rows <= 0 || k <= 0) return 0;
  const int64_t be = ck_r8_block_elements(wtype);
  if (k % be != 0) return 0;
  return (rows + CK_R8 - 1) / CK_R8 * (k / be) * ck_r8_block_bytes(wtype);
}

/* CK_NO_REPACK=1 in the environment turns repacking off (to measure what it brings). */
int ck_repack_preferred(int wtype) {
  if (wtype < 0 || wtype > 30 || !ck_r8_type(wtype)) return 0;
  const char *off = getenv("CK_NO_REPACK");
  if (off && off[0] == '1') return 0;
  return ck_active()->r8_fast[wtype];
}

/* bytes of quants per row and block in the file layout, offset of qs in a file block */
static void ck_file_block(int wtype, int64_t *bytes, int64_t *qs_off, int64_t *qs_len) {
  switch (wtype) {
    case CK_TYPE_Q4_0: *bytes = 18; *qs_off = 2; *qs_len = 16; break;
    case CK_TYPE_Q4_1: *bytes = 20; *qs_off = 4; *qs_len = 16; break;
    case CK_TYPE_Q5_0: *bytes = 22; *qs_off = 6; *qs_len = 16; break;
    default:           *bytes = 34; *qs_off = 2; *qs_len = 32; break;  /* Q8_0 */
  }
}

int ck_repack(int wtype, const void *src, void *dst, int64_t rows, int64_t k) {
  const int64_t total = ck_repack_bytes(wtype, rows, k);
  if (total == 0 || !src || !dst) return -1;
  if (ck_r8_kquant(wtype)) {
    const int64_t nblk = k / CK_QK_K, rb = ck_r8_block_bytes(wtype);
    const size_t row = (size_t)ck_row_bytes(wtype, k);
    for (int64_t g = 0; g * CK_R8 < rows; g++) {
      const int n = rows - g * CK_R8 < CK_R8 ? (int)(rows - g * CK_R8) : CK_R8;
      ck_repack_kq_group(wtype, (const uint8_t *)src + (size_t)(g * CK_R8) * row, row, n, nblk,
                         (uint8_t *)dst + g * nblk * rb);
    }
    return 0;
  }
  const int64_t nblk = k / CK_QK, rb = ck_r8_block_bytes(wtype);
  int64_t fb, qo, ql;
  ck_file_block(wtype, &fb, &qo, &ql);
  const int64_t hdr = ck_r8_qs_offset(wtype);
  const uint8_t *S = (const uint8_t *)src;
  uint8_t *D = (uint8_t *)dst;
  memset(D, 0, (size_t)total);
  const int64_t groups = (rows + CK_R8 - 1) / CK_R8;
  for (int64_t g = 0; g < groups; g++) {
    for (int64_t i = 0; i < nblk; i++) {
      uint8_t *o = D + (g * nblk + i) * rb;
      for (int r = 0; r < CK_R8; r++) {
        const int64_t row = g * CK_R8 + r;
        if (row >= rows) break;  /* padding rows stay zero */
        const uint8_t *b = S + row * nblk * fb + i * fb;
        memcpy(o + 2 * r, b, 2);                                       /* d */
        if (wtype == CK_TYPE_Q4_1) memcpy(o + 16 + 2 * r, b + 2, 2);  /* m */
        if (wtype == CK_TYPE_Q5_0) {                                   /* fifth bits */
          uint32_t qh; memcpy(&qh, b + 2, 4);
          for (int h = 0; h < 4; h++) {
            for (int e = 0; e < 4; e++) {
              o[16 + r * 4 + e] |= (uint8_t)((((qh >> (4 * h + e)) & 1u) << h) | (((qh >> (16 + 4 * h + e)) & 1u) << (4 + h)));
            }
          }
        }
        for (int64_t c = 0; c < ql / 4; c++) memcpy(o + hdr + c * 32 + r * 4, b + qo + 4 * c, 4);
      }
    }
  }
  return 0;
}

int ck_dequantize_repacked_row(int wtype, const void *w, int64_t k, int64_t r, float *dst) {
  if (!ck_r8_type(wtype) || k <= 0 || k % ck_r8_block_elements(wtype) != 0 || r < 0 || !w || !dst) return -1;
  if (ck_r8_kquant(wtype)) {
    const int64_t nblk = k / CK_QK_K, rb = ck_r8_block_bytes(wtype);
    const int64_t g = r / CK_R8;
    for (int64_t i = 0; i < nblk; i++) {
      uint8_t blk[256];  /* the file's super-block of row r, then the reference dequantizer */
      ck_unrepack_kq_block(wtype, (const uint8_t *)w + (g * nblk + i) * rb, (int)(r % CK_R8), blk);
      if (ck_dequantize_row(wtype, blk, dst + i * CK_QK_K, CK_QK_K) != 0) return -1;
    }
    return 0;
  }
  const int64_t nblk = k / CK_QK, rb = ck_r8_block_bytes(wtype);
  int64_t fb, qo, ql;
  ck_file_block(wtype, &fb, &qo, &ql);
  const int64_t hdr = ck_r8_qs_offset(wtype);
  const int64_t g = r / CK_R8, l = r % CK_R8;
  for (int64_t i = 0; i < nblk; i++) {
    const uint8_t *o = (const uint8_t *)w + (g * nblk + i) * rb;
    uint8_t blk[34];  /* rebuild the file's block, then the reference dequantizer */
    memcpy(blk, o + 2 * l, 2);
    if (wtype == CK_TYPE_Q4_1) memcpy(blk + 2, o + 16 + 2 * l, 2);
    if (wtype == CK_TYPE_Q5_0) {
      uint32_t qh = 0;
      for (int h = 0; h < 4; h++) {
        for (int e = 0; e < 4; e++) {
          const uint8_t hb = o[16 + l * 4 + e];
          qh |= (uint32_t)((hb >> h) & 1u) << (4 * h + e);
          qh |= (uint32_t)((hb >> (4 + h)) & 1u) << (16 + 4 * h + e);
        }
      }
      memcpy(blk + 2, &qh, 4);
    }
    for (int64_t c = 0; c < ql / 4; c++) memcpy(blk + qo + 4 * c, o + hdr + c * 32 + l * 4, 4);
    if (ck_dequantize_row(wtype, blk, dst + i * CK_QK, CK_QK) != 0) return -1;
  }
  return 0;
}

int ck_matmul_repacked(int wtype, const void *w, const void *x, int64_t k,
                       int64_t r0, int64_t r1, int64_t nb, float *out, int64_t out_stride) {
  if (wtype < 0 || wtype > 30 || !ck_r8_type(wtype)) return -1;
  const ck_kernels *t = ck_active();
  if (!t->mm_r8[wtype]) return -1;
  const int64_t be = ck_r8_block_elements(wtype);
  if (k <= 0 || k % be != 0) return -1;
  if (r0 < 0 || r1 < r0 || nb < 0 || (nb > 1 && out_stride < r1)) return -1;
  if (r0 == r1 || nb == 0) return 0;
  if (!w || !x || !out) return -1;
  const size_t xrow = (size_t)ck_row_bytes(ck_vec_dot_type(wtype), k);
  const ck_mm_r8_fn f = nb == 1 && t->mm_r8_one[wtype] ? t->mm_r8_one[wtype] : t->mm_r8[wtype];
  f(w, x, xrow, k / be, r0, r1, nb, out, out_stride);
  return 0;
}

/* ---- portable kernels: the arithmetic every path follows ---- */


static void mm_r8_nib(const void *w, const void *x, size_t xrow, int64_t nblk,
                      int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride, int five) {
  const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;
  const int64_t rb = five ? 176 : 144, qoff = five ? 48 : 16;
  const int32_t off = five ? 16 : 8;
  for (int64_t g = r0 / CK_R8; g * CK_R8 < r1; g++) {
    for (int64_t b = 0; b < nb; b++) {
      float acc[CK_R8] = {0};
      for (int64_t i = 0; i < nblk; i++) {
        const uint8_t *o = W + (g * nblk + i) * rb;
        const ck_block_q8_0 *y = (const ck_block_q8_0 *)(X + (size_t)b * xrow) + i;
        const float dy = ck_h2f(y->d);
        int32_t sy = 0;
        for (int j = 0; j < CK_QK; j++) sy += y->qs[j];
        for (int r = 0; r < CK_R8; r++) {
          int32_t s = 0;
          for (int h = 0; h < 4; h++) {
            for (int e = 0; e < 4; e++) {
              const uint8_t q = o[qoff + h * 32 + r * 4 + e];
              const uint8_t hb = five ? o[16 + r * 4 + e] : 0;
              const int lo = (q & 0xF) | (((hb >> h) & 1) << 4), hi = (q >> 4) | (((hb >> (4 + h)) & 1) << 4);
              s += lo * y->qs[4 * h + e] + hi * y->qs[16 + 4 * h + e];
            }
          }
          acc[r] = fmaf(ck_r8_half(o, r) * dy, (float)(s - off * sy), acc[r]);
        }
      }
      ck_r8_store(acc, g, r0, r1, out + b * ostride);
    }
  }
}

static void mm_r8_q4_0(const void *w, const void *x, size_t xrow, int64_t nblk,
                       int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  mm_r8_nib(w, x, xrow, nblk, r0, r1, nb, out, ostride, 0);
}

static void mm_r8_q5_0(const void *w, const void *x, size_t xrow, int64_t nblk,
                       int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  mm_r8_nib(w, x, xrow, nblk, r0, r1, nb, out, ostride, 1);
}

/* Q4_1: ggml's vec_dot order per row (8 lane accumulators, lane c = elements 4c..4c+3, summed as
   hsum_float_8, then the min term), so equal to ck_matmul's AVX2 Q4_1 bits. */
static void mm_r8_q4_1(const void *w, const void *x, size_t xrow, int64_t nblk,
                       int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;
  for (int64_t g = r0 / CK_R8; g * CK_R8 < r1; g++) {
    for (int64_t b = 0; b < nb; b++) {
      float acc[CK_R8][8] = {{0}}, macc[CK_R8] = {0};
      for (int64_t i = 0; i < nblk; i++) {
        const uint8_t *o = W + (g * nblk + i) * 160;
        const ck_block_q8_1 *y = (const ck_block_q8_1 *)(X + (size_t)b * xrow) + i;
        const float dy = ck_h2f(y->d), sy = ck_h2f(y->s);
        for (int r = 0; r < CK_R8; r++) {
          const float scale = ck_r8_half(o, r) * dy;
          for (int h = 0; h < 4; h++) {
            int32_t lo = 0, hi = 0;
            for (int e = 0; e < 4; e++) {
              const uint8_t q = o[32 + h * 32 + r * 4 + e];
              lo += (q & 0xF) * y->qs[4 * h + e];
              hi += (q >> 4) * y->qs[16 + 4 * h + e];
            }
            acc[r][h] = fmaf(scale, (float)lo, acc[r][h]);
            acc[r][h + 4] = fmaf(scale, (float)hi, acc[r][h + 4]);
          }
          macc[r] = fmaf(ck_r8_half(o + 16, r), sy, macc[r]);
        }
      }
      float res[CK_R8];
      for (int r = 0; r < CK_R8; r++) {
        const float *a = acc[r];
        res[r] = (((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))) + macc[r];
      }
      ck_r8_store(res, g, r0, r1, out + b * ostride);
    }
  }
}

static void mm_r8_q8_0(const void *w, const void *x, size_t xrow, int64_t nblk,
                       int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;
  for (int64_t g = r0 / CK_R8; g * CK_R8 < r1; g++) {
    for (int64_t b = 0; b < nb; b++) {
      float acc[CK_R8] = {0};
      for (int64_t i = 0; i < nblk; i++) {
        const uint8_t *o = W + (g * nblk + i) * 272;
        const ck_block_q8_0 *y = (const ck_block_q8_0 *)(X + (size_t)b * xrow) + i;
        const float dy = ck_h2f(y->d);
        for (int r = 0; r < CK_R8; r++) {
          int32_t s = 0;
          for (int c = 0; c < 8; c++) {
            for (int e = 0; e < 4; e++) s += (int8_t)o[16 + c * 32 + r * 4 + e] * y->qs[4 * c + e];
          }
          acc[r] = fmaf(ck_r8_half(o, r) * dy, (float)s, acc[r]);
        }
      }
      ck_r8_store(acc, g, r0, r1, out + b * ostride);
    }
  }
}

void ck_fill_r8_scalar(ck_mm_r8_fn *tab) {
  tab[CK_TYPE_Q4_0] = mm_r8_q4_0;
  tab[CK_TYPE_Q5_0] = mm_r8_q5_0;
  tab[CK_TYPE_Q4_1] = mm_r8_q4_1;
  tab[CK_TYPE_Q8_0] = mm_r8_q8_0;
  ck_fill_r8_kq_scalar(tab);
}
