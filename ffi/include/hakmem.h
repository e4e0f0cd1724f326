/* hakmem.h: the C interface of the hakmem memory allocator.
 *
 * Link with libhakmem.a (static) or preload libhakmem.so. Either way the
 * standard allocation functions of <stdlib.h> and <malloc.h> are replaced by
 * hakmem's; this header declares them (with glibc semantics) together with
 * hakmem's own extensions, prefixed `hakmem_`.
 *
 * Environment (read once, at the first allocation, without allocating):
 *   HAKMEM_STATS=1        print one line of statistics to stderr at exit
 *   HAKMEM_VERBOSE=1      print the version and effective options at start
 *   HAKMEM_BIGCACHE_MAX   bytes of freed huge blocks kept for reuse (K/M/G)
 *   HAKMEM_SEGMENT_CACHE  empty 2 MiB segments kept mapped for reuse
 *   HAKMEM_PURGE_DELAY    ms freed pages stay resident before purging (0: at once)
 *   HAKMEM_THP=on|off     transparent huge pages for segments (unset: kernel default)
 *   HAKMEM_PURGE_DIRTY    freed page bytes a thread keeps at most before purging
 */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- ISO C / POSIX / glibc allocation API (replaced by hakmem) ---- */
void *malloc(size_t size);
void free(void *ptr);
void *calloc(size_t count, size_t size);
void *realloc(void *ptr, size_t size);
void *reallocarray(void *ptr, size_t count, size_t size);
int posix_memalign(void **out, size_t alignment, size_t size);
void *aligned_alloc(size_t alignment, size_t size);
void *memalign(size_t alignment, size_t size);
void *valloc(size_t size);
void *pvalloc(size_t size);
size_t malloc_usable_size(void *ptr);
void cfree(void *ptr);
/* C23: the size (and alignment) are checked against the block; a size larger
 * than the block or a misaligned pointer aborts with a message. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

/* glibc extras */
int malloc_trim(size_t pad);
int mallopt(int param, int value);
void malloc_stats(void);
int malloc_info(int options, FILE *stream);
/* struct mallinfo / mallinfo2 are declared by <malloc.h>; hakmem fills
 * arena (bytes mapped), hblks/hblkhd (huge blocks and their bytes),
 * usmblks (peak bytes mapped), uordblks (bytes in use, at page
 * granularity) and fordblks (mapped but not in use). mallopt() supports no
 * glibc parameter and returns 0; use the HAKMEM_* variables. */

/* ---- hakmem extensions ---- */

/* A snapshot of hakmem's counters. Cheap: it sums a few atomics and the
 * counters of the live thread heaps. */
struct hakmem_stats {
    size_t malloc_calls;     /* allocation calls served (all entry points) */
    size_t free_calls;       /* non-NULL frees served */
    size_t segments_mapped;  /* 2 MiB segments currently mapped */
    size_t segments_peak;    /* most segments mapped at once */
    size_t huge_mapped;      /* huge blocks currently mapped (live or cached) */
    size_t bytes_mapped;     /* bytes currently mapped from the OS */
    size_t bytes_mapped_peak;/* most bytes mapped at once */
    size_t pages_in_use;     /* size-class pages holding live blocks */
    size_t heaps_live;       /* thread heaps in use */
    size_t bigcache_hits;    /* huge allocations served from the reuse cache */
    size_t purged_bytes;     /* bytes returned to the OS with madvise */
    size_t huge_bytes;       /* bytes of huge mappings (live or cached) */
    size_t page_bytes_in_use;/* bytes of size-class pages holding live blocks */
    size_t cross_thread_frees;   /* frees of a block by a thread that does not own it */
    size_t bigcache_misses;      /* huge allocations that mapped afresh */
    size_t segment_cache_hits;   /* segments taken from the empty-segment cache */
    size_t segment_cache_misses; /* segments mapped afresh */
    size_t unmapped_bytes;       /* bytes unmapped (cumulative) */
    size_t resident_bytes;       /* resident memory of the process (0: unknown) */
    size_t resident_peak_bytes;  /* most resident memory of the process so far (0: unknown) */
    size_t pages_reused_warm;    /* freed pages taken again while still resident */
    size_t pages_reused_cold;    /* freed pages taken again after they were purged */
    size_t purge_delay_ms;       /* how long freed pages stay resident now (learned or set) */
};

/* Fill *out; returns 0 (or EINVAL when out is NULL). */
int hakmem_stats_get(struct hakmem_stats *out);

/* One size class, from a census of the heaps' pages when asked (blocks
 * freed by other threads and not yet collected by the owner count as in
 * use). */
struct hakmem_class_stats {
    size_t block_size;    /* bytes of each block */
    size_t pages;         /* pages of the class in use */
    size_t blocks_in_use; /* blocks handed out */
    size_t bytes_in_use;  /* blocks_in_use * block_size */
    size_t bytes_free;    /* bytes of the free blocks of those pages */
};

/* Fill out[0..n) with the size classes, smallest first; returns the number
 * of classes (call with n = 0 to learn it). */
size_t hakmem_class_stats_get(struct hakmem_class_stats *out, size_t n);

/* Heap profiler (HAKMEM_PROF=1; HAKMEM_PROF_SAMPLE sets the mean bytes
 * between samples, 512K by default). Write the sampled live allocations to
 * `path`, in the text heap-profile format jeprof and pprof read (with the
 * process's mappings, so it symbolises offline), and their folded stacks
 * to `path`.folded (flame graph tools). Returns 0, or -1 with errno:
 * EINVAL when profiling is off or the path is null, empty or too long;
 * otherwise the error of creating or writing the files. */
int hakmem_prof_dump(const char *path);

/* The version string, e.g. "hakmem 0.1.0". */
const char *hakmem_version(void);

#ifdef __cplusplus
}
#endif
#endif /* HAKMEM_H */
