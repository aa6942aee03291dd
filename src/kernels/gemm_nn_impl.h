/*
 * gemm_nn_impl.h - gk_sgemm's outer-product tiles (gemm.h), for B stored K x N:
 * C[m][n] (+)= sum_k A[m][k] * B[k][n] over a run of work items, included
 * three times: by gemm_nn_avx2.c (AVX2/FMA, where the 8-float vectors are ymm
 * registers), gemm_nn_x512.c (AVX-512F, 16 floats) and gemm.c (the portable
 * build, where the compiler lowers the vectors to what the target has).
 * NN_FN names the result.
 *
 * Work items are tiles of 4 rows x 64 columns, column-tile major, so the
 * 64-column strip of B stays in cache while the row tiles of A stream past it.
 * A row's 64 columns are sums of broadcast A(m,k) times a vector of B's row k,
 * k in order: no horizontal sums, which is what makes these tiles faster than
 * the dot-product tiles when K is short (a layer's width in the backward pass).
 * Each C element is summed by one thread in k order: the result does not depend
 * on the thread count.
 */
#ifndef NN_VW
#define NN_VW 8 /* floats per vector: 8 (AVX2, portable) or 16 (AVX-512) */
#endif
#ifndef NN_ATTR
#define NN_ATTR
#endif
typedef float nn_vec __attribute__((vector_size(NN_VW * 4)));

/* Unaligned loads and stores as macros: a function taking or returning a
 * 32-byte vector would change the ABI of the portable build (-Wpsabi). */
#define NN_LOAD(v, p) __builtin_memcpy(&(v), (p), sizeof(nn_vec))
#define NN_STORE(p, v) __builtin_memcpy((p), &(v), sizeof(nn_vec))

NN_ATTR void NN_FN(const gk_gemm_nn_job *j, int64_t item_lo, int64_t item_hi) {
    const int64_t mt = (j->M + 3) / 4;
    for (int64_t item = item_lo; item < item_hi; item++) {
        int64_t nb = item / mt, mb = item % mt;
        int64_t m0 = mb * 4, mr = j->M - m0 < 4 ? j->M - m0 : 4;
        int64_t n0 = nb * 64, n1 = n0 + 64 < j->N ? n0 + 64 : j->N;
        const float *A = j->A + m0 * j->lda;
        int64_t n = n0;
        for (; n + 2 * NN_VW <= n1; n += 2 * NN_VW) {
            nn_vec c[4][2] = {{{0}}};
            if (mr == 4) {
                for (int64_t k = 0; k < j->K; k++) {
                    const float *b = j->B + k * j->ldb + n;
                    nn_vec b0, b1;
                    NN_LOAD(b0, b);
                    NN_LOAD(b1, b + NN_VW);
                    const float *a = A + k;
                    float a0 = a[0], a1 = a[j->lda], a2 = a[2 * j->lda], a3 = a[3 * j->lda];
                    c[0][0] += a0 * b0, c[0][1] += a0 * b1;
                    c[1][0] += a1 * b0, c[1][1] += a1 * b1;
                    c[2][0] += a2 * b0, c[2][1] += a2 * b1;
                    c[3][0] += a3 * b0, c[3][1] += a3 * b1;
                }
            } else {
                for (int64_t k = 0; k < j->K; k++) {
                    const float *b = j->B + k * j->ldb + n;
                    nn_vec b0, b1;
                    NN_LOAD(b0, b);
                    NN_LOAD(b1, b + NN_VW);
                    for (int64_t r = 0; r < mr; r++) {
                        float a = A[r * j->lda + k];
                        c[r][0] += a * b0, c[r][1] += a * b1;
                    }
                }
            }
            for (int64_t r = 0; r < mr; r++) {
                float *cr = j->C + (m0 + r) * j->ldc + n;
                if (j->acc) {
                    nn_vec o0, o1;
                    NN_LOAD(o0, cr);
                    NN_LOAD(o1, cr + NN_VW);
                    c[r][0] += o0, c[r][1] += o1;
                }
                NN_STORE(cr, c[r][0]);
                NN_STORE(cr + NN_VW, c[r][1]);
            }
        }
        for (; n < n1; n++) /* columns left over from the 2-vector steps */
            for (int64_t r = 0; r < mr; r++) {
                float s = 0.0f;
                for (int64_t k = 0; k < j->K; k++) s += A[r * j->lda + k] * j->B[k * j->ldb + n];
                float *cr = j->C + (m0 + r) * j->ldc + n;
                *cr = j->acc ? *cr + s : s;
            }
    }
}
