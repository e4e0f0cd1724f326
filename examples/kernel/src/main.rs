//! A bare-metal x86_64 kernel whose `#[global_allocator]` is hakmem's core:
//! one interrupt-safe heap (`LockedHeap` with `Cli`) over the arena
//! provider, given a physical range after the kernel image and grown on
//! demand by two more ranges. It exercises every size class through
//! `Vec`, `Box`, `BTreeMap` and `String`, checks contents, exhausts the
//! arena and recovers, prints the arena's use on COM1 and leaves qemu
//! through isa-debug-exit: status 33 when every check passed, 35 when one
//! failed (the line before says which).
//!
//! Boot: `qemu-system-x86_64 -kernel <this ELF>` (PVH entry, see boot.rs).
#![no_std]
#![no_main]

extern crate alloc;

mod boot;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use hakmem_core::{Arena, ArenaHost, Global, Interrupts, LockedHeap};

const MIB: usize = 1 << 20;
/// The arena's first range, and the ranges `grow` may add after it: 32 MiB
/// in all for the small-segments geometry, 128 MiB for the default one
/// (whose large classes take 2 MiB pages each). qemu gives 256 MiB.
#[cfg(feature = "small-segments")]
const FIRST_RANGE: usize = 16 * MIB;
#[cfg(not(feature = "small-segments"))]
const FIRST_RANGE: usize = 64 * MIB;
const GROW_RANGE: usize = FIRST_RANGE / 2;
const GROW_RANGES: usize = 2;
const ARENA_BYTES: usize = FIRST_RANGE + GROW_RANGES * GROW_RANGE;

extern "C" {
    static __kernel_end: u8;
}

/// Where the arena's physical ranges start: the first 2 MiB boundary after
/// the image (boot.rs identity-maps the first 1 GiB).
fn arena_start() -> usize {
    (&raw const __kernel_end as usize).next_multiple_of(2 * MIB)
}

struct Host;

static GROWN: AtomicUsize = AtomicUsize::new(0);

// SAFETY: `grow` hands out each range after the first one once; they lie
// in RAM that nothing else uses (above the image, inside qemu's 256 MiB), and
// nothing here allocates.
unsafe impl ArenaHost for Host {
    fn fatal(&self, message: &[u8]) -> ! {
        boot::serial_write(b"FAIL: ");
        boot::serial_write(message);
        boot::exit(0x11)
    }

    fn write_message(&self, message: &[u8]) {
        boot::serial_write(message)
    }

    fn random_seed(&self) -> u64 {
        boot::rdtsc()
    }

    fn grow(&self, min_bytes: usize) -> Option<(NonNull<u8>, usize)> {
        let index = GROWN.fetch_add(1, Ordering::Relaxed);
        if index >= GROW_RANGES || min_bytes > GROW_RANGE {
            return None;
        }
        let start = arena_start() + FIRST_RANGE + index * GROW_RANGE;
        Some((NonNull::new(start as *mut u8)?, GROW_RANGE))
    }
}

/// Interrupt masking for the heap's lock: an interrupt handler that
/// allocates can never spin on a lock its own CPU holds.
struct Cli;

impl Interrupts for Cli {
    /// Whether interrupts were enabled.
    type Saved = bool;

    fn disable(&self) -> bool {
        let flags: u64;
        // SAFETY: reads RFLAGS and clears IF; the stack use is balanced.
        unsafe { core::arch::asm!("pushfq", "pop {}", "cli", out(reg) flags, options(nomem)) };
        flags & (1 << 9) != 0
    }

    fn restore(&self, enabled: bool) {
        if enabled {
            // SAFETY: re-enables interrupts that were enabled before `disable`.
            unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
        }
    }
}

static GLOBAL: Global<Arena<Host>> = Global::new(Arena::new(Host));

#[global_allocator]
static HEAP: LockedHeap<Arena<Host>, Cli> = LockedHeap::with_interrupts(&GLOBAL, Cli);

struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        boot::serial_write(s.as_bytes());
        Ok(())
    }
}

macro_rules! println {
    ($($arg:tt)*) => {{
        let _ = writeln!(Serial, $($arg)*);
    }};
}

/// Stop with a failure when `ok` is false.
macro_rules! check {
    ($ok:expr, $($arg:tt)*) => {
        if !$ok {
            println!("FAIL: {}", format_args!($($arg)*));
            boot::exit(0x11);
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("FAIL: panic: {info}");
    println!("arena at the panic: {:?}", GLOBAL.provider().usage());
    boot::exit(0x11)
}

#[no_mangle]
extern "C" fn kernel_main(start_info: u32) -> ! {
    // SAFETY: the first range lies in RAM above the image that nothing
    // else uses; the allocator owns it from here on.
    unsafe { GLOBAL.provider().add_range(arena_start() as *mut u8, FIRST_RANGE) };
    println!(
        "hakmem kernel: {} geometry, arena {} MiB at {:#x}, growable by {} x {} MiB",
        if cfg!(feature = "small-segments") { "small-segments" } else { "default" },
        FIRST_RANGE / MIB,
        arena_start(),
        GROW_RANGES,
        GROW_RANGE / MIB
    );
    match boot::command_line(start_info as usize) {
        b"double-free" => double_free(),
        b"foreign-free" => foreign_free(),
        _ => {}
    }
    size_classes();
    collections();
    alignments();
    exhaust_and_recover();
    println!("hakmem kernel: all checks passed");
    boot::exit(0x10)
}

/// Misuse (`-append double-free`): hakmem reports it through the host's
/// `fatal` (one line naming the problem and the address) and never returns.
fn double_free() {
    let block = Box::into_raw(Box::new([7u64; 4]));
    // SAFETY: deliberately wrong: the second drop frees a freed block.
    unsafe {
        drop(Box::from_raw(block));
        drop(Box::from_raw(block));
    }
    println!("misuse not detected: double free");
}

/// Misuse (`-append foreign-free`): freeing memory the heap never handed out.
fn foreign_free() {
    static mut NOT_FROM_THE_HEAP: [u64; 4] = [0; 4];
    // SAFETY: deliberately wrong: this block is a static, not the heap's.
    unsafe { drop(Box::from_raw(&raw mut NOT_FROM_THE_HEAP)) };
    println!("misuse not detected: foreign free");
}

fn pattern(index: usize, size: usize) -> u8 {
    (index ^ size ^ (index >> 8)) as u8
}

fn filled(size: usize) -> Vec<u8> {
    let mut block = Vec::with_capacity(size);
    block.extend((0..size).map(|i| pattern(i, size)));
    block
}

fn check_filled(block: &[u8]) {
    let size = block.len();
    check!(block.iter().enumerate().all(|(i, &b)| b == pattern(i, size)), "a block of {size} bytes lost its contents");
}

/// Every size class, tiny to huge: sizes grow by an eighth, which steps
/// through each class; 16 blocks stay live at a time.
fn size_classes() {
    let (mut size, mut sizes, mut largest) = (1usize, 0, 0);
    let mut live: Vec<Vec<u8>> = Vec::new();
    while size <= 3 * MIB {
        let block = filled(size);
        // SAFETY: a live block of this allocator.
        let usable = unsafe { GLOBAL.usable_size(block.as_ptr()) };
        check!(usable >= size, "usable size {usable} below the request {size}");
        live.push(block);
        if live.len() > 16 {
            check_filled(&live.remove(0));
        }
        largest = size;
        sizes += 1;
        size += (size / 8).max(1);
    }
    live.iter().for_each(|block| check_filled(block));
    println!("size classes: {sizes} sizes from 1 B to {largest} B, contents kept");
}

fn collections() {
    let mut map = BTreeMap::new();
    for i in 0..20_000u32 {
        map.insert(i.wrapping_mul(7919) % 100_003, alloc::format!("value-{i}"));
    }
    map.retain(|key, _| key % 2 == 1);
    let odd = (0..20_000u32).filter(|i| i.wrapping_mul(7919) % 100_003 % 2 == 1).count();
    check!(map.len() == odd, "BTreeMap has {} entries, expected {odd}", map.len());
    for i in 0..20_000u32 {
        let key = i.wrapping_mul(7919) % 100_003;
        if key % 2 == 1 {
            check!(map.get(&key).map(String::as_str) == Some(alloc::format!("value-{i}").as_str()), "BTreeMap value of {key}");
        }
    }
    let boxes: Vec<Box<[u64; 512]>> = (0..64u64).map(|i| Box::new([i; 512])).collect();
    check!(boxes.iter().enumerate().all(|(i, b)| b.iter().all(|&x| x == i as u64)), "a Box lost its contents");
    let mut text = String::new();
    for i in 0..10_000 {
        let _ = write!(text, "{i},");
    }
    check!(text.len() == 48_890 && text.starts_with("0,1,2,") && text.ends_with("9999,"), "String of {} bytes", text.len());
    println!("collections: BTreeMap of {} strings, {} boxes, a String of {} bytes", map.len(), boxes.len(), text.len());
}

fn alignments() {
    let mut align = 16;
    while align <= 4 * MIB {
        let layout = core::alloc::Layout::from_size_align(100, align).unwrap();
        // SAFETY: a non-zero layout; freed with the same layout.
        unsafe {
            let p = alloc::alloc::alloc(layout);
            check!(!p.is_null() && (p as usize).is_multiple_of(align), "alignment {align}: {p:?}");
            p.write_bytes(0xa5, 100);
            alloc::alloc::dealloc(p, layout);
        }
        align *= 2;
    }
    println!("alignments: 16 B to 4 MiB");
}

/// Allocate mixed small blocks until the arena (grown to its limit) runs
/// out; free them all; do it again: the second run must get as far.
fn exhaust_and_recover() {
    let first = exhaust();
    let usage = GLOBAL.provider().usage();
    println!(
        "exhausted: {} blocks, {} KiB in blocks = {}% of the arena ({} MiB, {} ranges grown)",
        first.0,
        first.1 >> 10,
        first.1 * 100 / usage.bytes,
        usage.bytes / MIB,
        GROWN.load(Ordering::Relaxed).min(GROW_RANGES)
    );
    check!(usage.bytes == ARENA_BYTES, "the arena grew to {} bytes", usage.bytes);
    // Blocks of 16 B-2 KiB (and the 4% the vector of them takes) fill at
    // least three quarters of the arena before the first failure.
    check!(first.1 * 4 >= usage.bytes * 3, "only {} of {} bytes went to blocks", first.1, usage.bytes);
    check!(HEAP.trim(), "trim released nothing");
    let trimmed = GLOBAL.provider().usage();
    println!(
        "arena use: bytes={} in_use={} free={} high_water={} largest_free={} free_spans={}",
        trimmed.bytes, trimmed.in_use, trimmed.free, trimmed.high_water, trimmed.largest_free, trimmed.free_spans
    );
    check!(trimmed.in_use <= 256 << 10, "{} bytes still in use after freeing everything", trimmed.in_use);
    let again = exhaust();
    check!(again.0 * 10 >= first.0 * 9, "after recovery only {} blocks, first time {}", again.0, first.0);
    HEAP.trim();
    println!("recovered: {} blocks the second time", again.0);
}

/// (blocks, bytes) allocated before the first failure; all freed again.
fn exhaust() -> (usize, usize) {
    // Room for more blocks than fit (they average 1 KiB).
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(ARENA_BYTES / 512);
    let (mut bytes, mut seed) = (0usize, 12345u32);
    while blocks.len() < blocks.capacity() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let size = 16 + (seed >> 16) as usize % 2032;
        let mut block = Vec::new();
        if block.try_reserve_exact(size).is_err() {
            break;
        }
        block.push(size as u8);
        block.resize(size, pattern(blocks.len(), size));
        bytes += size;
        blocks.push(block);
    }
    for (index, block) in blocks.iter().enumerate() {
        let size = block.len();
        check!(block[0] == size as u8 && block[1..].iter().all(|&b| b == pattern(index, size)), "block {index} of {size} bytes");
    }
    (blocks.len(), bytes)
}
