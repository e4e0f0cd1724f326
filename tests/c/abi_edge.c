/* abi_edge.c: edge cases of the whole C allocation ABI exported by hakmem.
 *
 * Build (static):  cc -O1 -fno-builtin -I ffi/include -I tests/c abi_edge.c libhakmem.a -lpthread -ldl -lm
 * Build (preload): cc -O1 -fno-builtin -DHAKMEM_PRELOAD -I ffi/include -I tests/c abi_edge.c -ldl -lpthread
 *                  and run with LD_PRELOAD=libhakmem.so
 * Run: abi_edge [--list | SECTION...]   (no argument: every section)
 *
 * Every check is counted; failures print one "FAIL" line each (the first 80
 * of them). The last line is "abi_edge[<mode>]: N passed, N failed" and the
 * exit status is 1 when anything failed.
 *
 * The semantics checked are glibc's (the hakmem contract). Under plain glibc
 * 2.36 this file passes except for the hakmem-only symbols, aligned_alloc's
 * EINVAL (glibc >= 2.38) and pvalloc(0) (glibc gives a minimum chunk, the
 * contract says one page).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"
#include "hk_sym.h"

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

static long passed, failed;
static int fail_printed;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (cond) {                                                            \
            passed++;                                                          \
        } else {                                                               \
            failed++;                                                          \
            if (fail_printed++ < 80) {                                         \
                printf("FAIL abi_edge.c:%d: %s: ", __LINE__, #cond);           \
                printf(__VA_ARGS__);                                           \
                printf("\n");                                                  \
                fflush(stdout);                                                \
            }                                                                  \
        }                                                                      \
    } while (0)

/* Hide values from the optimizer so that no call is folded away. */
static size_t opaque(size_t x) {
    __asm__ volatile("" : "+r"(x));
    return x;
}
static void *opaque_ptr(void *p) {
    __asm__ volatile("" : "+r"(p));
    return p;
}

static int aligned_to(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

/* Word-wise pattern, depends on the seed and the position: detects lost,
 * shifted or foreign bytes. */
static uint64_t pat_word(uint64_t seed, size_t i) {
    uint64_t x = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return x;
}
static void fill(void *p, size_t n, uint64_t seed) {
    unsigned char *b = p;
    size_t w = n / 8, i;
    for (i = 0; i < w; i++) {
        uint64_t v = pat_word(seed, i);
        memcpy(b + 8 * i, &v, 8);
    }
    uint64_t v = pat_word(seed, w);
    for (i = 8 * w; i < n; i++) b[i] = (unsigned char)(v >> (8 * (i - 8 * w)));
}
/* Returns n when the first n bytes match, else the offset of the first bad byte. */
static size_t verify(const void *p, size_t n, uint64_t seed) {
    const unsigned char *b = p;
    size_t w = n / 8, i;
    for (i = 0; i < w; i++) {
        uint64_t v = pat_word(seed, i), got;
        memcpy(&got, b + 8 * i, 8);
        if (got != v) {
            size_t j = 0;
            while (j < 8 && (unsigned char)(got >> (8 * j)) == (unsigned char)(v >> (8 * j))) j++;
            return 8 * i + j;
        }
    }
    uint64_t v = pat_word(seed, w);
    for (i = 8 * w; i < n; i++)
        if (b[i] != (unsigned char)(v >> (8 * (i - 8 * w)))) return i;
    return n;
}
/* Fill/verify only head and tail of very large blocks (keeps the run fast). */
static void fill_ends(void *p, size_t n, uint64_t seed) {
    if (n <= 8 * MiB) { fill(p, n, seed); return; }
    fill(p, MiB, seed);
    fill((char *)p + n - MiB, MiB, seed + 1);
}
static int verify_ends(const void *p, size_t n, uint64_t seed) {
    if (n <= 8 * MiB) return verify(p, n, seed) == n;
    return verify(p, MiB, seed) == MiB && verify((const char *)p + n - MiB, MiB, seed + 1) == MiB;
}
/* After fill_ends(p, a, seed): is the k-byte prefix (k <= a) intact? */
static int verify_prefix(const void *p, size_t a, size_t k, uint64_t seed) {
    if (a <= 8 * MiB) return verify(p, k, seed) == k;
    if (k == a) return verify_ends(p, a, seed);
    if (k < MiB) return verify(p, k, seed) == k;
    return verify(p, MiB, seed) == MiB;
}
static int all_zero(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

/* hakmem-only (or not-linkable-under-glibc) symbols, see hk_sym.h */
static struct {
    void (*cfree)(void *);
    void (*free_sized)(void *, size_t);
    void (*free_aligned_sized)(void *, size_t, size_t);
    int (*stats_get)(struct hakmem_stats *);
    const char *(*version)(void);
    void *(*libc_malloc)(size_t);
    void (*libc_free)(void *);
    void *(*libc_calloc)(size_t, size_t);
    void *(*libc_realloc)(void *, size_t);
    void *(*libc_memalign)(size_t, size_t);
    void *(*libc_valloc)(size_t);
    void *(*libc_pvalloc)(size_t);
    int (*posix_memalign_alias)(void **, size_t, size_t);
} hk;

static void resolve_symbols(void) {
    hk.cfree = HK_SYM(cfree);
    hk.free_sized = HK_SYM(free_sized);
    hk.free_aligned_sized = HK_SYM(free_aligned_sized);
    hk.stats_get = HK_SYM(hakmem_stats_get);
    hk.version = HK_SYM(hakmem_version);
    hk.libc_malloc = HK_SYM(__libc_malloc);
    hk.libc_free = HK_SYM(__libc_free);
    hk.libc_calloc = HK_SYM(__libc_calloc);
    hk.libc_realloc = HK_SYM(__libc_realloc);
    hk.libc_memalign = HK_SYM(__libc_memalign);
    hk.libc_valloc = HK_SYM(__libc_valloc);
    hk.libc_pvalloc = HK_SYM(__libc_pvalloc);
    hk.posix_memalign_alias = HK_SYM(__posix_memalign);
#define NEED(f, name) CHECK(hk.f != NULL, "symbol %s not found (is hakmem loaded?)", name)
    NEED(cfree, "cfree");
    NEED(free_sized, "free_sized");
    NEED(free_aligned_sized, "free_aligned_sized");
    NEED(stats_get, "hakmem_stats_get");
    NEED(version, "hakmem_version");
    NEED(libc_malloc, "__libc_malloc");
    NEED(libc_free, "__libc_free");
    NEED(libc_calloc, "__libc_calloc");
    NEED(libc_realloc, "__libc_realloc");
    NEED(libc_memalign, "__libc_memalign");
    NEED(libc_valloc, "__libc_valloc");
    NEED(libc_pvalloc, "__libc_pvalloc");
    NEED(posix_memalign_alias, "__posix_memalign");
#undef NEED
}

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* ------------------------------------------------------------------ */

static void test_malloc_zero_and_null(void) {
    void *a = malloc(opaque(0)), *b = malloc(opaque(0));
    CHECK(a != NULL, "malloc(0) returned NULL");
    CHECK(b != NULL, "malloc(0) returned NULL");
    CHECK(a != b, "two malloc(0) returned the same pointer %p", a);
    CHECK(aligned_to(a, 16) && aligned_to(b, 16), "malloc(0) not 16-aligned: %p %p", a, b);
    free(a);
    free(b);
    free(opaque_ptr(NULL));
    passed++; /* free(NULL) did not crash */
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu", malloc_usable_size(NULL));
    if (hk.cfree) {
        hk.cfree(NULL);
        void *c = malloc(40);
        CHECK(c != NULL, "malloc(40)");
        hk.cfree(c);
    }
    /* many malloc(0) are all distinct */
    enum { NZ = 1000 };
    static void *z[NZ];
    int dup = 0, nul = 0;
    for (int i = 0; i < NZ; i++) {
        z[i] = malloc(opaque(0));
        if (!z[i]) nul++;
    }
    for (int i = 1; i < NZ; i++)
        if (z[i] && z[i] == z[i - 1]) dup++;
    CHECK(nul == 0, "%d of %d malloc(0) returned NULL", nul, NZ);
    CHECK(dup == 0, "%d malloc(0) duplicates", dup);
    for (int i = 0; i < NZ; i++) free(z[i]);
}

/* All sizes 0..4096 live at once; the whole usable size is written. */
static void test_small_sizes(void) {
    enum { N = 4097 };
    static void *p[N];
    static size_t us[N];
    int nul = 0, mis = 0, small = 0, bad = 0;
    for (size_t n = 0; n < N; n++) {
        p[n] = malloc(opaque(n));
        if (!p[n]) { nul++; continue; }
        if (!aligned_to(p[n], 16)) mis++;
        us[n] = malloc_usable_size(p[n]);
        if (us[n] < n) {
            small++;
            if (small < 5) printf("  malloc_usable_size(malloc(%zu)) = %zu\n", n, us[n]);
        }
        fill(p[n], us[n], n * 7919 + 1);
    }
    for (size_t n = 0; n < N; n++) {
        if (!p[n]) continue;
        size_t at = verify(p[n], us[n], n * 7919 + 1);
        if (at != us[n]) {
            bad++;
            if (bad < 5) printf("  block of size %zu (usable %zu) corrupted at offset %zu\n", n, us[n], at);
        }
    }
    CHECK(nul == 0, "%d mallocs of sizes 0..4096 returned NULL", nul);
    CHECK(mis == 0, "%d blocks of sizes 0..4096 not 16-aligned", mis);
    CHECK(small == 0, "%d blocks with usable size < requested", small);
    CHECK(bad == 0, "%d blocks of sizes 0..4096 corrupted (overlapping blocks?)", bad);
    /* free in an interleaved order: odd first, then even backwards */
    for (size_t n = 1; n < N; n += 2) free(p[n]);
    for (size_t n = N; n-- > 0;)
        if (n % 2 == 0) free(p[n]);
    /* every size individually too, with the exact size as free_sized */
    int bad2 = 0;
    for (size_t n = 0; n < N; n++) {
        unsigned char *q = malloc(opaque(n));
        if (!q) { bad2++; continue; }
        fill(q, n, n);
        if (verify(q, n, n) != n || malloc_usable_size(q) < n || !aligned_to(q, 16)) bad2++;
        if (hk.free_sized && n % 3 == 0)
            hk.free_sized(q, n);
        else
            free(q);
    }
    CHECK(bad2 == 0, "%d single malloc/verify/free of sizes 0..4096 failed", bad2);
}

static size_t large_sizes[200];
static int n_large_sizes;
static void init_large_sizes(void) {
    for (int k = 12; k <= 26; k++) {
        size_t s = (size_t)1 << k;
        large_sizes[n_large_sizes++] = s - 1;
        large_sizes[n_large_sizes++] = s;
        large_sizes[n_large_sizes++] = s + 1;
        large_sizes[n_large_sizes++] = s + s / 2 + 7; /* odd, between powers of two */
        large_sizes[n_large_sizes++] = s + 4095;
    }
    large_sizes[n_large_sizes++] = 64 * MiB;
    large_sizes[n_large_sizes++] = 64 * MiB - 4096;
    large_sizes[n_large_sizes++] = 2 * MiB - 64;
    large_sizes[n_large_sizes++] = 1 * MiB - 16;
    large_sizes[n_large_sizes++] = 100003;
    large_sizes[n_large_sizes++] = 12345;
    large_sizes[n_large_sizes++] = 777777;
}

static void test_large_sizes(void) {
    /* one at a time, whole-block pattern */
    for (int i = 0; i < n_large_sizes; i++) {
        size_t n = large_sizes[i];
        unsigned char *p = malloc(opaque(n));
        CHECK(p != NULL, "malloc(%zu) returned NULL", n);
        if (!p) continue;
        CHECK(aligned_to(p, 16), "malloc(%zu) = %p not 16-aligned", n, (void *)p);
        CHECK(malloc_usable_size(p) >= n, "usable_size(malloc(%zu)) = %zu", n, malloc_usable_size(p));
        fill(p, n, n);
        size_t at = verify(p, n, n);
        CHECK(at == n, "malloc(%zu) block corrupted at %zu", n, at);
        if (hk.free_sized && i % 2)
            hk.free_sized(p, n);
        else
            free(p);
    }
    /* all sizes up to 4 MiB live at once (detects overlaps between classes) */
    static void *live[200];
    for (int i = 0; i < n_large_sizes; i++) {
        live[i] = NULL;
        if (large_sizes[i] > 4 * MiB) continue;
        live[i] = malloc(large_sizes[i]);
        CHECK(live[i] != NULL, "malloc(%zu)", large_sizes[i]);
        if (live[i]) fill(live[i], large_sizes[i], 1000 + i);
    }
    for (int i = 0; i < n_large_sizes; i++) {
        if (!live[i]) continue;
        size_t at = verify(live[i], large_sizes[i], 1000 + i);
        CHECK(at == large_sizes[i], "live block %zu corrupted at %zu", large_sizes[i], at);
        free(live[i]);
    }
    /* many mid-size blocks alive together */
    enum { M = 300 };
    static void *mid[M];
    int bad = 0;
    for (int i = 0; i < M; i++) {
        size_t n = 1000 + (size_t)i * 997 % 300000;
        mid[i] = malloc(n);
        if (!mid[i]) { bad++; continue; }
        fill(mid[i], n, i);
    }
    for (int i = 0; i < M; i++) {
        size_t n = 1000 + (size_t)i * 997 % 300000;
        if (mid[i] && verify(mid[i], n, i) != n) bad++;
        free(mid[i]);
    }
    CHECK(bad == 0, "%d of %d mid-size live blocks bad", bad, M);
}

static void test_realloc(void) {
    /* growth 1 -> 64 MiB keeps contents */
    size_t n = 1;
    unsigned char *p = malloc(n);
    CHECK(p != NULL, "malloc(1)");
    int step = 0;
    if (p) fill(p, n, step);
    while (p && n < 64 * MiB) {
        size_t m = n + n / 2 + 1;
        if (m > 64 * MiB) m = 64 * MiB;
        unsigned char *q = realloc(p, opaque(m));
        CHECK(q != NULL, "realloc grow %zu -> %zu returned NULL", n, m);
        if (!q) { free(p); p = NULL; break; }
        size_t at = verify(q, n, step);
        CHECK(at == n, "realloc grow %zu -> %zu lost contents at %zu", n, m, at);
        CHECK(malloc_usable_size(q) >= m, "realloc grow usable %zu < %zu", malloc_usable_size(q), m);
        CHECK(aligned_to(q, 16), "realloc result %p not 16-aligned", (void *)q);
        step++;
        fill(q, m, step);
        p = q;
        n = m;
    }
    /* shrink 64 MiB -> 1 keeps the prefix */
    while (p && n > 1) {
        size_t m = n * 2 / 3;
        if (m == 0) m = 1;
        unsigned char *q = realloc(p, opaque(m));
        CHECK(q != NULL, "realloc shrink %zu -> %zu returned NULL", n, m);
        if (!q) break;
        size_t at = verify(q, m, step);
        CHECK(at == m, "realloc shrink %zu -> %zu lost contents at %zu", n, m, at);
        CHECK(malloc_usable_size(q) >= m, "realloc shrink usable %zu < %zu", malloc_usable_size(q), m);
        step++;
        fill(q, m, step);
        p = q;
        n = m;
    }
    free(p);

    /* every pair of sizes across all size ranges */
    static const size_t L[] = {1, 15, 16, 17, 100, 1000, 4096, 5000, 20000, 65536, 100000,
                               500000, MiB, 3 * MiB, 8 * MiB + 5, 33 * MiB};
    const int NL = sizeof L / sizeof L[0];
    for (int i = 0; i < NL; i++)
        for (int j = 0; j < NL; j++) {
            size_t a = L[i], b = L[j], k = a < b ? a : b;
            unsigned char *x = malloc(a);
            if (!x) { CHECK(0, "malloc(%zu)", a); continue; }
            fill_ends(x, a, a ^ b);
            unsigned char *y = realloc(x, opaque(b));
            CHECK(y != NULL, "realloc %zu -> %zu returned NULL", a, b);
            if (!y) { free(x); continue; }
            CHECK(verify_prefix(y, a, k, a ^ b), "realloc %zu -> %zu lost contents", a, b);
            CHECK(malloc_usable_size(y) >= b, "realloc %zu -> %zu usable %zu", a, b, malloc_usable_size(y));
            fill_ends(y, b, 77);
            CHECK(verify_ends(y, b, 77), "realloc %zu -> %zu block not writable", a, b);
            free(y);
        }

    /* same size */
    p = malloc(300);
    fill(p, 300, 3);
    unsigned char *q = realloc(p, opaque(300));
    CHECK(q && verify(q, 300, 3) == 300, "realloc to the same size lost contents");
    free(q);

    /* realloc(NULL, n) == malloc(n) */
    p = realloc(opaque_ptr(NULL), opaque(100));
    CHECK(p != NULL && malloc_usable_size(p) >= 100, "realloc(NULL, 100)");
    free(p);
    p = realloc(opaque_ptr(NULL), opaque(0));
    CHECK(p != NULL, "realloc(NULL, 0) returned NULL (glibc returns malloc(0))");
    free(p);
    p = realloc(opaque_ptr(NULL), opaque(10 * MiB));
    CHECK(p != NULL && malloc_usable_size(p) >= 10 * MiB, "realloc(NULL, 10 MiB)");
    free(p);

    /* realloc(p, 0) frees p and returns NULL */
    static const size_t Z[] = {1, 100, 5000, 100000, 4 * MiB};
    for (unsigned i = 0; i < sizeof Z / sizeof Z[0]; i++) {
        p = malloc(Z[i]);
        CHECK(p != NULL, "malloc(%zu)", Z[i]);
        q = realloc(p, opaque(0));
        CHECK(q == NULL, "realloc(p(%zu), 0) returned %p, glibc frees and returns NULL", Z[i], (void *)q);
        if (q) free(q);
    }

    /* failing realloc leaves the block intact */
    static const size_t F[] = {16, 4000, 300000, 5 * MiB};
    for (unsigned i = 0; i < sizeof F / sizeof F[0]; i++) {
        p = malloc(F[i]);
        if (!p) { CHECK(0, "malloc(%zu)", F[i]); continue; }
        fill(p, F[i], 9);
        errno = 0;
        q = realloc(p, opaque(SIZE_MAX));
        CHECK(q == NULL && errno == ENOMEM, "realloc(p(%zu), SIZE_MAX) = %p errno %d", F[i], (void *)q, errno);
        errno = 0;
        q = realloc(p, opaque((size_t)PTRDIFF_MAX + 1));
        CHECK(q == NULL && errno == ENOMEM, "realloc(p(%zu), PTRDIFF_MAX+1) = %p errno %d", F[i], (void *)q, errno);
        errno = 0;
        q = realloc(p, opaque(SIZE_MAX - 4095));
        CHECK(q == NULL && errno == ENOMEM, "realloc(p(%zu), SIZE_MAX-4095) = %p errno %d", F[i], (void *)q, errno);
        CHECK(verify(p, F[i], 9) == F[i], "failed realloc damaged the %zu-byte block", F[i]);
        free(p);
    }

    /* realloc of aligned blocks keeps contents */
    static const size_t A[] = {64, 4096, 65536, MiB};
    for (unsigned i = 0; i < sizeof A / sizeof A[0]; i++) {
        p = memalign(A[i], 200);
        if (!p) { CHECK(0, "memalign(%zu, 200)", A[i]); continue; }
        fill(p, 200, i);
        q = realloc(p, 100000);
        CHECK(q && verify(q, 200, i) == 200, "realloc of memalign(%zu) block lost contents", A[i]);
        p = q ? q : p;
        q = realloc(p, 50);
        CHECK(q && verify(q, 50, i) == 50, "shrinking realloc of memalign(%zu) block lost contents", A[i]);
        free(q ? q : p);
    }
}

static void test_calloc(void) {
    void *p;
    p = calloc(opaque(0), opaque(0));
    CHECK(p != NULL, "calloc(0, 0) returned NULL");
    free(p);
    p = calloc(opaque(0), opaque(10));
    CHECK(p != NULL, "calloc(0, 10) returned NULL");
    free(p);
    p = calloc(opaque(10), opaque(0));
    CHECK(p != NULL, "calloc(10, 0) returned NULL");
    free(p);

    /* dirty reuse: allocate, fill 0xAA, free, calloc the same size */
    static const size_t S[] = {1, 8, 16, 24, 48, 100, 512, 1000, 1024, 4096, 5000, 20000, 65536,
                               100000, 262144, 500000, MiB, 3 * MiB, 8 * MiB, 20 * MiB};
    for (unsigned i = 0; i < sizeof S / sizeof S[0]; i++) {
        size_t n = S[i];
        int iters = n >= MiB ? 8 : 64, nonzero = 0;
        for (int it = 0; it < iters; it++) {
            unsigned char *d = malloc(n);
            if (!d) { CHECK(0, "malloc(%zu)", n); break; }
            memset(d, 0xAA, malloc_usable_size(d));
            free(d);
            unsigned char *c;
            switch (it % 3) {
            case 0: c = calloc(1, opaque(n)); break;
            case 1: c = calloc(opaque(n), 1); break;
            default: c = calloc(opaque((n + 7) / 8), 8); break;
            }
            if (!c) { CHECK(0, "calloc for %zu bytes returned NULL", n); break; }
            if (!all_zero(c, n)) nonzero++;
            CHECK(aligned_to(c, 16), "calloc(%zu) not 16-aligned", n);
            memset(c, 0xAA, n);
            free(c);
        }
        CHECK(nonzero == 0, "calloc(%zu) returned non-zero memory %d/%d times after a dirty free", n, nonzero, iters);
    }
    /* batch: many dirty blocks freed, then calloc'ed back */
    static const size_t B[] = {16, 48, 256, 3000, 40000};
    for (unsigned i = 0; i < sizeof B / sizeof B[0]; i++) {
        enum { K = 1000 };
        static unsigned char *v[K];
        int nonzero = 0;
        for (int k = 0; k < K; k++) {
            v[k] = malloc(B[i]);
            if (v[k]) memset(v[k], 0xAA, malloc_usable_size(v[k]));
        }
        for (int k = 0; k < K; k++) free(v[k]);
        for (int k = 0; k < K; k++) {
            v[k] = calloc(B[i], 1);
            if (!v[k] || !all_zero(v[k], B[i])) nonzero++;
            else memset(v[k], 0x55, B[i]);
        }
        for (int k = 0; k < K; k++) free(v[k]);
        CHECK(nonzero == 0, "batch calloc(%zu): %d of %d blocks NULL or not zeroed", B[i], nonzero, K);
    }
    /* overflow -> NULL + ENOMEM */
    struct { size_t a, b; } O[] = {
        {SIZE_MAX, 2}, {2, SIZE_MAX}, {(size_t)1 << 32, (size_t)1 << 32}, {SIZE_MAX / 16 + 1, 16},
        {1, SIZE_MAX}, {SIZE_MAX, 1}, {(size_t)PTRDIFF_MAX / 2 + 1, 2}, {65537, 281470681808895ull},
    };
    for (unsigned i = 0; i < sizeof O / sizeof O[0]; i++) {
        errno = 0;
        p = calloc(opaque(O[i].a), opaque(O[i].b));
        CHECK(p == NULL && errno == ENOMEM, "calloc(%zu, %zu) = %p errno %d (want NULL, ENOMEM)", O[i].a, O[i].b, p, errno);
        if (p) free(p);
    }
}

static void test_reallocarray(void) {
    unsigned char *p = reallocarray(opaque_ptr(NULL), opaque(10), opaque(8));
    CHECK(p != NULL && malloc_usable_size(p) >= 80, "reallocarray(NULL, 10, 8)");
    if (!p) return;
    fill(p, 80, 5);
    unsigned char *q = reallocarray(p, opaque(1000), opaque(8));
    CHECK(q != NULL && verify(q, 80, 5) == 80, "reallocarray grow lost contents");
    if (!q) { free(p); return; }
    p = q;
    fill(p, 8000, 6);
    errno = 0;
    q = reallocarray(opaque_ptr(p), opaque(SIZE_MAX / 2), opaque(3));
    CHECK(q == NULL && errno == ENOMEM, "reallocarray overflow = %p errno %d", (void *)q, errno);
    errno = 0;
    q = reallocarray(opaque_ptr(p), opaque((size_t)1 << 33), opaque((size_t)1 << 31));
    CHECK(q == NULL && errno == ENOMEM, "reallocarray overflow 2^33*2^31 = %p errno %d", (void *)q, errno);
    CHECK(verify(p, 8000, 6) == 8000, "failed reallocarray damaged the block");
    q = reallocarray(p, opaque(10), opaque(8));
    CHECK(q != NULL && verify(q, 80, 6) == 80, "reallocarray shrink lost contents");
    free(q ? q : p);
    errno = 0;
    p = reallocarray(opaque_ptr(NULL), opaque(SIZE_MAX), opaque(SIZE_MAX));
    CHECK(p == NULL && errno == ENOMEM, "reallocarray(NULL, SIZE_MAX, SIZE_MAX) = %p errno %d", (void *)p, errno);
}

static void test_malloc_overflow(void) {
    const size_t ps = page_size();
    static size_t S[16];
    int k = 0;
    S[k++] = SIZE_MAX;
    S[k++] = (size_t)PTRDIFF_MAX + 1;
    S[k++] = (size_t)PTRDIFF_MAX;
    S[k++] = SIZE_MAX - 15;
    S[k++] = SIZE_MAX - ps + 1;
    S[k++] = SIZE_MAX - 2 * MiB + 1;
    S[k++] = SIZE_MAX - 64 * MiB;
    S[k++] = (size_t)PTRDIFF_MAX - 2 * MiB;
    for (int i = 0; i < k; i++) {
        errno = 0;
        void *p = malloc(opaque(S[i]));
        CHECK(p == NULL && errno == ENOMEM, "malloc(%zu) = %p errno %d (want NULL, ENOMEM)", S[i], p, errno);
        if (p) free(p);
        errno = 0;
        p = valloc(opaque(S[i]));
        CHECK(p == NULL && errno == ENOMEM, "valloc(%zu) = %p errno %d", S[i], p, errno);
        if (p) free(p);
        errno = 0;
        p = pvalloc(opaque(S[i]));
        CHECK(p == NULL && errno == ENOMEM, "pvalloc(%zu) = %p errno %d", S[i], p, errno);
        if (p) free(p);
        static const size_t AL[] = {16, 64, 4096, 1 << 20, 64 << 20};
        for (unsigned j = 0; j < sizeof AL / sizeof AL[0]; j++) {
            void *out = (void *)0x1234;
            int r = posix_memalign(&out, opaque(AL[j]), opaque(S[i]));
            CHECK(r == ENOMEM, "posix_memalign(%zu, %zu) = %d (want ENOMEM)", AL[j], S[i], r);
            if (r == 0) free(out);
            errno = 0;
            p = aligned_alloc(opaque(AL[j]), opaque(S[i]));
            CHECK(p == NULL && errno == ENOMEM, "aligned_alloc(%zu, %zu) = %p errno %d", AL[j], S[i], p, errno);
            if (p) free(p);
            errno = 0;
            p = memalign(opaque(AL[j]), opaque(S[i]));
            CHECK(p == NULL && errno == ENOMEM, "memalign(%zu, %zu) = %p errno %d", AL[j], S[i], p, errno);
            if (p) free(p);
        }
    }
}

static void test_posix_memalign(void) {
    static const size_t bad[] = {0, 1, 2, 3, 4, 5, 12, 24, 48, 65, 100, 4095, 4097, 3 * MiB, SIZE_MAX};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *out = (void *)0x1234;
        int r = posix_memalign(&out, opaque(bad[i]), opaque(100));
        CHECK(r == EINVAL, "posix_memalign(align=%zu) returned %d, want EINVAL", bad[i], r);
        CHECK(out == (void *)0x1234, "posix_memalign(align=%zu) touched *out on error", bad[i]);
        if (r == 0) free(out);
    }
    void *out = NULL;
    int r = posix_memalign(&out, opaque(8), opaque(0));
    CHECK(r == 0, "posix_memalign(8, 0) = %d", r);
    if (r == 0) free(out);
    out = NULL;
    r = posix_memalign(&out, opaque(sizeof(void *)), opaque(100));
    CHECK(r == 0 && out && aligned_to(out, sizeof(void *)), "posix_memalign(sizeof(void*), 100)");
    if (r == 0) free(out);
    /* 2^63: a valid alignment that cannot be satisfied */
    out = (void *)0x1234;
    r = posix_memalign(&out, opaque(SIZE_MAX / 2 + 1), opaque(16));
    CHECK(r == ENOMEM, "posix_memalign(2^63, 16) = %d, want ENOMEM", r);
    if (r == 0) free(out);
}

static void test_aligned_alloc_errors(void) {
    static const size_t bad[] = {0, 3, 5, 6, 24, 100, 1000, 4095, 3 * MiB, SIZE_MAX};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        void *p = aligned_alloc(opaque(bad[i]), opaque(64));
        CHECK(p == NULL && errno == EINVAL, "aligned_alloc(%zu, 64) = %p errno %d (want NULL, EINVAL)", bad[i], p, errno);
        if (p) free(p);
    }
    /* size not a multiple of the alignment is fine (glibc) */
    void *p = aligned_alloc(opaque(64), opaque(100));
    CHECK(p && aligned_to(p, 64) && malloc_usable_size(p) >= 100, "aligned_alloc(64, 100)");
    free(p);
    p = aligned_alloc(opaque(4096), opaque(0));
    CHECK(p != NULL && aligned_to(p, 4096), "aligned_alloc(4096, 0) = %p", p);
    free(p);
}

static void test_memalign_rounding(void) {
    struct { size_t req, eff, size; } M[] = {
        {0, 16, 100}, {1, 16, 100}, {3, 16, 100}, {24, 32, 100}, {48, 64, 10}, {100, 128, 1000},
        {1000, 1024, 100}, {3000, 4096, 5000}, {5000, 8192, 5000}, {100000, 131072, 200000},
        {3 * MiB, 4 * MiB, 10},
    };
    for (unsigned i = 0; i < sizeof M / sizeof M[0]; i++) {
        void *p = memalign(opaque(M[i].req), opaque(M[i].size));
        CHECK(p != NULL, "memalign(%zu, %zu) returned NULL", M[i].req, M[i].size);
        if (!p) continue;
        CHECK(aligned_to(p, M[i].eff), "memalign(%zu, %zu) = %p not %zu-aligned", M[i].req, M[i].size, p, M[i].eff);
        CHECK(malloc_usable_size(p) >= M[i].size, "memalign usable size");
        fill(p, M[i].size, i);
        CHECK(verify(p, M[i].size, i) == M[i].size, "memalign block");
        free(p);
    }
    errno = 0;
    void *p = memalign(opaque(SIZE_MAX), opaque(10));
    CHECK(p == NULL && errno == EINVAL, "memalign(SIZE_MAX, 10) = %p errno %d (glibc: NULL, EINVAL)", p, errno);
    errno = 0;
    p = memalign(opaque(SIZE_MAX / 2 + 2), opaque(10));
    CHECK(p == NULL && errno == EINVAL, "memalign(2^63+1, 10) = %p errno %d (glibc: NULL, EINVAL)", p, errno);
    errno = 0;
    p = memalign(opaque(SIZE_MAX / 2 + 1), opaque(10));
    CHECK(p == NULL && errno == ENOMEM, "memalign(2^63, 10) = %p errno %d (want NULL, ENOMEM)", p, errno);
}

static void test_valloc_pvalloc(void) {
    const size_t ps = page_size();
    static const size_t V[] = {0, 1, 100, 4095, 4096, 4097, 10000, 100000, 3 * MiB + 1};
    for (unsigned i = 0; i < sizeof V / sizeof V[0]; i++) {
        size_t n = V[i];
        unsigned char *p = valloc(opaque(n));
        CHECK(p != NULL, "valloc(%zu) returned NULL", n);
        if (p) {
            CHECK(aligned_to(p, ps), "valloc(%zu) = %p not page-aligned", n, (void *)p);
            CHECK(malloc_usable_size(p) >= n, "valloc(%zu) usable %zu", n, malloc_usable_size(p));
            fill(p, n, n);
            CHECK(verify(p, n, n) == n, "valloc(%zu) block", n);
            free(p);
        }
        size_t rounded = n == 0 ? ps : (n + ps - 1) / ps * ps;
        p = pvalloc(opaque(n));
        CHECK(p != NULL, "pvalloc(%zu) returned NULL", n);
        if (p) {
            CHECK(aligned_to(p, ps), "pvalloc(%zu) = %p not page-aligned", n, (void *)p);
            CHECK(malloc_usable_size(p) >= rounded, "pvalloc(%zu) usable %zu < %zu", n, malloc_usable_size(p), rounded);
            /* the whole rounded size is usable */
            size_t w = malloc_usable_size(p) >= rounded ? rounded : malloc_usable_size(p);
            fill(p, w, n + 1);
            CHECK(verify(p, w, n + 1) == w, "pvalloc(%zu) block", n);
            free(p);
        }
    }
}

/* Every power-of-two alignment 1 .. 64 MiB with several sizes, through
 * posix_memalign, aligned_alloc and memalign, freed with free or
 * free_aligned_sized. */
static void test_alignment_matrix(void) {
    for (int k = 0; k <= 26; k++) {
        size_t a = (size_t)1 << k;
        size_t sizes[8];
        int ns = 0;
        sizes[ns++] = 1;
        sizes[ns++] = 16;
        sizes[ns++] = 100;
        sizes[ns++] = 5000;
        sizes[ns++] = a;
        sizes[ns++] = a + 1;
        sizes[ns++] = a + a / 2 + 3;
        for (int si = 0; si < ns; si++) {
            size_t n = sizes[si];
            for (int method = 0; method < 3; method++) {
                void *p = NULL;
                const char *how;
                if (method == 0) {
                    how = "posix_memalign";
                    if (a < sizeof(void *)) continue;
                    int r = posix_memalign(&p, opaque(a), opaque(n));
                    CHECK(r == 0, "posix_memalign(%zu, %zu) = %d", a, n, r);
                    if (r) p = NULL;
                } else if (method == 1) {
                    how = "aligned_alloc";
                    p = aligned_alloc(opaque(a), opaque(n));
                } else {
                    how = "memalign";
                    p = memalign(opaque(a), opaque(n));
                }
                CHECK(p != NULL, "%s(%zu, %zu) returned NULL", how, a, n);
                if (!p) continue;
                CHECK(aligned_to(p, a), "%s(%zu, %zu) = %p misaligned", how, a, n, p);
                CHECK(malloc_usable_size(p) >= n, "%s(%zu, %zu) usable %zu", how, a, n, malloc_usable_size(p));
                fill_ends(p, n, a + n);
                CHECK(verify_ends(p, n, a + n), "%s(%zu, %zu) block corrupted", how, a, n);
                if (method == 1 && hk.free_aligned_sized && (si % 2 == 0))
                    hk.free_aligned_sized(p, a, n);
                else
                    free(p);
            }
        }
    }
    /* several aligned blocks alive together must not overlap */
    for (int k = 4; k <= 16; k++) {
        size_t a = (size_t)1 << k;
        enum { K = 24 };
        void *v[K];
        int bad = 0;
        for (int i = 0; i < K; i++) {
            size_t n = 1 + (size_t)i * 333 % (2 * a + 100);
            v[i] = aligned_alloc(a, n);
            if (!v[i] || !aligned_to(v[i], a)) bad++;
            if (v[i]) fill(v[i], n, i * 31 + k);
        }
        for (int i = 0; i < K; i++) {
            size_t n = 1 + (size_t)i * 333 % (2 * a + 100);
            if (v[i] && verify(v[i], n, i * 31 + k) != n) bad++;
            if (v[i] && hk.free_aligned_sized && i % 2)
                hk.free_aligned_sized(v[i], a, n);
            else
                free(v[i]);
        }
        CHECK(bad == 0, "%d of %d live aligned_alloc(%zu) blocks bad", bad, K, a);
    }
}

static void test_free_sized(void) {
    if (!hk.free_sized) return;
    hk.free_sized(opaque_ptr(NULL), 10);
    hk.free_sized(opaque_ptr(NULL), 0);
    passed++;
    for (size_t n = 0; n <= 4096; n += 7) {
        void *p = malloc(n);
        CHECK(p != NULL, "malloc(%zu)", n);
        hk.free_sized(p, n);
    }
    for (int i = 0; i < n_large_sizes; i++) {
        void *p = malloc(large_sizes[i]);
        CHECK(p != NULL, "malloc(%zu)", large_sizes[i]);
        hk.free_sized(p, large_sizes[i]);
    }
    /* calloc'ed and realloc'ed blocks */
    void *p = calloc(100, 24);
    CHECK(p != NULL, "calloc");
    hk.free_sized(p, 2400);
    p = malloc(100);
    void *q = realloc(p, 70000);
    CHECK(q != NULL, "realloc");
    hk.free_sized(q, 70000);
    p = malloc(3 * MiB);
    q = realloc(p, 1000);
    CHECK(q != NULL, "realloc");
    hk.free_sized(q, 1000);
    /* free_aligned_sized of aligned_alloc blocks */
    if (hk.free_aligned_sized) {
        for (int k = 0; k <= 22; k++) {
            size_t a = (size_t)1 << k, n = 3 * a + 5;
            p = aligned_alloc(a, n);
            CHECK(p != NULL, "aligned_alloc(%zu, %zu)", a, n);
            hk.free_aligned_sized(p, a, n);
        }
        hk.free_aligned_sized(opaque_ptr(NULL), 64, 64);
    }
}

static void stats(struct hakmem_stats *s) {
    memset(s, 0, sizeof *s);
    if (hk.stats_get) hk.stats_get(s);
}

static void test_libc_aliases(void) {
    if (!hk.libc_malloc || !hk.libc_free || !hk.libc_calloc || !hk.libc_realloc || !hk.libc_memalign ||
        !hk.libc_valloc || !hk.libc_pvalloc || !hk.posix_memalign_alias)
        return;
    struct hakmem_stats s0, s1;
    const size_t ps = page_size();

    stats(&s0);
    unsigned char *p = hk.libc_malloc(100);
    stats(&s1);
    CHECK(p && malloc_usable_size(p) >= 100 && aligned_to(p, 16), "__libc_malloc(100)");
    CHECK(s1.malloc_calls > s0.malloc_calls, "__libc_malloc not counted by hakmem (%zu -> %zu)", s0.malloc_calls, s1.malloc_calls);
    fill(p, 100, 1);
    stats(&s0);
    unsigned char *q = hk.libc_realloc(p, 50000);
    CHECK(q && verify(q, 100, 1) == 100, "__libc_realloc lost contents");
    stats(&s1);
    CHECK(s1.malloc_calls > s0.malloc_calls, "__libc_realloc not counted by hakmem");
    stats(&s0);
    hk.libc_free(q);
    stats(&s1);
    CHECK(s1.free_calls > s0.free_calls, "__libc_free not counted by hakmem (%zu -> %zu)", s0.free_calls, s1.free_calls);

    p = hk.libc_calloc(1000, 3);
    CHECK(p && all_zero(p, 3000), "__libc_calloc");
    free(p); /* mixing entry points */
    p = malloc(77);
    hk.libc_free(p);
    p = hk.libc_memalign(4096, 100);
    CHECK(p && aligned_to(p, 4096) && malloc_usable_size(p) >= 100, "__libc_memalign(4096, 100)");
    free(p);
    p = hk.libc_memalign(24, 100);
    CHECK(p && aligned_to(p, 32), "__libc_memalign(24, 100) rounds the alignment up");
    free(p);
    p = hk.libc_valloc(10);
    CHECK(p && aligned_to(p, ps), "__libc_valloc");
    free(p);
    p = hk.libc_pvalloc(0);
    CHECK(p && aligned_to(p, ps) && malloc_usable_size(p) >= ps, "__libc_pvalloc(0)");
    free(p);
    void *out = NULL;
    int r = hk.posix_memalign_alias(&out, 256, 1000);
    CHECK(r == 0 && out && aligned_to(out, 256), "__posix_memalign(256, 1000) = %d", r);
    if (r == 0) hk.libc_free(out);
    out = (void *)0x1234;
    r = hk.posix_memalign_alias(&out, 24, 1000);
    CHECK(r == EINVAL && out == (void *)0x1234, "__posix_memalign(24) = %d, want EINVAL and *out untouched", r);
    errno = 0;
    p = hk.libc_malloc(SIZE_MAX);
    CHECK(p == NULL && errno == ENOMEM, "__libc_malloc(SIZE_MAX)");
    errno = 0;
    p = hk.libc_calloc(SIZE_MAX, 3);
    CHECK(p == NULL && errno == ENOMEM, "__libc_calloc overflow");
}

static void test_stats_and_version(void) {
    if (hk.version) {
        const char *v = hk.version();
        CHECK(v != NULL, "hakmem_version() returned NULL");
        if (v) CHECK(strncmp(v, "hakmem", 6) == 0, "hakmem_version() = \"%s\", want \"hakmem...\"", v);
        if (v) printf("version: %s\n", v);
    }
    if (!hk.stats_get) return;
    CHECK(hk.stats_get(NULL) == EINVAL, "hakmem_stats_get(NULL) != EINVAL");
    free(malloc(opaque(100))); /* at least one malloc and one free, even when run alone */
    struct hakmem_stats s;
    memset(&s, 0xFF, sizeof s);
    int r = hk.stats_get(&s);
    CHECK(r == 0, "hakmem_stats_get returned %d", r);
    CHECK(s.malloc_calls > 0 && s.malloc_calls != SIZE_MAX, "malloc_calls = %zu", s.malloc_calls);
    CHECK(s.free_calls > 0 && s.free_calls != SIZE_MAX, "free_calls = %zu", s.free_calls);
    CHECK(s.heaps_live >= 1 && s.heaps_live < 1000, "heaps_live = %zu", s.heaps_live);
    CHECK(s.bytes_mapped > 0 && s.bytes_mapped != SIZE_MAX, "bytes_mapped = %zu", s.bytes_mapped);
    CHECK(s.bytes_mapped_peak >= s.bytes_mapped, "bytes_mapped_peak %zu < bytes_mapped %zu", s.bytes_mapped_peak, s.bytes_mapped);
    CHECK(s.segments_peak >= s.segments_mapped, "segments_peak %zu < segments_mapped %zu", s.segments_peak, s.segments_mapped);
    /* a live 64 MiB block is huge and mapped */
    struct hakmem_stats a, b;
    stats(&a);
    void *p = malloc(64 * MiB);
    stats(&b);
    CHECK(p != NULL, "malloc(64 MiB)");
    CHECK(b.huge_mapped >= 1, "huge_mapped = %zu with a live 64 MiB block", b.huge_mapped);
    CHECK(b.bytes_mapped >= 64 * MiB, "bytes_mapped = %zu with a live 64 MiB block", b.bytes_mapped);
    CHECK(b.malloc_calls > a.malloc_calls, "malloc_calls did not increase (%zu -> %zu)", a.malloc_calls, b.malloc_calls);
    stats(&a);
    free(p);
    stats(&b);
    CHECK(b.free_calls > a.free_calls, "free_calls did not increase (%zu -> %zu)", a.free_calls, b.free_calls);
    CHECK(b.bytes_mapped_peak >= 64 * MiB, "bytes_mapped_peak %zu < 64 MiB after a 64 MiB block", b.bytes_mapped_peak);
    printf("stats: malloc_calls=%zu free_calls=%zu segments_mapped=%zu segments_peak=%zu huge_mapped=%zu "
           "bytes_mapped=%zu bytes_mapped_peak=%zu pages_in_use=%zu heaps_live=%zu bigcache_hits=%zu purged_bytes=%zu\n",
           b.malloc_calls, b.free_calls, b.segments_mapped, b.segments_peak, b.huge_mapped, b.bytes_mapped,
           b.bytes_mapped_peak, b.pages_in_use, b.heaps_live, b.bigcache_hits, b.purged_bytes);
}

static void test_glibc_extras(void) {
    int r = malloc_trim(0);
    CHECK(r == 0 || r == 1, "malloc_trim(0) = %d", r);
    r = malloc_trim(1 << 20);
    CHECK(r == 0 || r == 1, "malloc_trim(1 MiB) = %d", r);
    r = mallopt(M_TRIM_THRESHOLD, 256 * 1024);
    CHECK(r == 0 || r == 1, "mallopt = %d", r);

    enum { K = 1000 };
    static void *v[K];
    for (int i = 0; i < K; i++) v[i] = malloc(100);
    void *big = malloc(8 * MiB);
    if (big) memset(big, 1, 8 * MiB);
    struct mallinfo2 mi = mallinfo2();
    CHECK(mi.arena > 0 || mi.hblkhd > 0, "mallinfo2: arena %zu hblkhd %zu", mi.arena, mi.hblkhd);
    CHECK(mi.uordblks + mi.hblkhd >= 100000, "mallinfo2: uordblks %zu + hblkhd %zu with 8.1 MB live", mi.uordblks, mi.hblkhd);
    struct mallinfo m1 = mallinfo();
    (void)m1;
    passed++;
    for (int i = 0; i < K; i++) free(v[i]);
    free(big);
    malloc_stats();
    passed++;

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL, "open_memstream");
    if (f) {
        r = malloc_info(0, f);
        fclose(f);
        CHECK(r == 0, "malloc_info(0, f) = %d", r);
        CHECK(buf && len > 0 && strchr(buf, '<') && strstr(buf, "malloc"),
              "malloc_info(0) wrote no XML: \"%.60s\"", buf ? buf : "(null)");
        free(buf);
    }
    f = fopen("/dev/null", "w");
    if (f) {
        /* The contract (and the man page) say -1 with errno EINVAL; glibc
         * itself returns EINVAL. Either is accepted. */
        errno = 0;
        r = malloc_info(1, f);
        CHECK((r == -1 && errno == EINVAL) || r == EINVAL, "malloc_info(1, f) = %d errno %d (want -1, EINVAL)", r, errno);
        fclose(f);
    }
}

static void test_errno_preserved_by_free(void) {
    static const size_t S[] = {16, 5000, 300000, 8 * MiB, 40 * MiB};
    for (unsigned i = 0; i < sizeof S / sizeof S[0]; i++) {
        void *p = malloc(S[i]);
        memset(p, 1, S[i]);
        errno = EEXIST;
        free(p);
        CHECK(errno == EEXIST, "free of a %zu-byte block changed errno to %d (glibc >= 2.33 preserves it)", S[i], errno);
    }
    errno = EEXIST;
    free(NULL);
    CHECK(errno == EEXIST, "free(NULL) changed errno");
}

/* ---- threads: blocks allocated in one thread, freed in another ---- */
enum { TN = 2000 };
struct xfer { void *p[TN]; size_t n[TN]; int id; };

static size_t tsize(int i) {
    return (i % 10 == 0) ? 1000 + (size_t)i * 37 % 70000 : 1 + (size_t)i * 13 % 600;
}
static void *producer_thread(void *arg) {
    struct xfer *x = arg;
    for (int i = 0; i < TN; i++) {
        x->n[i] = tsize(i);
        x->p[i] = malloc(x->n[i]);
        if (x->p[i]) fill(x->p[i], x->n[i], x->id * 100000 + i);
    }
    return NULL;
}
static void *consumer_thread(void *arg) {
    struct xfer *x = arg;
    long bad = 0;
    for (int i = 0; i < TN; i++) {
        if (!x->p[i] || verify(x->p[i], x->n[i], x->id * 100000 + i) != x->n[i]) bad++;
        free(x->p[i]);
    }
    return (void *)bad;
}
static void test_threads(void) {
    static struct xfer x[4];
    pthread_t t[4];
    /* allocated in threads, freed in main */
    for (int i = 0; i < 4; i++) {
        x[i].id = i;
        pthread_create(&t[i], NULL, producer_thread, &x[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    long bad = 0;
    for (int i = 0; i < 4; i++) bad += (long)consumer_thread(&x[i]);
    CHECK(bad == 0, "%ld blocks allocated in threads and freed in main were bad", bad);
    /* allocated in main, freed in threads */
    for (int i = 0; i < 4; i++) {
        x[i].id = 10 + i;
        producer_thread(&x[i]);
    }
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, consumer_thread, &x[i]);
    bad = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (long)r;
    }
    CHECK(bad == 0, "%ld blocks allocated in main and freed in threads were bad", bad);
}

/* ---- fork while another thread allocates ---- */
static volatile int churn_stop;
static void *churn_thread(void *arg) {
    (void)arg;
    unsigned long i = 0;
    while (!churn_stop) {
        void *a = malloc(16 + i % 3000), *b = malloc(100000 + i % 7), *c = calloc(1, 40);
        free(b);
        free(a);
        free(c);
        i++;
    }
    return NULL;
}
static void test_fork(void) {
    pthread_t t;
    churn_stop = 0;
    pthread_create(&t, NULL, churn_thread, NULL);
    void *keep = malloc(5000);
    fill(keep, 5000, 42);
    int bad = 0;
    for (int i = 0; i < 20; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(10); /* a deadlocked child dies of SIGALRM */
            int ok = verify(keep, 5000, 42) == 5000;
            for (int j = 0; j < 200; j++) {
                void *a = malloc(16 + (size_t)j * 40), *b = malloc(200000), *c = memalign(4096, 100);
                ok &= a && b && c;
                free(a);
                free(b);
                free(c);
            }
            free(keep);
            _exit(ok ? 0 : 3);
        }
        if (pid < 0) { bad++; continue; }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            bad++;
            if (bad < 4)
                printf("  fork child %d: %s %d\n", i, WIFSIGNALED(st) ? "signal" : "exit status",
                       WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        }
    }
    churn_stop = 1;
    pthread_join(t, NULL);
    CHECK(bad == 0, "%d of 20 forked children (forked while a thread allocates) failed or deadlocked", bad);
    CHECK(verify(keep, 5000, 42) == 5000, "parent block damaged after fork");
    free(keep);
}

static const struct section {
    const char *name;
    void (*fn)(void);
} sections[] = {
    {"malloc_zero_and_null", test_malloc_zero_and_null},
    {"small_sizes", test_small_sizes},
    {"large_sizes", test_large_sizes},
    {"realloc", test_realloc},
    {"calloc", test_calloc},
    {"reallocarray", test_reallocarray},
    {"malloc_overflow", test_malloc_overflow},
    {"posix_memalign", test_posix_memalign},
    {"aligned_alloc_errors", test_aligned_alloc_errors},
    {"memalign_rounding", test_memalign_rounding},
    {"valloc_pvalloc", test_valloc_pvalloc},
    {"alignment_matrix", test_alignment_matrix},
    {"free_sized", test_free_sized},
    {"libc_aliases", test_libc_aliases},
    {"errno_preserved_by_free", test_errno_preserved_by_free},
    {"threads", test_threads},
    {"fork", test_fork},
    {"glibc_extras", test_glibc_extras},
    {"stats_and_version", test_stats_and_version}, /* last: counters cover everything above */
};

/* usage: abi_edge                 run every section
 *        abi_edge --list          print the section names
 *        abi_edge SECTION...      run only these sections */
int main(int argc, char **argv) {
    const int ns = (int)(sizeof sections / sizeof sections[0]);
    if (argc == 2 && !strcmp(argv[1], "--list")) {
        for (int i = 0; i < ns; i++) printf("%s\n", sections[i].name);
        return 0;
    }
    /* line-buffered: what was printed survives a crash */
    setvbuf(stdout, NULL, _IOLBF, 0);
    resolve_symbols();
    init_large_sizes();
    if (argc == 1) {
        for (int i = 0; i < ns; i++) {
            printf("== %s\n", sections[i].name);
            sections[i].fn();
        }
    } else {
        for (int a = 1; a < argc; a++) {
            int found = 0;
            for (int i = 0; i < ns; i++)
                if (!strcmp(argv[a], sections[i].name)) {
                    sections[i].fn();
                    found = 1;
                }
            if (!found) {
                fprintf(stderr, "abi_edge: unknown section %s\n", argv[a]);
                return 2;
            }
        }
    }
    printf("abi_edge[%s]: %ld passed, %ld failed\n", HK_MODE, passed, failed);
    return failed ? 1 : 0;
}
