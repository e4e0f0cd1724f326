//! Arena providers for embedders: a [`PageProvider`] over memory the
//! embedder hands over (a static array, a physical address range, and, for
//! a growable arena, more regions on demand from a callback), for kernels
//! and runtimes with no operating system underneath.
//!
//! ```text
//!  regions the embedder added (add_static, add_range, ArenaHost::grow)
//!  +------+----------------+------+-------------------+----------------+
//!  | free | segment (used) | free | huge block (used) | free           |
//!  +------+----------------+------+-------------------+----------------+
//!  free spans: one address-ordered list, each span's link in its first bytes
//! ```
//!
//! `map` is first fit in address order for segment-aligned requests;
//! metadata takes room below a span's first segment boundary (alignment
//! slack no segment can use), else the top of the highest span, so that it
//! never costs a segment. `map_up_to` takes the longest aligned room left
//! (a short segment, segment.rs). `unmap` coalesces with both
//! neighbours, `remap` resizes in place when the span after the block is
//! free. Memory cannot be given back to anyone, so `purge` does nothing.
//!
//! Invariants, under the lock:
//! - free spans are `ARENA_PAGE` aligned, at least one page long, disjoint,
//!   in ascending address order and never adjacent (a free coalesces);
//! - `in_use` is the bytes handed out by `map` and not returned;
//!   `bytes - in_use` is the sum of the free spans' lengths.

use crate::config::SEGMENT_SIZE;
use crate::provider::PageProvider;
use core::ptr::{null_mut, NonNull};

/// The arena's granule: every span it hands out is a multiple of it.
pub const ARENA_PAGE: usize = 4096;

/// What an arena needs from its embedder besides memory.
///
/// # Safety
/// A region [`ArenaHost::grow`] returns is readable and writable memory
/// that nothing else uses from then on, for as long as the arena is used.
/// No method allocates through the allocator this arena backs.
pub unsafe trait ArenaHost: Sync {
    /// Report heap corruption or misuse (one line) and stop: print it,
    /// then halt, reboot or exit. Never returns.
    fn fatal(&self, message: &[u8]) -> !;

    /// Diagnostics and statistics; the default drops them.
    fn write_message(&self, message: &[u8]) {
        let _ = message;
    }

    /// Entropy for the free-list keys (need not be strong); the default is
    /// a constant (the keys then differ only by the allocator's address).
    fn random_seed(&self) -> u64 {
        0x2545_f491_4f6c_dd1d
    }

    /// A monotonic clock in milliseconds; the default has none (see
    /// [`PageProvider::now_ms`]).
    fn now_ms(&self) -> u64 {
        0
    }

    /// More memory for a growable arena: a region of at least `min_bytes`
    /// (start, length), or `None`. Called when the arena has no span for a
    /// request, without the arena's lock held. The default never grows
    /// (a fixed arena).
    fn grow(&self, min_bytes: usize) -> Option<(NonNull<u8>, usize)> {
        let _ = min_bytes;
        None
    }
}

/// Use of an arena, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaUse {
    /// All memory added to the arena (after page alignment).
    pub bytes: usize,
    /// Handed out to the allocator (segments, huge blocks, metadata).
    pub in_use: usize,
    /// Not handed out: `bytes - in_use`.
    pub free: usize,
    /// The most `in_use` has ever been.
    pub high_water: usize,
    /// The largest free span: the largest mapping that can succeed now.
    pub largest_free: usize,
    /// How many free spans there are (fragmentation).
    pub free_spans: usize,
}

/// A free span's header, in its own first bytes.
struct FreeSpan {
    len: usize,
    next: *mut FreeSpan,
}

/// The free-span list and the counters (see the module invariants).
struct Spans {
    first: *mut FreeSpan,
    bytes: usize,
    in_use: usize,
    high_water: usize,
}

// SAFETY: the spans are only reached through the arena's lock.
unsafe impl Send for Spans {}

/// A page provider over embedder-supplied memory, fixed or growable.
pub struct Arena<H: ArenaHost> {
    host: H,
    spans: spin::Mutex<Spans>,
}

impl<H: ArenaHost> Arena<H> {
    /// An arena with no memory yet: add regions with [`Arena::add_static`]
    /// or [`Arena::add_range`], or let the host grow it.
    pub const fn new(host: H) -> Self {
        Arena { host, spans: spin::Mutex::new(Spans { first: null_mut(), bytes: 0, in_use: 0, high_water: 0 }) }
    }

    pub fn host(&self) -> &H {
        &self.host
    }

    /// Give the arena a static array (its page-aligned part).
    pub fn add_static(&self, memory: &'static mut [u8]) {
        // SAFETY: a unique 'static borrow: no one else uses the memory again.
        unsafe { self.add_range(memory.as_mut_ptr(), memory.len()) }
    }

    /// Give the arena the memory at `start..start + len` (its page-aligned
    /// part; a region shorter than a page after alignment is ignored).
    ///
    /// # Safety
    /// The range is readable and writable, and nothing else uses it for as
    /// long as the arena is used.
    pub unsafe fn add_range(&self, start: *mut u8, len: usize) {
        let first = (start as usize).next_multiple_of(ARENA_PAGE);
        let end = (start as usize).saturating_add(len) & !(ARENA_PAGE - 1);
        if end <= first {
            return;
        }
        let span = start.wrapping_add(first - start as usize);
        let mut spans = self.spans.lock();
        spans.bytes += end - first;
        // Counted as in use, then returned: one code path joins regions.
        spans.in_use += end - first;
        // SAFETY: the caller hands the range over; it is page aligned and
        // overlaps no span (the memory was no one's).
        if unsafe { spans.give(span, end - first) }.is_err() {
            drop(spans);
            self.host.fatal(b"hakmem: arena region overlaps memory the arena already has\n");
        }
    }

    /// What the arena holds and hands out.
    pub fn usage(&self) -> ArenaUse {
        let spans = self.spans.lock();
        let (mut largest_free, mut free_spans) = (0, 0);
        let mut span = spans.first;
        while !span.is_null() {
            // SAFETY: a span of the list (module invariants).
            let (len, next) = unsafe { ((*span).len, (*span).next) };
            largest_free = largest_free.max(len);
            free_spans += 1;
            span = next;
        }
        ArenaUse {
            bytes: spans.bytes,
            in_use: spans.in_use,
            free: spans.bytes - spans.in_use,
            high_water: spans.high_water,
            largest_free,
            free_spans,
        }
    }
}

/// Which of the spans that can serve a request [`Spans::take_where`] takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// The lowest in address order.
    First,
    /// The highest.
    Last,
    /// The longest (first among equals).
    Longest,
}

impl Spans {
    /// Carve `size` bytes at an `align`-aligned address. Segment-aligned
    /// requests (segments, huge blocks) take the first span with room;
    /// smaller ones (metadata) take room no segment can use (a span's part
    /// below its first segment boundary), else the top of the highest span:
    /// a page of metadata at a segment boundary would cost the arena a
    /// whole segment.
    fn take(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let aligned = |span: usize, len: usize| {
            let start = span.next_multiple_of(align);
            start.checked_add(size).is_some_and(|end| end <= span + len).then_some((start, size))
        };
        if align >= SEGMENT_SIZE {
            return self.take_where(Fit::First, aligned).map(|(start, _)| start);
        }
        let below_a_boundary = |span: usize, len: usize| {
            aligned(span, len.min(span.next_multiple_of(SEGMENT_SIZE) - span))
        };
        let top = |span: usize, len: usize| {
            let start = (span + len).checked_sub(size)? & !(align - 1);
            (start >= span).then_some((start, size))
        };
        let taken = self.take_where(Fit::First, below_a_boundary).or_else(|| self.take_where(Fit::Last, top));
        taken.map(|(start, _)| start)
    }

    /// Carve the range `pick(span start, span length)` proposes (start and
    /// length, inside the span) from the span `fit` chooses among those it
    /// proposes one for. Returns its start and length.
    fn take_where(&mut self, fit: Fit, pick: impl Fn(usize, usize) -> Option<(usize, usize)>) -> Option<(NonNull<u8>, usize)> {
        let mut chosen: Option<(*mut FreeSpan, *mut FreeSpan, usize, usize)> = None;
        let (mut prev, mut span) = (null_mut::<FreeSpan>(), self.first);
        while !span.is_null() {
            // SAFETY: a span of the list (module invariants).
            let (len, next) = unsafe { ((*span).len, (*span).next) };
            if let Some((start, size)) = pick(span as usize, len) {
                let better = match (fit, chosen) {
                    (_, None) | (Fit::Last, _) => true,
                    (Fit::Longest, Some((.., longest))) => size > longest,
                    (Fit::First, Some(_)) => false,
                };
                if better {
                    chosen = Some((prev, span, start, size));
                }
                if fit == Fit::First {
                    break;
                }
            }
            (prev, span) = (span, next);
        }
        let (prev, span, start, size) = chosen?;
        // SAFETY: `pick` proposed [start, start + size) inside this span.
        unsafe { self.carve(prev, span, start as *mut u8, size) };
        Some((NonNull::new(start as *mut u8)?, size))
    }

    /// Take `start..start + size` out of `span` (whose predecessor is
    /// `prev`), keeping what lies before and after it free.
    ///
    /// # Safety
    /// `span` is in the list after `prev`, and the range lies inside it.
    unsafe fn carve(&mut self, prev: *mut FreeSpan, span: *mut FreeSpan, start: *mut u8, size: usize) {
        // SAFETY: per the contract; the pieces written lie in the span.
        unsafe {
            let (len, next) = ((*span).len, (*span).next);
            let span_end = span as usize + len;
            let tail = start.wrapping_add(size);
            let after = if (tail as usize) < span_end {
                let tail = tail.cast::<FreeSpan>();
                tail.write(FreeSpan { len: span_end - tail as usize, next });
                tail
            } else {
                next
            };
            if start as usize > span as usize {
                (*span).len = start as usize - span as usize;
                (*span).next = after;
            } else {
                self.link(prev, after);
            }
        }
        self.in_use += size;
        self.high_water = self.high_water.max(self.in_use);
    }

    /// Make `span` follow `prev` (or be the first when `prev` is null).
    ///
    /// # Safety
    /// `prev` is null or a span of the list.
    unsafe fn link(&mut self, prev: *mut FreeSpan, span: *mut FreeSpan) {
        if prev.is_null() {
            self.first = span;
        } else {
            // SAFETY: per the contract.
            unsafe { (*prev).next = span };
        }
    }

    /// Return `start..start + size` to the free spans, joined with its
    /// neighbours. `Err` (nothing changed) when the range overlaps a free
    /// span: a double unmap.
    ///
    /// # Safety
    /// The range is page aligned and the arena's, and nothing uses it.
    unsafe fn give(&mut self, start: *mut u8, size: usize) -> Result<(), ()> {
        let end = start as usize + size;
        let (mut prev, mut next) = (null_mut::<FreeSpan>(), self.first);
        while !next.is_null() && (next as usize) < start as usize {
            prev = next;
            // SAFETY: a span of the list.
            next = unsafe { (*next).next };
        }
        // SAFETY: prev and next are spans of the list (or null); the range
        // is ours to write.
        unsafe {
            let prev_end = if prev.is_null() { 0 } else { prev as usize + (*prev).len };
            if prev_end > start as usize || (!next.is_null() && (next as usize) < end) {
                return Err(());
            }
            let joined = if !prev.is_null() && prev_end == start as usize {
                (*prev).len += size;
                prev
            } else {
                let span = start.cast::<FreeSpan>();
                span.write(FreeSpan { len: size, next });
                self.link(prev, span);
                span
            };
            if !next.is_null() && next as usize == end {
                (*joined).len += (*next).len;
                (*joined).next = (*next).next;
            }
        }
        self.in_use -= size;
        Ok(())
    }

    /// Grow the mapping `start..start + old` to `new` bytes in place, from
    /// the free span right after it. False (nothing changed) when there is
    /// no such span or it is too short.
    fn grow_in_place(&mut self, start: *mut u8, old: usize, new: usize) -> bool {
        let end = start as usize + old;
        let (mut prev, mut span) = (null_mut::<FreeSpan>(), self.first);
        while !span.is_null() && (span as usize) < end {
            prev = span;
            // SAFETY: a span of the list.
            span = unsafe { (*span).next };
        }
        // SAFETY: span is null or a span of the list.
        if span.is_null() || span as usize != end || unsafe { (*span).len } < new - old {
            return false;
        }
        // SAFETY: the extension is the front of `span`, after `prev`.
        unsafe { self.carve(prev, span, span.cast(), new - old) };
        true
    }
}

impl<H: ArenaHost> Arena<H> {
    fn fail_double_unmap(&self, start: NonNull<u8>) -> ! {
        let mut m = crate::message::MessageBuffer::new();
        m.push_str("hakmem: arena range returned twice at ").push_hex(start.as_ptr() as usize).push_str("\n");
        self.host.fatal(m.as_bytes())
    }
}

// SAFETY: map carves disjoint page-aligned ranges out of the free spans
// (memory the embedder handed over for good), aligned as asked; unmap,
// purge and remap accept any page-aligned subrange of a mapping (CAN_SPLIT)
// and return it to the spans at most once (a second return is fatal);
// remap only resizes in place, keeping the start and so its alignment.
// Nothing allocates; the lock is a spin lock held for list walks only.
unsafe impl<H: ArenaHost> PageProvider for Arena<H> {
    const PAGE_SIZE: usize = ARENA_PAGE;
    /// Returned spans keep their old contents.
    const MAPS_ZEROED: bool = false;
    /// `purge` does nothing: no one to give the pages to.
    const PURGE_RELEASES: bool = false;
    const CAN_REMAP: bool = true;
    const CAN_SPLIT: bool = true;

    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let align = align.max(ARENA_PAGE);
        loop {
            if let Some(start) = self.spans.lock().take(size, align) {
                return Some(start);
            }
            // Out of spans: a growable arena asks its host (lock released),
            // enough for the request at any alignment slack.
            let (start, len) = self.host.grow(size.checked_add(align)?)?;
            // SAFETY: the host hands the region over (ArenaHost's contract).
            unsafe { self.add_range(start.as_ptr(), len) };
        }
    }

    /// The longest aligned room of at least `min` bytes, up to `max`: the
    /// arena's free memory shorter than a segment, as a short segment.
    fn map_up_to(&self, min: usize, max: usize, align: usize) -> Option<(NonNull<u8>, usize)> {
        let align = align.max(ARENA_PAGE);
        self.spans.lock().take_where(Fit::Longest, |span, len| {
            let start = span.next_multiple_of(align);
            let room = (span + len).checked_sub(start)?.min(max);
            (room >= min).then_some((start, room))
        })
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: per the contract, the range was handed out and is unused.
        if unsafe { self.spans.lock().give(ptr.as_ptr(), size) }.is_err() {
            self.fail_double_unmap(ptr);
        }
    }

    unsafe fn purge(&self, _ptr: NonNull<u8>, _size: usize) {
        // No one to give the pages to; they stay ours and resident.
    }

    unsafe fn remap(&self, ptr: NonNull<u8>, old_size: usize, new_size: usize, _align: usize) -> Option<NonNull<u8>> {
        let mut spans = self.spans.lock();
        if new_size > old_size {
            return spans.grow_in_place(ptr.as_ptr(), old_size, new_size).then_some(ptr);
        }
        // SAFETY: the tail is page aligned (both sizes are multiples of
        // the page), handed out, and the caller no longer uses it.
        if new_size < old_size && unsafe { spans.give(ptr.as_ptr().wrapping_add(new_size), old_size - new_size) }.is_err() {
            drop(spans);
            self.fail_double_unmap(ptr);
        }
        Some(ptr)
    }

    fn write_message(&self, message: &[u8]) {
        self.host.write_message(message)
    }

    fn fatal(&self, message: &[u8]) -> ! {
        self.host.fatal(message)
    }

    fn random_seed(&self) -> u64 {
        self.host.random_seed()
    }

    fn now_ms(&self) -> u64 {
        self.host.now_ms()
    }

    /// The arena's use and its high-water mark stand for resident memory.
    fn resident(&self) -> (usize, usize) {
        let spans = self.spans.lock();
        (spans.in_use, spans.high_water)
    }
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)] // test code exercising the contracts
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    struct Host;
    // SAFETY: never grows.
    unsafe impl ArenaHost for Host {
        fn fatal(&self, message: &[u8]) -> ! {
            std::panic!("{}", std::string::String::from_utf8_lossy(message).trim_end())
        }
    }

    /// A leaked, page-aligned region of `pages` pages.
    fn region(pages: usize) -> &'static mut [u8] {
        // Aligned as a segment, so that where spans fall is deterministic.
        let layout = std::alloc::Layout::from_size_align(pages * ARENA_PAGE, crate::config::SEGMENT_SIZE).unwrap();
        unsafe { core::slice::from_raw_parts_mut(std::alloc::alloc(layout), pages * ARENA_PAGE) }
    }

    #[test]
    fn spans_are_carved_aligned_and_coalesce_back_into_one() {
        let arena = Arena::new(Host);
        let memory = region(64);
        let base = memory.as_ptr() as usize;
        arena.add_static(memory);
        let a = arena.map(3 * ARENA_PAGE, ARENA_PAGE).unwrap();
        let b = arena.map(ARENA_PAGE, 8 * ARENA_PAGE).unwrap();
        let c = arena.map(2 * ARENA_PAGE, ARENA_PAGE).unwrap();
        // Metadata comes from the top (the region starts at a segment boundary).
        assert_eq!(a.as_ptr() as usize, base + 61 * ARENA_PAGE);
        assert_eq!(b.as_ptr() as usize, base + 56 * ARENA_PAGE, "aligned below a");
        // The room b's alignment left above it holds no segment boundary:
        // it serves c.
        assert_eq!(c.as_ptr() as usize, base + 57 * ARENA_PAGE);
        let used = arena.usage();
        assert_eq!((used.bytes, used.in_use, used.free), (64 * ARENA_PAGE, 6 * ARENA_PAGE, 58 * ARENA_PAGE));
        unsafe {
            arena.unmap(b, ARENA_PAGE);
            arena.unmap(a, 3 * ARENA_PAGE);
            arena.unmap(c, 2 * ARENA_PAGE);
        }
        let used = arena.usage();
        assert_eq!((used.in_use, used.free_spans, used.largest_free, used.high_water), (0, 1, 64 * ARENA_PAGE, 6 * ARENA_PAGE));
    }

    #[test]
    fn metadata_keeps_off_segment_boundaries_and_the_rest_serves_a_short_segment() {
        use crate::config::SEGMENT_SIZE;
        let pages = SEGMENT_SIZE / ARENA_PAGE;
        let arena = Arena::new(Host);
        let memory = region(pages + 8);
        let base = memory.as_ptr() as usize;
        // Starts 4 pages past a segment boundary, ends 8 pages past the next.
        arena.add_static(&mut memory[4 * ARENA_PAGE..]);
        let meta = arena.map(2 * ARENA_PAGE, ARENA_PAGE).unwrap();
        assert_eq!(meta.as_ptr() as usize, base + 4 * ARENA_PAGE, "below the first boundary, where no segment fits");
        assert!(arena.map(SEGMENT_SIZE, SEGMENT_SIZE).is_none(), "no whole segment");
        assert!(arena.map_up_to(9 * ARENA_PAGE, SEGMENT_SIZE, SEGMENT_SIZE).is_none(), "8 pages past the boundary");
        let (short, len) = arena.map_up_to(4 * ARENA_PAGE, SEGMENT_SIZE, SEGMENT_SIZE).unwrap();
        assert_eq!((short.as_ptr() as usize, len), (base + SEGMENT_SIZE, 8 * ARENA_PAGE), "the longest aligned room");
        let more = arena.map(ARENA_PAGE, ARENA_PAGE).unwrap();
        assert_eq!(more.as_ptr() as usize, base + 6 * ARENA_PAGE, "metadata: right after the first");
        unsafe {
            arena.unmap(short, len);
            arena.unmap(meta, 2 * ARENA_PAGE);
            arena.unmap(more, ARENA_PAGE);
        }
        let used = arena.usage();
        assert_eq!((used.in_use, used.free_spans, used.largest_free), (0, 1, (pages + 4) * ARENA_PAGE));
    }

    #[test]
    fn a_full_arena_fails_and_serves_again_after_a_free() {
        let arena = Arena::new(Host);
        arena.add_static(region(8));
        let all: Vec<_> = (0..8).map(|_| arena.map(ARENA_PAGE, ARENA_PAGE).unwrap()).collect();
        assert!(arena.map(ARENA_PAGE, ARENA_PAGE).is_none());
        unsafe { arena.unmap(all[3], ARENA_PAGE) };
        assert_eq!(arena.map(ARENA_PAGE, ARENA_PAGE), Some(all[3]));
        assert!(arena.map(2 * ARENA_PAGE, ARENA_PAGE).is_none(), "no two adjacent free pages");
    }

    #[test]
    #[should_panic(expected = "arena range returned twice")]
    fn returning_a_range_twice_is_fatal() {
        let arena = Arena::new(Host);
        arena.add_static(region(4));
        let a = arena.map(ARENA_PAGE, ARENA_PAGE).unwrap();
        unsafe {
            arena.unmap(a, ARENA_PAGE);
            arena.unmap(a, ARENA_PAGE);
        }
    }

    #[test]
    fn remap_grows_into_the_free_span_after_and_shrinks_by_freeing_the_tail() {
        let arena = Arena::new(Host);
        arena.add_static(region(16));
        // Segment aligned: from the bottom (the region starts at a boundary).
        let a = arena.map(2 * ARENA_PAGE, crate::config::SEGMENT_SIZE).unwrap();
        unsafe {
            assert_eq!(arena.remap(a, 2 * ARENA_PAGE, 10 * ARENA_PAGE, ARENA_PAGE), Some(a));
            assert_eq!(arena.usage().in_use, 10 * ARENA_PAGE);
            // Metadata: from the top, the rest of the region.
            let b = arena.map(6 * ARENA_PAGE, ARENA_PAGE).unwrap();
            assert_eq!(b.as_ptr() as usize, a.as_ptr() as usize + 10 * ARENA_PAGE);
            assert_eq!(arena.remap(a, 10 * ARENA_PAGE, 11 * ARENA_PAGE, ARENA_PAGE), None, "b is in the way");
            assert_eq!(arena.remap(a, 10 * ARENA_PAGE, 4 * ARENA_PAGE, ARENA_PAGE), Some(a));
            assert_eq!(arena.usage().in_use, 10 * ARENA_PAGE);
        }
    }

    struct Growing {
        regions: std::sync::Mutex<Vec<&'static mut [u8]>>,
    }
    // SAFETY: hands out leaked regions, each once.
    unsafe impl ArenaHost for Growing {
        fn fatal(&self, message: &[u8]) -> ! {
            std::panic!("{}", std::string::String::from_utf8_lossy(message).trim_end())
        }
        fn grow(&self, min_bytes: usize) -> Option<(NonNull<u8>, usize)> {
            let region = self.regions.lock().unwrap().pop()?;
            assert!(region.len() >= min_bytes, "test regions are large enough");
            Some((NonNull::new(region.as_mut_ptr())?, region.len()))
        }
    }

    #[test]
    fn a_growable_arena_serves_a_heap_from_its_hosts_regions_until_they_run_out() {
        use crate::config::SEGMENT_SIZE;
        let host = Growing { regions: std::sync::Mutex::new((0..3).map(|_| region(4 * SEGMENT_SIZE / ARENA_PAGE)).collect()) };
        let global: &'static crate::Global<Arena<Growing>> = Box::leak(Box::new(crate::Global::new(Arena::new(host))));
        let heap = global.heap_acquire();
        let heap = unsafe { &mut *heap };
        let mut blocks = Vec::new();
        loop {
            let size = 16 + (blocks.len() * 37) % 3000;
            let p = heap.malloc(size);
            if p.is_null() {
                break;
            }
            unsafe { p.write_bytes(blocks.len() as u8, size) };
            blocks.push((p, size));
        }
        let used = global.provider().usage();
        std::eprintln!("{used:?} blocks {} bytes {}", blocks.len(), blocks.iter().map(|b| b.1).sum::<usize>());
        assert_eq!(used.bytes, 3 * 4 * SEGMENT_SIZE, "every region was taken");
        assert!(blocks.iter().map(|b| b.1).sum::<usize>() > used.bytes / 2, "most of the arena went to blocks");
        for (i, &(p, size)) in blocks.iter().enumerate() {
            let bytes = unsafe { core::slice::from_raw_parts(p, size) };
            // (Under Miri, the smaller configuration: a block's ends.)
            let kept = if cfg!(miri) { bytes[0] == i as u8 && bytes[size - 1] == i as u8 } else { bytes.iter().all(|&b| b == i as u8) };
            assert!(kept, "block {i} kept its contents");
            unsafe { global.free(p, heap) };
        }
        assert!(!heap.malloc(100).is_null(), "serves again after the frees");
    }
}
