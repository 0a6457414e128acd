/* AVX2+FMA+F16C: float-format matmul rows (F32, F16, BF16), float helpers, and activation
   quantization to Q8_0 / Q8_1 / Q8_K. Q8_0 / Q8_1 are bit-exact with ggml's x86 runtime
   quantizers (quantize_row_q8_0 / _q8_1, AVX2 build): multiplier 127/amax, round half to even,
   s = half(d * sum q); so they can differ from the scalar (reference) path at rounding ties and
   where 127/amax and 1/(amax/127) differ. Q8_K equals the reference (ggml's x86 runtime uses it). */
#include "ck_avx2.h"
#include "ck_mm_driver.h"

#if defined(__x86_64__)

#define LDF(p) _mm256_loadu_ps(p)
#define LDH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define LDB(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))

/* ---- float-format rows: nblk = number of elements ----
   Per output always the same order whatever the group size, so results do not depend on batching.
   BF16: two 8-lane chains over 16 elements, then the scalar tail. */

#define ROW_FLOAT_AVX2(NAME, ET, LOAD, CONV)                                                     \
  CK_AVX2_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t n, int g,    \
                           float *s) {                                                           \
    __m256 acc[CK_ACT_GROUP][2];                                                                 \
    for (int j = 0; j < CK_ACT_GROUP; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();          \
    const ET *wv = (const ET *)w;                                                                \
    int64_t i = 0;                                                                               \
    for (; i + 16 <= n; i += 16) {                                                               \
      const __m256 w0 = LOAD(wv + i), w1 = LOAD(wv + i + 8);                                     \
      for (int j = 0; j < g; j++) {                                                              \
        const ET *xv = (const ET *)(x + j * xrow) + i;                                           \
        acc[j][0] = _mm256_fmadd_ps(w0, LOAD(xv), acc[j][0]);                                    \
        acc[j][1] = _mm256_fmadd_ps(w1, LOAD(xv + 8), acc[j][1]);                                \
      }                                                                                          \
    }                                                                                            \
    for (int j = 0; j < g; j++) {                                                                \
      float t = ck_hsum_ps(_mm256_add_ps(acc[j][0], acc[j][1]));                                 \
      const ET *xv = (const ET *)(x + j * xrow);                                                 \
      for (int64_t l = i; l < n; l++) t += CONV(wv[l]) * CONV(xv[l]);                            \
      s[j] = t;                                                                                  \
    }                                                                                            \
  }

#define CK_ID(v) (v)
ROW_FLOAT_AVX2(row_bf16, uint16_t, LDB, ck_bf2f)
CK_DEFINE_MM(mm_bf16, row_bf16, CK_AVX2)

/* F32 rows (F16: ck_f16_gemm_avx2.c) in the order of ggml's ggml_vec_dot_f32 / _f16 (see ck_ggml_reduce4): four 8-lane
   chains per output, so activations go in groups of 2 (8 accumulators). */
CK_AVX2_INLINE float ck_ggml_reduce4(__m256 s0, __m256 s1, __m256 s2, __m256 s3) {
  const __m256 v = _mm256_add_ps(_mm256_add_ps(s0, s2), _mm256_add_ps(s1, s3));
  const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t1 = _mm_hadd_ps(t0, t0);
  return _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
}

#define ROW_FLOAT_GGML(NAME, ET, LOAD, LEFTOVER)                                                 \
  CK_AVX2_INLINE void NAME(const uint8_t *w, const uint8_t *x, size_t xrow, int64_t n, int g,    \
                           float *s) {                                                           \
    __m256 acc[2][4];                                                                            \
    for (int j = 0; j < 2; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = _mm256_setzero_ps(); \
    const ET *wv = (const ET *)w;                                                                \
    int64_t i = 0;                                                                               \
    for (; i + 32 <= n; i += 32) {                                                               \
      const __m256 w0 = LOAD(wv + i), w1 = LOAD(wv + i + 8), w2 = LOAD(wv + i + 16), w3 = LOAD(wv + i + 24); \
      for (int j = 0; j < g && j < 2; j++) {                                                     \
        const ET *xv = (const ET *)(x + j * xrow) + i;                                           \
        acc[j][0] = _mm256_fmadd_ps(w0, LOAD(xv), acc[j][0]);                                    \
        acc[j][1] = _mm256_fmadd_ps(w1, LOAD(xv + 8), acc[j][1]);                                \
        acc[j][2] = _mm256_fmadd_ps(w2, LOAD(xv + 16), acc[j][2]);                               \
        acc[j][3] = _mm256_fmadd_ps(w3, LOAD(xv + 24), acc[j][3]);                               \
      }                                                                                          \
    }                                                                                            \
    for (int j = 0; j < g && j < 2; j++) {                                                       \
      const float r = ck_ggml_reduce4(acc[j][0], acc[j][1], acc[j][2], acc[j][3]);               \
      const ET *xv = (const ET *)(x + j * xrow);                                                 \
      LEFTOVER                                                                                   \
    }                                                                                            \
  }
#define ROW_LEFT_F32                                                                             \
  __m128 t = _mm_set_ss(r);                                                                      \
  for (int64_t l = i; l < n; l++) t = _mm_fmadd_ss(_mm_set_ss(wv[l]), _mm_set_ss(xv[l]), t);     \
  s[j] = _mm_cvtss_f32(t);
ROW_FLOAT_GGML(row_f32, float, LDF, ROW_LEFT_F32)
CK_DEFINE_MM_G(mm_f32, row_f32, CK_AVX2, 2)

/* ---- float helpers ---- */

CK_AVX2 static void f32_to_f16(const float *src, uint16_t *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(LDF(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) dst[i] = ck_f2h(src[i]);
}

CK_AVX2 static void f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, LDH(src + i));
  for (; i < n; i++) dst[i] = ck_h2f(src[i]);
}

/* Dot products in the order of ggml's AVX2 ggml_vec_dot_f32 / ggml_vec_dot_f16 (the non-sgemm
   path llama.cpp takes for single-token matmuls such as attention scores while decoding): four
   8-lane fma chains over steps of 32 elements, reduced (0+2, 1+3, then 0+1), the two 128-bit halves
   added and two horizontal adds ((t0+t1)+(t2+t3)); then the leftover elements (F32: fma into the
   float sum; F16: products summed in double). Bit-identical with ggml's (for F32 when n is a
   multiple of 32: this ggml build reduces F32 leftovers differently). */
/* The same order for single dot products. */
#define CK_DOT_GGML(NAME, AT, LOADA, LEFTOVERS)                                                  \
  CK_AVX2 static float NAME(const AT *a, const float *b, int64_t n) {                            \
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                                  \
    int64_t i = 0;                                                                               \
    for (; i + 32 <= n; i += 32) {                                                               \
      s0 = _mm256_fmadd_ps(LOADA(a + i), LDF(b + i), s0);                                        \
      s1 = _mm256_fmadd_ps(LOADA(a + i + 8), LDF(b + i + 8), s1);                                \
      s2 = _mm256_fmadd_ps(LOADA(a + i + 16), LDF(b + i + 16), s2);                              \
      s3 = _mm256_fmadd_ps(LOADA(a + i + 24), LDF(b + i + 24), s3);                              \
    }                                                                                            \
    const float r = ck_ggml_reduce4(s0, s1, s2, s3);                                             \
    LEFTOVERS                                                                                    \
  }

/* F32 leftovers: fma into the float sum; F16 leftovers: products added in double */
#define LEFT_F32                                                                                 \
  __m128 t = _mm_set_ss(r);                                                                      \
  for (; i < n; i++) t = _mm_fmadd_ss(_mm_set_ss(a[i]), _mm_set_ss(b[i]), t);                    \
  return _mm_cvtss_f32(t);
#define LEFT_F16                                                                                 \
  double t = (double)r;                                                                          \
  for (; i < n; i++) t += (double)(ck_h2f(a[i]) * b[i]);                                         \
  return (float)t;
CK_DOT_GGML(dot_f32, float, LDF, LEFT_F32)
CK_DOT_GGML(dot_f16_f32, uint16_t, LDH, LEFT_F16)

CK_AVX2 static void axpy_f16_f32(float a, const uint16_t *x, float *y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, LDH(x + i), LDF(y + i)));
  for (; i < n; i++) y[i] += a * ck_h2f(x[i]);
}

CK_AVX2 static void axpy_f32(float a, const float *x, float *y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, LDF(x + i), LDF(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

/* ---- activation quantization ---- */

/* 32 floats -> 32 int8: round-half-even(x * id), as ggml's AVX2 quantize_row_q8_0 / _q8_1
   (_mm256_round_ps to nearest, then convert); returns the sum of the quants */
CK_AVX2_INLINE int ck_q8_block(const float *x, float id, int8_t *qs) {
  const __m256 m = _mm256_set1_ps(id);
#define CK_RNE(v) _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps((v), m), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
  const __m256i a = CK_RNE(LDF(x)), b = CK_RNE(LDF(x + 8)), c = CK_RNE(LDF(x + 16)), d = CK_RNE(LDF(x + 24));
#undef CK_RNE
  __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256((__m256i *)qs, p);
  return ck_hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d)));
}

CK_AVX2_INLINE float ck_amax32(const float *x) {
  const __m256 ab = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_max_ps(_mm256_andnot_ps(ab, LDF(x)), _mm256_andnot_ps(ab, LDF(x + 8)));
  m = _mm256_max_ps(m, _mm256_max_ps(_mm256_andnot_ps(ab, LDF(x + 16)), _mm256_andnot_ps(ab, LDF(x + 24))));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

/* Q8_K: same arithmetic as the reference (iscale * x, round half to even, clamp at 127) */
CK_AVX2_INLINE void ck_q8_K_block(const float *x, ck_block_q8_K *y) {
  const __m256 ab = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  for (int j = 0; j < CK_QK_K; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(ab, LDF(x + j)));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  const float amax = _mm_cvtss_f32(h);
  if (amax == 0.0f) { memset(y, 0, sizeof(*y)); return; }
  float max = amax;  /* the signed value of the first element of largest magnitude */
  for (int j = 0; j < CK_QK_K; j++) {
    if (fabsf(x[j]) == amax) { max = x[j]; break; }
  }
  const float iscale = -127.0f / max;
  const __m256 is = _mm256_set1_ps(iscale), lim = _mm256_set1_ps(127.0f);
  for (int j = 0; j < CK_QK_K; j += 32) {
    __m256i v[4];
    for (int t = 0; t < 4; t++) {
      const __m256 r = _mm256_round_ps(_mm256_mul_ps(is, LDF(x + j + 8 * t)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v[t] = _mm256_cvtps_epi32(_mm256_min_ps(r, lim));
    }
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(y->qs + j), p);
    /* bsums of the two groups of 16 */
    y->bsums[j / 16] = (int16_t)ck_hsum_epi32(_mm256_add_epi32(v[0], v[1]));
    y->bsums[j / 16 + 1] = (int16_t)ck_hsum_epi32(_mm256_add_epi32(v[2], v[3]));
  }
  y->d = 1.0f / iscale;
}

CK_AVX2 static int quantize_avx2(int type, const float *src, void *dst, int64_t n) {
  if (n < 0) return -1;
  if (type == CK_TYPE_Q8_0 && n % CK_QK == 0) {
    ck_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / CK_QK; i++, src += CK_QK) {
      const float amax = ck_amax32(src);
      const float d = amax / 127.0f;
      const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
      y[i].d = ck_f2h(d);
      (void)ck_q8_block(src, id, y[i].qs);
    }
    return 0;
  }
  if (type == CK_TYPE_Q8_1 && n % CK_QK == 0) {
    ck_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / CK_QK; i++, src += CK_QK) {
      const float amax = ck_amax32(src);
      const float d = amax / 127.0f;
      const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
      y[i].d = ck_f2h(d);
      const int sum = ck_q8_block(src, id, y[i].qs);
      y[i].s = ck_f2h((float)sum * d);
    }
    return 0;
  }
  if (type == CK_TYPE_Q8_K && n % CK_QK_K == 0) {
    ck_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / CK_QK_K; i++) ck_q8_K_block(src + i * CK_QK_K, &y[i]);
    return 0;
  }
  if (type == CK_TYPE_F16) { f32_to_f16(src, dst, n); return 0; }
  return ck_quantize_row_scalar(type, src, dst, n);
}

void ck_fill_avx2_float(ck_kernels *k);
void ck_fill_avx2_float(ck_kernels *k) {
  k->mm[CK_TYPE_F32] = mm_f32;
  k->mm[CK_TYPE_BF16] = mm_bf16;
  k->quantize = quantize_avx2;
  k->f32_to_f16 = f32_to_f16;
  k->f16_to_f32 = f16_to_f32;
  k->dot_f32 = dot_f32;
  k->dot_f16_f32 = dot_f16_f32;
  k->axpy_f16_f32 = axpy_f16_f32;
  k->axpy_f32 = axpy_f32;
}

#endif
