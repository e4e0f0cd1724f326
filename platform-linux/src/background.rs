//! The optional background purger (`HAKMEM_BACKGROUND=1`): one thread
//! that calls [`Global::purge_idle`](hakmem_core::Global::purge_idle)
//! every `TICK_MS`, so that memory held for reuse goes back to the system
//! after the program stops allocating, not at its next call.
//!
//! The thread is made at load (`on_load`), with every signal blocked (the
//! program's signals are never delivered to it), makes no heap and never
//! exits. It is not made again in a forked child.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, Ordering};

/// How often the purger looks (ms): memory waits at most this much longer
/// than its purge delay.
pub const TICK_MS: u64 = 100;

/// Set by `HAKMEM_BACKGROUND`.
pub static ENABLED: AtomicBool = AtomicBool::new(false);
/// Set once the thread runs.
pub static RUNNING: AtomicBool = AtomicBool::new(false);

extern "C" {
    fn pthread_create(
        thread: *mut u64,
        attr: *const c_void,
        start: extern "C" fn(*mut c_void) -> *mut c_void,
        arg: *mut c_void,
    ) -> c_int;
    fn pthread_detach(thread: u64) -> c_int;
    fn pthread_sigmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
}

/// glibc's `sigset_t` (1024 bits).
#[repr(C)]
struct SigSet([u64; 16]);
const SIG_SETMASK: c_int = 2;

extern "C" fn run(_: *mut c_void) -> *mut c_void {
    RUNNING.store(true, Ordering::Relaxed);
    let tick = rustix::thread::Timespec { tv_sec: 0, tv_nsec: (TICK_MS * 1_000_000) as _ };
    loop {
        let _ = rustix::thread::nanosleep(&tick);
        crate::GLOBAL.purge_idle();
    }
}

/// Start the purger when `HAKMEM_BACKGROUND` asks for it (once).
pub fn start_if_enabled() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if !ENABLED.load(Ordering::Relaxed) || STARTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let all = SigSet([!0; 16]);
    let mut old = SigSet([0; 16]);
    let mut thread = 0u64;
    // SAFETY: valid sigset pointers; the thread inherits the full mask,
    // which is then restored here; `run` takes no argument.
    unsafe {
        pthread_sigmask(SIG_SETMASK, &all, &mut old);
        if pthread_create(&mut thread, core::ptr::null(), run, core::ptr::null_mut()) == 0 {
            pthread_detach(thread);
        } else {
            crate::write_stderr(b"hakmem: HAKMEM_BACKGROUND: the purger thread could not be made; memory goes back at the next calls\n");
        }
        pthread_sigmask(SIG_SETMASK, &old, core::ptr::null_mut());
    }
}
