/* text_pages: which pages of the allocator's code a program that only
 * allocates makes resident (run under LD_PRELOAD=libhakmem.so).
 *
 * It does what most programs do (small, mid and large blocks; calloc;
 * realloc growing a buffer; a second thread that allocates, frees blocks
 * of the first thread's and exits), then finds the executable mapping of
 * the library that defines malloc and reads, from /proc/self/pagemap, which
 * of its pages are present. Prints
 *   text_kb N resident_kb N beyond_kb N window_kb N
 * (beyond: resident past the mapping's first window_kb, the range that the
 * library's first page fault maps; see ffi/hot.ld) and each resident range. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WINDOW (64u << 10)

static void *shared[64];

static void *worker(void *arg) {
    (void)arg;
    void *mine[64];
    for (int i = 0; i < 64; i++) {
        mine[i] = malloc(24 + 8 * i);
        memset(mine[i], 1, 24);
    }
    for (int i = 0; i < 64; i++) {
        free(shared[i]); /* blocks of the main thread's heap */
        free(mine[i]);
    }
    return NULL;
}

static void allocate_like_a_program(void) {
    for (int round = 0; round < 100; round++) {
        void *blocks[200];
        for (int i = 0; i < 200; i++) {
            size_t size = i % 50 == 49 ? 20000 + 100 * i : 8 + (size_t)(i % 40) * 24;
            blocks[i] = i % 7 == 0 ? calloc(1, size) : malloc(size);
            if (!blocks[i]) abort();
            memset(blocks[i], round, 8);
        }
        for (int i = 0; i < 200; i += 2) free(blocks[i]);
        for (int i = 1; i < 200; i += 2) free(blocks[i]);
    }
    char *text = NULL;
    size_t len = 0;
    for (int i = 0; i < 2000; i++) {
        text = realloc(text, len + 17);
        if (!text) abort();
        memcpy(text + len, "appended sixteen", 17);
        len += 16;
    }
    free(text);
    void *big = malloc(300000);
    memset(big, 2, 300000);
    free(big);
    for (int i = 0; i < 64; i++) shared[i] = malloc(40);
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) || pthread_join(t, NULL)) abort();
}

int main(void) {
    allocate_like_a_program();

    Dl_info info;
    void *malloc_address = dlsym(RTLD_DEFAULT, "malloc");
    if (!malloc_address || !dladdr(malloc_address, &info) || !info.dli_fname) {
        puts("error no library for malloc");
        return 1;
    }
    FILE *maps = fopen("/proc/self/maps", "r");
    int pagemap = open("/proc/self/pagemap", O_RDONLY);
    if (!maps || pagemap < 0) {
        puts("error cannot read /proc/self/maps or pagemap");
        return 1;
    }
    char line[4096];
    unsigned long start = 0, end = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long a, b;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) != 3) continue;
        if (perms[2] == 'x' && (uintptr_t)malloc_address >= a && (uintptr_t)malloc_address < b) {
            start = a;
            end = b;
        }
    }
    if (!start) {
        puts("error no executable mapping holds malloc");
        return 1;
    }
    unsigned long resident = 0, beyond = 0, run = 0;
    for (unsigned long page = start; page <= end; page += 4096) {
        uint64_t entry = 0;
        int present = 0;
        if (page < end) {
            if (pread(pagemap, &entry, sizeof entry, (off_t)(page / 4096 * 8)) != sizeof entry) {
                puts("error pagemap read");
                return 1;
            }
            present = (int)(entry >> 63);
        }
        if (present) {
            resident += 4;
            if (page >= start + WINDOW) beyond += 4;
            if (!run) run = page;
        } else if (run) {
            printf("range +0x%lx..+0x%lx\n", run - start, page - start);
            run = 0;
        }
    }
    printf("library %s\n", info.dli_fname);
    printf("text_kb %lu resident_kb %lu beyond_kb %lu window_kb %u\n", (end - start) / 1024, resident, beyond, WINDOW / 1024);
    return 0;
}
