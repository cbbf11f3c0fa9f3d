//! What the Redis backend's files share: the Lua scripts, the JSON encoding of
//! records, and how a Redis error becomes a store error.

use std::sync::LazyLock;

use deadpool_redis::redis::{ErrorKind, RedisError, Script};

use crate::store::types::{StoreError, StoreResult};

/// Redis refuses expiry times past the year 9999 (ms).
pub(super) const MAX_EXPIRY_MS: u64 = 253_402_300_800_000;

/// The Lua scripts, hashed once per process.
pub(super) struct Scripts {
    pub(super) session_put: Script,
    pub(super) session_touch: Script,
    pub(super) session_end: Script,
    pub(super) index_add: Script,
    pub(super) index_prune: Script,
    pub(super) code_issue: Script,
    pub(super) code_verify: Script,
    pub(super) cooldown_start: Script,
    pub(super) rate: Script,
    pub(super) known_ip: Script,
    pub(super) backup_replace: Script,
    pub(super) audit_search: Script,
    pub(super) ban_note: Script,
    pub(super) totp_enable: Script,
    pub(super) totp_use: Script,
    pub(super) attempt_admit: Script,
    pub(super) attempt_right: Script,
    pub(super) passkeys_swap: Script,
    pub(super) user_forget: Script,
    pub(super) session_peek: Script,
    pub(super) token_touch: Script,
    pub(super) token_revoke: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    session_put: Script::new(include_str!("session_put.lua")),
    session_touch: Script::new(include_str!("session_touch.lua")),
    session_end: Script::new(include_str!("session_end.lua")),
    index_add: Script::new(include_str!("index_add.lua")),
    index_prune: Script::new(include_str!("index_prune.lua")),
    code_issue: Script::new(include_str!("code_issue.lua")),
    code_verify: Script::new(include_str!("code_verify.lua")),
    cooldown_start: Script::new(include_str!("cooldown_start.lua")),
    rate: Script::new(include_str!("rate.lua")),
    known_ip: Script::new(include_str!("known_ip.lua")),
    backup_replace: Script::new(include_str!("backup_replace.lua")),
    audit_search: Script::new(include_str!("audit_search.lua")),
    ban_note: Script::new(include_str!("ban_note.lua")),
    totp_enable: Script::new(include_str!("totp_enable.lua")),
    totp_use: Script::new(include_str!("totp_use.lua")),
    attempt_admit: Script::new(include_str!("attempt_admit.lua")),
    attempt_right: Script::new(include_str!("attempt_right.lua")),
    passkeys_swap: Script::new(include_str!("passkeys_swap.lua")),
    user_forget: Script::new(include_str!("user_forget.lua")),
    session_peek: Script::new(include_str!("session_peek.lua")),
    token_touch: Script::new(include_str!("token_touch.lua")),
    token_revoke: Script::new(include_str!("token_revoke.lua")),
});

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("encode: {e}")))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("decode: {e}")))
}

/// Timeouts → `Timeout`; data we cannot read → `Corrupt`; anything else
/// (refused, reset, loading, read-only, ...) → `Unavailable`.
pub(super) fn redis_error(e: RedisError) -> StoreError {
    if e.is_timeout() {
        return StoreError::Timeout;
    }
    match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreError::Corrupt(e.to_string()),
        _ if matches!(e.code(), Some("CORRUPT" | "WRONGTYPE")) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}
