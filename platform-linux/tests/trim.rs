//! Memory of exited threads goes back to the system on trim. A binary of
//! its own: no other test allocates in this process meanwhile.

use hakmem_linux::HakmemAlloc;

#[global_allocator]
static ALLOC: HakmemAlloc = HakmemAlloc;

#[test]
fn trim_returns_memory_of_exited_threads() {
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let blocks: Vec<Vec<u8>> = (0..2000).map(|i| vec![t as u8; 100 + i * 13]).collect();
                blocks.iter().map(|b| b.len()).sum::<usize>()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap() > 0);
    }
    let peak = hakmem_linux::stats().bytes_mapped_peak;
    assert!(hakmem_linux::trim(), "trim released nothing");
    let stats = hakmem_linux::stats();
    assert!(peak > 50 << 20, "the threads did allocate: {stats:?}");
    // What stays mapped is the main thread's working set (a few segments)
    // and the heap metadata: far below the threads' ~100 MB.
    assert!(stats.bytes_mapped < 16 << 20, "{stats:?}");
    assert_eq!(stats.huge_mapped, 0, "{stats:?}");
}
