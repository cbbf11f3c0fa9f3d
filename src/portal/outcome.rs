//! The one place where login errors become statuses and user-facing messages,
//! shared by the HTML pages and the JSON API.

use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::auth::login::LoginError;

/// Status, message and extra JSON fields for a failed step.
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
    pub extra: Map<String, Value>,
    pub retry_after: Option<u64>,
}

fn minutes(secs: u64) -> String {
    let m = secs.div_ceil(60).max(1);
    if m == 1 { "1 minute".into() } else { format!("{m} minutes") }
}

pub fn failure(e: &LoginError) -> Failure {
    let mut extra = Map::new();
    let mut retry = None;
    let (status, message) = match e {
        LoginError::InvalidCredentials => (StatusCode::BAD_REQUEST, "Invalid username or password.".to_string()),
        LoginError::Disabled => (StatusCode::FORBIDDEN, "This account is disabled.".to_string()),
        LoginError::Locked { retry_after } => {
            let secs = whole_seconds_after(*retry_after);
            retry = Some(secs);
            extra.insert("retry_after".into(), json!(secs));
            extra.insert("account_locked".into(), json!(true));
            (
                StatusCode::FORBIDDEN,
                format!("This account is temporarily locked. Try again in {}.", minutes(retry_after.as_secs())),
            )
        }
        LoginError::RateLimited { retry_after } => {
            let secs = whole_seconds_after(*retry_after);
            retry = Some(secs);
            extra.insert("retry_after".into(), json!(secs));
            (StatusCode::TOO_MANY_REQUESTS, format!("Too many attempts. Please try again in {secs} seconds."))
        }
        LoginError::NoPendingLogin => {
            (StatusCode::BAD_REQUEST, "No pending login, or it has expired. Please sign in again.".to_string())
        }
        LoginError::InvalidCode { remaining } => {
            extra.insert("remaining_attempts".into(), json!(remaining));
            (StatusCode::BAD_REQUEST, format!("Invalid verification code. {remaining} attempt(s) left."))
        }
        LoginError::MaxAttempts => {
            extra.insert("max_attempts_reached".into(), json!(true));
            extra.insert("remaining_attempts".into(), json!(0));
            (StatusCode::BAD_REQUEST, "Maximum attempts reached. Please request a new code.".to_string())
        }
        LoginError::Expired => {
            extra.insert("expired".into(), json!(true));
            (StatusCode::BAD_REQUEST, "The verification code has expired. Please request a new one.".to_string())
        }
        LoginError::InvalidBackupCode => (StatusCode::BAD_REQUEST, "Invalid backup code.".to_string()),
        LoginError::MailFailed => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The verification code could not be sent. Please try again later.".to_string(),
        ),
        LoginError::Store(err) => {
            tracing::error!(error = %err, "store unavailable during login");
            retry = Some(5);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "The sign-in service is temporarily unavailable. Please try again shortly.".to_string(),
            )
        }
        LoginError::Internal(err) => {
            tracing::error!(error = %err, "internal error during login");
            (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong. Please try again.".to_string())
        }
    };
    Failure { status, message, extra, retry_after: retry }
}

/// `Retry-After` in whole seconds, rounded up: a client that waits exactly
/// that long finds the window open (rounding down sent it back a second early,
/// into another 429).
fn whole_seconds_after(d: std::time::Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

/// The JSON body of a failure: `{"success": false, "error": ..., ...extra}`.
pub fn failure_json(f: &Failure) -> Value {
    let mut m = f.extra.clone();
    m.insert("success".into(), json!(false));
    m.insert("error".into(), json!(f.message));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(whole_seconds_after(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_after(Duration::from_millis(59_001)), 60);
        assert_eq!(whole_seconds_after(Duration::from_secs(60)), 60);
        let f = failure(&LoginError::RateLimited { retry_after: Duration::from_millis(4_200) });
        assert_eq!((f.status, f.retry_after), (StatusCode::TOO_MANY_REQUESTS, Some(5)));
        assert_eq!(f.extra["retry_after"], 5);
    }
}
