/*
 * replay.c - runs a fuzz target's LLVMFuzzerTestOneInput once on every file of
 * the directories (or files) named on the command line, without libFuzzer.
 *
 * Linked with each target as replay_<target>, in every build (release and
 * sanitizer), so that the committed corpus - past findings included - is a
 * regression test: an input that crashes, traps or trips a sanitizer fails it.
 * Each input is read into a buffer of exactly its size, as libFuzzer passes it,
 * so that ASan sees a read past its end. Exits 77 (skip) when there is no input.
 */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        fclose(f);
        fprintf(stderr, "replay: cannot stat %s\n", path);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        fprintf(stderr, "replay: cannot read %s\n", path);
        return -1;
    }
    fclose(f);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv) {
    long count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) continue; /* no corpus yet: counted as no inputs */
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i]) != 0) return 1;
            count++;
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[i], &names, NULL, by_name);
        if (n < 0) {
            fprintf(stderr, "replay: cannot list %s\n", argv[i]);
            return 1;
        }
        int rc = 0;
        for (int k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
            struct stat fs;
            if (rc == 0 && names[k]->d_name[0] != '.' && stat(path, &fs) == 0 &&
                S_ISREG(fs.st_mode)) {
                rc = run_file(path);
                count++;
            }
            free(names[k]);
        }
        free(names);
        if (rc) return 1;
    }
    if (count == 0) {
        printf("SKIP: no inputs in the corpus (a target's seeds belong in tests/fuzz/corpus/)\n");
        return 77;
    }
    printf("replay: %ld inputs ran clean\n", count);
    return 0;
}
