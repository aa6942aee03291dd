/* gk_test.c - see gk_test.h. */
#include "gk_test.h"

#include <sys/stat.h>
#include <unistd.h>

int gk_test_failures = 0;

const char *gk_test_data_dir(void) {
    const char *d = getenv("GK_TESTDATA");
    struct stat st;
    if (!d || stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "SKIP: ../shared/testdata not found (GK_TESTDATA=%s)\n", d ? d : "");
        return NULL;
    }
    return d;
}

const char *gk_test_tmp_dir(void) {
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/gk_test_XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    return dir;
}

int gk_test_done(void) {
    if (gk_test_failures) {
        fprintf(stderr, "%d check(s) failed\n", gk_test_failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
