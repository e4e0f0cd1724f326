//! hakmem's core over its arena provider against the allocators embedders
//! pick (talc, linked_list_allocator, buddy_system_allocator, rlsf), each
//! over an arena of the same size, behind a spin lock, in one process:
//!
//! - time: random allocate/free of mixed sizes (8 B to 64 KiB, and to 1
//!   MiB; log-uniform, so small blocks are the most common), on one thread
//!   and on two threads sharing the one locked heap (hakmem also with a
//!   heap per thread, `PerCpuHeaps`, shown apart);
//! - arena efficiency at 1, 16 and 256 MiB: the share of the arena
//!   allocated in small blocks (8 B-1 KiB) before the first failure; then,
//!   after freeing a random half, refilled with the same sizes, or with
//!   larger ones (1-8 KiB), until the next failure.
//!
//! Proof of allocator: every pointer a subject returns is checked to lie
//! inside that subject's own arena (the count is printed per subject), so
//! no figure can come from the host's allocator.
//!
//! Prints a Markdown report on stdout. Usage: `hakmem-embedded-bench
//! [--quick]`; `benches/embedded/run` builds it for both core geometries.

use std::alloc::Layout;
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hakmem_core::{Arena, ArenaHost, Global, LockedHeap, NoInterrupts, PerCpuHeaps};

const MIB: usize = 1 << 20;
const ALIGN: usize = 16;

// ---------------------------------------------------------------------------
// Arenas: host memory, 2 MiB aligned and touched before any timing.

struct ArenaMemory {
    ptr: *mut u8,
    len: usize,
}
// SAFETY: only the address range is shared (for the proof); the memory is
// the subject's.
unsafe impl Sync for ArenaMemory {}

impl ArenaMemory {
    fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, 2 * MIB).unwrap();
        // SAFETY: a non-zero layout; zeroed, so every page is touched.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        // SAFETY: the allocation above, len bytes; pre-fault every page.
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
        ArenaMemory { ptr, len }
    }

    fn contains(&self, p: *mut u8) -> bool {
        (self.ptr as usize..self.ptr as usize + self.len).contains(&(p as usize))
    }
}

impl Drop for ArenaMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in new with this layout.
        unsafe { std::alloc::dealloc(self.ptr, Layout::from_size_align(self.len, 2 * MIB).unwrap()) };
    }
}

// ---------------------------------------------------------------------------
// Subjects: one allocator over one arena.

trait Subject: Sync {
    fn alloc(&self, layout: Layout) -> *mut u8;
    /// # Safety
    /// `p` came from `alloc(layout)` and is freed once.
    unsafe fn free(&self, p: *mut u8, layout: Layout);
}

struct Host;
// SAFETY: never grows.
unsafe impl ArenaHost for Host {
    fn fatal(&self, message: &[u8]) -> ! {
        eprintln!("{}", String::from_utf8_lossy(message).trim_end());
        std::process::abort()
    }
}

struct Hakmem(LockedHeap<Arena<Host>>);
struct HakmemPerCpu(PerCpuHeaps<Arena<Host>, 2, NoInterrupts>);

fn hakmem_global(arena: &ArenaMemory) -> &'static Global<Arena<Host>> {
    // Leaked: a Global outlives its heaps; the arena memory goes back to
    // the host when the subject is done (nothing reads it afterwards).
    let global: &'static Global<Arena<Host>> = Box::leak(Box::new(Global::new(Arena::new(Host))));
    // SAFETY: the arena is this subject's alone while it runs.
    unsafe { global.provider().add_range(arena.ptr, arena.len) };
    global
}

thread_local! {
    static THREAD_INDEX: Cell<usize> = const { Cell::new(0) };
}

fn thread_index() -> usize {
    THREAD_INDEX.with(Cell::get)
}

macro_rules! global_alloc_subject {
    ($t:ty) => {
        impl Subject for $t {
            fn alloc(&self, layout: Layout) -> *mut u8 {
                // SAFETY: non-zero layouts only.
                unsafe { std::alloc::GlobalAlloc::alloc(&self.0, layout) }
            }
            unsafe fn free(&self, p: *mut u8, layout: Layout) {
                // SAFETY: per the contract.
                unsafe { std::alloc::GlobalAlloc::dealloc(&self.0, p, layout) }
            }
        }
    };
}
global_alloc_subject!(Hakmem);
global_alloc_subject!(HakmemPerCpu);

struct Talc(spin::Mutex<talc::Talc<talc::ErrOnOom>>);
impl Subject for Talc {
    fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: non-zero layouts only.
        unsafe { self.0.lock().malloc(layout) }.map_or(std::ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn free(&self, p: *mut u8, layout: Layout) {
        // SAFETY: per the contract.
        unsafe { self.0.lock().free(NonNull::new_unchecked(p), layout) }
    }
}

struct LinkedList(spin::Mutex<linked_list_allocator::Heap>);
impl Subject for LinkedList {
    fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock().allocate_first_fit(layout).map_or(std::ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn free(&self, p: *mut u8, layout: Layout) {
        // SAFETY: per the contract.
        unsafe { self.0.lock().deallocate(NonNull::new_unchecked(p), layout) }
    }
}

struct Buddy(spin::Mutex<buddy_system_allocator::Heap<32>>);
impl Subject for Buddy {
    fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock().alloc(layout).map_or(std::ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn free(&self, p: *mut u8, layout: Layout) {
        // SAFETY: per the contract (p is not null).
        self.0.lock().dealloc(unsafe { NonNull::new_unchecked(p) }, layout)
    }
}

type TlsfHeap = rlsf::Tlsf<'static, u32, u32, 28, 32>;
struct Rlsf(spin::Mutex<TlsfHeap>);
impl Subject for Rlsf {
    fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock().allocate(layout).map_or(std::ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn free(&self, p: *mut u8, layout: Layout) {
        // SAFETY: per the contract.
        unsafe { self.0.lock().deallocate(NonNull::new_unchecked(p), layout.align()) }
    }
}

const SUBJECTS: [&str; 6] = ["hakmem", "talc", "linked_list", "buddy", "rlsf", "hakmem per-thread"];
const REFERENCES: [&str; 4] = ["talc", "linked_list", "buddy", "rlsf"];

fn make(name: &str, arena: &ArenaMemory) -> Box<dyn Subject> {
    // SAFETY (each arm): the arena is handed to the one allocator for as
    // long as the subject lives, which ends before the arena is freed.
    match name {
        "hakmem" => Box::new(Hakmem(LockedHeap::new(hakmem_global(arena)))),
        "hakmem per-thread" => Box::new(HakmemPerCpu(PerCpuHeaps::per_cpu(hakmem_global(arena), NoInterrupts, thread_index))),
        "talc" => {
            let mut heap = talc::Talc::new(talc::ErrOnOom);
            // SAFETY: see above.
            unsafe { heap.claim(talc::Span::new(arena.ptr, arena.ptr.add(arena.len))) }.expect("talc claims the arena");
            Box::new(Talc(spin::Mutex::new(heap)))
        }
        "linked_list" => {
            let mut heap = linked_list_allocator::Heap::empty();
            // SAFETY: see above.
            unsafe { heap.init(arena.ptr, arena.len) };
            Box::new(LinkedList(spin::Mutex::new(heap)))
        }
        "buddy" => {
            let mut heap = buddy_system_allocator::Heap::<32>::empty();
            // SAFETY: see above.
            unsafe { heap.init(arena.ptr as usize, arena.len) };
            Box::new(Buddy(spin::Mutex::new(heap)))
        }
        "rlsf" => {
            let mut heap = TlsfHeap::new();
            // SAFETY: see above.
            unsafe { heap.insert_free_block_ptr(NonNull::new(std::ptr::slice_from_raw_parts_mut(arena.ptr, arena.len)).unwrap()) };
            Box::new(Rlsf(spin::Mutex::new(heap)))
        }
        _ => unreachable!("{name}"),
    }
}

// ---------------------------------------------------------------------------
// The proof: every pointer inside the subject's arena.

struct Proof {
    inside: AtomicUsize,
    outside: AtomicUsize,
}

static PROOFS: [Proof; SUBJECTS.len()] = [const { Proof { inside: AtomicUsize::new(0), outside: AtomicUsize::new(0) } }; SUBJECTS.len()];

fn prove(subject: usize, arena: &ArenaMemory, p: *mut u8) {
    let proof = &PROOFS[subject];
    if arena.contains(p) { &proof.inside } else { &proof.outside }.fetch_add(1, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------
// Workloads.

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Log-uniform in [min, max] (both powers of two).
    fn size(&mut self, min: usize, max: usize) -> usize {
        let (low, high) = (min.trailing_zeros() as u64, max.trailing_zeros() as u64);
        let r = self.next();
        let bits = low + r % (high - low);
        let base = 1usize << bits;
        (base + (r >> 32) as usize % base).min(max)
    }
}

/// Random allocate/free: keep up to `live_max` blocks, each step frees a
/// random one or allocates (sizes log-uniform in min..=max). Returns failed
/// allocations.
fn churn(s: &dyn Subject, index: usize, arena: &ArenaMemory, seed: u64, steps: usize, live_max: usize, max: usize) -> usize {
    let mut rng = Rng(seed);
    let mut live: Vec<(*mut u8, Layout)> = Vec::with_capacity(live_max);
    let mut failed = 0;
    for _ in 0..steps {
        let r = rng.next();
        if live.len() == live_max || (!live.is_empty() && r & 1 == 0) {
            let (p, layout) = live.swap_remove((r >> 8) as usize % live.len());
            // SAFETY: p is live, from this subject.
            unsafe {
                assert_eq!((p as *const usize).read(), layout.size(), "a block lost its contents");
                s.free(p, layout);
            }
        } else {
            let layout = Layout::from_size_align(rng.size(8, max), ALIGN).unwrap();
            let p = s.alloc(layout);
            if p.is_null() {
                failed += 1;
                continue;
            }
            prove(index, arena, p);
            // SAFETY: a fresh block of at least 8 bytes.
            unsafe { (p as *mut usize).write(layout.size()) };
            live.push((p, layout));
        }
    }
    for (p, layout) in live {
        // SAFETY: as above.
        unsafe { s.free(p, layout) };
    }
    failed
}

struct Timed {
    name: &'static str,
    max: usize,
    threads: usize,
    steps: usize,
    live_max: usize,
}

const ARENA_FOR_TIME: usize = 128 * MIB;
const DEADLINE: Duration = Duration::from_secs(20);

fn time_one(t: &Timed, subject: usize) -> (Duration, usize) {
    let arena = ArenaMemory::new(ARENA_FOR_TIME);
    let s = make(SUBJECTS[subject], &arena);
    let start = Instant::now();
    let failed = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..t.threads)
            .map(|thread| {
                let (s, arena) = (&*s, &arena);
                scope.spawn(move || {
                    THREAD_INDEX.with(|i| i.set(thread));
                    churn(s, subject, arena, 7 + thread as u64, t.steps / t.threads, t.live_max / t.threads, t.max)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let elapsed = start.elapsed();
    drop(s);
    (elapsed, failed)
}

/// The efficiency rows' patterns: a fill of small blocks, then optionally a
/// random half freed and the arena refilled with blocks of these sizes.
const PATTERNS: [(&str, Option<(usize, usize)>); 3] =
    [("fill 8 B-1 KiB", None), ("free half, refill 8 B-1 KiB", Some((8, 1024))), ("free half, refill 1-8 KiB", Some((1024, 8192)))];

/// Share of the arena (percent) in live blocks at the first failure of a
/// fill, and after a random half is freed and refilled with `refill` sizes.
/// `None`: over the deadline (20 s).
fn efficiency(subject: usize, arena_bytes: usize, refill: Option<(usize, usize)>) -> Option<f64> {
    let arena = ArenaMemory::new(arena_bytes);
    let s = make(SUBJECTS[subject], &arena);
    let mut rng = Rng(arena_bytes as u64);
    let mut live: Vec<(*mut u8, Layout)> = Vec::new();
    let mut bytes = 0usize;
    let start = Instant::now();
    let fill = |live: &mut Vec<(*mut u8, Layout)>, bytes: &mut usize, rng: &mut Rng, (min, max): (usize, usize)| -> bool {
        loop {
            let layout = Layout::from_size_align(rng.size(min, max), ALIGN).unwrap();
            let p = s.alloc(layout);
            if p.is_null() {
                return true;
            }
            prove(subject, &arena, p);
            live.push((p, layout));
            *bytes += layout.size();
            if live.len().is_multiple_of(1024) && start.elapsed() > DEADLINE {
                return false;
            }
        }
    };
    let mut finished = fill(&mut live, &mut bytes, &mut rng, (8, 1024));
    if let (true, Some(sizes)) = (finished, refill) {
        let mut kept = Vec::with_capacity(live.len());
        for (i, (p, layout)) in live.drain(..).enumerate() {
            if rng.next() & 1 == 0 {
                // SAFETY: a live block of this subject.
                unsafe { s.free(p, layout) };
                bytes -= layout.size();
            } else {
                kept.push((p, layout));
            }
            if i.is_multiple_of(1024) && start.elapsed() > DEADLINE {
                return None;
            }
        }
        live = kept;
        finished = fill(&mut live, &mut bytes, &mut rng, sizes);
    }
    // The live blocks go with the arena: freeing them one by one is not
    // measured (and takes linked_list_allocator minutes).
    drop(s);
    finished.then(|| bytes as f64 * 100.0 / arena_bytes as f64)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 1 } else { 4 };
    let rounds = if quick { 3 } else { 5 };
    let geometry = if cfg!(feature = "small-segments") { "small-segments (256 KiB segments)" } else { "default (2 MiB segments)" };
    let timed = [
        Timed { name: "random 8 B-64 KiB, 1 thread", max: 64 << 10, threads: 1, steps: 250_000 * scale, live_max: 1000 },
        Timed { name: "random 8 B-1 MiB, 1 thread", max: MIB, threads: 1, steps: 50_000 * scale, live_max: 100 },
        Timed { name: "random 8 B-64 KiB, 2 threads, one locked heap", max: 64 << 10, threads: 2, steps: 250_000 * scale, live_max: 1000 },
    ];

    if let Ok(spec) = std::env::var("EMBEDDED_ONLY") {
        // Profiling aid: `EMBEDDED_ONLY=<workload index>:<subject>` runs that one cell 20 times.
        let (w, name) = spec.split_once(':').expect("index:subject");
        let subject = SUBJECTS.iter().position(|s| *s == name).expect("a subject");
        let times: Vec<_> = (0..20).map(|_| time_one(&timed[w.parse::<usize>().unwrap()], subject).0).collect();
        println!("{name}: median {:?}", median(times));
        return;
    }
    if let Ok(name) = std::env::var("EMBEDDED_EFFICIENCY") {
        // Aid: `EMBEDDED_EFFICIENCY=<subject>` prints that subject's efficiency
        // at 1 and 16 MiB (deterministic: one run tells a change's effect).
        let subject = SUBJECTS.iter().position(|s| *s == name).expect("a subject");
        for arena in [MIB, 16 * MIB] {
            for (pattern, refill) in PATTERNS {
                println!("{} MiB, {pattern}: {:?}", arena / MIB, efficiency(subject, arena, refill));
            }
        }
        return;
    }
    println!("# hakmem's core against the embedders' allocators\n");
    println!("hakmem geometry: {geometry}; {} mode, {rounds} rounds interleaved; every subject behind a spin lock over an arena of the same size (host memory, pre-faulted).\n", if quick { "quick" } else { "full" });
    println!("## Time (median of {rounds} rounds, ms; arena {} MiB; ratio = hakmem / best reference)\n", ARENA_FOR_TIME / MIB);
    println!("| workload | {} | best reference | hakmem / best | hakmem per-thread / best |", SUBJECTS.join(" | "));
    println!("|---|{}---|---|---|", "---|".repeat(SUBJECTS.len()));
    for t in &timed {
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); SUBJECTS.len()];
        let mut failures = vec![0usize; SUBJECTS.len()];
        for _ in 0..rounds {
            for (subject, name) in SUBJECTS.iter().enumerate() {
                if *name == "hakmem per-thread" && t.threads == 1 {
                    continue;
                }
                let (elapsed, failed) = time_one(t, subject);
                times[subject].push(elapsed);
                failures[subject] += failed;
            }
        }
        let ms: Vec<Option<f64>> = times.into_iter().map(|v| (!v.is_empty()).then(|| median(v).as_secs_f64() * 1e3)).collect();
        let best = REFERENCES.iter().map(|r| ms[SUBJECTS.iter().position(|s| s == r).unwrap()].unwrap()).fold(f64::INFINITY, f64::min);
        let cell = |i: usize| match (ms[i], failures[i]) {
            (Some(v), 0) => format!("{v:.1}"),
            (Some(v), f) => format!("{v:.1} ({f} failed)"),
            (None, _) => "-".into(),
        };
        let ratio = |i: usize| ms[i].map_or("-".into(), |v| format!("{:.2}", v / best));
        println!("| {} | {} | {best:.1} | {} | {} |", t.name, (0..SUBJECTS.len()).map(cell).collect::<Vec<_>>().join(" | "), ratio(0), ratio(5));
    }

    println!("\n## Arena efficiency (% of the arena in live blocks at the first failure; ratio = hakmem / best reference)\n");
    println!("| arena | pattern | {} | best reference | hakmem / best |", SUBJECTS[..5].join(" | "));
    println!("|---|---|{}---|---|", "---|".repeat(5));
    for arena in [MIB, 16 * MIB, 256 * MIB] {
        for (pattern, refill) in PATTERNS {
            let shares: Vec<Option<f64>> = (0..5).map(|subject| efficiency(subject, arena, refill)).collect();
            let best = shares[1..].iter().flatten().fold(0.0f64, |a, &b| a.max(b));
            let cell = |v: &Option<f64>| v.map_or("over 20 s".into(), |v| format!("{v:.1}"));
            let ratio = shares[0].map_or("-".into(), |v| format!("{:.2}", v / best));
            println!("| {} MiB | {pattern} | {} | {best:.1} | {ratio} |", arena / MIB, shares.iter().map(cell).collect::<Vec<_>>().join(" | "));
        }
    }

    println!("\n## Proof of allocator (pointers returned inside / outside the subject's own arena)\n");
    println!("| subject | inside | outside |\n|---|---|---|");
    for (name, proof) in SUBJECTS.iter().zip(&PROOFS) {
        println!("| {name} | {} | {} |", proof.inside.load(Ordering::Relaxed), proof.outside.load(Ordering::Relaxed));
    }
    let outside: usize = PROOFS.iter().map(|p| p.outside.load(Ordering::Relaxed)).sum();
    if outside > 0 {
        eprintln!("proof failed: {outside} pointers outside their subject's arena");
        std::process::exit(1);
    }
}
