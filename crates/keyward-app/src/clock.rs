//! The clock: the only source of "now" in Keyward, so tests can control time.

use std::fmt;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until moved, or moves by a set step at each reading; for tests.
#[derive(Debug)]
pub struct ManualClock {
    /// The time, and how far each reading moves it on.
    now: Mutex<(OffsetDateTime, Duration)>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> ManualClock {
        ManualClock { now: Mutex::new((start, Duration::ZERO)) }
    }

    /// Makes each reading move the clock on by `step` (zero: it stands still again), as a real
    /// clock moves between two readings in one request.
    pub fn tick(&self, step: Duration) {
        self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1 = step;
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0 += by;
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: OffsetDateTime) {
        self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0 = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let mut now = self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (read, step) = *now;
        now.0 = read + step;
        read
    }
}
