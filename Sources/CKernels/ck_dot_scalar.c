/* Portable matmul row kernels for every weight type (integer dot products inside blocks, as
   ggml's reference vec_dot functions). Also the fallback for ISAs lacking a kernel. */
#include "ck_mm_driver.h"
#include "ck_kq_unpack.h"
#include "ck_repack.h"

/* ---- legacy 32-element quants: unpack a weight block to 32 ints, dot with each activation ---- */

static inline void unpack_q4(const uint8_t *qs, int off, int8_t *q) {
  for (int j = 0; j < 16; j++) { q[j] = (int8_t)((qs[j] & 0xF) - off); q[j + 16] = (int8_t)((qs[j] >> 4) - off); }
}

static inline void unpack_q5(const uint8_t *qs, const uint8_t *qhb, int off, int8_t *q) {
  uint32_t qh; memcpy(&qh, qhb, 4);
  for (int j = 0; j < 16; j++) {
    q[j] = (int8_t)(((qs[j] & 0xF) | (((qh >> j) & 1u) << 4)) - off);
    q[j + 16] = (int8_t)(((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - off);
  }
}

static inline int dot32(const int8_t *a, const int8_t *b) {
  int s = 0;
  for (int j = 0; j < 32; j++) s += a[j] * b[j];
  return s;
}

/* Weight formats whose activations are Q8_0 (symmetric: Q4_0, Q5_0, Q8_0). */
#define ROW_SYM(NAME, WT, UNPACK)                                                                \
  CK_ROW_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g, float *s) { \
    float acc[CK_ACT_GROUP] = { 0 };                                                             \
    const WT *wb = (const WT *)w;                                                                \
    for (int64_t i = 0; i < nblk; i++) {                                                         \
      int8_t q[32];                                                                              \
      UNPACK;                                                                                    \
      const float d = ck_h2f(wb[i].d);                                                           \
      for (int j = 0; j < g; j++) {                                                              \
        const ck_block_q8_0 *y = (const ck_block_q8_0 *)(x + j * xrow) + i;                      \
        acc[j] += (float)dot32(q, y->qs) * (d * ck_h2f(y->d));                                   \
      }                                                                                          \
    }                                                                                            \
    for (int j = 0; j < g; j++) s[j] = acc[j];                                                   \
  }

/* Weight formats with a min (Q4_1, Q5_1) against Q8_1: d*dy*sum(q*y) + m*sy. */
#define ROW_MIN(NAME, WT, UNPACK)                                                                \
  CK_ROW_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g, float *s) { \
    float acc[CK_ACT_GROUP] = { 0 };                                                             \
    const WT *wb = (const WT *)w;                                                                \
    for (int64_t i = 0; i < nblk; i++) {                                                         \
      int8_t q[32];                                                                              \
      UNPACK;                                                                                    \
      const float d = ck_h2f(wb[i].d), m = ck_h2f(wb[i].m);                                      \
      for (int j = 0; j < g; j++) {                                                              \
        const ck_block_q8_1 *y = (const ck_block_q8_1 *)(x + j * xrow) + i;                      \
        acc[j] += (float)dot32(q, y->qs) * (d * ck_h2f(y->d)) + m * ck_h2f(y->s);                \
      }                                                                                          \
    }                                                                                            \
    for (int j = 0; j < g; j++) s[j] = acc[j];                                                   \
  }

ROW_SYM(row_q4_0, ck_block_q4_0, unpack_q4(wb[i].qs, 8, q))
ROW_SYM(row_q5_0, ck_block_q5_0, unpack_q5(wb[i].qs, wb[i].qh, 16, q))
ROW_SYM(row_q8_0, ck_block_q8_0, memcpy(q, wb[i].qs, 32))
ROW_MIN(row_q4_1, ck_block_q4_1, unpack_q4(wb[i].qs, 0, q))
ROW_MIN(row_q5_1, ck_block_q5_1, unpack_q5(wb[i].qs, wb[i].qh, 0, q))

/* ---- K-quants: unpack the super-block once (ck_kquant.h), then integer dots per 16 ---- */

CK_ROW_INLINE void row_kq(const uint8_t *w, size_t wbs, ck_kq_unpack_fn unpack, const uint8_t *x,
                          size_t xrow, int64_t nblk, int g, float *s) {
  float acc[CK_ACT_GROUP] = { 0 };
  ck_kq_unpacked k;
  for (int64_t i = 0; i < nblk; i++) {
    unpack(w + (size_t)i * wbs, &k);
    for (int j = 0; j < g; j++) {
      const ck_block_q8_K *y = (const ck_block_q8_K *)(x + j * xrow) + i;
      int32_t isum = 0;
      for (int gi = 0; gi < 16; gi++) {
        int32_t t = 0;
        for (int l = 0; l < 16; l++) t += k.u[gi * 16 + l] * y->qs[gi * 16 + l];
        isum += k.sc[gi] * t;
      }
      const int32_t imin = ck_kq_mins(&k, y->bsums);
      acc[j] += y->d * (k.d * (float)isum - k.dm * (float)imin);
    }
  }
  for (int j = 0; j < g; j++) s[j] = acc[j];
}

#define ROW_KQ(NAME, WT, UNPACK)                                                                 \
  CK_ROW_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g, float *s) { \
    row_kq(w, sizeof(WT), UNPACK, x, xrow, nblk, g, s);                                          \
  }
ROW_KQ(row_q2_K, ck_block_q2_K, ck_kq_unpack_q2_K)
ROW_KQ(row_q3_K, ck_block_q3_K, ck_kq_unpack_q3_K)
ROW_KQ(row_q4_K, ck_block_q4_K, ck_kq_unpack_q4_K)
ROW_KQ(row_q5_K, ck_block_q5_K, ck_kq_unpack_q5_K)
ROW_KQ(row_q6_K, ck_block_q6_K, ck_kq_unpack_q6_K)

/* ---- float formats: nblk is the element count; converted in chunks of 32 ---- */

#define ROW_FLOAT(NAME, ET, CONV)                                                                \
  CK_ROW_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t n, int g, float *s) { \
    float acc[CK_ACT_GROUP][4] = { { 0 } };                                                      \
    const ET *wv = (const ET *)w;                                                                \
    for (int64_t i0 = 0; i0 < n; i0 += 32) {                                                     \
      const int m = (int)(n - i0 < 32 ? n - i0 : 32);                                            \
      float wf[32];                                                                              \
      for (int l = 0; l < m; l++) wf[l] = CONV(wv[i0 + l]);                                      \
      for (int j = 0; j < g; j++) {                                                              \
        const ET *xv = (const ET *)(x + j * xrow) + i0;                                          \
        for (int l = 0; l < m; l++) acc[j][l & 3] += wf[l] * CONV(xv[l]);                        \
      }                                                                                          \
    }                                                                                            \
    for (int j = 0; j < g; j++) s[j] = (acc[j][0] + acc[j][1]) + (acc[j][2] + acc[j][3]);        \
  }
#define CK_ID(v) (v)
ROW_FLOAT(row_f32, float, CK_ID)
ROW_FLOAT(row_f16, uint16_t, ck_h2f)
ROW_FLOAT(row_bf16, uint16_t, ck_bf2f)

CK_DEFINE_MM(mm_q4_0, row_q4_0, )
CK_DEFINE_MM(mm_q4_1, row_q4_1, )
CK_DEFINE_MM(mm_q5_0, row_q5_0, )
CK_DEFINE_MM(mm_q5_1, row_q5_1, )
CK_DEFINE_MM(mm_q8_0, row_q8_0, )
CK_DEFINE_MM(mm_q2_K, row_q2_K, )
CK_DEFINE_MM(mm_q3_K, row_q3_K, )
CK_DEFINE_MM(mm_q4_K, row_q4_K, )
CK_DEFINE_MM(mm_q5_K, row_q5_K, )
CK_DEFINE_MM(mm_q6_K, row_q6_K, )
CK_DEFINE_MM(mm_f32, row_f32, )
CK_DEFINE_MM(mm_f16, row_f16, )
CK_DEFINE_MM(mm_bf16, row_bf16, )

void ck_fill_scalar_attention(ck_kernels *k);
void ck_fill_scalar(ck_kernels *k) {
  memset(k, 0, sizeof(*k));
  k->mm[CK_TYPE_Q4_0] = mm_q4_0;
  k->mm[CK_TYPE_Q4_1] = mm_q4_1;
  k->mm[CK_TYPE_Q5_0] = mm_q5_0;
  k->mm[CK_TYPE_Q5_1] = mm_q5_1;
  k->mm[CK_TYPE_Q8_0] = mm_q8_0;
  k->mm[CK_TYPE_Q2_K] = mm_q2_K;
  k->mm[CK_TYPE_Q3_K] = mm_q3_K;
  k->mm[CK_TYPE_Q4_K] = mm_q4_K;
  k->mm[CK_TYPE_Q5_K] = mm_q5_K;
  k->mm[CK_TYPE_Q6_K] = mm_q6_K;
  k->mm[CK_TYPE_F32] = mm_f32;
  k->mm[CK_TYPE_F16] = mm_f16;
  k->mm[CK_TYPE_BF16] = mm_bf16;
  k->quantize = NULL;
  k->f32_to_f16 = ck_f32_to_f16_scalar;
  k->f16_to_f32 = ck_f16_to_f32_scalar;
  k->dot_f32 = ck_dot_f32_scalar;
  k->dot_f16_f32 = ck_dot_f16_f32_scalar;
  k->axpy_f16_f32 = ck_axpy_f16_f32_scalar;
  k->axpy_f32 = ck_axpy_f32_scalar;
  k->rmsnorm = ck_rmsnorm_f32_scalar;
  k->silu_mul = ck_silu_mul_f32_scalar;
  k->softmax = ck_softmax_f32_scalar;
  ck_fill_r8_scalar(k->mm_r8);
  ck_fill_scalar_attention(k);
}
