//! The Linux page provider: anonymous private mappings through rustix's raw
//! system calls (no libc call, so `errno` is never touched and nothing can
//! recurse into malloc).

use core::ptr::{null_mut, NonNull};
use hakmem_core::PageProvider;
use rustix::mm::{madvise, mmap_anonymous, mprotect, mremap, mremap_fixed, munmap, Advice, MapFlags, MprotectFlags, MremapFlags, ProtFlags};

/// Pages from `mmap`, returned with `munmap`, purged with `MADV_DONTNEED`
/// (RSS drops at once; monitoring tools see it, unlike `MADV_FREE`).
pub struct LinuxPages;

const PAGE: usize = 4096;

fn map_raw(size: usize) -> Option<*mut u8> {
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choice
    // aliases nothing.
    let p = unsafe {
        mmap_anonymous(null_mut(), size, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE | MapFlags::NORESERVE)
    };
    p.ok().map(|p| p as *mut u8)
}

fn unmap_raw(p: usize, size: usize) {
    if size > 0 {
        // SAFETY: the range is part of a mapping we own and no longer use.
        let _ = unsafe { munmap(p as *mut core::ffi::c_void, size) };
    }
}

impl LinuxPages {
    /// Map `size` bytes aligned to `align`: over-map, then trim.
    fn map_aligned(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if align <= PAGE {
            return NonNull::new(map_raw(size)?);
        }
        // Often the kernel hands out an aligned address right away.
        let p = map_raw(size)?;
        if (p as usize).is_multiple_of(align) {
            return NonNull::new(p);
        }
        unmap_raw(p as usize, size);
        let padded = size.checked_add(align - PAGE)?;
        let p = map_raw(padded)? as usize;
        let aligned = (p + align - 1) & !(align - 1);
        unmap_raw(p, aligned - p);
        unmap_raw(aligned + size, p + padded - (aligned + size));
        NonNull::new(aligned as *mut u8)
    }

    /// mremap in place, else into a fresh aligned reservation.
    fn remap_pages(&self, ptr: NonNull<u8>, old_size: usize, new_size: usize, align: usize) -> Option<NonNull<u8>> {
        let old = ptr.as_ptr() as *mut core::ffi::c_void;
        // In place first: shrinking always works, growing when the
        // addresses after the mapping are free.
        // SAFETY: the range is one of our mappings (PageProvider::remap's contract).
        if let Ok(p) = unsafe { mremap(old, old_size, new_size, MremapFlags::empty()) } {
            return NonNull::new(p as *mut u8);
        }
        // Move the pages into a fresh aligned reservation: the kernel moves
        // page tables, no byte is copied.
        let target = self.map(new_size, align)?;
        // SAFETY: target is our own fresh mapping of new_size bytes, which
        // MREMAP_FIXED replaces; the old range is ours (contract).
        match unsafe { mremap_fixed(old, old_size, new_size, MremapFlags::MAYMOVE, target.as_ptr() as *mut core::ffi::c_void) } {
            Ok(p) => NonNull::new(p as *mut u8),
            Err(_) => {
                unmap_raw(target.as_ptr() as usize, new_size);
                None
            }
        }
    }

}

const HUGE_PAGE: usize = 2 << 20;

/// HAKMEM_THP: 0 = kernel default, 1 = ask for huge pages, 2 = refuse them.
pub static THP_MODE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);
pub const THP_DEFAULT: u8 = 0;
pub const THP_ON: u8 = 1;
pub const THP_OFF: u8 = 2;

/// Apply HAKMEM_THP to a fresh 2 MiB-aligned mapping.
fn advise_thp(p: *mut u8, size: usize) {
    let advice = match THP_MODE.load(core::sync::atomic::Ordering::Relaxed) {
        THP_ON => Advice::LinuxHugepage,
        THP_OFF => Advice::LinuxNoHugepage,
        _ => return,
    };
    // SAFETY: the range is a mapping we just made; advice changes no data.
    let _ = unsafe { madvise(p as *mut core::ffi::c_void, size, advice) };
}

// SAFETY: map returns fresh zeroed RW anonymous memory of the requested size
// and alignment (over-mapping, then trimming head and tail); unmap/purge use
// munmap/madvise on ranges the core got from map; rustix's linux_raw
// backend makes system calls directly, so no libc function runs (no errno
// write, no allocation); fatal writes with write(2) and calls abort(3).
unsafe impl PageProvider for LinuxPages {
    const PAGE_SIZE: usize = PAGE;
    const MAPS_ZEROED: bool = true;
    /// MADV_DONTNEED on private anonymous memory: the next touch gets a
    /// zero page.
    const PURGE_ZEROES: bool = true;
    /// mremap: in place, or moving the page tables.
    const CAN_REMAP: bool = true;
    /// munmap, madvise and mremap take any page-aligned subrange.
    const CAN_SPLIT: bool = true;
    /// mremap with MREMAP_FIXED moves page tables, not bytes.
    const CAN_MOVE: bool = true;
    /// mprotect: strict mode's guard pages.
    const CAN_PROTECT: bool = true;

    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let p = self.map_aligned(size, align)?;
        if align >= HUGE_PAGE {
            advise_thp(p.as_ptr(), size);
        }
        Some(p)
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize) {
        unmap_raw(ptr.as_ptr() as usize, size);
    }

    unsafe fn remap(&self, ptr: NonNull<u8>, old_size: usize, new_size: usize, align: usize) -> Option<NonNull<u8>> {
        let moved = self.remap_pages(ptr, old_size, new_size, align)?;
        advise_thp(moved.as_ptr(), new_size);
        Some(moved)
    }

    unsafe fn purge(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: the core passes page-aligned ranges of its own mappings
        // whose contents it no longer needs.
        let _ = unsafe { madvise(ptr.as_ptr() as *mut core::ffi::c_void, size, Advice::LinuxDontNeed) };
    }

    unsafe fn resident_pages(&self, ptr: NonNull<u8>, size: usize) -> Option<usize> {
        let mut vector = [0u8; hakmem_core::provider::RESIDENT_PAGES_MAX];
        let pages = size.div_ceil(Self::PAGE_SIZE);
        if pages > vector.len() {
            return None;
        }
        // SAFETY: a page-aligned range of our own mappings (the trait's
        // contract) and a vector of a byte per page.
        let rc = keeping_errno(|| unsafe { mincore(ptr.as_ptr() as *mut core::ffi::c_void, size, vector.as_mut_ptr()) });
        (rc == 0).then(|| vector[..pages].iter().filter(|&&page| page & 1 != 0).count())
    }

    unsafe fn move_pages(&self, from: NonNull<u8>, size: usize, to: NonNull<u8>) -> bool {
        let (from, to) = (from.as_ptr() as *mut core::ffi::c_void, to.as_ptr() as *mut core::ffi::c_void);
        // SAFETY: both ranges are ours and unused (the trait's contract);
        // MREMAP_FIXED replaces the destination's pages with the source's.
        unsafe { mremap_fixed(from, size, size, MremapFlags::MAYMOVE, to) }.is_ok()
    }

    unsafe fn protect(&self, ptr: NonNull<u8>, size: usize, accessible: bool) {
        let flags = if accessible { MprotectFlags::READ | MprotectFlags::WRITE } else { MprotectFlags::empty() };
        // SAFETY: the core passes page-aligned ranges of its own mappings
        // that nothing uses while they are inaccessible. A failure (out of
        // mapping slots) leaves the range accessible: no guard, no harm.
        let _ = unsafe { mprotect(ptr.as_ptr() as *mut core::ffi::c_void, size, flags) };
    }

    fn write_message(&self, message: &[u8]) {
        crate::write_stderr(message);
    }

    fn fatal(&self, message: &[u8]) -> ! {
        crate::write_stderr(message);
        // SAFETY: abort(3) takes no arguments and does not return.
        unsafe { abort() }
    }

    fn now_ms(&self) -> u64 {
        monotonic_coarse_ms()
    }

    fn resident(&self) -> (usize, usize) {
        resident_from_proc()
    }

    #[inline(never)]
    fn backtrace(&self, frames: &mut [usize], skip: usize) -> usize {
        // This frame too (it stays a frame: the result is used after the
        // call, so the call is not a tail call).
        core::hint::black_box(crate::profile::stack(frames, skip + 1))
    }

    fn random_seed(&self) -> u64 {
        let mut bytes = [0u8; 8];
        let got = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::NONBLOCK);
        let stack = &bytes as *const _ as u64;
        let mixed = stack.rotate_left(17) ^ monotonic_coarse_ms().wrapping_mul(0x9e37_79b9_7f4a_7c15);
        match got {
            Ok(8) => u64::from_ne_bytes(bytes) ^ mixed,
            _ => mixed,
        }
    }
}

extern "C" {
    fn abort() -> !;
    fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
    fn mincore(addr: *mut core::ffi::c_void, length: usize, vector: *mut u8) -> i32;
    fn __errno_location() -> *mut i32;
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

const CLOCK_MONOTONIC_COARSE: i32 = 6;

/// Milliseconds of the coarse monotonic clock, plus one (never 0).
///
/// Through libc, which reads the vDSO when there is one (no system call)
/// and falls back to the system call under valgrind, where rustix's own
/// vDSO lookup faults. errno is saved and restored: the provider contract
/// says we never change it.
fn monotonic_coarse_ms() -> u64 {
    let mut t = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out pointer.
    keeping_errno(|| unsafe { clock_gettime(CLOCK_MONOTONIC_COARSE, &mut t) });
    (t.tv_sec as u64) * 1000 + (t.tv_nsec as u64) / 1_000_000 + 1
}

/// Call into libc with this thread's errno restored afterwards: the
/// provider contract says we never change it.
fn keeping_errno<T>(call: impl FnOnce() -> T) -> T {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    let errno = unsafe { *__errno_location() };
    let result = call();
    // SAFETY: as above.
    unsafe { *__errno_location() = errno };
    result
}

/// `VmRSS` and `VmHWM` of `/proc/self/status` in bytes ((0, 0) when it
/// cannot be read), read into a stack buffer.
fn resident_from_proc() -> (usize, usize) {
    use rustix::fs::{open, Mode, OFlags};
    let Ok(fd) = open(c"/proc/self/status", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else {
        return (0, 0);
    };
    let mut buffer = [0u8; 4096];
    let mut len = 0;
    while len < buffer.len() {
        match rustix::io::read(&fd, &mut buffer[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    let kib_of = |key: &[u8]| -> usize {
        let Some(line) = buffer[..len].split(|&b| b == b'\n').find(|l| l.starts_with(key)) else {
            return 0;
        };
        let digits = line[key.len()..].iter().skip_while(|b| !b.is_ascii_digit()).take_while(|b| b.is_ascii_digit());
        digits.fold(0usize, |n, &d| n.saturating_mul(10).saturating_add((d - b'0') as usize))
    };
    (kib_of(b"VmRSS:") << 10, kib_of(b"VmHWM:") << 10)
}
