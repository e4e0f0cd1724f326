//! Allocation patterns shared by hakmem's criterion benchmarks (`criterion/alloc.rs`).
//!
//! Every pattern is generic over a [`GlobalAlloc`] and calls its `alloc`, `dealloc` and
//! `realloc` directly (the allocator under test is *not* the process's global allocator),
//! so hakmem, mimalloc, jemalloc and the system allocator run side by side in one process
//! on exactly the same code. The unit tests run each pattern once per allocator and check
//! the memory contents, so a broken allocator fails `cargo test -p hakmem-benches` instead
//! of producing a number.
//!
//! The [`shapes`] module is the other kind: ordinary Rust code (collections, threads,
//! channels) that allocates through whatever the process's `#[global_allocator]` is; the
//! `shapes` binary is built once per allocator to compare them (`benches/shapes/run`).

pub mod shapes;

use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;
use core::ptr;

// The allocators compared: hakmem (with the `hakmem` feature), mimalloc, jemalloc
// and `std::alloc::System` (glibc malloc on Linux). None of them is the global
// allocator of the benchmark process.
#[cfg(feature = "hakmem")]
pub static HAKMEM: hakmem_linux::HakmemAlloc = hakmem_linux::HakmemAlloc;
pub static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
pub static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
pub static SYSTEM: std::alloc::System = std::alloc::System;

/// splitmix64: the deterministic PRNG of every pattern.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(1))
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

#[inline]
fn oom(layout: Layout) -> ! {
    std::alloc::handle_alloc_error(layout)
}

/// Size of the batch of [`batch`].
pub const BATCH: usize = 100;

/// `BATCH` allocations of `size` bytes (alignment 8; one byte written in each), then
/// `BATCH` deallocations in allocation order: the C `tiny` workload. 200 calls.
#[inline(never)]
pub fn batch<A: GlobalAlloc>(a: &A, size: usize, slots: &mut [*mut u8; BATCH]) {
    let layout = Layout::from_size_align(size, 8).unwrap();
    for (i, s) in slots.iter_mut().enumerate() {
        // SAFETY: layout has a non-zero size.
        let p = unsafe { a.alloc(layout) };
        if p.is_null() {
            oom(layout);
        }
        // SAFETY: p points to at least `size` >= 1 writable bytes.
        unsafe { p.write(i as u8) };
        *s = p;
    }
    black_box(&mut *slots);
    for s in slots.iter() {
        // SAFETY: allocated above by `a` with `layout`.
        unsafe { a.dealloc(*s, layout) };
    }
}

/// A `Vec<u64>` built by `n` pushes through `a` (capacity 4, then doubling with
/// `realloc`, the way `Vec` grows); returns the sum of the elements. `n` >= 1.
#[inline(never)]
pub fn vec_growth<A: GlobalAlloc>(a: &A, n: usize) -> u64 {
    let elem = core::mem::size_of::<u64>();
    let mut cap = 4usize;
    let mut layout = Layout::from_size_align(cap * elem, 8).unwrap();
    // SAFETY: non-zero size.
    let mut p = unsafe { a.alloc(layout) } as *mut u64;
    if p.is_null() {
        oom(layout);
    }
    for i in 0..n {
        if i == cap {
            let new_size = cap * 2 * elem;
            // SAFETY: p was allocated by `a` with `layout`; new_size is non-zero and
            // does not overflow isize.
            let q = unsafe { a.realloc(p as *mut u8, layout, new_size) } as *mut u64;
            if q.is_null() {
                oom(layout);
            }
            p = q;
            cap *= 2;
            layout = Layout::from_size_align(cap * elem, 8).unwrap();
        }
        // SAFETY: i < cap.
        unsafe { p.add(i).write(i as u64) };
    }
    black_box(p);
    let mut sum = 0u64;
    // Read back a few elements (all of them for small vectors): checks `realloc` copied.
    let step = (n / 64).max(1);
    let mut i = 0;
    while i < n {
        // SAFETY: i < n <= cap, initialized above.
        let v = unsafe { p.add(i).read() };
        assert_eq!(v, i as u64, "vec_growth: element {i} lost by realloc");
        sum = sum.wrapping_add(v);
        i += step;
    }
    // SAFETY: allocated by `a` with `layout`.
    unsafe { a.dealloc(p as *mut u8, layout) };
    sum
}

/// Live boxes of mixed sizes replaced at random ("Box churn"): sizes 8..=4096 bytes,
/// 75% of them at most 128 bytes, alignments 8 or 16 (1 in 8 is 16-aligned).
pub struct Churn {
    live: Vec<(*mut u8, Layout)>,
    rng: Rng,
}

/// Number of live boxes of [`Churn`].
pub const CHURN_LIVE: usize = 512;

impl Churn {
    fn layout(rng: &mut Rng) -> Layout {
        let r = rng.below(100);
        let size = if r < 75 {
            8 + rng.below(121) as usize // 8..=128
        } else if r < 95 {
            129 + rng.below(896) as usize // 129..=1024
        } else {
            1025 + rng.below(3072) as usize // 1025..=4096
        };
        let align = if rng.below(8) == 0 { 16 } else { 8 };
        Layout::from_size_align(size, align).unwrap()
    }

    /// Fills `CHURN_LIVE` boxes.
    pub fn new<A: GlobalAlloc>(a: &A, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut live = Vec::with_capacity(CHURN_LIVE);
        for _ in 0..CHURN_LIVE {
            let l = Self::layout(&mut rng);
            // SAFETY: non-zero size.
            let p = unsafe { a.alloc(l) };
            if p.is_null() {
                oom(l);
            }
            // SAFETY: l.size() >= 8 writable bytes.
            unsafe { p.write(l.size() as u8) };
            live.push((p, l));
        }
        Churn { live, rng }
    }

    /// `steps` replacements: free a random box, allocate a new one of a random layout
    /// (first byte written, checked when freed). 2 calls per step.
    #[inline(never)]
    pub fn run<A: GlobalAlloc>(&mut self, a: &A, steps: usize) {
        for _ in 0..steps {
            let i = self.rng.below(CHURN_LIVE as u64) as usize;
            let (p, l) = self.live[i];
            // SAFETY: p is a live allocation of `a` with layout l.
            unsafe {
                debug_assert_eq!(p.read(), l.size() as u8);
                debug_assert_eq!(p as usize % l.align(), 0);
                a.dealloc(p, l);
            }
            let nl = Self::layout(&mut self.rng);
            // SAFETY: non-zero size.
            let q = unsafe { a.alloc(nl) };
            if q.is_null() {
                oom(nl);
            }
            // SAFETY: nl.size() >= 8 writable bytes.
            unsafe { q.write(nl.size() as u8) };
            self.live[i] = (q, nl);
        }
    }

    /// Frees every box (checking its first byte and alignment).
    pub fn finish<A: GlobalAlloc>(self, a: &A) {
        for (p, l) in self.live {
            // SAFETY: live allocation of `a` with layout l.
            unsafe {
                assert_eq!(p.read(), l.size() as u8, "churn: block contents corrupted");
                assert_eq!(p as usize % l.align(), 0, "churn: misaligned block");
                a.dealloc(p, l);
            }
        }
    }
}

/// An empty slot array for [`batch`].
pub fn slots() -> [*mut u8; BATCH] {
    [ptr::null_mut(); BATCH]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_patterns<A: GlobalAlloc>(a: &A) {
        let mut s = slots();
        for size in [8, 16, 32, 64, 128, 256, 512, 1024] {
            batch(a, size, &mut s);
        }
        for n in [1, 5, 128, 131072] {
            let expect: u64 = (0..n as u64).step_by((n / 64).max(1)).sum();
            assert_eq!(vec_growth(a, n), expect);
        }
        let mut c = Churn::new(a, 1);
        c.run(a, 100_000);
        c.finish(a);
    }

    #[test]
    fn patterns_run_on_every_allocator() {
        #[cfg(feature = "hakmem")]
        all_patterns(&HAKMEM);
        all_patterns(&MIMALLOC);
        all_patterns(&JEMALLOC);
        all_patterns(&SYSTEM);
    }
}
