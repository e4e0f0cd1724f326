//! The heap profiler's records: which sampled blocks are live, the call
//! stack of each, and the dumps written from them.
//!
//! ```text
//!  Heap (sampling.rs): byte countdown -> sampled block -> stack from the provider
//!        |
//!  Profile::record(block, size, frames)
//!        stack table: frames -> stack id   (insert-only, deduplicated)
//!        sample table: block -> (size, stack id)
//!  free of a block of a PAGE_SAMPLED page, or of a huge block: Profile::forget(block)
//!  dump: live samples sorted by (stack, size) -> heap_v2 text, or folded stacks
//! ```
//!
//! Nothing here takes a lock or allocates; the tables are one mapping from
//! the provider, made when profiling starts, and only the pages touched
//! become resident.
//! - The sample table is open addressing over at most `SAMPLE_PROBES`
//!   slots from a block's hash. A slot is EMPTY, a TOMBSTONE, BUSY (being
//!   written) or holds a block address; a block is inserted into the first
//!   EMPTY or TOMBSTONE slot of its window (one compare-exchange) and
//!   removed by the thread freeing it (the only one that can match it).
//!   Slots never become EMPTY again, so a lookup may stop at an EMPTY one,
//!   and no lookup reads more than the window.
//! - The stack table is insert-only: a stack's frames are written into an
//!   entry reserved with one fetch-add, then published by a
//!   compare-exchange of its index slot (release); readers load the slot
//!   (acquire) before reading frames.
//! - A sample that finds its window full, or a new stack that finds the
//!   stack table full, is dropped and counted (`dropped`); a dump taken
//!   while other threads allocate is a snapshot in motion.

use crate::message::MessageBuffer;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Most frames recorded per sampled allocation.
pub const MAX_FRAMES: usize = 64;
/// Default mean bytes between samples (tcmalloc's and jemalloc's 512 KiB).
pub const DEFAULT_MEAN_BYTES: usize = 512 << 10;
/// Slots of the sample table (16 bytes each).
const SAMPLE_SLOTS: usize = 1 << 16;
/// Slots a block's record may be placed in, from its hash on.
const SAMPLE_PROBES: usize = 32;
/// Distinct stacks kept (520 bytes each, resident as used).
const STACK_SLOTS: usize = 1 << 15;
/// Slots of the stack index (at most half full).
const STACK_INDEX: usize = 2 * STACK_SLOTS;
/// Bits of a sample's value that hold its stack id; the rest hold the size.
const STACK_BITS: u32 = 24;
static_assertions::const_assert!(STACK_SLOTS < (1 << STACK_BITS));

const EMPTY: usize = 0;
const TOMBSTONE: usize = 1;
const BUSY: usize = 2;

/// One live sample: the block's address (or a state), and its size and
/// stack id packed as `size << STACK_BITS | stack`.
#[repr(C)]
struct Sample {
    key: AtomicUsize,
    value: AtomicU64,
}

#[repr(C)]
struct Stack {
    depth: usize,
    frames: [usize; MAX_FRAMES],
}

/// The profiler's tables: one mapping.
#[repr(C)]
struct Tables {
    samples: [Sample; SAMPLE_SLOTS],
    /// Stack id + 1 of each index slot; 0 when empty.
    stack_index: [AtomicU32; STACK_INDEX],
    stacks_used: AtomicU32,
    /// Written once each, by the thread that reserved the entry, before
    /// its index slot is published.
    stacks: [UnsafeCell<Stack>; STACK_SLOTS],
}

/// Bytes of the mapping [`Profile::start`] needs.
pub const TABLE_BYTES: usize = core::mem::size_of::<Tables>();
/// Bytes of scratch a dump needs (one word per sample slot).
pub const SCRATCH_BYTES: usize = SAMPLE_SLOTS * 8;

/// What a dump writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DumpFormat {
    /// The text heap profile jeprof and pprof read (`heap_v2/<mean>`),
    /// without the `MAPPED_LIBRARIES:` section (the platform appends it).
    HeapV2,
    /// `frame;frame;frame bytes` per stack, outermost frame first, bytes
    /// scaled to estimate the whole heap (flame graph tools read it).
    Folded,
}

/// The profiler: off (no tables) until [`Profile::start`].
pub struct Profile {
    tables: AtomicPtr<Tables>,
    mean: AtomicUsize,
    dropped: AtomicUsize,
}

impl Profile {
    pub const fn new() -> Self {
        Profile { tables: AtomicPtr::new(core::ptr::null_mut()), mean: AtomicUsize::new(DEFAULT_MEAN_BYTES), dropped: AtomicUsize::new(0) }
    }

    /// Whether sampling is on.
    #[inline(always)]
    pub fn is_on(&self) -> bool {
        !self.tables.load(Ordering::Relaxed).is_null()
    }

    /// Mean bytes between samples.
    pub fn mean(&self) -> usize {
        self.mean.load(Ordering::Relaxed)
    }

    /// Samples and stacks not recorded because a table was full.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Turn sampling on with tables in `memory` (`TABLE_BYTES`, zeroed),
    /// sampling once per `mean` bytes on average. False (and `memory` not
    /// used) when it was on already.
    ///
    /// # Safety
    /// `memory` is `TABLE_BYTES` of zeroed memory, aligned to 64, that
    /// nothing else uses, ever.
    pub unsafe fn start(&self, memory: *mut u8, mean: usize) -> bool {
        self.mean.store(mean.max(1), Ordering::Relaxed);
        self.tables.compare_exchange(core::ptr::null_mut(), memory as *mut Tables, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    fn tables(&self) -> Option<&Tables> {
        // SAFETY: non-null only once `start` installed zeroed tables that
        // live for ever; all-zero bytes are valid for every field.
        unsafe { self.tables.load(Ordering::Acquire).as_ref() }
    }

    /// Record a sampled live block of `size` bytes allocated from `frames`
    /// (innermost first). False when it was dropped (a table full).
    pub fn record(&self, block: usize, size: usize, frames: &[usize]) -> bool {
        let Some(tables) = self.tables() else { return false };
        let recorded = tables.stack_id(frames).is_some_and(|stack| {
            let value = ((size.min((1 << (64 - STACK_BITS)) - 1) as u64) << STACK_BITS) | stack as u64;
            tables.insert_sample(block, value)
        });
        if !recorded {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        recorded
    }

    /// Forget the sample of `block`, if it is one (its free).
    pub fn forget(&self, block: usize) {
        if let Some(tables) = self.tables() {
            tables.remove_sample(block);
        }
    }

    /// Live samples: (count, bytes as allocated, not scaled).
    pub fn live(&self) -> (usize, usize) {
        let Some(tables) = self.tables() else { return (0, 0) };
        tables.live_values().fold((0, 0), |(n, bytes), v| (n + 1, bytes + (v >> STACK_BITS) as usize))
    }

    /// Write a dump of the live samples to `out`, in pieces. `scratch` is
    /// `SCRATCH_BYTES / 8` words (any contents); `frame_name` writes a
    /// frame's name for the folded format. False when profiling is off.
    pub fn dump(&self, format: DumpFormat, scratch: &mut [u64], frame_name: &mut dyn FnMut(usize, &mut MessageBuffer), out: &mut dyn FnMut(&[u8])) -> bool {
        let Some(tables) = self.tables() else { return false };
        // Sort by (stack, size): each stack's samples, and each size of
        // it, become one run.
        let mut live = 0;
        for value in tables.live_values().take(scratch.len()) {
            scratch[live] = ((value & ((1 << STACK_BITS) - 1)) << (64 - STACK_BITS)) | (value >> STACK_BITS);
            live += 1;
        }
        let sorted = &mut scratch[..live];
        sorted.sort_unstable();
        let stack_of = |key: u64| (key >> (64 - STACK_BITS)) as usize;
        let size_of = |key: u64| (key & ((1 << (64 - STACK_BITS)) - 1)) as usize;
        let mean = self.mean() as f64;
        let mut m = MessageBuffer::new();
        if format == DumpFormat::HeapV2 {
            let total: usize = sorted.iter().map(|&k| size_of(k)).sum();
            m.push_str("heap_v2/").push_decimal(self.mean()).push_str("\n  t*: ").push_decimal(live).push_str(": ").push_decimal(total);
            m.push_str(" [0: 0]\n# hakmem: samples dropped (tables full): ").push_decimal(self.dropped()).push_str("\n");
            out(m.as_bytes());
        }
        let mut run_start = 0;
        while run_start < live {
            let stack = stack_of(sorted[run_start]);
            let run_end = run_start + sorted[run_start..].iter().take_while(|&&k| stack_of(k) == stack).count();
            let frames = tables.frames(stack);
            match format {
                DumpFormat::HeapV2 => {
                    // One entry per size: jeprof scales each entry by its
                    // mean size, so equal sizes make the estimate exact.
                    let mut size_start = run_start;
                    while size_start < run_end {
                        let size = size_of(sorted[size_start]);
                        let count = sorted[size_start..run_end].iter().take_while(|&&k| size_of(k) == size).count();
                        out(b"@");
                        for &frame in frames {
                            let mut m = MessageBuffer::new();
                            out(m.push_str(" ").push_hex(frame).as_bytes());
                        }
                        let mut m = MessageBuffer::new();
                        m.push_str("\n  t*: ").push_decimal(count).push_str(": ").push_decimal(count * size).push_str(" [0: 0]\n");
                        out(m.as_bytes());
                        size_start += count;
                    }
                }
                DumpFormat::Folded => {
                    let bytes: f64 = sorted[run_start..run_end].iter().map(|&k| size_of(k) as f64 * scale(size_of(k) as f64, mean)).sum();
                    for (i, &frame) in frames.iter().rev().enumerate() {
                        let mut m = MessageBuffer::new();
                        if i > 0 {
                            m.push_str(";");
                        }
                        frame_name(frame, &mut m);
                        out(m.as_bytes());
                    }
                    let mut m = MessageBuffer::new();
                    out(m.push_str(" ").push_decimal(bytes as usize).push_str("\n").as_bytes());
                }
            }
            run_start = run_end;
        }
        true
    }
}

impl Default for Profile {
    fn default() -> Self {
        Self::new()
    }
}

impl Tables {
    /// The id of the stack of `frames`, inserted when new; None when the
    /// stack table is full.
    fn stack_id(&self, frames: &[usize]) -> Option<u32> {
        let frames = &frames[..frames.len().min(MAX_FRAMES)];
        let hash = frames.iter().fold(0x9e37_79b9_7f4a_7c15u64, |h, &f| mix(h ^ f as u64));
        let mut reserved: Option<u32> = None;
        for probe in 0..STACK_INDEX {
            let slot = &self.stack_index[(hash as usize).wrapping_add(probe) % STACK_INDEX];
            let mut published = slot.load(Ordering::Acquire);
            if published == 0 {
                let id = match reserved {
                    Some(id) => id,
                    None => {
                        let id = self.stacks_used.fetch_add(1, Ordering::Relaxed);
                        if id as usize >= STACK_SLOTS {
                            return None;
                        }
                        // SAFETY: entry `id` was reserved by this fetch-add
                        // alone and is not published yet: no one reads it.
                        unsafe {
                            let stack = self.stacks[id as usize].get();
                            (*stack).depth = frames.len();
                            (&mut (*stack).frames)[..frames.len()].copy_from_slice(frames);
                        }
                        reserved = Some(id);
                        id
                    }
                };
                match slot.compare_exchange(0, id + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return Some(id),
                    Err(now) => published = now,
                }
            }
            if self.frames(published as usize - 1) == frames {
                // A reserved entry left unpublished is lost (a race of two
                // threads inserting one new stack; rare and bounded).
                return Some(published - 1);
            }
        }
        None
    }

    /// The frames of a published stack.
    fn frames(&self, id: usize) -> &[usize] {
        // SAFETY: the caller read `id` from a published index slot (or a
        // sample holding it) with acquire ordering: the entry was written
        // before and is never written again.
        unsafe {
            let stack = &*self.stacks[id].get();
            &stack.frames[..stack.depth.min(MAX_FRAMES)]
        }
    }

    fn window(&self, block: usize) -> impl Iterator<Item = &Sample> {
        let start = mix(block as u64) as usize;
        (0..SAMPLE_PROBES).map(move |i| &self.samples[start.wrapping_add(i) % SAMPLE_SLOTS])
    }

    fn insert_sample(&self, block: usize, value: u64) -> bool {
        for sample in self.window(block) {
            let key = sample.key.load(Ordering::Relaxed);
            if (key == EMPTY || key == TOMBSTONE)
                && sample.key.compare_exchange(key, BUSY, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                sample.value.store(value, Ordering::Relaxed);
                sample.key.store(block, Ordering::Release);
                return true;
            }
        }
        false
    }

    fn remove_sample(&self, block: usize) {
        for sample in self.window(block) {
            match sample.key.load(Ordering::Acquire) {
                EMPTY => return,
                key if key == block => {
                    sample.key.store(TOMBSTONE, Ordering::Release);
                    return;
                }
                _ => {}
            }
        }
    }

    /// The values of the live samples.
    fn live_values(&self) -> impl Iterator<Item = u64> + '_ {
        self.samples.iter().filter_map(|sample| {
            let key = sample.key.load(Ordering::Acquire);
            (key > BUSY).then(|| sample.value.load(Ordering::Relaxed))
        })
    }
}

/// A 64-bit mixer (the splitmix64 finaliser).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The per-thread sampling state: bytes left until the next sample.
pub struct Sampler {
    left: usize,
    rng: u64,
    /// Set while the stack of a sample is taken (a nested malloc of the
    /// unwinder is not sampled).
    pub(crate) busy: bool,
    /// Set once the heap stopped installing pages for the fast paths.
    pub(crate) profiling: bool,
}

impl Sampler {
    pub const fn new(seed: u64) -> Self {
        Sampler { left: 0, rng: seed, busy: false, profiling: false }
    }

    /// Count an allocation of `size` bytes; true when it is sampled. The
    /// intervals are exponential with mean `mean` (a Poisson process over
    /// allocated bytes), so a block of `size` is sampled with probability
    /// `1 - exp(-size / mean)`.
    pub fn count(&mut self, size: usize, mean: usize) -> bool {
        if size < self.left {
            self.left -= size;
            return false;
        }
        let sampled = self.left != 0;
        self.left = exponential(crate::memory::splitmix64(&mut self.rng), mean);
        // The first call only draws the first interval.
        sampled || self.count(size, mean)
    }
}

/// An exponentially distributed whole number with the given mean, from
/// 64 random bits (at least 1).
fn exponential(random: u64, mean: usize) -> usize {
    let uniform = ((random >> 11) + 1) as f64 / (1u64 << 53) as f64; // (0, 1]
    ((-ln(uniform) * mean as f64) as usize).max(1)
}

/// The factor that estimates all allocations from samples of `size`
/// bytes: each was sampled with probability `1 - exp(-size / mean)`.
pub fn scale(size: f64, mean: f64) -> f64 {
    1.0 / (1.0 - exp(-size / mean))
}

/// Natural logarithm of a positive finite `x` (no libm in `no_std`):
/// `x = m * 2^e` with `m` in [1, 2), `ln m = 2 atanh((m - 1) / (m + 1))`
/// by its series (error below 1e-9).
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let mut term = t;
    let mut sum = 0.0;
    for k in 0..12 {
        sum += term / (2 * k + 1) as f64;
        term *= t2;
    }
    2.0 * sum + exponent as f64 * core::f64::consts::LN_2
}

/// `e^x` for `x <= 0` (no libm in `no_std`): `2^(x / ln 2)` split into a
/// power of two and `e^r` with `|r| <= ln 2 / 2` by its series.
fn exp(x: f64) -> f64 {
    if x < -700.0 {
        return 0.0;
    }
    let k = (x / core::f64::consts::LN_2 - 0.5) as i64; // rounds toward the nearest for x <= 0
    let r = x - k as f64 * core::f64::consts::LN_2;
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..16 {
        term *= r / i as f64;
        sum += term;
    }
    sum * f64::from_bits(((1023 + k) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_and_exp_match_std() {
        for &x in &[1e-12f64, 0.001, 0.3, 0.5, 1.0, 1.5, 2.0, 10.0, 12345.678] {
            assert!((ln(x) - x.ln()).abs() < 1e-9, "ln({x}) = {} not {}", ln(x), x.ln());
        }
        for &x in &[0.0f64, -1e-9, -0.1, -0.5, -1.0, -3.7, -50.0, -300.0] {
            let want: f64 = x.exp();
            assert!((exp(x) - want).abs() <= want * 1e-12, "exp({x}) = {} not {want}", exp(x));
        }
    }

    #[test]
    fn intervals_are_exponential_with_the_mean() {
        let mut sampler = Sampler::new(42);
        let mean = 1000;
        let (mut sampled, mut bytes) = (0usize, 0usize);
        // (Under Miri, the smaller configuration: 1000 samples expected.)
        for _ in 0..if cfg!(miri) { 100_000 } else { 2_000_000 } {
            bytes += 10;
            sampled += sampler.count(10, mean) as usize;
        }
        let expected = bytes / mean; // 20000 (1000 under Miri)
        assert!(sampled.abs_diff(expected) < expected / 20, "{sampled} samples, expected {expected}");
        // A block far larger than the mean is always sampled.
        assert!((0..100).all(|_| sampler.count(1 << 30, mean)));
    }

    #[test]
    fn scale_inverts_the_sampling_probability() {
        assert!((scale(512.0 * 1024.0, 512.0 * 1024.0) - 1.0 / (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        assert!((scale(1.0, 1000.0) - 1000.5).abs() < 0.01);
    }
}
