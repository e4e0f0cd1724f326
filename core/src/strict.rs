//! Strict mode (`Options::strict`, `HAKMEM_STRICT=1`): checks beyond the
//! default ones, for users who trade speed for them. Default mode pays
//! nothing on its fast paths: a strict heap installs no page for them
//! (every malloc takes `malloc_slow`, as when profiling), and its pages
//! carry `PAGE_STRICT`, so every free of their blocks takes the checked
//! slow path.
//!
//! ```text
//!  block of a strict page, live:   [ requested bytes | canary ... | end (u32) ]
//!  freed (quarantine, free list):  [ next | marker | signature | poison ...    ]
//!
//!  malloc   class of size + STRICT_TAIL; the block handed out: the free
//!           list's next link must be a carved block of the page; a block
//!           freed before must still be poisoned; then sealed (canary, end)
//!  free     checked_block (as always), the canary intact (no overflow past
//!           the requested size, even inside the class's rounding), then
//!           poisoned and quarantined; the oldest block leaves the
//!           quarantine (poison checked: no write after free) for its page
//! ```
//!
//! `end` is the offset from the block start to the end of the requested
//! bytes (an aligned block starts inside its block); `usable_size` of a
//! strict block is the requested size. The signature is
//! `block ^ SIGNATURE_KEY(marker key)`, so a block never freed (fresh carve,
//! old data) is not mistaken for a poisoned one. 16-byte blocks hold only
//! the allocator's two words when free: their links are validated, their
//! contents are not.
//!
//! Every report is one line: the problem, the address, the size class.

use crate::config::{LARGE_MAX, MAX_REQUEST, MIN_ALIGN};
use crate::heap::Heap;
use crate::memory::Memory;
use crate::page::{Block, Page, PAGE_STRICT};
use crate::provider::PageProvider;
use crate::segment::Segment;
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

/// Bytes a strict block keeps after the requested size: at least four
/// canary bytes, then the `end` word.
pub const STRICT_TAIL: usize = 8;
const END_BYTES: usize = 4;
const CANARY: u8 = 0xCB;
const POISON: u8 = 0xDF;
const POISON_WORD: u64 = u64::from_ne_bytes([POISON; 8]);
/// Canary bytes written and checked after the requested size (the rest of
/// the rounding, up to the `end` word, is not: an overflow reaches these
/// first, and a large block's slack is not walked at every free).
const CANARY_MAX: usize = 64;
/// Bytes from a freed block's start that are poisoned and checked: all of
/// a small block, the first 4 KiB of a larger one (where stale pointers
/// write first), so that a free costs at most one short pass.
const POISON_MAX: usize = 4096;
/// Bytes of a freed block the allocator keeps: link, marker, signature.
const FREED_HEADER: usize = 3 * core::mem::size_of::<usize>();
/// Most blocks, and bytes, a heap's quarantine holds before the oldest
/// block goes back to its page.
pub const QUARANTINE_BLOCKS: usize = 128;
pub const QUARANTINE_BYTES: usize = 1 << 20;

/// The signature of a freed strict block. With the block size in it, a
/// page carved again for another class does not find its old blocks'
/// signatures at its new block starts.
fn signature(block: *const u8, block_size: usize, marker_key: usize) -> usize {
    block as usize ^ marker_key.rotate_left(17) ^ block_size.rotate_left(40)
}

/// Write the canary and `end` into a strict block whose program bytes
/// end `end` bytes after its start.
///
/// # Safety
/// `block` is a live block of `block_size` bytes, `end + STRICT_TAIL <= block_size`.
unsafe fn seal(block: *mut u8, block_size: usize, end: usize) {
    debug_assert!(end + STRICT_TAIL <= block_size);
    // SAFETY: per the contract, everything written lies in the block.
    unsafe {
        core::ptr::write_bytes(block.add(end), CANARY, canary_end(block_size, end) - end);
        block.add(block_size - END_BYTES).cast::<u32>().write_unaligned(end as u32);
    }
}

/// Where the canary after `end` stops.
fn canary_end(block_size: usize, end: usize) -> usize {
    (end + CANARY_MAX).min(block_size - END_BYTES)
}

/// The `end` of a strict block, or `None` when the word is out of range
/// (overwritten).
///
/// # Safety
/// `block` is a block of `block_size` bytes of a strict page.
unsafe fn end_of(block: *const u8, block_size: usize) -> Option<usize> {
    // SAFETY: per the contract.
    let end = unsafe { block.add(block_size - END_BYTES).cast::<u32>().read_unaligned() } as usize;
    (end + STRICT_TAIL <= block_size).then_some(end)
}

/// Whether the canary after `end` is intact.
///
/// # Safety
/// As for [`end_of`].
unsafe fn canary_intact(block: *const u8, block_size: usize) -> bool {
    // SAFETY: per the contract.
    unsafe {
        match end_of(block, block_size) {
            Some(end) => (end..canary_end(block_size, end)).all(|i| *block.add(i) == CANARY),
            None => false,
        }
    }
}

/// Poison a freed strict block (its link and marker words are the
/// allocator's) and sign it.
///
/// # Safety
/// `block` is a block of `block_size` bytes being freed.
unsafe fn poison(block: *mut u8, block_size: usize, marker_key: usize) {
    if block_size < FREED_HEADER {
        return;
    }
    // SAFETY: per the contract.
    unsafe {
        block.add(2 * core::mem::size_of::<usize>()).cast::<usize>().write(signature(block, block_size, marker_key));
        core::ptr::write_bytes(block.add(FREED_HEADER), POISON, block_size.min(POISON_MAX) - FREED_HEADER);
    }
}

/// Clear the signature word of `count` blocks of `block_size` just carved
/// from `first` on: memory of an earlier life of the page (another class,
/// another geometry of the segment, never purged) may hold a signature
/// that matches, over poison the blocks of that life have overwritten.
///
/// # Safety
/// The blocks were just carved: the caller owns their memory.
pub(crate) unsafe fn forget_signatures(first: *mut u8, block_size: usize, count: usize) {
    if block_size < FREED_HEADER {
        return;
    }
    for i in 0..count {
        // SAFETY: per the contract; the word lies inside block i.
        unsafe { first.add(i * block_size + 2 * core::mem::size_of::<usize>()).cast::<usize>().write(0) };
    }
}

/// Whether `block` was poisoned by a free (its signature is there).
///
/// # Safety
/// `block` is a block of `block_size` bytes.
unsafe fn was_freed(block: *const u8, block_size: usize, marker_key: usize) -> bool {
    // SAFETY: per the contract.
    block_size >= FREED_HEADER
        && unsafe { block.add(2 * core::mem::size_of::<usize>()).cast::<usize>().read() } == signature(block, block_size, marker_key)
}

/// Whether a poisoned block is still all poison (compared a word at a
/// time: blocks and the header are multiples of 8 bytes).
///
/// # Safety
/// As for [`was_freed`].
unsafe fn poison_intact(block: *const u8, block_size: usize) -> bool {
    let words = (block_size.min(POISON_MAX) - FREED_HEADER) / 8;
    // SAFETY: per the contract; the words lie in the block, 8-aligned.
    let poison = unsafe { core::slice::from_raw_parts(block.add(FREED_HEADER).cast::<u64>(), words) };
    poison.iter().all(|&word| word == POISON_WORD)
}

/// Usable bytes from `ptr` in a block of a strict page: up to the end of
/// the requested bytes (0 when its `end` word was overwritten: the block's
/// free reports the overflow).
///
/// # Safety
/// `block` is the live block of a strict page holding `ptr`.
pub unsafe fn usable_size(block: *const u8, block_size: usize, ptr: *const u8) -> usize {
    // SAFETY: per the contract.
    let end = unsafe { end_of(block, block_size) }.unwrap_or(0);
    (block as usize + end).saturating_sub(ptr as usize)
}

/// The free-time check of a strict block (in `checked_block`, before the
/// block is marked free): nothing written past the requested bytes.
///
/// # Safety
/// `block` is a block of a strict page, being freed.
pub unsafe fn check_on_free<P: PageProvider>(memory: &Memory<P>, block: *const u8, block_size: usize) {
    // SAFETY: per the contract.
    if !unsafe { canary_intact(block, block_size) } {
        memory.fatal_in_class("heap overflow: written past the requested size of ", block as usize, block_size);
    }
}

/// Freed strict blocks waiting before they go back to their pages
/// (oldest first, a ring). Owner only.
pub struct Quarantine {
    blocks: [*mut Block; QUARANTINE_BLOCKS],
    first: usize,
    len: usize,
    bytes: usize,
}

impl Quarantine {
    pub const fn new() -> Self {
        Quarantine { blocks: [null_mut(); QUARANTINE_BLOCKS], first: 0, len: 0, bytes: 0 }
    }

    fn push(&mut self, block: *mut Block, bytes: usize) {
        self.blocks[(self.first + self.len) % QUARANTINE_BLOCKS] = block;
        self.len += 1;
        self.bytes += bytes;
    }

    /// The oldest block when the quarantine is over its bounds (or `all`).
    fn pop_over(&mut self, all: bool) -> Option<*mut Block> {
        if self.len == 0 || !(all || self.len == QUARANTINE_BLOCKS || self.bytes > QUARANTINE_BYTES) {
            return None;
        }
        let block = self.blocks[self.first];
        self.first = (self.first + 1) % QUARANTINE_BLOCKS;
        self.len -= 1;
        // SAFETY: quarantined blocks are live paged blocks (their pages keep
        // them counted in use).
        self.bytes -= unsafe { (*Segment::page_of_block(block as *mut u8)).block_size } as usize;
        Some(block)
    }
}

impl Default for Quarantine {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: PageProvider + 'static> Heap<P> {
    /// malloc in a strict heap (from `malloc_slow`, sizes up to `LARGE_MAX`).
    #[cold]
    #[inline(never)]
    pub(crate) fn malloc_strict(&mut self, size: usize) -> *mut u8 {
        if size > MAX_REQUEST {
            return null_mut(); // (and size + STRICT_TAIL cannot wrap below)
        }
        let padded = size + STRICT_TAIL;
        if padded > LARGE_MAX {
            return self.huge_alloc(size, MIN_ALIGN).map_or(null_mut(), |(p, _)| p);
        }
        self.count_malloc();
        let block = self.alloc_class(crate::class::class_of(padded));
        if block.is_null() {
            return block;
        }
        // SAFETY: the block was just handed out by a page of this heap.
        unsafe { self.hand_out_strict(block, size) };
        block
    }

    /// Check a block a strict page just handed out and seal it for
    /// `size` bytes at its start.
    ///
    /// # Safety
    /// `block` is a block this heap just popped.
    unsafe fn hand_out_strict(&mut self, block: *mut u8, size: usize) {
        // SAFETY: per the contract; the page is ours.
        unsafe {
            let page = Segment::page_of_block(block);
            if (*page).flags.load(Ordering::Relaxed) & PAGE_STRICT == 0 {
                return; // a page made before strict mode was on
            }
            let block_size = (*page).block_size as usize;
            let next = (*page).free.get() as *const u8;
            if (*page).has_free() && (!core::ptr::eq(Page::block_of(page, next), next) || !Page::block_is_carved(page, next)) {
                self.shared.memory.fatal_in_class("corrupted free list (write after free?) at ", next as usize, block_size);
            }
            if was_freed(block, block_size, self.marker_key) {
                if !poison_intact(block, block_size) {
                    self.shared.memory.fatal_in_class("write after free of ", block as usize, block_size);
                }
                block.add(2 * core::mem::size_of::<usize>()).cast::<usize>().write(0);
            }
            seal(block, block_size, size);
        }
    }

    /// Seal a strict block again after `malloc_aligned` moved its start to
    /// `aligned` (`size` bytes from there).
    ///
    /// # Safety
    /// `block` is a live block of this heap holding `aligned..aligned + size`
    /// and `STRICT_TAIL` bytes after it.
    pub(crate) unsafe fn reseal_strict(&mut self, block: *mut u8, aligned: *mut u8, size: usize) {
        // SAFETY: per the contract.
        unsafe {
            let page = Segment::page_of_block(block);
            if (*page).flags.load(Ordering::Relaxed) & PAGE_STRICT != 0 {
                seal(block, (*page).block_size as usize, aligned as usize - block as usize + size);
            }
        }
    }

    /// realloc of a strict block in place: its canary checked, and sealed
    /// again for `size` bytes when they fit the block (and use at least half
    /// of it). `None`: move it (or not a strict paged block).
    ///
    /// # Safety
    /// `ptr` is a live block of this allocator.
    pub(crate) unsafe fn realloc_strict_in_place(&mut self, ptr: *mut u8, size: usize) -> Option<*mut u8> {
        if size > MAX_REQUEST {
            return None; // (the move fails: null, the block intact)
        }
        // SAFETY: per the contract; a paged block's page covers it.
        unsafe {
            let segment = Segment::of_ptr(ptr);
            if Segment::is_huge(segment) {
                return None;
            }
            let page = Segment::page_of(segment, ptr);
            if (*page).flags.load(Ordering::Relaxed) & PAGE_STRICT == 0 {
                return None;
            }
            let block_size = (*page).block_size as usize;
            let block = Page::block_of(page, ptr);
            check_on_free(&self.shared.memory, block, block_size);
            let end = ptr as usize - block as usize + size;
            if end + STRICT_TAIL > block_size || end < block_size / 2 {
                return None;
            }
            seal(block, block_size, end);
            Some(ptr)
        }
    }

    /// Free a checked block of a strict page (its canary checked by
    /// `checked_block`): poison it and quarantine it; the block that
    /// leaves the quarantine goes back to its page.
    ///
    /// # Safety
    /// `block` was just checked and marked free by this heap's thread.
    pub(crate) unsafe fn quarantine(&mut self, page: *mut Page, block: *mut Block) {
        // SAFETY: per the contract.
        unsafe {
            let block_size = (*page).block_size as usize;
            poison(block as *mut u8, block_size, self.marker_key);
            self.strict_quarantine.push(block, block_size);
        }
        while let Some(oldest) = self.strict_quarantine.pop_over(false) {
            // SAFETY: quarantined blocks are checked and marked free.
            unsafe { self.release_quarantined(oldest) };
        }
    }

    /// Send every quarantined block back (thread exit, trim).
    pub(crate) fn flush_quarantine(&mut self) {
        while let Some(oldest) = self.strict_quarantine.pop_over(true) {
            // SAFETY: quarantined blocks are checked and marked free.
            unsafe { self.release_quarantined(oldest) };
        }
    }

    /// # Safety
    /// `block` left this heap's quarantine.
    unsafe fn release_quarantined(&mut self, block: *mut Block) {
        // SAFETY: per the contract: a live paged block, poisoned.
        unsafe {
            let segment = Segment::of_ptr(block as *const u8);
            let page = Segment::page_of(segment, block as *const u8);
            let block_size = (*page).block_size as usize;
            // Poisoned and signed when it came in: a write over the
            // signature is a write after free too.
            let written = block_size >= FREED_HEADER
                && (!was_freed(block as *const u8, block_size, self.marker_key) || !poison_intact(block as *const u8, block_size));
            if written {
                self.shared.memory.fatal_in_class("write after free of ", block as usize, block_size);
            }
            crate::free::release_checked(self.shared, self, segment, page, block);
        }
    }
}
