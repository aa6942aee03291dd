/*
 * test_sample.c - the sampler draws exactly the tokens of its definition: the
 * candidates in descending logit (ties by ascending id), top-k, top-p and min-p
 * on the untempered softmax, then a draw at the temperature from a seeded
 * xoshiro256** (sample.c's header). The reference below follows that
 * definition with the C library's qsort; gk_sampler_sample sorts a whole
 * vocabulary its own (faster) way and must pick the same token on every draw,
 * with ties, signed zeros, infinities and NaN among the logits.
 */
#include "gk_test.h"
#include "grok.h"

#include <math.h>
#include <stdint.h>

typedef struct {
    float logit;
    int32_t id;
} ref_cand;

static int ref_cmp(const void *a, const void *b) {
    const ref_cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

static uint64_t ref_splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t ref_rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static double ref_unit(uint64_t s[4]) { /* xoshiro256**, 53 bits */
    uint64_t r = ref_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ref_rotl(s[3], 45);
    return (double)(r >> 11) * 0x1.0p-53;
}

/* One draw by the definition (no repetition penalty: the tests give none). */
static int32_t ref_sample(const gk_sampler_params *p, const float *logits, int V, uint64_t rng[4],
                          ref_cand *c) {
    for (int i = 0; i < V; i++) c[i] = (ref_cand){isnan(logits[i]) ? -INFINITY : logits[i], i};
    qsort(c, (size_t)V, sizeof *c, ref_cmp);
    if (p->temperature <= 0.0f) return c[0].id;
    int n = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    double mx = c[0].logit;
    if (!isfinite(mx)) return c[0].id;
    if (p->top_p < 1.0f) {
        double sum = 0.0, cum = 0.0;
        for (int i = 0; i < n; i++) sum += exp((double)c[i].logit - mx);
        for (int i = 0; i < n; i++) {
            cum += exp((double)c[i].logit - mx) / sum;
            if (cum >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f) {
        double thresh = mx + log((double)p->min_p);
        int keep = 1;
        while (keep < n && (double)c[keep].logit >= thresh) keep++;
        n = keep;
    }
    double tsum = 0.0;
    for (int i = 0; i < n; i++) tsum += exp(((double)c[i].logit - mx) / p->temperature);
    double r = ref_unit(rng) * tsum, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += exp(((double)c[i].logit - mx) / p->temperature);
        if (r < acc) return c[i].id;
    }
    return c[n - 1].id;
}

static uint64_t lcg = 12345;
static double uniform(void) {
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg >> 11) * 0x1.0p-53;
}

/* Logits of one kind: 0 normal-ish, 1 few distinct values (many ties),
 * 2 ties plus signed zeros, infinities and NaN, 3 a sharp peak. */
static void fill(float *l, int V, int kind) {
    for (int i = 0; i < V; i++) {
        double u = uniform() + 1e-12, v = uniform();
        float g = (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
        switch (kind) {
        case 0:
            l[i] = 2.5f * g;
            break;
        case 1:
            l[i] = (float)(int)(4.0 * v) - 1.0f;
            break;
        case 2: {
            static const float odd[] = {0.0f, -0.0f, -INFINITY, NAN, 1.0f, -1.0f, 0.5f, 3.0f};
            l[i] = odd[(int)(8.0 * v) & 7];
            break;
        }
        default:
            l[i] = i == V / 3 ? 40.0f : 0.1f * g;
            break;
        }
    }
}

static void compare(int V, int kind, gk_sampler_params p, int draws) {
    float *l = malloc((size_t)V * sizeof *l);
    ref_cand *c = malloc((size_t)V * sizeof *c);
    gk_err err;
    gk_sampler *s = gk_sampler_new(&p, V, &err);
    CHECK(l && c && s);
    if (!l || !c || !s) goto out;
    uint64_t x = p.seed, rng[4];
    for (int i = 0; i < 4; i++) rng[i] = ref_splitmix(&x);
    int bad = 0;
    for (int d = 0; d < draws; d++) {
        if (d % 4 == 0) fill(l, V, kind);
        int32_t got = gk_sampler_sample(s, l, NULL, 0), want = ref_sample(&p, l, V, rng, c);
        if (got != want && bad++ < 3)
            fprintf(stderr,
                    "V %d kind %d temp %g top_p %g min_p %g top_k %d draw %d: %d, want %d\n", V,
                    kind, p.temperature, p.top_p, p.min_p, p.top_k, d, got, want);
    }
    CHECK(bad == 0);
out:
    gk_sampler_free(s);
    free(l);
    free(c);
}

int main(void) {
    const gk_sampler_params base = {.temperature = 1.0f,
                                    .top_k = 0,
                                    .top_p = 1.0f,
                                    .min_p = 0.0f,
                                    .repeat_penalty = 1.0f,
                                    .repeat_last_n = 64,
                                    .seed = 7};
    gk_sampler_params ps[5];
    for (int i = 0; i < 5; i++) ps[i] = base;
    ps[1].temperature = 0.7f, ps[1].top_p = 0.9f, ps[1].seed = 8;
    ps[2].min_p = 0.05f, ps[2].temperature = 1.3f, ps[2].seed = 9;
    ps[3].top_k = 40, ps[3].top_p = 0.95f, ps[3].seed = 10;
    ps[4].temperature = 0.0f;
    const int sizes[] = {1, 7, 300, 4099, 32768};
    for (int v = 0; v < 5; v++)
        for (int kind = 0; kind < 4; kind++)
            for (int i = 0; i < 5; i++) compare(sizes[v], kind, ps[i], sizes[v] > 5000 ? 24 : 64);
    return gk_test_done();
}
