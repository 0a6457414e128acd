/* The shared loop structure of ck_matmul kernels.
   A row kernel (always inlined, so that g is a constant in each copy) computes, for one weight
   row and a group of g <= CK_ACT_GROUP activations, the g dot products, loading (and unpacking)
   each weight block once for the whole group:
     void ROWFN(const uint8_t *wrow, const uint8_t *x, size_t xrow, int64_t nblk, int g, float *s);
   CK_DEFINE_MM_G wraps it into a ck_mm_fn that tiles rows, so that a tile of weight rows stays in
   cache while the activation groups stream past it. G is the largest group: 8 where a kernel
   needs few registers per activation (K-quants), else 4 (CK_DEFINE_MM). */
#ifndef CK_MM_DRIVER_H
#define CK_MM_DRIVER_H

#include "ck_internal.h"

#define CK_ROW_INLINE __attribute__((always_inline)) static inline

#define CK_DEFINE_MM(NAME, ROWFN, ATTR) CK_DEFINE_MM_G(NAME, ROWFN, ATTR, 4)

#define CK_DEFINE_MM_G(NAME, ROWFN, ATTR, G)                                                     \
  ATTR static void NAME(const void *w, size_t wrow, const void *x, size_t xrow, int64_t nblk,    \
                        int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {       \
    const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;                              \
    for (int64_t rt = r0; rt < r1; rt += CK_ROW_TILE) {                                          \
      const int64_t re = rt + CK_ROW_TILE < r1 ? rt + CK_ROW_TILE : r1;                          \
      for (int64_t b0 = 0; b0 < nb;) {                                                           \
        /* groups of G (4 or 8), then one of 4, then the rest */                                 \
        const int64_t rem = nb - b0;                                                             \
        const int g = rem >= (G) ? (G) : rem >= 4 ? 4 : (int)rem;                                \
        for (int64_t r = rt; r < re; r++) {                                                      \
          float s[CK_ACT_GROUP];                                                                 \
          const uint8_t *wr_ = W + (size_t)r * wrow, *xg_ = X + (size_t)b0 * xrow;               \
          /* literal group sizes: each call is specialized, accumulators stay in registers */    \
          if ((G) == 8 && g == 8) ROWFN(wr_, xg_, xrow, nblk, 8, s);                             \
          else switch (g) {                                                                      \
            case 4: ROWFN(wr_, xg_, xrow, nblk, 4, s); break;                                    \
            case 3: ROWFN(wr_, xg_, xrow, nblk, 3, s); break;                                    \
            case 2: ROWFN(wr_, xg_, xrow, nblk, 2, s); break;                                    \
            default: ROWFN(wr_, xg_, xrow, nblk, 1, s); break;                                   \
          }                                                                                      \
          for (int j = 0; j < g; j++) out[(b0 + j) * ostride + r] = s[j];                        \
        }                                                                                        \
        b0 += g;                                                                                 \
      }                                                                                          \
    }                                                                                            \
  }

/* As CK_DEFINE_MM, plus a two-row kernel for a single activation (decode):
     void ROW2FN(const uint8_t *w, size_t wrow, const uint8_t *x, int64_t nblk, float *s2);
   computes rows w and w + wrow against one activation, sharing its loads and scales. */
#define CK_DEFINE_MM_R2(NAME, ROWFN, ROW2FN, ATTR)                                               \
  CK_DEFINE_MM(NAME##_groups, ROWFN, ATTR)                                                       \
  ATTR static void NAME(const void *w, size_t wrow, const void *x, size_t xrow, int64_t nblk,    \
                        int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {       \
    if (nb != 1) {                                                                               \
      NAME##_groups(w, wrow, x, xrow, nblk, r0, r1, nb, out, ostride);                           \
      return;                                                                                    \
    }                                                                                            \
    const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;                              \
    int64_t r = r0;                                                                              \
    for (; r + 2 <= r1; r += 2) ROW2FN(W + (size_t)r * wrow, wrow, X, nblk, out + r);            \
    if (r < r1) ROWFN(W + (size_t)r * wrow, X, xrow, nblk, 1, out + r);                          \
  }

#endif /* CK_MM_DRIVER_H */
