/* rss_sparse: `rss_sparse quick|full`
 * Memory given back when most of it is freed but not all, while the
 * program goes on (a cache evicted after a peak, a server after a burst):
 * one thread allocates blocks of 16 B to 4 MiB, the same number of bytes in
 * every size octave (steps of 4 MiB worth of blocks from a random octave,
 * as rss_trim), one byte written in every 4 KiB page, until it holds 1 GiB
 * (full; 256 MiB in quick mode). It then frees 9 blocks in 10 at random and
 * goes on for 3 s (1 s in quick mode): every 10 ms it allocates 8 blocks of
 * the same distribution, writes them as before and frees them. No
 * malloc_trim. Reports VmRSS then in MiB (lower is better), and frees the
 * rest; the bytes still live are printed as INFO. The pointer array is mmap'ed
 * directly, outside the allocator under test.
 */
#include "bench_common.h"
#include <sys/mman.h>

#define STEP_BYTES (4u << 20)

static size_t pick_size(rng_t *r, size_t lo) {
    return lo + (size_t)rng_below(r, lo);
}

static char *make(size_t sz) {
    char *p = xmalloc_chk(sz);
    for (size_t o = 0; o < sz; o += 4096) p[o] = (char)o;
    p[sz - 1] = 1;
    return p;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "");
    size_t target = (size_t)iters(256, 1024) << 20;
    int rounds = (int)iters(100, 300);
    rng_t r = rng_seed(4242);
    size_t cap = target / 16 + 1, n = 0, total = 0;
    char **v = mmap(NULL, cap * sizeof(char *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    size_t *sizes = mmap(NULL, cap * sizeof(size_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (v == MAP_FAILED || sizes == MAP_FAILED) die("mmap failed");
    uint64_t allocs = 0, sum = 0;
    while (total < target) {
        size_t lo = (size_t)16 << rng_below(&r, 18); /* octave [lo, 2 lo), 16 B .. 4 MiB */
        size_t step = 0;
        while (step < STEP_BYTES && total < target && n < cap) {
            size_t sz = pick_size(&r, lo);
            v[n] = make(sz);
            sizes[n++] = sz;
            allocs++;
            step += sz;
            total += sz;
        }
    }
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        if (rng_below(&r, 10)) {
            sum += (unsigned char)v[i][0];
            free(v[i]);
            v[i] = NULL;
        } else {
            live += sizes[i];
        }
    }
    for (int round = 0; round < rounds; round++) {
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
        for (int k = 0; k < 8; k++) {
            char *p = make(pick_size(&r, (size_t)16 << rng_below(&r, 18)));
            allocs++;
            sum += (unsigned char)p[0];
            escape(p);
            free(p);
        }
    }
    double rss = vmrss_mib();
    printf("INFO live_mib=%.1f blocks=%zu\n", live / 1048576.0, n);
    for (size_t i = 0; i < n; i++)
        if (v[i]) { sum += (unsigned char)v[i][sizes[i] - 1]; free(v[i]); }
    bench_finish("rss-sparse", "rss_mib", rss, allocs, sum + total);
    return 0;
}
