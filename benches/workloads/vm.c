/* vm: `vm quick|full reuse|cold`
 * reuse: malloc(2 MiB), write one byte in every 4 KiB page, free; repeated.
 *        The same block can be reused every time. Reports us per pair.
 * cold:  100 blocks of 2 MiB are allocated (every page written), then all are
 *        freed; repeated ("cold churn": the allocator must either keep the
 *        200 MiB mapped or fault it in again). Reports us per malloc/free pair
 *        (including the page touching). */
#include "bench_common.h"

#define BLK (2u << 20)
#define PAGE 4096u
#define NCOLD 100

static inline void touch(char *p, uint64_t v) {
    for (size_t o = 0; o < BLK; o += PAGE) p[o] = (char)v;
}

int main(int argc, char **argv) {
    bench_init(argc, argv, "reuse|cold");
    int cold = argc > 2 && !strcmp(argv[2], "cold");
    uint64_t sum = 0, pairs, mallocs;
    double t0, t;
    if (!cold) {
        uint64_t n = iters(10000, 60000);
        t0 = now_sec();
        for (uint64_t i = 0; i < n; i++) {
            char *p = xmalloc_chk(BLK);
            touch(p, i);
            sum += p[BLK - PAGE];
            free(p);
        }
        t = now_sec() - t0;
        pairs = mallocs = n;
    } else {
        uint64_t cycles = iters(4, 30);
        static char *b[NCOLD];
        t0 = now_sec();
        for (uint64_t c = 0; c < cycles; c++) {
            for (int i = 0; i < NCOLD; i++) {
                b[i] = xmalloc_chk(BLK);
                touch(b[i], c + i);
            }
            for (int i = 0; i < NCOLD; i++) { sum += b[i][PAGE]; free(b[i]); }
        }
        t = now_sec() - t0;
        pairs = mallocs = cycles * NCOLD;
    }
    bench_finish(cold ? "cold-churn" : "vm", "us_per_pair", t * 1e6 / (double)pairs, mallocs, sum);
    return 0;
}
