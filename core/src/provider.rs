//! The page provider: the only way the core obtains and returns memory.
//!
//! The core knows nothing of the operating system. An embedder (the Linux
//! shim, a kernel, a test) implements [`PageProvider`] and hands it to
//! [`crate::Global`]. The contract is deliberately small.

/// Source of page-granular memory for the allocator core.
///
/// # Safety
/// Implementors promise, for every method:
/// - `map(size, align)` returns either `None` or the start of a fresh,
///   readable and writable range of `size` bytes aligned to `align`, that no
///   one else uses until it is passed to `unmap`. When `MAPS_ZEROED` is true
///   the range reads as zeros.
/// - `map_up_to` returns `None` or a range as `map` does, of the length
///   it returns.
/// - `unmap` and `purge` accept exactly ranges previously returned by `map`
///   or `map_up_to` (`unmap`: the whole range; `purge`: any page-aligned
///   subrange), or, when `CAN_SPLIT` is true, any page-aligned subranges,
///   each unmapped at most once.
/// - After `purge`, the range stays mapped and usable; its contents are
///   unspecified (zeros on Linux with `MADV_DONTNEED`).
/// - No method allocates through any global allocator, recurses into the
///   allocator, panics, or changes the C `errno` of the calling thread.
/// - All methods may be called from any thread concurrently.
pub unsafe trait PageProvider: Sync {
    /// The granularity of `map`, `unmap` and `purge` (a power of two).
    const PAGE_SIZE: usize;
    /// Whether memory returned by `map` reads as zeros.
    const MAPS_ZEROED: bool;
    /// Whether a purged range reads as zeros afterwards.
    const PURGE_ZEROES: bool = false;
    /// Whether [`PageProvider::purge`] gives the memory back to someone
    /// (the operating system). False where it does nothing (an arena's
    /// memory stays the allocator's): cached huge blocks then stay warm,
    /// and the core runs no purge policy or learning for them.
    const PURGE_RELEASES: bool = true;
    /// Whether [`PageProvider::remap`] can resize mappings (else the core
    /// never calls it).
    const CAN_REMAP: bool = false;
    /// Whether any page-aligned subrange of a mapping from `map` may be
    /// passed to `unmap`, `purge` and `remap` as a mapping of its own (as
    /// `munmap` allows), so that the core can split a cached huge mapping
    /// and join adjacent ones. Without it, only whole mappings are passed.
    const CAN_SPLIT: bool = false;
    /// Whether [`PageProvider::move_pages`] can move pages between
    /// mappings without copying (else the core never calls it).
    const CAN_MOVE: bool = false;
    /// Whether [`PageProvider::protect`] can make pages inaccessible (guard
    /// pages in strict mode; without it strict mode has no guards).
    const CAN_PROTECT: bool = false;

    /// Map `size` bytes (a multiple of `PAGE_SIZE`) aligned to `align` (a
    /// power of two, at least `PAGE_SIZE`).
    fn map(&self, size: usize, align: usize) -> Option<core::ptr::NonNull<u8>>;

    /// Map the longest range it can of at least `min` and at most `max`
    /// bytes (multiples of `PAGE_SIZE`) aligned to `align`, when
    /// `map(max, align)` failed: returns its start and length (a multiple
    /// of `PAGE_SIZE`), which `unmap` then takes. A fixed arena whose free
    /// room is shorter than a segment serves a shortened segment from it.
    /// The default has none (an address space maps `max` or nothing).
    fn map_up_to(&self, min: usize, max: usize, align: usize) -> Option<(core::ptr::NonNull<u8>, usize)> {
        let _ = (min, max, align);
        None
    }

    /// Return a range obtained from `map` to the system.
    ///
    /// # Safety
    /// `ptr` and `size` are exactly those of one earlier `map` call, and no
    /// byte of the range is used afterwards.
    unsafe fn unmap(&self, ptr: core::ptr::NonNull<u8>, size: usize);

    /// Drop the physical pages behind a range while keeping it mapped.
    ///
    /// # Safety
    /// The range lies inside one mapping from `map`, is page aligned, and its
    /// contents are no longer needed.
    unsafe fn purge(&self, ptr: core::ptr::NonNull<u8>, size: usize);

    /// Write a message (diagnostics, statistics) somewhere a human sees it.
    fn write_message(&self, message: &[u8]);

    /// Report heap corruption or misuse and stop: never returns.
    fn fatal(&self, message: &[u8]) -> !;

    /// Entropy for free-list encoding and free markers (need not be strong).
    fn random_seed(&self) -> u64;

    /// Resize a mapping from `map`, keeping its contents and its alignment
    /// to `align`, without copying bytes where the system can (Linux:
    /// `mremap`). Returns the (possibly moved) start, or `None` when the
    /// provider cannot: the core then copies into a new block. The default
    /// cannot.
    ///
    /// # Safety
    /// `ptr` and `old_size` are exactly those of one earlier `map` (or
    /// `remap`) result; on success the old range must not be used again.
    unsafe fn remap(&self, ptr: core::ptr::NonNull<u8>, old_size: usize, new_size: usize, align: usize) -> Option<core::ptr::NonNull<u8>> {
        let _ = (ptr, old_size, new_size, align);
        None
    }

    /// Move the pages of `from..from + size` (a page-aligned subrange of a
    /// mapping from `map`) to `to..to + size` (a page-aligned subrange of
    /// another one, whose own pages are dropped), contents and all, without
    /// copying (Linux: `mremap` with `MREMAP_FIXED`). On success `from..`
    /// is gone as if unmapped, and the destination mapping owns the moved
    /// pages (unmapped and purged with it). False when it could not: then
    /// part of the range may have moved (Linux 6.17 on moves ranges made of
    /// several mappings, and may stop partway), so the core unmaps the
    /// source range and does not use it again; the destination stays
    /// usable either way. The default cannot (see `CAN_MOVE`).
    ///
    /// # Safety
    /// Both ranges are as described, distinct, and nothing in either is
    /// used during the call.
    unsafe fn move_pages(&self, from: core::ptr::NonNull<u8>, size: usize, to: core::ptr::NonNull<u8>) -> bool {
        let _ = (from, size, to);
        false
    }

    /// Make a page-aligned subrange of a mapping from `map` inaccessible
    /// (`accessible` false: any read or write of it faults) or readable and
    /// writable again. Strict mode's guard pages; `unmap` and `purge` still
    /// accept ranges that include guards. The default cannot (see
    /// `CAN_PROTECT`) and does nothing.
    ///
    /// # Safety
    /// The range lies inside one mapping from `map`, is page aligned, and
    /// (when made inaccessible) nothing in it is used until it is made
    /// accessible again or unmapped.
    unsafe fn protect(&self, ptr: core::ptr::NonNull<u8>, size: usize, accessible: bool) {
        let _ = (ptr, size, accessible);
    }

    /// A monotonic clock in milliseconds, for delayed purging. Providers
    /// without a clock keep this default (0): freed pages are then purged
    /// only when a heap holds more than the dirty-byte cap.
    fn now_ms(&self) -> u64 {
        0
    }

    /// The calling thread's call stack for the heap profiler: return
    /// addresses, innermost first, written to `frames`; returns how many.
    /// Leaves out the provider's own frames and the `skip` innermost frames
    /// of its callers (the allocator's). Must not allocate through the
    /// allocator or take a lock the allocator may hold. The default has no
    /// stacks (0): samples are then recorded with an empty stack.
    fn backtrace(&self, frames: &mut [usize], skip: usize) -> usize {
        let _ = (frames, skip);
        0
    }

    /// Resident memory of the process and its peak, in bytes, for
    /// statistics; the default (0, 0) means unknown.
    fn resident(&self) -> (usize, usize) {
        (0, 0)
    }

    /// How many of the `PAGE_SIZE` pages of a range are resident (Linux:
    /// `mincore`), at most `RESIDENT_PAGES_MAX` of them; `None` when
    /// unknown (the default). A hint: calloc purges a recycled block that
    /// is mostly not resident instead of writing zeros into it.
    ///
    /// # Safety
    /// The range lies inside one mapping from `map` and is page aligned.
    unsafe fn resident_pages(&self, ptr: core::ptr::NonNull<u8>, size: usize) -> Option<usize> {
        let _ = (ptr, size);
        None
    }
}

/// The most pages [`PageProvider::resident_pages`] is asked about.
pub const RESIDENT_PAGES_MAX: usize = 256;
