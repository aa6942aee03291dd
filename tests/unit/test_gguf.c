/*
 * test_gguf.c - tests of the GGUF reader and writer.
 *
 *   - hand-built files (bytes laid out here, independently of the writer) that
 *     hold every kind of value and tensor, read back field by field;
 *   - a corpus of broken files derived from them: truncated at every byte, and
 *     one case per check the reader makes; each must fail with a message naming
 *     the problem, and never crash (every buffer is an exact-size allocation so
 *     AddressSanitizer sees any overread);
 *   - a writer round trip of every value type, nested arrays, several tensor
 *     types and shapes, produced tensors and a custom alignment, and gk_gguf_copy_kv;
 *   - the writer's failure paths: nothing may be left behind;
 *   - the real llama.cpp vocabulary files from ../shared/testdata (skipped when
 *     absent), with expectations taken from an independent Python reading.
 */
#include "gk_test.h"

#include "format/gguf.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------- byte builder --- */

typedef struct bb {
    uint8_t *p;
    size_t n, cap;
} bb;

static void b_put(bb *b, const void *d, size_t n) {
    if (b->cap - b->n < n) {
        while (b->cap - b->n < n) b->cap = b->cap ? 2 * b->cap : 256;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void b_u8(bb *b, uint8_t v) {
    b_put(b, &v, 1);
}
static void b_u32(bb *b, uint32_t v) {
    b_put(b, &v, 4);
}
static void b_u64(bb *b, uint64_t v) {
    b_put(b, &v, 8);
}
static void b_str(bb *b, const char *s) {
    b_u64(b, strlen(s));
    b_put(b, s, strlen(s));
}
static void b_pad(bb *b, size_t align) {
    while (b->n % align) b_u8(b, 0);
}
static void b_header(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b_put(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}
static void b_kv_u32(bb *b, const char *key, uint32_t v) {
    b_str(b, key);
    b_u32(b, GK_GGUF_UINT32);
    b_u32(b, v);
}
static void b_kv_str(bb *b, const char *key, const char *v) {
    b_str(b, key);
    b_u32(b, GK_GGUF_STRING);
    b_str(b, v);
}
static void b_tensor(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                     uint64_t offset) {
    b_str(b, name);
    b_u32(b, n_dims);
    for (uint32_t i = 0; ne && i < n_dims; i++) b_u64(b, ne[i]);
    b_u32(b, type);
    b_u64(b, offset);
}
static void b_data(bb *b, size_t n, uint8_t seed) {
    for (size_t i = 0; i < n; i++) b_u8(b, (uint8_t)(seed + i * 7));
}

/* An exact-size copy, so that any read past the end is an ASan error. */
static gk_gguf *open_exact(const void *p, size_t n, gk_err *err, void **copy) {
    *copy = malloc(n ? n : 1);
    if (n) memcpy(*copy, p, n);
    return gk_gguf_open_memory(n ? *copy : NULL, n, err);
}

/* Parsing must fail with a message holding words. */
#define EXPECT_FAIL(b, words) expect_fail(__LINE__, (b)->p, (b)->n, words)
static void expect_fail(int line, const void *p, size_t n, const char *words) {
    gk_err err = {{0}};
    void *copy;
    gk_gguf *g = open_exact(p, n, &err, &copy);
    CHECK_MSG(g == NULL, "line %d: parsed, expected an error with '%s'", line, words);
    if (g)
        gk_gguf_close(g);
    else
        CHECK_MSG(strstr(err.msg, words) != NULL, "line %d: '%s' lacks '%s'", line, err.msg, words);
    free(copy);
}

#define EXPECT_OK(b) expect_ok(__LINE__, (b)->p, (b)->n)
static void expect_ok(int line, const void *p, size_t n) {
    gk_err err = {{0}};
    void *copy;
    gk_gguf *g = open_exact(p, n, &err, &copy);
    CHECK_MSG(g != NULL, "line %d: %s", line, err.msg);
    gk_gguf_close(g);
    free(copy);
}

static bool str_is(gk_str s, const char *want) {
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

/* ------------------------------------------------------ the base file --- */

/* Offsets inside the base file, for the corruption cases. */
typedef struct base_info {
    size_t header_end, data_start, size;
} base_info;

/*
 * A valid v3 file with one kv of each kind and two tensors, the last of which
 * ends exactly at the end of the file (so that every truncation is an error):
 *   f32 "a" [4, 2] at 0 (32 bytes), q8_0 "b" [32] at 32 (34 bytes).
 */
static bb base_file(base_info *info) {
    bb b = {0};
    b_header(&b, 3, 2, 10);
    b_kv_str(&b, "general.architecture", "grok");
    b_kv_u32(&b, "grok.block_count", 2);
    b_str(&b, "x.f32s");
    b_u32(&b, GK_GGUF_ARRAY);
    b_u32(&b, GK_GGUF_FLOAT32);
    b_u64(&b, 3);
    float f[3] = {1.5f, -2.0f, 0.25f};
    b_put(&b, f, sizeof f);
    b_str(&b, "x.strs");
    b_u32(&b, GK_GGUF_ARRAY);
    b_u32(&b, GK_GGUF_STRING);
    b_u64(&b, 3);
    b_str(&b, "a");
    b_str(&b, "");
    b_str(&b, "ccc");
    b_str(&b, "x.nested"); /* [[1, 2], [3]] of u8 */
    b_u32(&b, GK_GGUF_ARRAY);
    b_u32(&b, GK_GGUF_ARRAY);
    b_u64(&b, 2);
    b_u32(&b, GK_GGUF_UINT8);
    b_u64(&b, 2);
    b_u8(&b, 1);
    b_u8(&b, 2);
    b_u32(&b, GK_GGUF_UINT8);
    b_u64(&b, 1);
    b_u8(&b, 3);
    b_str(&b, "x.bool");
    b_u32(&b, GK_GGUF_BOOL);
    b_u8(&b, 1);
    b_str(&b, "x.neg");
    b_u32(&b, GK_GGUF_INT32);
    b_u32(&b, (uint32_t)-5);
    b_str(&b, "x.big");
    b_u32(&b, GK_GGUF_UINT64);
    b_u64(&b, (uint64_t)1 << 40);
    b_str(&b, "x.f64");
    b_u32(&b, GK_GGUF_FLOAT64);
    double d = -0.125;
    b_put(&b, &d, 8);
    b_str(&b, "x.i16");
    b_u32(&b, GK_GGUF_INT16);
    int16_t s16 = -300;
    b_put(&b, &s16, 2);
    b_tensor(&b, "a", 2, (uint64_t[]){4, 2}, GK_TYPE_F32, 0);
    b_tensor(&b, "b", 1, (uint64_t[]){32}, GK_TYPE_Q8_0, 32);
    if (info) info->header_end = b.n;
    b_pad(&b, 32);
    if (info) info->data_start = b.n;
    b_data(&b, 66, 1);
    if (info) info->size = b.n;
    return b;
}

static void test_base_file(void) {
    base_info info;
    bb b = base_file(&info);
    gk_err err = {{0}};
    void *copy;
    gk_gguf *g = open_exact(b.p, b.n, &err, &copy);
    CHECK_MSG(g != NULL, "%s", err.msg);
    if (!g) goto done;
    CHECK(gk_gguf_version(g) == 3);
    CHECK(gk_gguf_alignment(g) == 32);
    CHECK(gk_gguf_file_size(g) == b.n);
    CHECK(gk_gguf_data_offset(g) == info.data_start);
    CHECK(gk_gguf_n_kv(g) == 10);
    CHECK(gk_gguf_n_tensors(g) == 2);
    CHECK(gk_gguf_kv_at(g, 10) == NULL && gk_gguf_kv_at(g, -1) == NULL);
    CHECK(strcmp(gk_gguf_kv_at(g, 0)->key, "general.architecture") == 0);

    gk_str s;
    CHECK(gk_gguf_get_str(g, "general.architecture", &s, &err) == 1 && str_is(s, "grok"));
    uint32_t u32 = 0;
    int32_t i32 = 0;
    uint64_t u64 = 0;
    float f32 = 0;
    bool bo = false;
    CHECK(gk_gguf_get_u32(g, "grok.block_count", &u32, &err) == 1 && u32 == 2);
    CHECK(gk_gguf_get_i32(g, "grok.block_count", &i32, &err) == 1 && i32 == 2);
    CHECK(gk_gguf_get_u64(g, "grok.block_count", &u64, &err) == 1 && u64 == 2);
    CHECK(gk_gguf_get_i32(g, "x.neg", &i32, &err) == 1 && i32 == -5);
    CHECK(gk_gguf_get_i32(g, "x.i16", &i32, &err) == 1 && i32 == -300);
    CHECK(gk_gguf_get_u64(g, "x.big", &u64, &err) == 1 && u64 == (uint64_t)1 << 40);
    CHECK(gk_gguf_get_bool(g, "x.bool", &bo, &err) == 1 && bo);
    CHECK(gk_gguf_get_f32(g, "x.f64", &f32, &err) == 1 && f32 == -0.125f);
    /* absent: 0 and untouched */
    u32 = 77;
    CHECK(gk_gguf_get_u32(g, "no.such.key", &u32, &err) == 0 && u32 == 77);
    CHECK(gk_gguf_find(g, "no.such.key") == NULL);
    /* wrong types and ranges */
    CHECK(gk_gguf_get_u32(g, "x.neg", &u32, &err) == -1);
    CHECK_ERR_HAS(err.msg, "x.neg' = -5 is out of range for u32");
    CHECK(gk_gguf_get_u32(g, "x.big", &u32, &err) == -1);
    CHECK_ERR_HAS(err.msg, "out of range for u32");
    CHECK(gk_gguf_get_i32(g, "x.big", &i32, &err) == -1);
    CHECK_ERR_HAS(err.msg, "out of range for i32");
    CHECK(gk_gguf_get_u64(g, "x.neg", &u64, &err) == -1);
    CHECK(gk_gguf_get_u32(g, "general.architecture", &u32, &err) == -1);
    CHECK_ERR_HAS(err.msg, "key 'general.architecture' has type string, expected an integer");
    CHECK(gk_gguf_get_str(g, "grok.block_count", &s, &err) == -1);
    CHECK_ERR_HAS(err.msg, "has type u32, expected string");
    CHECK(gk_gguf_get_f32(g, "x.f32s", &f32, &err) == -1);
    CHECK_ERR_HAS(err.msg, "has type array");
    CHECK(gk_gguf_get_bool(g, "grok.block_count", &bo, &err) == -1);
    CHECK(gk_gguf_get_f32(g, "grok.block_count", &f32, &err) == -1);

    gk_gguf_array a;
    CHECK(gk_gguf_get_arr(g, "x.f32s", GK_GGUF_FLOAT32, &a, &err) == 1);
    CHECK(a.n == 3 && gk_gguf_arr_f32(&a, 0) == 1.5f && gk_gguf_arr_f32(&a, 1) == -2.0f &&
          gk_gguf_arr_f32(&a, 2) == 0.25f);
    CHECK(gk_gguf_arr_f32(&a, 3) == 0.0f); /* out of range */
    CHECK(gk_gguf_arr_u32(&a, 0) == 0);    /* wrong type */
    CHECK(gk_gguf_get_arr(g, "x.f32s", GK_GGUF_UINT32, &a, &err) == -1);
    CHECK_ERR_HAS(err.msg, "is an array of f32, expected an array of u32");
    CHECK(gk_gguf_get_arr(g, "x.strs", -1, &a, &err) == 1);
    CHECK(a.type == GK_GGUF_STRING && a.n == 3 && str_is(a.strs[0], "a") && str_is(a.strs[1], "") &&
          str_is(a.strs[2], "ccc"));
    CHECK(gk_gguf_get_arr(g, "x.nested", GK_GGUF_ARRAY, &a, &err) == 1);
    CHECK(a.n == 2 && a.elems[0].type == GK_GGUF_ARRAY);
    if (a.n == 2) {
        const gk_gguf_array *e0 = &a.elems[0].v.arr, *e1 = &a.elems[1].v.arr;
        CHECK(e0->type == GK_GGUF_UINT8 && e0->n == 2 && e0->data[0] == 1 && e0->data[1] == 2);
        CHECK(e1->type == GK_GGUF_UINT8 && e1->n == 1 && e1->data[0] == 3);
    }

    const gk_gguf_tensor *ta = gk_gguf_find_tensor(g, "a"), *tb = gk_gguf_find_tensor(g, "b");
    CHECK(ta && tb && gk_gguf_find_tensor(g, "c") == NULL);
    CHECK(ta == gk_gguf_tensor_at(g, 0) && tb == gk_gguf_tensor_at(g, 1));
    if (ta && tb) {
        CHECK(ta->n_dims == 2 && ta->ne[0] == 4 && ta->ne[1] == 2 && ta->ne[2] == 1 &&
              ta->ne[3] == 1);
        CHECK(ta->type == GK_TYPE_F32 && ta->offset == 0 && ta->nbytes == 32);
        CHECK(tb->n_dims == 1 && tb->ne[0] == 32 && tb->type == GK_TYPE_Q8_0);
        CHECK(tb->offset == 32 && tb->nbytes == 34);
        CHECK((const uint8_t *)ta->data == (const uint8_t *)copy + info.data_start);
        CHECK(memcmp(tb->data, b.p + info.data_start + 32, 34) == 0);
    }
    gk_gguf_close(g);
done:
    free(copy);
    free(b.p);
}

/* ------------------------------------------------------ broken files --- */

/* Every prefix of the base file fails cleanly; so does every single-byte change
 * of its header, or it parses (a changed string byte is still a valid file). */
static void test_truncation(void) {
    base_info info;
    bb b = base_file(&info);
    for (size_t n = 0; n < b.n; n++) {
        gk_err err = {{0}};
        void *copy;
        gk_gguf *g = open_exact(b.p, n, &err, &copy);
        CHECK_MSG(g == NULL, "prefix of %zu bytes parsed", n);
        gk_gguf_close(g);
        CHECK_MSG(strncmp(err.msg, "gguf: ", 6) == 0, "prefix %zu: '%s'", n, err.msg);
        if (n < info.header_end)
            CHECK_MSG(strstr(err.msg, "truncated") || strstr(err.msg, "left") ||
                          strstr(err.msg, "cannot fit"),
                      "prefix %zu: '%s'", n, err.msg);
        else
            CHECK_MSG(strstr(err.msg, "before its data section") ||
                          strstr(err.msg, "beyond the end of the data section"),
                      "prefix %zu: '%s'", n, err.msg);
        free(copy);
    }
    expect_fail(__LINE__, b.p, 3, "truncated at byte 0 reading the magic");
    expect_fail(__LINE__, b.p, 30, "n_kv = 10 cannot fit in the 6 bytes after the header");
    free(b.p);
    b = (bb){0};
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.architecture");
    expect_fail(__LINE__, b.p, 37,
                "string length 20 at byte 24 exceeds the 5 bytes left, "
                "reading the key of kv 0");
    b_u32(&b, GK_GGUF_STRING);
    b_str(&b, "grok");
    expect_fail(__LINE__, b.p, 53,
                "truncated at byte 52 reading the type of key "
                "'general.architecture'");
    expect_fail(__LINE__, b.p, 58,
                "truncated at byte 56 reading the value of key "
                "'general.architecture'");
    expect_fail(__LINE__, b.p, 65,
                "string length 4 at byte 56 exceeds the 1 bytes left, "
                "reading the value of key 'general.architecture'");
    free(b.p);
    b = base_file(&info);

    for (size_t i = 0; i < info.header_end; i++) {
        for (int v = 0; v < 3; v++) {
            static const uint8_t vals[3] = {0x00, 0xff, 0x80};
            uint8_t old = b.p[i];
            b.p[i] = vals[v] == old ? (uint8_t)(old + 1) : vals[v];
            gk_err err = {{0}};
            void *copy;
            gk_gguf *g = open_exact(b.p, b.n, &err, &copy);
            if (!g) CHECK_MSG(strncmp(err.msg, "gguf: ", 6) == 0, "byte %zu: '%s'", i, err.msg);
            gk_gguf_close(g);
            free(copy);
            b.p[i] = old;
        }
    }
    free(b.p);
}

static void test_bad_header(void) {
    bb b = {0};
    expect_fail(__LINE__, NULL, 0, "truncated at byte 0 reading the magic");
    b_put(&b, "ABCD", 4);
    b_u32(&b, 3);
    b_u64(&b, 0);
    b_u64(&b, 0);
    EXPECT_FAIL(&b, "gguf: bad magic 'ABCD' (not a GGUF file)");
    memcpy(b.p,
           "\x7f"
           "ELF",
           4);
    EXPECT_FAIL(&b, "bad magic '\\x7fELF'");
    memcpy(b.p, "FUGG", 4);
    EXPECT_FAIL(&b, "big-endian");

    uint32_t versions[] = {0, 1, 4, 7, 0x03000000, 0x02000000, 0x01000000};
    const char *words[] = {"unsupported version 0",      "unsupported version 1 (GGUF v1",
                           "unsupported version 4",      "unsupported version 7",
                           "big-endian GGUF (version 3", "big-endian GGUF (version 2",
                           "big-endian GGUF (version 1"};
    for (int i = 0; i < 7; i++) {
        b.n = 0;
        b_header(&b, versions[i], 0, 0);
        EXPECT_FAIL(&b, words[i]);
    }
    /* versions 2 and 3 with nothing in them parse */
    b.n = 0;
    b_header(&b, 2, 0, 0);
    EXPECT_OK(&b);
    b.n = 0;
    b_header(&b, 3, 0, 0);
    EXPECT_OK(&b);

    b.n = 0;
    b_header(&b, 3, 0, (uint64_t)1 << 62);
    EXPECT_FAIL(&b, "n_kv = 4611686018427387904 cannot fit");
    b.n = 0;
    b_header(&b, 3, (uint64_t)1 << 62, 0);
    EXPECT_FAIL(&b, "n_tensors = 4611686018427387904 cannot fit");
    b.n = 0;
    b_header(&b, 3, UINT64_MAX, UINT64_MAX);
    EXPECT_FAIL(&b, "cannot fit");
    /* one kv announced, bytes for it present but too few */
    b.n = 0;
    b_header(&b, 3, 0, 2);
    b_kv_u32(&b, "k", 1);
    EXPECT_FAIL(&b, "cannot fit");
    free(b.p);
}

/* A file whose only kv is key with a value of type type followed by body. */
static bb kv_file(const char *key, uint32_t type, const void *body, size_t n) {
    bb b = {0};
    b_header(&b, 3, 0, 1);
    b_str(&b, key);
    b_u32(&b, type);
    b_put(&b, body, n);
    return b;
}

/* An array nested depth deep: depth - 1 arrays of one array, then an empty u8 array. */
static void b_nested(bb *b, int depth) {
    for (int i = 0; i < depth; i++) {
        b_u32(b, i < depth - 1 ? GK_GGUF_ARRAY : GK_GGUF_UINT8);
        b_u64(b, i < depth - 1 ? 1 : 0);
    }
}

static void test_bad_kv(void) {
    bb b = {0}, body = {0};

    /* huge string lengths, in a key and in a value */
    b_header(&b, 3, 0, 1);
    b_u64(&b, (uint64_t)1 << 62);
    b_put(&b, "general.name", 12);
    EXPECT_FAIL(&b, "string length 4611686018427387904 at byte 24 exceeds");
    free(b.p);
    b_u64(&body, UINT64_MAX);
    b_put(&body, "xxxxxxxx", 8);
    b = kv_file("general.name", GK_GGUF_STRING, body.p, body.n);
    EXPECT_FAIL(&b, "reading the value of key 'general.name'");
    free(b.p);

    /* value truncated */
    b = kv_file("general.name", GK_GGUF_UINT64, "\1\2\3", 3);
    EXPECT_FAIL(&b, "truncated at byte 48 reading the value of key 'general.name'");
    free(b.p);

    /* unknown value types */
    b = kv_file("k", 13, "\0\0\0\0", 4);
    EXPECT_FAIL(&b, "key 'k' has unknown value type 13");
    free(b.p);
    body.n = 0;
    b_u32(&body, 99);
    b_u64(&body, 1);
    b_u32(&body, 0);
    b = kv_file("k", GK_GGUF_ARRAY, body.p, body.n);
    EXPECT_FAIL(&b, "unknown array element type 99");
    free(b.p);

    /* array counts whose byte size overflows or exceeds the file */
    uint32_t types[] = {GK_GGUF_UINT64, GK_GGUF_UINT8, GK_GGUF_STRING, GK_GGUF_ARRAY,
                        GK_GGUF_UINT32};
    uint64_t counts[] = {((uint64_t)1 << 61) + 1, UINT64_MAX, (uint64_t)1 << 63, (uint64_t)1 << 62,
                         5};
    for (int i = 0; i < 5; i++) {
        body.n = 0;
        b_u32(&body, types[i]);
        b_u64(&body, counts[i]);
        b_put(&body, "0123456789abcdef", 16);
        b = kv_file("arr", GK_GGUF_ARRAY, body.p, body.n);
        EXPECT_FAIL(&b, "does not fit in the 16 bytes left, in the value of key 'arr'");
        free(b.p);
    }
    /* string array whose later strings overrun */
    body.n = 0;
    b_u32(&body, GK_GGUF_STRING);
    b_u64(&body, 2);
    b_str(&body, "ok");
    b_u64(&body, 100);
    b_put(&body, "short", 5);
    b = kv_file("arr", GK_GGUF_ARRAY, body.p, body.n);
    EXPECT_FAIL(&b, "string length 100");
    free(b.p);

    /* nesting: 8 levels parse, 9 do not */
    body.n = 0;
    b_nested(&body, 8);
    b = kv_file("deep", GK_GGUF_ARRAY, body.p, body.n);
    EXPECT_OK(&b);
    free(b.p);
    body.n = 0;
    b_nested(&body, 9);
    b = kv_file("deep", GK_GGUF_ARRAY, body.p, body.n);
    EXPECT_FAIL(&b, "arrays nested deeper than 8");
    free(b.p);
    body.n = 0;
    b_nested(&body, 1000);
    b = kv_file("deep", GK_GGUF_ARRAY, body.p, body.n);
    EXPECT_FAIL(&b, "arrays nested deeper than 8");
    free(b.p);

    /* keys: empty, with a NUL, duplicated */
    b = kv_file("", GK_GGUF_UINT8, "\1", 1);
    EXPECT_FAIL(&b, "key 0 has an empty name");
    free(b.p);
    b = (bb){0};
    b_header(&b, 3, 0, 1);
    b_u64(&b, 3);
    b_put(&b, "a\0b", 3);
    b_u32(&b, GK_GGUF_UINT8);
    b_u8(&b, 0);
    EXPECT_FAIL(&b, "name 'a\\x00b' contains a NUL byte");
    free(b.p);
    b = (bb){0};
    b_header(&b, 3, 0, 3);
    b_kv_u32(&b, "dup", 2);
    b_kv_u32(&b, "one", 1);
    b_kv_str(&b, "dup", "x");
    EXPECT_FAIL(&b, "gguf: duplicate key 'dup'");
    free(b.p);

    /* general.alignment: u32, a non-zero power of two */
    uint32_t bad[] = {0, 3, 48, 0x80000001u};
    for (int i = 0; i < 4; i++) {
        b = (bb){0};
        b_header(&b, 3, 0, 1);
        b_kv_u32(&b, "general.alignment", bad[i]);
        EXPECT_FAIL(&b, "is not a power of two");
        free(b.p);
    }
    /* ... and at least 8 (the GGUF spec): smaller ones misalign tensor data */
    for (uint32_t small = 1; small < 8; small *= 2) {
        b = (bb){0};
        b_header(&b, 3, 0, 1);
        b_kv_u32(&b, "general.alignment", small);
        EXPECT_FAIL(&b, "is not a multiple of 8");
        free(b.p);
    }
    uint64_t a64 = 32;
    b = kv_file("general.alignment", GK_GGUF_UINT64, &a64, 8);
    EXPECT_FAIL(&b, "general.alignment has type u64 (must be u32)");
    free(b.p);
    b = kv_file("general.alignment", GK_GGUF_INT32, &a64, 4);
    EXPECT_FAIL(&b, "general.alignment has type i32 (must be u32)");
    free(b.p);
    b = (bb){0};
    b_header(&b, 3, 0, 1);
    b_kv_str(&b, "general.alignment", "32");
    EXPECT_FAIL(&b, "has type string (must be u32)");
    free(b.p);
    b = (bb){0};
    b_header(&b, 3, 0, 1);
    b_kv_u32(&b, "general.alignment", 1u << 31);
    EXPECT_OK(&b);
    free(b.p);
    free(body.p);
}

/* A file with one tensor (name, shape, type, offset), optional alignment, and
 * data_bytes of data after the padding. */
static bb tensor_file(const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                      uint64_t offset, uint32_t align, size_t data_bytes) {
    bb b = {0};
    b_header(&b, 3, 1, align ? 1 : 0);
    if (align) b_kv_u32(&b, "general.alignment", align);
    b_tensor(&b, name, n_dims, ne, type, offset);
    b_pad(&b, align ? align : 32);
    b_data(&b, data_bytes, 3);
    return b;
}

static void test_bad_tensors(void) {
    bb b;
#define CASE(words, ...)                                                                           \
    do {                                                                                           \
        b = tensor_file(__VA_ARGS__);                                                              \
        EXPECT_FAIL(&b, words);                                                                    \
        free(b.p);                                                                                 \
    } while (0)
#define CASE_OK(...)                                                                               \
    do {                                                                                           \
        b = tensor_file(__VA_ARGS__);                                                              \
        EXPECT_OK(&b);                                                                             \
        free(b.p);                                                                                 \
    } while (0)

    CASE_OK("w", 2, (uint64_t[]){4, 2}, GK_TYPE_F32, 0, 0, 32);
    CASE("tensor 'w': n_dims = 0 is not in 1..4", "w", 0, NULL, GK_TYPE_F32, 0, 0, 32);
    CASE("tensor 'w': n_dims = 5 is not in 1..4", "w", 5, (uint64_t[]){1, 1, 1, 1, 1}, GK_TYPE_F32,
         0, 0, 32);
    CASE("tensor 'w': n_dims = 4294967295", "w", UINT32_MAX, NULL, GK_TYPE_F32, 0, 0, 32);
    CASE("tensor 'w': dimension 0 is -1 (must be >= 1)", "w", 1, (uint64_t[]){UINT64_MAX},
         GK_TYPE_F32, 0, 0, 32);
    CASE("tensor 'w': dimension 1 is 0 (must be >= 1)", "w", 2, (uint64_t[]){4, 0}, GK_TYPE_F32, 0,
         0, 32);
    CASE("dimension 0 is -9223372036854775808", "w", 1, (uint64_t[]){(uint64_t)1 << 63},
         GK_TYPE_F32, 0, 0, 32);
    CASE("tensor 'w': element count overflows int64", "w", 2,
         (uint64_t[]){(uint64_t)1 << 32, (uint64_t)1 << 32}, GK_TYPE_F32, 0, 0, 32);
    CASE("element count overflows int64", "w", 3, (uint64_t[]){(uint64_t)1 << 62, 2, 1},
         GK_TYPE_F32, 0, 0, 32);
    CASE("tensor 'w': byte size overflows", "w", 1, (uint64_t[]){(uint64_t)1 << 62}, GK_TYPE_F32, 0,
         0, 32);
    CASE("tensor 'w': byte size overflows", "w", 2, (uint64_t[]){(uint64_t)1 << 60, 4}, GK_TYPE_F32,
         0, 0, 32);
    CASE("tensor 'blk.0.attn_q.weight': unknown type 99", "blk.0.attn_q.weight", 1,
         (uint64_t[]){32}, 99, 0, 0, 64);
    CASE("tensor 'w': unknown type 4", "w", 1, (uint64_t[]){32}, 4, 0, 0, 64); /* Q4_2, removed */
    CASE("unknown type 4294967295", "w", 1, (uint64_t[]){32}, UINT32_MAX, 0, 0, 64);
    CASE("tensor 'w': ne[0] = 33 is not a multiple of the block size 32 of q8_0", "w", 2,
         (uint64_t[]){33, 2}, GK_TYPE_Q8_0, 0, 0, 100);
    CASE("ne[0] = 128 is not a multiple of the block size 256 of q4_k", "w", 1, (uint64_t[]){128},
         GK_TYPE_Q4_K, 0, 0, 200);
    CASE_OK("w", 2, (uint64_t[]){64, 2}, GK_TYPE_Q8_0, 0, 0, 136);
    CASE("tensor 'w': offset 16 is not a multiple of the alignment 32", "w", 1, (uint64_t[]){4},
         GK_TYPE_F32, 16, 0, 64);
    CASE("tensor 'w': offset 32 is not a multiple of the alignment 64", "w", 1, (uint64_t[]){4},
         GK_TYPE_F32, 32, 64, 128);
    CASE_OK("w", 1, (uint64_t[]){4}, GK_TYPE_F32, 64, 64, 128);
    CASE("tensor 'w': offset 0 + size 32 is beyond the end of the data section (31 bytes", "w", 2,
         (uint64_t[]){4, 2}, GK_TYPE_F32, 0, 0, 31);
    CASE("offset 32 + size 32 is beyond the end", "w", 2, (uint64_t[]){4, 2}, GK_TYPE_F32, 32, 0,
         63);
    CASE("offset 18446744073709551584 + size 32 is beyond the end", "w", 2, (uint64_t[]){4, 2},
         GK_TYPE_F32, UINT64_MAX - 31, 0, 32);
    CASE("tensor 0 has an empty name", "", 1, (uint64_t[]){4}, GK_TYPE_F32, 0, 0, 32);

    /* names: 256 bytes are fine, 300 are not */
    char name[301];
    memset(name, 'n', 300);
    name[256] = 0;
    CASE_OK(name, 1, (uint64_t[]){4}, GK_TYPE_F32, 0, 0, 32);
    name[256] = 'n';
    name[300] = 0;
    CASE("is 300 bytes long (at most 256)", name, 1, (uint64_t[]){4}, GK_TYPE_F32, 0, 0, 32);
#undef CASE
#undef CASE_OK

    /* duplicate names; overlapping tensors are accepted (llama.cpp does too) */
    b = (bb){0};
    b_header(&b, 3, 3, 0);
    b_tensor(&b, "x", 1, (uint64_t[]){8}, GK_TYPE_F32, 0);
    b_tensor(&b, "y", 1, (uint64_t[]){8}, GK_TYPE_F32, 0);
    b_tensor(&b, "x", 1, (uint64_t[]){8}, GK_TYPE_F32, 0);
    b_pad(&b, 32);
    b_data(&b, 32, 0);
    EXPECT_FAIL(&b, "gguf: duplicate tensor 'x'");
    free(b.p);
    b = (bb){0};
    b_header(&b, 3, 2, 0);
    b_tensor(&b, "x", 1, (uint64_t[]){8}, GK_TYPE_F32, 0);
    b_tensor(&b, "y", 1, (uint64_t[]){4}, GK_TYPE_F32, 0);
    b_pad(&b, 32);
    b_data(&b, 32, 0);
    EXPECT_OK(&b);
    free(b.p);

    /* tensors but a file that ends before the padded data section */
    b = (bb){0};
    b_header(&b, 3, 1, 0);
    b_tensor(&b, "x", 1, (uint64_t[]){1}, GK_TYPE_F32, 0);
    size_t end = b.n;
    EXPECT_FAIL(&b, "before its data section at byte 64");
    CHECK(end == 57);
    free(b.p);
    /* no tensors: a file may end at its header, as llama.cpp's vocab files do */
    b = (bb){0};
    b_header(&b, 3, 0, 1);
    b_kv_str(&b, "general.name", "x");
    EXPECT_OK(&b);
    free(b.p);
}

/* ------------------------------------------------------- writer tests --- */

static bool value_eq(const gk_gguf_value *a, const gk_gguf_value *b);

static bool array_eq(const gk_gguf_array *a, const gk_gguf_array *b) {
    static const size_t size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (a->type != b->type || a->n != b->n) return false;
    if (a->type == GK_GGUF_STRING) {
        for (uint64_t i = 0; i < a->n; i++)
            if (a->strs[i].len != b->strs[i].len ||
                memcmp(a->strs[i].ptr, b->strs[i].ptr, a->strs[i].len) != 0)
                return false;
        return true;
    }
    if (a->type == GK_GGUF_ARRAY) {
        for (uint64_t i = 0; i < a->n; i++)
            if (!value_eq(&a->elems[i], &b->elems[i])) return false;
        return true;
    }
    return a->n == 0 || memcmp(a->data, b->data, a->n * size[a->type]) == 0;
}

static bool value_eq(const gk_gguf_value *a, const gk_gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case GK_GGUF_STRING:
        return a->v.str.len == b->v.str.len &&
               (a->v.str.len == 0 || memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len) == 0);
    case GK_GGUF_ARRAY:
        return array_eq(&a->v.arr, &b->v.arr);
    case GK_GGUF_FLOAT32:
        return (float)a->v.f64 == (float)b->v.f64;
    case GK_GGUF_FLOAT64:
        return a->v.f64 == b->v.f64;
    default:
        return a->v.u64 == b->v.u64;
    }
}

/* Produces n bytes of src in chunks of chunk bytes; mode 1 fails, 2 produces one
 * byte too few, 3 one too many. */
typedef struct producer {
    const uint8_t *src;
    size_t n, chunk;
    int mode;
    int calls;
} producer;

static int produce(void *ud, gk_gguf_sink *sink, gk_err *err) {
    producer *p = ud;
    p->calls++;
    if (p->mode == 1) {
        snprintf(err->msg, sizeof err->msg, "boom: the source went away");
        return -1;
    }
    size_t n = p->n + (p->mode == 3) - (p->mode == 2);
    for (size_t o = 0; o < n; o += p->chunk) {
        size_t k = n - o < p->chunk ? n - o : p->chunk;
        if (gk_gguf_sink_write(sink, p->src + o, k, err)) return -1;
    }
    return 0;
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
}

/* Files in dir whose names start with prefix (to find leftovers). */
static int count_files(const char *dir, const char *prefix) {
    int n = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

typedef struct expect_kv {
    const char *key;
    gk_gguf_value v;
} expect_kv;

#define NT 8
typedef struct expect_tensor {
    const char *name;
    gk_dtype type;
    uint32_t n_dims;
    int64_t ne[4];
    uint64_t nbytes; /* from the block sizes, written out here */
    bool produced;   /* by a callback writing chunk bytes at a time */
    size_t chunk;
    uint8_t *data;
    producer prod;
} expect_tensor;

static void roundtrip(const char *dir, uint32_t align) {
    char path[512];
    snprintf(path, sizeof path, "%s/rt%u.gguf", dir, align);
    gk_err err = {{0}};
    gk_gguf_writer *w = gk_gguf_writer_new(&err);
    CHECK(w != NULL);
    if (!w) return;

    /* every scalar type, strings, arrays of each kind, nested arrays */
    static const float f32s[5] = {0.5f, -1.0f, 3.25f, 1e30f, -0.0f};
    static const int32_t i32s[4] = {-1, 0, 1, INT32_MIN};
    static const uint8_t u8s[3] = {0, 127, 255};
    static const uint8_t bools[3] = {1, 0, 1};
    static const int64_t i64s[2] = {INT64_MIN, INT64_MAX};
    static const double f64s[2] = {1e-300, -2.5};
    static const uint32_t n1[3] = {1, 2, 3}, n3[1] = {4};
    gk_gguf_value inner[3] = {
        {.type = GK_GGUF_ARRAY,
         .v.arr = {.type = GK_GGUF_UINT32, .n = 3, .data = (const uint8_t *)n1}},
        {.type = GK_GGUF_ARRAY, .v.arr = {.type = GK_GGUF_UINT32, .n = 0}},
        {.type = GK_GGUF_ARRAY,
         .v.arr = {.type = GK_GGUF_UINT32, .n = 1, .data = (const uint8_t *)n3}},
    };
    gk_str strs_ab[2] = {{"a", 1}, {"bcd", 3}}, strs_c[1] = {{"", 0}};
    gk_gguf_value lvl2[2] = {
        {.type = GK_GGUF_ARRAY, .v.arr = {.type = GK_GGUF_STRING, .n = 2, .strs = strs_ab}},
        {.type = GK_GGUF_ARRAY, .v.arr = {.type = GK_GGUF_STRING, .n = 1, .strs = strs_c}},
    };
    gk_gguf_value lvl1[2] = {
        {.type = GK_GGUF_ARRAY, .v.arr = {.type = GK_GGUF_ARRAY, .n = 2, .elems = lvl2}},
        {.type = GK_GGUF_ARRAY, .v.arr = {.type = GK_GGUF_ARRAY, .n = 0}},
    };
    expect_kv kvs[] = {
        {"t.u8", {.type = GK_GGUF_UINT8, .v.u64 = 200}},
        {"t.i8", {.type = GK_GGUF_INT8, .v.i64 = -100}},
        {"t.u16", {.type = GK_GGUF_UINT16, .v.u64 = 60000}},
        {"t.i16", {.type = GK_GGUF_INT16, .v.i64 = -30000}},
        {"t.u32", {.type = GK_GGUF_UINT32, .v.u64 = 4000000000u}},
        {"t.i32", {.type = GK_GGUF_INT32, .v.i64 = -2000000000}},
        {"t.f32", {.type = GK_GGUF_FLOAT32, .v.f64 = 1.25}},
        {"t.bool", {.type = GK_GGUF_BOOL, .v.u64 = 1}},
        {"t.u64", {.type = GK_GGUF_UINT64, .v.u64 = ((uint64_t)1 << 63) + 5}},
        {"t.i64", {.type = GK_GGUF_INT64, .v.i64 = -((int64_t)1 << 62)}},
        {"t.f64", {.type = GK_GGUF_FLOAT64, .v.f64 = 3.141592653589793}},
        {"t.str", {.type = GK_GGUF_STRING, .v.str = {"h\xc3\xa9llo", 6}}},
        {"t.nested",
         {.type = GK_GGUF_ARRAY, .v.arr = {.type = GK_GGUF_ARRAY, .n = 3, .elems = inner}}},
        {"t.nested3",
         {.type = GK_GGUF_ARRAY, .v.arr = {.type = GK_GGUF_ARRAY, .n = 2, .elems = lvl1}}},
    };
    int nkv = (int)(sizeof kvs / sizeof kvs[0]);
    for (int i = 0; i < nkv; i++)
        CHECK_MSG(gk_gguf_set_value(w, kvs[i].key, &kvs[i].v, &err) == 0, "%s", err.msg);
    const char *names[3] = {"x", "", "yz"};
    CHECK(gk_gguf_set_u32(w, "s.twice", 1) == 0); /* replaced below, keeps its place */
    CHECK(gk_gguf_set_u32(w, "s.u32", 7) == 0);
    CHECK(gk_gguf_set_i32(w, "s.i32", -7) == 0);
    CHECK(gk_gguf_set_u64(w, "s.u64", UINT64_MAX) == 0);
    CHECK(gk_gguf_set_f32(w, "s.f32", 0.1f) == 0);
    CHECK(gk_gguf_set_bool(w, "s.bool", false) == 0);
    CHECK(gk_gguf_set_str(w, "s.str", "grok") == 0);
    CHECK(gk_gguf_set_str(w, "s.empty", "") == 0);
    CHECK(gk_gguf_set_arr(w, "a.f32", GK_GGUF_FLOAT32, f32s, 5) == 0);
    CHECK(gk_gguf_set_arr(w, "a.i32", GK_GGUF_INT32, i32s, 4) == 0);
    CHECK(gk_gguf_set_arr(w, "a.u8", GK_GGUF_UINT8, u8s, 3) == 0);
    CHECK(gk_gguf_set_arr(w, "a.bool", GK_GGUF_BOOL, bools, 3) == 0);
    CHECK(gk_gguf_set_arr(w, "a.i64", GK_GGUF_INT64, i64s, 2) == 0);
    CHECK(gk_gguf_set_arr(w, "a.f64", GK_GGUF_FLOAT64, f64s, 2) == 0);
    CHECK(gk_gguf_set_arr(w, "a.empty", GK_GGUF_UINT32, NULL, 0) == 0);
    CHECK(gk_gguf_set_arr_str(w, "a.str", names, 3) == 0);
    CHECK(gk_gguf_set_arr_str(w, "a.str0", NULL, 0) == 0);
    CHECK(gk_gguf_set_str(w, "s.twice", "last") == 0);
    if (align) CHECK(gk_gguf_set_u32(w, "general.alignment", align) == 0);

        /* tensors of several types and shapes; two produced, one of them large, and
         * one large by pointer, to pass the writer's buffer both ways */
#define T(name, type, n_dims, ne0, ne1, ne2, ne3, nbytes, produced, chunk)                         \
    {                                                                                              \
        name, type, n_dims, {ne0, ne1, ne2, ne3}, nbytes, produced, chunk, NULL, {                 \
            0                                                                                      \
        }                                                                                          \
    }
    expect_tensor ts[NT] = {
        T("f32.vec", GK_TYPE_F32, 1, 3, 1, 1, 1, 12, false, 0),
        T("f16.mat", GK_TYPE_F16, 2, 5, 2, 1, 1, 20, false, 0),
        T("q8.mat", GK_TYPE_Q8_0, 2, 64, 3, 1, 1, 2 * 3 * 34, false, 0),
        T("q4.t3", GK_TYPE_Q4_0, 3, 32, 2, 2, 1, 4 * 18, false, 0),
        T("bf16.t4", GK_TYPE_BF16, 4, 2, 3, 1, 2, 24, false, 0),
        T("q4k.produced", GK_TYPE_Q4_K, 2, 512, 2, 1, 1, 4 * 144, true, 7),
        T("big.produced", GK_TYPE_F32, 1, 300001, 1, 1, 1, 1200004, true, 65536),
        T("big.ptr", GK_TYPE_Q8_0, 2, 32 * 1000, 40, 1, 1, 34 * 1000 * 40, false, 0),
    };
#undef T
    for (int i = 0; i < NT; i++) {
        ts[i].data = malloc(ts[i].nbytes);
        fill(ts[i].data, ts[i].nbytes, (uint32_t)i + 1);
        int r;
        if (ts[i].produced) {
            ts[i].prod = (producer){ts[i].data, ts[i].nbytes, ts[i].chunk, 0, 0};
            r = gk_gguf_add_tensor_fn(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, produce,
                                      &ts[i].prod, &err);
        } else {
            r = gk_gguf_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, ts[i].data,
                                   &err);
        }
        CHECK_MSG(r == 0, "%s", err.msg);
    }
    CHECK_MSG(gk_gguf_write(w, path, &err) == 0, "%s", err.msg);
    gk_gguf_writer_free(w);
    CHECK(count_files(dir, "rt") == 1); /* no temporary left */
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644);
    CHECK(ts[5].prod.calls == 1 && ts[6].prod.calls == 1);

    gk_gguf *g = gk_gguf_open(path, &err);
    CHECK_MSG(g != NULL, "%s", err.msg);
    if (!g) goto done;
    uint64_t al = align ? align : 32;
    CHECK(gk_gguf_version(g) == 3);
    CHECK(gk_gguf_alignment(g) == al);
    CHECK(gk_gguf_data_offset(g) % al == 0);
    CHECK(gk_gguf_n_kv(g) == nkv + 17 + (align ? 1 : 0));
    for (int i = 0; i < nkv; i++) {
        const gk_gguf_value *v = gk_gguf_find(g, kvs[i].key);
        CHECK_MSG(v && value_eq(v, &kvs[i].v), "key %s", kvs[i].key);
        CHECK(strcmp(gk_gguf_kv_at(g, i)->key, kvs[i].key) == 0); /* order kept */
    }
    CHECK(strcmp(gk_gguf_kv_at(g, nkv)->key, "s.twice") == 0);
    gk_str s;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    float f32;
    bool bo = true;
    gk_gguf_array a;
    CHECK(gk_gguf_get_str(g, "s.twice", &s, &err) == 1 && str_is(s, "last"));
    CHECK(gk_gguf_get_u32(g, "s.u32", &u32, &err) == 1 && u32 == 7);
    CHECK(gk_gguf_get_i32(g, "s.i32", &i32, &err) == 1 && i32 == -7);
    CHECK(gk_gguf_get_u64(g, "s.u64", &u64, &err) == 1 && u64 == UINT64_MAX);
    CHECK(gk_gguf_get_f32(g, "s.f32", &f32, &err) == 1 && f32 == 0.1f);
    CHECK(gk_gguf_get_bool(g, "s.bool", &bo, &err) == 1 && !bo);
    CHECK(gk_gguf_get_str(g, "s.str", &s, &err) == 1 && str_is(s, "grok"));
    CHECK(gk_gguf_get_str(g, "s.empty", &s, &err) == 1 && s.len == 0);
    CHECK(gk_gguf_get_arr(g, "a.f32", GK_GGUF_FLOAT32, &a, &err) == 1 && a.n == 5 &&
          memcmp(a.data, f32s, sizeof f32s) == 0 && gk_gguf_arr_f32(&a, 3) == 1e30f);
    CHECK(gk_gguf_get_arr(g, "a.i32", GK_GGUF_INT32, &a, &err) == 1 && a.n == 4 &&
          gk_gguf_arr_i32(&a, 3) == INT32_MIN);
    CHECK(gk_gguf_get_arr(g, "a.u8", GK_GGUF_UINT8, &a, &err) == 1 && a.n == 3 &&
          memcmp(a.data, u8s, 3) == 0);
    CHECK(gk_gguf_get_arr(g, "a.bool", GK_GGUF_BOOL, &a, &err) == 1 && a.n == 3 &&
          memcmp(a.data, bools, 3) == 0);
    CHECK(gk_gguf_get_arr(g, "a.i64", GK_GGUF_INT64, &a, &err) == 1 && a.n == 2 &&
          memcmp(a.data, i64s, 16) == 0);
    CHECK(gk_gguf_get_arr(g, "a.f64", GK_GGUF_FLOAT64, &a, &err) == 1 && a.n == 2 &&
          memcmp(a.data, f64s, 16) == 0);
    CHECK(gk_gguf_get_arr(g, "a.empty", GK_GGUF_UINT32, &a, &err) == 1 && a.n == 0);
    CHECK(gk_gguf_get_arr(g, "a.str", GK_GGUF_STRING, &a, &err) == 1 && a.n == 3 &&
          str_is(a.strs[0], "x") && str_is(a.strs[1], "") && str_is(a.strs[2], "yz"));
    CHECK(gk_gguf_get_arr(g, "a.str0", GK_GGUF_STRING, &a, &err) == 1 && a.n == 0);
    if (align) CHECK(gk_gguf_get_u32(g, "general.alignment", &u32, &err) == 1 && u32 == align);

    /* tensors: in order, aligned, back to back with zero padding, bytes intact */
    CHECK(gk_gguf_n_tensors(g) == NT);
    const uint8_t *sect = (const uint8_t *)gk_gguf_tensor_at(g, 0)->data; /* offset 0 */
    uint64_t next = 0;
    for (int i = 0; i < NT && i < gk_gguf_n_tensors(g); i++) {
        const gk_gguf_tensor *t = gk_gguf_tensor_at(g, i);
        CHECK(t == gk_gguf_find_tensor(g, ts[i].name));
        CHECK_MSG(strcmp(t->name, ts[i].name) == 0 && t->type == ts[i].type &&
                      t->n_dims == ts[i].n_dims && memcmp(t->ne, ts[i].ne, sizeof t->ne) == 0,
                  "tensor %s", ts[i].name);
        CHECK_MSG(t->nbytes == ts[i].nbytes, "tensor %s: %llu bytes", ts[i].name,
                  (unsigned long long)t->nbytes);
        CHECK(t->offset == next && t->offset % al == 0);
        CHECK_MSG(memcmp(t->data, ts[i].data, ts[i].nbytes) == 0, "tensor %s data", t->name);
        uint64_t end = t->offset + t->nbytes;
        next = (end + al - 1) / al * al;
        for (uint64_t k = end; k < next; k++) CHECK(sect[k] == 0);
    }
    CHECK(gk_gguf_file_size(g) == gk_gguf_data_offset(g) + next);

    /* copy_kv carries every kv, nested arrays included, to a new file */
    char path2[512];
    snprintf(path2, sizeof path2, "%s/rt%u.copy.gguf", dir, align);
    w = gk_gguf_writer_new(&err);
    CHECK(gk_gguf_copy_kv(w, g, &err) == 0);
    CHECK_MSG(gk_gguf_write(w, path2, &err) == 0, "%s", err.msg);
    gk_gguf_writer_free(w);
    gk_gguf *g2 = gk_gguf_open(path2, &err);
    CHECK_MSG(g2 != NULL, "%s", err.msg);
    if (g2) {
        CHECK(gk_gguf_n_kv(g2) == gk_gguf_n_kv(g) && gk_gguf_n_tensors(g2) == 0);
        CHECK(gk_gguf_alignment(g2) == al);
        for (int64_t i = 0; i < gk_gguf_n_kv(g) && i < gk_gguf_n_kv(g2); i++) {
            const gk_gguf_kv *x = gk_gguf_kv_at(g, i), *y = gk_gguf_kv_at(g2, i);
            CHECK_MSG(strcmp(x->key, y->key) == 0 && value_eq(&x->value, &y->value), "kv %s",
                      x->key);
        }
        gk_gguf_close(g2);
    }
    unlink(path2);
    gk_gguf_close(g);
done:
    for (int i = 0; i < NT; i++) free(ts[i].data);
    unlink(path);
}

/* Writes w to dir/name, expecting failure with words, and that nothing named
 * name* is left in dir. */
static void expect_write_fail(int line, gk_gguf_writer *w, const char *dir, const char *name,
                              const char *words) {
    char path[512];
    gk_err err = {{0}};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_MSG(gk_gguf_write(w, path, &err) == -1, "line %d: write succeeded", line);
    CHECK_MSG(strstr(err.msg, words) != NULL, "line %d: '%s' lacks '%s'", line, err.msg, words);
    CHECK_MSG(strstr(err.msg, path) != NULL, "line %d: '%s' lacks the path", line, err.msg);
    CHECK_MSG(count_files(dir, name) <= 0, "line %d: files left behind", line);
}

static void test_writer_failures(const char *dir) {
    gk_err err = {{0}};
    static uint8_t src[40 * 34 + 1];
    fill(src, sizeof src, 9);
    int64_t ne[2] = {64, 10}; /* 680 bytes of q8_0 */

    /* a directory that does not exist */
    gk_gguf_writer *w = gk_gguf_writer_new(&err);
    gk_gguf_set_str(w, "general.name", "x");
    expect_write_fail(__LINE__, w, dir, "nodir/x.gguf", "No such file or directory");
    gk_gguf_writer_free(w);

    /* producers that fail, or produce too few or too many bytes */
    const char *words[4] = {NULL, "tensor 'p': boom: the source went away",
                            "tensor 'p': producer wrote 679 of its 680 bytes",
                            "tensor 'p': producer wrote more than its 680 bytes"};
    for (int mode = 1; mode <= 3; mode++) {
        for (size_t chunk = 1; chunk <= 4096; chunk *= 64) {
            producer p = {src, 680, chunk, mode, 0};
            w = gk_gguf_writer_new(&err);
            gk_gguf_set_str(w, "general.name", "x");
            CHECK(gk_gguf_add_tensor(w, "first", GK_TYPE_Q8_0, 2, ne, src, &err) == 0);
            CHECK(gk_gguf_add_tensor_fn(w, "p", GK_TYPE_Q8_0, 2, ne, produce, &p, &err) == 0);
            expect_write_fail(__LINE__, w, dir, "fail.gguf", words[mode]);
            CHECK(p.calls == 1);
            gk_gguf_writer_free(w);
        }
    }

    /* a write error (the file size limit stands in for a full disk) */
    struct rlimit old, lim;
    if (getrlimit(RLIMIT_FSIZE, &old) == 0) {
        static uint8_t big[1 << 16];
        int64_t ne1[1] = {1 << 14};
        w = gk_gguf_writer_new(&err);
        CHECK(gk_gguf_add_tensor(w, "big", GK_TYPE_F32, 1, ne1, big, &err) == 0);
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        lim.rlim_cur = 4096;
        lim.rlim_max = old.rlim_max;
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            expect_write_fail(__LINE__, w, dir, "efbig.gguf", strerror(EFBIG));
            setrlimit(RLIMIT_FSIZE, &old);
        }
        signal(SIGXFSZ, prev);
        gk_gguf_writer_free(w);
    }

    /* bad alignment values */
    w = gk_gguf_writer_new(&err);
    gk_gguf_set_u32(w, "general.alignment", 3);
    expect_write_fail(__LINE__, w, dir, "align.gguf",
                      "general.alignment = 3 is not a power of two");
    gk_gguf_set_u32(w, "general.alignment", 0);
    expect_write_fail(__LINE__, w, dir, "align.gguf", "general.alignment = 0 is not a power");
    gk_gguf_set_u32(w, "general.alignment", 4);
    expect_write_fail(__LINE__, w, dir, "align.gguf",
                      "general.alignment = 4 is not a multiple of 8");
    gk_gguf_set_u64(w, "general.alignment", 64);
    expect_write_fail(__LINE__, w, dir, "align.gguf", "has type u64 (must be u32)");
    gk_gguf_writer_free(w);

    /* bad tensors are refused when added, and make the write fail */
    int64_t ne33[1] = {33}, ne0[2] = {4, 0}, ne4[1] = {4};
    char longname[300];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    w = gk_gguf_writer_new(&err);
    CHECK(gk_gguf_add_tensor(w, "q", GK_TYPE_Q8_0, 1, ne33, src, &err) == -1);
    CHECK_ERR_HAS(err.msg, "tensor 'q': ne[0] = 33 is not a multiple of the block size 32");
    CHECK(gk_gguf_add_tensor(w, "u", 99, 1, ne4, src, &err) == -1);
    CHECK_ERR_HAS(err.msg, "tensor 'u': unknown type 99");
    CHECK(gk_gguf_add_tensor(w, "z", GK_TYPE_F32, 2, ne0, src, &err) == -1);
    CHECK_ERR_HAS(err.msg, "dimension 1 is 0");
    CHECK(gk_gguf_add_tensor(w, "d", GK_TYPE_F32, 0, ne4, src, &err) == -1);
    CHECK_ERR_HAS(err.msg, "n_dims = 0");
    CHECK(gk_gguf_add_tensor(w, longname, GK_TYPE_F32, 1, ne4, src, &err) == -1);
    CHECK_ERR_HAS(err.msg, "is 299 bytes long (at most 256)");
    CHECK(gk_gguf_add_tensor(w, "ok", GK_TYPE_F32, 1, ne4, src, &err) == 0);
    CHECK(gk_gguf_add_tensor(w, "ok", GK_TYPE_F32, 1, ne4, src, &err) == -1);
    CHECK_ERR_HAS(err.msg, "duplicate tensor 'ok'");
    CHECK(gk_gguf_add_tensor(w, "nodata", GK_TYPE_F32, 1, ne4, NULL, &err) == -1);
    expect_write_fail(__LINE__, w, dir, "bad.gguf", "an earlier call failed: gguf: tensor 'q'");
    gk_gguf_writer_free(w);

    /* bad keys and values */
    w = gk_gguf_writer_new(&err);
    CHECK(gk_gguf_set_u32(w, "", 1) == -1);
    CHECK(gk_gguf_set_str(w, "k", NULL) == -1);
    expect_write_fail(__LINE__, w, dir, "badkey.gguf", "a key is NULL or empty");
    gk_gguf_writer_free(w);
    w = gk_gguf_writer_new(&err);
    CHECK(gk_gguf_set_arr(w, "k", GK_GGUF_STRING, src, 1) == -1);
    expect_write_fail(__LINE__, w, dir, "badarr.gguf", "takes a numeric or bool type");
    gk_gguf_writer_free(w);
    gk_gguf_value v = {.type = GK_GGUF_UINT8, .v.u64 = 256};
    w = gk_gguf_writer_new(&err);
    CHECK(gk_gguf_set_value(w, "k", &v, &err) == -1);
    CHECK_ERR_HAS(err.msg, "key 'k': 256 does not fit u8");
    v = (gk_gguf_value){.type = GK_GGUF_INT8, .v.i64 = -129};
    CHECK(gk_gguf_set_value(w, "k", &v, &err) == -1);
    CHECK_ERR_HAS(err.msg, "-129 does not fit i8");
    v = (gk_gguf_value){.type = 13};
    CHECK(gk_gguf_set_value(w, "k", &v, &err) == -1);
    CHECK_ERR_HAS(err.msg, "unknown value type 13");
    gk_gguf_writer_free(w);

    /* arrays nested 9 deep are refused; 8 are written and read back */
    gk_gguf_value lv[9];
    for (int i = 8; i >= 0; i--) {
        lv[i].type = GK_GGUF_ARRAY;
        lv[i].v.arr = (gk_gguf_array){.type = i == 8 ? GK_GGUF_UINT8 : GK_GGUF_ARRAY,
                                      .n = i == 8 ? 0 : 1,
                                      .elems = i == 8 ? NULL : &lv[i + 1]};
    }
    w = gk_gguf_writer_new(&err);
    CHECK(gk_gguf_set_value(w, "deep", &lv[0], &err) == -1);
    CHECK_ERR_HAS(err.msg, "arrays nested deeper than 8");
    gk_gguf_writer_free(w);
    w = gk_gguf_writer_new(&err);
    char path[512];
    snprintf(path, sizeof path, "%s/deep8.gguf", dir);
    CHECK_MSG(gk_gguf_set_value(w, "deep", &lv[1], &err) == 0, "%s", err.msg);
    CHECK_MSG(gk_gguf_write(w, path, &err) == 0, "%s", err.msg);
    gk_gguf_writer_free(w);
    gk_gguf *g = gk_gguf_open(path, &err);
    CHECK_MSG(g && value_eq(gk_gguf_find(g, "deep"), &lv[1]), "%s", err.msg);
    gk_gguf_close(g);

    /* writing over an existing file replaces it */
    w = gk_gguf_writer_new(&err);
    gk_gguf_set_str(w, "general.name", "second");
    CHECK_MSG(gk_gguf_write(w, path, &err) == 0, "%s", err.msg);
    gk_gguf_writer_free(w);
    g = gk_gguf_open(path, &err);
    gk_str s = {0};
    CHECK(g && gk_gguf_get_str(g, "general.name", &s, &err) == 1 && str_is(s, "second"));
    CHECK(g && gk_gguf_find(g, "deep") == NULL);
    gk_gguf_close(g);
    unlink(path);
}

/* Lookups among many names, written in an order that is not sorted. */
static void test_many_names(const char *dir) {
    enum { N = 500 };
    static float data[N];
    char path[512], name[32];
    gk_err err = {{0}};
    int64_t ne[1] = {1};
    snprintf(path, sizeof path, "%s/many.gguf", dir);
    gk_gguf_writer *w = gk_gguf_writer_new(&err);
    for (int i = 0; i < N; i++) {
        int k = (i * 7919) % N;
        data[k] = (float)k;
        snprintf(name, sizeof name, "blk.%d.w", k);
        CHECK(gk_gguf_add_tensor(w, name, GK_TYPE_F32, 1, ne, &data[k], &err) == 0);
        snprintf(name, sizeof name, "key.%d", k);
        CHECK(gk_gguf_set_u32(w, name, (uint32_t)k) == 0);
    }
    CHECK_MSG(gk_gguf_write(w, path, &err) == 0, "%s", err.msg);
    gk_gguf_writer_free(w);
    gk_gguf *g = gk_gguf_open(path, &err);
    CHECK_MSG(g != NULL, "%s", err.msg);
    for (int k = 0; g && k < N; k++) {
        uint32_t v = 0;
        snprintf(name, sizeof name, "blk.%d.w", k);
        const gk_gguf_tensor *t = gk_gguf_find_tensor(g, name);
        CHECK_MSG(t && strcmp(t->name, name) == 0 && *(const float *)t->data == (float)k, "%s",
                  name);
        snprintf(name, sizeof name, "key.%d", k);
        CHECK(gk_gguf_get_u32(g, name, &v, &err) == 1 && v == (uint32_t)k);
    }
    CHECK(g && gk_gguf_find_tensor(g, "blk.500.w") == NULL && gk_gguf_find(g, "key.") == NULL);
    gk_gguf_close(g);
    unlink(path);
}

/* gk_gguf_open's own failures name the path. */
static void test_open_errors(const char *dir) {
    char path[512];
    gk_err err = {{0}};
    snprintf(path, sizeof path, "%s/missing.gguf", dir);
    CHECK(gk_gguf_open(path, &err) == NULL);
    CHECK_ERR_HAS(err.msg, path);
    CHECK(gk_gguf_open(dir, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "not a regular file");

    snprintf(path, sizeof path, "%s/short.gguf", dir);
    base_info info;
    bb b = base_file(&info);
    b.p[8] = 0;  /* n_tensors = 0 */
    b.p[16] = 1; /* n_kv = 1, so that the key is what is cut short */
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b.p, 1, 40, f) == 40);
    if (f) fclose(f);
    CHECK(gk_gguf_open(path, &err) == NULL);
    char want[600];
    snprintf(
        want, sizeof want,
        "%s: gguf: string length 20 at byte 24 exceeds the 8 bytes left, reading the key of kv 0",
        path);
    CHECK_ERR_HAS(err.msg, want);
    unlink(path);
    free(b.p);
    CHECK(strcmp(gk_gguf_type_name(GK_GGUF_FLOAT32), "f32") == 0);
    CHECK(strcmp(gk_gguf_type_name(GK_GGUF_STRING), "string") == 0);
    CHECK(strcmp(gk_gguf_type_name(13), "?") == 0);
}

/* ---------------------------------------------- llama.cpp's real files --- */

static void test_llamacpp_files(const char *dir) {
    const char *data = gk_test_data_dir();
    if (!data) {
        fprintf(stderr, "SKIP: the llama.cpp vocabulary files (no test data)\n");
        return;
    }
    char path[1024];
    gk_err err = {{0}};
    gk_str s;
    gk_gguf_array a;
    uint32_t u32;
    float f32;
    bool bo;

    snprintf(path, sizeof path, "%s/llamacpp-vocab/ggml-vocab-gpt-2.gguf", data);
    gk_gguf *g = gk_gguf_open(path, &err);
    CHECK_MSG(g != NULL, "%s", err.msg);
    if (g) {
        CHECK(gk_gguf_version(g) == 3 && gk_gguf_n_kv(g) == 16 && gk_gguf_n_tensors(g) == 0);
        CHECK(gk_gguf_file_size(g) == 1766807);
        CHECK(gk_gguf_get_str(g, "general.architecture", &s, &err) == 1 && str_is(s, "gpt2"));
        CHECK(gk_gguf_get_str(g, "general.name", &s, &err) == 1 && str_is(s, "gpt-2"));
        CHECK(gk_gguf_get_str(g, "tokenizer.ggml.model", &s, &err) == 1 && str_is(s, "gpt2"));
        CHECK(gk_gguf_get_str(g, "tokenizer.ggml.pre", &s, &err) == 1 && str_is(s, "gpt-2"));
        CHECK(gk_gguf_get_u32(g, "gpt2.context_length", &u32, &err) == 1 && u32 == 1024);
        CHECK(gk_gguf_get_u32(g, "gpt2.block_count", &u32, &err) == 1 && u32 == 12);
        CHECK(gk_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u32, &err) == 1 && u32 == 50256);
        CHECK(gk_gguf_get_f32(g, "gpt2.attention.layer_norm_epsilon", &f32, &err) == 1 &&
              f32 == 1e-5f);
        CHECK(gk_gguf_get_arr(g, "tokenizer.ggml.tokens", GK_GGUF_STRING, &a, &err) == 1);
        CHECK(a.n == 50257 && str_is(a.strs[0], "!") && str_is(a.strs[1], "\"") &&
              str_is(a.strs[300], "\xc4\xa0l") && str_is(a.strs[50256], "<|endoftext|>"));
        CHECK(gk_gguf_get_arr(g, "tokenizer.ggml.token_type", GK_GGUF_INT32, &a, &err) == 1);
        CHECK(a.n == 50257 && gk_gguf_arr_i32(&a, 0) == 1 && gk_gguf_arr_i32(&a, 50256) == 3);
        CHECK(gk_gguf_get_arr(g, "tokenizer.ggml.merges", GK_GGUF_STRING, &a, &err) == 1);
        CHECK(a.n == 50000 && str_is(a.strs[0], "\xc4\xa0 t") &&
              str_is(a.strs[49999], "\xc4\xa0g azed"));
        gk_gguf_close(g);
    }

    snprintf(path, sizeof path, "%s/llamacpp-vocab/ggml-vocab-llama-spm.gguf", data);
    g = gk_gguf_open(path, &err);
    CHECK_MSG(g != NULL, "%s", err.msg);
    if (!g) return;
    CHECK(gk_gguf_version(g) == 3 && gk_gguf_n_kv(g) == 22 && gk_gguf_n_tensors(g) == 0);
    CHECK(gk_gguf_get_str(g, "general.architecture", &s, &err) == 1 && str_is(s, "llama"));
    CHECK(gk_gguf_get_str(g, "tokenizer.ggml.model", &s, &err) == 1 && str_is(s, "llama"));
    CHECK(gk_gguf_get_u32(g, "llama.vocab_size", &u32, &err) == 1 && u32 == 32000);
    CHECK(gk_gguf_get_u32(g, "llama.rope.dimension_count", &u32, &err) == 1 && u32 == 128);
    CHECK(gk_gguf_get_u32(g, "tokenizer.ggml.unknown_token_id", &u32, &err) == 1 && u32 == 0);
    CHECK(gk_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bo, &err) == 1 && bo);
    CHECK(gk_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &bo, &err) == 1 && !bo);
    CHECK(gk_gguf_get_arr(g, "tokenizer.ggml.tokens", GK_GGUF_STRING, &a, &err) == 1);
    CHECK(a.n == 32000 && str_is(a.strs[0], "<unk>") && str_is(a.strs[1], "<s>") &&
          str_is(a.strs[3], "<0x00>") && str_is(a.strs[300], "et") &&
          str_is(a.strs[31999], "\xe7\xbb\x99"));
    CHECK(gk_gguf_get_arr(g, "tokenizer.ggml.scores", GK_GGUF_FLOAT32, &a, &err) == 1);
    CHECK(a.n == 32000 && gk_gguf_arr_f32(&a, 1) == 0.0f && gk_gguf_arr_f32(&a, 300) == -41.0f &&
          gk_gguf_arr_f32(&a, 1000) == -741.0f && gk_gguf_arr_f32(&a, 31999) == -31740.0f);
    CHECK(gk_gguf_get_arr(g, "tokenizer.ggml.token_type", GK_GGUF_INT32, &a, &err) == 1);
    CHECK(a.n == 32000 && gk_gguf_arr_i32(&a, 0) == 2 && gk_gguf_arr_i32(&a, 1) == 3 &&
          gk_gguf_arr_i32(&a, 3) == 6 && gk_gguf_arr_i32(&a, 300) == 1);

    /* copying every kv gives a file whose kvs equal the original's */
    char out[512];
    snprintf(out, sizeof out, "%s/spm-copy.gguf", dir);
    gk_gguf_writer *w = gk_gguf_writer_new(&err);
    CHECK(gk_gguf_copy_kv(w, g, &err) == 0);
    CHECK_MSG(gk_gguf_write(w, out, &err) == 0, "%s", err.msg);
    gk_gguf_writer_free(w);
    gk_gguf *g2 = gk_gguf_open(out, &err);
    CHECK_MSG(g2 != NULL, "%s", err.msg);
    if (g2) {
        CHECK(gk_gguf_n_kv(g2) == 22);
        for (int64_t i = 0; i < 22 && i < gk_gguf_n_kv(g2); i++) {
            const gk_gguf_kv *x = gk_gguf_kv_at(g, i), *y = gk_gguf_kv_at(g2, i);
            CHECK_MSG(strcmp(x->key, y->key) == 0 && value_eq(&x->value, &y->value), "kv %s",
                      x->key);
        }
        /* a file with no tensors is its header, padded to the alignment */
        CHECK(gk_gguf_file_size(g2) == (gk_gguf_file_size(g) + 31) / 32 * 32);
        gk_gguf_close(g2);
    }
    unlink(out);
    gk_gguf_close(g);
}

int main(void) {
    const char *dir = gk_test_tmp_dir();
    test_base_file();
    test_truncation();
    test_bad_header();
    test_bad_kv();
    test_bad_tensors();
    roundtrip(dir, 0);
    roundtrip(dir, 64);
    test_writer_failures(dir);
    test_many_names(dir);
    test_open_errors(dir);
    test_llamacpp_files(dir);
    rmdir(dir);
    return gk_test_done();
}
