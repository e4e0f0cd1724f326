//! The heap profiler from the outside: tests/c/prof.c holds 3 * 32 MiB
//! from `hold_three_quarters` and 32 MiB from `hold_one_quarter` (mixed
//! sizes, tiny to huge), and frees what `churn` allocates. Its dump, read
//! by jeprof (Debian's libjemalloc-dev), must show both functions with
//! their bytes within sampling error (at one sample per 64 KiB the
//! estimates fall within 2% of the truth; the tests allow 10%), and
//! nothing of `churn`; with
//! profiling off nothing is written.

use hakmem_tests::*;
use std::path::Path;
use std::process::Command;

fn run_prof(link: Link, name: &str, vars: &[(&str, &str)], args: &[&Path]) -> (std::path::PathBuf, RunOutput) {
    let program = compile_c("prof.c", name, link);
    let mut cmd = Command::new(&program);
    without_hakmem(&mut cmd);
    if link == Link::Preload {
        cmd.env("LD_PRELOAD", shared_lib());
    }
    cmd.envs(vars.iter().copied()).args(args);
    let out = run(&mut cmd);
    assert_success(&out, "prof.c");
    (program, out)
}

/// The true bytes each function holds, as prof.c prints them.
fn truth(out: &RunOutput, function: &str) -> f64 {
    let stdout = out.stdout_str();
    let line = stdout.lines().find_map(|l| l.strip_prefix(function).map(str::trim));
    line.unwrap_or_else(|| panic!("no {function} line:\n{}", out.describe())).parse().unwrap()
}

/// Inclusive bytes per function in `jeprof --text --show_bytes` output.
fn jeprof_bytes(program: &Path, dump: &Path, function: &str) -> (f64, String) {
    let out = run(Command::new("jeprof").args(["--text", "--show_bytes", "--cum"]).arg(program).arg(dump));
    let text = out.stdout_str();
    assert!(out.status.success() && text.contains("Total:"), "jeprof failed (is libjemalloc-dev installed?):\n{}", out.describe());
    let bytes = text
        .lines()
        .find(|l| l.split_whitespace().last() == Some(function))
        .map(|l| l.split_whitespace().nth(3).unwrap().parse().unwrap())
        .unwrap_or(0.0);
    (bytes, text)
}

fn check_profile(program: &Path, out: &RunOutput, dump: &Path) {
    for function in ["hold_three_quarters", "hold_one_quarter"] {
        let (estimate, text) = jeprof_bytes(program, dump, function);
        let truth = truth(out, function);
        assert!((estimate / truth - 1.0).abs() < 0.10, "{function}: jeprof shows {estimate} bytes, it holds {truth}\n{text}");
    }
    let (churn, text) = jeprof_bytes(program, dump, "churn");
    assert_eq!(churn, 0.0, "churn frees everything it allocates:\n{text}");
    let folded = std::fs::read_to_string(format!("{}.folded", dump.display())).expect("the folded stacks");
    let lines: Vec<&str> = folded.lines().collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.contains(';') && l.rsplit(' ').next().unwrap().parse::<u64>().is_ok()), "{folded}");
    let total: f64 = lines.iter().map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap()).sum();
    let held = truth(out, "hold_three_quarters") + truth(out, "hold_one_quarter");
    assert!((total / held - 1.0).abs() < 0.10, "folded stacks hold {total} bytes, the program {held}\n{folded}");
}

#[test]
fn a_preloaded_program_dumped_at_exit_shows_each_function_s_bytes_in_jeprof() {
    let dir = scratch_dir("prof_exit");
    let prefix = dir.join("run");
    let vars = [("HAKMEM_PROF", "1"), ("HAKMEM_PROF_SAMPLE", "64K"), ("HAKMEM_PROF_DUMP", prefix.to_str().unwrap())];
    let (program, out) = run_prof(Link::Preload, "prof_preload", &vars, &[]);
    let dumps: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    let heap = dumps.iter().find(|p| p.extension().is_some_and(|e| e == "heap")).unwrap_or_else(|| panic!("no .heap dump in {dumps:?}"));
    let text = std::fs::read_to_string(heap).unwrap();
    assert!(text.starts_with("heap_v2/65536\n") && text.contains("\nMAPPED_LIBRARIES:\n"), "{}", tail(&text, 2000));
    check_profile(&program, &out, heap);
}

#[test]
fn a_statically_linked_program_dumps_on_request() {
    let dir = scratch_dir("prof_call");
    let dump = dir.join("now.heap");
    let (program, out) = run_prof(Link::Static, "prof_static", &[("HAKMEM_PROF", "1"), ("HAKMEM_PROF_SAMPLE", "64K")], &[&dump]);
    assert!(std::fs::read_to_string(&dump).unwrap().starts_with("heap_v2/65536\n"));
    check_profile(&program, &out, &dump);
}

#[test]
fn with_profiling_off_nothing_is_written_and_a_dump_request_fails() {
    let dir = scratch_dir("prof_off");
    let prefix = dir.join("run");
    let dump = dir.join("now.heap");
    let vars = [("HAKMEM_PROF_DUMP", prefix.to_str().unwrap())];
    let (_, out) = run_prof(Link::Preload, "prof_off", &vars, &[&dump, Path::new("expect-fail")]);
    let written: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(written.is_empty(), "files written with profiling off: {written:?}");
    assert!(out.stderr_str().contains("HAKMEM_PROF is off"), "no warning that the dump prefix does nothing:\n{}", out.describe());
}
