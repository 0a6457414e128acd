/* Dequantization (weights -> float) for every supported block format.
   Arithmetic order matches ggml's reference dequantizers (and gguf-py), so results are bit-exact. */
#include "ck_internal.h"

#pragma STDC FP_CONTRACT OFF

static void dq_q4_0(const ck_block_q4_0 *b, float *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++, y += CK_QK) {
    const float d = ck_h2f(b[i].d);
    for (int j = 0; j < CK_QK / 2; j++) {
      y[j] = d * (float)((b[i].qs[j] & 0xF) - 8);
      y[j + CK_QK / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
    }
  }
}

static void dq_q4_1(const ck_block_q4_1 *b, float *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++, y += CK_QK) {
    const float d = ck_h2f(b[i].d), m = ck_h2f(b[i].m);
    for (int j = 0; j < CK_QK / 2; j++) {
      y[j] = d * (float)(b[i].qs[j] & 0xF) + m;
      y[j + CK_QK / 2] = d * (float)(b[i].qs[j] >> 4) + m;
    }
  }
}

static inline uint32_t ck_le32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void dq_q5_0(const ck_block_q5_0 *b, float *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++, y += CK_QK) {
    const float d = ck_h2f(b[i].d);
    const uint32_t qh = ck_le32(b[i].qh);
    for (int j = 0; j < CK_QK / 2; j++) {
      const int x0 = (b[i].qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
      const int x1 = (b[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
      y[j] = d * (float)(x0 - 16);
      y[j + CK_QK / 2] = d * (float)(x1 - 16);
    }
  }
}

static void dq_q5_1(const ck_block_q5_1 *b, float *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++, y += CK_QK) {
    const float d = ck_h2f(b[i].d), m = ck_h2f(b[i].m);
    const uint32_t qh = ck_le32(b[i].qh);
    for (int j = 0; j < CK_QK / 2; j++) {
      const int x0 = (b[i].qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
      const int x1 = (b[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
      y[j] = d * (float)x0 + m;
      y[j + CK_QK / 2] = d * (float)x1 + m;
    }
  }
}

static void dq_q8_0(const ck_block_q8_0 *b, float *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++, y += CK_QK) {
    const float d = ck_h2f(b[i].d);
    for (int j = 0; j < CK_QK; j++) y[j] = (float)b[i].qs[j] * d;
  }
}

static void dq_q8_1(const ck_block_q8_1 *b, float *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++, y += CK_QK) {
    const float d = ck_h2f(b[i].d);
    for (int j = 0; j < CK_QK; j++) y[j] = (float)b[i].qs[j] * d;
  }
}

static void dq_q2_K(const ck_block_q2_K *b, float *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++) {
    const float d = ck_h2f(b[i].d), dmin = ck_h2f(b[i].dmin);
    const uint8_t *q = b[i].qs;
    int is = 0;
    for (int half = 0; half < 2; half++, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int part = 0; part < 2; part++, is++) {
          const float dl = d * (float)(b[i].scales[is] & 0xF);
          const float ml = dmin * (float)(b[i].scales[is] >> 4);
          for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[part * 16 + l] >> shift) & 3) - ml;
        }
      }
    }
  }
}

static void dq_q3_K(const ck_block_q3_K *b, float *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++) {
    const float d = ck_h2f(b[i].d);
    int8_t sc[16];
    ck_q3k_scales(b[i].scales, sc);
    const uint8_t *q = b[i].qs;
    int is = 0, bit = 0;
    for (int half = 0; half < 2; half++, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, bit++) {
        for (int part = 0; part < 2; part++, is++) {
          const float dl = d * (float)sc[is];
          for (int l = 0; l < 16; l++) {
            const int idx = part * 16 + l;
            const int lo = (q[idx] >> shift) & 3;
            const int hi = (b[i].hmask[idx] >> bit) & 1;
            *y++ = dl * (float)(lo - (hi ? 0 : 4));
          }
        }
      }
    }
  }
}

static void dq_q4_K(const ck_block_q4_K *b, float *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++) {
    const float d = ck_h2f(b[i].d), dmin = ck_h2f(b[i].dmin);
    const uint8_t *q = b[i].qs;
    for (int c = 0; c < 4; c++, q += 32) {
      uint8_t s0, m0, s1, m1;
      ck_scale_min_k4(2 * c, b[i].scales, &s0, &m0);
      ck_scale_min_k4(2 * c + 1, b[i].scales, &s1, &m1);
      const float d0 = d * (float)s0, mm0 = dmin * (float)m0;
      const float d1 = d * (float)s1, mm1 = dmin * (float)m1;
      for (int l = 0; l < 32; l++) *y++ = d0 * (float)(q[l] & 0xF) - mm0;
      for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] >> 4) - mm1;
    }
  }
}

static void dq_q5_K(const ck_block_q5_K *b, float *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++) {
    const float d = ck_h2f(b[i].d), dmin = ck_h2f(b[i].dmin);
    const uint8_t *q = b[i].qs;
    for (int c = 0; c < 4; c++, q += 32) {
      uint8_t s0, m0, s1, m1;
      ck_scale_min_k4(2 * c, b[i].scales, &s0, &m0);
      ck_scale_min_k4(2 * c + 1, b[i].scales, &s1, &m1);
      const float d0 = d * (float)s0, mm0 = dmin * (float)m0;
      const float d1 = d * (float)s1, mm1 = dmin * (float)m1;
      for (int l = 0; l < 32; l++) {
        const int v = (q[l] & 0xF) | (((b[i].qh[l] >> (2 * c)) & 1) << 4);
        *y++ = d0 * (float)v - mm0;
      }
      for (int l = 0; l < 32; l++) {
        const int v = (q[l] >> 4) | (((b[i].qh[l] >> (2 * c + 1)) & 1) << 4);
        *y++ = d1 * (float)v - mm1;
      }
    }
  }
}

static void dq_q6_K(const ck_block_q6_K *b, float *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++, y += CK_QK_K) {
    const float d = ck_h2f(b[i].d);
    for (int h = 0; h < 2; h++) {
      const uint8_t *ql = b[i].ql + 64 * h;
      const uint8_t *qh = b[i].qh + 32 * h;
      const int8_t *sc = b[i].scales + 8 * h;
      float *yy = y + 128 * h;
      for (int l = 0; l < 32; l++) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        yy[l] = (d * (float)sc[is]) * (float)q1;
        yy[l + 32] = (d * (float)sc[is + 2]) * (float)q2;
        yy[l + 64] = (d * (float)sc[is + 4]) * (float)q3;
        yy[l + 96] = (d * (float)sc[is + 6]) * (float)q4;
      }
    }
  }
}

static void dq_q8_K(const ck_block_q8_K *b, float *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++, y += CK_QK_K) {
    for (int j = 0; j < CK_QK_K; j++) y[j] = b[i].d * (float)b[i].qs[j];
  }
}

int ck_dequantize_row(int type, const void *src, float *dst, int64_t n) {
  const int64_t be = ck_block_elements(type);
  if (be == 0 || n < 0 || n % be != 0) return -1;
  const int64_t nblk = n / be;
  switch (type) {
    case CK_TYPE_F32: memmove(dst, src, (size_t)n * sizeof(float)); return 0;
    case CK_TYPE_F16: ck_f16_to_f32((const uint16_t *)src, dst, n); return 0;
    case CK_TYPE_BF16: ck_bf16_to_f32((const uint16_t *)src, dst, n); return 0;
    case CK_TYPE_Q4_0: dq_q4_0(src, dst, nblk); return 0;
    case CK_TYPE_Q4_1: dq_q4_1(src, dst, nblk); return 0;
    case CK_TYPE_Q5_0: dq_q5_0(src, dst, nblk); return 0;
    case CK_TYPE_Q5_1: dq_q5_1(src, dst, nblk); return 0;
    case CK_TYPE_Q8_0: dq_q8_0(src, dst, nblk); return 0;
    case CK_TYPE_Q8_1: dq_q8_1(src, dst, nblk); return 0;
    case CK_TYPE_Q2_K: dq_q2_K(src, dst, nblk); return 0;
    case CK_TYPE_Q3_K: dq_q3_K(src, dst, nblk); return 0;
    case CK_TYPE_Q4_K: dq_q4_K(src, dst, nblk); return 0;
    case CK_TYPE_Q5_K: dq_q5_K(src, dst, nblk); return 0;
    case CK_TYPE_Q6_K: dq_q6_K(src, dst, nblk); return 0;
    case CK_TYPE_Q8_K: dq_q8_K(src, dst, nblk); return 0;
    default: return -1;
  }
}
