//! Cross-thread frees: the whole protocol by which a thread frees a block
//! of a page another heap owns, and the owner gets it back.
//!
//! ```text
//!  freeing thread                            owning heap
//!  PendingFrees: blocks of one page, gathered
//!  push_foreign(head..tail)
//!   |- page not full:  page.thread_free <- blocks     collect_remote (refill, trim)
//!   '- page full (DELAYED bit set): clear the bit, and
//!      owner heap's DelayedFrees <- blocks ---------> drain (refill, thread exit)
//!      (once per full page: later frees go to         -> page leaves the full queue
//!       thread_free again)
//! ```
//!
//! Invariants:
//! - The `DELAYED` bit of `thread_free` is set only while the page is in its
//!   heap's full queue, and then `thread_free`'s list is empty. The first
//!   remote free that finds it clears it and goes to the heap's delayed
//!   list, so the owner learns the page has room; the frees after it land
//!   on `thread_free`, collected once the page is back in its class queue.
//!   The owner sets the bit only on an empty list (`try_set_delayed`).
//! - A segment's `owner`, when it is a heap, is the address of that heap's
//!   [`DelayedFrees`] (the heap's first field, so the same address): this
//!   module never needs the heap's type. Heaps are never unmapped, so a
//!   stale owner's list stays valid; whoever reuses that heap drains it.
//! - Every link is encoded with the list key. The owner checks, as it
//!   collects a page's list, that each link is a carved block of the page
//!   and none comes twice, and threads them in address order.

use crate::config::{MEDIUM_MAX, MEDIUM_PAGE_SHIFT, MIN_BLOCK, SEGMENT_SIZE, SMALL_MAX, SMALL_PAGE_SHIFT};
use crate::page::{decode, encode, Block, Page};
use crate::segment::{Segment, CACHED_OWNER};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Low bit of `thread_free`: remote frees must go to the heap's delayed list.
pub const DELAYED: usize = 1;

/// Most blocks a page holds (small pages of the smallest blocks): the
/// bitmap `collect_remote` sorts arrivals with has a bit for each.
const MAX_BLOCKS: usize = (1 << SMALL_PAGE_SHIFT) / MIN_BLOCK;
static_assertions::const_assert!(MAX_BLOCKS.is_multiple_of(64));
static_assertions::const_assert!((1 << MEDIUM_PAGE_SHIFT) / (SMALL_MAX + 1) <= MAX_BLOCKS);
static_assertions::const_assert!(SEGMENT_SIZE / (MEDIUM_MAX + 1) <= MAX_BLOCKS);

impl Page {
    /// Move all remotely freed blocks to `free`, in address order, ahead
    /// of the blocks already there. Returns how many arrived, or `None`
    /// when the remote list is corrupt: a link that is not a carved block
    /// of this page, or a block listed twice (a cycle).
    ///
    /// Why in address order: remote frees arrive in the order other
    /// threads freed them, interleaved between threads. Threaded as they
    /// came, a page's list would shuffle a little more on every round
    /// trip, and the blocks a thread then allocates in a row would lie
    /// scattered over the page: a miss each, and neighbours in one cache
    /// line handed to different threads. Sorted, consecutive allocations
    /// are neighbours, as a fresh page's are (jemalloc's slabs, likewise,
    /// hand out their lowest free region first).
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub fn collect_remote(&self, list_key: usize) -> Option<u16> {
        interleave_point!();
        let mut head = self.thread_free.load(Ordering::Relaxed);
        loop {
            if head & !DELAYED == 0 {
                return Some(0);
            }
            match self.thread_free.compare_exchange_weak(
                head,
                head & DELAYED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        let mut arrived = [0u64; MAX_BLOCKS / 64];
        let (mut count, mut low_word, mut high_word) = (0u16, usize::MAX, 0);
        let area = self.capacity() as usize * self.block_size as usize;
        let mut block = (head & !DELAYED) as *mut Block;
        while !block.is_null() {
            let offset = (block as usize).wrapping_sub(self.start as usize);
            let index = self.index_of(offset);
            if offset >= area || index * self.block_size as usize != offset {
                return None;
            }
            let (word, bit) = (index / 64, 1u64 << (index % 64));
            if arrived[word] & bit != 0 {
                return None;
            }
            arrived[word] |= bit;
            (low_word, high_word) = (low_word.min(word), high_word.max(word));
            count += 1;
            // SAFETY: a carved block of this page, pushed by a free of it;
            // the acquire above orders the freeing thread's writes.
            block = decode(unsafe { (*block).next }, list_key);
        }
        // Thread them from the highest down, each in front of the last.
        let mut first = self.free.get();
        for word in (low_word..=high_word).rev() {
            let mut bits = arrived[word];
            while bits != 0 {
                let top = 63 - bits.leading_zeros() as usize;
                bits ^= 1 << top;
                let block = (self.start as usize + (word * 64 + top) * self.block_size as usize) as *mut Block;
                // SAFETY: a block that arrived above: free, the page's again.
                unsafe { (*block).next = encode(first, list_key) };
                first = block;
            }
        }
        self.free.set(first);
        self.sub_used(count);
        Some(count)
    }

    /// Push a list of blocks (`head` ... `tail`, linked with encoded
    /// links) freed by a thread that does not own the page. Returns false,
    /// without pushing, when the page is full (`DELAYED`): the caller then
    /// tells the owner through its delayed list, and the bit is cleared so
    /// that the frees after it land on the page again.
    ///
    /// # Safety
    /// The blocks are blocks of this page that the caller is freeing (it
    /// owns their memory until the push succeeds); `tail` ends the list.
    /// On a raw pointer (see [`Page::block_of`]): only `thread_free` is read.
    pub unsafe fn push_remote(this: *const Page, head: *mut Block, tail: *mut Block, list_key: usize) -> bool {
        interleave_point!();
        // SAFETY: the caller's page descriptor is mapped; the field alone is borrowed.
        let thread_free = unsafe { &(*this).thread_free };
        let mut old = thread_free.load(Ordering::Relaxed);
        loop {
            if old & DELAYED != 0 {
                // The page is full: this free clears the bit and tells the
                // owner through its delayed list; later frees land here.
                match thread_free.compare_exchange_weak(old, old & !DELAYED, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return false,
                    Err(now) => {
                        old = now;
                        continue;
                    }
                }
            }
            // SAFETY: the blocks are being freed: the caller owns them now.
            unsafe { (*tail).next = encode(old as *mut Block, list_key) };
            match thread_free.compare_exchange_weak(old, head as usize, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => old = now,
            }
        }
    }

    /// Ask remote frees to go to the heap's delayed list. Fails (returns
    /// false) when remote blocks are waiting: collect them first.
    pub fn try_set_delayed(&self) -> bool {
        interleave_point!();
        self.thread_free
            .compare_exchange(0, DELAYED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Let remote frees land on the page again (an atomic operation only
    /// when the bit is still set: the remote free that told the owner
    /// cleared it already).
    pub fn clear_delayed(&self) {
        interleave_point!();
        if self.thread_free.load(Ordering::Relaxed) & DELAYED != 0 {
            self.thread_free.fetch_and(!DELAYED, Ordering::AcqRel);
        }
    }
}

/// A heap's list of blocks other threads freed into its full pages: an
/// encoded lock-free stack. Its own cache line, apart from the heap's hot
/// fields, since other threads write it.
#[repr(C, align(64))]
pub struct DelayedFrees {
    head: AtomicUsize,
}

impl DelayedFrees {
    pub const fn new() -> Self {
        DelayedFrees { head: AtomicUsize::new(0) }
    }

    /// Push a list of blocks being freed (`head` ... `tail`, encoded
    /// links; lock-free, any thread).
    ///
    /// # Safety
    /// The caller is freeing the blocks (owns their memory until the push).
    pub unsafe fn push(&self, head: *mut Block, tail: *mut Block, list_key: usize) {
        interleave_point!();
        let mut old = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: per the contract.
            unsafe { (*tail).next = old };
            match self.head.compare_exchange_weak(old, encode(head, list_key), Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => old = now,
            }
        }
    }

    /// Take every block pushed so far (owner only). The blocks come as an
    /// iterator that borrows nothing, so the owner may change its heap,
    /// this list included, while it walks them.
    pub fn take(&self, list_key: usize) -> TakenFrees {
        interleave_point!();
        let stored = if self.head.load(Ordering::Relaxed) == 0 { 0 } else { self.head.swap(0, Ordering::Acquire) };
        TakenFrees { stored, list_key }
    }
}

/// The blocks one [`DelayedFrees::take`] took, in push order reversed.
pub struct TakenFrees {
    stored: usize,
    list_key: usize,
}

impl Iterator for TakenFrees {
    type Item = *mut Block;

    fn next(&mut self) -> Option<*mut Block> {
        if self.stored == 0 {
            return None;
        }
        let block = decode(self.stored, self.list_key);
        // SAFETY: pushed blocks were handed over by their freeing threads
        // (Release on push, Acquire in take); the link is read before the
        // caller reuses the block.
        self.stored = unsafe { (*block).next };
        Some(block)
    }
}

impl Default for DelayedFrees {
    fn default() -> Self {
        Self::new()
    }
}

/// Hand blocks marked free (`head` ... `tail`, all of `page`) to the
/// page's owner: onto the page's remote list, or, when the page is full,
/// onto the owning heap's delayed list.
///
/// # Safety
/// The blocks are blocks of `page` in `segment`, counted in use, that the
/// caller is freeing (it owns their memory until the push).
pub unsafe fn push_foreign(segment: *mut Segment, page: *mut Page, head: *mut Block, tail: *mut Block, list_key: usize) {
    loop {
        // SAFETY: the page is live while it has a block in use.
        if unsafe { Page::push_remote(page, head, tail, list_key) } {
            return;
        }
        interleave_point!();
        // SAFETY: the segment is live (the blocks are counted in a page).
        let owner = unsafe { (*segment).owner.load(Ordering::Acquire) };
        if owner > CACHED_OWNER {
            // SAFETY: a heap owner is the address of its DelayedFrees, and
            // heaps are never unmapped.
            unsafe { (*(owner as *const DelayedFrees)).push(head, tail, list_key) };
            crate::debug_count!(handovers_delayed);
            return;
        }
        // The owner is abandoning the segment right now; retry.
        interleave_wait!();
        core::hint::spin_loop();
    }
}

/// Most blocks a thread gathers before handing them over.
const PENDING_MAX: usize = 64;

/// Remote frees a thread gathers per page before handing them over with
/// one atomic push (its heap's): consecutive frees of small blocks of one
/// foreign page, as when a thread frees a batch another thread allocated.
/// Owner only; at most `PENDING_MAX` small blocks (64 KiB) wait, and the
/// heap hands them over on its slow paths (refill, thread exit, trim) too.
///
/// Invariant: `count == 0`, or `head` ... `tail` are `count` blocks of
/// `page` (in `segment`) marked free, still counted in the page's `used`.
pub struct PendingFrees {
    segment: *mut Segment,
    page: *mut Page,
    head: *mut Block,
    tail: *mut Block,
    count: usize,
}

impl PendingFrees {
    pub const fn new() -> Self {
        PendingFrees { segment: null_mut(), page: null_mut(), head: null_mut(), tail: null_mut(), count: 0 }
    }

    /// Gather a block (marked free) of a foreign page; hands the gathered
    /// blocks over first when they are of another page, or too many.
    ///
    /// # Safety
    /// As for [`push_foreign`], for `block`.
    pub unsafe fn add(&mut self, segment: *mut Segment, page: *mut Page, block: *mut Block, list_key: usize) {
        if self.count != 0 && (self.page != page || self.count == PENDING_MAX) {
            // SAFETY: per the invariant.
            unsafe { self.hand_over(list_key) };
        }
        if self.count == 0 {
            (self.segment, self.page, self.tail) = (segment, page, block);
        } else {
            // SAFETY: the caller is freeing `block`: its memory is ours.
            unsafe { (*block).next = encode(self.head, list_key) };
        }
        self.head = block;
        self.count += 1;
    }

    /// Hand the gathered blocks over to their page's owner.
    ///
    /// # Safety
    /// The blocks' memory is still the gathering thread's (the invariant).
    pub unsafe fn hand_over(&mut self, list_key: usize) {
        if self.count != 0 {
            // SAFETY: per the invariant.
            unsafe { push_foreign(self.segment, self.page, self.head, self.tail, list_key) };
            self.count = 0;
        }
    }
}

impl Default for PendingFrees {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)] // test code exercising the contracts
mod tests {
    use super::*;

    #[test]
    fn extend_collect_and_delayed_flag() {
        let mut area = crate::page::TestArea::new();
        let key = 0x5a5a_0000;
        let page = area.page();
        assert_eq!(page.reserved, 64);
        assert!(page.extend(key));
        assert_eq!(page.capacity(), 64);
        assert!(!page.extend(key));
        assert_eq!(page.count_free(key), 64);
        // Take two blocks, give one back remotely.
        let a = unsafe { page.pop(key, |b| b) };
        let b = unsafe { page.pop(key, |b| b) };
        assert_eq!(page.used(), 2);
        assert!(unsafe { Page::push_remote(&page, b, b, key) });
        assert!(!page.try_set_delayed(), "delayed must not hide waiting blocks");
        assert_eq!(page.collect_remote(key), Some(1));
        assert_eq!(page.used(), 1);
        assert_eq!(page.count_free(key), 63);
        assert!(page.try_set_delayed());
        assert!(!unsafe { Page::push_remote(&page, a, a, key) }, "a delayed page refuses remote pushes");
        assert_eq!(page.thread_free.load(Ordering::Relaxed) & DELAYED, 0, "the first free of a full page clears DELAYED");
        page.clear_delayed();
        assert!(unsafe { Page::push_remote(&page, a, a, key) });
        assert_eq!(page.collect_remote(key), Some(1));
        assert_eq!(page.used(), 0);
    }

    #[test]
    fn collected_blocks_come_back_in_address_order_ahead_of_the_local_list() {
        let mut area = crate::page::TestArea::new();
        let key = 0x5a5a_0000;
        let page = area.page();
        assert!(page.extend(key));
        let blocks: std::vec::Vec<*mut Block> = (0..10).map(|_| unsafe { page.pop(key, |b| b) }).collect();
        assert!(blocks.windows(2).all(|w| w[0] < w[1]), "a fresh page hands out its blocks in address order");
        // Freed by other threads in a shuffled order: one by one, and a
        // list of two linked in descending order.
        for &i in &[7, 3, 9] {
            assert!(unsafe { Page::push_remote(&page, blocks[i], blocks[i], key) });
        }
        let (one, five) = (blocks[1], blocks[5]);
        unsafe { (*five).next = encode(one, key) };
        assert!(unsafe { Page::push_remote(&page, blocks[5], blocks[1], key) });
        let local_next = page.free.get();
        assert_eq!(page.collect_remote(key), Some(5));
        assert_eq!(page.used(), 5);
        let popped: std::vec::Vec<*mut Block> = (0..6).map(|_| unsafe { page.pop(key, |b| b) }).collect();
        assert_eq!(popped, [blocks[1], blocks[3], blocks[5], blocks[7], blocks[9], local_next]);
    }

    #[test]
    fn a_remote_list_with_a_block_twice_or_a_link_off_a_block_start_is_refused() {
        let mut area = crate::page::TestArea::new();
        let key = 0x5a5a_0000;
        let page = area.page();
        assert!(page.extend(key));
        let a = unsafe { page.pop(key, |b| b) };
        let b = unsafe { page.pop(key, |b| b) };
        // A block pushed twice: its link points at itself.
        assert!(unsafe { Page::push_remote(&page, a, a, key) });
        assert!(unsafe { Page::push_remote(&page, a, a, key) });
        assert_eq!(page.collect_remote(key), None, "a cycle must be refused");
        // A link into the middle of a block.
        unsafe { (*b).next = encode((b as *mut u8).wrapping_add(16) as *mut Block, key) };
        page.thread_free.store(b as usize, Ordering::Relaxed);
        assert_eq!(page.collect_remote(key), None, "an interior link must be refused");
        // A link past the carved blocks.
        let past = (page.start as usize + page.capacity() as usize * page.block_size as usize) as *mut Block;
        unsafe { (*b).next = encode(past, key) };
        page.thread_free.store(b as usize, Ordering::Relaxed);
        assert_eq!(page.collect_remote(key), None, "a link past the carved area must be refused");
    }
}
