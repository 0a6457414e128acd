/* The NEON kernels (Sources/CKernels/ck_neon.c) against the scalar ones, through the public API
   with ck_set_isa switching tables: an arm64 build run under QEMU user mode on a machine without
   arm64 (Scripts/test-neon cross-compiles and runs it). Covers everything ck_fill_neon sets:

   - ck_matmul of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K: the output buffer (with guards before
     and after, and rows outside [r0, r1)) byte-equal to the scalar kernel's. Random blocks with
     finite half scales, some cases with every quant and activation at its integer extreme
     (activations then built directly, int8 -128/127, Q8_K bsums consistent); else activations
     quantized from random floats. Row counts 1-40, sub-ranges, 1-9 activations, k 32-4096.
   - ck_matmul of F32, F16, BF16; ck_dot_f32, ck_dot_f16_f32: the NEON and scalar sums add in
     different orders (8 lanes vs 4, then tails), so on random data each result must lie within
     (n/2 + 16) * 2^-24 * sum|a_i * b_i| of the scalar one (a first-order bound on the rounding
     error of both orders, 2^-24 the unit roundoff), and on small-integer data (every product and
     partial sum exact in float) be bit-identical. Outside the rows asked for: untouched.
   - ck_axpy_f32, ck_axpy_f16_f32: within 2^-24 * (|a * x_i| + |y_i| + |result_i|) per element
     (fused vs possibly unfused multiply-add), bit-identical on small-integer data; guards
     untouched (finite ones: y += a * x leaves a NaN guard the same NaN).
   - ck_f16_to_f32 (all 65536 halves) and ck_f32_to_f16 (random bit patterns, NaNs and infinities
     included, every rounding tie between adjacent halves and its neighbours): bit-identical,
     except that a signaling NaN half may become a quiet NaN float (see check_f16_to_f32).
   - ck_quantize_row to Q8_0 and Q8_1 (NEON), and Q8_K, F16, BF16 (passed on to the scalar code):
     bit-identical, including rounding ties, zero, subnormal and huge blocks; same return code on
     bad lengths.
   - ck_attention_f16 / _multi (composed from the NEON table's dot and axpy): the same bits as
     that composition through the public API, _multi the same bits as one call per query, and
     within a bound of the scalar result (probabilities are rounded to half, so a score that
     moves by an ulp may move a probability by one half ulp: 2^-10 relative).

   Prints one line per kernel and a total; exits 1 on any mismatch. */
#include "ck_internal.h"
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t next(void) {  /* xorshift64* */
  rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
  return (uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}
static int pick(const int *v, int n) { return v[next() % (uint32_t)n]; }
#define PICK(v) pick(v, (int)(sizeof(v) / sizeof *(v)))
static float unit(void) { return (float)(next() % 2000001) / 1000000.0f - 1.0f; }
static int small_int(void) { return (int)(next() % 65) - 32; }  /* -32..32 */

enum { GUARD = 16 };                  /* guard elements on each side of every output */
static const uint32_t SENTINEL = 0x7FC0DEADu;
static const double U = 5.9604644775390625e-8;  /* 2^-24 */

static void use(int isa) {
  if (ck_set_isa(isa) != isa) {
    printf("cannot switch to the %s table\n", ck_isa_name(isa));
    exit(1);
  }
}

/* one line of the report */
typedef struct {
  const char *name;
  int cases, bad, exact, compared;  /* exact / compared: bit-identical float results (toleranced kinds) */
  double worst;                     /* largest |neon - scalar| / bound seen */
  int toleranced;
} tally;

static int total_cases, total_bad;

static void report(const tally *t) {
  printf("%-14s neon %6d cases, %d mismatches", t->name, t->cases, t->bad);
  if (t->toleranced)
    printf(" (worst %.3f of the bound; %d of %d results bit-identical)", t->worst, t->exact, t->compared);
  printf("\n");
  total_cases += t->cases;
  total_bad += t->bad;
}

static void fail(tally *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(tally *t, const char *fmt, ...) {
  if (t->bad++ < 3) {  /* the first few, then only the count */
    va_list ap;
    va_start(ap, fmt);
    printf("%s neon: MISMATCH ", t->name);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
  }
}

/* float buffer of n elements with GUARD sentinels on both sides; returns the first element */
static float *guarded(int64_t n) {
  float *p = malloc(sizeof(float) * (size_t)(n + 2 * GUARD));
  for (int64_t i = 0; i < n + 2 * GUARD; i++) memcpy(p + i, &SENTINEL, 4);
  return p + GUARD;
}
static void unguard(float *p) { free(p - GUARD); }
static int is_sentinel(const float *p) { uint32_t v; memcpy(&v, p, 4); return v == SENTINEL; }
static int guards_intact(const float *p, int64_t n) {
  for (int i = 1; i <= GUARD; i++) if (!is_sentinel(p - i) || !is_sentinel(p + n - 1 + i)) return 0;
  return 1;
}
/* for outputs updated in place (y += a * x): a NaN guard would come back as the same NaN, so
   these guards are 1.25, which any y += a * x with a, x nonzero changes */
static void finite_guards(float *p, int64_t n) {
  for (int i = 1; i <= GUARD; i++) p[-i] = p[n - 1 + i] = 1.25f;
}
static int finite_guards_intact(const float *p, int64_t n) {
  for (int i = 1; i <= GUARD; i++) if (p[-i] != 1.25f || p[n - 1 + i] != 1.25f) return 0;
  return 1;
}

/* ---- quantized weights and activations ---- */

static void put_half(uint8_t *blk, size_t off, float v) { const uint16_t h = ck_f2h(v); memcpy(blk + off, &h, 2); }

/* a finite scale: mostly normal, sometimes zero or subnormal */
static float scale(void) {
  const uint32_t kind = next() % 64;
  return kind == 0 ? 0.0f : kind == 1 ? 3e-6f * unit() : 0.05f * unit();
}

/* random bytes with finite scales; extreme: every quant (and Q2_K..Q6_K scale) at an end of its range */
static void fill_block(int wt, uint8_t *b, int extreme) {
  const int64_t n = ck_block_bytes(wt);
  const uint8_t fillb = (next() & 1) ? 0xFF : 0x00;
  for (int64_t j = 0; j < n; j++) b[j] = extreme ? fillb : (uint8_t)next();
  switch (wt) {
    case CK_TYPE_Q4_0: put_half(b, offsetof(ck_block_q4_0, d), scale()); break;
    case CK_TYPE_Q4_1: put_half(b, offsetof(ck_block_q4_1, d), scale()); put_half(b, offsetof(ck_block_q4_1, m), 0.5f * unit()); break;
    case CK_TYPE_Q5_0: put_half(b, offsetof(ck_block_q5_0, d), scale()); break;
    case CK_TYPE_Q5_1: put_half(b, offsetof(ck_block_q5_1, d), scale()); put_half(b, offsetof(ck_block_q5_1, m), 0.5f * unit()); break;
    case CK_TYPE_Q8_0: {
      ck_block_q8_0 *q = (ck_block_q8_0 *)b;
      if (extreme) for (int j = 0; j < CK_QK; j++) q->qs[j] = (next() & 1) ? -128 : 127;
      put_half(b, offsetof(ck_block_q8_0, d), scale());
      break;
    }
    case CK_TYPE_Q2_K: put_half(b, offsetof(ck_block_q2_K, d), scale()); put_half(b, offsetof(ck_block_q2_K, dmin), scale()); break;
    case CK_TYPE_Q3_K: put_half(b, offsetof(ck_block_q3_K, d), scale()); break;
    case CK_TYPE_Q4_K: put_half(b, offsetof(ck_block_q4_K, d), scale()); put_half(b, offsetof(ck_block_q4_K, dmin), scale()); break;
    case CK_TYPE_Q5_K: put_half(b, offsetof(ck_block_q5_K, d), scale()); put_half(b, offsetof(ck_block_q5_K, dmin), scale()); break;
    case CK_TYPE_Q6_K: {
      ck_block_q6_K *q = (ck_block_q6_K *)b;
      if (extreme) for (int j = 0; j < CK_QK_K / 16; j++) q->scales[j] = (next() & 1) ? -128 : 127;
      put_half(b, offsetof(ck_block_q6_K, d), scale());
      break;
    }
    default: break;
  }
}

/* one activation row of k elements of xt with every quant at -128 or 127 (not what the quantizer
   makes, which stays within +-127: a harder case for the int8 products) */
static void extreme_activation(int xt, uint8_t *x, int64_t k) {
  if (xt == CK_TYPE_Q8_K) {
    for (int64_t i = 0; i < k / CK_QK_K; i++) {
      ck_block_q8_K *y = (ck_block_q8_K *)x + i;
      y->d = 0.01f * unit();
      for (int j = 0; j < CK_QK_K; j++) y->qs[j] = (next() & 1) ? -128 : 127;
      for (int g = 0; g < CK_QK_K / 16; g++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += y->qs[16 * g + l];
        y->bsums[g] = (int16_t)s;
      }
    }
  } else if (xt == CK_TYPE_Q8_1) {
    for (int64_t i = 0; i < k / CK_QK; i++) {
      ck_block_q8_1 *y = (ck_block_q8_1 *)x + i;
      const float d = 0.01f * unit();
      int s = 0;
      for (int j = 0; j < CK_QK; j++) { y->qs[j] = (next() & 1) ? -128 : 127; s += y->qs[j]; }
      y->d = ck_f2h(d);
      y->s = ck_f2h(d * (float)s);
    }
  } else {
    for (int64_t i = 0; i < k / CK_QK; i++) {
      ck_block_q8_0 *y = (ck_block_q8_0 *)x + i;
      for (int j = 0; j < CK_QK; j++) y->qs[j] = (next() & 1) ? -128 : 127;
      y->d = ck_f2h(0.01f * unit());
    }
  }
}

/* a product's rows [r0, r1) and activations [0, nb) in out (ostride apart), guards around */
typedef struct { int64_t rows, r0, r1, nb, ostride, k; } shape;

static shape random_shape(int64_t block, const int *nblks, int nnblk, int64_t budget) {
  static const int row_choices[] = { 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 24, 31, 33, 40 };
  shape s;
  s.rows = PICK(row_choices);
  s.nb = 1 + (int64_t)(next() % 9);
  s.k = block * pick(nblks, nnblk);
  while (s.rows * s.nb * s.k > budget && s.nb > 1) s.nb--;
  while (s.rows * s.nb * s.k > budget && s.rows > 1) s.rows /= 2;
  s.r0 = (next() & 1) ? 0 : (int64_t)(next() % (uint32_t)s.rows);
  s.r1 = (next() & 1) ? s.rows : s.r0 + 1 + (int64_t)(next() % (uint32_t)(s.rows - s.r0));
  s.ostride = s.rows + (int64_t)(next() % 4);
  return s;
}

static int64_t out_len(const shape *s) { return s->ostride * (s->nb - 1) + s->rows; }
static int inside(const shape *s, int64_t i) {
  const int64_t r = i % s->ostride;
  return i / s->ostride < s->nb && r >= s->r0 && r < s->r1;
}

/* ck_matmul under one table into a fresh guarded buffer */
static float *run_matmul(int isa, int wt, const void *w, const void *x, const shape *s) {
  float *o = guarded(out_len(s));
  use(isa);
  if (ck_matmul(wt, w, x, s->k, s->r0, s->r1, s->nb, o, s->ostride) != 0) {
    printf("ck_matmul(%s) refused k %lld rows [%lld, %lld) nb %lld under %s\n", ck_type_name(wt), (long long)s->k,
           (long long)s->r0, (long long)s->r1, (long long)s->nb, ck_isa_name(isa));
    exit(1);
  }
  return o;
}

/* the scalar reference itself wrote exactly the rows asked for */
static int reference_shape_ok(const float *ref, const shape *s) {
  if (!guards_intact(ref, out_len(s))) return 0;
  for (int64_t i = 0; i < out_len(s); i++) if (is_sentinel(ref + i) == inside(s, i)) return 0;
  return 1;
}

static void check_quant_matmul(int wt, int ncases) {
  tally t = { ck_type_name(wt), 0, 0, 0, 0, 0, 0 };
  const int xt = ck_vec_dot_type(wt);
  const int64_t be = ck_block_elements(wt);
  static const int nblk32[] = { 1, 2, 3, 4, 5, 7, 8, 13, 32, 64, 128 };  /* k 32..4096 */
  static const int nblk256[] = { 1, 2, 3, 4, 5, 8, 16 };               /* k 256..4096 */
  for (int c = 0; c < ncases; c++) {
    shape s = be == CK_QK_K ? random_shape(be, nblk256, 7, 200000) : random_shape(be, nblk32, 11, 200000);
    if (c < 4) { s.k = 4096; s.rows = 3; s.r0 = 0; s.r1 = 3; s.nb = 1 + c; s.ostride = 3; }  /* the largest k */
    const int extreme = c % 5 == 2;
    const int64_t nblk = s.k / be, bb = ck_block_bytes(wt);
    const size_t xrow = (size_t)ck_row_bytes(xt, s.k);
    uint8_t *w = malloc((size_t)(s.rows * nblk * bb)), *x = malloc(xrow * (size_t)s.nb);
    for (int64_t b = 0; b < s.rows * nblk; b++) fill_block(wt, w + b * bb, extreme);
    if (extreme) {
      for (int64_t j = 0; j < s.nb; j++) extreme_activation(xt, x + j * xrow, s.k);
    } else {
      float *xf = malloc(sizeof(float) * (size_t)(s.k * s.nb));
      for (int64_t i = 0; i < s.k * s.nb; i++) xf[i] = unit();
      use(CK_ISA_SCALAR);
      if (ck_quantize_row(xt, xf, x, s.k * s.nb) != 0) { printf("quantizing activations failed\n"); exit(1); }
      free(xf);
    }
    float *ref = run_matmul(CK_ISA_SCALAR, wt, w, x, &s);
    float *got = run_matmul(CK_ISA_NEON, wt, w, x, &s);
    t.cases++;
    if (!reference_shape_ok(ref, &s)) {
      fail(&t, "the scalar reference wrote outside rows [%lld, %lld) or left a hole", (long long)s.r0, (long long)s.r1);
    } else if (memcmp(ref - GUARD, got - GUARD, sizeof(float) * (size_t)(out_len(&s) + 2 * GUARD)) != 0) {
      int64_t i = -GUARD;
      while (memcmp(ref + i, got + i, 4) == 0) i++;
      fail(&t, "rows %lld [%lld, %lld) nb %lld k %lld%s: out[%lld] %.9g vs scalar %.9g%s", (long long)s.rows,
           (long long)s.r0, (long long)s.r1, (long long)s.nb, (long long)s.k, extreme ? " (extreme)" : "",
           (long long)i, got[i], ref[i], i >= 0 && i < out_len(&s) && inside(&s, i) ? "" : " (outside the rows asked for)");
    }
    unguard(ref); unguard(got);
    free(w); free(x);
  }
  report(&t);
}

/* ---- float formats ---- */

static float decode(int type, const void *p, int64_t i) {
  if (type == CK_TYPE_F32) return ((const float *)p)[i];
  const uint16_t h = ((const uint16_t *)p)[i];
  return type == CK_TYPE_F16 ? ck_h2f(h) : ck_bf2f(h);
}

/* element i of a float-format vector: small integers (exact data) or random in [-1, 1] */
static void encode(int type, void *p, int64_t i, float v) {
  if (type == CK_TYPE_F32) ((float *)p)[i] = v;
  else ((uint16_t *)p)[i] = type == CK_TYPE_F16 ? ck_f2h(v) : ck_f2bf(v);
}

static int64_t elt_bytes(int type) { return type == CK_TYPE_F32 ? 4 : 2; }

/* compares one toleranced result; returns 0 when out of bounds */
static int within(tally *t, float got, float ref, double bound, int exact_data) {
  t->compared++;
  if (memcmp(&got, &ref, 4) == 0) { t->exact++; return 1; }
  if (exact_data) return 0;
  const double err = fabs((double)got - (double)ref);
  if (!(err <= bound)) return 0;
  if (bound > 0 && err / bound > t->worst) t->worst = err / bound;
  return 1;
}

static const int float_lengths[] = { 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 255, 256, 1000, 4096 };

/* bound on |neon - scalar| for a sum of n products of total magnitude sumabs */
static double sum_bound(int64_t n, double sumabs) { return ((double)n / 2 + 16) * U * sumabs * 1.01; }

static void check_float_matmul(int wt, int ncases) {
  tally t = { ck_type_name(wt), 0, 0, 0, 0, 0, 1 };
  for (int c = 0; c < ncases; c++) {
    shape s = random_shape(1, float_lengths, (int)(sizeof float_lengths / sizeof *float_lengths), 200000);
    const int exact = c % 3 == 1;
    const int64_t eb = elt_bytes(wt);
    uint8_t *w = malloc((size_t)(s.rows * s.k * eb)), *x = malloc((size_t)(s.nb * s.k * eb));
    for (int64_t i = 0; i < s.rows * s.k; i++) encode(wt, w, i, exact ? (float)small_int() : unit());
    for (int64_t i = 0; i < s.nb * s.k; i++) encode(wt, x, i, exact ? (float)small_int() : unit());
    float *ref = run_matmul(CK_ISA_SCALAR, wt, w, x, &s);
    float *got = run_matmul(CK_ISA_NEON, wt, w, x, &s);
    t.cases++;
    if (!reference_shape_ok(ref, &s)) {
      fail(&t, "the scalar reference wrote outside rows [%lld, %lld) or left a hole", (long long)s.r0, (long long)s.r1);
    } else if (!guards_intact(got, out_len(&s))) {
      fail(&t, "rows %lld nb %lld k %lld: wrote past the output", (long long)s.rows, (long long)s.nb, (long long)s.k);
    } else {
      for (int64_t i = 0; i < out_len(&s); i++) {
        if (!inside(&s, i)) {
          if (!is_sentinel(got + i)) { fail(&t, "k %lld: wrote out[%lld], outside rows [%lld, %lld)", (long long)s.k, (long long)i, (long long)s.r0, (long long)s.r1); break; }
          continue;
        }
        const int64_t b = i / s.ostride, r = i % s.ostride;
        double sumabs = 0;
        for (int64_t l = 0; l < s.k; l++) sumabs += fabs((double)decode(wt, w, r * s.k + l) * decode(wt, x, b * s.k + l));
        const double bound = sum_bound(s.k, sumabs);
        if (!within(&t, got[i], ref[i], bound, exact)) {
          fail(&t, "row %lld act %lld k %lld%s: %.9g vs scalar %.9g (bound %.3g)", (long long)r, (long long)b, (long long)s.k,
               exact ? " (integer data: must be exact)" : "", got[i], ref[i], bound);
          break;
        }
      }
    }
    unguard(ref); unguard(got);
    free(w); free(x);
  }
  report(&t);
}

static void check_dots(int ncases) {
  tally t32 = { "dot_f32", 0, 0, 0, 0, 0, 1 }, t16 = { "dot_f16_f32", 0, 0, 0, 0, 0, 1 };
  for (int c = 0; c < ncases; c++) {
    const int64_t n = c == 0 ? 0 : PICK(float_lengths);
    const int exact = c % 3 == 1;
    float *a = malloc(sizeof(float) * (size_t)(n + 1)), *b = malloc(sizeof(float) * (size_t)(n + 1));
    uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) {
      a[i] = exact ? (float)small_int() : unit();
      b[i] = exact ? (float)small_int() : unit();
      h[i] = ck_f2h(exact ? (float)small_int() : unit());
    }
    double s32 = 0, s16 = 0;
    for (int64_t i = 0; i < n; i++) { s32 += fabs((double)a[i] * b[i]); s16 += fabs((double)ck_h2f(h[i]) * b[i]); }
    use(CK_ISA_SCALAR);
    const float r32 = ck_dot_f32(a, b, n), r16 = ck_dot_f16_f32(h, b, n);
    use(CK_ISA_NEON);
    const float g32 = ck_dot_f32(a, b, n), g16 = ck_dot_f16_f32(h, b, n);
    t32.cases++; t16.cases++;
    if (!within(&t32, g32, r32, sum_bound(n, s32), exact))
      fail(&t32, "n %lld%s: %.9g vs scalar %.9g", (long long)n, exact ? " (integer data)" : "", g32, r32);
    if (!within(&t16, g16, r16, sum_bound(n, s16), exact))
      fail(&t16, "n %lld%s: %.9g vs scalar %.9g", (long long)n, exact ? " (integer data)" : "", g16, r16);
    free(a); free(b); free(h);
  }
  report(&t32);
  report(&t16);
}

static void check_axpy(int ncases) {
  tally t32 = { "axpy_f32", 0, 0, 0, 0, 0, 1 }, t16 = { "axpy_f16_f32", 0, 0, 0, 0, 0, 1 };
  for (int c = 0; c < ncases; c++) {
    const int64_t n = PICK(float_lengths);
    const int exact = c % 3 == 1;
    float a = exact ? (float)small_int() : 3.0f * unit();
    if (a == 0.0f) a = 1.0f;  /* so that a write past y shows */
    /* x and h: n elements, then GUARD ones (what a kernel reading too far would see) */
    float *x = malloc(sizeof(float) * (size_t)(n + GUARD)), *y0 = malloc(sizeof(float) * (size_t)n);
    uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(n + GUARD));
    for (int64_t i = 0; i < n; i++) {
      x[i] = exact ? (float)small_int() : unit();
      h[i] = ck_f2h(exact ? (float)small_int() : unit());
      y0[i] = exact ? (float)small_int() : unit();
    }
    for (int64_t i = n; i < n + GUARD; i++) { x[i] = 1.0f; h[i] = ck_f2h(1.0f); }
    for (int half = 0; half < 2; half++) {
      tally *t = half ? &t16 : &t32;
      float *ref = guarded(n), *got = guarded(n);
      finite_guards(ref, n);
      finite_guards(got, n);
      memcpy(ref, y0, sizeof(float) * (size_t)n);
      memcpy(got, y0, sizeof(float) * (size_t)n);
      use(CK_ISA_SCALAR);
      if (half) ck_axpy_f16_f32(a, h, ref, n); else ck_axpy_f32(a, x, ref, n);
      use(CK_ISA_NEON);
      if (half) ck_axpy_f16_f32(a, h, got, n); else ck_axpy_f32(a, x, got, n);
      t->cases++;
      if (!finite_guards_intact(got, n)) {
        fail(t, "n %lld: wrote outside y", (long long)n);
      } else {
        for (int64_t i = 0; i < n; i++) {
          const double ax = fabs((double)a * (half ? ck_h2f(h[i]) : x[i]));
          if (!within(t, got[i], ref[i], U * (ax + fabs((double)y0[i]) + fabs((double)ref[i])) * 1.01, exact)) {
            fail(t, "n %lld y[%lld]%s: %.9g vs scalar %.9g", (long long)n, (long long)i, exact ? " (integer data)" : "", got[i], ref[i]);
            break;
          }
        }
      }
      unguard(ref); unguard(got);
    }
    free(x); free(y0); free(h);
  }
  report(&t32);
  report(&t16);
}

/* ---- conversions ---- */

/* halves -> floats in pieces of random length (exercising the tails), guards around each piece.
   Signaling NaN halves (exponent 31, top mantissa bit clear) may come back quiet (that bit set,
   the rest of the payload kept): the NEON conversion instruction quiets them, as F16C does on
   x86-64, while the scalar code keeps the bits. Counted and reported, not a mismatch. */
static void check_f16_to_f32(void) {
  tally t = { "f16_to_f32", 0, 0, 0, 0, 0, 0 };
  int quieted = 0;
  uint16_t *all = malloc(sizeof(uint16_t) * 65536);
  for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;
  for (int64_t i0 = 0; i0 < 65536;) {
    int64_t n = 1 + (int64_t)(next() % 300);
    if (n > 65536 - i0) n = 65536 - i0;
    float *ref = guarded(n), *got = guarded(n);
    use(CK_ISA_SCALAR); ck_f16_to_f32(all + i0, ref, n);
    use(CK_ISA_NEON); ck_f16_to_f32(all + i0, got, n);
    t.cases++;
    if (!guards_intact(got, n)) {
      fail(&t, "n %lld: wrote outside the output", (long long)n);
    } else {
      for (int64_t i = 0; i < n; i++) {
        const uint16_t h = all[i0 + i];
        const uint32_t gb = ck_f32_bits(got[i]), rb = ck_f32_bits(ref[i]);
        if (gb == rb) continue;
        const int snan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0 && !(h & 0x200);
        if (snan && gb == (rb | 0x00400000u)) { quieted++; continue; }
        fail(&t, "half 0x%04x: 0x%08x vs scalar 0x%08x", (unsigned)h, (unsigned)gb, (unsigned)rb);
        break;
      }
    }
    unguard(ref); unguard(got);
    i0 += n;
  }
  free(all);
  report(&t);
  printf("%-14s      (%d of the 1022 signaling NaN halves came back quiet, the others took the scalar tail)\n", "", quieted);
}

/* floats -> halves: every tie between adjacent finite halves (and one float ulp either side),
   random bit patterns (NaNs, infinities, huge and tiny values), random values in half range */
static void check_f32_to_f16(void) {
  tally t = { "f32_to_f16", 0, 0, 0, 0, 0, 0 };
  const int64_t nties = 0x7C00 * 3, nrand = 60000, total = nties + nrand;
  float *src = malloc(sizeof(float) * (size_t)total);
  int64_t m = 0;
  for (uint32_t h = 0; h < 0x7C00; h++) {  /* halfway from h to h + 1; past the largest half, 65520 rounds to inf */
    const float v = h == 0x7BFF ? 65520.0f : (ck_h2f((uint16_t)h) + ck_h2f((uint16_t)(h + 1))) / 2;  /* exact */
    const float sign = (next() & 1) ? -1.0f : 1.0f;
    src[m++] = sign * v;
    src[m++] = sign * nextafterf(v, 0.0f);
    src[m++] = sign * nextafterf(v, INFINITY);
  }
  for (int64_t i = 0; i < nrand; i++) {
    const uint32_t bits = next();
    src[m++] = (i & 1) ? ck_bits_f32(bits) : 70000.0f * unit() * ((i & 2) ? 1e-5f : 1.0f);
  }
  for (int64_t i0 = 0; i0 < total;) {
    int64_t n = 1 + (int64_t)(next() % 300);
    if (n > total - i0) n = total - i0;
    uint16_t *ref = malloc(sizeof(uint16_t) * (size_t)(n + 2 * GUARD)), *got = malloc(sizeof(uint16_t) * (size_t)(n + 2 * GUARD));
    memset(ref, 0xA5, sizeof(uint16_t) * (size_t)(n + 2 * GUARD));
    memset(got, 0xA5, sizeof(uint16_t) * (size_t)(n + 2 * GUARD));
    use(CK_ISA_SCALAR); ck_f32_to_f16(src + i0, ref + GUARD, n);
    use(CK_ISA_NEON); ck_f32_to_f16(src + i0, got + GUARD, n);
    t.cases++;
    if (memcmp(ref, got, sizeof(uint16_t) * (size_t)(n + 2 * GUARD)) != 0) {
      int64_t i = 0;
      while (ref[i] == got[i]) i++;
      if (i >= GUARD && i < GUARD + n)
        fail(&t, "float 0x%08x (%.9g): 0x%04x vs scalar 0x%04x", (unsigned)ck_f32_bits(src[i0 + i - GUARD]),
             src[i0 + i - GUARD], (unsigned)got[i], (unsigned)ref[i]);
      else fail(&t, "n %lld: wrote outside the output", (long long)n);
    }
    free(ref); free(got);
    i0 += n;
  }
  free(src);
  report(&t);
}

/* ---- activation quantization ---- */

/* one block of floats of a kind: random at a random magnitude, zero, rounding ties (amax 127 so
   that the multiplier is exactly 1 and halves are ties), tiny with subnormals, one spike, huge.
   Not blocks whose largest magnitude is below about 4e-37: there 1/d overflows to infinity and
   the scalar code's float -> int8 conversion is undefined (no real activation is that small). */
static void activation_block(float *x, int64_t n) {
  const uint32_t kind = next() % 8;
  const float mag = powf(10.0f, (float)(int)(next() % 13) - 6.0f);
  for (int64_t j = 0; j < n; j++) {
    switch (kind) {
      case 0: x[j] = 0.0f; break;
      case 1: x[j] = (float)((int)(next() % 254) - 127) + ((next() & 1) ? 0.5f : 0.0f); break;
      case 2: x[j] = (j & 1) ? 1e-41f * unit() : 1e-36f * unit(); break;  /* some subnormal */
      case 3: x[j] = (next() % 16 == 0) ? mag : 1e-3f * mag * unit(); break;
      case 4: x[j] = 1e30f * unit(); break;
      default: x[j] = mag * unit(); break;
    }
  }
  if (kind == 1) x[next() % (uint32_t)n] = (next() & 1) ? 127.0f : -127.0f;
}

static void check_quantize(int xt, const char *name, int ncases) {
  tally t = { name, 0, 0, 0, 0, 0, 0 };
  const int64_t be = ck_block_elements(xt) > 1 ? ck_block_elements(xt) : 32;
  for (int c = 0; c < ncases; c++) {
    int64_t n = be * (1 + (int64_t)(next() % 16));
    if (ck_block_elements(xt) == 1) n += (int64_t)(next() % 32) - 16;  /* any length for F16, BF16 */
    if (c % 10 == 9 && ck_block_elements(xt) > 1) n += 1 + (int64_t)(next() % 31);  /* a bad length */
    float *x = malloc(sizeof(float) * (size_t)(n + CK_QK_K));
    for (int64_t i = 0; i < n; i += be) activation_block(x + i, be);
    const size_t bytes = (size_t)(n / ck_block_elements(xt) * ck_block_bytes(xt)) + 64;
    uint8_t *ref = malloc(bytes + 128), *got = malloc(bytes + 128);
    memset(ref, 0x5A, bytes + 128); memset(got, 0x5A, bytes + 128);
    use(CK_ISA_SCALAR); const int rr = ck_quantize_row(xt, x, ref + 64, n);
    use(CK_ISA_NEON); const int rg = ck_quantize_row(xt, x, got + 64, n);
    t.cases++;
    if (rr != rg) {
      fail(&t, "n %lld: returned %d, scalar %d", (long long)n, rg, rr);
    } else if (memcmp(ref, got, bytes + 128) != 0) {
      size_t i = 0;
      while (ref[i] == got[i]) i++;
      const int64_t off = (int64_t)i - 64, bb = ck_block_bytes(xt);
      fail(&t, "n %lld: byte %lld (block %lld, offset %lld): 0x%02x vs scalar 0x%02x", (long long)n, (long long)off,
           (long long)(off >= 0 ? off / bb : -1), (long long)(off >= 0 ? off % bb : off), got[i], ref[i]);
    }
    free(x); free(ref); free(got);
  }
  report(&t);
}

/* ---- attention ---- */

static void compose_attention(const float *q, const uint16_t *k, const uint16_t *v, int64_t stride, int64_t n,
                              int64_t hd, float sc, float *scores, float *out) {
  for (int64_t j = 0; j < n; j++) scores[j] = ck_dot_f16_f32(k + j * stride, q, hd) * sc;
  ck_softmax_f32(scores, n);
  for (int64_t j = 0; j < n; j++) scores[j] = ck_f16_to_f32_1(ck_f32_to_f16_1(scores[j]));
  for (int64_t i = 0; i < hd; i++) out[i] = 0.0f;
  for (int64_t j = 0; j < n; j++) ck_axpy_f16_f32(scores[j], v + j * stride, out, hd);
}

static void check_attention(int ncases) {
  tally t = { "attention_f16", 0, 0, 0, 0, 0, 1 };
  static const int hds[] = { 1, 3, 4, 8, 17, 32, 64, 100, 128 };
  for (int c = 0; c < ncases; c++) {
    const int64_t hd = PICK(hds), n = 1 + (int64_t)(next() % 200), stride = hd + (int64_t)(next() % 3);
    const int64_t nq = 1 + (int64_t)(next() % 4);
    const float sc = 1.0f / sqrtf((float)hd) * (1.0f + 3.0f * (float)(next() % 2));
    uint16_t *k = malloc(sizeof(uint16_t) * (size_t)(n * stride)), *v = malloc(sizeof(uint16_t) * (size_t)(n * stride));
    for (int64_t i = 0; i < n * stride; i++) { k[i] = ck_f2h(2.0f * unit()); v[i] = ck_f2h(unit()); }
    float *q = malloc(sizeof(float) * (size_t)(hd * nq));
    for (int64_t i = 0; i < hd * nq; i++) q[i] = ck_h2f(ck_f2h(2.0f * unit()));  /* rounded to half, as callers do */
    float *sref = malloc(sizeof(float) * (size_t)n), *scmp = malloc(sizeof(float) * (size_t)n);
    float *sneon = malloc(sizeof(float) * (size_t)(n * nq)), *smulti = malloc(sizeof(float) * (size_t)(n * nq));
    float *oref = guarded(hd), *ocmp = guarded(hd);
    float *oneon = guarded(hd * nq), *omulti = guarded(hd * nq);
    finite_guards(oref, hd); finite_guards(ocmp, hd); finite_guards(oneon, hd * nq); finite_guards(omulti, hd * nq);
    ck_attention_query qs[4];
    int64_t counts[4];
    for (int64_t i = 0; i < nq; i++) counts[i] = i == 0 ? n : 1 + (int64_t)(next() % (uint32_t)n);
    t.cases++;
    /* several queries at once, under NEON */
    for (int64_t i = 0; i < nq; i++) { qs[i].q = q + i * hd; qs[i].out = omulti + i * hd; qs[i].count = counts[i]; }
    use(CK_ISA_NEON);
    ck_attention_f16_multi(qs, nq, k, v, stride, hd, sc, smulti, n);
    if (!finite_guards_intact(omulti, hd * nq)) { fail(&t, "multi hd %lld n %lld: wrote outside the outputs", (long long)hd, (long long)n); goto next_case; }
    for (int64_t i = 0; i < nq; i++) {
      const float *qi = q + i * hd;
      float *oi = oneon + i * hd;
      use(CK_ISA_NEON);
      ck_attention_f16(qi, k, v, stride, counts[i], hd, sc, sneon + i * n, oi);
      compose_attention(qi, k, v, stride, counts[i], hd, sc, scmp, ocmp);
      if (!finite_guards_intact(oneon, hd * nq) || !finite_guards_intact(ocmp, hd)) {
        fail(&t, "hd %lld n %lld: wrote outside the output", (long long)hd, (long long)counts[i]);
        goto next_case;
      }
      if (memcmp(oi, ocmp, sizeof(float) * (size_t)hd) != 0 || memcmp(sneon + i * n, scmp, sizeof(float) * (size_t)counts[i]) != 0) {
        fail(&t, "hd %lld n %lld: ck_attention_f16 differs from the composition of the NEON dot, softmax and axpy",
             (long long)hd, (long long)counts[i]);
        goto next_case;
      }
      if (memcmp(oi, omulti + i * hd, sizeof(float) * (size_t)hd) != 0 || memcmp(sneon + i * n, smulti + i * n, sizeof(float) * (size_t)counts[i]) != 0) {
        fail(&t, "hd %lld n %lld query %lld of %lld: ck_attention_f16_multi differs from ck_attention_f16",
             (long long)hd, (long long)counts[i], (long long)i, (long long)nq);
        goto next_case;
      }
      /* against the scalar table: each score moves by at most D (the dot bound); a probability
         by its rounding to half (2^-10 relative) plus about 3D; the sum by its own rounding */
      use(CK_ISA_SCALAR);
      ck_attention_f16(qi, k, v, stride, counts[i], hd, sc, sref, oref);
      double dmax = 0;
      for (int64_t j = 0; j < counts[i]; j++) {
        double sa = 0;
        for (int64_t l = 0; l < hd; l++) sa += fabs((double)ck_h2f(k[j * stride + l]) * qi[l]);
        const double d = sum_bound(hd, sa) * sc;
        dmax = d > dmax ? d : dmax;
      }
      for (int64_t l = 0; l < hd; l++) {
        double pv = 0;
        for (int64_t j = 0; j < counts[i]; j++) pv += (double)sref[j] * fabs((double)ck_h2f(v[j * stride + l]));
        const double bound = pv * (1.0 / 1024 + 3 * dmax + (double)(counts[i] + 4) * U) * 1.5;
        if (!within(&t, oi[l], oref[l], bound, 0)) {
          fail(&t, "hd %lld n %lld out[%lld]: %.9g vs scalar %.9g (bound %.3g)", (long long)hd, (long long)counts[i],
               (long long)l, oi[l], oref[l], bound);
          goto next_case;
        }
      }
    }
  next_case:
    free(k); free(v); free(q); free(sref); free(scmp); free(sneon); free(smulti);
    unguard(oref); unguard(ocmp);
    unguard(oneon); unguard(omulti);
  }
  report(&t);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);  /* every line out, even if a kernel crashes the check */
  const int best = ck_isa_best();
  printf("active isa: %s\n", ck_isa_name(ck_isa_active()));
  if (best != CK_ISA_NEON || ck_isa_active() != CK_ISA_NEON) {
    printf("the NEON table is not the active one: not an arm64 build? total: 0 cases, 1 bad\n");
    return 1;
  }
  const int quants[] = { CK_TYPE_Q4_0, CK_TYPE_Q4_1, CK_TYPE_Q5_0, CK_TYPE_Q5_1, CK_TYPE_Q8_0,
                         CK_TYPE_Q2_K, CK_TYPE_Q3_K, CK_TYPE_Q4_K, CK_TYPE_Q5_K, CK_TYPE_Q6_K };
  for (int i = 0; i < 10; i++) check_quant_matmul(quants[i], 150);
  check_float_matmul(CK_TYPE_F32, 100);
  check_float_matmul(CK_TYPE_F16, 100);
  check_float_matmul(CK_TYPE_BF16, 100);
  check_dots(600);
  check_axpy(300);
  check_f16_to_f32();
  check_f32_to_f16();
  check_quantize(CK_TYPE_Q8_0, "quantize_q8_0", 300);
  check_quantize(CK_TYPE_Q8_1, "quantize_q8_1", 300);
  check_quantize(CK_TYPE_Q8_K, "quantize_q8_K", 100);
  check_quantize(CK_TYPE_F16, "quantize_f16", 100);
  check_quantize(CK_TYPE_BF16, "quantize_bf16", 100);
  check_attention(100);
  printf("total: %d cases, %d bad\n", total_cases, total_bad);
  return total_bad != 0;
}
