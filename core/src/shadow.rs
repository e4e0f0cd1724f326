//! The shadow-model operation interpreter: a byte string drives malloc,
//! calloc, aligned allocation, realloc, free, usable size, trim, provider
//! failures and hand-overs of blocks to other threads, and every answer is
//! checked against a model of what must be true. The property tests
//! (`tests.rs`, seeded bytes) and the fuzz target (`tests/fuzz`, libFuzzer's
//! bytes) run this one interpreter. Needs std.
//!
//! What the model checks, after every operation:
//! - every block is aligned as asked (16 at least), `usable_size >= size`,
//!   and its whole usable range is writable: the model keeps the usable
//!   ranges of all live blocks of all threads and panics when two overlap;
//! - contents: a block's first and last bytes (up to its usable size) keep
//!   the pattern written into them until it is freed; realloc keeps the
//!   prefix; calloc's bytes are zero;
//! - a null comes back only for an impossible request, or when the provider
//!   refused a map during the call (failures are injected at random and
//!   end after a few operations); a failed realloc leaves the block intact;
//! - the heap's invariants hold (`Heap::check_invariants`) at intervals and
//!   at the end, and once everything is freed and trimmed, no page, segment
//!   or huge mapping is left.
//!
//! Invariant of the interpreter itself: a block is in exactly one place, the
//! owning run's `blocks` or a channel to another run, and in the model's
//! `live` map for as long as it is allocated.

extern crate std;

use crate::class::{class_size, CLASS_COUNT};
use crate::config::{LARGE_MAX, MAX_REQUEST, MIN_ALIGN};
use crate::testing::TestProvider;
use crate::{Global, Heap};
use core::sync::atomic::Ordering;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Mutex;
use std::vec::Vec;

/// Bytes of a block's head and of its tail that carry the pattern.
const HEAD_BYTES: usize = 512;
const TAIL_BYTES: usize = 64;
/// Heap invariants are walked every this many operations.
const CHECK_EVERY: u32 = 64;

/// The usable ranges of every live block (start -> end), for all threads.
#[derive(Default)]
pub struct Model {
    live: Mutex<BTreeMap<usize, usize>>,
}

impl Model {
    pub fn new() -> Self {
        Self::default()
    }

    /// Live blocks in the model.
    pub fn live_blocks(&self) -> usize {
        self.live.lock().unwrap().len()
    }

    fn insert(&self, start: usize, end: usize) {
        let mut live = self.live.lock().unwrap();
        if let Some((&before, &before_end)) = live.range(..=start).next_back() {
            assert!(before_end <= start, "block {start:#x}..{end:#x} overlaps live block {before:#x}..{before_end:#x}");
        }
        if let Some((&after, &after_end)) = live.range(start..).next() {
            assert!(end <= after, "block {start:#x}..{end:#x} overlaps live block {after:#x}..{after_end:#x}");
        }
        live.insert(start, end);
    }

    fn remove(&self, start: usize) {
        assert!(self.live.lock().unwrap().remove(&start).is_some(), "block {start:#x} is not live in the model");
    }
}

/// A live block as the model knows it (addresses, so it can cross threads).
#[derive(Clone, Copy, Debug)]
pub struct Block {
    ptr: usize,
    size: usize,
    usable: usize,
    seed: u8,
}

impl Block {
    fn head(&self) -> core::ops::Range<usize> {
        0..self.usable.min(HEAD_BYTES)
    }

    fn tail(&self) -> core::ops::Range<usize> {
        self.usable - self.usable.min(TAIL_BYTES).min(self.usable - self.head().end)..self.usable
    }

    fn pattern(seed: u8, i: usize) -> u8 {
        seed ^ (i as u8).wrapping_mul(31) ^ (i >> 8) as u8
    }

    fn fill(&self) {
        for i in self.head().chain(self.tail()) {
            // SAFETY: i < usable, and the whole usable range is the block's.
            unsafe { *(self.ptr as *mut u8).add(i) = Self::pattern(self.seed, i) };
        }
    }

    /// The pattern is intact in the block's first `bytes` (realloc keeps a prefix).
    fn verify(&self, at: usize, bytes: usize, what: &str) {
        for i in self.head().chain(self.tail()).filter(|&i| i < bytes) {
            // SAFETY: i < usable of the live block that now lives at `at`.
            let got = unsafe { *(at as *const u8).add(i) };
            assert_eq!(got, Self::pattern(self.seed, i), "{what}: byte {i} of block {:#x} (size {}, usable {})", at, self.size, self.usable);
        }
    }
}

/// The operation stream: bytes, then zeros once they run out.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// A request size: mostly tiny and mid, some large and huge, a few on
    /// class boundaries, a few impossible.
    fn size(&mut self) -> usize {
        let tier = self.byte();
        let r = self.u32() as usize;
        match tier {
            0..=111 => r % 1100,
            112..=179 => r % 70_000,
            180..=229 => r % (LARGE_MAX + 100),
            230..=243 => r % (3 << 20),
            244..=253 => (class_size(r % CLASS_COUNT) + (r >> 16) % 3).saturating_sub(1),
            _ => MAX_REQUEST + 1 + r,
        }
    }

    fn align(&mut self) -> usize {
        let b = self.byte();
        1 << if b < 240 { b % 16 } else { 16 + b % 7 }
    }
}

/// One thread's run: its heap, its blocks, and the channels to its
/// neighbours (blocks handed over are freed by the receiving thread).
pub struct Run<'m> {
    global: &'static Global<TestProvider>,
    heap: *mut Heap<TestProvider>,
    model: &'m Model,
    blocks: Vec<Block>,
    outbox: Option<Sender<Block>>,
    inbox: Option<Receiver<Block>>,
    step: u32,
    /// The operation after which an injected failure ends.
    recover_at: Option<u32>,
}

impl<'m> Run<'m> {
    /// A run on a fresh heap of `global`, for the calling thread.
    pub fn new(global: &'static Global<TestProvider>, model: &'m Model) -> Self {
        let heap = global.heap_acquire();
        assert!(!heap.is_null(), "no heap for the run");
        Run { global, heap, model, blocks: Vec::new(), outbox: None, inbox: None, step: 0, recover_at: None }
    }

    /// Hand blocks over to `outbox`'s thread; free those arriving on `inbox`.
    pub fn with_channels(mut self, outbox: Sender<Block>, inbox: Receiver<Block>) -> Self {
        self.outbox = Some(outbox);
        self.inbox = Some(inbox);
        self
    }

    /// The addresses of this run's live blocks.
    pub fn blocks_for_tests(&self) -> Vec<usize> {
        self.blocks.iter().map(|block| block.ptr).collect()
    }

    /// The run's heap (the calling thread's while the run lives).
    pub fn heap_ptr(&self) -> *mut Heap<TestProvider> {
        self.heap
    }

    fn heap(&mut self) -> &mut Heap<TestProvider> {
        // SAFETY: the heap is this run's, used only by this thread.
        unsafe { &mut *self.heap }
    }

    fn refused(&self) -> usize {
        self.global.provider().refused.load(Ordering::SeqCst)
    }

    /// Interpret every operation of `data`.
    pub fn execute(&mut self, data: &[u8]) {
        let mut bytes = Bytes { data, at: 0 };
        while !bytes.done() {
            self.operation(&mut bytes);
            self.step += 1;
            if self.recover_at.is_some_and(|at| self.step >= at) {
                self.global.provider().recover();
                self.recover_at = None;
            }
            if self.step.is_multiple_of(CHECK_EVERY) {
                self.heap().check_invariants();
            }
        }
    }

    fn operation(&mut self, bytes: &mut Bytes) {
        self.receive(false);
        let op = bytes.byte();
        match op % 16 {
            0..=3 => {
                let size = bytes.size();
                self.allocated(size, MIN_ALIGN, false, |heap| heap.malloc(size));
            }
            4 => {
                let (count, size) = (1 + bytes.byte() as usize % 8, bytes.size());
                match count.checked_mul(size) {
                    Some(total) => self.allocated(total, MIN_ALIGN, true, |heap| heap.calloc(count, size)),
                    None => assert!(self.heap().calloc(count, size).is_null(), "calloc({count}, {size}) overflows"),
                }
            }
            5 | 6 => {
                let (size, align) = (bytes.size(), bytes.align());
                self.allocated(size, align, false, |heap| heap.malloc_aligned(size, align));
            }
            7 => {
                let (size, align) = (bytes.size(), bytes.align());
                self.allocated(size, align, true, |heap| heap.calloc_aligned(size, align));
            }
            8..=10 => {
                let (index, size) = (bytes.u32() as usize, bytes.size());
                let align = if op % 16 == 10 { bytes.align() } else { MIN_ALIGN };
                self.reallocated(index, size, align);
            }
            11..=13 => {
                if !self.blocks.is_empty() {
                    let block = self.blocks.swap_remove(bytes.u32() as usize % self.blocks.len());
                    self.free(block);
                }
            }
            14 => {
                if !self.blocks.is_empty() {
                    let block = self.blocks.swap_remove(bytes.u32() as usize % self.blocks.len());
                    // Without a receiver (or once it is gone) the block is freed here.
                    let kept = match &self.outbox {
                        Some(outbox) => outbox.send(block).err().map(|returned| returned.0),
                        None => Some(block),
                    };
                    if let Some(block) = kept {
                        self.free(block);
                    }
                }
            }
            _ => self.control(bytes.byte()),
        }
    }

    /// Provider failures, trim, and the invariant walk.
    fn control(&mut self, what: u8) {
        match what % 8 {
            0..=2 => {
                self.global.provider().fail_after((what >> 3) as isize % 4);
                self.recover_at = Some(self.step + 1 + (what >> 5) as u32);
            }
            3 => {
                // SAFETY: the heap is this thread's.
                unsafe { self.global.trim(self.heap) };
            }
            4 => {
                // usable_size is stable over a block's life.
                for block in &self.blocks {
                    // SAFETY: the block is live.
                    assert_eq!(unsafe { self.global.usable_size(block.ptr as *const u8) }, block.usable, "usable size changed");
                }
            }
            _ => self.heap().check_invariants(),
        }
    }

    /// Check a fresh block from `alloc` (or its null) and take it into the model.
    fn allocated(&mut self, size: usize, align: usize, zeroed: bool, alloc: impl FnOnce(&mut Heap<TestProvider>) -> *mut u8) {
        let refused = self.refused();
        let p = alloc(self.heap());
        if p.is_null() {
            let impossible = size > MAX_REQUEST || align > MAX_REQUEST;
            assert!(impossible || self.refused() > refused, "null for {size} bytes aligned to {align} while the provider maps");
            return;
        }
        assert!(size <= MAX_REQUEST, "a block for an impossible request of {size} bytes");
        self.adopt(p, size, align, zeroed);
    }

    fn adopt(&mut self, p: *mut u8, size: usize, align: usize, zeroed: bool) {
        let ptr = p as usize;
        assert_eq!(ptr % align.max(MIN_ALIGN), 0, "block {ptr:#x} of {size} bytes is not aligned to {align}");
        // SAFETY: p is a live block.
        let usable = unsafe { self.global.usable_size(p) };
        assert!(usable >= size, "usable size {usable} of block {ptr:#x} below its size {size}");
        if zeroed {
            let check = (0..size.min(4096)).chain(size - size.min(TAIL_BYTES)..size);
            for i in check {
                // SAFETY: i < size <= usable.
                assert_eq!(unsafe { *p.add(i) }, 0, "byte {i} of zeroed block {ptr:#x} ({size} bytes)");
            }
        }
        assert!(!self.global.provider().guarded(ptr, ptr + usable), "block {ptr:#x} ({usable} usable bytes) covers a guard page");
        self.model.insert(ptr, ptr + usable);
        let block = Block { ptr, size, usable, seed: self.step as u8 };
        block.fill();
        self.blocks.push(block);
    }

    fn reallocated(&mut self, index: usize, size: usize, align: usize) {
        if self.blocks.is_empty() {
            return;
        }
        let index = index % self.blocks.len();
        let old = self.blocks[index];
        let refused = self.refused();
        let p = old.ptr as *mut u8;
        // Out of the model before the call: a moving realloc frees the old
        // block inside it, and another thread may be handed that memory
        // before this one returns.
        self.model.remove(old.ptr);
        // SAFETY: the block is live and holds `usable` bytes.
        let q = unsafe {
            if align == MIN_ALIGN { self.heap().realloc(p, size) } else { self.heap().realloc_aligned(p, old.usable, size, align) }
        };
        if q.is_null() {
            assert!(size > MAX_REQUEST || self.refused() > refused, "realloc to {size} bytes failed while the provider maps");
            old.verify(old.ptr, old.usable, "a failed realloc changed the block");
            self.model.insert(old.ptr, old.ptr + old.usable);
            return;
        }
        self.blocks.swap_remove(index);
        old.verify(q as usize, old.usable.min(size), "realloc lost the contents");
        self.adopt(q, size, align, false);
    }

    fn free(&mut self, block: Block) {
        block.verify(block.ptr, block.usable, "a live block changed");
        self.model.remove(block.ptr);
        // SAFETY: the block is live; the heap is this thread's.
        unsafe { self.global.free(block.ptr as *mut u8, self.heap) };
    }

    /// Free the blocks other threads handed over; with `all`, wait until
    /// the sender is gone.
    fn receive(&mut self, all: bool) {
        loop {
            let block = match &self.inbox {
                None => None,
                Some(inbox) if all => inbox.recv().ok(),
                // Empty, or the sender finished: nothing more for now.
                Some(inbox) => inbox.try_recv().ok(),
            };
            match block {
                Some(block) => self.free(block),
                None => break,
            }
        }
    }

    /// Free everything, close the channels, check the heap and give it back.
    pub fn finish(mut self) {
        self.global.provider().recover();
        while let Some(block) = self.blocks.pop() {
            self.free(block);
        }
        self.outbox = None;
        self.receive(true);
        self.heap().check_invariants();
        // SAFETY: the heap is this thread's and no longer used.
        unsafe { self.global.heap_release(self.heap) };
    }
}

/// Run `data` on one thread over `global`, then check that freeing and
/// trimming left nothing mapped. The fuzz target's entry point.
pub fn run_single(global: &'static Global<TestProvider>, data: &[u8]) {
    let model = Model::new();
    let mut run = Run::new(global, &model);
    run.execute(data);
    run.finish();
    assert_eq!(model.live_blocks(), 0);
    assert_nothing_left(global);
}

/// Run one input of the fuzz target (and of its regression files): the
/// first byte chooses one thread or a ring of 2-3 threads (its low two
/// bits) and the allocator, `default` or `strict` (bit 2; strict mode is
/// fixed for an allocator's life), the rest are the operations, split
/// evenly between the threads.
pub fn run_input(default: &'static Global<TestProvider>, strict: &'static Global<TestProvider>, data: &[u8]) {
    let Some((&mode, operations)) = data.split_first() else { return };
    let global = if mode & 4 != 0 { strict } else { default };
    let threads = (mode % 4).max(1) as usize;
    if threads == 1 {
        return run_single(global, operations);
    }
    let share = operations.len().div_ceil(threads);
    let streams: Vec<Vec<u8>> = (0..threads).map(|t| operations.iter().skip(t * share).take(share).copied().collect()).collect();
    run_threads(global, &streams);
}

/// Run one byte string per thread, each thread handing blocks over to the
/// next (a ring of channels), then check that nothing was left.
pub fn run_threads(global: &'static Global<TestProvider>, streams: &[Vec<u8>]) {
    let model = Model::new();
    let (mut senders, receivers): (Vec<Sender<Block>>, Vec<Receiver<Block>>) =
        streams.iter().map(|_| std::sync::mpsc::channel()).unzip();
    // Thread i sends to thread i + 1's inbox.
    senders.rotate_left(1);
    // Every thread's heap is made (then pooled) before any thread injects
    // map failures: one made later could find the provider refusing.
    let heaps: Vec<_> = streams.iter().map(|_| global.heap_acquire()).collect();
    for heap in heaps {
        assert!(!heap.is_null());
        // SAFETY: a fresh heap no thread uses.
        unsafe { global.heap_release(heap) };
    }
    std::thread::scope(|scope| {
        for ((stream, outbox), inbox) in streams.iter().zip(senders).zip(receivers) {
            let model = &model;
            scope.spawn(move || {
                let mut run = Run::new(global, model).with_channels(outbox, inbox);
                run.execute(stream);
                run.finish();
            });
        }
    });
    assert_eq!(model.live_blocks(), 0);
    assert_nothing_left(global);
}

/// Trim what the allocator caches and check that no page, segment or huge
/// mapping is left (after everything was freed).
pub fn assert_nothing_left(global: &'static Global<TestProvider>) {
    // SAFETY: no heap is passed; trim releases abandoned and cached memory.
    unsafe { global.trim(core::ptr::null_mut()) };
    let stats = global.stats();
    assert_eq!((stats.pages_in_use, stats.segments_mapped, stats.huge_mapped), (0, 0, 0), "memory left after freeing everything: {stats:?}");
}
