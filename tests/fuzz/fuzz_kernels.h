/*
 * fuzz_kernels.h - runs the type kernels over the tensors of a parsed GGUF file,
 * for the fuzz targets that read GGUF (fuzz_gguf, fuzz_model).
 *
 * For every tensor whose type has kernels in the traits table (src/tensor/dtype.c),
 * the first rows and the last row are converted to fp32 (to_float) and dotted with
 * an activation row in the type's vec_dot_type (vec_dot, and vec_dot4 over four
 * rows where the type has one). The blocks are whatever the input holds, so a
 * dequantizer or dot that indexes a table or a buffer with an unchecked field of a
 * malformed block reads out of bounds under ASan. Types without kernels are
 * skipped, so a type is covered as soon as its entry in the table gets them, with
 * no edit here.
 */
#ifndef GK_FUZZ_KERNELS_H
#define GK_FUZZ_KERNELS_H

#include "format/gguf.h"
#include "tensor/dtype.h"

#include <stdlib.h>
#include <string.h>

static volatile float gk_fuzz_fsink;

/* Rows of a tensor, ne[0] elements each, that the kernels see. */
#define GK_FUZZ_ROWS 4

/* An activation row of n elements in the given type (finite, varied values), or
 * NULL when the type cannot be produced (no from_float). */
static void *gk_fuzz_activation(gk_dtype type, int64_t n, float *tmp) {
    const gk_type_traits *tt = gk_type_traits_of(type);
    if (!tt || !tt->from_float) return NULL;
    size_t bytes = gk_row_size(type, n);
    if (!bytes) return NULL;
    void *y = malloc(bytes);
    if (!y) return NULL;
    for (int64_t i = 0; i < n; i++) tmp[i] = (float)((i * 37) % 19 - 9) * 0.125f;
    tt->from_float(tmp, y, n);
    return y;
}

static void gk_fuzz_tensor_kernels(const gk_gguf_tensor *t) {
    const gk_type_traits *tt = gk_type_traits_of(t->type);
    if (!tt) __builtin_trap(); /* the reader accepted a type it does not know */
    int64_t n = t->ne[0];
    size_t row = gk_row_size(t->type, n);
    /* The reader checks that a row is whole blocks and that the data fits. */
    if (!row || t->nbytes % row) __builtin_trap();
    if (!tt->to_float) return;
    uint64_t n_rows = t->nbytes / row;
    float *x = malloc((size_t)n * sizeof(float)), *tmp = malloc((size_t)n * sizeof(float));
    if (!x || !tmp) {
        free(x);
        free(tmp);
        return;
    }
    const uint8_t *base = t->data;
    uint64_t take = n_rows < GK_FUZZ_ROWS ? n_rows : GK_FUZZ_ROWS;
    for (uint64_t r = 0; r <= take; r++) {
        uint64_t at = r < take ? r : n_rows - 1; /* then the last row */
        tt->to_float(base + at * row, x, n);
        float s = 0;
        for (int64_t i = 0; i < n; i++) s += x[i];
        gk_fuzz_fsink += s;
    }
    void *y = tt->vec_dot ? gk_fuzz_activation(tt->vec_dot_type, n, tmp) : NULL;
    if (y) {
        for (uint64_t r = 0; r <= take; r++) {
            uint64_t at = r < take ? r : n_rows - 1;
            gk_fuzz_fsink += tt->vec_dot(n, base + at * row, y);
        }
        if (tt->vec_dot4 && n_rows >= 4) {
            float s4[4];
            tt->vec_dot4(n, base, row, y, s4);
            tt->vec_dot4(n, base + (n_rows - 4) * row, row, y, s4);
            gk_fuzz_fsink += s4[0] + s4[1] + s4[2] + s4[3];
        }
    }
    free(y);
    free(tmp);
    free(x);
}

static void gk_fuzz_gguf_kernels(const gk_gguf *g) {
    gk_dtype_init();
    for (int64_t i = 0; i < gk_gguf_n_tensors(g); i++)
        gk_fuzz_tensor_kernels(gk_gguf_tensor_at(g, i));
}

#endif
