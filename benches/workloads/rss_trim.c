/* rss_trim: `rss_trim quick|full`
 * Memory given back after a burst: 2 threads each allocate blocks of 16 B to
 * 4 MiB until each holds 1.2 GiB (full; 250 MiB in quick mode), with the same
 * number of bytes in every size octave: each step picks an octave
 * [2^k, 2^(k+1)) (k = 4..21) at random and allocates blocks of random sizes
 * in it until they add up to 4 MiB. One byte is written in every 4 KiB page
 * of every block, so the memory is really resident. The threads wait for
 * each other, free all their blocks in random order and exit; the main
 * thread then calls malloc_trim(0) and reads VmRSS from /proc/self/status.
 * Reports that RSS in MiB (lower is better). The pointer arrays are mmap'ed
 * directly, so that they do not go through the allocator under test.
 */
#include "bench_common.h"
#include <malloc.h>
#include <sys/mman.h>

#define STEP_BYTES (4u << 20)

typedef struct { int id; size_t target; uint64_t n; uint64_t sum; } arg_t;

static pthread_barrier_t bar;

static void *worker(void *a) {
    arg_t *g = a;
    rng_t r = rng_seed(31337 + (uint64_t)g->id);
    size_t cap = g->target / 16 + 1, n = 0, total = 0;
    char **v = mmap(NULL, cap * sizeof(char *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (v == MAP_FAILED) die("mmap failed");
    while (total < g->target) {
        size_t lo = (size_t)16 << rng_below(&r, 18); /* octave [lo, 2 lo), 16 B .. 4 MiB */
        size_t step = 0;
        while (step < STEP_BYTES && total < g->target && n < cap) {
            size_t sz = lo + (size_t)rng_below(&r, lo);
            char *p = xmalloc_chk(sz);
            for (size_t o = 0; o < sz; o += 4096) p[o] = (char)o;
            p[sz - 1] = 1;
            v[n++] = p;
            step += sz;
            total += sz;
        }
    }
    pthread_barrier_wait(&bar);
    /* free in random order (Fisher-Yates shuffle) */
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(&r, i);
        char *t = v[i - 1]; v[i - 1] = v[j]; v[j] = t;
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) { sum += (unsigned char)v[i][0]; free(v[i]); }
    munmap(v, cap * sizeof(char *));
    g->n = n;
    g->sum = sum + total;
    return NULL;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "");
    size_t target = (size_t)iters(250, 1200) << 20;
    pthread_t th[2];
    arg_t args[2];
    pthread_barrier_init(&bar, NULL, 2);
    for (int t = 0; t < 2; t++) {
        args[t].id = t;
        args[t].target = target;
        if (pthread_create(&th[t], NULL, worker, &args[t])) die("pthread_create");
    }
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    double before = vmrss_mib();
    malloc_trim(0);
    double after = vmrss_mib();
    printf("INFO rss_before_trim_mib=%.1f blocks=%llu\n", before,
           (unsigned long long)(args[0].n + args[1].n));
    bench_finish("rss-trim", "rss_mib", after, args[0].n + args[1].n, args[0].sum + args[1].sum);
    return 0;
}
