//! The directory's operations, as the metrics name them, why one fails,
//! and [`timed`], which runs each under its deadline and records it.

use std::future::Future;

use ldap3::LdapError;
use tokio::time::Instant;

/// A directory operation, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Connect,
    ServiceBind,
    FindUser,
    ReadGroups,
    DisabledCheck,
    UserBind,
    ListUsers,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Connect => "connect",
            Op::ServiceBind => "service_bind",
            Op::FindUser => "find_user",
            Op::ReadGroups => "read_groups",
            Op::DisabledCheck => "disabled_check",
            Op::UserBind => "user_bind",
            Op::ListUsers => "list_users",
        }
    }
}

/// Why the directory could not answer. A login meeting one answers 503.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("the directory did not answer ({}) within ldap.timeout", .0.as_str())]
    Timeout(Op),
    #[error("the directory failed ({op}): {why}", op = .0.as_str(), why = .1)]
    Unavailable(Op, String),
}

impl Failure {
    pub fn op(&self) -> Op {
        match self {
            Failure::Timeout(op) | Failure::Unavailable(op, _) => *op,
        }
    }
}

/// Runs one directory operation before `deadline`, timing it and counting
/// its failure.
pub(super) async fn timed<T>(
    op: Op,
    deadline: Instant,
    work: impl Future<Output = Result<T, LdapError>>,
) -> Result<T, Failure> {
    // The operation's real duration, for its metric.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let result = match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Unavailable(op, e.to_string())),
        Err(_) => Err(Failure::Timeout(op)),
    };
    crate::metrics::directory_operation(op.as_str(), started.elapsed().as_secs_f64(), result.is_ok());
    result
}
