/*
 * hw.c - devices and fleets: hardware presets from datasheets, preset files
 * written by `grok plan calibrate`, and what a model costs on a fleet
 * (inference splits and speed, training time and energy, a fleet's yearly
 * compute and its compute-optimal model).
 *
 * Datasheet peaks with sparsity are halved to the dense figure. Per-direction
 * link bandwidth is half the bidirectional figure vendors print. Latencies are
 * not datasheet figures: they are typical small-message costs (assumed, and
 * said so in each source line).
 */
#include "grok.h"

#include "base/base.h"
#include "plan/plan.h"
#include "tensor/dtype.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define LAT_NOTE " Latencies assumed (typical small-message costs), not datasheet figures."

static const gk_plan_hw hw_presets[] = {
    {.name = "H100-SXM",
     .desc = "NVIDIA H100 SXM5 80GB (DGX/HGX H100 node of 8)",
     .source = "NVIDIA H100 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/"
               "h100/ : BF16 1979 / FP8 3958 TFLOPS with sparsity, 80 GB HBM3, 3.35 TB/s, NVLink "
               "900 GB/s, up to 700 W; DGX H100: 8x ConnectX-7 400 Gb/s." LAT_NOTE,
     .bf16_flops = 989.5e12,
     .fp8_flops = 1979e12,
     .mem_bytes = 80e9,
     .mem_bw = 3.35e12,
     .link_bw = 450e9,
     .link_lat = 1e-6,
     .domain = 8,
     .net_bw = 50e9,
     .net_lat = 5e-6,
     .tdp_w = 700},
    {.name = "H100-PCIe",
     .desc = "NVIDIA H100 PCIe 80GB",
     .source = "NVIDIA H100 Tensor Core GPU datasheet (PCIe column), https://www.nvidia.com/en-us/"
               "data-center/h100/ : BF16 1513 / FP8 3026 TFLOPS with sparsity, 80 GB HBM2e, "
               "2.0 TB/s, PCIe Gen5 128 GB/s, 300-350 W." LAT_NOTE,
     .bf16_flops = 756.5e12,
     .fp8_flops = 1513e12,
     .mem_bytes = 80e9,
     .mem_bw = 2.0e12,
     .link_bw = 64e9,
     .link_lat = 5e-6,
     .domain = 8,
     .net_bw = 25e9,
     .net_lat = 5e-6,
     .tdp_w = 350},
    {.name = "H200",
     .desc = "NVIDIA H200 SXM 141GB (HGX H200 node of 8)",
     .source = "NVIDIA H200 datasheet, https://www.nvidia.com/en-us/data-center/h200/ : BF16 1979 "
               "/ FP8 3958 TFLOPS with sparsity, 141 GB HBM3e, 4.8 TB/s, NVLink 900 GB/s, up to "
               "700 W." LAT_NOTE,
     .bf16_flops = 989.5e12,
     .fp8_flops = 1979e12,
     .mem_bytes = 141e9,
     .mem_bw = 4.8e12,
     .link_bw = 450e9,
     .link_lat = 1e-6,
     .domain = 8,
     .net_bw = 50e9,
     .net_lat = 5e-6,
     .tdp_w = 700},
    {.name = "B200",
     .desc = "NVIDIA B200 (HGX/DGX B200 node of 8)",
     .source = "NVIDIA DGX B200 datasheet, https://www.nvidia.com/en-us/data-center/dgx-b200/ : 8 "
               "GPUs, FP8 72 PFLOPS (sparse), 1,440 GB HBM3e, 64 TB/s, NVLink 5 1.8 TB/s per GPU; "
               "HGX B200 1000 W per GPU. Dense BF16 2.25 PFLOPS per GPU." LAT_NOTE,
     .bf16_flops = 2.25e15,
     .fp8_flops = 4.5e15,
     .mem_bytes = 180e9,
     .mem_bw = 8e12,
     .link_bw = 900e9,
     .link_lat = 1e-6,
     .domain = 8,
     .net_bw = 50e9,
     .net_lat = 5e-6,
     .tdp_w = 1000},
    {.name = "GB200-NVL72",
     .desc = "NVIDIA GB200 NVL72 rack, per GPU (72 GPUs in one NVLink domain)",
     .source =
         "NVIDIA GB200 NVL72 page, https://www.nvidia.com/en-us/data-center/gb200-nvl72/ : "
         "72 GPUs, FP8 720 / BF16 360 PFLOPS (sparse), up to 13.4 TB HBM3e, 576 TB/s, NVLink "
         "130 TB/s; per GPU 1,200 W (GB200 superchip: 2 GPUs + Grace, up to 2,700 W)." LAT_NOTE,
     .bf16_flops = 2.5e15,
     .fp8_flops = 5e15,
     .mem_bytes = 186e9,
     .mem_bw = 8e12,
     .link_bw = 900e9,
     .link_lat = 1e-6,
     .domain = 72,
     .net_bw = 50e9,
     .net_lat = 5e-6,
     .tdp_w = 1200},
    {.name = "A100-80GB",
     .desc = "NVIDIA A100 SXM4 80GB (DGX A100 node of 8)",
     .source = "NVIDIA A100 datasheet, https://www.nvidia.com/en-us/data-center/a100/ : BF16 312 "
               "TFLOPS dense, no FP8, 80 GB HBM2e, 2,039 GB/s, NVLink 600 GB/s, 400 W; DGX A100: "
               "8x 200 Gb/s HDR." LAT_NOTE,
     .bf16_flops = 312e12,
     .fp8_flops = 0,
     .mem_bytes = 80e9,
     .mem_bw = 2.039e12,
     .link_bw = 300e9,
     .link_lat = 1e-6,
     .domain = 8,
     .net_bw = 25e9,
     .net_lat = 5e-6,
     .tdp_w = 400},
    {.name = "MI300X",
     .desc = "AMD Instinct MI300X (platform of 8)",
     .source = "AMD Instinct MI300X data sheet, https://www.amd.com/en/products/accelerators/"
               "instinct/mi300/mi300x.html : BF16 1307.4 / FP8 2614.9 TFLOPS dense, 192 GB HBM3, "
               "5.3 TB/s, Infinity Fabric 896 GB/s peer (7 links), 750 W." LAT_NOTE,
     .bf16_flops = 1307.4e12,
     .fp8_flops = 2614.9e12,
     .mem_bytes = 192e9,
     .mem_bw = 5.3e12,
     .link_bw = 448e9,
     .link_lat = 1.5e-6,
     .domain = 8,
     .net_bw = 50e9,
     .net_lat = 5e-6,
     .tdp_w = 750},
    {.name = "H800",
     .desc = "NVIDIA H800 SXM5 80GB (export variant of H100, NVLink cut to 400 GB/s)",
     .source = "NVIDIA H800 product brief (compute and memory as H100 SXM: BF16 989 TFLOPS dense, "
               "80 GB, 3.35 TB/s, 700 W; NVLink 400 GB/s); DeepSeek-V3 Technical Report "
               "(arXiv:2412.19437) section 3.1: 8 H800 per node over NVLink/NVSwitch, InfiniBand "
               "across nodes (50 GB/s per GPU, section 3.2.2)." LAT_NOTE,
     .bf16_flops = 989.5e12,
     .fp8_flops = 1979e12,
     .mem_bytes = 80e9,
     .mem_bw = 3.35e12,
     .link_bw = 200e9,
     .link_lat = 1e-6,
     .domain = 8,
     .net_bw = 50e9,
     .net_lat = 5e-6,
     .tdp_w = 700},
    {.name = "CPU-2xEPYC9654",
     .desc = "CPU server: 2x AMD EPYC 9654 (192 Zen 4 cores), 24x DDR5-4800",
     .source = "AMD EPYC 9654 product page, https://www.amd.com/en/products/processors/server/epyc/"
               "4th-generation-9004-and-8004-series/amd-epyc-9654.html : 96 cores, 2.4 GHz base, "
               "12 channels DDR5-4800 (460.8 GB/s per socket), 360 W. BF16 peak = 192 cores x 2.4 "
               "GHz x 64 FLOP/cycle (AVX-512 VDPBF16PS on two 256-bit pipes). 1.5 TB memory, one "
               "200 Gb/s NIC. Power: the two CPUs only." LAT_NOTE,
     .bf16_flops = 29.5e12,
     .fp8_flops = 0,
     .mem_bytes = 1536e9,
     .mem_bw = 921.6e9,
     .link_bw = 25e9,
     .link_lat = 5e-6,
     .domain = 1,
     .net_bw = 25e9,
     .net_lat = 5e-6,
     .tdp_w = 720},
};
#define N_HW ((int)(sizeof hw_presets / sizeof hw_presets[0]))

static const struct {
    const char *alias, *name;
} hw_alias[] = {{"H100", "H100-SXM"},      {"A100", "A100-80GB"}, {"GB200", "GB200-NVL72"},
                {"CPU", "CPU-2xEPYC9654"}, {"H200-SXM", "H200"},  {"MI300", "MI300X"}};

const gk_plan_hw *gk_plan_hw_preset(int i) {
    return i >= 0 && i < N_HW ? &hw_presets[i] : NULL;
}

/* Compares names ignoring case, '-' and '_'. */
static bool same_name(const char *a, const char *b) {
    for (;;) {
        while (*a == '-' || *a == '_') a++;
        while (*b == '-' || *b == '_') b++;
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
        if (!*a) return true;
        a++, b++;
    }
}

int gk_plan_hw_find(const char *name, gk_plan_hw *out, gk_err *err) {
    struct stat st;
    if (strchr(name, '/') || (stat(name, &st) == 0 && S_ISREG(st.st_mode)))
        return gk_plan_hw_load(name, out, err);
    for (size_t i = 0; i < sizeof hw_alias / sizeof hw_alias[0]; i++)
        if (same_name(name, hw_alias[i].alias)) name = hw_alias[i].name;
    for (int i = 0; i < N_HW; i++)
        if (same_name(name, hw_presets[i].name)) {
            *out = hw_presets[i];
            return 0;
        }
    char list[512] = "";
    for (int i = 0; i < N_HW; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, hw_presets[i].name, sizeof list - strlen(list) - 1);
    }
    return gk_fail(err,
                   "unknown device '%s' (known: %s; or a preset file from grok plan "
                   "calibrate)",
                   name, list);
}

/* ------------------------------------------------------- preset files --- */

typedef struct {
    const char *key;
    size_t off;
} num_field;

#define NF(f)                                                                                      \
    { #f, offsetof(gk_plan_hw, f) }
static const num_field num_fields[] = {
    NF(bf16_flops), NF(fp8_flops), NF(mem_bytes), NF(mem_bw),     NF(link_bw),     NF(link_lat),
    NF(net_bw),     NF(net_lat),   NF(tdp_w),     NF(attn_flops), NF(tgemm_flops), NF(call_s),
    NF(exp_rate),   NF(erf_rate),  NF(tanh_rate), NF(rss_base)};
#undef NF

int gk_plan_hw_save(const gk_plan_hw *hw, const char *path, gk_err *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return gk_fail(err, "preset path too long: %s", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return gk_fail(err, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "# grok plan device preset (grok plan calibrate); numbers in SI units\n");
    fprintf(f, "name = %s\ndesc = %s\nsource = %s\n", hw->name, hw->desc, hw->source);
    for (size_t i = 0; i < sizeof num_fields / sizeof num_fields[0]; i++)
        fprintf(f, "%s = %.17g\n", num_fields[i].key,
                *(const double *)((const char *)hw + num_fields[i].off));
    fprintf(f, "domain = %u\nthreads = %d\n", hw->domain, hw->threads);
    for (int k = 0; k < 4; k++)
        if (hw->tgemm_at[k] > 0) fprintf(f, "tgemm_at.%d = %.17g\n", 128 << k, hw->tgemm_at[k]);
    for (int k = 0; k < 3; k++)
        if (hw->attn_at[k] > 0) fprintf(f, "attn_at.%d = %.17g\n", 32 << k, hw->attn_at[k]);
    for (int k = 0; k < 4; k++)
        if (hw->ew_bw_at[k] > 0)
            fprintf(f, "ew_bw_at.%d = %.17g\n", 256 << (3 * k), hw->ew_bw_at[k]);
    for (int t = 0; t < GK_PLAN_N_TYPES; t++) {
        if (hw->mm_bw1[t] > 0) fprintf(f, "mm_bw1.%s = %.17g\n", gk_type_name(t), hw->mm_bw1[t]);
        for (int k = 0; k < 3; k++)
            if (hw->mm_bw1_at[t][k] > 0)
                fprintf(f, "mm_bw1_at.%s.%d = %.17g\n", gk_type_name(t), 256 << (3 * k),
                        hw->mm_bw1_at[t][k]);
        if (hw->mm_flops512[t] > 0)
            fprintf(f, "mm_flops512.%s = %.17g\n", gk_type_name(t), hw->mm_flops512[t]);
        for (int k = 0; k < 4; k++)
            for (int c = 0; c < 2; c++)
                if (hw->mm_flops_at[t][k][c] > 0)
                    fprintf(f, "mm_flops_at.%s.%d.%d = %.17g\n", gk_type_name(t), 8 << (2 * k),
                            512 << (3 * c), hw->mm_flops_at[t][k][c]);
    }
    bool ok = !ferror(f);
    if (fclose(f) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return gk_fail(err, "cannot write %s", path);
    }
    return 0;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

int gk_plan_hw_load(const char *path, gk_plan_hw *hw, gk_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) return gk_fail(err, "cannot open device preset %s: %s", path, strerror(errno));
    memset(hw, 0, sizeof *hw);
    char line[1024];
    int ln = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) goto bad;
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        if (!strcmp(k, "name")) {
            snprintf(hw->name, sizeof hw->name, "%s", v);
            continue;
        }
        if (!strcmp(k, "desc")) {
            snprintf(hw->desc, sizeof hw->desc, "%s", v);
            continue;
        }
        if (!strcmp(k, "source")) {
            snprintf(hw->source, sizeof hw->source, "%s", v);
            continue;
        }
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(x) || x < 0) goto bad;
        bool found = false;
        for (size_t i = 0; i < sizeof num_fields / sizeof num_fields[0] && !found; i++)
            if (!strcmp(k, num_fields[i].key)) {
                *(double *)((char *)hw + num_fields[i].off) = x;
                found = true;
            }
        if (!found && !strncmp(k, "tgemm_at.", 9)) {
            int sz = atoi(k + 9), idx = sz == 128    ? 0
                                        : sz == 256  ? 1
                                        : sz == 512  ? 2
                                        : sz == 1024 ? 3
                                                     : -1;
            if (idx < 0) goto bad;
            hw->tgemm_at[idx] = x;
            found = true;
        }
        if (!found && !strncmp(k, "attn_at.", 8)) {
            int sz = atoi(k + 8), idx = sz == 32 ? 0 : sz == 64 ? 1 : sz == 128 ? 2 : -1;
            if (idx < 0) goto bad;
            hw->attn_at[idx] = x;
            found = true;
        }
        if (!found && !strncmp(k, "ew_bw_at.", 9)) {
            int kib = atoi(k + 9), idx = kib == 256      ? 0
                                         : kib == 2048   ? 1
                                         : kib == 16384  ? 2
                                         : kib == 131072 ? 3
                                                         : -1;
            if (idx < 0) goto bad;
            hw->ew_bw_at[idx] = x;
            found = true;
        }
        if (!found && (!strcmp(k, "domain") || !strcmp(k, "threads"))) {
            if (x > 1e6 || x != floor(x)) goto bad; /* a whole count */
            if (k[0] == 'd')
                hw->domain = (uint32_t)x;
            else
                hw->threads = (int)x;
            found = true;
        }
        if (!found && !strncmp(k, "mm_bw1_at.", 10)) {
            char tn[16];
            int kib = 0, idx;
            if (sscanf(k + 10, "%15[^.].%d", tn, &kib) != 2) goto bad;
            int t = gk_type_from_name(tn);
            idx = kib == 256 ? 0 : kib == 2048 ? 1 : kib == 16384 ? 2 : -1;
            if (t < 0 || t >= GK_PLAN_N_TYPES || idx < 0) goto bad;
            hw->mm_bw1_at[t][idx] = x;
            found = true;
        }
        if (!found && !strncmp(k, "mm_flops_at.", 12)) {
            char tn[16];
            int tok = 0, cols = 0;
            if (sscanf(k + 12, "%15[^.].%d.%d", tn, &tok, &cols) != 3) goto bad;
            int t = gk_type_from_name(tn);
            int ti = tok == 8 ? 0 : tok == 32 ? 1 : tok == 128 ? 2 : tok == 512 ? 3 : -1;
            int ci = cols == 512 ? 0 : cols == 4096 ? 1 : -1;
            if (t < 0 || t >= GK_PLAN_N_TYPES || ti < 0 || ci < 0) goto bad;
            hw->mm_flops_at[t][ti][ci] = x;
            found = true;
        }
        if (!found && (!strncmp(k, "mm_bw1.", 7) || !strncmp(k, "mm_flops512.", 12))) {
            bool bw = k[3] == 'b';
            int t = gk_type_from_name(strchr(k, '.') + 1);
            if (t < 0 || t >= GK_PLAN_N_TYPES) goto bad;
            (bw ? hw->mm_bw1 : hw->mm_flops512)[t] = x;
            found = true;
        }
        if (!found) {
            fclose(f);
            return gk_fail(err, "%s:%d: unknown key '%s'", path, ln, k);
        }
    }
    fclose(f);
    if (!hw->name[0] || hw->bf16_flops <= 0 || hw->mem_bytes <= 0 || hw->mem_bw <= 0)
        return gk_fail(err,
                       "%s: not a device preset (needs name, bf16_flops, mem_bytes and "
                       "mem_bw)",
                       path);
    if (!hw->domain) hw->domain = 1;
    return 0;
bad:
    fclose(f);
    return gk_fail(err,
                   "%s:%d: expected 'key = non-negative number' (counts: whole numbers up to 1e6)",
                   path, ln);
}

int gk_plan_fleet_parse(const char *spec, double *n, gk_plan_hw *hw, gk_err *err) {
    const char *x = spec;
    while (*x && *x != 'x' && *x != 'X' && *x != '*') x++;
    if (!*x || x == spec)
        return gk_fail(err, "fleet '%s': expected COUNTxDEVICE, e.g. 8xH100", spec);
    char num[64];
    size_t len = (size_t)(x - spec);
    if (len >= sizeof num) return gk_fail(err, "fleet '%s': count too long", spec);
    memcpy(num, spec, len);
    num[len] = 0;
    char *end;
    errno = 0;
    double v = strtod(num, &end);
    if (end == num || *end || errno || !isfinite(v) || v < 1 || v > 1e12 || v != floor(v))
        return gk_fail(err, "fleet '%s': the device count must be a whole number from 1 to 1e12",
                       spec);
    *n = v;
    return gk_plan_hw_find(x + 1, hw, err);
}

/* ---------------------------------------------------------- inference --- */

static bool calibrated(const gk_plan_hw *hw) {
    for (int t = 0; t < GK_PLAN_N_TYPES; t++)
        if (hw->mm_bw1[t] > 0) return true;
    return false;
}

static double op_matrix_bytes(const gk_plan_op *o) {
    return (double)gk_row_size(o->type, o->cols) * (double)o->rows;
}

/* Measured weight bytes/s at batch 1 for a matrix of `bytes`: log-linear between the
 * sizes calibrate measured (256 KiB, 2 MiB, 16 MiB, 96 MiB), clamped at the ends. Each rate is
 * net of the one pool step its calls paid (forward_time counts the steps). */
static double batch1_rate(const gk_plan_hw *hw, uint32_t t, double bytes) {
    double xs[4] = {256.0 * 1024, 2048.0 * 1024, 16384.0 * 1024, 96.0 * 1048576}, ys[4];
    int n = 0;
    double px[4];
    for (int k = 0; k < 4; k++) {
        double v = k < 3 ? hw->mm_bw1_at[t][k] : hw->mm_bw1[t];
        if (v <= 0) continue;
        /* each measured call paid one pool step; the forward counts its steps apart */
        double tm = xs[k] / v, tp = tm - hw->call_s;
        if (tp < 0.25 * tm) tp = 0.25 * tm;
        px[n] = xs[k], ys[n++] = xs[k] / tp;
    }
    if (!n) return hw->mem_bw;
    if (bytes <= px[0]) return ys[0];
    for (int k = 0; k + 1 < n; k++)
        if (bytes <= px[k + 1]) {
            double f = log(bytes / px[k]) / log(px[k + 1] / px[k]);
            return ys[k] + f * (ys[k + 1] - ys[k]);
        }
    return ys[n - 1];
}

/* Log-linear interpolation of rates measured at sizes xs (0 = not measured),
 * clamped at the ends; fallback when none was measured. */
static double interp_rate(const double *xs, const double *ys, int n_pts, double x,
                          double fallback) {
    double px[8], py[8];
    int n = 0;
    for (int k = 0; k < n_pts && n < 8; k++)
        if (ys[k] > 0) px[n] = xs[k], py[n++] = ys[k];
    if (!n) return fallback;
    if (x <= px[0]) return py[0];
    for (int k = 0; k + 1 < n; k++)
        if (x <= px[k + 1])
            return py[k] + log(x / px[k]) / log(px[k + 1] / px[k]) * (py[k + 1] - py[k]);
    return py[n - 1];
}

/* FLOP/s of gk_matmul of type t over T tokens on rows of `cols`: between the
 * calibrated points (T = 8 .. 512, rows of 512 and 4096) log-linear in T and in the row
 * length, clamped at the ends; each point is net of the pool step its call paid
 * (forward_time counts the steps). Without them the batch-512 rate, then the peak. */
static double matmul_rate(const gk_plan_hw *hw, uint32_t t, double T, double cols) {
    static const double Ts[4] = {8, 32, 128, 512}, Cs[2] = {512, 4096};
    double r[2];
    int nc = 0;
    for (int c = 0; c < 2; c++) {
        double ys[4];
        for (int k = 0; k < 4; k++) {
            double v = hw->mm_flops_at[t][k][c];
            ys[k] = 0;
            if (v <= 0) continue;
            double fl = 2.0 * 1024.0 * Cs[c] * Ts[k], tm = fl / v, tn = tm - hw->call_s;
            if (tn < 0.25 * tm) tn = 0.25 * tm;
            ys[k] = fl / tn;
        }
        r[c] = interp_rate(Ts, ys, 4, T, 0);
        if (r[c] > 0) nc++;
    }
    if (nc < 2) return hw->mm_flops512[t] > 0 ? hw->mm_flops512[t] : hw->bf16_flops;
    if (cols <= Cs[0]) return r[0];
    if (cols >= Cs[1]) return r[1];
    return r[0] + log(cols / Cs[0]) / log(Cs[1] / Cs[0]) * (r[1] - r[0]);
}

/* Bytes/s of an elementwise pass whose arrays total `size` bytes, on one thread or
 * split over nt (each thread's share in its own caches; past 16 MiB no more than the
 * memory's bandwidth). */
static double ew_rate(const gk_plan_hw *hw, double size, int nt) {
    static const double xs[4] = {256.0 * 1024, 2048.0 * 1024, 16384.0 * 1024, 128.0 * 1048576};
    if (nt <= 1) return interp_rate(xs, hw->ew_bw_at, 4, size, hw->mem_bw);
    double r = nt * interp_rate(xs, hw->ew_bw_at, 4, size / nt, hw->mem_bw);
    return size >= xs[2] && r > hw->mem_bw ? hw->mem_bw : r;
}

/* Adds a pass over n elements: bytes and other FLOPs per element. */
static void ew_pass(gk_plan_ew *w, double n, double bytes, double flops) {
    w->bytes += n * bytes;
    w->flops += n * flops;
}

/* Seconds of elementwise work: libm calls at their measured rates, bytes and other
 * arithmetic at the pass rate (its 12 bytes carry 2 FLOPs: y = a x + b). */
static double ew_time(const gk_plan_hw *hw, const gk_plan_ew *w, double size, int nt) {
    double t = 0;
    if (hw->exp_rate > 0) t += w->exp / hw->exp_rate;
    if (hw->erf_rate > 0) t += w->erf / hw->erf_rate;
    if (hw->tanh_rate > 0) t += w->tanh / hw->tanh_rate;
    t /= nt;
    double bw = ew_rate(hw, size, nt), tb = w->bytes / bw, tf = w->flops * 6.0 / bw;
    return t + (tb > tf ? tb : tf);
}

/* Seconds of one forward on a device that holds 1/share of every op, from the
 * measured per-type matmul rates (calibrated CPUs) or the peaks. */
static double forward_time(const gk_plan_model *pm, const gk_plan_hw *hw, double n_tok, double pos0,
                           double n_logits, double kv_elt, double share, double eff_f, double eff_b,
                           bool measured, bool batch1) {
    gk_plan_cost c = gk_plan_forward(pm, n_tok, pos0, n_logits, -1.0, kv_elt);
    double touched = gk_plan_experts_touched(&pm->s, n_tok);
    if (measured) {
        double t = 0;
        for (int i = 0; i < pm->n_ops; i++) {
            double f, b;
            gk_plan_op_work(pm, &pm->ops[i], n_tok, n_logits, touched, &f, &b);
            const gk_plan_op *o = &pm->ops[i];
            uint32_t ty = o->type;
            double bw = batch1_rate(hw, ty, op_matrix_bytes(o));
            /* the tokens of one call: the engine groups a chunk's tokens by expert, so
             * each touched expert's matrices see n_tok top-k / touched of them */
            double Tc = o->kind == GK_PLAN_OP_OUTPUT ? n_logits
                        : o->kind == GK_PLAN_OP_EXPERT && touched > 0
                            ? n_tok * pm->s.n_expert_used / touched
                            : n_tok;
            double fl = matmul_rate(hw, ty, Tc < 8 ? 8 : Tc, (double)o->cols);
            double tb = b / bw, tf = f / fl;
            t += batch1 || Tc < 8 ? (tb > tf ? tb : tf) : tf;
        }
        /* every matmul, the attention and each GeGLU product is one parallel step of the
         * thread pool (forward.c); small models pay its dispatch more than their bytes */
        double steps = 0;
        for (int i = 0; i < pm->n_ops; i++) {
            const gk_plan_op *o = &pm->ops[i];
            if (o->kind == GK_PLAN_OP_LAYER) steps += o->n_layers;
            if (o->kind == GK_PLAN_OP_EXPERT) steps += touched * o->n_layers;
            if (o->kind == GK_PLAN_OP_OUTPUT && n_logits > 0) steps += 1;
        }
        steps +=
            pm->s.n_layer * (1.0 + (pm->s.n_expert ? touched : 0.0) + (pm->s.n_ff ? 1.0 : 0.0));
        t += steps * hw->call_s;
        /* attention at the dot rate for its head size */
        static const double hds[3] = {32, 64, 128};
        double af = interp_rate(hds, hw->attn_at, 3, pm->s.head_dim,
                                hw->attn_flops > 0 ? hw->attn_flops : hw->bf16_flops);
        t += c.attn_flops / af + (c.kv_bytes_read + c.kv_bytes_written) / hw->mem_bw;
        /* elementwise work (forward.c): on the pool, GeGLU's GELU per expert and dense
         * MLP element and the attention softcap's tanhf and the softmax's expf per
         * (head, key); on the calling thread, four RMSNorms (20 bytes, 6 FLOPs an
         * element) and two residual adds (12 bytes, 1 FLOP) per layer, the MoE's
         * gathers and scatters, and the final softcap's tanhf over the kept logits */
        const gk_plan_shape *s = &pm->s;
        int nt = hw->threads > 0 ? hw->threads : 1;
        double moe_layers = s->n_expert ? (double)s->n_layer - s->n_layer_dense : 0;
        gk_plan_ew par = {0}, ser = {0};
        double gelu = n_tok * (moe_layers * s->n_expert_used * (double)s->n_ff_exp +
                               (double)s->n_layer * s->n_ff);
        *(s->gelu_erf ? &par.erf : &par.tanh) += gelu;
        ew_pass(&par, gelu, 12, 4);
        double pairs = s->attn == GK_PLAN_ATTN_GQA ? c.attn_flops / (4.0 * s->head_dim) : 0;
        par.exp += pairs;
        if (s->attn_softcap > 0) par.tanh += pairs;
        ew_pass(&ser, n_tok * s->n_embd * s->n_layer, 4 * 20 + 2 * 12, 4 * 6 + 2);
        /* MoE: output zeroed, expert rows gathered and scatter-added with their gates;
         * routing: the cap's tanhf (Grok-2) and the softmax's expf per expert */
        ew_pass(&ser, n_tok * s->n_embd * moe_layers, 4, 0);
        ew_pass(&ser, n_tok * s->n_expert_used * (double)s->n_embd * moe_layers, 8 + 12, 2);
        ser.exp += n_tok * s->n_expert * moe_layers;
        if (s->router_softcap > 0) ser.tanh += n_tok * s->n_expert * moe_layers;
        if (s->final_softcap > 0) ser.tanh += n_logits * s->n_vocab;
        t += ew_time(hw, &par, 12.0 * gelu / s->n_layer, nt) +
             ew_time(hw, &ser, 12.0 * n_tok * s->n_embd, 1);
        return t / share;
    }
    double tf = (c.matmul_flops + c.attn_flops) / (hw->bf16_flops * eff_f * share);
    double tb = (c.weight_bytes + c.kv_bytes_read + c.kv_bytes_written + c.embd_bytes) /
                (hw->mem_bw * eff_b * share);
    return tf > tb ? tf : tb;
}

/* Seconds of one token's messages: ring all-reduces (TP) and stage hops (PP). */
static double comm_time(const gk_plan_model *pm, const gk_plan_hw *hw, const gk_plan_split *sp,
                        double n_tok, double wire) {
    gk_plan_comm c = gk_plan_comm_per_token(pm, sp, wire);
    bool tp_local = (uint32_t)sp->tp <= hw->domain;
    bool pp_local = (double)sp->tp * sp->pp <= hw->domain;
    double t = 0;
    /* a preset without the link's bandwidth (a hand-written file): unknown, not free */
    if ((sp->tp > 1 && !((tp_local ? hw->link_bw : hw->net_bw) > 0)) ||
        (sp->pp > 1 && !((pp_local ? hw->link_bw : hw->net_bw) > 0)))
        return NAN;
    if (sp->tp > 1)
        t += c.tp_msgs * (tp_local ? hw->link_lat : hw->net_lat) +
             c.tp_bytes * n_tok / (tp_local ? hw->link_bw : hw->net_bw);
    if (sp->pp > 1)
        t += c.pp_msgs * (pp_local ? hw->link_lat : hw->net_lat) +
             c.pp_bytes * c.pp_msgs * n_tok / (pp_local ? hw->link_bw : hw->net_bw);
    return t;
}

int gk_plan_infer_eval(const gk_plan_model *pm, const gk_plan_hw *hw, double n_dev, int tp,
                       const gk_plan_infer_opts *oin, gk_plan_infer *r, gk_err *err) {
    const gk_plan_shape *s = &pm->s;
    gk_plan_infer_opts o = *oin;
    bool meas = calibrated(hw);
    if (o.n_ctx <= 0) o.n_ctx = s->n_ctx;
    if (o.n_batch <= 0) o.n_batch = 512;
    if (o.kv_elt_bytes <= 0) o.kv_elt_bytes = meas ? 4 : 2;
    if (o.wire_bytes <= 0) o.wire_bytes = meas ? 4 : 2;
    if (o.eff_flops <= 0) o.eff_flops = 0.5;
    if (o.eff_bw <= 0) o.eff_bw = 0.8;
    if (o.eff_flops > 1 || o.eff_bw > 1) return gk_fail(err, "efficiencies must be in (0, 1]");
    uint32_t heads = s->attn == GK_PLAN_ATTN_MLA ? s->n_head : s->n_head_kv;
    if (tp < 1 || heads % (uint32_t)tp)
        return gk_fail(err, "tensor parallel %d does not divide the %u KV heads", tp, heads);
    if (n_dev < tp || fmod(n_dev, tp) != 0)
        return gk_fail(err, "%.0f devices are not a multiple of tensor parallel %d", n_dev, tp);
    memset(r, 0, sizeof *r);
    double pp = n_dev / tp;
    if (pp > s->n_layer)
        return gk_fail(err, "%.0f pipeline stages exceed the %u layers", pp, s->n_layer);
    r->split = (gk_plan_split){.tp = tp, .ep = 1, .pp = (int)pp, .dp = 1};
    double share = n_dev; /* every op's work divides over tp x pp devices */
    r->weight_bytes_dev = gk_plan_weight_bytes_per_device(pm, &r->split);
    double kv_dev_div = (s->attn == GK_PLAN_ATTN_MLA ? 1.0 : tp) * pp;
    r->kv_bytes_seq_dev = gk_plan_kv_bytes_per_token(s, o.kv_elt_bytes) * o.n_ctx / kv_dev_div;
    /* the engine's context scratch (forward.c gk_context_new), per batch token */
    double d = s->n_embd, nq = (double)s->n_head * s->head_dim,
           nkv = (double)s->n_head_kv * s->head_dim, F = s->n_ff_exp, Fd = s->n_ff;
    r->act_bytes_dev =
        4.0 *
        (o.n_batch * (6 * d + 2 * nq + 2 * nkv + 2 * F + 2 * Fd + s->n_expert + s->head_dim) +
         s->n_vocab) /
        tp;
    /* one grok.c process per device (a calibrated machine: its start-up residency) */
    if (pp == 1 && s->variant && meas &&
        gk_plan_rank_memory(pm, tp, o.n_ctx, o.n_batch,
                            o.n_threads > 0   ? o.n_threads
                            : hw->threads > 0 ? hw->threads
                                              : 1,
                            o.kv_elt_bytes, hw->rss_base, &r->rank_mem, NULL) < 0)
        memset(&r->rank_mem, 0, sizeof r->rank_mem);
    r->free_bytes_dev = hw->mem_bytes - o.mem_reserve - r->weight_bytes_dev - r->act_bytes_dev;
    r->max_seqs = r->free_bytes_dev > 0 ? floor(r->free_bytes_dev / r->kv_bytes_seq_dev) : 0;
    r->fits = r->max_seqs >= 1;
    /* prompt: n_prompt tokens in batches of n_batch; with pp stages, consecutive batches
     * overlap */
    if (o.n_prompt <= 0) o.n_prompt = o.n_batch;
    double tpp = 0, tpe = 0, cpp = 0;
    for (double done = 0; done < o.n_prompt;) {
        double T = o.n_prompt - done < o.n_batch ? o.n_prompt - done : o.n_batch;
        tpp += forward_time(pm, hw, T, done, 1, o.kv_elt_bytes, share, 1, 1, false, false);
        tpe += forward_time(pm, hw, T, done, 1, o.kv_elt_bytes, share, o.eff_flops, o.eff_bw, meas,
                            false);
        cpp += comm_time(pm, hw, &r->split, T, o.wire_bytes);
        done += T;
    }
    r->prompt_bound = o.n_prompt / (tpp + cpp);
    r->prompt_expect = o.n_prompt / (tpe + cpp);
    /* generation: one token through every stage in turn (tp-way parallel) */
    double pos = o.gen_pos > 0 ? o.gen_pos : o.n_ctx / 2, gshare = tp;
    double tg = forward_time(pm, hw, 1, pos, 1, o.kv_elt_bytes, gshare, 1, 1, false, true);
    r->gen_comm_s = comm_time(pm, hw, &r->split, 1, o.wire_bytes);
    r->gen_bound = 1.0 / (tg + r->gen_comm_s);
    double tge =
        forward_time(pm, hw, 1, pos, 1, o.kv_elt_bytes, gshare, o.eff_flops, o.eff_bw, meas, true);
    r->gen_expect = 1.0 / (tge + r->gen_comm_s);
    /* many sequences decoding together: weights read once per step */
    double B = r->max_seqs < 256 ? r->max_seqs : 256;
    if (B >= 1) {
        gk_plan_cost c = gk_plan_forward(pm, B, pos, B, -1.0, o.kv_elt_bytes);
        /* attention and KV: B sequences each at pos, not one sequence of B tokens */
        double one_attn = gk_plan_forward(pm, 1, pos, 1, -1.0, o.kv_elt_bytes).attn_flops;
        double one_kv = gk_plan_forward(pm, 1, pos, 1, -1.0, o.kv_elt_bytes).kv_bytes_read;
        double tf = (c.matmul_flops + B * one_attn) / (hw->bf16_flops * gshare);
        double tb = (c.weight_bytes + B * one_kv) / (hw->mem_bw * gshare);
        double t = (tf > tb ? tf : tb) * (meas ? 1.0 : 1.0) +
                   comm_time(pm, hw, &r->split, B, o.wire_bytes);
        r->gen_batch_seqs = B;
        r->gen_batch_bound = B / t * pp; /* pp micro-batches of B keep every stage busy */
    }
    return 0;
}

/* ----------------------------------------------------------- training --- */

static int check_fleet(const gk_plan_hw *hw, double n, gk_err *err) {
    if (!(n >= 1) || n > 1e12 || n != floor(n))
        return gk_fail(err, "device count %g must be a whole number from 1 to 1e12", n);
    if (hw->bf16_flops <= 0 || hw->tdp_w < 0)
        return gk_fail(err, "device %s has no peak FLOPs", hw->name);
    return 0;
}

int gk_plan_train_eval(const gk_plan_model *pm, const gk_plan_hw *hw, double n, double tokens,
                       double seq, double mfu, double pue, gk_plan_train *r, gk_err *err) {
    if (check_fleet(hw, n, err) < 0) return -1;
    if (!(tokens >= 1) || tokens > 1e18)
        return gk_fail(err, "token count %g must be between 1 and 1e18", tokens);
    if (!(mfu > 0) || mfu > 1) return gk_fail(err, "MFU %g must be in (0, 1]", mfu);
    if (!(pue >= 1) || pue > 5) return gk_fail(err, "PUE %g must be between 1 and 5", pue);
    if (!(seq >= 1) || seq > 1e7) return gk_fail(err, "sequence length %g is not sensible", seq);
    memset(r, 0, sizeof *r);
    gk_plan_train_cost tc = gk_plan_train_per_token(pm, seq);
    r->tokens = tokens;
    r->flops_per_token = tc.flops;
    r->flops = tc.flops * tokens;
    r->seconds = r->flops / (n * hw->bf16_flops * mfu);
    r->days = r->seconds / 86400.0;
    r->device_hours = n * r->seconds / 3600.0;
    r->avg_power_w = n * hw->tdp_w * pue;
    r->energy_j = r->avg_power_w * r->seconds;
    r->energy_mwh = r->energy_j / 3.6e9;
    r->mem_state_dev = 16.0 * gk_plan_params(pm) / n;
    return 0;
}

double gk_plan_train_step_time(const gk_plan_model *pm, const gk_plan_hw *hw, double seq,
                               double step_tokens, gk_plan_train_times *out) {
    gk_plan_train_times tt = {0};
    if (out) *out = tt;
    if (hw->tgemm_flops <= 0 || hw->attn_flops <= 0 || seq < 1 || step_tokens < 1) return 0.0;
    const gk_plan_shape *s = &pm->s;
    double n_seqs = step_tokens / seq < 1 ? 1 : step_tokens / seq;
    gk_plan_train_step w = gk_plan_train_step_work(pm, seq, n_seqs);
    int nt = hw->threads > 0 ? hw->threads : 1;
    double N = w.tokens;
    /* every product at the rate measured for its size (the smallest side), when known */
    for (int i = 0; i < pm->n_ops; i++) {
        const gk_plan_op *o = &pm->ops[i];
        double f, b;
        gk_plan_op_work(pm, o, N, N, (double)s->n_expert, &f, &b);
        double side = (double)(o->rows < o->cols ? o->rows : o->cols), rate = hw->tgemm_flops;
        for (int k = 0; k < 4; k++)
            if (hw->tgemm_at[k] > 0 && side >= 128 << k) rate = hw->tgemm_at[k];
        if (side < 128 && hw->tgemm_at[0] > 0) rate = hw->tgemm_at[0] * side / 128;
        tt.gemm += 3.0 * f / rate;
    }
    /* attention at the dot rate for its head size; the backward's items (sequence, KV
     * head) may leave threads idle */
    static const double hds[3] = {32, 64, 128};
    double ar = interp_rate(hds, hw->attn_at, 3, s->head_dim, hw->attn_flops);
    double items = w.attn_bwd_items, waves = ceil(items / nt), eff = items / (waves * nt);
    tt.attn = w.attn_fwd_flops / ar + w.attn_bwd_flops / (ar * eff);
    /* elementwise passes: activations of one typical pass (three arrays of N x d on
     * the calling thread; the widest rows on the pool), the optimizer's over the
     * parameters */
    double P = gk_plan_params(pm), wide = s->n_vocab;
    if ((double)s->n_expert_used * s->n_ff_exp > wide)
        wide = (double)s->n_expert_used * s->n_ff_exp;
    if (s->n_ff > wide) wide = s->n_ff;
    tt.ew_ser = ew_time(hw, &w.ser, 12.0 * N * s->n_embd, 1);
    tt.ew_par = ew_time(hw, &w.par, 8.0 * N * wide, nt);
    tt.opt = ew_time(hw, &w.opt_ser, 4.0 * P, 1) + ew_time(hw, &w.opt_par, 16.0 * P, nt);
    tt.transpose = w.transpose_bytes / ew_rate(hw, 8.0 * P, nt);
    tt.pool = w.pool_runs * hw->call_s;
    tt.total = tt.gemm + tt.attn + tt.ew_ser + tt.ew_par + tt.opt + tt.transpose + tt.pool;
    if (out) *out = tt;
    return tt.total;
}

double gk_plan_train_tokens_per_s_measured(const gk_plan_model *pm, const gk_plan_hw *hw,
                                           double seq, double step_tokens) {
    double n_seqs = step_tokens / seq < 1 ? 1 : step_tokens / seq;
    double t = gk_plan_train_step_time(pm, hw, seq, step_tokens, NULL);
    return t > 0 ? n_seqs * seq / t : 0.0;
}

int gk_plan_fleet_eval(const gk_plan_hw *hw, double n, double mfu, double pue, gk_plan_fleet *r,
                       gk_err *err) {
    if (check_fleet(hw, n, err) < 0) return -1;
    if (!(mfu > 0) || mfu > 1) return gk_fail(err, "MFU %g must be in (0, 1]", mfu);
    if (!(pue >= 1) || pue > 5) return gk_fail(err, "PUE %g must be between 1 and 5", pue);
    memset(r, 0, sizeof *r);
    r->devices = n;
    r->power_w = n * hw->tdp_w * pue;
    r->energy_mwh_year = r->power_w * 365.25 * 86400.0 / 3.6e9;
    r->flops_per_s = n * hw->bf16_flops * mfu;
    r->flops_year = r->flops_per_s * 365.25 * 86400.0;
    /* Chinchilla (Hoffmann et al. 2022): C = 6 N D and D = 20 N, so N = sqrt(C / 120) */
    r->chinchilla_params = sqrt(r->flops_year / 120.0);
    r->chinchilla_tokens = 20.0 * r->chinchilla_params;
    return 0;
}
