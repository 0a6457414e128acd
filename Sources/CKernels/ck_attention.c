/* Attention of one query over cached F16 keys and values: ck_attention_f16. The portable version
   composes the table's float helpers; SIMD versions fuse the loops with the same arithmetic. */
#include "ck_internal.h"

void ck_attention_f16(const float *q, const uint16_t *keys, const uint16_t *values, int64_t stride,
                      int64_t n, int64_t hd, float scale, float *scores, float *out) {
  if (n <= 0 || hd <= 0) return;
  const ck_kernels *t = ck_active();
  if (t->attn_f16) {
    t->attn_f16(q, keys, values, stride, n, hd, scale, scores, out);
    return;
  }
  for (int64_t j = 0; j < n; j++) scores[j] = t->dot_f16_f32(keys + j * stride, q, hd) * scale;
  t->softmax(scores, n);
  for (int64_t j = 0; j < n; j++) scores[j] = ck_h2f(ck_f2h(scores[j]));
  for (int64_t i = 0; i < hd; i++) out[i] = 0.0f;
  for (int64_t j = 0; j < n; j++) t->axpy_f16_f32(scores[j], values + j * stride, out, hd);
}
