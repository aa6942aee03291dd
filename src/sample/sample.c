/*
 * sample.c - token samplers, applied in llama.cpp's order: repetition penalty,
 * then (unless greedy) top-k, top-p, min-p, temperature, and a draw from the
 * remaining distribution with a seeded xoshiro256** generator. Temperature 0
 * is greedy (argmax, lowest id on ties). Buffers are sized once per sampler.
 */
#include "base/base.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float logit;
    int32_t id;
} cand;

struct gk_sampler {
    gk_sampler_params p;
    int32_t n_vocab;
    cand *c, *c2; /* candidates, and the radix sort's second buffer */
    float *logits;
    double *w;                /* tempered weights of the kept candidates */
    uint32_t cnt[3][1 << 11]; /* the radix sort's digit counts */
    uint64_t s[4];
};

gk_sampler_params gk_sampler_default_params(void) {
    return (gk_sampler_params){.temperature = 0.8f,
                               .top_k = 40,
                               .top_p = 0.95f,
                               .min_p = 0.05f,
                               .repeat_penalty = 1.0f,
                               .repeat_last_n = 64,
                               .seed = 0};
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* uniform in [0, 1) with 53 random bits */
static double next_unit(uint64_t s[4]) {
    return (double)(next_u64(s) >> 11) * 0x1.0p-53;
}

gk_sampler *gk_sampler_new(const gk_sampler_params *p, int32_t n_vocab, gk_err *err) {
    if (n_vocab <= 0) return gk_failp(err, "sampler: vocabulary size %d", n_vocab);
    gk_sampler_params q = p ? *p : gk_sampler_default_params();
    if (!(q.temperature >= 0.0f) || !isfinite(q.temperature))
        return gk_failp(err, "sampler: temperature must be >= 0");
    if (q.top_k < 0) return gk_failp(err, "sampler: top-k must be >= 0");
    if (!(q.top_p > 0.0f && q.top_p <= 1.0f))
        return gk_failp(err, "sampler: top-p must be in (0, 1]");
    if (!(q.min_p >= 0.0f && q.min_p <= 1.0f))
        return gk_failp(err, "sampler: min-p must be in [0, 1]");
    if (!(q.repeat_penalty > 0.0f) || !isfinite(q.repeat_penalty))
        return gk_failp(err, "sampler: repetition penalty must be > 0");
    if (q.repeat_last_n < 0) return gk_failp(err, "sampler: repeat-last-n must be >= 0");
    gk_sampler *s = gk_calloc(1, sizeof *s, err);
    if (!s) return NULL;
    s->p = q;
    s->n_vocab = n_vocab;
    s->c = gk_malloc((size_t)n_vocab * sizeof(cand), err);
    s->c2 = gk_malloc((size_t)n_vocab * sizeof(cand), err);
    s->logits = gk_malloc((size_t)n_vocab * sizeof(float), err);
    s->w = gk_malloc((size_t)n_vocab * sizeof(double), err);
    if (!s->c || !s->c2 || !s->logits || !s->w) {
        gk_sampler_free(s);
        return NULL;
    }
    uint64_t x = q.seed;
    for (int i = 0; i < 4; i++) s->s[i] = splitmix64(&x);
    return s;
}

void gk_sampler_free(gk_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->c2);
    free(s->logits);
    free(s->w);
    free(s);
}

static int cmp_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id; /* stable order for determinism */
}

/* A logit as an unsigned key that ascends as the logit descends; -0 and +0
 * share a key, as cmp_desc has them equal. NaN never gets here. */
static inline uint32_t desc_key(float f) {
    uint32_t u;
    if (f == 0.0f) f = 0.0f;
    memcpy(&u, &f, sizeof u);
    u = (u & 0x80000000u) ? ~u : u | 0x80000000u; /* ascends with f */
    return ~u;
}

#define RADIX_BITS 11 /* three digits cover the 32-bit key */
#define RADIX_N (1 << RADIX_BITS)

/* Sorts the n candidates of s->c (laid out in ascending id) into cmp_desc's
 * order: a stable LSD radix sort on desc_key in three passes of 11 bits, so
 * ties keep ascending ids. The same order as qsort with cmp_desc in O(n): a
 * whole vocabulary is sorted for every sampled token. */
static void sort_desc(gk_sampler *s, int n) {
    uint32_t(*cnt)[RADIX_N] = s->cnt;
    memset(s->cnt, 0, sizeof s->cnt);
    for (int i = 0; i < n; i++) {
        uint32_t k = desc_key(s->c[i].logit);
        cnt[0][k & (RADIX_N - 1)]++;
        cnt[1][(k >> RADIX_BITS) & (RADIX_N - 1)]++;
        cnt[2][k >> (2 * RADIX_BITS)]++;
    }
    for (int pass = 0; pass < 3; pass++) {
        uint32_t *h = cnt[pass], total = 0;
        const int shift = pass * RADIX_BITS;
        bool one_bucket = false;
        for (int b = 0; b < RADIX_N; b++) {
            if (h[b] == (uint32_t)n) one_bucket = true;
            uint32_t c = h[b];
            h[b] = total;
            total += c;
        }
        if (one_bucket) continue; /* every key has this digit: the order stands */
        for (int i = 0; i < n; i++) {
            uint32_t d = (desc_key(s->c[i].logit) >> shift) & (RADIX_N - 1);
            s->c2[h[d]++] = s->c[i];
        }
        cand *t = s->c;
        s->c = s->c2;
        s->c2 = t;
    }
}

int32_t gk_sampler_sample(gk_sampler *s, const float *logits, const int32_t *history,
                          int n_history) {
    const gk_sampler_params *p = &s->p;
    const int32_t V = s->n_vocab;
    float *l = s->logits;
    for (int32_t i = 0; i < V; i++) l[i] = isnan(logits[i]) ? -INFINITY : logits[i];
    /* llama.cpp's penalty: each distinct recent token once; positive logits are
     * divided by the penalty, negative ones multiplied. */
    if (p->repeat_penalty != 1.0f && history && n_history > 0) {
        int from = n_history > p->repeat_last_n ? n_history - p->repeat_last_n : 0;
        for (int i = from; i < n_history; i++) {
            int32_t id = history[i];
            if (id < 0 || id >= V) continue;
            bool seen = false;
            for (int j = from; j < i && !seen; j++) seen = history[j] == id;
            if (seen) continue;
            l[id] = l[id] > 0.0f ? l[id] / p->repeat_penalty : l[id] * p->repeat_penalty;
        }
    }
    if (p->temperature <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++)
            if (l[i] > l[best]) best = i;
        return best;
    }
    /* Candidates sorted by logit. A full sort of a 131072 vocabulary costs ~10 ms;
     * with top-k, select the k best first. */
    int n = V;
    for (int32_t i = 0; i < V; i++) s->c[i] = (cand){l[i], i};
    if (p->top_k > 0 && p->top_k < V) {
        /* partial selection: keep the top_k largest at the front (quickselect) */
        int k = p->top_k, lo = 0, hi = V - 1;
        while (lo < hi) {
            cand pivot = s->c[(lo + hi) / 2];
            int i = lo, j = hi;
            while (i <= j) {
                while (cmp_desc(&s->c[i], &pivot) < 0) i++;
                while (cmp_desc(&s->c[j], &pivot) > 0) j--;
                if (i <= j) {
                    cand t = s->c[i];
                    s->c[i++] = s->c[j];
                    s->c[j--] = t;
                }
            }
            if (k - 1 <= j)
                hi = j;
            else if (k - 1 >= i)
                lo = i;
            else
                break;
        }
        n = k;
    }
    if (n == V)
        sort_desc(s, n); /* the candidates are still in id order */
    else
        qsort(s->c, (size_t)n, sizeof(cand), cmp_desc);
    /* softmax at temperature 1 for top-p and min-p (llama.cpp applies the
     * temperature last, so the truncations see the untempered distribution) */
    double mx = s->c[0].logit;
    if (!isfinite(mx)) return s->c[0].id; /* no finite logit: nothing to weigh */
    if (p->top_p < 1.0f) {
        double sum = 0.0, cum = 0.0;
        for (int i = 0; i < n; i++) sum += exp((double)s->c[i].logit - mx);
        for (int i = 0; i < n; i++) {
            cum += exp((double)s->c[i].logit - mx) / sum;
            if (cum >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f) {
        /* keep tokens with probability >= min_p * p(top) */
        double thresh = mx + log((double)p->min_p);
        int keep = 1;
        while (keep < n && (double)s->c[keep].logit >= thresh) keep++;
        n = keep;
    }
    double tsum = 0.0;
    for (int i = 0; i < n; i++)
        tsum += s->w[i] = exp(((double)s->c[i].logit - mx) / p->temperature);
    double r = next_unit(s->s) * tsum, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += s->w[i];
        if (r < acc) return s->c[i].id;
    }
    return s->c[n - 1].id;
}
