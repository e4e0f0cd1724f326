/* mixed: `mixed quick|full`
 * A single-threaded mixed-lifetime random workload. 20000 long-lived slots
 * (filled at start, each replaced rarely) and a ring of up to 256 short-lived
 * blocks. Sizes: 70% in [8, 256] B, 20% in (256 B, 4 KiB], 8% in
 * (4, 64] KiB, 2% in (64, 256] KiB (log-uniform inside the last three
 * ranges). Each step picks:
 *   50% malloc a short-lived block (the oldest is freed when the ring is full)
 *   15% free the newest short-lived block
 *   10% calloc a short-lived block (checked to be zero at both ends)
 *   13% realloc a short- or long-lived block (grow x1.1-2 or a new size)
 *   12% replace a long-lived block (free + malloc)
 * Every block carries a tag in its first and last byte, checked at free and
 * realloc (a corrupted block aborts the run). Reports M ops/s, op = one
 * malloc, calloc, realloc or free call. */
#include "bench_common.h"

#define NLONG 20000
#define NSHORT 256

typedef struct { unsigned char *p; size_t sz; unsigned char tag; } blk_t;

static blk_t longs[NLONG];
static blk_t shorts[NSHORT];
static unsigned s_head, s_count; /* ring: oldest at s_head */
static uint64_t ops, allocs;
static rng_t r;

static size_t pick_size(void) {
    uint64_t c = rng_below(&r, 100);
    if (c < 70) return (size_t)rng_range(&r, 8, 256);
    if (c < 90) return rng_logsize(&r, 257, 4096);
    if (c < 98) return rng_logsize(&r, 4097, 65536);
    return rng_logsize(&r, 65537, 262144);
}

static void mark(blk_t *b) {
    b->p[0] = b->tag;
    b->p[b->sz - 1] = (unsigned char)(b->tag ^ 0x5a);
}
static void check(const blk_t *b) {
    if (b->p[0] != b->tag || (b->sz > 1 && b->p[b->sz - 1] != (unsigned char)(b->tag ^ 0x5a)))
        die("block contents corrupted");
}
static void new_blk(blk_t *b, int zeroed) {
    b->sz = pick_size();
    b->tag = (unsigned char)(rng_next(&r) | 1);
    if (zeroed) {
        b->p = calloc(1, b->sz);
        if (!b->p) die("calloc returned NULL");
        if (b->p[0] || b->p[b->sz - 1] || b->p[b->sz / 2]) die("calloc memory not zeroed");
    } else {
        b->p = malloc(b->sz);
        if (!b->p) die("malloc returned NULL");
    }
    mark(b);
    ops++;
    allocs++;
}
static void free_blk(blk_t *b) {
    check(b);
    free(b->p);
    b->p = NULL;
    ops++;
}
static void realloc_blk(blk_t *b) {
    check(b);
    size_t nsz;
    if (rng_below(&r, 2)) nsz = b->sz + (b->sz * (size_t)rng_range(&r, 10, 100)) / 100;
    else nsz = pick_size();
    if (nsz > 262144) nsz = 262144;
    unsigned char *q = realloc(b->p, nsz);
    if (!q) die("realloc returned NULL");
    if (q[0] != b->tag) die("realloc lost contents");
    b->p = q;
    b->sz = nsz;
    mark(b);
    ops++;
}
static void short_push(int zeroed) {
    if (s_count == NSHORT) { free_blk(&shorts[s_head]); s_head = (s_head + 1) % NSHORT; s_count--; }
    new_blk(&shorts[(s_head + s_count) % NSHORT], zeroed);
    s_count++;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "");
    uint64_t steps = iters(600000, 5000000);
    r = rng_seed(2024);
    for (int i = 0; i < NLONG; i++) new_blk(&longs[i], 0);
    ops = 0;
    double t0 = now_sec();
    for (uint64_t i = 0; i < steps; i++) {
        uint64_t c = rng_below(&r, 100);
        if (c < 50) short_push(0);
        else if (c < 65) {
            if (s_count) { s_count--; free_blk(&shorts[(s_head + s_count) % NSHORT]); }
            else short_push(0);
        } else if (c < 75) short_push(1);
        else if (c < 88) {
            if (s_count && rng_below(&r, 2)) realloc_blk(&shorts[(s_head + s_count - 1) % NSHORT]);
            else realloc_blk(&longs[rng_below(&r, NLONG)]);
        } else {
            blk_t *b = &longs[rng_below(&r, NLONG)];
            free_blk(b);
            new_blk(b, 0);
        }
    }
    double t = now_sec() - t0;
    uint64_t timed_ops = ops, sum = 0;
    for (int i = 0; i < NLONG; i++) { sum += longs[i].sz; free_blk(&longs[i]); }
    while (s_count) { s_count--; sum += shorts[(s_head + s_count) % NSHORT].sz; free_blk(&shorts[(s_head + s_count) % NSHORT]); }
    bench_finish("mixed", "mops", (double)timed_ops / t / 1e6, allocs, sum);
    return 0;
}
