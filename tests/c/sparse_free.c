/* Freed blocks of pages still in use: allocate blocks of 40 KiB (a mid
 * class) and 200 KiB (a large class), all touched, free four in five
 * (every fifth kept, so that every page keeps live blocks and none can be
 * purged whole), then go on calling the allocator (a malloc and free of
 * 64 B and of 200 KiB every 20 ms) and watch the resident set. Usage:
 * sparse_free WAIT_MS. Prints
 *   base_kb B live_kb L peak_kb P freed_kb F
 *   later_kb I after_ms T returned 0|1
 * where "returned" says whether RSS fell to within 10% of B + L plus 8 KiB
 * per freed block (its first OS page, which holds the allocator's links,
 * and a partial last one) and 4 MiB (the segments' headers, the 64 B
 * class), before WAIT_MS milliseconds passed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rss.h"


#define BLOCKS 2000

int main(int argc, char **argv) {
    long wait_ms = argc > 1 ? atol(argv[1]) : 10000;
    static char *blocks[BLOCKS];
    static size_t sizes[BLOCKS];
    long base = rss_kb();
    for (int i = 0; i < BLOCKS; i++) {
        sizes[i] = i < BLOCKS / 2 ? 40 << 10 : 200 << 10;
        blocks[i] = malloc(sizes[i]);
        memset(blocks[i], i & 0xff, sizes[i]);
    }
    long peak = rss_kb(), live_kb = 0, freed_blocks = 0;
    for (int i = 0; i < BLOCKS; i++) {
        if (i % 5) {
            free(blocks[i]);
            blocks[i] = NULL;
            freed_blocks++;
        } else {
            live_kb += sizes[i] / 1024;
        }
    }
    long freed = rss_kb();
    printf("base_kb %ld live_kb %ld peak_kb %ld freed_kb %ld\n", base, live_kb, peak, freed);
    long target = (base + live_kb + 8 * freed_blocks) * 11 / 10 + 4096;
    long start = now_ms(), later = freed, after = 0;
    int returned = 0;
    while ((after = now_ms() - start) < wait_ms) {
        usleep(20000);
        char *volatile small = malloc(64), *volatile large = malloc(200 << 10);
        if (!small || !large) return 2;
        small[0] = large[0] = 1;
        free(small);
        free(large);
        later = rss_kb();
        if (later <= target) {
            returned = 1;
            break;
        }
    }
    printf("later_kb %ld after_ms %ld returned %d\n", later, after, returned);
    for (int i = 0; i < BLOCKS; i++) {
        if (blocks[i]) {
            for (size_t at = 0; at < sizes[i]; at += 4096) {
                if (blocks[i][at] != (char)(i & 0xff)) {
                    printf("live block %d lost its contents at %zu\n", i, at);
                    return 1;
                }
            }
            free(blocks[i]);
        }
    }
    return 0;
}
