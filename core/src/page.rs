//! Pages: runs of equal-sized blocks, with their local free list (here)
//! and their remote free list (`thread_free`, see remote.rs).
//!
//! ```text
//!  Page (descriptor in the segment header)       block area
//!  free ------------------------------------->  [next|mark|....] -> [next|mark|...] -> end
//!  thread_free (atomic, remote frees) -------->  [next|mark|....] -> ... -> 0   (+ DELAYED bit)
//!  capacity(): blocks carved so far    reserved: blocks that fit
//!  fast_capacity: capacity() while no flag is set, else 0 (the fast free
//!  path's one bound test covers both the carve and the flags)
//! ```
//!
//! Invariants (owner thread's view, remote pushes aside):
//! - `used == capacity() - |free| - |thread_free| - |blocks parked in the heap's delayed list|`
//!   counted the owner's way: `used` drops only when the owner collects.
//! - `used == 0` implies no block of the page is reachable by the program.
//! - `taken` counts the blocks popped since the page was last folded into
//!   the call counters (mod 2^16; each wrap is folded at once), so the
//!   page's share of the process's mallocs is `taken` and of its frees
//!   `taken - used` (see `Heap::call_counts`). A page's count is folded
//!   when it is taken (`Segment::take_page`), so `taken` counts this use's
//!   pops, and a segment folds its pages' counts when it leaves its owner
//!   (`SegmentStore::free`), so a cached or unmapped segment's pages count
//!   nothing.
//! - `taken == used` (and no wrap since the page was taken, which clears
//!   its `Segment::zeroed` bit) means no block has come back to the page
//!   since it was taken: its free list holds only carved blocks never
//!   handed out, whose only write is their link (a pop clears the other
//!   words it may have set). calloc relies on it (alloc.rs).
//!
//! Links are stored encoded (`next ^ list_key`) and every decoded link is
//! checked to stay inside the block's segment, so a use-after-free write
//! into a free block cannot make malloc return an arbitrary address. The
//! local list ends at an address of the segment that no block has: the
//! segment's first byte (`list_end`; any address at offset 0 of its
//! segment ends a list, null included). The last link is then as plausible
//! as the others, and a pop tests one condition, not also null.
//! A free block's second word holds `block ^ marker_key`: finding it on
//! free means the block is already free (double free). malloc clears it.

use crate::config::{PAGE_EXTEND_BYTES, SEGMENT_MASK, SEGMENT_SHIFT};
use core::cell::Cell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU16, AtomicU8, AtomicUsize, Ordering};

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
/// Page flag: a block of it was sampled by the heap profiler (its frees
/// take the slow path, which forgets the sample).
pub const PAGE_SAMPLED: u8 = 8;
/// Page flag: its blocks have strict mode's layout (strict.rs): canary
/// and size after the requested bytes; poisoned when freed.
pub const PAGE_STRICT: u8 = 16;

/// One block taken, in `Page::counts`.
const TAKEN_ONE: u32 = 1 << 16;

const RECIPROCAL_SHIFT: u32 = 42;
/// See `Page::starts_block_below`: the fraction bound of a block start.
const START_FRACTION: u64 = 1 << 22;
static_assertions::const_assert!(crate::config::SEGMENT_SIZE as u64 <= START_FRACTION / 2);
static_assertions::const_assert!((1u64 << RECIPROCAL_SHIFT) / crate::config::LARGE_MAX as u64 >= START_FRACTION);

/// Descriptor of one page, inside its segment's header: 64 bytes, so a
/// page's index in its segment is a shift of its address, and aligned to
/// them, so that it is one cache line (the owner's frees and other
/// threads' remote frees of the page touch that line alone).
#[repr(C, align(64))]
pub struct Page {
    /// First block ready for malloc (owner only).
    pub free: Cell<*mut Block>,
    /// First byte of the block area.
    pub start: *mut u8,
    /// `2^42 / block_size + 1`: exact division of offsets below 2 MiB.
    pub reciprocal: u64,
    /// Remote frees: encoded list head | `DELAYED`.
    pub thread_free: AtomicUsize,
    /// Links in the heap's page queue.
    pub next: Cell<*mut Page>,
    pub prev: Cell<*mut Page>,
    /// Size of each block in bytes.
    pub block_size: u32,
    /// `used` (low half): blocks handed out and not yet collected back;
    /// `taken` (high half): blocks popped, mod 2^16 (see the module
    /// invariants). One word, so that a pop counts the malloc in the same
    /// store that counts the block in use, and a free needs no counter
    /// besides `used`. Owner only; statistics read it from other threads
    /// with `racy_load` (`counts_seen`).
    counts: Cell<u32>,
    /// Blocks carved from the area so far (atomic: a thread freeing a block
    /// of a page it does not own reads it).
    carved: AtomicU16,
    /// Blocks carved so far while `flags` is 0, else 0 (owner only): a
    /// block index below it is a carved block of a page that takes fast
    /// frees. Kept by `extend` and the flag setters.
    pub fast_capacity: Cell<u16>,
    /// Blocks that fit in the area.
    pub reserved: u16,
    /// `PAGE_*` bits; written by the owner, read by any thread.
    pub flags: AtomicU8,
    /// Size class of the blocks (written by `init`; atomic so that
    /// statistics may read it from any thread).
    class: AtomicU8,
}

static_assertions::const_assert_eq!(core::mem::size_of::<Page>(), 64);
// Blocks per page fit the u16 counters (and `used` never reaches taken's
// half of `counts`): at most 64 KiB / 16 B.
static_assertions::const_assert!(
    (1usize << crate::config::SMALL_PAGE_SHIFT) / crate::config::MIN_BLOCK <= u16::MAX as usize
);
static_assertions::const_assert!(
    (1usize << crate::config::MEDIUM_PAGE_SHIFT) / (crate::config::SMALL_MAX + 1) <= u16::MAX as usize
);

/// Load a `u32` that another thread may be writing with plain stores: one
/// aligned hardware load (in inline assembly on x86_64 and aarch64, which
/// the compiler treats as opaque, so it neither tears nor elides it; a
/// volatile read elsewhere, and under Miri, which runs no assembly). For
/// statistics only: the value may be stale.
///
/// # Safety
/// `at` is aligned and points to mapped memory.
#[inline]
unsafe fn racy_load_u32(at: *const u32) -> u32 {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        let value: u32;
        // SAFETY: per the contract; a 4-byte aligned load is one access.
        unsafe { core::arch::asm!("mov {0:e}, dword ptr [{1}]", out(reg) value, in(reg) at, options(nostack, readonly, preserves_flags)) };
        value
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    {
        let value: u32;
        // SAFETY: per the contract; a 4-byte aligned load is one access.
        unsafe { core::arch::asm!("ldr {0:w}, [{1}]", out(reg) value, in(reg) at, options(nostack, readonly, preserves_flags)) };
        value
    }
    #[cfg(any(miri, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
    // SAFETY: per the contract.
    unsafe {
        core::ptr::read_volatile(at)
    }
}

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

/// The end of the local free list of a page whose blocks start at
/// `start`: its segment's first byte (the header's, never a block's).
#[inline(always)]
fn list_end(start: *mut u8) -> *mut Block {
    (start as usize & !SEGMENT_MASK) as *mut Block
}

/// Whether `link` ends a local free list: an address at offset 0 of its
/// segment (`list_end`), or null (a page never used: `Page::UNUSED`).
#[inline(always)]
fn is_list_end(link: *const Block) -> bool {
    link as usize & SEGMENT_MASK == 0
}

/// Whether a decoded link stays in `from`'s segment: a local list's link
/// (a block or the list's end) must.
#[inline(always)]
fn in_segment_of(from: *const Block, next: *const Block) -> bool {
    (from as usize ^ next as usize) >> SEGMENT_SHIFT == 0
}

impl Page {
    /// A page descriptor that is not in use (and has nothing to allocate).
    /// Used as an initializer: each use is a fresh descriptor.
    #[allow(clippy::declare_interior_mutable_const)]
    pub const UNUSED: Page = Page {
        free: Cell::new(null_mut()),
        start: null_mut(),
        reciprocal: 0,
        thread_free: AtomicUsize::new(0),
        next: Cell::new(null_mut()),
        prev: Cell::new(null_mut()),
        block_size: 0,
        counts: Cell::new(0),
        carved: AtomicU16::new(0),
        fast_capacity: Cell::new(0),
        reserved: 0,
        flags: AtomicU8::new(PAGE_UNUSED),
        class: AtomicU8::new(0),
    };

    /// Prepare an unused page to hold blocks of `block_size` bytes in the
    /// area `start..start + area_bytes`. No block is carved yet.
    pub fn init(&mut self, class: usize, block_size: usize, start: *mut u8, area_bytes: usize) {
        self.free.set(list_end(start));
        // `used` is 0 (an unused page); `taken` stays, the page's share of
        // the calls until its segment folds it (segment_store.rs).
        self.fast_capacity.set(0);
        self.carved.store(0, Ordering::Relaxed);
        self.reserved = (area_bytes / block_size) as u16;
        self.block_size = block_size as u32;
        self.class.store(class as u8, Ordering::Relaxed);
        self.thread_free.store(0, Ordering::Relaxed);
        self.next.set(null_mut());
        self.prev.set(null_mut());
        self.start = start;
        self.reciprocal = (1u64 << RECIPROCAL_SHIFT) / block_size as u64 + 1;
        self.flags.store(0, Ordering::Release);
    }

    /// Start of the block containing `ptr` (which lies in this page's area).
    /// On a raw pointer, reading only the fields it needs: threads that do
    /// not own the page call it while the owner writes its other fields
    /// (a `&Page` would claim to read all of them).
    ///
    /// # Safety
    /// `this` is a page descriptor in a mapped segment header.
    #[inline(always)]
    pub unsafe fn block_of(this: *const Page, ptr: *const u8) -> *mut u8 {
        // SAFETY: per the contract; fields the owner sets when it takes the page.
        let (start, reciprocal, block_size) = unsafe { ((*this).start as usize, (*this).reciprocal, (*this).block_size as usize) };
        let index = ((ptr as usize).wrapping_sub(start) as u64).wrapping_mul(reciprocal) >> RECIPROCAL_SHIFT;
        (start + index as usize * block_size) as *mut u8
    }

    /// Index and start of the block containing `ptr` (which lies in this
    /// page's area).
    #[inline(always)]
    pub fn block_index_of(&self, ptr: *const u8) -> (usize, *mut u8) {
        let index = self.index_of((ptr as usize).wrapping_sub(self.start as usize));
        (index, (self.start as usize + index * self.block_size as usize) as *mut u8)
    }

    /// Pop the first block of the local free list: null when the list is
    /// empty, or when its link is implausible (then `has_free` stays true,
    /// which tells the caller the list is corrupt). Clears the free marker
    /// and counts the block taken; when `taken` wraps (once in 2^16 pops),
    /// returns `wrapped(block)`, which folds 2^16 mallocs into the counters
    /// and returns the block (a tail call: the fast path saves no register
    /// for it).
    ///
    /// # Safety
    /// The caller owns the page (or it is `EMPTY_PAGE`, whose list is empty).
    #[inline(always)]
    pub unsafe fn pop(&self, list_key: usize, wrapped: impl FnOnce(*mut Block) -> *mut Block) -> *mut Block {
        let block = self.free.get();
        if is_list_end(block) {
            return null_mut();
        }
        // SAFETY: blocks on the local list are free blocks of this page.
        unsafe {
            let next = decode((*block).next, list_key);
            if !in_segment_of(block, next) {
                return null_mut();
            }
            self.free.set(next);
            prefetch(next);
            let carry = self.count_taken();
            (*block).marker = 0;
            if carry {
                return wrapped(block);
            }
        }
        block
    }

    /// Hand out the next block never carved, as a pop would (counted
    /// taken and used; `wrapped` as for [`Page::pop`]), without linking it
    /// or writing it: null when every block is carved or the page has a
    /// flag set. Its memory is as the page was taken (calloc uses it on
    /// pages taken zeroed, `Segment::zeroed`).
    ///
    /// # Safety
    /// The caller owns the page (or it is `EMPTY_PAGE`, which has no block).
    pub unsafe fn take_uncarved(&self, wrapped: impl FnOnce(*mut Block) -> *mut Block) -> *mut Block {
        let carved = self.capacity();
        if carved >= self.reserved || self.flags.load(Ordering::Relaxed) != 0 {
            return null_mut();
        }
        let block = (self.start as usize + carved as usize * self.block_size as usize) as *mut Block;
        self.set_carved(carved + 1);
        if self.count_taken() {
            return wrapped(block);
        }
        block
    }

    /// Count a block handed out: used + 1 and taken + 1 in one add; true
    /// when taken wrapped (its carry leaves the word).
    #[inline(always)]
    fn count_taken(&self) -> bool {
        let (counts, carry) = self.counts.get().overflowing_add(TAKEN_ONE | 1);
        self.counts.set(counts);
        carry
    }

    /// Push a block (already marked free) onto the local free list.
    ///
    /// # Safety
    /// The caller owns the page; `block` is a block of it counted in `used`.
    #[inline(always)]
    pub unsafe fn push(&self, block: *mut Block, list_key: usize) {
        // SAFETY: per the contract, the block's memory is the page's again.
        unsafe { (*block).next = encode(self.free.get(), list_key) };
        self.free.set(block);
        // used >= 1 here, so no borrow reaches `taken`. The whole word, as
        // malloc's pop adds to it: a 16-bit store there would stall the next
        // pop's 32-bit load of the word (a failed store forward) whenever a
        // malloc follows a free on the same page.
        self.counts.set(self.counts.get() - 1);
    }

    /// Blocks handed out and not yet collected back (owner only).
    #[inline(always)]
    pub fn used(&self) -> u16 {
        self.counts.get() as u16
    }

    /// Blocks popped since the last fold, mod 2^16 (owner only).
    #[inline(always)]
    pub fn taken(&self) -> u16 {
        (self.counts.get() >> 16) as u16
    }

    /// Whether no block has come back to the page since it was taken (see
    /// the module invariants; owner only).
    #[inline]
    pub fn none_returned(&self) -> bool {
        self.taken() == self.used()
    }

    /// Subtract `count` collected blocks from `used` (owner only).
    #[inline(always)]
    pub(crate) fn sub_used(&self, count: u16) {
        self.counts.set(self.counts.get() - count as u32);
    }

    /// Take `taken` to 0, keeping `used` (owner only): the caller has
    /// folded it into the counters.
    pub(crate) fn clear_taken(&self) {
        self.counts.set(self.used() as u32);
    }

    /// (`taken`, `used`) as seen from a thread that does not own the page
    /// (statistics): a single hardware load, so the two agree with each
    /// other, though they may be a few blocks stale.
    ///
    /// # Safety
    /// `this` is a page descriptor in a mapped segment header.
    pub unsafe fn counts_seen(this: *const Page) -> (u16, u16) {
        // SAFETY: per the contract; see racy_load.
        let counts = unsafe { racy_load_u32(core::ptr::addr_of!((*this).counts).cast::<u32>()) };
        ((counts >> 16) as u16, counts as u16)
    }

    /// Size class of the blocks.
    #[inline(always)]
    pub fn class(&self) -> usize {
        self.class.load(Ordering::Relaxed) as usize
    }

    /// Blocks carved from the area so far.
    #[inline]
    pub fn capacity(&self) -> u16 {
        self.carved.load(Ordering::Relaxed)
    }

    /// Whether `ptr` (in this page's area) starts one of its first `bound`
    /// blocks, from one multiply and one compare: the low
    /// `RECIPROCAL_SHIFT` bits of `offset * reciprocal` are `k * (size - r)`
    /// at the start of block `k` (`r = 2^42 mod size`), below 2^21 since
    /// offsets are, and at least `reciprocal > 2^42 / size >= 2^22` past
    /// a start (blocks are at most 1 MiB): bits 22..42 are zero exactly at
    /// a start (`START_FRACTION`). Rotated to the top, above the index
    /// (bits 42..), they make any non-start compare above `bound`.
    #[inline(always)]
    pub fn starts_block_below(&self, ptr: *const u8, bound: u16) -> bool {
        let product = ((ptr as usize).wrapping_sub(self.start as usize) as u64).wrapping_mul(self.reciprocal);
        const FRACTION_BITS: u32 = RECIPROCAL_SHIFT - START_FRACTION.trailing_zeros();
        (product >> START_FRACTION.trailing_zeros()).rotate_right(FRACTION_BITS) < bound as u64
    }

    /// Whether `ptr` starts a carved block of a page with no flag set
    /// (`fast_capacity`): what a fast path may take as a block of its own
    /// without a closer look.
    #[inline(always)]
    pub fn starts_fast_block(&self, ptr: *const u8) -> bool {
        self.starts_block_below(ptr, self.fast_capacity.get())
    }

    /// Index of the block at `offset` bytes into the area (below 2 MiB).
    #[inline(always)]
    pub fn index_of(&self, offset: usize) -> usize {
        ((offset as u64).wrapping_mul(self.reciprocal) >> RECIPROCAL_SHIFT) as usize
    }

    /// Set `PAGE_*` bits (owner only): the page takes no fast frees. A
    /// plain load and store, no atomic read-modify-write: the owner is the
    /// only writer (other threads only read the flags), and a locked
    /// instruction would wait for every store in flight (pages go to the
    /// full queue and back on 1 in 10 mallocs in mid-sized churn).
    #[inline]
    pub fn set_flags(&self, bits: u8) {
        self.flags.store(self.flags.load(Ordering::Relaxed) | bits, Ordering::Relaxed);
        self.fast_capacity.set(0);
    }

    /// Clear `PAGE_*` bits (owner only, plain load and store as in
    /// `set_flags`); with none left the page takes fast frees again.
    #[inline]
    pub fn clear_flags(&self, bits: u8) {
        let flags = self.flags.load(Ordering::Relaxed) & !bits;
        self.flags.store(flags, Ordering::Relaxed);
        self.fast_capacity.set(if flags == 0 { self.capacity() } else { 0 });
    }

    /// Mark the page unused (its segment's bookkeeping, segment.rs).
    pub fn mark_unused(&self) {
        self.flags.store(PAGE_UNUSED, Ordering::Release);
        self.fast_capacity.set(0);
    }

    /// Whether `block` (a block start) lies inside the carved area. On a
    /// raw pointer, as [`Page::block_of`].
    ///
    /// # Safety
    /// As for [`Page::block_of`].
    #[inline(always)]
    pub unsafe fn block_is_carved(this: *const Page, block: *const u8) -> bool {
        // SAFETY: per the contract.
        let (start, carved, size) =
            unsafe { ((*this).start as usize, (*this).carved.load(Ordering::Relaxed) as usize, (*this).block_size as usize) };
        (block as usize).wrapping_sub(start) < carved * size
    }

    /// Carve the next run of blocks (`PAGE_EXTEND_BYTES`, or one block
    /// when it is larger, or what is left) onto the free
    /// list. Returns false when the page is fully carved (one compare,
    /// inline: refills ask it of every page they look at).
    #[inline(always)]
    pub fn extend(&self, list_key: usize) -> bool {
        self.carved.load(Ordering::Relaxed) < self.reserved && self.carve(list_key)
    }

    /// `extend` for a page with blocks left to carve. Out of line: the
    /// malloc paths that call it stay free of its registers.
    #[inline(never)]
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    fn carve(&self, list_key: usize) -> bool {
        let capacity = self.capacity();
        let remaining = self.reserved - capacity;
        if remaining == 0 {
            return false;
        }
        let size = self.block_size as usize;
        let count = (PAGE_EXTEND_BYTES / size).max(1).min(remaining as usize);
        let first = self.start as usize + capacity as usize * size;
        // Link blocks in address order: first -> first+size -> ... -> old free.
        let mut next = self.free.get();
        for i in (0..count).rev() {
            let block = (first + i * size) as *mut Block;
            // SAFETY: block lies in the page's area (capacity + count <=
            // reserved) which the segment owns; nobody else uses it.
            unsafe { (*block).next = encode(next, list_key) };
            next = block;
        }
        self.free.set(next);
        if self.flags.load(Ordering::Relaxed) & PAGE_STRICT != 0 {
            // SAFETY: the blocks were just carved, nobody else uses them.
            unsafe { crate::strict::forget_signatures(first as *mut u8, size, count) };
        }
        self.set_carved(capacity + count as u16);
        true
    }

    /// `capacity` blocks are carved now; the fast free path's bound follows
    /// on a page with no flag set.
    #[inline(always)]
    fn set_carved(&self, capacity: u16) {
        self.carved.store(capacity, Ordering::Relaxed);
        if self.flags.load(Ordering::Relaxed) == 0 {
            self.fast_capacity.set(capacity);
        }
    }

    /// Whether the local free list has a block.
    #[inline(always)]
    pub fn has_free(&self) -> bool {
        !is_list_end(self.free.get())
    }

    /// Call `f` with each block of the local free list, in list order
    /// (owner only). `f` may write a block's words past its first two. The
    /// walk stops at a link that is not the start of a carved block of this
    /// page, and after as many blocks as are carved: a list that a write
    /// after free corrupted (a link elsewhere, a cycle) is walked no further,
    /// and the pop that reaches the bad link reports it.
    pub fn for_each_free(&self, list_key: usize, mut f: impl FnMut(*mut Block)) {
        let capacity = self.capacity();
        let area = self.start as usize..self.start as usize + capacity as usize * self.block_size as usize;
        let mut block = self.free.get();
        for _ in 0..capacity {
            if is_list_end(block) || !area.contains(&(block as usize)) || !self.starts_block_below(block as *const u8, capacity) {
                return;
            }
            // SAFETY: a carved block of this page on its local list: free,
            // and `f` leaves its link alone.
            let next = decode(unsafe { (*block).next }, list_key);
            f(block);
            block = next;
        }
    }

    /// Number of blocks on the local free list (for checks and tests).
    pub fn count_free(&self, list_key: usize) -> usize {
        let mut n = 0;
        let mut block = self.free.get();
        while !is_list_end(block) {
            n += 1;
            // SAFETY: the local list only links blocks of this page.
            block = decode(unsafe { (*block).next }, list_key);
        }
        n
    }
}

/// Start loading the line of `block`, the list's new head, which the next
/// pop of this page reads: a page's free blocks can wait there long after
/// their lines left the cache (frees land on whichever page a block came
/// from, not the current one), and a program that frees at random then pays
/// a miss in every malloc (tcmalloc prefetches its next object the same
/// way). A hint: it reads nothing the program sees and never faults.
#[inline(always)]
fn prefetch(block: *mut Block) {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: `prefetcht0` only hints the cache: it changes no memory and
    // never faults, whatever the address.
    unsafe {
        core::arch::asm!("prefetcht0 [{0}]", in(reg) block, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    let _ = block;
}

/// A 4 KiB block area, aligned as pages' areas are, inside one segment
/// and not at its first byte (where no block of a real page is: it ends a
/// list) (tests).
#[cfg(test)]
#[repr(align(4096))]
pub(crate) struct TestArea([u8; 8192]);

#[cfg(test)]
impl TestArea {
    pub(crate) fn new() -> Self {
        TestArea([0; 8192])
    }

    /// The area's first byte: the second half of the memory when the first
    /// starts a segment.
    pub(crate) fn start(&mut self) -> *mut u8 {
        not_at_a_segment_start(self.0.as_mut_ptr(), 4096)
    }

    /// A page of 64-byte blocks over the area, none carved yet.
    pub(crate) fn page(&mut self) -> Page {
        let mut page = Page::UNUSED;
        page.init(0, 64, self.start(), 4096);
        page
    }
}

/// Of two adjacent `half`-byte areas at `memory` (`half`-aligned, so
/// neither crosses a segment boundary), the first unless it starts a
/// segment (tests).
#[cfg(test)]
pub(crate) fn not_at_a_segment_start(memory: *mut u8, half: usize) -> *mut u8 {
    if memory as usize & SEGMENT_MASK == 0 {
        memory.wrapping_add(half)
    } else {
        memory
    }
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)] // test code exercising the contracts
mod tests {
    use super::*;
    use crate::class::{class_size, class_stride, CLASS_COUNT};

    #[test]
    fn reciprocal_division_and_block_starts_are_exact_for_every_class() {
        // Every class's size and its stride (the block spacing of its pages).
        let sizes = (0..CLASS_COUNT).flat_map(|class| [(class, class_size(class)), (class, class_stride(class))]);
        for (class, size) in sizes {
            let mut page = Page::UNUSED;
            let start = 0x4000_0000usize as *mut u8;
            page.init(class, size, start, 2 << 20);
            let blocks = (2 << 20) / size;
            // Every block of a 2 MiB area: the start test's bound depends
            // on the index (under Miri, the smaller configuration: the
            // first and last 64 blocks).
            let indices: std::vec::Vec<usize> =
                if cfg!(miri) { (0..blocks.min(64)).chain(blocks.saturating_sub(64).max(64)..blocks).collect() } else { (0..blocks).collect() };
            for index in indices {
                let block = start as usize + index * size;
                for delta in [0, 1, 15, size / 2, size - 1] {
                    let got = unsafe { Page::block_of(&page, (block + delta) as *const u8) } as usize;
                    assert_eq!(got, block, "class {class} index {index} delta {delta}");
                    let below = |bound: usize| page.starts_block_below((block + delta) as *const u8, bound.min(u16::MAX as usize) as u16);
                    if index < u16::MAX as usize {
                        assert_eq!(below(index + 1), delta == 0, "class {class} index {index} delta {delta}");
                    }
                    assert!(!below(index), "class {class} index {index} delta {delta}");
                }
            }
        }
    }

    #[test]
    fn a_page_carves_a_system_page_of_blocks_at_a_time_and_one_large_block_at_a_time() {
        // Two areas aligned to their size: inside one segment, as a page's
        // area is; the one not at a segment's first byte (which ends a list).
        #[repr(C, align(65536))]
        struct Area([u8; 128 << 10]);
        let mut area = std::boxed::Box::new(Area([0; 128 << 10]));
        let start = not_at_a_segment_start(area.0.as_mut_ptr(), 64 << 10);
        let key = 0x5a5a_0000;
        // (block size, blocks per carve): 4 KiB worth, or one block.
        for (size, run) in [(64, 64), (1024, 4), (4096, 1), (12288, 1)] {
            let mut page = Page::UNUSED;
            page.init(0, size, start, 64 << 10);
            let mut carved = 0;
            while page.extend(key) {
                let expected = run.min(page.reserved as usize - carved);
                carved += expected;
                assert_eq!(page.capacity() as usize, carved, "block size {size}");
                assert_eq!(page.count_free(key), carved, "block size {size}");
            }
            assert_eq!(carved, page.reserved as usize, "block size {size}: every block carved in the end");
        }
    }

    #[test]
    fn a_pop_refuses_a_link_out_of_the_segment_and_one_that_decodes_to_null() {
        let mut area = TestArea::new();
        let key = 0x5a5a_0000;
        let page = area.page();
        assert!(page.extend(key));
        let blocks = page.count_free(key);
        let first = page.free.get();
        let no_wrap = |block| block;
        // The list ends at an address of its segment that no block has.
        assert!(is_list_end(list_end(area.start())) && !is_list_end(first));
        // Null lies in the first segment, where no real segment is (its
        // first page is never mapped); Miri may place the area there.
        let null_is_foreign = first as usize >> SEGMENT_SHIFT != 0;
        let bad_links = [core::ptr::null_mut(), (first as usize ^ (1 << SEGMENT_SHIFT)) as *mut Block];
        for bad in bad_links.into_iter().skip(if null_is_foreign { 0 } else { 1 }) {
            // A write after free into the first block's link.
            unsafe { (*first).next = encode(bad, key) };
            assert!(unsafe { page.pop(key, no_wrap) }.is_null(), "link {bad:p} refused");
            assert!(page.has_free(), "the list stays as it was: the caller reports it");
            assert_eq!(page.used(), 0);
        }
        // Mended, every block pops, then the list's end stops the pops.
        unsafe { (*first).next = encode((first as usize + 64) as *mut Block, key) };
        for _ in 0..blocks {
            assert!(!unsafe { page.pop(key, no_wrap) }.is_null());
        }
        assert!(!page.has_free() && unsafe { page.pop(key, no_wrap) }.is_null());
        assert_eq!(page.used() as usize, blocks);
    }

    #[test]
    fn pops_count_taken_and_used_in_one_word_and_report_each_wrap() {
        let mut area = TestArea::new();
        let key = 0x5a5a_0000;
        let page = area.page();
        assert!(page.extend(key));
        let wraps = Cell::new(0u32);
        // SAFETY: the page is ours; its blocks are free.
        let count = |block| {
            wraps.set(wraps.get() + 1);
            block
        };
        let held = unsafe { page.pop(key, count) };
        assert_eq!((page.taken(), page.used()), (1, 1));
        for i in 1..=140_000u32 {
            // SAFETY: as above; the block goes back at once.
            unsafe {
                let block = page.pop(key, count);
                assert!(!block.is_null());
                (*block).marker = 1;
                page.push(block, key);
            }
            assert_eq!(page.used(), 1, "a free takes used back, never taken");
            assert_eq!(wraps.get(), (i + 1) >> 16, "one report per 2^16 pops, at the wrap");
        }
        assert_eq!(page.taken() as u32, 140_001 & 0xffff);
        // SAFETY: a page descriptor in memory.
        assert_eq!(unsafe { Page::counts_seen(&page) }, (page.taken(), 1));
        page.clear_taken();
        assert_eq!((page.taken(), page.used()), (0, 1));
        // SAFETY: held is a block of the page, in use.
        unsafe { page.push(held, key) };
        assert_eq!((page.taken(), page.used()), (0, 0), "no borrow from used reaches taken");
    }
}
