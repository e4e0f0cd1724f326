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
//! - Every link is encoded with the list key and checked to stay in its
//!   segment when the owner walks the list.

use crate::page::{decode, encode, link_is_plausible, Block, Page};
use crate::segment::{Segment, CACHED_OWNER};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Low bit of `thread_free`: remote frees must go to the heap's delayed list.
pub const DELAYED: usize = 1;

impl Page {
    /// Move all remotely freed blocks to `free`. Returns how many arrived,
    /// or `None` when the remote list is corrupt (a link leaves the segment).
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
        let first = (head & !DELAYED) as *mut Block;
        let mut count = 1u16;
        let mut tail = first;
        loop {
            // SAFETY: every block on the remote list was pushed by a free of a
            // block of this page; the acquire above orders its writes.
            let next = decode(unsafe { (*tail).next }, list_key);
            if next.is_null() {
                break;
            }
            if !link_is_plausible(tail, next) || count >= self.capacity() {
                return None;
            }
            tail = next;
            count += 1;
        }
        // SAFETY: tail is the last remote block; splice the local list behind it.
        unsafe { (*tail).next = encode(self.free.get(), list_key) };
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
}
