/* false_sharing: `false_sharing quick|full thrash|scratch <threads>`
 * After Hoard's cache-thrash and cache-scratch (Berger et al.).
 * thrash  (active false sharing): every thread repeatedly mallocs an 8-byte
 *         block, writes it R times (8 byte-writes each), frees it. An
 *         allocator that hands neighbouring blocks to different threads makes
 *         the threads fight over one cache line.
 * scratch (passive false sharing): the main thread mallocs one 8-byte block
 *         per thread (neighbours in memory) and hands block i to thread i,
 *         which frees it and then runs the thrash loop. An allocator that
 *         reuses the freed block for the thread's next malloc makes the
 *         threads share the main thread's cache line.
 * Reports ns per byte-write (the malloc/free calls are negligible: 8 bytes
 * written R=100000 times per block). */
#include "bench_common.h"

#define OBJ 8
#define REPS 100000

typedef struct { int id; char *given; uint64_t iters; uint64_t sum; } arg_t;

static pthread_barrier_t bar;

static void *worker(void *a) {
    arg_t *g = a;
    pthread_barrier_wait(&bar);
    if (g->given) free(g->given);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < g->iters; i++) {
        volatile char *o = malloc(OBJ);
        if (!o) die("malloc returned NULL");
        for (int r = 0; r < REPS; r++)
            for (int k = 0; k < OBJ; k++) o[k] = (char)(o[k] + 1);
        sum += (uint64_t)o[0] + ((uintptr_t)o & 0xff);
        free((void *)o);
    }
    g->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "thrash|scratch <threads>");
    int scratch = argc > 2 && !strcmp(argv[2], "scratch");
    int T = argc > 3 ? atoi(argv[3]) : 2;
    if (T < 1) T = 1;
    if (T > 64) T = 64;
    uint64_t it = iters(40, 250);
    arg_t args[64];
    pthread_t th[64];
    pthread_barrier_init(&bar, NULL, (unsigned)T + 1);
    /* all the blocks first (neighbours in memory), then the threads */
    for (int t = 0; t < T; t++) {
        args[t].id = t;
        args[t].iters = it;
        args[t].given = NULL;
        if (scratch) {
            args[t].given = xmalloc_chk(OBJ);
            memset(args[t].given, 0, OBJ);
        }
    }
    if (scratch && T > 1)
        printf("INFO given_block_distance=%lld\n", (long long)(args[1].given - args[0].given));
    for (int t = 0; t < T; t++)
        if (pthread_create(&th[t], NULL, worker, &args[t])) die("pthread_create");
    double t0 = now_sec();
    pthread_barrier_wait(&bar);
    uint64_t sum = 0;
    for (int t = 0; t < T; t++) { pthread_join(th[t], NULL); sum += args[t].sum; }
    double t = now_sec() - t0;
    double writes = (double)it * REPS * OBJ; /* per thread; threads run in parallel */
    char name[32];
    snprintf(name, sizeof name, "cache-%s-%dt", scratch ? "scratch" : "thrash", T);
    bench_finish(name, "ns_per_op", t * 1e9 / writes, it * (uint64_t)T, sum);
    return 0;
}
