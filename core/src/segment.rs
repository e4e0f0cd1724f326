//! Segments ("SuperSlabs"): `SEGMENT_SIZE`-aligned spans (2 MiB, or 256 KiB
//! with the `small-segments` geometry; sizes below are the default's) whose header describes
//! every page inside. This module is the only pointer -> metadata code, and
//! the only code that changes a segment's page bookkeeping (`used_pages`,
//! `dirty`): pages are taken and released here.
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
//!  strict mode (guard.rs): the unused pages between the header and page 0, and the
//!  segment's last OS page (`tail_guard`, left out of the last page's area), are guards
//!
//!  huge mapping: header at a 2 MiB boundary, one block after it
//!  +--(unused alignment slack)--+-----------+------------------------------+
//!  map_base                     | header    | block (align-aligned) ...    |
//! ```
//!
//! Invariants:
//! - `used_pages == |{ p in pages[..page_count] : p is in use }|`.
//! - `(dirty | purged) & (1 << i) != 0` only for unused pages `i`, and
//!   `dirty & purged == 0`.
//! - A segment's address is set in `SEGMENT_MAP` exactly while its header
//!   is mapped; `free` consults the map before reading any header, so a
//!   pointer hakmem never returned is recognized without a fault.
//! - `owner` is the address of the owning heap, or one of the `*_OWNER`
//!   constants below (never 0, so a thread without a heap never matches).

use crate::class::{class_stride, SegmentKind};
use crate::config::{MAP_WINDOWS, MAP_WINDOW_BITS, MAX_PAGES_PER_SEGMENT, SEGMENT_HEADER_BYTES, SEGMENT_MASK, SEGMENT_SHIFT, SEGMENT_SIZE};
use crate::memory::Memory;
use crate::page::{Page, PAGE_UNUSED};
use crate::provider::PageProvider;
use core::ptr::{addr_of_mut, null_mut};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use static_assertions::const_assert;

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

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
///
/// Its first cache line holds what frees read from any thread (`owner`,
/// the geometry, the huge block's place) and nothing the owner writes as
/// pages come and go: a thread freeing into another's segment does not
/// miss on a line the owner keeps writing. The owner's page bookkeeping
/// starts on the second line; each page descriptor is one line of its own.
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
    /// Huge only: the mapping holds pages of several mappings (stitched,
    /// joined or filled after a growing remap, bigcache.rs), which the
    /// system may keep as several: moving it whole may fail on kernels
    /// before 6.17 (a live block is then copied), so it is a donor last.
    /// Linux 6.17 and later move such a range, and leave the part already
    /// moved where it went if they fail partway (an error while out of
    /// memory or mapping slots): a live pieced block whose remap fails so
    /// is not recovered (a known gap: the moved part would have to be
    /// found and moved back).
    pub pieced: bool,
    /// Bytes at the segment's end that are a guard page (strict mode,
    /// guard.rs): no page's block area covers them.
    pub tail_guard: u32,
    /// The whole mapping this header belongs to (huge mappings may start
    /// before the header; paged segments start at the header).
    pub map_base: *mut u8,
    pub map_size: usize,
    /// Huge only: offset of the block from the header, its usable size and
    /// its state (`HUGE_LIVE` / `HUGE_CACHED`).
    pub huge_offset: usize,
    pub huge_size: usize,
    pub huge_state: AtomicUsize,
    /// The heap that abandoned the segment (while it is abandoned).
    pub abandoned_by: usize,
    /// Pages currently in use.
    pub used_pages: u8,
    /// Unused pages whose memory was touched and not purged since (bit i:
    /// page i). Reused first (warm); purged in bulk by the owning heap, or
    /// by the segment store for segments it holds.
    pub dirty: u32,
    /// When each dirty page became dirty (ms), kept as the segment changes
    /// hands: the segment store purges pages by their own age. Kept too
    /// for a page once purged (`purged`): its reuse tells the learner how
    /// long it should have stayed.
    pub dirty_ms: [u64; MAX_PAGES_PER_SEGMENT],
    /// Unused pages that were released and then purged (bit i: page i),
    /// until taken again (learn.rs); forgotten when the geometry changes.
    pub purged: u32,
    /// Pages in use that were taken with all their memory zero (bit i:
    /// page i; a fresh mapping, or purged, where the provider's map or
    /// purge zeroes): nothing writes a page's area past its carved blocks,
    /// so a block carved from it now is zero (calloc's fresh blocks,
    /// alloc.rs). Set or cleared when the page is taken; cleared when its
    /// `taken` count wraps (page.rs invariants).
    pub zeroed: u32,
    /// Links in the owner heap's segment list, the abandoned list or a cache.
    pub next: *mut Segment,
    pub prev: *mut Segment,
    /// Per page: its first free block as the last sweep left it with every
    /// free block purged, else 0 (reset when the page is taken; owner
    /// only; block_purge.rs).
    pub swept_free: [usize; MAX_PAGES_PER_SEGMENT],
    /// Page descriptors; only `pages[..page_count]` are meaningful.
    pub pages: [Page; MAX_PAGES_PER_SEGMENT],
}

const_assert!(core::mem::offset_of!(Segment, used_pages) == 64);
const_assert!(core::mem::size_of::<Segment>() <= SEGMENT_HEADER_BYTES);

impl Segment {
    /// Write a fresh header of `kind` at `at`, for the mapping
    /// `map_base..map_base + map_size`, with no page in use, and enter it
    /// in the segment map. False when `at` lies outside the map's window:
    /// the caller must then not use the segment.
    ///
    /// # Safety
    /// `at` is segment aligned, inside that mapping, and its first
    /// `SEGMENT_HEADER_BYTES` are ours to write.
    #[must_use]
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub unsafe fn write_header(at: *mut Segment, owner: usize, kind: SegmentKind, map_base: *mut u8, map_size: usize) -> bool {
        let (page_shift, page_count) = Segment::geometry(kind, map_size.min(SEGMENT_SIZE));
        // A huge block's header has one page, the block, and is written
        // on every huge mapping: only its descriptor is (a paged segment's
        // are all, unused, so that a pointer past its last page finds an
        // unused one).
        let descriptors = if matches!(kind, SegmentKind::Huge) { 1 } else { MAX_PAGES_PER_SEGMENT };
        // SAFETY: per the contract; field by field, so that no whole header
        // is built on the stack and copied.
        unsafe {
            addr_of_mut!((*at).owner).write(AtomicUsize::new(owner));
            addr_of_mut!((*at).kind).write(kind);
            addr_of_mut!((*at).page_shift).write(page_shift as u8);
            addr_of_mut!((*at).page_count).write(page_count as u8);
            addr_of_mut!((*at).pieced).write(false);
            addr_of_mut!((*at).tail_guard).write(0);
            addr_of_mut!((*at).map_base).write(map_base);
            addr_of_mut!((*at).map_size).write(map_size);
            addr_of_mut!((*at).huge_offset).write(0);
            addr_of_mut!((*at).huge_size).write(0);
            addr_of_mut!((*at).huge_state).write(AtomicUsize::new(0));
            addr_of_mut!((*at).abandoned_by).write(0);
            addr_of_mut!((*at).used_pages).write(0);
            addr_of_mut!((*at).dirty).write(0);
            addr_of_mut!((*at).purged).write(0);
            addr_of_mut!((*at).zeroed).write(0);
            addr_of_mut!((*at).next).write(null_mut());
            addr_of_mut!((*at).prev).write(null_mut());
            addr_of_mut!((*at).swept_free).write([0; MAX_PAGES_PER_SEGMENT]);
            let dirty_ms = addr_of_mut!((*at).dirty_ms) as *mut u64;
            let pages = addr_of_mut!((*at).pages) as *mut Page;
            for i in 0..descriptors {
                dirty_ms.add(i).write(0);
                pages.add(i).write(Page::UNUSED);
            }
            // Every field is named: a new one fails to compile here until
            // it is written above. (Wildcards on the place: nothing is read
            // and no reference is made.)
            let Segment {
                owner: _,
                kind: _,
                page_shift: _,
                page_count: _,
                pieced: _,
                tail_guard: _,
                map_base: _,
                map_size: _,
                huge_offset: _,
                huge_size: _,
                huge_state: _,
                abandoned_by: _,
                used_pages: _,
                dirty: _,
                dirty_ms: _,
                purged: _,
                zeroed: _,
                next: _,
                prev: _,
                swept_free: _,
                pages: _,
            } = *at;
        }
        segment_map_insert(at)
    }

    /// Page shift and page count of a segment of `kind` and `len` bytes. A
    /// whole segment has its kind's pages. A short one (the end of a fixed
    /// arena) has pages as small as still hold eight blocks of the kind's
    /// largest class (and twice the header), so that many classes share
    /// it, and a shorter last page when that holds one such block besides
    /// a strict-mode tail guard (at most a header's bytes). Huge: one
    /// page, the block.
    pub const fn geometry(kind: SegmentKind, len: usize) -> (usize, usize) {
        let mut shift = kind.page_shift();
        if matches!(kind, SegmentKind::Huge) {
            return (shift, 1);
        }
        if len < SEGMENT_SIZE {
            let least = max(2 * SEGMENT_HEADER_BYTES, 8 * kind.max_block()).next_power_of_two().trailing_zeros() as usize;
            while shift > least && len >> (shift - 1) < MAX_PAGES_PER_SEGMENT {
                shift -= 1;
            }
        }
        let (whole, rest) = (len >> shift, len & ((1 << shift) - 1));
        let area = if whole == 0 { rest.saturating_sub(SEGMENT_HEADER_BYTES) } else { rest };
        (shift, whole + (area >= SEGMENT_HEADER_BYTES + kind.max_block()) as usize)
    }

    /// Bytes a short segment of `kind` needs (its header, and a page as
    /// [`Segment::geometry`] counts one), in multiples of `page` bytes.
    pub const fn short_min(kind: SegmentKind, page: usize) -> usize {
        (2 * SEGMENT_HEADER_BYTES + kind.max_block()).next_multiple_of(page)
    }

    /// Whether the segment is shorter than `SEGMENT_SIZE` (served from the
    /// end of a fixed arena: never cached, and never reused for another
    /// kind).
    ///
    /// # Safety
    /// `this` is a live paged segment.
    pub unsafe fn is_short(this: *mut Segment) -> bool {
        // SAFETY: per the contract.
        unsafe { (*this).map_size < SEGMENT_SIZE }
    }

    /// The segment header for `ptr` (which need not be valid).
    ///
    /// Masks `ptr - 1`: no block starts at offset 0 of a segment (the header
    /// is there), so a block that starts exactly on a 2 MiB boundary (a huge
    /// block aligned to 2 MiB or more) maps to the header just before it.
    #[inline(always)]
    pub fn of_ptr(ptr: *const u8) -> *mut Segment {
        ((ptr as usize).wrapping_sub(1) & !SEGMENT_MASK) as *mut Segment
    }

    /// Whether `ptr`, whose [`Segment::of_ptr`] is the known header `this`,
    /// lies inside the segment: masking `ptr - 1` also maps the address
    /// right past a segment's end to it, which only a huge block may start
    /// at (a foreign pointer there would index a page past the last), and
    /// a short segment ends before `SEGMENT_SIZE`.
    ///
    /// # Safety
    /// `this` is a mapped header (the segment map says so).
    pub unsafe fn holds(this: *mut Segment, ptr: *const u8) -> bool {
        let offset = (ptr as usize).wrapping_sub(this as usize);
        // SAFETY: per the contract. (A short segment ends before SEGMENT_SIZE.)
        unsafe { offset < SEGMENT_SIZE && offset < (*this).map_size || (*this).owner.load(Ordering::Relaxed) == HUGE_OWNER }
    }

    /// The page descriptor covering `ptr`, which lies in this segment.
    ///
    /// # Safety
    /// `this` is a live segment header and `ptr` lies inside the segment
    /// (`holds`).
    #[inline(always)]
    pub unsafe fn page_of(this: *mut Segment, ptr: *const u8) -> *mut Page {
        // SAFETY: the caller guarantees the header is live and ptr lies in
        // the segment (`holds`); its pages are at most MAX_PAGES_PER_SEGMENT
        // (`geometry`), so the index is in bounds (the length of `pages`):
        // no bounds check is needed.
        unsafe { Segment::page_at(this, ptr, (*this).page_shift as usize) }
    }

    /// [`Segment::page_of`] with the segment's `page_shift` known.
    ///
    /// # Safety
    /// As for `page_of`; `page_shift` is the segment's.
    #[inline(always)]
    pub unsafe fn page_at(this: *mut Segment, ptr: *const u8, page_shift: usize) -> *mut Page {
        // SAFETY: per the contract (the index is below 32, see page_of).
        unsafe {
            let index = (ptr as usize - this as usize) >> page_shift;
            debug_assert!(index < MAX_PAGES_PER_SEGMENT);
            (core::ptr::addr_of_mut!((*this).pages) as *mut Page).add(index)
        }
    }

    /// The page descriptor covering `ptr`, a block of a paged segment.
    ///
    /// # Safety
    /// `ptr` lies in a live segment's first 2 MiB, past its header.
    #[inline(always)]
    pub unsafe fn page_of_block<T>(ptr: *const T) -> *mut Page {
        let ptr = ptr as *const u8;
        // SAFETY: per the contract, of_ptr finds the live header.
        unsafe { Segment::page_of(Segment::of_ptr(ptr), ptr) }
    }

    /// Whether the live header `this` is a huge block's.
    ///
    /// # Safety
    /// `this` is a mapped segment header.
    pub unsafe fn is_huge(this: *mut Segment) -> bool {
        // SAFETY: per the contract.
        unsafe { (*this).owner.load(Ordering::Relaxed) == HUGE_OWNER }
    }

    /// Usable bytes from `ptr` to the end of its block (huge or paged).
    ///
    /// # Safety
    /// `this` is the live header of `ptr`'s segment, and `ptr` a live block
    /// (or inside one).
    pub unsafe fn usable_size(this: *mut Segment, ptr: *const u8) -> usize {
        // SAFETY: per the contract.
        unsafe {
            if Segment::is_huge(this) {
                return this as usize + (*this).huge_offset + (*this).huge_size - ptr as usize;
            }
            let page = Segment::page_of(this, ptr);
            let block = Page::block_of(page, ptr);
            let block_size = (*page).block_size as usize;
            if (*page).flags.load(Ordering::Relaxed) & crate::page::PAGE_STRICT != 0 {
                return crate::strict::usable_size(block, block_size, ptr);
            }
            block as usize + block_size - ptr as usize
        }
    }

    /// Index of a page descriptor in its segment's `pages`.
    #[inline(always)]
    pub fn page_index(this: *mut Segment, page: *const Page) -> usize {
        let first = this as usize + core::mem::offset_of!(Segment, pages);
        (page as usize - first) / core::mem::size_of::<Page>()
    }

    /// Whether `page` (of this segment, in use) was taken with all its
    /// memory zero and has not lost the bit since (`zeroed`).
    ///
    /// # Safety
    /// `this` is a mapped header and `page` one of its pages.
    #[inline]
    pub unsafe fn page_zeroed(this: *mut Segment, page: *const Page) -> bool {
        // SAFETY: per the contract.
        unsafe { (*this).zeroed & (1 << Segment::page_index(this, page)) != 0 }
    }

    /// Set or clear `page`'s bit in `zeroed` (owner only).
    ///
    /// # Safety
    /// As for [`Segment::page_zeroed`], and the caller owns the segment.
    #[inline]
    pub unsafe fn set_page_zeroed(this: *mut Segment, page: *const Page, zeroed: bool) {
        let index = Segment::page_index(this, page);
        // SAFETY: per the contract.
        unsafe { (*this).zeroed = (*this).zeroed & !(1 << index) | (zeroed as u32) << index };
    }

    /// Start and length of the block area of page `index` (the header
    /// shortens page 0, a tail guard or a short segment's end the last
    /// page).
    ///
    /// # Safety
    /// `this` is a live segment header.
    pub unsafe fn page_area(this: *mut Segment, index: usize) -> (*mut u8, usize) {
        // SAFETY: per the contract.
        let (page_shift, tail_guard, len) = unsafe { ((*this).page_shift as usize, (*this).tail_guard as usize, (*this).map_size) };
        let start = if index == 0 { Segment::first_block_offset(tail_guard) } else { index << page_shift };
        // A short segment's last page ends with its mapping.
        let end = ((index + 1) << page_shift).min(len.min(SEGMENT_SIZE) - tail_guard);
        ((this as usize + start) as *mut u8, end - start)
    }

    /// Where page 0's blocks start: after the header; in a guarded segment
    /// (strict mode, guard.rs: `guard` is the guard's size, an OS page,
    /// else 0) after the guard page between the header's pages and page 0,
    /// which needs a page of its own where the header fills
    /// `SEGMENT_HEADER_BYTES` (the small geometry's). Not where OS pages
    /// are so large that the guard would take more than another
    /// `SEGMENT_HEADER_BYTES` from page 0 (16 and 64 KiB pages): there
    /// page 0 starts in the header's last OS page, unguarded.
    pub const fn first_block_offset(guard: usize) -> usize {
        if guard == 0 {
            return SEGMENT_HEADER_BYTES;
        }
        let guarded = Segment::header_end(guard) + guard;
        if guarded > 2 * SEGMENT_HEADER_BYTES {
            SEGMENT_HEADER_BYTES
        } else {
            max(SEGMENT_HEADER_BYTES, guarded)
        }
    }

    /// End of the OS pages (`page` bytes each) the header occupies: a
    /// front guard starts there.
    pub const fn header_end(page: usize) -> usize {
        core::mem::size_of::<Segment>().next_multiple_of(page)
    }

    /// Bytes of the segment's dirty pages (as counted by heaps' purge policy).
    ///
    /// # Safety
    /// `this` is live and owned by the caller.
    pub unsafe fn dirty_bytes(this: *mut Segment) -> usize {
        // SAFETY: per the contract.
        unsafe { ((*this).dirty.count_ones() as usize) << (*this).page_shift }
    }

    /// Give an empty segment the page geometry of `kind`, keeping track of
    /// which memory is still resident: a new page is dirty when any old
    /// dirty page overlaps it, else purged when an old purged one does (so
    /// that its reuse still tells the learner it was purged too soon).
    ///
    /// # Safety
    /// The caller owns `this`, and no page of it is in use.
    pub unsafe fn set_kind(this: *mut Segment, kind: SegmentKind) {
        // A census may be reading the geometry of this mapped header.
        let _census = HEADER_CENSUS.lock();
        // SAFETY: per the contract.
        unsafe {
            let (new_shift, page_count) = Segment::geometry(kind, (*this).map_size);
            let old_shift = (*this).page_shift as usize;
            let old_dirty = (*this).dirty;
            let mut old = old_dirty | (*this).purged;
            let old_ms = (*this).dirty_ms;
            let (mut dirty, mut purged) = (0u32, 0u32);
            let mut dirty_ms = [0u64; MAX_PAGES_PER_SEGMENT];
            while old != 0 {
                let index = old.trailing_zeros() as usize;
                old &= old - 1;
                let into = if old_dirty & (1 << index) != 0 { &mut dirty } else { &mut purged };
                let (first, last) = ((index << old_shift) >> new_shift, (((index + 1) << old_shift) - 1) >> new_shift);
                for (new_index, ms) in dirty_ms.iter_mut().enumerate().take(last + 1).skip(first) {
                    *into |= 1 << new_index;
                    // The youngest overlapping page decides (purged no sooner).
                    *ms = (*ms).max(old_ms[index]);
                }
            }
            (*this).dirty_ms = dirty_ms;
            (*this).kind = kind;
            (*this).page_shift = new_shift as u8;
            (*this).page_count = page_count as u8;
            (*this).used_pages = 0;
            (*this).dirty = dirty;
            (*this).purged = purged & !dirty;
        }
    }

    /// The pages in use of a segment, in address order. The set is read when
    /// the iteration starts, so the caller may release pages while iterating
    /// (even the segment itself, after its last page in use).
    ///
    /// # Safety
    /// `this` is live and owned by the caller when this is called.
    pub unsafe fn pages_in_use(this: *mut Segment) -> impl Iterator<Item = *mut Page> {
        let mut in_use = 0u32;
        // SAFETY: per the contract.
        unsafe {
            for index in 0..(*this).page_count as usize {
                if (*this).pages[index].flags.load(Ordering::Relaxed) & PAGE_UNUSED == 0 {
                    in_use |= 1 << index;
                }
            }
        }
        // SAFETY: the address of a field of the live header; nothing is read.
        let first = unsafe { core::ptr::addr_of_mut!((*this).pages) } as *mut Page;
        core::iter::from_fn(move || {
            if in_use == 0 {
                return None;
            }
            let index = in_use.trailing_zeros() as usize;
            in_use &= in_use - 1;
            // Address arithmetic only: index < page_count <= MAX_PAGES_PER_SEGMENT.
            Some(first.wrapping_add(index))
        })
    }

    /// Take an unused page of a segment with room (a dirty one first: its
    /// memory is still resident; then one purged since its release) and
    /// initialise it for `class`. Returns the page and whether it was
    /// dirty. A page released before tells the learner its reuse distance.
    ///
    /// # Safety
    /// The caller owns `this`, and `used_pages < page_count`.
    pub unsafe fn take_page<P: PageProvider>(this: *mut Segment, class: usize, memory: &Memory<P>) -> (*mut Page, bool) {
        // SAFETY: per the contract.
        unsafe {
            let shift = (*this).page_shift as usize;
            let dirty = (*this).dirty != 0;
            // Whether the page's memory is all zero: purged or never used,
            // where the provider's purge or map zeroes.
            let (index, zeroed) = if dirty || (*this).purged != 0 {
                let released = if dirty { &mut (*this).dirty } else { &mut (*this).purged };
                let index = released.trailing_zeros() as usize;
                *released &= !(1 << index);
                let distance = memory.now_ms().saturating_sub((*this).dirty_ms[index]);
                let units = ((1usize << shift) / crate::learn::PAGE_UNIT).max(1) as u32;
                memory.learner.page_reused(&memory.options, distance, dirty, units);
                let reused = if dirty { &memory.stats.pages_reused_warm } else { &memory.stats.pages_reused_cold };
                reused.fetch_add(1, Ordering::Relaxed);
                (index, !dirty && P::PURGE_ZEROES)
            } else {
                let index = (0..(*this).page_count as usize)
                    .find(|&i| (*this).pages[i].flags.load(Ordering::Relaxed) & PAGE_UNUSED != 0)
                    .unwrap_or_else(|| memory.fatal_at("segment page count is wrong at ", this as usize));
                (index, P::MAPS_ZEROED)
            };
            let page = &raw mut (*this).pages[index];
            let (start, bytes) = Segment::page_area(this, index);
            (*page).init(class, class_stride(class), start, bytes);
            // From here `taken` counts this use's pops (page.rs invariants).
            memory.stats.fold_taken((*page).taken() as usize);
            (*page).clear_taken();
            (*this).swept_free[index] = 0;
            Segment::set_page_zeroed(this, page, zeroed);
            (*this).used_pages += 1;
            memory.stats.page_taken(1 << shift);
            (page, dirty)
        }
    }

    /// Mark a page that holds no live block unused and dirty (its memory is
    /// resident until purged), and take it off the segment's and the
    /// counters' books. Returns the page's size in bytes.
    ///
    /// # Safety
    /// The caller owns the segment; `page` is one of its pages, in use, with
    /// `used == 0` and in no queue.
    pub unsafe fn release_page<P: PageProvider>(this: *mut Segment, page: *mut Page, memory: &Memory<P>) -> usize {
        // SAFETY: per the contract.
        unsafe {
            let page_bytes = 1usize << (*this).page_shift;
            (*page).mark_unused();
            (*page).free.set(null_mut());
            let index = Segment::page_index(this, page);
            (*this).dirty |= 1 << index;
            (*this).purged &= !(1 << index);
            (*this).dirty_ms[index] = memory.now_ms();
            (*this).used_pages -= 1;
            memory.learner.page_released(&memory.options);
            memory.stats.page_returned(page_bytes);
            page_bytes
        }
    }

    /// Purge every dirty unused page of a live segment; returns bytes purged.
    ///
    /// # Safety
    /// The caller owns the segment (its heap, or the abandoned-list lock).
    pub unsafe fn purge_dirty_pages<P: PageProvider>(this: *mut Segment, memory: &Memory<P>) -> usize {
        // SAFETY: per the contract.
        unsafe { Segment::purge_pages_dirty_since(this, memory, u64::MAX).0 }
    }

    /// Purge the dirty pages that became dirty at `cutoff_ms` or before.
    /// Returns bytes purged and when the oldest page left dirty became so
    /// (`u64::MAX`: none).
    ///
    /// # Safety
    /// As for [`Segment::purge_dirty_pages`].
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub unsafe fn purge_pages_dirty_since<P: PageProvider>(this: *mut Segment, memory: &Memory<P>, cutoff_ms: u64) -> (usize, u64) {
        let mut purged = 0;
        let mut oldest_left = u64::MAX;
        // Adjacent pages are purged together: one call per run of them.
        let mut run: Option<(usize, usize)> = None;
        // SAFETY: per the contract; unused pages hold nothing live.
        unsafe {
            let shift = (*this).page_shift as usize;
            let mut dirty = (*this).dirty;
            while dirty != 0 {
                let index = dirty.trailing_zeros() as usize;
                dirty &= dirty - 1;
                debug_assert!((*this).pages[index].flags.load(Ordering::Relaxed) & PAGE_UNUSED != 0);
                if (*this).dirty_ms[index] > cutoff_ms {
                    oldest_left = oldest_left.min((*this).dirty_ms[index]);
                    continue;
                }
                let (start, bytes) = Segment::page_area(this, index);
                let (start, end) = (start as usize, start as usize + bytes);
                run = match run {
                    Some((run_start, run_end)) if run_end == start => Some((run_start, end)),
                    Some((run_start, run_end)) => {
                        memory.purge(run_start, run_end - run_start);
                        Some((start, end))
                    }
                    None => Some((start, end)),
                };
                (*this).dirty &= !(1 << index);
                (*this).purged |= 1 << index;
                purged += 1usize << shift;
            }
            if let Some((run_start, run_end)) = run {
                memory.purge(run_start, run_end - run_start);
            }
        }
        (purged, oldest_left)
    }

    /// When the oldest dirty page became dirty (`u64::MAX`: none).
    ///
    /// # Safety
    /// `this` is live and owned by the caller.
    pub unsafe fn oldest_dirty_ms(this: *mut Segment) -> u64 {
        let mut oldest = u64::MAX;
        // SAFETY: per the contract.
        unsafe {
            let mut dirty = (*this).dirty;
            while dirty != 0 {
                let index = dirty.trailing_zeros() as usize;
                dirty &= dirty - 1;
                oldest = oldest.min((*this).dirty_ms[index]);
            }
        }
        oldest
    }
}

// ---------------------------------------------------------------------------
// The segment map: one bit per segment of an aligned window of
// 2^MAP_WINDOW_BITS bytes (8 MiB of zero-initialised static memory for the
// default 47-bit window, touched only where segments live), for up to
// `MAP_WINDOWS` windows. The first window is the one the first segment lies
// in: the low half of a process's address space, or a kernel's higher
// half, or any canonical range (57-bit addresses included); it is the one
// the lookups try first. Further windows are claimed as segments land
// outside those claimed (the small geometry's eight 4 GiB windows: arenas
// far apart, a host's heap and its mappings), and stay claimed. An address outside every claimed window is never known, so a
// pointer from the other half is reported, not aliased onto this one; a
// mapping the provider returns outside them all is not used.

const MAP_WORDS: usize = 1 << (MAP_WINDOW_BITS - SEGMENT_SHIFT - 6);
const NO_WINDOW: usize = 1;
const WINDOW_MASK: usize = (1 << MAP_WINDOW_BITS) - 1;

/// The map word and bit of a segment in its window.
#[inline(always)]
fn map_slot(segment: *const Segment) -> (usize, u64) {
    let index = (segment as usize & WINDOW_MASK) >> SEGMENT_SHIFT;
    (index >> 6, 1u64 << (index & 63))
}

/// The segment map: `WINDOWS` windows, claimed in order. Its bits live
/// outside the struct and are reached a word at a time: a reference to a
/// whole window (8 MiB in the default geometry) would have Miri's borrow
/// tracker retag all of it on every lookup (CI's Miri stage went from 16 to
/// over 30 minutes).
struct SegmentMap<const WINDOWS: usize> {
    /// Each window's base address (its high bits), set when the window is
    /// claimed; `NO_WINDOW` before (no address has those bits).
    bases: [AtomicUsize; WINDOWS],
    /// Each window's range of words that ever held a segment: a census
    /// reads only these (most of a window is never touched).
    words_used: [(AtomicUsize, AtomicUsize); WINDOWS],
    /// `WINDOWS * MAP_WORDS` words: window `w`'s are `w * MAP_WORDS..`.
    bits: *const AtomicU64,
}

// SAFETY: `bits` points to atomics shared like the rest of the map's.
unsafe impl<const WINDOWS: usize> Sync for SegmentMap<WINDOWS> {}

/// The process's map, and its bits (zero-initialised static memory,
/// touched only where segments live).
static SEGMENT_MAP: SegmentMap<MAP_WINDOWS> =
    // SAFETY: MAP_BITS holds MAP_WINDOWS * MAP_WORDS words, for good.
    unsafe { SegmentMap::over((&raw const MAP_BITS).cast()) };
static MAP_BITS: [[AtomicU64; MAP_WORDS]; MAP_WINDOWS] = [const { [const { AtomicU64::new(0) }; MAP_WORDS] }; MAP_WINDOWS];

impl<const WINDOWS: usize> SegmentMap<WINDOWS> {
    /// An empty map over the bits at `bits`.
    ///
    /// # Safety
    /// `bits` points to `WINDOWS * MAP_WORDS` zeroed words, used by no one
    /// else, that live as long as the map.
    const unsafe fn over(bits: *const AtomicU64) -> Self {
        SegmentMap {
            bases: [const { AtomicUsize::new(NO_WINDOW) }; WINDOWS],
            words_used: [const { (AtomicUsize::new(MAP_WORDS), AtomicUsize::new(0)) }; WINDOWS],
            bits,
        }
    }

    /// Word `word` of window `window`.
    #[inline(always)]
    fn word(&self, window: usize, word: usize) -> &AtomicU64 {
        debug_assert!(window < WINDOWS && word < MAP_WORDS);
        // SAFETY: in bounds of the words `over` was given, which live as
        // long as the map.
        unsafe { &*self.bits.add(window * MAP_WORDS + word) }
    }

    #[inline(always)]
    fn holds(&self, window: usize, segment: *const Segment) -> bool {
        let (word, bit) = map_slot(segment);
        self.word(window, word).load(Ordering::Relaxed) & bit != 0
    }

    /// The claimed window that holds `addr`, if any.
    fn window_of(&self, addr: usize) -> Option<usize> {
        let base = addr & !WINDOW_MASK;
        self.bases.iter().position(|claimed| claimed.load(Ordering::Relaxed) == base)
    }

    #[inline(always)]
    fn is_known(&self, segment: *const Segment) -> bool {
        if segment as usize & !WINDOW_MASK == self.bases[0].load(Ordering::Relaxed) {
            self.holds(0, segment)
        } else {
            WINDOWS > 1 && self.known_in_another_window(segment)
        }
    }

    #[cold]
    #[inline(never)]
    fn known_in_another_window(&self, segment: *const Segment) -> bool {
        self.window_of(segment as usize).is_some_and(|window| self.holds(window, segment))
    }

    fn at_or_below(&self, addr: usize) -> Option<*mut Segment> {
        let window = self.window_of(addr)?;
        let index = (addr & WINDOW_MASK) >> SEGMENT_SHIFT;
        let (mut word, mut mask) = (index >> 6, u64::MAX >> (63 - (index & 63)));
        // Only the words that ever held a segment (a fault far above them,
        // a stack overflow say, does not scan the whole map).
        let used = &self.words_used[window];
        let (lowest, end) = (used.0.load(Ordering::Relaxed), used.1.load(Ordering::Relaxed));
        if end == 0 || word < lowest {
            return None;
        }
        if word >= end {
            (word, mask) = (end - 1, u64::MAX);
        }
        loop {
            let bits = self.word(window, word).load(Ordering::Acquire) & mask;
            if bits != 0 {
                let index = word * 64 + 63 - bits.leading_zeros() as usize;
                return Some(((addr & !WINDOW_MASK) | index << SEGMENT_SHIFT) as *mut Segment);
            }
            if word <= lowest {
                return None;
            }
            (word, mask) = (word - 1, u64::MAX);
        }
    }

    fn insert(&self, segment: *const Segment) -> bool {
        let Some(window) = self.window_of(segment as usize).or_else(|| self.claim_window(segment as usize & !WINDOW_MASK)) else {
            return false;
        };
        let (word, bit) = map_slot(segment);
        // Loads first: the range rarely moves, and each read-modify-write
        // is a locked instruction.
        let used = &self.words_used[window];
        if used.0.load(Ordering::Relaxed) > word {
            used.0.fetch_min(word, Ordering::Relaxed);
        }
        if used.1.load(Ordering::Relaxed) <= word {
            used.1.fetch_max(word + 1, Ordering::Relaxed);
        }
        self.word(window, word).fetch_or(bit, Ordering::Release);
        true
    }

    /// Claim the first unclaimed window for `base` (or find it claimed by a
    /// racing insert: windows are claimed in order, so two inserts of one
    /// base meet at the same one). `None` when every window holds another
    /// base.
    #[cold]
    fn claim_window(&self, base: usize) -> Option<usize> {
        self.bases.iter().position(|claimed| match claimed.compare_exchange(NO_WINDOW, base, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => true,
            Err(other) => other == base,
        })
    }

    /// The caller holds `HEADER_CENSUS`.
    fn remove(&self, segment: *const Segment) {
        if let Some(window) = self.window_of(segment as usize) {
            let (word, bit) = map_slot(segment);
            self.word(window, word).fetch_and(!bit, Ordering::Release);
        }
    }

    /// Every segment in the map, window by window. The caller holds
    /// `HEADER_CENSUS`.
    fn visit(&self, mut visit: impl FnMut(*mut Segment)) {
        for window in 0..WINDOWS {
            let base = self.bases[window].load(Ordering::Relaxed);
            let used = &self.words_used[window];
            for word in used.0.load(Ordering::Relaxed)..used.1.load(Ordering::Relaxed) {
                let mut bits = self.word(window, word).load(Ordering::Acquire);
                while bits != 0 {
                    let index = (word << 6) | bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    visit((base | (index << SEGMENT_SHIFT)) as *mut Segment);
                }
            }
        }
    }
}

/// Whether `segment` is a header hakmem mapped (and has not unmapped).
#[inline(always)]
pub fn segment_is_known(segment: *const Segment) -> bool {
    SEGMENT_MAP.is_known(segment)
}

/// The highest known segment header at or below `addr` (the address of a
/// fault: strict mode's guard report looks up the mapping it lies in),
/// scanning its window's map down a word at a time.
pub fn segment_at_or_below(addr: usize) -> Option<*mut Segment> {
    SEGMENT_MAP.at_or_below(addr)
}

/// Record that a segment header is mapped at `segment`. False when it lies
/// outside every window and none is left to claim (the caller must not
/// use it).
#[must_use]
pub fn segment_map_insert(segment: *const Segment) -> bool {
    SEGMENT_MAP.insert(segment)
}

/// Record that the segment header at `segment` is about to be unmapped
/// (waits for a census reading the headers to finish).
pub fn segment_map_remove(segment: *const Segment) {
    let _census = HEADER_CENSUS.lock();
    SEGMENT_MAP.remove(segment);
}

/// Held while a census reads the headers of the segment map, and while a
/// header leaves the map or a mapped header changes its geometry
/// (`set_kind`): a census never reads a header being unmapped or rewritten.
/// Nothing else is locked while it is held.
static HEADER_CENSUS: spin::Mutex<()> = spin::Mutex::new(());

/// Call `visit` with every segment header in the map (paged and huge),
/// with no header unmapped or re-shaped meanwhile. For statistics: the
/// owners go on allocating and freeing, so what `visit` reads of pages
/// is a snapshot.
pub fn census(visit: impl FnMut(*mut Segment)) {
    let _census = HEADER_CENSUS.lock();
    SEGMENT_MAP.visit(visit);
}

/// Take the census lock for `fork` (see `Global::lock_all`).
pub fn census_lock_for_fork() {
    core::mem::forget(HEADER_CENSUS.lock());
}

/// Release the lock [`census_lock_for_fork`] took.
///
/// # Safety
/// Only after `census_lock_for_fork` in this thread (or the forked child).
pub unsafe fn census_unlock_after_fork() {
    // SAFETY: per the contract, the lock is held and its guard forgotten.
    unsafe { HEADER_CENSUS.force_unlock() };
}

#[cfg(all(test, not(feature = "small-segments")))] // page numbers of the default geometry
#[allow(clippy::undocumented_unsafe_blocks)] // test code exercising the contracts
mod tests {
    use super::*;

    #[test]
    fn set_kind_keeps_resident_memory_marked_dirty_in_the_new_geometry() {
        // A whole aligned segment of the test's own: its map bit then covers
        // only memory it owns, so a census or free running meanwhile in
        // another test reads this header, not unrelated heap data.
        let layout = std::alloc::Layout::from_size_align(SEGMENT_SIZE, SEGMENT_SIZE).unwrap();
        let segment = unsafe { std::alloc::alloc(layout) }.cast::<Segment>();
        assert!(!segment.is_null());
        unsafe {
            assert!(Segment::write_header(segment, CACHED_OWNER, SegmentKind::Small, null_mut(), SEGMENT_SIZE));
            // Small pages 3 and 17 (64 KiB each) dirty, at 5 and 9 ms.
            (*segment).dirty = (1 << 3) | (1 << 17);
            (*segment).dirty_ms[3] = 5;
            (*segment).dirty_ms[17] = 9;
            Segment::set_kind(segment, SegmentKind::Medium);
            // 512 KiB pages: small page 3 lies in medium page 0, 17 in 2.
            assert_eq!(((*segment).page_shift, (*segment).page_count), (19, 4));
            assert_eq!((*segment).dirty, 0b101);
            assert_eq!(((*segment).dirty_ms[0], (*segment).dirty_ms[2]), (5, 9));
            Segment::set_kind(segment, SegmentKind::Small);
            // Back to 64 KiB pages: each dirty medium page covers 8 of them.
            assert_eq!((*segment).dirty, 0xff | (0xff << 16));
            assert_eq!(((*segment).dirty_ms[7], (*segment).dirty_ms[16]), (5, 9));
            Segment::set_kind(segment, SegmentKind::Large);
            assert_eq!(((*segment).dirty, (*segment).dirty_ms[0]), (1, 9), "the youngest page decides");
            segment_map_remove(segment);
            std::alloc::dealloc(segment.cast(), layout);
        }
    }
}

#[cfg(test)]
mod both_geometries {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A map of its own (not the process's): three windows, unclaimed,
    /// over bits it leaks. (Not in the Miri list: 24 MiB of bits in the
    /// default geometry.)
    fn map_of_three() -> SegmentMap<3> {
        let bits: &'static [AtomicU64] = std::boxed::Box::leak((0..3 * MAP_WORDS).map(|_| AtomicU64::new(0)).collect());
        // SAFETY: 3 * MAP_WORDS zeroed words of its own, for good.
        unsafe { SegmentMap::over(bits.as_ptr()) }
    }

    #[test]
    fn the_map_claims_a_window_per_address_range_and_refuses_addresses_past_its_windows() {
        let map = map_of_three();
        // Addresses only: the map never reads a header.
        let window = |n: usize| n << MAP_WINDOW_BITS;
        let at = |w: usize, index: usize| (window(w) + index * SEGMENT_SIZE) as *const Segment;
        let (a, b, c, d) = (at(1, 3), at(5, 7), at(9, 64), at(12, 1));
        assert!(map.insert(a));
        assert_eq!(map.bases[0].load(Ordering::Relaxed), window(1), "the first segment's window comes first");
        assert!(map.is_known(a) && !map.is_known(at(1, 4)));
        assert!(!map.is_known(at(5, 3)), "the same offset in another window is not aliased");
        assert!(map.insert(b) && map.insert(c));
        assert!(map.is_known(b) && map.is_known(c) && map.is_known(a));
        assert!(!map.insert(d), "a fourth window");
        assert!(!map.is_known(d));
        assert_eq!(map.at_or_below(b as usize + 100), Some(b as *mut Segment));
        assert_eq!(map.at_or_below(c as usize + SEGMENT_SIZE * 1000), Some(c as *mut Segment));
        assert_eq!(map.at_or_below(at(5, 6) as usize), None, "nothing below b in its window");
        assert_eq!(map.at_or_below(d as usize), None);
        let visited = |map: &SegmentMap<3>| {
            let mut seen = Vec::new();
            map.visit(|segment| seen.push(segment as *const Segment));
            seen
        };
        assert_eq!(visited(&map), [a, b, c]);
        map.remove(b);
        assert!(!map.is_known(b) && map.is_known(a) && map.is_known(c));
        assert_eq!(visited(&map), [a, c]);
        assert!(map.insert(at(5, 2)), "a claimed window stays claimed");
    }

    #[test]
    fn page_0_starts_past_a_front_guard_of_its_own_only_where_it_fits() {
        let first = core::hint::black_box(Segment::first_block_offset);
        let header_pages = Segment::header_end(4096);
        assert_eq!(first(0), SEGMENT_HEADER_BYTES, "unguarded");
        // 4 KiB OS pages: a guard page between the header's and page 0.
        assert_eq!(first(4096), SEGMENT_HEADER_BYTES.max(header_pages + 4096));
        assert!(first(4096) >= header_pages + 4096);
        // 64 KiB OS pages: page 0 would lose most of itself; no guard.
        assert_eq!(first(64 << 10), SEGMENT_HEADER_BYTES);
    }
}
