//! hakmem on Linux: the page provider over rustix, one heap per thread,
//! `HAKMEM_*` options, fork and thread-exit handling, and a
//! `#[global_allocator]` for Rust programs.
//!
//! ```text
//!  HakmemAlloc / hakmem-ffi  ->  malloc(), free() ... here  ->  HEAP (TLS, no destructor)
//!                                                              '-> GLOBAL: Global<LinuxPages>
//!  thread exit: pthread key destructor -> Global::heap_release (abandon)
//!  fork: pthread_atfork -> Global::lock_all / unlock_all
//!  strict mode: a SIGSEGV handler names guard-page hits (fault.rs)
//!  exit: .fini_array -> HAKMEM_STATS line, HAKMEM_PROF_DUMP profile
//!  HAKMEM_BACKGROUND: a thread that purges idle memory (background.rs)
//! ```
//!
//! Reentrancy rules kept here:
//! - The TLS slot is a word of static TLS (a `const`-initialised `Cell`
//!   where std's `thread_local!` serves): no lazy initialisation and no
//!   registered destructor, so touching it never allocates. Thread exit
//!   is caught with a pthread key instead.
//! - The heap pointer is stored in TLS *before* `pthread_setspecific`,
//!   which may itself call calloc (keys past the first 32): that nested
//!   call finds the heap and proceeds.
//! - The environment is scanned in place ([`env`](mod@env)); the provider makes raw
//!   system calls (no errno, no libc locks).
//!
//! std is optional (feature `std`: `prof_dump` with a `Path`). Without
//! it, on x86_64 glibc, the crate needs only `core`: that is how
//! `libhakmem.so` is built (no Rust runtime, no `libgcc_s`: less to map
//! into every process). Elsewhere the thread slots use std's
//! `thread_local!`, so std is linked there in any case.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

#[cfg(all(not(any(feature = "std", test)), not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))))]
extern crate std;

mod background;
pub mod env;
mod fault;
pub mod pages;
pub mod profile;

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExamples;

pub use hakmem_core::{Heap, StatsSnapshot};
pub use pages::LinuxPages;

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::{c_int, c_uint, c_void};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU32, Ordering};
use hakmem_core::Global;

/// The process-wide allocator state.
pub static GLOBAL: Global<LinuxPages> = Global::new(LinuxPages);

type LinuxHeap = Heap<LinuxPages>;

/// The heap of every thread that has none (yet, or any more): inert
/// (`Heap::inert`), so the fast paths need no null test. Never written.
struct InertHeap(core::cell::UnsafeCell<LinuxHeap>);
// SAFETY: nothing writes the inert heap (its fast paths only read it, and
// `current_heap` hides it from every other path).
unsafe impl Sync for InertHeap {}
static INERT: InertHeap = InertHeap(core::cell::UnsafeCell::new(GLOBAL.inert_heap()));

/// The inert heap's address: a thread slot's value when it has no heap.
const fn inert() -> *mut LinuxHeap {
    INERT.0.get()
}

// The C library every extern block here calls into: named once, since
// without std nothing else links it (the library would need no libc).
#[link(name = "c")]
extern "C" {
    fn pthread_key_create(key: *mut c_uint, destructor: Option<unsafe extern "C" fn(*mut c_void)>) -> c_int;
    fn pthread_setspecific(key: c_uint, value: *const c_void) -> c_int;
    fn pthread_key_delete(key: c_uint) -> c_int;
    fn pthread_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
    ) -> c_int;
}

/// [`thread_exit_key`]'s key once created (pthread keys are small numbers,
/// far below the two markers).
static THREAD_EXIT_KEY: AtomicU32 = AtomicU32::new(KEY_UNSET);
const KEY_UNSET: c_uint = c_uint::MAX;
const KEY_FAILED: c_uint = c_uint::MAX - 1;

/// The calling thread's heap, or null when it has none yet.
#[inline(always)]
pub fn current_heap() -> *mut LinuxHeap {
    or_null(thread_slot())
}

/// The calling thread's slot: its heap or `inert()`, never null.
#[inline(always)]
fn thread_slot() -> *mut LinuxHeap {
    match thread_words::read() {
        Some(heap) => heap,
        None => thread_words::read_slow(),
    }
}

/// A slot's value as the slow paths take it: null for the inert heap.
#[inline(always)]
fn or_null(slot: *mut LinuxHeap) -> *mut LinuxHeap {
    if slot == inert() {
        null_mut()
    } else {
        slot
    }
}

/// The thread's two words: its heap slot and whether its exit released
/// its heap (a free after that, glibc freeing its own thread buffers late,
/// must not make a heap that no destructor would release).
///
/// On x86_64 glibc they are initial-exec TLS words defined below in
/// assembly (`hakmem_linux_thread_heap`, `hakmem_linux_thread_exited`):
/// Rust's `thread_local!` in a shared library goes through
/// `__tls_get_addr`, and needs std. The slot starts as the inert heap in
/// every thread and is one `fs:`-relative load, its offset from the GOT
/// (`@GOTTPOFF`, a constant once linked into an executable). A `dlopen`ed
/// hakmem gets its words in glibc's static TLS reserve (16 bytes: the
/// reserve is hundreds). Elsewhere they are std's `thread_local!`s, read
/// out of line so that the fast paths need no stack frame for the call.
mod thread_words {
    use super::LinuxHeap;
    cfg_if::cfg_if! {
        if #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))] {
            core::arch::global_asm!(
                ".pushsection .tdata.hakmem_linux_thread_heap,\"awT\",@progbits",
                ".p2align 3",
                ".globl hakmem_linux_thread_heap",
                ".hidden hakmem_linux_thread_heap",
                ".type hakmem_linux_thread_heap,@tls_object",
                ".size hakmem_linux_thread_heap,8",
                "hakmem_linux_thread_heap:",
                ".quad {inert}",
                ".popsection",
                ".pushsection .tbss.hakmem_linux_thread_exited,\"awT\",@nobits",
                ".globl hakmem_linux_thread_exited",
                ".hidden hakmem_linux_thread_exited",
                ".type hakmem_linux_thread_exited,@tls_object",
                ".size hakmem_linux_thread_exited,1",
                "hakmem_linux_thread_exited:",
                ".zero 1",
                ".popsection",
                inert = sym super::INERT,
            );

            #[inline(always)]
            pub fn read() -> Option<*mut LinuxHeap> {
                let heap: *mut LinuxHeap;
                // SAFETY: the word is this thread's own TLS, a pointer
                // written only by `write` (or its initial value); the
                // offset load reads the GOT, which is read-only after
                // relocation.
                unsafe {
                    core::arch::asm!(
                        "mov {heap}, qword ptr [rip + hakmem_linux_thread_heap@GOTTPOFF]",
                        "mov {heap}, qword ptr fs:[{heap}]",
                        heap = out(reg) heap,
                        options(nostack, readonly, preserves_flags),
                    );
                }
                Some(heap)
            }

            /// Never reached here (`read` always has the word).
            pub fn read_slow() -> *mut LinuxHeap {
                super::inert()
            }

            pub fn write(heap: *mut LinuxHeap) {
                // SAFETY: as in `read`; only this thread writes its word.
                unsafe {
                    core::arch::asm!(
                        "mov {offset}, qword ptr [rip + hakmem_linux_thread_heap@GOTTPOFF]",
                        "mov qword ptr fs:[{offset}], {heap}",
                        offset = out(reg) _,
                        heap = in(reg) heap,
                        options(nostack, preserves_flags),
                    );
                }
            }

            /// This thread's exited flag (slow paths only): the thread
            /// pointer (`fs:0`) plus the byte's offset.
            fn exited_flag() -> *mut u8 {
                let flag: *mut u8;
                // SAFETY: fs:0 holds the thread pointer (x86_64 glibc's TCB
                // points to itself) and the GOT the byte's offset from it,
                // read-only after relocation.
                unsafe {
                    core::arch::asm!(
                        "mov {flag}, qword ptr fs:0",
                        "add {flag}, qword ptr [rip + hakmem_linux_thread_exited@GOTTPOFF]",
                        flag = out(reg) flag,
                        options(nostack, readonly),
                    );
                }
                flag
            }

            pub fn exited() -> bool {
                // SAFETY: this thread's own TLS byte.
                unsafe { *exited_flag() != 0 }
            }

            pub fn set_exited() {
                // SAFETY: as in `exited`; only this thread writes it.
                unsafe { *exited_flag() = 1 }
            }
        } else {
            use core::cell::Cell;

            std::thread_local! {
                static HEAP: Cell<*mut LinuxHeap> = const { Cell::new(super::inert()) };
                static EXITED: Cell<bool> = const { Cell::new(false) };
            }

            #[inline(always)]
            pub fn read() -> Option<*mut LinuxHeap> {
                None
            }

            #[cold]
            #[inline(never)]
            pub fn read_slow() -> *mut LinuxHeap {
                HEAP.with(|h| h.get())
            }

            pub fn write(heap: *mut LinuxHeap) {
                HEAP.with(|h| h.set(heap));
            }

            pub fn exited() -> bool {
                EXITED.with(|e| e.get())
            }

            pub fn set_exited() {
                thread_words::set_exited();
            }
        }
    }
}

/// The calling thread's heap, created on first use (null when out of memory).
#[inline(always)]
fn heap() -> *mut LinuxHeap {
    let heap = thread_slot();
    if heap != inert() {
        return heap;
    }
    heap_create()
}

#[cold]
#[inline(never)]
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
fn heap_create() -> *mut LinuxHeap {
    env::ensure_read();
    let heap = GLOBAL.heap_acquire();
    if heap.is_null() {
        return heap;
    }
    if GLOBAL.guards() {
        fault::install_once();
    }
    thread_words::write(heap);
    if let Some(key) = thread_exit_key() {
        // SAFETY: a key of ours; the value is our heap.
        unsafe { pthread_setspecific(key, heap as *const c_void) };
    }
    heap
}

/// The pthread key whose destructor releases a thread's heap, created by
/// the first heap (None when it cannot be). Two first heaps at once both
/// create one; the second to publish deletes its own. (Not spin::Once:
/// its slow path is code of its own, which every process would map.)
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
fn thread_exit_key() -> Option<c_uint> {
    let published = THREAD_EXIT_KEY.load(Ordering::Acquire);
    if published != KEY_UNSET {
        return (published != KEY_FAILED).then_some(published);
    }
    let mut key: c_uint = 0;
    // SAFETY: a valid out pointer and an extern "C" destructor.
    let created = unsafe { pthread_key_create(&mut key, Some(on_thread_exit)) } == 0;
    let mine = if created { key } else { KEY_FAILED };
    match THREAD_EXIT_KEY.compare_exchange(KEY_UNSET, mine, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => created.then_some(key),
        Err(winner) => {
            if created {
                // SAFETY: our own key, never set in any thread.
                unsafe { pthread_key_delete(key) };
            }
            (winner != KEY_FAILED).then_some(winner)
        }
    }
}

/// pthread key destructor: the thread is exiting; abandon its heap.
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
unsafe extern "C" fn on_thread_exit(value: *mut c_void) {
    let heap = value as *mut LinuxHeap;
    if heap.is_null() {
        return;
    }
    if thread_slot() == heap {
        thread_words::write(inert());
    }
    thread_words::set_exited();
    // SAFETY: the heap belonged to this exiting thread, which uses it no more
    // (later allocations in this thread create a new heap and key value).
    unsafe { GLOBAL.heap_release(heap) };
}

// ---------------------------------------------------------------------------
// The allocation API used by the C ABI and by HakmemAlloc.

/// malloc: `size` bytes, 16-byte aligned; null when out of memory.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    let block = malloc_fast(size);
    if !block.is_null() {
        return block;
    }
    malloc_slow_out_of_line(size)
}

/// [`malloc_slow`] in a frame of its own: [`malloc`] inlines into its
/// callers (`HakmemAlloc`) and stays a leaf.
#[inline(never)]
fn malloc_slow_out_of_line(size: usize) -> *mut u8 {
    malloc_slow(size)
}

/// malloc after [`malloc_fast`] returned null: the slow path, creating
/// the thread's heap first when needed (null when out of memory).
#[inline(always)]
pub fn malloc_slow(size: usize) -> *mut u8 {
    with_heap(|heap| heap.malloc_slow(size))
}

/// malloc's fast path alone: a block, or null when the slow path (or a
/// heap for the thread) is needed; then call [`malloc_slow`].
#[inline(always)]
pub fn malloc_fast(size: usize) -> *mut u8 {
    // Only the fs-relative TLS read: a call to the slow one would cost the
    // fast path a stack frame.
    let Some(heap) = thread_words::read() else {
        return null_mut();
    };
    // SAFETY: the heap is this thread's own, or the inert heap (whose
    // malloc_fast only reads it and returns null).
    unsafe { (*heap).malloc_fast(size) }
}

/// Run `f` on the calling thread's heap; null when no heap can be made.
#[inline(always)]
fn with_heap(f: impl FnOnce(&mut LinuxHeap) -> *mut u8) -> *mut u8 {
    let heap = heap();
    if heap.is_null() {
        return null_mut();
    }
    // SAFETY: the heap is this thread's own; no other reference to it is live.
    f(unsafe { &mut *heap })
}

/// `size` bytes aligned to `align` (a power of two). Out of line: inlined
/// into `HakmemAlloc::alloc`, its registers made every Rust allocation
/// save and restore four of them, fast path included.
#[inline(never)]
pub fn malloc_aligned(size: usize, align: usize) -> *mut u8 {
    with_heap(|heap| heap.malloc_aligned(size, align))
}

/// `count * size` zeroed bytes; null on overflow or out of memory.
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
pub fn calloc(count: usize, size: usize) -> *mut u8 {
    with_heap(|heap| heap.calloc(count, size))
}

/// realloc with C semantics except for `size == 0` (callers decide).
///
/// # Safety
/// `ptr` is null or a live block from hakmem.
pub unsafe fn realloc(ptr: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: ptr per the contract.
    with_heap(|heap| unsafe { heap.realloc(ptr, size) })
}

/// realloc's fast path (`Heap::realloc_in_place`): `ptr` itself when its
/// block takes `size` bytes as it is, else `None` (call [`realloc`]).
/// Only the fs-relative TLS read here, as in [`free`].
///
/// # Safety
/// `ptr` is null or a live block from hakmem.
#[inline(always)]
pub unsafe fn realloc_in_place(ptr: *mut u8, size: usize) -> Option<*mut u8> {
    let current = thread_words::read()?;
    // SAFETY: current is this thread's heap or the inert heap (which
    // remembers no segment: None); ptr per the contract.
    unsafe { (*current).realloc_in_place(ptr, size) }
}

/// free: null is ignored; misuse aborts with a message.
///
/// # Safety
/// `ptr` is null or was returned by hakmem (anything else is detected
/// where the segment map allows, and aborts).
#[inline(always)]
pub unsafe fn free(ptr: *mut u8) {
    // Only the fs-relative TLS read here, so that the fast path needs no
    // stack frame; the rest of the way is out of line.
    let Some(current) = thread_words::read() else {
        // SAFETY: per the contract.
        return unsafe { free_slow(ptr) };
    };
    // SAFETY: current is this thread's heap or the inert heap (which
    // remembers no segment: false, nothing written).
    if unsafe { LinuxHeap::free_remembered(current, ptr) } {
        return;
    }
    // SAFETY: or_null gives this thread's heap or null; a thread that only
    // frees other threads' blocks gets a heap of its own, in which its
    // remote frees are gathered.
    unsafe { GLOBAL.free_unremembered_with(ptr, or_null(current), heap_for_free) }
}

/// A heap for a thread that frees another thread's block and has none:
/// made on first use, except once the thread's exit released its heap
/// (then the free goes to the owner directly).
#[cold]
#[inline(never)]
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
fn heap_for_free() -> *mut LinuxHeap {
    if thread_words::exited() {
        return null_mut();
    }
    heap()
}

/// free when the TLS slot needs `__tls_get_addr` (a dlopen'ed hakmem).
///
/// # Safety
/// As for [`free`].
#[cold]
#[inline(never)]
unsafe fn free_slow(ptr: *mut u8) {
    // SAFETY: as in free.
    unsafe { GLOBAL.free_with(ptr, current_heap(), heap_for_free) }
}

/// Usable size of a live block (0 for null).
///
/// # Safety
/// `ptr` is null or a live block from hakmem.
pub unsafe fn usable_size(ptr: *const u8) -> usize {
    // SAFETY: per the contract.
    unsafe { GLOBAL.usable_size(ptr) }
}

/// Return free memory to the system; true when something was released.
pub fn trim() -> bool {
    // SAFETY: current_heap is this thread's heap or null.
    unsafe { GLOBAL.trim(current_heap()) }
}

/// A snapshot of hakmem's counters.
pub fn stats() -> StatsSnapshot {
    GLOBAL.stats()
}

/// A census of what the heaps hold per size class (see `hakmem_core::census`).
pub fn class_stats() -> [hakmem_core::ClassStats; hakmem_core::class::CLASS_COUNT] {
    GLOBAL.census().1.classes
}

/// Write a heap profile of the live sampled allocations to `path` (the
/// text format `jeprof` and `pprof` read, with the process's mappings) and
/// their folded stacks to `path.folded` (flame graph tools). Fails with
/// `InvalidInput` unless profiling is on (`HAKMEM_PROF=1`). Needs the
/// `std` feature; [`profile::dump_to`] takes the path as bytes without it.
#[cfg(any(feature = "std", test))]
pub fn prof_dump(path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    profile::dump_to(path.as_ref().as_os_str().as_bytes()).map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))
}

/// Write the `hakmem-stats:` line to stderr.
pub fn print_stats() {
    print_stats_line(&stats());
}

fn print_stats_line(stats: &StatsSnapshot) {
    let mut line = hakmem_core::message::MessageBuffer::new();
    stats.write_line(&mut line);
    write_fd(STATS_FD.load(Ordering::Relaxed), line.as_bytes());
}

/// With `HAKMEM_VERBOSE`, at exit: what learning chose (on) or would have
/// chosen (frozen), as a setting to paste back.
fn print_learned() {
    use hakmem_core::config::LEARN_OFF;
    if GLOBAL.options().learn.load(Ordering::Relaxed) == LEARN_OFF {
        return;
    }
    let learner = GLOBAL.learner();
    let mut m = hakmem_core::message::MessageBuffer::new();
    m.push_str("hakmem: learned HAKMEM_PURGE_DELAY=");
    match learner.proposed_ms() {
        0 => m.push_str("(no window closed: the setting stays)"),
        ms => m.push_decimal(ms),
    };
    m.push_str(" HAKMEM_PURGE_DIRTY=").push_decimal(learner.learned_cap(GLOBAL.options()));
    let (segments, bigcache, fit_percent) = GLOBAL.learned_capacities();
    m.push_str(" HAKMEM_SEGMENT_CACHE=").push_decimal(segments);
    m.push_str(" HAKMEM_BIGCACHE_MAX=").push_decimal(bigcache);
    m.push_str(" HAKMEM_BIGCACHE_FIT=").push_decimal(fit_percent);
    m.push_str(" (delay in force: ").push_decimal(GLOBAL.purge_delay_ms()).push_str(" ms, ");
    m.push_decimal(learner.windows.load(Ordering::Relaxed) as usize).push_str(" windows)\n");
    write_stderr(m.as_bytes());
}

/// Write the readable statistics table, then the `hakmem-stats:` line,
/// to stderr.
pub fn print_stats_table() {
    let (stats, census) = GLOBAL.census();
    let fd = STATS_FD.load(Ordering::Relaxed);
    hakmem_core::census::write_table(&stats, &census, &mut |line| write_fd(fd, line));
    print_stats_line(&stats);
}

/// Where the exit statistics go: a duplicate of fd 2 taken when
/// HAKMEM_STATS is read, because programs such as coreutils close fd 2
/// before exit handlers run.
static STATS_FD: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(2);

fn keep_stats_fd() {
    // SAFETY: fd 2 is valid for the duration of the call (or the dup fails).
    let stderr = unsafe { rustix::fd::BorrowedFd::borrow_raw(2) };
    if let Ok(copy) = rustix::io::fcntl_dupfd_cloexec(stderr, 100) {
        use rustix::fd::IntoRawFd;
        STATS_FD.store(copy.into_raw_fd(), Ordering::Relaxed);
    }
}

/// Write bytes to fd 2, ignoring errors (diagnostics must not fail).
pub fn write_stderr(bytes: &[u8]) {
    write_fd(2, bytes);
}

fn write_fd(fd: i32, mut bytes: &[u8]) {
    // SAFETY: a raw descriptor number used for one write; if it is closed
    // the write fails harmlessly.
    let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) | Err(_) => return,
            Ok(n) => bytes = &bytes[n..],
        }
    }
}

// ---------------------------------------------------------------------------
// Process start and exit, fork.

unsafe extern "C" fn fork_prepare() {
    GLOBAL.lock_all();
}

unsafe extern "C" fn fork_release() {
    // SAFETY: fork_prepare took the locks in this thread (parent) or in the
    // thread that became the child's only thread.
    unsafe { GLOBAL.unlock_all() };
}

#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
extern "C" fn on_load() {
    // SAFETY: extern "C" handlers with no arguments.
    unsafe { pthread_atfork(Some(fork_prepare), Some(fork_release), Some(fork_release)) };
    env::ensure_read();
    background::start_if_enabled();
}

#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
extern "C" fn on_exit() {
    env::ensure_read();
    if env::VERBOSE.load(Ordering::Relaxed) || env::STATS_AT_EXIT.load(Ordering::Relaxed) != env::STATS_OFF || GLOBAL.profile().is_on() {
        report_at_exit();
    }
}

/// What `HAKMEM_VERBOSE`, `HAKMEM_STATS` and `HAKMEM_PROF_DUMP` print at
/// exit: apart from on_exit, which every process runs.
#[cold]
#[inline(never)]
fn report_at_exit() {
    if env::VERBOSE.load(Ordering::Relaxed) {
        print_learned();
    }
    match env::STATS_AT_EXIT.load(Ordering::Relaxed) {
        env::STATS_LINE => print_stats(),
        env::STATS_TABLE => print_stats_table(),
        _ => {}
    }
    profile::dump_at_exit();
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;

#[used]
#[link_section = ".fini_array"]
static ON_EXIT: extern "C" fn() = on_exit;

// ---------------------------------------------------------------------------
// Rust's global allocator.

/// hakmem as a Rust global allocator:
/// `#[global_allocator] static A: hakmem_linux::HakmemAlloc = hakmem_linux::HakmemAlloc;`
pub struct HakmemAlloc;

const MIN_ALIGN: usize = hakmem_core::config::MIN_ALIGN;

// SAFETY: alloc returns null or a block of at least layout.size() bytes
// aligned to layout.align(); dealloc/realloc take such blocks; hakmem is
// thread-safe; nothing here unwinds or allocates elsewhere.
unsafe impl GlobalAlloc for HakmemAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            malloc(layout.size())
        } else {
            malloc_aligned(layout.size(), layout.align())
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: ptr came from alloc.
        unsafe { free(ptr) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        with_heap(|heap| heap.calloc_aligned(layout.size(), layout.align()))
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: ptr is a live block (GlobalAlloc contract).
            if let Some(same) = unsafe { realloc_in_place(ptr, new_size) } {
                return same;
            }
        }
        // SAFETY: as above.
        unsafe { realloc_layout(ptr, layout, new_size) }
    }
}

/// `HakmemAlloc::realloc` beyond the in-place fast path, out of line.
///
/// # Safety
/// `ptr` is a live block of `layout.size()` bytes aligned to `layout.align()`.
#[inline(never)]
unsafe fn realloc_layout(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    // SAFETY: per the contract.
    with_heap(|heap| unsafe { heap.realloc_aligned(ptr, layout.size(), new_size, layout.align()) })
}
