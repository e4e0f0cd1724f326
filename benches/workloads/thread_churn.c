/* thread_churn: `thread_churn quick|full`
 * Threads created and joined continuously: waves of 4 threads (created,
 * then all joined, then the next wave). Each thread makes 2000 allocations
 * of log-uniform sizes in [16 B, 4 KiB] (first and last byte written). While
 * it allocates it:
 *   - every 4th allocation, reallocs a random live object of its own larger
 *     (x1.25..3, at most 16 KiB; first byte checked, new last byte written);
 *   - with probability 3/8 frees a random live object of its own;
 *   - every 8th allocation, frees one of the objects the thread of the same
 *     index in the previous wave handed over (allocated by a thread that has
 *     exited since: a free into an abandoned heap).
 * At its end the thread frees what is left of its inheritance, hands every
 * other one of its own objects still live (about a third of what it
 * allocated) to the next wave through a shared array (double-buffered per
 * wave), and frees the rest. The main thread frees the last wave's
 * leftovers. Reports microseconds per thread: wall time from the first
 * create to the last join (and the final frees) / number of threads. */
#include "bench_common.h"

#define T 4
#define NOBJ 2000
#define MAXSZ 16384

typedef struct { char *p; size_t sz; } obj_t;

/* handoff[w % 2][t]: what thread t of wave w hands to thread t of wave w + 1 */
static char *handoff[2][T][NOBJ];
static int handoff_n[2][T];

typedef struct {
    int wave, idx;
    uint64_t mallocs, sum;
} arg_t;

static void *worker(void *a) {
    arg_t *g = a;
    rng_t r = rng_seed(((uint64_t)g->wave << 8) + (uint64_t)g->idx + 77);
    obj_t live[NOBJ];
    int nlive = 0;
    char **in = handoff[(g->wave + 1) % 2][g->idx];
    int in_n = g->wave > 0 ? handoff_n[(g->wave + 1) % 2][g->idx] : 0, in_i = 0;
    char **out = handoff[g->wave % 2][g->idx];
    uint64_t sum = 0;
    for (int i = 0; i < NOBJ; i++) {
        size_t sz = rng_logsize(&r, 16, 4096);
        char *p = malloc(sz);
        if (!p) die("malloc returned NULL");
        p[0] = (char)(i | 1);
        p[sz - 1] = (char)i;
        live[nlive].p = p;
        live[nlive].sz = sz;
        nlive++;
        if ((i & 3) == 3) {
            obj_t *o = &live[rng_below(&r, (uint64_t)nlive)];
            size_t nsz = o->sz + o->sz * (size_t)rng_range(&r, 25, 200) / 100;
            if (nsz > MAXSZ) nsz = MAXSZ;
            if (nsz > o->sz) {
                char c = o->p[0];
                char *q = realloc(o->p, nsz);
                if (!q) die("realloc returned NULL");
                if (q[0] != c) die("realloc lost contents");
                q[nsz - 1] = 2;
                o->p = q;
                o->sz = nsz;
            }
        }
        if (rng_below(&r, 8) < 3) {
            int k = (int)rng_below(&r, (uint64_t)nlive);
            sum += (unsigned char)live[k].p[0];
            free(live[k].p);
            live[k] = live[--nlive];
        }
        if ((i & 7) == 7 && in_i < in_n) {
            sum += (unsigned char)in[in_i][0];
            free(in[in_i++]);
        }
    }
    while (in_i < in_n) { sum += (unsigned char)in[in_i][0]; free(in[in_i++]); }
    int nout = 0;
    for (int k = 0; k < nlive; k++) {
        if (k & 1) out[nout++] = live[k].p;
        else { sum += (unsigned char)live[k].p[0]; free(live[k].p); }
    }
    handoff_n[g->wave % 2][g->idx] = nout;
    g->mallocs += NOBJ;
    g->sum += sum;
    return NULL;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "");
    int waves = (int)iters(200, 1500);
    arg_t args[T];
    pthread_t th[T];
    uint64_t mallocs = 0, sum = 0;
    double t0 = now_sec();
    for (int w = 0; w < waves; w++) {
        for (int t = 0; t < T; t++) {
            args[t].wave = w;
            args[t].idx = t;
            args[t].mallocs = args[t].sum = 0;
            if (pthread_create(&th[t], NULL, worker, &args[t])) die("pthread_create");
        }
        for (int t = 0; t < T; t++) {
            pthread_join(th[t], NULL);
            mallocs += args[t].mallocs;
            sum += args[t].sum;
        }
    }
    for (int t = 0; t < T; t++) {
        char **left = handoff[(waves - 1) % 2][t];
        for (int k = 0; k < handoff_n[(waves - 1) % 2][t]; k++) { sum += (unsigned char)left[k][0]; free(left[k]); }
    }
    double t = now_sec() - t0;
    bench_finish("thread-churn", "us_per_thread", t * 1e6 / ((double)waves * T), mallocs, sum);
    return 0;
}
