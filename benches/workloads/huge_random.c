/* huge_random: `huge_random quick|full`
 * Huge blocks of random sizes: 20 live slots, filled before the timed
 * section, then 40 untimed warm-up steps (glibc's dynamic mmap threshold
 * and the others' caches adapt during the first dozens of replacements: the
 * timed steps measure the steady state). A step picks a random slot, frees
 * its block (after checking the value written in its first page) and
 * allocates a new block of a random size in [4 MiB, 32 MiB] (a random byte
 * count, so sizes practically never repeat), then writes every 4 KiB page of
 * it, as memset would fault it in (one 8-byte store per page, and the last
 * byte). ~360 MiB are live on average. Page faults and the allocator's
 * caching (or not) of freed huge mappings dominate. Reports microseconds per
 * timed step (free + malloc + page touching); the runner records the peak
 * RSS. */
#include "bench_common.h"

#define NSLOT 20
#define MINSZ ((size_t)4 << 20)
#define MAXSZ ((size_t)32 << 20)
#define PAGE 4096
#define WARMUP (2 * NSLOT)

typedef struct { char *p; size_t sz; uint64_t v; } slot_t;

static slot_t slots[NSLOT];
static rng_t r;

static void fill(slot_t *s, uint64_t v) {
    size_t sz = (size_t)rng_range(&r, MINSZ, MAXSZ);
    char *p = malloc(sz);
    if (!p) die("malloc returned NULL");
    for (size_t o = 0; o + 8 <= sz; o += PAGE) memcpy(p + o, &v, 8);
    p[sz - 1] = (char)v;
    s->p = p;
    s->sz = sz;
    s->v = v;
}

static uint64_t drop(slot_t *s) {
    uint64_t v;
    memcpy(&v, s->p, 8);
    if (v != s->v || s->p[s->sz - 1] != (char)v) die("block contents corrupted");
    free(s->p);
    return v + s->sz;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "");
    uint64_t steps = iters(40, 400);
    r = rng_seed(4242);
    uint64_t v = 1, sum = 0;
    for (int i = 0; i < NSLOT; i++) fill(&slots[i], v++);
    /* untimed warm-up steps */
    for (int i = 0; i < WARMUP; i++) {
        slot_t *s = &slots[rng_below(&r, NSLOT)];
        sum += drop(s);
        fill(s, v++);
    }
    double t0 = now_sec();
    for (uint64_t i = 0; i < steps; i++) {
        slot_t *s = &slots[rng_below(&r, NSLOT)];
        sum += drop(s);
        fill(s, v++);
    }
    double t = now_sec() - t0;
    for (int i = 0; i < NSLOT; i++) sum += drop(&slots[i]);
    bench_finish("huge-random", "us_per_step", t * 1e6 / (double)steps, steps + NSLOT + WARMUP, sum);
    return 0;
}
