//! A thread that only frees other threads' blocks: its frees are gathered
//! in a heap of its own, and all of them reach the owner, at the latest
//! when the thread exits. A binary of its own: no other test allocates in
//! this process meanwhile.

use hakmem_linux::HakmemAlloc;

#[global_allocator]
static ALLOC: HakmemAlloc = HakmemAlloc;

#[test]
fn frees_from_a_thread_without_allocations_reach_the_owner() {
    hakmem_linux::trim();
    let before = hakmem_linux::stats();
    let blocks: Vec<Box<[u8; 64]>> = (0..20_000).map(|i| Box::new([i as u8; 64])).collect();
    let allocated = hakmem_linux::stats();
    assert!(allocated.pages_in_use >= before.pages_in_use + 19, "{allocated:?}");
    std::thread::spawn(move || {
        for (i, block) in blocks.into_iter().enumerate() {
            assert_eq!(block[63], i as u8);
            drop(block);
        }
        assert!(!hakmem_linux::current_heap().is_null(), "the freeing thread has no heap");
    })
    .join()
    .unwrap();
    let after_exit = hakmem_linux::stats();
    assert!(after_exit.free_calls >= allocated.free_calls + 20_000, "{after_exit:?}");
    // The owner (this thread) collects what the exited thread handed over.
    hakmem_linux::trim();
    let trimmed = hakmem_linux::stats();
    assert!(trimmed.pages_in_use <= before.pages_in_use + 2, "blocks freed by the other thread were lost: {trimmed:?}");
}
