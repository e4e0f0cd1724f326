//! `ffi/install` into a temporary prefix: the shared library with its
//! soname and links, the static library, the header and the pkg-config
//! files; then a C program built with `pkg-config --cflags --libs hakmem`
//! (and `hakmem-static`) runs on the installed library, and a program runs
//! with the installed library preloaded.

use hakmem_tests::*;
use std::path::Path;
use std::process::Command;

fn install(prefix: &Path) {
    let mut cmd = Command::new(workspace_dir().join("ffi").join("install"));
    cmd.arg("--prefix").arg(prefix).arg("--lib-dir").arg(lib_dir());
    assert_success(&run(&mut cmd), "ffi/install");
}

fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("pkg-config");
    cmd.env("PKG_CONFIG_LIBDIR", prefix.join("lib").join("pkgconfig")).args(args);
    let out = run(&mut cmd);
    assert_success(&out, "pkg-config");
    out.stdout_str().split_whitespace().map(str::to_string).collect()
}

fn compile(prefix: &Path, package: &str, out: &Path) {
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.arg(c_dir().join("installed.c")).arg("-o").arg(out);
    cmd.args(pkg_config(prefix, &["--cflags", "--libs", package]));
    assert_success(&run(&mut cmd), &format!("cc with pkg-config {package}"));
}

fn dynamic_section(path: &Path) -> String {
    let out = run(Command::new("readelf").arg("-d").arg(path));
    assert_success(&out, "readelf -d");
    out.stdout_str()
}

#[test]
fn installs_libraries_header_and_pkg_config_that_programs_build_and_run_with() {
    let dir = scratch_dir("install");
    let prefix = dir.join("prefix");
    install(&prefix);
    let lib = prefix.join("lib");
    let version = env!("CARGO_PKG_VERSION");
    let major = version.split('.').next().unwrap();
    let real = lib.join(format!("libhakmem.so.{version}"));
    assert!(real.is_file() && !real.is_symlink(), "{} is not the library file", real.display());
    let soname = format!("libhakmem.so.{major}");
    for (link, target) in [(soname.clone(), format!("libhakmem.so.{version}")), ("libhakmem.so".into(), soname.clone())] {
        let got = std::fs::read_link(lib.join(&link)).unwrap_or_else(|e| panic!("{link}: {e}"));
        assert_eq!(got, Path::new(&target), "{link} points elsewhere");
    }
    assert!(dynamic_section(&real).contains(&format!("Library soname: [{soname}]")), "soname of the installed library");
    assert!(lib.join("libhakmem.a").is_file() && prefix.join("include").join("hakmem.h").is_file());

    // Dynamically linked: needs the soname (found through LD_LIBRARY_PATH).
    let exe = dir.join("installed_dynamic");
    compile(&prefix, "hakmem", &exe);
    assert!(dynamic_section(&exe).contains(&format!("Shared library: [{soname}]")), "the program does not need {soname}");
    let mut cmd = Command::new(&exe);
    without_hakmem(&mut cmd).env("LD_LIBRARY_PATH", &lib);
    let out = run(&mut cmd);
    assert_success(&out, "program linked with pkg-config hakmem");
    assert!(out.stdout_str().starts_with(&format!("hakmem {version} installed malloc_calls=")), "{}", out.describe());

    // Statically linked: no libhakmem needed at run time.
    let exe = dir.join("installed_static");
    compile(&prefix, "hakmem-static", &exe);
    assert!(!dynamic_section(&exe).contains("libhakmem"), "hakmem-static linked the shared library");
    let out = run(without_hakmem(&mut Command::new(&exe)));
    assert_success(&out, "program linked with pkg-config hakmem-static");

    // Preloaded from the installed path.
    let mut cmd = Command::new("sort");
    without_hakmem(&mut cmd).arg("--version").env("LD_PRELOAD", lib.join(&soname)).env("HAKMEM_STATS", "line");
    let out = run(&mut cmd);
    assert_success(&out, "sort under the installed libhakmem");
    assert_served_by_hakmem(&out, 1, "sort --version under the installed libhakmem.so");
}
