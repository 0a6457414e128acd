/*
 * CKernels: the hot loops of Caravan's inference engine.
 *
 * Block formats, dequantization, activation quantization and quantized matrix
 * products with the same memory layouts and numerics as ggml / GGUF, with a
 * portable scalar path and SIMD paths (AVX2+FMA+F16C on x86-64, NEON on arm64)
 * chosen at run time.
 *
 * All functions are pure functions of their arguments (thread-safe) and never
 * allocate, except that the ISA choice is a process-wide setting.
 *
 * Numerics: dequantization is bit-exact with ggml / gguf-py. The scalar path quantizes activations
 * exactly as ggml's reference quantizers (quantize_row_q8_0_ref, _q8_1_ref, _q8_K_ref); the AVX2
 * path exactly as ggml's x86 runtime ones (Q8_0/Q8_1: multiplier 127/amax, ties to even; Q8_K: the
 * reference). Matmul integer sums inside blocks equal ggml's. The AVX2 matmul for every quantized
 * weight type (Q4_0..Q8_0, Q2_K..Q6_K) is bit-identical with ggml's AVX2 vec_dot (same integer
 * lanes, fma order and horizontal sums); so are F16 weights and ck_dot_f16_f32 (ggml_vec_dot_f16),
 * and F32 weights and ck_dot_f32 when k is a multiple of 32. Other paths (scalar, NEON, BF16)
 * agree with ggml within float rounding.
 *
 * Batch invariance: for a given ISA, the result for (weight row r, activation b) is bit-identical
 * however ck_matmul is called: nb = 1 or more, b's position in the batch, the row range and how
 * rows are split across calls or threads.
 *
 * Buffers: block data must be at least 2-byte aligned (Q8_K activations 4-byte aligned), as
 * GGUF tensor data and ordinary allocations are.
 */
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Tensor type ids: the same numbers as ggml's GGML_TYPE_* (and GGUF's tensor type field). */
enum {
  CK_TYPE_F32 = 0, CK_TYPE_F16 = 1, CK_TYPE_Q4_0 = 2, CK_TYPE_Q4_1 = 3, CK_TYPE_Q5_0 = 6,
  CK_TYPE_Q5_1 = 7, CK_TYPE_Q8_0 = 8, CK_TYPE_Q8_1 = 9, CK_TYPE_Q2_K = 10, CK_TYPE_Q3_K = 11,
  CK_TYPE_Q4_K = 12, CK_TYPE_Q5_K = 13, CK_TYPE_Q6_K = 14, CK_TYPE_Q8_K = 15, CK_TYPE_BF16 = 30
};

/** 1 if this library knows the type (block layout), else 0. */
int     ck_type_supported(int type);
/** Elements per block (1 for F32/F16/BF16), 0 for an unknown type. */
int64_t ck_block_elements(int type);
/** Bytes per block, 0 for an unknown type. */
int64_t ck_block_bytes(int type);
/** Bytes of n elements of the type; n must be a multiple of the block size (else 0). */
int64_t ck_row_bytes(int type, int64_t n);
/** Short ggml-style name of the type ("q4_K", "f16", ...), or "?" if unknown. */
const char *ck_type_name(int type);

/** Weights -> float. Returns 0, or -1 for an unsupported type or bad n. */
int ck_dequantize_row(int type, const void *src, float *dst, int64_t n);

/** The activation type a weight type is multiplied with (as ggml: Q4_0,Q5_0,Q8_0 -> Q8_0;
    Q4_1,Q5_1 -> Q8_1; K-quants -> Q8_K; F16 -> F16; BF16 -> BF16; F32 -> F32), -1 if none. */
int ck_vec_dot_type(int weight_type);
/** Float activations -> activation type (F32, F16, BF16, Q8_0, Q8_1, Q8_K),
    with ggml's reference numerics. Returns 0, or -1 for another type or bad n. */
int ck_quantize_row(int type, const float *src, void *dst, int64_t n);

/** Matrix product on quantized blocks, for a range of weight rows (so callers split rows across
    threads): for r in [r0, r1), b in [0, nb):  out[b * out_stride + r] = dot(W row r, activation b).
    W: rows of k elements of wtype, ck_row_bytes(wtype, k) bytes apart.
    x: nb activations, each k elements already quantized to ck_vec_dot_type(wtype),
       ck_row_bytes(ck_vec_dot_type(wtype), k) bytes apart.
    Each loaded weight block is reused for a group of activations (4, or 8 for K-quants); the
    result of each output does not depend on the grouping (see batch invariance above).
    Returns 0, or -1 (unsupported type, k not a multiple of the block size, bad range).
    No allocation, thread-safe. */
int ck_matmul(int wtype, const void *w, const void *x, int64_t k,
              int64_t r0, int64_t r1, int64_t nb, float *out, int64_t out_stride);

/* Load-time repacking (extension): Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K and Q6_K matrices can be
   rearranged once into a row-interleaved layout (groups of 8 rows, 4-byte chunks of the 8 rows
   side by side, the same bytes as the file) whose kernels compute 8 rows against one activation
   block at once. For Q4_0, Q5_0, Q8_0 and the K-quants the float summation order differs from
   ck_matmul's (ggml's vec_dot order): results agree to a few ulps of the dot product's magnitude;
   Q4_1 keeps ggml's order (same bits as ck_matmul with AVX2). All are bit-identical among
   themselves however a product is split or batched, and on every ISA. Which types an ISA repacks
   is ck_repack_preferred's answer (Q6_K only with AVX-512 VNNI). */
/** 1 if the active ISA multiplies wtype faster repacked than in the file layout. */
int ck_repack_preferred(int wtype);
/** Bytes of the repacked layout of a rows x k matrix (rows padded to a multiple of 8), or 0
    when wtype has no repacked layout or k is not a multiple of its block (32; K-quants 256). */
int64_t ck_repack_bytes(int wtype, int64_t rows, int64_t k);
/** Repacks rows x k weights from the file layout (src) into dst (ck_repack_bytes bytes,
    64-byte alignment advised). Returns 0 or -1. */
int ck_repack(int wtype, const void *src, void *dst, int64_t rows, int64_t k);
/** ck_matmul on a repacked matrix w (same arguments and activation type). Returns 0 or -1. */
int ck_matmul_repacked(int wtype, const void *w, const void *x, int64_t k,
                       int64_t r0, int64_t r1, int64_t nb, float *out, int64_t out_stride);
/** Dequantizes row r of a repacked matrix (k columns) into dst; same values as
    ck_dequantize_row on the file's row. Returns 0 or -1. */
int ck_dequantize_repacked_row(int wtype, const void *w, int64_t k, int64_t r, float *dst);

/** float -> IEEE half, round to nearest even. */
void  ck_f32_to_f16(const float *src, uint16_t *dst, int64_t n);
/** IEEE half -> float (exact). */
void  ck_f16_to_f32(const uint16_t *src, float *dst, int64_t n);
/** float -> bfloat16, round to nearest even (NaN stays a quiet NaN), as ggml. */
void  ck_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);
/** bfloat16 -> float (exact). */
void  ck_bf16_to_f32(const uint16_t *src, float *dst, int64_t n);
/** One half -> float. */
float ck_f16_to_f32_1(uint16_t h);
/** One float -> half (round to nearest even). */
uint16_t ck_f32_to_f16_1(float f);
/** sum a[i] * b[i]. */
float ck_dot_f32(const float *a, const float *b, int64_t n);
/** sum half(a[i]) * b[i]. */
float ck_dot_f16_f32(const uint16_t *a, const float *b, int64_t n);
/** y += a * x, x in half precision. */
void  ck_axpy_f16_f32(float a, const uint16_t *x, float *y, int64_t n);
/** y += a * x. */
void  ck_axpy_f32(float a, const float *x, float *y, int64_t n);

/* Extras (not in the original contract): ggml-style norms and activations. */
/** RMS norm as ggml: y = x / sqrt(mean(x^2) + eps) (sum of squares in double), then * w
    elementwise when w is not NULL. y may alias x. */
void  ck_rmsnorm_f32(const float *x, const float *w, float *y, int64_t n, float eps);
/** SwiGLU product: y = silu(g) * u with silu(v) = v / (1 + exp(-v)). y may alias g or u. */
void  ck_silu_mul_f32(const float *g, const float *u, float *y, int64_t n);
/** In-place softmax: x = exp(x - max) / sum (sum in double). -inf entries give 0. */
void  ck_softmax_f32(float *x, int64_t n);

/** Attention of one query (hd floats, already rounded to half as llama.cpp does) over n cached
    positions: keys and values are F16 rows of hd elements, `stride` elements apart.
    scores[j] = ck_dot_f16_f32(key j, q, hd) * scale; softmax; probabilities rounded to half;
    out = sum_j p_j * value j, accumulated in j order one fma per element (as zeroing out and
    calling ck_axpy_f16_f32 per key). The same bits as that composition. scores: n floats of
    scratch (left holding the rounded probabilities). */
void  ck_attention_f16(const float *q, const uint16_t *keys, const uint16_t *values, int64_t stride,
                       int64_t n, int64_t hd, float scale, float *scores, float *out);

/** One query of ck_attention_f16_multi: hd floats at q (rounded to half), attending to the first
    count positions; hd floats of result at out. */
typedef struct {
  const float *q;
  float *out;
  int64_t count;
} ck_attention_query;

/** Attention of nq queries over the same head's cached keys and values (the query heads of one
    KV head, and/or consecutive positions of one sequence, each with its own count): each block of
    keys and values is converted from half once and used by every query. Query t's output has the
    same bits as ck_attention_f16(qs[t].q, keys, values, stride, qs[t].count, hd, scale, ...) on
    the same ISA. scores: nq * score_stride floats of scratch (score_stride >= every count);
    row t is left holding query t's rounded probabilities. No allocation. */
void  ck_attention_f16_multi(const ck_attention_query *qs, int64_t nq, const uint16_t *keys,
                             const uint16_t *values, int64_t stride, int64_t hd, float scale,
                             float *scores, int64_t score_stride);

/** Reads n bytes at src once, as fast as plain loads go (the memory bandwidth probe of
    `caravan bench`); returns a value folded from them so that the reads happen. */
uint64_t ck_read_bytes(const void *src, size_t n);

/** Instruction set dispatch: chosen once at first use from cpuid; tests can force a path. */
enum { CK_ISA_SCALAR = 0, CK_ISA_AVX2 = 1, CK_ISA_AVX512 = 2, CK_ISA_NEON = 3 };
/** Best instruction set this CPU supports and this library implements: on x86-64, AVX-512
    (F + BW + VL, with AVX2, FMA and F16C), else AVX2 (with FMA and F16C); NEON on arm64; else
    scalar. The AVX-512 path is the AVX2 one with AVX-512 kernels for the repacked matmuls
    (ck_matmul_repacked of Q4_0, Q4_1, Q5_0, Q8_0, and with AVX512-VNNI their VNNI variants and
    those of Q4_K, Q5_K, Q6_K) and for ck_matmul of Q4_K, Q5_K and Q6_K, the same bits as the AVX2
    and scalar ones; CK_NO_AVX512=1 in the environment keeps AVX2. */
int ck_isa_best(void);
/** Instruction set currently used. */
int ck_isa_active(void);
/** Force an instruction set (scalar, the best one, or AVX2 on an AVX-512 CPU; any other request
    gets the best one); returns the one now active.
    Process-wide: meant for tests and benchmarks, not to be flipped while kernels run. */
int ck_set_isa(int isa);
/** "scalar", "avx2", "avx512", "neon", or "?". */
const char *ck_isa_name(int isa);

#ifdef __cplusplus
}
#endif

#endif /* CKERNELS_H */
