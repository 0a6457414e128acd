/* Activation quantization (float -> F32/F16/BF16/Q8_0/Q8_1/Q8_K) with ggml's reference numerics:
   Q8_0/Q8_1: d = amax/127, q = roundf(x * (1/d)) (ties away from zero), Q8_1 s = half(d * sum q);
   Q8_K: iscale = -127/max (max = the signed value of largest magnitude), q = round-half-even,
   clamped to 127 from above, d = 1/iscale, bsums = sums of 16. */
#include "ck_internal.h"

#pragma STDC FP_CONTRACT OFF

/* Round half to even via the 1.5*2^23 trick, as ggml's nearest_int (|v| < 2^22). */
static inline int ck_nearest_int(float v) {
  const float t = v + 12582912.f;
  uint32_t i = ck_f32_bits(t);
  return (int)(i & 0x007FFFFFu) - 0x00400000;
}

static void q8_0_scalar(const float *x, ck_block_q8_0 *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++, x += CK_QK) {
    float amax = 0.0f;
    for (int j = 0; j < CK_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = ck_f2h(d);
    for (int j = 0; j < CK_QK; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
  }
}

static void q8_1_scalar(const float *x, ck_block_q8_1 *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++, x += CK_QK) {
    float amax = 0.0f;
    for (int j = 0; j < CK_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = ck_f2h(d);
    int sum = 0;
    for (int j = 0; j < CK_QK; j++) {
      y[i].qs[j] = (int8_t)roundf(x[j] * id);
      sum += y[i].qs[j];
    }
    y[i].s = ck_f2h((float)sum * d);
  }
}

static void q8_K_scalar(const float *x, ck_block_q8_K *y, int64_t nblk) {
  for (int64_t i = 0; i < nblk; i++, x += CK_QK_K) {
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < CK_QK_K; j++) {
      const float ax = fabsf(x[j]);
      if (ax > amax) { amax = ax; max = x[j]; }
    }
    if (amax == 0.0f) {
      memset(&y[i], 0, sizeof(y[i]));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < CK_QK_K; j++) {
      const int v = ck_nearest_int(iscale * x[j]);
      y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
    }
    for (int g = 0; g < CK_QK_K / 16; g++) {
      int sum = 0;
      for (int l = 0; l < 16; l++) sum += y[i].qs[g * 16 + l];
      y[i].bsums[g] = (int16_t)sum;
    }
    y[i].d = 1.0f / iscale;
  }
}

int ck_quantize_row_scalar(int type, const float *src, void *dst, int64_t n) {
  if (n < 0) return -1;
  switch (type) {
    case CK_TYPE_F32: memmove(dst, src, (size_t)n * sizeof(float)); return 0;
    case CK_TYPE_F16: ck_f32_to_f16_scalar(src, (uint16_t *)dst, n); return 0;
    case CK_TYPE_BF16: ck_f32_to_bf16(src, (uint16_t *)dst, n); return 0;
    case CK_TYPE_Q8_0:
      if (n % CK_QK) return -1;
      q8_0_scalar(src, dst, n / CK_QK); return 0;
    case CK_TYPE_Q8_1:
      if (n % CK_QK) return -1;
      q8_1_scalar(src, dst, n / CK_QK); return 0;
    case CK_TYPE_Q8_K:
      if (n % CK_QK_K) return -1;
      q8_K_scalar(src, dst, n / CK_QK_K); return 0;
    default: return -1;
  }
}

int ck_quantize_row(int type, const float *src, void *dst, int64_t n) {
  const ck_kernels *k = ck_active();
  if (k->quantize) return k->quantize(type, src, dst, n);
  return ck_quantize_row_scalar(type, src, dst, n);
}
