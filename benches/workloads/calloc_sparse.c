/* calloc_sparse: `calloc_sparse quick|full`
 * Zero-initialised tables a program uses sparsely (hash tables, bitmaps,
 * sparse arrays): up to 64 live tables, each calloc'd with a size of
 * 16 KiB..1 MiB (log-uniform), of which the program writes one 8-byte word
 * in every 64 KiB (at a random place) plus its first and last word, and
 * checks that 8 random words it did not write read zero. When 64 are live,
 * a random one is checked and freed before the next calloc. The untimed
 * first 64 callocs fill the set. What an allocator pays: zeroing memory it
 * knows to be zero (time, and pages faulted in that the program never
 * uses), or faulting fresh pages. Reports microseconds per timed calloc+free
 * pair (writes and checks included); the runner records the peak RSS. */
#include "bench_common.h"

#define NLIVE 64
#define MINSZ ((size_t)16 << 10)
#define MAXSZ ((size_t)1 << 20)
#define STRIDE ((size_t)64 << 10)

typedef struct { uint64_t *p; size_t words; uint64_t tag; } table_t;

static table_t live[NLIVE];
static rng_t r;

static void make(table_t *t, uint64_t tag) {
    size_t size = rng_logsize(&r, MINSZ, MAXSZ) & ~(size_t)7;
    uint64_t *p = calloc(1, size);
    if (!p) die("calloc returned NULL");
    size_t words = size / 8, per_stride = STRIDE / 8;
    for (int i = 0; i < 8; i++) {
        size_t w = (size_t)rng_below(&r, words);
        if (p[w]) die("calloc'd memory not zero");
    }
    for (size_t base = 0; base < words; base += per_stride) {
        size_t span = words - base < per_stride ? words - base : per_stride;
        p[base + (size_t)rng_below(&r, span)] = tag;
    }
    p[0] = tag;
    p[words - 1] = tag;
    t->p = p;
    t->words = words;
    t->tag = tag;
}

static uint64_t drop(table_t *t) {
    if (t->p[0] != t->tag || t->p[t->words - 1] != t->tag) die("table contents corrupted");
    free(t->p);
    return t->tag + t->words;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "");
    uint64_t steps = iters(3000, 30000);
    r = rng_seed(1717);
    uint64_t tag = 1, sum = 0;
    for (int i = 0; i < NLIVE; i++) make(&live[i], tag++);
    double t0 = now_sec();
    for (uint64_t i = 0; i < steps; i++) {
        table_t *t = &live[rng_below(&r, NLIVE)];
        sum += drop(t);
        make(t, tag++);
    }
    double t = now_sec() - t0;
    for (int i = 0; i < NLIVE; i++) sum += drop(&live[i]);
    bench_finish("calloc-sparse", "us_per_pair", t * 1e6 / (double)steps, steps + NLIVE, sum);
    return 0;
}
