/* bench_common.h: shared helpers of the hakmem benchmark workloads.
 *
 * Every workload is a standalone C program that only uses the standard
 * allocation API (malloc/free/calloc/realloc), so that the allocator under
 * test is chosen at run time with LD_PRELOAD. Each program:
 *   - takes the mode (`quick` or `full`) as its first argument;
 *     the environment variable BENCH_SCALE (a float, default 1) multiplies
 *     the iteration counts (for development only);
 *   - is deterministic: all randomness comes from splitmix64 with fixed seeds;
 *   - prints `RESULT name=<workload> metric=<metric> value=<float>`;
 *   - prints `PEAK_RSS_KIB=<n>`, its VmHWM from /proc/self/status;
 *   - prints `EXPECT_MALLOC_CALLS=<n>`, a lower bound of the allocation calls
 *     it made (the runner compares it with hakmem's own counter);
 *   - with BENCH_RSS_SAMPLE_MS=<n> in the environment, samples its resident
 *     set every n ms from a thread of its own (reading /proc/self/statm
 *     with system calls only, never through the allocator under test) and
 *     prints `MEAN_RSS_KIB=<n>`, the mean over the run;
 *   - at exit prints `ALLOCATOR_SO=<file>` (and ALLOCATOR_SO_FREE=...), the
 *     shared object that defines `malloc` (and `free`) as resolved by the
 *     dynamic linker in this very process: the proof of which allocator ran.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <sched.h>

/* ---- PRNG: splitmix64 ---- */
typedef struct { uint64_t s; } rng_t;

static inline uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline rng_t rng_seed(uint64_t seed) { rng_t r = { seed * 0x2545F4914F6CDD1Dull + 1 }; return r; }
/* uniform in [0, n) (n > 0), multiply-shift: no division on the hot path */
static inline uint64_t rng_below(rng_t *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}
/* uniform in [lo, hi] */
static inline uint64_t rng_range(rng_t *r, uint64_t lo, uint64_t hi) {
    return lo + rng_below(r, hi - lo + 1);
}
/* log-uniform in [lo, hi]: a uniform octave, then uniform inside it */
static inline size_t rng_logsize(rng_t *r, size_t lo, size_t hi) {
    int a = 63 - __builtin_clzll(lo), b = 63 - __builtin_clzll(hi);
    int e = a + (int)rng_below(r, (uint64_t)(b - a + 1));
    size_t base = (size_t)1 << e;
    size_t s = base + rng_below(r, base);
    if (s < lo) s = lo;
    if (s > hi) s = hi;
    return s;
}

/* ---- time ---- */
static inline double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- mean resident set (BENCH_RSS_SAMPLE_MS) ---- */
#include <fcntl.h>
#include <unistd.h>
static volatile unsigned long long rss_sum_kib, rss_samples;
static long rss_page_kib;

static long current_rss_kib(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = buf;
    while (*p && *p != ' ') p++; /* skip the size field */
    return atol(p) * rss_page_kib;
}

static void *rss_sampler(void *arg) {
    long ms = (long)(intptr_t)arg;
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    for (;;) {
        long kib = current_rss_kib();
        if (kib >= 0) {
            rss_sum_kib += (unsigned long long)kib;
            rss_samples++;
        }
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void start_rss_sampler(void) {
    const char *s = getenv("BENCH_RSS_SAMPLE_MS");
    if (!s || atol(s) <= 0) return;
    rss_page_kib = sysconf(_SC_PAGESIZE) / 1024;
    pthread_t t;
    if (pthread_create(&t, NULL, rss_sampler, (void *)(intptr_t)atol(s)) == 0) pthread_detach(t);
}

/* ---- mode ---- */
static int bench_quick = 1;
static double bench_scale = 1.0;

static void bench_init(int argc, char **argv, const char *usage) {
    if (argc < 2 || (strcmp(argv[1], "quick") && strcmp(argv[1], "full"))) {
        fprintf(stderr, "usage: %s quick|full %s\n", argv[0], usage);
        exit(2);
    }
    bench_quick = !strcmp(argv[1], "quick");
    const char *s = getenv("BENCH_SCALE");
    if (s && *s) {
        bench_scale = atof(s);
        if (bench_scale <= 0) bench_scale = 1.0;
    }
    start_rss_sampler();
}
/* iteration count: quick or full value, times BENCH_SCALE, at least 1 */
static inline uint64_t iters(uint64_t quick, uint64_t full) {
    double v = (double)(bench_quick ? quick : full) * bench_scale;
    return v < 1 ? 1 : (uint64_t)v;
}

static inline void spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Prevent the compiler from eliding a store or a malloc/free pair. */
static inline void escape(void *p) { __asm__ volatile("" : : "g"(p) : "memory"); }

static void die(const char *msg) {
    fprintf(stderr, "FATAL: %s\n", msg);
    fflush(stderr);
    abort();
}
static inline void *xmalloc_chk(size_t n) {
    void *p = malloc(n);
    if (!p) die("malloc returned NULL");
    return p;
}

/* ---- proof of the allocator ---- */
static void print_so_of(const char *label, const char *sym) {
    void *p = dlsym(RTLD_DEFAULT, sym);
    Dl_info info;
    if (p && dladdr(p, &info) && info.dli_fname)
        printf("%s=%s\n", label, info.dli_fname);
    else
        printf("%s=UNKNOWN\n", label);
}

/* A `/proc/self/status` field in KiB (`field` with its colon, e.g. "VmRSS:");
 * -1 when it cannot be read. */
static long status_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t len = strlen(field);
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, len)) { v = atol(line + len); break; }
    fclose(f);
    return v;
}

/* Peak resident set of this process (VmHWM, KiB). Unlike the ru_maxrss that
 * wait4() reports to the parent, it does not include the parent's RSS
 * inherited at fork() (Linux carries the larger of the two across exec). */
static long peak_rss_kib(void) {
    return status_kib("VmHWM:");
}

/* Resident set of this process now (VmRSS), MiB; -1 when unknown. */
static inline double vmrss_mib(void) {
    long kib = status_kib("VmRSS:");
    return kib < 0 ? -1 : kib / 1024.0;
}

static void bench_finish(const char *name, const char *metric, double value,
                         uint64_t expect_malloc_calls, uint64_t checksum) {
    printf("RESULT name=%s metric=%s value=%.6g\n", name, metric, value);
    printf("CHECKSUM=%llx\n", (unsigned long long)checksum);
    printf("EXPECT_MALLOC_CALLS=%llu\n", (unsigned long long)expect_malloc_calls);
    printf("PEAK_RSS_KIB=%ld\n", peak_rss_kib());
    if (rss_samples) printf("MEAN_RSS_KIB=%llu\n", rss_sum_kib / rss_samples);
    print_so_of("ALLOCATOR_SO", "malloc");
    print_so_of("ALLOCATOR_SO_FREE", "free");
    fflush(stdout);
}

#endif
