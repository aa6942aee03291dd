/*
 * ckpt.c - see ckpt.h. The optimizer-state file (little-endian):
 *   "GKOPTST1" | u32 version 1 | u32 0 | u64 n_params | u64 weights checksum |
 *   gk_train_pos (6 x 8 bytes) | m[n_params] f32 | v[n_params] f32 | u64 FNV-1a
 *   of everything before it.
 * The weights checksum ties the file to its GGUF: resuming from a .opt with
 * other weights is refused.
 */
#include "train/ckpt.h"
#include "train/data.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FNV0 0xcbf29ce484222325ull

uint64_t gk_tmodel_checksum(const gk_tmodel *tm) {
    uint64_t h = FNV0;
    for (int i = 0; i < tm->n_tensors; i++)
        h = gk_fnv1a(h, tm->w + tm->tensors[i].offset, tm->tensors[i].n * sizeof(float));
    return h;
}

/* Writes n parts to path atomically; the checksum of all of them is appended
 * when with_sum. */
static int write_atomic(const char *path, const void *const *parts, const size_t *sizes, int n,
                        bool with_sum, gk_err *err) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return gk_fail(err, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return gk_fail(err, "%s: %s", tmp, strerror(errno));
    uint64_t h = FNV0;
    bool ok = true;
    for (int i = 0; i < n && ok; i++) {
        ok = fwrite(parts[i], 1, sizes[i], f) == sizes[i];
        if (with_sum) h = gk_fnv1a(h, parts[i], sizes[i]);
    }
    if (ok && with_sum) ok = fwrite(&h, 8, 1, f) == 1;
    int e = ok ? 0 : errno;
    if (fflush(f) != 0 && ok) ok = false, e = errno;
    if (fsync(fileno(f)) != 0 && ok) ok = false, e = errno;
    if (fclose(f) != 0 && ok) ok = false, e = errno;
    if (ok && rename(tmp, path) != 0) ok = false, e = errno;
    if (!ok) {
        unlink(tmp);
        return gk_fail(err, "writing %s: %s", path, strerror(e ? e : EIO));
    }
    return 0;
}

static void pair_paths(const char *dir, uint64_t step, char *gguf, char *opt, size_t cap) {
    snprintf(gguf, cap, "%s/step-%08llu.gguf", dir, (unsigned long long)step);
    snprintf(opt, cap, "%s/step-%08llu.opt", dir, (unsigned long long)step);
}

/* Removes checkpoint pairs older than the newest `keep`. */
static void prune(const char *dir, int keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    uint64_t steps[4096];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 4096) {
        unsigned long long s;
        int pos = 0;
        if (sscanf(de->d_name, "step-%llu.gguf%n", &s, &pos) == 1 && pos > 0 && !de->d_name[pos])
            steps[n++] = s;
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        int newer = 0;
        for (int j = 0; j < n; j++) newer += steps[j] > steps[i];
        if (newer >= keep) {
            char g[4200], o[4200];
            pair_paths(dir, steps[i], g, o, sizeof g);
            unlink(o);
            unlink(g);
        }
    }
}

int gk_ckpt_save(const char *dir, const gk_tmodel *tm, const float *m, const float *v,
                 const gk_train_pos *pos, const gk_tsave_opts *so, int keep, char *gguf_out,
                 size_t cap, gk_err *err) {
    char g[4200], o[4200], latest[4200], name[64];
    pair_paths(dir, pos->step, g, o, sizeof g);
    snprintf(latest, sizeof latest, "%s/latest", dir);
    uint32_t hdr32[2] = {1, 0};
    uint64_t hdr64[2] = {tm->n_params, gk_tmodel_checksum(tm)};
    const void *parts[] = {"GKOPTST1", hdr32, hdr64, pos, m, v};
    size_t sizes[] = {8,
                      sizeof hdr32,
                      sizeof hdr64,
                      sizeof *pos,
                      tm->n_params * sizeof(float),
                      tm->n_params * sizeof(float)};
    if (write_atomic(o, parts, sizes, 6, true, err) < 0) return -1;
    gk_tsave_opts s = *so;
    s.type = GK_TYPE_F32;
    s.step = pos->step;
    if (gk_tmodel_save(tm, g, &s, err) < 0) {
        unlink(o); /* an orphan without weights; the previous pair stays current */
        return -1;
    }
    int nl = snprintf(name, sizeof name, "step-%08llu\n", (unsigned long long)pos->step);
    const void *lp[] = {name};
    size_t ls[] = {(size_t)nl};
    if (write_atomic(latest, lp, ls, 1, false, err) < 0) {
        unlink(o), unlink(g);
        return -1;
    }
    if (keep > 0) prune(dir, keep);
    if (gguf_out) snprintf(gguf_out, cap, "%s", g);
    return 0;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int gk_ckpt_resolve(const char *arg, char *gguf, char *opt, size_t cap, gk_err *err) {
    struct stat st;
    if (stat(arg, &st) != 0) return gk_fail(err, "--resume %s: %s", arg, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char lp[4200], name[64] = {0};
        snprintf(lp, sizeof lp, "%s/latest", arg);
        FILE *f = fopen(lp, "rb");
        if (!f) return gk_fail(err, "--resume %s: no checkpoint there (no 'latest' file)", arg);
        size_t n = fread(name, 1, sizeof name - 1, f);
        fclose(f);
        unsigned long long s;
        int pos = 0;
        if (n == 0 || sscanf(name, "step-%llu%n", &s, &pos) != 1 ||
            (name[pos] && name[pos] != '\n'))
            return gk_fail(err, "--resume %s: 'latest' is damaged", arg);
        pair_paths(arg, s, gguf, opt, cap);
        return 0;
    }
    size_t n = strlen(arg);
    if (n + 1 > cap) return gk_fail(err, "--resume: path too long");
    if (ends_with(arg, ".gguf") || ends_with(arg, ".opt")) {
        size_t stem = n - (ends_with(arg, ".gguf") ? 5 : 4);
        snprintf(gguf, cap, "%.*s.gguf", (int)stem, arg);
        snprintf(opt, cap, "%.*s.opt", (int)stem, arg);
        return 0;
    }
    return gk_fail(err, "--resume %s: give a checkpoint directory or a step-N.gguf file", arg);
}

int gk_ckpt_load_opt(const char *path, const gk_tmodel *tm, float *m, float *v, gk_train_pos *pos,
                     gk_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return gk_fail(err, "%s: %s", path, strerror(errno));
    const size_t head = 8 + 8 + 16 + sizeof *pos, body = 2 * tm->n_params * sizeof(float);
    uint8_t hdr[8 + 8 + 16 + sizeof(gk_train_pos)];
    struct stat st;
    int rc = -1;
    if (fstat(fileno(f), &st) != 0 || (size_t)st.st_size != head + body + 8) {
        gk_fail(err, "%s: size %lld, expected %zu: truncated or not for this model", path,
                (long long)st.st_size, head + body + 8);
        goto done;
    }
    if (fread(hdr, 1, head, f) != head || memcmp(hdr, "GKOPTST1", 8)) {
        gk_fail(err, "%s: not an optimizer-state file (bad magic)", path);
        goto done;
    }
    uint32_t ver;
    uint64_t np, wsum, stored;
    memcpy(&ver, hdr + 8, 4), memcpy(&np, hdr + 16, 8), memcpy(&wsum, hdr + 24, 8);
    if (ver != 1) {
        gk_fail(err, "%s: unsupported version %u", path, ver);
        goto done;
    }
    if (np != tm->n_params) {
        gk_fail(err, "%s: holds %llu parameters, the model %zu", path, (unsigned long long)np,
                tm->n_params);
        goto done;
    }
    if (fread(m, sizeof(float), tm->n_params, f) != tm->n_params ||
        fread(v, sizeof(float), tm->n_params, f) != tm->n_params || fread(&stored, 8, 1, f) != 1) {
        gk_fail(err, "%s: read error", path);
        goto done;
    }
    uint64_t h = gk_fnv1a(FNV0, hdr, head);
    h = gk_fnv1a(h, m, tm->n_params * sizeof(float));
    h = gk_fnv1a(h, v, tm->n_params * sizeof(float));
    if (h != stored) {
        gk_fail(err, "%s: checksum mismatch: the file is corrupt", path);
        goto done;
    }
    if (wsum != gk_tmodel_checksum(tm)) {
        gk_fail(err,
                "%s: belongs to other weights than the checkpoint's .gguf (checksum "
                "mismatch)",
                path);
        goto done;
    }
    memcpy(pos, hdr + 32, sizeof *pos);
    rc = 0;
done:
    fclose(f);
    return rc;
}
