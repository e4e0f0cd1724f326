/* mid: `mid quick|full <threads>`
 * Each thread owns 1000 slots, initially filled with blocks of random size in
 * [2 KiB, 32 KiB]; a step frees a random slot and refills it with a new block
 * of random size in [2 KiB, 32 KiB] (first and last byte written). The total
 * number of steps is fixed and split between the threads. Reports M ops/s,
 * op = one malloc or one free call. */
#include "bench_common.h"

#define SLOTS 1000
#define MINSZ 2048
#define MAXSZ 32768

typedef struct { int id; uint64_t steps; uint64_t sum; } arg_t;

static void *worker(void *a) {
    arg_t *g = a;
    rng_t r = rng_seed(77 + (uint64_t)g->id);
    char *s[SLOTS];
    for (int i = 0; i < SLOTS; i++) {
        size_t sz = (size_t)rng_range(&r, MINSZ, MAXSZ);
        s[i] = xmalloc_chk(sz);
        s[i][0] = 1;
        s[i][sz - 1] = 2;
    }
    uint64_t sum = 0;
    for (uint64_t i = 0; i < g->steps; i++) {
        uint64_t v = rng_below(&r, SLOTS);
        free(s[v]);
        size_t sz = (size_t)rng_range(&r, MINSZ, MAXSZ);
        char *p = malloc(sz);
        if (!p) die("malloc returned NULL");
        p[0] = (char)i;
        p[sz - 1] = (char)v;
        sum += (uintptr_t)p >> 12;
        s[v] = p;
    }
    for (int i = 0; i < SLOTS; i++) free(s[i]);
    g->sum = sum;
    return NULL;
}

static uint64_t run(int T, uint64_t per, arg_t *args) {
    pthread_t th[64];
    for (int t = 0; t < T; t++) {
        args[t].id = t;
        args[t].steps = per;
        if (pthread_create(&th[t], NULL, worker, &args[t])) die("pthread_create");
    }
    uint64_t sum = 0;
    for (int t = 0; t < T; t++) { pthread_join(th[t], NULL); sum += args[t].sum; }
    return sum;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "<threads>");
    int T = argc > 2 ? atoi(argv[2]) : 1;
    if (T < 1) T = 1;
    if (T > 64) T = 64;
    uint64_t per = iters(1200000, 10000000) / (uint64_t)T;
    arg_t args[64];
    /* The timed region includes the initial fill and final free of the 1000
     * slots per thread (1000 pairs vs >= 300000 steps per thread). */
    double t0 = now_sec();
    uint64_t sum = run(T, per, args);
    double t = now_sec() - t0;
    uint64_t steps = per * (uint64_t)T + (uint64_t)T * SLOTS;
    char name[32];
    snprintf(name, sizeof name, "mid-%dt", T);
    bench_finish(name, "mops", 2.0 * (double)steps / t / 1e6, steps, sum);
    return 0;
}
