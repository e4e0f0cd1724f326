//! Pages: runs of equal-sized blocks, each with three free lists.
//!
//! ```text
//!  Page (descriptor in the segment header)       block area
//!  free ------------------------------------->  [next|mark|....] -> [next|mark|...] -> 0
//!  thread_free (atomic, remote frees) -------->  [next|mark|....] -> ... -> 0   (+ DELAYED bit)
//!  capacity: blocks carved so far    reserved: blocks that fit
//! ```
//!
//! Invariants (owner thread's view, remote pushes aside):
//! - `used == capacity - |free| - |thread_free| - |blocks parked in the heap's delayed list|`
//!   counted the owner's way: `used` drops only when the owner collects.
//! - `used == 0` implies no block of the page is reachable by the program.
//! - The `DELAYED` bit is set only while the page is in its heap's full
//!   queue, and then `thread_free`'s list is empty: remote frees go to the
//!   heap's delayed list instead, so the owner learns the page has room.
//!
//! Links are stored encoded (`next ^ list_key`) and every decoded link is
//! checked to stay inside the block's segment, so a use-after-free write
//! into a free block cannot make malloc return an arbitrary address.
//! A free block's second word holds `block ^ marker_key`: finding it on
//! free means the block is already free (double free). malloc clears it.

use crate::config::{PAGE_EXTEND_BYTES, SEGMENT_SHIFT};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// The first two words of a free block.
#[repr(C)]
pub struct Block {
    pub next: usize,
    pub marker: usize,
}

/// Page flag: in its heap's full queue (the fast free path must requeue it).
pub const PAGE_FULL: u8 = 1;
/// Page flag: some block was handed out at an interior (aligned) address.
pub const PAGE_ALIGNED: u8 = 2;
/// Page flag: not in use; no block of it is live.
pub const PAGE_UNUSED: u8 = 4;

/// Low bit of `thread_free`: remote frees must go to the heap's delayed list.
pub const DELAYED: usize = 1;

const RECIPROCAL_SHIFT: u32 = 42;

/// Descriptor of one page, inside its segment's header: 64 bytes, so a
/// page's index in its segment is a shift of its address.
#[repr(C)]
pub struct Page {
    /// First block ready for malloc (owner only).
    pub free: *mut Block,
    /// First byte of the block area.
    pub start: *mut u8,
    /// `2^42 / block_size + 1`: exact division of offsets below 2 MiB.
    pub reciprocal: u64,
    /// Remote frees: encoded list head | `DELAYED`.
    pub thread_free: AtomicUsize,
    /// Links in the heap's page queue.
    pub next: *mut Page,
    pub prev: *mut Page,
    /// Size of each block in bytes.
    pub block_size: u32,
    /// `capacity * block_size`: bytes of the area carved into blocks.
    pub carved_bytes: u32,
    /// Blocks handed out and not yet collected back (owner only).
    pub used: u16,
    /// Blocks carved from the area so far.
    pub capacity: u16,
    /// Blocks that fit in the area.
    pub reserved: u16,
    /// `PAGE_*` bits; written by the owner, read by any thread.
    pub flags: AtomicU8,
    /// Size class of the blocks.
    pub class: u8,
}

static_assertions::const_assert_eq!(core::mem::size_of::<Page>(), 64);
// Blocks per page fit the u16 counters: at most 64 KiB / 16 B.
static_assertions::const_assert!(
    (1usize << crate::config::SMALL_PAGE_SHIFT) / crate::config::MIN_BLOCK <= u16::MAX as usize
);
static_assertions::const_assert!(
    (1usize << crate::config::MEDIUM_PAGE_SHIFT) / (crate::config::SMALL_MAX + 1) <= u16::MAX as usize
);

/// Decode a stored link.
#[inline(always)]
pub fn decode(stored: usize, list_key: usize) -> *mut Block {
    (stored ^ list_key) as *mut Block
}

/// Encode a link for storage.
#[inline(always)]
pub fn encode(next: *mut Block, list_key: usize) -> usize {
    next as usize ^ list_key
}

/// Whether a decoded link may follow `from`: null or in the same segment.
#[inline(always)]
pub fn link_is_plausible(from: *const Block, next: *const Block) -> bool {
    next.is_null() || ((from as usize ^ next as usize) >> SEGMENT_SHIFT) == 0
}

impl Page {
    /// A page descriptor that is not in use (and has nothing to allocate).
    /// Used as an initializer: each use is a fresh descriptor.
    #[allow(clippy::declare_interior_mutable_const)]
    pub const UNUSED: Page = Page {
        free: null_mut(),
        start: null_mut(),
        reciprocal: 0,
        thread_free: AtomicUsize::new(0),
        next: null_mut(),
        prev: null_mut(),
        block_size: 0,
        carved_bytes: 0,
        used: 0,
        capacity: 0,
        reserved: 0,
        flags: AtomicU8::new(PAGE_UNUSED),
        class: 0,
    };

    /// Prepare an unused page to hold blocks of `block_size` bytes in the
    /// area `start..start + area_bytes`. No block is carved yet.
    pub fn init(&mut self, class: usize, block_size: usize, start: *mut u8, area_bytes: usize) {
        self.free = null_mut();
        self.used = 0;
        self.capacity = 0;
        self.carved_bytes = 0;
        self.reserved = (area_bytes / block_size) as u16;
        self.block_size = block_size as u32;
        self.class = class as u8;
        self.thread_free.store(0, Ordering::Relaxed);
        self.next = null_mut();
        self.prev = null_mut();
        self.start = start;
        self.reciprocal = (1u64 << RECIPROCAL_SHIFT) / block_size as u64 + 1;
        self.flags.store(0, Ordering::Release);
    }

    /// Start of the block containing `ptr` (which lies in this page's area).
    #[inline(always)]
    pub fn block_of(&self, ptr: *const u8) -> *mut u8 {
        let offset = (ptr as usize).wrapping_sub(self.start as usize) as u64;
        let index = (offset * self.reciprocal) >> RECIPROCAL_SHIFT;
        (self.start as usize + (index as usize) * self.block_size as usize) as *mut u8
    }

    /// Whether `block` (a block start) lies inside the carved area.
    #[inline]
    pub fn block_is_carved(&self, block: *const u8) -> bool {
        let offset = (block as usize).wrapping_sub(self.start as usize);
        offset < self.carved_bytes as usize
    }

    /// Carve the next run of blocks (at most `PAGE_EXTEND_BYTES`, at least
    /// one block) onto the free list. Returns false when the page is fully
    /// carved.
    pub fn extend(&mut self, list_key: usize) -> bool {
        let remaining = self.reserved - self.capacity;
        if remaining == 0 {
            return false;
        }
        let size = self.block_size as usize;
        let count = (PAGE_EXTEND_BYTES / size).clamp(1, remaining as usize);
        let first = self.start as usize + self.capacity as usize * size;
        // Link blocks in address order: first -> first+size -> ... -> old free.
        let mut next = self.free;
        for i in (0..count).rev() {
            let block = (first + i * size) as *mut Block;
            // SAFETY: block lies in the page's area (capacity + count <=
            // reserved) which the segment owns; nobody else uses it.
            unsafe { (*block).next = encode(next, list_key) };
            next = block;
        }
        self.free = next;
        self.capacity += count as u16;
        self.carved_bytes = self.capacity as u32 * self.block_size;
        true
    }

    /// Move all remotely freed blocks to `free`. Returns how many arrived,
    /// or `None` when the remote list is corrupt (a link leaves the segment).
    pub fn collect_remote(&mut self, list_key: usize) -> Option<u16> {
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
            if !link_is_plausible(tail, next) || count >= self.capacity {
                return None;
            }
            tail = next;
            count += 1;
        }
        // SAFETY: tail is the last remote block; splice the local list behind it.
        unsafe { (*tail).next = encode(self.free, list_key) };
        self.free = first;
        self.used -= count;
        Some(count)
    }

    /// Push a block freed by a thread that does not own the page. Returns
    /// false, without pushing, when the page wants delayed frees instead.
    ///
    /// # Safety
    /// `block` is a block of this page that the caller is freeing (it owns
    /// the block's memory until the push succeeds).
    pub unsafe fn push_remote(&self, block: *mut Block, list_key: usize) -> bool {
        let mut head = self.thread_free.load(Ordering::Relaxed);
        loop {
            if head & DELAYED != 0 {
                return false;
            }
            // SAFETY: the block is being freed: the caller owns it now.
            unsafe { (*block).next = encode(head as *mut Block, list_key) };
            match self.thread_free.compare_exchange_weak(
                head,
                block as usize,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => head = now,
            }
        }
    }

    /// Ask remote frees to go to the heap's delayed list. Fails (returns
    /// false) when remote blocks are waiting: collect them first.
    pub fn try_set_delayed(&self) -> bool {
        self.thread_free
            .compare_exchange(0, DELAYED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Let remote frees land on the page again.
    pub fn clear_delayed(&self) {
        self.thread_free.fetch_and(!DELAYED, Ordering::AcqRel);
    }

    /// Number of blocks on the local free list (for checks and tests).
    pub fn count_free(&self, list_key: usize) -> usize {
        let mut n = 0;
        let mut block = self.free;
        while !block.is_null() {
            n += 1;
            // SAFETY: the local list only links blocks of this page.
            block = decode(unsafe { (*block).next }, list_key);
        }
        n
    }
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)] // test code exercising the contracts
mod tests {
    use super::*;
    use crate::class::{class_size, CLASS_COUNT};

    #[test]
    fn reciprocal_division_is_exact_for_every_class() {
        for class in 0..CLASS_COUNT {
            let size = class_size(class);
            let mut page = Page::UNUSED;
            let start = 0x4000_0000usize as *mut u8;
            page.init(class, size, start, 2 << 20);
            let blocks = (2 << 20) / size;
            for index in [0, 1, 2, blocks / 2, blocks - 1] {
                let block = start as usize + index * size;
                for delta in [0, 1, size / 2, size - 1] {
                    let got = page.block_of((block + delta) as *const u8) as usize;
                    assert_eq!(got, block, "class {class} index {index} delta {delta}");
                }
            }
        }
    }

    #[test]
    fn extend_collect_and_delayed_flag() {
        #[repr(align(64))]
        struct Area([u8; 4096]);
        let mut area = Area([0; 4096]);
        let key = 0x5a5a_0000;
        let mut page = Page::UNUSED;
        page.init(0, 64, area.0.as_mut_ptr(), 4096);
        assert_eq!(page.reserved, 64);
        assert!(page.extend(key));
        assert_eq!(page.capacity, 64);
        assert!(!page.extend(key));
        assert_eq!(page.count_free(key), 64);
        // Take two blocks, give one back remotely.
        let a = page.free;
        page.free = decode(unsafe { (*a).next }, key);
        let b = page.free;
        page.free = decode(unsafe { (*b).next }, key);
        page.used = 2;
        assert!(unsafe { page.push_remote(b, key) });
        assert!(!page.try_set_delayed(), "delayed must not hide waiting blocks");
        assert_eq!(page.collect_remote(key), Some(1));
        assert_eq!(page.used, 1);
        assert_eq!(page.count_free(key), 63);
        assert!(page.try_set_delayed());
        assert!(!unsafe { page.push_remote(a, key) }, "a delayed page refuses remote pushes");
        page.clear_delayed();
        assert!(unsafe { page.push_remote(a, key) });
        assert_eq!(page.collect_remote(key), Some(1));
        assert_eq!(page.used, 0);
    }
}
