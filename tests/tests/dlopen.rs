//! libhakmem.so loaded with dlopen after start-up (its initial-exec TLS
//! word then comes from glibc's static TLS reserve, set up for threads that
//! exist already), used from threads, dlclosed.

use hakmem_tests::*;
use std::process::Command;

#[test]
fn dlopened_hakmem_serves_threads_and_survives_dlclose() {
    let exe = compile_c("dlopen.c", "dlopen_plain", Link::Plain);
    let mut cmd = Command::new(&exe);
    cmd.arg(shared_lib()).env("HAKMEM_STATS", "1");
    let out = run(without_hakmem(&mut cmd).env("HAKMEM_STATS", "1"));
    assert_success(&out, "dlopen");
    let stdout = out.stdout_str();
    assert!(stdout.contains("hakmem") && stdout.lines().any(|l| l == "OK"), "{}", out.describe());
    assert_served_by_hakmem(&out, 1, "dlopen");
}
