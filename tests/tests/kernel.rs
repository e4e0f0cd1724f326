//! The embedding proof: `examples/kernel`, a bare-metal x86_64 kernel whose
//! `#[global_allocator]` is hakmem's core (an interrupt-safe `LockedHeap`
//! over the growable arena provider), built for `x86_64-unknown-none` and
//! booted under `qemu-system-x86_64` (PVH entry, software emulation), once
//! per geometry. Inside, it allocates across every size class with `Vec`,
//! `Box`, `BTreeMap` and `String`, checks contents, exhausts the arena and
//! recovers; it reports on COM1 and exits through isa-debug-exit (33: every
//! check passed, 35: one failed). Misuse in the kernel is reported by
//! hakmem's own checks through the arena host's `fatal`.

use hakmem_tests::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// isa-debug-exit turns the kernel's code `c` into qemu's status `2c + 1`.
const PASSED: i32 = 0x10 * 2 + 1;
const FAILED: i32 = 0x11 * 2 + 1;

#[derive(Clone, Copy)]
enum Geometry {
    SmallSegments,
    Default,
}

/// Build the kernel (its own cargo project and target directory), once
/// per geometry per test run.
fn kernel(geometry: Geometry) -> PathBuf {
    static BUILT: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    BUILT[geometry as usize]
        .get_or_init(|| {
            let name = match geometry {
                Geometry::SmallSegments => "kernel",
                Geometry::Default => "kernel-default",
            };
            let target = workspace_dir().join("target").join(name);
            let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
            // From its directory: its .cargo/config.toml sets the target.
            cmd.current_dir(workspace_dir().join("examples").join("kernel"));
            cmd.env("CARGO_TARGET_DIR", &target).args(["build", "--release", "--locked"]);
            if let Geometry::Default = geometry {
                cmd.arg("--no-default-features");
            }
            let out = run_with_timeout(&mut cmd, Duration::from_secs(600));
            assert_success(&out, "cargo build of examples/kernel (needs `rustup target add x86_64-unknown-none`)");
            target.join("x86_64-unknown-none").join("release").join("hakmem-kernel-example")
        })
        .clone()
}

/// Boot the kernel with `command_line`; its serial output is stdout.
fn boot(geometry: Geometry, command_line: &str) -> RunOutput {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-machine", "pc", "-m", "256M", "-display", "none", "-serial", "stdio", "-no-reboot"]);
    cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel"]).arg(kernel(geometry));
    cmd.args(["-append", command_line]);
    run_with_timeout(&mut cmd, Duration::from_secs(120))
}

/// The `key=value` numbers of the kernel's "arena use:" line.
fn arena_use(serial: &str) -> impl Fn(&str) -> u64 + '_ {
    let line = serial.lines().find(|l| l.starts_with("arena use:")).expect("an arena use line");
    move |key| {
        line.split_whitespace()
            .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{key} in {line}"))
            .parse()
            .unwrap()
    }
}

fn boots_and_passes_every_check(geometry: Geometry, name: &str, arena_bytes: u64) {
    let out = boot(geometry, "");
    let serial = out.stdout_str();
    assert_eq!(out.status.code(), Some(PASSED), "the kernel failed a check:\n{}", out.describe());
    assert!(serial.contains(&format!("hakmem kernel: {name} geometry")), "{serial}");
    for stage in ["size classes: 121 sizes from 1 B to", "collections:", "alignments: 16 B to 4 MiB", "exhausted:", "recovered:"] {
        assert!(serial.contains(stage), "no `{stage}` in:\n{serial}");
    }
    let field = arena_use(&serial);
    assert_eq!(field("bytes"), arena_bytes, "the arena grew to all its ranges");
    assert!(field("in_use") < field("high_water") && field("high_water") <= arena_bytes);
    assert_eq!(field("free"), field("bytes") - field("in_use"));
    // Trimmed, only metadata pages stay in use (the arena puts them off
    // segment boundaries, at the top of its first range before it grew):
    // each splits at most one free span in two.
    assert!(field("free_spans") <= 1 + field("in_use") / 4096, "freed spans coalesced back:\n{serial}");
    println!("{serial}");
}

#[test]
fn a_kernel_with_the_small_geometry_boots_under_qemu_and_passes_every_check() {
    boots_and_passes_every_check(Geometry::SmallSegments, "small-segments", 32 << 20);
}

#[test]
fn a_kernel_with_the_default_geometry_boots_under_qemu_and_passes_every_check() {
    boots_and_passes_every_check(Geometry::Default, "default", 128 << 20);
}

#[test]
fn misuse_in_the_kernel_is_reported_by_hakmems_checks() {
    for (misuse, report) in [("double-free", "hakmem: free(): double free of 0x"), ("foreign-free", "hakmem: free(): invalid pointer")] {
        let out = boot(Geometry::SmallSegments, misuse);
        assert_eq!(out.status.code(), Some(FAILED), "{misuse}:\n{}", out.describe());
        assert!(out.stdout_str().contains(report), "{misuse}: no `{report}` in:\n{}", out.describe());
        assert!(!out.stdout_str().contains("all checks passed"), "{misuse} went on");
    }
}
