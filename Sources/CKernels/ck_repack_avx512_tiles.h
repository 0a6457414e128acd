/* The AVX-512 R8 kernels, as a template: ck_repack_avx512.c includes this file twice, with
   CK512_V = 0 (AVX-512 F+BW+VL: integer products by maddubs + madd, as the AVX2 kernels) and
   CK512_V = 1 (plus VNNI: vpdpbusd adds four u8 x s8 products into each int32 lane). The two
   variants differ only in how they form the exact integer sums of a block; the float operations
   of each lane are ck_repack.h's, so both give the scalar kernels' bits.
   A tile is two groups of 8 rows (16 rows: group a in lanes 0-7, group b in lanes 8-15; b == a
   for a lone last group, whose upper lanes are then not stored) x up to R16_ACTS activations. No
   include guard on purpose. */

#if CK512_V
#define CK512_IN CK_AVX512_VNNI_INLINE
#define CK512_FN CK_AVX512_VNNI static
#define CK512_N(name) name##_vnni
#else
#define CK512_IN CK_AVX512_INLINE
#define CK512_FN CK_AVX512 static
#define CK512_N(name) name##_bw
#endif

/* ---- Q4_0 / Q5_0 (unsigned quants u, isum = sum(u*y) - off * sum(y)) and Q8_0 ----
   kind 0: Q4_0, 1: Q5_0, 2: Q8_0. offs[a * nblk + i]: the integer to subtract for activation a,
   block i (Q4_0: 8 * sum(y), Q5_0: 16 * sum(y); Q8_0: 128 * sum(y) in the VNNI variant, which
   multiplies w + 128 as an unsigned byte; the BW variant multiplies |w| by y with w's sign). */
CK512_IN void CK512_N(r16_tile)(const uint8_t *ga, const uint8_t *gb, const uint8_t *x, size_t xrow,
                                int64_t nblk, int A, const int32_t *offs, __m512 *res, const int kind,
                                const int64_t pf) {
  __m512 acc[R16_ACTS];
  for (int a = 0; a < R16_ACTS; a++) acc[a] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F), b4 = _mm512_set1_epi8(0x10);
#if !CK512_V
  const __m512i ones = _mm512_set1_epi16(1);
#endif
  const int five = kind == 1;
  const int64_t rb = r16_block_bytes(kind), qoff = five ? 48 : 16;
  for (int64_t i = 0; i < nblk; i++) {
    const uint8_t *oa = ga + i * rb, *ob = gb + i * rb;
    r16_prefetch(oa, rb, pf);
    r16_prefetch(ob, rb, ob != oa ? pf : 0);
    const __m512 d16 = r16_halves(oa, ob);
    __m512i s[R16_ACTS];
#if !CK512_V
    __m512i t[R16_ACTS], u[R16_ACTS];
    for (int a = 0; a < A; a++) t[a] = u[a] = _mm512_setzero_si512();
#endif
    for (int a = 0; a < A; a++) s[a] = _mm512_setzero_si512();
    if (kind == 2) {
#if !CK512_V
      const __m512i zero = _mm512_setzero_si512();
#endif
      for (int c = 0; c < 8; c++) {
        const __m512i R = r16_load(oa + 16 + 32 * c, ob + 16 + 32 * c);
#if CK512_V
        const __m512i U = _mm512_xor_si512(R, _mm512_set1_epi8((char)0x80));  /* w + 128 */
        for (int a = 0; a < A; a++) {
          const int8_t *q = ((const ck_block_q8_0 *)(x + a * xrow) + i)->qs;
          s[a] = _mm512_dpbusd_epi32(s[a], U, r16_bcast(q + 4 * c));
        }
#else
        /* |w| (128 for -128, as unsigned) x (y negated where w < 0): |pair| <= 2*128*127 */
        const __m512i aw = _mm512_abs_epi8(R);
        const __mmask64 neg = _mm512_movepi8_mask(R);
        for (int a = 0; a < A; a++) {
          const int8_t *q = ((const ck_block_q8_0 *)(x + a * xrow) + i)->qs;
          const __m512i yb = r16_bcast(q + 4 * c);
          const __m512i p = _mm512_maddubs_epi16(aw, _mm512_mask_sub_epi8(yb, neg, zero, yb));
          s[a] = _mm512_add_epi32(s[a], _mm512_madd_epi16(p, ones));
        }
#endif
      }
    } else {
      const __m512i H = five ? r16_load(oa + 16, ob + 16) : _mm512_setzero_si512();
      for (int h = 0; h < 4; h++) {
        const __m512i R = r16_load(oa + qoff + 32 * h, ob + qoff + 32 * h);
        __m512i lo = _mm512_and_si512(R, m4), hi = _mm512_and_si512(_mm512_srli_epi16(R, 4), m4);
        if (five) {  /* fifth bits: lo element's at bit h of H, hi element's at bit 4 + h */
          __m512i hl, hh;
          switch (h) {  /* immediate shift counts */
            case 0: hl = _mm512_slli_epi16(H, 4); hh = H; break;
            case 1: hl = _mm512_slli_epi16(H, 3); hh = _mm512_srli_epi16(H, 1); break;
            case 2: hl = _mm512_slli_epi16(H, 2); hh = _mm512_srli_epi16(H, 2); break;
            default: hl = _mm512_slli_epi16(H, 1); hh = _mm512_srli_epi16(H, 3); break;
          }
          lo = _mm512_or_si512(lo, _mm512_and_si512(hl, b4));
          hi = _mm512_or_si512(hi, _mm512_and_si512(hh, b4));
        }
        for (int a = 0; a < A; a++) {
          const int8_t *q = ((const ck_block_q8_0 *)(x + a * xrow) + i)->qs;
#if CK512_V
          s[a] = _mm512_dpbusd_epi32(s[a], lo, r16_bcast(q + 4 * h));
          s[a] = _mm512_dpbusd_epi32(s[a], hi, r16_bcast(q + 16 + 4 * h));
#else
          const __m512i pl = _mm512_maddubs_epi16(lo, r16_bcast(q + 4 * h));
          const __m512i ph = _mm512_maddubs_epi16(hi, r16_bcast(q + 16 + 4 * h));
          if (five) {  /* |pair| <= 31*127*2: four chunks per int16 sum */
            t[a] = _mm512_add_epi16(t[a], pl);
            u[a] = _mm512_add_epi16(u[a], ph);
          } else {     /* |pair| <= 15*127*2: all eight */
            t[a] = _mm512_add_epi16(t[a], _mm512_add_epi16(pl, ph));
          }
#endif
        }
      }
#if !CK512_V
      for (int a = 0; a < A; a++) {
        s[a] = _mm512_madd_epi16(t[a], ones);
        if (five) s[a] = _mm512_add_epi32(s[a], _mm512_madd_epi16(u[a], ones));
      }
#endif
    }
    for (int a = 0; a < A; a++) {
      const ck_block_q8_0 *y = (const ck_block_q8_0 *)(x + a * xrow) + i;
      __m512i si = s[a];
      if (kind != 2 || CK512_V) si = _mm512_sub_epi32(si, _mm512_set1_epi32(offs[a * nblk + i]));
      const __m512 scale = _mm512_mul_ps(d16, _mm512_set1_ps(ck512_h2f(y->d)));
      acc[a] = _mm512_fmadd_ps(scale, ck512_cvtepi32_ps(si), acc[a]);
    }
  }
  for (int a = 0; a < A; a++) res[a] = acc[a];
}

/* groups [gs, ge) in pairs x activations xa (A of them, literal in each copy) */
CK512_IN void CK512_N(r16_groups)(const uint8_t *W, int64_t gstride, int64_t gs, int64_t ge,
                                  const uint8_t *xa, size_t xrow, int64_t nblk, int A,
                                  const int32_t *offs, int64_t r0, int64_t r1, float *out,
                                  int64_t ostride, const int kind, const int64_t pf) {
  for (int64_t g = gs; g < ge; g += 2) {
    const int two = g + 1 < ge;
    __m512 res[R16_ACTS];
    CK512_N(r16_tile)(W + g * gstride, W + (two ? g + 1 : g) * gstride, xa, xrow, nblk, A, offs,
                      res, kind, pf);
    for (int a = 0; a < A; a++) r16_out(res[a], g, two, r0, r1, out + a * ostride);
  }
}

CK512_IN void CK512_N(r16_groups_n)(const uint8_t *W, int64_t gstride, int64_t gs, int64_t ge,
                                    const uint8_t *xa, size_t xrow, int64_t nblk, int A,
                                    const int32_t *offs, int64_t r0, int64_t r1, float *out,
                                    int64_t ostride, const int kind, const int64_t pf) {
  switch (A) {
    case 4: CK512_N(r16_groups)(W, gstride, gs, ge, xa, xrow, nblk, 4, offs, r0, r1, out, ostride, kind, pf); break;
    case 3: CK512_N(r16_groups)(W, gstride, gs, ge, xa, xrow, nblk, 3, offs, r0, r1, out, ostride, kind, pf); break;
    case 2: CK512_N(r16_groups)(W, gstride, gs, ge, xa, xrow, nblk, 2, offs, r0, r1, out, ostride, kind, pf); break;
    default: CK512_N(r16_groups)(W, gstride, gs, ge, xa, xrow, nblk, 1, offs, r0, r1, out, ostride, kind, pf); break;
  }
}

/* Small batches (nb <= R16_ACTS; one activation only when called directly, see mm_r8_one):
   one pass over all groups, prefetching. Larger batches: row blocks of R16_ROW_BLOCK groups
   (L2-resident) while the activations stream past. */
CK512_IN void CK512_N(r16_mm)(const void *w, const void *x, size_t xrow, int64_t nblk, int64_t r0,
                              int64_t r1, int64_t nb, float *out, int64_t ostride, const int kind) {
  const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;
  const int64_t g0 = r0 / CK_R8, g1 = (r1 + CK_R8 - 1) / CK_R8, gstride = nblk * r16_block_bytes(kind);
  const int32_t mult = kind == 0 ? 8 : kind == 1 ? 16 : (CK512_V ? 128 : 0);
  int32_t offs[R16_ACTS * nblk];
  if (nb <= R16_ACTS) {
    r16_offsets(X, xrow, nblk, (int)nb, mult, offs);
    CK512_N(r16_groups_n)(W, gstride, g0, g1, X, xrow, nblk, (int)nb, offs, r0, r1, out, ostride, kind,
                          r16_prefetch_distance(gstride));
    return;
  }
  for (int64_t gb = g0; gb < g1; gb += R16_ROW_BLOCK) {
    const int64_t ge = gb + R16_ROW_BLOCK < g1 ? gb + R16_ROW_BLOCK : g1;
    for (int64_t a0 = 0; a0 < nb; a0 += R16_ACTS) {
      const int A = nb - a0 < R16_ACTS ? (int)(nb - a0) : R16_ACTS;
      const uint8_t *xa = X + a0 * xrow;
      r16_offsets(xa, xrow, nblk, A, mult, offs);
      CK512_N(r16_groups_n)(W, gstride, gb, ge, xa, xrow, nblk, A, offs, r0, r1, out + a0 * ostride,
                            ostride, kind, 0);
    }
  }
}

CK512_FN void CK512_N(mm_r16_q4_0)(const void *w, const void *x, size_t xrow, int64_t nblk,
                                   int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  CK512_N(r16_mm)(w, x, xrow, nblk, r0, r1, nb, out, ostride, 0);
}

CK512_FN void CK512_N(mm_r16_q5_0)(const void *w, const void *x, size_t xrow, int64_t nblk,
                                   int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  CK512_N(r16_mm)(w, x, xrow, nblk, r0, r1, nb, out, ostride, 1);
}

CK512_FN void CK512_N(mm_r16_q8_0)(const void *w, const void *x, size_t xrow, int64_t nblk,
                                   int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  CK512_N(r16_mm)(w, x, xrow, nblk, r0, r1, nb, out, ostride, 2);
}

/* ---- Q4_1 x Q8_1: ggml's order (see ck_repack_avx2.c): accumulator c holds chunk c of the 16
   rows, summed at the end in hsum_float_8's order, then the min term. A activations per tile
   (1 or 2, literal in each copy), each with its own 8 accumulators and the same operations as
   alone: two share the weights' loads and nibble unpacking (18 of the 32 registers). */
CK512_IN void CK512_N(r16_q4_1_n)(const uint8_t *ga, const uint8_t *gb, const uint8_t *xa, size_t xrow,
                                  int64_t nblk, const int A, const int64_t pf, __m512 *res) {
  __m512 acc[2][8], macc[2];
  for (int a = 0; a < A; a++) {
    for (int c = 0; c < 8; c++) acc[a][c] = _mm512_setzero_ps();
    macc[a] = _mm512_setzero_ps();
  }
  const __m512i m4 = _mm512_set1_epi8(0x0F);
#if !CK512_V
  const __m512i ones = _mm512_set1_epi16(1);
#endif
  for (int64_t i = 0; i < nblk; i++) {
    const uint8_t *oa = ga + i * 160, *ob = gb + i * 160;
    r16_prefetch(oa, 160, pf);
    r16_prefetch(ob, 160, ob != oa ? pf : 0);
    const __m512 d16 = r16_halves(oa, ob), m16 = r16_halves(oa + 16, ob + 16);
    const ck_block_q8_1 *y[2];
    __m512 scale[2];
    for (int a = 0; a < A; a++) {
      y[a] = (const ck_block_q8_1 *)(xa + a * xrow) + i;
      scale[a] = _mm512_mul_ps(d16, _mm512_set1_ps(ck512_h2f(y[a]->d)));
    }
    for (int h = 0; h < 4; h++) {
      const __m512i R = r16_load(oa + 32 + 32 * h, ob + 32 + 32 * h);
      const __m512i lo = _mm512_and_si512(R, m4), hi = _mm512_and_si512(_mm512_srli_epi16(R, 4), m4);
      for (int a = 0; a < A; a++) {
        const __m512i yl = r16_bcast(y[a]->qs + 4 * h), yh = r16_bcast(y[a]->qs + 16 + 4 * h);
#if CK512_V
        const __m512i pl = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, yl);
        const __m512i ph = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, yh);
#else
        const __m512i pl = _mm512_madd_epi16(_mm512_maddubs_epi16(lo, yl), ones);
        const __m512i ph = _mm512_madd_epi16(_mm512_maddubs_epi16(hi, yh), ones);
#endif
        acc[a][h] = _mm512_fmadd_ps(scale[a], ck512_cvtepi32_ps(pl), acc[a][h]);
        acc[a][h + 4] = _mm512_fmadd_ps(scale[a], ck512_cvtepi32_ps(ph), acc[a][h + 4]);
      }
    }
    for (int a = 0; a < A; a++) macc[a] = _mm512_fmadd_ps(m16, _mm512_set1_ps(ck512_h2f(y[a]->s)), macc[a]);
  }
  for (int a = 0; a < A; a++) {
    const __m512 *c = acc[a];
    const __m512 r = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c[0], c[4]), _mm512_add_ps(c[2], c[6])),
                                   _mm512_add_ps(_mm512_add_ps(c[1], c[5]), _mm512_add_ps(c[3], c[7])));
    res[a] = _mm512_add_ps(r, macc[a]);
  }
}

CK512_FN void CK512_N(mm_r16_q4_1)(const void *w, const void *x, size_t xrow, int64_t nblk,
                                   int64_t r0, int64_t r1, int64_t nb, float *out, int64_t ostride) {
  const uint8_t *W = (const uint8_t *)w, *X = (const uint8_t *)x;
  const int64_t g0 = r0 / CK_R8, g1 = (r1 + CK_R8 - 1) / CK_R8, gstride = nblk * 160;
  const int64_t distance = r16_prefetch_distance(gstride);
  for (int64_t gb = g0; gb < g1; gb += R16_ROW_BLOCK) {
    const int64_t ge = gb + R16_ROW_BLOCK < g1 ? gb + R16_ROW_BLOCK : g1;
    for (int64_t b = 0; b < nb; b += 2) {
      const int A = nb - b >= 2 ? 2 : 1;
      /* the first pass over a row block streams it from memory: prefetch there (later passes
         find it in L2) */
      const int64_t pf = b == 0 ? distance : 0;
      for (int64_t g = gb; g < ge; g += 2) {
        const int two = g + 1 < ge;
        const uint8_t *wa = W + g * gstride, *wb = W + (two ? g + 1 : g) * gstride;
        __m512 v[2];
        if (A == 2) CK512_N(r16_q4_1_n)(wa, wb, X + b * xrow, xrow, nblk, 2, pf, v);
        else CK512_N(r16_q4_1_n)(wa, wb, X + b * xrow, xrow, nblk, 1, pf, v);
        for (int a = 0; a < A; a++) r16_out(v[a], g, two, r0, r1, out + (b + a) * ostride);
      }
    }
  }
}

static void CK512_N(fill)(ck_mm_r8_fn *tab) {
  tab[CK_TYPE_Q4_0] = CK512_N(mm_r16_q4_0);
  tab[CK_TYPE_Q5_0] = CK512_N(mm_r16_q5_0);
  tab[CK_TYPE_Q4_1] = CK512_N(mm_r16_q4_1);
  tab[CK_TYPE_Q8_0] = CK512_N(mm_r16_q8_0);
}

#undef CK512_IN
#undef CK512_FN
#undef CK512_N
