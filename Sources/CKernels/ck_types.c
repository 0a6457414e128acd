/* Type table: block sizes and names of the supported ggml tensor types. */
#include "ck_internal.h"

typedef struct { int type; int64_t elems; int64_t bytes; const char *name; int vec_dot; } ck_type_info;

static const ck_type_info ck_types[] = {
  { CK_TYPE_F32,  1,       4,                      "f32",  CK_TYPE_F32 },
  { CK_TYPE_F16,  1,       2,                      "f16",  CK_TYPE_F16 },
  { CK_TYPE_Q4_0, CK_QK,   sizeof(ck_block_q4_0),  "q4_0", CK_TYPE_Q8_0 },
  { CK_TYPE_Q4_1, CK_QK,   sizeof(ck_block_q4_1),  "q4_1", CK_TYPE_Q8_1 },
  { CK_TYPE_Q5_0, CK_QK,   sizeof(ck_block_q5_0),  "q5_0", CK_TYPE_Q8_0 },
  { CK_TYPE_Q5_1, CK_QK,   sizeof(ck_block_q5_1),  "q5_1", CK_TYPE_Q8_1 },
  { CK_TYPE_Q8_0, CK_QK,   sizeof(ck_block_q8_0),  "q8_0", CK_TYPE_Q8_0 },
  { CK_TYPE_Q8_1, CK_QK,   sizeof(ck_block_q8_1),  "q8_1", -1 },
  { CK_TYPE_Q2_K, CK_QK_K, sizeof(ck_block_q2_K),  "q2_K", CK_TYPE_Q8_K },
  { CK_TYPE_Q3_K, CK_QK_K, sizeof(ck_block_q3_K),  "q3_K", CK_TYPE_Q8_K },
  { CK_TYPE_Q4_K, CK_QK_K, sizeof(ck_block_q4_K),  "q4_K", CK_TYPE_Q8_K },
  { CK_TYPE_Q5_K, CK_QK_K, sizeof(ck_block_q5_K),  "q5_K", CK_TYPE_Q8_K },
  { CK_TYPE_Q6_K, CK_QK_K, sizeof(ck_block_q6_K),  "q6_K", CK_TYPE_Q8_K },
  { CK_TYPE_Q8_K, CK_QK_K, sizeof(ck_block_q8_K),  "q8_K", -1 },
  { CK_TYPE_BF16, 1,       2,                      "bf16", CK_TYPE_BF16 },
};

static const ck_type_info *ck_info(int type) {
  for (size_t i = 0; i < sizeof(ck_types) / sizeof(ck_types[0]); i++) {
    if (ck_types[i].type == type) return &ck_types[i];
  }
  return NULL;
}

int ck_type_supported(int type) { return ck_info(type) != NULL; }

int64_t ck_block_elements(int type) {
  const ck_type_info *t = ck_info(type);
  return t ? t->elems : 0;
}

int64_t ck_block_bytes(int type) {
  const ck_type_info *t = ck_info(type);
  return t ? t->bytes : 0;
}

int64_t ck_row_bytes(int type, int64_t n) {
  const ck_type_info *t = ck_info(type);
  if (!t || n < 0 || n % t->elems != 0) return 0;
  return n / t->elems * t->bytes;
}

const char *ck_type_name(int type) {
  const ck_type_info *t = ck_info(type);
  return t ? t->name : "?";
}

int ck_vec_dot_type(int weight_type) {
  const ck_type_info *t = ck_info(weight_type);
  return t ? t->vec_dot : -1;
}
