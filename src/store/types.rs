//! What the store deals in: the records it keeps, the answers of its
//! operations, its errors, and the small encodings both backends share.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Most audit entries kept in a user's own trail: what a search by user
/// finds (the global trail keeps theirs longer, among everyone's). Ten
/// thousand users' full trails (a million records) take about 345 MB in Redis.
pub const AUDIT_PER_USER: usize = 100;
/// Most audit entries the memory store keeps in its global trail (it lives
/// in the gateway's memory).
pub const AUDIT_GLOBAL: usize = 10_000;
/// About how many audit entries Redis keeps in its global trail (trimmed
/// approximately, `XADD MAXLEN ~`): about 345 MB of Redis memory when full
/// (bench/console.sh).
pub const AUDIT_GLOBAL_REDIS: usize = 1_000_000;
/// Most entries one audit search looks at before it answers with what it
/// found and where to go on (a filter that matches little cannot make one
/// request read the whole trail).
pub const AUDIT_SCAN_BUDGET: usize = 5_000;
/// Most known IPs remembered per user; the least recently seen is forgotten first.
pub const KNOWN_IPS_PER_USER: usize = 64;
/// Most events `rate_record` keeps per window; the count saturates there.
pub const RATE_RECORD_CAP: u32 = 10_000;

/// Why a store operation failed. Every variant fails closed: the gateway answers 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store operation timed out")]
    Timeout,
    #[error("store holds unreadable data: {0}")]
    Corrupt(String),
    #[error("store is full")]
    Full,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How far a session has authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthLevel {
    OneFactor,
    TwoFactor,
}

/// A logged-in session as stored (under a hash of its id, never the id itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user: String,
    pub level: AuthLevel,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; refreshed by `touch_session`.
    pub last_seen: u64,
    /// Sliding idle lifetime in seconds; each touch extends expiry by this much.
    pub idle_secs: u64,
    /// Unix seconds after which the session is dead however active.
    pub absolute_expiry: u64,
    pub remember_me: bool,
    pub ip: String,
    pub device: String,
    /// Fingerprint of the user's credential when the session was made
    /// (`auth::credential`). Empty in records written before it existed;
    /// the gate ends such a session.
    #[serde(default)]
    pub credential: String,
}

/// A session as listed for its user: `id` is the public handle (the hash), usable
/// to revoke it, and useless as a cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub record: SessionRecord,
}

/// A user's access token (an app password for scripts and clients that
/// cannot type a code), as stored under its id. The secret part of the token
/// is kept only as a keyed hash (`auth::tokens`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub user: String,
    pub name: String,
    /// Hex of the keyed hash of the token's secret part.
    pub hash: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; the token is dead from then on (and the store may
    /// forget it).
    pub expires_at: u64,
    /// Unix seconds of the last request it signed, updated at most once a
    /// minute.
    #[serde(default)]
    pub last_used: Option<u64>,
    /// Fingerprint of the user's credential when the token was made
    /// (`auth::credential`): a change ends the token, as it ends sessions.
    pub credential: String,
}

/// A token as listed for its user: `id` names it (to revoke it) and is no
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    pub record: TokenRecord,
}

/// Password accepted, second factor not yet given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub user: String,
    pub remember_me: bool,
    /// Validated return address, if any.
    pub rd: Option<String>,
    /// Unix seconds.
    pub created: u64,
    pub ip: String,
    pub device: String,
}

/// What a one-time code is for; a new code voids the previous one of the same purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodePurpose {
    Login,
    EnableOtp,
    /// A password reset by e-mail (`auth::reset`).
    PasswordReset,
}

impl CodePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CodePurpose::Login => "login",
            CodePurpose::EnableOtp => "enable_otp",
            CodePurpose::PasswordReset => "password_reset",
        }
    }
}

/// A family of sliding windows; each keeps one log per key (a client IP or a
/// user name). The names are part of the stored keys, so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateBucket {
    /// Password attempts per client IP.
    Login,
    /// Code and backup-code attempts per client IP.
    Verify,
    /// Code resends per client IP.
    Resend,
    /// Code e-mails per client IP.
    OtpEmails,
    /// Failed attempts per client IP (the IP ban).
    IpFailures,
    /// Failed attempts per account (the account lock); `unlock_account` clears it.
    /// Names that match no account are counted here too, under a keyed hash
    /// of the name, so that they lock alike.
    AccountFailures,
    /// Failed password re-checks per session (by its public id).
    SessionFailures,
    /// Repeated-failure alerts per account (at most one per window).
    FailureAlerts,
    /// Wrong authenticator-app codes per pending login (by its public id),
    /// which void the app for that login as wrong tries void an e-mailed code;
    /// also wrong codes confirming a new app, per setup. Counted by
    /// `Store::admit_attempt` (the Redis key is under the user's hash tag).
    TotpFailures,
    /// Password-reset requests per client IP, and per account (under
    /// `user:` and the name).
    PasswordReset,
}

impl RateBucket {
    pub const ALL: [RateBucket; 10] = [
        RateBucket::Login,
        RateBucket::Verify,
        RateBucket::Resend,
        RateBucket::OtpEmails,
        RateBucket::IpFailures,
        RateBucket::AccountFailures,
        RateBucket::SessionFailures,
        RateBucket::FailureAlerts,
        RateBucket::TotpFailures,
        RateBucket::PasswordReset,
    ];

    /// The buckets keyed by client IP (what `portcullis unlock --ip` clears).
    pub const PER_IP: [RateBucket; 6] = [
        RateBucket::Login,
        RateBucket::Verify,
        RateBucket::Resend,
        RateBucket::OtpEmails,
        RateBucket::IpFailures,
        RateBucket::PasswordReset,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RateBucket::Login => "login",
            RateBucket::Verify => "verify",
            RateBucket::Resend => "resend",
            RateBucket::OtpEmails => "otp_emails",
            RateBucket::IpFailures => "ip_failures",
            RateBucket::AccountFailures => "account_failures",
            RateBucket::SessionFailures => "session_failures",
            RateBucket::FailureAlerts => "failure_alerts",
            RateBucket::TotpFailures => "totp_failures",
            RateBucket::PasswordReset => "password_reset",
        }
    }
}

/// Result of checking a code; the attempt is counted in the same atomic step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Ok,
    Wrong {
        remaining: u32,
    },
    /// The last allowed attempt failed (or attempts were already used up); the code is void.
    Exhausted,
    Expired,
    /// No code was issued (or it was voided).
    None,
}

/// Result of a rate-limit hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed { remaining: u32 },
    Limited { retry_after: Duration },
}

/// The limits a second factor's answer is admitted under
/// (`Store::admit_attempt`).
#[derive(Debug, Clone, Copy)]
pub struct AttemptLimits<'a> {
    /// Failures the account may have within `window` (`lockout.account_failures`).
    pub limit: u32,
    pub window: Duration,
    /// How long the account stays locked once its window is full.
    pub lock_for: Duration,
    /// A narrower cap of its own (a pending login's wrong app codes, a new
    /// app's wrong confirming codes): its key (unique to the login or
    /// setup), limit and window. Answers past it are refused before any
    /// comparison.
    pub cap: Option<(&'a str, u32, Duration)>,
}

/// A second factor's answer admitted for comparison. Its failure is
/// counted before the answer is compared, so parallel guesses can never
/// compare more answers than the limits allow; a right answer takes its
/// failure back (`Store::attempt_right`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Names this attempt's entry in the account's failure window (and the
    /// lock it set, if it set one).
    pub ticket: String,
    /// Failures the account may still have after this one.
    pub remaining: u32,
    /// Failures the cap (if one was given) may still have after this one.
    pub cap_remaining: Option<u32>,
    /// This attempt filled the account's window: the account was locked
    /// before its answer was compared (and is unlocked if the answer is right).
    pub locked: bool,
}

/// Whether a second factor's answer may be compared at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Compare it; its failure is already counted.
    Admitted(Attempt),
    /// The account is locked: nothing is compared.
    Locked { retry_after: Duration },
    /// The cap of the login (or setup) is used up: nothing is compared.
    CapReached,
}

/// What the store knew of a login's IP before recording it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpHistory {
    /// The account had no known IP at all: its first recorded login.
    FirstEver,
    /// Other IPs are known, this one is not (or was forgotten).
    Unseen,
    /// Seen before, last at this unix time (seconds).
    LastSeen(u64),
}

impl IpHistory {
    pub fn last_seen(self) -> Option<u64> {
        match self {
            IpHistory::LastSeen(t) => Some(t),
            _ => None,
        }
    }

    pub(crate) fn from_parts(last_seen: Option<u64>, had_any: bool) -> IpHistory {
        match (last_seen, had_any) {
            (Some(t), _) => IpHistory::LastSeen(t),
            (None, true) => IpHistory::Unseen,
            (None, false) => IpHistory::FirstEver,
        }
    }
}

/// Durable per-user state that must survive restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// E-mailed codes turned on.
    pub otp_enabled: bool,
    pub backup_codes_left: u32,
    /// An authenticator app (TOTP) enrolled and confirmed.
    #[serde(default)]
    pub totp_enabled: bool,
    /// One or more passkeys (WebAuthn) registered.
    #[serde(default)]
    pub passkey_enabled: bool,
}

impl UserState {
    /// True when the user enrolled any second factor: every sign-in then
    /// needs two.
    pub fn has_second_factor(&self) -> bool {
        self.otp_enabled || self.totp_enabled || self.passkey_enabled
    }
}

/// What [`Store::forget_user`](crate::store::Store::forget_user) ended and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgottenUser {
    /// Live sessions ended.
    pub sessions: usize,
    /// The durable state removed, as it was: e-mailed codes switch, backup
    /// codes, authenticator app, passkeys.
    pub factors: UserState,
    /// Access tokens revoked.
    pub tokens: usize,
}

/// A user's authenticator-app secrets as stored: sealed (`auth::totp`), so
/// the store holds nothing an app could be set up from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TotpSecrets {
    /// The confirmed secret that sign-ins check.
    pub active: Option<String>,
    /// A secret shown for setup, not yet confirmed by a code.
    pub pending: Option<String>,
}

/// The two kinds of audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    LoginAttempt,
    SecurityEvent,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::LoginAttempt => "login_attempt",
            AuditKind::SecurityEvent => "security_event",
        }
    }
}

/// One audit entry: a login attempt or a security event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix seconds.
    pub time: u64,
    pub kind: AuditKind,
    /// For login attempts the result (success, invalid_credentials, ...); for
    /// security events the event type (otp_enabled, ...).
    pub event: String,
    /// The name as typed (login attempts) or the account.
    pub username: String,
    /// The resolved account, when known.
    pub user: Option<String>,
    pub ip: String,
    pub user_agent: String,
    pub details: String,
    /// The operator who acted, for actions taken in the operator console or
    /// from the command line (`user` is then the account acted on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// Where an entry sits in the audit trail: the unix milliseconds it was
/// kept at and a sequence number within them (a Redis stream id,
/// `ms-seq`). Pages of the trail go on from a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuditCursor {
    pub ms: u64,
    pub seq: u64,
}

impl std::fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl Serialize for AuditCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AuditCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AuditCursor, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|()| serde::de::Error::custom("not an audit cursor (ms-seq)"))
    }
}

impl std::str::FromStr for AuditCursor {
    type Err = ();
    fn from_str(s: &str) -> Result<AuditCursor, ()> {
        let (ms, seq) = s.split_once('-').ok_or(())?;
        let digits = |t: &str| !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(());
        }
        Ok(AuditCursor { ms: ms.parse().map_err(|_| ())?, seq: seq.parse().map_err(|_| ())? })
    }
}

/// A search of the audit trail, newest first. Every filter is an exact
/// match; an empty one matches everything. (The admin endpoint takes it as
/// JSON, for `portcullis audit`.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditQuery {
    /// The account's own trail (`user`), else the global one.
    pub user: Option<String>,
    pub kind: Option<AuditKind>,
    pub event: Option<String>,
    pub ip: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<u64>,
    /// Unix seconds, inclusive.
    pub until: Option<u64>,
    /// Only entries older than this (the previous page's `next`).
    pub before: Option<AuditCursor>,
    /// Most entries answered.
    pub limit: usize,
}

impl AuditQuery {
    /// Whether `rec` passes the filters other than time and user.
    pub fn matches(&self, rec: &AuditRecord) -> bool {
        self.kind.is_none_or(|k| rec.kind == k)
            && self.event.as_deref().is_none_or(|e| rec.event == e)
            && self.ip.as_deref().is_none_or(|ip| rec.ip == ip)
    }
}

/// One page of an audit search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub records: Vec<(AuditCursor, AuditRecord)>,
    /// Where the next page starts, when the trail goes on (the search may
    /// have stopped at its scan budget with fewer than `limit` entries).
    pub next: Option<AuditCursor>,
}

/// What the store holds of one account, for the operator's list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountFacts {
    pub factors: UserState,
    /// Time left on the longest of the locks asked about.
    pub locked_for: Option<Duration>,
    /// Live sessions.
    pub sessions: usize,
    /// Unix seconds of the last login the account's known addresses record.
    pub last_login: Option<u64>,
}

/// An address turned away for its failures (`lockout.ip_failures`), and
/// until when at the latest (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpBan {
    pub ip: String,
    pub until: u64,
}

/// True for strings shaped like `Store::session_id` output (43 base64url chars).
pub(crate) fn is_session_id(id: &str) -> bool {
    id.len() == 43 && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When a session stops being valid, in unix milliseconds: it lives through the
/// whole second `min(last_seen + idle, absolute_expiry)`.
pub(crate) fn session_expiry_ms(last_seen: u64, idle_secs: u64, absolute_expiry: u64) -> u64 {
    last_seen.saturating_add(idle_secs).min(absolute_expiry).saturating_add(1).saturating_mul(1000)
}

/// Lower-case hex of a 32-byte hash.
pub(crate) fn hex32(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Parses what `hex32` wrote.
pub(crate) fn unhex32(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// Takes a mutex even if a panicking thread poisoned it: every critical section
/// of the memory store leaves its maps consistent, so the data is still good.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn session_id_is_base64url_of_sha256() {
        let id = Store::session_id("token");
        assert!(is_session_id(&id));
        assert_ne!(id, Store::session_id("token2"));
        assert!(!is_session_id("{u:alice}"));
    }

    #[test]
    fn hex_round_trips() {
        let mut h = [0u8; 32];
        h[0] = 0xab;
        h[31] = 0x01;
        assert_eq!(unhex32(&hex32(&h)), Some(h));
        assert_eq!(unhex32("zz"), None);
    }

    #[test]
    fn session_lives_through_its_last_second() {
        assert_eq!(session_expiry_ms(100, 10, 1000), 111_000);
        assert_eq!(session_expiry_ms(100, 10, 105), 106_000);
    }
}
