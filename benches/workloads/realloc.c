/* realloc: `realloc quick|full small|large`
 * A buffer grows from 1 byte to 64 MiB the way real programs grow buffers,
 * and every appended byte is written (memset), as a builder would:
 * small: 1 B -> 64 KiB by appends of a random 1..64 bytes, one realloc per
 *        append (a naive string builder: ~2000 reallocs per buffer); the
 *        buffer is then freed and the sequence repeated. Measures in-place
 *        growth and copying in the small and medium size classes.
 *        Reports ns per realloc call.
 * large: 64 KiB -> 64 MiB geometrically, each realloc multiplying the size
 *        by a random factor in [1.25, 1.5] (a vector's capacity doubling,
 *        ~20 reallocs per buffer); the buffer is then freed and the sequence
 *        repeated. Measures huge-block growth (mremap or copy) and page
 *        faulting. Reports us per complete 64 KiB -> 64 MiB growth. */
#include "bench_common.h"

#define SMALL_END (64u << 10)
#define LARGE_END (64u << 20)

int main(int argc, char **argv) {
    bench_init(argc, argv, "small|large");
    int large = argc > 2 && !strcmp(argv[2], "large");
    rng_t r = rng_seed(7);
    uint64_t sum = 0, reallocs = 0, seqs;
    double t0 = now_sec(), t;
    if (!large) {
        seqs = iters(2500, 20000);
        for (uint64_t s = 0; s < seqs; s++) {
            size_t n = 1;
            char *b = xmalloc_chk(1);
            b[0] = 1;
            while (n < SMALL_END) {
                size_t add = (size_t)rng_range(&r, 1, 64);
                char last = b[n - 1];
                char *nb = realloc(b, n + add);
                if (!nb) die("realloc returned NULL");
                if (nb[n - 1] != last || nb[0] != 1) die("realloc lost contents");
                memset(nb + n, (int)(n + add), add);
                b = nb;
                n += add;
                reallocs++;
            }
            if (b[0] != 1) die("realloc lost contents");
            sum += (unsigned char)b[n - 1];
            free(b);
        }
        t = now_sec() - t0;
        bench_finish("realloc-small", "ns_per_op", t * 1e9 / (double)reallocs, seqs, sum);
    } else {
        seqs = iters(3, 20);
        for (uint64_t s = 0; s < seqs; s++) {
            size_t n = SMALL_END;
            char *b = xmalloc_chk(n);
            memset(b, 3, n);
            while (n < LARGE_END) {
                size_t nn = n + (n * (size_t)rng_range(&r, 25, 50)) / 100;
                if (nn > LARGE_END) nn = LARGE_END;
                char *nb = realloc(b, nn);
                if (!nb) die("realloc returned NULL");
                if (nb[0] != 3 || nb[n - 1] != 3) die("realloc lost contents");
                memset(nb + n, 3, nn - n);
                b = nb;
                n = nn;
                reallocs++;
            }
            sum += (unsigned char)b[n - 1] + reallocs;
            free(b);
        }
        t = now_sec() - t0;
        bench_finish("realloc-large", "us_per_growth", t * 1e6 / (double)seqs, seqs, sum);
    }
    return 0;
}
