//! Statistics people can read: the per-class census and counters seen from
//! C (tests/c/stats.c), and the table `HAKMEM_STATS=1` prints at exit.

use hakmem_tests::*;
use std::process::Command;

fn stats_program() -> std::path::PathBuf {
    compile_c("stats.c", "stats_static", Link::Static)
}

fn check_summary(out: &RunOutput) {
    let stdout = out.stdout_str();
    let summary = stdout.lines().find(|l| l.starts_with("stats: ")).unwrap_or("");
    assert!(out.status.success() && summary.ends_with(", 0 failed"), "stats.c failed:\n{}", out.describe());
    let passed: u64 = summary["stats: ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 15, "only {passed} checks ran\n{}", out.describe());
}

#[test]
fn census_counters_and_malloc_info_follow_known_allocations() {
    let mut cmd = Command::new(stats_program());
    without_hakmem(&mut cmd);
    check_summary(&run(&mut cmd));
}

/// The rows of the table, as the lines between its title and the line.
fn table_lines(stderr: &str) -> Vec<&str> {
    let title = stderr.lines().position(|l| l.starts_with("hakmem ") && l.ends_with(" statistics"));
    let title = title.unwrap_or_else(|| panic!("no statistics table on stderr:\n{stderr}"));
    stderr.lines().skip(title).collect()
}

#[test]
fn hakmem_stats_prints_an_aligned_table_then_the_line() {
    for (value, table) in [("1", true), ("table", true), ("line", false)] {
        let mut cmd = Command::new(stats_program());
        without_hakmem(&mut cmd).env("HAKMEM_STATS", value);
        let out = run(&mut cmd);
        check_summary(&out);
        let stderr = out.stderr_str();
        // malloc_stats() printed one table and the exit one more (or only the line).
        let tables = stderr.lines().filter(|l| l.ends_with(" statistics")).count();
        assert_eq!(tables, if table { 2 } else { 1 }, "HAKMEM_STATS={value}:\n{stderr}");
        let last = stderr.lines().last().unwrap_or("");
        assert!(last.starts_with("hakmem-stats: malloc_calls="), "HAKMEM_STATS={value}: last line {last:?}");
        let lines = table_lines(&stderr);
        let header = lines[1];
        for column in ["class", "block", "pages", "blocks in use", "bytes in use", "bytes free"] {
            assert!(header.contains(column), "header {header:?} lacks {column:?}");
        }
        // Every class row: six numbers, right-aligned under the header.
        let rows: Vec<&str> = lines[2..].iter().take_while(|l| !l.trim_start().starts_with("tier")).copied().collect();
        assert!(rows.len() >= 3, "class rows: {rows:?}");
        for row in &rows {
            let numbers: Vec<u64> = row.split_whitespace().map(|n| n.parse().unwrap()).collect();
            assert_eq!(numbers.len(), 6, "row {row:?}");
            assert_eq!(numbers[3], numbers[2 + 2] / numbers[1], "row {row:?}: bytes in use = blocks * block size");
            assert_eq!(row.len(), header.len(), "row {row:?} is not aligned with {header:?}");
        }
        // The program's 5000-byte blocks are there: the 5120-byte class,
        // whose blocks are 5184 bytes apart (one cache line more, class.rs).
        assert!(rows.iter().any(|r| r.split_whitespace().nth(1) == Some("5184")), "no 5184 B class row: {rows:?}");
        let rest = &lines[2 + rows.len()..];
        for tier in ["tiny", "mid", "large", "huge"] {
            assert!(rest.iter().any(|l| l.trim_start().starts_with(tier)), "no {tier} tier row in {rest:?}");
        }
        for label in ["calls ", "caches ", "segments ", "memory "] {
            assert!(rest.iter().any(|l| l.starts_with(label)), "no {label:?} line in {rest:?}");
        }
        assert!(rest.iter().any(|l| l.contains("cross-thread frees 10")), "the 10 cross-thread frees are not shown: {rest:?}");
    }
}
