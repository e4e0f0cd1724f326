/* faults.c: fault and load tests of the whole allocator (statically linked).
 *
 * usage: faults oom|forks|churn|exit-race [scale]
 *   oom    4 threads allocate, reallocate and free mixed sizes (16 B to
 *          8 MiB) while the main thread moves the address-space limit (0-32 MiB above the current size, or none)
 *          (RLIMIT_AS) up and down at random points: every NULL must come
 *          with errno ENOMEM, a failed realloc must leave its block intact,
 *          every live block keeps its contents, and once the limit is lifted
 *          everything allocates again and nothing is left after free + trim.
 *   forks  4 threads allocate and free each other's blocks while the main
 *          thread forks 150 times; each child checks blocks it inherited,
 *          frees some, allocates on its own thread and on a new one, and
 *          exits within 20 s (a deadlocked child dies of SIGALRM).
 *   churn  3000 short-lived threads, 8 at a time, each allocating a few
 *          hundred blocks, freeing most, and handing some to later threads
 *          through a shared table; resident memory (/proc/self/statm) must
 *          stay bounded, heaps must be reused, and nothing be left at the end.
 *   exit-race  3000 producer threads, two at a time, each allocating a
 *          batch of 8192 blocks of 48-79 bytes (full pages), handing it to
 *          one of 2 long-lived consumers and exiting at once, so that remote
 *          frees into full pages race with the producer's exit (a crash found
 *          in xfree_bulk: before the fix, 4 runs in 6 died of SIGSEGV).
 * scale multiplies the work (iterations, forks, threads): the soak runs use
 * a large one. The run is bounded by work, not time. The last line is
 * "faults <mode>: OK" or the program exits 1 after "FAILED" lines.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"
#include "pattern.h"

#define PAGE_SLACK 8
#define ENDS 2048 /* bytes of pattern at each end of a block */

static long scale = 1;
static atomic_ulong n_errors;

static void failed(const char *fmt, const char *what, void *p, size_t n) {
    if (atomic_fetch_add(&n_errors, 1) < 10) {
        printf("faults: FAILED: ");
        printf(fmt, what, p, n);
        printf("\n");
    }
}

/* A block starts with its size and seed; the pattern covers its two ends
 * (all of a small block), so large blocks stay cheap to check. */
struct hdr {
    size_t size;
    uint64_t seed;
};

static void stamp(struct hdr *h, size_t n, uint64_t seed) {
    h->size = n;
    h->seed = seed;
    unsigned char *body = (unsigned char *)(h + 1);
    size_t len = n - sizeof *h;
    if (len <= 2 * ENDS) {
        fill(body, len, seed);
    } else {
        fill(body, ENDS, seed);
        fill(body + len - ENDS, ENDS, ~seed);
    }
}

static int intact(const struct hdr *h, size_t n, uint64_t seed) {
    const unsigned char *body = (const unsigned char *)(h + 1);
    size_t len = n - sizeof *h;
    if (h->size != n || h->seed != seed) return 0;
    if (len <= 2 * ENDS) return verify(body, len, seed);
    return verify(body, ENDS, seed) && verify(body + len - ENDS, ENDS, ~seed);
}

/* After a realloc to `kept` <= the old size: header and the first bytes. */
static int prefix_intact(const struct hdr *h, size_t kept, size_t old, uint64_t seed) {
    size_t len = kept - sizeof *h;
    return h->size == old && h->seed == seed && verify((const unsigned char *)(h + 1), len < ENDS ? len : ENDS, seed);
}

static size_t mixed_size(uint64_t *rng) {
    uint64_t r = splitmix64(rng);
    unsigned pick = (unsigned)(r % 1000);
    r >>= 16;
    if (pick < 600) return sizeof(struct hdr) + r % 1024;
    if (pick < 900) return 1024 + r % (64 << 10);
    if (pick < 980) return (64 << 10) + r % (1 << 20);
    return (1 << 20) + r % (7 << 20);
}

static void release(struct hdr *h) {
    if (!intact(h, h->size, h->seed)) failed("%s: block %p (%zu bytes) changed while live", "contents", h, h->size);
    free(h);
}

static struct hakmem_stats stats_now(void) {
    struct hakmem_stats s;
    hakmem_stats_get(&s);
    return s;
}

/* Everything freed and trimmed: no page or huge block may be left. */
static void check_nothing_left(const struct hakmem_stats *before) {
    malloc_trim(0);
    struct hakmem_stats after = stats_now();
    printf("faults: after free+trim: pages_in_use=%zu (before %zu) huge_mapped=%zu heaps_live=%zu\n",
           after.pages_in_use, before->pages_in_use, after.huge_mapped, after.heaps_live);
    if (after.pages_in_use > before->pages_in_use + PAGE_SLACK)
        failed("%s: %p %zu pages still in use after everything was freed", "leak", NULL, after.pages_in_use);
    if (after.huge_mapped != before->huge_mapped)
        failed("%s: %p %zu huge blocks still mapped after everything was freed", "leak", NULL, after.huge_mapped);
}

/* Field `field` of /proc/self/statm (0: size, 1: resident) in KiB; read
 * without stdio, which allocates (and may fail under the oom limit). */
static long statm_kib(int field) {
    char buf[128] = {0};
    long v[2] = {0, 0};
    int fd = open("/proc/self/statm", O_RDONLY);
    ssize_t got = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0) close(fd);
    if (got <= 0 || sscanf(buf, "%ld %ld", &v[0], &v[1]) != 2) failed("%s: %p %zu", "reading /proc/self/statm", NULL, 0);
    return v[field] * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ---- oom: the address-space limit moves under running threads ---- */

#define OOM_THREADS 4
#define OOM_SLOTS 256
static atomic_int oom_running;
static atomic_ulong oom_nulls, oom_allocs, oom_failed_reallocs;

static void *oom_worker(void *arg) {
    uint64_t rng = 0xA110C8ull * (1 + (uintptr_t)arg);
    struct hdr *slot[OOM_SLOTS] = {0};
    for (long it = 0; it < 100000 * scale; it++) {
        uint64_t r = splitmix64(&rng);
        struct hdr **s = &slot[(r >> 8) % OOM_SLOTS];
        size_t n = mixed_size(&rng);
        if (*s && r % 4 == 0) {
            size_t old = (*s)->size;
            uint64_t seed = (*s)->seed;
            errno = 0;
            struct hdr *q = realloc(*s, n);
            if (!q) {
                atomic_fetch_add(&oom_failed_reallocs, 1);
                if (errno != ENOMEM) failed("%s: %p errno not ENOMEM after a failed realloc to %zu", "realloc", *s, n);
                if (!intact(*s, old, seed)) failed("%s: %p a failed realloc to %zu changed the block", "realloc", *s, n);
                continue;
            }
            if (!prefix_intact(q, n < old ? n : old, old, seed)) failed("%s: %p realloc to %zu lost the contents", "realloc", q, n);
            *s = q;
            stamp(q, n, splitmix64(&rng));
        } else if (*s) {
            release(*s);
            *s = NULL;
        } else {
            errno = 0;
            struct hdr *h = r % 3 == 0 ? calloc(1, n) : malloc(n);
            if (!h) {
                atomic_fetch_add(&oom_nulls, 1);
                if (errno != ENOMEM) failed("%s: %p errno %zu, not ENOMEM, with NULL", "malloc", NULL, (size_t)errno);
                continue;
            }
            atomic_fetch_add(&oom_allocs, 1);
            stamp(h, n, splitmix64(&rng));
            *s = h;
        }
    }
    for (int i = 0; i < OOM_SLOTS; i++)
        if (slot[i]) release(slot[i]);
    atomic_fetch_sub(&oom_running, 1);
    return NULL;
}

static void set_limit(rlim_t soft) {
    struct rlimit rl;
    getrlimit(RLIMIT_AS, &rl);
    rl.rlim_cur = soft;
    if (setrlimit(RLIMIT_AS, &rl) != 0) failed("%s: %p setrlimit(%zu)", "setup", NULL, (size_t)soft);
}

static void run_oom(void) {
    struct hakmem_stats before = stats_now();
    pthread_t t[OOM_THREADS];
    atomic_store(&oom_running, OOM_THREADS);
    for (int i = 0; i < OOM_THREADS; i++) pthread_create(&t[i], NULL, oom_worker, (void *)(uintptr_t)i);
    /* Thread stacks are mapped; from now on the limit moves every 1-4 ms. */
    uint64_t rng = 7;
    unsigned long limits = 0;
    while (atomic_load(&oom_running) > 0) {
        uint64_t r = splitmix64(&rng);
        if (r % 10 < 7) {
            /* Often no room at all: the allocator's reserve must serve, or
             * the call must fail cleanly. */
            long room_mib = (long)((r >> 8) % 48) - 16;
            set_limit((rlim_t)(statm_kib(0) + (room_mib > 0 ? room_mib : 0) * 1024) * 1024);
        } else {
            set_limit(RLIM_INFINITY);
        }
        limits++;
        struct timespec ts = {0, (long)(1 + (r >> 40) % 4) * 1000000};
        nanosleep(&ts, NULL);
    }
    set_limit(RLIM_INFINITY);
    for (int i = 0; i < OOM_THREADS; i++) pthread_join(t[i], NULL);
    /* Recovery: with the limit lifted, every size allocates again. */
    uint64_t r = 99;
    for (int i = 0; i < 2000; i++) {
        size_t n = mixed_size(&r);
        struct hdr *h = malloc(n);
        if (!h) {
            failed("%s: %p malloc(%zu) failed after the limit was lifted", "recovery", NULL, n);
            continue;
        }
        stamp(h, n, (uint64_t)i);
        release(h);
    }
    printf("faults oom: allocs=%lu nulls=%lu failed_reallocs=%lu limit_changes=%lu\n", atomic_load(&oom_allocs),
           atomic_load(&oom_nulls), atomic_load(&oom_failed_reallocs), limits);
    if (atomic_load(&oom_nulls) == 0) failed("%s: %p %zu NULLs: the limit never bit", "setup", NULL, 0);
    if (atomic_load(&oom_allocs) < 10000) failed("%s: %p only %zu allocations succeeded", "setup", NULL, atomic_load(&oom_allocs));
    check_nothing_left(&before);
}

/* ---- forks: fork while threads allocate and free each other's blocks ---- */

#define FORK_THREADS 4
#define FORK_SLOTS 1024
#define FORK_KEEP 64
static _Atomic(struct hdr *) fork_slots[FORK_SLOTS];
static atomic_int fork_stop;

static void *fork_worker(void *arg) {
    uint64_t rng = 0xF0F0ull * (1 + (uintptr_t)arg);
    while (!atomic_load(&fork_stop)) {
        uint64_t r = splitmix64(&rng);
        size_t n = mixed_size(&rng);
        struct hdr *h = r % 2 ? malloc(n) : NULL;
        if (h) stamp(h, n, r);
        struct hdr *old = atomic_exchange(&fork_slots[(r >> 8) % FORK_SLOTS], h);
        if (old) release(old);
    }
    return NULL;
}

static void *child_thread(void *arg) {
    uint64_t rng = (uintptr_t)arg;
    for (int i = 0; i < 500; i++) {
        size_t n = mixed_size(&rng);
        struct hdr *h = malloc(n);
        if (!h) return (void *)1;
        stamp(h, n, (uint64_t)i);
        if (!intact(h, n, (uint64_t)i)) return (void *)1;
        free(h);
    }
    return NULL;
}

/* In the child: only this thread survived the fork. */
static int child(struct hdr **keep, int round) {
    alarm(20);
    int ok = 1;
    for (int i = 0; i < FORK_KEEP; i++) {
        ok &= intact(keep[i], keep[i]->size, keep[i]->seed);
        if (i % 2) free(keep[i]);
    }
    /* Blocks the other (now gone) threads allocated, freed from here. */
    for (int i = round % 8; i < FORK_SLOTS; i += 8) {
        struct hdr *h = atomic_exchange(&fork_slots[i], NULL);
        if (h) {
            ok &= intact(h, h->size, h->seed);
            free(h);
        }
    }
    ok &= child_thread((void *)(uintptr_t)round) == NULL;
    pthread_t t;
    void *res = (void *)1;
    ok &= pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(round + 1)) == 0;
    ok &= pthread_join(t, &res) == 0 && res == NULL;
    return ok;
}

static void run_forks(void) {
    struct hakmem_stats before = stats_now();
    struct hdr *keep[FORK_KEEP];
    uint64_t rng = 3;
    for (int i = 0; i < FORK_KEEP; i++) {
        size_t n = mixed_size(&rng);
        keep[i] = malloc(n);
        stamp(keep[i], n, (uint64_t)i);
    }
    pthread_t t[FORK_THREADS];
    for (int i = 0; i < FORK_THREADS; i++) pthread_create(&t[i], NULL, fork_worker, (void *)(uintptr_t)i);
    int forks = (int)(150 * scale), bad = 0;
    for (int i = 0; i < forks; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) _exit(child(keep, i) ? 0 : 3);
        if (pid < 0) {
            failed("%s: %p fork failed (%zu)", "setup", NULL, (size_t)errno);
            continue;
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            bad++;
            failed("%s: %p a child %zu failed or deadlocked", "fork", NULL, (size_t)st);
        }
        struct timespec ts = {0, (long)(splitmix64(&rng) % 1000) * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&fork_stop, 1);
    for (int i = 0; i < FORK_THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < FORK_SLOTS; i++) {
        struct hdr *h = atomic_exchange(&fork_slots[i], NULL);
        if (h) release(h);
    }
    for (int i = 0; i < FORK_KEEP; i++) release(keep[i]);
    printf("faults forks: forks=%d failed_children=%d\n", forks, bad);
    check_nothing_left(&before);
}

/* ---- churn: thousands of short-lived threads ---- */

#define CHURN_WAVE 8
#define CHURN_SLOTS 2048
#define CHURN_BLOCKS 300
static _Atomic(struct hdr *) churn_slots[CHURN_SLOTS];
static atomic_ulong churn_handed;

static size_t churn_size(uint64_t *rng) {
    uint64_t r = splitmix64(rng);
    if (r % 100 < 90) return sizeof(struct hdr) + (r >> 8) % 2048;
    if (r % 100 < 99) return 2048 + (r >> 8) % (60 << 10);
    return (64 << 10) + (r >> 8) % (448 << 10);
}

static void *churn_thread(void *arg) {
    uint64_t rng = 0xC4u * (1 + (uintptr_t)arg);
    struct hdr *mine[CHURN_BLOCKS];
    for (int i = 0; i < CHURN_BLOCKS; i++) {
        size_t n = churn_size(&rng);
        mine[i] = malloc(n);
        if (!mine[i]) {
            failed("%s: %p malloc(%zu) failed", "churn", NULL, n);
            continue;
        }
        stamp(mine[i], n, splitmix64(&rng));
    }
    for (int i = 0; i < CHURN_BLOCKS; i++) {
        if (!mine[i]) continue;
        uint64_t r = splitmix64(&rng);
        if (r % 4 == 0) {
            /* Hand it to a later thread; free what was waiting there. */
            struct hdr *old = atomic_exchange(&churn_slots[(r >> 8) % CHURN_SLOTS], mine[i]);
            atomic_fetch_add(&churn_handed, 1);
            if (old) release(old);
        } else if (r % 4 == 1) {
            size_t n = churn_size(&rng);
            struct hdr *q = realloc(mine[i], n);
            if (!q) failed("%s: %p realloc to %zu failed", "churn", mine[i], n);
            else {
                stamp(q, n, r);
                release(q);
            }
        } else {
            release(mine[i]);
        }
    }
    return NULL;
}

static void run_churn(void) {
    struct hakmem_stats before = stats_now();
    long base_kib = statm_kib(1), peak_kib = base_kib;
    long threads = 3000 * scale;
    for (long made = 0; made < threads; made += CHURN_WAVE) {
        pthread_t t[CHURN_WAVE];
        for (int i = 0; i < CHURN_WAVE; i++) pthread_create(&t[i], NULL, churn_thread, (void *)(uintptr_t)(made + i));
        for (int i = 0; i < CHURN_WAVE; i++) pthread_join(t[i], NULL);
        long now = statm_kib(1);
        if (now > peak_kib) peak_kib = now;
    }
    struct hakmem_stats mid = stats_now();
    for (int i = 0; i < CHURN_SLOTS; i++) {
        struct hdr *h = atomic_exchange(&churn_slots[i], NULL);
        if (h) release(h);
    }
    printf("faults churn: threads=%ld handed_over=%lu rss_base_kib=%ld rss_peak_kib=%ld heaps_live=%zu "
           "segments_mapped=%zu\n",
           threads, atomic_load(&churn_handed), base_kib, peak_kib, mid.heaps_live, mid.segments_mapped);
    /* The live set is at most the table (2048 blocks, mostly under 2 KiB)
     * plus 8 threads' blocks: a few MiB. 96 MiB is room for 8 threads'
     * segments and caches (about 65 MiB measured: the segment store keeps
     * up to HAKMEM_PURGE_DIRTY of exited threads' pages), and what 3000 threads
     * would leave behind if each exiting thread kept 32 KiB. */
    if (peak_kib - base_kib > 96 * 1024)
        failed("%s: %p resident memory grew by %zu KiB over 3000 short-lived threads", "churn", NULL,
               (size_t)(peak_kib - base_kib));
    if (mid.heaps_live > 2 * CHURN_WAVE)
        failed("%s: %p %zu heaps live after the threads exited: heaps are not reused", "churn", NULL, mid.heaps_live);
    check_nothing_left(&before);
}

/* ---- exit-race: remote frees racing their owner's exit ---- */

#define RACE_BATCH 8192
#define RACE_QUEUE 64
static struct hdr **race_queue[RACE_QUEUE];
static int race_head, race_len, race_done;
static pthread_mutex_t race_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t race_cv = PTHREAD_COND_INITIALIZER;
static atomic_ulong race_freed;

static void *race_producer(void *arg) {
    uint64_t rng = 0x5EEDull * (1 + (uintptr_t)arg);
    struct hdr **batch = malloc(RACE_BATCH * sizeof *batch);
    if (!batch) return NULL;
    for (int i = 0; i < RACE_BATCH; i++) {
        size_t n = 48 + splitmix64(&rng) % 32; /* two classes: full pages */
        batch[i] = malloc(n);
        if (batch[i]) stamp(batch[i], n, (uint64_t)i);
    }
    pthread_mutex_lock(&race_mu);
    while (race_len == RACE_QUEUE) pthread_cond_wait(&race_cv, &race_mu);
    race_queue[(race_head + race_len++) % RACE_QUEUE] = batch;
    pthread_cond_broadcast(&race_cv);
    pthread_mutex_unlock(&race_mu);
    return NULL; /* exits while a consumer frees the batch */
}

static void *race_consumer(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&race_mu);
        while (race_len == 0 && !race_done) pthread_cond_wait(&race_cv, &race_mu);
        if (race_len == 0) {
            pthread_mutex_unlock(&race_mu);
            return NULL;
        }
        struct hdr **batch = race_queue[race_head];
        race_head = (race_head + 1) % RACE_QUEUE;
        race_len--;
        pthread_cond_broadcast(&race_cv);
        pthread_mutex_unlock(&race_mu);
        for (int i = 0; i < RACE_BATCH; i++)
            if (batch[i]) release(batch[i]);
        free(batch);
        atomic_fetch_add(&race_freed, RACE_BATCH);
    }
}

static void run_exit_race(void) {
    struct hakmem_stats before = stats_now();
    pthread_t consumers[2];
    for (int i = 0; i < 2; i++) pthread_create(&consumers[i], NULL, race_consumer, NULL);
    long producers = 3000 * scale;
    for (long made = 0; made < producers; made += 2) {
        pthread_t t[2];
        for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, race_producer, (void *)(uintptr_t)(made + i));
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    }
    pthread_mutex_lock(&race_mu);
    race_done = 1;
    pthread_cond_broadcast(&race_cv);
    pthread_mutex_unlock(&race_mu);
    for (int i = 0; i < 2; i++) pthread_join(consumers[i], NULL);
    printf("faults exit-race: producers=%ld freed=%lu\n", producers, atomic_load(&race_freed));
    check_nothing_left(&before);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2 || argc > 3 || (argc == 3 && (scale = atol(argv[2])) < 1)) {
        fprintf(stderr, "usage: faults oom|forks|churn|exit-race [scale]\n");
        return 2;
    }
    const char *mode = argv[1];
    if (!strcmp(mode, "oom")) run_oom();
    else if (!strcmp(mode, "forks")) run_forks();
    else if (!strcmp(mode, "churn")) run_churn();
    else if (!strcmp(mode, "exit-race")) run_exit_race();
    else {
        fprintf(stderr, "faults: unknown mode %s\n", mode);
        return 2;
    }
    if (atomic_load(&n_errors)) {
        printf("faults %s: FAILED (%lu errors)\n", mode, atomic_load(&n_errors));
        return 1;
    }
    printf("faults %s: OK\n", mode);
    return 0;
}
