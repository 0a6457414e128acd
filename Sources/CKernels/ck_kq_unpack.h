/* Portable K-quant unpackers (ck_kq_unpack.c). */
#ifndef CK_KQ_UNPACK_H
#define CK_KQ_UNPACK_H
#include "ck_kquant.h"
typedef void (*ck_kq_unpack_fn)(const void *blk, ck_kq_unpacked *k);
void ck_kq_unpack_q2_K(const void *blk, ck_kq_unpacked *k);
void ck_kq_unpack_q3_K(const void *blk, ck_kq_unpacked *k);
void ck_kq_unpack_q4_K(const void *blk, ck_kq_unpacked *k);
void ck_kq_unpack_q5_K(const void *blk, ck_kq_unpacked *k);
void ck_kq_unpack_q6_K(const void *blk, ck_kq_unpacked *k);
#endif
