//! calloc of the large classes on Linux: a recycled block is zero whether
//! its last use wrote a few of its pages or all of them, and a block mostly
//! not resident is purged rather than written (tests/c/calloc_recycle.c):
//! tables a program uses sparsely do not become resident in full.

use hakmem_tests::*;
use std::process::Command;

#[test]
fn calloc_recycled_tables_are_zero_and_sparse_ones_stay_mostly_unresident() {
    let program = compile_c("calloc_recycle.c", "calloc_recycle", Link::Plain);
    let mut cmd = Command::new(program);
    without_hakmem(&mut cmd).env("LD_PRELOAD", shared_lib());
    let out = run(&mut cmd);
    assert_success(&out, "calloc_recycle.c");
    let stdout = out.stdout_str();
    let value = |key: &str| number_after(&stdout, key);
    assert_eq!(value("ok"), 1, "{stdout}");
    // About a page per 64 KiB is written: writing zeros into every byte
    // (the previous library) kept all of it resident.
    let (sparse, live) = (value("sparse_kb"), value("live_kb"));
    assert!(sparse * 4 < live, "sparse tables use {sparse} KiB resident of {live} KiB calloc'd:\n{stdout}");
}
