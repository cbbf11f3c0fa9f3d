//! What the conformance functions share: how time passes, the store config
//! they run on, and records to store. Used by every test binary that runs the
//! suite (`tests/store.rs`, `tests/store_cluster.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis::clock::Clock;
use portcullis::config::{Secret, StoreConfig};
use portcullis::store::{AuditKind, AuditRecord, AuthLevel, SessionRecord};
use sha2::{Digest, Sha256};

/// How a time-dependent test lets time pass. Redis keeps time by its own
/// `TIME`, so on Redis the test really waits, with margins of at least 400 ms
/// around every boundary so a busy machine cannot tip a check over; the memory
/// store runs on a manual clock that the test sets, so there it is exact.
pub enum Time {
    Manual(Clock),
    Real,
}

impl Time {
    pub fn now_ms(&self) -> u64 {
        match self {
            Time::Manual(c) => c.now_ms(),
            Time::Real => now_ms(),
        }
    }

    pub fn now_s(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// Lets `d` pass.
    pub async fn pass(&self, d: Duration) {
        match self {
            Time::Manual(c) => c.advance(d),
            Time::Real => tokio::time::sleep(d).await,
        }
    }

    /// Moves to just after the next whole second and returns it. Session times
    /// have one-second resolution, so tests about them start on a boundary.
    pub async fn next_second(&self) -> u64 {
        let second = self.now_s() + 1;
        self.at(second, 20).await;
        second
    }

    /// Moves to `ms` milliseconds past the unix second `second` (at once if
    /// that has passed).
    pub async fn at(&self, second: u64, ms: u64) {
        let target = second * 1000 + ms;
        let now = self.now_ms();
        if target > now {
            self.pass(Duration::from_millis(target - now)).await;
        }
    }
}

/// The default store config at `url`, with a deadline generous enough for a
/// thousand concurrent operations on a busy two-core machine.
pub fn config(url: &str) -> StoreConfig {
    StoreConfig { url: Secret::new(url), timeout: Duration::from_secs(5), ..StoreConfig::default() }
}

/// Wall-clock unix seconds (both backends use this machine's clock).
pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

pub fn now_ms() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    u64::try_from(now.as_millis()).expect("ms fit u64")
}

/// A one-factor session record for `user`.
pub fn session(user: &str, last_seen: u64, idle_secs: u64, absolute_expiry: u64) -> SessionRecord {
    SessionRecord {
        user: user.to_owned(),
        level: AuthLevel::OneFactor,
        created: last_seen,
        last_seen,
        idle_secs,
        absolute_expiry,
        remember_me: false,
        ip: "192.0.2.10".to_owned(),
        device: "Firefox on Linux".to_owned(),
        credential: "fingerprint".to_owned(),
    }
}

/// A session of `user` with an hour of idle time and a day to live.
pub fn live_session(user: &str) -> SessionRecord {
    let now = now_s();
    session(user, now, 3600, now + 86_400)
}

/// The keyed hash a caller would pass for `code` (the store never sees codes).
pub fn code_hash(code: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(code.as_bytes()));
    out
}

/// A login-attempt audit entry; `details` tells entries apart.
pub fn audit_entry(user: Option<&str>, details: &str) -> AuditRecord {
    AuditRecord {
        time: now_s(),
        kind: AuditKind::LoginAttempt,
        event: "success".to_owned(),
        username: user.unwrap_or("nobody").to_owned(),
        user: user.map(str::to_owned),
        ip: "192.0.2.10".to_owned(),
        user_agent: "curl/8.5".to_owned(),
        details: details.to_owned(),
        actor: None,
    }
}
