/* Attention over cached F16 keys and values: ck_attention_f16 (one query) and
   ck_attention_f16_multi (several queries sharing one head's keys and values). The portable
   versions compose the table's float helpers, or for the scalar table convert each block of keys
   and values once and keep the scalar helpers' order; SIMD versions fuse the loops with the same
   arithmetic. */
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

void ck_attention_f16_multi(const ck_attention_query *qs, int64_t nq, const uint16_t *keys,
                            const uint16_t *values, int64_t stride, int64_t hd, float scale,
                            float *scores, int64_t score_stride) {
  if (nq <= 0 || hd <= 0) return;
  const ck_kernels *t = ck_active();
  if (t->attn_f16_multi && hd <= CK_ATT_BLOCK_FLOATS) {
    t->attn_f16_multi(qs, nq, keys, values, stride, hd, scale, scores, score_stride);
    return;
  }
  for (int64_t i = 0; i < nq; i++) {
    ck_attention_f16(qs[i].q, keys, values, stride, qs[i].count, hd, scale, scores + i * score_stride, qs[i].out);
  }
}

/* Largest count among the queries. */
static int64_t max_count(const ck_attention_query *qs, int64_t nq) {
  int64_t n = 0;
  for (int64_t i = 0; i < nq; i++) n = qs[i].count > n ? qs[i].count : n;
  return n;
}

/* Scalar table: ck_dot_f16_f32_scalar's order (four interleaved partial sums, leftovers into the
   first, (s0 + s1) + (s2 + s3)) on keys converted once per block; halves convert exactly, so the
   products are those of the per-query version. Values: y += p * v per element in key order, as
   ck_axpy_f16_f32_scalar. */
static void attn_f16_multi_scalar(const ck_attention_query *qs, int64_t nq, const uint16_t *keys,
                                  const uint16_t *values, int64_t stride, int64_t hd, float scale,
                                  float *scores, int64_t score_stride) {
  float block[CK_ATT_BLOCK_FLOATS];
  const int64_t per = CK_ATT_BLOCK_FLOATS / hd, nmax = max_count(qs, nq);
  for (int64_t j0 = 0; j0 < nmax; j0 += per) {
    const int64_t jn = nmax - j0 < per ? nmax - j0 : per;
    for (int64_t r = 0; r < jn; r++) ck_f16_to_f32_scalar(keys + (j0 + r) * stride, block + r * hd, hd);
    for (int64_t t = 0; t < nq; t++) {
      const float *q = qs[t].q;
      float *sc = scores + t * score_stride;
      const int64_t end = qs[t].count < j0 + jn ? qs[t].count : j0 + jn;
      for (int64_t j = j0; j < end; j++) {
        const float *k = block + (j - j0) * hd;
        float s[4] = { 0, 0, 0, 0 };
        int64_t i = 0;
        for (; i + 4 <= hd; i += 4) {
          for (int c = 0; c < 4; c++) s[c] += k[i + c] * q[i + c];
        }
        for (; i < hd; i++) s[0] += k[i] * q[i];
        sc[j] = ((s[0] + s[1]) + (s[2] + s[3])) * scale;
      }
    }
  }
  for (int64_t t = 0; t < nq; t++) {
    float *sc = scores + t * score_stride;
    if (qs[t].count > 0) ck_softmax_f32_scalar(sc, qs[t].count);
    for (int64_t j = 0; j < qs[t].count; j++) sc[j] = ck_h2f(ck_f2h(sc[j]));
    for (int64_t i = 0; i < hd; i++) qs[t].out[i] = 0.0f;
  }
  for (int64_t j0 = 0; j0 < nmax; j0 += per) {
    const int64_t jn = nmax - j0 < per ? nmax - j0 : per;
    for (int64_t r = 0; r < jn; r++) ck_f16_to_f32_scalar(values + (j0 + r) * stride, block + r * hd, hd);
    for (int64_t t = 0; t < nq; t++) {
      const float *sc = scores + t * score_stride;
      float *out = qs[t].out;
      const int64_t end = qs[t].count < j0 + jn ? qs[t].count : j0 + jn;
      for (int64_t j = j0; j < end; j++) {
        const float p = sc[j], *v = block + (j - j0) * hd;
        for (int64_t i = 0; i < hd; i++) out[i] += p * v[i];
      }
    }
  }
}

void ck_fill_scalar_attention(ck_kernels *k);
void ck_fill_scalar_attention(ck_kernels *k) { k->attn_f16_multi = attn_f16_multi_scalar; }
