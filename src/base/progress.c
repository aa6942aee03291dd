/*
 * progress.c - a text progress bar with rate and ETA. See progress.h.
 */
#include "base/progress.h"

#include "base/base.h"

#include <string.h>
#include <unistd.h>

#define BAR_WIDTH 24
#define TTY_INTERVAL 0.1   /* seconds between redraws on a terminal */
#define PLAIN_INTERVAL 10. /* seconds between lines on a pipe or file */

void gk_format_bytes(uint64_t n, char *buf, size_t cap) {
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, cap, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, unit[u]);
}

void gk_format_duration(double seconds, char *buf, size_t cap) {
    if (!(seconds >= 0) || seconds > 359999) { /* NaN, negative or 100 h and more */
        snprintf(buf, cap, "--:--");
        return;
    }
    unsigned s = (unsigned)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, cap, "%u:%02u:%02u", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, cap, "%u:%02u", s / 60, s % 60);
}

void gk_progress_init(gk_progress *p, FILE *out) {
    memset(p, 0, sizeof *p);
    p->out = out;
    p->tty = out && isatty(fileno(out));
}

static void draw(gk_progress *p, bool final) {
    double now = gk_time_s(), dt = now - p->t_start;
    double frac = p->total ? (double)p->done / (double)p->total : 1.0;
    if (frac > 1) frac = 1;
    double rate = dt > 0 ? (double)p->done / dt : 0;
    char done_s[32], total_s[32], eta[32], bar[BAR_WIDTH + 1];
    gk_format_bytes(p->done, done_s, sizeof done_s);
    gk_format_bytes(p->total, total_s, sizeof total_s);
    if (final)
        gk_format_duration(dt, eta, sizeof eta);
    else
        gk_format_duration(
            rate > 0 && dt >= 0.5 && p->done <= p->total ? (double)(p->total - p->done) / rate : -1,
            eta, sizeof eta);
    int fill = (int)(frac * BAR_WIDTH);
    for (int i = 0; i < BAR_WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[BAR_WIDTH] = 0;
    char rate_s[32] = "-- MB/s"; /* the first half second says nothing about the rate */
    if (final || dt >= 0.5) snprintf(rate_s, sizeof rate_s, "%.0f MB/s", rate / 1e6);
    fprintf(p->out, "%s%-8s [%s] %5.1f%%  %s / %s  %s  %s %s%s%s", p->tty ? "\r" : "", p->phase,
            bar, 100 * frac, done_s, total_s, rate_s, final ? "in" : "ETA", eta,
            p->tty ? "\033[K" : "", final || !p->tty ? "\n" : "");
    fflush(p->out);
    p->drawn = p->tty && !final;
    p->t_last = now;
}

void gk_progress_finish(gk_progress *p) {
    if (!p->out || !p->phase[0]) return;
    draw(p, true);
    p->phase[0] = 0;
}

void gk_progress_update(gk_progress *p, const char *phase, uint64_t done, uint64_t total) {
    if (!p->out) return;
    if (strncmp(p->phase, phase, sizeof p->phase - 1) != 0) {
        gk_progress_finish(p);
        snprintf(p->phase, sizeof p->phase, "%s", phase);
        p->t_start = p->t_last = gk_time_s();
        p->done = 0;
    }
    p->done = done;
    p->total = total;
    double now = gk_time_s();
    if (now - p->t_last >= (p->tty ? TTY_INTERVAL : PLAIN_INTERVAL) || (p->tty && !p->drawn))
        draw(p, false);
}

void gk_progress_cb(void *ud, const char *phase, uint64_t done, uint64_t total) {
    gk_progress_update(ud, phase, done, total);
}
