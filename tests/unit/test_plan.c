/*
 * test_plan.c - the cost model (src/plan): counts computed by hand for a tiny
 * configuration of each variant, the Grok presets' parameter counts from the
 * spec, published training runs reproduced within 15 %, bad inputs, preset
 * files, and (when the engine's work counters exist) the planner against what
 * the engine actually did on a tiny model.
 */
#include "gk_test.h"
#include "grok.h"
#include "kernels/gemm.h"
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NEAR(a, b) (fabs((a) - (b)) <= 1e-9 * (fabs(a) + fabs(b)) + 1e-9)
#define CHECK_EQ(a, b)                                                                             \
    CHECK_MSG(NEAR((double)(a), (double)(b)), "%.17g != %.17g", (double)(a), (double)(b))

/* Grok-1 shape, tiny: V 32, d 16, 2 layers, 4 heads of 4 over 2 KV heads, 4 experts
 * of width 8, top-2, tied output, f32. */
static void test_tiny_grok1(void) {
    gk_plan_shape s = {.variant = GK_VARIANT_GROK1,
                       .n_vocab = 32,
                       .n_embd = 16,
                       .n_layer = 2,
                       .n_head = 4,
                       .n_head_kv = 2,
                       .head_dim = 4,
                       .n_ctx = 64,
                       .n_ff_exp = 8,
                       .n_expert = 4,
                       .n_expert_used = 2,
                       .gated = true,
                       .tied_output = true};
    gk_plan_model pm;
    gk_err err;
    CHECK(gk_plan_model_build(&s, "f32", &pm, &err) == 0);
    /* by hand: attention q 16x16 + k 8x16 + v 8x16 + o 16x16 = 768; router 4x16 = 64;
     * one expert 3 x 8 x 16 = 384 (4 stored, 2 used); 4 norms of 16 per layer;
     * embedding 32 x 16 = 512 (also the output); final norm 16 */
    CHECK_EQ(gk_plan_params(&pm), 2 * (768 + 64 + 4 * 384 + 64) + 512 + 16);        /* 5392 */
    CHECK_EQ(gk_plan_params_active(&pm), 2 * (768 + 64 + 2 * 384 + 64) + 512 + 16); /* 3856 */
    CHECK_EQ(gk_plan_weight_bytes(&pm), 4.0 * 5392);
    /* one token at position 0 with its logits */
    gk_plan_cost c = gk_plan_forward(&pm, 1, 0, 1, 2, 4);
    CHECK_EQ(c.matmul_flops, 2.0 * 2 * (768 + 64 + 2 * 384) + 2.0 * 512); /* 7424 */
    CHECK_EQ(c.weight_bytes, 4.0 * (2 * (768 + 64 + 2 * 384) + 512));     /* 14848 */
    CHECK_EQ(c.attn_flops, 4.0 * 4 * 4 * 1 * 2);                          /* 1 key, 2 layers */
    CHECK_EQ(c.kv_bytes_written, 2.0 * 2 * 8 * 4);                        /* K+V, 2 layers */
    CHECK_EQ(c.embd_bytes, 16 * 4);
    /* 3 tokens at positions 5, 6, 7 (6 + 7 + 8 = 21 keys), no logits, 3 experts touched */
    c = gk_plan_forward(&pm, 3, 5, 0, 3, 4);
    CHECK_EQ(c.matmul_flops, 3 * 2.0 * 2 * (768 + 64 + 2 * 384));
    CHECK_EQ(c.weight_bytes, 4.0 * 2 * (768 + 64 + 3 * 384));
    CHECK_EQ(c.attn_flops, 64.0 * 21 * 2);
    CHECK_EQ(c.kv_bytes_read, 2.0 * 8 * 4 * 21 * 2);
    /* expected touched experts: E (1 - (1 - k/E)^n) */
    CHECK_EQ(gk_plan_experts_touched(&s, 1), 2);
    CHECK_EQ(gk_plan_experts_touched(&s, 2), 4 * (1 - 0.25));
    /* of them on one token: E n p (1 - p)^(n - 1), p = k/E */
    CHECK_EQ(gk_plan_experts_single(&s, 1), 2);
    CHECK_EQ(gk_plan_experts_single(&s, 2), 4 * 2 * 0.5 * 0.5);
    CHECK_EQ(gk_plan_experts_single(&s, 3), 4 * 3 * 0.5 * 0.25);
    CHECK_EQ(gk_plan_kv_bytes_per_token(&s, 2), 2.0 * 2 * 8 * 2);
    /* tp 2: two ring all-reduces of 16 values per layer, each rank sends (2-1)/2 * 2 x 16 */
    gk_plan_split sp = {.tp = 2, .ep = 1, .pp = 1, .dp = 1};
    gk_plan_comm cm = gk_plan_comm_per_token(&pm, &sp, 4);
    CHECK_EQ(cm.tp_bytes, 2.0 * 2 * 16 * 4);
    CHECK_EQ(cm.tp_msgs, 2.0 * 2 * 2);
    sp = (gk_plan_split){.tp = 1, .ep = 4, .pp = 2, .dp = 1};
    cm = gk_plan_comm_per_token(&pm, &sp, 2);
    CHECK_EQ(cm.ep_bytes, 2.0 * 2 * 2 * 0.75 * 16 * 2); /* there and back, top-2, 3/4 remote */
    CHECK_EQ(cm.pp_bytes, 16 * 2);
    CHECK_EQ(gk_plan_dp_bytes_per_step(&pm, 4, 2), 2.0 * 3 / 4 * 5392 * 2);
}

/* Grok-2 shape, tiny, q8_0: V 64, d 32, 1 layer, 2 heads of 16 over 1 KV head,
 * 2 experts of width 32 top-1, dense MLP 64, untied. A q8_0 row of 32 is 34 bytes. */
static void test_tiny_grok2(void) {
    gk_plan_shape s = {.variant = GK_VARIANT_GROK2,
                       .n_vocab = 64,
                       .n_embd = 32,
                       .n_layer = 1,
                       .n_head = 2,
                       .n_head_kv = 1,
                       .head_dim = 16,
                       .n_ctx = 64,
                       .n_ff = 64,
                       .n_ff_exp = 32,
                       .n_expert = 2,
                       .n_expert_used = 1,
                       .gated = true};
    gk_plan_model pm;
    gk_err err;
    CHECK(gk_plan_model_build(&s, "q8_0", &pm, &err) == 0);
    const double attn = 32 * 34 + 16 * 34 + 16 * 34 + 32 * 34; /* q k v o: 3264 */
    const double router = 2 * 32 * 4;                          /* f32: 256 */
    const double expert = 3 * 32 * 34;                         /* 3264 */
    const double dense = 64 * 34 + 64 * 34 + 32 * 68;          /* down rows are 64 long: 6528 */
    const double out = 64 * 34, norms = (4 * 32 + 32) * 4.0;
    CHECK_EQ(gk_plan_weight_bytes(&pm), attn + router + 2 * expert + dense + 2 * out + norms);
    CHECK_EQ(gk_plan_params(&pm), 3072 + 64 + 2 * 3072 + 6144 + 2 * 2048 + 160);
    gk_plan_cost c = gk_plan_forward(&pm, 1, 0, 1, 1, 4);
    CHECK_EQ(c.weight_bytes, attn + router + expert + dense + out);
    CHECK_EQ(c.matmul_flops, 2.0 * (3072 + 64 + 3072 + 6144) + 2.0 * 2048); /* 28800 */
    CHECK_EQ(c.embd_bytes, 34);
    /* training, sequences of 4: forward matmuls with every token's logits, attention
     * over (4 + 1)/2 keys on average, backward twice the forward */
    gk_plan_train_cost t = gk_plan_train_per_token(&pm, 4);
    CHECK_EQ(t.fwd_matmul_flops, 28800);
    CHECK_EQ(t.fwd_attn_flops, 4.0 * 2 * 16 * 2.5);
    CHECK_EQ(t.bwd_flops, 2 * (28800 + 320));
    CHECK_EQ(t.flops, 3 * (28800 + 320));
    CHECK_EQ(t.opt_bytes_per_step, 32.0 * gk_plan_params(&pm));
    /* weight bytes on the busiest device of tp 2: matrices halved, router whole */
    gk_plan_split sp = {.tp = 2, .ep = 1, .pp = 1, .dp = 1};
    CHECK_EQ(gk_plan_weight_bytes_per_device(&pm, &sp),
             (attn + 2 * expert + dense) / 2 + router + 2 * out / 2 + norms);
    /* the llama.cpp mix: k-quants need 256-wide rows, so at d = 32 they fall back to
     * q5_0 (q4_k) and q8_0 (q6_k) as llama.cpp does */
    CHECK(gk_plan_model_build(&s, "q4_k_m", &pm, &err) == 0);
    bool saw_q5_0 = false;
    for (int i = 0; i < pm.n_ops; i++)
        saw_q5_0 |= !strcmp(pm.ops[i].name, "attn_q") && pm.ops[i].type == 6;
    CHECK(saw_q5_0);
}

/* Spec section 9: exact parameter counts of the released configurations. */
static void test_grok_presets(void) {
    gk_plan_shape s;
    gk_plan_model pm;
    gk_err err;
    CHECK(gk_plan_shape_preset("grok-1", &s, &err) == 0);
    CHECK(gk_plan_model_build(&s, "bf16", &pm, &err) == 0);
    CHECK_EQ(gk_plan_params(&pm), 315684820992.0);
    CHECK_EQ(gk_plan_params_active(&pm), 83756587008.0);
    CHECK(gk_plan_shape_preset("grok-2", &s, &err) == 0);
    CHECK(gk_plan_model_build(&s, "bf16", &pm, &err) == 0);
    CHECK_EQ(gk_plan_params(&pm), 269515497472.0);
    /* q4_k_m of Grok-2: 4.5 to 5.5 bits per weight on average */
    CHECK(gk_plan_model_build(&s, "q4_k_m", &pm, &err) == 0);
    double bpw = 8 * gk_plan_weight_bytes(&pm) / gk_plan_params(&pm);
    CHECK_MSG(bpw > 4.5 && bpw < 5.5, "q4_k_m bpw %.3f", bpw);
    /* the KV cache of both: 64 layers x 8 KV heads x 128 x 2 x 2 B = 256 KiB per token */
    CHECK_EQ(gk_plan_kv_bytes_per_token(&s, 2), 262144);
}

/* Published training runs and model sizes, reproduced from their configurations
 * and stated hardware within 15 % (docs/scale.md cites each). */
typedef struct {
    const char *what, *model, *fleet;
    double tokens, seq, mfu;
    int quantity; /* 0 params, 1 active params, 2 training FLOPs, 3 device-hours */
    double published;
    const char *source;
} published_run;

static const published_run runs[] = {
    {"Llama 3.1 405B parameters", "llama-3.1-405b", NULL, 0, 0, 0, 0, 405e9,
     "Llama 3 Herd of Models, arXiv:2407.21783, Table 3"},
    {"Llama 3.1 405B training FLOPs", "llama-3.1-405b", NULL, 15.6e12, 8192, 0, 2, 3.8e25,
     "arXiv:2407.21783 sec. 3.2.1 (15.6T tokens, 3.8e25 FLOPs)"},
    {"Llama 3.1 405B H100 GPU-hours", "llama-3.1-405b", "16384xH100", 15.6e12, 8192, 0.38, 3,
     30.84e6, "Llama 3.1 model card (30.84M H100-80GB GPU-hours); MFU 38-43 %, Table 4"},
    {"DeepSeek-V3 parameters", "deepseek-v3", NULL, 0, 0, 0, 0, 671e9,
     "DeepSeek-V3 Technical Report, arXiv:2412.19437, abstract"},
    {"DeepSeek-V3 active parameters", "deepseek-v3", NULL, 0, 0, 0, 1, 37e9,
     "arXiv:2412.19437, abstract"},
    {"DeepSeek-V3 H800 GPU-hours", "deepseek-v3", "2048xH800", 14.8e12, 4096, 0.38, 3, 2.788e6,
     "arXiv:2412.19437 Table 1 (2.788M H800 GPU-hours, 14.8T tokens); MFU assumed 0.38"},
    {"GPT-3 175B parameters", "gpt-3-175b", NULL, 0, 0, 0, 0, 175e9,
     "Brown et al. 2020, arXiv:2005.14165, Table 2.1"},
    {"GPT-3 175B training FLOPs", "gpt-3-175b", NULL, 300e9, 2048, 0, 2, 3.14e23,
     "arXiv:2005.14165 Table D.1 (3.14e23 FLOPs, 300B tokens)"},
    {"Chinchilla parameters", "chinchilla-70b", NULL, 0, 0, 0, 0, 70e9,
     "Hoffmann et al. 2022, arXiv:2203.15556, Table 4"},
    {"Chinchilla training FLOPs", "chinchilla-70b", NULL, 1.4e12, 2048, 0, 2, 5.76e23,
     "arXiv:2203.15556 Table 3 (1.4T tokens, 5.76e23 FLOPs)"},
    {"Grok-1 parameters", "grok-1", NULL, 0, 0, 0, 0, 314e9,
     "xai-org/grok-1 README (314B parameters)"},
    {"Grok-2 parameters", "grok-2", NULL, 0, 0, 0, 0, 270e9,
     "xai-org/grok-2 model card; HF discussion #6 (269,515,497,472)"},
};

static void test_published(void) {
    printf("%-32s %12s %12s %7s\n", "published figure", "published", "planner", "diff");
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        const published_run *r = &runs[i];
        gk_plan_shape s;
        gk_plan_model pm;
        gk_err err;
        double v = 0;
        CHECK(gk_plan_shape_preset(r->model, &s, &err) == 0);
        CHECK(gk_plan_model_build(&s, "bf16", &pm, &err) == 0);
        if (r->quantity == 0) v = gk_plan_params(&pm);
        if (r->quantity == 1) v = gk_plan_params_active(&pm);
        if (r->quantity == 2) v = gk_plan_train_per_token(&pm, r->seq).flops * r->tokens;
        if (r->quantity == 3) {
            double n;
            gk_plan_hw hw;
            gk_plan_train t;
            CHECK(gk_plan_fleet_parse(r->fleet, &n, &hw, &err) == 0);
            CHECK(gk_plan_train_eval(&pm, &hw, n, r->tokens, r->seq, r->mfu, 1.0, &t, &err) == 0);
            v = t.device_hours;
        }
        double diff = v / r->published - 1;
        printf("%-32s %12.4g %12.4g %+6.1f%%  %s\n", r->what, r->published, v, 100 * diff,
               r->source);
        CHECK_MSG(fabs(diff) <= 0.15, "%s: %.4g vs published %.4g", r->what, v, r->published);
    }
}

static void test_fleet_and_bad_inputs(void) {
    gk_err err;
    gk_plan_hw hw;
    double n;
    CHECK(gk_plan_fleet_parse("8xH100", &n, &hw, &err) == 0);
    CHECK(n == 8 && !strcmp(hw.name, "H100-SXM"));
    CHECK(gk_plan_fleet_parse("16384xh100_sxm", &n, &hw, &err) == 0);
    CHECK(gk_plan_fleet_parse("8xH1000", &n, &hw, &err) < 0);
    CHECK_ERR_HAS(err.msg, "unknown device 'H1000'");
    CHECK(gk_plan_fleet_parse("0xH100", &n, &hw, &err) < 0);
    CHECK_ERR_HAS(err.msg, "whole number");
    CHECK(gk_plan_fleet_parse("2.5xH100", &n, &hw, &err) < 0);
    CHECK(gk_plan_fleet_parse("H100", &n, &hw, &err) < 0);
    CHECK_ERR_HAS(err.msg, "COUNTxDEVICE");
    gk_plan_shape s;
    CHECK(gk_plan_shape_preset("grok-3", &s, &err) < 0);
    CHECK_ERR_HAS(err.msg, "unknown model preset 'grok-3'");
    CHECK(gk_plan_shape_preset("grok-2", &s, &err) == 0);
    gk_plan_model pm;
    CHECK(gk_plan_model_build(&s, "q3_z", &pm, &err) < 0);
    CHECK_ERR_HAS(err.msg, "unknown weight type 'q3_z'");
    gk_plan_shape bad = s;
    bad.n_head_kv = 7;
    CHECK(gk_plan_model_build(&bad, "bf16", &pm, &err) < 0);
    CHECK_ERR_HAS(err.msg, "do not divide");
    bad = s;
    bad.n_expert_used = 9;
    CHECK(gk_plan_model_build(&bad, "bf16", &pm, &err) < 0);
    CHECK_ERR_HAS(err.msg, "top-9 of 8");
    CHECK(gk_plan_model_build(&s, "q4_k_m", &pm, &err) == 0);
    gk_plan_train t;
    CHECK(gk_plan_train_eval(&pm, &hw, 8, 1e12, 8192, 1.5, 1.2, &t, &err) < 0);
    CHECK_ERR_HAS(err.msg, "MFU");
    CHECK(gk_plan_train_eval(&pm, &hw, 8, -5, 8192, 0.4, 1.2, &t, &err) < 0);
    CHECK_ERR_HAS(err.msg, "token count");
    /* Grok-2 q4_k_m does not fit on one H100, fits on 8 with TP 8 */
    gk_plan_infer_opts io = {.n_ctx = 8192};
    gk_plan_infer r;
    CHECK(gk_plan_hw_find("H100", &hw, &err) == 0);
    CHECK(gk_plan_infer_eval(&pm, &hw, 1, 1, &io, &r, &err) == 0);
    CHECK(!r.fits);
    CHECK(gk_plan_infer_eval(&pm, &hw, 8, 8, &io, &r, &err) == 0);
    CHECK(r.fits && r.max_seqs > 1 && r.gen_bound > r.gen_expect && r.gen_expect > 0);
    CHECK(gk_plan_infer_eval(&pm, &hw, 8, 3, &io, &r, &err) < 0);
    CHECK_ERR_HAS(err.msg, "does not divide the 8 KV heads");
    /* fleet: 50M H100 at 40 % MFU, PUE 1 */
    gk_plan_fleet f;
    CHECK(gk_plan_fleet_eval(&hw, 50e6, 0.4, 1.0, &f, &err) == 0);
    CHECK_EQ(f.power_w, 50e6 * 700);
    CHECK_EQ(f.flops_year, 50e6 * 989.5e12 * 0.4 * 365.25 * 86400);
    CHECK_EQ(6 * f.chinchilla_params * f.chinchilla_tokens, f.flops_year);
    CHECK_EQ(f.chinchilla_tokens, 20 * f.chinchilla_params);
}

static void test_preset_file(void) {
    gk_err err;
    gk_plan_hw hw, back;
    CHECK(gk_plan_hw_find("MI300X", &hw, &err) == 0);
    hw.mm_bw1[8] = 12.5e9;
    hw.mm_flops512[2] = 3e11;
    hw.mm_bw1_at[8][1][1] = 7e9;
    hw.tgemm_at[2] = 3e10;
    hw.call_s = 1.5e-5;
    hw.attn_at[0] = 4e9;
    hw.exp_rate = 1.25e8;
    hw.ew_bw_at[3] = 6.5e9;
    hw.threads = 2;
    hw.attn_item[2][1][0] = 2.5e-6;
    hw.attn_cold[0][2][2] = 7.5e-5;
    hw.mm_tree1_at[8][2][1] = 2.25e10;
    hw.mm_bw1_warm[8][1][0] = 3.5e10;
    hw.mm_tree1_warm[8][0][1] = 1.5e10;
    hw.train_k_attn = 1.25;
    hw.mm_flops_narrow[8][3][1] = 1.75e11;
    hw.read_bw_at[5] = 6.25e10;
    char path[512];
    snprintf(path, sizeof path, "%s/dev.preset", gk_test_tmp_dir());
    CHECK(gk_plan_hw_save(&hw, path, &err) == 0);
    CHECK(gk_plan_hw_find(path, &back, &err) == 0);
    CHECK(!strcmp(back.name, "MI300X") && back.domain == 8 && back.threads == 2);
    CHECK(fabs(back.bf16_flops / hw.bf16_flops - 1) < 1e-5 && back.mm_bw1[8] == 12.5e9 &&
          back.mm_flops512[2] == 3e11 && back.mm_bw1_at[8][1][1] == 7e9 &&
          back.tgemm_at[2] == 3e10 && back.call_s == 1.5e-5 && back.attn_at[0] == 4e9 &&
          back.exp_rate == 1.25e8 && back.ew_bw_at[3] == 6.5e9 && back.ew_bw_at[0] == 0 &&
          back.train_k_attn == 1.25 && back.train_k_gemm == 0);
    CHECK(back.attn_item[2][1][0] == 2.5e-6 && back.attn_item[2][1][1] == 0 &&
          back.attn_cold[0][2][2] == 7.5e-5 && back.attn_cold[2][1][0] == 0 &&
          back.mm_tree1_at[8][2][1] == 2.25e10 && back.mm_tree1_at[8][1][1] == 0 &&
          back.mm_bw1_warm[8][1][0] == 3.5e10 && back.mm_tree1_warm[8][0][1] == 1.5e10 &&
          back.mm_bw1_warm[8][0][0] == 0 && back.mm_flops_narrow[8][3][1] == 1.75e11 &&
          back.mm_flops_narrow[8][3][0] == 0 && back.read_bw_at[5] == 6.25e10 &&
          back.read_bw_at[4] == 0);
    /* an attention item at a shape calibrate does not time; a warm rate of a matrix
     * larger than the warm arena; a read bandwidth at a size calibrate does not time */
    static const char *bad_keys[] = {"attn_item.48.2.64 = 1e-6\n",
                                     "mm_bw1_warm.q8_0.16384.1024 = 1e9\n",
                                     "read_bw_at.48 = 1e10\n"};
    for (int i = 0; i < 3; i++) {
        CHECK(gk_plan_hw_save(&hw, path, &err) == 0);
        FILE *f = fopen(path, "a");
        fputs(bad_keys[i], f);
        fclose(f);
        CHECK(gk_plan_hw_load(path, &back, &err) < 0);
        CHECK_ERR_HAS(err.msg, "expected");
    }
    FILE *f;
    f = fopen(path, "w");
    fputs("name = x\nbf16_flops = lots\n", f);
    fclose(f);
    CHECK(gk_plan_hw_load(path, &back, &err) < 0);
    CHECK_ERR_HAS(err.msg, ":2: expected");
    f = fopen(path, "w");
    fputs("name = x\n", f);
    fclose(f);
    CHECK(gk_plan_hw_load(path, &back, &err) < 0);
    CHECK_ERR_HAS(err.msg, "not a device preset");
    unlink(path);
}

/* A tiny model made by tests/reference/make_model.py, or NULL (python missing). */
static gk_model *tiny_model(const char *kind, const char *type, char *path, size_t cap) {
    const char *src = getenv("GK_SOURCE_DIR");
    if (!src || access("/usr/bin/python3", X_OK) != 0) return NULL;
    snprintf(path, cap, "%s/%s_%s.gguf", gk_test_tmp_dir(), kind, type);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s/tests/reference/make_model.py' '%s' --kind %s --type %s "
             "--seed 5 >/dev/null 2>&1",
             src, path, kind, type);
    if (system(cmd) != 0) return NULL;
    gk_err err;
    gk_model *m = gk_model_load(path, NULL, &err);
    CHECK_MSG(m != NULL, "%s", err.msg);
    return m;
}

/* The planner's view of a real file: every tensor, with its real type. */
static void test_real_model(void) {
    static const char *kinds[] = {"grok1", "grok2"}, *types[] = {"f32", "q8_0", "q4_0"};
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < 3; t++) {
            char path[1024];
            gk_model *m = tiny_model(kinds[k], types[t], path, sizeof path);
            if (!m) {
                printf("skip: real-model checks need /usr/bin/python3 with numpy\n");
                return;
            }
            gk_plan_model pm, pb;
            gk_err err;
            CHECK(gk_plan_model_from_model(m, &pm, &err) == 0);
            CHECK_EQ(gk_plan_params(&pm), (double)gk_model_n_params(m));
            /* built from the shape alone, the counts agree too */
            gk_plan_shape s;
            gk_plan_shape_from_hparams(gk_model_hparams(m), "x", &s);
            CHECK(gk_plan_model_build(&s, "f32", &pb, &err) == 0);
            CHECK_EQ(gk_plan_params(&pb), gk_plan_params(&pm));
            CHECK_EQ(gk_plan_params_active(&pb), gk_plan_params_active(&pm));
            if (t == 0) CHECK_EQ(gk_plan_weight_bytes(&pb), gk_plan_weight_bytes(&pm));
            /* the summation tree's chunks: the engine's count (tp.c), and the plan's rule
             * on the shape in the file's type */
            gk_plan_model pt;
            CHECK(gk_plan_model_build(&s, types[t], &pt, &err) == 0);
            CHECK_EQ(pm.sum_g, (uint32_t)gk_model_sum_chunks(m, NULL));
            CHECK_EQ(pt.sum_g, pm.sum_g);
            /* stored bytes of the matrices never exceed the file */
            CHECK(gk_plan_weight_bytes(&pm) <= (double)gk_model_file_size(m));
            gk_model_free(m);
            unlink(path);
        }
}

/* The planner against the engine's own work counters (gk_context_stats): per-token
 * matmul FLOPs, weight bytes and attention FLOPs must be equal, not close. */
static void test_engine_counters(void) {
    static const char *kinds[] = {"grok1", "grok2"}, *types[] = {"f32", "q8_0"};
    for (int k = 0; k < 2; k++) {
        char path[1024];
        gk_model *m = tiny_model(kinds[k], types[k], path, sizeof path);
        if (!m) {
            printf("skip: engine-counter checks need /usr/bin/python3 with numpy\n");
            return;
        }
        gk_plan_model pm;
        gk_err err;
        CHECK(gk_plan_model_from_model(m, &pm, &err) == 0);
        const gk_hparams *hp = gk_model_hparams(m);
        gk_context_params cp = gk_context_default_params();
        cp.n_ctx = 64;
        cp.n_batch = 16;
        cp.n_threads = 1;
        cp.cache_type = k ? GK_CACHE_F16 : GK_CACHE_F32;
        const double kv_elt = k ? 2.0 : 4.0;
        gk_context *c = gk_context_new(m, &cp, &err);
        CHECK_MSG(c != NULL, "%s", err.msg);
        if (!c) {
            gk_model_free(m);
            return;
        }
        /* one token per forward: every matrix read once, exactly k experts */
        gk_plan_cost want = {0};
        for (int pos = 0; pos < 10; pos++) {
            int32_t tok = (int32_t)((pos * 37 + 11) % hp->n_vocab);
            CHECK(gk_decode(c, &tok, 1, &err) == 0);
            gk_plan_cost p = gk_plan_forward(&pm, 1, pos, 1, hp->n_expert_used, kv_elt);
            want.matmul_flops += p.matmul_flops;
            want.weight_bytes += p.weight_bytes;
            want.attn_flops += p.attn_flops;
            want.kv_bytes_written += p.kv_bytes_written;
            want.kv_bytes_read += p.kv_bytes_read;
        }
        gk_decode_stats st = gk_context_stats(c);
        CHECK(st.tokens == 10 && st.forwards == 10);
        CHECK_EQ(st.matmul_flops, want.matmul_flops);
        CHECK_EQ(st.weight_bytes, want.weight_bytes);
        CHECK_EQ(st.attn_flops, want.attn_flops);
        CHECK_EQ(st.kv_bytes_written, want.kv_bytes_written);
        CHECK_EQ(st.kv_bytes_read, want.kv_bytes_read);
        /* a batch of 12 tokens in one forward: FLOPs exact; the weight bytes count each
         * touched expert once, so they equal the planner's for some count in [k, E] */
        gk_context_truncate(c, 0);
        gk_context_stats_reset(c);
        int32_t toks[12];
        for (int i = 0; i < 12; i++) toks[i] = (int32_t)((i * 53 + 7) % hp->n_vocab);
        CHECK(gk_decode(c, toks, 12, &err) == 0);
        st = gk_context_stats(c);
        gk_plan_cost p = gk_plan_forward(&pm, 12, 0, 1, hp->n_expert_used, 4);
        CHECK_EQ(st.matmul_flops, p.matmul_flops);
        CHECK_EQ(st.attn_flops, p.attn_flops);
        /* routing decides how many experts each layer touches (k to E): the bytes are
         * the rest plus one expert's matrices per layer-expert touched */
        double base = gk_plan_forward(&pm, 12, 0, 1, 0, 4).weight_bytes;
        double per = (gk_plan_forward(&pm, 12, 0, 1, 1, 4).weight_bytes - base) / hp->n_layer;
        double n_touched = (st.weight_bytes - base) / per;
        CHECK_MSG(n_touched == floor(n_touched) &&
                      n_touched >= (double)hp->n_expert_used * hp->n_layer &&
                      n_touched <= (double)hp->n_expert * hp->n_layer,
                  "batch weight bytes %.17g: %.6g layer-experts", st.weight_bytes, n_touched);
        CHECK_EQ(gk_plan_forward(&pm, 12, 0, 1, n_touched / hp->n_layer, 4).weight_bytes,
                 st.weight_bytes);
        /* one thread hands the pool nothing */
        CHECK_EQ(st.pool_runs, 0);
        /* the wall time by part: each part measured, inside the forwards' time; GeGLU
         * inside the gate and up products' job where the type has GEMM kernels */
        const bool fused = gk_gemm_kernels_of(gk_weight_mm_type(&m->layers[0].gate_exps)) != NULL;
        CHECK(st.matmul_s > 0 && st.attn_s > 0 && st.softcap_s > 0);
        CHECK(fused ? st.geglu_s == 0 : st.geglu_s > 0);
        CHECK(st.matmul_s + st.attn_s + st.geglu_s + st.softcap_s <= st.forward_s);
        gk_context_stats_reset(c);
        st = gk_context_stats(c);
        CHECK(st.forward_s == 0 && st.matmul_s == 0 && st.attn_s == 0);
        gk_context_free(c);
        /* the jobs the engine hands its pool, which grok plan charges a dispatch each:
         * with 2 threads the summation tree's chunks run one per thread in one job, with
         * 3 chunk after chunk (when the chunk count is not a multiple of 3) */
        for (int nt = 2; nt <= 3; nt++) {
            cp.n_threads = nt;
            c = gk_context_new(m, &cp, &err);
            CHECK_MSG(c != NULL, "%s", err.msg);
            if (!c) break;
            for (int pos = 0; pos < 3; pos++) {
                int32_t tok = (int32_t)((pos * 37 + 11) % hp->n_vocab);
                CHECK(gk_decode(c, &tok, 1, &err) == 0);
            }
            st = gk_context_stats(c);
            CHECK_EQ(st.expert_single, 3.0 * hp->n_expert_used * hp->n_layer);
            CHECK_EQ(st.pool_runs, 3 * gk_plan_forward_pool_runs(&pm, 1, 1, hp->n_expert_used,
                                                                 hp->n_expert_used, nt, 1));
            gk_context_truncate(c, 0);
            gk_context_stats_reset(c);
            CHECK(gk_decode(c, toks, 12, &err) == 0);
            st = gk_context_stats(c);
            /* the experts that got one token of the 12 convert it on the calling thread */
            CHECK_EQ(st.pool_runs,
                     gk_plan_forward_pool_runs(&pm, 12, 1, n_touched / hp->n_layer,
                                               st.expert_single / hp->n_layer, nt, 1));
            gk_context_free(c);
        }
        gk_model_free(m);
        unlink(path);
    }
}

/* A training step of the tiny Grok-2 shape (V 64, d 32, 1 layer, 2 heads of 16 over
 * 1 KV head, top-1 of 2 experts of width 32, dense MLP 64), 2 sequences of 4 tokens:
 * N = 8 tokens. Every count below is worked out from tforward.c, optim.c and
 * cmd_train.c by hand. */
static void test_train_step(void) {
    gk_plan_shape s = {.variant = GK_VARIANT_GROK2,
                       .n_vocab = 64,
                       .n_embd = 32,
                       .n_layer = 1,
                       .n_head = 2,
                       .n_head_kv = 1,
                       .head_dim = 16,
                       .n_ctx = 64,
                       .n_ff = 64,
                       .n_ff_exp = 32,
                       .n_expert = 2,
                       .n_expert_used = 1,
                       .gated = true,
                       .attn_softcap = 30,
                       .router_softcap = 30,
                       .final_softcap = 50,
                       .gelu_erf = true};
    gk_plan_model pm;
    gk_err err;
    CHECK(gk_plan_model_build(&s, "f32", &pm, &err) == 0);
    const double P = 3072 + 64 + 2 * 3072 + 6144 + 2 * 2048 + 160; /* 19680 */
    CHECK_EQ(gk_plan_params(&pm), P);
    gk_plan_train_step w = gk_plan_train_step_work(&pm, 4, 2);
    CHECK_EQ(w.tokens, 8);
    /* products: 3 x 8 tokens x 28800 forward FLOPs (every logit kept) */
    CHECK_EQ(w.gemm_flops, 3.0 * 8 * 28800);
    /* attention: 2 sequences x 2 heads x (1 + 2 + 3 + 4) pairs = 40 */
    CHECK_EQ(w.attn_fwd_flops, 4.0 * 16 * 40);
    CHECK_EQ(w.attn_bwd_flops, 10.0 * 16 * 40);
    /* of which dots: q.k (forward), q.k and dO.v (backward); row updates of 12 bytes an
     * element: out += p v (forward), dq, dk, dv (backward) */
    CHECK_EQ(w.attn_fwd_dot_flops, 2.0 * 16 * 40);
    CHECK_EQ(w.attn_bwd_dot_flops, 4.0 * 16 * 40);
    CHECK_EQ(w.attn_fwd_bytes, 12.0 * 16 * 40);
    CHECK_EQ(w.attn_bwd_bytes, 36.0 * 16 * 40);
    CHECK_EQ(w.attn_bwd_items, 2);
    /* on the pool: GeGLU over 8 x 32 (experts) + 8 x 64 (dense) = 768 elements: erf
     * in the forward and its recomputation, once in the backward (GELU and its
     * derivative), which also calls exp once; the loss over 8 x 64 logits: tanh, exp
     * twice; attention: tanh and exp per pair, forward and backward */
    CHECK_EQ(w.par.erf, 3.0 * 768);
    CHECK_EQ(w.par.exp, 768 + 2.0 * 512 + 2.0 * 40);
    CHECK_EQ(w.par.tanh, 512 + 2.0 * 40);
    CHECK_EQ(w.par.bytes, 768 * (12 + 12 + 20.0) + 512 * (12 + 8.0));
    CHECK_EQ(w.par.flops, 768 * (4 + 4 + 16.0) + 512 * (4 + 6.0));
    /* on the calling thread: the router's cap and softmax over 8 x 2 logits */
    CHECK_EQ(w.ser.tanh, 16);
    CHECK_EQ(w.ser.exp, 16);
    CHECK_EQ(w.ser.erf, 0);
    const double Nd = 8 * 32;                                          /* 256 */
    double ser_bytes = 4 * 16 * Nd + (28 + 28 + 32 + 28) * Nd + 4 * Nd /* 4 norms, fwd + bwd */
                       + 2 * 8 * (32 + 16) * 12.0    /* RoPE of q and k, forward and backward */
                       + 2 * Nd * 12                 /* two residual adds */
                       + 8 * (32 + 2 * 16) * 4.0     /* dq, dk, dv zeroed */
                       + 16 * (16 + 16.0)            /* routing and its backward */
                       + Nd * 4                      /* MoE output zeroed */
                       + Nd * (8 + 12 + 12 + 8 + 12) /* gather, scatter; dY, gather, scatter */
                       + 768 * 2 * 8.0               /* GeGLU's memcpy, twice */
                       + Nd * (12 + 8)               /* dense + MoE over sqrt 2, its backward */
                       + Nd * (8 + 12)               /* embedding lookup and scatter */
                       + Nd * (16 + 28);             /* final norm */
    CHECK_EQ(w.ser.bytes, ser_bytes);                /* 113152 */
    double ser_flops = 4 * 14 * Nd + 2 * 8 * 48 * 3.0 + 2 * Nd + 16 * (6 + 2 + 8.0) +
                       Nd * (2 + 3 + 1) + Nd * (2 + 1) + Nd * (1 + 2) + 14 * Nd;
    CHECK_EQ(w.ser.flops, ser_flops); /* 24064 */
    /* AdamW: 28 bytes, 15 FLOPs a parameter; zeroing and the norm: 4 + 4 bytes, 2 FLOPs */
    CHECK_EQ(w.opt_par.bytes, 28 * P);
    CHECK_EQ(w.opt_par.flops, 15 * P);
    CHECK_EQ(w.opt_ser.bytes, 8 * P);
    CHECK_EQ(w.opt_ser.flops, 2 * P);
    /* dY transposed before each dW (o q k v; down gate up of the expert, router; dense;
     * output); the weights themselves are read as they are */
    CHECK_EQ(w.transpose_bytes, 8.0 * 8 * (32 + 32 + 16 + 16) + 8.0 * 8 * (32 + 2 * 32 + 2) +
                                    8.0 * 8 * (32 + 128) + 8.0 * 8 * 64);
    /* pool steps: attention 18, router 4, dense 15, 15 per touched expert (2 (1 - 1/2^8)
     * of 2), output and loss 6, AdamW 1 */
    CHECK_EQ(w.pool_runs, 18 + 4 + 15 + 15 * 2 * (1 - 1.0 / 256) + 6 + 1);
    /* steps after serial work: 7 per layer (q, attention, router; router dW, Wo dW,
     * attention, Wq dW), 3 for the dense MLP, the output product and AdamW; 3 per
     * touched expert; a norm (44 bytes, 14 FLOPs) over 8 x 32 before the first, an expert's
     * scatter and gather of 8 x 1 / 2 rows of 32 (20 bytes a value) before the second */
    CHECK_EQ(w.wakes_wide, 7 + 3 + 1 + 1);
    CHECK_EQ(w.wakes_expert, 3 * 2 * (1 - 1.0 / 256));
    CHECK_EQ(w.wide_ser.bytes, 44.0 * 8 * 32);
    CHECK_EQ(w.wide_ser.flops, 14.0 * 8 * 32);
    CHECK_EQ(w.expert_ser.bytes, 20.0 * 4 * 32);
    CHECK_EQ(w.expert_ser.flops, 2.0 * 4 * 32);

    /* its time on a made-up machine with flat rates */
    gk_plan_hw hw = {.tgemm_flops = 1e9,
                     .attn_flops = 2e9,
                     .exp_rate = 1e8,
                     .erf_rate = 2e7,
                     .tanh_rate = 4e7,
                     .mem_bw = 1e12,
                     .call_s = 1e-6,
                     .threads = 2};
    for (int k = 0; k < 4; k++) hw.ew_bw_at[k] = 1.2e9;
    gk_plan_train_times tt;
    double t = gk_plan_train_step_time(&pm, &hw, 4, 8, &tt);
    /* products below 128 wide run at (side / 128) of the 128 rate when that is
     * measured; here it is not: all at 1 GFLOP/s */
    CHECK_EQ(tt.gemm, 3.0 * 8 * 28800 / 1e9);
    /* dots at 2 GFLOP/s, row updates at 2 x 1.2 GB/s; 2 items on 2 threads: no idle
     * thread */
    CHECK_EQ(tt.attn, 2.0 * 16 * 40 / 2e9 + 12.0 * 16 * 40 / 2.4e9 +
                          (4.0 * 16 * 40 / 2e9 + 36.0 * 16 * 40 / 2.4e9));
    /* the pool: libm calls over 2 threads, then the arithmetic (2 FLOPs per 12 bytes
     * of the pass rate) outweighs the bytes at 2 x 1.2 GB/s */
    CHECK_EQ(tt.ew_par, (1872 / 1e8 + 2304 / 2e7 + 592 / 4e7) / 2 + 23552 * 6 / 2.4e9);
    CHECK_EQ(tt.ew_ser, 16 / 1e8 + 16 / 4e7 + 24064 * 6 / 1.2e9);
    CHECK_EQ(tt.opt, 2 * P * 6 / 1.2e9 + 15 * P * 6 / 2.4e9);
    CHECK_EQ(tt.pool, w.pool_runs * 1e-6);
    CHECK_EQ(t, tt.gemm + tt.attn + tt.ew_par + tt.ew_ser + tt.opt + tt.pool);
    CHECK_EQ(gk_plan_train_tokens_per_s_measured(&pm, &hw, 4, 8), 8 / t);
    /* a step after serial work costs 1 us up to 5 us of it, 101 us from 10 us: a norm
     * over 8 x 32 (16 FLOPs an element at 2 per 12 bytes of 1.2 GB/s) takes 20.48 us
     * (the 12 wide steps wait), an expert's scatter and gather 2.13 us (its steps pay
     * 1 us) */
    hw.wake_at[0] = 1e-6;
    for (int k = 1; k < 8; k++) hw.wake_at[k] = 1.01e-4;
    gk_plan_train_step_time(&pm, &hw, 4, 8, &tt);
    CHECK_EQ(tt.pool, w.pool_runs * 1e-6 + 12 * 1.01e-4 + 3 * 2 * (1 - 1.0 / 256) * 1e-6);
    memset(hw.wake_at, 0, sizeof hw.wake_at);
    /* the backward's attention items: 1 sequence x 1 KV head leaves one of 2 threads idle */
    gk_plan_train_step_time(&pm, &hw, 4, 4, &tt);
    CHECK_EQ(tt.attn, 2.0 * 16 * 20 / 2e9 + 12.0 * 16 * 20 / 2.4e9 +
                          2 * (4.0 * 16 * 20 / 2e9 + 36.0 * 16 * 20 / 2.4e9));
    /* calibrate's measured training step: each part times its factor, the dispatches
     * inside the parts (all five factors, else none apply) */
    gk_plan_train_times t0 = tt;
    hw.train_k_gemm = 2, hw.train_k_attn = 3, hw.train_k_pool = 4, hw.train_k_ser = 5;
    gk_plan_train_step_time(&pm, &hw, 4, 4, &tt);
    CHECK(tt.gemm == t0.gemm && tt.pool == t0.pool); /* no train_k_opt: unscaled */
    hw.train_k_opt = 6;
    double tk = gk_plan_train_step_time(&pm, &hw, 4, 4, &tt);
    CHECK_EQ(tt.gemm, 2 * t0.gemm);
    CHECK_EQ(tt.attn, 3 * t0.attn);
    CHECK_EQ(tt.ew_par, 4 * t0.ew_par);
    CHECK_EQ(tt.ew_ser, 5 * t0.ew_ser);
    CHECK_EQ(tt.opt, 6 * t0.opt);
    CHECK(tt.pool == 0 && tk == tt.gemm + tt.attn + tt.ew_par + tt.ew_ser + tt.opt);
    /* uncalibrated devices have no measured rates */
    gk_plan_hw h100;
    CHECK(gk_plan_hw_find("H100", &h100, &err) == 0);
    CHECK_EQ(gk_plan_train_step_time(&pm, &h100, 4, 8, &tt), 0);
    CHECK_EQ(gk_plan_train_tokens_per_s_measured(&pm, &h100, 4, 8), 0);
}

/* Generation on a calibrated machine pays forward.c's exp, erf and tanh: per token,
 * GELU (erf) over K F + Fd = 96 elements, the attention's tanh and exp over
 * n_head x (pos + 1) = 20 (head, key) pairs at position 9 and the final softcap's
 * tanh over 64 logits, on the pool's 2 threads, and on one thread the router's tanh
 * (Grok-2's cap) and exp over its 2 experts. Doubling every such rate takes half of
 * that time away. */
static void test_infer_libm(void) {
    gk_plan_shape s = {.variant = GK_VARIANT_GROK2,
                       .n_vocab = 64,
                       .n_embd = 32,
                       .n_layer = 1,
                       .n_head = 2,
                       .n_head_kv = 1,
                       .head_dim = 16,
                       .n_ctx = 64,
                       .n_ff = 64,
                       .n_ff_exp = 32,
                       .n_expert = 2,
                       .n_expert_used = 1,
                       .gated = true,
                       .attn_softcap = 30,
                       .router_softcap = 30,
                       .final_softcap = 50,
                       .gelu_erf = true};
    gk_plan_model pm;
    gk_err err;
    CHECK(gk_plan_model_build(&s, "f32", &pm, &err) == 0);
    gk_plan_hw hw = {.name = "t",
                     .bf16_flops = 1e11,
                     .mem_bytes = 1e9,
                     .mem_bw = 1e10,
                     .domain = 1,
                     .attn_flops = 1e9,
                     .call_s = 1e-6,
                     .threads = 2,
                     .exp_rate = 1e8,
                     .erf_rate = 2e7,
                     .tanh_rate = 4e7};
    hw.mm_bw1[0] = 5e9; /* ggml type 0: f32 */
    gk_plan_infer_opts o = {.n_ctx = 64, .gen_pos = 9, .n_prompt = 4, .n_batch = 4};
    gk_plan_infer r1, r2;
    CHECK(gk_plan_infer_eval(&pm, &hw, 1, 1, &o, &r1, &err) == 0);
    hw.exp_rate *= 2, hw.erf_rate *= 2, hw.tanh_rate *= 2;
    CHECK(gk_plan_infer_eval(&pm, &hw, 1, 1, &o, &r2, &err) == 0);
    /* on the pool (2 threads): GeGLU's erf, attention's tanh and exp, the final
     * softcap's 64 tanh; on the calling thread: the router's 2 tanh and 2 exp */
    double libm = (96 / 2e7 + 20 / 4e7 + 20 / 1e8 + 64 / 4e7) / 2 + 2 / 4e7 + 2 / 1e8;
    CHECK_EQ(1 / r1.gen_expect - 1 / r2.gen_expect, libm / 2);
    /* gk_geglu at its calibrated rate, and each call's fixed part: a 4096-element call's
     * time beyond its elements and a dispatch (1 us here); a generated token makes 2
     * calls (its one expert, the dense MLP) of 96 elements in all, none where f32 has
     * GEMM kernels (GeGLU in the gate and up products' job) */
    hw.geglu_erf = 1e9;
    CHECK(gk_plan_infer_eval(&pm, &hw, 1, 1, &o, &r1, &err) == 0);
    CHECK_EQ(r1.gen_parts.geglu, 96 / 1e9);
    hw.geglu_erf_4k = 4096 / 1e9 + hw.call_s + 1e-6;
    CHECK(gk_plan_infer_eval(&pm, &hw, 1, 1, &o, &r1, &err) == 0);
    CHECK_EQ(r1.gen_parts.geglu, 96 / 1e9 + (gk_gemm_kernels_of(GK_TYPE_F32) ? 0 : 2e-6));
}

/* The attention job as calibrate times its items (forward.c attn_part), by hand for 1
 * layer of 2 query heads of 16 over 1 KV group on 2 threads: a generated token at
 * position 63 splits its group into 2 runs of 1 head (2 items, one per thread) over 64
 * keys; a 4-token prompt has 4 items of both heads over 1, 2, 3, 4 keys, tokens 2 and 3
 * on the busiest thread. */
static void test_attn_job(void) {
    gk_plan_shape s = {.variant = GK_VARIANT_GROK2,
                       .n_vocab = 64,
                       .n_embd = 32,
                       .n_layer = 1,
                       .n_head = 2,
                       .n_head_kv = 1,
                       .head_dim = 16,
                       .n_ctx = 64,
                       .n_ff = 64,
                       .n_ff_exp = 32,
                       .n_expert = 2,
                       .n_expert_used = 1,
                       .gated = true,
                       .attn_softcap = 30};
    gk_plan_model pm;
    gk_err err;
    CHECK(gk_plan_model_build(&s, "f32", &pm, &err) == 0);
    gk_plan_hw hw = {.name = "t",
                     .bf16_flops = 1e11,
                     .mem_bytes = 1e9,
                     .mem_bw = 1e10,
                     .domain = 1,
                     .attn_flops = 1e9,
                     .call_s = 1e-6,
                     .threads = 2};
    hw.mm_bw1[0] = 5e9;
    for (int h = 0; h < 3; h++)
        for (int q = 0; q < 3; q++)
            for (int k = 0; k < 3; k++) hw.attn_item[h][q][k] = (h + 1) * (q + 1) * (k + 1) * 1e-6;
    gk_plan_infer_opts o = {.n_ctx = 64, .gen_pos = 63, .n_prompt = 4, .n_batch = 4};
    gk_plan_infer r;
    CHECK(gk_plan_infer_eval(&pm, &hw, 1, 1, &o, &r, &err) == 0);
    /* heads of 16 take the 32-head figures; one head over 64 keys: 1 us */
    CHECK_EQ(r.gen_parts.attention, 1e-6);
    /* runs of 2 heads: 2 us at 64 keys, 4 us at 512; below 64 along that line */
    CHECK_EQ(r.prompt_parts.attention, 2 * 2e-6 + (3 - 64 + 4 - 64) * 2e-6 / 448);
    /* the item over 3 times as many keys as timed: K and V (2 x 16 x 4 bytes a key)
     * at the memory's bandwidth shared by the 2 threads; with a faster memory the last
     * piece's slope */
    o.gen_pos = 3 * 4096 - 1;
    CHECK(gk_plan_infer_eval(&pm, &hw, 1, 1, &o, &r, &err) == 0);
    CHECK_EQ(r.gen_parts.attention, 3e-6 + 8192 * 128 * 2 / 1e10);
    hw.mem_bw = 1e14;
    CHECK(gk_plan_infer_eval(&pm, &hw, 1, 1, &o, &r, &err) == 0);
    CHECK_EQ(r.gen_parts.attention, 3e-6 + 8192 * (3e-6 - 2e-6) / 3584);
    hw.mem_bw = 1e10;
    /* cold items (10 times the warm): none while a forward's bytes stay within a 4 MiB
     * arena's; past 96 MiB (an f32 output of 2^20 x 32, 128 MiB, read by each forward) a
     * generated token's, and each thread's first of its group in a prompt (tokens 0 and
     * 2), the others warm; at 32 MiB (2^18 x 32, and the rest) log(32 / 4) / log(24) of
     * the cold item's extra time */
    for (int h = 0; h < 3; h++)
        for (int q = 0; q < 3; q++)
            for (int k = 0; k < 3; k++) hw.attn_cold[h][q][k] = 10 * hw.attn_item[h][q][k];
    o.gen_pos = 63;
    CHECK(gk_plan_infer_eval(&pm, &hw, 1, 1, &o, &r, &err) == 0);
    CHECK_EQ(r.gen_parts.attention, 1e-6);
    gk_plan_model big;
    s.n_vocab = 1 << 20;
    CHECK(gk_plan_model_build(&s, "f32", &big, &err) == 0);
    CHECK(gk_plan_infer_eval(&big, &hw, 1, 1, &o, &r, &err) == 0);
    CHECK_EQ(r.gen_parts.attention, 10e-6);
    CHECK_EQ(r.prompt_parts.attention,
             20e-6 + (3 - 64) * 20e-6 / 448 + 2e-6 + (4 - 64) * 2e-6 / 448);
    s.n_vocab = 1 << 18;
    CHECK(gk_plan_model_build(&s, "f32", &big, &err) == 0);
    CHECK(gk_plan_infer_eval(&big, &hw, 1, 1, &o, &r, &err) == 0);
    double fb = gk_plan_forward(&big, 1, 63, 1, -1.0, 4).weight_bytes +
                gk_plan_forward(&big, 1, 63, 1, -1.0, 4).kv_bytes_read;
    CHECK(fb > 32 * 1048576.0 && fb < 33 * 1048576.0);
    CHECK_EQ(r.gen_parts.attention, 1e-6 + log(fb / (4 * 1048576.0)) / log(24.0) * 9e-6);
    /* with calibrate's read bandwidth of buffers by size, the share from it: 1e11 up to
     * 64 MiB (the fastest: all warm; 9e10 at 4 MiB), 2e10 at 128 MiB, 1e10 from 256 MiB
     * (as at 512 MiB: all cold); the 32 MiB forward all warm, a forward of a little over
     * 128 MiB between, by the time per byte log-linear in the size */
    for (int k = 0; k < 8; k++)
        hw.read_bw_at[k] = k == 0 ? 9e10 : k < 5 ? 1e11 : k == 5 ? 2e10 : 1e10;
    CHECK(gk_plan_infer_eval(&big, &hw, 1, 1, &o, &r, &err) == 0);
    CHECK_EQ(r.gen_parts.attention, 1e-6);
    s.n_vocab = 1 << 20;
    CHECK(gk_plan_model_build(&s, "f32", &big, &err) == 0);
    CHECK(gk_plan_infer_eval(&big, &hw, 1, 1, &o, &r, &err) == 0);
    fb = gk_plan_forward(&big, 1, 63, 1, -1.0, 4).weight_bytes +
         gk_plan_forward(&big, 1, 63, 1, -1.0, 4).kv_bytes_read;
    CHECK(fb > 128 * 1048576.0 && fb < 130 * 1048576.0);
    const double bw = 2e10 + log(fb / (128 * 1048576.0)) / log(2.0) * (1e10 - 2e10),
                 share = (1 / bw - 1 / 1e11) / (1 / 1e10 - 1 / 1e11);
    CHECK(share > 0.4 && share < 0.5);
    CHECK_EQ(r.gen_parts.attention, 1e-6 + share * 9e-6);
    memset(hw.read_bw_at, 0, sizeof hw.read_bw_at);
    s.n_vocab = 64;
    memset(hw.attn_cold, 0, sizeof hw.attn_cold);
    /* an f16 cache (not timed) and a preset without the items: the rates of the parts */
    o.gen_pos = 63;
    o.kv_elt_bytes = 2;
    CHECK(gk_plan_infer_eval(&pm, &hw, 1, 1, &o, &r, &err) == 0);
    CHECK(r.gen_parts.attention > 0 && r.gen_parts.attention != 1e-6);
    double f16 = r.gen_parts.attention;
    o.kv_elt_bytes = 4;
    hw.attn_item[2][1][0] = 0;
    CHECK(gk_plan_infer_eval(&pm, &hw, 1, 1, &o, &r, &err) == 0);
    CHECK(r.gen_parts.attention > 0 && r.gen_parts.attention != 1e-6 &&
          r.gen_parts.attention != f16);
}

/* The summation tree's chunk job at batch 1 at the rate calibrate timed for it: 1 layer
 * of 4 heads of 16 over 2 KV heads (2 chunks), f32, 2 threads (a chunk each): a
 * generated token's attn_output (32 x 64), its one expert's down (32 x 32) and the dense
 * down (32 x 64), 20480 bytes, at the tree's rate; with 3 threads chunk after chunk
 * (the tree's rate unused). */
static void test_tree_rate(void) {
    gk_plan_shape s = {.variant = GK_VARIANT_GROK2,
                       .n_vocab = 64,
                       .n_embd = 32,
                       .n_layer = 1,
                       .n_head = 4,
                       .n_head_kv = 2,
                       .head_dim = 16,
                       .n_ctx = 64,
                       .n_ff = 64,
                       .n_ff_exp = 32,
                       .n_expert = 2,
                       .n_expert_used = 1,
                       .gated = true};
    gk_plan_model pm;
    gk_err err;
    CHECK(gk_plan_model_build(&s, "f32", &pm, &err) == 0);
    CHECK(pm.sum_g == 2);
    for (int nt = 2; nt <= 3; nt++) {
        gk_plan_hw a = {.name = "t",
                        .bf16_flops = 1e11,
                        .mem_bytes = 1e9,
                        .mem_bw = 1e10,
                        .domain = 1,
                        .attn_flops = 1e9,
                        .call_s = 1e-6,
                        .threads = nt};
        a.mm_bw1[0] = 5e9;
        gk_plan_hw b = a;
        for (int k = 0; k < 4; k++)
            for (int c = 0; c < 2; c++) a.mm_tree1_at[0][k][c] = 1e9, b.mm_tree1_at[0][k][c] = 2e9;
        gk_plan_infer_opts o = {.n_ctx = 64, .gen_pos = 9, .n_prompt = 4, .n_batch = 4};
        gk_plan_infer ra, rb;
        CHECK(gk_plan_infer_eval(&pm, &a, 1, 1, &o, &ra, &err) == 0);
        CHECK(gk_plan_infer_eval(&pm, &b, 1, 1, &o, &rb, &err) == 0);
        CHECK_EQ(ra.gen_parts.matmul - rb.gen_parts.matmul, nt == 2 ? 20480 / 2e9 : 0);
        /* a prompt's chunks are calls at the T grid's rates, but for the experts that get
         * one of the 4 tokens (2 x 4 x 1/2 x 1/8 = 0.5 expected a layer): their down
         * products (32 x 32) run as a generated token's, at the tree's rate with 2 threads */
        CHECK_EQ(ra.prompt_parts.matmul - rb.prompt_parts.matmul, nt == 2 ? 0.5 * 4096 / 2e9 : 0);
        /* this model's forward reads far less than 4 MiB: every batch-1 read at the warm
         * rates (calls and tree); twice those rates, half the time (no dispatch cost,
         * so none that a fused call saves) */
        gk_plan_hw c = a, d = a;
        c.call_s = d.call_s = 0;
        for (int k = 0; k < 2; k++)
            for (int w = 0; w < 2; w++) {
                c.mm_bw1_warm[0][k][w] = c.mm_tree1_warm[0][k][w] = 1e9;
                d.mm_bw1_warm[0][k][w] = d.mm_tree1_warm[0][k][w] = 2e9;
            }
        gk_plan_infer rc, rd;
        CHECK(gk_plan_infer_eval(&pm, &c, 1, 1, &o, &rc, &err) == 0);
        CHECK(gk_plan_infer_eval(&pm, &d, 1, 1, &o, &rd, &err) == 0);
        CHECK_EQ(rc.gen_parts.matmul, 2 * rd.gen_parts.matmul);
        CHECK(rc.gen_parts.matmul != ra.gen_parts.matmul);
        /* under 256 KiB (all of this model's matrices) the time is linear in the bytes
         * through the two sizes: with 256 KiB at 1e9 B/s and 2 MiB at 1.8e9, a call has a
         * fixed part of about 0.12 ms, so the small calls cost far more than at the flat
         * 1e9 (which a clamp at 256 KiB would have charged them) */
        gk_plan_hw g = c;
        for (int w = 0; w < 2; w++) g.mm_bw1_warm[0][1][w] = g.mm_tree1_warm[0][1][w] = 1.8e9;
        gk_plan_infer rg;
        CHECK(gk_plan_infer_eval(&pm, &g, 1, 1, &o, &rg, &err) == 0);
        CHECK(rg.gen_parts.matmul > 5 * rc.gen_parts.matmul);
    }
}

/* Peak memory of a tensor-parallel rank, by hand for the tiny Grok-1 shape over 2
 * ranks (f32, batch 4, context 10, 1 thread), and against the engine: rank 0's cut
 * of a real file must be the bytes gk_tp_cut copied. */
static void test_rank_memory(void) {
    gk_plan_shape s = {.variant = GK_VARIANT_GROK1,
                       .n_vocab = 32,
                       .n_embd = 16,
                       .n_layer = 2,
                       .n_head = 4,
                       .n_head_kv = 2,
                       .head_dim = 4,
                       .n_ctx = 64,
                       .n_ff_exp = 8,
                       .n_expert = 4,
                       .n_expert_used = 2,
                       .gated = true,
                       .tied_output = true};
    gk_plan_model pm;
    gk_err err;
    CHECK(gk_plan_model_build(&s, "f32", &pm, &err) == 0);
    gk_plan_rank_mem r;
    CHECK(gk_plan_rank_memory(&pm, 2, 10, 4, 1, 4, 1000, &r, &err) == 0);
    /* per layer, each cut stack + 64: q 8x16 (512), k and v 4x16 (256), o 16 x 8 columns
     * (512), gate and up 4 experts x 4x16 (1024), down 4 x 16 x 4 columns (1024); the
     * vocabulary 16 x 16 (1024), tied */
    CHECK_EQ(r.weights, 2 * (576 + 320 + 320 + 576 + 3 * 1088) + 1088); /* 11200 */
    /* norms (4 per layer + final: read from the map into an f32 copy) and the f32
     * router 4 x 16 per layer, replicated */
    CHECK_EQ(r.replicated, 2 * 4.0 * (16 * 9) + 2 * 256);
    /* K and V of 1 head of 4 per rank, 2 layers, 10 positions, f32 */
    CHECK_EQ(r.kv, 2.0 * 2 * 10 * 4 * 4);
    /* the arena in floats, each piece rounded up to 16: x xn tmp 3 x 64, q 32, k v 16 +
     * 16, att 32, moe xe ye 3 x 64, h1 h3 16 + 16, rl 16, cos sin 16 + 16, scores 16,
     * vrow 16, logits 32, exp_gate exp_tok 16 + 16, exp_n 16, four of B 4 x 16, seq_len
     * 16 = 752 floats; the matmul's buffer for 4 rows of 16 inputs (a q8_K block of 292
     * bytes each) and 64 bytes of slack. TP buffers of rank 0: logits of its 16 rows and
     * all 32, + 64; the all-reduce scratch; 2 hashes; commands (10 + 4) x 4 + 2 x 4 + 16 */
    double arena = 752 * 4 + 4 * 292 + 64;
    double tpb = (16 + 32) * 4 + 64 + 2 * 8 + 14 * 4 + 8 + 16;
    CHECK(r.context > arena + tpb && r.context < arena + tpb + 4096); /* + the scratch */
    /* the summation tree: 2 chunks (2 KV heads); over 2 ranks one each, so only the
     * chunk matmul's converted activations: 4 rows of 8 inputs (a q8_K block of 292
     * bytes each, rounded up to 64 bytes) and 64 bytes of slack */
    CHECK_EQ(pm.sum_g, 2);
    gk_ctx_dims x = {.B = 4, .d = 16, .nq = 8, .nkv = 4, .F = 4, .nt = 1};
    CHECK_EQ(gk_context_chunk_bytes(&x, 1, NULL, NULL, NULL), 1216 + 64);
    /* one process: 2 chunks; the second's sums of two products (2 x 4 x 16 floats), the
     * packed columns of a chunk (4 tokens x 16 / 2, rounded up to 16 floats) per thread */
    x.nq = 16, x.nkv = 8, x.F = 8;
    CHECK_EQ(gk_context_chunk_bytes(&x, 2, NULL, NULL, NULL), (128 + 32) * 4 + 1216 + 64);
    x.nt = 2;
    CHECK_EQ(gk_context_chunk_bytes(&x, 2, NULL, NULL, NULL), (128 + 2 * 32) * 4 + 2 * 1216 + 64);
    CHECK_EQ(r.base, 1000);
    CHECK_EQ(r.total, r.weights + r.replicated + r.kv + r.context + r.base);
    /* one process: the whole model mapped (the tied embedding is read whole) */
    CHECK(gk_plan_rank_memory(&pm, 1, 10, 4, 1, 4, 0, &r, &err) == 0);
    CHECK_EQ(r.weights, 4.0 * (5392 - 144));
    x = (gk_ctx_dims){.B = 4,
                      .d = 16,
                      .nq = 16,
                      .nkv = 8,
                      .F = 8,
                      .E = 4,
                      .half = 2,
                      .nt = 1,
                      .n_ctx = 10,
                      .head_dim = 4,
                      .n_head = 4,
                      .n_logit_rows = 1,
                      .V = 32,
                      .n_seq = 1};
    CHECK_EQ(r.context, gk_context_arena_bytes(&x, NULL) + (128 + 32) * 4 + 1216 + 64);
    CHECK_EQ(r.replicated, 2 * 4.0 * 144);
    /* bad splits and inputs */
    CHECK(gk_plan_rank_memory(&pm, 4, 10, 4, 1, 4, 0, &r, &err) < 0 && strstr(err.msg, "KV heads"));
    CHECK(gk_plan_rank_memory(&pm, 2, 0, 4, 1, 4, 0, &r, &err) < 0);
    /* q8_0 columns: 32 expert columns over 2 ranks are 16, not a block of 32 */
    s.n_embd = 32, s.n_ff_exp = 32;
    CHECK(gk_plan_model_build(&s, "q8_0", &pm, &err) == 0);
    CHECK(gk_plan_rank_memory(&pm, 2, 10, 4, 1, 4, 0, &r, &err) < 0 &&
          strstr(err.msg, "block boundaries"));
    /* a real file: rank 0 of 2 holds what the plan says */
    static const char *kinds[] = {"grok1", "grok2"};
    for (int k = 0; k < 2; k++) {
        char path[1024];
        gk_model *m = tiny_model(kinds[k], "f32", path, sizeof path);
        if (!m) {
            printf("skip: rank-memory check on a file needs /usr/bin/python3 with numpy\n");
            return;
        }
        gk_plan_model pf;
        CHECK(gk_plan_model_from_model(m, &pf, &err) == 0);
        gk_model_free(m);
        gk_model *m0 = gk_model_load_rank(path, NULL, 0, 2, &err);
        CHECK_MSG(m0 != NULL, "%s", err.msg);
        if (!m0) continue;
        double want = (double)m0->tp.store_bytes;
        CHECK(gk_plan_rank_memory(&pf, 2, 16, 8, 1, 4, 0, &r, &err) == 0);
        CHECK_EQ(r.weights, want);
        gk_model_free(m0);
        unlink(path);
    }
}

/* The prompt's matmuls at the calibrated rate for the tokens of each call: the whole
 * chunk for the layer's matrices, T k / touched for each expert (forward.c groups a
 * chunk's tokens by expert). Tiny Grok-1 shape, f32, a 64-token prompt in one chunk. */
static void test_prompt_rates(void) {
    gk_plan_shape s = {.variant = GK_VARIANT_GROK1,
                       .n_vocab = 32,
                       .n_embd = 16,
                       .n_layer = 2,
                       .n_head = 4,
                       .n_head_kv = 2,
                       .head_dim = 4,
                       .n_ctx = 64,
                       .n_ff_exp = 8,
                       .n_expert = 4,
                       .n_expert_used = 2,
                       .gated = true,
                       .tied_output = true};
    gk_plan_model pm;
    gk_err err;
    CHECK(gk_plan_model_build(&s, "f32", &pm, &err) == 0);
    const double R = 1e10;
    gk_plan_hw a = {.name = "t",
                    .bf16_flops = R,
                    .mem_bytes = 1e9,
                    .mem_bw = 1e10,
                    .domain = 1,
                    .attn_flops = 1e9,
                    .threads = 1};
    a.mm_bw1[0] = 5e9;
    a.mm_flops512[0] = R;
    gk_plan_hw b = a, c = a;
    for (int k = 0; k < 4; k++)
        for (int w = 0; w < 2; w++) b.mm_flops_at[0][k][w] = c.mm_flops_at[0][k][w] = R;
    c.mm_flops_at[0][1][0] = c.mm_flops_at[0][1][1] = R / 2; /* T = 32 */
    gk_plan_infer_opts o = {.n_ctx = 64, .n_prompt = 64, .n_batch = 64};
    gk_plan_infer ra, rb, rc;
    CHECK(gk_plan_infer_eval(&pm, &a, 1, 1, &o, &ra, &err) == 0);
    CHECK(gk_plan_infer_eval(&pm, &b, 1, 1, &o, &rb, &err) == 0);
    CHECK(gk_plan_infer_eval(&pm, &c, 1, 1, &o, &rc, &err) == 0);
    /* a flat grid is the batch-512 rate */
    CHECK_EQ(64 / rb.prompt_expect, 64 / ra.prompt_expect);
    /* at T = 32 half the rate: the experts (64 x 2 / 4 = 32 tokens each: 2 layers x 64
     * tokens x top-2 x 2 x 3 x 8 x 16 = 196608 FLOPs) take twice as long; the layer's
     * matrices (64 tokens, log-halfway from 32 to 128: 0.75 R; 2 x 64 x 2 x (256 + 128 +
     * 128 + 256 + 64) = 212992 FLOPs) a third longer */
    CHECK_EQ(64 / rc.prompt_expect - 64 / ra.prompt_expect,
             196608 / R + 212992 * (1 / (0.75 * R) - 1 / R));
    /* generation (batch 1) does not use the grid */
    CHECK_EQ(rc.gen_expect, ra.gen_expect);
    /* a call's time is linear in its rows through the 1024- and 4096-row grids: at equal
     * rates that is the one grid's rate (no fixed part); with the 4096-row matrices
     * twice as fast, a third of a 1024-row call's time is per row and two thirds fixed,
     * so this model's calls (all under 1024 rows) take longer: 16 rows of the 512 ..
     * 4096-wide grid cost (2048 + 16) / 3 / 16 = 43 times their flat-rate time */
    gk_plan_hw d = b, e = b;
    for (int k = 0; k < 4; k++)
        for (int w = 0; w < 2; w++) d.mm_flops_at4k[0][k][w] = R, e.mm_flops_at4k[0][k][w] = 2 * R;
    gk_plan_infer rd, re;
    CHECK(gk_plan_infer_eval(&pm, &d, 1, 1, &o, &rd, &err) == 0);
    CHECK(gk_plan_infer_eval(&pm, &e, 1, 1, &o, &re, &err) == 0);
    CHECK(fabs(rd.prompt_parts.matmul / rb.prompt_parts.matmul - 1) < 1e-12);
    CHECK(re.prompt_parts.matmul > 10 * rb.prompt_parts.matmul);
    /* rows under 512 wide at the narrow grid's rates (128-row matrices, rows of 64 and
     * 128): this model's rows are 8 and 16 wide, so at half the flat rate on both widths
     * its batched calls (196608 + 212992 FLOPs, above) take twice as long, the logits'
     * batch-1 call as long; with the 64-wide rate half and the 128-wide one full, the
     * same (under 64 wide the 64-wide rate) */
    gk_plan_hw f = b, g = b;
    for (int k = 0; k < 4; k++)
        for (int w = 0; w < 2; w++) f.mm_flops_narrow[0][k][w] = R / 2;
    gk_plan_infer rf, rg;
    CHECK(gk_plan_infer_eval(&pm, &f, 1, 1, &o, &rf, &err) == 0);
    CHECK(fabs((rf.prompt_parts.matmul - rb.prompt_parts.matmul) / (409600 / R) - 1) < 1e-9);
    for (int k = 0; k < 4; k++) g.mm_flops_narrow[0][k][0] = R / 2, g.mm_flops_narrow[0][k][1] = R;
    CHECK(gk_plan_infer_eval(&pm, &g, 1, 1, &o, &rg, &err) == 0);
    CHECK(fabs(rg.prompt_parts.matmul / rf.prompt_parts.matmul - 1) < 1e-12);
    /* generation (batch 1) does not use it */
    CHECK_EQ(rf.gen_expect, rb.gen_expect);
}

int main(void) {
    test_tiny_grok1();
    test_tiny_grok2();
    test_train_step();
    test_infer_libm();
    test_attn_job();
    test_tree_rate();
    test_grok_presets();
    test_published();
    test_fleet_and_bad_inputs();
    test_preset_file();
    test_real_model();
    test_engine_counters();
    test_rank_memory();
    test_prompt_rates();
    return gk_test_done();
}
