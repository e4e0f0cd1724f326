//! hakmem as the `#[global_allocator]` of a Rust program: everything this
//! test binary allocates (the harness included) goes through hakmem.

use hakmem_linux::HakmemAlloc;
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;

#[global_allocator]
static ALLOC: HakmemAlloc = HakmemAlloc;

#[test]
fn collections_and_threads_run_on_hakmem() {
    let before = hakmem_linux::stats();
    let mut map = HashMap::new();
    let mut tree = BTreeMap::new();
    for i in 0..100_000u64 {
        map.insert(i, format!("value-{i}"));
        tree.insert(format!("{i:08}"), vec![i as u8; (i % 300) as usize]);
    }
    assert_eq!(map[&777], "value-777");
    assert_eq!(tree["00000299"].len(), 299);
    let after = hakmem_linux::stats();
    assert!(after.malloc_calls >= before.malloc_calls + 200_000, "{before:?} -> {after:?}");

    // Cross-thread frees: blocks made here are dropped by workers.
    let (tx, rx) = mpsc::channel::<Vec<Box<[u8]>>>();
    let worker = std::thread::spawn(move || {
        let mut checked = 0usize;
        for batch in rx {
            for (i, block) in batch.iter().enumerate() {
                assert!(block.iter().all(|&b| b == (i % 251) as u8));
                checked += block.len();
            }
        }
        checked
    });
    let mut sent = 0usize;
    for round in 0..50 {
        let batch: Vec<Box<[u8]>> =
            (0..200).map(|i| vec![(i % 251) as u8; 16 + (i * 37 + round) % 70_000].into_boxed_slice()).collect();
        sent += batch.iter().map(|b| b.len()).sum::<usize>();
        tx.send(batch).unwrap();
    }
    drop(tx);
    assert_eq!(worker.join().unwrap(), sent);
}

#[test]
fn over_aligned_layouts_and_realloc() {
    use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
    for shift in 4..=24 {
        let layout = Layout::from_size_align(100 + (1 << shift) / 3, 1 << shift).unwrap();
        // SAFETY: non-zero size layouts; blocks freed with their layout.
        unsafe {
            let p = alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % layout.align(), 0);
            assert!(std::slice::from_raw_parts(p, layout.size()).iter().all(|&b| b == 0));
            p.write_bytes(0x5a, layout.size());
            let q = realloc(p, layout, layout.size() * 3);
            assert_eq!(q as usize % layout.align(), 0);
            assert!(std::slice::from_raw_parts(q, layout.size()).iter().all(|&b| b == 0x5a));
            dealloc(q, Layout::from_size_align(layout.size() * 3, layout.align()).unwrap());
            let r = alloc(Layout::from_size_align(8, 8).unwrap());
            dealloc(r, Layout::from_size_align(8, 8).unwrap());
        }
    }
}
