/* arm64: the portable kernels are used for now (NEON kernels not yet written; the dispatch
   reports CK_ISA_NEON and runs the scalar table, which clang auto-vectorizes). */
#include "ck_internal.h"

void ck_fill_neon(ck_kernels *k) { (void)k; }
