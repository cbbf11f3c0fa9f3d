//! The seam the login and the password re-checks go through, whichever
//! backend holds the users: find the account a name or address names, then
//! check a password against it. The users file answers from memory and with
//! argon2 (against a dummy hash for a name that is no account, so timing
//! tells nothing); an LDAP directory answers with a search and a bind.

use std::sync::Arc;

use super::directory::User;
use super::watch::{Source, Users};
use crate::auth::password::PasswordChecker;

/// Why a backend could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The directory is down or slow (the login answers 503).
    #[error("user directory unavailable: {0}")]
    Directory(#[from] super::ldap::Failure),
    #[error("{0}")]
    Password(#[from] crate::auth::password::PasswordError),
}

impl Users {
    /// The account `name_or_email` names, as the login form reads it.
    pub async fn find_account(&self, name_or_email: &str) -> Result<Option<Arc<User>>, CheckError> {
        match &self.source {
            Source::File => Ok(self.snapshot().find(name_or_email).cloned()),
            Source::Ldap(directory) => Ok(directory.find(name_or_email).await?.map(|u| self.upsert(u))),
        }
    }

    /// Whether `password` is `user`'s (with `user` None, a name that is no
    /// account: false, at a real check's cost where the backend allows).
    pub async fn check_password(
        &self,
        user: Option<&User>,
        password: &str,
        passwords: &PasswordChecker,
    ) -> Result<bool, CheckError> {
        match (&self.source, user.and_then(|u| u.dn.as_deref())) {
            (Source::Ldap(directory), Some(dn)) => Ok(directory.check_password(dn, password).await?),
            // Nobody to bind as: a directory is asked nothing more.
            (Source::Ldap(_), None) => Ok(false),
            (Source::File, _) => Ok(passwords.verify(user.map(|u| u.password_hash.as_str()), password).await?),
        }
    }

    /// Whether a password check reaches a server outside the gateway (which
    /// must then never see more attempts than the lockouts allow: the login
    /// checks locks before asking it).
    pub fn checks_remotely(&self) -> bool {
        matches!(self.source, Source::Ldap(_))
    }
}
