/*
 * progress.h - progress reporting for long jobs (convert, quantize).
 *
 * The library never prints: a long job takes a gk_progress_fn and calls it
 * with how far it is. The tool passes gk_progress_cb with a gk_progress bar
 * that draws on a stream of its choosing:
 *
 *   convert  [##########..........]  48.1%  12.3 GiB / 25.6 GiB  812 MB/s  ETA 0:17
 *
 * On a terminal the bar redraws in place at most ten times a second; on a
 * pipe or a file it writes a plain line every ten seconds, so logs stay short.
 */
#ifndef GK_PROGRESS_H
#define GK_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Reports that `done` of `total` units (bytes) of a phase ("convert",
 * "verify", ...) are finished. Called from one thread at a time. */
typedef void (*gk_progress_fn)(void *ud, const char *phase, uint64_t done, uint64_t total);

typedef struct gk_progress {
    FILE *out; /* NULL: silent */
    bool tty;
    char phase[32];
    uint64_t total, done;
    double t_start, t_last;
    bool drawn; /* a partial line is on screen */
} gk_progress;

/* Prepares a bar that draws on out (NULL for none). */
void gk_progress_init(gk_progress *p, FILE *out);
/* Moves to `done` of `total` in `phase`; a new phase finishes the previous one. */
void gk_progress_update(gk_progress *p, const char *phase, uint64_t done, uint64_t total);
/* Ends the current phase with a summary line (elapsed time and mean rate). */
void gk_progress_finish(gk_progress *p);
/* A gk_progress_fn whose ud is a gk_progress *. */
void gk_progress_cb(void *ud, const char *phase, uint64_t done, uint64_t total);

/* "512 B", "1.5 KiB", "12.3 GiB". */
void gk_format_bytes(uint64_t n, char *buf, size_t cap);
/* "0:07", "12:34", "1:02:03". */
void gk_format_duration(double seconds, char *buf, size_t cap);

#endif
