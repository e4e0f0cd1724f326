/* xfree_bulk: `xfree_bulk quick|full 64|mix`
 * Bulk cross-thread frees: 2 producer threads each allocate batches of 4096
 * blocks (64: all 64 B; mix: random sizes in [16, 256] B) and hand every
 * whole batch (an array of 4096 pointers) through a bounded queue (mutex +
 * condition variables) to 2 consumer threads, which free every block of the
 * batch (after reading its first byte). The batch arrays come from a fixed
 * pool of 100 (static memory, not from the allocator under test), so at most
 * 100 batches (409600 blocks) are in flight; a producer waits for a free
 * array. 4 threads: more threads than cores on a 2-core machine. Every free
 * is a free of a block allocated by another thread, in bulk. Reports
 * M frees/s: blocks freed in the timed section (all of them, from the start
 * of the threads to their join) / wall time. */
#include "bench_common.h"

#define BATCH 4096
#define POOL 100 /* batch arrays: the bound on batches in flight */
#define NPROD 2
#define NCONS 2

typedef struct { char *p[BATCH]; } batch_t;

static batch_t pool[POOL];
static batch_t *free_arrays[POOL]; /* stack of unused arrays */
static int n_free_arrays;
static batch_t *queue[POOL]; /* FIFO of filled arrays (never more than POOL) */
static int q_head, q_len;
static int producers_done;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_array = PTHREAD_COND_INITIALIZER; /* an array became free */
static pthread_cond_t cv_batch = PTHREAD_COND_INITIALIZER; /* a batch was queued (or producers finished) */

static int mix;
static uint64_t batches_per_producer;

typedef struct { int id; uint64_t frees; uint64_t sum; } cons_t;

static void *producer(void *a) {
    int id = (int)(intptr_t)a;
    rng_t r = rng_seed(7000 + (uint64_t)id);
    for (uint64_t b = 0; b < batches_per_producer; b++) {
        pthread_mutex_lock(&mu);
        while (n_free_arrays == 0) pthread_cond_wait(&cv_array, &mu);
        batch_t *bt = free_arrays[--n_free_arrays];
        pthread_mutex_unlock(&mu);
        for (int i = 0; i < BATCH; i++) {
            size_t sz = mix ? (size_t)rng_range(&r, 16, 256) : 64;
            char *p = malloc(sz);
            if (!p) die("malloc returned NULL");
            p[0] = (char)(i | 1);
            p[sz - 1] = (char)b;
            bt->p[i] = p;
        }
        pthread_mutex_lock(&mu);
        queue[(q_head + q_len) % POOL] = bt;
        q_len++;
        pthread_cond_signal(&cv_batch);
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu);
    producers_done++;
    pthread_cond_broadcast(&cv_batch);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void *consumer(void *a) {
    cons_t *c = a;
    uint64_t sum = 0, frees = 0;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (q_len == 0 && producers_done < NPROD) pthread_cond_wait(&cv_batch, &mu);
        if (q_len == 0) { pthread_mutex_unlock(&mu); break; }
        batch_t *bt = queue[q_head];
        q_head = (q_head + 1) % POOL;
        q_len--;
        pthread_mutex_unlock(&mu);
        for (int i = 0; i < BATCH; i++) {
            sum += (unsigned char)bt->p[i][0];
            free(bt->p[i]);
        }
        frees += BATCH;
        pthread_mutex_lock(&mu);
        free_arrays[n_free_arrays++] = bt;
        pthread_cond_signal(&cv_array);
        pthread_mutex_unlock(&mu);
    }
    c->frees = frees;
    c->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "64|mix");
    mix = argc > 2 && !strcmp(argv[2], "mix");
    batches_per_producer = iters(250, 2000); /* x 4096 blocks x 2 producers */
    for (int i = 0; i < POOL; i++) free_arrays[i] = &pool[i];
    n_free_arrays = POOL;

    pthread_t pt[NPROD], ct[NCONS];
    cons_t cons[NCONS];
    memset(cons, 0, sizeof cons);
    double t0 = now_sec();
    for (int i = 0; i < NCONS; i++)
        if (pthread_create(&ct[i], NULL, consumer, &cons[i])) die("pthread_create");
    for (int i = 0; i < NPROD; i++)
        if (pthread_create(&pt[i], NULL, producer, (void *)(intptr_t)i)) die("pthread_create");
    for (int i = 0; i < NPROD; i++) pthread_join(pt[i], NULL);
    for (int i = 0; i < NCONS; i++) pthread_join(ct[i], NULL);
    double t = now_sec() - t0;

    uint64_t frees = 0, sum = 0;
    for (int i = 0; i < NCONS; i++) { frees += cons[i].frees; sum += cons[i].sum; }
    uint64_t n = batches_per_producer * NPROD * BATCH;
    if (frees != n) die("consumers freed a different number of blocks than produced");
    bench_finish(mix ? "xfree-bulk-mix" : "xfree-bulk-64", "mfrees", (double)frees / t / 1e6, n, sum);
    return 0;
}
