/* Portable unpacking of K-quant super-blocks into ck_kq_unpacked (see ck_kquant.h). */
#include "ck_kquant.h"
#include "ck_kq_unpack.h"

void ck_kq_unpack_q2_K(const void *blk, ck_kq_unpacked *k) {
  const ck_block_q2_K *b = blk;
  ck_kq_meta_q2_K(b, k);
  for (int h = 0; h < 2; h++)
    for (int j = 0; j < 4; j++)
      for (int l = 0; l < 32; l++) k->u[h * 128 + j * 32 + l] = (b->qs[h * 32 + l] >> (2 * j)) & 3;
}

void ck_kq_unpack_q3_K(const void *blk, ck_kq_unpacked *k) {
  const ck_block_q3_K *b = blk;
  ck_kq_meta_q3_K(b, k);
  for (int h = 0; h < 2; h++)
    for (int j = 0; j < 4; j++)
      for (int l = 0; l < 32; l++) {
        const int lo = (b->qs[h * 32 + l] >> (2 * j)) & 3;
        const int hi = (b->hmask[l] >> (h * 4 + j)) & 1;
        k->u[h * 128 + j * 32 + l] = (uint8_t)(lo | (hi << 2));
      }
}

void ck_kq_unpack_q4_K(const void *blk, ck_kq_unpacked *k) {
  const ck_block_q4_K *b = blk;
  ck_kq_meta_q45_K(b->scales, b->d, b->dmin, k);
  for (int c = 0; c < 4; c++)
    for (int l = 0; l < 32; l++) {
      k->u[c * 64 + l] = b->qs[c * 32 + l] & 0xF;
      k->u[c * 64 + 32 + l] = b->qs[c * 32 + l] >> 4;
    }
}

void ck_kq_unpack_q5_K(const void *blk, ck_kq_unpacked *k) {
  const ck_block_q5_K *b = blk;
  ck_kq_meta_q45_K(b->scales, b->d, b->dmin, k);
  for (int c = 0; c < 4; c++)
    for (int l = 0; l < 32; l++) {
      k->u[c * 64 + l] = (uint8_t)((b->qs[c * 32 + l] & 0xF) | (((b->qh[l] >> (2 * c)) & 1) << 4));
      k->u[c * 64 + 32 + l] = (uint8_t)((b->qs[c * 32 + l] >> 4) | (((b->qh[l] >> (2 * c + 1)) & 1) << 4));
    }
}

void ck_kq_unpack_q6_K(const void *blk, ck_kq_unpacked *k) {
  const ck_block_q6_K *b = blk;
  ck_kq_meta_q6_K(b, k);
  for (int h = 0; h < 2; h++) {
    const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
    uint8_t *u = k->u + 128 * h;
    for (int l = 0; l < 32; l++) {
      u[l] = (uint8_t)((ql[l] & 0xF) | ((qh[l] & 3) << 4));
      u[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
      u[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      u[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
    }
  }
}
