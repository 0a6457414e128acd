/* AVX2 F16 x F16 matmul in register tiles (prefill) and row quads (decode).
   Per output one 8-lane fma chain over k in steps of 8 (weights and activations converted from
   half), then the horizontal sum, then the leftover elements one by one; the same operations
   whatever the tile, the row range or the batch, so results do not depend on batching. (ggml's
   vec_dot_f16 uses four chains over steps of 32; llama.cpp's own F16 prefill (tinyBLAS) uses yet
   another order: this one is within float rounding of both.) */
#include "ck_avx2.h"

#if defined(__x86_64__)

#define LDH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))

/* R rows x A activations; w: first row, x: first activation (F16), strides in elements.
   pf > 0 (decode of R = 4 adjacent rows): prefetch the weights pf bytes past the tile's start,
   one line per step (a step reads 4 x 16 bytes), so the lines of the tiles ahead are in flight. */
CK_AVX2_INLINE void f16_tile(const uint16_t *w, int64_t wstride, const uint16_t *x, int64_t xstride, int64_t k,
                             int R, int A, float *out, int64_t ostride, int64_t pf) {
  __m256 acc[4][3];
  for (int r = 0; r < 4; r++)
    for (int a = 0; a < 3; a++) acc[r][a] = _mm256_setzero_ps();
  const char *ahead = (const char *)w + pf;
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    if (pf > 0) _mm_prefetch(ahead + i * 8, _MM_HINT_T0);
    __m256 xv[3];
    for (int a = 0; a < A; a++) xv[a] = LDH(x + a * xstride + i);
    for (int r = 0; r < R; r++) {
      const __m256 wv = LDH(w + r * wstride + i);
      for (int a = 0; a < A; a++) acc[r][a] = _mm256_fmadd_ps(wv, xv[a], acc[r][a]);
    }
  }
  for (int r = 0; r < R; r++) {
    for (int a = 0; a < A; a++) {
      float s = ck_hsum_ps(acc[r][a]);
      for (int64_t l = i; l < k; l++) s = fmaf(ck_h2f(w[r * wstride + l]), ck_h2f(x[a * xstride + l]), s);
      out[a * ostride + r] = s;
    }
  }
}

#define F16_TILE(R, A) f16_tile(W + r * k, k, X + b * xs, xs, k, R, A, out + b * ostride + r, ostride, 0)

CK_AVX2 static void mm_f16_tiled(const void *w, size_t wrow, const void *x, size_t xrow, int64_t k,
                                 int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  (void)wrow;
  const uint16_t *W = (const uint16_t *)w, *X = (const uint16_t *)x;
  const int64_t xs = (int64_t)(xrow / 2);
  if (nb == 1) {  /* decode: four rows at a time, four independent chains */
    /* Prefetch whole tiles ahead, at least 8 KiB: without it the four row streams ran at a
       third of the memory bandwidth on a Zen 4 EPYC (5.4 against 13.9 GMAC/s, 49152 x 576) */
    const int64_t tile = 4 * k * 2, pf = tile * ((8192 + tile - 1) / tile);
    int64_t r = r0, b = 0;
    for (; r + 4 <= r1; r += 4) f16_tile(W + r * k, k, X, xs, k, 4, 1, out + r, ostride, pf);
    for (; r < r1; r++) F16_TILE(1, 1);
    return;
  }
  /* prefill: blocks of 48 rows stay in L1/L2 while the activations stream past in threes */
  for (int64_t rb = r0; rb < r1; rb += 48) {
    const int64_t re = rb + 48 < r1 ? rb + 48 : r1;
    for (int64_t b = 0; b < nb; b += 3) {
      const int A = nb - b >= 3 ? 3 : (int)(nb - b);
      int64_t r = rb;
      if (A == 3) {
        for (; r + 3 <= re; r += 3) F16_TILE(3, 3);
        for (; r < re; r++) F16_TILE(1, 3);
      } else if (A == 2) {
        for (; r + 4 <= re; r += 4) F16_TILE(4, 2);
        for (; r < re; r++) F16_TILE(1, 2);
      } else {
        for (; r + 4 <= re; r += 4) F16_TILE(4, 1);
        for (; r < re; r++) F16_TILE(1, 1);
      }
    }
  }
}

void ck_fill_avx2_f16_gemm(ck_kernels *k);
void ck_fill_avx2_f16_gemm(ck_kernels *k) { k->mm[CK_TYPE_F16] = mm_f16_tiled; }

#else
void ck_fill_avx2_f16_gemm(ck_kernels *k);
void ck_fill_avx2_f16_gemm(ck_kernels *k) { (void)k; }
#endif
