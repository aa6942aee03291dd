/*
 * fuzz_memfile.h - the fuzz input as a file: loaders that map a path (models,
 * per-rank shards) read it from a memory file named by /proc/self/fd.
 * Include after defining _GNU_SOURCE (memfd_create).
 */
#ifndef GK_FUZZ_MEMFILE_H
#define GK_FUZZ_MEMFILE_H

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

/* Writes data to this process's one memory file and puts its path in path. */
static int memfile(const uint8_t *data, size_t size, char *path, size_t cap) {
    static int fd = -1;
    if (fd < 0) fd = memfd_create("fuzz_input", 0);
    if (fd < 0 || ftruncate(fd, 0) != 0) return -1;
    for (size_t off = 0; off < size;) {
        ssize_t w = pwrite(fd, data + off, size - off, (off_t)off);
        if (w <= 0) return -1;
        off += (size_t)w;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return 0;
}

#endif
