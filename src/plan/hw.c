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
#include "kernels/gemm.h"
#include "kernels/ops.h"
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
    NF(bf16_flops),    NF(fp8_flops),    NF(mem_bytes),    NF(mem_bw),       NF(link_bw),
    NF(link_lat),      NF(net_bw),       NF(net_lat),      NF(tdp_w),        NF(attn_flops),
    NF(tgemm_flops),   NF(call_s),       NF(exp_rate),     NF(erf_rate),     NF(tanh_rate),
    NF(rss_base),      NF(geglu_erf),    NF(geglu_tanh),   NF(step_s),       NF(geglu_erf_4k),
    NF(geglu_tanh_4k), NF(train_k_gemm), NF(train_k_attn), NF(train_k_pool), NF(train_k_ser),
    NF(train_k_opt)};
#undef NF

/* Arrays measured at sizes: key PREFIX.V for a[i], V = base << (shift * i), i < n. */
typedef struct {
    const char *prefix;
    size_t off;
    int base, shift, n;
} size_field;

#define SF(f, base, shift)                                                                         \
    {                                                                                              \
#f ".", offsetof(gk_plan_hw, f), base, shift,                                              \
            (int)(sizeof((gk_plan_hw *)0)->f / sizeof(double))                                     \
    }
static const size_field size_fields[] = {SF(tgemm_at, 128, 1), SF(attn_at, 32, 1),
                                         SF(wake_at, 5, 1), SF(ew_bw_at, 256, 3),
                                         SF(read_bw_at, 4, 1)};
#undef SF

/* The batch-1 grid: matrix sizes in KiB (256 KiB .. 96 MiB). */
static const int bw1_kib[4] = {256, 2048, 16384, 98304};

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
    for (size_t i = 0; i < sizeof size_fields / sizeof size_fields[0]; i++) {
        const size_field *sf = &size_fields[i];
        const double *a = (const double *)((const char *)hw + sf->off);
        for (int k = 0; k < sf->n; k++)
            if (a[k] > 0)
                fprintf(f, "%s%d = %.17g\n", sf->prefix, sf->base << (sf->shift * k), a[k]);
    }
    for (int h = 0; h < 3; h++)
        for (int q = 0; q < 3; q++)
            for (int k = 0; k < 3; k++)
                for (int c = 0; c < 2; c++)
                    if ((c ? hw->attn_cold : hw->attn_item)[h][q][k] > 0)
                        fprintf(f, "attn_%s.%d.%d.%d = %.17g\n", c ? "cold" : "item", 32 << h,
                                1 << q, 64 << (3 * k),
                                (c ? hw->attn_cold : hw->attn_item)[h][q][k]);
    for (int t = 0; t < GK_PLAN_N_TYPES; t++) {
        if (hw->mm_bw1[t] > 0) fprintf(f, "mm_bw1.%s = %.17g\n", gk_type_name(t), hw->mm_bw1[t]);
        for (int k = 0; k < 4; k++)
            for (int c = 0; c < 2; c++)
                for (int g = 0; g < 4; g++) {
                    double v = g < 2    ? (g ? hw->mm_tree1_at : hw->mm_bw1_at)[t][k][c]
                               : k >= 2 ? 0
                                        : (g == 3 ? hw->mm_tree1_warm : hw->mm_bw1_warm)[t][k][c];
                    if (v > 0)
                        fprintf(f, "mm_%s1_%s.%s.%d.%d = %.17g\n", g & 1 ? "tree" : "bw",
                                g < 2 ? "at" : "warm", gk_type_name(t), bw1_kib[k], 1024 << (2 * c),
                                v);
                }
        if (hw->mm_flops512[t] > 0)
            fprintf(f, "mm_flops512.%s = %.17g\n", gk_type_name(t), hw->mm_flops512[t]);
        for (int k = 0; k < 4; k++)
            for (int c = 0; c < 2; c++)
                for (int g = 0; g < 2; g++) {
                    double v = g ? hw->mm_flops_at4k[t][k][c] : hw->mm_flops_at[t][k][c];
                    if (v > 0)
                        fprintf(f, "mm_flops_at%s.%s.%d.%d = %.17g\n", g ? "4k" : "",
                                gk_type_name(t), 8 << (2 * k), 512 << (3 * c), v);
                    if (g && hw->mm_flops_narrow[t][k][c] > 0)
                        fprintf(f, "mm_flops_narrow.%s.%d.%d = %.17g\n", gk_type_name(t),
                                8 << (2 * k), 64 << c, hw->mm_flops_narrow[t][k][c]);
                }
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
        for (size_t i = 0; i < sizeof size_fields / sizeof size_fields[0] && !found; i++) {
            const size_field *sf = &size_fields[i];
            const size_t len = strlen(sf->prefix);
            if (strncmp(k, sf->prefix, len)) continue;
            int v = atoi(k + len), idx = -1;
            for (int j = 0; j < sf->n; j++)
                if (v == sf->base << (sf->shift * j)) idx = j;
            if (idx < 0) goto bad;
            ((double *)((char *)hw + sf->off))[idx] = x;
            found = true;
        }
        if (!found && (!strncmp(k, "attn_item.", 10) || !strncmp(k, "attn_cold.", 10))) {
            /* HEAD.HEADS.KEYS */
            int hd = 0, nq = 0, nk = 0, hi = -1, qi = -1, ki = -1;
            char tail;
            if (sscanf(k + 10, "%d.%d.%d%c", &hd, &nq, &nk, &tail) != 3) goto bad;
            for (int i = 0; i < 3; i++) {
                if (hd == 32 << i) hi = i;
                if (nq == 1 << i) qi = i;
                if (nk == 64 << (3 * i)) ki = i;
            }
            if (hi < 0 || qi < 0 || ki < 0) goto bad;
            (k[5] == 'c' ? hw->attn_cold : hw->attn_item)[hi][qi][ki] = x;
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
        if (!found && (!strncmp(k, "mm_bw1_at.", 10) || !strncmp(k, "mm_tree1_at.", 12) ||
                       !strncmp(k, "mm_bw1_warm.", 12) || !strncmp(k, "mm_tree1_warm.", 14))) {
            bool tree = k[3] == 't', warm = strstr(k, "_warm.") != NULL;
            /* TYPE.KIB.COLS; files of grok before the 4096-wide column: TYPE.KIB (1024) */
            char tn[16];
            int kib = 0, cols = 1024, idx = -1;
            int nf = sscanf(strchr(k, '.') + 1, "%15[^.].%d.%d", tn, &kib, &cols);
            if (nf < 2) goto bad;
            int t = gk_type_from_name(tn);
            for (int i = 0; i < 4; i++)
                if (kib == bw1_kib[i]) idx = i;
            int ci = cols == 1024 ? 0 : cols == 4096 ? 1 : -1;
            if (t < 0 || t >= GK_PLAN_N_TYPES || idx < 0 || ci < 0) goto bad;
            if (warm && idx >= 2) goto bad;
            if (warm)
                (tree ? hw->mm_tree1_warm : hw->mm_bw1_warm)[t][idx][ci] = x;
            else
                (tree ? hw->mm_tree1_at : hw->mm_bw1_at)[t][idx][ci] = x;
            found = true;
        }
        if (!found && (!strncmp(k, "mm_flops_at.", 12) || !strncmp(k, "mm_flops_at4k.", 14))) {
            char tn[16];
            int tok = 0, cols = 0;
            bool g4 = k[11] == '4';
            if (sscanf(k + (g4 ? 14 : 12), "%15[^.].%d.%d", tn, &tok, &cols) != 3) goto bad;
            int t = gk_type_from_name(tn);
            int ti = tok == 8 ? 0 : tok == 32 ? 1 : tok == 128 ? 2 : tok == 512 ? 3 : -1;
            int ci = cols == 512 ? 0 : cols == 4096 ? 1 : -1;
            if (t < 0 || t >= GK_PLAN_N_TYPES || ti < 0 || ci < 0) goto bad;
            (g4 ? hw->mm_flops_at4k : hw->mm_flops_at)[t][ti][ci] = x;
            found = true;
        }
        if (!found && !strncmp(k, "mm_flops_narrow.", 16)) {
            char tn[16];
            int tok = 0, cols = 0;
            if (sscanf(k + 16, "%15[^.].%d.%d", tn, &tok, &cols) != 3) goto bad;
            int t = gk_type_from_name(tn);
            int ti = tok == 8 ? 0 : tok == 32 ? 1 : tok == 128 ? 2 : tok == 512 ? 3 : -1;
            int ci = cols == 64 ? 0 : cols == 128 ? 1 : -1;
            if (t < 0 || t >= GK_PLAN_N_TYPES || ti < 0 || ci < 0) goto bad;
            hw->mm_flops_narrow[t][ti][ci] = x;
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

int gk_plan_matmul_runs(uint32_t type, double T) {
    if (T <= 1) return 1;
    const gk_gemm_kernels *k = gk_gemm_kernels_of((gk_dtype)type);
    if (k) return k->pack ? 2 : 1;
    const gk_type_traits *tt = gk_type_traits_of(type);
    return tt && tt->vec_dot_type != GK_TYPE_F32 ? 2 : 1;
}

/* The rate of a gk_matmul call as calibrate timed it, its own dispatches included:
 * the walk charges a matmul call that rate and no dispatch apart (taking a separately
 * timed dispatch off would make a noisy one count twice). */
static double net_rate(const gk_plan_hw *hw, uint32_t t, double work, double rate) {
    (void)hw, (void)t, (void)work;
    return rate;
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

/* Between two row lengths a and b (rates ra, rb; 0 = not measured), log-linear in the
 * length, clamped at the ends. */
static double interp_cols(double ca, double ra, double cb, double rb, double cols) {
    if (ra <= 0 || rb <= 0) return ra > 0 ? ra : rb;
    if (cols <= ca) return ra;
    if (cols >= cb) return rb;
    return ra + log(cols / ca) / log(cb / ca) * (rb - ra);
}

/* Weight bytes/s of gk_matmul at batch 1 on a matrix of `bytes` with rows `cols`
 * wide, net of its dispatches: log-linear between the sizes (256 KiB .. 96 MiB) and
 * the row lengths (1024, 4096) calibrate measured, clamped at the ends. */
static double batch1_rate(const gk_plan_hw *hw, uint32_t t, double bytes, double cols) {
    double xs[4], r[2];
    for (int k = 0; k < 4; k++) xs[k] = bw1_kib[k] * 1024.0;
    for (int c = 0; c < 2; c++) {
        double ys[4];
        for (int k = 0; k < 4; k++) {
            double v = hw->mm_bw1_at[t][k][c];
            if (k == 3 && c == 1 && v <= 0) v = hw->mm_bw1[t];
            ys[k] = v > 0 ? net_rate(hw, t, xs[k], v) : 0;
        }
        r[c] = interp_rate(xs, ys, 4, bytes, 0);
    }
    double v = interp_cols(1024, r[0], 4096, r[1], cols);
    return v > 0 ? v : hw->mem_bw;
}

/* Weight bytes/s of a matrix of `bytes` at batch 1 run as the summation tree's job
 * (each thread alone on its chunks of the columns; calibrate timed one chunk a thread),
 * whose chunks are `piece` columns wide: between the timed sizes and pieces (1024 and
 * 4096 over the threads) as batch1_rate. 0 when calibrate did not time it. */
static double tree1_rate(const gk_plan_hw *hw, uint32_t t, double bytes, double piece) {
    int nt = hw->threads > 0 ? hw->threads : 1;
    double xs[4], r[2];
    for (int k = 0; k < 4; k++) xs[k] = bw1_kib[k] * 1024.0;
    for (int c = 0; c < 2; c++) {
        double ys[4];
        for (int k = 0; k < 4; k++) ys[k] = hw->mm_tree1_at[t][k][c];
        r[c] = interp_rate(xs, ys, 4, bytes, 0);
    }
    return interp_cols(1024.0 / nt, r[0], 4096.0 / nt, r[1], piece);
}

/* Weight bytes/s at batch 1 from a warm table (256 KiB and 2 MiB matrices of rows c0
 * and c1 wide, read in turn from a 4 MiB arena), as batch1_rate; 0 when not timed. */
static double warm_rate(const double (*tab)[2], double bytes, double c0, double c1, double cols) {
    static const double xs[2] = {256.0 * 1024, 2048.0 * 1024};
    double r[2];
    for (int c = 0; c < 2; c++) {
        double ys[2] = {tab[0][c], tab[1][c]};
        r[c] = interp_rate(xs, ys, 2, bytes, 0);
        /* under 256 KiB a call's fixed part (its dispatch, its activations packed) weighs
         * more: the time linear in the bytes through the two sizes, a fixed part and a
         * part per byte, where both come out positive */
        if (bytes < xs[0] && ys[0] > 0 && ys[1] > 0) {
            double t0 = xs[0] / ys[0], t1 = xs[1] / ys[1], per = (t1 - t0) / (xs[1] - xs[0]),
                   fixed = t0 - xs[0] * per;
            if (per > 0 && fixed > 0) r[c] = bytes / (fixed + bytes * per);
        }
    }
    return interp_cols(c0, r[0], c1, r[1], cols);
}

/* Seconds per weight byte at batch 1 between the warm and the cold rate: `cold` is the
 * share of the reads that miss the caches (walk_forward's cold_share). */
static double blend_s(double warm, double cold_rate, double cold) {
    if (!(warm > 0) || cold >= 1) return 1.0 / cold_rate;
    return (1.0 - cold) / warm + cold / cold_rate;
}

/* FLOP/s of gk_matmul of type t over T tokens on rows of `cols`, net of its
 * dispatches: between the calibrated points (T = 8 .. 512, a 1024-row matrix of rows
 * 512 and 4096 wide) log-linear in T and in the row length, clamped at the ends.
 * Without them the batch-512 rate, then the peak. */
static double grid_rate(const gk_plan_hw *hw, const double (*grid)[4][2], double rows, uint32_t t,
                        double T, double cols) {
    static const double Ts[4] = {8, 32, 128, 512}, Cs[2] = {512, 4096};
    double r[2];
    for (int c = 0; c < 2; c++) {
        double ys[4];
        for (int k = 0; k < 4; k++) {
            double v = grid[t][k][c];
            ys[k] = v > 0 ? net_rate(hw, t, 2.0 * rows * Cs[c] * Ts[k], v) : 0;
        }
        r[c] = interp_rate(Ts, ys, 4, T, 0);
    }
    return interp_cols(Cs[0], r[0], Cs[1], r[1], cols);
}

static double matmul_rate(const gk_plan_hw *hw, uint32_t t, double T, double cols) {
    double v = grid_rate(hw, hw->mm_flops_at, 1024, t, T, cols);
    if (v > 0) return v;
    return hw->mm_flops512[t] > 0 ? hw->mm_flops512[t] : hw->bf16_flops;
}

/* Seconds of the work of a call over `rows` rows (its dispatches apart) at the T grid:
 * with both grids, linear in the rows through their 1024- and 4096-row times. */
static double matmul_grid_seconds(const gk_plan_hw *hw, uint32_t t, double rows, double cols,
                                  double T) {
    double T8 = T < 8 ? 8 : T, r1 = grid_rate(hw, hw->mm_flops_at, 1024, t, T8, cols),
           r4 = grid_rate(hw, hw->mm_flops_at4k, 4096, t, T8, cols);
    if (r1 > 0 && r4 > 0) {
        double t1 = 2.0 * 1024 * cols * T8 / r1, t4 = 2.0 * 4096 * cols * T8 / r4;
        double per_row = (t4 - t1) / 3072.0, fixed = t1 - 1024.0 * per_row;
        if (per_row > 0 && fixed >= 0) return (fixed + rows * per_row) * (T / T8);
    }
    return 2.0 * rows * cols * T / matmul_rate(hw, t, T8, cols);
}

/* Seconds of the work of a call at T > 1 tokens on rows under 512 wide, from the
 * narrow grid (128-row matrices of 64- and 128-wide rows): the FLOP rate log-linear
 * in the row length between 64 and 128 and from 128 to the T grid's rate on rows 512
 * wide, clamped below 64; 0 where the narrow grid was not measured. */
static double narrow_seconds(const gk_plan_hw *hw, uint32_t t, double rows, double cols, double T) {
    static const double Ts[4] = {8, 32, 128, 512};
    double T8 = T < 8 ? 8 : T, r[2];
    for (int c = 0; c < 2; c++) {
        double ys[4];
        for (int k = 0; k < 4; k++) ys[k] = hw->mm_flops_narrow[t][k][c];
        r[c] = interp_rate(Ts, ys, 4, T8, 0);
    }
    if (!(r[0] > 0 && r[1] > 0)) return 0;
    double rate =
        cols <= 128
            ? interp_cols(64, r[0], 128, r[1], cols)
            : interp_cols(128, r[1], 512,
                          2.0 * rows * 512 * T8 / matmul_grid_seconds(hw, t, rows, 512, T8), cols);
    return 2.0 * rows * cols * T / rate;
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

/* ------------------------------------------------ the engine's forward --- */

/* What one forward costs, walked call by call as src/model/forward.c makes the calls:
 * jobs handed to the pool, seconds of the matmuls at the calibrated rates (hw NULL:
 * only the counts), and the elementwise work on the pool's threads (par) and on the
 * calling thread (ser). */
typedef struct {
    const gk_plan_hw *hw;
    int nt;
    double runs;       /* every job handed to the pool (as gk_decode_stats.pool_runs) */
    double runs_other; /* those not inside a timed gk_matmul call: charged a dispatch each */
    double mm_s;
    double cold;       /* share of batch-1 weight reads that miss the caches (forward_time) */
    double geglu;      /* GeGLU elements (on the pool: in the gate and up products' job, or
                          gk_geglu's) */
    double geglu_jobs; /* gk_geglu's calls (those not in the products' job) */
    gk_plan_ew par, ser;
} fwd_walk;

/* Seconds of one gk_matmul call's work (its dispatches apart): rows x cols of type t
 * over T tokens, weight-bound or FLOP-bound. */
static double mm_seconds(const gk_plan_hw *hw, uint32_t t, double rows, double cols, double T,
                         double cold) {
    double bytes = (double)gk_row_size(t, (int64_t)cols) * rows, flops = 2.0 * rows * cols * T;
    double tb = bytes * blend_s(warm_rate(hw->mm_bw1_warm[t], bytes, 1024, 4096, cols),
                                batch1_rate(hw, t, bytes, cols), cold);
    double tn = T > 1 && cols < 512 ? narrow_seconds(hw, t, rows, cols, T) : 0;
    double tf = tn > 0  ? tn
                : T > 1 ? matmul_grid_seconds(hw, t, rows, cols, T)
                        : flops / matmul_rate(hw, t, 8, cols);
    return tb > tf ? tb : tf;
}

/* n gk_matmul calls over the pool (gk_matmul2 fuses two matrices of one type into a
 * call of 2 rows: the same dispatches as one). */
static void walk_mm(fwd_walk *w, uint32_t t, double rows, double cols, double T, double n) {
    if (w->nt > 1) w->runs += n * gk_plan_matmul_runs(t, T);
    if (w->hw) w->mm_s += n * mm_seconds(w->hw, t, rows, cols, T, w->cold);
}

/* Seconds of a job handed to the pool: the cheaper of calibrate's two timings of one
 * (no work in it, and a 64 x 64 matmul in it); on shared cores either can catch a
 * descheduled thread, which a forward's jobs meet no more often than calibrate's. */
static double job_s(const gk_plan_hw *hw) {
    return hw->step_s > 0 && hw->step_s < hw->call_s ? hw->step_s : hw->call_s;
}

/* Seconds of one fused call or job whose products take `sum` as separate ones: less
 * the dispatches it saves, at most half of it. */
static double fused_s(const gk_plan_hw *hw, double sum, double saved_jobs) {
    const double saved = saved_jobs * job_s(hw);
    return sum - saved > sum / 2 ? sum - saved : sum / 2;
}

/* n calls of gk_matmul_many over np products of one type (rows[i] x cols each) on T
 * tokens: the pool's jobs of one call; the seconds of the products as separate calls
 * less the dispatches the one call saves (each thread still starts a stream per
 * product: the fixed cost a call pays beyond its dispatch stays per product). */
static void walk_many(fwd_walk *w, uint32_t t, const double *rows, int np, double cols, double T,
                      double n) {
    if (w->nt > 1) w->runs += n * gk_plan_matmul_runs(t, T);
    if (!w->hw) return;
    double sum = 0;
    for (int i = 0; i < np; i++) sum += mm_seconds(w->hw, t, rows[i], cols, T, w->cold);
    w->mm_s += n * fused_s(w->hw, sum, (np - 1) * gk_plan_matmul_runs(t, T));
}

/* Seconds of one product of the summation tree's job (k chunks that the threads
 * divide): at batch 1 as calibrate timed the tree's job (for its bytes and a chunk's
 * width); else each chunk as a call. */
static double tree_job_s(const gk_plan_hw *hw, uint32_t t, double rows, double cols, double T,
                         int k, double cold) {
    const double bytes = (double)gk_row_size(t, (int64_t)cols) * rows;
    const double tr = T <= 1 ? tree1_rate(hw, t, bytes, cols / k) : 0;
    if (!(tr > 0)) return k * mm_seconds(hw, t, rows, cols / k, T, cold);
    const int nt = hw->threads > 0 ? hw->threads : 1;
    const double wr = warm_rate(hw->mm_tree1_warm[t], bytes, 1024.0 / nt, 4096.0 / nt, cols / k);
    return bytes * blend_s(wr, tr, cold);
}

/* n products summed by the summation tree (forward.c chunk_products) in k column
 * chunks: when the threads divide k, one job: at batch 1 gk_matmul_chunks (every
 * chunk in one pass over whole rows, at the rate calibrate timed it), else each
 * chunk's matmul on its thread (no dispatch; the columns of T > 1 tokens packed
 * first); when they do not, chunk after chunk over the pool. An expert's chunk adds
 * gate x product into its sum. */
static void walk_chunks(fwd_walk *w, uint32_t t, double rows, double cols, double T, double n,
                        int k, bool expert) {
    if (k <= 1) {
        walk_mm(w, t, rows, cols, T, n);
    } else if (k % w->nt == 0) {
        if (w->nt > 1) w->runs += n, w->runs_other += n;
        if (w->hw) w->mm_s += n * tree_job_s(w->hw, t, rows, cols, T, k, w->cold);
        if (T > 1) ew_pass(&w->par, n * T * cols, 8, 0);
    } else {
        if (w->nt > 1) w->runs += n * k * gk_plan_matmul_runs(t, T);
        if (w->hw) w->mm_s += n * k * mm_seconds(w->hw, t, rows, cols / k, T, w->cold);
        if (T > 1) ew_pass(&w->ser, n * T * cols, 8, 0);
    }
    if (expert) ew_pass(k % w->nt == 0 ? &w->par : &w->ser, n * k * T * rows, 12, 2);
}

static const gk_plan_op *find_op(const gk_plan_model *pm, const char *name) {
    for (int i = 0; i < pm->n_ops; i++)
        if (!strcmp(pm->ops[i].name, name)) return &pm->ops[i];
    return NULL;
}

/* Whether an MLP's gate and up products run as one gk_matmul2 call (the same type,
 * with GEMM kernels), their GeGLU in it (forward.c matmul_pair). */
static bool pair_fused(const gk_plan_model *pm, const char *gate, const char *up) {
    const gk_plan_op *g = find_op(pm, gate), *u = find_op(pm, up);
    return g && u && g->type == u->type && gk_gemm_kernels_of((gk_dtype)g->type);
}

/* The op of that name when the model has exactly one (its matrices of one type). */
static const gk_plan_op *single_op(const gk_plan_model *pm, const char *name) {
    const gk_plan_op *f = NULL;
    for (int i = 0; i < pm->n_ops; i++)
        if (!strcmp(pm->ops[i].name, name)) {
            if (f) return NULL;
            f = &pm->ops[i];
        }
    return f;
}

/* Whether a one-token forward runs each MoE layer's chosen experts' gate and up
 * products, and the dense MLP's beside them, as one gk_matmul_many call with their
 * GeGLU (forward.c mlp_decode): each op of one type, the same for all, with GEMM
 * kernels, every layer with experts, and the 2k (+ 2) products within the call. */
static bool mlp_decode_fused(const gk_plan_model *pm, double T) {
    const gk_plan_shape *s = &pm->s;
    if (T != 1 || !s->n_expert || s->n_layer_dense ||
        2 * s->n_expert_used + (s->n_ff ? 2 : 0) > GK_MATMUL_MAX)
        return false;
    const char *names[4] = {"ffn_gate_exps", "ffn_up_exps", "ffn_gate", "ffn_up"};
    const gk_plan_op *g = single_op(pm, names[0]);
    if (!g || !gk_gemm_kernels_of((gk_dtype)g->type)) return false;
    for (int i = 1; i < (s->n_ff ? 4 : 2); i++) {
        const gk_plan_op *o = single_op(pm, names[i]);
        if (!o || o->type != g->type || o->cols != g->cols) return false;
    }
    return true;
}

/* Layers of type t (their ffn_down_exps) whose down products, after mlp_decode_fused's
 * call, run as one gk_matmul_chunks_many job (forward.c downs_decode: the chosen
 * experts' and the dense MLP's, of one type): k chunks of the tree that the threads
 * divide, the k (+ 1) products within the call; with a dense MLP, as many layers as
 * both ops have of type t (llama-quantize's mixes give both the same type by layer). */
static double downs_fused_layers(const gk_plan_model *pm, double T, int k, int nt, uint32_t t) {
    const gk_plan_shape *s = &pm->s;
    if (!mlp_decode_fused(pm, T) || k < 2 || k % nt ||
        s->n_expert_used + (s->n_ff ? 1 : 0) > GK_MATMUL_MAX)
        return 0;
    double le = 0, ld = 0;
    for (int i = 0; i < pm->n_ops; i++) {
        const gk_plan_op *o = &pm->ops[i];
        if (o->type != t) continue;
        if (!strcmp(o->name, "ffn_down_exps")) le += o->n_layers;
        if (!strcmp(o->name, "ffn_down")) ld += o->n_layers;
    }
    return !s->n_ff ? le : le < ld ? le : ld;
}

/* Layers whose Q, K and V products run as one gk_matmul_many call (forward.c
 * attention: one type with GEMM kernels, one width), for the ops of type t: as many
 * as the one of the three with the fewest layers of that type has. */
static double qkv_fused_layers(const gk_plan_model *pm, uint32_t t) {
    if (!gk_gemm_kernels_of((gk_dtype)t)) return 0;
    const char *names[3] = {"attn_q", "attn_k", "attn_v"};
    double L = -1, cols = -1;
    for (int n = 0; n < 3; n++) {
        double l = 0;
        for (int i = 0; i < pm->n_ops; i++) {
            const gk_plan_op *p = &pm->ops[i];
            if (strcmp(p->name, names[n]) || p->type != t) continue;
            if (cols >= 0 && (double)p->cols != cols) return 0;
            cols = (double)p->cols, l = p->n_layers;
        }
        L = L < 0 || l < L ? l : L;
    }
    return L > 0 ? L : 0;
}

/* Layers of op o (attn_k or attn_v) whose K and V products run as one fused call
 * (forward.c: the same type and shape, and GEMM kernels for it, as gk_matmul2
 * needs): as many as the partner op of the same type has, at most. */
static double kv_fused_layers(const gk_plan_model *pm, const gk_plan_op *o) {
    const char *other = !strcmp(o->name, "attn_k") ? "attn_v" : "attn_k";
    if (!gk_gemm_kernels_of((gk_dtype)o->type)) return 0;
    for (int i = 0; i < pm->n_ops; i++) {
        const gk_plan_op *p = &pm->ops[i];
        if (!strcmp(p->name, other) && p->type == o->type && p->rows == o->rows &&
            p->cols == o->cols)
            return p->n_layers < o->n_layers ? p->n_layers : o->n_layers;
    }
    return 0;
}

/* One forward of n_tok tokens (of one sequence from position pos0) keeping n_logits
 * logits, touched experts per MoE layer (single of them on one token), tp ranks (each
 * with its slice; the walk is of the whole model, its time divided by the caller). */
static void walk_forward(fwd_walk *w, const gk_plan_model *pm, double T, double n_logits,
                         double touched, double single, double kv_elt, int tp) {
    const gk_plan_shape *s = &pm->s;
    const double d = s->n_embd, nq = (double)s->n_head * s->head_dim,
                 nkv = (double)s->n_head_kv * s->head_dim, E = s->n_expert, K = s->n_expert_used;
    uint32_t g = pm->sum_g > 1 ? pm->sum_g : 1;
    const int k = g % (uint32_t)tp == 0 ? (int)(g / (uint32_t)tp) : 1;
    /* the embedding rows, scaled */
    ew_pass(&w->ser, T * d, 8, 1);
    /* one token: the MoE layers' gate and up products in one call each */
    const bool mlp_fused = mlp_decode_fused(pm, T);
    if (mlp_fused) {
        const gk_plan_op *g = find_op(pm, "ffn_gate_exps");
        double rows[GK_MATMUL_MAX];
        int np = 0;
        for (uint32_t e = 0; e < 2 * s->n_expert_used; e++) rows[np++] = (double)g->rows;
        for (int i = 0; s->n_ff && i < 2; i++) rows[np++] = (double)find_op(pm, "ffn_gate")->rows;
        walk_many(w, g->type, rows, np, (double)g->cols, 1, g->n_layers);
    }
    /* and their down products in one job: each at the tree's batch-1 rate for its
     * chunk's width and its bytes, less the dispatches saved; the experts' gated adds
     * on this thread */
    for (int i = 0; i < pm->n_ops; i++) {
        const gk_plan_op *de = &pm->ops[i], *dd = NULL;
        if (strcmp(de->name, "ffn_down_exps")) continue;
        const double Lm = downs_fused_layers(pm, T, k, w->nt, de->type);
        if (!(Lm > 0)) continue;
        for (int j = 0; j < pm->n_ops; j++)
            if (!strcmp(pm->ops[j].name, "ffn_down") && pm->ops[j].type == de->type)
                dd = &pm->ops[j];
        if (w->nt > 1) w->runs += Lm, w->runs_other += Lm;
        /* each product as its own tree job would take, less the dispatches saved */
        if (w->hw) {
            double sum = K * tree_job_s(w->hw, de->type, de->rows, de->cols, 1, k, w->cold);
            if (dd) sum += tree_job_s(w->hw, dd->type, dd->rows, dd->cols, 1, k, w->cold);
            w->mm_s += Lm * fused_s(w->hw, sum, K + (dd ? 1 : 0) - 1);
        }
        ew_pass(&w->ser, Lm * k * K * (double)de->rows, 12, 2);
    }
    for (int i = 0; i < pm->n_ops; i++) {
        const gk_plan_op *o = &pm->ops[i];
        double L = o->n_layers, r = (double)o->rows, c = (double)o->cols;
        bool summed = !strcmp(o->name, "attn_output") || !strncmp(o->name, "ffn_down", 8);
        if (o->kind == GK_PLAN_OP_OUTPUT) {
            if (n_logits > 0) walk_mm(w, o->type, r, c, n_logits, 1);
        } else if (o->kind == GK_PLAN_OP_EXPERT) {
            /* each touched expert runs on its share of the tokens: `single` of them on
             * one, the others on the rest, (T k - single) / (touched - single) each */
            const double ns = single < touched ? single : touched, nm = touched - ns;
            for (int part = 0; part < 2; part++) {
                const double ne = part ? nm : ns, Te = part ? (T * K - ns) / nm : 1;
                if (!(ne > 0)) continue;
                if (summed) { /* the layers not in the one job above */
                    double Lr = L - downs_fused_layers(pm, T, k, w->nt, o->type);
                    if (Lr > 0) walk_chunks(w, o->type, r, c, Te, Lr * ne, k, true);
                } else if (!strcmp(o->name, "ffn_up_exps") || mlp_fused)
                    ; /* fused with the gate (gk_matmul2), or all in one call (below) */
                else {
                    const gk_plan_op *up = find_op(pm, "ffn_up_exps");
                    bool fused = pair_fused(pm, "ffn_gate_exps", "ffn_up_exps");
                    walk_mm(w, o->type, fused ? 2 * r : r, c, Te, L * ne);
                    if (!fused && up) walk_mm(w, up->type, r, c, Te, L * ne);
                }
            }
        } else if (o->kind == GK_PLAN_OP_LAYER) {
            if (summed) {
                double Lr = strcmp(o->name, "ffn_down")
                                ? L
                                : L - downs_fused_layers(pm, T, k, w->nt, o->type);
                if (Lr > 0) walk_chunks(w, o->type, r, c, T, Lr, k, false);
            } else if (!strcmp(o->name, "ffn_up") || (mlp_fused && !strcmp(o->name, "ffn_gate")))
                ;
            else if (!strcmp(o->name, "attn_q")) {
                /* Q, K and V in one call where they can be (counted at Q) */
                double L3 = qkv_fused_layers(pm, o->type);
                if (L3 > 0) {
                    const double rows[3] = {r, (double)find_op(pm, "attn_k")->rows,
                                            (double)find_op(pm, "attn_v")->rows};
                    walk_many(w, o->type, rows, 3, c, T, L3);
                }
                if (L > L3) walk_mm(w, o->type, r, c, T, L - L3);
            } else if (!strcmp(o->name, "attn_k") || !strcmp(o->name, "attn_v")) {
                /* K and V fused where they can be (one call of both, counted at K), of
                 * the layers whose Q, K and V do not run as one call */
                double L3 = qkv_fused_layers(pm, o->type), Lf = kv_fused_layers(pm, o) - L3;
                if (Lf > 0 && !strcmp(o->name, "attn_k")) walk_mm(w, o->type, 2 * r, c, T, Lf);
                if (L - L3 > (Lf > 0 ? Lf : 0))
                    walk_mm(w, o->type, r, c, T, L - L3 - (Lf > 0 ? Lf : 0));
            } else if (!strcmp(o->name, "ffn_gate")) {
                const gk_plan_op *up = find_op(pm, "ffn_up");
                bool fused = pair_fused(pm, "ffn_gate", "ffn_up");
                walk_mm(w, o->type, fused ? 2 * r : r, c, T, L);
                if (!fused && up) walk_mm(w, up->type, r, c, T, L);
            } else
                walk_mm(w, o->type, r, c, T, L);
        }
    }
    const double nl = s->n_layer, moe = E > 0 ? nl - s->n_layer_dense : 0;
    /* per layer: the attention's job, and a GeGLU job per touched expert and dense MLP
     * whose gate and up products do not run fused (forward.c matmul_pair) */
    w->geglu_jobs = (pair_fused(pm, "ffn_gate_exps", "ffn_up_exps") ? 0 : moe * touched) +
                    (s->n_ff && !pair_fused(pm, "ffn_gate", "ffn_up") ? nl : 0);
    if (w->nt > 1) w->runs += nl + w->geglu_jobs, w->runs_other += nl + w->geglu_jobs;
    /* GeGLU: GELU (erff or tanhf) and the product per element, on the pool */
    w->geglu = T * (moe * K * (double)s->n_ff_exp + nl * s->n_ff);
    /* on the calling thread, per layer and token: four RMSNorms (20 bytes, 6 FLOPs an
     * element), two residual adds; RoPE of q and k; K and V stored in the cache's type;
     * two tree sums of k chunks; the MoE's chunk sums zeroed, its expert rows gathered
     * (the scatter is in the chunks), routing (the cap's tanhf, the softmax's expf);
     * Grok-2's (MoE + MLP) / sqrt 2 per chunk */
    ew_pass(&w->ser, T * d * nl, 4 * 20 + 2 * 12, 4 * 6 + 2);
    ew_pass(&w->ser, T * (nq + nkv) * nl, 12, 3);
    ew_pass(&w->ser, T * 2 * nkv * nl, 4 + kv_elt, 1);
    ew_pass(&w->ser, 2 * (k - 1) * T * d * nl, 12, 1);
    ew_pass(&w->ser, k * T * d * moe, 4, 0);
    ew_pass(&w->ser, T * K * d * moe, 8, 0);
    w->ser.exp += T * E * moe;
    if (s->router_softcap > 0) w->ser.tanh += T * E * moe;
    ew_pass(&w->ser, T * E * moe, 8, 2 + 2 * K);
    if (s->n_ff && E > 0) ew_pass(&w->ser, k * T * d * nl, 12, 2);
    /* the kept tokens: final norm; the logits scaled and capped by a job on the pool */
    ew_pass(&w->ser, n_logits * d, 20, 6);
    if (n_logits > 0) {
        if (w->nt > 1) w->runs += 1, w->runs_other += 1;
        ew_pass(&w->par, n_logits * s->n_vocab, 8, 2);
        if (s->final_softcap > 0) w->par.tanh += n_logits * s->n_vocab;
    }
}

double gk_plan_forward_pool_runs(const gk_plan_model *pm, double n_tok, double n_logits,
                                 double touched, double single, int n_threads, int tp) {
    fwd_walk w = {.nt = n_threads > 0 ? n_threads : 1};
    walk_forward(&w, pm, n_tok, n_logits, touched, single, 4, tp > 0 ? tp : 1);
    return w.runs;
}

/* The attention's job (forward.c attn_part) splits its (token, head) items over the
 * threads in contiguous runs (gk_split), and a token at position p reads p + 1 keys:
 * the job lasts as long as the busiest thread's keys. The factor by which that exceeds
 * an even split (1 with one thread; towards 1.5 with 2 threads over a long prompt). */
static double attn_imbalance(double T, double pos0, double n_head, int nt) {
    if (nt <= 1 || T * n_head > 1e8) return 1.0;
    int64_t n = (int64_t)(T * n_head), nh = (int64_t)n_head;
    double total = 0, most = 0;
    for (int i = 0; i < nt; i++) {
        int64_t lo, hi;
        gk_split(n, i, nt, &lo, &hi);
        double keys = 0;
        for (int64_t it = lo; it < hi; it++) keys += pos0 + (double)(it / nh) + 1.0;
        total += keys;
        most = keys > most ? keys : most;
    }
    return total > 0 ? most * nt / total : 1.0;
}

/* Seconds of one item of the attention job (a run of nq query heads of size hd over nk
 * keys of an f32 cache) as calibrate timed it: piecewise linear in the keys through the
 * timed 64, 512 and 4096 (below 64 along the first piece, down to its share of the
 * 64-key time; past 4096 along the last piece, or at the memory's bandwidth shared by
 * the threads when K and V stream slower than that), linear in the heads between 1, 2
 * and 4 and in the head size between 32, 64 and 128 (past 128 in proportion). 0 when
 * calibrate did not time it. */
static double attn_item_s(const gk_plan_hw *hw, const double (*tab)[3][3], double hd, double nq,
                          double nk, int nt) {
    double y[3]; /* at hd 32, 64, 128 */
    for (int h = 0; h < 3; h++) {
        double yq[3];
        for (int q = 0; q < 3; q++) {
            const double *v = tab[h][q];
            if (!(v[0] > 0 && v[1] > 0 && v[2] > 0)) return 0;
            double t;
            if (nk <= 512) {
                double sl = (v[1] - v[0]) / 448.0;
                t = v[0] + (nk - 64) * sl;
                if (nk < 64 && t < v[0] * nk / 64) t = v[0] * nk / 64;
            } else {
                double sl = (v[2] - v[1]) / 3584.0;
                if (nk > 4096) {
                    double mem = 2.0 * hd * 4.0 * nt / hw->mem_bw;
                    t = v[2] + (nk - 4096) * (sl > mem ? sl : mem);
                } else
                    t = v[1] + (nk - 512) * sl;
            }
            yq[q] = t;
        }
        y[h] = nq <= 1   ? yq[0]
               : nq <= 2 ? yq[0] + (nq - 1) * (yq[1] - yq[0])
               : nq <= 4 ? yq[1] + (nq - 2) / 2 * (yq[2] - yq[1])
                         : yq[2] * nq / 4;
    }
    return hd <= 32    ? y[0]
           : hd <= 64  ? y[0] + (hd - 32) / 32 * (y[1] - y[0])
           : hd <= 128 ? y[1] + (hd - 64) / 64 * (y[2] - y[1])
                       : y[2] * hd / 128;
}

/* Seconds of one layer's attention job (forward.c attn_part) over T tokens of one
 * sequence from position pos0, nh query heads in ng KV groups on this rank, as calibrate
 * timed its items: the items (token, run of up to GK_ATTN_QMAX heads of a group; more
 * runs while threads would idle) in contiguous runs per thread (gk_split), token t
 * reading pos0 + t + 1 keys; a thread's first item of a group finds its K and V cold
 * (the layer's cache was last read a whole forward ago; cold_share of it when the
 * forward's bytes may stay in the caches, as forward_time judges), its later ones warm; the job
 * lasts as long as its busiest thread. Its dispatch is charged apart. 0 when calibrate
 * did not time the items. */
static double attn_job_s(const gk_plan_hw *hw, double T, double pos0, int nh, int ng, double hd,
                         int nt, double cold_share) {
    const double(*warm)[3][3] = hw->attn_item, (*cold)[3][3] = hw->attn_cold;
    if (ng < 1 || nh < ng || attn_item_s(hw, warm, hd, 1, 64, nt) <= 0) return 0;
    if (attn_item_s(hw, cold, hd, 1, 64, nt) <= 0) cold = warm;
    const int group = nh / ng;
    int runs = (group + GK_ATTN_QMAX - 1) / GK_ATTN_QMAX;
    while (runs < group && T * ng * runs < nt) runs++;
    const int qc = (group + runs - 1) / runs;
    const int64_t per_tok = (int64_t)ng * runs, n = (int64_t)T * per_tok;
    if (n > 4000000 || ng > 1024) { /* too many to walk: an even share of warm items */
        double keys = T * (pos0 + (T + 1) / 2);
        return (double)per_tok * attn_item_s(hw, warm, hd, qc, keys / T, nt) * T / nt;
    }
    double most = 0;
    bool seen[1024];
    for (int i = 0; i < nt; i++) {
        int64_t lo, hi;
        gk_split(n, i, nt, &lo, &hi);
        memset(seen, 0, (size_t)ng * sizeof seen[0]);
        double s = 0;
        for (int64_t item = lo; item < hi; item++) {
            const int t = (int)(item / per_tok), rem = (int)(item % per_tok);
            const int g = rem / runs, h0 = g * group + rem % runs * qc;
            const int nq = h0 + qc <= (g + 1) * group ? qc : (g + 1) * group - h0;
            if (nq <= 0) continue;
            double wi = attn_item_s(hw, warm, hd, nq, pos0 + t + 1, nt);
            s += seen[g] ? wi
                         : wi + cold_share * (attn_item_s(hw, cold, hd, nq, pos0 + t + 1, nt) - wi);
            seen[g] = true;
        }
        most = s > most ? s : most;
    }
    return most;
}

/* The share of the reads of fb bytes, read again and again, that miss the caches: from
 * calibrate's streaming reads of a buffer of that size (log-linear between the sizes),
 * where their time per byte lies between the fastest size's (the caches: 0, as the warm
 * rates, timed from a 4 MiB arena) and the 512 MiB buffer's (1: as the batch-1 rates,
 * timed from a 512 MiB arena); without them, log-linear from 4 to 96 MiB (a cache of
 * some tens of MiB). */
static double cold_share(const gk_plan_hw *hw, double fb) {
    const double mib = 1048576.0;
    double xs[8], fast = 0;
    for (int k = 0; k < 8; k++) {
        xs[k] = (4 << k) * mib;
        if (!(hw->read_bw_at[k] > 0))
            return fb <= 4 * mib ? 0 : fb >= 96 * mib ? 1 : log(fb / (4 * mib)) / log(24.0);
        fast = fmax(fast, hw->read_bw_at[k]);
    }
    const double s_warm = 1.0 / fast, s_cold = 1.0 / hw->read_bw_at[7];
    if (s_cold <= s_warm) return fb <= 4 * mib ? 0 : 1; /* no cache seen */
    const double c = (1.0 / interp_rate(xs, hw->read_bw_at, 8, fb, 0) - s_warm) / (s_cold - s_warm);
    return c < 0 ? 0 : c > 1 ? 1 : c;
}

/* Seconds of one forward on a device that holds 1/share of every op, from the
 * measured per-type matmul rates (calibrated CPUs) or the peaks. */
static double forward_time(const gk_plan_model *pm, const gk_plan_hw *hw, double n_tok, double pos0,
                           double n_logits, double kv_elt, double share, double eff_f, double eff_b,
                           bool measured, int tp, gk_plan_parts *parts) {
    gk_plan_cost c = gk_plan_forward(pm, n_tok, pos0, n_logits, -1.0, kv_elt);
    double touched = gk_plan_experts_touched(&pm->s, n_tok),
           single = gk_plan_experts_single(&pm->s, n_tok);
    if (measured) {
        int nt = hw->threads > 0 ? hw->threads : 1;
        /* the bytes a forward reads (weights and cache, this device's share), read again
         * by the next forward: the share of them that misses the caches */
        double cold = cold_share(hw, (c.weight_bytes + c.kv_bytes_read) / share);
        fwd_walk w = {.hw = hw, .nt = nt, .cold = cold};
        walk_forward(&w, pm, n_tok, n_logits, touched, single, kv_elt, tp);
        const gk_plan_shape *s = &pm->s;
        gk_plan_parts p = {
            .matmul = w.mm_s, .pool_runs = w.runs, .dispatch = w.runs_other * job_s(hw)};
        /* GeGLU at the rate calibrate measured for gk_geglu; else its libm calls and
         * its pass (12 bytes, 4 FLOPs an element) */
        double gr = s->gelu_erf ? hw->geglu_erf : hw->geglu_tanh;
        if (gr > 0) {
            /* each call's fixed part: a 4096-element call's time beyond its elements at
             * that rate and its dispatch (charged with the other jobs) */
            double t4 = s->gelu_erf ? hw->geglu_erf_4k : hw->geglu_tanh_4k;
            double fixed = t4 - 4096.0 / gr - job_s(hw);
            p.geglu = w.geglu / gr + (t4 > 0 && fixed > 0 ? w.geglu_jobs * fixed : 0);
        } else {
            *(s->gelu_erf ? &w.par.erf : &w.par.tanh) += w.geglu;
            ew_pass(&w.par, w.geglu, 12, 4);
        }
        /* attention at the dot rate for its head size, the cache's bytes at the memory's
         * rate; its softmax's expf and softcap's tanhf per (head, key), on the pool */
        static const double hds[3] = {32, 64, 128};
        double af = interp_rate(hds, hw->attn_at, 3, s->head_dim,
                                hw->attn_flops > 0 ? hw->attn_flops : hw->bf16_flops);
        /* the attention's job: its dots, the cache's bytes, and the softmax's expf and
         * the softcap's tanhf per (head, key), as long as its busiest thread */
        double pairs = s->attn == GK_PLAN_ATTN_GQA ? c.attn_flops / (4.0 * s->head_dim) : 0;
        gk_plan_ew aw = {.exp = pairs, .tanh = s->attn_softcap > 0 ? pairs : 0};
        /* the engine's attention job as calibrate timed its items (an f32 cache); else
         * its dots, bytes and vector math at the rates of their own */
        double job = s->attn == GK_PLAN_ATTN_GQA && kv_elt == 4
                         ? attn_job_s(hw, n_tok, pos0, (int)(s->n_head / (uint32_t)tp),
                                      (int)(s->n_head_kv / (uint32_t)tp), s->head_dim, nt, cold)
                         : 0;
        if (job > 0)
            p.attention = job * s->n_layer;
        else
            p.attention = (c.attn_flops / af + (c.kv_bytes_read + c.kv_bytes_written) / hw->mem_bw +
                           ew_time(hw, &aw, 0, nt)) *
                          attn_imbalance(n_tok, pos0, (double)s->n_head / tp, nt);
        double gelu_row = n_tok * ((double)s->n_expert_used * s->n_ff_exp + s->n_ff);
        p.ew_pool = ew_time(
            hw, &w.par, 12.0 * (gelu_row > n_tok * s->n_embd ? gelu_row : n_tok * s->n_embd), nt);
        p.ew_serial = ew_time(hw, &w.ser, 12.0 * n_tok * s->n_embd, 1);
        p.total = p.matmul + p.dispatch + p.geglu + p.attention + p.ew_pool + p.ew_serial;
        if (parts) {
            parts->matmul += p.matmul / share, parts->dispatch += p.dispatch / share;
            parts->geglu += p.geglu / share, parts->attention += p.attention / share;
            parts->ew_pool += p.ew_pool / share, parts->ew_serial += p.ew_serial / share;
            parts->pool_runs += p.pool_runs, parts->total += p.total / share;
        }
        return p.total / share;
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
        tpp += forward_time(pm, hw, T, done, 1, o.kv_elt_bytes, share, 1, 1, false, tp, NULL);
        tpe += forward_time(pm, hw, T, done, 1, o.kv_elt_bytes, share, o.eff_flops, o.eff_bw, meas,
                            tp, &r->prompt_parts);
        cpp += comm_time(pm, hw, &r->split, T, o.wire_bytes);
        done += T;
    }
    r->prompt_bound = o.n_prompt / (tpp + cpp);
    r->prompt_expect = o.n_prompt / (tpe + cpp);
    /* generation: one token through every stage in turn (tp-way parallel) */
    double pos = o.gen_pos > 0 ? o.gen_pos : o.n_ctx / 2, gshare = tp;
    double tg = forward_time(pm, hw, 1, pos, 1, o.kv_elt_bytes, gshare, 1, 1, false, tp, NULL);
    r->gen_comm_s = comm_time(pm, hw, &r->split, 1, o.wire_bytes);
    r->gen_bound = 1.0 / (tg + r->gen_comm_s);
    double tge = forward_time(pm, hw, 1, pos, 1, o.kv_elt_bytes, gshare, o.eff_flops, o.eff_bw,
                              meas, tp, &r->gen_parts);
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
    /* every product at the rate calibrate measured for its three calls (forward, dX,
     * dW with its transpose of dY) at its size (the smallest side), when known */
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
    /* attention: the dot products at the dot rate for the head size, the row updates
     * at the elementwise rate of arrays in cache (per thread, times the threads); the
     * backward's items (sequence, KV head) may leave threads idle */
    static const double hds[3] = {32, 64, 128};
    double ar = interp_rate(hds, hw->attn_at, 3, s->head_dim, hw->attn_flops);
    double er = nt * (hw->ew_bw_at[0] > 0 ? hw->ew_bw_at[0] : hw->mem_bw);
    double items = w.attn_bwd_items, waves = ceil(items / nt), eff = items / (waves * nt);
    tt.attn = w.attn_fwd_dot_flops / ar + w.attn_fwd_bytes / er +
              (w.attn_bwd_dot_flops / ar + w.attn_bwd_bytes / er) / eff;
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
    tt.pool = w.pool_runs * (hw->step_s > 0 ? hw->step_s : hw->call_s);
    /* a step after serial work costs what calibrate measured after a gap of that length
     * (once the workers sleep, their wake-up) */
    if (nt > 1) {
        static const double gaps[8] = {5e-6, 10e-6, 20e-6, 40e-6, 80e-6, 160e-6, 320e-6, 640e-6};
        double wide = ew_time(hw, &w.wide_ser, w.wide_ser.bytes, 1);
        double expert = ew_time(hw, &w.expert_ser, w.expert_ser.bytes, 1);
        tt.pool += w.wakes_wide * interp_rate(gaps, hw->wake_at, 8, wide, 0.0) +
                   w.wakes_expert * interp_rate(gaps, hw->wake_at, 8, expert, 0.0);
    }
    /* calibrate's measured step on its own model: the parts as the engine runs them,
     * each with its dispatches */
    if (hw->train_k_gemm > 0 && hw->train_k_attn > 0 && hw->train_k_pool > 0 &&
        hw->train_k_ser > 0 && hw->train_k_opt > 0) {
        tt.gemm *= hw->train_k_gemm;
        tt.attn *= hw->train_k_attn;
        tt.ew_par *= hw->train_k_pool;
        tt.ew_ser *= hw->train_k_ser;
        tt.opt *= hw->train_k_opt;
        tt.pool = 0;
    }
    tt.total = tt.gemm + tt.attn + tt.ew_ser + tt.ew_par + tt.opt + tt.pool;
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
