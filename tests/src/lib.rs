//! Shared helpers of hakmem's integration tests.
//!
//! The tests drive hakmem from the outside, the way its users do: C programs
//! compiled with the system `cc` and linked against `libhakmem.a`, and real
//! programs run with `LD_PRELOAD=libhakmem.so`. The libraries are expected in
//! `<workspace>/target/release/` (override with `HAKMEM_LIB_DIR`); build them
//! first with `cargo build --release -p hakmem-ffi`. A missing library is a
//! test failure, never a silent skip.
//!
//! Environment knobs:
//! * `HAKMEM_LIB_DIR`: directory holding `libhakmem.a` and `libhakmem.so`.
//! * `HAKMEM_NATIVE_STATIC_LIBS`: linker flags appended after `libhakmem.a`
//!   (default: `-lgcc_s -lc`, as `ffi/install`'s pkg-config files say).
//! * `HAKMEM_TEST_TIMEOUT_SECS`: per-command timeout (default 300).
//! * `CC`: the C compiler (default `cc`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The names of the `hakmem-stats:` line, in order (same as `struct hakmem_stats`).
pub const STATS_KEYS: [&str; 11] = [
    "malloc_calls",
    "free_calls",
    "segments_mapped",
    "segments_peak",
    "huge_mapped",
    "bytes_mapped",
    "bytes_mapped_peak",
    "pages_in_use",
    "heaps_live",
    "bigcache_hits",
    "purged_bytes",
];

const BUILD_HINT: &str = "build it first with `cargo build --release -p hakmem-ffi` \
     (or point HAKMEM_LIB_DIR at the directory holding libhakmem.a / libhakmem.so)";

/// The cargo workspace root (parent of this package).
pub fn workspace_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().expect("tests/ has a parent").to_path_buf()
}

/// Directory holding the built hakmem libraries.
pub fn lib_dir() -> PathBuf {
    match std::env::var_os("HAKMEM_LIB_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_dir().join("target").join("release"),
    }
}

fn require_lib(name: &str) -> PathBuf {
    let p = lib_dir().join(name);
    if !p.is_file() {
        panic!("{} not found: {}", p.display(), BUILD_HINT);
    }
    p
}

/// `libhakmem.a`; panics (test failure) when missing.
pub fn static_lib() -> PathBuf {
    require_lib("libhakmem.a")
}

/// `libhakmem.so`; panics (test failure) when missing.
pub fn shared_lib() -> PathBuf {
    require_lib("libhakmem.so")
}

/// `ffi/include` (holds `hakmem.h`).
pub fn include_dir() -> PathBuf {
    workspace_dir().join("ffi").join("include")
}

/// `tests/c`.
pub fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("c")
}

/// `tests/scripts`.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// `<workspace>/target/hakmem-tests`, where binaries and scratch data go.
pub fn out_dir() -> PathBuf {
    let d = workspace_dir().join("target").join("hakmem-tests");
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
    d
}

/// A fresh, empty scratch directory `<out_dir>/scratch/<name>`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let d = out_dir().join("scratch").join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d).unwrap_or_else(|e| panic!("cannot clean {}: {e}", d.display()));
    }
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
    d
}

/// How a C test program gets hakmem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Linked against `libhakmem.a`.
    Static,
    /// Linked against `libhakmem.a` with `-static`: no shared library at all,
    /// glibc's own `malloc.o` must stay out of the link.
    FullyStatic,
    /// Linked against glibc only, compiled with `-DHAKMEM_PRELOAD` (hakmem-only
    /// symbols are looked up with dlsym); run it under `LD_PRELOAD`.
    Preload,
    /// A plain program (no hakmem header games), e.g. to compare glibc and
    /// hakmem runs.
    Plain,
}

fn native_static_libs() -> Vec<String> {
    let s = std::env::var("HAKMEM_NATIVE_STATIC_LIBS")
        .unwrap_or_else(|_| "-lgcc_s -lc".to_string());
    s.split_whitespace().map(str::to_string).collect()
}

/// Compiles `tests/c/<src>` into `<out_dir>/<out_name>` and returns the path.
/// Every test must use its own `out_name` (tests run in parallel).
pub fn compile_c(src: &str, out_name: &str, link: Link) -> PathBuf {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = out_dir().join(out_name);
    // Unique per call: tests of one binary run as threads of one process.
    static NEXT_TMP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT_TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = out_dir().join(format!("{out_name}.tmp{}.{n}", std::process::id()));
    let mut cmd = Command::new(&cc);
    cmd.args(["-O1", "-g", "-std=gnu11", "-pthread", "-fno-builtin"])
        .args(["-Wall", "-Wextra", "-Wno-deprecated-declarations"])
        .arg("-I")
        .arg(include_dir())
        .arg("-I")
        .arg(c_dir())
        .arg(c_dir().join(src))
        .arg("-o")
        .arg(&tmp);
    match link {
        Link::Static => {
            cmd.arg(static_lib());
            cmd.args(["-lpthread", "-ldl", "-lm"]);
            cmd.args(native_static_libs());
        }
        Link::FullyStatic => {
            cmd.arg("-static").arg(static_lib());
            cmd.args(["-lpthread", "-ldl", "-lm"]);
        }
        Link::Preload => {
            cmd.arg("-DHAKMEM_PRELOAD");
            cmd.args(["-ldl", "-lpthread"]);
        }
        Link::Plain => {
            cmd.args(["-ldl", "-lpthread"]);
        }
    }
    let o = run_with_timeout(&mut cmd, Duration::from_secs(300));
    if !o.status.success() {
        panic!("compiling {src} failed:\n{}", o.describe());
    }
    std::fs::rename(&tmp, &out)
        .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), out.display()));
    out
}

/// The result of a finished command.
pub struct RunOutput {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl RunOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// "exit 0", "exit 3", "signal 6 (SIGABRT)".
    pub fn status_str(&self) -> String {
        status_str(&self.status)
    }
    /// The command, its status and the tails of its output, for assertion messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "command: {}", self.cmdline);
        let _ = writeln!(s, "status:  {} (after {:.2?})", self.status_str(), self.elapsed);
        let _ = writeln!(s, "--- stdout (tail) ---\n{}", tail(&self.stdout_str(), 15));
        let _ = writeln!(s, "--- stderr (tail) ---\n{}", tail(&self.stderr_str(), 25));
        s
    }
}

pub fn status_str(st: &ExitStatus) -> String {
    if let Some(c) = st.code() {
        format!("exit {c}")
    } else if let Some(sig) = st.signal() {
        let name = match sig {
            4 => " (SIGILL)",
            6 => " (SIGABRT)",
            7 => " (SIGBUS)",
            9 => " (SIGKILL)",
            11 => " (SIGSEGV)",
            14 => " (SIGALRM)",
            _ => "",
        };
        format!("signal {sig}{name}{}", if st.core_dumped() { " (core dumped)" } else { "" })
    } else {
        format!("{st:?}")
    }
}

/// The last `n` lines of `s` (long lines shortened).
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = String::new();
    if start > 0 {
        let _ = writeln!(out, "[... {start} lines before ...]");
    }
    for l in &lines[start..] {
        if l.len() > 200 {
            let mut cut = 200;
            while !l.is_char_boundary(cut) {
                cut -= 1;
            }
            let _ = writeln!(out, "{} [...]", &l[..cut]);
        } else {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

/// The environment knobs of this harness (see the crate documentation).
pub const HARNESS_KNOBS: [&str; 3] = ["HAKMEM_LIB_DIR", "HAKMEM_NATIVE_STATIC_LIBS", "HAKMEM_TEST_TIMEOUT_SECS"];

pub fn default_timeout() -> Duration {
    let secs = std::env::var("HAKMEM_TEST_TIMEOUT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    Duration::from_secs(secs)
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn cmdline_of(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            let k = k.to_string_lossy();
            if k.starts_with("HAKMEM") || k == "LD_PRELOAD" || k.starts_with("PYTHON") || k == "LC_ALL" {
                let _ = write!(s, "{}={} ", k, v.to_string_lossy());
            }
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            let _ = write!(s, " '{a}'");
        } else {
            let _ = write!(s, " {a}");
        }
    }
    if let Some(d) = cmd.get_current_dir() {
        let _ = write!(s, "   (in {})", d.display());
    }
    s
}

/// Runs `cmd` (stdin from /dev/null, stdout and stderr captured) in its own
/// process group; kills the whole group and panics after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> RunOutput {
    // The harness's own knobs are not hakmem's: the program would warn
    // about unknown HAKMEM_ variables.
    for knob in HARNESS_KNOBS {
        cmd.env_remove(knob);
    }
    let cmdline = cmdline_of(cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let pid = child.id() as i32;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => panic!("waiting for {cmdline}: {e}"),
        }
        if start.elapsed() > timeout {
            timed_out = true;
            unsafe {
                kill(-pid, 9);
            }
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if !timed_out {
        // Children that outlive the main process (daemons) would keep the
        // pipes open: give them a moment, then kill the group.
        let grace = Instant::now();
        while !(t_out.is_finished() && t_err.is_finished()) && grace.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !(t_out.is_finished() && t_err.is_finished()) {
            unsafe {
                kill(-pid, 9);
            }
        }
    }
    let out = RunOutput {
        cmdline,
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
        elapsed: start.elapsed(),
    };
    if timed_out {
        panic!("TIMEOUT after {timeout:?} (hang or deadlock?):\n{}", out.describe());
    }
    out
}

/// [`run_with_timeout`] with [`default_timeout`].
pub fn run(cmd: &mut Command) -> RunOutput {
    run_with_timeout(cmd, default_timeout())
}

/// Makes `cmd` a plain (glibc) run: no hakmem from the environment.
pub fn without_hakmem(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("LD_PRELOAD").env_remove("HAKMEM_STATS").env_remove("HAKMEM_VERBOSE")
}

/// Makes `cmd` run with `LD_PRELOAD=libhakmem.so HAKMEM_STATS=1`.
pub fn with_preload(cmd: &mut Command) -> &mut Command {
    cmd.env("LD_PRELOAD", shared_lib()).env("HAKMEM_STATS", "1").env_remove("HAKMEM_VERBOSE")
}

/// One parsed `hakmem-stats:` line.
#[derive(Clone, Debug)]
pub struct Stats {
    pub raw: String,
    pub fields: BTreeMap<String, u64>,
}

impl Stats {
    pub fn get(&self, key: &str) -> u64 {
        *self.fields.get(key).unwrap_or_else(|| panic!("stats line has no {key}: {}", self.raw))
    }
}

/// Parses every `hakmem-stats: k=v k=v ...` line of `stderr`. A line that
/// mentions `hakmem-stats:` but does not parse is an error.
pub fn parse_stats(stderr: &str) -> Result<Vec<Stats>, String> {
    let mut v = Vec::new();
    for line in stderr.lines() {
        let Some(pos) = line.find("hakmem-stats:") else { continue };
        let body = &line[pos + "hakmem-stats:".len()..];
        let mut fields = BTreeMap::new();
        for kv in body.split_whitespace() {
            let (k, val) = kv.split_once('=').ok_or_else(|| format!("malformed pair {kv:?} in {line:?}"))?;
            let n: u64 = val.parse().map_err(|_| format!("non-numeric value {kv:?} in {line:?}"))?;
            fields.insert(k.to_string(), n);
        }
        for k in STATS_KEYS {
            if !fields.contains_key(k) {
                return Err(format!("key {k} missing from {line:?}"));
            }
        }
        v.push(Stats { raw: line.to_string(), fields });
    }
    Ok(v)
}

/// Asserts that the run was served by hakmem: at least `min_lines` stats
/// lines, all well-formed, each with `malloc_calls > 0` and consistent peaks.
/// Returns the lines.
pub fn assert_served_by_hakmem(out: &RunOutput, min_lines: usize, what: &str) -> Vec<Stats> {
    let stats = parse_stats(&out.stderr_str())
        .unwrap_or_else(|e| panic!("{what}: bad hakmem-stats line: {e}\n{}", out.describe()));
    assert!(
        stats.len() >= min_lines,
        "{what}: expected at least {min_lines} `hakmem-stats:` line(s) on stderr (HAKMEM_STATS=1), found {} -- \
         was hakmem loaded? (If the program closes fd 2 before exiting, as coreutils' close_stdout does, \
         hakmem must write the line to its own duplicate of fd 2 taken at start-up.)\n{}",
        stats.len(),
        out.describe()
    );
    for s in &stats {
        assert!(s.get("malloc_calls") > 0, "{what}: malloc_calls is 0 in {:?}\n{}", s.raw, out.describe());
        assert!(
            s.get("bytes_mapped_peak") >= s.get("bytes_mapped"),
            "{what}: bytes_mapped_peak < bytes_mapped in {:?}",
            s.raw
        );
        assert!(
            s.get("segments_peak") >= s.get("segments_mapped"),
            "{what}: segments_peak < segments_mapped in {:?}",
            s.raw
        );
    }
    stats
}

/// Asserts that a program exited 0.
pub fn assert_success(out: &RunOutput, what: &str) {
    assert!(out.status.success(), "{what}: expected exit 0, got {}\n{}", out.status_str(), out.describe());
}

/// Splitmix64, for deterministic generated inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// First differing line of two outputs, for assertion messages.
pub fn first_difference(a: &[u8], b: &[u8]) -> String {
    let a = String::from_utf8_lossy(a);
    let b = String::from_utf8_lossy(b);
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    for i in 0..la.len().max(lb.len()) {
        let x = la.get(i).copied();
        let y = lb.get(i).copied();
        if x != y {
            return format!(
                "first difference at line {}:\n  glibc:  {:?}\n  hakmem: {:?}\n(glibc {} lines / {} bytes, hakmem {} lines / {} bytes)",
                i + 1,
                x.map(|s| s.chars().take(300).collect::<String>()),
                y.map(|s| s.chars().take(300).collect::<String>()),
                la.len(),
                a.len(),
                lb.len(),
                b.len()
            );
        }
    }
    format!("outputs differ only in line endings/bytes (glibc {} bytes, hakmem {} bytes)", a.len(), b.len())
}

/// Asserts two runs (glibc, hakmem) have the same stdout and status.
pub fn assert_same_output(glibc: &RunOutput, hakmem: &RunOutput, what: &str) {
    assert_eq!(
        glibc.status.code(),
        hakmem.status.code(),
        "{what}: exit status differs: glibc {}, hakmem {}\n=== glibc run ===\n{}\n=== hakmem run ===\n{}",
        glibc.status_str(),
        hakmem.status_str(),
        glibc.describe(),
        hakmem.describe()
    );
    assert_eq!(
        glibc.status.signal(),
        hakmem.status.signal(),
        "{what}: termination signal differs\n{}",
        hakmem.describe()
    );
    if glibc.stdout != hakmem.stdout {
        panic!(
            "{what}: stdout differs between glibc and hakmem: {}\n=== hakmem run ===\n{}",
            first_difference(&glibc.stdout, &hakmem.stdout),
            hakmem.describe()
        );
    }
}

/// The number after the word `key` in a program's output of `key value`
/// words; panics (test failure) when it is missing or not a number.
pub fn number_after(output: &str, key: &str) -> i64 {
    let words: Vec<&str> = output.split_whitespace().collect();
    let at = words.iter().position(|w| *w == key).unwrap_or_else(|| panic!("no {key} in:\n{output}"));
    words.get(at + 1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{key} is not followed by a number in:\n{output}"))
}
