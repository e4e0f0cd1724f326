//! hakmem-core: the allocator, with no operating system underneath.
//!
//! ```text
//!   ffi (C ABI)  ->  platform-linux (rustix pages, TLS heaps, env)  ->  core (this crate)
//!                                                   kernel / tests  ->  core
//! ```
//!
//! Where to start reading: malloc is [`alloc`] (`Heap::malloc`, top to
//! bottom: fast path, refill), free is [`free`] (`free()`, then
//! `Heap::free_local` and the slow twins).
//!
//! Map of the modules; each uses only those below it:
//! ```text
//!  locked      LockedHeap, PerCpuHeaps: heaps behind spin locks (kernels)
//!  arena       Arena: a provider over embedder memory (fixed or growable)
//!  global      Global<P>: Shared + heap pool; heap_acquire/release, free, trim, stats, fork
//!  alloc       malloc fast path -> refill; aligned, calloc, realloc        \
//!  sampling    the heap profiler's countdown and sampled blocks             |
//!  strict      strict mode: canaries, poison, quarantine                    |
//!  free        free fast path -> checked_block -> local or remote push      | impl Heap,
//!  adopt       thread exit (abandon), adoption, trim                        | one path each
//!  heap        the Heap struct, page queues, page life cycle, drain        /
//!  block_cache a heap's LIFO stacks of free mid blocks, before any page
//!  purge       when a heap purges its dirty pages (DirtyPages)
//!  block_purge when a heap purges free blocks of its pages in use (the larger classes)
//!  shared      Shared<P>: memory + segment store + huge blocks (what heaps draw from)
//!  huge        huge blocks: alloc, realloc by remap, free (HugeBlocks)
//!  bigcache    freed huge mappings: warm reuse, split/join, release batch
//!  segment_store  empty segments (cache) and abandoned segments
//!  list        intrusive lists of pages and segments
//!  remote      cross-thread frees: page remote lists, DelayedFrees, push_foreign
//!  census      per-class and per-tier use read from page state; the statistics table
//!  segment     the segment header, pointer -> metadata, segment map, page bookkeeping
//!  memory      the provider, counted: map / unmap / purge, keys, options, fatal
//!  learn       the learned purge delay, from pages' reuse distances
//!  capacity    learned cache capacities (segment cache, BigCache bytes), toward a hit rate
//!  profile     the heap profiler's sample and stack tables, dumps
//!  page        page descriptor, local free list, carving
//!  stats  class  config  message  provider           leaves
//!  testing  shadow   test providers, the shadow-model interpreter (feature `testing`)
//! ```
//!
//! Tiers (see [`class`]): tiny blocks up to 1 KiB in 64 KiB pages, mid up to
//! 64 KiB in 512 KiB pages, large up to 1 MiB in whole-segment pages, huge
//! above that in mappings of their own.
//!
//! Global invariants:
//! - Every block lies inside the first `SEGMENT_SIZE` bytes (2 MiB; 256 KiB
//!   with the `small-segments` geometry) of a segment-aligned header:
//!   `(ptr - 1) & !SEGMENT_MASK` is its metadata ([`segment::Segment::of_ptr`] is
//!   the only code that maps pointers to metadata).
//! - A segment is owned by at most one heap; only that heap's thread touches
//!   the non-atomic fields of its pages. Other threads only push onto a
//!   page's `thread_free` or a heap's `delayed` list (lock-free, remote.rs).
//! - Nothing here allocates through another allocator, panics on a valid
//!   path, or touches `errno`; errors abort through `PageProvider::fatal`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

/// A point where the interleaving tests (interleave.rs) may run the other
/// thread; nothing outside the core's own tests.
macro_rules! interleave_point {
    () => {
        #[cfg(test)]
        crate::interleave::point();
    };
}

/// A retry loop's wait: in the interleaving tests the other thread runs
/// first; nothing outside the core's own tests.
macro_rules! interleave_wait {
    () => {
        #[cfg(test)]
        crate::interleave::wait();
    };
}

mod adopt;
pub mod alloc;
pub mod arena;
pub mod bigcache;
mod block_cache;
mod block_purge;
pub mod capacity;
pub mod census;
pub mod class;
pub mod config;
pub mod free;
pub mod global;
pub mod guard;
pub mod heap;
pub mod huge;
#[cfg(test)]
mod interleave;
pub mod learn;
pub mod list;
pub mod locked;
pub mod memory;
pub mod message;
pub mod page;
pub mod profile;
pub mod provider;
pub mod purge;
pub mod remote;
mod sampling;
pub mod segment;
pub mod segment_store;
#[cfg(any(test, feature = "testing"))]
pub mod shadow;
pub mod shared;
pub mod stats;
pub mod strict;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use arena::{Arena, ArenaHost, ArenaUse};
pub use config::Options;
pub use global::Global;
pub use heap::Heap;
pub use locked::{Interrupts, LockedHeap, LockedHeaps, NoInterrupts, PerCpuHeaps};
pub use provider::PageProvider;
pub use census::{Census, ClassStats};
pub use stats::StatsSnapshot;

/// The crate version, e.g. "0.1.0".
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests;
