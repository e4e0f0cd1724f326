//! Which allocator served this process, asked in the process itself.
//!
//! All five allocators are linked into every build (hakmem only with the `hakmem` feature),
//! but only the `#[global_allocator]` is ever called by the shapes. The probe allocates a
//! 1-byte `Box` and an (untouched) 64 MiB `Vec` through the global allocator and asks each
//! allocator whether it served them; a build passes when exactly the selected allocator
//! says yes. Each question is one the allocator can answer for a pointer it never saw:
//!
//! - hakmem: its `malloc_calls` counter (`hakmem_linux::stats`) grows by >= 2 during the probe;
//! - mimalloc: `mi_is_in_heap_region` is true for both pointers;
//! - jemalloc: the `arenas.lookup` mallctl finds both pointers' arena (it fails with EINVAL
//!   for memory jemalloc does not own);
//! - snmalloc: its usable size of both pointers is at least the requested size (snmalloc's
//!   page map says 0 for memory it does not own);
//! - glibc: `mallinfo2` (bytes in use: `uordblks + hblkhd`) grows by >= 64 MiB.
//!
//! `main` adds a check over the whole run for hakmem (the counter grew by at least the
//! allocations the shapes counted) and, for glibc, `malloc_usable_size` of the 1-byte box
//! is 24 (mimalloc and jemalloc say 8, snmalloc 16).

use core::ffi::{c_char, c_int, c_void};
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

/// The big probe allocation: far above every allocator's small sizes, so that glibc serves
/// it with mmap and `mallinfo2` sees all of it.
const BIG: usize = 64 << 20;

/// One allocator's answer.
pub struct Claim {
    pub name: &'static str,
    /// `None`: that allocator is not linked into this build.
    pub served: Option<bool>,
    pub detail: String,
}

/// glibc's `struct mallinfo2` (all fields `size_t`; only two are read, the layout needs all).
#[repr(C)]
#[allow(dead_code)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

extern "C" {
    fn mallinfo2() -> MallInfo2;
    fn malloc_usable_size(ptr: *mut c_void) -> usize;
}

/// Bytes glibc's malloc has handed out and not taken back (small chunks + mmapped).
fn glibc_in_use() -> usize {
    // SAFETY: mallinfo2 has no preconditions; it only reads glibc's arenas.
    let m = unsafe { mallinfo2() };
    m.uordblks + m.hblkhd
}

/// hakmem's count of allocation calls (0 if hakmem is not linked).
pub fn hakmem_calls() -> usize {
    #[cfg(feature = "hakmem")]
    return hakmem_linux::stats().malloc_calls;
    #[cfg(not(feature = "hakmem"))]
    return 0;
}

/// `mallctl("arenas.lookup")`: Ok(arena index) or Err(errno).
fn jemalloc_arena_of(p: *const u8) -> Result<u32, c_int> {
    let mut arena: u32 = 0;
    let mut len = std::mem::size_of::<u32>();
    let mut ptr = p as *mut c_void;
    // SAFETY: the name is NUL-terminated; oldp/oldlenp point to an unsigned and its size,
    // newp to a pointer-sized value of newlen bytes, as arenas.lookup wants. jemalloc looks
    // the pointer up in its own map without dereferencing it.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arenas.lookup".as_ptr() as *const c_char,
            &mut arena as *mut u32 as *mut c_void,
            &mut len,
            &mut ptr as *mut *mut c_void as *mut c_void,
            std::mem::size_of::<*mut c_void>(),
        )
    };
    if rc == 0 {
        Ok(arena)
    } else {
        Err(rc)
    }
}

/// Makes sure snmalloc's page map exists before it is asked about a pointer (in builds where
/// snmalloc is not the global allocator nothing has initialised it yet).
fn snmalloc_init() {
    let layout = Layout::from_size_align(16, 8).unwrap();
    // SAFETY: non-zero size; the block is freed right away with the same layout.
    unsafe {
        let p = snmalloc_rs::SnMalloc.alloc(layout);
        assert!(!p.is_null(), "snmalloc: out of memory");
        snmalloc_rs::SnMalloc.dealloc(p, layout);
    }
}

/// Asks every allocator whether it served a small and a big allocation of the global allocator.
pub fn probe() -> Vec<Claim> {
    snmalloc_init();
    let (hk0, gl0) = (hakmem_calls(), glibc_in_use());
    let small = black_box(Box::new(0x5Au8));
    let big: Vec<u8> = black_box(Vec::with_capacity(BIG));
    let (hk1, gl1) = (hakmem_calls(), glibc_in_use());
    let (sp, bp) = (&*small as *const u8, big.as_ptr());

    let mut claims = Vec::new();
    claims.push(Claim {
        name: "hakmem",
        served: cfg!(feature = "hakmem").then_some(hk1 - hk0 >= 2),
        detail: format!("malloc_calls +{} during the probe", hk1 - hk0),
    });
    // SAFETY: mi_is_in_heap_region only compares the address with mimalloc's own map.
    let (mi_s, mi_b) = unsafe {
        (
            libmimalloc_sys::mi_is_in_heap_region(sp as *const c_void),
            libmimalloc_sys::mi_is_in_heap_region(bp as *const c_void),
        )
    };
    claims.push(Claim {
        name: "mimalloc",
        served: Some(mi_s && mi_b),
        detail: format!("mi_is_in_heap_region small={mi_s} big={mi_b}"),
    });
    let (je_s, je_b) = (jemalloc_arena_of(sp), jemalloc_arena_of(bp));
    claims.push(Claim {
        name: "jemalloc",
        served: Some(je_s.is_ok() && je_b.is_ok()),
        detail: format!("arenas.lookup small={je_s:?} big={je_b:?}"),
    });
    // SnMalloc::usable_size reads snmalloc's page map entry of the address (initialised
    // above; on Linux the map is lazily committed, so any address reads as "not owned": 0).
    let (sn_s, sn_b) = (
        snmalloc_rs::SnMalloc.usable_size(sp).unwrap_or(0),
        snmalloc_rs::SnMalloc.usable_size(bp).unwrap_or(0),
    );
    claims.push(Claim {
        name: "snmalloc",
        served: Some(sn_s >= 1 && sn_b >= BIG),
        detail: format!("usable size small={sn_s} big={sn_b}"),
    });
    let grown = gl1 as isize - gl0 as isize;
    claims.push(Claim {
        name: "glibc",
        served: Some(grown >= BIG as isize),
        detail: format!("mallinfo2 in use {grown:+} B around a {} MiB allocation", BIG >> 20),
    });
    drop(big);
    drop(small);
    claims
}

/// glibc only (call it only once glibc is proven to be the global allocator): the usable
/// size of a fresh 1-byte `Box`, 24 for glibc on x86_64.
pub fn glibc_usable_size_of_byte() -> usize {
    let b = black_box(Box::new(1u8));
    // SAFETY: the caller made sure the global allocator is glibc's malloc, so `b` is a live
    // glibc block.
    unsafe { malloc_usable_size(&*b as *const u8 as *mut c_void) }
}
