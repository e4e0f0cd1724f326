//! A heap's segments changing hands: abandoned when its thread exits,
//! adopted by a heap that needs pages; and trim, which gives back what a
//! heap can without giving up its segments.
//!
//! ```text
//!  thread exit: Heap::abandon   empty pages -> their segments; no purging
//!                                 empty segments -> SegmentStore::free (cache)
//!                                 segments with live blocks -> SegmentStore::abandon
//!  refill:      Heap::adopt_abandoned  <- SegmentStore::take_abandoned
//!                                 its pages join our queues (empty ones are freed)
//! ```
//!
//! Invariant: a heap lets go of its segments only after draining its
//! delayed list with every page's `DELAYED` bit cleared, so remote frees
//! that race with the exit land on the pages themselves, where the adopter
//! (or trim) collects them. A heap reused from the pool drains its list
//! again first (`Global::heap_acquire`).

use crate::class::{CLASS_COUNT, PAGED_KINDS};
use crate::heap::{empty_page, Heap};
use crate::page::{Page, PAGE_FULL};
use crate::provider::PageProvider;
use crate::segment::{Segment, ABANDONED_OWNER};
use core::sync::atomic::Ordering;

impl<P: PageProvider + 'static> Heap<P> {
    /// Give up every page: empty ones go back to their segments, segments
    /// still holding live blocks go to the abandoned list, where a later
    /// thread adopts them.
    pub(crate) fn abandon(&mut self) {
        self.dequeue_all_pages();
        interleave_point!();
        self.drain_delayed_dequeued();
        interleave_point!();
        self.hand_over_segments();
    }

    /// Abandon, first step: every page out of its queue (empty ones back to
    /// their segments), every `DELAYED` bit cleared.
    pub(crate) fn dequeue_all_pages(&mut self) {
        self.flush_quarantine();
        self.flush_block_cache();
        self.hand_over_pending();
        self.drain_delayed();
        for class in 0..CLASS_COUNT {
            loop {
                let page = self.queues[class].pop_front();
                if page.is_null() {
                    break;
                }
                // SAFETY: the page was in our queue.
                unsafe { self.release_dequeued(page) };
            }
            self.set_current(class, empty_page());
        }
        loop {
            let page = self.full.pop_front();
            if page.is_null() {
                break;
            }
            // SAFETY: the page was in our full queue.
            unsafe {
                (*page).clear_flags(PAGE_FULL);
                (*page).clear_delayed();
                self.release_dequeued(page);
            }
        }
    }

    /// Abandon, second step: blocks that were on their way to us while we
    /// cleared DELAYED go back to their pages, which are in no queue now
    /// (return_block would requeue them: a thread exiting while others
    /// freed its blocks crashed there).
    pub(crate) fn drain_delayed_dequeued(&mut self) {
        self.drain_delayed_to(|heap, page, block| {
            // SAFETY: `page` is ours, dequeued above, and counts `block` in use.
            unsafe {
                (*page).push(block, heap.list_key);
                heap.uncount_frees(1); // counted where it was freed
                if (*page).used() == 0 {
                    heap.page_free(page);
                }
            }
        });
    }

    /// Abandon, last step: hand every segment to the store unpurged: empty
    /// ones to its cache, the others to be adopted. The threads that follow
    /// reuse their memory warm; the store purges what it holds past the delay.
    pub(crate) fn hand_over_segments(&mut self) {
        self.forget_local_segments();
        let (shared, memory, me) = (self.shared, &self.shared.memory, self as *mut Self as usize);
        let pages = self.pages_lock.lock();
        self.dirty.hand_over();
        for kind in 0..PAGED_KINDS {
            loop {
                let segment = self.segments[kind].pop_front();
                if segment.is_null() {
                    break;
                }
                interleave_point!();
                // SAFETY: the segment was ours and is in no list now.
                unsafe {
                    if (*segment).used_pages == 0 {
                        shared.segments.free(memory, segment);
                    } else {
                        shared.segments.abandon(memory, segment, me);
                    }
                }
            }
        }
        drop(pages);
        // Anything that still arrives is routed to the abandoned pages.
        self.drain_delayed_dequeued();
    }

    /// Collect a dequeued page; free it if empty, else leave it dequeued.
    ///
    /// # Safety
    /// `page` is ours and in no queue.
    unsafe fn release_dequeued(&mut self, page: *mut Page) {
        // SAFETY: per the contract.
        unsafe {
            self.collect(page);
            if (*page).used() == 0 {
                self.page_free(page);
            }
        }
    }

    /// Adopt one abandoned segment. Returns false when there was none.
    pub(crate) fn adopt_abandoned(&mut self) -> bool {
        let Some(segment) = self.shared.segments.take_abandoned() else {
            return false;
        };
        // SAFETY: take_abandoned hands us exclusive ownership of a live segment.
        unsafe { self.adopt(segment) };
        true
    }

    /// Take back the segments this heap abandoned when its last thread
    /// exited, if nobody adopted them since: the thread that reuses the
    /// heap starts warm (called by `Global::heap_acquire`).
    pub(crate) fn adopt_own(&mut self) {
        while let Some(segment) = self.shared.segments.take_abandoned_by(self as *mut Self as usize) {
            // SAFETY: take_abandoned_by hands us exclusive ownership.
            unsafe { self.adopt(segment) };
        }
    }

    /// Make an abandoned segment ours: its pages join our queues (empty
    /// ones are freed), its dirty pages our purge policy.
    ///
    /// # Safety
    /// The caller took `segment` from the abandoned list: it is live and ours.
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    unsafe fn adopt(&mut self, segment: *mut Segment) {
        // SAFETY: per the contract.
        unsafe {
            debug_assert_eq!((*segment).owner.load(Ordering::Relaxed), ABANDONED_OWNER);
            (*segment).owner.store(self as *mut Self as usize, Ordering::Release);
            let pages = self.pages_lock.lock();
            self.segments[(*segment).kind as usize].push_front(segment);
            self.dirty.released(Segment::dirty_bytes(segment));
            drop(pages);
            for page in Segment::pages_in_use(segment) {
                self.collect(page);
                if (*page).used() == 0 {
                    self.page_free(page);
                } else {
                    self.queue_push_back(page);
                }
            }
        }
    }

    /// Return what this heap can: collect remote frees, free every empty
    /// page, purge unused pages. Returns bytes purged.
    pub(crate) fn trim(&mut self) -> usize {
        self.flush_quarantine();
        self.flush_block_cache();
        self.hand_over_pending();
        self.drain_delayed();
        for class in 0..CLASS_COUNT {
            let mut page = self.queues[class].first;
            while !page.is_null() {
                // SAFETY: queued pages are ours.
                unsafe {
                    let next = (*page).next.get();
                    self.collect(page);
                    if (*page).used() == 0 {
                        self.queue_remove(page);
                        self.page_free(page);
                    }
                    page = next;
                }
            }
        }
        self.sweep_free_blocks(true) + self.purge_dirty(crate::purge::PurgeScope::All)
    }
}
