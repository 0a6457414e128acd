/* Internal declarations of CKernels: block layouts (bit-exact ggml/GGUF), half conversions,
   per-ISA kernel tables. Not part of the public header. */
#ifndef CK_INTERNAL_H
#define CK_INTERNAL_H

#include "ckernels.h"
#include <string.h>
#include <math.h>

#define CK_QK 32      /* elements per block of the legacy quants */
#define CK_QK_K 256   /* elements per super-block of the K-quants */
#define CK_K_SCALE_SIZE 12

#if defined(__x86_64__) || defined(__i386__)
#define CK_X86 1
#endif

/* ---- block layouts (all members naturally aligned; sizes asserted below) ---- */

typedef struct { uint16_t d; uint8_t qs[CK_QK / 2]; } ck_block_q4_0;
typedef struct { uint16_t d; uint16_t m; uint8_t qs[CK_QK / 2]; } ck_block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[CK_QK / 2]; } ck_block_q5_0;
typedef struct { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[CK_QK / 2]; } ck_block_q5_1;
typedef struct { uint16_t d; int8_t qs[CK_QK]; } ck_block_q8_0;
/* s = d * sum(qs), stored as half */
typedef struct { uint16_t d; uint16_t s; int8_t qs[CK_QK]; } ck_block_q8_1;

typedef struct {
  uint8_t scales[CK_QK_K / 16];  /* low nibble: scale, high nibble: min, per 16 elements */
  uint8_t qs[CK_QK_K / 4];       /* 2-bit quants */
  uint16_t d;                    /* super-block scale for the scales */
  uint16_t dmin;                 /* super-block scale for the mins */
} ck_block_q2_K;

typedef struct {
  uint8_t hmask[CK_QK_K / 8];    /* high bit of the 3-bit quants */
  uint8_t qs[CK_QK_K / 4];       /* low 2 bits */
  uint8_t scales[12];            /* 16 6-bit scales */
  uint16_t d;
} ck_block_q3_K;

typedef struct {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[CK_K_SCALE_SIZE]; /* 8 6-bit scales and 8 6-bit mins */
  uint8_t qs[CK_QK_K / 2];
} ck_block_q4_K;

typedef struct {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[CK_K_SCALE_SIZE];
  uint8_t qh[CK_QK_K / 8];
  uint8_t qs[CK_QK_K / 2];
} ck_block_q5_K;

typedef struct {
  uint8_t ql[CK_QK_K / 2];
  uint8_t qh[CK_QK_K / 4];
  int8_t scales[CK_QK_K / 16];
  uint16_t d;
} ck_block_q6_K;

typedef struct {
  float d;
  int8_t qs[CK_QK_K];
  int16_t bsums[CK_QK_K / 16];   /* sums of qs in groups of 16 */
} ck_block_q8_K;

_Static_assert(sizeof(ck_block_q4_0) == 18, "q4_0 size");
_Static_assert(sizeof(ck_block_q4_1) == 20, "q4_1 size");
_Static_assert(sizeof(ck_block_q5_0) == 22, "q5_0 size");
_Static_assert(sizeof(ck_block_q5_1) == 24, "q5_1 size");
_Static_assert(sizeof(ck_block_q8_0) == 34, "q8_0 size");
_Static_assert(sizeof(ck_block_q8_1) == 36, "q8_1 size");
_Static_assert(sizeof(ck_block_q2_K) == 84, "q2_K size");
_Static_assert(sizeof(ck_block_q3_K) == 110, "q3_K size");
_Static_assert(sizeof(ck_block_q4_K) == 144, "q4_K size");
_Static_assert(sizeof(ck_block_q5_K) == 176, "q5_K size");
_Static_assert(sizeof(ck_block_q6_K) == 210, "q6_K size");
_Static_assert(sizeof(ck_block_q8_K) == 292, "q8_K size");

/* ---- scalar half / bfloat16 conversions ---- */

static inline uint32_t ck_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float ck_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float ck_h2f(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  if (exp == 0x1Fu) return ck_bits_f32(sign | 0x7F800000u | (man << 13));
  if (exp != 0) return ck_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
  /* zero or subnormal: man * 2^-24 is exact in float */
  const float v = (float)man * 5.9604644775390625e-8f;
  return sign ? -v : v;
}

static inline uint16_t ck_f2h(float f) {
  const uint32_t x = ck_f32_bits(f);
  const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu)); /* NaN, quiet */
  if (ax >= 0x47800000u) {      /* >= 65536: inf, or rounds to inf */
    return (uint16_t)(sign | 0x7C00u);
  }
  if (ax < 0x38800000u) {       /* below 2^-14: half subnormal (or zero) */
    if (ax < 0x33000000u) return sign; /* < 2^-25: rounds to zero (2^-25 exactly is a tie -> 0) */
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126u - e;                 /* 14..24 */
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
  }
  /* normal: rebias exponent, round mantissa to nearest even (carry may bump the exponent) */
  uint32_t r = ax - 0x38000000u;     /* exponent rebias by 112 << 23 */
  const uint32_t rem = r & 0x1FFFu;
  r >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
  return (uint16_t)(sign | r);
}

static inline float ck_bf2f(uint16_t h) { return ck_bits_f32((uint32_t)h << 16); }

static inline uint16_t ck_f2bf(float f) {
  uint32_t u = ck_f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 64u); /* quiet NaN */
  return (uint16_t)((u + (0x7FFFu + ((u >> 16) & 1u))) >> 16);
}

/* Q4_K / Q5_K: scale j and min j (6 bits each) from the 12 packed bytes. */
static inline void ck_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
  if (j < 4) {
    *d = q[j] & 63; *m = q[j + 4] & 63;
  } else {
    *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/* Q3_K: the 16 signed scales (already minus 32). */
static inline void ck_q3k_scales(const uint8_t *s, int8_t out[16]) {
  for (int i = 0; i < 16; i++) {
    const int lo = i < 8 ? (s[i] & 0xF) : (s[i - 8] >> 4);
    const int hi = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
    out[i] = (int8_t)((lo | (hi << 4)) - 32);
  }
}

/* ---- kernel tables ---- */

/* Row-range matmul for one weight type; nblk = blocks per row (k / block elements),
   wrow / xrow = bytes between weight rows / activation rows. Arguments already validated. */
typedef void (*ck_mm_fn)(const void *w, size_t wrow, const void *x, size_t xrow, int64_t nblk,
                         int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride);

typedef struct {
  ck_mm_fn mm[31];            /* indexed by weight type */
  int (*quantize)(int type, const float *src, void *dst, int64_t n); /* NULL: scalar */
  void (*f32_to_f16)(const float *, uint16_t *, int64_t);
  void (*f16_to_f32)(const uint16_t *, float *, int64_t);
  float (*dot_f32)(const float *, const float *, int64_t);
  float (*dot_f16_f32)(const uint16_t *, const float *, int64_t);
  void (*axpy_f16_f32)(float, const uint16_t *, float *, int64_t);
  void (*axpy_f32)(float, const float *, float *, int64_t);
  void (*rmsnorm)(const float *, const float *, float *, int64_t, float);
  void (*silu_mul)(const float *, const float *, float *, int64_t);
  void (*softmax)(float *, int64_t);
  /* row-interleaved (R8) layouts, see ck_repack.h: kernels by weight type, and whether this ISA's
     kernel is faster than ck_matmul on the file layout (what ck_repack_preferred reports) */
  void (*mm_r8[31])(const void *w, const void *x, size_t xrow, int64_t nblk,
                    int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride);
  unsigned char r8_fast[31];
  /* R8 kernels for one activation (decode), where they differ from mm_r8 (NULL: mm_r8). The
     AVX-512 table keeps the AVX2 ones for Q4_0, Q4_1, Q5_0 and Q8_0: decode streams every weight
     from memory once, and those AVX-512 tiles, which read two groups of rows at once (two
     streams), were slower than the AVX2 tiles' single stream with the weights in DRAM (same bits
     either way); the K-quant VNNI kernels stream one group in decode and serve it too */
  void (*mm_r8_one[31])(const void *w, const void *x, size_t xrow, int64_t nblk,
                        int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride);
  /* one query's attention over F16 keys/values (ck_attention_f16); NULL: composed from the above */
  void (*attn_f16)(const float *q, const uint16_t *k, const uint16_t *v, int64_t stride, int64_t n,
                   int64_t hd, float scale, float *scores, float *out);
  /* several queries over one head's keys/values (ck_attention_f16_multi), the same bits per query
     as attn_f16 (or the composition) of this table; NULL: one ck_attention_f16 call per query */
  void (*attn_f16_multi)(const ck_attention_query *qs, int64_t nq, const uint16_t *k, const uint16_t *v,
                         int64_t stride, int64_t hd, float scale, float *scores, int64_t score_stride);
} ck_kernels;

/* Keys or values converted to float per block in ck_attention_f16_multi: this many floats of
   stack (16 KiB), so a block holds CK_ATT_BLOCK_FLOATS / hd positions. */
#define CK_ATT_BLOCK_FLOATS 4096

/* Fill a table; entries an ISA does not implement are left as they are (so fill scalar first). */
void ck_fill_scalar(ck_kernels *k);
void ck_fill_avx2(ck_kernels *k);    /* no-op when not built for x86-64 */
void ck_fill_neon(ck_kernels *k);    /* no-op when not built for arm64 */
/* AVX-512 K-quant matmuls (Q4_K, Q5_K, Q6_K; same bits as the AVX2 ones) over an AVX2 table;
   no-op when not built for x86-64 */
void ck_fill_kq_avx512(ck_kernels *k);

/* The active table (dispatch). */
const ck_kernels *ck_active(void);

/* Scalar pieces shared by paths. */
int ck_quantize_row_scalar(int type, const float *src, void *dst, int64_t n);
void ck_f32_to_f16_scalar(const float *src, uint16_t *dst, int64_t n);
void ck_f16_to_f32_scalar(const uint16_t *src, float *dst, int64_t n);
float ck_dot_f32_scalar(const float *a, const float *b, int64_t n);
float ck_dot_f16_f32_scalar(const uint16_t *a, const float *b, int64_t n);
void ck_axpy_f16_f32_scalar(float a, const uint16_t *x, float *y, int64_t n);
void ck_axpy_f32_scalar(float a, const float *x, float *y, int64_t n);
void ck_rmsnorm_f32_scalar(const float *x, const float *w, float *y, int64_t n, float eps);
void ck_silu_mul_f32_scalar(const float *g, const float *u, float *y, int64_t n);
void ck_softmax_f32_scalar(float *x, int64_t n);

/* Rows per tile in matmul: keeps a tile of weight rows hot in L1/L2 while activations stream. */
#define CK_ROW_TILE 16
/* Activations processed together against one loaded weight block. */
#define CK_ACT_GROUP 8

#endif /* CK_INTERNAL_H */
