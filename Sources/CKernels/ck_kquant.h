/* K-quant super-blocks unpacked into one common shape, shared by the scalar and SIMD dot kernels.
   A weight super-block of any K-quant type contributes to dot(w, y) (y a Q8_K block):
     y.d * ( d  * sum_g sc[g] * sum_{i in g} u[i] * y.qs[i]
           - dm * sum_g mn[g] * y.bsums[g] )
   where g runs over the 16 groups of 16 elements, u are unsigned quants (0..63) and
   the offsets of signed formats (Q3_K: -4, Q6_K: -32) are folded into mn. The integer sums are
   exactly ggml's, only the final float combination may round differently. */
#ifndef CK_KQUANT_H
#define CK_KQUANT_H

#include "ck_internal.h"

typedef struct {
  _Alignas(32) uint8_t u[CK_QK_K];
  _Alignas(32) int16_t sc[16];
  _Alignas(32) int16_t mn[16];
  float d;
  float dm;
} ck_kq_unpacked;

/* Integer part of the mins: sum_g mn[g] * bsums[g]. */
static inline int32_t ck_kq_mins(const ck_kq_unpacked *k, const int16_t *bsums) {
  int32_t s = 0;
  for (int g = 0; g < 16; g++) s += (int32_t)k->mn[g] * bsums[g];
  return s;
}

/* Scales/mins of each type (the quants u are unpacked by the caller, scalar or SIMD). */
static inline void ck_kq_meta_q2_K(const ck_block_q2_K *b, ck_kq_unpacked *k) {
  for (int g = 0; g < 16; g++) { k->sc[g] = b->scales[g] & 0xF; k->mn[g] = b->scales[g] >> 4; }
  k->d = ck_h2f(b->d); k->dm = ck_h2f(b->dmin);
}

static inline void ck_kq_meta_q3_K(const ck_block_q3_K *b, ck_kq_unpacked *k) {
  int8_t sc[16];
  ck_q3k_scales(b->scales, sc);
  for (int g = 0; g < 16; g++) { k->sc[g] = sc[g]; k->mn[g] = (int16_t)(4 * sc[g]); }
  k->d = k->dm = ck_h2f(b->d);
}

static inline void ck_kq_meta_q45_K(const uint8_t *scales, uint16_t d, uint16_t dmin, ck_kq_unpacked *k) {
  for (int j = 0; j < 8; j++) {
    uint8_t s, m;
    ck_scale_min_k4(j, scales, &s, &m);
    k->sc[2 * j] = k->sc[2 * j + 1] = s;
    k->mn[2 * j] = k->mn[2 * j + 1] = m;
  }
  k->d = ck_h2f(d); k->dm = ck_h2f(dmin);
}

static inline void ck_kq_meta_q6_K(const ck_block_q6_K *b, ck_kq_unpacked *k) {
  for (int g = 0; g < 16; g++) { k->sc[g] = b->scales[g]; k->mn[g] = (int16_t)(32 * b->scales[g]); }
  k->d = k->dm = ck_h2f(b->d);
}

#endif /* CK_KQUANT_H */
