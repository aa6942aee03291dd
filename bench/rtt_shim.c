/*
 * rtt_shim.c - an LD_PRELOAD library for bench/rpc_netns.sh: the link latency
 * that this kernel cannot add (no netem), charged to the client of a
 * request/response protocol. The first recv() on a socket after a send() on it
 * returns GK_RTT_LAT_US * 2 microseconds after its data came (the request's trip
 * and the response's: on the link the server would have started that much later
 * and its answer arrived that much later still); messages sent without waiting
 * for an answer
 * (llama.cpp RPC's set_tensor and graph_compute) cost nothing extra, as on a
 * link they travel while the client goes on. Build: cc -O2 -shared -fPIC -o
 * rtt_shim.so rtt_shim.c -ldl. A bench helper, not part of grok.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#define MAX_FD 4096

static char sent[MAX_FD]; /* a send() since the last recv() on this fd */
static long lat_ns = -1;
static unsigned long waits;

static long lat(void) {
    if (lat_ns < 0) {
        const char *s = getenv("GK_RTT_LAT_US");
        lat_ns = s ? (long)(atof(s) * 1000.0) : 0;
    }
    return lat_ns;
}

ssize_t send(int fd, const void *buf, size_t n, int flags) {
    static ssize_t (*real)(int, const void *, size_t, int);
    if (!real) real = (ssize_t(*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
    if (fd >= 0 && fd < MAX_FD) sent[fd] = 1;
    return real(fd, buf, n, flags);
}

ssize_t recv(int fd, void *buf, size_t n, int flags) {
    static ssize_t (*real)(int, void *, size_t, int);
    if (!real) real = (ssize_t(*)(int, void *, size_t, int))dlsym(RTLD_NEXT, "recv");
    ssize_t got = real(fd, buf, n, flags);
    if (got > 0 && fd >= 0 && fd < MAX_FD && sent[fd] && lat() > 0) {
        sent[fd] = 0;
        waits++;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_nsec += 2 * lat();
        while (t.tv_nsec >= 1000000000L) t.tv_nsec -= 1000000000L, t.tv_sec++;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
    }
    return got;
}

/* GK_RTT_VERBOSE: how many round trips were charged, on stderr at exit */
__attribute__((destructor)) static void report(void) {
    if (getenv("GK_RTT_VERBOSE")) {
        char msg[96];
        int len = snprintf(msg, sizeof msg, "rtt_shim: %lu round trips of 2 x %ld us\n", waits,
                           lat() / 1000);
        if (len > 0) write(2, msg, (size_t)len);
    }
}
