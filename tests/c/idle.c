/* Idle return: allocate and free a working set (small, mid and large
 * blocks, and huge blocks), keep a small live set, then stop allocating
 * and watch the resident set. Usage: idle WAIT_MS KEPT_KB. Prints
 *   base_kb B live_kb L peak_kb P freed_kb F
 *   idle_kb I after_ms T returned 0|1
 * where "returned" says whether RSS fell to within 10% of B + L, plus
 * KEPT_KB (what the allocator may keep by design), before WAIT_MS
 * milliseconds of idleness passed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rss.h"


#define WORKING 2400
#define LIVE 64

int main(int argc, char **argv) {
    long wait_ms = argc > 1 ? atol(argv[1]) : 3000;
    long kept_kb = argc > 2 ? atol(argv[2]) : 0;
    static char *blocks[WORKING];
    char *live[LIVE];
    long base = rss_kb();
    /* The live set: 64 blocks of 16 KiB (1 MiB). */
    for (int i = 0; i < LIVE; i++) {
        live[i] = malloc(16384);
        memset(live[i], 1, 16384);
    }
    long live_kb = rss_kb() - base;
    /* The working set: about 96 MiB of blocks from 64 B to 256 KiB, and
     * four huge blocks of 8 MiB, all touched, then freed. */
    for (int i = 0; i < WORKING; i++) {
        size_t size = (size_t)64 << (i % 13);
        blocks[i] = malloc(size);
        memset(blocks[i], 2, size);
    }
    char *huge[4];
    for (int i = 0; i < 4; i++) {
        huge[i] = malloc(8 << 20);
        memset(huge[i], 3, 8 << 20);
    }
    long peak = rss_kb();
    for (int i = 0; i < WORKING; i++) free(blocks[i]);
    for (int i = 0; i < 4; i++) free(huge[i]);
    long freed = rss_kb();
    printf("base_kb %ld live_kb %ld peak_kb %ld freed_kb %ld\n", base, live_kb, peak, freed);
    long target = (base + live_kb) * 11 / 10 + kept_kb;
    long start = now_ms(), idle = freed, after = 0;
    int returned = 0;
    while ((after = now_ms() - start) < wait_ms) {
        usleep(20000);
        idle = rss_kb();
        if (idle <= target) {
            returned = 1;
            break;
        }
    }
    printf("idle_kb %ld after_ms %ld returned %d\n", idle, after, returned);
    for (int i = 0; i < LIVE; i++) {
        if (live[i][16383] != 1) {
            printf("live block %d lost its contents\n", i);
            return 1;
        }
        free(live[i]);
    }
    return 0;
}
