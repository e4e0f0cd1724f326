//! Tuning constants, each derived as SHIFT -> SIZE -> MASK, and the
//! runtime [`Options`] that override the `DEFAULT_*` ones.
//!
//! Everything the allocator's geometry depends on lives here so that the
//! compile-time checks below see it in one place.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};
use static_assertions::const_assert;

// The geometry: segment and page sizes and the tier bounds, a compile-time
// choice of the embedder (the `small-segments` feature).
//
//                      default (hosts)        small-segments (1-64 MiB arenas)
//  segment             2 MiB                  256 KiB
//  tiny  <= SMALL_MAX  1 KiB in 64 KiB pages  1 KiB in 16 KiB pages
//  mid   <= MEDIUM_MAX 64 KiB in 512 KiB      8 KiB in 64 KiB pages
//  large <= LARGE_MAX  1 MiB, whole segment   128 KiB, whole segment
//  segment map         one 2^47-byte window   up to 8 2^32-byte windows
//                      (8 MiB)                (2 KiB each)
//
// A size class's page is the least memory it takes: in an arena of a few
// MiB, 2 MiB large pages would leave room for a handful of classes.

/// A segment ("SuperSlab") is `SEGMENT_SIZE`-aligned: masking any interior
/// pointer with `SEGMENT_MASK` gives the segment header.
#[cfg(not(feature = "small-segments"))]
pub const SEGMENT_SHIFT: usize = 21; // 2 MiB
#[cfg(feature = "small-segments")]
pub const SEGMENT_SHIFT: usize = 18; // 256 KiB
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
pub const SEGMENT_MASK: usize = SEGMENT_SIZE - 1;

/// Bytes at the start of every segment reserved for its header. Page 0
/// starts after it. Whole OS pages so that purging never touches the header.
#[cfg(not(feature = "small-segments"))]
pub const SEGMENT_HEADER_BYTES: usize = 8 << 10;
#[cfg(feature = "small-segments")]
pub const SEGMENT_HEADER_BYTES: usize = 4 << 10;

/// Page geometry of the three segment kinds that hold size classes.
#[cfg(not(feature = "small-segments"))]
mod pages {
    pub const SMALL_PAGE_SHIFT: usize = 16; // 64 KiB pages, 32 per segment
    pub const MEDIUM_PAGE_SHIFT: usize = 19; // 512 KiB pages, 4 per segment
    pub const MEDIUM_MAX: usize = 64 << 10;
    pub const LARGE_MAX: usize = 1 << 20;
    pub const HEAP_CHUNK_BYTES: usize = 256 << 10;
    pub const MAP_WINDOW_BITS: usize = 47;
    pub const MAP_WINDOWS: usize = 1;
}
#[cfg(feature = "small-segments")]
mod pages {
    pub const SMALL_PAGE_SHIFT: usize = 14; // 16 KiB pages, 16 per segment
    pub const MEDIUM_PAGE_SHIFT: usize = 16; // 64 KiB pages, 4 per segment
    pub const MEDIUM_MAX: usize = 8 << 10;
    pub const LARGE_MAX: usize = 128 << 10;
    pub const HEAP_CHUNK_BYTES: usize = 32 << 10;
    pub const MAP_WINDOW_BITS: usize = 32;
    pub const MAP_WINDOWS: usize = 8;
}
pub use pages::{MEDIUM_PAGE_SHIFT, SMALL_PAGE_SHIFT};
pub const LARGE_PAGE_SHIFT: usize = SEGMENT_SHIFT; // one page per segment
pub const MAX_PAGES_PER_SEGMENT: usize = SEGMENT_SIZE >> SMALL_PAGE_SHIFT;

/// Largest block served from small pages (the "tiny" tier).
pub const SMALL_MAX: usize = 1024;
/// Largest block served from medium pages (the "mid" pool).
pub const MEDIUM_MAX: usize = pages::MEDIUM_MAX;
/// Largest block served from large pages; above this a block is "huge" and
/// gets a mapping of its own.
pub const LARGE_MAX: usize = pages::LARGE_MAX;

/// The segment map covers aligned windows of `2^MAP_WINDOW_BITS` bytes of
/// address space, one bit per segment: the one the first segment lies in,
/// and up to `MAP_WINDOWS - 1` more, claimed as segments land outside them
/// (the default window is a whole half of a 48-bit address space; the
/// small geometry's 4 GiB ones hold an arena each, or a host's heap and
/// its mappings, in little static memory); memory the provider returns
/// outside them all is not used.
pub const MAP_WINDOW_BITS: usize = pages::MAP_WINDOW_BITS;
pub const MAP_WINDOWS: usize = pages::MAP_WINDOWS;

/// Every block is at least this aligned (glibc's MALLOC_ALIGNMENT on x86_64).
pub const MIN_ALIGN: usize = 16;
/// Smallest block: a free block holds the list link and the free marker.
pub const MIN_BLOCK: usize = 16;

/// A fresh page hands out blocks in runs of at most this many bytes (at
/// least one block), so a page is not touched all at once: carving writes
/// each block's link, and a block of a system page or more faults a page
/// of its own (a run of 16 such blocks cost a thread that used two of
/// them 64 KiB of resident memory).
pub const PAGE_EXTEND_BYTES: usize = 4 << 10;

/// Full pages a class queue keeps queued (the refill walks them again)
/// before it retires the others to the full queue: a class with a few
/// pages whose blocks come and go would otherwise send a page to the full
/// queue and back (two atomic operations and a slow free) on about one
/// malloc in ten of mid-sized churn.
pub const KEPT_FULL_PAGES: usize = 4;

/// Requests above this fail with ENOMEM before any arithmetic can overflow.
pub const MAX_REQUEST: usize = isize::MAX as usize - 2 * SEGMENT_SIZE;

/// Default number of empty segments kept mapped for reuse (their pages
/// are purged after the purge delay, so this bounds address space, not
/// RSS). Enough for a few threads that come and go, each holding a small
/// and a mid segment: with 4, such threads mapped and faulted fresh
/// segments on every start.
pub const DEFAULT_SEGMENT_CACHE: usize = 16;
/// Default bytes of freed huge blocks kept resident for warm reuse (those
/// idle longer than the purge delay are purged at the next huge-block call).
pub const DEFAULT_BIGCACHE_BYTES: usize = 256 << 20;
/// How much larger than a request (in percent) a warm cached huge mapping
/// may be and still serve it as it is, not split or resized (the original
/// hakmem's W_MAX; `HAKMEM_BIGCACHE_FIT`, at most `BIGCACHE_FIT_MAX_PERCENT`).
/// With learning on, the least the learned tolerance may be (capacity.rs:
/// over a provider that can neither split nor resize mappings, it widens
/// while a wider one would have served requests that missed).
pub const DEFAULT_BIGCACHE_FIT_PERCENT: usize = 25;
pub const BIGCACHE_FIT_MAX_PERCENT: usize = 400;
/// Bytes of free mid blocks a heap's block cache keeps per class
/// (`HAKMEM_BLOCK_CACHE`; block_cache.rs): up to 16 blocks of the class,
/// 8 of the largest (64 KiB); with learning on, the least a learned limit
/// may be (it may grow to twice the bytes, 64 blocks). 0 turns the cache off.
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 512 << 10;
/// Entries in the huge-block reuse cache.
pub const BIGCACHE_SLOTS: usize = 128;
/// Longest a freed huge block stays warm (ms) while huge calls keep coming
/// (at least the purge delay); a pause of the purge delay purges it sooner.
pub const BIGCACHE_WARM_MAX_MS: u64 = 1000;
/// Least time between two sweeps of a heap's larger free blocks (ms; at
/// least the purge delay, block_purge.rs): such a block stays resident one
/// to two periods. Its pages cost several faults to touch again, so it
/// waits as long as a warm huge block may.
pub const LARGE_SWEEP_MIN_MS: u64 = 1000;
/// A pause in huge-block calls that purges the warm cache lasts at least
/// this long (ms; with a nonzero purge delay): shorter gaps are a slow step
/// or the thread losing its core, and purging there made the next steps
/// fault everything again, which made them slower still.
pub const BIGCACHE_PAUSE_MIN_MS: u64 = 100;
/// Most bytes the huge-block cache keeps mapped (warm or purged).
pub const BIGCACHE_MAPPED_BYTES: usize = 1 << 30;
/// The huge-block cache keeps at most as many warm bytes as the program
/// had live in huge blocks at its peak over the last one to two
/// `BIGCACHE_LIVE_WINDOW_MS`, and at least this many: a program whose
/// huge blocks come and go reuses them warm, one that grows one buffer
/// does not keep four times its size resident.
pub const BIGCACHE_LIVE_FLOOR: usize = 32 << 20;
/// The window of that peak (ms).
pub const BIGCACHE_LIVE_WINDOW_MS: u64 = 1000;
/// A huge request no cached mapping serves alone is built from the pages
/// of warm ones (`HugeCache::stitch`) when at least this many warm bytes
/// are cached: below it, the system calls cost more than the faults saved.
pub const STITCH_MIN_BYTES: usize = 64 << 10;
/// Most segments the segment store takes out of its lists to purge at a
/// time (segment_store.rs).
pub const PURGE_BATCH: usize = 16;
/// Evicted huge blocks gathered before they are unmapped together.
pub const RELEASE_BATCH: usize = 8;
/// Refills between two purge checks on the refill path (alloc.rs).
pub const REFILLS_PER_PURGE_CHECK: u8 = 8;

/// Freed pages stay resident this long (ms) for warm reuse before a heap
/// purges them, as mimalloc's purge delay.
pub const DEFAULT_PURGE_DELAY_MS: usize = 10;
/// Learning modes of the purge policy (learn.rs): off (the configured
/// delay, nothing observed), on (observed and applied), frozen (observed,
/// not applied: what learning would choose is reported).
pub const LEARN_OFF: u8 = 0;
pub const LEARN_ON: u8 = 1;
pub const LEARN_FROZEN: u8 = 2;
/// Whether the purge policy is learned unless set otherwise.
pub const DEFAULT_LEARN: u8 = LEARN_ON;
/// A heap purges at once when it holds more dirty (freed, unpurged) page
/// bytes than this, whatever the delay.
pub const DEFAULT_PURGE_DIRTY_BYTES: usize = 64 << 20;

/// Heaps are carved from chunks of this size obtained from the provider.
pub const HEAP_CHUNK_BYTES: usize = pages::HEAP_CHUNK_BYTES;

/// Tunables an embedder may set before (or while) allocating; each starts
/// at its `DEFAULT_*` constant. Read with relaxed loads on slow paths only.
pub struct Options {
    /// Empty segments kept mapped for reuse.
    pub segment_cache: AtomicUsize,
    /// Bytes of freed huge blocks kept for reuse.
    pub bigcache_bytes: AtomicUsize,
    /// Percent larger than a request a cached huge mapping may be and
    /// serve it as it is (see `DEFAULT_BIGCACHE_FIT_PERCENT`).
    pub bigcache_fit_percent: AtomicUsize,
    /// Bytes of free mid blocks a heap's block cache keeps per class:
    /// read when a heap is made (a thread's heap from the pool keeps the
    /// limits it was made with).
    pub block_cache_bytes: AtomicUsize,
    /// Dirty (freed, unpurged) page bytes a heap keeps before purging
    /// (while learning is on, the least the learned cap may be).
    pub purge_dirty_bytes: AtomicUsize,
    /// Milliseconds freed pages stay resident before they are purged
    /// (while learning is on, the starting point of the learned delay).
    pub purge_delay_ms: AtomicUsize,
    /// The purge learner's mode (`LEARN_OFF` / `LEARN_ON` / `LEARN_FROZEN`).
    pub learn: AtomicU8,
    /// Strict mode (strict.rs): read once, when the first heap is made;
    /// set it before the first allocation (later changes are ignored).
    pub strict: AtomicBool,
}

impl Options {
    pub const fn new() -> Self {
        Options {
            segment_cache: AtomicUsize::new(DEFAULT_SEGMENT_CACHE),
            bigcache_bytes: AtomicUsize::new(DEFAULT_BIGCACHE_BYTES),
            bigcache_fit_percent: AtomicUsize::new(DEFAULT_BIGCACHE_FIT_PERCENT),
            block_cache_bytes: AtomicUsize::new(DEFAULT_BLOCK_CACHE_BYTES),
            purge_dirty_bytes: AtomicUsize::new(DEFAULT_PURGE_DIRTY_BYTES),
            purge_delay_ms: AtomicUsize::new(DEFAULT_PURGE_DELAY_MS),
            learn: AtomicU8::new(DEFAULT_LEARN),
            strict: AtomicBool::new(false),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

const_assert!(SEGMENT_HEADER_BYTES < (1 << SMALL_PAGE_SHIFT));
const_assert!(SMALL_MAX * 8 <= (1 << SMALL_PAGE_SHIFT) - SEGMENT_HEADER_BYTES);
const_assert!(MEDIUM_MAX * 4 <= (1 << MEDIUM_PAGE_SHIFT) - SEGMENT_HEADER_BYTES);
const_assert!(LARGE_MAX <= SEGMENT_SIZE - SEGMENT_HEADER_BYTES);
const_assert!(MIN_BLOCK >= 2 * core::mem::size_of::<usize>());
const_assert!(SEGMENT_HEADER_BYTES.is_multiple_of(MIN_ALIGN));
const_assert!(MAX_PAGES_PER_SEGMENT <= 32); // Segment::dirty is a u32 bitmask
const_assert!(MAP_WINDOW_BITS > SEGMENT_SHIFT + 6 && MAP_WINDOW_BITS < usize::BITS as usize && MAP_WINDOWS >= 1);
