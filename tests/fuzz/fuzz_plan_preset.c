/*
 * fuzz_plan_preset.c - libFuzzer target for the device preset files of `grok plan`
 * (gk_plan_hw_load) and the --fleet parser (gk_plan_fleet_parse).
 *
 * The input is written to a temporary file and loaded; an accepted preset must
 * have the fields the loader promises (a name, positive peak, memory and
 * bandwidth, finite non-negative numbers) and survive a save + load round trip.
 * The same bytes, cut at the first NUL, are parsed as a fleet spec.
 */
#include "grok.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64], spec[256];
    snprintf(path, sizeof path, "/tmp/gk_fuzz_preset.%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    gk_err err;
    gk_plan_hw hw;
    if (gk_plan_hw_load(path, &hw, &err) == 0) {
        if (!hw.name[0] || !(hw.bf16_flops > 0) || !(hw.mem_bytes > 0) || !(hw.mem_bw > 0) ||
            !isfinite(hw.link_bw) || hw.domain < 1)
            __builtin_trap();
        if (gk_plan_hw_save(&hw, path, &err) < 0) __builtin_trap();
        gk_plan_hw back;
        if (gk_plan_hw_load(path, &back, &err) < 0) __builtin_trap();
    } else if (!err.msg[0])
        __builtin_trap(); /* a failure must say why */
    unlink(path);
    size_t n = size < sizeof spec - 1 ? size : sizeof spec - 1;
    memcpy(spec, data, n);
    spec[n] = 0;
    double count;
    if (!strchr(spec, '/') && gk_plan_fleet_parse(spec, &count, &hw, &err) == 0 &&
        !(count >= 1 && count <= 1e12))
        __builtin_trap();
    return 0;
}
