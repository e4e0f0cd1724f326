/* Loads libhakmem.so with dlopen (after start-up: its TLS lands in dynamic
 * TLS, its initial-exec heap slot in glibc's static TLS reserve), allocates through its malloc/free from several threads,
 * dlcloses it, and lets the threads exit: nothing may crash. argv[1]: path. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);
static malloc_fn hk_malloc;
static free_fn hk_free;

static void *worker(void *arg) {
    long t = (long)arg, bad = 0;
    for (int round = 0; round < 200; round++) {
        char *blocks[64];
        for (int i = 0; i < 64; i++) {
            size_t n = 1 + (size_t)((i * 97 + round * 13 + t) % 5000);
            blocks[i] = hk_malloc(n);
            if (!blocks[i]) return (void *)1;
            memset(blocks[i], (int)(t + i), n);
        }
        for (int i = 0; i < 64; i++) {
            bad += blocks[i][0] != (char)(t + i);
            hk_free(blocks[i]);
        }
    }
    return (void *)bad;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 3; }
    hk_malloc = (malloc_fn)dlsym(lib, "malloc");
    hk_free = (free_fn)dlsym(lib, "free");
    const char *(*version)(void) = (const char *(*)(void))dlsym(lib, "hakmem_version");
    if (!hk_malloc || !hk_free || !version) { fprintf(stderr, "dlsym failed\n"); return 4; }
    pthread_t th[4];
    for (long t = 0; t < 4; t++) pthread_create(&th[t], NULL, worker, (void *)t);
    long bad = 0;
    for (int t = 0; t < 4; t++) { void *r; pthread_join(th[t], &r); bad += (long)r; }
    void *p = hk_malloc(100);
    printf("%s bad=%ld\n", version(), bad);
    dlclose(lib);
    /* Threads started after dlclose must still exit cleanly, and the block
     * from before can still be freed (nodelete keeps hakmem loaded). */
    pthread_create(&th[0], NULL, worker, (void *)9);
    pthread_join(th[0], NULL);
    hk_free(p);
    puts(bad == 0 ? "OK" : "CORRUPT");
    return bad != 0;
}
