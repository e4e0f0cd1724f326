//! Idle return: with `HAKMEM_BACKGROUND=1`, memory a program freed goes
//! back to the system after it stops allocating (tests/c/idle.c watches its
//! own resident set), while its live blocks keep their contents; and freed
//! blocks of pages still in use go back while the program runs
//! (tests/c/sparse_free.c).

use hakmem_tests::*;
use std::process::Command;

/// What an idle thread may keep by design: one empty page per size class
/// it used (the purger never takes a page the owner's fast path may pop
/// from), up to 2 MiB for the large classes; the program uses 13 classes.
const KEPT_KB: u64 = 8192;

/// Run the idle program preloaded with `env`, waiting up to `wait_ms`.
fn idle_run(env: &[(&str, &str)], wait_ms: u64) -> Vec<(String, u64)> {
    let program = compile_c("idle.c", "idle_preload", Link::Preload);
    let mut cmd = Command::new(program);
    without_hakmem(&mut cmd).env("LD_PRELOAD", shared_lib()).args([wait_ms.to_string(), KEPT_KB.to_string()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    values_of(&mut cmd, "idle.c")
}

/// Run a program that prints `key value` pairs; the pairs.
fn values_of(cmd: &mut Command, what: &str) -> Vec<(String, u64)> {
    let out = run(cmd);
    assert_success(&out, what);
    let stdout = out.stdout_str();
    let words: Vec<&str> = stdout.split_whitespace().collect();
    words.chunks(2).map(|kv| (kv[0].to_string(), kv[1].parse().unwrap_or_else(|_| panic!("{stdout}")))).collect()
}

fn value(values: &[(String, u64)], key: &str) -> u64 {
    values.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no {key} in {values:?}")).1
}

#[test]
fn the_background_purger_returns_freed_memory_once_the_program_is_idle() {
    // A liveness bound, not a speed target: the documented bound is about
    // 1.1 s (the longest warm keep plus one tick).
    let values = idle_run(&[("HAKMEM_BACKGROUND", "1")], 20_000);
    let (freed, idle) = (value(&values, "freed_kb"), value(&values, "idle_kb"));
    assert_eq!(value(&values, "returned"), 1, "RSS stayed at {idle} KiB: {values:?}");
    assert!(freed > 4 * idle, "freed {freed} KiB, idle {idle} KiB: {values:?}");
}

#[test]
fn without_the_purger_an_idle_program_keeps_what_it_freed_until_its_next_call() {
    // The control: the same run without the thread keeps its freed memory
    // resident (nothing runs to purge it), so the purger is what returned it.
    let values = idle_run(&[("HAKMEM_BACKGROUND", "0")], 1_000);
    assert_eq!(value(&values, "returned"), 0, "{values:?}");
    assert!(value(&values, "idle_kb") * 10 >= value(&values, "freed_kb") * 9, "{values:?}");
}

/// A program that frees most of its mid and large blocks but keeps some on
/// every page, and goes on calling: the freed blocks' memory goes back
/// within a couple of sweep periods (`LARGE_SWEEP_MIN_MS`, 1 s), with no
/// background thread, while the blocks kept keep their contents
/// (tests/c/sparse_free.c checks them).
#[test]
fn freed_blocks_of_pages_still_in_use_go_back_while_the_program_runs() {
    let program = compile_c("sparse_free.c", "sparse_free_preload", Link::Preload);
    let mut cmd = Command::new(program);
    // A liveness bound, not a speed target: the documented bound is two
    // periods (about 2 s) after the frees.
    without_hakmem(&mut cmd).env("LD_PRELOAD", shared_lib()).arg("20000");
    let values = values_of(&mut cmd, "sparse_free.c");
    let (freed, later) = (value(&values, "freed_kb"), value(&values, "later_kb"));
    // Every page kept live blocks: nothing could go back as a whole page.
    assert!(freed * 10 >= value(&values, "peak_kb") * 9, "{values:?}");
    assert_eq!(value(&values, "returned"), 1, "RSS stayed at {later} KiB: {values:?}");
    assert!(freed > 3 * later, "freed {freed} KiB, later {later} KiB: {values:?}");
}
