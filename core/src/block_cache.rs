//! The mid classes' block cache: per heap, a short LIFO stack of free
//! blocks for each class above `SMALL_MAX` up to `MEDIUM_MAX`, which the
//! owner's frees push and its mallocs pop before any page.
//!
//! ```text
//!  free (fast, own page, mid class) --> stack[class]: [b0 b1 ... bn-1]  <-- malloc (mid)
//!                                         full: the oldest half goes back to its pages
//! ```
//!
//! Why: a mid page holds few blocks, and a class of a program with many
//! live mid blocks spreads over several pages; a block freed into a page
//! that is not the current one waits there until the page is current
//! again, long after its lines left the cache, and the refill path walks
//! the queue to find it. A stack per class hands the block just freed to
//! the next malloc of its class, warm, whatever its page (tcmalloc's
//! per-thread cache, bounded to a few blocks: `Options::block_cache_bytes`,
//! `HAKMEM_BLOCK_CACHE`, 512 KiB of each class and at most 16 blocks).
//!
//! Invariants: a cached block is a free block, checked and marked free
//! (its marker set, so a second free of it is caught as a double free),
//! of a page this heap owns, which still counts it in `used` (so the page
//! is neither freed nor given away while it is cached). The stack is an
//! array in the heap, not a list through the blocks: popping reads
//! nothing from the block, and a write after free into a cached block
//! cannot steer malloc. Owner only; a heap empties its cache before it
//! gives its pages up (abandon, trim).

use crate::class::{class_of, class_size};
use crate::config::{MEDIUM_MAX, SMALL_MAX};
use crate::page::Block;
use core::cell::Cell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// The first class the cache holds.
const FIRST_CLASS: usize = class_of(SMALL_MAX) + 1;
/// Classes the cache holds: every mid class.
const CLASSES: usize = class_of(MEDIUM_MAX) + 1 - FIRST_CLASS;
/// Blocks one class's stack can hold.
pub(crate) const SLOTS: usize = 16;

/// The cache; see the module docs.
pub(crate) struct BlockCache {
    /// Blocks on each stack (atomic only so that a census may read them
    /// from another thread: the owner's relaxed load and store are plain
    /// moves).
    len: [AtomicU8; CLASSES],
    /// Blocks each stack holds at most (`<= SLOTS`); 0: the cache is off.
    limit: [Cell<u8>; CLASSES],
    blocks: [[Cell<*mut Block>; SLOTS]; CLASSES],
}

impl BlockCache {
    /// A cache that keeps up to `class_bytes` of each class (and at most
    /// `SLOTS` blocks): 0 turns it off.
    pub(crate) const fn new(class_bytes: usize) -> Self {
        let mut limit = [const { Cell::new(0) }; CLASSES];
        let mut index = 0;
        while index < CLASSES {
            let blocks = class_bytes / class_size(FIRST_CLASS + index);
            limit[index] = Cell::new(if blocks > SLOTS { SLOTS } else { blocks } as u8);
            index += 1;
        }
        BlockCache { len: [const { AtomicU8::new(0) }; CLASSES], limit, blocks: [const { [const { Cell::new(null_mut()) }; SLOTS] }; CLASSES] }
    }

    /// Take no more blocks (the caller empties the cache): a profiling
    /// heap's mallocs must all reach its slow path.
    pub(crate) fn turn_off(&self) {
        for limit in &self.limit {
            limit.set(0);
        }
    }

    /// The limit of stack `index`.
    pub(crate) fn limit(&self, index: usize) -> usize {
        self.limit[index].get() as usize
    }

    /// The index of the stack of `class`, a mid class.
    #[inline(always)]
    pub(crate) fn index_of(class: usize) -> usize {
        debug_assert!((FIRST_CLASS..FIRST_CLASS + CLASSES).contains(&class));
        class.wrapping_sub(FIRST_CLASS)
    }

    /// The block last pushed for the mid class `class`, if any. Reads and
    /// writes nothing but the stack's length when it is empty.
    #[inline(always)]
    pub(crate) fn pop(&self, class: usize) -> Option<*mut Block> {
        // SAFETY: `class` is a mid class (the caller's contract), so its
        // index is below CLASSES; `len <= SLOTS` (push).
        unsafe {
            let index = Self::index_of(class);
            let len = self.len.get_unchecked(index);
            let top = len.load(Relaxed).checked_sub(1)?;
            len.store(top, Relaxed);
            Some(self.blocks.get_unchecked(index).get_unchecked(top as usize).get())
        }
    }

    /// Push `block` on stack `index` (from [`BlockCache::index_of`]);
    /// false (nothing done) when it is at its limit.
    #[inline(always)]
    pub(crate) fn push(&self, index: usize, block: *mut Block) -> bool {
        debug_assert!(index < CLASSES);
        // SAFETY: `index < CLASSES` (index_of), and `len < limit <= SLOTS`
        // once the test passed.
        unsafe {
            let len = self.len.get_unchecked(index);
            let top = len.load(Relaxed);
            if top >= self.limit.get_unchecked(index).get() {
                return false;
            }
            self.blocks.get_unchecked(index).get_unchecked(top as usize).set(block);
            len.store(top + 1, Relaxed);
        }
        true
    }

    /// Take the oldest `count` blocks of stack `index` out into `out`
    /// (the rest move down); returns how many.
    pub(crate) fn take_oldest(&self, index: usize, count: usize, out: &mut [*mut Block; SLOTS]) -> usize {
        let len = self.len[index].load(Relaxed) as usize;
        let count = count.min(len);
        let stack = &self.blocks[index];
        for (slot, taken) in stack[..count].iter().zip(out.iter_mut()) {
            *taken = slot.get();
        }
        for i in count..len {
            stack[i - count].set(stack[i].get());
        }
        self.len[index].store((len - count) as u8, Relaxed);
        count
    }

    /// Add the blocks cached per class to `counts` (indexed by class), as
    /// seen from any thread (a census: the owner may be changing them).
    pub(crate) fn count_seen(&self, counts: &mut [usize; crate::class::CLASS_COUNT]) {
        for (index, len) in self.len.iter().enumerate() {
            counts[FIRST_CLASS + index] += len.load(Relaxed) as usize;
        }
    }

    /// Every cached block (tests and invariant checks).
    #[cfg(any(test, feature = "check-invariants"))]
    pub(crate) fn blocks(&self) -> impl Iterator<Item = *mut Block> + '_ {
        self.blocks.iter().zip(&self.len).flat_map(|(stack, len)| stack[..len.load(Relaxed) as usize].iter().map(Cell::get))
    }

    /// Number of stacks.
    pub(crate) const CLASSES: usize = CLASSES;
}
