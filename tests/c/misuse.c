/* misuse.c: invalid uses of the allocator; each case must make hakmem abort.
 *
 * usage: misuse <case>
 *   ok                        valid work, exits 0 (control case)
 *   double_free_small         free(malloc(32)) twice
 *   double_free_mid           20 KiB block freed twice
 *   double_free_large         500 KiB block freed twice
 *   double_free_huge          8 MiB block freed twice
 *   free_stack_pointer        free() of a stack address
 *   free_interior_pointer     free(malloc(64) + 16)
 *   free_low_pointer          free() of address 0x1000 (below the first 2 MiB,
 *                             which no segment covers) by a thread with a heap
 *   free_sized_too_big        free_sized(malloc(100), 100000)
 *   double_free_cross_thread  first free in thread A, second in thread B
 * Caught in strict mode (HAKMEM_STRICT=1) only; default mode survives them:
 *   overflow_one_byte         malloc(20), byte 20 written, freed
 *   overflow_aligned          posix_memalign(64, 100), byte 100 written, freed
 *   overflow_then_realloc     malloc(40), byte 40 written, realloc to 400
 *   write_after_free          malloc(48) freed, byte 40 written, 200 more frees
 *   write_after_free_reused   malloc(100) freed, pushed out of the quarantine
 *                             by 200 frees of another size, byte 60 written,
 *                             then malloc(100) until it comes back
 *   huge_overflow_slack       malloc(5 MiB + 100), byte 5 MiB + 100 written
 *                             (inside the 16-byte rounding), freed
 *   guard_huge_end            malloc(5 MiB + 100), the first byte after its
 *                             16-byte rounding written (a guard page in strict
 *                             mode, the mapping's slack in default mode)
 *   guard_huge_after_free     malloc(5 MiB) freed, byte 100 written
 *   guard_segment_end         blocks of 1000 bytes until one is in the last
 *                             64 KiB of its 2 MiB segment, then the segment's
 *                             last OS page written from it
 *   guard_segment_front       blocks of 100 bytes until one starts page 0 of
 *                             its segment (8 KiB in), then the byte before it
 *   wild_write                a write to address 64 (not the allocator's:
 *                             a plain SIGSEGV in both modes)
 *   raised_segv               raise(SIGSEGV) (sent, not a fault: the same)
 *
 * Each misuse case prints "misuse: <case>: reached the bad call" (flushed)
 * right before the bad call and "misuse: <case>: survived" if the process is
 * still alive afterwards, then exits 0 (which the test reports as a failure).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "hakmem.h"
#include "hk_sym.h"

static void *opaque_ptr(void *p) {
    __asm__ volatile("" : "+r"(p));
    return p;
}

static const char *cur;
static void reached(void) {
    printf("misuse: %s: reached the bad call\n", cur);
    fflush(stdout);
}

static void double_free(size_t n) {
    char *p = malloc(n);
    if (!p) { printf("misuse: malloc(%zu) failed\n", n); exit(2); }
    memset(p, 0x5A, n);
    free(p);
    reached();
    free(opaque_ptr(p));
}

/* Both threads exist before the first free, so that nothing allocates
 * (thread creation allocates) between the two frees. */
static sem_t go_a, go_b, a_done_forever;
static void *volatile shared;
static void *thread_a(void *arg) {
    (void)arg;
    sem_wait(&go_a);
    free(shared);
    sem_post(&go_b);
    sem_wait(&a_done_forever); /* stays alive: its exit would not allocate, but keep it simple */
    return NULL;
}
static void *thread_b(void *arg) {
    (void)arg;
    sem_wait(&go_b);
    reached();
    free(opaque_ptr(shared));
    return NULL;
}
static void double_free_cross_thread(void) {
    pthread_t a, b;
    sem_init(&go_a, 0, 0);
    sem_init(&go_b, 0, 0);
    sem_init(&a_done_forever, 0, 0);
    pthread_create(&a, NULL, thread_a, NULL);
    pthread_create(&b, NULL, thread_b, NULL);
    shared = malloc(100);
    memset(shared, 0x5A, 100);
    sem_post(&go_a);
    pthread_join(b, NULL);
    sem_post(&a_done_forever);
    pthread_join(a, NULL);
}

/* Strict-mode cases: the bad write, then calls that reach the check. */
static void write_byte(char *p, ptrdiff_t at) {
    reached();
    ((volatile char *)opaque_ptr(p))[at] = 'x';
}
static void churn(size_t n, int times) {
    for (int i = 0; i < times; i++) free(opaque_ptr(malloc(n)));
}
static void strict_case(const char *c) {
    if (!strcmp(c, "overflow_one_byte")) {
        char *p = malloc(20);
        memset(p, 1, 20);
        write_byte(p, 20);
        free(p);
    } else if (!strcmp(c, "overflow_aligned")) {
        void *p = NULL;
        if (posix_memalign(&p, 64, 100)) exit(2);
        memset(p, 1, 100);
        write_byte(p, 100);
        free(p);
    } else if (!strcmp(c, "overflow_then_realloc")) {
        char *p = malloc(40);
        memset(p, 1, 40);
        write_byte(p, 40);
        p = realloc(p, 400);
        free(p);
    } else if (!strcmp(c, "write_after_free")) {
        char *p = malloc(48);
        memset(p, 1, 48);
        free(p);
        write_byte(p, 40);
        churn(48, 200);
    } else if (!strcmp(c, "huge_overflow_slack") || !strcmp(c, "guard_huge_end")) {
        size_t n = (5u << 20) + 100;
        char *p = malloc(n);
        memset(p, 1, n);
        write_byte(p, !strcmp(c, "guard_huge_end") ? (ptrdiff_t)((n + 15) & ~(size_t)15) : (ptrdiff_t)n);
        free(p);
    } else if (!strcmp(c, "raised_segv")) {
        opaque_ptr(malloc(100));
        reached();
        raise(SIGSEGV);
    } else if (!strcmp(c, "wild_write")) {
        opaque_ptr(malloc(100));
        write_byte(opaque_ptr((char *)0), 64);
    } else if (!strcmp(c, "guard_huge_after_free")) {
        char *p = malloc(5u << 20);
        memset(p, 1, 5u << 20);
        free(p);
        write_byte(p, 100);
    } else if (!strcmp(c, "guard_segment_end") || !strcmp(c, "guard_segment_front")) {
        const uintptr_t segment = 2u << 20, page = 4096;
        int front = !strcmp(c, "guard_segment_front");
        for (int i = 0; i < 100000; i++) {
            char *p = malloc(front ? 100 : 1000);
            uintptr_t offset = (uintptr_t)p & (segment - 1);
            if (front && offset == 8192) {
                write_byte(p, -1);
                return;
            }
            if (!front && offset >= segment - (64u << 10)) {
                write_byte(p, (ptrdiff_t)(segment - page - offset));
                return;
            }
        }
        printf("misuse: no block found where the case needs one\n");
        exit(2);
    } else {
        char *p = malloc(100);
        memset(p, 1, 100);
        free(p);
        churn(3000, 200);
        write_byte(p, 60);
        for (int i = 0; i < 4; i++) opaque_ptr(malloc(100));
    }
}

static void *ok_thread(void *arg) {
    void **v = arg;
    for (int i = 0; i < 1000; i++) free(v[i]);
    return NULL;
}
static int ok_case(void) {
    static void *v[1000];
    for (int i = 0; i < 1000; i++) {
        size_t n = 1 + (size_t)i * 131 % 70000;
        v[i] = malloc(n);
        if (!v[i]) return 1;
        memset(v[i], i, n);
    }
    pthread_t t;
    pthread_create(&t, NULL, ok_thread, v);
    pthread_join(t, NULL);
    void (*fs)(void *, size_t) = HK_SYM(free_sized);
    for (size_t n = 0; n < 3000000; n = n * 3 + 1) {
        void *p = malloc(n);
        if (!p) return 1;
        if (fs) fs(p, n); else free(p);
    }
    void *p = malloc(8 << 20);
    free(p);
    free(NULL);
    printf("misuse: ok: done\n");
    return 0;
}

int main(int argc, char **argv) {
    /* An abort must not leave a core dump behind (or feed a slow handler). */
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: misuse <case>\n");
        return 2;
    }
    cur = argv[1];
    /* some warm-up so the allocator is initialised and has used blocks around */
    void *warm[64];
    for (int i = 0; i < 64; i++) warm[i] = malloc(16 + i * 40);

    if (!strcmp(cur, "ok")) {
        for (int i = 0; i < 64; i++) free(warm[i]);
        return ok_case();
    } else if (!strcmp(cur, "double_free_small")) {
        double_free(32);
    } else if (!strcmp(cur, "double_free_mid")) {
        double_free(20 * 1024);
    } else if (!strcmp(cur, "double_free_large")) {
        double_free(500 * 1024);
    } else if (!strcmp(cur, "double_free_huge")) {
        double_free(8 * 1024 * 1024);
    } else if (!strcmp(cur, "free_stack_pointer")) {
        char buf[256];
        memset(buf, 1, sizeof buf);
        reached();
        free(opaque_ptr(buf + 64));
    } else if (!strcmp(cur, "free_interior_pointer")) {
        char *p = malloc(64);
        memset(p, 1, 64);
        reached();
        free(opaque_ptr(p + 16));
    } else if (!strcmp(cur, "free_low_pointer")) {
        free(malloc(32));
        reached();
        free(opaque_ptr((char *)0x1000));
    } else if (!strcmp(cur, "free_sized_too_big")) {
        void (*fs)(void *, size_t) = HK_SYM(free_sized);
        if (!fs) {
            printf("misuse: free_sized not found (hakmem not loaded?)\n");
            return 3;
        }
        char *p = malloc(100);
        memset(p, 1, 100);
        reached();
        fs(opaque_ptr(p), 100000);
    } else if (!strcmp(cur, "double_free_cross_thread")) {
        double_free_cross_thread();
    } else if (!strcmp(cur, "overflow_one_byte") || !strcmp(cur, "overflow_aligned") ||
               !strcmp(cur, "overflow_then_realloc") || !strcmp(cur, "write_after_free") ||
               !strcmp(cur, "write_after_free_reused") || !strncmp(cur, "guard_", 6) ||
               !strcmp(cur, "huge_overflow_slack") || !strcmp(cur, "wild_write") ||
               !strcmp(cur, "raised_segv")) {
        strict_case(cur);
    } else {
        fprintf(stderr, "misuse: unknown case %s\n", cur);
        return 2;
    }
    printf("misuse: %s: survived\n", cur);
    return 0;
}
