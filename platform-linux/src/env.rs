//! `HAKMEM_*` options from the environment, read without allocating:
//! `environ` is scanned in place (no `getenv`, which may take locks, and no
//! `std::env`, which allocates).
//!
//! Every variable is declared once, in [`VARIABLES`]: its name, what it
//! accepts, how it is set and how its effective value is shown. A value
//! that does not parse warns (one line naming the variable, the value and
//! what is accepted) and keeps the default; an unknown `HAKMEM_` name warns
//! once; `HAKMEM_VERBOSE=1` prints every effective value.

use core::ffi::c_char;
use core::sync::atomic::Ordering::{self, Relaxed};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};
use hakmem_core::config::{Options, LEARN_FROZEN, LEARN_OFF, LEARN_ON};
use hakmem_core::message::MessageBuffer;

extern "C" {
    static environ: *const *const c_char;
}

/// HAKMEM_STATS: what to print at exit.
pub static STATS_AT_EXIT: AtomicU8 = AtomicU8::new(STATS_OFF);
pub const STATS_OFF: u8 = 0;
/// The `hakmem-stats: key=value ...` line only.
pub const STATS_LINE: u8 = 1;
/// The readable table, then the line.
pub const STATS_TABLE: u8 = 2;
/// HAKMEM_VERBOSE: print version and options when they are read.
pub static VERBOSE: AtomicBool = AtomicBool::new(false);

const UNREAD: u8 = 0;
const READING: u8 = 1;
const READ: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNREAD);

/// One `HAKMEM_<name>` variable.
pub struct Variable {
    /// The name after `HAKMEM_`.
    pub name: &'static str,
    /// What it accepts, for the warning.
    pub accepts: &'static str,
    value: Value,
}

/// Where a variable's value goes.
enum Value {
    /// A number option of the core, parsed by the function.
    Number(fn(&Options) -> &AtomicUsize, fn(&[u8]) -> Option<usize>),
    /// Anything else: parse and apply a value (false, nothing changed,
    /// when it is invalid), and append the effective value.
    Other(fn(&[u8]) -> bool, fn(&mut MessageBuffer)),
}

impl Variable {
    /// Parse and apply `value`; false (nothing changed) when it is invalid.
    fn set(&self, value: &[u8]) -> bool {
        match self.value {
            Value::Number(cell, parse) => parse(value).map(|v| cell(options()).store(v, Relaxed)).is_some(),
            Value::Other(set, _) => set(value),
        }
    }

    /// Append the effective value.
    fn show(&self, out: &mut MessageBuffer) {
        match self.value {
            Value::Number(cell, _) => {
                out.push_decimal(cell(options()).load(Relaxed));
            }
            Value::Other(_, show) => show(out),
        }
    }
}

/// HAKMEM_STATS's parser. With the code every process runs (ffi/hot.ld),
/// as the benchmarks set it in every run (their proof of allocator): the
/// other variables' parsers lie elsewhere in the text, and a process that
/// sets one maps their page too.
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
fn set_stats(value: &[u8]) -> bool {
    let mode = match value {
        b"line" => Some(STATS_LINE),
        b"table" => Some(STATS_TABLE),
        _ => parse_bool(value).map(|on| if on { STATS_TABLE } else { STATS_OFF }),
    };
    mode.map(|m| STATS_AT_EXIT.store(m, Relaxed)).is_some()
}

const BOOL: &str = "1/0, on/off, yes/no or true/false";
const SIZE: &str = "a byte count with an optional K, M or G suffix";
const COUNT: &str = "a whole number";

fn options() -> &'static Options {
    crate::GLOBAL.options()
}

fn show_bool(out: &mut MessageBuffer, on: bool) {
    out.push_str(if on { "on" } else { "off" });
}

/// Every variable hakmem reads.
pub static VARIABLES: [Variable; 15] = [
    Variable {
        name: "STATS",
        accepts: "1/on/table (a table and the line), line (the line only) or 0/off",
        value: Value::Other(
            set_stats,
            |out| {
                out.push_str(match STATS_AT_EXIT.load(Relaxed) {
                    STATS_LINE => "line",
                    STATS_TABLE => "table",
                    _ => "off",
                });
            },
        ),
    },
    Variable {
        name: "VERBOSE",
        accepts: BOOL,
        value: Value::Other(
            |v| parse_bool(v).map(|on| VERBOSE.store(on, Relaxed)).is_some(),
            |out| show_bool(out, VERBOSE.load(Relaxed)),
        ),
    },
    Variable { name: "BIGCACHE_MAX", accepts: SIZE, value: Value::Number(|o| &o.bigcache_bytes, parse_size) },
    Variable {
        name: "BIGCACHE_FIT",
        accepts: "percent, a whole number from 0 to 400",
        value: Value::Number(|o| &o.bigcache_fit_percent, parse_fit_percent),
    },
    Variable { name: "SEGMENT_CACHE", accepts: COUNT, value: Value::Number(|o| &o.segment_cache, parse_count) },
    Variable { name: "BLOCK_CACHE", accepts: SIZE, value: Value::Number(|o| &o.block_cache_bytes, parse_size) },
    Variable { name: "PURGE_DIRTY", accepts: SIZE, value: Value::Number(|o| &o.purge_dirty_bytes, parse_size) },
    Variable {
        name: "PURGE_DELAY",
        accepts: "milliseconds, a whole number",
        value: Value::Number(|o| &o.purge_delay_ms, parse_count),
    },
    Variable {
        name: "LEARN",
        accepts: "on (learn the purge delay), off (use HAKMEM_PURGE_DELAY) or frozen (use it, and print what learning would choose at exit with HAKMEM_VERBOSE)",
        value: Value::Other(
            |v| {
                let mode = match v {
                    b"frozen" => Some(LEARN_FROZEN),
                    _ => parse_bool(v).map(|on| if on { LEARN_ON } else { LEARN_OFF }),
                };
                mode.map(|m| options().learn.store(m, Relaxed)).is_some()
            },
            |out| {
                out.push_str(match options().learn.load(Relaxed) {
                    LEARN_ON => "on",
                    LEARN_FROZEN => "frozen",
                    _ => "off",
                });
            },
        ),
    },
    Variable {
        name: "BACKGROUND",
        accepts: BOOL,
        value: Value::Other(
            |v| parse_bool(v).map(|on| crate::background::ENABLED.store(on, Relaxed)).is_some(),
            |out| show_bool(out, crate::background::ENABLED.load(Relaxed)),
        ),
    },
    Variable {
        name: "THP",
        accepts: BOOL,
        value: Value::Other(
            |v| {
                let mode = parse_bool(v).map(|on| if on { crate::pages::THP_ON } else { crate::pages::THP_OFF });
                mode.map(|m| crate::pages::THP_MODE.store(m, Relaxed)).is_some()
            },
            |out| {
                out.push_str(match crate::pages::THP_MODE.load(Relaxed) {
                    crate::pages::THP_ON => "on",
                    crate::pages::THP_OFF => "off",
                    _ => "default",
                });
            },
        ),
    },
    Variable {
        name: "STRICT",
        accepts: BOOL,
        value: Value::Other(
            |v| parse_bool(v).map(|on| options().strict.store(on, Relaxed)).is_some(),
            |out| show_bool(out, options().strict.load(Relaxed)),
        ),
    },
    Variable {
        name: "PROF",
        accepts: BOOL,
        value: Value::Other(
            |v| parse_bool(v).map(|on| crate::profile::ENABLED.store(on, Relaxed)).is_some(),
            |out| show_bool(out, crate::profile::ENABLED.load(Relaxed)),
        ),
    },
    Variable {
        name: "PROF_SAMPLE",
        accepts: "mean bytes between samples (at least 1), with an optional K, M or G suffix",
        value: Value::Other(
            |v| parse_size(v).filter(|&n| n > 0).map(|n| crate::profile::MEAN_BYTES.store(n, Relaxed)).is_some(),
            |out| {
                out.push_decimal(crate::profile::MEAN_BYTES.load(Relaxed));
            },
        ),
    },
    Variable {
        name: "PROF_DUMP",
        accepts: "a path prefix (the profile is written to <prefix>.<pid>.heap at exit)",
        value: Value::Other(
            |v| crate::profile::Prefix::new(v).map(|p| crate::profile::DUMP_PREFIX.call_once(|| p)).is_some(),
            |out| {
                out.push_bytes(crate::profile::DUMP_PREFIX.get().map_or(&b"(none)"[..], |p| p.as_bytes()));
            },
        ),
    },
];

/// Each `HAKMEM_` entry of `environ` as (name after the prefix, value).
fn hakmem_entries(mut visit: impl FnMut(&'static [u8], &'static [u8])) {
    // SAFETY: environ is either null or a null-terminated array of
    // NUL-terminated strings owned by libc; we only read it.
    unsafe {
        let mut entry = environ;
        if entry.is_null() {
            return;
        }
        while !(*entry).is_null() {
            let s = core::ffi::CStr::from_ptr(*entry).to_bytes();
            if let Some(rest) = s.strip_prefix(b"HAKMEM_") {
                let eq = rest.iter().position(|&b| b == b'=').unwrap_or(rest.len());
                let value = rest.get(eq + 1..).unwrap_or(&[]);
                visit(&rest[..eq], value);
            }
            entry = entry.add(1);
        }
    }
}

/// Apply every `HAKMEM_` variable of the environment (the first of a name
/// that appears twice, as `getenv` would), warning about invalid values
/// and unknown names.
fn apply_environment() {
    let mut seen = 0u32;
    hakmem_entries(|name, value| {
        let Some(index) = VARIABLES.iter().position(|v| v.name.as_bytes() == name) else {
            let mut m = MessageBuffer::new();
            m.push_str("hakmem: unknown variable HAKMEM_").push_bytes(name).push_str(" ignored (known:");
            for v in &VARIABLES {
                m.push_str(" HAKMEM_").push_str(v.name);
            }
            crate::write_stderr(m.push_str(")\n").as_bytes());
            return;
        };
        if seen & (1 << index) != 0 {
            return;
        }
        seen |= 1 << index;
        let variable = &VARIABLES[index];
        if !variable.set(value) {
            let mut m = MessageBuffer::new();
            m.push_str("hakmem: invalid HAKMEM_").push_str(variable.name).push_str("=").push_bytes(value);
            m.push_str(" (expected ").push_str(variable.accepts).push_str("); keeping ");
            variable.show(&mut m);
            crate::write_stderr(m.push_str("\n").as_bytes());
        }
    });
}

/// `1/true/yes/on` (any case) are true; `0/false/no/off` false.
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
pub fn parse_bool(value: &[u8]) -> Option<bool> {
    let mut lower = [0u8; 8];
    if value.len() > lower.len() {
        return None;
    }
    for (d, s) in lower.iter_mut().zip(value) {
        *d = s.to_ascii_lowercase();
    }
    match &lower[..value.len()] {
        b"1" | b"true" | b"yes" | b"on" => Some(true),
        b"0" | b"false" | b"no" | b"off" => Some(false),
        _ => None,
    }
}

/// A decimal size with an optional K/M/G suffix (binary units).
pub fn parse_size(value: &[u8]) -> Option<usize> {
    let (digits, shift) = match value.last()?.to_ascii_uppercase() {
        b'K' => (&value[..value.len() - 1], 10),
        b'M' => (&value[..value.len() - 1], 20),
        b'G' => (&value[..value.len() - 1], 30),
        _ => (value, 0),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: usize = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((d - b'0') as usize)?;
    }
    n.checked_mul(1usize << shift)
}

/// A whole decimal number.
pub fn parse_count(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    parse_size(value)
}

/// A percent for `HAKMEM_BIGCACHE_FIT`: a whole number up to the most.
fn parse_fit_percent(value: &[u8]) -> Option<usize> {
    parse_count(value).filter(|&percent| percent <= hakmem_core::config::BIGCACHE_FIT_MAX_PERCENT)
}

/// Read the options once `environ` exists (calls before libc set it up, as
/// can happen under LD_PRELOAD, leave them unread to be tried again).
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
pub fn ensure_read() {
    if STATE.load(Ordering::Acquire) == READ {
        return;
    }
    // SAFETY: reading the pointer value of a libc global.
    if unsafe { environ.is_null() } {
        return;
    }
    if STATE.compare_exchange(UNREAD, READING, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return; // another thread is reading; its values apply shortly
    }
    apply_environment();
    if STATS_AT_EXIT.load(Relaxed) != STATS_OFF {
        crate::keep_stats_fd();
    }
    STATE.store(READ, Ordering::Release);
    crate::profile::start();
    if VERBOSE.load(Relaxed) {
        let mut m = MessageBuffer::new();
        m.push_str("hakmem ").push_str(hakmem_core::VERSION).push_str(":");
        for v in &VARIABLES {
            m.push_str(" HAKMEM_").push_str(v.name).push_str("=");
            v.show(&mut m);
        }
        crate::write_stderr(m.push_str("\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bools_and_sizes() {
        assert_eq!(parse_bool(b"YES"), Some(true));
        assert_eq!(parse_bool(b"off"), Some(false));
        assert_eq!(parse_bool(b"maybe"), None);
        assert_eq!(parse_size(b"64M"), Some(64 << 20));
        assert_eq!(parse_size(b"3k"), Some(3 << 10));
        assert_eq!(parse_size(b"12"), Some(12));
        assert_eq!(parse_size(b"G"), None);
        assert_eq!(parse_size(b"1x"), None);
        assert_eq!(parse_size(b"99999999999999999999G"), None);
        assert_eq!(parse_count(b"10"), Some(10));
        assert_eq!(parse_count(b"10K"), None);
        assert_eq!(parse_count(b""), None);
    }
}
