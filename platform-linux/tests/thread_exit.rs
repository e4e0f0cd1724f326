//! Allocation during thread exit: TLS destructors that allocate and free
//! run around hakmem's own thread-exit handling (a pthread key destructor),
//! in both orders; nothing may crash or leak a heap per thread.

use hakmem_linux::HakmemAlloc;
use std::cell::RefCell;

#[global_allocator]
static ALLOC: HakmemAlloc = HakmemAlloc;

struct AllocatesOnDrop(Vec<Vec<u8>>);

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        // Free what the thread kept, allocate more, free it again.
        self.0.clear();
        let fresh: Vec<Box<[u8; 100]>> = (0..1000).map(|i| Box::new([i as u8; 100])).collect();
        assert!(fresh.iter().enumerate().all(|(i, b)| b[99] == i as u8));
        // And leave some blocks to be freed by no one but thread exit: they
        // stay allocated (a real leak of the program, not of hakmem).
        std::mem::forget(vec![1u8; 5000]);
    }
}

thread_local! {
    static KEEP: RefCell<AllocatesOnDrop> = const { RefCell::new(AllocatesOnDrop(Vec::new())) };
}

#[test]
fn threads_allocating_in_tls_destructors_exit_cleanly() {
    let before = hakmem_linux::stats();
    for round in 0..20 {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    KEEP.with(|k| {
                        let mut k = k.borrow_mut();
                        for i in 0..200 {
                            k.0.push(vec![(round + t + i) as u8; 10 + i * 50]);
                        }
                    });
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    let after = hakmem_linux::stats();
    // Every exited thread gave its heap back: live heaps do not grow with
    // the 80 threads that came and went.
    assert!(after.heaps_live <= before.heaps_live + 2, "{before:?} -> {after:?}");
    assert!(after.free_calls > before.free_calls + 80 * 1000, "{after:?}");
}
