//! Misuse detection (tests/c/misuse.c, linked statically against libhakmem.a):
//! every case must die of SIGABRT after a stderr line starting with `hakmem: `.

use hakmem_tests::*;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::OnceLock;

const SIGABRT: i32 = 6;

/// One binary per test process; built once.
fn exe() -> &'static std::path::Path {
    static EXE: OnceLock<std::path::PathBuf> = OnceLock::new();
    EXE.get_or_init(|| compile_c("misuse.c", "misuse_static", Link::Static))
}

fn run_case(case: &str) -> RunOutput {
    run_case_in(case, false)
}

/// Run a case in default mode, or with `HAKMEM_STRICT=1`.
fn run_case_in(case: &str, strict: bool) -> RunOutput {
    let mut cmd = Command::new(exe());
    without_hakmem(&mut cmd).env("HAKMEM_STATS", "1").env_remove("HAKMEM_STRICT").arg(case);
    if strict {
        cmd.env("HAKMEM_STRICT", "1");
    }
    run(&mut cmd)
}

/// `must_contain`: a word the `hakmem: ` line must contain (case-insensitive).
fn expect_abort(case: &str, must_contain: Option<&str>) {
    expect_abort_in(case, must_contain, false);
}

/// As `expect_abort`; returns the `hakmem: ` line.
fn expect_abort_in(case: &str, must_contain: Option<&str>, strict: bool) -> String {
    let out = run_case_in(case, strict);
    let what = format!("misuse case {case} (strict {strict})");
    assert!(
        out.stdout_str().contains(&format!("misuse: {case}: reached the bad call")),
        "{what}: the program did not reach the bad call\n{}",
        out.describe()
    );
    assert_eq!(
        out.status.signal(),
        Some(SIGABRT),
        "{what}: expected death by SIGABRT, got {}\n{}",
        out.status_str(),
        out.describe()
    );
    let stderr = out.stderr_str();
    let line = stderr.lines().find(|l| l.starts_with("hakmem: ")).unwrap_or_else(|| {
        panic!("{what}: no stderr line starting with `hakmem: ` before the abort\n{}", out.describe())
    });
    if let Some(word) = must_contain {
        assert!(
            line.to_lowercase().contains(word),
            "{what}: the message should name the problem ({word:?}): {line:?}\n{}",
            out.describe()
        );
    }
    line.to_string()
}

/// A strict-only case: default mode survives it (what the table in the
/// README says), strict mode aborts naming the problem and the size class.
fn expect_strict_only(case: &str, word: &str) {
    let out = run_case_in(case, false);
    assert!(
        out.status.success() && out.stdout_str().contains(&format!("misuse: {case}: survived")),
        "misuse case {case}: default mode was expected to survive it\n{}",
        out.describe()
    );
    let line = expect_abort_in(case, Some(word), true);
    assert!(line.contains(" (size class "), "misuse case {case}: strict reports name the size class: {line:?}");
}

#[test]
fn strict_overflow_one_byte() {
    expect_strict_only("overflow_one_byte", "heap overflow");
}

#[test]
fn strict_overflow_aligned() {
    expect_strict_only("overflow_aligned", "heap overflow");
}

#[test]
fn strict_overflow_then_realloc() {
    expect_strict_only("overflow_then_realloc", "heap overflow");
}

#[test]
fn strict_write_after_free() {
    expect_strict_only("write_after_free", "write after free");
}

#[test]
fn strict_write_after_free_reused() {
    expect_strict_only("write_after_free_reused", "write after free");
}

#[test]
fn strict_huge_overflow_inside_the_rounding() {
    expect_strict_only("huge_overflow_slack", "heap overflow");
}

// Guard pages (strict mode): the faulting write itself is reported, by
// hakmem's SIGSEGV handler, as one line naming the guard and the block.

#[test]
fn strict_guard_page_after_a_huge_block() {
    expect_strict_only("guard_huge_end", "heap overflow: guard page hit at 0x");
}

#[test]
fn strict_guard_pages_over_a_freed_huge_block() {
    expect_strict_only("guard_huge_after_free", "use after free: guard page hit at 0x");
}

#[test]
fn strict_guard_page_at_a_segment_end() {
    expect_strict_only("guard_segment_end", "heap overflow: guard page hit at 0x");
}

#[test]
fn strict_guard_page_before_a_segments_first_page() {
    expect_strict_only("guard_segment_front", "heap underflow: guard page hit at 0x");
}

#[test]
fn strict_mode_leaves_other_faults_to_their_default_action() {
    // The guard handler puts the previous action back for a fault that is
    // not a guard's: the process dies of SIGSEGV, and hakmem says nothing.
    // A SIGSEGV another process or the program itself sends is no fault:
    // it is raised again under the previous action, not swallowed.
    for case in ["wild_write", "raised_segv"] {
        for strict in [false, true] {
            let out = run_case_in(case, strict);
            assert_eq!(out.status.signal(), Some(11), "{case} (strict {strict}): expected SIGSEGV\n{}", out.describe());
            assert!(!out.stderr_str().contains("hakmem: "), "{case} (strict {strict}): hakmem named a fault not its own\n{}", out.describe());
        }
    }
}

#[test]
fn strict_mode_catches_every_default_case() {
    // The same reports in strict mode; a paged block's names its size class.
    for (case, word, paged) in [
        ("double_free_small", "double free", true),
        ("double_free_mid", "double free", true),
        ("double_free_large", "double free", true),
        ("double_free_huge", "double free", false),
        ("double_free_cross_thread", "double free", true),
        ("free_stack_pointer", "invalid", false),
        ("free_interior_pointer", "invalid", true),
        ("free_low_pointer", "invalid", false),
        ("free_sized_too_big", "", false),
    ] {
        let line = expect_abort_in(case, Some(word), true);
        assert!(!paged || line.contains(" (size class "), "strict {case}: {line:?}");
    }
}

#[test]
fn control_ok_case_exits_zero() {
    let out = run_case("ok");
    assert_success(&out, "misuse case ok");
    assert!(out.stdout_str().contains("misuse: ok: done"), "misuse ok: no `done` line\n{}", out.describe());
    assert!(
        !out.stderr_str().lines().any(|l| l.starts_with("hakmem: ")),
        "misuse ok: hakmem complained about valid code\n{}",
        out.describe()
    );
    assert_served_by_hakmem(&out, 1, "misuse case ok");
}

#[test]
fn unknown_case_is_rejected() {
    let out = run_case("no_such_case");
    assert_eq!(out.status.code(), Some(2), "bad argument must exit 2\n{}", out.describe());
}

#[test]
fn double_free_small() {
    expect_abort("double_free_small", Some("double free"));
}

#[test]
fn double_free_mid() {
    expect_abort("double_free_mid", Some("double free"));
}

#[test]
fn double_free_large() {
    expect_abort("double_free_large", Some("double free"));
}

#[test]
fn double_free_huge() {
    expect_abort("double_free_huge", Some("double free"));
}

#[test]
fn double_free_cross_thread() {
    expect_abort("double_free_cross_thread", Some("double free"));
}

#[test]
fn free_stack_pointer() {
    expect_abort("free_stack_pointer", Some("invalid"));
}

#[test]
fn free_interior_pointer() {
    expect_abort("free_interior_pointer", Some("invalid"));
}

/// Below 2 MiB: the heap's table of remembered segments once matched it
/// (its empty entries were 0), and the free read a page at address ~0.
#[test]
fn free_low_pointer() {
    expect_abort("free_low_pointer", Some("invalid"));
}

#[test]
fn free_sized_too_big() {
    expect_abort("free_sized_too_big", None);
}
