/*
 * hold_open.c - an LD_PRELOAD library for tests/serve/loading.test.mjs: an open()
 * of the path named by GK_HOLD_OPEN waits until the file named by
 * GK_HOLD_OPEN_RELEASE exists. A test can so watch `grok serve` for as long as it
 * likes while the model is still loading, and then let the load go on. Every
 * other open() passes straight through.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef int (*open_fn)(const char *, int, ...);

static void hold(const char *path) {
    const char *held = getenv("GK_HOLD_OPEN"), *release = getenv("GK_HOLD_OPEN_RELEASE");
    if (!held || !release || !path || strcmp(path, held) != 0) return;
    struct stat st;
    const struct timespec tick = {0, 10 * 1000 * 1000};
    while (stat(release, &st) != 0) nanosleep(&tick, NULL);
}

/* The mode argument exists only with O_CREAT or O_TMPFILE. */
#define MODE_ARG(flags)                                                                            \
    mode_t mode = 0;                                                                               \
    if ((flags) & (O_CREAT | O_TMPFILE)) {                                                         \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode = (mode_t)va_arg(ap, unsigned);                                                       \
        va_end(ap);                                                                                \
    }

int open(const char *path, int flags, ...) {
    MODE_ARG(flags);
    hold(path);
    open_fn real = (open_fn)dlsym(RTLD_NEXT, "open");
    return real(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    MODE_ARG(flags);
    hold(path);
    open_fn real = (open_fn)dlsym(RTLD_NEXT, "open64");
    return real(path, flags, mode);
}
