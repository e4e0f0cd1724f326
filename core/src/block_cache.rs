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
//! **Learned limits** (with learning on): a stack at its limit sends half
//! its blocks back to their pages, which the next mallocs of the class
//! then take back one by one from cold pages. A class whose stack was
//! drained (mallocs took even the oldest block the last overflow left on
//! it) and then filled again within `GROW_GAP` of the heap's mallocs (the
//! ones the heap counts itself, `Heap::call_counts`: the block cache's and
//! the huge blocks', not pops of pages, which the pages count)
//! cycles through more blocks than it holds: its limit doubles, up to
//! twice the configured bytes and `SLOTS` blocks (tcmalloc grows a class's
//! list when it runs empty, the same idea). A stack that only fills (frees
//! in a burst) does not grow. One whose stack fills only after
//! `SHRINK_GAP` mallocs halves back toward the configured limit. Decided
//! on the overflow, a slow path, before the blocks are sent back, from
//! what the overflow sees (the heap's malloc count, the stack's bottom
//! block): the fast paths do not change.
//!
//! Invariants: a cached block is a free block, checked and marked free
//! (its marker set, so a second free of it is caught as a double free),
//! of a page this heap owns, which still counts it in `used` (so the page
//! is neither freed nor given away while it is cached). The stack is an
//! array, not a list through the blocks: popping reads nothing from the
//! block, and a write after free into a cached block cannot steer malloc.
//! Owner only; a heap empties its cache before it gives its pages up
//! (abandon, trim). The stacks live next to the heap, not in it
//! ([`BlockCache::attach`]): a slot is written by its push and read only
//! below its stack's length, so a new heap's stacks need no initialising,
//! and their 12 KiB (default geometry) stay untouched until the heap
//! caches mid blocks (in the heap itself they were written when it was
//! made, built on the thread's stack first, and copied into the inert
//! heap's data).

use crate::class::{class_of, class_size};
use crate::config::{MEDIUM_MAX, SMALL_MAX};
use crate::page::Block;
use core::cell::Cell;
use core::mem::MaybeUninit;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// The first class the cache holds.
const FIRST_CLASS: usize = class_of(SMALL_MAX) + 1;
/// Classes the cache holds: every mid class.
const CLASSES: usize = class_of(MEDIUM_MAX) + 1 - FIRST_CLASS;
/// Blocks one class's stack can hold (a learned limit's most). The small
/// geometry keeps the configured most: its heaps come out of arenas of a
/// few MiB (four per-CPU heaps share one 32 KiB chunk), so its limits learn
/// only below that. So do builds under Miri, whose time per test grows
/// with the memory every heap it makes takes (the stacks are most of it):
/// CI's budget.
#[cfg(not(any(feature = "small-segments", miri)))]
pub(crate) const SLOTS: usize = 64;
#[cfg(any(feature = "small-segments", miri))]
pub(crate) const SLOTS: usize = CONFIGURED_SLOTS;
/// Blocks of a class the configured limit keeps at most.
const CONFIGURED_SLOTS: usize = 16;
/// A stack that fills again within this many of its heap's mallocs grows.
const GROW_GAP: u32 = 4096;
/// A stack that fills again only after this many of its heap's mallocs
/// shrinks (between the two, the limit stays: no oscillation).
const SHRINK_GAP: u32 = 1 << 20;

/// The storage of one heap's stacks: `SLOTS` slots per class.
pub(crate) type Stacks = [[MaybeUninit<*mut Block>; SLOTS]; CLASSES];

/// The cache; see the module docs. The fast paths read the stacks'
/// address, a length and (free) a limit: one cache line (`repr(C)`, in
/// this order, aligned to a line).
#[repr(C, align(64))]
pub(crate) struct BlockCache {
    /// The stacks (null until [`BlockCache::attach`]): slot `i` of stack
    /// `index` holds a block iff `i < len[index]`.
    stacks: Cell<*mut Stacks>,
    /// Blocks on each stack (atomic only so that a census may read them
    /// from another thread: the owner's relaxed load and store are plain
    /// moves).
    len: [AtomicU8; CLASSES],
    /// Blocks each stack holds at most (`<= SLOTS`); 0: the cache is off
    /// (every limit is 0 until the stacks are attached).
    limit: [Cell<u8>; CLASSES],
    /// The configured limit of each stack (`<= CONFIGURED_SLOTS`): the
    /// least a learned one may be.
    floor: [u8; CLASSES],
    /// The most each stack's limit may grow to (the floor when not learning).
    ceiling: [Cell<u8>; CLASSES],
    /// The heap's malloc count at each stack's last overflow (its low 32
    /// bits: the gaps that matter are far shorter).
    last_overflow: [Cell<u32>; CLASSES],
    /// The bottom block each stack kept at its last overflow (null before
    /// the first, when it kept none, or after a flush): another one there
    /// now means the stack was drained since.
    bottom: [Cell<*mut Block>; CLASSES],
}

// The stacks' address, the lengths and the limits share the first line.
static_assertions::const_assert!(8 + 2 * CLASSES <= 64);

impl BlockCache {
    /// A cache that keeps up to `class_bytes` of each class (and at most
    /// `CONFIGURED_SLOTS` blocks) once its stacks are attached: 0 turns it
    /// off. With `learn`, each limit may grow to twice that (and `SLOTS`
    /// blocks), see the module docs.
    pub(crate) const fn new(class_bytes: usize, learn: bool) -> Self {
        const fn blocks(bytes: usize, index: usize, most: usize) -> u8 {
            let blocks = bytes / class_size(FIRST_CLASS + index);
            (if blocks > most { most } else { blocks }) as u8
        }
        let mut floor = [0; CLASSES];
        let mut ceiling = [const { Cell::new(0) }; CLASSES];
        let mut index = 0;
        while index < CLASSES {
            floor[index] = blocks(class_bytes, index, CONFIGURED_SLOTS);
            // A class the configuration does not cache is not learned either.
            let learned = learn && floor[index] > 0;
            ceiling[index] = Cell::new(if learned { blocks(class_bytes.saturating_mul(2), index, SLOTS) } else { floor[index] });
            index += 1;
        }
        BlockCache {
            len: [const { AtomicU8::new(0) }; CLASSES],
            limit: [const { Cell::new(0) }; CLASSES],
            floor,
            ceiling,
            last_overflow: [const { Cell::new(0) }; CLASSES],
            bottom: [const { Cell::new(null_mut()) }; CLASSES],
            stacks: Cell::new(null_mut()),
        }
    }

    /// Give the cache its stacks, which turns it on (to the configured
    /// limits).
    ///
    /// # Safety
    /// `stacks` is valid for reads and writes, aligned, used by nothing
    /// else, and outlives the cache; called once, before any push.
    pub(crate) unsafe fn attach(&self, stacks: *mut Stacks) {
        self.stacks.set(stacks);
        for (limit, &floor) in self.limit.iter().zip(&self.floor) {
            limit.set(floor);
        }
    }

    /// Slot `slot` of stack `index`.
    ///
    /// # Safety
    /// The stacks are attached, `index < CLASSES`, `slot < SLOTS`.
    #[inline(always)]
    unsafe fn slot(&self, index: usize, slot: usize) -> *mut MaybeUninit<*mut Block> {
        // SAFETY: per the contract, within the attached array.
        unsafe { (self.stacks.get() as *mut MaybeUninit<*mut Block>).add(index * SLOTS + slot) }
    }

    /// The blocks on stack `index`, oldest first (read while the owner
    /// changes nothing).
    fn stack(&self, index: usize) -> &[*mut Block] {
        let len = self.len[index].load(Relaxed) as usize;
        if len == 0 {
            return &[];
        }
        // SAFETY: a stack with blocks has its storage attached; its first
        // `len` slots were written by pushes (or moved down from written
        // ones), and `MaybeUninit<T>` has `T`'s layout.
        unsafe { core::slice::from_raw_parts(self.slot(index, 0) as *const *mut Block, len) }
    }

    /// Take no more blocks (the caller empties the cache): a profiling
    /// heap's mallocs must all reach its slow path.
    pub(crate) fn turn_off(&self) {
        for limit in &self.limit {
            limit.set(0);
        }
    }

    /// Stack `index` is at its limit, at the heap's `mallocs`-th malloc:
    /// learn from whether it was drained and how soon it filled again
    /// (module docs). Returns how many of its oldest blocks to send back
    /// to their pages (0 when the limit grew, so the stack takes the block
    /// as it is). Never called on a stack whose limit is 0 (the cache is
    /// off: the heap returns the block to its page first).
    pub(crate) fn overflowed(&self, index: usize, mallocs: u64) -> usize {
        let gap = (mallocs as u32).wrapping_sub(self.last_overflow[index].replace(mallocs as u32));
        let stack = self.stack(index);
        let bottom = self.bottom[index].get();
        let drained = !bottom.is_null() && stack[0] != bottom;
        let (limit, ceiling, floor) = (self.limit[index].get(), self.ceiling[index].get(), self.floor[index]);
        let len = self.len[index].load(Relaxed) as usize;
        if drained && gap < GROW_GAP && limit < ceiling {
            self.limit[index].set(limit.saturating_mul(2).min(ceiling));
            self.bottom[index].set(stack[0]);
            return 0;
        }
        let limit = if gap > SHRINK_GAP && limit > floor { (limit / 2).max(floor) } else { limit };
        self.limit[index].set(limit);
        // Keep half the (new) limit: the newest blocks, whose oldest is the
        // bottom from now on.
        let keep = (limit / 2) as usize;
        self.bottom[index].set(if keep > 0 { stack[len - keep] } else { null_mut() });
        len - keep
    }

    /// Whether the stack of the mid class `class` holds a block.
    pub(crate) fn cached(&self, class: usize) -> bool {
        self.len[Self::index_of(class)].load(Relaxed) > 0
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
        // index is below CLASSES; `len <= SLOTS` (push), and a stack with
        // blocks has its storage attached, its slots below `len` written.
        unsafe {
            let index = Self::index_of(class);
            let len = self.len.get_unchecked(index);
            let top = len.load(Relaxed).checked_sub(1)?;
            len.store(top, Relaxed);
            Some((*self.slot(index, top as usize)).assume_init())
        }
    }

    /// Push `block` on stack `index` (from [`BlockCache::index_of`]);
    /// false (nothing done) when it is at its limit.
    #[inline(always)]
    pub(crate) fn push(&self, index: usize, block: *mut Block) -> bool {
        debug_assert!(index < CLASSES);
        // SAFETY: `index < CLASSES` (index_of), and `len < limit <= SLOTS`
        // once the test passed; a limit above 0 means attached stacks.
        unsafe {
            let len = self.len.get_unchecked(index);
            let top = len.load(Relaxed);
            if top >= self.limit.get_unchecked(index).get() {
                return false;
            }
            self.slot(index, top as usize).write(MaybeUninit::new(block));
            len.store(top + 1, Relaxed);
        }
        true
    }

    /// Take the oldest `count` blocks of stack `index` out into `out`
    /// (the rest move down); returns how many.
    pub(crate) fn take_oldest(&self, index: usize, count: usize, out: &mut [*mut Block; SLOTS]) -> usize {
        let stack = self.stack(index);
        let len = stack.len();
        let count = count.min(len);
        out[..count].copy_from_slice(&stack[..count]);
        if count > 0 && count < len {
            // SAFETY: slots `count..len` of an attached stack were written;
            // they move down within it (`stack` is not used after this).
            unsafe { core::ptr::copy(self.slot(index, count), self.slot(index, 0), len - count) };
        }
        self.len[index].store((len - count) as u8, Relaxed);
        if count == len {
            // Emptied (a flush, not mallocs): the next overflow compares nothing.
            self.bottom[index].set(null_mut());
        }
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
        (0..CLASSES).flat_map(|index| self.stack(index).iter().copied())
    }

    /// Number of stacks.
    pub(crate) const CLASSES: usize = CLASSES;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache as a heap has it: with stacks attached (leaked: tests only).
    fn attached(class_bytes: usize, learn: bool) -> BlockCache {
        let cache = BlockCache::new(class_bytes, learn);
        let stacks: &'static mut Stacks = std::boxed::Box::leak(std::boxed::Box::new([[MaybeUninit::uninit(); SLOTS]; CLASSES]));
        // SAFETY: fresh, leaked storage, used by this cache alone.
        unsafe { cache.attach(stacks) };
        cache
    }

    /// A trace of overflows of one stack, `gap` heap mallocs apart, the
    /// stack drained between two when `cycled` (else only pushed on): the
    /// limit after each. The blocks are stand-ins, never dereferenced.
    fn limits(cache: &BlockCache, index: usize, gaps: &[u32], cycled: bool) -> Vec<u8> {
        let mut mallocs = cache.last_overflow[index].get() as u64;
        let mut next_block = 0x1000usize;
        let mut fresh = || {
            next_block += 0x10;
            next_block as *mut Block
        };
        gaps.iter()
            .map(|&gap| {
                mallocs += gap as u64;
                if cycled {
                    while cache.pop(FIRST_CLASS + index).is_some() {}
                }
                // Fill the stack to its limit; it overflows on the next push.
                let limit = cache.limit[index].get() as usize;
                while cache.push(index, fresh()) {}
                assert_eq!(cache.len[index].load(Relaxed) as usize, limit);
                let release = cache.overflowed(index, mallocs);
                let mut out = [null_mut(); SLOTS];
                assert_eq!(cache.take_oldest(index, release, &mut out), release);
                let after = cache.limit[index].get();
                assert!(release <= limit, "sends back {release} of {limit}");
                assert!(release == 0 || limit - release == after as usize / 2, "keeps half the limit");
                after
            })
            .collect()
    }

    /// Quick overflows of a stack that runs empty in between double the
    /// limit up to its ceiling (twice the configured bytes, at most SLOTS
    /// blocks) and no further; quick ones without (frees in a burst) do
    /// not; overflows in the dead band leave it (a stationary trace does
    /// not oscillate); slow ones halve it back to the configured limit and
    /// no further.
    #[test]
    fn a_stack_limit_grows_with_quick_overflows_and_shrinks_with_slow_ones_within_its_bounds() {
        let cache = attached(512 << 10, true);
        // The smallest mid class: 16 configured, SLOTS at most.
        let most = SLOTS as u8;
        assert_eq!((cache.floor[0], cache.ceiling[0].get()), (CONFIGURED_SLOTS as u8, most));
        assert_eq!(limits(&cache, 0, &[1; 4], false), [16; 4], "a burst of frees does not grow it");
        assert_eq!(limits(&cache, 0, &[GROW_GAP - 1; 4], true), [32.min(most), 64.min(most), most, most]);
        assert_eq!(limits(&cache, 0, &[GROW_GAP * 16; 8], true), [most; 8], "the dead band keeps the limit");
        assert_eq!(limits(&cache, 0, &[SHRINK_GAP + 1; 4], true)[1..], [16, 16, 16]);
        // The bytes bound it: 8 blocks of the largest class configured,
        // twice that at most.
        let last = CLASSES - 1;
        let bytes_bound = attached(8 * class_size(FIRST_CLASS + last), true);
        assert_eq!(bytes_bound.floor[last], 8);
        assert_eq!(limits(&bytes_bound, last, &[1; 4], true), [8, 16, 16, 16]);
        // The whole trace again: no oscillation on a stationary trace.
        assert_eq!(limits(&cache, 0, &[GROW_GAP - 1; 6], true), [32.min(most), 64.min(most), most, most, most, most]);
        // A fresh stack learns from its second overflow on (the first one
        // has no bottom to compare).
        let fresh = attached(512 << 10, true);
        assert_eq!(limits(&fresh, 0, &[1; 3], true), [16, 32.min(most), 64.min(most)]);
    }

    /// A flush (trim, thread exit) empties a stack without any malloc: the
    /// next overflow does not take it for a drain.
    #[test]
    fn a_flushed_stack_does_not_count_as_drained() {
        let cache = attached(512 << 10, true);
        assert_eq!(limits(&cache, 0, &[1], false), [16]);
        let mut out = [null_mut(); SLOTS];
        let len = cache.len[0].load(Relaxed) as usize;
        assert_eq!(cache.take_oldest(0, SLOTS, &mut out), len);
        assert_eq!(limits(&cache, 0, &[1], false), [16], "a flush is no drain");
        assert_eq!(limits(&cache, 0, &[1], true), [32.min(SLOTS as u8)], "mallocs that drain it are");
    }

    /// Without learning (or for a class the configuration does not cache)
    /// the configured limit stays whatever the trace.
    #[test]
    fn a_stack_limit_stays_configured_without_learning() {
        let cache = attached(512 << 10, false);
        assert_eq!(limits(&cache, 0, &[1, 1, 1, SHRINK_GAP + 1, 1], true), [16; 5]);
        let small = attached(class_size(FIRST_CLASS), true);
        assert_eq!(limits(&small, CLASSES - 1, &[1, 1], true), [0, 0], "a class the configuration does not cache");
    }
}
