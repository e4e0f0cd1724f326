//! The Rust program shapes of `hakmem_benches::shapes`, run with one allocator as the
//! process's `#[global_allocator]`, chosen at build time by exactly one feature:
//!
//!   ga-hakmem  ga-mimalloc  ga-jemalloc  ga-snmalloc  ga-system (glibc)
//!
//!   cargo build --release -p hakmem-benches --bin shapes --features ga-mimalloc
//!   shapes quick|full [SHAPE ...]       # all shapes when none is named
//!   shapes --list
//!
//! Prints `ALLOCATOR=`, one `RESULT` line per shape (the median of 5 timed repetitions
//! after a warm-up one), `PEAK_RSS_KIB=` (VmHWM), one `CLAIM` line per allocator and the
//! `PROOF` line (see `proof.rs`); exits 1 when the proof fails. `benches/shapes/run`
//! builds all five and compares them.

mod proof;

use hakmem_benches::shapes::{self, Mode};
use std::process::ExitCode;

// Exactly one global allocator per build.
const SELECTED: usize = cfg!(feature = "ga-hakmem") as usize
    + cfg!(feature = "ga-mimalloc") as usize
    + cfg!(feature = "ga-jemalloc") as usize
    + cfg!(feature = "ga-snmalloc") as usize
    + cfg!(feature = "ga-system") as usize;
const _: () = assert!(
    matches!(SELECTED, 0 | 1),
    "the ga-* features are mutually exclusive: enable one"
);

#[cfg(feature = "ga-hakmem")]
#[global_allocator]
static GLOBAL: hakmem_linux::HakmemAlloc = hakmem_linux::HakmemAlloc;
#[cfg(feature = "ga-mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "ga-jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(feature = "ga-snmalloc")]
#[global_allocator]
static GLOBAL: snmalloc_rs::SnMalloc = snmalloc_rs::SnMalloc;
#[cfg(feature = "ga-system")]
#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

/// The name of the selected allocator (as `proof` and the runner call it).
const ALLOCATOR: Option<&str> = if cfg!(feature = "ga-hakmem") {
    Some("hakmem")
} else if cfg!(feature = "ga-mimalloc") {
    Some("mimalloc")
} else if cfg!(feature = "ga-jemalloc") {
    Some("jemalloc")
} else if cfg!(feature = "ga-snmalloc") {
    Some("snmalloc")
} else if cfg!(feature = "ga-system") {
    Some("glibc")
} else {
    None
};

/// Timed repetitions per shape (after one warm-up repetition).
const REPS: usize = 5;

/// VmHWM (peak resident set) of this process, KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn usage() -> ExitCode {
    eprintln!("usage: shapes quick|full [SHAPE ...] | shapes --list");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        for s in shapes::SHAPES {
            println!("{} {}", s.name, s.unit);
        }
        return ExitCode::SUCCESS;
    }
    let Some(selected) = ALLOCATOR else {
        eprintln!("shapes: built without a ga-* feature, so no allocator is selected (see --features)");
        return ExitCode::from(2);
    };
    let mode = match args.first().map(String::as_str) {
        Some("quick") => Mode::Quick,
        Some("full") => Mode::Full,
        _ => return usage(),
    };
    let mut chosen = Vec::new();
    for name in &args[1..] {
        match shapes::find(name) {
            Some(s) => chosen.push(s),
            None => {
                eprintln!("shapes: unknown shape {name:?} (see --list)");
                return usage();
            }
        }
    }
    if chosen.is_empty() {
        chosen = shapes::SHAPES.iter().collect();
    }

    println!("ALLOCATOR={selected}");
    let calls_before = proof::hakmem_calls();
    let mut allocs = 0;
    for s in chosen {
        let m = shapes::measure(s, mode, REPS);
        allocs += m.allocs;
        let values: Vec<String> = m.values.iter().map(|v| format!("{v:.4}")).collect();
        println!(
            "RESULT shape={} unit={} value={:.4} steps={} values={}",
            s.name,
            s.unit,
            m.median,
            m.steps,
            values.join(",")
        );
    }
    let calls = proof::hakmem_calls() - calls_before;
    println!("ALLOCS_LOWER_BOUND={allocs}");
    println!("PEAK_RSS_KIB={}", peak_rss_kib());

    // The proof, after the shapes, in the same process.
    let claims = proof::probe();
    for c in &claims {
        let served = c.served.map_or("n/a", |b| if b { "yes" } else { "no" });
        println!("CLAIM {} served={} detail={:?}", c.name, served, c.detail);
    }
    let claimed: Vec<&str> = claims
        .iter()
        .filter(|c| c.served == Some(true))
        .map(|c| c.name)
        .collect();
    let mut ok = claimed == [selected];
    let mut check = format!(
        "served by {}",
        if claimed.is_empty() {
            "none".into()
        } else {
            claimed.join("+")
        }
    );
    match selected {
        "hakmem" => {
            ok &= calls as u64 >= allocs;
            check += &format!("; hakmem malloc_calls +{calls} during the shapes, lower bound {allocs}");
        }
        // Only asked once glibc alone claimed the blocks (a foreign pointer would be UB).
        "glibc" if ok => {
            let usable = proof::glibc_usable_size_of_byte();
            ok &= usable == 24;
            check += &format!("; malloc_usable_size of a 1-byte Box = {usable} (glibc: 24)");
        }
        _ => {}
    }
    println!("PROOF allocator={selected} ok={} check={check:?}", ok as u8);
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("shapes: PROOF FAILED: {selected} was selected but {check}");
        ExitCode::from(1)
    }
}
