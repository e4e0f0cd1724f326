/* small_mixed: `small_mixed quick|full`
 * Single-threaded small objects of mixed sizes and lifetimes. Sizes in
 * [8, 512] B, skewed toward small: 50% in [8, 32], 30% in [33, 128], 15% in
 * [129, 256], 5% in [257, 512]. Three pools of slots, filled before the
 * timed section:
 *   short:  256 slots, 70% of the steps (an object lives ~370 steps),
 *   medium: 2048 slots, 27% of the steps (~7600 steps),
 *   long:   1024 slots, 3% of the steps (~34000 steps: the long-lived minority).
 * A step picks a pool, then a random slot in it, frees its object (after
 * checking the 8-byte tag at its start and its last byte) and allocates a new
 * one of a new random size (tag and last byte written). Reports ns per
 * operation, op = one malloc or one free (a step is two ops). */
#include "bench_common.h"

#define NSHORT 256
#define NMED 2048
#define NLONG 1024

typedef struct { unsigned char *p; uint32_t sz; } slot_t;

static slot_t slots[NSHORT + NMED + NLONG];
static rng_t r;

static inline size_t pick_size(void) {
    uint64_t c = rng_below(&r, 100);
    if (c < 50) return (size_t)rng_range(&r, 8, 32);
    if (c < 80) return (size_t)rng_range(&r, 33, 128);
    if (c < 95) return (size_t)rng_range(&r, 129, 256);
    return (size_t)rng_range(&r, 257, 512);
}

static inline void fill(slot_t *s, uint64_t tag) {
    size_t sz = pick_size();
    unsigned char *p = malloc(sz);
    if (!p) die("malloc returned NULL");
    memcpy(p, &tag, 8);
    p[sz - 1] = (unsigned char)(tag >> 8);
    s->p = p;
    s->sz = (uint32_t)sz;
}

static inline uint64_t drop(slot_t *s) {
    uint64_t tag;
    memcpy(&tag, s->p, 8);
    if (s->p[s->sz - 1] != (unsigned char)(tag >> 8)) die("block contents corrupted");
    free(s->p);
    return tag;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "");
    uint64_t steps = iters(5000000, 40000000);
    r = rng_seed(8128);
    uint64_t tag = 1, sum = 0;
    for (int i = 0; i < NSHORT + NMED + NLONG; i++) fill(&slots[i], tag++);
    double t0 = now_sec();
    for (uint64_t i = 0; i < steps; i++) {
        uint64_t c = rng_below(&r, 100);
        slot_t *s;
        if (c < 70) s = &slots[rng_below(&r, NSHORT)];
        else if (c < 97) s = &slots[NSHORT + rng_below(&r, NMED)];
        else s = &slots[NSHORT + NMED + rng_below(&r, NLONG)];
        sum += drop(s);
        fill(s, tag++);
    }
    double t = now_sec() - t0;
    for (int i = 0; i < NSHORT + NMED + NLONG; i++) sum += drop(&slots[i]);
    bench_finish("small-mixed", "ns_per_op", t * 1e9 / (2.0 * (double)steps),
                 steps + NSHORT + NMED + NLONG, sum);
    return 0;
}
