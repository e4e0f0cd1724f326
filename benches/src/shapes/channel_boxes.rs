//! `channel-boxes`: a producer thread sends batches (`Vec<Box<[u8]>>`, boxed slices of
//! 16..=512 bytes) through a bounded `std::sync::mpsc` channel to the consumer (the calling
//! thread), which checks and drops them: every box and every batch is freed by a thread
//! other than the one that allocated it (a pipeline stage handing buffers on).

use super::{seed, timed, Mode, Sample};
use crate::Rng;
use std::sync::mpsc;
use std::thread;

#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub batches: usize,
    /// Boxes per batch.
    pub batch_len: usize,
}

impl Params {
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Quick => Params {
                batches: 200,
                batch_len: 1000,
            },
            Mode::Full => Params {
                batches: 4000,
                batch_len: 1000,
            },
        }
    }
}

pub fn run_mode(mode: Mode, rep: u64) -> Sample {
    run(Params::for_mode(mode), rep)
}

/// Batches in flight at most: bounds the memory when the consumer falls behind.
const IN_FLIGHT: usize = 4;

/// Length and fill byte of the next box, drawn from `rng` (the producer and the consumer
/// draw the same sequence from the same seed).
fn shape_of(rng: &mut Rng) -> (usize, u8) {
    let len = 16 + rng.below(497) as usize; // 16..=512
    (len, rng.next_u64() as u8)
}

/// A box of `len` bytes: its serial number in the first 8, `fill` in the rest.
fn make(serial: u64, len: usize, fill: u8) -> Box<[u8]> {
    let mut v = vec![fill; len];
    v[..8].copy_from_slice(&serial.to_le_bytes());
    v.into_boxed_slice()
}

fn check(serial: u64, len: usize, fill: u8, b: &[u8]) {
    assert_eq!(b.len(), len, "channel-boxes: box {serial} has the wrong length");
    assert_eq!(b[..8], serial.to_le_bytes(), "channel-boxes: box {serial} overwritten");
    assert!(
        b[8..].iter().all(|&x| x == fill),
        "channel-boxes: box {serial} corrupted"
    );
}

pub fn run(p: Params, rep: u64) -> Sample {
    let seed = seed(2, rep);
    let ((), elapsed) = timed(|| {
        let (tx, rx) = mpsc::sync_channel::<Vec<Box<[u8]>>>(IN_FLIGHT);
        let producer = thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let mut serial = 0u64;
            for _ in 0..p.batches {
                let mut batch = Vec::with_capacity(p.batch_len);
                for _ in 0..p.batch_len {
                    let (len, fill) = shape_of(&mut rng);
                    batch.push(make(serial, len, fill));
                    serial += 1;
                }
                tx.send(batch).expect("channel-boxes: consumer gone");
            }
        });
        let mut rng = Rng::new(seed);
        let mut serial = 0u64;
        let mut received = 0;
        for batch in rx {
            assert_eq!(
                batch.len(),
                p.batch_len,
                "channel-boxes: batch {received} has the wrong length"
            );
            for b in &batch {
                let (len, fill) = shape_of(&mut rng);
                check(serial, len, fill, b);
                serial += 1;
            }
            drop(batch); // the cross-thread frees
            received += 1;
        }
        assert_eq!(received, p.batches, "channel-boxes: batches lost");
        producer.join().expect("channel-boxes: producer panicked");
    });
    let boxes = (p.batches * p.batch_len) as u64;
    // One allocation per box and per batch vector.
    Sample {
        elapsed,
        steps: boxes,
        allocs: boxes + p.batches as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_counts() {
        let s = run(
            Params {
                batches: 50,
                batch_len: 100,
            },
            1,
        );
        assert_eq!(s.steps, 5000);
        assert_eq!(s.allocs, 5050);
    }

    #[test]
    fn check_catches_a_wrong_box() {
        let b = make(3, 40, 0xAB);
        check(3, 40, 0xAB, &b);
        assert!(std::panic::catch_unwind(|| check(4, 40, 0xAB, &b)).is_err());
        assert!(std::panic::catch_unwind(|| check(3, 41, 0xAB, &b)).is_err());
        assert!(std::panic::catch_unwind(|| check(3, 40, 0xAC, &b)).is_err());
    }
}
