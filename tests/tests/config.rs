//! `HAKMEM_*` configuration read by a preloaded program: every variable
//! takes a valid value (shown by `HAKMEM_VERBOSE=1`), an invalid value warns
//! with one line naming the variable, the value and the default it keeps,
//! and an unknown `HAKMEM_` name warns once.

use hakmem_tests::*;
use std::process::Command;

/// (variable, a valid value, how verbose shows it, an invalid value, the default shown).
const VARIABLES: [(&str, &str, &str, &str, &str); 15] = [
    ("HAKMEM_STATS", "line", "line", "banana", "off"),
    ("HAKMEM_VERBOSE", "yes", "on", "2", "off"),
    ("HAKMEM_BIGCACHE_MAX", "8M", "8388608", "8MB", "268435456"),
    ("HAKMEM_BIGCACHE_FIT", "50", "50", "401", "25"),
    ("HAKMEM_SEGMENT_CACHE", "3", "3", "-1", "16"),
    ("HAKMEM_BLOCK_CACHE", "0", "0", "64KB", "524288"),
    ("HAKMEM_PURGE_DIRTY", "1G", "1073741824", "", "67108864"),
    ("HAKMEM_PURGE_DELAY", "250", "250", "abc", "10"),
    ("HAKMEM_LEARN", "frozen", "frozen", "sometimes", "on"),
    ("HAKMEM_BACKGROUND", "1", "on", "later", "off"),
    ("HAKMEM_THP", "off", "off", "maybe", "default"),
    ("HAKMEM_STRICT", "1", "on", "very", "off"),
    ("HAKMEM_PROF", "on", "on", "sometimes", "off"),
    ("HAKMEM_PROF_SAMPLE", "64K", "65536", "0", "524288"),
    ("HAKMEM_PROF_DUMP", "/nonexistent/hakmem-prof", "/nonexistent/hakmem-prof", "", "(none)"),
];

/// A preloaded `true` with only the given HAKMEM_ variables set.
fn preloaded_true(vars: &[(&str, &str)]) -> RunOutput {
    let mut cmd = Command::new("true");
    without_hakmem(&mut cmd).env("LD_PRELOAD", shared_lib());
    for (k, _) in std::env::vars() {
        if k.starts_with("HAKMEM_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    assert_success(&out, "preloaded true");
    out
}

/// The effective values printed by HAKMEM_VERBOSE=1, as (name, value).
fn verbose_values(stderr: &str) -> Vec<(String, String)> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("hakmem ") && l.contains(": HAKMEM_"))
        .unwrap_or_else(|| panic!("no verbose line in stderr:\n{stderr}"));
    line.split_once(": ")
        .unwrap()
        .1
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("bad entry {kv:?} in {line:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn verbose_lists_every_variable_with_its_default() {
    let out = preloaded_true(&[("HAKMEM_VERBOSE", "1")]);
    let values = verbose_values(&out.stderr_str());
    let expected: Vec<(String, String)> = VARIABLES
        .iter()
        .map(|&(name, _, _, _, default)| {
            let default = if name == "HAKMEM_VERBOSE" { "on" } else { default };
            (name.to_string(), default.to_string())
        })
        .collect();
    assert_eq!(values, expected);
}

#[test]
fn every_variable_takes_a_valid_value() {
    for (name, valid, shown, _, _) in VARIABLES {
        let out = preloaded_true(&[(name, valid), ("HAKMEM_VERBOSE", "1")]);
        let stderr = out.stderr_str();
        assert!(!stderr.contains("invalid"), "{name}={valid} was refused:\n{stderr}");
        let values = verbose_values(&stderr);
        let value = values.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(value, Some(shown), "{name}={valid}: verbose line {values:?}");
    }
}

#[test]
fn an_invalid_value_warns_once_and_keeps_the_default() {
    for (name, _, _, invalid, default) in VARIABLES {
        let out = preloaded_true(&[(name, invalid)]);
        let stderr = out.stderr_str();
        let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("hakmem: invalid")).collect();
        assert_eq!(warnings.len(), 1, "{name}={invalid:?}: want one warning, stderr:\n{stderr}");
        let w = warnings[0];
        assert!(w.contains(&format!("{name}={invalid} ")), "{w:?} does not name {name}={invalid}");
        assert!(w.contains("(expected "), "{w:?} does not say what is accepted");
        assert!(w.ends_with(&format!("keeping {default}")), "{w:?} does not keep {default}");
        // The default is indeed what stays in effect.
        let out = preloaded_true(&[(name, invalid), ("HAKMEM_VERBOSE", "on")]);
        let values = verbose_values(&out.stderr_str());
        let kept = values.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let default = if name == "HAKMEM_VERBOSE" { "on" } else { default };
        assert_eq!(kept, Some(default), "{name}={invalid:?} changed the setting");
    }
}

#[test]
fn an_unknown_name_warns_and_the_rest_still_applies() {
    let out = preloaded_true(&[("HAKMEM_STAST", "1"), ("HAKMEM_PURGE_DELAY", "77"), ("HAKMEM_VERBOSE", "1")]);
    let stderr = out.stderr_str();
    let unknown: Vec<&str> = stderr.lines().filter(|l| l.contains("unknown variable")).collect();
    assert_eq!(unknown.len(), 1, "stderr:\n{stderr}");
    assert!(unknown[0].starts_with("hakmem: unknown variable HAKMEM_STAST "), "{:?}", unknown[0]);
    assert!(unknown[0].contains("HAKMEM_STATS"), "the warning lists the known names: {:?}", unknown[0]);
    let values = verbose_values(&stderr);
    assert!(values.contains(&("HAKMEM_PURGE_DELAY".into(), "77".into())), "{values:?}");
}

#[test]
fn valid_settings_print_nothing() {
    let vars: Vec<(&str, &str)> = VARIABLES.iter().filter(|v| v.0 != "HAKMEM_STATS").map(|v| (v.0, v.1)).collect();
    // (HAKMEM_PROF_DUMP's value names a directory that does not exist.)
    let vars: Vec<(&str, &str)> = vars.into_iter().filter(|v| v.0 != "HAKMEM_VERBOSE" && v.0 != "HAKMEM_PROF_DUMP").collect();
    let out = preloaded_true(&vars);
    assert_eq!(out.stderr_str(), "", "valid settings, not verbose: nothing on stderr");
}

#[test]
fn frozen_learning_prints_what_it_would_choose_as_settings() {
    let out = preloaded_true(&[("HAKMEM_LEARN", "frozen"), ("HAKMEM_VERBOSE", "1"), ("HAKMEM_SEGMENT_CACHE", "3")]);
    let stderr = out.stderr_str();
    let line = stderr.lines().find(|l| l.starts_with("hakmem: learned ")).unwrap_or_else(|| panic!("no learned line:\n{stderr}"));
    let value = |name: &str| -> Option<u64> {
        let rest = line.split_once(&format!(" {name}="))?.1;
        rest.split(' ').next()?.parse().ok()
    };
    // `true` makes too few calls for a window: the configured values, or
    // what learning starts from (the dirty cap starts at its budget).
    assert_eq!(value("HAKMEM_SEGMENT_CACHE"), Some(3), "{line}");
    assert_eq!(value("HAKMEM_BIGCACHE_MAX"), Some(256 << 20), "{line}");
    assert_eq!(value("HAKMEM_BIGCACHE_FIT"), Some(25), "{line}");
    assert_eq!(value("HAKMEM_PURGE_DIRTY"), Some(4 * (64 << 20)), "{line}");
    assert!(line.contains("HAKMEM_PURGE_DELAY="), "{line}");
}
