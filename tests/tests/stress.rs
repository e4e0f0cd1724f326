//! Bounded multi-threaded stress with cross-thread frees and a leak check
//! (tests/c/stress.c): statically linked, and again under LD_PRELOAD.

use hakmem_tests::*;
use std::process::Command;

fn check(out: &RunOutput, mode: &str) {
    let what = format!("stress ({mode})");
    let stdout = out.stdout_str();
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "stress: OK"),
        "{what}: failed ({}):\n{}\n{}",
        out.status_str(),
        stdout.lines().filter(|l| l.contains("FAILED") || l.contains("ERROR")).collect::<Vec<_>>().join("\n"),
        out.describe()
    );
    // the program really did the work (4 threads x 60000 iterations)
    let allocs: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("stress: allocs="))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no `stress: allocs=` line\n{}", out.describe()));
    assert!(allocs > 200_000, "{what}: only {allocs} allocations\n{}", out.describe());
    let stats = assert_served_by_hakmem(out, 1, &what);
    let calls = stats.iter().map(|s| s.get("malloc_calls")).max().unwrap();
    assert!(calls >= allocs, "{what}: exit stats malloc_calls {calls} < {allocs} allocations made\n{}", out.describe());
}

#[test]
fn stress_static() {
    let exe = compile_c("stress.c", "stress_static", Link::Static);
    let mut cmd = Command::new(&exe);
    without_hakmem(&mut cmd).env("HAKMEM_STATS", "1");
    let out = run(&mut cmd);
    check(&out, "static libhakmem.a");
}

#[test]
fn stress_preload() {
    let exe = compile_c("stress.c", "stress_preload", Link::Preload);
    let mut cmd = Command::new(&exe);
    with_preload(&mut cmd);
    let out = run(&mut cmd);
    check(&out, "LD_PRELOAD libhakmem.so");
}
