//! hakmem and valgrind.
//! - Under memcheck, valgrind replaces every `malloc` (hakmem's exported one
//!   too) with its own checked allocator: a preloaded program must still run
//!   clean (memcheck's usual mode for programs using a custom allocator).
//! - Under valgrind's core without a replacing tool (`--tool=none`, also
//!   what callgrind does), hakmem's own code runs: valgrind hides the vDSO
//!   and emulates fs-relative loads, both of which once broke hakmem.

use hakmem_tests::*;
use std::process::Command;

fn under_valgrind(tool: &str) -> RunOutput {
    let exe = compile_c("mt_xfree.c", &format!("mt_xfree_valgrind_{tool}"), Link::Plain);
    let mut cmd = Command::new("valgrind");
    cmd.arg(format!("--tool={tool}"))
        .args(["--trace-children=yes", "--error-exitcode=99", "env"])
        .arg(format!("LD_PRELOAD={}", shared_lib().display()))
        .arg("HAKMEM_STATS=1")
        .arg(&exe)
        .args(["2", "2", "3000"]);
    let out = run(without_hakmem(&mut cmd));
    assert_success(&out, &format!("mt_xfree under valgrind --tool={tool}"));
    assert!(out.stdout_str().lines().any(|l| l == "OK"), "no OK line\n{}", out.describe());
    out
}

#[test]
fn hakmem_code_runs_under_valgrind_core() {
    let out = under_valgrind("none");
    assert_served_by_hakmem(&out, 1, "mt_xfree under valgrind --tool=none");
}

#[test]
fn preloaded_program_runs_clean_under_memcheck() {
    let out = under_valgrind("memcheck");
    assert!(out.stderr_str().contains("ERROR SUMMARY: 0 errors"), "memcheck found errors\n{}", out.describe());
}
