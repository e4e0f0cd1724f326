//! Criterion micro-benchmarks: hakmem vs mimalloc vs jemalloc vs System, in one process,
//! each allocator called directly through its `GlobalAlloc` implementation.
//!
//!   cargo bench -p hakmem-benches                          # all groups
//!   cargo bench -p hakmem-benches -- batch16               # one group (criterion filter)
//!   cargo bench -p hakmem-benches --no-default-features    # without hakmem
//!
//! Groups (the benchmark id is `<group>/<allocator>[/<parameter>]`):
//!   batch16     100 allocations of 16 B then 100 deallocations (throughput: calls/s)
//!   size_sweep  the same batch for 8, 16, ..., 1024 B
//!   vec_growth  a Vec<u64> grown by pushes (realloc doubling) to 1 KiB, 64 KiB, 1 MiB
//!   box_churn   512 live boxes of mixed sizes (8 B..4 KiB), 1000 random replacements

use std::alloc::GlobalAlloc;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hakmem_benches::*;

/// Calls `$body!(name, &ALLOCATOR)` for every allocator under test.
macro_rules! for_each_allocator {
    ($f:ident, $($arg:expr),*) => {{
        #[cfg(feature = "hakmem")]
        $f("hakmem", &HAKMEM, $($arg),*);
        $f("mimalloc", &MIMALLOC, $($arg),*);
        $f("jemalloc", &JEMALLOC, $($arg),*);
        $f("system", &SYSTEM, $($arg),*);
    }};
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn bench_batch<A: GlobalAlloc>(name: &str, a: &A, g: &mut Group<'_>, size: usize, param: bool) {
    let mut s = slots();
    let mut f = |b: &mut criterion::Bencher<'_>| b.iter(|| batch(a, black_box(size), &mut s));
    if param {
        g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| f(b));
    } else {
        g.bench_function(name, f);
    }
}

fn batch16(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch16");
    g.throughput(Throughput::Elements(2 * BATCH as u64));
    for_each_allocator!(bench_batch, &mut g, 16, false);
    g.finish();
}

fn size_sweep(c: &mut Criterion) {
    let mut g = c.benchmark_group("size_sweep");
    g.throughput(Throughput::Elements(2 * BATCH as u64));
    for size in [8usize, 16, 32, 64, 128, 256, 512, 1024] {
        for_each_allocator!(bench_batch, &mut g, size, true);
    }
    g.finish();
}

fn bench_vec<A: GlobalAlloc>(name: &str, a: &A, g: &mut Group<'_>, bytes: usize) {
    let n = bytes / 8;
    g.bench_with_input(BenchmarkId::new(name, format!("{}KiB", bytes >> 10)), &n, |b, &n| {
        b.iter(|| vec_growth(a, black_box(n)))
    });
}

fn vec_growth_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("vec_growth");
    for bytes in [1usize << 10, 64 << 10, 1 << 20] {
        g.throughput(Throughput::Bytes(bytes as u64));
        for_each_allocator!(bench_vec, &mut g, bytes);
    }
    g.finish();
}

const CHURN_STEPS: usize = 1000;

fn bench_churn<A: GlobalAlloc>(name: &str, a: &A, g: &mut Group<'_>) {
    let mut churn = Churn::new(a, 42);
    g.bench_function(name, |b| b.iter(|| churn.run(a, black_box(CHURN_STEPS))));
    churn.finish(a);
}

fn box_churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("box_churn");
    g.throughput(Throughput::Elements(2 * CHURN_STEPS as u64));
    for_each_allocator!(bench_churn, &mut g);
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = batch16, size_sweep, vec_growth_group, box_churn
}
criterion_main!(benches);
