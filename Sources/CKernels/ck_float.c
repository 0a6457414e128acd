/* Half / bfloat16 conversions and float vector helpers: scalar versions and public entry points. */
#include "ck_internal.h"

void ck_f32_to_f16_scalar(const float *src, uint16_t *dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = ck_f2h(src[i]);
}

void ck_f16_to_f32_scalar(const uint16_t *src, float *dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = ck_h2f(src[i]);
}

float ck_dot_f32_scalar(const float *a, const float *b, int64_t n) {
  /* four partial sums: lets the compiler vectorize, and is kinder to rounding than one chain */
  float s[4] = { 0, 0, 0, 0 };
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; j++) s[j] += a[i + j] * b[i + j];
  }
  for (; i < n; i++) s[0] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

float ck_dot_f16_f32_scalar(const uint16_t *a, const float *b, int64_t n) {
  float s[4] = { 0, 0, 0, 0 };
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; j++) s[j] += ck_h2f(a[i + j]) * b[i + j];
  }
  for (; i < n; i++) s[0] += ck_h2f(a[i]) * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

void ck_axpy_f16_f32_scalar(float a, const uint16_t *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += a * ck_h2f(x[i]);
}

void ck_axpy_f32_scalar(float a, const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* ---- public entry points ---- */

float ck_f16_to_f32_1(uint16_t h) { return ck_h2f(h); }
uint16_t ck_f32_to_f16_1(float f) { return ck_f2h(f); }

void ck_f32_to_f16(const float *src, uint16_t *dst, int64_t n) { ck_active()->f32_to_f16(src, dst, n); }
void ck_f16_to_f32(const uint16_t *src, float *dst, int64_t n) { ck_active()->f16_to_f32(src, dst, n); }

void ck_f32_to_bf16(const float *src, uint16_t *dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = ck_f2bf(src[i]);
}

void ck_bf16_to_f32(const uint16_t *src, float *dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = ck_bf2f(src[i]);
}

float ck_dot_f32(const float *a, const float *b, int64_t n) { return ck_active()->dot_f32(a, b, n); }
float ck_dot_f16_f32(const uint16_t *a, const float *b, int64_t n) { return ck_active()->dot_f16_f32(a, b, n); }
void ck_axpy_f16_f32(float a, const uint16_t *x, float *y, int64_t n) { ck_active()->axpy_f16_f32(a, x, y, n); }
void ck_axpy_f32(float a, const float *x, float *y, int64_t n) { ck_active()->axpy_f32(a, x, y, n); }
