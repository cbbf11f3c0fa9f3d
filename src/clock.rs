//! The gateway's sense of time. Production reads the system clock; tests set a
//! manual clock and move it forward, so code expiry, cooldowns, lockouts and
//! session lifetimes are tested without sleeping.
//!
//! Only the memory store and the state machines read this clock. The Redis
//! backend takes its time from Redis `TIME`, so replicas with skewed clocks
//! agree on expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A cheap, cloneable clock: the system's, or a manual one that only moves
/// when told to (clones share the same time).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock standing still at `unix_ms` until `advance` or `set` moves it.
    pub fn manual(unix_ms: u64) -> Clock {
        Clock { manual: Some(Arc::new(AtomicU64::new(unix_ms))) }
    }

    /// Unix time in milliseconds (0 if the system clock is before 1970).
    // The one reading of the system clock the gateway's time comes from.
    #[allow(clippy::disallowed_methods)]
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(t) => t.load(Ordering::Relaxed),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Unix time in whole seconds.
    pub fn now_unix(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Moves a manual clock forward. The system clock cannot be moved: calling
    /// this on it is a bug in a test, so it panics rather than do nothing.
    pub fn advance(&self, by: Duration) {
        let t = self.manual.as_ref().expect("only a manual clock can be advanced");
        t.fetch_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Sets a manual clock (panics on the system clock, as `advance` does).
    pub fn set(&self, unix_ms: u64) {
        self.manual.as_ref().expect("only a manual clock can be set").store(unix_ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let c = Clock::manual(1_000_000);
        let other = c.clone();
        assert_eq!(c.now_ms(), 1_000_000);
        c.advance(Duration::from_secs(90));
        assert_eq!(other.now_ms(), 1_090_000);
        assert_eq!(other.now_unix(), 1_090);
        other.set(5);
        assert_eq!(c.now_ms(), 5);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(Clock::system().now_unix() > 1_577_836_800);
    }
}
