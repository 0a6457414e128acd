/* Kernel timing on thread CPU time (robust on a shared machine): ck_matmul on the file layout
   against ck_matmul_repacked, for one weight type and shape. Built by Scripts/bench-kernels. */
#include "ckernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: kb TYPE ROWS K NB ITERS\n");
    return 2;
  }
  const int wt = atoi(argv[1]);
  const int64_t rows = atoll(argv[2]), k = atoll(argv[3]), nb = atoll(argv[4]);
  const int iters = atoi(argv[5]);
  const size_t wb = (size_t)ck_row_bytes(wt, k) * (size_t)rows;
  if (wb == 0 || ck_vec_dot_type(wt) < 0) { fprintf(stderr, "bad type or shape\n"); return 2; }
  uint8_t *w = aligned_alloc(64, (wb + 63) / 64 * 64);
  srand(1);
  for (size_t i = 0; i < wb; i++) w[i] = (uint8_t)rand();
  const int64_t be = ck_block_bytes(wt), bel = ck_block_elements(wt);
  if (bel > 1) {  /* sane half scales at the front of each block (legacy quants) */
    for (size_t b = 0; b < wb / (size_t)be; b++) {
      const uint16_t h = 0x2000;
      memcpy(w + b * (size_t)be, &h, 2);
      if (wt == CK_TYPE_Q4_1) memcpy(w + b * (size_t)be + 2, &h, 2);
    }
  } else if (wt == CK_TYPE_F16) {
    for (size_t i = 0; i < wb / 2; i++) ((uint16_t *)w)[i] = ck_f32_to_f16_1((float)(rand() % 2000 - 1000) / 1e4f);
  }
  const int xt = ck_vec_dot_type(wt);
  float *xf = malloc(sizeof(float) * (size_t)(k * nb));
  for (int64_t i = 0; i < k * nb; i++) xf[i] = (float)(rand() % 2000 - 1000) / 1000.0f;
  const size_t xb = (size_t)ck_row_bytes(xt, k) * (size_t)nb;
  uint8_t *x = aligned_alloc(64, (xb + 63) / 64 * 64);
  ck_quantize_row(xt, xf, x, k * nb);
  float *out = aligned_alloc(64, sizeof(float) * (size_t)(rows * nb + 16));
  double t0 = cpu_now();
  for (int i = 0; i < iters; i++) ck_matmul(wt, w, x, k, 0, rows, nb, out, rows);
  const double base = (cpu_now() - t0) / iters;
  const int64_t rb = ck_repack_bytes(wt, rows, k);
  double rp = 0;
  if (rb > 0) {
    uint8_t *p = aligned_alloc(64, ((size_t)rb + 63) / 64 * 64);
    ck_repack(wt, w, p, rows, k);
    t0 = cpu_now();
    for (int i = 0; i < iters; i++) ck_matmul_repacked(wt, p, x, k, 0, rows, nb, out, rows);
    rp = (cpu_now() - t0) / iters;
    free(p);
  }
  const double macs = (double)rows * (double)k * (double)nb;
  printf("%-5s rows %5lld k %5lld nb %4lld  file layout %9.1f us %6.1f GMAC/s", ck_type_name(wt), (long long)rows,
         (long long)k, (long long)nb, base * 1e6, macs / base * 1e-9);
  if (rp > 0) printf("  repacked %9.1f us %6.1f GMAC/s  x%.2f", rp * 1e6, macs / rp * 1e-9, base / rp);
  printf("\n");
  free(w); free(xf); free(x); free(out);
  return 0;
}
