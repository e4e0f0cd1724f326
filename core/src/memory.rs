//! The provider as the rest of the core sees it: every map, unmap and purge
//! goes through [`Memory`], which counts it, so the counters cannot miss
//! one. Also here: the options, the free-list keys, the clock and fatal
//! errors, the profiler's records, everything the other modules need
//! from "outside".
//!
//! Invariant: `stats.bytes_mapped` is the sum of the sizes of the live
//! mappings made through [`Memory::map`] (and resized by `remap`).

use crate::capacity::{CapacityLearner, BIGCACHE_FIT_MAX_FACTOR, BIGCACHE_MAX_FACTOR, SEGMENT_CACHE_MAX_FACTOR};
use crate::config::{Options, BIGCACHE_FIT_MAX_PERCENT};
use crate::learn::PurgeLearner;
use crate::message::MessageBuffer;
use crate::profile::Profile;
use crate::provider::PageProvider;
use crate::stats::{Mapping, Stats};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

const KEYS_UNSET: u8 = 0;
const KEYS_DRAWING: u8 = 1;
const KEYS_SET: u8 = 2;
const STRICT_UNSET: u8 = 0;
const STRICT_OFF: u8 = 1;
const STRICT_ON: u8 = 2;

/// The provider with its counters, options and keys.
pub struct Memory<P: PageProvider> {
    provider: P,
    /// (list key, marker key), valid once `keys_state` is KEYS_SET.
    keys: [AtomicUsize; 2],
    keys_state: AtomicU8,
    /// `options.strict` as the first heap found it (strict.rs): STRICT_UNSET,
    /// STRICT_OFF or STRICT_ON.
    strict: AtomicU8,
    pub stats: Stats,
    pub options: Options,
    /// The learned purge policy: delay and dirty-byte cap (learn.rs).
    pub learner: PurgeLearner,
    /// The learned capacities of the segment cache (segments) and of
    /// BigCache (warm bytes) (capacity.rs).
    pub segment_cache: CapacityLearner,
    pub bigcache: CapacityLearner,
    /// The learned fit tolerance of BigCache (W_MAX), in 64ths of the
    /// request (capacity.rs).
    pub bigcache_fit: CapacityLearner,
    /// The heap profiler's records (off until started).
    pub profile: Profile,
}

impl<P: PageProvider> Memory<P> {
    pub const fn new(provider: P) -> Self {
        Memory {
            provider,
            keys: [AtomicUsize::new(0), AtomicUsize::new(0)],
            keys_state: AtomicU8::new(KEYS_UNSET),
            strict: AtomicU8::new(STRICT_UNSET),
            stats: Stats::new(),
            options: Options::new(),
            learner: PurgeLearner::new(),
            segment_cache: CapacityLearner::new(SEGMENT_CACHE_MAX_FACTOR),
            bigcache: CapacityLearner::new(BIGCACHE_MAX_FACTOR),
            bigcache_fit: CapacityLearner::new(BIGCACHE_FIT_MAX_FACTOR),
            profile: Profile::new(),
        }
    }

    /// Strict mode: `options.strict` when the first heap was made, for the
    /// allocator's whole life (heaps of both modes sharing pages would hand
    /// out strict blocks unsealed).
    pub fn strict(&self) -> bool {
        let mut state = self.strict.load(Ordering::Acquire);
        if state == STRICT_UNSET {
            let first = if self.options.strict.load(Ordering::Relaxed) { STRICT_ON } else { STRICT_OFF };
            state = match self.strict.compare_exchange(STRICT_UNSET, first, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => first,
                Err(published) => published,
            };
        }
        state == STRICT_ON
    }

    /// Guard pages (guard.rs): strict mode over a provider that can protect.
    pub fn guards(&self) -> bool {
        P::CAN_PROTECT && self.strict()
    }

    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// (list key, marker key), drawn once from the provider's entropy: links
    /// are stored `next ^ list_key`, a free block's marker is `block ^ marker_key`.
    pub fn keys(&self) -> (usize, usize) {
        if self.keys_state.load(Ordering::Acquire) != KEYS_SET {
            self.draw_keys();
        }
        (self.keys[0].load(Ordering::Relaxed), self.keys[1].load(Ordering::Relaxed))
    }

    /// Draw the keys (the first caller), or wait for the thread drawing
    /// them. (Not spin::Once: its slow path is code of its own, placed
    /// apart from the rest of start-up; see `ffi/hot.ld`.)
    #[cold]
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    fn draw_keys(&self) {
        if self.keys_state.compare_exchange(KEYS_UNSET, KEYS_DRAWING, Ordering::Acquire, Ordering::Acquire).is_ok() {
            let mut seed = self.provider.random_seed() ^ (self as *const Self as u64);
            self.keys[0].store(splitmix64(&mut seed) as usize & !0xf, Ordering::Relaxed);
            self.keys[1].store(splitmix64(&mut seed) as usize | 1, Ordering::Relaxed);
            self.keys_state.store(KEYS_SET, Ordering::Release);
        } else {
            while self.keys_state.load(Ordering::Acquire) != KEYS_SET {
                core::hint::spin_loop();
            }
        }
    }

    /// The provider's clock (0 when it has none).
    pub fn now_ms(&self) -> u64 {
        self.provider.now_ms()
    }

    /// How long freed pages stay resident (ms): learned or configured.
    pub fn purge_delay_ms(&self) -> usize {
        self.learner.delay_ms(&self.options)
    }

    /// How long the dirty pages of the segments no thread holds (the
    /// segment store's: exited threads', empty ones) stay resident (ms):
    /// the learned delay, at most the configured one. The learned delay fits
    /// a heap's reuses of its own pages; what waits in the store may never
    /// be taken again, and under the learned delay the short-lived threads
    /// of the `thread-churn` row kept nearly every segment they had used
    /// resident.
    pub fn store_purge_delay_ms(&self) -> usize {
        self.purge_delay_ms().min(self.options.purge_delay_ms.load(Ordering::Relaxed))
    }

    /// Empty segments the segment store keeps mapped: learned or configured.
    pub fn segment_cache_limit(&self) -> usize {
        self.segment_cache.capacity(&self.options, self.options.segment_cache.load(Ordering::Relaxed))
    }

    /// Bytes of freed huge blocks BigCache keeps warm: learned or configured.
    pub fn bigcache_limit(&self) -> usize {
        self.bigcache.capacity(&self.options, self.options.bigcache_bytes.load(Ordering::Relaxed))
    }

    /// The configured fit tolerance of BigCache in 64ths of the request (at
    /// least 1: the learner doubles it).
    pub fn bigcache_fit_configured(&self) -> usize {
        (self.options.bigcache_fit_percent.load(Ordering::Relaxed).min(BIGCACHE_FIT_MAX_PERCENT) * 64 / 100).max(1)
    }

    /// How much larger than a request, in 64ths of it, a warm cached
    /// mapping may be and serve it as it is: learned or configured.
    pub fn bigcache_fit(&self) -> usize {
        self.bigcache_fit.capacity(&self.options, self.bigcache_fit_configured())
    }

    /// Abort with `hakmem: <what><address>`.
    #[cold]
    pub fn fatal_at(&self, what: &str, address: usize) -> ! {
        let mut m = MessageBuffer::new();
        m.push_str("hakmem: ").push_str(what).push_hex(address).push_str("\n");
        self.provider.fatal(m.as_bytes())
    }

    /// Abort with `hakmem: <what><address> (size class <block_size> bytes)`.
    #[cold]
    pub fn fatal_in_class(&self, what: &str, address: usize, block_size: usize) -> ! {
        let mut m = MessageBuffer::new();
        m.push_str("hakmem: ").push_str(what).push_hex(address);
        m.push_str(" (size class ").push_decimal(block_size).push_str(" bytes)\n");
        self.provider.fatal(m.as_bytes())
    }

    /// Map `bytes` aligned to `align` and count it as `what`.
    pub fn map(&self, bytes: usize, align: usize, what: Mapping) -> Option<NonNull<u8>> {
        let memory = self.provider.map(bytes, align)?;
        self.stats.mapped(bytes, what);
        Some(memory)
    }

    /// Map what the provider has of `min..=max` bytes aligned to `align`
    /// (see [`PageProvider::map_up_to`]) and count it as `what`.
    pub fn map_up_to(&self, min: usize, max: usize, align: usize, what: Mapping) -> Option<(NonNull<u8>, usize)> {
        let (memory, bytes) = self.provider.map_up_to(min, max, align)?;
        self.stats.mapped(bytes, what);
        Some((memory, bytes))
    }

    /// Unmap a mapping made by [`Memory::map`] and count it.
    ///
    /// # Safety
    /// `start` and `bytes` are exactly one live mapping's, and nothing in it
    /// is used afterwards.
    pub unsafe fn unmap(&self, start: NonNull<u8>, bytes: usize, what: Mapping) {
        self.stats.unmapped(bytes, what);
        // SAFETY: per the contract.
        unsafe { self.provider.unmap(start, bytes) };
    }

    /// Resize a huge mapping without copying (see [`PageProvider::remap`]).
    ///
    /// # Safety
    /// As for [`PageProvider::remap`].
    pub unsafe fn remap_huge(&self, start: NonNull<u8>, old_bytes: usize, new_bytes: usize, align: usize) -> Option<NonNull<u8>> {
        // SAFETY: per the contract.
        let moved = unsafe { self.provider.remap(start, old_bytes, new_bytes, align) }?;
        self.stats.unmapped(old_bytes, Mapping::Huge);
        self.stats.mapped(new_bytes, Mapping::Huge);
        Some(moved)
    }

    /// Move `bytes` of pages from a cached huge mapping (`whole`: all of
    /// it) into another huge mapping, as [`PageProvider::move_pages`] does,
    /// and count them gone from the first. False when the provider could
    /// not: the source range (part of it may have moved) is then unmapped,
    /// and counted so.
    ///
    /// # Safety
    /// As for [`PageProvider::move_pages`]; the source range is not used
    /// again either way.
    pub unsafe fn move_huge_pages(&self, from: usize, bytes: usize, to: usize, whole: bool) -> bool {
        // SAFETY: per the contract (both inside mappings, so not null).
        unsafe {
            let source = NonNull::new_unchecked(from as *mut u8);
            let moved = self.provider.move_pages(source, bytes, NonNull::new_unchecked(to as *mut u8));
            if !moved {
                self.provider.unmap(source, bytes);
                self.stats.unmapped_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            self.stats.moved_out(bytes, whole);
            moved
        }
    }

    /// Make `bytes` at `start` inaccessible (a guard, guard.rs).
    ///
    /// # Safety
    /// The range is page aligned, inside one mapping, and nothing in it is
    /// used until it is unmapped.
    pub unsafe fn protect(&self, start: usize, bytes: usize) {
        if bytes == 0 {
            return;
        }
        // SAFETY: per the contract (start is inside a mapping, so not null).
        unsafe { self.provider.protect(NonNull::new_unchecked(start as *mut u8), bytes, false) };
    }

    /// Purge `bytes` at `start` and count them.
    ///
    /// # Safety
    /// The range is page aligned, inside one mapping, and holds nothing live.
    pub unsafe fn purge(&self, start: usize, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.stats.purged_bytes.fetch_add(bytes, Ordering::Relaxed);
        // SAFETY: per the contract (start is inside a mapping, so not null).
        unsafe { self.provider.purge(NonNull::new_unchecked(start as *mut u8), bytes) };
    }
}

/// One step of splitmix64.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
