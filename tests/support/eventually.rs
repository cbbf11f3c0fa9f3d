//! Waiting for something to happen: a condition is asked every few
//! milliseconds until it holds, and a wait that runs out fails naming what it
//! waited for. The one place the tests sleep to wait for an event (a log
//! line, a mail, a metric, a reload, a server coming up or going down); a
//! wait ends as soon as the event is seen, so the deadlines are generous.
//!
//! - [`assert_eventually!`]`(cond)`: `cond` may `.await`; `within d,` sets the
//!   deadline, a format string after the condition the failure's message.
//! - [`eventually`] / [`poll`]: the same for a value (`Option<T>`), failing or
//!   giving `None` after the deadline.
//! - [`eventually_blocking`] / [`poll_blocking`]: for plain `#[test]`s and the
//!   fixtures that start processes (no runtime to yield to).
//! - `poll_every` / `poll_blocking_every`: asking less often, when asking costs.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// A wait's deadline unless the test names its own.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How often a condition is asked.
pub const INTERVAL: Duration = Duration::from_millis(10);

/// Asks `found` until it gives a value, for at most `limit`; None after that.
pub async fn poll<T>(limit: Duration, found: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    poll_every(INTERVAL, limit, found).await
}

/// As [`poll`], asking `every` so often (a question that costs, such as a
/// metrics scrape or a process's memory).
pub async fn poll_every<T>(every: Duration, limit: Duration, mut found: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = found().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        pause(every).await;
    }
}

/// The pause between two questions (every wait here takes it).
pub async fn pause(every: Duration) {
    tokio::time::sleep(every).await;
}

/// As [`poll`], failing after `limit` with "waited {limit} for {what}".
pub async fn eventually<T>(what: impl Display, limit: Duration, found: impl AsyncFnMut() -> Option<T>) -> T {
    match poll(limit, found).await {
        Some(v) => v,
        None => panic!("waited {limit:?} for {what}"),
    }
}

/// As [`poll`], blocking the thread between the questions.
pub fn poll_blocking<T>(limit: Duration, found: impl FnMut() -> Option<T>) -> Option<T> {
    poll_blocking_every(INTERVAL, limit, found)
}

/// As [`poll_every`], blocking the thread between the questions.
pub fn poll_blocking_every<T>(every: Duration, limit: Duration, mut found: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = found() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// As [`eventually`], blocking the thread between the questions.
pub fn eventually_blocking<T>(what: impl Display, limit: Duration, found: impl FnMut() -> Option<T>) -> T {
    match poll_blocking(limit, found) {
        Some(v) => v,
        None => panic!("waited {limit:?} for {what}"),
    }
}

/// Asserts that a condition holds within a deadline (10 s unless `within d,`
/// comes first), asking it every 10 ms; the condition may `.await`. Fails
/// with the message given after the condition (formatted when it fails, so
/// it may show what was seen last), or else the condition's text.
///
/// A loop written out where it is used, not a closure handed to [`poll`]:
/// the future of an async closure is not provably `Send`, and some waits
/// run in spawned tasks.
///
/// ```ignore
/// assert_eventually!(gw.log().contains("users file reloaded"));
/// assert_eventually!(within Duration::from_secs(1), status(&c).await == 401, "still in: {}", gw.log());
/// ```
#[allow(unused_macros)]
macro_rules! assert_eventually {
    (within $limit:expr, $cond:expr $(,)?) => {
        $crate::support::assert_eventually!(within $limit, $cond, "{}", "it did not happen")
    };
    (within $limit:expr, $cond:expr, $($message:tt)+) => {{
        let limit: std::time::Duration = $limit;
        let deadline = std::time::Instant::now() + limit;
        loop {
            if $cond {
                break;
            }
            if std::time::Instant::now() >= deadline {
                panic!("waited {limit:?} for {}: {}", stringify!($cond), format!($($message)+));
            }
            $crate::support::eventually::pause($crate::support::eventually::INTERVAL).await;
        }
    }};
    ($cond:expr $(,)?) => {
        $crate::support::assert_eventually!(within $crate::support::eventually::PATIENCE, $cond)
    };
    ($cond:expr, $($message:tt)+) => {
        $crate::support::assert_eventually!(within $crate::support::eventually::PATIENCE, $cond, $($message)+)
    };
}
#[allow(unused_imports)]
pub(crate) use assert_eventually;
