//! Strict mode's guard pages (`PageProvider::protect`): memory no block
//! covers, made inaccessible so that an overflow or underflow faults at the
//! first byte that leaves the allocator's blocks, instead of running into
//! a header or a neighbouring mapping. Only when the provider can protect
//! (`CAN_PROTECT`) and strict mode is on (`Memory::guards`).
//!
//! ```text
//!  segment   [ header | guard | page 0 ... | ... | last page | guard ]
//!                       (to SEGMENT_HEADER_BYTES,   (tail_guard: one OS page)
//!                        at least one OS page)
//!  huge      [ header | guard | slack | block ... | slack | guard ]
//!                               canary ^           ^ canary  (< one OS page each)
//!  (aligned to 2 MiB or more, the mapping starts with unguarded alignment
//!  slack before the header, as in huge.rs)
//! ```
//!
//! A huge block ends as close to its tail guard as its alignment allows;
//! the slack on either side (less than an OS page) holds a canary checked
//! at free, so an overflow is found even when it stops short of the guard.
//! A freed huge block's mapping is purged and made inaccessible except its
//! header, and waits in `HugeBlocks`' quarantine: a use after free faults,
//! a second free reads the header and is reported.
//!
//! Invariants: a guarded segment's `tail_guard` is the provider's page
//! size from the moment it is mapped until it is unmapped (a cached
//! segment keeps its guards for its next kind); no byte of a guard is
//! written by the allocator.

use crate::config::SEGMENT_SIZE;
use crate::memory::Memory;
use crate::message::MessageBuffer;
use crate::provider::PageProvider;
use crate::segment::{segment_at_or_below, Segment, HUGE_CACHED, HUGE_OWNER};
use core::sync::atomic::Ordering;

/// The byte written in a guarded huge block's slack.
const SLACK_CANARY: u8 = 0xCA;

/// End of the OS pages a segment header occupies: the front guard starts there.
fn header_end<P: PageProvider>() -> usize {
    Segment::header_end(P::PAGE_SIZE)
}

/// End of a guarded segment's front guard: where page 0, or the area of a
/// guarded huge block, starts (at least one OS page after the header's).
pub fn front_guard_end<P: PageProvider>() -> usize {
    Segment::first_block_offset(P::PAGE_SIZE)
}

/// Make `start..end` (page aligned, inside one mapping; empty when
/// `end <= start`) inaccessible.
///
/// # Safety
/// Nothing in the range is used until it is unmapped.
unsafe fn protect<P: PageProvider>(memory: &Memory<P>, start: usize, end: usize) {
    // SAFETY: per the contract.
    unsafe { memory.protect(start, end.saturating_sub(start)) };
}

/// Guard a freshly mapped segment: the pages between its header and page
/// 0, and its last OS page (which `Segment::page_area` then leaves out).
///
/// # Safety
/// `segment` was just mapped and its header written; no page is in use.
pub unsafe fn guard_segment<P: PageProvider>(memory: &Memory<P>, segment: *mut Segment) {
    if !memory.guards() {
        return;
    }
    let base = segment as usize;
    // SAFETY: per the contract, both ranges are unused memory of the segment.
    unsafe {
        protect(memory, base + header_end::<P>(), base + front_guard_end::<P>());
        let end = base + (*segment).map_size;
        protect(memory, end - P::PAGE_SIZE, end);
        (*segment).tail_guard = P::PAGE_SIZE as u32;
    }
}

/// Bytes to map for a guarded huge block of `size` whose block area starts
/// `area_offset` bytes into the mapping: the area rounded to pages, and one
/// more page for the tail guard.
pub fn huge_map_size<P: PageProvider>(area_offset: usize, size: usize) -> usize {
    (area_offset + size.max(1)).next_multiple_of(P::PAGE_SIZE) + P::PAGE_SIZE
}

/// Place a huge block of `size` bytes aligned to `align` in a guarded
/// mapping whose block area starts at `area` (aligned to `align`): as late
/// as the tail guard allows; guard the front and the tail, fill the slack
/// with the canary. Returns the block.
///
/// # Safety
/// `segment` is a fresh huge header whose mapping (`map_base`, `map_size`,
/// sized by [`huge_map_size`]) is ours, `area >= segment + header_end`.
pub unsafe fn place_huge<P: PageProvider>(memory: &Memory<P>, segment: *mut Segment, area: usize, size: usize, align: usize) -> *mut u8 {
    // SAFETY: per the contract.
    unsafe {
        let guard = (*segment).map_base as usize + (*segment).map_size - P::PAGE_SIZE;
        let block = (guard - size.max(1)) & !(align - 1);
        let front = block & !(P::PAGE_SIZE - 1);
        debug_assert!(front >= area && front >= segment as usize + header_end::<P>());
        protect(memory, segment as usize + header_end::<P>(), front);
        protect(memory, guard, guard + P::PAGE_SIZE);
        core::ptr::write_bytes(front as *mut u8, SLACK_CANARY, block - front);
        core::ptr::write_bytes((block + size) as *mut u8, SLACK_CANARY, guard - (block + size));
        block as *mut u8
    }
}

/// Check the slack canaries of a guarded huge block being freed (or
/// resized): reports an overflow or underflow that stopped short of a guard.
///
/// # Safety
/// `block` is the live guarded huge block of `segment`, of `size` bytes.
pub unsafe fn check_huge<P: PageProvider>(memory: &Memory<P>, segment: *mut Segment, block: *const u8, size: usize) {
    // SAFETY: per the contract, the slack lies in the mapping, accessible.
    unsafe {
        let front = (block as usize & !(P::PAGE_SIZE - 1)) as *const u8;
        let guard = ((*segment).map_base as usize + (*segment).map_size - P::PAGE_SIZE) as *const u8;
        let intact = |from: *const u8, to: *const u8| {
            core::slice::from_raw_parts(from, to as usize - from as usize).iter().all(|&b| b == SLACK_CANARY)
        };
        if !intact(block.add(size), guard) {
            memory.fatal_in_class("heap overflow: written past the requested size of huge block ", block as usize, size);
        }
        if !intact(front, block) {
            memory.fatal_in_class("heap underflow: written before the start of huge block ", block as usize, size);
        }
    }
}

/// Retire a freed guarded huge block's mapping: purge the pages between
/// its guards and make them inaccessible too (the header stays readable:
/// a second free finds the block freed).
///
/// # Safety
/// `segment` is a guarded huge mapping whose block was just freed.
pub unsafe fn retire_huge<P: PageProvider>(memory: &Memory<P>, segment: *mut Segment) {
    // SAFETY: per the contract, nothing of the block is used again.
    unsafe {
        let front = (segment as usize + (*segment).huge_offset) & !(P::PAGE_SIZE - 1);
        let guard = (*segment).map_base as usize + (*segment).map_size - P::PAGE_SIZE;
        memory.purge(front, guard - front);
        protect(memory, front, guard);
    }
}

/// When a fault at `addr` hit a guard, report it in one line and abort:
/// `hakmem: <problem>: guard page hit at <addr> <where> <block or segment> (<class>)`.
/// Otherwise return: the fault is not the allocator's to name. Meant for
/// a SIGSEGV handler: it reads the segment map and one header, allocates
/// nothing, takes no lock.
pub fn report_fault<P: PageProvider>(memory: &Memory<P>, addr: usize) {
    if !memory.guards() {
        return;
    }
    let Some(segment) = segment_at_or_below(addr) else { return };
    let base = segment as usize;
    // SAFETY: a known header is mapped (a header being unmapped right now
    // faults here, and that fault ends the process as the first would).
    let (problem, place, at, class) = unsafe {
        if addr >= (*segment).map_base as usize + (*segment).map_size {
            return;
        }
        if (*segment).owner.load(Ordering::Acquire) == HUGE_OWNER {
            let block = base + (*segment).huge_offset;
            let class = (*segment).huge_size;
            if (*segment).huge_state.load(Ordering::Acquire) == HUGE_CACHED {
                ("use after free", " inside freed huge block ", block, class)
            } else if addr >= block + (*segment).huge_size {
                ("heap overflow", " past huge block ", block, class)
            } else if addr < block && addr >= base + header_end::<P>() {
                ("heap underflow", " before huge block ", block, class)
            } else {
                return;
            }
        } else {
            let last = &(*segment).pages[(*segment).page_count as usize - 1];
            let last_class = if last.flags.load(Ordering::Relaxed) & crate::page::PAGE_UNUSED != 0 { 0 } else { last.block_size as usize };
            let first_class = (*segment).pages[0].block_size as usize;
            if addr >= base + SEGMENT_SIZE - (*segment).tail_guard as usize {
                ("heap overflow", " at the end of segment ", base, last_class)
            } else if addr >= base + header_end::<P>() && addr < base + front_guard_end::<P>() {
                ("heap underflow", " before the first page of segment ", base, first_class)
            } else {
                return;
            }
        }
    };
    let mut m = MessageBuffer::new();
    m.push_str("hakmem: ").push_str(problem).push_str(": guard page hit at ").push_hex(addr);
    m.push_str(place).push_hex(at).push_str(" (size class ").push_decimal(class).push_str(" bytes)\n");
    memory.provider().fatal(m.as_bytes())
}
