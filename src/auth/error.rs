//! Why a login step failed. The reply module maps each to a status and a
//! message, in one place.

use std::time::Duration;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("account disabled")]
    Disabled,
    #[error("account temporarily locked")]
    Locked { retry_after: Duration },
    #[error("too many attempts")]
    RateLimited { retry_after: Duration },
    #[error("no pending login")]
    NoPendingLogin,
    #[error("invalid code")]
    InvalidCode { remaining: u32 },
    #[error("maximum attempts reached")]
    MaxAttempts,
    #[error("code expired")]
    Expired,
    /// A wrong (or replayed) code from the authenticator app; `remaining`:
    /// wrong codes this login may still have before the app is refused.
    #[error("invalid authenticator code")]
    InvalidTotp { remaining: u32 },
    /// Too many wrong app codes for this login: e-mail or a backup code remain.
    #[error("maximum authenticator attempts reached")]
    TotpExhausted,
    /// The user has no authenticator app to check a code against.
    #[error("no authenticator app")]
    NoTotp,
    /// The passkey's answer did not verify; `remaining`: failures the
    /// account may still have before it locks.
    #[error("passkey refused")]
    InvalidPasskey { remaining: u32 },
    /// The user has no passkey (or passkeys are off on this server).
    #[error("no passkey")]
    NoPasskey,
    /// No passkey sign-in was started for this login, or it expired.
    #[error("passkey sign-in not started")]
    PasskeyNotStarted,
    /// `remaining`: failures the account may still have before it locks.
    #[error("invalid backup code")]
    InvalidBackupCode { remaining: u32 },
    #[error("mail could not be sent")]
    MailFailed,
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}
