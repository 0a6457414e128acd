/* AVX2+FMA: RMS norm, SiLU-gated product and softmax, with a vectorized expf
   (Cephes-style range reduction and polynomial, about 1 ulp). */
#include "ck_avx2.h"

#if defined(__x86_64__)

#define LDF(p) _mm256_loadu_ps(p)

/* e^x for 8 lanes; x below -87.33 (and -inf) gives 0, large x saturates at e^88 */
CK_AVX2_INLINE __m256 ck_exp_ps(__m256 x) {
  const __m256 zero_below = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(zero_below, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

CK_AVX2_INLINE __m256d ck_sum8_pd(__m256d acc, __m256 v) {
  acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
  return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

CK_AVX2_INLINE double ck_hsum_pd(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

CK_AVX2 static void rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps) {
  __m256d acc = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = LDF(x + i);
    acc = ck_sum8_pd(acc, _mm256_mul_ps(v, v));
  }
  double sum = ck_hsum_pd(acc);
  for (; i < n; i++) sum += (double)(x[i] * x[i]);
  const float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
  const __m256 sv = _mm256_set1_ps(scale);
  i = 0;
  if (w) {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(LDF(x + i), sv), LDF(w + i)));
    for (; i < n; i++) y[i] = (x[i] * scale) * w[i];
  } else {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(LDF(x + i), sv));
    for (; i < n; i++) y[i] = x[i] * scale;
  }
}

CK_AVX2 static void silu_mul(const float *g, const float *u, float *y, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = LDF(g + i);
    const __m256 e = ck_exp_ps(_mm256_xor_ps(gv, neg));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), LDF(u + i)));
  }
  for (; i < n; i++) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

CK_AVX2 static void softmax(float *x, int64_t n) {
  if (n <= 0) return;
  __m256 mv = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, LDF(x + i));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  float max = _mm_cvtss_f32(h);
  for (; i < n; i++) max = x[i] > max ? x[i] : max;
  if (max == -INFINITY) {
    for (i = 0; i < n; i++) x[i] = 0.0f;
    return;
  }
  const __m256 m = _mm256_set1_ps(max);
  __m256d acc = _mm256_setzero_pd();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = ck_exp_ps(_mm256_sub_ps(LDF(x + i), m));
    _mm256_storeu_ps(x + i, e);
    acc = ck_sum8_pd(acc, e);
  }
  double sum = ck_hsum_pd(acc);
  for (; i < n; i++) { x[i] = expf(x[i] - max); sum += (double)x[i]; }
  const float inv = (float)(1.0 / sum);
  const __m256 iv = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(LDF(x + i), iv));
  for (; i < n; i++) x[i] *= inv;
}

void ck_fill_avx2_nn(ck_kernels *k);
void ck_fill_avx2_nn(ck_kernels *k) {
  k->rmsnorm = rmsnorm;
  k->silu_mul = silu_mul;
  k->softmax = softmax;
}

#endif
