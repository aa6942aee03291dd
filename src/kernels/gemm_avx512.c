/*
 * gemm_avx512.c - the GEMM kernels with AVX-512 (F, BW, VL) and VNNI. Called
 * only after gemm.c checked the CPU.
 *
 * F32 weights: register tiles of 4 rows x 6 tokens as in gemm_impl.h, but with
 * 16-lane vectors (twice the FMA width of the 8-lane tiles, which reached only
 * half the machine's peak on a prompt). F16 and BF16 weights: the rows as the
 * lanes, each input broadcast against 16 rows' values of it (strips of 64 rows
 * packed input by input; rows as they are turned 16 x 16 in registers).
 *
 * Q8_0, Q4_0, Q4_K, Q5_K and Q6_K weights: strip kernels (gemm.h's strip),
 * used for every batch size, decode included. A strip of 16 weight rows is unpacked,
 * a chunk of 8 blocks (256 inputs) at a time, into an L1-resident buffer where
 * one 512-bit vector holds 4 bytes of each of the 16 rows (the rows are the
 * lanes); then every token of the batch runs against the buffer, 8 tokens per
 * register tile. One vpdpbusd multiplies 16 rows by 4 of the token's values
 * (broadcast), and the block scales are applied once per block for 16 rows.
 * Decode (one token, gemm.h's one) skips the unpacking: Q8_0 and the k-quants
 * read the strip's rows one after the other (strip1), also a column chunk's
 * rows, which lie apart (gk_matmul_chunks); Q4_0 reads the 16 rows side by
 * side (strip_one).
 *
 * Per output element (row r, token t) the arithmetic is fixed:
 *   acc = 0; for every 32-value block b, in order:
 *     isum = sum_i wq[i] * xq[i]  (exact int32; wq stored unsigned as
 *            wq + c, c = 128 for Q8_0, 8 for Q4_0's nibbles, and -c * sum(xq)
 *            added back)
 *     acc = fma(d_w * d_x, (float)isum, acc)   (d_w * d_x is exact: two
 *            fp16 values)
 *   y = acc
 * (the k-quants: per 32 for Q4_K, acc = fma(d*sc * d_x, isum, acc), then
 * acc = fnmadd(dmin*m, d_x * sum(xq), acc); per 16 for Q6_K, two sums and two
 * fmas per block)
 * whatever the batch, the tile, the chunk (acc goes through y between chunks
 * unchanged) or the thread, so a token's result does not depend on its batch.
 */
#include "kernels/gemm.h"
#include "tensor/kquants.h"

#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#define GEMM_NINST 6
#include "kernels/gemm_simd.h"

/* ------------------------------------------------ f32 weights, 16 lanes --- */

/* f32 weights against f32 activations, with 512-bit vectors (the 8-lane tiles of
 * gemm_impl.h run at half the FMA width). Per output element
 * (row r, token t) the arithmetic is fixed:
 *   acc (16 lanes) = fma(w[k..k+16), x[k..k+16), acc) for k = 0, 16, ...; the
 *   last n % 16 inputs as one more step with the missing lanes zero in both w
 *   and x (0 * 0 adds nothing); y = hsum16(acc).
 * Every tile shape (R rows x N tokens, decode's N = 1 included) runs exactly
 * this, so a token's outputs do not depend on its batch. */
enum { K_Z32 = K_F32 };

/* The one horizontal sum: 256-bit halves added, then hsum8. */
AI float hsum16(__m512 v) {
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(v),
                               _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

/* 16 weights from k (m: the lanes to load, the others zero). */
AI __m512 load_w16(const int kind, const uint8_t *w, int64_t k, __mmask16 m) {
    (void)kind; /* f32, the one kind on 16 lanes (f16 and bf16: the lanes below) */
    return _mm512_maskz_loadu_ps(m, (const float *)w + k);
}

/* P: packed weights (gk_gemm_pack), where input k of a strip's row r lies at
 * element 16 k + r * 16 of the strip (nb_row then is 16 elements' bytes). */
AI void ftile16_step(const int kind, const int P, const int R, const int N, const uint8_t *w,
                     size_t nb_row, const uint8_t *xb, size_t xs, int64_t k, __mmask16 m,
                     __m512 acc[GK_GEMM_RMAX][GK_GEMM_NMAX]) {
    __m512 wv[GK_GEMM_RMAX];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) wv[r] = load_w16(kind, w + (size_t)r * nb_row, P ? 16 * k : k, m);
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        __m512 xv = _mm512_maskz_loadu_ps(m, (const float *)(xb + (size_t)t * xs) + k);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
}

AI void ftile16_any(const int kind, const int P, const int R, const int N, int64_t n,
                    const uint8_t *w, size_t nb_row, const uint8_t *xb, size_t xs, float *y,
                    int64_t ldy) {
    const int esz = 4;
    __m512 acc[GK_GEMM_RMAX][GK_GEMM_NMAX];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) acc[r][t] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        if (!P && N <= 2) prefetch_next(R, w, nb_row, (size_t)k * esz, 16 * esz);
        ftile16_step(kind, P, R, N, w, nb_row, xb, xs, k, 0xffff, acc);
    }
    if (k < n) /* never when packed: its rows are whole blocks of 16 */
        ftile16_step(kind, P, R, N, w, nb_row, xb, xs, k, (__mmask16)((1u << (n - k)) - 1), acc);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) y[(size_t)t * ldy + r] = hsum16(acc[r][t]);
}

AI void ftile16(const int kind, const int R, const int N, int64_t n, const uint8_t *w,
                size_t nb_row, const uint8_t *xb, size_t xs, float *y, int64_t ldy) {
    ftile16_any(kind, 0, R, N, n, w, nb_row, xb, xs, y, ldy);
}
AI void ftile16p(const int kind, const int R, const int N, int64_t n, const uint8_t *w,
                 size_t nb_row, const uint8_t *xb, size_t xs, float *y, int64_t ldy) {
    ftile16_any(kind, 1, R, N, n, w, nb_row, xb, xs, y, ldy);
}

DEF_KIND(ftile16, Z32)

/* Decode: the rows one after the other, each from start to end, so that the
 * strip is read as one sequential stream (side by side, the rows are R
 * streams, which this machine's prefetchers follow at two thirds of the
 * bandwidth). A row's one chain of fmas runs the tile's arithmetic (ftile16 with
 * N = 1), so its result is bit-identical; the chain's latency backs up the
 * loads, so they are fetched FROW_AHEAD bytes ahead in the stream. */
#define FROW_AHEAD 8192

AI void frow1(const int kind, int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *xb,
              float *y) {
    const float *x = (const float *)xb;
    for (int r = 0; r < R; r++) {
        const uint8_t *row = w + (size_t)r * nb_row;
        __m512 acc = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 16 <= n; k += 16) {
            _mm_prefetch((const char *)row + (size_t)k * 4 + FROW_AHEAD, _MM_HINT_T0);
            acc = _mm512_fmadd_ps(load_w16(kind, row, k, 0xffff), _mm512_loadu_ps(x + k), acc);
        }
        if (k < n) {
            const __mmask16 m = (__mmask16)((1u << (n - k)) - 1);
            acc = _mm512_fmadd_ps(load_w16(kind, row, k, m), _mm512_maskz_loadu_ps(m, x + k), acc);
        }
        y[r] = hsum16(acc);
    }
}

static void frow1_f32(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x,
                      float *y) {
    frow1(K_F32, n, w, nb_row, R, x, y);
}

static const gk_gemm_kernels z_f32 = {.rmax = 4, .nmax = 6, .tile = TABLE(Z32), .one = frow1_f32};

/* Packed f32 weights (gk_gemm_pack): per strip of 16 rows, per 16 inputs, the
 * 16 rows' 16 values one row after the other (row r at r x 16 elements). The
 * arithmetic per output element is the rows' (ftile16's and frow1's, the same
 * fmas in the same order), read from there: decode as one sequential stream with
 * a chain of fmas per row, 16 chains at once, which frow1's single chain (its
 * latency) held to about half the bandwidth of a core. */
enum { K_PZ32 = K_F32 };
DEF_KIND(ftile16p, PZ32)

/* One token against a packed strip (R = 16). No software prefetch: the hardware
 * prefetchers follow the one stream, and fetching FROW_AHEAD bytes ahead (as frow1
 * does) cost F16 and F32 decode 10-20 % here (one 256 MiB matrix, 2 threads, the
 * streaming read of its bytes alternating: F16 0.82 of it with, 0.91 without; a
 * token of the F16 bench model: 87 tokens/s with, 93 without, medians of 7 pairs). */
AI void fone_packed(const int kind, int64_t n, const uint8_t *w, const uint8_t *xb, float *y) {
    const float *x = (const float *)xb;
    const size_t blk = (size_t)GK_GEMM_STRIP * 16 * 4; /* a block's bytes */
    __m512 acc[GK_GEMM_STRIP];
#pragma GCC unroll 16
    for (int r = 0; r < GK_GEMM_STRIP; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k += 16) {
        const uint8_t *P = w + (size_t)(k / 16) * blk;
        const __m512 xv = _mm512_loadu_ps(x + k);
#pragma GCC unroll 16
        for (int r = 0; r < GK_GEMM_STRIP; r++)
            acc[r] = _mm512_fmadd_ps(
                load_w16(kind, P + (size_t)r * (blk / GK_GEMM_STRIP), 0, 0xffff), xv, acc[r]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < GK_GEMM_STRIP; r++) y[r] = hsum16(acc[r]);
}

/* T tokens against a packed strip: its 4-row tiles, each over the tokens. */
AI void fstrip_packed(const int kind, const gk_gemm_kernels *kk, int64_t n, const uint8_t *w, int R,
                      const uint8_t *x, size_t xs, int T, float *y, int64_t ldy) {
    const size_t rs = (size_t)16 * 4; /* a row's 16 values */
    if (T == 1) {
        fone_packed(kind, n, w, x, y);
        return;
    }
    for (int r = 0; r < R; r += 4)
        for (int t = 0; t < T; t += 6) {
            const int N = T - t < 6 ? T - t : 6;
            kk->tile[3][N - 1](n, w + (size_t)r * rs, rs, x + (size_t)t * xs, xs,
                               y + (size_t)t * ldy + r, ldy);
        }
}

#define FPACKED(name, KIND)                                                                        \
    static const gk_gemm_kernels z_##name##p;                                                      \
    static void fstrip_##name##p(int64_t n, const uint8_t *w, size_t nb_row, int R,                \
                                 const uint8_t *x, size_t xs, int T, float *y, int64_t ldy) {      \
        (void)nb_row;                                                                              \
        fstrip_packed(K_##KIND, &z_##name##p, n, w, R, x, xs, T, y, ldy);                          \
    }                                                                                              \
    static void fone_##name##p(int64_t n, const uint8_t *w, size_t nb_row, int R,                  \
                               const uint8_t *x, float *y) {                                       \
        (void)nb_row, (void)R;                                                                     \
        fone_packed(K_##KIND, n, w, x, y);                                                         \
    }                                                                                              \
    static const gk_gemm_kernels z_##name##p = {.rmax = 4,                                         \
                                                .nmax = 6,                                         \
                                                .tile = TABLE(P##KIND),                            \
                                                .strip = fstrip_##name##p,                         \
                                                .one = fone_##name##p};
FPACKED(f32, Z32)
#undef FPACKED

/* ----------------------------------------- f16 and bf16 weights, as lanes --- */

/* f16 and bf16 weights against f32 activations with the rows as the vector
 * lanes: one input broadcast against 16 rows' values of it. Per output element
 * (row r, token t) the arithmetic is fixed:
 *   acc = 0; acc = fma(w[r][k], x[t][k], acc) for k = 0, 1, ..., n - 1; y = acc
 * one chain of fmas in the inputs' order, no horizontal sum, whatever the batch,
 * the tile, the layout (packed or rows) or the thread, so a token's outputs do
 * not depend on its batch.
 *
 * Why lanes (16 lanes of one row, as f32's, read a 64-byte vector of activations
 * per 16 rows' 512 bytes of f16: decode's activations, 4-16 KiB, fell out of L1
 * between a strip's uses of them, and the kernels ran at 0.73-0.88 of a plain
 * read of the same bytes where a 512-byte activation row ran at 0.92-0.95): a
 * packed strip of 64 rows is 4 vectors per input, and one broadcast activation
 * serves 128 bytes of f16, read as one stream (0.90-1.03 of the plain read, 2
 * threads, rows of 1024-4096 inputs, medians of 100 alternations). */
#define LV (GK_GEMM_LANES / 16) /* vectors per input of a packed strip */

AI __m512 lane_cvt(const int kind, __m256i h) {
    if (kind == K_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
AI __m512 lane_load(const int kind, const uint8_t *p) {
    return lane_cvt(kind, _mm256_loadu_si256((const __m256i *)p));
}

/* Packed (gk_gemm_pack): value (r, k) of a strip at element k * 64 + r. One token:
 * LV chains over the strip's one stream. */
AI void lane_one_packed(const int kind, int64_t n, const uint8_t *w, const float *x, float *y) {
    __m512 acc[LV];
#pragma GCC unroll 4
    for (int i = 0; i < LV; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k++) {
        const __m512 xb = _mm512_set1_ps(x[k]);
        const uint8_t *p = w + (size_t)k * GK_GEMM_LANES * 2;
#pragma GCC unroll 4
        for (int i = 0; i < LV; i++)
            acc[i] = _mm512_fmadd_ps(lane_load(kind, p + 32 * i), xb, acc[i]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < LV; i++) _mm512_storeu_ps(y + 16 * i, acc[i]);
}

/* N <= 6 tokens (activation rows xs bytes apart) against a packed strip. */
AI void lane_tile_packed(const int kind, const int N, int64_t n, const uint8_t *w,
                         const uint8_t *xb, size_t xs, float *y, int64_t ldy) {
    __m512 acc[LV][6];
#pragma GCC unroll 4
    for (int i = 0; i < LV; i++)
#pragma GCC unroll 6
        for (int t = 0; t < N; t++) acc[i][t] = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k++) {
        const uint8_t *p = w + (size_t)k * GK_GEMM_LANES * 2;
        __m512 wv[LV];
#pragma GCC unroll 4
        for (int i = 0; i < LV; i++) wv[i] = lane_load(kind, p + 32 * i);
#pragma GCC unroll 6
        for (int t = 0; t < N; t++) {
            const __m512 x = _mm512_set1_ps(((const float *)(xb + (size_t)t * xs))[k]);
#pragma GCC unroll 4
            for (int i = 0; i < LV; i++) acc[i][t] = _mm512_fmadd_ps(wv[i], x, acc[i][t]);
        }
    }
#pragma GCC unroll 6
    for (int t = 0; t < N; t++)
#pragma GCC unroll 4
        for (int i = 0; i < LV; i++) _mm512_storeu_ps(y + (size_t)t * ldy + 16 * i, acc[i][t]);
}

AI void lane_strip_packed(const int kind, int64_t n, const uint8_t *w, const uint8_t *x, size_t xs,
                          int T, float *y, int64_t ldy) {
    for (int t = 0; t < T; t += 6) {
        const uint8_t *xt = x + (size_t)t * xs;
        float *yt = y + (size_t)t * ldy;
#define TILE_N(N)                                                                                  \
    case N:                                                                                        \
        lane_tile_packed(kind, N, n, w, xt, xs, yt, ldy);                                          \
        break;
        switch (T - t < 6 ? T - t : 6) {
        case 1:
            lane_one_packed(kind, n, w, (const float *)xt, yt);
            break;
            TILE_N(2) TILE_N(3) TILE_N(4) TILE_N(5) TILE_N(6)
        }
#undef TILE_N
    }
}

/* v[r] (row r, 16 columns) -> v[c] (column c, 16 rows), int32 lanes. */
AI void transpose16x16(__m512i v[16]) {
    __m512i t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* u[4i + k]: column 4l + k of rows 4i..4i+3 in lane l */
        u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m512i a = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x88),
                b = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xdd),
                c = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x88),
                d = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xdd);
        v[k] = _mm512_shuffle_i32x4(a, c, 0x88);
        v[8 + k] = _mm512_shuffle_i32x4(a, c, 0xdd);
        v[4 + k] = _mm512_shuffle_i32x4(b, d, 0x88);
        v[12 + k] = _mm512_shuffle_i32x4(b, d, 0xdd);
    }
}

/* Rows as they are (R <= 16 rows, nb_row bytes apart), for what cannot be packed
 * (a row count not a multiple of 64, GK_NO_PACK, a tied output): 16 inputs of
 * the 16 rows at a time, converted and turned (16 x 16 in registers) into 16
 * vectors of the rows' values of one input (row r in lane r, zero past R), then
 * the packed layout's fmas. */
AI void lane_turn(const int kind, int R, const uint8_t *w, size_t nb_row, int64_t k, int kc,
                  __m512 v[16]) {
    const __mmask16 km = (__mmask16)((1u << kc) - 1);
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++)
        v[r] = r < R ? lane_cvt(kind, _mm256_maskz_loadu_epi16(
                                          km, (const uint16_t *)(w + (size_t)r * nb_row) + k))
                     : _mm512_setzero_ps();
    __m512i q[16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) q[r] = _mm512_castps_si512(v[r]);
    transpose16x16(q);
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) v[j] = _mm512_castsi512_ps(q[j]);
}

/* N <= 8 tokens against kc turned inputs (buf[k]: the rows' values of input k),
 * each token's chain from y (more) or from zero. */
#define LKC 256
AI void lane_tile_rows(const int N, int kc, const float (*buf)[16], const uint8_t *xb, size_t xs,
                       bool more, __mmask16 m, float *y, int64_t ldy) {
    __m512 acc[8];
#pragma GCC unroll 8
    for (int t = 0; t < N; t++)
        acc[t] = more ? _mm512_maskz_loadu_ps(m, y + (size_t)t * ldy) : _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m512 wv = _mm512_load_ps(buf[k]);
#pragma GCC unroll 8
        for (int t = 0; t < N; t++)
            acc[t] = _mm512_fmadd_ps(wv, _mm512_set1_ps(((const float *)(xb + (size_t)t * xs))[k]),
                                     acc[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) _mm512_mask_storeu_ps(y + (size_t)t * ldy, m, acc[t]);
}

AI void lane_strip_rows(const int kind, int64_t n, const uint8_t *w, size_t nb_row, int R,
                        const uint8_t *xb, size_t xs, int T, float *y, int64_t ldy) {
    const __mmask16 m = (__mmask16)((1u << R) - 1);
    if (T == 1) { /* decode: the chain in a register */
        const float *x = (const float *)xb;
        __m512 acc = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 16 <= n; k += 16) {
            __m512 v[16];
            lane_turn(kind, R, w, nb_row, k, 16, v);
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++) acc = _mm512_fmadd_ps(v[j], _mm512_set1_ps(x[k + j]), acc);
        }
        if (k < n) {
            __m512 v[16];
            lane_turn(kind, R, w, nb_row, k, (int)(n - k), v);
            for (int j = 0; j < n - k; j++)
                acc = _mm512_fmadd_ps(v[j], _mm512_set1_ps(x[k + j]), acc);
        }
        _mm512_mask_storeu_ps(y, m, acc);
        return;
    }
    /* a batch: LKC inputs of the rows turned into L1, then tiles of up to 8 tokens
     * against them, the chains through y between chunks */
    float buf[LKC][16] __attribute__((aligned(64)));
    for (int64_t k0 = 0; k0 < n; k0 += LKC) {
        const int kc = n - k0 < LKC ? (int)(n - k0) : LKC;
        for (int k = 0; k < kc; k += 16) {
            __m512 v[16];
            const int c = kc - k < 16 ? kc - k : 16;
            lane_turn(kind, R, w, nb_row, k0 + k, c, v);
            for (int j = 0; j < c; j++) _mm512_store_ps(buf[k + j], v[j]);
        }
        for (int t = 0; t < T; t += 8) {
            const uint8_t *xt = xb + (size_t)t * xs + (size_t)k0 * sizeof(float);
            float *yt = y + (size_t)t * ldy;
            /* N a constant in each call: the tile's registers unrolled */
#define TILE_N(N)                                                                                  \
    case N:                                                                                        \
        lane_tile_rows(N, kc, buf, xt, xs, k0 > 0, m, yt, ldy);                                    \
        break;
            switch (T - t < 8 ? T - t : 8) {
                TILE_N(1) TILE_N(2) TILE_N(3) TILE_N(4) TILE_N(5) TILE_N(6) TILE_N(7) TILE_N(8)
            }
#undef TILE_N
        }
    }
}

#define LANES(name, KIND)                                                                          \
    static void lstrip_##name##p(int64_t n, const uint8_t *w, size_t nb_row, int R,                \
                                 const uint8_t *x, size_t xs, int T, float *y, int64_t ldy) {      \
        (void)nb_row, (void)R; /* R = GK_GEMM_LANES: gk_gemm_packable */                           \
        lane_strip_packed(KIND, n, w, x, xs, T, y, ldy);                                           \
    }                                                                                              \
    static void lone_##name##p(int64_t n, const uint8_t *w, size_t nb_row, int R,                  \
                               const uint8_t *x, float *y) {                                       \
        (void)nb_row, (void)R;                                                                     \
        lane_one_packed(KIND, n, w, (const float *)x, y);                                          \
    }                                                                                              \
    static void lstrip_##name(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, \
                              size_t xs, int T, float *y, int64_t ldy) {                           \
        lane_strip_rows(KIND, n, w, nb_row, R, x, xs, T, y, ldy);                                  \
    }                                                                                              \
    static void lone_##name(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x,   \
                            float *y) {                                                            \
        lane_strip_rows(KIND, n, w, nb_row, R, x, 0, 1, y, 0);                                     \
    }                                                                                              \
    static const gk_gemm_kernels z_##name##p = {.rmax = GK_GEMM_LANES,                             \
                                                .nmax = 6,                                         \
                                                .strip = lstrip_##name##p,                         \
                                                .one = lone_##name##p,                             \
                                                .block = GK_GEMM_LANES,                            \
                                                .lanes = true};                                    \
    static const gk_gemm_kernels z_##name = {.rmax = GK_GEMM_STRIP,                                \
                                             .nmax = 6,                                            \
                                             .strip = lstrip_##name,                               \
                                             .one = lone_##name,                                   \
                                             .lanes = true};
LANES(f16, K_F16)
LANES(bf16, K_BF16)
#undef LANES

/* ------------------------------------------------------- strip kernels --- */

#define SR 16 /* rows per strip: the 16 int32 lanes */
#define KB 8  /* blocks of 32 per unpacked chunk */
#define NT 8  /* tokens per register tile */

/* The k-quants (a chunk is one 256-value super-block): Q4_K's and Q5_K's
 * weights are d*sc*q - dmin*m per 32 (q unsigned, no offset; the min term is a
 * second product per block), Q6_K's d*sc*(q - 32) per 16 (two sums per block). */
enum { K_Q4K = K_Q4 + 1, K_Q5K, K_Q6K };
#define SUB16(kind) ((kind) == K_Q6K)
#define AFFINE(kind) ((kind) == K_Q4K || (kind) == K_Q5K)

/* One unpacked chunk: per block, 8 vectors of 16 rows x 4 unsigned bytes, the
 * 16 rows' scales (per 16-value half for Q6_K) and Q4_K's mins. */
typedef struct {
    __m512i q[KB][8];
    __m512 d[KB][2];
    __m512 m[KB];
} strip_buf;

/* Packed activation row: n int8 values (ggml's Q8_0 quantization; Q8_K for the
 * k-quants, as their vec_dot takes), then per 32-block its fp32 scale, then two
 * int32 slots per block: -c * the sum of its values (c the weights' offset: 128
 * Q8_0, 8 Q4_0); Q6_K: -32 * the sums of its halves; Q4_K: the fp32 value
 * scale * sum. */
static size_t xrow_s(int64_t n) {
    size_t b = (size_t)n + (size_t)(n / 32) * 12;
    return (b + 63) & ~(size_t)63;
}

AI void pack_s(const int kind, const float *x, int64_t n, uint8_t *dst) {
    const int64_t nb = n / 32;
    float *d = (float *)(dst + n);
    int32_t *sa = (int32_t *)(dst + n + nb * 4), *sb = sa + nb;
    if (kind != K_Q8 && kind != K_Q4) {
        /* the k-quants' own activation blocks: Q8_K, one fp32 scale per 256 */
        gk_from_float_fn quant = gk_type_traits_of(GK_TYPE_Q8_K)->from_float;
        for (int64_t is = 0; is < n / 256; is++) {
            gk_block_q8_K q;
            quant(x + is * 256, &q, 256);
            memcpy(dst + is * 256, q.qs, 256);
            for (int j = 0; j < 8; j++) {
                int64_t ib = is * 8 + j;
                int32_t s0 = q.bsums[2 * j], s1 = q.bsums[2 * j + 1];
                d[ib] = q.d;
                if (AFFINE(kind)) {
                    float f = q.d * (float)(s0 + s1);
                    memcpy(&sa[ib], &f, 4);
                    sb[ib] = 0;
                } else {
                    sa[ib] = -32 * s0, sb[ib] = -32 * s1;
                }
            }
        }
        return;
    }
    /* ggml's Q8_0 quantization (dtype.c gk_quantize_q8_0_ref) in registers, 32
     * values at a time: d = amax / 127 (kept as its fp16), q = roundf(x / d) with
     * 1 / d, ties away from zero (the vector rounding sends them to even: fixed
     * up); the block's sum of q is exact */
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (int64_t ib = 0; ib < nb; ib++) {
        const __m512 v0 = _mm512_loadu_ps(x + ib * 32), v1 = _mm512_loadu_ps(x + ib * 32 + 16);
        const float amax =
            _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        d[ib] = gk_fp16_to_fp32(gk_fp32_to_fp16(dd));
        __m512i q[2];
        for (int h = 0; h < 2; h++) {
            const __m512 v = _mm512_mul_ps(h ? v1 : v0, _mm512_set1_ps(id));
            const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m512 r = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            const __mmask16 tie =
                _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), half, _CMP_EQ_OQ);
            const __m512 away = _mm512_add_ps(
                t, _mm512_castsi512_ps(_mm512_or_si512(
                       _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN)),
                       _mm512_castps_si512(one))));
            /* saturated to int8 as the AVX2 quantizer's packs do (a NaN's INT_MIN to
             * -128; in range for any finite x), then summed as stored */
            const __m128i q8 =
                _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mask_blend_ps(tie, r, away)));
            _mm_storeu_si128((__m128i *)(dst + ib * 32 + 16 * h), q8);
            q[h] = _mm512_cvtepi8_epi32(q8);
        }
        sa[ib] = -(kind == K_Q8 ? 128 : 8) * _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
        sb[ib] = 0;
    }
}
static void pack_s_q8(const float *x, int64_t n, uint8_t *dst) {
    pack_s(K_Q8, x, n, dst);
}
static void pack_s_q4(const float *x, int64_t n, uint8_t *dst) {
    pack_s(K_Q4, x, n, dst);
}
static void pack_s_q4k(const float *x, int64_t n, uint8_t *dst) {
    pack_s(K_Q4K, x, n, dst);
}
static void pack_s_q6k(const float *x, int64_t n, uint8_t *dst) {
    pack_s(K_Q6K, x, n, dst);
}

/* Four activation bytes at p in every dword: a broadcast straight from memory (a
 * load), where set1 of a value in a register costs a move to the vector unit each */
AI __m512i bcast4(const uint8_t *p) {
    return _mm512_broadcastd_epi32(_mm_loadu_si32(p));
}

/* The partial sums of a and b folded by half, per 128-bit lane: dwords
 * (a0 + a2, b0 + b2, a1 + a3, b1 + b3) (fold32) or, as 64-bit pairs,
 * (a0 + a2, a1 + a3, b0 + b2, b1 + b3) (fold64). The reductions below are made of them. */
AI __m512i fold32(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
}
AI __m512i fold64(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}

/* Four vectors of 4 groups x 4 partial sums (group g of P[i] in 128-bit lane g)
 * -> lane 4 g + i: the sum of group g of P[i]. */
AI __m512i sum4x4(const __m512i P[4]) {
    return fold64(fold32(P[0], P[1]), fold32(P[2], P[3]));
}

/* 16 vectors, row r in the low half of v[r] and row r + 8 in its high half
 * (8 dwords each), transposed into o[k] = dword k of rows 0..15. */
AI void transpose16x8(const __m512i v[8], __m512i o[8]) {
    __m512i t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) { /* rows 0-3 (t0..t3), rows 4-7 (t4..t7) */
        __m512i *s = t + 4 * h;
        u[4 * h + 0] = _mm512_unpacklo_epi64(s[0], s[2]); /* dwords 0, 4 */
        u[4 * h + 1] = _mm512_unpackhi_epi64(s[0], s[2]); /* 1, 5 */
        u[4 * h + 2] = _mm512_unpacklo_epi64(s[1], s[3]); /* 2, 6 */
        u[4 * h + 3] = _mm512_unpackhi_epi64(s[1], s[3]); /* 3, 7 */
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13),
                  hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        o[k] = _mm512_permutex2var_epi64(u[k], lo, u[4 + k]);
        o[k + 4] = _mm512_permutex2var_epi64(u[k], hi, u[4 + k]);
    }
}

/* The 16 rows' scales of a Q4_K/Q5_K super-block (rows as lanes, gathered
 * from p + vidx): d * sc_j and dmin * m_j of sub-blocks j < 8 (exact products). */
/* From the 16 rows' first four dwords, one row per lane: d and dmin, then the 12
 * packed scale bytes. */
AI void affine_scales_v(__m512i dd, __m512i qa, __m512i qb, __m512i qc, __m512 dsc[8],
                        __m512 dmn[8]) {
    const __m512i b6 = _mm512_set1_epi32(63), b4 = _mm512_set1_epi32(15);
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd)),
                 dm = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)));
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) { /* sub-blocks j and j + 4 */
        __m512i a = _mm512_srli_epi32(qa, 8 * j), bq = _mm512_srli_epi32(qb, 8 * j),
                c = _mm512_srli_epi32(qc, 8 * j);
        __m512i sc0 = _mm512_and_si512(a, b6), m0 = _mm512_and_si512(bq, b6);
        __m512i sc1 = _mm512_or_si512(
                    _mm512_and_si512(c, b4),
                    _mm512_slli_epi32(
                        _mm512_and_si512(_mm512_srli_epi32(a, 6), _mm512_set1_epi32(3)), 4)),
                m1 = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi32(c, 4), b4),
                    _mm512_slli_epi32(
                        _mm512_and_si512(_mm512_srli_epi32(bq, 6), _mm512_set1_epi32(3)), 4));
        dsc[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc0));
        dmn[j] = _mm512_mul_ps(dm, _mm512_cvtepi32_ps(m0));
        dsc[j + 4] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc1));
        dmn[j + 4] = _mm512_mul_ps(dm, _mm512_cvtepi32_ps(m1));
    }
}

AI void affine_scales(const uint8_t *p, __m512i vidx, __m512 dsc[8], __m512 dmn[8]) {
    affine_scales_v(_mm512_i32gather_epi32(vidx, p, 1), _mm512_i32gather_epi32(vidx, p + 4, 1),
                    _mm512_i32gather_epi32(vidx, p + 8, 1), _mm512_i32gather_epi32(vidx, p + 12, 1),
                    dsc, dmn);
}

/* Unpacks k-quant super-block sb of R <= 16 rows (rows past R repeat row R - 1). */
AI void unpack_super(const int kind, const uint8_t *w, size_t nb_row, int R, int64_t sb,
                     strip_buf *buf) {
    const size_t bsz = kind == K_Q4K   ? sizeof(gk_block_q4_K)
                       : kind == K_Q5K ? sizeof(gk_block_q5_K)
                                       : sizeof(gk_block_q6_K);
    const uint8_t *p = w + (size_t)sb * bsz, *rp[SR];
#pragma GCC unroll 16
    for (int r = 0; r < SR; r++) rp[r] = p + (size_t)(r < R ? r : R - 1) * nb_row;
    int32_t ri[SR];
#pragma GCC unroll 16
    for (int r = 0; r < SR; r++) ri[r] = (int32_t)(rp[r] - p);
    const __m512i vidx = _mm512_loadu_si512(ri);
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    __m512i v[4][8];
    if (AFFINE(kind)) { /* same leading fields in Q4_K and Q5_K */
        __m512 dsc[8], dmn[8];
        affine_scales(p, vidx, dsc, dmn);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) buf->d[j][0] = dsc[j], buf->m[j] = dmn[j];
        const size_t oq = kind == K_Q4K ? offsetof(gk_block_q4_K, qs) : offsetof(gk_block_q5_K, qs),
                     oh = offsetof(gk_block_q5_K, qh);
        const __m512i one = _mm512_set1_epi8(1);
        for (int g = 0; g < 4; g++) { /* 32 bytes: low nibbles block 2g, high 2g + 1 */
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) {
                const size_t o = oq + 32 * (size_t)g;
                __m512i z = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(rp[r] + o))),
                    _mm256_loadu_si256((const __m256i *)(rp[r + 8] + o)), 1);
                v[0][r] = _mm512_and_si512(z, m4);
                v[1][r] = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
                if (kind == K_Q5K) { /* the fifth bit of block j: bit j of qh[l] */
                    __m512i h = _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(rp[r] + oh))),
                        _mm256_loadu_si256((const __m256i *)(rp[r + 8] + oh)), 1);
                    __m512i h0 = _mm512_and_si512(_mm512_srli_epi16(h, 2 * g), one),
                            h1 = _mm512_and_si512(_mm512_srli_epi16(h, 2 * g + 1), one);
                    v[0][r] = _mm512_or_si512(v[0][r], _mm512_slli_epi16(h0, 4));
                    v[1][r] = _mm512_or_si512(v[1][r], _mm512_slli_epi16(h1, 4));
                }
            }
            transpose16x8(v[0], buf->q[2 * g]);
            transpose16x8(v[1], buf->q[2 * g + 1]);
        }
        return;
    }
    {
        /* d (the high half of the dword at 206) and the 16 int8 scales */
        const size_t os = offsetof(gk_block_q6_K, scales);
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(
            _mm512_srli_epi32(_mm512_i32gather_epi32(vidx, p + os + 14, 1), 16)));
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            const __m512i q = _mm512_i32gather_epi32(vidx, p + os + 4 * g, 1);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                __m512i sc = _mm512_srai_epi32(_mm512_slli_epi32(q, 24 - 8 * i), 24);
                int j = 4 * g + i; /* scale j: block j / 2, half j % 2 */
                buf->d[j / 2][j % 2] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
            }
        }
    }
    for (int h = 0; h < 2; h++) { /* values 128h..: ql + 64h, qh + 32h */
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            const size_t ol = offsetof(gk_block_q6_K, ql) + 64 * (size_t)h,
                         oh = offsetof(gk_block_q6_K, qh) + 32 * (size_t)h;
#define LD2(off)                                                                                   \
    _mm512_inserti64x4(                                                                            \
        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(rp[r] + (off)))),              \
        _mm256_loadu_si256((const __m256i *)(rp[r + 8] + (off))), 1)
            __m512i l0 = LD2(ol), l1 = LD2(ol + 32), hb = LD2(oh);
#undef LD2
            v[0][r] = _mm512_or_si512(_mm512_and_si512(l0, m4),
                                      _mm512_and_si512(_mm512_slli_epi16(hb, 4), m30));
            v[1][r] = _mm512_or_si512(_mm512_and_si512(l1, m4),
                                      _mm512_and_si512(_mm512_slli_epi16(hb, 2), m30));
            v[2][r] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l0, 4), m4),
                                      _mm512_and_si512(hb, m30));
            v[3][r] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l1, 4), m4),
                                      _mm512_and_si512(_mm512_srli_epi16(hb, 2), m30));
        }
        for (int g = 0; g < 4; g++) transpose16x8(v[g], buf->q[4 * h + g]);
    }
}

/* Unpacks super-block sb of a packed k-quant strip (gemm.h gk_gemm_pack): what
 * unpack_super makes of the rows, with its gathers and transposes as plain loads
 * (vector k of the block: dword k of the 16 rows). */
AI void unpack_super_packed(const int kind, const uint8_t *w, int64_t sb, strip_buf *buf) {
    const size_t bsz = kind == K_Q4K   ? sizeof(gk_block_q4_K)
                       : kind == K_Q5K ? sizeof(gk_block_q5_K)
                                       : sizeof(gk_block_q6_K);
    const uint8_t *P = w + (size_t)sb * SR * bsz;
#define DW(k) _mm512_loadu_si512(P + 64 * (size_t)(k))
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    if (AFFINE(kind)) {
        __m512 dsc[8], dmn[8];
        affine_scales_v(DW(0), DW(1), DW(2), DW(3), dsc, dmn);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) buf->d[j][0] = dsc[j], buf->m[j] = dmn[j];
        const int oq = kind == K_Q4K ? offsetof(gk_block_q4_K, qs) / 4
                                     : offsetof(gk_block_q5_K, qs) / 4,
                  oh = offsetof(gk_block_q5_K, qh) / 4;
        const __m512i one = _mm512_set1_epi8(1);
        for (int g = 0; g < 4; g++) /* 32 bytes: low nibbles block 2g, high 2g + 1 */
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                const __m512i z = DW(oq + 8 * g + k);
                __m512i lo = _mm512_and_si512(z, m4),
                        hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
                if (kind == K_Q5K) { /* the fifth bit of block j: bit j of qh[l] */
                    const __m512i h = DW(oh + k);
                    lo = _mm512_or_si512(
                        lo,
                        _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 2 * g), one), 4));
                    hi = _mm512_or_si512(
                        hi, _mm512_slli_epi16(
                                _mm512_and_si512(_mm512_srli_epi16(h, 2 * g + 1), one), 4));
                }
                buf->q[2 * g][k] = lo;
                buf->q[2 * g + 1][k] = hi;
            }
        return;
    }
    /* Q6_K: d in front, then ql (dwords 0..31), qh (32..47), scales (48..51) */
    P += 2 * SR;
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(P - 2 * SR)));
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        const __m512i q = DW(offsetof(gk_block_q6_K, scales) / 4 + g);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            __m512i sc = _mm512_srai_epi32(_mm512_slli_epi32(q, 24 - 8 * i), 24);
            int j = 4 * g + i; /* scale j: block j / 2, half j % 2 */
            buf->d[j / 2][j % 2] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
        }
    }
    for (int h = 0; h < 2; h++) /* values 128h..: ql + 64h, qh + 32h */
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const __m512i l0 = DW(16 * h + k), l1 = DW(16 * h + 8 + k),
                          hb = DW(offsetof(gk_block_q6_K, qh) / 4 + 8 * h + k);
            buf->q[4 * h][k] = _mm512_or_si512(_mm512_and_si512(l0, m4),
                                               _mm512_and_si512(_mm512_slli_epi16(hb, 4), m30));
            buf->q[4 * h + 1][k] = _mm512_or_si512(_mm512_and_si512(l1, m4),
                                                   _mm512_and_si512(_mm512_slli_epi16(hb, 2), m30));
            buf->q[4 * h + 2][k] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l0, 4), m4),
                                                   _mm512_and_si512(hb, m30));
            buf->q[4 * h + 3][k] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l1, 4), m4),
                                                   _mm512_and_si512(_mm512_srli_epi16(hb, 2), m30));
        }
#undef DW
}

/* Unpacks blocks [b0, b0 + nbk) of R <= 16 rows; rows past R repeat row R - 1
 * (their lanes are never stored). */
AI void unpack_chunk(const int kind, const uint8_t *w, size_t nb_row, int R, int64_t b0, int nbk,
                     strip_buf *buf) {
    if (kind >= K_Q4K) {
        unpack_super(kind, w, nb_row, R, b0 / KB, buf);
        return;
    }
    const int bsz = kind == K_Q8 ? 34 : 18;
    const uint8_t *base = w + (size_t)b0 * bsz;
    size_t ro[SR];
    int32_t ri[SR];
#pragma GCC unroll 16
    for (int r = 0; r < SR; r++) {
        ro[r] = (size_t)(r < R ? r : R - 1) * nb_row;
        ri[r] = (int32_t)ro[r];
    }
    const __m512i vidx = _mm512_loadu_si512(ri);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int b = 0; b < nbk; b++) {
        const uint8_t *p = base + (size_t)b * bsz;
        __m512i v[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            if (kind == K_Q8) {
                __m256i a = _mm256_loadu_si256((const __m256i *)(p + ro[r] + 2)),
                        c = _mm256_loadu_si256((const __m256i *)(p + ro[r + 8] + 2));
                v[r] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(a), c, 1),
                                        _mm512_set1_epi8((char)0x80));
            } else {
                __m256i a = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + ro[r] + 2))),
                    _mm_loadu_si128((const __m128i *)(p + ro[r + 8] + 2)), 1);
                __m256i lo = _mm256_and_si256(a, m4),
                        hi = _mm256_and_si256(_mm256_srli_epi16(a, 4), m4);
                __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                v[r] = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
            }
        }
        transpose16x8(v, buf->q[b]);
        /* the fp16 scales: a dword gathered from each row, its low half kept */
        __m512i h = _mm512_i32gather_epi32(vidx, p, 1);
        buf->d[b][0] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
    }
}

/* N tokens against an unpacked chunk; acc lives in y between chunks. */
AI void strip_tile(const int kind, const int N, int nbk, const strip_buf *buf, int64_t b0,
                   int64_t n, const uint8_t *x, size_t xs, float *y, int64_t ldy, bool first,
                   __mmask16 m) {
    __m512 acc[NT];
    const int8_t *xq[NT];
    const float *dx[NT];
    const int32_t *ca[NT], *cb[NT];
    const int64_t nb = n / 32;
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        const uint8_t *xr = x + (size_t)t * xs;
        xq[t] = (const int8_t *)xr + b0 * 32;
        dx[t] = (const float *)(xr + n) + b0;
        ca[t] = (const int32_t *)(xr + n + nb * 4) + b0;
        cb[t] = ca[t] + nb;
        acc[t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, y + (size_t)t * ldy);
    }
    for (int b = 0; b < nbk; b++) {
        __m512i wq[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) wq[k] = _mm512_load_si512(&buf->q[b][k]);
        const __m512 dw = _mm512_load_ps((const float *)&buf->d[b][0]);
        const __m512 dw2 = SUB16(kind) ? _mm512_load_ps((const float *)&buf->d[b][1]) : dw;
        const __m512 mw = AFFINE(kind) ? _mm512_load_ps((const float *)&buf->m[b]) : dw;
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            const uint8_t *xv = (const uint8_t *)xq[t] + b * 32;
            const __m512 dxv = _mm512_set1_ps(dx[t][b]);
            if (SUB16(kind)) {
                __m512i s0 = _mm512_set1_epi32(ca[t][b]), s1 = _mm512_set1_epi32(cb[t][b]);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    s0 = _mm512_dpbusd_epi32(s0, wq[k], bcast4(xv + 4 * k));
                    s1 = _mm512_dpbusd_epi32(s1, wq[k + 4], bcast4(xv + 4 * k + 16));
                }
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dxv), _mm512_cvtepi32_ps(s0), acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw2, dxv), _mm512_cvtepi32_ps(s1), acc[t]);
                continue;
            }
            __m512i s = AFFINE(kind) ? _mm512_setzero_si512() : _mm512_set1_epi32(ca[t][b]);
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) s = _mm512_dpbusd_epi32(s, wq[k], bcast4(xv + 4 * k));
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dxv), _mm512_cvtepi32_ps(s), acc[t]);
            if (AFFINE(kind)) {
                float xs_f;
                memcpy(&xs_f, &ca[t][b], 4);
                acc[t] = _mm512_fnmadd_ps(mw, _mm512_set1_ps(xs_f), acc[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) _mm512_mask_storeu_ps(y + (size_t)t * ldy, m, acc[t]);
}

/* One token straight from the rows (decode), the same arithmetic as the
 * unpacked tiles: per block, row r (and r + 8) times the token's values gives
 * 8 partial sums per row, added up exactly into one lane per row. */
AI void strip_one(const int kind, int64_t n, const uint8_t *w, size_t nb_row, int R,
                  const uint8_t *x, float *y, __mmask16 m) {
    const int64_t nb = n / 32;
    const int bsz = kind == K_Q8 ? 34 : 18;
    size_t ro[SR];
    int32_t ri[SR];
#pragma GCC unroll 16
    for (int r = 0; r < SR; r++) {
        ro[r] = (size_t)(r < R ? r : R - 1) * nb_row;
        ri[r] = (int32_t)ro[r];
    }
    const __m512i vidx = _mm512_loadu_si512(ri);
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13),
                  hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    const float *dx = (const float *)(x + n);
    const int32_t *cx = (const int32_t *)(x + n + nb * 4);
    const size_t span = (size_t)SR * nb_row;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = w + (size_t)b * bsz;
        if ((b & 7) == 0) { /* fetch the next strip in step with this one */
            size_t plo = span * (size_t)b / (size_t)nb,
                   phi = span * (size_t)(b + 8 < nb ? b + 8 : nb) / (size_t)nb;
            for (size_t q = plo & ~(size_t)63; q < phi; q += 64)
                _mm_prefetch((const char *)w + span + q, _MM_HINT_T0);
        }
        __m512i S;
        if (kind == K_Q4) {
            /* four rows' 16 bytes per vector (rows g, g+4, g+8, g+12): the low
             * nibbles against values 0..15, the high ones against 16..31, so
             * each row's 4 partial sums sit in one 128-bit lane */
            const __m512i xl = _mm512_broadcast_i32x4(
                              _mm_loadu_si128((const __m128i *)(x + b * 32))),
                          xh = _mm512_broadcast_i32x4(
                              _mm_loadu_si128((const __m128i *)(x + b * 32 + 16)));
            const __m512i m4z = _mm512_set1_epi8(0x0f);
            __m512i P[4];
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                __m512i z =
                    _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p + ro[g] + 2)));
                z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(p + ro[g + 4] + 2)), 1);
                z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(p + ro[g + 8] + 2)), 2);
                z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(p + ro[g + 12] + 2)),
                                       3);
                P[g] = _mm512_dpbusd_epi32(
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(z, m4z), xl),
                    _mm512_and_si512(_mm512_srli_epi16(z, 4), m4z), xh);
            }
            S = sum4x4(P); /* lane L: rows 4L..4L+3 */
        } else {
            const __m512i xv =
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x + b * 32)));
            __m512i P[8];
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) {
                __m256i a = _mm256_loadu_si256((const __m256i *)(p + ro[r] + 2)),
                        c = _mm256_loadu_si256((const __m256i *)(p + ro[r + 8] + 2));
                __m512i v = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(a), c, 1),
                                             _mm512_set1_epi8((char)0x80));
                P[r] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, xv);
            }
            const __m512i B[2] = {sum4x4(P), sum4x4(P + 4)};
            S = _mm512_add_epi32(_mm512_permutex2var_epi64(B[0], lo, B[1]),
                                 _mm512_permutex2var_epi64(B[0], hi, B[1]));
        }
        S = _mm512_add_epi32(S, _mm512_set1_epi32(cx[b]));
        const __m512 dw =
            _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(vidx, p, 1)));
        acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(dx[b])), _mm512_cvtepi32_ps(S), acc);
    }
    _mm512_mask_storeu_ps(y, m, acc);
}

/* ------------------------------------------------ one token (decode) --- */

/* Decode (T = 1) streams every weight byte from memory once, so it reads the
 * strip's rows one after the other, each from start to end (one sequential
 * stream, which the hardware prefetcher follows; 16 rows read side by side
 * are 16 streams that it does not). Per row, the exact int32 sum of every
 * block (16-value group for Q6_K) goes into a small row-major buffer, with the
 * block scales; then 16 x 16 transposes turn the buffers into vectors of the
 * 16 rows, and the float accumulation runs per block in order exactly as the
 * unpacked tiles run it (the same scale product, the same fma or fnmadd), so
 * the result is bit-identical to strip_tile's with any batch. */

/* the most inputs per row: Grok-2's d = 8192, Grok-1's 6144 (the buffers: 16 rows of
 * up to 512 groups, 66 KiB of the stack) */
#define R1_CHUNK 8192
#define R1_GMAX (R1_CHUNK / 16)
#ifndef R1_AHEAD
#define R1_AHEAD 8192 /* bytes of the stream fetched ahead */
#endif

/* Four vectors of 4 groups x 4 partial sums (group g of P[i] in 128-bit lane
 * g) -> the 16 group sums in order 4 i + g (lane 4 g + i before the permute). */
AI __m512i reduce4x4(const __m512i P[4]) {
    const __m512i S = sum4x4(P);
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_epi32(perm, S);
}

/* Eight vectors of 2 groups x 8 partial sums (group h of P[i] in 256-bit half
 * h) -> the 16 sums in order 2 i + h. */
AI __m512i reduce8x8(const __m512i P[8]) {
    const __m512i C[2] = {sum4x4(P), sum4x4(P + 4)};
    /* lane 4 l + i: P[i] (l = 0, 1) or P[4 + i] (l = 2, 3), half l % 2 */
    const __m512i E = _mm512_add_epi32(_mm512_shuffle_i32x4(C[0], C[1], 0x88),
                                       _mm512_shuffle_i32x4(C[0], C[1], 0xdd));
    const __m512i perm = _mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15);
    return _mm512_permutexvar_epi32(perm, E);
}

/* The int32 sums (with the activations' offset terms) and the fp32 scales of
 * the groups of one row into s[], d[] (Q4_K/Q5_K: sums only; their scales are
 * gathered later); xa: the activations arranged for Q4_K/Q5_K (strip1); pf:
 * the next row, fetched in step. */
AI void row1(const int kind, const uint8_t *row, const uint8_t *x, int64_t n, const uint8_t *xa,
             int32_t *s, float *d, const char *pf) {
    const int64_t nb = n / 32;
    const int32_t *ca = (const int32_t *)(x + n + nb * 4);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    if (kind == K_Q8) {
        const int bsz = 34;
        int64_t b = 0;
        for (; b + 16 <= nb; b += 16) {
            const uint8_t *p = row + (size_t)b * bsz;
            for (int o = 0; o < 16 * bsz; o += 64)
                _mm_prefetch(pf + (size_t)b * bsz + o, _MM_HINT_T0);
            __m512i S;
            __m512 D;
            {
                __m512i P[8];
                const __m512i flip = _mm512_set1_epi8((char)0x80);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    const uint8_t *q = p + 68 * k + 2;
                    __m512i z = _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)q)),
                        _mm256_loadu_si256((const __m256i *)(q + 34)), 1);
                    P[k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(z, flip),
                                               _mm512_loadu_si512(x + (b + 2 * k) * 32));
                }
                S = reduce8x8(P);
                const __m512i vi = _mm512_setr_epi32(0, 34, 68, 102, 136, 170, 204, 238, 272, 306,
                                                     340, 374, 408, 442, 476, 510);
                D = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(vi, p, 1)));
            }
            S = _mm512_add_epi32(S, _mm512_loadu_si512(ca + b));
            _mm512_storeu_si512(s + b, S);
            _mm512_storeu_ps(d + b, D);
        }
        for (; b < nb; b++) { /* the last blocks of a row that is not a multiple of 512 */
            const uint8_t *p = row + (size_t)b * bsz;
            const int8_t *xq = (const int8_t *)x + b * 32;
            int32_t sum = ca[b];
            for (int i = 0; i < 32; i++) {
                sum += (uint8_t)(p[2 + i] ^ 0x80) * xq[i];
            }
            s[b] = sum;
            uint16_t h;
            memcpy(&h, p, 2);
            d[b] = gk_fp16_to_fp32(h);
        }
        return;
    }
    if (AFFINE(kind)) {
        const size_t bsz = kind == K_Q4K ? sizeof(gk_block_q4_K) : sizeof(gk_block_q5_K);
        const size_t oq = kind == K_Q4K ? offsetof(gk_block_q4_K, qs) : offsetof(gk_block_q5_K, qs),
                     oh = offsetof(gk_block_q5_K, qh);
        const int64_t ns = n / 256;
        const __m512i one = _mm512_set1_epi8(1);
        for (int64_t sb = 0; sb < ns; sb += 2) {
            for (size_t o = 0; o < 2 * bsz; o += 64)
                _mm_prefetch(pf + (size_t)sb * bsz + o, _MM_HINT_T0);
            __m512i P[8];
#pragma GCC unroll 2
            for (int k = 0; k < 2; k++) {
                if (sb + k >= ns) {
                    P[4 * k] = P[4 * k + 1] = P[4 * k + 2] = P[4 * k + 3] = _mm512_setzero_si512();
                    continue;
                }
                const uint8_t *p = row + (size_t)(sb + k) * bsz;
                const uint8_t *xq = xa + (size_t)(sb + k) * 256;
                __m512i H = _mm512_setzero_si512();
                if (kind == K_Q5K)
                    H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p + oh)));
#pragma GCC unroll 2
                for (int z = 0; z < 2;
                     z++) { /* qs bytes 64 z..: sub-blocks 4z + {0, 2} low, {1, 3} high */
                    const __m512i Z = _mm512_loadu_si512(p + oq + 64 * z);
                    __m512i lo = _mm512_and_si512(Z, m4),
                            hi = _mm512_and_si512(_mm512_srli_epi16(Z, 4), m4);
                    if (kind == K_Q5K) { /* bit j of qh[l]: the fifth bit of sub-block j */
                        const __m512i cl = _mm512_setr_epi64(4 * z, 4 * z, 4 * z, 4 * z, 4 * z + 2,
                                                             4 * z + 2, 4 * z + 2, 4 * z + 2);
                        const __m512i cnt_lo = _mm512_or_si512(cl, _mm512_slli_epi64(cl, 16)),
                                      cnt_l =
                                          _mm512_or_si512(cnt_lo, _mm512_slli_epi64(cnt_lo, 32)),
                                      cnt_h = _mm512_add_epi16(cnt_l, _mm512_set1_epi16(1));
                        lo = _mm512_or_si512(
                            lo, _mm512_slli_epi16(
                                    _mm512_and_si512(_mm512_srlv_epi16(H, cnt_l), one), 4));
                        hi = _mm512_or_si512(
                            hi, _mm512_slli_epi16(
                                    _mm512_and_si512(_mm512_srlv_epi16(H, cnt_h), one), 4));
                    }
                    P[4 * k + 2 * z] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo,
                                                           _mm512_load_si512(xq + 128 * z));
                    P[4 * k + 2 * z + 1] = _mm512_dpbusd_epi32(
                        _mm512_setzero_si512(), hi, _mm512_load_si512(xq + 128 * z + 64));
                }
            }
            /* P[4k + i] halves: sub-blocks {0, 2}, {1, 3}, {4, 6}, {5, 7} of super-block sb + k */
            __m512i S = reduce8x8(P); /* order 2 i + h: 0 2 1 3 4 6 5 7 | the same + 8 */
            const __m512i perm =
                _mm512_setr_epi32(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15);
            S = _mm512_permutexvar_epi32(perm, S);
            _mm512_storeu_si512(s + sb * 8, S);
        }
        (void)d;
        return;
    }
    /* Q6_K: 16 groups of 16 per super-block */
    const int64_t ns = n / 256;
    const __m512i m30 = _mm512_set1_epi8(0x30);
    const __m512i cnt_a = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2),
                  cnt_b = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    const __m512i ca_w = _mm512_or_si512(cnt_a, _mm512_slli_epi64(cnt_a, 16)),
                  ca_s = _mm512_or_si512(ca_w, _mm512_slli_epi64(ca_w, 32)),
                  cb_w = _mm512_or_si512(cnt_b, _mm512_slli_epi64(cnt_b, 16)),
                  cb_s = _mm512_or_si512(cb_w, _mm512_slli_epi64(cb_w, 32));
    const int32_t *cb = ca + nb;
    const __m512i ilv = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    for (int64_t sb = 0; sb < ns; sb++) {
        const uint8_t *p = row + (size_t)sb * sizeof(gk_block_q6_K);
        const uint8_t *xq = x + sb * 256;
        for (size_t o = 0; o < sizeof(gk_block_q6_K); o += 64)
            _mm_prefetch(pf + (size_t)sb * sizeof(gk_block_q6_K) + o, _MM_HINT_T0);
        __m512i P[4];
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i Z = _mm512_loadu_si512(p + offsetof(gk_block_q6_K, ql) + 64 * h),
                          H = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                              (const __m256i *)(p + offsetof(gk_block_q6_K, qh) + 32 * h)));
            const __m512i Va = _mm512_or_si512(_mm512_and_si512(Z, m4),
                                               _mm512_and_si512(_mm512_sllv_epi16(H, ca_s), m30)),
                          Vb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(Z, 4), m4),
                                               _mm512_and_si512(_mm512_srlv_epi16(H, cb_s), m30));
            P[2 * h] =
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), Va, _mm512_loadu_si512(xq + 128 * h));
            P[2 * h + 1] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), Vb,
                                               _mm512_loadu_si512(xq + 128 * h + 64));
        }
        __m512i S = reduce4x4(P);
        const int64_t bb = sb * 8; /* first 32-block */
        const __m512i C = _mm512_permutex2var_epi32(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(ca + bb))), ilv,
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(cb + bb))));
        S = _mm512_add_epi32(S, C);
        uint16_t dh;
        memcpy(&dh, p + offsetof(gk_block_q6_K, d), 2);
        const __m512 D =
            _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(dh)),
                          _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                              (const __m128i *)(p + offsetof(gk_block_q6_K, scales))))));
        _mm512_storeu_si512(s + sb * 16, S);
        _mm512_storeu_ps(d + sb * 16, D);
    }
}

/* One token against R <= 16 rows of n <= R1_CHUNK inputs, nb_row bytes apart
 * (back to back, or a column chunk's rows). */
AI void strip1(const int kind, int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x,
               float *y, __mmask16 m) {
    const int64_t nb = n / 32;
    const float *dx = (const float *)(x + n);
    const int32_t *ca = (const int32_t *)(x + n + nb * 4);
    const int gsz = kind == K_Q6K ? 16 : 32; /* values per group */
    const int64_t ng = n / gsz;
    const size_t bsz = kind == K_Q4K ? sizeof(gk_block_q4_K) : sizeof(gk_block_q5_K);
    /* row r's sums at sbuf + r * gs: the stride is the row's groups rounded up to 16,
     * plus 16 (64 bytes), so that a column of the 16 rows does not fall into the same
     * few cache sets (a power-of-two stride would: Q4_K's matvec ran at 35 GB/s with
     * it, 47 without, in matvec_bench) */
    const int64_t gs = ((ng + 15) & ~(int64_t)15) + 16;
    int32_t sbuf[SR * (R1_GMAX + 16)] __attribute__((aligned(64)));
    float dbuf[SR * (R1_GMAX + 16)] __attribute__((aligned(64)));
    uint8_t xa[R1_CHUNK] __attribute__((aligned(64)));
    int32_t ri[SR];
#pragma GCC unroll 16
    for (int r = 0; r < SR; r++) ri[r] = (int32_t)((size_t)(r < R ? r : R - 1) * nb_row);
    const __m512i vidx = _mm512_loadu_si512(ri);
    if (AFFINE(kind)) /* per 128 values: 0..31 and 64..95, then 32..63 and 96..127 */
        for (int64_t i = 0; i < n; i += 128) {
            const __m256i *q = (const __m256i *)(x + i);
            _mm512_store_si512(xa + i,
                               _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(q)),
                                                  _mm256_loadu_si256(q + 2), 1));
            _mm512_store_si512(xa + i + 64,
                               _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(q + 1)),
                                                  _mm256_loadu_si256(q + 3), 1));
        }
    /* the hardware prefetcher does not run ahead far enough: fetch the row
     * R1_AHEAD bytes ahead (rows of 600 bytes to 9 KiB; the next row alone is
     * too close to cover the memory's latency) in step with this one */
    const size_t ahead = (R1_AHEAD + nb_row - 1) / nb_row;
    for (int r = 0; r < R; r++)
        row1(kind, w + (size_t)r * nb_row, x, n, xa, sbuf + r * gs, dbuf + r * gs,
             (const char *)w + (size_t)(r + ahead) * nb_row);
    for (int r = R; r < SR; r++) {
        memset(sbuf + r * gs, 0, (size_t)gs * sizeof sbuf[0]);
        memset(dbuf + r * gs, 0, (size_t)gs * sizeof dbuf[0]);
    }
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g0 = 0; g0 < ng; g0 += 16) {
        __m512i S[16], D[16];
#pragma GCC unroll 16
        for (int r = 0; r < SR; r++) {
            S[r] = _mm512_load_si512(sbuf + r * gs + g0);
            if (!AFFINE(kind)) D[r] = _mm512_load_si512(dbuf + r * gs + g0);
        }
        transpose16x16(S);
        if (!AFFINE(kind)) transpose16x16(D);
        const int gn = ng - g0 < 16 ? (int)(ng - g0) : 16;
        if (AFFINE(kind)) { /* 8 sub-blocks per super-block, the scales gathered */
            for (int h = 0; h < gn / 8; h++) {
                const int64_t sbi = g0 / 8 + h;
                __m512 dsc[8], dmn[8];
                affine_scales(w + (size_t)sbi * bsz, vidx, dsc, dmn);
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    const int64_t b = sbi * 8 + j;
                    float xs_f;
                    memcpy(&xs_f, &ca[b], 4);
                    acc = _mm512_fmadd_ps(_mm512_mul_ps(dsc[j], _mm512_set1_ps(dx[b])),
                                          _mm512_cvtepi32_ps(S[8 * h + j]), acc);
                    acc = _mm512_fnmadd_ps(dmn[j], _mm512_set1_ps(xs_f), acc);
                }
            }
            continue;
        }
        for (int g = 0; g < gn; g++) {
            const int64_t b = (g0 + g) * gsz / 32;
            acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_castsi512_ps(D[g]), _mm512_set1_ps(dx[b])),
                                  _mm512_cvtepi32_ps(S[g]), acc);
        }
    }
    _mm512_mask_storeu_ps(y, m, acc);
}

/* ------------------------------------- packed Q8_0 and Q4_0 (gk_gemm_pack) --- */

/* A strip of 16 rows as gk_gemm_pack stores it, block after block (16 x the row's
 * block bytes): the 16 rows' fp16 scales, then vectors of 16 rows x 4 bytes: Q8_0's
 * 8 (values 4k..4k+3 of each row, offset by 128: unsigned), Q4_0's 4 (its quant
 * bytes 4k..4k+3: values 4k..4k+3 in the low nibbles, 16 + 4k.. in the high). That
 * is what unpack_chunk makes of the raw rows (Q4_0's nibbles split), so the same
 * tiles run on it; and decode reads it as one stream, in whole vectors, with nothing
 * to rearrange. */
#define PK_BLOCK(kind) (SR * ((kind) == K_Q8 ? 34 : 18))

AI void unpack_packed(const int kind, const uint8_t *w, int64_t b0, int nbk, strip_buf *buf) {
    if (kind >= K_Q4K) {
        unpack_super_packed(kind, w, b0 / KB, buf);
        return;
    }
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (int b = 0; b < nbk; b++) {
        const uint8_t *P = w + (size_t)(b0 + b) * PK_BLOCK(kind);
        if (kind == K_Q8) {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) buf->q[b][k] = _mm512_loadu_si512(P + 32 + 64 * k);
        } else {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m512i v = _mm512_loadu_si512(P + 32 + 64 * k);
                buf->q[b][k] = _mm512_and_si512(v, m4);
                buf->q[b][k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
        }
        buf->d[b][0] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)P));
    }
}

/* One token against a packed strip: strip_tile's arithmetic with N = 1 (the int32
 * sums in two chains, which add exactly), straight from the weights. The hardware
 * prefetchers follow the one stream (a software prefetch ahead cost 10 %). */
AI void one_packed(const int kind, int64_t n, const uint8_t *w, const uint8_t *x, float *y) {
    const int64_t nb = n / 32;
    const float *dx = (const float *)(x + n);
    const int32_t *ca = (const int32_t *)(x + n + nb * 4);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *P = w + (size_t)b * PK_BLOCK(kind);
        const uint8_t *xb = x + b * 32;
        __m512i s0 = _mm512_set1_epi32(ca[b]), s1 = _mm512_setzero_si512();
        if (kind == K_Q8) {
#pragma GCC unroll 4
            for (int k = 0; k < 8; k += 2) {
                s0 = _mm512_dpbusd_epi32(s0, _mm512_loadu_si512(P + 32 + 64 * k),
                                         bcast4(xb + 4 * k));
                s1 = _mm512_dpbusd_epi32(s1, _mm512_loadu_si512(P + 96 + 64 * k),
                                         bcast4(xb + 4 * k + 4));
            }
        } else {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m512i v = _mm512_loadu_si512(P + 32 + 64 * k);
                s0 = _mm512_dpbusd_epi32(s0, _mm512_and_si512(v, m4), bcast4(xb + 4 * k));
                s1 = _mm512_dpbusd_epi32(s1, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                                         bcast4(xb + 4 * k + 16));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)P));
        acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(dx[b])),
                              _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), acc);
    }
    _mm512_storeu_ps(y, acc);
}

/* One token against a packed k-quant strip: strip_tile's arithmetic with N = 1
 * (per 32-value block the int32 sums, then its fma, and Q4_K's and Q5_K's fnmadd of
 * the min; Q6_K's two halves), the weights unpacked in registers as
 * unpack_super_packed unpacks them, without its round trip through memory. The
 * stream is fetched R1_AHEAD bytes ahead: without it the Q4_K_M bench model's
 * generation ran at 133-172 tokens/s, with it at 279-319 (Q8_0's and Q4_0's
 * one_packed gain nothing from it). */
AI void one_packed_kq(const int kind, int64_t n, const uint8_t *w, const uint8_t *x, float *y) {
    const size_t bsz = kind == K_Q4K   ? sizeof(gk_block_q4_K)
                       : kind == K_Q5K ? sizeof(gk_block_q5_K)
                                       : sizeof(gk_block_q6_K);
    const int64_t nb = n / 32;
    const float *dx = (const float *)(x + n);
    const int32_t *ca = (const int32_t *)(x + n + nb * 4), *cb = ca + nb;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30),
                  one = _mm512_set1_epi8(1);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < n / 256; sb++) {
        const uint8_t *P = w + (size_t)sb * SR * bsz;
        for (size_t o = 0; o < SR * bsz; o += 64)
            _mm_prefetch((const char *)P + R1_AHEAD + o, _MM_HINT_T0);
#define DW(k) _mm512_loadu_si512(P + 64 * (size_t)(k))
        if (AFFINE(kind)) {
            __m512 dsc[8], dmn[8];
            affine_scales_v(DW(0), DW(1), DW(2), DW(3), dsc, dmn);
            const int oq = kind == K_Q4K ? offsetof(gk_block_q4_K, qs) / 4
                                         : offsetof(gk_block_q5_K, qs) / 4,
                      oh = offsetof(gk_block_q5_K, qh) / 4;
            for (int g = 0; g < 4; g++) {
                const int64_t b = sb * 8 + 2 * g;
                const uint8_t *xl = x + b * 32, *xh = xl + 32;
                __m512i sl = _mm512_setzero_si512(), sh = _mm512_setzero_si512();
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    const __m512i z = DW(oq + 8 * g + k);
                    __m512i lo = _mm512_and_si512(z, m4),
                            hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
                    if (kind == K_Q5K) {
                        const __m512i h = DW(oh + k);
                        lo = _mm512_or_si512(
                            lo, _mm512_slli_epi16(
                                    _mm512_and_si512(_mm512_srli_epi16(h, 2 * g), one), 4));
                        hi = _mm512_or_si512(
                            hi, _mm512_slli_epi16(
                                    _mm512_and_si512(_mm512_srli_epi16(h, 2 * g + 1), one), 4));
                    }
                    sl = _mm512_dpbusd_epi32(sl, lo, bcast4(xl + 4 * k));
                    sh = _mm512_dpbusd_epi32(sh, hi, bcast4(xh + 4 * k));
                }
                float fl, fh;
                memcpy(&fl, &ca[b], 4);
                memcpy(&fh, &ca[b + 1], 4);
                acc = _mm512_fmadd_ps(_mm512_mul_ps(dsc[2 * g], _mm512_set1_ps(dx[b])),
                                      _mm512_cvtepi32_ps(sl), acc);
                acc = _mm512_fnmadd_ps(dmn[2 * g], _mm512_set1_ps(fl), acc);
                acc = _mm512_fmadd_ps(_mm512_mul_ps(dsc[2 * g + 1], _mm512_set1_ps(dx[b + 1])),
                                      _mm512_cvtepi32_ps(sh), acc);
                acc = _mm512_fnmadd_ps(dmn[2 * g + 1], _mm512_set1_ps(fh), acc);
            }
            continue;
        }
        /* Q6_K: d in front, then ql (dwords 0..31), qh (32..47), scales (48..51) */
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)P));
        P += 2 * SR;
        __m512 dsub[16];
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
            const __m512i q = DW(offsetof(gk_block_q6_K, scales) / 4 + g);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
                dsub[4 * g + i] = _mm512_mul_ps(
                    d, _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(q, 24 - 8 * i), 24)));
        }
        for (int h = 0; h < 2; h++)
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) { /* block 4h + g: values 128h + 32g .. */
                const int64_t b = sb * 8 + 4 * h + g;
                const uint8_t *xv = x + b * 32;
                __m512i s0 = _mm512_set1_epi32(ca[b]), s1 = _mm512_set1_epi32(cb[b]);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) {
                    const __m512i l = DW(16 * h + 8 * (g & 1) + k),
                                  hb = DW(offsetof(gk_block_q6_K, qh) / 4 + 8 * h + k);
                    const __m512i lo = g < 2 ? _mm512_and_si512(l, m4)
                                             : _mm512_and_si512(_mm512_srli_epi16(l, 4), m4);
                    const __m512i hv = g == 0   ? _mm512_slli_epi16(hb, 4)
                                       : g == 1 ? _mm512_slli_epi16(hb, 2)
                                       : g == 2 ? hb
                                                : _mm512_srli_epi16(hb, 2);
                    const __m512i q = _mm512_or_si512(lo, _mm512_and_si512(hv, m30));
                    if (k < 4)
                        s0 = _mm512_dpbusd_epi32(s0, q, bcast4(xv + 4 * k));
                    else
                        s1 = _mm512_dpbusd_epi32(s1, q, bcast4(xv + 4 * k));
                }
                const __m512 dxv = _mm512_set1_ps(dx[b]);
                acc = _mm512_fmadd_ps(_mm512_mul_ps(dsub[2 * (4 * h + g)], dxv),
                                      _mm512_cvtepi32_ps(s0), acc);
                acc = _mm512_fmadd_ps(_mm512_mul_ps(dsub[2 * (4 * h + g) + 1], dxv),
                                      _mm512_cvtepi32_ps(s1), acc);
            }
#undef DW
    }
    _mm512_storeu_ps(y, acc);
}

AI void strip_run(const int kind, const bool packed, int64_t n, const uint8_t *w, size_t nb_row,
                  int R, const uint8_t *x, size_t xs, int T, float *y, int64_t ldy) {
    const int64_t nb = n / 32;
    const __mmask16 m = (__mmask16)((1u << R) - 1);
    if (packed && T == 1) {
        if (kind == K_Q8 || kind == K_Q4)
            one_packed(kind, n, w, x, y);
        else
            one_packed_kq(kind, n, w, x, y);
        return;
    }
    /* decode: the strip's rows one after the other (strip1) when they lie back
     * to back and fit one column chunk, so that the strip is one sequential
     * stream; Q4_0 (whose rows strip_one reads as fast) and the column chunks
     * of the summation tree (rows apart) read the 16 rows side by side */
    const size_t row_bytes = kind == K_Q8    ? (size_t)nb * 34
                             : kind == K_Q4K ? (size_t)(n / 256) * sizeof(gk_block_q4_K)
                             : kind == K_Q5K ? (size_t)(n / 256) * sizeof(gk_block_q5_K)
                                             : (size_t)(n / 256) * sizeof(gk_block_q6_K);
    if (!packed && T == 1 && kind != K_Q4 && nb_row == row_bytes && n <= R1_CHUNK) {
        strip1(kind, n, w, nb_row, R, x, y, m);
        return;
    }
    if (!packed && T == 1 && (kind == K_Q8 || kind == K_Q4)) {
        strip_one(kind, n, w, nb_row, R, x, y, m);
        return;
    }
    strip_buf buf __attribute__((aligned(64)));
    for (int64_t b0 = 0; b0 < nb; b0 += KB) {
        int nbk = nb - b0 < KB ? (int)(nb - b0) : KB;
        if (T <= 2) {
            /* decode streams the weights from memory: fetch the next strip (the
             * rows that follow, contiguous) in step with this one */
            const size_t span = (size_t)SR * nb_row, lo = span * (size_t)b0 / (size_t)nb,
                         hi = span * (size_t)(b0 + nbk) / (size_t)nb;
            for (size_t p = lo & ~(size_t)63; p < hi; p += 64)
                _mm_prefetch((const char *)w + span + p, _MM_HINT_T0);
        }
        if (packed)
            unpack_packed(kind, w, b0, nbk, &buf);
        else
            unpack_chunk(kind, w, nb_row, R, b0, nbk, &buf);
        int t = 0;
        for (; t + NT <= T; t += NT)
            strip_tile(kind, NT, nbk, &buf, b0, n, x + (size_t)t * xs, xs, y + (size_t)t * ldy, ldy,
                       b0 == 0, m);
        switch (T - t) {
#define CASE(N)                                                                                    \
    case N:                                                                                        \
        strip_tile(kind, N, nbk, &buf, b0, n, x + (size_t)t * xs, xs, y + (size_t)t * ldy, ldy,    \
                   b0 == 0, m);                                                                    \
        break;
            CASE(1)
            CASE(2)
            CASE(3)
            CASE(4)
            CASE(5)
            CASE(6)
            CASE(7)
#undef CASE
        default:
            break;
        }
    }
}

static void strip_q8(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, size_t xs,
                     int T, float *y, int64_t ldy) {
    strip_run(K_Q8, false, n, w, nb_row, R, x, xs, T, y, ldy);
}
static void strip_q4(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, size_t xs,
                     int T, float *y, int64_t ldy) {
    strip_run(K_Q4, false, n, w, nb_row, R, x, xs, T, y, ldy);
}

static void strip_q4k(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x,
                      size_t xs, int T, float *y, int64_t ldy) {
    strip_run(K_Q4K, false, n, w, nb_row, R, x, xs, T, y, ldy);
}
static void strip_q5k(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x,
                      size_t xs, int T, float *y, int64_t ldy) {
    strip_run(K_Q5K, false, n, w, nb_row, R, x, xs, T, y, ldy);
}
static void strip_q6k(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x,
                      size_t xs, int T, float *y, int64_t ldy) {
    strip_run(K_Q6K, false, n, w, nb_row, R, x, xs, T, y, ldy);
}

/* Decode through gemm.h's one: strip1 for rows of up to R1_CHUNK inputs, also
 * when they lie apart (a column chunk of the summation tree, whose rows
 * gk_matmul_chunks reads one after the other), else the strips' own T = 1 path. */
AI void one_run(const int kind, int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x,
                float *y) {
    if (n <= R1_CHUNK) {
        strip1(kind, n, w, nb_row, R, x, y, (__mmask16)((1u << R) - 1));
        return;
    }
    strip_run(kind, false, n, w, nb_row, R, x, 0, 1, y, 0);
}
static void one_q8(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, float *y) {
    one_run(K_Q8, n, w, nb_row, R, x, y);
}
/* Q4_0: strip_one, its 16 rows side by side, also for a chunk's rows (a
 * row-by-row strip1 for Q4_0, tried, ran decode at three quarters of its speed:
 * the per-row block sums and transposes cost more than Q4_0's reads save) */
static void one_q4(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, float *y) {
    strip_one(K_Q4, n, w, nb_row, R, x, y, (__mmask16)((1u << R) - 1));
}
static void one_q4k(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, float *y) {
    one_run(K_Q4K, n, w, nb_row, R, x, y);
}
static void one_q5k(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, float *y) {
    one_run(K_Q5K, n, w, nb_row, R, x, y);
}
static void one_q6k(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, float *y) {
    one_run(K_Q6K, n, w, nb_row, R, x, y);
}

static const gk_gemm_kernels s_q4k = {
    .rmax = SR, .nmax = NT, .xrow = xrow_s, .pack = pack_s_q4k, .strip = strip_q4k, .one = one_q4k};
static const gk_gemm_kernels s_q5k = {
    .rmax = SR, .nmax = NT, .xrow = xrow_s, .pack = pack_s_q4k, .strip = strip_q5k, .one = one_q5k};
static const gk_gemm_kernels s_q6k = {
    .rmax = SR, .nmax = NT, .xrow = xrow_s, .pack = pack_s_q6k, .strip = strip_q6k, .one = one_q6k};
static const gk_gemm_kernels s_q8 = {
    .rmax = SR, .nmax = NT, .xrow = xrow_s, .pack = pack_s_q8, .strip = strip_q8, .one = one_q8};
static const gk_gemm_kernels s_q4 = {
    .rmax = SR, .nmax = NT, .xrow = xrow_s, .pack = pack_s_q4, .strip = strip_q4, .one = one_q4};

/* the packed types' kernels and tables: strip_run with packed weights (decode's T = 1
 * included; a packed strip is whole, its R always 16) */
#define PACKED(name, KIND, PACK)                                                                   \
    static void strip_##name##p(int64_t n, const uint8_t *w, size_t nb_row, int R,                 \
                                const uint8_t *x, size_t xs, int T, float *y, int64_t ldy) {       \
        strip_run(KIND, true, n, w, nb_row, R, x, xs, T, y, ldy);                                  \
    }                                                                                              \
    static void one_##name##p(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, \
                              float *y) {                                                          \
        strip_run(KIND, true, n, w, nb_row, R, x, 0, 1, y, 0);                                     \
    }                                                                                              \
    static const gk_gemm_kernels s_##name##p = {.rmax = SR,                                        \
                                                .nmax = NT,                                        \
                                                .xrow = xrow_s,                                    \
                                                .pack = PACK,                                      \
                                                .strip = strip_##name##p,                          \
                                                .one = one_##name##p};
PACKED(q8, K_Q8, pack_s_q8)
PACKED(q4, K_Q4, pack_s_q4)
PACKED(q4k, K_Q4K, pack_s_q4k)
PACKED(q5k, K_Q5K, pack_s_q4k)
PACKED(q6k, K_Q6K, pack_s_q6k)
#undef PACKED

const gk_gemm_kernels *gk_gemm_kernels_avx512_packed(gk_dtype type) {
    switch (type) {
    case GK_TYPE_F32:
        return &z_f32p;
    case GK_TYPE_F16:
        return &z_f16p;
    case GK_TYPE_BF16:
        return &z_bf16p;
    case GK_TYPE_Q8_0:
        return &s_q8p;
    case GK_TYPE_Q4_0:
        return &s_q4p;
    case GK_TYPE_Q4_K:
        return &s_q4kp;
    case GK_TYPE_Q5_K:
        return &s_q5kp;
    case GK_TYPE_Q6_K:
        return &s_q6kp;
    default:
        return NULL;
    }
}

const gk_gemm_kernels *gk_gemm_kernels_avx512(gk_dtype type) {
    switch (type) {
    case GK_TYPE_Q8_0:
        return &s_q8;
    case GK_TYPE_Q4_0:
        return &s_q4;
    case GK_TYPE_Q4_K:
        return &s_q4k;
    case GK_TYPE_Q5_K:
        return &s_q5k;
    case GK_TYPE_Q6_K:
        return &s_q6k;
    case GK_TYPE_F32:
        return &z_f32;
    case GK_TYPE_F16:
        return &z_f16;
    case GK_TYPE_BF16:
        return &z_bf16;
    default:
        return NULL;
    }
}
