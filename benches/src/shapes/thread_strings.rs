//! `thread-strings`: many short-lived threads (at most 4 alive at a time), each building a
//! few thousand `String`s with `format!` and `push_str`, keeping them in a `Vec`, checking
//! and dropping them: per-thread heap setup and teardown, as in a thread-per-task server.

use super::{seed, timed, Mode, Sample};
use crate::Rng;
use std::collections::VecDeque;
use std::thread::{self, JoinHandle};

#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub threads: usize,
    /// Strings each thread builds.
    pub strings: usize,
    /// Threads alive at once at most.
    pub alive: usize,
}

impl Params {
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Quick => Params {
                threads: 200,
                strings: 2000,
                alive: 4,
            },
            Mode::Full => Params {
                threads: 2000,
                strings: 2000,
                alive: 4,
            },
        }
    }
}

pub fn run_mode(mode: Mode, rep: u64) -> Sample {
    run(Params::for_mode(mode), rep)
}

/// What `push_str` appends: a prefix of this, 0..=64 bytes.
const TAIL: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_+=";

/// Decimal digits of `x`.
fn digits(x: u64) -> usize {
    x.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Hexadecimal digits of `x`.
fn hex_digits(x: u64) -> usize {
    x.checked_ilog2().map_or(1, |b| b as usize / 4 + 1)
}

/// String `i` of thread `t`: `"{t}:{i}:{x:x}"` with a random `x`, then a random prefix of
/// [`TAIL`]. Returns it and its expected length.
fn build(t: u64, i: u64, rng: &mut Rng) -> (String, usize) {
    let x = rng.next_u64() >> rng.below(64);
    let mut s = format!("{t}:{i}:{x:x}");
    let k = rng.below(TAIL.len() as u64 + 1) as usize;
    s.push_str(&TAIL[..k]);
    (s, digits(t) + digits(i) + hex_digits(x) + 2 + k)
}

/// A thread's work: builds its strings, then checks them (the length and the last byte
/// from the same random draws, the thread number at the front).
fn thread_body(t: u64, strings: usize, seed: u64) {
    let mut rng = Rng::new(seed ^ t);
    let mut v = Vec::new();
    let mut expect = Vec::new();
    for i in 0..strings as u64 {
        let (s, len) = build(t, i, &mut rng);
        v.push(s);
        expect.push(len);
    }
    let prefix = format!("{t}:");
    for (i, (s, &len)) in v.iter().zip(&expect).enumerate() {
        assert_eq!(
            s.len(),
            len,
            "thread-strings: string {i} of thread {t} has the wrong length"
        );
        assert!(
            s.starts_with(&prefix),
            "thread-strings: string {i} of thread {t} overwritten"
        );
        let last = s.as_bytes()[len - 1];
        assert!(
            last.is_ascii_alphanumeric() || b"-_+=".contains(&last),
            "thread-strings: string {i} corrupted"
        );
    }
}

pub fn run(p: Params, rep: u64) -> Sample {
    assert!(p.alive >= 1);
    let seed = seed(3, rep);
    let ((), elapsed) = timed(|| {
        let mut alive: VecDeque<JoinHandle<()>> = VecDeque::with_capacity(p.alive);
        for t in 0..p.threads as u64 {
            if alive.len() == p.alive {
                alive
                    .pop_front()
                    .unwrap()
                    .join()
                    .expect("thread-strings: a thread panicked");
            }
            let strings = p.strings;
            alive.push_back(thread::spawn(move || thread_body(t, strings, seed)));
        }
        for h in alive {
            h.join().expect("thread-strings: a thread panicked");
        }
    });
    // Per thread: one per string (format! of a non-empty string), the two vectors and
    // the prefix.
    Sample {
        elapsed,
        steps: p.threads as u64,
        allocs: (p.threads * (p.strings + 3)) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_counts() {
        let s = run(
            Params {
                threads: 20,
                strings: 300,
                alive: 4,
            },
            1,
        );
        assert_eq!((s.steps, s.allocs), (20, 20 * 303));
    }

    #[test]
    fn expected_lengths_match() {
        assert_eq!((digits(0), digits(9), digits(10), digits(u64::MAX)), (1, 1, 2, 20));
        assert_eq!(
            (hex_digits(0), hex_digits(15), hex_digits(16), hex_digits(u64::MAX)),
            (1, 1, 2, 16)
        );
        let mut rng = Rng::new(5);
        for i in 0..10_000 {
            let (s, len) = build(12345, i, &mut rng);
            assert_eq!(s.len(), len, "{s}");
        }
    }
}
