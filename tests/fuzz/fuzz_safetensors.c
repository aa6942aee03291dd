/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors reader.
 *
 * Parses the input with gk_st_open_memory and, when it is accepted, checks the
 * invariants the converter relies on (every tensor's byte range inside the
 * buffer, its size equal to the element count times the dtype size, lookups by
 * name finding it) and reads every tensor's bytes, so that an offset the header
 * check let through out of bounds crashes under ASan.
 */
#include "format/safetensors.h"

#include <string.h>

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gk_err err;
    gk_st_file *f = gk_st_open_memory(data, size, &err);
    if (!f) {
        if (!err.msg[0]) __builtin_trap(); /* a failure must say why */
        return 0;
    }
    for (int64_t i = 0; i < gk_st_n_tensors(f); i++) {
        const gk_st_tensor *t = gk_st_tensor_at(f, i);
        if (t->offset > size || t->nbytes > size - t->offset) __builtin_trap();
        uint64_t esize = t->type == GK_TYPE_F32 ? 4 : 2;
        if ((uint64_t)gk_st_numel(t) * esize != t->nbytes) __builtin_trap();
        if (gk_st_find(f, t->name) != t) __builtin_trap();
        uint8_t buf[64];
        size_t n = t->nbytes < sizeof buf ? (size_t)t->nbytes : sizeof buf;
        if (n && gk_st_read(f, t, t->nbytes - n, buf, n, &err) < 0) __builtin_trap();
        const uint8_t *p = gk_st_data(f, t, &err);
        if (t->nbytes && !p) __builtin_trap();
        for (uint64_t k = 0; k < t->nbytes; k++) sink += p[k];
    }
    sink += gk_st_metadata(f, "format") != NULL;
    gk_st_close(f);
    return 0;
}
