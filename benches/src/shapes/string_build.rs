//! `string-build`: many small `String`s (numbers formatted with `format!` into a
//! `Vec<String>`), then two large strings built from them: `join` (one allocation of the
//! exact size) and `push_str` piece by piece (growth by reallocation). A log or CSV
//! writer's pattern.

use super::{seed, timed, Mode, Sample};
use crate::Rng;

#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Small strings per repetition.
    pub pieces: usize,
}

impl Params {
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Quick => Params { pieces: 200_000 },
            Mode::Full => Params { pieces: 1_000_000 },
        }
    }
}

pub fn run_mode(mode: Mode, rep: u64) -> Sample {
    run(Params::for_mode(mode), rep)
}

/// The next number: 1 to 20 decimal digits.
fn number(rng: &mut Rng) -> u64 {
    rng.next_u64() >> rng.below(64)
}

pub fn run(p: Params, rep: u64) -> Sample {
    let seed = seed(5, rep);
    let ((), elapsed) = timed(|| {
        let mut rng = Rng::new(seed);
        let mut pieces = Vec::new();
        for _ in 0..p.pieces {
            pieces.push(format!("{}", number(&mut rng)));
        }
        let joined = pieces.join(",");
        let mut built = String::new();
        for s in &pieces {
            built.push_str(s);
            built.push(';');
        }
        // Every piece must parse back to its number; the big strings must have the sum of
        // the pieces' lengths, and a sample of their separators where expected.
        let mut rng = Rng::new(seed);
        let mut total = 0;
        for (i, s) in pieces.iter().enumerate() {
            let n = number(&mut rng);
            assert_eq!(s.parse::<u64>().ok(), Some(n), "string-build: piece {i} corrupted");
            total += s.len();
            // The separator after piece i is at total + i in both (i separators before it).
            if i % 1024 == 0 {
                if i + 1 < p.pieces {
                    assert_eq!(
                        joined.as_bytes()[total + i],
                        b',',
                        "string-build: joined string corrupted"
                    );
                }
                assert_eq!(
                    built.as_bytes()[total + i],
                    b';',
                    "string-build: built string corrupted"
                );
            }
        }
        assert_eq!(
            joined.len(),
            total + p.pieces.saturating_sub(1),
            "string-build: joined string has the wrong length"
        );
        assert_eq!(
            built.len(),
            total + p.pieces,
            "string-build: built string has the wrong length"
        );
    });
    // One per piece, the vector of pieces and the two large strings.
    Sample {
        elapsed,
        steps: p.pieces as u64,
        allocs: p.pieces as u64 + 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_counts() {
        let s = run(Params { pieces: 5000 }, 1);
        assert_eq!((s.steps, s.allocs), (5000, 5003));
        run(Params { pieces: 1 }, 2);
    }
}
