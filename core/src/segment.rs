//! Segments ("SuperSlabs"): 2 MiB-aligned spans whose header describes
//! every page inside. This module is the only pointer -> metadata code.
//!
//! ```text
//!  segment (2 MiB, 2 MiB aligned)
//!  +-----------+----------------+----------------+-----+----------------+
//!  | header    | page 0 blocks  | page 1 blocks  | ... | page n-1       |
//!  | Segment   | (shortened by  |                |     |                |
//!  | 8 KiB     |  the header)   |                |     |                |
//!  +-----------+----------------+----------------+-----+----------------+
//!  ^ (ptr - 1) & !SEGMENT_MASK                page index = (ptr - segment) >> page_shift
//!
//!  huge mapping: header at a 2 MiB boundary, one block after it
//!  +--(unused alignment slack)--+-----------+------------------------------+
//!  map_base                     | header    | block (align-aligned) ...    |
//! ```
//!
//! Invariants:
//! - `used_pages == |{ p in pages[..page_count] : p is in use }|`.
//! - `dirty & (1 << i) != 0` only for unused pages `i`.
//! - A segment's address is set in [`SEGMENT_MAP`] exactly while its header
//!   is mapped; `free` consults the map before reading any header, so a
//!   pointer hakmem never returned is recognized without a fault.
//! - `owner` is the address of the owning heap, or one of the `*_OWNER`
//!   constants below (never 0, so a thread without a heap never matches).

use crate::class::SegmentKind;
use crate::config::{MAX_PAGES_PER_SEGMENT, SEGMENT_HEADER_BYTES, SEGMENT_MASK, SEGMENT_SHIFT};
use crate::page::Page;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use static_assertions::const_assert;

/// Owner of a segment whose heap's thread exited (pages await adoption).
pub const ABANDONED_OWNER: usize = 1;
/// Owner of a huge mapping (no heap owns it; frees go to the global cache).
pub const HUGE_OWNER: usize = 2;
/// Owner of an empty segment sitting in the global segment cache.
pub const CACHED_OWNER: usize = 3;

/// State of a huge mapping, in `Segment::huge_state`.
pub const HUGE_LIVE: usize = 1;
pub const HUGE_CACHED: usize = 2;

/// The header at the start of every segment.
#[repr(C)]
pub struct Segment {
    /// Owning heap address or an `*_OWNER` constant.
    pub owner: AtomicUsize,
    /// What the segment holds.
    pub kind: SegmentKind,
    /// log2 of the page size.
    pub page_shift: u8,
    /// Pages in this segment (1 for large and huge).
    pub page_count: u8,
    /// Pages currently in use.
    pub used_pages: u8,
    /// Unused pages whose memory was touched and not purged since (bit i:
    /// page i). Reused first (warm); purged in bulk by the owning heap.
    pub dirty: u32,
    /// Links in the owner heap's segment list, the abandoned list or a cache.
    pub next: *mut Segment,
    pub prev: *mut Segment,
    /// The whole mapping this header belongs to (huge mappings may start
    /// before the header; paged segments start at the header).
    pub map_base: *mut u8,
    pub map_size: usize,
    /// Huge only: offset of the block from the header, its usable size and
    /// its state (`HUGE_LIVE` / `HUGE_CACHED`).
    pub huge_offset: usize,
    pub huge_size: usize,
    pub huge_state: AtomicUsize,
    /// Page descriptors; only `pages[..page_count]` are meaningful.
    pub pages: [Page; MAX_PAGES_PER_SEGMENT],
}

const_assert!(core::mem::size_of::<Segment>() <= SEGMENT_HEADER_BYTES);

impl Segment {
    /// The segment header for `ptr` (which need not be valid).
    ///
    /// Masks `ptr - 1`: no block starts at offset 0 of a segment (the header
    /// is there), so a block that starts exactly on a 2 MiB boundary (a huge
    /// block aligned to 2 MiB or more) maps to the header just before it.
    #[inline(always)]
    pub fn of_ptr(ptr: *const u8) -> *mut Segment {
        ((ptr as usize).wrapping_sub(1) & !SEGMENT_MASK) as *mut Segment
    }

    /// The page descriptor covering `ptr`, which lies in this segment.
    ///
    /// # Safety
    /// `this` is a live segment header and `ptr` lies inside its first 2 MiB.
    #[inline(always)]
    pub unsafe fn page_of(this: *mut Segment, ptr: *const u8) -> *mut Page {
        // SAFETY: the caller guarantees the header is live and ptr lies in
        // its first 2 MiB; page_shift >= 16, so the index is below 32 (the
        // length of `pages`): no bounds check is needed.
        unsafe {
            let index = (ptr as usize - this as usize) >> (*this).page_shift;
            debug_assert!(index < MAX_PAGES_PER_SEGMENT);
            (core::ptr::addr_of_mut!((*this).pages) as *mut Page).add(index)
        }
    }

    /// Index of a page descriptor in its segment's `pages`.
    #[inline(always)]
    pub fn page_index(this: *mut Segment, page: *const Page) -> usize {
        let first = this as usize + core::mem::offset_of!(Segment, pages);
        (page as usize - first) / core::mem::size_of::<Page>()
    }

    /// Start and length of the block area of page `index`.
    pub fn page_area(this: *mut Segment, index: usize, page_shift: usize) -> (*mut u8, usize) {
        let page_size = 1usize << page_shift;
        let start = if index == 0 { SEGMENT_HEADER_BYTES } else { index << page_shift };
        let end = (index << page_shift) + page_size;
        ((this as usize + start) as *mut u8, end - start)
    }
}

// ---------------------------------------------------------------------------
// The segment map: one bit per 2 MiB of a 47-bit address space (8 MiB of
// zero-initialised static memory, touched only where segments live).
// Higher address bits are ignored: a kernel's higher-half addresses map onto
// the same bits, which is exact as long as it does not also manage the lower
// half's addresses.

const MAP_ADDRESS_BITS: usize = 47;
const MAP_WORDS: usize = 1 << (MAP_ADDRESS_BITS - SEGMENT_SHIFT - 6);

static SEGMENT_MAP: [AtomicU64; MAP_WORDS] = [const { AtomicU64::new(0) }; MAP_WORDS];

#[inline(always)]
fn map_slot(segment: *const Segment) -> (usize, u64) {
    let index = (segment as usize >> SEGMENT_SHIFT) & ((1 << (MAP_ADDRESS_BITS - SEGMENT_SHIFT)) - 1);
    (index >> 6, 1u64 << (index & 63))
}

/// Whether `segment` is a header hakmem mapped (and has not unmapped).
#[inline(always)]
pub fn segment_is_known(segment: *const Segment) -> bool {
    let (word, bit) = map_slot(segment);
    SEGMENT_MAP[word].load(Ordering::Relaxed) & bit != 0
}

/// Record that a segment header is mapped at `segment`.
pub fn segment_map_insert(segment: *const Segment) {
    let (word, bit) = map_slot(segment);
    SEGMENT_MAP[word].fetch_or(bit, Ordering::Release);
}

/// Record that the segment header at `segment` is about to be unmapped.
pub fn segment_map_remove(segment: *const Segment) {
    let (word, bit) = map_slot(segment);
    SEGMENT_MAP[word].fetch_and(!bit, Ordering::Release);
}
