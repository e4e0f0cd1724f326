//! hakmem-core: the allocator, with no operating system underneath.
//!
//! ```text
//!   ffi (C ABI)  ->  platform-linux (rustix pages, TLS heaps, env)  ->  core (this crate)
//!                                                   kernel / tests  ->  core
//!
//!   core:
//!   Global<P: PageProvider> ---- provider: map / unmap / purge
//!     |- heap pool --------> Heap (one per thread, or one behind a lock: LockedHeap)
//!     |                        |- direct[class] -> Page (in a 2 MiB Segment) -> blocks
//!     |                        '- delayed frees from other threads
//!     |- segment cache, abandoned segments
//!     '- huge blocks: BigCache -> release batch -> unmap
//! ```
//!
//! Tiers (see [`class`]): tiny blocks up to 1 KiB in 64 KiB pages, mid up to
//! 64 KiB in 512 KiB pages, large up to 1 MiB in whole-segment pages, huge
//! above that in mappings of their own.
//!
//! Global invariants:
//! - Every block lies inside a 2 MiB-aligned segment header's first 2 MiB:
//!   `(ptr - 1) & !SEGMENT_MASK` is its metadata ([`segment::Segment::of_ptr`] is
//!   the only code that maps pointers to metadata).
//! - A segment is owned by at most one heap; only that heap's thread touches
//!   the non-atomic fields of its pages. Other threads only push onto a
//!   page's `thread_free` or a heap's `delayed` list (lock-free).
//! - Nothing here allocates through another allocator, panics on a valid
//!   path, or touches `errno`; errors abort through `PageProvider::fatal`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod class;
pub mod config;
pub mod global;
pub mod heap;
mod huge;
pub mod list;
pub mod locked;
pub mod message;
pub mod page;
pub mod provider;
pub mod segment;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use global::{Global, Options};
pub use heap::Heap;
pub use locked::LockedHeap;
pub use provider::PageProvider;
pub use stats::StatsSnapshot;

/// The crate version, e.g. "0.1.0".
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests;
