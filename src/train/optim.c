/*
 * optim.c - AdamW with decoupled weight decay on matrices only, a linear
 * warmup into a cosine decay, and global-norm gradient clipping. The update
 * of each element depends only on that element, so the result is the same
 * for any thread count; the norm is summed in a fixed order.
 */
#include "train/train.h"

#include <math.h>

float gk_lr_at(const gk_adamw_cfg *c, int64_t step) {
    if (c->warmup > 0 && step < c->warmup) return c->lr_max * (float)(step + 1) / (float)c->warmup;
    int64_t span = c->total_steps - c->warmup;
    if (span <= 0) return c->lr_max;
    double prog = (double)(step - c->warmup) / (double)span;
    if (prog > 1.0) prog = 1.0;
    return c->lr_min + (float)(0.5 * (1.0 + cos(M_PI * prog))) * (c->lr_max - c->lr_min);
}

double gk_grad_norm(const gk_tmodel *tm) {
    double ss = 0.0;
    for (int i = 0; i < tm->n_tensors; i++) {
        const gk_ttensor *t = &tm->tensors[i];
        const float *g = tm->g + t->offset;
        double part = 0.0;
        for (size_t k = 0; k < t->n; k++) part += (double)g[k] * g[k];
        ss += part;
    }
    return sqrt(ss);
}

typedef struct {
    gk_tmodel *tm;
    float *m, *v;
    float lr, b1, b2, eps, wd, gscale, bc1, bc2;
} adam_job;

static void adam_part(void *arg, int ith, int nth) {
    adam_job *j = arg;
    const gk_tmodel *tm = j->tm;
    for (int i = 0; i < tm->n_tensors; i++) {
        const gk_ttensor *t = &tm->tensors[i];
        int64_t lo, hi;
        gk_split((int64_t)t->n, ith, nth, &lo, &hi);
        float *w = tm->w + t->offset, *g = tm->g + t->offset, *m = j->m + t->offset,
              *v = j->v + t->offset;
        float decay = t->decay ? 1.0f - j->lr * j->wd : 1.0f;
        for (int64_t k = lo; k < hi; k++) {
            float gk = g[k] * j->gscale;
            m[k] = j->b1 * m[k] + (1.0f - j->b1) * gk;
            v[k] = j->b2 * v[k] + (1.0f - j->b2) * gk * gk;
            float mh = m[k] / j->bc1, vh = v[k] / j->bc2;
            w[k] = w[k] * decay - j->lr * mh / (sqrtf(vh) + j->eps);
        }
    }
}

double gk_adamw_step(gk_tmodel *tm, float *m, float *v, int64_t t, const gk_adamw_cfg *c,
                     gk_pool *pool) {
    double norm = gk_grad_norm(tm);
    float gscale = 1.0f;
    if (c->clip > 0 && norm > c->clip) gscale = (float)(c->clip / (norm + 1e-6));
    adam_job j = {.tm = tm,
                  .m = m,
                  .v = v,
                  .lr = gk_lr_at(c, t - 1),
                  .b1 = c->beta1,
                  .b2 = c->beta2,
                  .eps = c->eps,
                  .wd = c->weight_decay,
                  .gscale = gscale,
                  .bc1 = 1.0f - powf(c->beta1, (float)t),
                  .bc2 = 1.0f - powf(c->beta2, (float)t)};
    gk_pool_run(pool, adam_part, &j);
    return norm;
}
