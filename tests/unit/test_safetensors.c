/*
 * test_safetensors.c - tests of the safetensors reader.
 *
 *   - a hand-built file with BF16, F16 and F32 tensors, a scalar, an empty
 *     tensor, metadata and a space-padded header, read back field by field from
 *     memory and from disk (pread and mmap);
 *   - one broken header per check the reader makes, each failing with a message
 *     that names the problem;
 *   - the valid file truncated at every length and with random byte flips: it
 *     must fail cleanly or parse, never crash (the buffers are exact-size
 *     allocations so AddressSanitizer sees any overread).
 */
#include "gk_test.h"

#include "format/safetensors.h"

#include <stdint.h>
#include <unistd.h>

/* A safetensors file: header JSON (padded with `pad` spaces) + data. Returns an
 * exact-size malloc'd buffer. */
static uint8_t *make_file(const char *json, size_t pad, const void *data, size_t n_data,
                          size_t *size) {
    size_t hl = strlen(json) + pad;
    *size = 8 + hl + n_data;
    uint8_t *b = malloc(*size ? *size : 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, strlen(json));
    memset(b + 8 + strlen(json), ' ', pad);
    if (n_data) memcpy(b + 8 + hl, data, n_data);
    return b;
}

static const char *GOOD_JSON =
    "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"
    "\"w.bf16\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
    "\"w.f32\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]},"
    "\"w.f16\":{\"dtype\":\"F16\",\"shape\":[1,1,2],\"data_offsets\":[24,28]},"
    "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[28,32]},"
    "\"empty\":{\"dtype\":\"BF16\",\"shape\":[0,4],\"data_offsets\":[32,32]}}";

static uint8_t good_data[32];

static void fill_good_data(void) {
    for (int i = 0; i < 32; i++) good_data[i] = (uint8_t)(i * 7 + 1);
}

static void check_good(gk_st_file *f) {
    CHECK(gk_st_n_tensors(f) == 5);
    const gk_st_tensor *t = gk_st_find(f, "w.bf16");
    CHECK(t && t->type == GK_TYPE_BF16 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    CHECK(t && t->nbytes == 12 && gk_st_numel(t) == 6);
    /* Header order is kept. */
    CHECK(!strcmp(gk_st_tensor_at(f, 0)->name, "w.bf16"));
    CHECK(!strcmp(gk_st_tensor_at(f, 4)->name, "empty"));
    CHECK(gk_st_tensor_at(f, 5) == NULL && gk_st_tensor_at(f, -1) == NULL);
    t = gk_st_find(f, "w.f16");
    CHECK(t && t->type == GK_TYPE_F16 && t->n_dims == 3 && t->shape[2] == 2 && t->nbytes == 4);
    t = gk_st_find(f, "scalar");
    CHECK(t && t->n_dims == 0 && gk_st_numel(t) == 1 && t->nbytes == 4);
    t = gk_st_find(f, "empty");
    CHECK(t && t->nbytes == 0 && gk_st_numel(t) == 0);
    CHECK(gk_st_find(f, "nope") == NULL);
    CHECK(gk_st_metadata(f, "format") && !strcmp(gk_st_metadata(f, "format"), "pt"));
    CHECK(gk_st_metadata(f, "missing") == NULL);

    gk_err err;
    uint8_t buf[12];
    t = gk_st_find(f, "w.f32");
    CHECK(gk_st_read(f, t, 0, buf, 12, &err) == 0 && !memcmp(buf, good_data + 12, 12));
    CHECK(gk_st_read(f, t, 4, buf, 8, &err) == 0 && !memcmp(buf, good_data + 16, 8));
    CHECK(gk_st_read(f, t, 4, buf, 9, &err) == -1);
    CHECK_ERR_HAS(err.msg, "outside");
    CHECK(gk_st_read(f, t, UINT64_MAX, buf, 2, &err) == -1);
    const uint8_t *p = gk_st_data(f, t, &err);
    CHECK(p && !memcmp(p, good_data + 12, 12));
}

static void test_good(void) {
    fill_good_data();
    size_t n;
    uint8_t *b = make_file(GOOD_JSON, 7, good_data, sizeof good_data, &n);
    gk_err err;
    gk_st_file *f = gk_st_open_memory(b, n, &err);
    CHECK_MSG(f != NULL, "%s", err.msg);
    if (f) {
        check_good(f);
        gk_st_close(f);
    }

    /* The same bytes on disk: pread and mmap paths. */
    char path[512];
    snprintf(path, sizeof path, "%s/good.safetensors", gk_test_tmp_dir());
    FILE *fp = fopen(path, "wb");
    fwrite(b, 1, n, fp);
    fclose(fp);
    f = gk_st_open(path, &err);
    CHECK_MSG(f != NULL, "%s", err.msg);
    if (f) {
        CHECK(!strcmp(gk_st_path(f), path) && gk_st_file_size(f) == n);
        check_good(f);
        /* The file shrinks after it was opened: reads fail, they do not crash. */
        CHECK(truncate(path, (off_t)(n - 8)) == 0);
        uint8_t buf[12];
        CHECK(gk_st_read(f, gk_st_find(f, "w.f32"), 0, buf, 12, &err) == 0);
        CHECK(gk_st_read(f, gk_st_find(f, "scalar"), 0, buf, 4, &err) == -1);
        CHECK_ERR_HAS(err.msg, "truncated");
        gk_st_close(f);
        /* Reopened, the truncation is caught at open. */
        CHECK(gk_st_open(path, &err) == NULL);
        CHECK_ERR_HAS(err.msg, "truncated file");
    }
    unlink(path);
    CHECK(gk_st_open(path, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "cannot open");
    free(b);
}

/* One broken header: must fail with `expect` in the message. */
static void bad(const char *json, size_t n_data, const char *expect) {
    size_t n;
    uint8_t data[64] = {0};
    uint8_t *b = make_file(json, 0, data, n_data, &n);
    gk_err err = {{0}};
    gk_st_file *f = gk_st_open_memory(b, n, &err);
    CHECK_MSG(f == NULL, "accepted: %s", json);
    if (f)
        gk_st_close(f);
    else
        CHECK_MSG(strstr(err.msg, expect) != NULL, "'%s' lacks '%s' (json %s)", err.msg, expect,
                  json);
    free(b);
}

#define T(body) "{\"t\":{" body "}}"

static void test_bad_headers(void) {
    bad("[1,2]", 0, "not a JSON object");
    bad("{\"a\":", 0, "not a JSON object");
    bad("{} x", 0, "unexpected bytes after");
    bad("{\"t\":5}", 0, "not an object");
    bad(T("\"shape\":[1],\"data_offsets\":[0,4]"), 4, "needs \"dtype\"");
    bad(T("\"dtype\":\"F32\",\"data_offsets\":[0,4]"), 4, "needs \"dtype\"");
    bad(T("\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,4]"), 4, "unknown dtype 'Q9'");
    bad(T("\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]"), 4, "dtype I8 is not supported");
    bad(T("\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]"), 4,
        "dtype F8_E4M3 is not supported");
    bad(T("\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]"), 4, "shape[0]");
    bad(T("\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]"), 4, "shape[0]");
    bad(T("\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]"), 4, "shape[0]");
    bad(T("\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]"), 4,
        "9 dimensions");
    bad(T("\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]"), 4,
        "overflows");
    bad(T("\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]"), 4, "shape[0]");
    bad(T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]"), 4, "data_offsets must be");
    bad(T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]"), 4, "data_offsets must be");
    bad(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]"), 8, "shape and dtype need 8");
    bad(T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"), 4, "truncated file");
    bad(T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9007199254740000,9007199254740004]"),
        4, "truncated file");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
        12, "overlap");
    bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
        8, "appears twice");
    bad("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty name");
    bad("{\"__metadata__\":{\"k\":1}}", 0, "is not a string");
    bad("{\"__metadata__\":[]}", 0, "not an object");
    bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "appears twice");

    /* The length prefix itself. */
    gk_err err;
    uint8_t small[5] = {0};
    CHECK(gk_st_open_memory(small, sizeof small, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "too short");
    uint8_t *b = malloc(12);
    memset(b, 0, 12);
    b[0] = 200; /* header of 200 bytes in a 12-byte file */
    CHECK(gk_st_open_memory(b, 12, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "exceeds the file");
    b[0] = 1; /* one byte cannot hold "{}" */
    CHECK(gk_st_open_memory(b, 12, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "out of range");
    free(b);
}

/* Every prefix of the good file and many random corruptions: no crash. */
static void test_fuzz(void) {
    fill_good_data();
    size_t n;
    uint8_t *good = make_file(GOOD_JSON, 3, good_data, sizeof good_data, &n);
    gk_err err;
    int parsed = 0;
    for (size_t len = 0; len < n; len++) {
        uint8_t *b = malloc(len ? len : 1);
        memcpy(b, good, len);
        gk_st_file *f = gk_st_open_memory(b, len, &err);
        if (f) { /* only possible once the header is complete and data is dropped */
            parsed++;
            gk_st_close(f);
        }
        free(b);
    }
    CHECK(parsed == 0); /* the last tensor ends at the last byte */
    uint64_t s = 12345;
    for (int it = 0; it < 3000; it++) {
        uint8_t *b = malloc(n);
        memcpy(b, good, n);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            b[(s >> 33) % n] ^= (uint8_t)(1u << ((s >> 20) % 8));
        }
        gk_st_file *f = gk_st_open_memory(b, n, &err);
        if (f) {
            /* Whatever parsed is consistent: every tensor lies inside the file. */
            for (int64_t i = 0; i < gk_st_n_tensors(f); i++) {
                const gk_st_tensor *t = gk_st_tensor_at(f, i);
                CHECK(t->offset + t->nbytes <= n);
                CHECK(gk_st_find(f, t->name) != NULL);
            }
            gk_st_close(f);
        }
        free(b);
    }
    free(good);
}

int main(void) {
    test_good();
    test_bad_headers();
    test_fuzz();
    return gk_test_done();
}
