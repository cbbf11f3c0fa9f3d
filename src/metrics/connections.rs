//! How many connections the process's listeners hold, and how many of them
//! sleep: counted by the server as connections open, sleep and end, read
//! here when `/metrics` is rendered. Plain atomics (not the registry's
//! gauges), so a connection costs two relaxed additions.

use std::sync::atomic::{AtomicI64, Ordering};

/// How many connections the process's listeners hold, and how many of them sleep.
#[derive(Debug, Clone, Copy)]
pub struct Connections {
    pub open: i64,
    pub asleep: i64,
}

static OPEN: AtomicI64 = AtomicI64::new(0);
static ASLEEP: AtomicI64 = AtomicI64::new(0);

/// The connections open and asleep now, for `/metrics`.
pub fn connections() -> Connections {
    Connections { open: OPEN.load(Ordering::Relaxed), asleep: ASLEEP.load(Ordering::Relaxed) }
}

/// One connection counted (open, or asleep) until it is dropped.
pub struct Counted(&'static AtomicI64);

impl Counted {
    /// Counts an open connection.
    #[inline]
    pub fn open() -> Counted {
        Counted::new(&OPEN)
    }

    /// Counts a sleeping connection.
    #[inline]
    pub fn asleep() -> Counted {
        Counted::new(&ASLEEP)
    }

    fn new(count: &'static AtomicI64) -> Counted {
        count.fetch_add(1, Ordering::Relaxed);
        Counted(count)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
