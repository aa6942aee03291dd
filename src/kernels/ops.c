/*
 * ops.c - see ops.h.
 */
#include "kernels/ops.h"

#include <string.h>

typedef struct {
    float *y;
    const uint8_t *w;
    const gk_type_traits *tt;
    size_t nb_row;
    int64_t n_out, n_in;
    const float *x;
    const uint8_t *xq; /* x converted to tt->vec_dot_type (or x itself) */
    size_t xq_row;
    int T;
} matmul_job;

static void matmul_convert(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    const gk_type_traits *vt = gk_type_traits_of(j->tt->vec_dot_type);
    int64_t lo, hi;
    gk_split(j->T, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++)
        vt->from_float(j->x + t * j->n_in, (uint8_t *)j->xq + t * j->xq_row, j->n_in);
}

/* Rows of W in tiles of 4, each tile against every token: the tile stays in
 * cache while the tokens stream past it. */
static void matmul_rows(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    int64_t lo, hi;
    gk_split((j->n_out + 3) / 4, ith, nth, &lo, &hi);
    lo *= 4;
    hi = hi * 4 < j->n_out ? hi * 4 : j->n_out;
    gk_vec_dot_fn dot = j->tt->vec_dot;
    gk_vec_dot4_fn dot4 = j->tt->vec_dot4;
    for (int64_t o0 = lo; o0 < hi; o0 += 4) {
        int64_t o1 = o0 + 4 < hi ? o0 + 4 : hi;
        const uint8_t *w = j->w + (size_t)o0 * j->nb_row;
        for (int t = 0; t < j->T; t++) {
            const uint8_t *xr = j->xq + (size_t)t * j->xq_row;
            float *yr = j->y + (size_t)t * j->n_out;
            if (dot4 && o1 - o0 == 4) {
                dot4(j->n_in, w, j->nb_row, xr, yr + o0);
                continue;
            }
            for (int64_t o = o0; o < o1; o++) yr[o] = dot(j->n_in, j->w + (size_t)o * j->nb_row, xr);
        }
    }
}

size_t gk_matmul_qbuf_size(int64_t n_in, int T) {
    /* the widest converted form: Q8_K (292 bytes per 256 values, the k-quants'
     * activations) or Q8_0 (34 per 32) */
    size_t q8_0 = gk_row_size(GK_TYPE_Q8_0, (n_in + 31) / 32 * 32);
    size_t q8_k = gk_row_size(GK_TYPE_Q8_K, (n_in + 255) / 256 * 256);
    return (size_t)T * (q8_k > q8_0 ? q8_k : q8_0);
}

void gk_matmul(gk_pool *pool, float *y, const void *w, gk_dtype type, size_t nb_row,
               int64_t n_out, const float *x, int64_t n_in, int T, void *qbuf) {
    matmul_job j = {.y = y, .w = w, .tt = gk_type_traits_of(type), .nb_row = nb_row,
                    .n_out = n_out, .n_in = n_in, .x = x, .T = T};
    if (j.tt->vec_dot_type == GK_TYPE_F32) {
        j.xq = (const uint8_t *)x;
        j.xq_row = (size_t)n_in * sizeof(float);
    } else {
        j.xq = qbuf;
        j.xq_row = gk_row_size(j.tt->vec_dot_type, n_in);
        gk_pool_run(pool, matmul_convert, &j);
    }
    gk_pool_run(pool, matmul_rows, &j);
}

void gk_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * r * w[i];
}

typedef struct {
    float *a;
    const float *b;
    int64_t n;
    bool erf;
} geglu_job;

static void geglu_part(void *arg, int ith, int nth) {
    geglu_job *j = arg;
    int64_t lo, hi;
    gk_split(j->n, ith, nth, &lo, &hi);
    if (j->erf)
        for (int64_t i = lo; i < hi; i++) j->a[i] = gk_gelu_erf(j->a[i]) * j->b[i];
    else
        for (int64_t i = lo; i < hi; i++) j->a[i] = gk_gelu_tanh(j->a[i]) * j->b[i];
}

void gk_geglu(gk_pool *pool, float *a, const float *b, int64_t n, bool erf) {
    geglu_job j = {.a = a, .b = b, .n = n, .erf = erf};
    gk_pool_run(pool, geglu_part, &j);
}

/* Angles in double: with Grok-2's theta of 2e8 and long contexts a float angle
 * loses digits. */
void gk_rope_tables(const gk_rope_cfg *rc, uint32_t pos0, int T, float *cos_t, float *sin_t) {
    int half = rc->n_rot / 2;
    for (int t = 0; t < T; t++) {
        double p = (double)pos0 + t;
        for (int i = 0; i < half; i++) {
            double th_extrap = p * pow(rc->freq_base, -2.0 * i / rc->n_rot);
            double theta = rc->freq_scale * th_extrap, mscale = 1.0;
            if (rc->yarn) {
                /* ggml rope_yarn: mix interpolated and extrapolated angles over the
                 * correction range, and scale magnitudes by mscale. */
                double y = (i - rc->corr_lo) / fmax(0.001, rc->corr_hi - rc->corr_lo);
                double ramp = (1.0 - fmin(1.0, fmax(0.0, y))) * rc->ext_factor;
                theta = theta * (1.0 - ramp) + th_extrap * ramp;
                mscale = rc->mscale;
            }
            cos_t[t * half + i] = (float)(cos(theta) * mscale);
            sin_t[t * half + i] = (float)(sin(theta) * mscale);
        }
    }
}

void gk_rope_apply(float *v, int T, int n_heads, int head_dim, int n_rot, const float *cos_t,
                   const float *sin_t) {
    int half = n_rot / 2;
    for (int t = 0; t < T; t++) {
        const float *cs = cos_t + t * half, *sn = sin_t + t * half;
        for (int h = 0; h < n_heads; h++) {
            float *x = v + ((size_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                float a = x[i], b = x[i + half];
                x[i] = a * cs[i] - b * sn[i];
                x[i + half] = b * cs[i] + a * sn[i];
            }
        }
    }
}
