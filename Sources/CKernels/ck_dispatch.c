/* Run-time instruction set selection and the ck_matmul entry point. */
#include "ck_internal.h"
#include "ck_repack.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static ck_kernels ck_tab_scalar, ck_tab_avx2, ck_tab_avx512, ck_tab_neon;
static int ck_best = CK_ISA_SCALAR;
static pthread_once_t ck_once = PTHREAD_ONCE_INIT;
static _Atomic(const ck_kernels *) ck_cur = NULL;
static atomic_int ck_cur_isa = CK_ISA_SCALAR;

static int ck_detect(void) {
#if defined(CK_X86) && defined(__x86_64__)
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")))
    return CK_ISA_SCALAR;
  /* The AVX-512 table is the AVX2 one with AVX-512 kernels for the repacked (R8) matmuls and the
     K-quants. CK_NO_AVX512=1 in the environment keeps the AVX2 one (to compare them). */
  const char *off = getenv("CK_NO_AVX512");
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
      && !(off && off[0] == '1'))
    return CK_ISA_AVX512;
  return CK_ISA_AVX2;
#elif defined(__aarch64__)
  return CK_ISA_NEON;  /* Advanced SIMD is mandatory on arm64 */
#else
  return CK_ISA_SCALAR;
#endif
}

static const ck_kernels *ck_table(int isa) {
  switch (isa) {
    case CK_ISA_AVX2: return &ck_tab_avx2;
    case CK_ISA_AVX512: return &ck_tab_avx512;
    case CK_ISA_NEON: return &ck_tab_neon;
    default: return &ck_tab_scalar;
  }
}

static void ck_init(void) {
  ck_fill_scalar(&ck_tab_scalar);
  ck_fill_scalar(&ck_tab_avx2);
  ck_fill_avx2(&ck_tab_avx2);
  ck_fill_scalar(&ck_tab_neon);
  ck_fill_neon(&ck_tab_neon);
  ck_best = ck_detect();
  ck_tab_avx512 = ck_tab_avx2;
#if defined(CK_X86) && defined(__x86_64__)
  if (ck_best == CK_ISA_AVX512) {
    /* decode keeps the AVX2 tiles (see mm_r8_one in ck_internal.h) */
    memcpy(ck_tab_avx512.mm_r8_one, ck_tab_avx2.mm_r8, sizeof ck_tab_avx512.mm_r8_one);
    const int vnni = __builtin_cpu_supports("avx512vnni");
    ck_fill_r8_avx512(ck_tab_avx512.mm_r8, vnni);
    /* Q4_K's R8 kernel streams one group at a time, decode included */
    ck_fill_r8_kq_avx512(ck_tab_avx512.mm_r8, vnni);
    ck_fill_r8_kq_avx512(ck_tab_avx512.mm_r8_one, vnni);
    /* Q6_K is repacked only where its VNNI kernel runs (the AVX2 table keeps the file layout) */
    ck_tab_avx512.r8_fast[CK_TYPE_Q6_K] = (unsigned char)(vnni != 0);
    ck_fill_kq_avx512(&ck_tab_avx512);
  }
#endif
  atomic_store(&ck_cur_isa, ck_best);
  atomic_store(&ck_cur, ck_table(ck_best));
}

const ck_kernels *ck_active(void) {
  const ck_kernels *k = atomic_load_explicit(&ck_cur, memory_order_acquire);
  if (k) return k;
  pthread_once(&ck_once, ck_init);
  return atomic_load(&ck_cur);
}

int ck_isa_best(void) {
  pthread_once(&ck_once, ck_init);
  return ck_best;
}

int ck_isa_active(void) {
  pthread_once(&ck_once, ck_init);
  return atomic_load(&ck_cur_isa);
}

int ck_set_isa(int isa) {
  pthread_once(&ck_once, ck_init);
  /* The scalar path, the best path and, on an AVX-512 CPU, the AVX2 path exist; any other
     request (AVX-512 without the CPU for it, NEON on x86-64, AVX2 on arm64) gets the best one. */
  int chosen = ck_best;
  if (isa == CK_ISA_SCALAR) chosen = CK_ISA_SCALAR;
  else if (isa == CK_ISA_AVX2 && ck_best == CK_ISA_AVX512) chosen = CK_ISA_AVX2;
  atomic_store(&ck_cur_isa, chosen);
  atomic_store(&ck_cur, ck_table(chosen));
  return chosen;
}

const char *ck_isa_name(int isa) {
  switch (isa) {
    case CK_ISA_SCALAR: return "scalar";
    case CK_ISA_AVX2: return "avx2";
    case CK_ISA_AVX512: return "avx512";
    case CK_ISA_NEON: return "neon";
    default: return "?";
  }
}

int ck_matmul(int wtype, const void *w, const void *x, int64_t k,
              int64_t r0, int64_t r1, int64_t nb, float *out, int64_t out_stride) {
  if (wtype < 0 || wtype > 30) return -1;
  const ck_kernels *t = ck_active();
  const ck_mm_fn f = t->mm[wtype];
  if (!f) return -1;
  const int64_t be = ck_block_elements(wtype);
  const int xt = ck_vec_dot_type(wtype);
  if (be <= 0 || xt < 0 || k <= 0 || k % be != 0) return -1;
  if (r0 < 0 || r1 < r0 || nb < 0 || (nb > 1 && out_stride < r1)) return -1;
  if (r0 == r1 || nb == 0) return 0;
  if (!w || !x || !out) return -1;
  const size_t wrow = (size_t)ck_row_bytes(wtype, k);
  const size_t xrow = (size_t)ck_row_bytes(xt, k);
  f(w, wrow, x, xrow, k / be, r0, r1, nb, out, out_stride);
  return 0;
}
