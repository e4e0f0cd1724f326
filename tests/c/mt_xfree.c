/* mt_xfree.c: producer/consumer cross-thread frees.
 *
 * Producer threads malloc blocks of pseudo-random sizes (8 B .. 64 KiB, a
 * few up to 4 MiB), fill them with a pattern derived from (thread, index) and
 * push them through a mutex-protected bounded queue; consumer threads verify
 * the pattern, sometimes realloc the block (in the consumer thread), and free
 * it. The output is deterministic (sums are order-independent), so the run
 * under LD_PRELOAD=libhakmem.so must print exactly what the glibc run prints.
 *
 * usage: mt_xfree [producers consumers blocks_per_producer]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t mix(uint64_t x) {
    uint64_t s = x;
    return splitmix64(&s);
}

static void fill(unsigned char *p, size_t n, uint64_t seed) {
    size_t w = n / 8, i;
    for (i = 0; i < w; i++) {
        uint64_t v = mix(seed + i);
        memcpy(p + 8 * i, &v, 8);
    }
    uint64_t v = mix(seed + w);
    for (i = 8 * w; i < n; i++) p[i] = (unsigned char)(v >> (8 * (i - 8 * w)));
}
static int verify(const unsigned char *p, size_t n, uint64_t seed) {
    size_t w = n / 8, i;
    for (i = 0; i < w; i++) {
        uint64_t v = mix(seed + i), got;
        memcpy(&got, p + 8 * i, 8);
        if (got != v) return 0;
    }
    uint64_t v = mix(seed + w);
    for (i = 8 * w; i < n; i++)
        if (p[i] != (unsigned char)(v >> (8 * (i - 8 * w)))) return 0;
    return 1;
}

struct item {
    unsigned char *p;
    size_t size;
    uint32_t thread, index;
};

enum { QCAP = 256 };
static struct item queue[QCAP];
static size_t q_head, q_len;
static int producers_left;
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_not_empty = PTHREAD_COND_INITIALIZER, q_not_full = PTHREAD_COND_INITIALIZER;

static int n_producers = 2, n_consumers = 2, n_blocks = 20000;

static void push(struct item it) {
    pthread_mutex_lock(&q_mu);
    while (q_len == QCAP) pthread_cond_wait(&q_not_full, &q_mu);
    queue[(q_head + q_len) % QCAP] = it;
    q_len++;
    pthread_cond_signal(&q_not_empty);
    pthread_mutex_unlock(&q_mu);
}
/* returns 0 when everything has been consumed */
static int pop(struct item *it) {
    pthread_mutex_lock(&q_mu);
    while (q_len == 0 && producers_left > 0) pthread_cond_wait(&q_not_empty, &q_mu);
    if (q_len == 0) {
        pthread_mutex_unlock(&q_mu);
        return 0;
    }
    *it = queue[q_head];
    q_head = (q_head + 1) % QCAP;
    q_len--;
    pthread_cond_signal(&q_not_full);
    pthread_mutex_unlock(&q_mu);
    return 1;
}

static uint64_t seed_of(uint32_t t, uint32_t i) { return ((uint64_t)t << 40) ^ ((uint64_t)i << 8) ^ 0xABCDEF; }

struct totals {
    uint64_t blocks, bytes, checksum, errors, null_allocs;
};

static void *producer(void *arg) {
    uint32_t t = (uint32_t)(uintptr_t)arg;
    uint64_t rng = 1000 + t;
    struct totals *tot = calloc(1, sizeof *tot);
    for (uint32_t i = 0; i < (uint32_t)n_blocks; i++) {
        uint64_t r = splitmix64(&rng);
        size_t size;
        unsigned pick = (unsigned)(r % 1000);
        if (pick < 900)
            size = 8 + (size_t)(r >> 20) % (1024 - 8 + 1);
        else if (pick < 995)
            size = 8 + (size_t)(r >> 20) % (65536 - 8 + 1);
        else
            size = 65536 + (size_t)(r >> 20) % (4 * 1024 * 1024 - 65536 + 1);
        unsigned char *p = malloc(size);
        if (!p) {
            tot->null_allocs++;
            continue;
        }
        fill(p, size, seed_of(t, i));
        tot->blocks++;
        tot->bytes += size;
        push((struct item){p, size, t, i});
    }
    pthread_mutex_lock(&q_mu);
    producers_left--;
    pthread_cond_broadcast(&q_not_empty);
    pthread_mutex_unlock(&q_mu);
    return tot;
}

static void *consumer(void *arg) {
    (void)arg;
    struct totals *tot = calloc(1, sizeof *tot);
    struct item it;
    while (pop(&it)) {
        uint64_t seed = seed_of(it.thread, it.index);
        if (!verify(it.p, it.size, seed)) {
            if (tot->errors < 5)
                fprintf(stderr, "mt_xfree: corrupted block thread=%u index=%u size=%zu\n", it.thread, it.index, it.size);
            tot->errors++;
        }
        tot->blocks++;
        tot->bytes += it.size;
        tot->checksum += mix(seed ^ it.size) ^ it.p[it.size / 2];
        if (it.index % 8 == 3) {
            /* realloc in the consumer thread, keep the prefix */
            size_t m = it.index % 16 == 3 ? it.size / 2 + 1 : it.size * 2;
            unsigned char *q = realloc(it.p, m);
            if (!q) {
                tot->null_allocs++;
            } else {
                size_t k = m < it.size ? m : it.size;
                /* the prefix of the pattern is the pattern of the prefix for whole words */
                size_t kw = k / 8 * 8;
                if (!verify(q, kw, seed)) {
                    if (tot->errors < 5)
                        fprintf(stderr, "mt_xfree: realloc lost contents thread=%u index=%u %zu -> %zu\n", it.thread,
                                it.index, it.size, m);
                    tot->errors++;
                }
                it.p = q;
            }
        }
        free(it.p);
    }
    return tot;
}

int main(int argc, char **argv) {
    if (argc == 4) {
        n_producers = atoi(argv[1]);
        n_consumers = atoi(argv[2]);
        n_blocks = atoi(argv[3]);
    }
    if (n_producers < 1 || n_producers > 64 || n_consumers < 1 || n_consumers > 64 || n_blocks < 1) {
        fprintf(stderr, "usage: mt_xfree [producers consumers blocks_per_producer]\n");
        return 2;
    }
    producers_left = n_producers;
    pthread_t pt[64], ct[64];
    for (int i = 0; i < n_consumers; i++) pthread_create(&ct[i], NULL, consumer, NULL);
    for (int i = 0; i < n_producers; i++) pthread_create(&pt[i], NULL, producer, (void *)(uintptr_t)i);
    struct totals prod = {0}, cons = {0};
    for (int i = 0; i < n_producers; i++) {
        struct totals *t;
        pthread_join(pt[i], (void **)&t);
        prod.blocks += t->blocks;
        prod.bytes += t->bytes;
        prod.null_allocs += t->null_allocs;
        free(t);
    }
    for (int i = 0; i < n_consumers; i++) {
        struct totals *t;
        pthread_join(ct[i], (void **)&t);
        cons.blocks += t->blocks;
        cons.bytes += t->bytes;
        cons.checksum += t->checksum;
        cons.errors += t->errors;
        cons.null_allocs += t->null_allocs;
        free(t);
    }
    printf("mt_xfree: producers=%d consumers=%d\n", n_producers, n_consumers);
    printf("produced: blocks=%llu bytes=%llu failed_allocs=%llu\n", (unsigned long long)prod.blocks,
           (unsigned long long)prod.bytes, (unsigned long long)prod.null_allocs);
    printf("consumed: blocks=%llu bytes=%llu failed_reallocs=%llu\n", (unsigned long long)cons.blocks,
           (unsigned long long)cons.bytes, (unsigned long long)cons.null_allocs);
    printf("checksum=%016llx errors=%llu\n", (unsigned long long)cons.checksum, (unsigned long long)cons.errors);
    int ok = cons.errors == 0 && prod.blocks == cons.blocks && prod.bytes == cons.bytes && prod.null_allocs == 0 &&
             cons.null_allocs == 0;
    printf("%s\n", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}
