//! `HAKMEM_*` options from the environment, read without allocating:
//! `environ` is scanned in place (no `getenv`, which may take locks, and no
//! `std::env`, which allocates).

use core::ffi::c_char;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

extern "C" {
    static environ: *const *const c_char;
}

/// HAKMEM_STATS: print a statistics line at exit.
pub static STATS_AT_EXIT: AtomicBool = AtomicBool::new(false);
/// HAKMEM_VERBOSE: print version and options when they are read.
pub static VERBOSE: AtomicBool = AtomicBool::new(false);

const UNREAD: u8 = 0;
const READING: u8 = 1;
const READ: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNREAD);

/// The value of `HAKMEM_<name>` (bytes after `=`), if set.
fn lookup(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: environ is either null or a null-terminated array of
    // NUL-terminated strings owned by libc; we only read it.
    unsafe {
        let mut entry = environ;
        if entry.is_null() {
            return None;
        }
        while !(*entry).is_null() {
            let s = core::ffi::CStr::from_ptr(*entry).to_bytes();
            if let Some(rest) = s.strip_prefix(b"HAKMEM_") {
                if rest.len() > name.len() && rest.starts_with(name) && rest[name.len()] == b'=' {
                    return Some(&rest[name.len() + 1..]);
                }
            }
            entry = entry.add(1);
        }
    }
    None
}

/// `1/true/yes/on` (any case) are true; `0/false/no/off` false.
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

/// Read the options once `environ` exists (calls before libc set it up, as
/// can happen under LD_PRELOAD, leave them unread to be tried again).
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
    let options = crate::GLOBAL.options();
    if let Some(v) = lookup(b"STATS").and_then(parse_bool) {
        STATS_AT_EXIT.store(v, Ordering::Relaxed);
        if v {
            crate::keep_stats_fd();
        }
    }
    if let Some(v) = lookup(b"VERBOSE").and_then(parse_bool) {
        VERBOSE.store(v, Ordering::Relaxed);
    }
    if let Some(v) = lookup(b"BIGCACHE_MAX").and_then(parse_size) {
        options.bigcache_bytes.store(v, Ordering::Relaxed);
    }
    if let Some(v) = lookup(b"SEGMENT_CACHE").and_then(parse_size) {
        options.segment_cache.store(v, Ordering::Relaxed);
    }
    if let Some(v) = lookup(b"PURGE_DIRTY").and_then(parse_size) {
        options.purge_dirty_bytes.store(v, Ordering::Relaxed);
    }
    if let Some(v) = lookup(b"THP").and_then(parse_bool) {
        let mode = if v { crate::pages::THP_ON } else { crate::pages::THP_OFF };
        crate::pages::THP_MODE.store(mode, Ordering::Relaxed);
    }
    if let Some(v) = lookup(b"PURGE_DELAY").and_then(parse_size) {
        options.purge_delay_ms.store(v, Ordering::Relaxed);
    }
    STATE.store(READ, Ordering::Release);
    if VERBOSE.load(Ordering::Relaxed) {
        let mut m = hakmem_core::message::MessageBuffer::new();
        m.push_str("hakmem ").push_str(hakmem_core::VERSION).push_str(": stats=");
        m.push_decimal(STATS_AT_EXIT.load(Ordering::Relaxed) as usize);
        m.push_str(" bigcache_max=").push_decimal(options.bigcache_bytes.load(Ordering::Relaxed));
        m.push_str(" segment_cache=").push_decimal(options.segment_cache.load(Ordering::Relaxed));
        m.push_str(" purge_dirty=").push_decimal(options.purge_dirty_bytes.load(Ordering::Relaxed));
        m.push_str(" purge_delay_ms=").push_decimal(options.purge_delay_ms.load(Ordering::Relaxed));
        m.push_str(" thp=").push_str(match crate::pages::THP_MODE.load(Ordering::Relaxed) {
            crate::pages::THP_ON => "on",
            crate::pages::THP_OFF => "off",
            _ => "default",
        });
        m.push_str("\n");
        crate::write_stderr(m.as_bytes());
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
    }
}
