/* Normalization and activation helpers (RMS norm, SiLU-gated product, softmax): scalar
   versions following ggml's arithmetic (double accumulation of sums), and public entry points. */
#include "ck_internal.h"

void ck_rmsnorm_f32_scalar(const float *x, const float *w, float *y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
  const float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
  if (w) {
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
  } else {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale;
  }
}

void ck_silu_mul_f32_scalar(const float *g, const float *u, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void ck_softmax_f32_scalar(float *x, int64_t n) {
  if (n <= 0) return;
  float max = -INFINITY;
  for (int64_t i = 0; i < n; i++) max = x[i] > max ? x[i] : max;
  if (max == -INFINITY) {  /* everything masked: all zero rather than NaN */
    for (int64_t i = 0; i < n; i++) x[i] = 0.0f;
    return;
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    x[i] = expf(x[i] - max);
    sum += (double)x[i];
  }
  const float inv = (float)(1.0 / sum);
  for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void ck_rmsnorm_f32(const float *x, const float *w, float *y, int64_t n, float eps) {
  if (n > 0) ck_active()->rmsnorm(x, w, y, n, eps);
}
void ck_silu_mul_f32(const float *g, const float *u, float *y, int64_t n) { ck_active()->silu_mul(g, u, y, n); }
void ck_softmax_f32(float *x, int64_t n) { ck_active()->softmax(x, n); }
