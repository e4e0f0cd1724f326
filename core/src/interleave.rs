//! Exhaustive interleaving of two threads over the real cross-thread free
//! protocol (test builds only). The protocol's code marks the places where
//! another thread's step changes what it reads next (`interleave_point!`:
//! before and after each atomic operation of remote.rs, between the steps of
//! abandon and of the delayed-list drain); outside a test they compile to
//! nothing. [`explore`] runs a scenario's two threads, one at a time, under
//! every schedule that switches at most three times (thread A runs `a`
//! points, B runs `b`, then A to its end, then B; and the same starting with
//! B), for every `a` and `b`, and checks the scenario's outcome after each.
//!
//! Limits: the number of points of each thread is taken from the runs
//! where one thread goes wholly before the other (a path that passes more
//! points when interleaved is cut off at that count); a scenario must not
//! stop at a point while it holds a lock the other thread takes (a point
//! inside `trim_abandoned`'s lock, for one), or the other thread spins.
//!
//! A model of sequentially consistent interleavings at the marked points,
//! with a bound on preemptions: not a weak-memory model checker (loom), but
//! it runs the allocator's own code. With the thread-exit fix undone
//! (`drain_delayed_dequeued` through `return_block`), the exit scenario
//! crashes in one of its schedules, as `xfree_bulk` did.

extern crate std;

use std::cell::Cell;
use std::sync::{Condvar, Mutex};
use std::vec::Vec;

std::thread_local! {
    /// This thread's index (0: A, 1: B) while it runs under a schedule.
    static ME: Cell<Option<usize>> = const { Cell::new(None) };
}

/// A schedule: run `segments[i].0` for `segments[i].1` points, then the
/// next segment (`usize::MAX`: to its end).
struct Schedule {
    segments: Vec<(usize, usize)>,
    segment: usize,
    steps: usize,
    turn: usize,
    done: [bool; 2],
    points: [usize; 2],
}

static SCHEDULE: Mutex<Option<Schedule>> = Mutex::new(None);
static TURN: Condvar = Condvar::new();
/// One exploration at a time (the schedule is global).
static EXPLORING: Mutex<()> = Mutex::new(());

impl Schedule {
    /// Move to the next segment whose thread has not finished.
    fn advance(&mut self) {
        self.steps = 0;
        loop {
            self.segment += 1;
            let Some(&(thread, _)) = self.segments.get(self.segment) else {
                // Past the last segment: whoever is left runs to its end.
                self.turn = if self.done[0] { 1 } else { 0 };
                self.segments.push((self.turn, usize::MAX));
                return;
            };
            if !self.done[thread] {
                self.turn = thread;
                return;
            }
        }
    }
}

fn wait_for_turn(me: usize, mut guard: std::sync::MutexGuard<'_, Option<Schedule>>) {
    while guard.as_ref().is_some_and(|s| s.turn != me) {
        guard = TURN.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
}

/// A marked point: count it, and hand over when the segment is used up.
pub fn point() {
    let Some(me) = ME.with(Cell::get) else { return };
    let mut guard = SCHEDULE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = guard.as_mut() else { return };
    s.points[me] += 1;
    s.steps += 1;
    if s.steps >= s.segments[s.segment].1 {
        s.advance();
        TURN.notify_all();
    }
    wait_for_turn(me, guard);
}

/// A retry loop's wait: the other thread runs (to its end if need be).
pub fn wait() {
    let Some(me) = ME.with(Cell::get) else { return };
    let mut guard = SCHEDULE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = guard.as_mut() else { return };
    let other = 1 - me;
    if !s.done[other] {
        s.segments.insert(s.segment + 1, (other, usize::MAX));
        s.advance();
        TURN.notify_all();
    }
    wait_for_turn(me, guard);
}

/// Marks its thread done when dropped, at the end of its work or when it
/// panics (so that the other thread is not left waiting for its turn).
struct Finish(usize);

impl Drop for Finish {
    fn drop(&mut self) {
        let me = self.0;
        ME.with(|m| m.set(None));
        let mut guard = SCHEDULE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = guard.as_mut() {
            s.done[me] = true;
            if !s.done[1 - me] && s.turn == me {
                s.advance();
            }
        }
        TURN.notify_all();
    }
}

/// Run `a` and `b` on two threads under `segments`; returns the points
/// each one passed.
fn run_schedule(segments: Vec<(usize, usize)>, a: &(dyn Fn() + Sync), b: &(dyn Fn() + Sync)) -> [usize; 2] {
    let turn = segments[0].0;
    *SCHEDULE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Schedule { segments, segment: 0, steps: 0, turn, done: [false; 2], points: [0; 2] });
    std::thread::scope(|scope| {
        for (me, f) in [(0, a), (1, b)] {
            scope.spawn(move || {
                ME.with(|m| m.set(Some(me)));
                wait_for_turn(me, SCHEDULE.lock().unwrap_or_else(|e| e.into_inner()));
                // Finished (or panicked): the other thread runs on.
                let _finish = Finish(me);
                f();
            });
        }
    });
    let s = SCHEDULE.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap();
    s.points
}

/// Explore every schedule of `scenario`'s two threads with at most three
/// switches. `scenario()` sets up fresh state and returns the two threads'
/// work and the check of the outcome. Returns the number of schedules run.
pub fn explore<S, A, B, C>(scenario: S) -> usize
where
    S: Fn() -> (A, B, C),
    A: Fn() + Sync,
    B: Fn() + Sync,
    C: FnOnce(),
{
    let _one = EXPLORING.lock().unwrap_or_else(|e| e.into_inner());
    // Each thread wholly before the other first: how many points each passes.
    let (a, b, check) = scenario();
    let points = run_schedule(std::vec![(0, usize::MAX), (1, usize::MAX)], &a, &b);
    check();
    let (a, b, check) = scenario();
    run_schedule(std::vec![(1, usize::MAX), (0, usize::MAX)], &a, &b);
    check();
    let mut runs = 2;
    for first in [0, 1] {
        let second = 1 - first;
        // x = 0 would be x = 1 (a thread runs to its first point anyway);
        // the second thread runs y points, or to its end.
        for x in 1..=points[first] {
            for y in (1..=points[second]).chain([usize::MAX]) {
                let (a, b, check) = scenario();
                run_schedule(std::vec![(first, x), (second, y), (first, usize::MAX), (second, usize::MAX)], &a, &b);
                check();
                runs += 1;
            }
        }
    }
    runs
}
