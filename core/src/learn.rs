//! The learned purge delay: how long freed pages stay resident, chosen
//! from how long the program takes to reuse them.
//!
//! ```text
//!  release_page ----------------------------> released += 1
//!  take_page of a page freed d ms ago ------> reuse distance d (log2 bucket),
//!    (dirty: warm; purged since: cold)          whether it was warm or cold
//!  every WINDOW_EVENTS events: propose the delay that keeps TARGET of the
//!  reuses warm (or the floor when few freed pages come back at all);
//!  apply it after the proposals agree (up: 2 windows, down: 4, and at
//!  least 2 buckets lower) -> delay_ms, read when a purge deadline is set
//! ```
//!
//! The distance is measured from each page's own release to its reuse, so
//! it is the same whatever the current delay: a purged page that comes back
//! says how much longer it should have stayed. Pages reused by another heap
//! (a cached segment) count too; a segment given back to the provider in
//! between is a fresh mapping and tells nothing.
//!
//! Modes (`config::LEARN_*`, in `Options::learn`): off (the option's delay, nothing observed), on
//! (observed and applied), frozen (observed, not applied: the option's
//! delay stays, and [`PurgeDelayLearner::proposed_ms`] says what learning
//! would have chosen, to be pasted back as a fixed setting).
//!
//! Everything here runs on slow paths (a page taken or released); a window
//! is closed by the thread whose event completes it, under a try-lock, so
//! the result depends on the sequence of events alone (deterministic
//! under a test clock).
//!
//! Invariants: `LEARN_DELAY_MIN_MS <= delay_ms <= LEARN_DELAY_MAX_MS` once
//! learning has changed it; `proposed_ms` is the last window's proposal.

use crate::config::{Options, LEARN_OFF, LEARN_ON};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};


/// Bounds of the learned delay (ms): a page is never kept longer than a
/// second for reuse (the BigCache's warm limit), and at least 1 ms.
pub const LEARN_DELAY_MIN_MS: usize = 1;
pub const LEARN_DELAY_MAX_MS: usize = 1024;
/// Events (releases and reuses) per window: enough that one burst does not
/// decide, few enough that a phase change is followed within a few bursts.
pub const WINDOW_EVENTS: u32 = 256;
/// Fraction of reuses (in 1/256) the delay should find warm.
const TARGET_WARM: u32 = 230; // 90 %
/// Below this many reuses per release (in 1/256), freed pages rarely come
/// back: keep them no longer than the floor.
const RARE_REUSE: u32 = 32; // 1 in 8
/// Windows in a row whose proposals must agree before the delay moves.
const DWELL_UP: u8 = 2;
const DWELL_DOWN: u8 = 4;

/// Reuse distances in power-of-two buckets of milliseconds: bucket 0 is
/// below 1 ms, bucket `b` is `[2^(b-1), 2^b)`, the last one everything
/// from `LEARN_DELAY_MAX_MS` on (not worth keeping a page for).
const BUCKETS: usize = 12;
static_assertions::const_assert_eq!(1usize << (BUCKETS - 2), LEARN_DELAY_MAX_MS);

fn bucket_of(distance_ms: u64) -> usize {
    ((u64::BITS - distance_ms.leading_zeros()) as usize).min(BUCKETS - 1)
}

/// The delay that keeps a reuse of bucket `b` warm: its upper bound.
fn bucket_delay(bucket: usize) -> usize {
    (1usize << bucket).clamp(LEARN_DELAY_MIN_MS, LEARN_DELAY_MAX_MS)
}

/// The purge-delay learner of one allocator instance.
pub struct PurgeDelayLearner {
    /// The learned delay; 0 until learning has moved it (then the option's
    /// value stands).
    delay_ms: AtomicUsize,
    /// The last window's proposal (0: none yet).
    proposed_ms: AtomicUsize,
    reuses: [AtomicU32; BUCKETS],
    warm_reuses: AtomicU32,
    released: AtomicU32,
    events: AtomicU32,
    closing: AtomicBool,
    /// Direction and count of agreeing proposals (closing thread only).
    streak: AtomicU8,
    streak_up: AtomicBool,
    /// The least (up) or largest (down) proposal of the streak.
    streak_ms: AtomicUsize,
    /// Windows closed, and delay changes made (statistics, tests).
    pub windows: AtomicU32,
    pub changes: AtomicU32,
}

impl PurgeDelayLearner {
    pub const fn new() -> Self {
        PurgeDelayLearner {
            delay_ms: AtomicUsize::new(0),
            proposed_ms: AtomicUsize::new(0),
            reuses: [const { AtomicU32::new(0) }; BUCKETS],
            warm_reuses: AtomicU32::new(0),
            released: AtomicU32::new(0),
            events: AtomicU32::new(0),
            closing: AtomicBool::new(false),
            streak: AtomicU8::new(0),
            streak_up: AtomicBool::new(false),
            streak_ms: AtomicUsize::new(0),
            windows: AtomicU32::new(0),
            changes: AtomicU32::new(0),
        }
    }

    /// The delay to use now: the learned one when learning is on and has
    /// moved it, else the configured one.
    #[inline]
    pub fn delay_ms(&self, options: &Options) -> usize {
        let learned = self.delay_ms.load(Ordering::Relaxed);
        if options.learn.load(Ordering::Relaxed) == LEARN_ON && learned != 0 {
            learned
        } else {
            options.purge_delay_ms.load(Ordering::Relaxed)
        }
    }

    /// What the last window proposed (0: no window closed yet): in frozen
    /// mode, the value learning would use.
    pub fn proposed_ms(&self) -> usize {
        self.proposed_ms.load(Ordering::Relaxed)
    }

    /// A page was released (became dirty).
    pub fn page_released(&self, options: &Options) {
        if options.learn.load(Ordering::Relaxed) != LEARN_OFF {
            self.released.fetch_add(1, Ordering::Relaxed);
            self.event(options);
        }
    }

    /// A page released `distance_ms` ago was taken again, `warm` (still
    /// resident) or purged in between.
    pub fn page_reused(&self, options: &Options, distance_ms: u64, warm: bool) {
        if options.learn.load(Ordering::Relaxed) != LEARN_OFF {
            self.reuses[bucket_of(distance_ms)].fetch_add(1, Ordering::Relaxed);
            if warm {
                self.warm_reuses.fetch_add(1, Ordering::Relaxed);
            }
            self.event(options);
        }
    }

    fn event(&self, options: &Options) {
        if self.events.fetch_add(1, Ordering::Relaxed) + 1 >= WINDOW_EVENTS
            && self.closing.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
        {
            if self.events.load(Ordering::Relaxed) >= WINDOW_EVENTS {
                self.close_window(options.purge_delay_ms.load(Ordering::Relaxed));
            }
            self.closing.store(false, Ordering::Release);
        }
    }

    /// Read and reset the window's counts, propose a delay, and apply it
    /// once enough windows agree.
    fn close_window(&self, configured: usize) {
        self.events.store(0, Ordering::Relaxed);
        let released = self.released.swap(0, Ordering::Relaxed);
        self.warm_reuses.swap(0, Ordering::Relaxed);
        let mut counts = [0u32; BUCKETS];
        for (count, bucket) in counts.iter_mut().zip(&self.reuses) {
            *count = bucket.swap(0, Ordering::Relaxed);
        }
        let reuses: u32 = counts.iter().sum();
        let proposal = if reuses as u64 * 256 < released as u64 * RARE_REUSE as u64 {
            LEARN_DELAY_MIN_MS
        } else {
            // The least bucket bound that covers TARGET_WARM of the reuses.
            let mut covered = 0u64;
            let mut bucket = BUCKETS - 1;
            for (b, &count) in counts.iter().enumerate() {
                covered += count as u64;
                if covered * 256 >= reuses as u64 * TARGET_WARM as u64 {
                    bucket = b;
                    break;
                }
            }
            bucket_delay(bucket)
        };
        self.proposed_ms.store(proposal, Ordering::Relaxed);
        self.windows.fetch_add(1, Ordering::Relaxed);
        let current = match self.delay_ms.load(Ordering::Relaxed) {
            0 => configured.clamp(LEARN_DELAY_MIN_MS, LEARN_DELAY_MAX_MS),
            learned => learned,
        };
        // Dead band: up by any bucket, down only by two or more.
        let up = proposal > current;
        if !up && proposal * 4 > current {
            self.streak.store(0, Ordering::Relaxed);
            return;
        }
        let streak = self.streak.load(Ordering::Relaxed);
        let (count, bound) = if streak > 0 && self.streak_up.load(Ordering::Relaxed) == up {
            let bound = self.streak_ms.load(Ordering::Relaxed);
            (streak + 1, if up { bound.min(proposal) } else { bound.max(proposal) })
        } else {
            (1, proposal)
        };
        if count >= if up { DWELL_UP } else { DWELL_DOWN } {
            self.delay_ms.store(bound, Ordering::Relaxed);
            self.changes.fetch_add(1, Ordering::Relaxed);
            self.streak.store(0, Ordering::Relaxed);
        } else {
            self.streak.store(count, Ordering::Relaxed);
            self.streak_up.store(up, Ordering::Relaxed);
            self.streak_ms.store(bound, Ordering::Relaxed);
        }
    }
}

impl Default for PurgeDelayLearner {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LEARN_FROZEN;

    struct Learner {
        learner: PurgeDelayLearner,
        options: Options,
    }

    impl Learner {
        fn delay_ms(&self) -> usize {
            self.learner.delay_ms(&self.options)
        }
    }

    /// Feed `windows` windows of a trace where every released page comes
    /// back after `distance(i)` ms (one release, one reuse per pair).
    fn run(l: &Learner, windows: u32, mut distance: impl FnMut(u32) -> u64) -> std::vec::Vec<usize> {
        let mut delays = std::vec::Vec::new();
        for i in 0..windows * WINDOW_EVENTS / 2 {
            l.learner.page_released(&l.options);
            let d = distance(i);
            l.learner.page_reused(&l.options, d, d < l.delay_ms() as u64);
            if (i + 1) % (WINDOW_EVENTS / 2) == 0 {
                delays.push(l.delay_ms());
            }
        }
        delays
    }

    /// A learner in `mode` with the default configured delay (10 ms).
    fn learner(mode: u8) -> Learner {
        let options = Options::new();
        options.learn.store(mode, Ordering::Relaxed);
        assert_eq!(options.purge_delay_ms.load(Ordering::Relaxed), 10);
        Learner { learner: PurgeDelayLearner::new(), options }
    }

    #[test]
    fn converges_to_the_reuse_distance_of_bursts_within_a_few_windows() {
        // Bursts every 50 ms: pages come back 40-60 ms after release.
        let l = learner(LEARN_ON);
        let delays = run(&l, 6, |i| 40 + (i as u64 * 7) % 21);
        assert_eq!(delays[0], 10, "one window alone does not move the delay");
        assert_eq!(delays[1], 64, "two agreeing windows do: the bucket bound over 40-60 ms");
        assert!(delays[2..].iter().all(|&d| d == 64), "then it stays: {delays:?}");
        assert_eq!(l.learner.changes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_stationary_trace_does_not_oscillate() {
        // Distances spread over two buckets (3-12 ms), for 40 windows.
        let l = learner(LEARN_ON);
        let delays = run(&l, 40, |i| 3 + (i as u64 * 7) % 10);
        let changes = l.learner.changes.load(Ordering::Relaxed);
        assert!(changes <= 1, "{changes} changes on a stationary trace: {delays:?}");
        assert!(delays[4..].windows(2).all(|w| w[0] == w[1]), "{delays:?}");
        assert_eq!(*delays.last().unwrap(), 16);
    }

    #[test]
    fn comes_down_slowly_and_only_by_two_buckets_or_more() {
        let l = learner(LEARN_ON);
        run(&l, 4, |_| 300);
        assert_eq!(l.delay_ms(), 512);
        // One bucket lower (130-250 ms): inside the dead band.
        run(&l, 8, |_| 200);
        assert_eq!(l.delay_ms(), 512);
        // Much lower: three windows are not enough, the fourth moves it.
        let delays = run(&l, 4, |_| 5);
        assert_eq!(delays, [512, 512, 512, 8]);
    }

    #[test]
    fn respects_its_bounds() {
        let l = learner(LEARN_ON);
        run(&l, 4, |_| 60_000);
        assert_eq!(l.delay_ms(), LEARN_DELAY_MAX_MS, "distances past the bound keep the bound");
        let l = learner(LEARN_ON);
        run(&l, 8, |_| 0);
        assert_eq!(l.delay_ms(), LEARN_DELAY_MIN_MS);
    }

    #[test]
    fn pages_that_never_come_back_are_not_kept() {
        let l = learner(LEARN_ON);
        for _ in 0..8 * WINDOW_EVENTS {
            l.learner.page_released(&l.options);
        }
        assert_eq!(l.delay_ms(), LEARN_DELAY_MIN_MS);
    }

    #[test]
    fn frozen_observes_without_applying_and_off_observes_nothing() {
        let l = learner(LEARN_FROZEN);
        run(&l, 4, |_| 100);
        assert_eq!(l.delay_ms(), 10, "frozen keeps the configured delay");
        assert_eq!(l.learner.proposed_ms(), 128, "and says what it would have chosen");
        let l = learner(LEARN_OFF);
        run(&l, 4, |_| 100);
        assert_eq!((l.delay_ms(), l.learner.proposed_ms(), l.learner.windows.load(Ordering::Relaxed)), (10, 0, 0));
    }
}
