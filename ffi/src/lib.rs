//! hakmem's C ABI: every allocation entry point of ISO C, POSIX and glibc,
//! with glibc's edge-case semantics, exported from `libhakmem.so` (for
//! `LD_PRELOAD`) and `libhakmem.a` (to link into C programs). Declared in
//! `include/hakmem.h`.
//!
//! This crate is a thin shell: each function checks the C-level edge cases
//! (overflow, bad alignment, errno) and forwards to `hakmem_linux`. Every
//! exported function is written out below under its C name (`grep -n "fn
//! malloc"` finds it); the `__libc_*` aliases call the function they alias.
//! `tests/tests/exports.rs` checks that `libhakmem.so` exports exactly these. `errno`
//! is written in one place (`set_errno`); nothing here allocates, formats
//! through an allocator, or unwinds (`panic = "abort"` in every profile).
//!
//! `no_std` where panics abort (this workspace's profiles; `hakmem_linux`
//! is built without its `std` feature): the library links no Rust runtime
//! and no `libgcc_s`, so a preloaded hakmem maps little into each process.
//! Its panic handler is below. Built with unwinding panics (a profile of
//! another workspace), it links std, whose panic runtime unwinding needs.
#![cfg_attr(panic = "abort", no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
#![allow(clippy::missing_safety_doc)] // C functions: their contract is the C standard's

use core::ffi::{c_char, c_int, c_void};
use core::ptr::null_mut;
use hakmem_linux as hk;

const ENOMEM: c_int = 12;
const EINVAL: c_int = 22;
const PAGE: usize = 4096;

/// A panic, which would be a bug in hakmem, ends the process with one line
/// on stderr, written without allocating (`panic = "abort"` in every
/// profile: nothing unwinds). Where `hakmem_linux` links std (targets
/// without its TLS words), std's handler serves.
#[cfg(all(panic = "abort", not(test), target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    use hakmem_core::PageProvider;
    let mut m = hakmem_core::message::MessageBuffer::new();
    let _ = write!(m, "hakmem: internal error: {}", info.message());
    if let Some(at) = info.location() {
        let _ = write!(m, " at {}:{}", at.file(), at.line());
    }
    m.push_str("\n");
    hk::LinuxPages.fatal(m.as_bytes())
}

extern "C" {
    fn __errno_location() -> *mut c_int;
    fn fputs(s: *const c_char, stream: *mut c_void) -> c_int;
}

fn set_errno(value: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *__errno_location() = value };
}

/// Null results of allocating calls mean "out of memory" in C.
#[inline(always)]
fn enomem_if_null(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(ENOMEM);
    }
    p as *mut c_void
}

// malloc(0) returns a unique, freeable pointer.
#[no_mangle]
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    let block = hk::malloc_fast(size);
    if !block.is_null() {
        return block as *mut c_void;
    }
    malloc_slow(size)
}

/// Everything malloc's fast path does not serve, out of line so that the
/// fast path is a leaf. Not `#[cold]`: every request above the small sizes
/// takes it.
#[inline(never)]
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
fn malloc_slow(size: usize) -> *mut c_void {
    enomem_if_null(hk::malloc_slow(size))
}

#[no_mangle]
pub unsafe extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    // SAFETY: the same contract as malloc.
    unsafe { malloc(size) }
}

#[no_mangle]
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: C contract: ptr is null or from malloc & co.; misuse is
    // detected and aborts.
    unsafe { hk::free(ptr as *mut u8) }
}

#[no_mangle]
pub unsafe extern "C" fn __libc_free(ptr: *mut c_void) {
    // SAFETY: the same contract as free.
    unsafe { free(ptr) }
}

#[no_mangle]
pub unsafe extern "C" fn cfree(ptr: *mut c_void) {
    // SAFETY: the same contract as free.
    unsafe { free(ptr) }
}

#[no_mangle]
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    enomem_if_null(hk::calloc(count, size))
}

#[no_mangle]
pub unsafe extern "C" fn __libc_calloc(count: usize, size: usize) -> *mut c_void {
    // SAFETY: the same contract as calloc.
    unsafe { calloc(count, size) }
}

/// glibc semantics: realloc(p, 0) frees p and returns NULL;
/// realloc(NULL, n) is malloc(n); on failure the old block is untouched.
#[inline(always)]
unsafe fn realloc_c(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: ptr is null or a live block (C contract). size 0 never
    // fits in place (a block is at least 16 bytes).
    if let Some(same) = unsafe { hk::realloc_in_place(ptr as *mut u8, size) } {
        return same as *mut c_void;
    }
    // SAFETY: the same contract.
    unsafe { realloc_c_slow(ptr, size) }
}

/// realloc_c beyond the in-place fast path: out of line, so that the fast
/// path needs no stack frame.
#[inline(never)]
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
unsafe fn realloc_c_slow(ptr: *mut c_void, size: usize) -> *mut c_void {
    if !ptr.is_null() && size == 0 {
        // SAFETY: ptr is a live block (C contract).
        unsafe { hk::free(ptr as *mut u8) };
        return null_mut();
    }
    // SAFETY: ptr is null or a live block (C contract).
    enomem_if_null(unsafe { hk::realloc(ptr as *mut u8, size) })
}

#[no_mangle]
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded C contract.
    unsafe { realloc_c(ptr, size) }
}

#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the same contract as realloc.
    unsafe { realloc(ptr, size) }
}

#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        // SAFETY: forwarded C contract.
        Some(total) => unsafe { realloc_c(ptr, total) },
        None => {
            set_errno(ENOMEM);
            null_mut()
        }
    }
}

// Returns EINVAL (without touching *out) unless alignment is a power of
// two and a multiple of sizeof(void *).
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, alignment: usize, size: usize) -> c_int {
    if !alignment.is_power_of_two() || !alignment.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
        return EINVAL;
    }
    let p = hk::malloc_aligned(size, alignment);
    if p.is_null() {
        return ENOMEM;
    }
    // SAFETY: out is a valid pointer (C contract).
    unsafe { *out = p as *mut c_void };
    0
}

#[no_mangle]
pub unsafe extern "C" fn __posix_memalign(out: *mut *mut c_void, alignment: usize, size: usize) -> c_int {
    // SAFETY: the same contract as posix_memalign.
    unsafe { posix_memalign(out, alignment, size) }
}

// C11/C17: a non-power-of-two alignment gives NULL with EINVAL (glibc
// 2.38 behaviour); any size is accepted.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void {
    if !alignment.is_power_of_two() {
        set_errno(EINVAL);
        return null_mut();
    }
    enomem_if_null(hk::malloc_aligned(size, alignment))
}

/// glibc memalign: alignments are rounded up to a power of two; absurd ones
/// fail with EINVAL.
fn memalign_c(alignment: usize, size: usize) -> *mut c_void {
    if alignment > usize::MAX / 2 + 1 {
        set_errno(EINVAL);
        return null_mut();
    }
    let alignment = alignment.max(1).next_power_of_two();
    enomem_if_null(hk::malloc_aligned(size, alignment))
}

#[no_mangle]
pub unsafe extern "C" fn memalign(alignment: usize, size: usize) -> *mut c_void {
    memalign_c(alignment, size)
}

#[no_mangle]
pub unsafe extern "C" fn __libc_memalign(alignment: usize, size: usize) -> *mut c_void {
    // SAFETY: the same contract as memalign.
    unsafe { memalign(alignment, size) }
}

#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    memalign_c(PAGE, size)
}

#[no_mangle]
pub unsafe extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    // SAFETY: the same contract as valloc.
    unsafe { valloc(size) }
}

// Page aligned, size rounded up to whole pages (pvalloc(0): one page).
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    match size.max(1).checked_next_multiple_of(PAGE) {
        Some(rounded) => memalign_c(PAGE, rounded),
        None => {
            set_errno(ENOMEM);
            null_mut()
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    // SAFETY: the same contract as pvalloc.
    unsafe { pvalloc(size) }
}

#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    // SAFETY: ptr is null or live (C contract); misuse aborts.
    unsafe { hk::usable_size(ptr as *const u8) }
}

/// Free a non-null block after checking that `size` fits in it (aborting
/// with `too_big` otherwise).
///
/// # Safety
/// `ptr` is a live block (C contract); usable_size validates it.
unsafe fn free_checking_size(ptr: *mut c_void, size: usize, too_big: &str) {
    // SAFETY: per the contract.
    unsafe {
        if size > hk::usable_size(ptr as *const u8) {
            fatal_at(too_big, ptr as usize);
        }
        hk::free(ptr as *mut u8)
    }
}

/// Abort with `hakmem: <what><value>`.
fn fatal_at(what: &str, value: usize) -> ! {
    hakmem_linux::GLOBAL.fatal_at(what, value)
}

// C23: the size must not exceed the block (it may be smaller: blocks
// are rounded up, and realloc may shrink in place).
#[no_mangle]
pub unsafe extern "C" fn free_sized(ptr: *mut c_void, size: usize) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: forwarded C contract.
    unsafe { free_checking_size(ptr, size, "free_sized(): size larger than the block at ") }
}

// C23: the pointer must honour the alignment and the block the size.
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(ptr: *mut c_void, alignment: usize, size: usize) {
    if ptr.is_null() {
        return;
    }
    if !alignment.is_power_of_two() || !(ptr as usize).is_multiple_of(alignment) {
        fatal_at("free_aligned_sized(): pointer does not have the stated alignment ", ptr as usize);
    }
    // SAFETY: forwarded C contract.
    unsafe { free_checking_size(ptr, size, "free_aligned_sized(): size larger than the block at ") }
}

// ---------------------------------------------------------------------------
// glibc extras

// Returns 1 when memory was given back to the system, else 0.
#[no_mangle]
pub unsafe extern "C" fn malloc_trim(_pad: usize) -> c_int {
    hk::trim() as c_int
}

// No glibc parameter applies to hakmem: returns 0 ("not done") for all.
// Use the HAKMEM_* environment variables instead.
#[no_mangle]
pub unsafe extern "C" fn mallopt(_param: c_int, _value: c_int) -> c_int {
    0
}

#[no_mangle]
pub unsafe extern "C" fn malloc_stats() {
    hk::print_stats_table();
}

/// glibc's `struct mallinfo2`.
#[repr(C)]
pub struct Mallinfo2 {
    pub arena: usize,
    pub ordblks: usize,
    pub smblks: usize,
    pub hblks: usize,
    pub hblkhd: usize,
    pub usmblks: usize,
    pub fsmblks: usize,
    pub uordblks: usize,
    pub fordblks: usize,
    pub keepcost: usize,
}

/// glibc's `struct mallinfo` (int fields, saturated).
#[repr(C)]
pub struct Mallinfo {
    pub arena: c_int,
    pub ordblks: c_int,
    pub smblks: c_int,
    pub hblks: c_int,
    pub hblkhd: c_int,
    pub usmblks: c_int,
    pub fsmblks: c_int,
    pub uordblks: c_int,
    pub fordblks: c_int,
    pub keepcost: c_int,
}

fn mallinfo_now() -> Mallinfo2 {
    let s = hk::stats();
    Mallinfo2 {
        arena: s.bytes_mapped,
        ordblks: 0,
        smblks: 0,
        hblks: s.huge_mapped,
        hblkhd: s.huge_bytes,
        usmblks: s.bytes_mapped_peak,
        fsmblks: 0,
        uordblks: s.page_bytes_in_use + s.huge_bytes,
        fordblks: s.bytes_mapped.saturating_sub(s.page_bytes_in_use + s.huge_bytes),
        keepcost: 0,
    }
}

#[no_mangle]
pub unsafe extern "C" fn mallinfo2() -> Mallinfo2 {
    mallinfo_now()
}

#[no_mangle]
pub unsafe extern "C" fn mallinfo() -> Mallinfo {
    let m = mallinfo_now();
    let int = |v: usize| v.min(c_int::MAX as usize) as c_int;
    Mallinfo {
        arena: int(m.arena),
        ordblks: int(m.ordblks),
        smblks: int(m.smblks),
        hblks: int(m.hblks),
        hblkhd: int(m.hblkhd),
        usmblks: int(m.usmblks),
        fsmblks: int(m.fsmblks),
        uordblks: int(m.uordblks),
        fordblks: int(m.fordblks),
        keepcost: int(m.keepcost),
    }
}

// Writes an XML summary; options must be 0 (else EINVAL, -1).
#[no_mangle]
pub unsafe extern "C" fn malloc_info(options: c_int, stream: *mut c_void) -> c_int {
    if options != 0 || stream.is_null() {
        set_errno(EINVAL);
        return -1;
    }
    let mut failed = false;
    write_malloc_info(&mut |line| {
        let mut text = [0u8; 513];
        text[..line.len()].copy_from_slice(line);
        // SAFETY: text is NUL-terminated; stream is a FILE* (C contract).
        failed |= unsafe { fputs(text.as_ptr() as *const c_char, stream) } < 0;
    });
    if failed {
        return -1;
    }
    0
}

/// malloc_info's XML in glibc's shape (one `<heap>` for the process): per
/// size class with free blocks a `<size>` of them; `fast` totals the free
/// tiny blocks, `rest` the other free blocks, `mmap` the live huge blocks;
/// `system` and `aspace` the bytes mapped.
fn write_malloc_info(emit: &mut dyn FnMut(&[u8])) {
    let (s, census) = hk::GLOBAL.census();
    let mut out = hakmem_core::message::Lines::new(emit);
    let (mut fast, mut rest) = ((0, 0), (0, 0));
    out.line(format_args!("<malloc version=\"1\">"));
    out.line(format_args!("<heap nr=\"0\">"));
    out.line(format_args!("<sizes>"));
    let mut from = 1;
    for c in &census.classes {
        let count = c.bytes_free / c.block_size;
        if count > 0 {
            out.line(format_args!("  <size from=\"{}\" to=\"{}\" total=\"{}\" count=\"{}\"/>", from, c.block_size, c.bytes_free, count));
            let sum = if c.block_size <= hakmem_core::config::SMALL_MAX { &mut fast } else { &mut rest };
            *sum = (sum.0 + count, sum.1 + c.bytes_free);
        }
        from = c.block_size + 1;
    }
    out.line(format_args!("</sizes>"));
    for in_heap in [true, false] {
        out.line(format_args!("<total type=\"fast\" count=\"{}\" size=\"{}\"/>", fast.0, fast.1));
        out.line(format_args!("<total type=\"rest\" count=\"{}\" size=\"{}\"/>", rest.0, rest.1));
        if !in_heap {
            out.line(format_args!("<total type=\"mmap\" count=\"{}\" size=\"{}\"/>", census.huge_live.0, census.huge_live.1));
        }
        out.line(format_args!("<system type=\"current\" size=\"{}\"/>", s.bytes_mapped));
        out.line(format_args!("<system type=\"max\" size=\"{}\"/>", s.bytes_mapped_peak));
        out.line(format_args!("<aspace type=\"total\" size=\"{}\"/>", s.bytes_mapped));
        out.line(format_args!("<aspace type=\"mprotect\" size=\"{}\"/>", s.bytes_mapped));
        if in_heap {
            out.line(format_args!("</heap>"));
        }
    }
    out.line(format_args!("</malloc>"));
}

// ---------------------------------------------------------------------------
// hakmem extensions

// Fill *out with hakmem's counters; EINVAL when out is NULL.
#[no_mangle]
pub unsafe extern "C" fn hakmem_stats_get(out: *mut hakmem_core::StatsSnapshot) -> c_int {
    if out.is_null() {
        return EINVAL;
    }
    // SAFETY: out points to a struct hakmem_stats (same layout).
    unsafe { out.write(hk::stats()) };
    0
}

// Fill out[0..n) with the per-size-class census; returns the number of
// classes (call with n = 0 to learn it).
#[no_mangle]
pub unsafe extern "C" fn hakmem_class_stats_get(out: *mut hakmem_core::ClassStats, n: usize) -> usize {
    let classes = hk::class_stats();
    if !out.is_null() {
        for (i, class) in classes.iter().enumerate().take(n) {
            // SAFETY: out points to n structs hakmem_class_stats (same layout).
            unsafe { out.add(i).write(*class) };
        }
    }
    classes.len()
}

// Write the heap profile of the live sampled allocations to `path` and its
// folded stacks to `path.folded`: 0, or -1 with errno (EINVAL: profiling
// off, or a null, empty or too long path; else the error of open/write).
#[no_mangle]
pub unsafe extern "C" fn hakmem_prof_dump(path: *const c_char) -> c_int {
    if path.is_null() {
        set_errno(EINVAL);
        return -1;
    }
    // SAFETY: a non-null path is a NUL-terminated string (C contract).
    let path = unsafe { core::ffi::CStr::from_ptr(path) }.to_bytes();
    match hk::profile::dump_to(path) {
        Ok(()) => 0,
        Err(error) => {
            set_errno(error.raw_os_error());
            -1
        }
    }
}

static VERSION_C: &str = concat!("hakmem ", env!("CARGO_PKG_VERSION"), "\0");

#[no_mangle]
pub unsafe extern "C" fn hakmem_version() -> *const c_char {
    VERSION_C.as_ptr() as *const c_char
}
