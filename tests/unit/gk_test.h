/*
 * gk_test.h - a minimal test harness: CHECK macros that count failures and keep
 * going, a skip exit code (77) that ctest reports as skipped, and helpers to find
 * test data and scratch directories.
 */
#ifndef GK_TEST_H
#define GK_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int gk_test_failures;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
            gk_test_failures++;                                                                \
        }                                                                                      \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                   \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            gk_test_failures++;                                                                \
        }                                                                                      \
    } while (0)

/* Checks that an error message contains a substring. */
#define CHECK_ERR_HAS(msg, sub) CHECK_MSG(strstr((msg), (sub)) != NULL, "'%s' lacks '%s'", (msg), (sub))

#define GK_TEST_SKIP 77

/* Directory of ../shared/testdata, or NULL (with a message) when absent. */
const char *gk_test_data_dir(void);
/* A fresh scratch directory for this test (removed by the caller if wanted). */
const char *gk_test_tmp_dir(void);
/* Returns the exit status: 0 if no CHECK failed. */
int gk_test_done(void);

#endif
