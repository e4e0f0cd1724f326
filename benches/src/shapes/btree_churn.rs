//! `btree-churn`: a `BTreeMap<u64, Vec<u8>>` of ~10k entries in steady state; each step
//! removes a random entry and inserts one under a new random key with a `Vec` of 8..=256
//! bytes. Models a cache or index whose values are small heap buffers: B-tree node
//! allocations mixed with short and long-lived value buffers.

use super::{seed, timed, Mode, Sample};
use crate::Rng;
use std::collections::btree_map::{BTreeMap, Entry};

#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Entries held at all times.
    pub entries: usize,
    /// Timed remove + insert steps.
    pub steps: usize,
}

impl Params {
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Quick => Params {
                entries: 10_000,
                steps: 150_000,
            },
            Mode::Full => Params {
                entries: 10_000,
                steps: 1_000_000,
            },
        }
    }
}

pub fn run_mode(mode: Mode, rep: u64) -> Sample {
    run(Params::for_mode(mode), rep)
}

/// The byte every value of `key` is filled with (after the key itself).
fn fill(key: u64) -> u8 {
    (key >> 56) as u8 ^ (key as u8)
}

/// A value for `key`: its first 8 bytes hold the key, the rest `fill(key)`; so a value
/// that another allocation overwrote, or that was handed out twice, fails `check`.
fn value(key: u64, rng: &mut Rng) -> Vec<u8> {
    let len = 8 + rng.below(249) as usize; // 8..=256
    let mut v = vec![fill(key); len];
    v[..8].copy_from_slice(&key.to_le_bytes());
    v
}

fn check(key: u64, v: &[u8]) {
    assert!(
        (8..=256).contains(&v.len()),
        "btree-churn: value of key {key:#x} has length {}",
        v.len()
    );
    assert_eq!(
        v[..8],
        key.to_le_bytes(),
        "btree-churn: value of key {key:#x} overwritten"
    );
    assert!(
        v[8..].iter().all(|&b| b == fill(key)),
        "btree-churn: value of key {key:#x} corrupted"
    );
}

/// Inserts `value(key)` under a fresh random key (a key already present is drawn again);
/// returns the key.
fn insert_new(map: &mut BTreeMap<u64, Vec<u8>>, rng: &mut Rng) -> u64 {
    loop {
        let key = rng.next_u64();
        if let Entry::Vacant(e) = map.entry(key) {
            e.insert(value(key, rng));
            return key;
        }
    }
}

pub fn run(p: Params, rep: u64) -> Sample {
    let mut rng = Rng::new(seed(1, rep));
    let mut map = BTreeMap::new();
    // The live keys, so that a step can pick a random one (a B-tree has no random access).
    let mut keys: Vec<u64> = (0..p.entries).map(|_| insert_new(&mut map, &mut rng)).collect();
    let ((), elapsed) = timed(|| {
        for _ in 0..p.steps {
            let slot = rng.below(p.entries as u64) as usize;
            let old = map.remove(&keys[slot]).expect("btree-churn: live key missing");
            check(keys[slot], &old);
            drop(old);
            keys[slot] = insert_new(&mut map, &mut rng);
        }
    });
    assert_eq!(map.len(), p.entries, "btree-churn: wrong number of entries");
    for key in &keys {
        check(*key, &map[key]);
    }
    drop(map);
    // One `Vec` per insertion, plus the key array.
    Sample {
        elapsed,
        steps: p.steps as u64,
        allocs: (p.entries + p.steps + 1) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_counts() {
        let s = run(
            Params {
                entries: 500,
                steps: 20_000,
            },
            1,
        );
        assert_eq!(s.steps, 20_000);
        assert_eq!(s.allocs, 20_501);
    }

    #[test]
    fn values_check_their_key_and_contents() {
        let mut rng = Rng::new(7);
        let v = value(0x1234_5678_9abc_def0, &mut rng);
        check(0x1234_5678_9abc_def0, &v);
        let mut bad = v.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(std::panic::catch_unwind(|| check(0x1234_5678_9abc_def0, &bad)).is_err());
        assert!(std::panic::catch_unwind(|| check(0x1234_5678_9abc_def1, &v)).is_err());
    }
}
