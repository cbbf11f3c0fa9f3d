//! One record of an authentication attempt: the metric
//! (`auth_attempts_total{stage,result}`) and the audit trail's login-attempt
//! record are written by one call, so the two always tell the same story.

use crate::audit::{Actor, AttemptResult, Audit};

/// Which step an attempt was (the metric's `stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The login's name and password.
    Password,
    /// An e-mailed code.
    Email,
    /// An authenticator app's code.
    Totp,
    BackupCode,
    Passkey,
    /// The password asked again before a change to the account.
    Recheck,
    /// An access token presented with a request.
    Token,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Password => "password",
            Stage::Email => "otp",
            Stage::Totp => "totp",
            Stage::BackupCode => "backup_code",
            Stage::Passkey => "passkey",
            Stage::Recheck => "recheck",
            Stage::Token => "token",
        }
    }
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Right (counted; the login's success is audited when its session exists).
    Success,
    /// A wrong answer (a wrong password is `invalid_credentials`).
    Wrong,
    /// A right app code whose time step was used already.
    Replayed,
    /// Refused for too many wrong answers (the code's tries, the login's cap).
    MaxAttempts,
    Expired,
    RateLimited,
    Locked,
    /// The right password for an account the users file disables.
    Disabled,
    /// Nothing to check the answer against (counted, not audited).
    NotEnrolled,
    /// A passkey answer with no challenge to answer (counted, not audited).
    NoCeremony,
}

impl Outcome {
    /// The metric's `result`, and the audit record's (None: not audited).
    fn labels(self, stage: Stage) -> (&'static str, Option<AttemptResult>) {
        let password = matches!(stage, Stage::Password | Stage::Recheck | Stage::Token);
        match self {
            Outcome::Success => ("success", None),
            Outcome::Wrong if password => ("invalid_credentials", Some(AttemptResult::InvalidCredentials)),
            Outcome::Wrong if stage == Stage::Passkey => ("invalid_passkey", Some(AttemptResult::InvalidOtp)),
            Outcome::Wrong => ("invalid_otp", Some(AttemptResult::InvalidOtp)),
            Outcome::Replayed => ("replayed", Some(AttemptResult::InvalidOtp)),
            Outcome::MaxAttempts => ("max_attempts", Some(AttemptResult::InvalidOtp)),
            Outcome::Expired => ("expired_otp", Some(AttemptResult::ExpiredOtp)),
            Outcome::RateLimited => ("rate_limited", Some(AttemptResult::RateLimited)),
            Outcome::Locked => ("locked", Some(AttemptResult::AccountLocked)),
            Outcome::Disabled => ("disabled", Some(AttemptResult::AccountDisabled)),
            Outcome::NotEnrolled => ("not_enrolled", None),
            Outcome::NoCeremony => ("no_ceremony", None),
        }
    }
}

/// Writes attempts; cheap to clone.
#[derive(Clone)]
pub struct Attempts {
    audit: Audit,
}

impl Attempts {
    pub fn new(audit: Audit) -> Attempts {
        Attempts { audit }
    }

    /// Counts the attempt and, unless it is only counted, audits it with
    /// `details`.
    pub async fn record(&self, actor: Actor<'_>, stage: Stage, outcome: Outcome, details: &str) {
        let (result, audited) = outcome.labels(stage);
        crate::metrics::auth_attempt(stage.as_str(), result);
        if let Some(r) = audited {
            self.audit.attempt(actor, r, details).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stage and outcome the code records is a series the metrics
    /// pre-create, so none appears only once it first happens.
    #[test]
    fn every_recorded_label_is_listed_in_the_metrics() {
        let used: &[(Stage, &[Outcome])] = &[
            (
                Stage::Password,
                &[Outcome::Success, Outcome::Wrong, Outcome::RateLimited, Outcome::Locked, Outcome::Disabled],
            ),
            (
                Stage::Email,
                &[
                    Outcome::Success,
                    Outcome::Wrong,
                    Outcome::MaxAttempts,
                    Outcome::Expired,
                    Outcome::RateLimited,
                    Outcome::Locked,
                ],
            ),
            (
                Stage::Totp,
                &[
                    Outcome::Success,
                    Outcome::Wrong,
                    Outcome::Replayed,
                    Outcome::MaxAttempts,
                    Outcome::NotEnrolled,
                    Outcome::RateLimited,
                    Outcome::Locked,
                ],
            ),
            (
                Stage::Passkey,
                &[
                    Outcome::Success,
                    Outcome::Wrong,
                    Outcome::NoCeremony,
                    Outcome::NotEnrolled,
                    Outcome::RateLimited,
                    Outcome::Locked,
                ],
            ),
            (Stage::BackupCode, &[Outcome::Success, Outcome::Wrong, Outcome::RateLimited, Outcome::Locked]),
            (Stage::Recheck, &[Outcome::Success, Outcome::Wrong, Outcome::RateLimited, Outcome::Locked]),
            (Stage::Token, &[Outcome::Success, Outcome::Wrong, Outcome::RateLimited]),
        ];
        for (stage, outcomes) in used {
            let listed = crate::metrics::AUTH_ATTEMPTS.iter().find(|(s, _)| *s == stage.as_str()).map(|(_, r)| *r);
            let listed = listed.unwrap_or_else(|| panic!("{stage:?} is not a stage of auth_attempts_total"));
            for o in *outcomes {
                let (label, _) = o.labels(*stage);
                assert!(listed.contains(&label), "{stage:?} {o:?} records {label:?}, not listed");
            }
        }
    }
}
