//! libhakmem.so exports exactly the C ABI: every function `hakmem.h`
//! declares, glibc's `mallinfo`/`mallinfo2` (declared by <malloc.h>), and
//! the glibc aliases below; nothing else (no Rust internals).

use hakmem_tests::*;
use std::collections::BTreeSet;
use std::process::Command;

/// glibc's internal names for its allocator, which hakmem also answers to.
const ALIASES: [&str; 8] = [
    "__libc_malloc",
    "__libc_free",
    "__libc_calloc",
    "__libc_realloc",
    "__libc_memalign",
    "__libc_valloc",
    "__libc_pvalloc",
    "__posix_memalign",
];

/// Declared in <malloc.h>, not repeated in hakmem.h.
const FROM_MALLOC_H: [&str; 2] = ["mallinfo", "mallinfo2"];

/// Names of the functions `hakmem.h` declares (`type name(args);` lines).
fn header_functions() -> BTreeSet<String> {
    let header = std::fs::read_to_string(include_dir().join("hakmem.h")).expect("read hakmem.h");
    header
        .lines()
        .map(str::trim)
        .filter(|line| line.ends_with(");") && !line.starts_with('*') && !line.starts_with("/*"))
        .map(|line| {
            let before_args = &line[..line.find('(').unwrap()];
            let name = before_args.rsplit([' ', '*']).next().unwrap();
            name.to_string()
        })
        .collect()
}

/// Global functions libhakmem.so defines in its dynamic symbol table.
fn exported_functions() -> BTreeSet<String> {
    let out = run(Command::new("nm").args(["-D", "--defined-only"]).arg(shared_lib()));
    assert_success(&out, "nm -D libhakmem.so");
    out.stdout_str()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, kind, name] => Some((*kind, *name)),
                _ => None,
            }
        })
        .filter(|(kind, _)| kind.chars().any(|c| c.is_ascii_uppercase()))
        .map(|(kind, name)| {
            assert!(matches!(kind, "T" | "W" | "i"), "libhakmem.so exports data symbol {name} ({kind})");
            name.to_string()
        })
        .collect()
}

#[test]
fn shared_library_exports_exactly_the_c_abi() {
    let declared = header_functions();
    assert!(declared.contains("malloc") && declared.contains("hakmem_stats_get"), "parsed hakmem.h: {declared:?}");
    let mut expected = declared.clone();
    expected.extend(ALIASES.iter().chain(&FROM_MALLOC_H).map(|s| s.to_string()));
    let exported = exported_functions();
    let missing: Vec<_> = expected.difference(&exported).collect();
    let extra: Vec<_> = exported.difference(&expected).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing from libhakmem.so: {missing:?}; exported but not in the ABI: {extra:?}");
}

/// libhakmem.so needs libc alone: no Rust runtime and no shared unwinder
/// (`libgcc_s`), so that a preloaded hakmem maps nothing more into every
/// process. Its undefined symbols are libc's (and the weak ones of the C
/// runtime's startup files).
#[test]
fn shared_library_needs_libc_alone() {
    let out = run(Command::new("readelf").args(["-d", "-W"]).arg(shared_lib()));
    assert_success(&out, "readelf -d libhakmem.so");
    let dynamic = out.stdout_str();
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).filter_map(|l| l.rsplit('[').next()).collect();
    assert_eq!(needed, ["libc.so.6]"], "libhakmem.so's NEEDED entries:\n{dynamic}");
    let out = run(Command::new("nm").args(["-D", "--undefined-only"]).arg(shared_lib()));
    assert_success(&out, "nm -D --undefined-only libhakmem.so");
    let undefined = out.stdout_str();
    let foreign: Vec<&str> = undefined
        .lines()
        .filter(|l| l.trim_start().starts_with("U "))
        .filter(|l| !l.contains("@GLIBC_"))
        .collect();
    assert!(foreign.is_empty(), "undefined symbols libc does not define: {foreign:?}");
}
