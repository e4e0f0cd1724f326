/* xmalloc: `xmalloc quick|full`
 * Producer/consumer cross-thread frees (in the spirit of xmalloc-test): one
 * thread mallocs blocks of random size in [8, 512] bytes (first byte written)
 * and passes them, in batches of 64 through a ring of 256 batches, to a
 * second thread that frees them (after reading the first byte). Every free
 * is a free of a block allocated by another thread. Reports M frees/s
 * (total blocks / wall time). */
#include "bench_common.h"
#include <stdatomic.h>

#define BATCH 64
#define RING 256
#define MINSZ 8
#define MAXSZ 512

typedef struct {
    _Alignas(64) atomic_int full;
    char *p[BATCH];
} slot_t;

static slot_t ring[RING];
static uint64_t nbatches;
static uint64_t consumer_sum;

static void wait_for(atomic_int *f, int want) {
    unsigned spins = 0;
    while (atomic_load_explicit(f, memory_order_acquire) != want) {
        if (++spins < 256) spin_pause();
        else { sched_yield(); spins = 0; }
    }
}

static void *producer(void *a) {
    (void)a;
    rng_t r = rng_seed(99);
    for (uint64_t b = 0; b < nbatches; b++) {
        slot_t *s = &ring[b % RING];
        wait_for(&s->full, 0);
        for (int i = 0; i < BATCH; i++) {
            size_t sz = (size_t)rng_range(&r, MINSZ, MAXSZ);
            char *p = malloc(sz);
            if (!p) die("malloc returned NULL");
            p[0] = (char)i;
            s->p[i] = p;
        }
        atomic_store_explicit(&s->full, 1, memory_order_release);
    }
    return NULL;
}

static void *consumer(void *a) {
    (void)a;
    uint64_t sum = 0;
    for (uint64_t b = 0; b < nbatches; b++) {
        slot_t *s = &ring[b % RING];
        wait_for(&s->full, 1);
        for (int i = 0; i < BATCH; i++) {
            sum += (unsigned char)s->p[i][0];
            free(s->p[i]);
        }
        atomic_store_explicit(&s->full, 0, memory_order_release);
    }
    consumer_sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "");
    nbatches = iters(30000, 250000); /* x64 blocks */
    pthread_t p, c;
    double t0 = now_sec();
    if (pthread_create(&c, NULL, consumer, NULL)) die("pthread_create");
    if (pthread_create(&p, NULL, producer, NULL)) die("pthread_create");
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    double t = now_sec() - t0;
    uint64_t n = nbatches * BATCH;
    bench_finish("xmalloc-2t", "mops", (double)n / t / 1e6, n, consumer_sum);
    return 0;
}
