//! fork() while other threads allocate: the child must be able to allocate
//! (hakmem's locks are taken around fork by its pthread_atfork handlers).

use hakmem_linux::HakmemAlloc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[global_allocator]
static ALLOC: HakmemAlloc = HakmemAlloc;

extern "C" {
    fn fork() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn _exit(code: i32) -> !;
    fn alarm(seconds: u32) -> u32;
}

#[test]
fn children_allocate_after_fork_from_a_busy_process() {
    // Every huge free goes through the release batch, whose munmaps run
    // under the huge-block lock: forks often land while it is held.
    hakmem_linux::GLOBAL.options().bigcache_bytes.store(0, Ordering::Relaxed);
    hakmem_linux::GLOBAL.options().segment_cache.store(0, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut held: Vec<Vec<u8>> = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // Small, mid, large and huge blocks: every global lock
                    // (segment cache, huge cache, heap pool) gets taken.
                    let size = [24, 3 << 20, 200_000, 3 << 20][i % 4] + t;
                    held.push(vec![t as u8; size]);
                    if held.len() > 16 {
                        held.swap_remove(i % held.len());
                    }
                    i += 1;
                }
            })
        })
        .collect();

    for round in 0..300 {
        // SAFETY: plain fork; the child only allocates, checks and _exits.
        let pid = unsafe { fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // A deadlocked child dies by SIGALRM instead of hanging the test.
            // SAFETY: plain libc call.
            unsafe { alarm(10) };
            let mut ok = true;
            for size in [16usize, 5000, 300_000, 5 << 20] {
                let v = vec![round as u8; size];
                ok &= v.iter().all(|&b| b == round as u8);
            }
            let t = std::thread::spawn(|| vec![7u8; 1 << 16].len());
            ok &= t.join().map(|n| n == 1 << 16).unwrap_or(false);
            // SAFETY: end the child without running the parent's test harness.
            unsafe { _exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let waited = unsafe { waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert_eq!(status, 0, "child {round} failed or hung (status {status:#x})");
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}
