/* K-quant matmul kernels at the 70B shape, streaming from DRAM: the file layout with the AVX2
   table (ggml's AVX2 arithmetic) and with the active table (AVX-512 where the CPU has it), against
   the 8-row repacked layout (Q4_K, Q5_K) with the AVX2 table and the active one. Each variant
   multiplies one of four copies of the matrix in turn (so no pass finds it in the caches),
   variants alternate, medians of the rounds. Decode (1 activation) reports GB/s of weights next
   to a plain read loop's GB/s with the same threads; batches report GMAC/s.
   Built by Scripts/bench-kernels --kq.
     kq TYPE ROWS K NB ROUNDS THREADS     (TYPE: 12 Q4_K, 13 Q5_K, 14 Q6_K) */
#include "ckernels.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
static uint64_t rng = 88172645463325252ull;
static uint32_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)rng; }

typedef struct { int wt, packed; const uint8_t *w, *x; int64_t k, r0, r1, nb; float *out; int64_t ostride; } job;
static void *run(void *p) {
  job *j = p;
  if (j->packed) ck_matmul_repacked(j->wt, j->w, j->x, j->k, j->r0, j->r1, j->nb, j->out, j->ostride);
  else ck_matmul(j->wt, j->w, j->x, j->k, j->r0, j->r1, j->nb, j->out, j->ostride);
  return NULL;
}
/* rows split across threads in multiples of 16, as the engine does */
static double timed(int packed, int threads, int wt, const uint8_t *w, const uint8_t *x, int64_t k, int64_t rows,
                    int64_t nb, float *out) {
  pthread_t t[16];
  job j[16];
  const int64_t per = (rows / threads + 15) / 16 * 16;
  const double t0 = now();
  for (int i = 0; i < threads; i++) {
    const int64_t a = i * per < rows ? i * per : rows, b = i == threads - 1 ? rows : ((i + 1) * per < rows ? (i + 1) * per : rows);
    j[i] = (job){wt, packed, w, x, k, a, b, nb, out, rows};
    if (threads == 1) run(&j[0]); else pthread_create(&t[i], NULL, run, &j[i]);
  }
  if (threads > 1) for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  return now() - t0;
}
typedef struct { const uint8_t *p; size_t n; uint64_t r; } rjob;
static void *readjob(void *a) { rjob *j = a; j->r = ck_read_bytes(j->p, j->n); return NULL; }
static int cmpd(const void *a, const void *b) { const double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
  if (argc != 7) { fprintf(stderr, "usage: kq TYPE ROWS K NB ROUNDS THREADS\n"); return 2; }
  const int wt = atoi(argv[1]), rounds = atoi(argv[5]), threads = atoi(argv[6]);
  const int64_t rows = atoll(argv[2]), k = atoll(argv[3]), nb = atoll(argv[4]);
  if (rounds < 1 || rounds > 64 || threads < 1 || threads > 16 || ck_row_bytes(wt, k) == 0) { fprintf(stderr, "bad arguments\n"); return 2; }
  const size_t wb = (size_t)ck_row_bytes(wt, k) * (size_t)rows, be = (size_t)ck_block_bytes(wt);
  const int64_t rb = ck_repack_bytes(wt, rows, k);
  uint8_t *w[4], *p[4] = {0};
  for (int c = 0; c < 4; c++) {
    w[c] = aligned_alloc(64, (wb + 63) / 64 * 64);
    for (size_t i = 0; i < wb; i++) w[c][i] = (uint8_t)next();
    for (size_t b = 0; b < wb / be; b++) {  /* finite half scales */
      const uint16_t d = ck_f32_to_f16_1((float)((int)(next() % 2000) - 1000) / 1e5f), m = ck_f32_to_f16_1((float)(next() % 2000) / 1e5f);
      if (wt == CK_TYPE_Q6_K) memcpy(w[c] + b * be + 208, &d, 2);
      else { memcpy(w[c] + b * be, &d, 2); memcpy(w[c] + b * be + 2, &m, 2); }
    }
    if (rb > 0) { p[c] = aligned_alloc(64, ((size_t)rb + 63) / 64 * 64); ck_repack(wt, w[c], p[c], rows, k); }
  }
  const int xt = ck_vec_dot_type(wt);
  float *xf = malloc(sizeof(float) * (size_t)(k * nb));
  for (int64_t i = 0; i < k * nb; i++) xf[i] = (float)((int)(next() % 2000) - 1000) / 1000.0f;
  const size_t xb = (size_t)ck_row_bytes(xt, k) * (size_t)nb;
  uint8_t *x = aligned_alloc(64, (xb + 63) / 64 * 64);
  ck_quantize_row(xt, xf, x, k * nb);
  float *out = aligned_alloc(64, sizeof(float) * (size_t)(rows * nb + 16));
  const int best = ck_isa_best();
  const char *names[4] = {"file avx2", "file best", "repacked avx2", "repacked best"};
  const int nv = rb > 0 ? 4 : 2;
  ck_set_isa(CK_ISA_AVX2);
  const int avx2_packs = ck_repack_preferred(wt);  /* else the AVX2 table multiplies the file layout */
  double t[4][64], probe[64];
  const size_t pbytes = (size_t)1 << 30;
  uint8_t *pb = aligned_alloc(4096, pbytes);
  memset(pb, 1, pbytes);
  for (int r = 0; r < rounds; r++) {
    for (int v = 0; v < nv; v++) {
      if (v == 2 && !avx2_packs) { t[v][r] = 0; continue; }
      ck_set_isa(v % 2 == 0 ? CK_ISA_AVX2 : best);
      const int c = (r * nv + v) % 4;
      t[v][r] = timed(v >= 2, threads, wt, v >= 2 ? p[c] : w[c], x, k, rows, nb, out);
    }
    pthread_t th[16];
    rjob rj[16];
    const double t0 = now();
    for (int i = 0; i < threads; i++) { rj[i] = (rjob){pb + i * (pbytes / threads), pbytes / threads, 0}; pthread_create(&th[i], NULL, readjob, &rj[i]); }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    probe[r] = now() - t0;
  }
  qsort(probe, rounds, sizeof(double), cmpd);
  const double pgbs = (double)pbytes / probe[rounds / 2] / 1e9;
  printf("%s %lldx%lld nb %lld, %d thread%s (best table: %s):", ck_type_name(wt), (long long)rows, (long long)k,
         (long long)nb, threads, threads == 1 ? "" : "s", ck_isa_name(best));
  for (int v = 0; v < nv; v++) {
    if (v == 2 && !avx2_packs) { printf("  %s n/a", names[v]); continue; }
    qsort(t[v], rounds, sizeof(double), cmpd);
    const double md = t[v][rounds / 2];
    if (nb == 1) printf("  %s %.1f GB/s (%.0f %%)", names[v], (double)wb / md / 1e9, 100 * (double)wb / md / 1e9 / pgbs);
    else printf("  %s %.1f GMAC/s", names[v], (double)rows * (double)k * (double)nb / md / 1e9);
  }
  printf("  | read probe %.1f GB/s\n", pgbs);
  return 0;
}
