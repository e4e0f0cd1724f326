//! The embedder's handle: [`Global`] is the [`Shared`] state plus the heap
//! pool, and the process-wide entry points (heaps for threads, free,
//! usable size, trim, statistics, the heap profiler, fork).
//!
//! ```text
//!  Global<P>
//!  shared ------------> memory (provider, counters, options), segments, huge   (shared.rs)
//!  heaps (lock) ------> free heaps; all heaps ever made (never unmapped)
//! ```
//!
//! Lock order: idle -> heaps -> a heap's `pages_lock` -> segments
//! (abandoned -> cache) -> huge; no other lock is held while calling back
//! into a heap. Only slow paths and the idle purger take these locks.

use crate::config::{Options, HEAP_CHUNK_BYTES};
use crate::block_cache::Stacks;
use crate::heap::Heap;
use crate::provider::PageProvider;
use crate::census::Census;
use crate::message::MessageBuffer;
use crate::profile;
use crate::shared::Shared;
use crate::stats::{Mapping, StatsSnapshot};
use core::ptr::null_mut;
use core::sync::atomic::Ordering;
use spin::Mutex;

/// Heaps, carved from provider chunks and never unmapped (remote threads
/// may still push to a stale owner's delayed list).
///
/// Invariants: `free` links (through `pool_next`) the heaps no thread
/// uses; `all` links (through `all_next`) every heap ever made.
struct HeapPool<P: PageProvider + 'static> {
    free: *mut Heap<P>,
    all: *mut Heap<P>,
    chunk_next: usize,
    chunk_end: usize,
    /// Bytes of the last chunk mapped (0: none yet).
    chunk_bytes: usize,
}
// SAFETY: the raw pointers are only followed under the owning Mutex.
unsafe impl<P: PageProvider> Send for HeapPool<P> {}

/// Everything shared by all heaps of one allocator instance.
pub struct Global<P: PageProvider + 'static> {
    shared: Shared<P>,
    heaps: Mutex<HeapPool<P>>,
    /// Held through a `purge_idle` pass (and by `lock_all`, so that no
    /// heap's `pages_lock` is the purger's at a fork).
    idle: Mutex<()>,
}

/// A heap's slot in a heap chunk: the heap, then its block cache's
/// stacks (block_cache.rs). Returns the heap's bytes and the slot's.
pub(crate) const fn heap_slot_bytes<P: PageProvider + 'static>() -> (usize, usize) {
    let heap_bytes = core::mem::size_of::<Heap<P>>().next_multiple_of(64);
    (heap_bytes, heap_bytes + core::mem::size_of::<Stacks>().next_multiple_of(64))
}

impl<P: PageProvider + 'static> Global<P> {
    pub const fn new(provider: P) -> Self {
        Global {
            shared: Shared::new(provider),
            heaps: Mutex::new(HeapPool { free: null_mut(), all: null_mut(), chunk_next: 0, chunk_end: 0, chunk_bytes: 0 }),
            idle: Mutex::new(()),
        }
    }

    pub fn provider(&self) -> &P {
        self.shared.memory.provider()
    }

    /// The tunables; set them before (or while) allocating.
    pub fn options(&self) -> &Options {
        &self.shared.memory.options
    }

    /// How long freed pages stay resident now (ms): learned, or the
    /// configured `options().purge_delay_ms` (learn.rs).
    pub fn purge_delay_ms(&self) -> usize {
        self.shared.memory.purge_delay_ms()
    }

    /// The purge learner: its last proposal, learned cap and counts.
    pub fn learner(&self) -> &crate::learn::PurgeLearner {
        &self.shared.memory.learner
    }

    /// What the capacity learners chose (learning on) or would choose
    /// (frozen): empty segments kept, BigCache's warm bytes, and its fit
    /// tolerance in percent.
    pub fn learned_capacities(&self) -> (usize, usize, usize) {
        let memory = &self.shared.memory;
        let options = &memory.options;
        let fit_configured = memory.bigcache_fit_configured();
        (
            memory.segment_cache.learned(options.segment_cache.load(Ordering::Relaxed)),
            memory.bigcache.learned(options.bigcache_bytes.load(Ordering::Relaxed)),
            match memory.bigcache_fit.learned(fit_configured) {
                // Unmoved: the setting as given (64ths round it).
                fit if fit == fit_configured => options.bigcache_fit_percent.load(Ordering::Relaxed),
                fit => fit * 100 / 64,
            },
        )
    }

    /// The free-list key, for tests that walk lists themselves.
    #[cfg(test)]
    pub(crate) fn keys_for_tests(&self) -> usize {
        self.shared.memory.keys().0
    }

    /// BigCache's warm limit in force, for tests of its learning.
    #[cfg(test)]
    pub(crate) fn learner_bigcache_limit_for_tests(&self) -> usize {
        self.shared.memory.bigcache_limit()
    }

    /// Set the learned purge delay as if windows had moved it there.
    #[cfg(test)]
    pub(crate) fn set_learned_delay_for_tests(&self, ms: usize) {
        self.shared.memory.learner.set_delay_for_tests(ms);
    }

    /// Dirty bytes the segment store holds, for tests of its cap.
    #[cfg(test)]
    pub(crate) fn store_dirty_bytes_for_tests(&self) -> usize {
        self.shared.segments.dirty_bytes()
    }

    /// Abort with `hakmem: <what><address>`.
    #[cold]
    pub fn fatal_at(&self, what: &str, address: usize) -> ! {
        self.shared.memory.fatal_at(what, address)
    }

    /// Whether strict mode's guard pages are in use (fixed once the first
    /// heap is made; see `Memory::guards`).
    pub fn guards(&self) -> bool {
        self.shared.memory.guards()
    }

    /// A fault at `addr` that hit a strict-mode guard page is reported
    /// (one line) and aborts; any other returns (see `guard::report_fault`).
    pub fn report_fault(&self, addr: usize) {
        crate::guard::report_fault(&self.shared.memory, addr)
    }

    /// A heap for the calling thread (or null when out of memory).
    pub fn heap_acquire(&'static self) -> *mut Heap<P> {
        let heap = {
            let mut pool = self.heaps.lock();
            if !pool.free.is_null() {
                let heap = pool.free;
                // SAFETY: pooled heaps are live, initialised and unused.
                pool.free = unsafe { (*heap).pool_next };
                heap
            } else {
                let (heap_bytes, size) = heap_slot_bytes::<P>();
                if pool.chunk_next + size > pool.chunk_end {
                    // The first chunk holds one heap, each next one twice
                    // the last, up to HEAP_CHUNK_BYTES: a small arena with
                    // one heap gives it a page, not a chunk.
                    let bytes = (pool.chunk_bytes * 2).min(HEAP_CHUNK_BYTES).max(size.next_multiple_of(P::PAGE_SIZE));
                    let Some(chunk) = self.shared.memory.map(bytes, P::PAGE_SIZE, Mapping::Metadata) else {
                        return null_mut();
                    };
                    pool.chunk_next = chunk.as_ptr() as usize;
                    pool.chunk_end = pool.chunk_next + bytes;
                    pool.chunk_bytes = bytes;
                }
                let heap = pool.chunk_next as *mut Heap<P>;
                pool.chunk_next += size;
                // SAFETY: the slot is fresh, aligned (64) and large enough
                // for both; the stacks' part is the heap's alone.
                unsafe {
                    heap.write(Heap::new(&self.shared));
                    (*heap).block_cache.attach((heap as *mut u8).add(heap_bytes) as *mut Stacks);
                    (*heap).all_next = pool.all;
                }
                pool.all = heap;
                heap
            }
        };
        self.shared.memory.stats.heaps_live.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the heap is ours now; a reused heap takes back the segments
        // it left (warm), and may hold delayed frees that arrived since.
        unsafe {
            (*heap).adopt_own();
            (*heap).drain_delayed();
        }
        heap
    }

    /// Abandon `heap` (its thread is exiting) and return it to the pool.
    ///
    /// # Safety
    /// `heap` came from `heap_acquire` and no thread uses it any more.
    pub unsafe fn heap_release(&'static self, heap: *mut Heap<P>) {
        // SAFETY: per the contract, we are the heap's last user.
        unsafe {
            (*heap).abandon();
            let mut pool = self.heaps.lock();
            (*heap).pool_next = pool.free;
            pool.free = heap;
        }
        self.shared.memory.stats.heaps_live.fetch_sub(1, Ordering::Relaxed);
    }

    /// Free `ptr` (null is ignored); see `free.rs`. `heap` is the calling
    /// thread's heap, or null when it has none.
    ///
    /// # Safety
    /// `heap` is null or the calling thread's own heap from this Global.
    /// `ptr` is anything: a pointer hakmem did not return (or returned and
    /// took back) is detected where the segment map allows and aborts.
    #[inline(always)]
    pub unsafe fn free(&'static self, ptr: *mut u8, heap: *mut Heap<P>) {
        // SAFETY: per the contract.
        unsafe { crate::free::free(&self.shared, heap, ptr, core::ptr::null_mut) }
    }

    /// Free `ptr` like [`Global::free`]; a thread with no heap yet that
    /// frees another thread's block is given one by `make_heap` (called at
    /// most once, off the fast path; it may return null), in which its
    /// remote frees are gathered and handed over in batches.
    ///
    /// # Safety
    /// As for [`Global::free`]; `make_heap` returns null or the calling
    /// thread's own heap from this Global.
    #[inline(always)]
    pub unsafe fn free_with(&'static self, ptr: *mut u8, heap: *mut Heap<P>, make_heap: impl FnOnce() -> *mut Heap<P>) {
        // SAFETY: per the contract.
        unsafe { crate::free::free(&self.shared, heap, ptr, make_heap) }
    }

    /// [`Global::free_with`] for a caller that tried [`Heap::free_remembered`]
    /// on `heap` already.
    ///
    /// # Safety
    /// As for [`Global::free_with`].
    #[inline(always)]
    pub unsafe fn free_unremembered_with(&'static self, ptr: *mut u8, heap: *mut Heap<P>, make_heap: impl FnOnce() -> *mut Heap<P>) {
        // SAFETY: per the contract.
        unsafe { crate::free::free_unremembered(&self.shared, heap, ptr, make_heap) }
    }

    /// An inert heap over this allocator ([`Heap::inert`]), for a static.
    pub const fn inert_heap(&'static self) -> Heap<P> {
        Heap::inert(&self.shared)
    }

    /// Usable bytes of the block at `ptr` (0 for null).
    ///
    /// # Safety
    /// `ptr` is null or a live block from this allocator.
    pub unsafe fn usable_size(&self, ptr: *const u8) -> usize {
        // SAFETY: per the contract.
        unsafe { self.shared.usable_size(ptr) }
    }

    /// Give memory back: the calling thread's empty pages (when `heap` is
    /// not null), abandoned segments, the segment cache and the huge cache.
    /// Returns true when something was released.
    ///
    /// # Safety
    /// `heap` is null or the calling thread's own heap.
    pub unsafe fn trim(&'static self, heap: *mut Heap<P>) -> bool {
        let memory = &self.shared.memory;
        let mut released = 0;
        if !heap.is_null() {
            // SAFETY: per the contract.
            released += unsafe { (*heap).trim() };
        }
        released += self.shared.segments.trim_abandoned(memory);
        // Delayed frees parked on pooled heaps whose threads are gone.
        {
            let pool = self.heaps.lock();
            let mut pooled = pool.free;
            while !pooled.is_null() {
                // SAFETY: pooled heaps are unused; the pool lock keeps them so.
                unsafe {
                    (*pooled).drain_delayed();
                    pooled = (*pooled).pool_next;
                }
            }
        }
        released += self.shared.release_caches();
        released > 0
    }

    /// Give back what has waited the purge delay everywhere, without
    /// waiting for the threads that hold it to call again: every heap's
    /// dirty pages (except one whose owner is changing them right now: it
    /// purges them itself), the segment store's cached and abandoned
    /// segments, and the huge-block cache's warm mappings past their age.
    /// For an embedder's idle loop or timer; on Linux the optional
    /// background thread (`HAKMEM_BACKGROUND`) calls it. Takes no heap and
    /// never blocks on one. Returns the bytes the heaps purged.
    pub fn purge_idle(&'static self) -> usize {
        let Some(_idle) = self.idle.try_lock() else {
            return 0; // another thread is at it
        };
        let memory = &self.shared.memory;
        // SAFETY: every heap the walk yields is one of this allocator's.
        let purged = Self::heaps_from(self.heaps.lock().all).map(|heap| unsafe { Heap::purge_idle(heap) }).sum();
        self.shared.segments.purge_expired(memory);
        self.shared.huge.purge_idle(memory);
        purged
    }

    /// Every heap on the `all` list from `first`, a snapshot of its head:
    /// heaps are only ever prepended and never unmapped, and `all_next`
    /// never changes, so the walk sees every heap made before the snapshot,
    /// each mapped, with or without the pool's lock.
    fn heaps_from(first: *mut Heap<P>) -> impl Iterator<Item = *mut Heap<P>> {
        core::iter::successors((!first.is_null()).then_some(first), |&heap| {
            // SAFETY: as above: `heap` is a mapped heap of the list.
            let next = unsafe { (*heap).all_next };
            (!next.is_null()).then_some(next)
        })
    }

    /// A snapshot of all counters, including the live heaps' and pages'
    /// call counts (shares of sums, added wrapping: see `Heap::call_counts`).
    pub fn stats(&self) -> StatsSnapshot {
        let mut snapshot = self.shared.memory.stats.snapshot();
        let pool = self.heaps.lock();
        for heap in Self::heaps_from(pool.all) {
            // SAFETY: a live heap (heaps_from); counters are atomics.
            let (mallocs, frees, cross_thread_frees) = unsafe { (*heap).call_counts() };
            snapshot.malloc_calls = snapshot.malloc_calls.wrapping_add(mallocs as usize);
            snapshot.free_calls = snapshot.free_calls.wrapping_add(frees as usize);
            snapshot.cross_thread_frees += cross_thread_frees as usize;
        }
        drop(pool);
        let (mallocs, frees) = crate::census::page_calls(self.ours());
        snapshot.malloc_calls = snapshot.malloc_calls.wrapping_add(mallocs);
        snapshot.free_calls = snapshot.free_calls.wrapping_add(frees);
        (snapshot.resident_bytes, snapshot.resident_peak_bytes) = self.shared.memory.provider().resident();
        snapshot.purge_delay_ms = self.purge_delay_ms();
        snapshot
    }

    /// The counters and a census of what the heaps hold (per class and per
    /// tier; see `census.rs`), for the statistics table.
    pub fn census(&self) -> (StatsSnapshot, Census) {
        let stats = self.stats();
        let mut cached_blocks = [0; crate::class::CLASS_COUNT];
        for heap in Self::heaps_from(self.heaps.lock().all) {
            // SAFETY: a live heap (heaps_from); the cache's lengths are atomics.
            unsafe { (*heap).block_cache.count_seen(&mut cached_blocks) };
        }
        let census = Census::take(&stats, self.shared.huge.cached(), &cached_blocks, self.ours());
        (stats, census)
    }

    /// Tells whether `owner`, a segment's owner (not one of the `*_OWNER`
    /// constants) or `abandoned_by`, is one of this allocator's heaps made
    /// so far: a process with several `Global`s (the tests) shares one
    /// segment map. By address against the heap list (a snapshot of its
    /// head: the walk needs no lock), never through `owner`, which may be
    /// another allocator's heap of another layout.
    fn ours(&self) -> impl Fn(usize) -> bool {
        let first = self.heaps.lock().all;
        move |owner| Self::heaps_from(first).any(|heap| heap as usize == owner)
    }

    /// Start the heap profiler: from now on about one allocation per `mean`
    /// bytes allocated is sampled with its call stack (see `profile.rs`).
    /// Its tables (`profile::TABLE_BYTES` of address space, resident as
    /// used) come from the provider. False when out of memory; true when
    /// it runs (or ran already).
    pub fn profile_start(&self, mean: usize) -> bool {
        let memory = &self.shared.memory;
        if memory.profile.is_on() {
            return true;
        }
        let bytes = profile::TABLE_BYTES.next_multiple_of(P::PAGE_SIZE);
        let Some(tables) = memory.map(bytes, P::PAGE_SIZE, Mapping::Metadata) else {
            return false;
        };
        if !P::MAPS_ZEROED {
            // SAFETY: a fresh mapping of at least TABLE_BYTES.
            unsafe { core::ptr::write_bytes(tables.as_ptr(), 0, profile::TABLE_BYTES) };
        }
        // SAFETY: zeroed, page aligned, ours for ever (never unmapped).
        if !unsafe { memory.profile.start(tables.as_ptr(), mean) } {
            // Another thread started it first: give this mapping back.
            // SAFETY: mapped above and not used.
            unsafe { memory.unmap(tables, bytes, Mapping::Metadata) };
        }
        true
    }

    /// The heap profiler's records (whether it is on, what it dropped,
    /// live samples).
    pub fn profile(&self) -> &profile::Profile {
        &self.shared.memory.profile
    }

    /// Write a dump of the live sampled allocations to `out` in pieces;
    /// `frame_name` names a frame (the folded format). False when the
    /// profiler is off or no scratch memory could be mapped.
    pub fn profile_dump(&self, format: profile::DumpFormat, frame_name: &mut dyn FnMut(usize, &mut MessageBuffer), out: &mut dyn FnMut(&[u8])) -> bool {
        let memory = &self.shared.memory;
        if !memory.profile.is_on() {
            return false;
        }
        let bytes = profile::SCRATCH_BYTES.next_multiple_of(P::PAGE_SIZE);
        let Some(scratch) = memory.map(bytes, P::PAGE_SIZE, Mapping::Metadata) else {
            return false;
        };
        // SAFETY: a fresh mapping of `bytes`, page (so u64) aligned, ours
        // until unmapped below; any bit pattern is a valid u64.
        let words = unsafe { core::slice::from_raw_parts_mut(scratch.as_ptr() as *mut u64, bytes / 8) };
        let written = memory.profile.dump(format, words, frame_name, out);
        // SAFETY: mapped above; `words` is not used after this.
        unsafe { memory.unmap(scratch, bytes, Mapping::Metadata) };
        written
    }

    /// Take every global lock (before `fork`), so the child never inherits
    /// a lock held by a thread that does not exist there.
    pub fn lock_all(&self) {
        core::mem::forget(self.idle.lock());
        core::mem::forget(self.heaps.lock());
        self.shared.lock_all();
    }

    /// Release the locks taken by [`Global::lock_all`].
    ///
    /// # Safety
    /// Only after `lock_all` in this thread (or in the forked child).
    pub unsafe fn unlock_all(&self) {
        // SAFETY: lock_all took these locks and forgot the guards.
        unsafe {
            self.shared.unlock_all();
            self.heaps.force_unlock();
            self.idle.force_unlock();
        }
    }
}
