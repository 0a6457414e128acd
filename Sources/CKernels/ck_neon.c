/* arm64 NEON kernels (Advanced SIMD of ARMv8.0 only, no dot-product extension):
   legacy quants and K-quants against their activation types, float formats, float helpers.
   int8 products through vmull_s8 + pairwise accumulation into int32. K-quant super-blocks
   are unpacked into the common form of ck_kquant.h (NEON for Q4_K/Q6_K, else ck_kq_unpack.c).
   Q8_0/Q8_1 activation quantization in NEON (bit-exact), Q8_K on the scalar reference. */
#include "ck_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include "ck_mm_driver.h"
#include "ck_kq_unpack.h"

static inline int32x4_t ck_dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
  return vpadalq_s16(acc, vmull_high_s8(a, b));
}

/* 0xFF in byte j (0..15) where bit j of (lo byte, hi byte) is set */
static inline uint8x16_t ck_bits16(uint8_t b0, uint8_t b1) {
  static const uint8_t bit[16] = { 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128 };
  return vtstq_u8(vcombine_u8(vdup_n_u8(b0), vdup_n_u8(b1)), vld1q_u8(bit));
}

/* a block of 32 quants as two int8x16 (elements 0..15, 16..31) */
typedef struct { int8x16_t q0, q1; } ck_q32;

static inline ck_q32 ck_nib(const uint8_t *qs, int off) {
  const uint8x16_t v = vld1q_u8(qs);
  ck_q32 r = { vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), vdupq_n_s8((int8_t)off)),
               vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8((int8_t)off)) };
  return r;
}

static inline ck_q32 ck_q5(const uint8_t *qs, const uint8_t *qh, int off) {
  ck_q32 r = ck_nib(qs, 0);
  const uint8x16_t h0 = vandq_u8(ck_bits16(qh[0], qh[1]), vdupq_n_u8(0x10));
  const uint8x16_t h1 = vandq_u8(ck_bits16(qh[2], qh[3]), vdupq_n_u8(0x10));
  r.q0 = vsubq_s8(vorrq_s8(r.q0, vreinterpretq_s8_u8(h0)), vdupq_n_s8((int8_t)off));
  r.q1 = vsubq_s8(vorrq_s8(r.q1, vreinterpretq_s8_u8(h1)), vdupq_n_s8((int8_t)off));
  return r;
}

static inline ck_q32 ck_q8(const int8_t *qs) {
  ck_q32 r = { vld1q_s8(qs), vld1q_s8(qs + 16) };
  return r;
}

static inline int ck_dot32(ck_q32 w, const int8_t *y) {
  int32x4_t a = ck_dot16(vdupq_n_s32(0), w.q0, vld1q_s8(y));
  a = ck_dot16(a, w.q1, vld1q_s8(y + 16));
  return vaddvq_s32(a);
}

#define ROW_SYM_NEON(NAME, WT, LOADQ)                                                            \
  CK_ROW_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g,  \
                          float *s) {                                                            \
    float acc[CK_ACT_GROUP] = { 0 };                                                             \
    const WT *wb = (const WT *)w;                                                                \
    for (int64_t i = 0; i < nblk; i++) {                                                         \
      const ck_q32 q = LOADQ;                                                                    \
      const float d = ck_h2f(wb[i].d);                                                           \
      for (int j = 0; j < g; j++) {                                                              \
        const ck_block_q8_0 *y = (const ck_block_q8_0 *)(x + j * xrow) + i;                      \
        acc[j] += (float)ck_dot32(q, y->qs) * (d * ck_h2f(y->d));                                \
      }                                                                                          \
    }                                                                                            \
    for (int j = 0; j < g; j++) s[j] = acc[j];                                                   \
  }

#define ROW_MIN_NEON(NAME, WT, LOADQ)                                                            \
  CK_ROW_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g,  \
                          float *s) {                                                            \
    float acc[CK_ACT_GROUP] = { 0 };                                                             \
    const WT *wb = (const WT *)w;                                                                \
    for (int64_t i = 0; i < nblk; i++) {                                                         \
      const ck_q32 q = LOADQ;                                                                    \
      const float d = ck_h2f(wb[i].d), m = ck_h2f(wb[i].m);                                      \
      for (int j = 0; j < g; j++) {                                                              \
        const ck_block_q8_1 *y = (const ck_block_q8_1 *)(x + j * xrow) + i;                      \
        acc[j] += (float)ck_dot32(q, y->qs) * (d * ck_h2f(y->d)) + m * ck_h2f(y->s);             \
      }                                                                                          \
    }                                                                                            \
    for (int j = 0; j < g; j++) s[j] = acc[j];                                                   \
  }

ROW_SYM_NEON(row_q4_0, ck_block_q4_0, ck_nib(wb[i].qs, 8))
ROW_SYM_NEON(row_q5_0, ck_block_q5_0, ck_q5(wb[i].qs, wb[i].qh, 16))
ROW_SYM_NEON(row_q8_0, ck_block_q8_0, ck_q8(wb[i].qs))
ROW_MIN_NEON(row_q4_1, ck_block_q4_1, ck_nib(wb[i].qs, 0))
ROW_MIN_NEON(row_q5_1, ck_block_q5_1, ck_q5(wb[i].qs, wb[i].qh, 0))

/* K-quants: quants u <= 63 are valid int8, so signed products work for every type */
CK_ROW_INLINE void row_kq(const uint8_t *w, size_t wbs, ck_kq_unpack_fn unpack, const uint8_t *x,
                          size_t xrow, int64_t nblk, int g, float *s) {
  float acc[CK_ACT_GROUP] = { 0 };
  ck_kq_unpacked k;
  for (int64_t i = 0; i < nblk; i++) {
    unpack(w + (size_t)i * wbs, &k);
    for (int j = 0; j < g; j++) {
      const ck_block_q8_K *y = (const ck_block_q8_K *)(x + j * xrow) + i;
      int32x4_t iacc = vdupq_n_s32(0);
      for (int gi = 0; gi < 16; gi++) {
        const int32x4_t a = ck_dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(vld1q_u8(k.u + 16 * gi)),
                                     vld1q_s8(y->qs + 16 * gi));
        iacc = vmlaq_n_s32(iacc, a, k.sc[gi]);
      }
      const int32_t isum = vaddvq_s32(iacc);
      const int32_t imin = ck_kq_mins(&k, y->bsums);
      acc[j] += y->d * (k.d * (float)isum - k.dm * (float)imin);
    }
  }
  for (int j = 0; j < g; j++) s[j] = acc[j];
}

/* NEON unpackers for the most used K-quants (the others use the portable ones) */
static void unpack_q4_K(const void *blk, ck_kq_unpacked *k) {
  const ck_block_q4_K *b = blk;
  const uint8x16_t mf = vdupq_n_u8(0x0F);
  for (int c = 0; c < 4; c++) {
    const uint8x16_t v0 = vld1q_u8(b->qs + 32 * c), v1 = vld1q_u8(b->qs + 32 * c + 16);
    vst1q_u8(k->u + 64 * c, vandq_u8(v0, mf));
    vst1q_u8(k->u + 64 * c + 16, vandq_u8(v1, mf));
    vst1q_u8(k->u + 64 * c + 32, vshrq_n_u8(v0, 4));
    vst1q_u8(k->u + 64 * c + 48, vshrq_n_u8(v1, 4));
  }
  ck_kq_meta_q45_K(b->scales, b->d, b->dmin, k);
}

static void unpack_q6_K(const void *blk, ck_kq_unpacked *k) {
  const ck_block_q6_K *b = blk;
  const uint8x16_t mf = vdupq_n_u8(0x0F), m30 = vdupq_n_u8(0x30);
  for (int h = 0; h < 2; h++) {
    for (int l = 0; l < 32; l += 16) {
      const uint8x16_t l0 = vld1q_u8(b->ql + 64 * h + l), l1 = vld1q_u8(b->ql + 64 * h + 32 + l);
      const uint8x16_t qh = vld1q_u8(b->qh + 32 * h + l);
      uint8_t *u = k->u + 128 * h + l;
      vst1q_u8(u, vorrq_u8(vandq_u8(l0, mf), vandq_u8(vshlq_n_u8(qh, 4), m30)));
      vst1q_u8(u + 32, vorrq_u8(vandq_u8(l1, mf), vandq_u8(vshlq_n_u8(qh, 2), m30)));
      vst1q_u8(u + 64, vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(qh, m30)));
      vst1q_u8(u + 96, vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(qh, 2), m30)));
    }
  }
  ck_kq_meta_q6_K(b, k);
}

#define ROW_KQ_NEON(NAME, WT, UNPACK)                                                            \
  CK_ROW_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t nblk, int g,  \
                          float *s) {                                                            \
    row_kq(w, sizeof(WT), UNPACK, x, xrow, nblk, g, s);                                          \
  }
ROW_KQ_NEON(row_q2_K, ck_block_q2_K, ck_kq_unpack_q2_K)
ROW_KQ_NEON(row_q3_K, ck_block_q3_K, ck_kq_unpack_q3_K)
ROW_KQ_NEON(row_q4_K, ck_block_q4_K, unpack_q4_K)
ROW_KQ_NEON(row_q5_K, ck_block_q5_K, ck_kq_unpack_q5_K)
ROW_KQ_NEON(row_q6_K, ck_block_q6_K, unpack_q6_K)

/* ---- float formats ---- */

static inline float32x4_t ck_ldf(const float *p) { return vld1q_f32(p); }
static inline float32x4_t ck_ldh(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
static inline float32x4_t ck_ldb(const uint16_t *p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }

#define ROW_FLOAT_NEON(NAME, ET, LOAD, CONV)                                                     \
  CK_ROW_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t n, int g,     \
                          float *s) {                                                            \
    float32x4_t acc[CK_ACT_GROUP][2];                                                            \
    for (int j = 0; j < CK_ACT_GROUP; j++) acc[j][0] = acc[j][1] = vdupq_n_f32(0);               \
    const ET *wv = (const ET *)w;                                                                \
    int64_t i = 0;                                                                               \
    for (; i + 8 <= n; i += 8) {                                                                 \
      const float32x4_t w0 = LOAD(wv + i), w1 = LOAD(wv + i + 4);                                \
      for (int j = 0; j < g; j++) {                                                              \
        const ET *xv = (const ET *)(x + j * xrow) + i;                                           \
        acc[j][0] = vfmaq_f32(acc[j][0], w0, LOAD(xv));                                          \
        acc[j][1] = vfmaq_f32(acc[j][1], w1, LOAD(xv + 4));                                      \
      }                                                                                          \
    }                                                                                            \
    for (int j = 0; j < g; j++) {                                                                \
      float t = vaddvq_f32(vaddq_f32(acc[j][0], acc[j][1]));                                     \
      const ET *xv = (const ET *)(x + j * xrow);                                                 \
      for (int64_t l = i; l < n; l++) t += CONV(wv[l]) * CONV(xv[l]);                            \
      s[j] = t;                                                                                  \
    }                                                                                            \
  }
#define CK_ID(v) (v)
ROW_FLOAT_NEON(row_f32, float, ck_ldf, CK_ID)
ROW_FLOAT_NEON(row_f16, uint16_t, ck_ldh, ck_h2f)
ROW_FLOAT_NEON(row_bf16, uint16_t, ck_ldb, ck_bf2f)

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

/* ---- float helpers ---- */

static void f32_to_f16(const float *src, uint16_t *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
  for (; i < n; i++) dst[i] = ck_f2h(src[i]);
}

static void f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, ck_ldh(src + i));
  for (; i < n; i++) dst[i] = ck_h2f(src[i]);
}

static float dot_f32(const float *a, const float *b, int64_t n) {
  float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
  }
  float t = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; i++) t += a[i] * b[i];
  return t;
}

static float dot_f16_f32(const uint16_t *a, const float *b, int64_t n) {
  float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = vfmaq_f32(s0, ck_ldh(a + i), vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, ck_ldh(a + i + 4), vld1q_f32(b + i + 4));
  }
  float t = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; i++) t += ck_h2f(a[i]) * b[i];
  return t;
}

static void axpy_f16_f32(float a, const uint16_t *x, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), ck_ldh(x + i), a));
  for (; i < n; i++) y[i] += a * ck_h2f(x[i]);
}

static void axpy_f32(float a, const float *x, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
  for (; i < n; i++) y[i] += a * x[i];
}

/* ---- activation quantization, bit-exact with the scalar reference ---- */

/* 32 floats times id -> int8 with roundf semantics (vcvtaq: ties away from zero); returns sum */
static inline int ck_q8_32(const float *x, float id, int8_t *qs) {
  int32x4_t sum = vdupq_n_s32(0);
  for (int j = 0; j < 32; j += 8) {
    const int32x4_t a = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + j), id));
    const int32x4_t b = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + j + 4), id));
    sum = vaddq_s32(sum, vaddq_s32(a, b));
    vst1_s8(qs + j, vqmovn_s16(vcombine_s16(vqmovn_s32(a), vqmovn_s32(b))));
  }
  return vaddvq_s32(sum);
}

static inline float ck_amax32_neon(const float *x) {
  float32x4_t m = vabsq_f32(vld1q_f32(x));
  for (int j = 4; j < 32; j += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + j)));
  return vmaxvq_f32(m);
}

static int quantize_neon(int type, const float *src, void *dst, int64_t n) {
  if (n >= 0 && n % CK_QK == 0 && (type == CK_TYPE_Q8_0 || type == CK_TYPE_Q8_1)) {
    for (int64_t i = 0; i < n / CK_QK; i++, src += CK_QK) {
      const float d = ck_amax32_neon(src) / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      if (type == CK_TYPE_Q8_0) {
        ck_block_q8_0 *y = (ck_block_q8_0 *)dst + i;
        y->d = ck_f2h(d);
        (void)ck_q8_32(src, id, y->qs);
      } else {
        ck_block_q8_1 *y = (ck_block_q8_1 *)dst + i;
        y->d = ck_f2h(d);
        const int sum = ck_q8_32(src, id, y->qs);
        y->s = ck_f2h((float)sum * d);
      }
    }
    return 0;
  }
  return ck_quantize_row_scalar(type, src, dst, n);
}

void ck_fill_neon(ck_kernels *k) {
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
  k->quantize = quantize_neon;
  k->f32_to_f16 = f32_to_f16;
  k->f16_to_f32 = f16_to_f32;
  k->dot_f32 = dot_f32;
  k->dot_f16_f32 = dot_f16_f32;
  k->axpy_f16_f32 = axpy_f16_f32;
  k->axpy_f32 = axpy_f32;
  k->attn_f16_multi = NULL;  /* the scalar table's blocked version keeps the scalar order, not this */
}

#else
void ck_fill_neon(ck_kernels *k) { (void)k; }
#endif
