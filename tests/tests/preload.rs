//! Real programs under LD_PRELOAD=libhakmem.so (with HAKMEM_STATS=1): their
//! stdout and exit status must match a plain glibc run, and every process
//! must print a `hakmem-stats:` line with malloc_calls > 0.

use hakmem_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `make()` twice, plainly and with hakmem preloaded; compares.
/// Returns (glibc run, hakmem run).
fn compare(what: &str, min_stats_lines: usize, make: impl Fn() -> Command) -> (RunOutput, RunOutput) {
    let _ = shared_lib(); // fail early (not after the glibc run) when missing
    let mut plain = make();
    without_hakmem(&mut plain);
    let glibc = run(&mut plain);
    assert!(
        parse_stats(&glibc.stderr_str()).unwrap_or_default().is_empty(),
        "{what}: the glibc run printed hakmem stats (hakmem leaked into the baseline?)\n{}",
        glibc.describe()
    );
    let mut pre = make();
    with_preload(&mut pre);
    let hakmem = run(&mut pre);
    assert_same_output(&glibc, &hakmem, what);
    assert_served_by_hakmem(&hakmem, min_stats_lines, what);
    eprintln!("{what}: glibc {:.2?}, hakmem {:.2?}", glibc.elapsed, hakmem.elapsed);
    (glibc, hakmem)
}

/// Finds a program on PATH; a missing tool is a test failure.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` not found on PATH: this test needs it");
}

/// The real python3 binary (not a pyenv shim script), so that the preloaded
/// process is python itself.
fn python() -> PathBuf {
    let mut cmd = Command::new(tool("python3"));
    cmd.args(["-c", "import sys; print(sys.executable)"]);
    let out = run(without_hakmem(&mut cmd));
    assert_success(&out, "python3 -c 'print(sys.executable)'");
    let p = PathBuf::from(out.stdout_str().trim());
    assert!(p.is_file(), "python3 reports sys.executable = {p:?}, which does not exist");
    p
}

fn python_script(pythonmalloc: Option<&str>, strict: bool) {
    let py = python();
    let script = scripts_dir().join("alloc_heavy.py");
    let what = format!("python3 alloc_heavy.py (PYTHONMALLOC={}, strict {strict})", pythonmalloc.unwrap_or("default"));
    let (glibc, _) = compare(&what, 1, || {
        let mut c = Command::new(&py);
        c.arg(&script).env_remove("PYTHONMALLOC").env_remove("HAKMEM_STRICT");
        if let Some(m) = pythonmalloc {
            c.env("PYTHONMALLOC", m);
        }
        if strict {
            c.env("HAKMEM_STRICT", "1");
        }
        c
    });
    assert_success(&glibc, &what);
    assert!(glibc.stdout_str().contains("sha256 "), "{what}: script printed no checksum\n{}", glibc.describe());
}

#[test]
fn python_alloc_heavy_pymalloc() {
    python_script(None, false);
}

/// PYTHONMALLOC=malloc sends every Python allocation (not only > 512 B) to malloc.
#[test]
fn python_alloc_heavy_pythonmalloc_malloc() {
    python_script(Some("malloc"), false);
}

/// Strict mode (canaries, poison, quarantine) raises no false report on a
/// real program that sends every allocation to malloc, and keeps its output.
#[test]
fn python_alloc_heavy_pythonmalloc_malloc_strict() {
    python_script(Some("malloc"), true);
}

/// ~20 MB of pseudo-random lines.
fn generate_lines(path: &Path) -> Vec<u8> {
    let mut rng = Rng(0x5eed_0001);
    let mut data = Vec::with_capacity(21 << 20);
    let mut prev: Vec<u8> = Vec::new();
    while data.len() < 20 << 20 {
        let mut line = Vec::new();
        if !prev.is_empty() && rng.below(20) == 0 {
            // duplicates and shared prefixes
            let keep = rng.below(prev.len() as u64 + 1) as usize;
            line.extend_from_slice(&prev[..keep]);
        }
        let max = if rng.below(50) == 0 { 2000 } else { 90 };
        let n = 1 + rng.below(max) as usize;
        for _ in 0..n {
            let r = rng.below(40);
            line.push(match r {
                0..=25 => b'a' + r as u8,
                26..=35 => b'0' + (r - 26) as u8,
                36 => b' ',
                37 => b'-',
                38 => b'Z',
                _ => b'\t',
            });
        }
        data.extend_from_slice(&line);
        data.push(b'\n');
        prev = line;
    }
    std::fs::write(path, &data).unwrap();
    data
}

fn sorted_bytes(data: &[u8]) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if lines.last() == Some(&&b""[..]) {
        lines.pop();
    }
    lines.sort();
    let mut out = Vec::with_capacity(data.len());
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

fn sort_test(name: &str, extra: &[&str]) {
    let dir = scratch_dir(name);
    let input = dir.join("input.txt");
    let data = generate_lines(&input);
    let expected = sorted_bytes(&data);
    let sort = tool("sort");
    let what = format!("sort {} (20 MB)", extra.join(" "));
    let (glibc, hakmem) = compare(&what, 1, || {
        let mut c = Command::new(&sort);
        c.env("LC_ALL", "C").env("TMPDIR", &dir).args(extra).arg(&input);
        c
    });
    assert_success(&glibc, &what);
    assert!(glibc.stdout == expected, "{what}: glibc sort output is not the byte-order sort of the input (test bug?)");
    assert!(hakmem.stdout == expected, "{what}: {}", first_difference(&expected, &hakmem.stdout));
}

#[test]
fn sort_20mb() {
    sort_test("sort_20mb", &["--parallel=2"]);
}

/// A small sort buffer forces temporary files and a multi-way merge.
#[test]
fn sort_20mb_small_buffer() {
    sort_test("sort_20mb_small_buffer", &["-S", "1M", "--parallel=2"]);
}

/// A generated C file that keeps cc1 busy (and allocating) for a while.
fn generate_c_source(path: &Path) {
    let mut rng = Rng(42);
    let mut s = String::from("#include <stddef.h>\n#include <string.h>\n\n");
    for i in 0..40 {
        s += &format!("struct s{i} {{ int a; long b[{}]; double c; char name[{}]; struct s{i} *next; }};\n",
                      1 + i % 7, 8 + i);
    }
    for i in 0..400 {
        let t = i % 40;
        s += &format!("static const int table{i}[] = {{");
        for j in 0..(20 + rng.below(60)) {
            s += &format!("{},", (j * 7 + rng.below(1000)) as i64 - 300);
        }
        s += "};\n";
        s += &format!("long f{i}(struct s{t} *p, int n, const char *str) {{\n  long acc = {i};\n");
        s += "  for (int k = 0; k < n; k++) {\n    switch ((k + (int)acc) & 7) {\n";
        for c in 0..8 {
            s += &format!(
                "    case {c}: acc += table{i}[k % (int)(sizeof table{i} / sizeof table{i}[0])] * {} + p->a; break;\n",
                rng.below(100) + 1
            );
        }
        s += "    }\n";
        s += &format!("    if (p->next && (acc & {})) acc ^= (long)strlen(str) << {};\n", rng.below(255) + 1, rng.below(8));
        s += &format!("    p->b[k % {}] += acc;\n  }}\n", 1 + t % 7);
        if i > 0 {
            s += &format!("  if (n > 3) acc += f{}((struct s{} *)p, n / 2, str);\n", i - 1, (i - 1) % 40);
        }
        s += "  return acc + (long)p->c;\n}\n\n";
    }
    s += "long all(void *p, int n) {\n  long r = 0;\n";
    for i in (0..400).step_by(7) {
        s += &format!("  r += f{i}(p, n, \"x{i}\");\n");
    }
    s += "  return r;\n}\n";
    std::fs::write(path, s).unwrap();
}

#[test]
fn gcc_compile() {
    let dir = scratch_dir("gcc_compile");
    let src = dir.join("gen.c");
    generate_c_source(&src);
    let gcc = tool("gcc");
    let what = "gcc -O2 -c gen.c";
    let obj_glibc = dir.join("glibc.o");
    let obj_hakmem = dir.join("hakmem.o");
    let counter = std::cell::Cell::new(0);
    // gcc runs cc1 and as, each preloaded: expect several stats lines
    let (glibc, hakmem) = compare(what, 2, || {
        let n = counter.get();
        counter.set(n + 1);
        let obj = if n == 0 { &obj_glibc } else { &obj_hakmem };
        let _ = std::fs::remove_file(obj);
        let mut c = Command::new(&gcc);
        c.env("LC_ALL", "C").env("TMPDIR", &dir).current_dir(&dir).args(["-O2", "-c", "gen.c", "-o"]).arg(obj);
        c
    });
    assert_success(&glibc, what);
    assert_success(&hakmem, what);
    let a = std::fs::read(&obj_glibc).unwrap_or_else(|e| panic!("{what}: glibc object missing: {e}"));
    let b = std::fs::read(&obj_hakmem)
        .unwrap_or_else(|e| panic!("{what}: no object file produced under hakmem: {e}\n{}", hakmem.describe()));
    assert!(a.len() > 10_000, "{what}: suspiciously small object ({} bytes)", a.len());
    assert!(a == b, "{what}: object files differ (glibc {} bytes, hakmem {} bytes)", a.len(), b.len());
}

/// One git scenario in `base`; returns the outputs of each step.
fn git_scenario(base: &Path, preload: bool) -> Vec<(String, RunOutput)> {
    let git = tool("git");
    let home = base.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let repo = base.join("repo");
    let mut results = Vec::new();
    let mut step = |label: &str, args: &[&str], cwd: &Path| {
        let mut c = Command::new(&git);
        c.current_dir(cwd)
            .env("HOME", &home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
            .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z")
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .args(["-c", "user.name=Hakmem Tester", "-c", "user.email=tester@example.com"])
            .args(["-c", "gc.auto=0", "-c", "pack.threads=1", "-c", "core.pager=cat", "-c", "color.ui=false"])
            .args(args);
        if preload {
            with_preload(&mut c);
        } else {
            without_hakmem(&mut c);
        }
        let out = run(&mut c);
        assert_success(&out, &format!("git {label} ({})", if preload { "hakmem" } else { "glibc" }));
        results.push((label.to_string(), out));
    };
    step("init", &["init", "-q", "-b", "main", "repo"], base);
    // ~200 generated files in a few directories
    let mut rng = Rng(7);
    let write_files = |rng: &mut Rng, round: u64| {
        for i in 0..200u64 {
            if round == 1 && i % 4 != 0 {
                continue;
            }
            let dir = repo.join(format!("dir{}", i % 9));
            std::fs::create_dir_all(&dir).unwrap();
            let mut text = String::new();
            let lines = 5 + rng.below(300);
            for l in 0..lines {
                text += &format!("file {i} round {round} line {l}: {:x}\n", rng.next_u64() >> rng.below(40));
            }
            std::fs::write(dir.join(format!("f{i:03}.txt")), text).unwrap();
        }
    };
    write_files(&mut rng, 0);
    step("add", &["add", "-A"], &repo);
    step("commit", &["commit", "-q", "-m", "initial import of 200 files"], &repo);
    write_files(&mut rng, 1);
    for i in (0..200).step_by(20) {
        let _ = std::fs::remove_file(repo.join(format!("dir{}/f{i:03}.txt", i % 9)));
    }
    step("add 2", &["add", "-A"], &repo);
    step("commit 2", &["commit", "-q", "-m", "modify 50 files, delete 10"], &repo);
    step("log --stat", &["log", "--stat"], &repo);
    step("diff HEAD~1", &["diff", "HEAD~1"], &repo);
    step("gc", &["gc", "-q"], &repo);
    step("count-objects", &["count-objects", "-v"], &repo);
    step("fsck", &["fsck", "--full", "--no-progress"], &repo);
    step("log --format", &["log", "--format=%H %T %s"], &repo);
    step("ls-tree", &["ls-tree", "-r", "HEAD"], &repo);
    results
}

#[test]
fn git_scratch_repository() {
    let _ = shared_lib();
    let glibc = git_scenario(&scratch_dir("git_glibc"), false);
    let hakmem = git_scenario(&scratch_dir("git_hakmem"), true);
    for ((label, g), (_, h)) in glibc.iter().zip(hakmem.iter()) {
        let what = format!("git {label}");
        assert_same_output(g, h, &what);
        assert_served_by_hakmem(h, 1, &what);
    }
    // the commit hash is deterministic: sanity check that the scenario did something
    let log = &glibc.iter().find(|(l, _)| l == "log --format").unwrap().1;
    assert_eq!(log.stdout_str().lines().count(), 2, "expected two commits:\n{}", log.describe());
}

#[test]
fn mt_xfree_producer_consumer() {
    let exe = compile_c("mt_xfree.c", "mt_xfree_plain", Link::Plain);
    let what = "mt_xfree 3 producers 3 consumers";
    let (glibc, hakmem) = compare(what, 1, || {
        let mut c = Command::new(&exe);
        c.args(["3", "3", "30000"]);
        c
    });
    assert_success(&glibc, what);
    assert!(hakmem.stdout_str().lines().any(|l| l == "OK"), "{what}: no OK line\n{}", hakmem.describe());
    assert!(glibc.stdout_str().contains("blocks=90000"), "{what}: unexpected totals\n{}", glibc.describe());
}
