/* The AVX-512 R8 kernels (Sources/CKernels/ck_repack_avx512.c, compiled against SIMDe with
   CK_AVX512_SIMDE: see ck_avx512.h) against the portable scalar R8 kernels, bit for bit, on a
   machine without AVX-512 (Scripts/test-avx512 builds and runs it). For Q4_0, Q4_1, Q5_0 and
   Q8_0, both variants (AVX-512 BW and VNNI), on random weights (finite half scales, random quants;
   some cases at the integer extremes: largest quants against activations of +-127) and
   activations quantized as the library does: many row counts (not multiples of 16), row ranges
   [r0, r1) (mostly from a group boundary, some not), 1-64 activations, k from 32 to 4096. The
   whole output buffer (and a guard past its end) must be byte-equal to the scalar kernel's:
   rows outside [r0, r1) untouched.
   The AVX2 kernels run on the same cases as a cross-check. Also the K-quants' R8 kernels (Q4_K, Q5_K, Q6_K: VNNI; Q4_K, Q5_K: AVX2), and the
   AVX-512 K-quant kernels of the file layout (Q4_K, Q5_K, Q6_K) against the AVX2 ones, bit for
   bit. Exits 1 on any mismatch. */
#include "ck_repack.h"
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next(void) {  /* xorshift64* */
  rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
  return (uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}
static int pick(const int *v, int n) { return v[next() % (uint32_t)n]; }
static float unit(void) { return (float)(next() % 2000001) / 1000000.0f - 1.0f; }

enum { SENTINEL = 0x7FC0DEAD };

/* file-layout bytes of one block */
static int64_t file_block(int wt) {
  switch (wt) {
    case CK_TYPE_Q4_0: return 18;
    case CK_TYPE_Q4_1: return 20;
    case CK_TYPE_Q5_0: return 22;
    case CK_TYPE_Q4_K: return 144;
    case CK_TYPE_Q5_K: return 176;
    case CK_TYPE_Q6_K: return 210;
    default: return 34;
  }
}

/* random blocks; extreme: the largest quants (Q8_0: -128 or 127 at random) */
static void fill_weights(int wt, uint8_t *w, int64_t rows, int64_t nblk, int extreme) {
  const int64_t fb = file_block(wt);
  for (int64_t b = 0; b < rows * nblk; b++) {
    uint8_t *o = w + b * fb;
    for (int64_t j = 0; j < fb; j++) o[j] = (uint8_t)next();
    if (extreme) {
      for (int64_t j = 2; j < fb; j++) {
        if (wt == CK_TYPE_Q8_0) o[j] = (next() & 1) ? 0x80 : 0x7F;
        else o[j] = 0xFF;
      }
    }
    /* finite scales: mostly normal, sometimes zero or subnormal */
    const uint32_t kind = next() % 64;
    const float d = kind == 0 ? 0.0f : kind == 1 ? 3e-6f * unit() : 0.05f * unit();
    const uint16_t hd = ck_f2h(d);
    if (wt == CK_TYPE_Q6_K) {  /* d last; extreme scales +-127 */
      memcpy(o + 208, &hd, 2);
      if (extreme) for (int j = 192; j < 208; j++) o[j] = (next() & 1) ? 0x81 : 0x7F;
      continue;
    }
    memcpy(o, &hd, 2);
    if (wt == CK_TYPE_Q4_K || wt == CK_TYPE_Q5_K) {  /* dmin; extreme: all six-bit scales and mins 63 */
      const uint16_t hm = ck_f2h(0.02f * unit());
      memcpy(o + 2, &hm, 2);
      if (extreme) memset(o + 4, 0xFF, 12);
      continue;
    }
    if (wt == CK_TYPE_Q4_1) {
      const uint16_t hm = ck_f2h(0.5f * unit());
      memcpy(o + 2, &hm, 2);
    }
  }
}

typedef struct { const char *name; ck_mm_r8_fn f; int cases, bad; } variant;

/* The AVX-512 K-quant matmuls on the file layout (ck_kq_avx512.c: Q4_K, Q5_K, Q6_K) against the
   AVX2 ones, which they must equal bit for bit (both follow ggml's AVX2 vec_dot); runs only where
   the AVX2 kernels can (the SIMDe build needs AVX2 anyway). Any row range, 1-19 activations. */
static int check_kq_file(int have_avx2, int *total) {
  if (!have_avx2) return 0;
  ck_kernels a2, a512;
  memset(&a2, 0, sizeof a2);
  ck_fill_scalar(&a2);
  ck_fill_avx2(&a2);
  a512 = a2;
  ck_fill_kq_avx512(&a512);
  const int types[] = {CK_TYPE_Q4_K, CK_TYPE_Q5_K, CK_TYPE_Q6_K};
  int bad = 0;
  for (int ti = 0; ti < 3; ti++) {
    const int wt = types[ti], xt = ck_vec_dot_type(wt);
    int cases = 0, mism = 0;
    if (a512.mm[wt] == a2.mm[wt]) { printf("%s: no AVX-512 file-layout kernel\n", ck_type_name(wt)); bad++; continue; }
    for (int c = 0; c < 120; c++) {
      const int64_t rows = 1 + next() % 70, nblk = 1 + next() % 12, nb = c % 4 == 0 ? 1 : 1 + next() % 19;
      const int64_t k = nblk * CK_QK_K, r0 = next() % rows, r1 = r0 + 1 + next() % (rows - r0);
      const int extreme = c % 7 == 3;
      const size_t wrow = (size_t)ck_row_bytes(wt, k), xrow = (size_t)ck_row_bytes(xt, k);
      uint8_t *w = malloc(wrow * rows), *x = malloc(xrow * nb);
      float *xf = malloc(sizeof(float) * k * nb), *ref = malloc(sizeof(float) * rows * nb), *got = malloc(sizeof(float) * rows * nb);
      fill_weights(wt, w, rows, nblk, extreme);
      for (int64_t i = 0; i < k * nb; i++) xf[i] = extreme ? ((next() & 1) ? 1.0f : -1.0f) : unit();
      if (ck_quantize_row(xt, xf, x, k * nb) != 0) { printf("%s: setup failed\n", ck_type_name(wt)); return 1; }
      memset(ref, 0x7F, sizeof(float) * rows * nb);
      memset(got, 0x7F, sizeof(float) * rows * nb);
      a2.mm[wt](w, wrow, x, xrow, nblk, r0, r1, nb, ref, rows);
      a512.mm[wt](w, wrow, x, xrow, nblk, r0, r1, nb, got, rows);
      cases++;
      if (memcmp(ref, got, sizeof(float) * rows * nb) != 0 && mism++ == 0)
        printf("%s file-layout avx512: MISMATCH rows %lld [%lld, %lld) nb %lld k %lld%s\n", ck_type_name(wt),
               (long long)rows, (long long)r0, (long long)r1, (long long)nb, (long long)k, extreme ? " (extreme)" : "");
      free(w); free(x); free(xf); free(ref); free(got);
    }
    printf("%-5s %-10s %3d cases, %d mismatches (file layout, against AVX2)\n", ck_type_name(wt), "avx512", cases, mism);
    *total += cases;
    bad += mism;
  }
  return bad;
}

int main(void) {
  ck_mm_r8_fn scalar[31] = {0}, avx2[31] = {0}, bw[31] = {0}, vnni[31] = {0};
  ck_fill_r8_scalar(scalar);
  ck_fill_r8_avx512(bw, 0);
  ck_fill_r8_avx512(vnni, 1);
  ck_fill_r8_kq_avx512(bw, 0);
  ck_fill_r8_kq_avx512(vnni, 1);
  const int have_avx2 = ck_isa_best() == CK_ISA_AVX2 || ck_isa_best() == CK_ISA_AVX512;
  if (have_avx2) ck_fill_r8_avx2(avx2);
  /* the K-quants have VNNI kernels only (without VNNI the AVX-512 table keeps the AVX2 one) */
  const int types[] = {CK_TYPE_Q4_0, CK_TYPE_Q4_1, CK_TYPE_Q5_0, CK_TYPE_Q8_0, CK_TYPE_Q4_K, CK_TYPE_Q5_K, CK_TYPE_Q6_K};
  const int row_choices[] = {1, 3, 7, 8, 9, 15, 16, 17, 23, 24, 31, 33, 40, 47, 48, 63, 64, 65, 79, 100, 129, 136};
  const int nb_choices[] = {1, 1, 2, 3, 4, 5, 8, 64};
  const int nblk_choices[] = {1, 2, 3, 4, 5, 8, 13, 32, 64, 128};
  int bad = 0, total = 0;
  int expected = 0;
  for (int ti = 0; ti < 7; ti++) {
    const int wt = types[ti];
    const int kq = wt == CK_TYPE_Q4_K || wt == CK_TYPE_Q5_K || wt == CK_TYPE_Q6_K;
    variant vs[3] = {{"avx512bw", bw[wt], 0, 0}, {"avx512vnni", vnni[wt], 0, 0}, {"avx2", avx2[wt], 0, 0}};
    if ((!vs[0].f && !kq) || !vs[1].f) { printf("%s: no AVX-512 kernel\n", ck_type_name(wt)); bad++; continue; }
    expected += (kq ? 1 : 2) * 160;
    const int xt = ck_vec_dot_type(wt);
    for (int c = 0; c < 160; c++) {
      int64_t rows = pick(row_choices, sizeof row_choices / sizeof *row_choices);
      int64_t nb = pick(nb_choices, sizeof nb_choices / sizeof *nb_choices);
      int64_t nblk = pick(nblk_choices, sizeof nblk_choices / sizeof *nblk_choices);
      if (c < 8) nblk = 128;  /* k = 4096 at least a few times */
      if (kq) nblk = (nblk + 7) / 8;  /* super-blocks of 256: k up to 4096 */
      if (rows * nb * nblk * (kq ? 8 : 1) > 40000) nb = nb > 4 ? 5 : nb;  /* keep the scalar reference fast */
      if (kq && c >= 154) {  /* large batches: the unpacked prefill path, k-chunk and pass remainders */
        rows = c % 2 ? 77 : 40;
        nblk = 17 + c % 3;
        nb = 24 + (int64_t)(next() % 140);
      }
      const int64_t k = nblk * (kq ? CK_QK_K : CK_QK);
      const int extreme = c % 7 == 3;
      /* rows [r0, r1): from a group boundary (3 in 4), else anywhere */
      const int64_t groups = (rows + CK_R8 - 1) / CK_R8;
      int64_t r0 = (c % 4 == 1) ? (int64_t)(next() % (uint32_t)rows) : CK_R8 * (int64_t)(next() % (uint32_t)groups);
      int64_t r1 = (c % 3 == 0) ? rows : r0 + 1 + (int64_t)(next() % (uint32_t)(rows - r0));
      if (c % 5 == 0) { r0 = 0; r1 = rows; }
      const int64_t ostride = rows + (int64_t)(next() % 4);
      const size_t wbytes = (size_t)(rows * nblk * file_block(wt)), xrow = (size_t)ck_row_bytes(xt, k);
      uint8_t *w = malloc(wbytes), *x = malloc(xrow * nb);
      const int64_t rbytes = ck_repack_bytes(wt, rows, k);
      uint8_t *rw = malloc((size_t)rbytes);
      float *xf = malloc(sizeof(float) * k * nb);
      const int64_t ofloats = ostride * nb + 2 * CK_R8;  /* and a guard past the end */
      const size_t obytes = sizeof(float) * ofloats;
      float *ref = malloc(obytes), *got = malloc(obytes);
      fill_weights(wt, w, rows, nblk, extreme);
      for (int64_t i = 0; i < k * nb; i++) xf[i] = extreme ? ((next() & 1) ? 1.0f : -1.0f) : unit();
      if (ck_quantize_row(xt, xf, x, k * nb) != 0 || ck_repack(wt, w, rw, rows, k) != 0) {
        printf("%s: setup failed\n", ck_type_name(wt));
        return 1;
      }
      const uint32_t sent = SENTINEL;
      for (int64_t i = 0; i < ofloats; i++) memcpy(ref + i, &sent, 4);
      scalar[wt](rw, x, xrow, nblk, r0, r1, nb, ref, ostride);
      int ref_ok = 1;  /* the reference wrote [r0, r1) only */
      for (int64_t i = 0; i < ofloats; i++) {
        const int64_t b = i / ostride, r = i % ostride;
        uint32_t v; memcpy(&v, ref + i, 4);
        if ((v == sent) == (b < nb && r >= r0 && r < r1)) ref_ok = 0;
      }
      if (!ref_ok) { printf("%s: the scalar reference wrote outside [r0, r1) or left a hole there\n", ck_type_name(wt)); bad++; }
      for (int vi = 0; vi < 3; vi++) {
        if (!vs[vi].f) continue;
        for (int64_t i = 0; i < ofloats; i++) memcpy(got + i, &sent, 4);
        vs[vi].f(rw, x, xrow, nblk, r0, r1, nb, got, ostride);
        vs[vi].cases++;
        if (memcmp(ref, got, obytes) != 0) {
          if (vs[vi].bad++ == 0) {
            int64_t i = 0;
            while (memcmp(ref + i, got + i, 4) == 0) i++;
            printf("%s %s: MISMATCH rows %lld [%lld, %lld) nb %lld k %lld%s: out[%lld][%lld] %.9g vs scalar %.9g\n",
                   ck_type_name(wt), vs[vi].name, (long long)rows, (long long)r0, (long long)r1, (long long)nb,
                   (long long)k, extreme ? " (extreme)" : "", (long long)(i / ostride), (long long)(i % ostride),
                   got[i], ref[i]);
          }
        }
      }
      free(w); free(x); free(rw); free(xf); free(ref); free(got);
    }
    for (int vi = 0; vi < 3; vi++) {
      if (!vs[vi].f) continue;
      printf("%-5s %-10s %3d cases, %d mismatches\n", ck_type_name(wt), vs[vi].name, vs[vi].cases, vs[vi].bad);
      if (vi < 2) total += vs[vi].cases;
      bad += vs[vi].bad;
    }
  }
  if (total < expected) bad++;
  bad += check_kq_file(have_avx2, &total);
  printf("avx512 check (SIMDe %s): %d cases, %d bad\n", have_avx2 ? "with the AVX2 cross-check" : "", total, bad);
  return bad != 0;
}
