//! Fault and load tests (tests/c/faults.c, statically linked): the
//! address-space limit moving under four allocating threads, fork while
//! threads allocate, and thousands of short-lived threads with bounded
//! resident memory; and the stress program with more threads than cores.
//! `FAULTS_SCALE` multiplies the work (the soak; tests/README.md).

use hakmem_tests::*;
use std::process::Command;

fn scale() -> String {
    std::env::var("FAULTS_SCALE").unwrap_or_else(|_| "1".into())
}

fn faults(mode: &str) -> RunOutput {
    let exe = compile_c("faults.c", &format!("faults_{mode}"), Link::Static);
    let mut cmd = Command::new(&exe);
    without_hakmem(&mut cmd).env("HAKMEM_STATS", "1").args([mode, &scale()]);
    let out = run(&mut cmd);
    let stdout = out.stdout_str();
    assert!(
        out.status.success() && stdout.lines().any(|l| l == format!("faults {mode}: OK")),
        "faults {mode}: {}\n{}",
        out.status_str(),
        out.describe()
    );
    assert_served_by_hakmem(&out, 1, &format!("faults {mode}"));
    out
}

/// The number after `key=` on the line starting with `prefix`.
fn field(out: &RunOutput, prefix: &str, key: &str) -> u64 {
    let stdout = out.stdout_str();
    let line = stdout.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` line\n{}", out.describe()));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in `{line}`"))
}

#[test]
fn out_of_address_space_at_random_points_of_a_threaded_run() {
    let out = faults("oom");
    // The limit bit (NULLs, all with ENOMEM, checked by the program), and
    // the run still did its work around them.
    assert!(field(&out, "faults oom:", "nulls") > 0, "{}", out.describe());
    assert!(field(&out, "faults oom:", "allocs") > 100_000, "{}", out.describe());
}

#[test]
fn fork_while_threads_allocate_and_free_each_others_blocks() {
    let out = faults("forks");
    assert!(field(&out, "faults forks:", "forks") >= 150, "{}", out.describe());
    assert_eq!(field(&out, "faults forks:", "failed_children"), 0, "{}", out.describe());
}

#[test]
fn thousands_of_short_lived_threads_keep_resident_memory_bounded() {
    let out = faults("churn");
    assert!(field(&out, "faults churn:", "threads") >= 3000, "{}", out.describe());
    assert!(field(&out, "faults churn:", "handed_over") > 100_000, "{}", out.describe());
}

#[test]
fn remote_frees_racing_their_owners_exit() {
    let out = faults("exit-race");
    assert!(field(&out, "faults exit-race:", "freed") >= 3000 * 8192, "{}", out.describe());
}

#[test]
fn stress_with_more_threads_than_cores() {
    // 16 threads of random operations with cross-thread frees on the
    // machine's cores (2 in CI), contents checked (tests/c/stress.c).
    let exe = compile_c("stress.c", "stress_oversubscribed", Link::Static);
    let iterations = 20_000 * scale().parse::<u64>().unwrap_or(1);
    let mut cmd = Command::new(&exe);
    without_hakmem(&mut cmd).env("HAKMEM_STATS", "1").args(["16", &iterations.to_string()]);
    let out = run(&mut cmd);
    assert!(out.status.success() && out.stdout_str().lines().any(|l| l == "stress: OK"), "{}", out.describe());
    assert!(field(&out, "stress: allocs", "allocs") > 16 * iterations / 3, "{}", out.describe());
}
