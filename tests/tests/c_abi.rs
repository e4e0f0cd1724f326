//! The C ABI edge cases (tests/c/abi_edge.c), once linked statically against
//! libhakmem.a and once run under LD_PRELOAD=libhakmem.so.

use hakmem_tests::*;
use std::process::Command;

/// Parses "abi_edge[<mode>]: N passed, N failed" from the program's stdout.
fn summary(out: &RunOutput) -> Option<(u64, u64)> {
    let s = out.stdout_str();
    let line = s.lines().rev().find(|l| l.starts_with("abi_edge["))?;
    let rest = line.split_once("]: ")?.1;
    let mut it = rest.split(", ");
    let passed = it.next()?.strip_suffix(" passed")?.parse().ok()?;
    let failed = it.next()?.strip_suffix(" failed")?.parse().ok()?;
    Some((passed, failed))
}

/// Runs every section of the program in its own process, so that one crash
/// (hakmem aborts on what it considers misuse) does not hide the other
/// results. Returns one line per section.
fn section_breakdown(exe: &std::path::Path, preload: bool) -> String {
    let mut list = Command::new(exe);
    list.arg("--list");
    let names = run(without_hakmem(&mut list)).stdout_str();
    let mut report = String::from("per-section results (each section run alone):\n");
    for name in names.lines().filter(|l| !l.is_empty()) {
        let mut cmd = Command::new(exe);
        if preload {
            with_preload(&mut cmd);
        } else {
            without_hakmem(&mut cmd).env("HAKMEM_STATS", "1");
        }
        cmd.arg(name);
        let out = run(&mut cmd);
        let verdict = match summary(&out) {
            Some((p, 0)) if out.status.success() => format!("ok ({p} passed)"),
            Some((p, f)) => format!("FAILED: {f} failed, {p} passed"),
            None => format!("CRASHED: {}", out.status_str()),
        };
        report += &format!("  {name:<26} {verdict}\n");
        if !verdict.starts_with("ok") {
            let stdout = out.stdout_str();
            for l in stdout.lines().filter(|l| l.starts_with("FAIL")).take(6) {
                report += &format!("      {l}\n");
            }
            for l in out.stderr_str().lines().filter(|l| l.starts_with("hakmem")).take(3) {
                report += &format!("      stderr: {l}\n");
            }
        }
    }
    report
}

fn check_run(out: &RunOutput, mode: &str, exe: &std::path::Path, preload: bool) {
    let ok = matches!(summary(out), Some((_, 0))) && out.status.success();
    if !ok {
        let head = match summary(out) {
            Some((passed, failed)) => format!("{failed} check(s) failed, {passed} passed, {}", out.status_str()),
            None => format!("no `abi_edge[...]: N passed, N failed` summary line: {}", out.status_str()),
        };
        let fails: Vec<String> =
            out.stdout_str().lines().filter(|l| l.starts_with("FAIL")).map(str::to_string).collect();
        panic!(
            "abi_edge ({mode}): {head}\n{}\n\n{}\n{}",
            fails.join("\n"),
            out.describe(),
            section_breakdown(exe, preload)
        );
    }
    let (passed, _) = summary(out).unwrap();
    // The program runs several thousand checks; a tiny count means it did not run them.
    assert!(passed > 5000, "abi_edge ({mode}): only {passed} checks ran\n{}", out.describe());
    let stats = assert_served_by_hakmem(out, 1, &format!("abi_edge ({mode})"));
    // The checks above alone make more than 20 000 allocation calls.
    let calls = stats.iter().map(|s| s.get("malloc_calls")).max().unwrap();
    assert!(calls > 20_000, "abi_edge ({mode}): malloc_calls = {calls}, expected > 20000\n{}", out.describe());
}

#[test]
fn abi_edge_static() {
    let exe = compile_c("abi_edge.c", "abi_edge_static", Link::Static);
    let mut cmd = Command::new(&exe);
    without_hakmem(&mut cmd).env("HAKMEM_STATS", "1");
    let out = run(&mut cmd);
    check_run(&out, "static libhakmem.a", &exe, false);
    // the program's own hakmem_stats_get check ran and printed the version
    assert!(
        out.stdout_str().lines().any(|l| l.starts_with("version: hakmem")),
        "abi_edge (static): no `version: hakmem...` line\n{}",
        out.describe()
    );
}

#[test]
fn abi_edge_fully_static() {
    let exe = compile_c("abi_edge.c", "abi_edge_fully_static", Link::FullyStatic);
    let mut cmd = Command::new(&exe);
    without_hakmem(&mut cmd).env("HAKMEM_STATS", "1");
    let out = run(&mut cmd);
    check_run(&out, "cc -static with libhakmem.a", &exe, false);
}

#[test]
fn abi_edge_preload() {
    let exe = compile_c("abi_edge.c", "abi_edge_preload", Link::Preload);
    let mut cmd = Command::new(&exe);
    with_preload(&mut cmd);
    let out = run(&mut cmd);
    check_run(&out, "LD_PRELOAD libhakmem.so", &exe, true);
}

/// The same preload binary without LD_PRELOAD must fail: proves the checks
/// can tell glibc from hakmem (the hakmem-only symbols are missing, and no
/// stats line is printed).
#[test]
fn abi_edge_preload_build_fails_without_hakmem() {
    // make sure the library exists, so this test fails like the others when it does not
    let _ = shared_lib();
    let exe = compile_c("abi_edge.c", "abi_edge_noload", Link::Preload);
    let mut cmd = Command::new(&exe);
    without_hakmem(&mut cmd).env("HAKMEM_STATS", "1");
    let out = run(&mut cmd);
    let (_, failed) = summary(&out).unwrap_or_else(|| panic!("no summary line under glibc\n{}", out.describe()));
    assert!(failed > 0 && !out.status.success(), "abi_edge passed without hakmem loaded?\n{}", out.describe());
    assert!(
        parse_stats(&out.stderr_str()).unwrap_or_default().is_empty(),
        "a hakmem-stats line appeared without hakmem\n{}",
        out.describe()
    );
}
