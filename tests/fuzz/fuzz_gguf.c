/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *
 * Parses the input with gk_gguf_open_memory and, when it is accepted, touches
 * everything the reader exposes: every kv through every typed getter, every
 * array element (nested arrays included), every byte of every string, and the
 * first and last byte of every tensor's data, and the first row of every tensor
 * of a computable type through its block decoder and dot product (the k-quant
 * and IQ4 decoders among them); then copies the kvs into a writer,
 * which re-validates them. Under ASan any read the validation let through that
 * is out of bounds crashes; broken invariants trap.
 */
#include "format/gguf.h"
#include "tensor/dtype.h"

#include <stdint.h>
#include <string.h>

static volatile uint64_t sink; /* keeps the reads from being optimized away */

static void touch(const void *p, uint64_t n) {
    const uint8_t *b = p;
    uint64_t s = 0;
    for (uint64_t i = 0; i < n; i++) s += b[i];
    sink += s;
}

static void walk_value(const gk_gguf_value *v, int depth);

static void walk_array(const gk_gguf_array *a, int depth) {
    static const uint8_t size[GK_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (depth > GK_GGUF_MAX_DEPTH || (uint32_t)a->type >= GK_GGUF_TYPE_COUNT) __builtin_trap();
    if (a->type == GK_GGUF_STRING) {
        for (uint64_t i = 0; i < a->n; i++) touch(a->strs[i].ptr, a->strs[i].len);
    } else if (a->type == GK_GGUF_ARRAY) {
        for (uint64_t i = 0; i < a->n; i++) {
            if (a->elems[i].type != GK_GGUF_ARRAY) __builtin_trap();
            walk_value(&a->elems[i], depth + 1);
        }
    } else {
        touch(a->data, a->n * size[a->type]);
        for (uint64_t i = 0; i < a->n; i++) {
            float f = gk_gguf_arr_f32(a, i); /* by its bits: a float cast could overflow */
            uint32_t bits;
            memcpy(&bits, &f, 4);
            sink += bits + (uint32_t)gk_gguf_arr_i32(a, i) + gk_gguf_arr_u32(a, i);
        }
    }
}

static void walk_value(const gk_gguf_value *v, int depth) {
    if (v->type == GK_GGUF_STRING)
        touch(v->v.str.ptr, v->v.str.len);
    else if (v->type == GK_GGUF_ARRAY)
        walk_array(&v->v.arr, depth);
    else
        sink += v->v.u64;
}

static void walk_getters(const gk_gguf *g, const char *key) {
    gk_err err;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f32;
    bool b;
    gk_str s;
    gk_gguf_array a;
    sink += (uint64_t)gk_gguf_get_u32(g, key, &u32, &err) +
            (uint64_t)gk_gguf_get_i32(g, key, &i32, &err) +
            (uint64_t)gk_gguf_get_u64(g, key, &u64, &err) +
            (uint64_t)gk_gguf_get_f32(g, key, &f32, &err) +
            (uint64_t)gk_gguf_get_bool(g, key, &b, &err) +
            (uint64_t)gk_gguf_get_str(g, key, &s, &err) +
            (uint64_t)gk_gguf_get_arr(g, key, -1, &a, &err) +
            (uint64_t)gk_gguf_get_arr(g, key, GK_GGUF_FLOAT32, &a, &err);
}

/* The first row of a tensor of a type the engine computes with, through its
 * block decoder and its (SIMD) dot product: fuzzer-made blocks (NaN/inf scales,
 * any quant bits) must decode without a fault. Blocks hold 2-byte fields, so
 * only rows at 4-byte aligned addresses are read (the engine's loader asks the
 * same of its files). */
static void decode_row(const gk_gguf_tensor *t) {
    enum { MAXN = 4096 };
    static float row[MAXN], act[MAXN];
    static uint8_t q[MAXN * 2];
    const gk_type_traits *tr = gk_type_traits_of(t->type);
    int64_t n = t->ne[0];
    if (!tr || !gk_type_is_supported(t->type) || n > MAXN || ((uintptr_t)t->data & 3)) return;
    size_t rb = gk_row_size(t->type, n);
    if (!rb || rb > t->nbytes) return;
    gk_dtype_init();
    tr->to_float(t->data, row, n);
    for (int64_t k = 0; k < n; k++) act[k] = (float)(k % 7) - 3.0f;
    const void *y = act;
    if (tr->vec_dot_type != GK_TYPE_F32) {
        gk_type_traits_of(tr->vec_dot_type)->from_float(act, q, n);
        y = q;
    }
    float s = tr->vec_dot(n, t->data, y);
    uint32_t bits[2];
    memcpy(&bits[0], &s, 4);
    memcpy(&bits[1], &row[n - 1], 4);
    sink += bits[0] + bits[1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gk_err err;
    err.msg[0] = 0;
    gk_gguf *g = gk_gguf_open_memory(data, size, &err);
    if (!g) {
        if (strncmp(err.msg, "gguf: ", 6) != 0) __builtin_trap(); /* every failure says why */
        return 0;
    }
    uint64_t align = gk_gguf_alignment(g), data_off = gk_gguf_data_offset(g);
    if (gk_gguf_version(g) < 2 || gk_gguf_version(g) > 3 || !align || (align & (align - 1)) ||
        gk_gguf_file_size(g) != size || data_off % align)
        __builtin_trap();
    for (int64_t i = 0; i < gk_gguf_n_kv(g); i++) {
        const gk_gguf_kv *kv = gk_gguf_kv_at(g, i);
        if (!kv->key[0] || gk_gguf_find(g, kv->key) != &kv->value) __builtin_trap();
        walk_value(&kv->value, 1);
        walk_getters(g, kv->key);
    }
    for (int64_t i = 0; i < gk_gguf_n_tensors(g); i++) {
        const gk_gguf_tensor *t = gk_gguf_tensor_at(g, i);
        if (gk_gguf_find_tensor(g, t->name) != t || t->nbytes == 0 || t->offset % align ||
            t->offset + t->nbytes > size - data_off || t->n_dims < 1 || t->n_dims > 4)
            __builtin_trap();
        const uint8_t *p = t->data;
        sink += p[0] + p[t->nbytes - 1];
        decode_row(t);
    }
    gk_gguf_writer *w = gk_gguf_writer_new(&err);
    if (w && gk_gguf_copy_kv(w, g, &err) != 0) __builtin_trap(); /* what was read is writable */
    gk_gguf_writer_free(w);
    gk_gguf_close(g);
    return 0;
}
