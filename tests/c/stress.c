/* stress.c: bounded multi-threaded allocator stress with cross-thread frees
 * and a leak check through hakmem_stats_get.
 *
 * usage: stress [threads iterations_per_thread]      (default 4 x 60000)
 *
 * Threads share an array of slots; a block is put into a slot with an atomic
 * exchange, so the block that comes out (and gets verified, realloc'ed or
 * freed) was often allocated by another thread. Each block starts with a
 * header {size, seed} followed by a pattern derived from the seed (PRNG:
 * splitmix64, seeded per thread), verified before every free/realloc.
 * The run is bounded by iterations, not time.
 *
 * At the end everything is freed, malloc_trim(0) is called, and:
 *   pages_in_use <= pages_in_use before the threads started + PAGE_SLACK
 *   huge_mapped  == 0
 *   malloc_calls and free_calls grew by at least what this program did.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"
#include "hk_sym.h"
#include "pattern.h"

#define PAGE_SLACK 8
#define NSLOTS 4096

struct hdr {
    uint64_t size;
    uint64_t seed;
};

static _Atomic(struct hdr *) slots[NSLOTS];
static atomic_ulong n_allocs, n_frees, n_errors, n_reallocs, n_bytes;
static void (*p_free_sized)(void *, size_t);
static int n_threads = 4;
static long n_iters = 60000;

static void error(const char *what, struct hdr *h, size_t n) {
    unsigned long e = atomic_fetch_add(&n_errors, 1);
    if (e < 10) fprintf(stderr, "stress: ERROR %s: block %p size %zu\n", what, (void *)h, n);
}

static size_t rand_size(uint64_t *rng) {
    uint64_t r = splitmix64(rng);
    unsigned pick = (unsigned)(r % 10000);
    r >>= 16;
    if (pick < 7000) return 16 + r % 241;                        /* 70%    16 .. 256 */
    if (pick < 9500) return 256 + r % (8192 - 256 + 1);          /* 25%    .. 8 KiB */
    if (pick < 9950) return 8192 + r % (262144 - 8192 + 1);      /* 4.5%   .. 256 KiB */
    if (pick < 9995) return 262144 + r % (2097152 - 262144 + 1); /* 0.45%  .. 2 MiB */
    return 2097152 + r % (8388608 - 2097152 + 1);                /* 0.05%  .. 8 MiB */
}

static void stamp(struct hdr *h, size_t n, uint64_t seed) {
    h->size = n;
    h->seed = seed;
    fill((unsigned char *)(h + 1), n - sizeof *h, seed);
}
static int check_block(struct hdr *h) {
    size_t n = h->size;
    if (n < sizeof *h || n > ((size_t)64 << 20)) {
        error("bad header", h, n);
        return 0;
    }
    if (malloc_usable_size(h) < n) {
        error("usable size smaller than size", h, n);
        return 0;
    }
    if (!verify((unsigned char *)(h + 1), n - sizeof *h, h->seed)) {
        error("pattern corrupted", h, n);
        return 0;
    }
    return 1;
}

static struct hdr *new_block(uint64_t *rng) {
    size_t n = rand_size(rng);
    uint64_t r = splitmix64(rng);
    struct hdr *h = NULL;
    switch (r % 20) {
    case 0: case 1: case 2: /* calloc: must be zeroed */
        h = calloc(1, n);
        if (h) {
            const unsigned char *b = (const unsigned char *)h;
            size_t i = 0;
            uint64_t acc = 0, w;
            for (; i + 8 <= n; i += 8) {
                memcpy(&w, b + i, 8);
                acc |= w;
            }
            for (; i < n; i++) acc |= b[i];
            if (acc) error("calloc memory not zeroed", h, n);
        }
        break;
    case 3: { /* aligned_alloc */
        size_t a = (size_t)16 << ((r >> 8) % 9); /* 16 .. 4096 */
        h = aligned_alloc(a, n);
        if (h && ((uintptr_t)h & (a - 1))) error("aligned_alloc misaligned", h, n);
        break;
    }
    case 4: { /* posix_memalign */
        size_t a = (size_t)8 << ((r >> 8) % 11); /* 8 .. 8192 */
        void *p = NULL;
        if (posix_memalign(&p, a, n) == 0) h = p;
        if (h && ((uintptr_t)h & (a - 1))) error("posix_memalign misaligned", h, n);
        break;
    }
    default:
        h = malloc(n);
        if (h && ((uintptr_t)h & 15)) error("malloc result not 16-aligned", h, n);
        break;
    }
    if (!h) {
        error("allocation returned NULL", NULL, n);
        return NULL;
    }
    atomic_fetch_add(&n_allocs, 1);
    atomic_fetch_add(&n_bytes, n);
    stamp(h, n, splitmix64(rng));
    return h;
}

static void release(struct hdr *h, uint64_t r) {
    check_block(h);
    size_t n = h->size;
    memset(h, 0xDD, n < 64 ? n : 64); /* dirty it: a later calloc must still zero */
    if (p_free_sized && r % 4 == 0)
        p_free_sized(h, n);
    else
        free(h);
    atomic_fetch_add(&n_frees, 1);
}

static void *worker(void *arg) {
    uint64_t rng = 0x1234567ull * (1 + (uintptr_t)arg);
    for (long it = 0; it < n_iters; it++) {
        uint64_t r = splitmix64(&rng);
        unsigned op = (unsigned)(r % 100);
        size_t slot = (size_t)(r >> 32) % NSLOTS;
        if (op < 45) {
            struct hdr *h = new_block(&rng);
            if (!h) continue;
            struct hdr *old = atomic_exchange(&slots[slot], h);
            if (old) release(old, r >> 8);
        } else if (op < 65) {
            struct hdr *h = atomic_exchange(&slots[slot], NULL);
            if (!h) continue;
            if (!check_block(h)) continue; /* leak it rather than crash */
            size_t old = h->size, m = rand_size(&rng);
            uint64_t seed = h->seed;
            struct hdr *q = realloc(h, m);
            atomic_fetch_add(&n_reallocs, 1);
            if (!q) {
                error("realloc returned NULL", h, m);
                continue;
            }
            size_t k = m < old ? m : old;
            if (q->size != old || q->seed != seed || !verify((unsigned char *)(q + 1), k - sizeof *q, seed))
                error("realloc lost contents", q, m);
            stamp(q, m, splitmix64(&rng));
            struct hdr *prev = atomic_exchange(&slots[slot], q);
            if (prev) release(prev, r >> 8);
        } else if (op < 95) {
            struct hdr *h = atomic_exchange(&slots[slot], NULL);
            if (h) release(h, r >> 8);
        } else {
            /* thread-local burst of tiny blocks, freed in reverse order */
            unsigned char *v[32];
            size_t sz[32];
            for (int i = 0; i < 32; i++) {
                sz[i] = 1 + (size_t)(splitmix64(&rng) % 64);
                v[i] = malloc(sz[i]);
                if (!v[i]) {
                    error("malloc(tiny) returned NULL", NULL, sz[i]);
                    continue;
                }
                atomic_fetch_add(&n_allocs, 1);
                fill(v[i], sz[i], (uint64_t)it * 32 + i);
            }
            for (int i = 31; i >= 0; i--) {
                if (!v[i]) continue;
                if (!verify(v[i], sz[i], (uint64_t)it * 32 + i)) error("tiny block corrupted", (void *)v[i], sz[i]);
                free(v[i]);
                atomic_fetch_add(&n_frees, 1);
            }
        }
    }
    return NULL;
}

static void print_stats(const char *when, const struct hakmem_stats *s) {
    printf("stress: %s: malloc_calls=%zu free_calls=%zu segments_mapped=%zu huge_mapped=%zu bytes_mapped=%zu "
           "pages_in_use=%zu heaps_live=%zu bigcache_hits=%zu purged_bytes=%zu\n",
           when, s->malloc_calls, s->free_calls, s->segments_mapped, s->huge_mapped, s->bytes_mapped,
           s->pages_in_use, s->heaps_live, s->bigcache_hits, s->purged_bytes);
}

int main(int argc, char **argv) {
    if (argc == 3) {
        n_threads = atoi(argv[1]);
        n_iters = atol(argv[2]);
    }
    if (n_threads < 1 || n_threads > 64 || n_iters < 1) {
        fprintf(stderr, "usage: stress [threads iterations_per_thread]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* what was printed survives a crash */
    int (*stats_get)(struct hakmem_stats *) = HK_SYM(hakmem_stats_get);
    p_free_sized = HK_SYM(free_sized);
    printf("stress[%s]: threads=%d iterations=%ld\n", HK_MODE, n_threads, n_iters);
    fflush(stdout);
    if (!stats_get) {
        printf("stress: FAILED: hakmem_stats_get not found (is hakmem loaded?)\n");
        return 1;
    }
    struct hakmem_stats before, after;
    stats_get(&before);
    print_stats("before", &before);
    fflush(stdout);

    pthread_t t[64];
    for (int i = 0; i < n_threads; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
    for (int i = 0; i < n_threads; i++) pthread_join(t[i], NULL);

    struct hakmem_stats mid;
    stats_get(&mid);
    print_stats("after threads", &mid);
    unsigned long left = 0;
    for (int i = 0; i < NSLOTS; i++) {
        struct hdr *h = atomic_exchange(&slots[i], NULL);
        if (h) {
            release(h, (uint64_t)i);
            left++;
        }
    }
    int trim = malloc_trim(0);
    stats_get(&after);
    print_stats("after free+trim", &after);
    printf("stress: allocs=%lu frees=%lu reallocs=%lu bytes=%lu freed_at_end=%lu trim=%d errors=%lu\n",
           atomic_load(&n_allocs), atomic_load(&n_frees), atomic_load(&n_reallocs), atomic_load(&n_bytes), left,
           trim, atomic_load(&n_errors));

    int ok = 1;
    if (atomic_load(&n_errors)) {
        printf("stress: FAILED: %lu errors (corruption or failed allocations)\n", atomic_load(&n_errors));
        ok = 0;
    }
    if (atomic_load(&n_allocs) != atomic_load(&n_frees)) {
        printf("stress: FAILED: test bookkeeping: %lu allocs vs %lu frees\n", atomic_load(&n_allocs),
               atomic_load(&n_frees));
        ok = 0;
    }
    if (after.pages_in_use > before.pages_in_use + PAGE_SLACK) {
        printf("stress: FAILED: leak: pages_in_use %zu after everything was freed, %zu before (slack %d)\n",
               after.pages_in_use, before.pages_in_use, PAGE_SLACK);
        ok = 0;
    }
    if (after.huge_mapped != 0) {
        printf("stress: FAILED: huge_mapped = %zu after everything was freed and malloc_trim(0)\n", after.huge_mapped);
        ok = 0;
    }
    if (trim != 0 && trim != 1) {
        printf("stress: FAILED: malloc_trim(0) returned %d\n", trim);
        ok = 0;
    }
    if (after.malloc_calls - before.malloc_calls < atomic_load(&n_allocs)) {
        printf("stress: FAILED: malloc_calls grew by %zu, the program made %lu allocation calls\n",
               after.malloc_calls - before.malloc_calls, atomic_load(&n_allocs));
        ok = 0;
    }
    if (after.free_calls - before.free_calls < atomic_load(&n_frees)) {
        printf("stress: FAILED: free_calls grew by %zu, the program made %lu free calls\n",
               after.free_calls - before.free_calls, atomic_load(&n_frees));
        ok = 0;
    }
    printf("stress: %s\n", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}
