//! Strict mode's SIGSEGV handler: a write or read that hits a guard page
//! (core `guard.rs`) ends with one line naming the problem, the faulting
//! address and the block or segment, then abort, like every other report.
//! Any other fault goes to the action that was there before: it is put
//! back and the faulting instruction runs again under it (a SIGSEGV sent
//! by a process is raised again under it).
//!
//! Installed once, when the first heap is made in strict mode with guard
//! pages, and only while SIGSEGV has its default action (a program or
//! runtime with a handler of its own keeps it; one installed later
//! replaces ours). The handler runs on the alternate signal stack when the
//! thread has one; it reads the segment map and one header, and allocates
//! nothing.
//!
//! `struct sigaction` and `siginfo_t` are declared here for the 64-bit
//! Linux ABIs whose layout is the generic one (x86_64, aarch64, riscv64;
//! glibc and musl agree); elsewhere no handler is installed and a guard
//! hit is a plain SIGSEGV.

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64"))]
mod handler {
    use core::cell::UnsafeCell;
    use core::ffi::{c_int, c_void};
    use core::ptr::null_mut;

    const SIGSEGV: c_int = 11;
    const SA_SIGINFO: c_int = 4;
    const SA_ONSTACK: c_int = 0x0800_0000;
    const SIG_DFL: usize = 0;
    /// `si_code` of a SIGSEGV for an access the page's protection forbids.
    const SEGV_ACCERR: c_int = 2;

    /// The C library's `struct sigaction` on these targets.
    #[repr(C)]
    struct SigAction {
        handler: usize,
        mask: [u64; 16],
        flags: c_int,
        restorer: usize,
    }

    /// The start of `siginfo_t`: for SIGSEGV, the faulting address follows
    /// the three ints (and padding to 8 bytes).
    #[repr(C)]
    struct SigInfo {
        signo: c_int,
        errno: c_int,
        code: c_int,
        address: usize,
    }

    extern "C" {
        fn sigaction(signal: c_int, action: *const SigAction, old: *mut SigAction) -> c_int;
        fn raise(signal: c_int) -> c_int;
    }

    /// The action before ours, put back for faults that are not a guard's.
    struct Previous(UnsafeCell<SigAction>);
    // SAFETY: written once by `install` (under the caller's Once) before
    // the handler that reads it is installed; only read afterwards.
    unsafe impl Sync for Previous {}
    static PREVIOUS: Previous = Previous(UnsafeCell::new(SigAction { handler: SIG_DFL, mask: [0; 16], flags: 0, restorer: 0 }));

    extern "C" fn on_fault(_signal: c_int, info: *mut SigInfo, _context: *mut c_void) {
        // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers.
        let (code, address) = unsafe { ((*info).code, (*info).address) };
        // A guard hit is an access to a mapped page it may not touch; a
        // signal sent by a process (code <= 0) carries no address at all.
        if code == SEGV_ACCERR {
            crate::GLOBAL.report_fault(address); // does not return for a guard
        }
        // SAFETY: PREVIOUS holds the action sigaction returned at install;
        // raise only queues the signal (blocked until this handler returns).
        unsafe {
            sigaction(SIGSEGV, PREVIOUS.0.get(), null_mut());
            if code <= 0 {
                // Sent, not a fault: it would not come again by itself.
                raise(SIGSEGV);
            }
        }
    }

    /// Install the handler when SIGSEGV has its default action. Call once.
    pub fn install() {
        // SAFETY: sigaction with a null new action only reads the current
        // one into PREVIOUS, which no handler reads yet; the new action is
        // a valid SA_SIGINFO handler with an empty mask.
        unsafe {
            let previous = PREVIOUS.0.get();
            if sigaction(SIGSEGV, core::ptr::null(), previous) != 0 || (*previous).handler != SIG_DFL {
                return;
            }
            let action = SigAction { handler: on_fault as *const () as usize, mask: [0; 16], flags: SA_SIGINFO | SA_ONSTACK, restorer: 0 };
            sigaction(SIGSEGV, &action, null_mut());
        }
    }
}

/// Install the guard-page fault handler (strict mode), once.
pub fn install_once() {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64"))]
    {
        static INSTALLED: spin::Once<()> = spin::Once::new();
        INSTALLED.call_once(handler::install);
    }
}
