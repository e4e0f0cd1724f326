/* prof.c: a program whose heap is known, for the heap profiler's test.
 * hold_three_quarters() and hold_one_quarter() allocate blocks of mixed
 * sizes totalling 3 * UNIT and UNIT bytes, all held live; churn()
 * allocates as much and frees it all (it must not appear in a profile).
 * With an argument, writes the profile there with hakmem_prof_dump (a
 * second argument "expect-fail" checks that the call fails instead).
 * Prints the true byte totals. Run it under LD_PRELOAD (-DHAKMEM_PRELOAD)
 * or linked statically. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hk_sym.h"
#include "hakmem.h"

enum { UNIT = 32 << 20, SLOTS = 1 << 20 };
static void *held[SLOTS];
static size_t nheld;
static unsigned long long rng = 88172645463325252ull;

static size_t next_size(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    switch (rng % 64) {
    case 0: return 2u << 20;                   /* huge */
    case 1: case 2: return 100000 + rng % 300000; /* large */
    default: return 16 + (rng >> 8) % 6000;   /* tiny and mid */
    }
}

static size_t fill(size_t bytes, int keep) {
    size_t total = 0;
    while (total < bytes) {
        size_t size = next_size();
        char *p = (rng & 1) ? malloc(size) : calloc(1, size);
        if (!p) { perror("malloc"); exit(2); }
        p[0] = 1;
        if (keep) held[nheld++] = p;
        else free(p);
        total += size;
    }
    return total;
}

__attribute__((noinline)) size_t hold_three_quarters(void) { return fill(3 * (size_t)UNIT, 1); }
__attribute__((noinline)) size_t hold_one_quarter(void) { return fill(UNIT, 1); }
__attribute__((noinline)) size_t churn(void) { return fill(2 * (size_t)UNIT, 0); }

int main(int argc, char **argv) {
    size_t a = hold_three_quarters();
    churn();
    size_t b = hold_one_quarter();
    printf("hold_three_quarters %zu\nhold_one_quarter %zu\n", a, b);
    fflush(stdout);
    if (argc > 1) {
        int (*dump)(const char *) = HK_SYM(hakmem_prof_dump);
        if (!dump) { fprintf(stderr, "hakmem_prof_dump not found\n"); return 3; }
        int rc = dump(argv[1]);
        if (argc > 2 && strcmp(argv[2], "expect-fail") == 0) {
            if (rc != -1 || errno != EINVAL) { fprintf(stderr, "dump: rc %d errno %d, want -1 EINVAL\n", rc, errno); return 4; }
        } else if (rc != 0) {
            fprintf(stderr, "hakmem_prof_dump(%s): %s\n", argv[1], strerror(errno));
            return 5;
        }
    }
    return 0;
}
