/*
 * test_vmath.c - the vector math of kernels/vmath.h (exp, tanh, erf, the GELU
 * forms) and the array kernels built on it (kernels/ops.h):
 *  - the dispatched kernels (AVX2 where the CPU has it) equal the scalar
 *    functions bit for bit, on sweeps of every range, the branch thresholds and
 *    their neighbours, special values and random bit patterns, at every place
 *    in an array (the SIMD body and the scalar tail);
 *  - the error against libm in double stays within vmath.h's stated bounds:
 *    exp relative <= 2 ulp (subnormal results within one subnormal ulp), tanh
 *    and erf absolute <= 2^-23 + 2 ulp of the result, the GELU forms within
 *    2^-23 |x| + 2 ulp of the result (the error of 1 + erf or 1 + tanh, times x / 2);
 *  - gk_softcap_array and gk_geglu equal their scalar definitions;
 *  - gk_rms_scale sums in the order ops.h states (bit for bit, every length to 40
 *    and 1024), within 1 ulp of a long double sum, and gk_rmsnorm applies it as
 *    (x * r) * w.
 */
#include "gk_test.h"
#include "base/base.h"
#include "kernels/ops.h"
#include "kernels/vmath.h"

#include <math.h>
#include <stdint.h>

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t next32(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 32);
}
static float bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ulp of the float nearest to |v| (normal range; 2^-149 below) */
static double ulp_of(double v) {
    v = fabs(v);
    if (v < ldexp(1.0, -126)) return ldexp(1.0, -149);
    return ldexp(1.0, ilogb(v) - 23);
}

#define N_IN (1 << 20)

/* Inputs: a dense sweep of [lo, hi], the thresholds, special values, random bits. */
static int64_t inputs(float *x, float lo, float hi) {
    int64_t n = 0;
    const int64_t sweep = N_IN - 4096;
    for (int64_t i = 0; i < sweep; i++) x[n++] = lo + (hi - lo) * (float)((double)i / (sweep - 1));
    const float marks[] = {0.0f,  0.625f, 1.0f,   4.0f,  9.1f,   88.0f,    88.7f,
                           89.0f, 87.3f,  104.0f, 0.5f,  1e-30f, 1e-6f,    2.5f,
                           3.9f,  1.25f,  0.35f,  20.0f, 1e3f,   INFINITY, 1e38f};
    for (size_t m = 0; m < sizeof marks / sizeof marks[0]; m++)
        for (int s = -1; s <= 1; s += 2) {
            float v = s * marks[m];
            x[n++] = v;
            x[n++] = nextafterf(v, INFINITY);
            x[n++] = nextafterf(v, -INFINITY);
        }
    x[n++] = NAN;
    while (n < N_IN) x[n++] = bits(next32());
    return n;
}

static double ref_fn(gk_vm_fn fn, double x) {
    switch (fn) {
    case GK_VM_EXP:
        return exp(x);
    case GK_VM_TANH:
        return tanh(x);
    case GK_VM_ERF:
        return erf(x);
    case GK_VM_GELU_ERF:
        return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    default:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    }
}

static const char *fn_name[] = {"exp", "tanh", "erf", "gelu_erf", "gelu_tanh"};

static void check_fn(gk_vm_fn fn, float lo, float hi, float *x, float *y) {
    int64_t n = inputs(x, lo, hi);
    /* bit for bit against the scalar function, every place of the array */
    gk_vmath(fn, y, x, n);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float r = gk_vmath1(fn, x[i]);
        bool same = fbits(r) == fbits(y[i]) || (isnan(r) && isnan(y[i]));
        if (!same && bad++ < 3)
            CHECK_MSG(0, "%s(%a): kernel %a, scalar %a", fn_name[fn], x[i], y[i], r);
    }
    for (int off = 1; off < 9; off++) { /* the same values at other places (tails) */
        gk_vmath(fn, y, x + off, 37);
        for (int i = 0; i < 37; i++) {
            float r = gk_vmath1(fn, x[off + i]);
            if (!(fbits(r) == fbits(y[i]) || (isnan(r) && isnan(y[i]))) && bad++ < 3)
                CHECK_MSG(0, "%s tail offset %d place %d", fn_name[fn], off, i);
        }
    }
    /* error against libm in double */
    double worst = 0.0;
    float worst_x = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        double xv = x[i];
        if (!isfinite(xv)) {
            if (isnan(xv)) CHECK_MSG(isnan(y[i]), "%s(NaN) = %g", fn_name[fn], y[i]);
            continue;
        }
        double e = ref_fn(fn, xv), err = fabs((double)y[i] - e), bound;
        if (fn == GK_VM_EXP) {
            if (xv <= GK_VM_EXP_LO) {
                CHECK_MSG(y[i] == 0.0f, "exp(%a) = %a, want 0", x[i], y[i]);
                continue;
            }
            if (xv >= GK_VM_EXP_HI) {
                CHECK_MSG(isinf(y[i]), "exp(%a) = %a, want inf", x[i], y[i]);
                continue;
            }
            if (e > 3.4028234663852886e38) { /* past FLT_MAX: overflow to inf */
                CHECK_MSG(isinf(y[i]) || err <= 2 * ulp_of(e), "exp(%a) = %a", x[i], y[i]);
                continue;
            }
            bound = e < ldexp(1.0, -126) ? ldexp(1.0, -149) : 2 * ulp_of(e);
        } else if (fn == GK_VM_TANH || fn == GK_VM_ERF) {
            bound = ldexp(1.0, -23) + 2 * ulp_of(e);
        } else {
            bound = ldexp(1.0, -23) * fabs(xv) + 2 * ulp_of(e);
            if (fabs(xv) > 1e30) continue; /* x^3 overflows in float: the tanh form's inf */
        }
        double rel = err / bound;
        if (rel > worst) worst = rel, worst_x = x[i];
        if (!(err <= bound) && bad++ < 6)
            CHECK_MSG(0, "%s(%a) = %.9g, libm %.9g (error %.3g > bound %.3g)", fn_name[fn], x[i],
                      y[i], e, err, bound);
    }
    printf("%-9s worst error %.3f of the bound (at %a)\n", fn_name[fn], worst, worst_x);
}

static void check_arrays(float *x, float *y) {
    const int64_t n = 1003;
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) {
        x[i] = (float)((int32_t)next32()) * 1e-7f; /* about [-215, 215] */
        b[i] = (float)((int32_t)next32()) * 1e-9f;
    }
    const float caps[] = {30.0f, 50.0f, 0.0f};
    for (int c = 0; c < 3; c++) {
        memcpy(y, x, sizeof(float) * n);
        gk_softcap_array(y, n, 0.0883883f, caps[c]);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            float v = x[i] * 0.0883883f;
            float r = caps[c] > 0 ? caps[c] * gk_vtanh(v / caps[c]) : v;
            if (fbits(r) != fbits(y[i]) && bad++ < 3)
                CHECK_MSG(0, "softcap cap %g at %lld", caps[c], (long long)i);
        }
    }
    gk_err err;
    gk_pool *pool = gk_pool_new(2, &err);
    CHECK(pool != NULL);
    const gk_gelu kinds[] = {GK_GELU_ERF, GK_GELU_TANH};
    for (int k = 0; pool && k < 2; k++) {
        memcpy(a, x, sizeof(float) * n);
        gk_geglu(pool, a, b, n, kinds[k]);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            float r = (kinds[k] == GK_GELU_ERF ? gk_vgelu_erf(x[i]) : gk_vgelu_tanh(x[i])) * b[i];
            if (fbits(r) != fbits(a[i]) && bad++ < 3)
                CHECK_MSG(0, "geglu kind %d at %lld", k, (long long)i);
        }
    }
    if (pool) gk_pool_free(pool);
    free(a);
    free(b);
}

/* ops.h's order, written out: x[i]^2 into sum i % 8, then (s0+s4)..(s3+s7), then
 * ((0+2) + (1+3)). */
static float rms_scale_spec(const float *x, int64_t n, float eps) {
    double s[8] = {0};
    for (int64_t i = 0; i < n; i++) s[i % 8] += (double)x[i] * (double)x[i];
    double h[4];
    for (int l = 0; l < 4; l++) h[l] = s[l] + s[l + 4];
    return (float)(1.0 / sqrt(((h[0] + h[2]) + (h[1] + h[3])) / (double)n + eps));
}

static void check_rms(float *x, float *y) {
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int64_t n = 1; n <= 1024; n = n < 40 ? n + 1 : n + 984) {
        for (int64_t i = 0; i < n; i++) { /* magnitudes over 2^-10 .. 2^10, both signs */
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = ldexpf((float)((rng >> 40) & 0xffffff) / 16777216.0f + 0.5f,
                          (int)((rng >> 20) % 21) - 10) *
                   ((rng >> 19) & 1 ? -1.0f : 1.0f);
        }
        const float eps = 1e-5f, r = gk_rms_scale(x, n, eps);
        CHECK_MSG(r == rms_scale_spec(x, n, eps), "n %lld: %.9g vs %.9g", (long long)n, r,
                  rms_scale_spec(x, n, eps));
        long double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += (long double)x[i] * x[i];
        const float ref = (float)(1.0L / sqrtl(ss / n + eps));
        CHECK_MSG(fabsf(r - ref) <= nextafterf(fabsf(ref), INFINITY) - fabsf(ref), "n %lld: %.9g vs long double %.9g", (long long)n, r,
                  ref);
        gk_rmsnorm(y, x, x, n, eps); /* x as its own weights */
        for (int64_t i = 0; i < n; i++) CHECK(y[i] == x[i] * r * x[i]);
    }
}

int main(void) {
    float *x = malloc(sizeof(float) * (N_IN + 64)), *y = malloc(sizeof(float) * (N_IN + 64));
    check_fn(GK_VM_EXP, -110.0f, 90.0f, x, y);
    check_fn(GK_VM_TANH, -12.0f, 12.0f, x, y);
    check_fn(GK_VM_ERF, -5.0f, 5.0f, x, y);
    check_fn(GK_VM_GELU_ERF, -12.0f, 12.0f, x, y);
    check_fn(GK_VM_GELU_TANH, -12.0f, 12.0f, x, y);
    check_arrays(x, y);
    check_rms(x, y);
    free(x);
    free(y);
    return gk_test_done();
}
