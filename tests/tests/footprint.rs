//! The library's own footprint in every process: the code a program runs
//! when it only allocates lies in the first 64 KiB of libhakmem.so's text
//! (`ffi/hot.ld`), the range the kernel maps around the library's first
//! page fault, so the rest of the text stays out of the program's resident
//! set. (The kernel maps file pages 64 KiB around a fault: its default
//! `fault_around_bytes`.)

use hakmem_tests::*;
use std::process::Command;

#[test]
fn a_program_that_only_allocates_maps_the_first_64_kib_of_the_librarys_code() {
    text_pages_stay_in_the_first_window(&[]);
}

#[test]
fn so_does_one_run_with_hakmem_stats_as_the_benchmarks_run_it() {
    // Every benchmark run sets it (its proof of allocator): the figures
    // measure this footprint. The exit report itself comes later.
    text_pages_stay_in_the_first_window(&[("HAKMEM_STATS", "1")]);
}

fn text_pages_stay_in_the_first_window(env: &[(&str, &str)]) {
    let program = compile_c("text_pages.c", "text_pages", Link::Plain);
    let mut cmd = Command::new(program);
    without_hakmem(&mut cmd).env("LD_PRELOAD", shared_lib()).envs(env.iter().copied());
    let out = run(&mut cmd);
    assert_success(&out, "text_pages.c");
    let stdout = out.stdout_str();
    assert!(stdout.contains("libhakmem.so"), "malloc did not come from libhakmem.so:\n{stdout}");
    let value = |key: &str| number_after(&stdout, key);
    // The text is larger than the window: the check can fail.
    assert!(value("text_kb") > 2 * value("window_kb"), "{stdout}");
    assert!(value("resident_kb") > 0, "{stdout}");
    assert_eq!(value("beyond_kb"), 0, "code past the first 64 KiB ran (offsets within the text mapping):\n{stdout}");
}
