//! Why an authentication step failed, in one small vocabulary for the login
//! and the account actions alike: a wrong answer is `Wrong` whichever secret
//! it was, and says which (`Factor`). The reply module gives each its status
//! and its words, in one place.

use std::time::Duration;

use crate::auth::passkey::PasskeyError;
use crate::store::StoreError;

/// A secret a person gives: a second factor, or the password asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    /// A code e-mailed to the address on file.
    Email,
    /// A code from an authenticator app.
    Totp,
    Passkey,
    BackupCode,
    /// The password, asked again before a change to the account.
    Password,
}

impl Factor {
    /// The name the API and the audit trail use (`method`, `second_factors`).
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Email => "email",
            Factor::Totp => "totp",
            Factor::Passkey => "passkey",
            Factor::BackupCode => "backup_code",
            Factor::Password => "password",
        }
    }
}

/// Why a token could not be made or revoked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("Give the token a name (at most 64 characters).")]
    BadName,
    #[error("A token lives at most 365 days.")]
    TooLong,
    #[error("This account already has the most tokens allowed (50). Revoke one first.")]
    TooMany,
    #[error("No such token.")]
    NoSuchToken,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The login's name and password (one answer for an unknown name).
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
    /// A wrong answer. `remaining`: wrong answers left before what it counts
    /// against refuses (the code, the app for this login or setup, or the
    /// account's lock); None where the person is told no count.
    #[error("wrong {}", factor.as_str())]
    Wrong { factor: Factor, remaining: Option<u32> },
    /// Too many wrong answers: the e-mailed code is void, or the app is
    /// refused for this login (another factor still works).
    #[error("too many wrong {} answers", factor.as_str())]
    Exhausted { factor: Factor },
    /// Too many wrong codes confirming a new app: its setup starts again.
    #[error("too many wrong codes for this setup")]
    SetupExhausted,
    /// The e-mailed code expired (or was never sent).
    #[error("code expired")]
    Expired,
    /// The account has no such factor to check an answer against.
    #[error("no {} enrolled", factor.as_str())]
    NotEnrolled { factor: Factor },
    /// The answer came before its question (a passkey sign-in, an app's
    /// setup), or after it expired.
    #[error("{} not started", factor.as_str())]
    NotStarted { factor: Factor },
    /// The factor is enrolled already (one app at a time).
    #[error("{} already enrolled", factor.as_str())]
    AlreadyEnrolled { factor: Factor },
    /// A change to the account that needs the password, without it.
    #[error("password required")]
    PasswordRequired,
    #[error("no such session")]
    NoSuchSession,
    /// Adding or removing a passkey failed for a passkey's own reason.
    #[error(transparent)]
    Passkey(PasskeyError),
    /// Making or revoking an access token failed for a token's own reason.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A new password too easy to guess (zxcvbn), with zxcvbn's advice.
    #[error("weak password")]
    WeakPassword { advice: String },
    /// The new password is the current one.
    #[error("same password")]
    SamePassword,
    /// The users live in a directory Portcullis only reads.
    #[error("passwords cannot be changed here")]
    PasswordsReadOnly,
    /// A reset's e-mailed code was wrong, used up or expired, or no account
    /// matched: one answer for all.
    #[error("reset refused")]
    ResetRefused,
    /// A reset of an account with a second factor, without a right code
    /// from it (or a backup code).
    #[error("second factor required for a reset")]
    ResetNeedsSecondFactor,
    #[error("mail could not be sent")]
    MailFailed,
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
    /// The user directory (LDAP) is down or slow: no answer either way.
    #[error("{0}")]
    Directory(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::auth::users::CheckError> for AuthError {
    fn from(e: crate::auth::users::CheckError) -> Self {
        match e {
            crate::auth::users::CheckError::Directory(e) => AuthError::Directory(e.to_string()),
            e => AuthError::Internal(e.to_string()),
        }
    }
}

impl From<PasskeyError> for AuthError {
    fn from(e: PasskeyError) -> Self {
        match e {
            PasskeyError::Store(e) => AuthError::Store(e),
            e => AuthError::Passkey(e),
        }
    }
}
