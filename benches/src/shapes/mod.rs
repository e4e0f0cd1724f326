//! Rust program shapes: workloads written the way ordinary Rust code is (std collections,
//! `String`s, threads, channels), which allocate only through the process's
//! `#[global_allocator]`. The `shapes` binary (`benches/shapes/main.rs`) is built once per
//! allocator and runs them; `benches/shapes/run` compares the builds.
//!
//! Every shape is deterministic (splitmix64, fixed seeds), times its own main section, and
//! checks its results with `assert!`, so a broken allocator aborts the run instead of
//! producing a number. Each also counts a lower bound of the allocation calls it made
//! (one per `Box`, `Vec` or `String` it certainly allocated; B-tree nodes, reallocations
//! and the runtime's own allocations are not counted), for the binary's hakmem proof.

use std::time::{Duration, Instant};

pub mod btree_churn;
pub mod channel_boxes;
pub mod string_build;
pub mod thread_strings;
pub mod vec_growth;

/// Size of the runs: `Quick` for a fast comparison, `Full` with 5-20x the work per repetition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Quick,
    Full,
}

/// One timed repetition of a shape.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Wall time of the shape's timed section.
    pub elapsed: Duration,
    /// Units of work in it (steps, boxes, threads ...): the value is time per step.
    pub steps: u64,
    /// Lower bound of the allocation calls the repetition made (timed or not).
    pub allocs: u64,
}

/// A shape: its name, the unit of its value and the function running one repetition
/// (the argument is the repetition's number, which seeds its PRNG).
pub struct Shape {
    pub name: &'static str,
    /// What one value means, e.g. `ns/step`.
    pub unit: &'static str,
    /// Unit per second: 1e9 for ns, 1e6 for us.
    pub per_second: f64,
    pub run: fn(Mode, u64) -> Sample,
}

/// Every shape, in report order.
pub const SHAPES: &[Shape] = &[
    Shape {
        name: "btree-churn",
        unit: "ns/step",
        per_second: 1e9,
        run: btree_churn::run_mode,
    },
    Shape {
        name: "channel-boxes",
        unit: "ns/box",
        per_second: 1e9,
        run: channel_boxes::run_mode,
    },
    Shape {
        name: "thread-strings",
        unit: "us/thread",
        per_second: 1e6,
        run: thread_strings::run_mode,
    },
    Shape {
        name: "vec-growth",
        unit: "us/vector",
        per_second: 1e6,
        run: vec_growth::run_mode,
    },
    Shape {
        name: "string-build",
        unit: "ns/piece",
        per_second: 1e9,
        run: string_build::run_mode,
    },
];

/// Looks a shape up by name.
pub fn find(name: &str) -> Option<&'static Shape> {
    SHAPES.iter().find(|s| s.name == name)
}

/// The timed repetitions of one shape and their summary.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Time per step of each timed repetition, in the shape's unit.
    pub values: Vec<f64>,
    pub median: f64,
    /// Lower bound of the allocation calls of all repetitions (the warm-up too).
    pub allocs: u64,
    /// Steps of one repetition.
    pub steps: u64,
}

/// Runs `shape` once untimed (warm-up: the allocator's caches and the page tables fill up),
/// then `reps` times, and takes the median of the timed repetitions.
pub fn measure(shape: &Shape, mode: Mode, reps: usize) -> Measurement {
    assert!(reps >= 1);
    let warm = (shape.run)(mode, 0);
    let mut allocs = warm.allocs;
    let mut values = Vec::with_capacity(reps);
    for rep in 1..=reps as u64 {
        let s = (shape.run)(mode, rep);
        assert_eq!(
            s.steps, warm.steps,
            "{}: the step count must not depend on the repetition",
            shape.name
        );
        allocs += s.allocs;
        values.push(s.elapsed.as_secs_f64() * shape.per_second / s.steps as f64);
    }
    Measurement {
        median: median(&values),
        values,
        allocs,
        steps: warm.steps,
    }
}

/// Median (the mean of the two middle values for an even count). `xs` is not empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times `f`, returning its result and the elapsed wall time.
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t0 = Instant::now();
    let r = f();
    (r, t0.elapsed())
}

/// A seed for repetition `rep` of a shape: different streams for different shapes and
/// repetitions, the same in every run.
pub(crate) fn seed(shape: u64, rep: u64) -> u64 {
    shape.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ rep.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn names_are_unique_and_found() {
        for (i, s) in SHAPES.iter().enumerate() {
            assert!(SHAPES[..i].iter().all(|o| o.name != s.name));
            assert!(std::ptr::eq(find(s.name).unwrap(), s));
        }
        assert!(find("nope").is_none());
    }
}
