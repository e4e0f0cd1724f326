/* hk_sym.h: access to hakmem-only symbols from the test programs.
 *
 * Static build (default): the program is linked against libhakmem.a, so the
 * hakmem extensions (and cfree, free_sized, the __libc_* aliases, ...) are
 * referenced directly.
 *
 * -DHAKMEM_PRELOAD: the program is linked against glibc only and hakmem is
 * expected to be injected with LD_PRELOAD. Symbols glibc 2.36 does not export
 * (free_sized, hakmem_stats_get, ...) cannot be linked, so they are looked up
 * at run time with dlsym(RTLD_DEFAULT); NULL means "hakmem is not loaded".
 */
#ifndef HK_SYM_H
#define HK_SYM_H

#include <stddef.h>

/* glibc does not declare these in its public headers. */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern int __posix_memalign(void **, size_t, size_t);

#ifdef HAKMEM_PRELOAD
#include <dlfcn.h>
#define HK_SYM(name) ((__typeof__(&name))dlsym(RTLD_DEFAULT, #name))
#define HK_MODE "preload"
#else
#define HK_SYM(name) (&name)
#define HK_MODE "static"
#endif

#endif
