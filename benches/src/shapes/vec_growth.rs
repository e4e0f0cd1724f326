//! `vec-growth`: a `Vec<u64>` pushed from empty to 1 Mi elements (8 MiB), repeated: the
//! doubling reallocations of `Vec::push`, up to sizes where allocators map memory
//! directly (in-place growth with `mremap`, or a copy, and page faults).

use super::{seed, timed, Mode, Sample};
use std::hint::black_box;

#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Vectors built per repetition.
    pub vectors: usize,
    /// Elements pushed into each.
    pub len: usize,
}

impl Params {
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Quick => Params {
                vectors: 12,
                len: 1 << 20,
            },
            Mode::Full => Params {
                vectors: 60,
                len: 1 << 20,
            },
        }
    }
}

pub fn run_mode(mode: Mode, rep: u64) -> Sample {
    run(Params::for_mode(mode), rep)
}

pub fn run(p: Params, rep: u64) -> Sample {
    assert!(p.len >= 1);
    let salt = seed(4, rep);
    let ((), elapsed) = timed(|| {
        for n in 0..p.vectors as u64 {
            let mut v: Vec<u64> = Vec::new();
            for i in 0..p.len as u64 {
                v.push(i ^ salt ^ n);
            }
            let v = black_box(v);
            // Every 1021st element and the last: checks that the reallocations copied.
            assert_eq!(v.len(), p.len, "vec-growth: wrong length");
            for i in (0..p.len).step_by(1021).chain([p.len - 1]) {
                assert_eq!(
                    v[i],
                    i as u64 ^ salt ^ n,
                    "vec-growth: element {i} lost by a reallocation"
                );
            }
        }
    });
    // One allocation per vector (its growth is reallocations, not counted).
    Sample {
        elapsed,
        steps: p.vectors as u64,
        allocs: p.vectors as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_counts() {
        let s = run(
            Params {
                vectors: 3,
                len: 100_000,
            },
            1,
        );
        assert_eq!((s.steps, s.allocs), (3, 3));
        run(Params { vectors: 1, len: 1 }, 2);
    }
}
