/* Attention kernel timing on thread CPU time: one layer's causal attention over a prompt of N
   positions (prefill, every position a query) or one query per head at position N (decode),
   with H query heads on G KV heads of D elements: one ck_attention_f16 call per (position, head)
   against ck_attention_f16_multi on runs of R positions x the H/G query heads of a KV head (what
   the engine does). Built by Scripts/bench-kernels. */
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
  if (argc != 8) {
    fprintf(stderr, "usage: ab N HEADS KVHEADS HD RUN(1 = decode) PREFILL(0/1) ITERS\n");
    return 2;
  }
  const int64_t n = atoll(argv[1]), heads = atoll(argv[2]), kvh = atoll(argv[3]), hd = atoll(argv[4]);
  const int64_t run = atoll(argv[5]), prefill = atoll(argv[6]);
  const int iters = atoi(argv[7]);
  const int64_t group = heads / kvh, kvd = kvh * hd, qd = heads * hd;
  const int64_t rows = prefill ? n : 1;
  uint16_t *k = malloc(sizeof(uint16_t) * (size_t)(n * kvd)), *v = malloc(sizeof(uint16_t) * (size_t)(n * kvd));
  float *q = malloc(sizeof(float) * (size_t)(rows * qd)), *out = malloc(sizeof(float) * (size_t)(rows * qd));
  float *sc = malloc(sizeof(float) * (size_t)(run * group * n));
  srand(3);
  for (int64_t i = 0; i < n * kvd; i++) {
    k[i] = ck_f32_to_f16_1((float)(rand() % 2000 - 1000) / 1000.0f);
    v[i] = ck_f32_to_f16_1((float)(rand() % 2000 - 1000) / 1000.0f);
  }
  for (int64_t i = 0; i < rows * qd; i++) q[i] = ck_f16_to_f32_1(ck_f32_to_f16_1((float)(rand() % 2000 - 1000) / 500.0f));
  const float scale = 0.125f;
  const int64_t first = prefill ? 0 : n - 1;  /* position of row 0 */
  ck_attention_query qs[256];
  if (run * group > 256) { fprintf(stderr, "run x group > 256\n"); return 2; }
  double single = 1e30, multi = 1e30;
  for (int round = 0; round < 5; round++) {  /* alternating; the fastest round of each counts */
  double t0 = cpu_now();
  for (int it = 0; it < iters; it++) {
    for (int64_t i = 0; i < rows; i++) {
      for (int64_t h = 0; h < heads; h++) {
        ck_attention_f16(q + i * qd + h * hd, k + (h / group) * hd, v + (h / group) * hd, kvd, first + i + 1, hd,
                         scale, sc, out + i * qd + h * hd);
      }
    }
  }
  const double ts = (cpu_now() - t0) / iters;
  single = ts < single ? ts : single;
  t0 = cpu_now();
  for (int it = 0; it < iters; it++) {
    for (int64_t r0 = 0; r0 < rows; r0 += run) {
      const int64_t r1 = r0 + run < rows ? r0 + run : rows;
      for (int64_t g = 0; g < kvh; g++) {
        int64_t nq = 0;
        for (int64_t i = r0; i < r1; i++) {
          for (int64_t h = g * group; h < (g + 1) * group; h++) {
            qs[nq].q = q + i * qd + h * hd;
            qs[nq].out = out + i * qd + h * hd;
            qs[nq].count = first + i + 1;
            nq++;
          }
        }
        ck_attention_f16_multi(qs, nq, k + g * hd, v + g * hd, kvd, hd, scale, sc, n);
      }
    }
  }
  const double tm = (cpu_now() - t0) / iters;
  multi = tm < multi ? tm : multi;
  }
  /* multiply-adds: per (query, key) hd for the score and hd for the value sum */
  double pairs = 0;
  for (int64_t i = 0; i < rows; i++) pairs += (double)(first + i + 1) * (double)heads;
  printf("attention %s n %5lld heads %2lld/%lld hd %3lld  per query %9.1f us %5.1f GMAC/s  multi (runs of %lld) %9.1f us %5.1f GMAC/s  x%.2f\n",
         prefill ? "prefill" : "decode ", (long long)n, (long long)heads, (long long)kvh, (long long)hd,
         single * 1e6, pairs * 2 * (double)hd / single * 1e-9, (long long)run, multi * 1e6,
         pairs * 2 * (double)hd / multi * 1e-9, single / multi);
  free(k); free(v); free(q); free(out); free(sc);
  return 0;
}
