/* AVX2 ck_attention_f16: the arithmetic of ck_dot_f16_f32 (ggml's vec_dot_f16 order: four 8-lane
   chains over steps of 32, reduced 0+2, 1+3, halves, two horizontal adds) for each score, the
   table's softmax, probabilities rounded to half, and out += p_j * v_j in key order, one fma per
   element and key as ck_axpy_f16_f32: bit-identical with the composed (portable-order) version on
   this ISA, minus the calls, with keys taken two at a time and the output held in registers. */
#include "ck_avx2.h"

#if defined(__x86_64__)

#define LDH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))

/* A key row's element i..i+7 as float: the row is half-precision when `half`, else float (a block
   converted once). Callers pass a constant `half`, so each use compiles to one kind of load. */
CK_AVX2_INLINE __m256 att_load(const void *row, int64_t i, int half) {
  return half ? LDH((const uint16_t *)row + i) : _mm256_loadu_ps((const float *)row + i);
}

/* The four 8-lane chains of ck_dot_f16_f32 for one key (hd a multiple of 32), combined
   (c0 + c2) + (c1 + c3): the dot product before its horizontal sum. */
CK_AVX2_INLINE __m256 att_chains(const void *k, const float *q, int64_t hd, int half) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < hd; i += 32) {
    a0 = _mm256_fmadd_ps(att_load(k, i, half), _mm256_loadu_ps(q + i), a0);
    a1 = _mm256_fmadd_ps(att_load(k, i + 8, half), _mm256_loadu_ps(q + i + 8), a1);
    a2 = _mm256_fmadd_ps(att_load(k, i + 16, half), _mm256_loadu_ps(q + i + 16), a2);
    a3 = _mm256_fmadd_ps(att_load(k, i + 24, half), _mm256_loadu_ps(q + i + 24), a3);
  }
  return _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
}

/* att_chains for two keys at once, the query's vectors loaded once for both. */
CK_AVX2_INLINE void att_chains2(const void *k0, const void *k1, const float *q, int64_t hd, int half,
                                __m256 *v0, __m256 *v1) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  for (int64_t i = 0; i < hd; i += 32) {
    const __m256 q0 = _mm256_loadu_ps(q + i), q1 = _mm256_loadu_ps(q + i + 8);
    const __m256 q2 = _mm256_loadu_ps(q + i + 16), q3 = _mm256_loadu_ps(q + i + 24);
    a0 = _mm256_fmadd_ps(att_load(k0, i, half), q0, a0);
    a1 = _mm256_fmadd_ps(att_load(k0, i + 8, half), q1, a1);
    a2 = _mm256_fmadd_ps(att_load(k0, i + 16, half), q2, a2);
    a3 = _mm256_fmadd_ps(att_load(k0, i + 24, half), q3, a3);
    b0 = _mm256_fmadd_ps(att_load(k1, i, half), q0, b0);
    b1 = _mm256_fmadd_ps(att_load(k1, i + 8, half), q1, b1);
    b2 = _mm256_fmadd_ps(att_load(k1, i + 16, half), q2, b2);
    b3 = _mm256_fmadd_ps(att_load(k1, i + 24, half), q3, b3);
  }
  *v0 = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
  *v1 = _mm256_add_ps(_mm256_add_ps(b0, b2), _mm256_add_ps(b1, b3));
}

/* ck_dot_f16_f32's last steps on combined chains: halves added (lo + hi), two horizontal adds. */
CK_AVX2_INLINE float att_hsum(__m256 v) {
  const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t1 = _mm_hadd_ps(t0, t0);
  return _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
}

/* `count` half-precision rows (hd elements, stride apart) converted to float, packed hd apart in block. */
CK_AVX2_INLINE void att_to_block(float *block, const uint16_t *rows, int64_t stride, int64_t count, int64_t hd) {
  for (int64_t r = 0; r < count; r++) {
    for (int64_t i = 0; i < hd; i += 8) _mm256_store_ps(block + r * hd + i, LDH(rows + r * stride + i));
  }
}

/* The table's softmax of s[0..n), each probability then rounded to half precision. */
CK_AVX2_INLINE void att_softmax_half(const ck_kernels *t, float *s, int64_t n) {
  if (n > 0) t->softmax(s, n);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 p = _mm256_loadu_ps(s + j);
    _mm256_storeu_ps(s + j, _mm256_cvtph_ps(_mm256_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT)));
  }
  for (; j < n; j++) s[j] = ck_h2f(ck_f2h(s[j]));
}

/* out[0..32) = (from zero, or from out when `accumulate`) + p[r] * row r for r < n in row order,
   one fma per element and row; row r at v + r * stride elements (half when `half`, else float). */
CK_AVX2_INLINE void att_weigh32(float *out, const float *p, const void *v, int64_t stride, int64_t n, int half,
                                int accumulate) {
  __m256 o0 = _mm256_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
  if (accumulate) {
    o0 = _mm256_loadu_ps(out), o1 = _mm256_loadu_ps(out + 8);
    o2 = _mm256_loadu_ps(out + 16), o3 = _mm256_loadu_ps(out + 24);
  }
  for (int64_t r = 0; r < n; r++) {
    const __m256 pr = _mm256_broadcast_ss(p + r);
    const int64_t at = r * stride;
    o0 = _mm256_fmadd_ps(pr, att_load(v, at, half), o0);
    o1 = _mm256_fmadd_ps(pr, att_load(v, at + 8, half), o1);
    o2 = _mm256_fmadd_ps(pr, att_load(v, at + 16, half), o2);
    o3 = _mm256_fmadd_ps(pr, att_load(v, at + 24, half), o3);
  }
  _mm256_storeu_ps(out, o0);
  _mm256_storeu_ps(out + 8, o1);
  _mm256_storeu_ps(out + 16, o2);
  _mm256_storeu_ps(out + 24, o3);
}

/* att_hsum for 8 dot products at once: v[i] = the combined chains of dot i (att_chains); then
   the halves added (lo + hi), and two horizontal adds, done on pairs of dots side by side instead
   of one dot per vector: the same additions of the same operands, so the same 8 results. */
CK_AVX2_INLINE __m256 att_reduce8(const __m256 *v) {
  const __m256 t04 = _mm256_add_ps(_mm256_permute2f128_ps(v[0], v[4], 0x20), _mm256_permute2f128_ps(v[0], v[4], 0x31));
  const __m256 t15 = _mm256_add_ps(_mm256_permute2f128_ps(v[1], v[5], 0x20), _mm256_permute2f128_ps(v[1], v[5], 0x31));
  const __m256 t26 = _mm256_add_ps(_mm256_permute2f128_ps(v[2], v[6], 0x20), _mm256_permute2f128_ps(v[2], v[6], 0x31));
  const __m256 t37 = _mm256_add_ps(_mm256_permute2f128_ps(v[3], v[7], 0x20), _mm256_permute2f128_ps(v[3], v[7], 0x31));
  /* per 128-bit lane: hadd(t0_a, t0_b) = [a0+a1, a2+a3, b0+b1, b2+b3]; then the pairs' sums */
  return _mm256_hadd_ps(_mm256_hadd_ps(t04, t15), _mm256_hadd_ps(t26, t37));
}

CK_AVX2 static void attn_f16(const float *q, const uint16_t *keys, const uint16_t *values, int64_t stride,
                             int64_t n, int64_t hd, float scale, float *scores, float *out) {
  const ck_kernels *t = ck_active();
  if (hd % 32 != 0) {  /* leftovers: the plain composition */
    for (int64_t j = 0; j < n; j++) scores[j] = t->dot_f16_f32(keys + j * stride, q, hd) * scale;
    t->softmax(scores, n);
    for (int64_t j = 0; j < n; j++) scores[j] = ck_h2f(ck_f2h(scores[j]));
    for (int64_t i = 0; i < hd; i++) out[i] = 0.0f;
    for (int64_t j = 0; j < n; j++) t->axpy_f16_f32(scores[j], values + j * stride, out, hd);
    return;
  }
  int64_t j = 0;
  for (; j + 2 <= n; j += 2) {
    __m256 v0, v1;
    att_chains2(keys + j * stride, keys + (j + 1) * stride, q, hd, 1, &v0, &v1);
    scores[j] = att_hsum(v0) * scale;
    scores[j + 1] = att_hsum(v1) * scale;
  }
  for (; j < n; j++) scores[j] = att_hsum(att_chains(keys + j * stride, q, hd, 1)) * scale;
  att_softmax_half(t, scores, n);
  for (int64_t i = 0; i < hd; i += 32) att_weigh32(out + i, scores, values + i, stride, n, 1, 0);
}

/* ck_attention_f16_multi: the same arithmetic per query as attn_f16 above, with each block of
   keys (then values) converted to float once for all the queries. Scores: two keys at a time per
   query (the query's vectors loaded once per pair), four chains reduced as ck_dot_f16_f32.
   Values: per query and 32 columns, out += p_j * v_j in key order; the sums live in `out` between
   blocks (stored and reloaded exactly), so each element's fma chain is attn_f16's. */
CK_AVX2 static void attn_f16_multi(const ck_attention_query *qs, int64_t nq, const uint16_t *keys,
                                   const uint16_t *values, int64_t stride, int64_t hd, float scale,
                                   float *scores, int64_t score_stride) {
  const ck_kernels *t = ck_active();
  if (hd % 32 != 0) {
    for (int64_t i = 0; i < nq; i++) {
      if (qs[i].count > 0) {
        attn_f16(qs[i].q, keys, values, stride, qs[i].count, hd, scale, scores + i * score_stride, qs[i].out);
      }
    }
    return;
  }
  float block[CK_ATT_BLOCK_FLOATS] __attribute__((aligned(32)));
  const int64_t per = CK_ATT_BLOCK_FLOATS / hd;
  int64_t nmax = 0;
  for (int64_t i = 0; i < nq; i++) nmax = qs[i].count > nmax ? qs[i].count : nmax;

  for (int64_t j0 = 0; j0 < nmax; j0 += per) {
    const int64_t jn = nmax - j0 < per ? nmax - j0 : per;
    att_to_block(block, keys + j0 * stride, stride, jn, hd);
    for (int64_t u = 0; u < nq; u++) {
      const float *q = qs[u].q;
      float *sc = scores + u * score_stride;
      const int64_t end = qs[u].count < j0 + jn ? qs[u].count : j0 + jn;
      int64_t j = j0;
      const __m256 sv = _mm256_set1_ps(scale);
      if (hd == 64 && j + 8 <= end) {  /* the query in registers, 8 keys one at a time, reduced together */
        const __m256 q0 = _mm256_loadu_ps(q), q1 = _mm256_loadu_ps(q + 8), q2 = _mm256_loadu_ps(q + 16);
        const __m256 q3 = _mm256_loadu_ps(q + 24), q4 = _mm256_loadu_ps(q + 32), q5 = _mm256_loadu_ps(q + 40);
        const __m256 q6 = _mm256_loadu_ps(q + 48), q7 = _mm256_loadu_ps(q + 56), z = _mm256_setzero_ps();
        for (; j + 8 <= end; j += 8) {
          __m256 v[8];
          for (int r = 0; r < 8; r++) {
            const float *k0 = block + (j + r - j0) * 64;
            const __m256 a0 = _mm256_fmadd_ps(_mm256_load_ps(k0 + 32), q4, _mm256_fmadd_ps(_mm256_load_ps(k0), q0, z));
            const __m256 a1 = _mm256_fmadd_ps(_mm256_load_ps(k0 + 40), q5, _mm256_fmadd_ps(_mm256_load_ps(k0 + 8), q1, z));
            const __m256 a2 = _mm256_fmadd_ps(_mm256_load_ps(k0 + 48), q6, _mm256_fmadd_ps(_mm256_load_ps(k0 + 16), q2, z));
            const __m256 a3 = _mm256_fmadd_ps(_mm256_load_ps(k0 + 56), q7, _mm256_fmadd_ps(_mm256_load_ps(k0 + 24), q3, z));
            v[r] = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
          }
          _mm256_storeu_ps(sc + j, _mm256_mul_ps(att_reduce8(v), sv));
        }
      }
      for (; j + 8 <= end; j += 8) {  /* 8 keys, two at a time, reduced together */
        __m256 v[8];
        for (int pair = 0; pair < 4; pair++) {
          const float *k0 = block + (j + 2 * pair - j0) * hd;
          att_chains2(k0, k0 + hd, q, hd, 0, &v[2 * pair], &v[2 * pair + 1]);
        }
        _mm256_storeu_ps(sc + j, _mm256_mul_ps(att_reduce8(v), sv));
      }
      for (; j + 2 <= end; j += 2) {
        const float *k0 = block + (j - j0) * hd;
        __m256 v0, v1;
        att_chains2(k0, k0 + hd, q, hd, 0, &v0, &v1);
        sc[j] = att_hsum(v0) * scale;
        sc[j + 1] = att_hsum(v1) * scale;
      }
      for (; j < end; j++) sc[j] = att_hsum(att_chains(block + (j - j0) * hd, q, hd, 0)) * scale;
    }
  }

  for (int64_t u = 0; u < nq; u++) {
    float *sc = scores + u * score_stride;
    att_softmax_half(t, sc, qs[u].count);
    for (int64_t i = 0; i < hd; i += 8) _mm256_storeu_ps(qs[u].out + i, _mm256_setzero_ps());
  }

  for (int64_t j0 = 0; j0 < nmax; j0 += per) {
    const int64_t jn = nmax - j0 < per ? nmax - j0 : per;
    att_to_block(block, values + j0 * stride, stride, jn, hd);
    for (int64_t u = 0; u < nq; u++) {
      const float *sc = scores + u * score_stride;
      float *out = qs[u].out;
      const int64_t end = qs[u].count < j0 + jn ? qs[u].count : j0 + jn;
      if (end <= j0) continue;
      int64_t i = 0;
      for (; i + 64 <= hd; i += 64) {  /* 64 columns: one broadcast per key for 8 fmas */
        __m256 o[8];
        for (int c = 0; c < 8; c++) o[c] = _mm256_loadu_ps(out + i + 8 * c);
        const float *v = block + i;
        for (int64_t j = j0; j < end; j++, v += hd) {
          const __m256 p = _mm256_broadcast_ss(sc + j);
          for (int c = 0; c < 8; c++) o[c] = _mm256_fmadd_ps(p, _mm256_load_ps(v + 8 * c), o[c]);
        }
        for (int c = 0; c < 8; c++) _mm256_storeu_ps(out + i + 8 * c, o[c]);
      }
      for (; i < hd; i += 32) att_weigh32(out + i, sc + j0, block + i, hd, end - j0, 0, 1);
    }
  }
}

void ck_fill_avx2_attention(ck_kernels *k);
void ck_fill_avx2_attention(ck_kernels *k) {
  k->attn_f16 = attn_f16;
  k->attn_f16_multi = attn_f16_multi;
}

#else
void ck_fill_avx2_attention(ck_kernels *k);
void ck_fill_avx2_attention(ck_kernels *k) { (void)k; }
#endif
