/* stats.c: hakmem's statistics seen from C: the per-class census
 * (hakmem_class_stats_get) follows known allocations exactly, the counters
 * count cross-thread frees and huge-cache misses, and malloc_info writes
 * glibc's XML shape with the free blocks of each class.
 * Prints "stats: N passed, N failed". Static build only (hakmem.h). */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

static int passed, failed;
#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (cond) {                                        \
            passed++;                                      \
        } else {                                           \
            failed++;                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);    \
            printf(__VA_ARGS__);                           \
            printf("\n");                                  \
        }                                                  \
    } while (0)

#define MAX_CLASSES 128
static struct hakmem_class_stats before[MAX_CLASSES], after[MAX_CLASSES];

static size_t class_of(const struct hakmem_class_stats *c, size_t n, size_t size) {
    for (size_t i = 0; i < n; i++)
        if (c[i].block_size >= size) return i;
    return n;
}

enum { SMALL = 48, MID = 5000, N_SMALL = 1000, N_MID = 100 };
static void *small[N_SMALL], *mid[N_MID];

static void *free_them(void *arg) {
    void **blocks = arg;
    for (int i = 0; i < 10; i++) free(blocks[i]);
    return NULL;
}

int main(void) {
    size_t n = hakmem_class_stats_get(NULL, 0);
    CHECK(n > 10 && n <= MAX_CLASSES, "class count %zu", n);
    if (n > MAX_CLASSES) n = MAX_CLASSES;

    /* Nothing else allocates between the two censuses. */
    hakmem_class_stats_get(before, n);
    for (int i = 0; i < N_SMALL; i++) small[i] = malloc(SMALL);
    for (int i = 0; i < N_MID; i++) mid[i] = malloc(MID);
    hakmem_class_stats_get(after, n);
    size_t cs = class_of(after, n, SMALL), cm = class_of(after, n, MID);
    CHECK(cs < n && cm < n && cs != cm, "classes of %d and %d: %zu %zu", SMALL, MID, cs, cm);
    CHECK(after[cs].blocks_in_use - before[cs].blocks_in_use == N_SMALL, "class %zu (%zu B): %zu -> %zu blocks in use, want +%d",
          cs, after[cs].block_size, before[cs].blocks_in_use, after[cs].blocks_in_use, N_SMALL);
    CHECK(after[cm].blocks_in_use - before[cm].blocks_in_use == N_MID, "class %zu (%zu B): %zu -> %zu blocks in use, want +%d",
          cm, after[cm].block_size, before[cm].blocks_in_use, after[cm].blocks_in_use, N_MID);
    CHECK(after[cs].pages * 65536 >= after[cs].bytes_in_use + after[cs].bytes_free && after[cs].pages > 0,
          "class %zu: %zu pages hold %zu + %zu bytes", cs, after[cs].pages, after[cs].bytes_in_use, after[cs].bytes_free);
    int consistent = 1;
    for (size_t i = 0; i < n; i++) {
        if (after[i].bytes_in_use != after[i].blocks_in_use * after[i].block_size) consistent = 0;
        if (i > 0 && after[i].block_size <= after[i - 1].block_size) consistent = 0;
        if (after[i].pages == 0 && (after[i].blocks_in_use || after[i].bytes_free)) consistent = 0;
    }
    CHECK(consistent, "a class row is inconsistent (bytes = blocks * size, sizes increasing, no blocks without pages)");

    /* Another thread frees 10 of them: counted as cross-thread frees. */
    struct hakmem_stats s0, s1;
    hakmem_stats_get(&s0);
    pthread_t t;
    pthread_create(&t, NULL, free_them, small);
    pthread_join(t, NULL);
    hakmem_stats_get(&s1);
    CHECK(s1.cross_thread_frees - s0.cross_thread_frees == 10, "cross_thread_frees %zu -> %zu, want +10",
          s0.cross_thread_frees, s1.cross_thread_frees);

    for (int i = 10; i < N_SMALL; i++) free(small[i]);
    for (int i = 0; i < N_MID; i++) free(mid[i]);
    /* A huge block that must be mapped: one more miss. */
    hakmem_stats_get(&s0);
    void *huge = malloc(64u << 20);
    hakmem_stats_get(&s1);
    CHECK(huge && s1.bigcache_misses == s0.bigcache_misses + 1, "bigcache_misses %zu -> %zu", s0.bigcache_misses, s1.bigcache_misses);
    CHECK(s1.resident_bytes > 0 && s1.resident_peak_bytes >= s1.resident_bytes, "resident %zu peak %zu",
          s1.resident_bytes, s1.resident_peak_bytes);
    free(huge);

    /* The local frees are back at once; the other thread's 10 wait for the
     * owner to collect them (they count as in use until then). */
    hakmem_class_stats_get(after, n);
    CHECK(after[cm].blocks_in_use == before[cm].blocks_in_use, "class %zu: %zu blocks in use after the frees, want %zu", cm,
          after[cm].blocks_in_use, before[cm].blocks_in_use);
    CHECK(after[cs].blocks_in_use <= before[cs].blocks_in_use + 10, "class %zu: %zu blocks in use after the frees, want <= %zu", cs,
          after[cs].blocks_in_use, before[cs].blocks_in_use + 10);

    /* malloc_info: glibc's shape, with the freed blocks of the small class. */
    char *xml = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&xml, &len);
    int r = malloc_info(0, f);
    fclose(f);
    CHECK(r == 0 && xml, "malloc_info returned %d", r);
    if (xml) {
        CHECK(strncmp(xml, "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n", 41) == 0, "malloc_info starts %.60s", xml);
        CHECK(strstr(xml, "</heap>\n") && strstr(xml, "<total type=\"mmap\"") && strstr(xml, "<system type=\"current\""),
              "malloc_info lacks glibc's elements");
        char want[64];
        snprintf(want, sizeof want, "to=\"%zu\" total=\"", after[cs].block_size);
        char *size = strstr(xml, want);
        CHECK(size != NULL, "malloc_info has no <size ... %s> for the freed blocks", want);
        if (size) {
            unsigned long total = strtoul(size + strlen(want), NULL, 10);
            CHECK(total == after[cs].bytes_free, "malloc_info total %lu, census bytes_free %zu", total, after[cs].bytes_free);
        }
        size_t l = strlen(xml);
        CHECK(l > 10 && strcmp(xml + l - 10, "</malloc>\n") == 0, "malloc_info ends %s", xml + (l > 20 ? l - 20 : 0));
        free(xml);
    }
    malloc_stats();
    printf("stats: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
