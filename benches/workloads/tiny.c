/* tiny: `tiny quick|full <size> [swap]`
 * Batches of 100 malloc(size) followed by 100 free (in allocation order),
 * repeated. With `swap`: 8 blocks live in a ring, and each step frees the
 * oldest and mallocs its replacement at once (a program's temporaries: a
 * free followed by a malloc of the same size, with a few objects live).
 * Each block gets one byte written. Reports ns per call (a malloc or a free
 * each count as one call). */
#include "bench_common.h"

#define BATCH 100

int main(int argc, char **argv) {
    bench_init(argc, argv, "<size> [swap]");
    size_t size = argc > 2 ? (size_t)atol(argv[2]) : 16;
    int swap = argc > 3 && strcmp(argv[3], "swap") == 0;
    uint64_t reps = iters(100000, 600000);
    static void *p[BATCH];
    uint64_t sum = 0;
    char name[64];
    if (swap) {
        enum { RING = 8 };
        uint64_t steps = reps * BATCH;
        for (int i = 0; i < RING; i++) { p[i] = malloc(size); *(volatile char *)p[i] = (char)i; }
        double t0 = now_sec();
        for (uint64_t s = 0; s < steps; s++) {
            int i = (int)(s % RING);
            free(p[i]);
            char *q = malloc(size);
            q[0] = (char)s;
            p[i] = q;
            escape(q);
            sum += (uintptr_t)q & 0xff0;
        }
        double t = now_sec() - t0;
        for (int i = 0; i < RING; i++) free(p[i]);
        snprintf(name, sizeof name, "tiny-swap-%zu", size);
        bench_finish(name, "ns_per_op", t * 1e9 / (2.0 * (double)steps), steps + RING, sum);
        return 0;
    }

    /* warm-up, untimed */
    for (int r = 0; r < 1000; r++) {
        for (int i = 0; i < BATCH; i++) { p[i] = malloc(size); *(volatile char *)p[i] = (char)i; }
        for (int i = 0; i < BATCH; i++) free(p[i]);
    }
    double t0 = now_sec();
    for (uint64_t r = 0; r < reps; r++) {
        for (int i = 0; i < BATCH; i++) {
            char *q = malloc(size);
            q[0] = (char)i;
            p[i] = q;
        }
        escape(p);
        sum += (uintptr_t)p[r % BATCH] & 0xff0;
        for (int i = 0; i < BATCH; i++) free(p[i]);
    }
    double t = now_sec() - t0;
    snprintf(name, sizeof name, "tiny-%zu", size);
    bench_finish(name, "ns_per_op", t * 1e9 / (2.0 * BATCH * (double)reps),
                 (reps + 1000) * BATCH, sum);
    return 0;
}
