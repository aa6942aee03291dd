/*
 * tgemm_impl.h - the body of the fp32 outer-product GEMM used by the backward
 * pass, included twice: by tgemm_avx2.c (compiled with AVX2/FMA, where the
 * 8-float vectors are ymm registers) and by tgemm.c (the portable build, where
 * the compiler lowers them to what the target has). TGEMM_FN names the result.
 *
 * C[m][n] (+)= sum_k A(m,k) * B[k][n], A(m,k) = A[m*sam + k*sak].
 * Work items are tiles of 4 rows x 64 columns, n-tile major, so the 64-column
 * strip of B stays in cache while the row tiles of A stream past it. Each C
 * element is summed by one thread in k order: the result does not depend on
 * the thread count.
 */
#ifndef TG_VW
#define TG_VW 8 /* floats per vector: 8 (AVX2, portable) or 16 (AVX-512) */
#endif
#ifndef TGEMM_ATTR
#define TGEMM_ATTR
#endif
typedef float tg_v8 __attribute__((vector_size(TG_VW * 4)));

/* Unaligned loads and stores as macros: a function taking or returning a
 * 32-byte vector would change the ABI of the portable build (-Wpsabi). */
#define TG_LOAD(v, p) __builtin_memcpy(&(v), (p), sizeof(tg_v8))
#define TG_STORE(p, v) __builtin_memcpy((p), &(v), sizeof(tg_v8))

TGEMM_ATTR void TGEMM_FN(const gk_tgemm_job *j, int64_t item_lo, int64_t item_hi) {
    const int64_t mt = (j->M + 3) / 4;
    for (int64_t item = item_lo; item < item_hi; item++) {
        int64_t nb = item / mt, mb = item % mt;
        int64_t m0 = mb * 4, mr = j->M - m0 < 4 ? j->M - m0 : 4;
        int64_t n0 = nb * 64, n1 = n0 + 64 < j->N ? n0 + 64 : j->N;
        const float *A = j->A + m0 * j->sam;
        int64_t n = n0;
        for (; n + 2 * TG_VW <= n1; n += 2 * TG_VW) {
            tg_v8 c[4][2] = {{{0}}};
            if (mr == 4) {
                for (int64_t k = 0; k < j->K; k++) {
                    const float *b = j->B + k * j->ldb + n;
                    tg_v8 b0, b1;
                    TG_LOAD(b0, b);
                    TG_LOAD(b1, b + TG_VW);
                    const float *a = A + k * j->sak;
                    float a0 = a[0], a1 = a[j->sam], a2 = a[2 * j->sam], a3 = a[3 * j->sam];
                    c[0][0] += a0 * b0, c[0][1] += a0 * b1;
                    c[1][0] += a1 * b0, c[1][1] += a1 * b1;
                    c[2][0] += a2 * b0, c[2][1] += a2 * b1;
                    c[3][0] += a3 * b0, c[3][1] += a3 * b1;
                }
            } else {
                for (int64_t k = 0; k < j->K; k++) {
                    const float *b = j->B + k * j->ldb + n;
                    tg_v8 b0, b1;
                    TG_LOAD(b0, b);
                    TG_LOAD(b1, b + TG_VW);
                    for (int64_t r = 0; r < mr; r++) {
                        float a = A[r * j->sam + k * j->sak];
                        c[r][0] += a * b0, c[r][1] += a * b1;
                    }
                }
            }
            for (int64_t r = 0; r < mr; r++) {
                float *cr = j->C + (m0 + r) * j->ldc + n;
                if (j->acc) {
                    tg_v8 o0, o1;
                    TG_LOAD(o0, cr);
                    TG_LOAD(o1, cr + TG_VW);
                    c[r][0] += o0, c[r][1] += o1;
                }
                TG_STORE(cr, c[r][0]);
                TG_STORE(cr + TG_VW, c[r][1]);
            }
        }
        for (; n < n1; n++) /* columns left over from the 2-vector steps */
            for (int64_t r = 0; r < mr; r++) {
                float s = 0.0f;
                for (int64_t k = 0; k < j->K; k++)
                    s += A[r * j->sam + k * j->sak] * j->B[k * j->ldb + n];
                float *cr = j->C + (m0 + r) * j->ldc + n;
                *cr = j->acc ? *cr + s : s;
            }
    }
}
