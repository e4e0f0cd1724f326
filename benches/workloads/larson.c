/* larson: `larson quick|full <threads>`
 * The classic Larson & Krishnan server simulation, bounded by iterations
 * instead of time. Each of the T thread slots owns a slice of 5000 blocks of
 * a shared array; a step frees a random block of the slice and replaces it by
 * a new block of random size in [8, 1000] bytes (two bytes written). The main
 * thread allocates the initial blocks, so the first frees are cross-thread.
 * After its share of steps a thread starts its successor (a new thread that
 * inherits the slice, hence frees blocks allocated by the dead thread) and
 * exits; every slot goes through 10 thread generations. The total number of
 * steps is fixed (independent of T). Reports M ops/s, op = one malloc or one
 * free call (so a step is two ops). */
#include "bench_common.h"
#include <stdatomic.h>

#define CHUNKS 5000
#define GENS 10
#define MINSZ 8
#define MAXSZ 1000

typedef struct {
    char **arr;
    rng_t rng;
    uint64_t steps_per_gen;
    int gens_left;
    uint64_t sum;
} slot_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int slots_done;
static pthread_attr_t detached;

static void *worker(void *a) {
    slot_t *s = a;
    char **arr = s->arr;
    rng_t r = s->rng;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < s->steps_per_gen; i++) {
        uint64_t v = rng_below(&r, CHUNKS);
        free(arr[v]);
        size_t sz = (size_t)rng_range(&r, MINSZ, MAXSZ);
        char *p = malloc(sz);
        if (!p) die("malloc returned NULL");
        p[0] = 'a';
        p[sz - 1] = 'b';
        sum += (uintptr_t)p >> 4;
        arr[v] = p;
    }
    s->rng = r;
    s->sum += sum;
    if (--s->gens_left > 0) {
        pthread_t t;
        if (pthread_create(&t, &detached, worker, s)) die("pthread_create");
    } else {
        pthread_mutex_lock(&mu);
        slots_done++;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "<threads>");
    int T = argc > 2 ? atoi(argv[2]) : 1;
    if (T < 1) T = 1;
    uint64_t total = iters(8000000, 50000000);
    uint64_t per_gen = total / ((uint64_t)T * GENS);
    if (per_gen == 0) per_gen = 1;

    char **all = calloc((size_t)T * CHUNKS, sizeof(char *));
    slot_t *slots = calloc((size_t)T, sizeof(slot_t));
    rng_t r0 = rng_seed(4141);
    for (size_t i = 0; i < (size_t)T * CHUNKS; i++) {
        size_t sz = (size_t)rng_range(&r0, MINSZ, MAXSZ);
        all[i] = xmalloc_chk(sz);
        all[i][0] = 'x';
    }
    for (int t = 0; t < T; t++) {
        slots[t].arr = all + (size_t)t * CHUNKS;
        slots[t].rng = rng_seed(1000 + (uint64_t)t);
        slots[t].steps_per_gen = per_gen;
        slots[t].gens_left = GENS;
    }
    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);

    double t0 = now_sec();
    for (int t = 0; t < T; t++) {
        pthread_t th;
        if (pthread_create(&th, &detached, worker, &slots[t])) die("pthread_create");
    }
    pthread_mutex_lock(&mu);
    while (slots_done < T) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    double t = now_sec() - t0;

    uint64_t sum = 0;
    for (int i = 0; i < T; i++) sum += slots[i].sum;
    for (size_t i = 0; i < (size_t)T * CHUNKS; i++) free(all[i]);
    free(all);
    free(slots);
    uint64_t steps = per_gen * (uint64_t)T * GENS;
    char name[32];
    snprintf(name, sizeof name, "larson-%dt", T);
    bench_finish(name, "mops", 2.0 * (double)steps / t / 1e6, steps + (uint64_t)T * CHUNKS, sum);
    return 0;
}
