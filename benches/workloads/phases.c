/* phases: `phases quick|full bursts|grow-shrink`
 * Programs whose memory comes and goes in phases, where how long freed
 * pages stay resident decides what the next phase pays in page faults.
 *
 * bursts: a server that wakes up every 30 ms. Each burst allocates 4000
 *   blocks of 16 B to 64 KiB (log-uniform, every page of each written),
 *   keeps 5% of them until the next burst, frees the rest in random order,
 *   then sleeps 30 ms (longer than a 10 ms purge delay). Reports the mean
 *   time of a burst in microseconds, sleeps excluded (lower is better).
 * grow-shrink: a cache that fills and is flushed. Each cycle grows a set
 *   to 30000 blocks of 16 B to 16 KiB (written), then frees 90% of them at
 *   random, and pauses 5 ms. Reports nanoseconds per malloc or free, pauses
 *   excluded (lower is better).
 * The pointer arrays are static, outside the allocator under test.
 */
#include "bench_common.h"

#define BURST_BLOCKS 4000
#define GROW_BLOCKS 30000

static char *blocks[GROW_BLOCKS];

static void sleep_ms(long ms) {
    struct timespec ts = { 0, ms * 1000000L };
    nanosleep(&ts, NULL);
}

static char *alloc_touched(rng_t *r, size_t lo, size_t hi, uint64_t *sum) {
    size_t size = rng_logsize(r, lo, hi);
    char *p = xmalloc_chk(size);
    for (size_t o = 0; o < size; o += 4096) p[o] = (char)o;
    p[size - 1] = 1;
    *sum += size;
    return p;
}

/* Free blocks[from..to) in random order. */
static void free_shuffled(rng_t *r, size_t from, size_t to, uint64_t *sum) {
    for (size_t i = to; i > from + 1; i--) {
        size_t j = from + (size_t)rng_below(r, i - from);
        char *t = blocks[i - 1]; blocks[i - 1] = blocks[j]; blocks[j] = t;
    }
    for (size_t i = from; i < to; i++) {
        *sum += (unsigned char)blocks[i][0];
        free(blocks[i]);
    }
}

static double bursts(uint64_t rounds, uint64_t *sum, uint64_t *calls) {
    rng_t r = rng_seed(4242);
    size_t kept = 0;
    double busy = 0;
    for (uint64_t round = 0; round < rounds; round++) {
        double t0 = now_sec();
        for (size_t i = kept; i < kept + BURST_BLOCKS; i++) blocks[i] = alloc_touched(&r, 16, 64 << 10, sum);
        size_t total = kept + BURST_BLOCKS;
        /* The oldest kept blocks go now; 5% of this burst stays. */
        free_shuffled(&r, 0, total - BURST_BLOCKS / 20, sum);
        memmove(blocks, blocks + total - BURST_BLOCKS / 20, BURST_BLOCKS / 20 * sizeof(char *));
        kept = BURST_BLOCKS / 20;
        busy += now_sec() - t0;
        *calls += BURST_BLOCKS;
        sleep_ms(30);
    }
    free_shuffled(&r, 0, kept, sum);
    return busy * 1e6 / (double)rounds;
}

static double grow_shrink(uint64_t cycles, uint64_t *sum, uint64_t *calls) {
    rng_t r = rng_seed(777);
    size_t live = 0;
    uint64_t ops = 0;
    double busy = 0;
    for (uint64_t c = 0; c < cycles; c++) {
        double t0 = now_sec();
        for (; live < GROW_BLOCKS; live++) {
            blocks[live] = alloc_touched(&r, 16, 16 << 10, sum);
            ops++;
            (*calls)++;
        }
        size_t keep = GROW_BLOCKS / 10;
        free_shuffled(&r, keep, live, sum);
        ops += live - keep;
        live = keep;
        busy += now_sec() - t0;
        sleep_ms(5);
    }
    free_shuffled(&r, 0, live, sum);
    return busy * 1e9 / (double)ops;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "bursts|grow-shrink");
    if (argc < 3) die("which phase pattern: bursts or grow-shrink");
    uint64_t sum = 0, calls = 0;
    if (!strcmp(argv[2], "bursts")) {
        double us = bursts(iters(40, 200), &sum, &calls);
        bench_finish("bursts", "us_per_burst", us, calls, sum);
    } else if (!strcmp(argv[2], "grow-shrink")) {
        double ns = grow_shrink(iters(30, 150), &sum, &calls);
        bench_finish("grow-shrink", "ns_per_op", ns, calls, sum);
    } else {
        die("unknown phase pattern");
    }
    return 0;
}
