//! Where changes to users are written, for the gateway's async code (password
//! change and reset, the operator console): the users file, through its one
//! writer on the blocking pool, or nowhere, for a user backend Portcullis only
//! reads (an LDAP directory; the demo's built-in user). There every change is
//! refused with [`EditError::Unavailable`], which the pages turn into "not
//! available here" rather than an error.

use std::path::Path;
use std::sync::Arc;

use super::directory::UserEntry;
use super::edit::Change;
use super::file::{EditError, UsersFileWriter};

/// Where changes to users go; cheap to clone.
#[derive(Debug, Clone)]
pub enum UsersWriter {
    /// The users file.
    File(Arc<UsersFileWriter>),
    /// A backend with no file to write: every change is refused.
    ReadOnly { backend: &'static str },
}

impl UsersWriter {
    pub fn file(path: &Path) -> UsersWriter {
        UsersWriter::File(Arc::new(UsersFileWriter::new(path)))
    }

    /// A backend whose users cannot be changed from here; `backend` names it
    /// in the refusal ("ldap").
    pub fn read_only(backend: &'static str) -> UsersWriter {
        UsersWriter::ReadOnly { backend }
    }

    /// Whether changes can be written (the pages offer password change only then).
    pub fn is_writable(&self) -> bool {
        matches!(self, UsersWriter::File(_))
    }

    /// Sets a user's password to `phc`, an argon2 PHC string.
    pub async fn set_password(&self, name: &str, phc: &str) -> Result<(), EditError> {
        let (name, phc) = (name.to_owned(), phc.to_owned());
        self.run(move |w| w.set_password(&name, &phc)).await
    }

    /// Disables or enables a user; false when they already were so.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, EditError> {
        let name = name.to_owned();
        self.run(move |w| w.set_disabled(&name, disabled)).await
    }

    /// Applies `changes` to a user's entry.
    pub async fn update(&self, name: &str, changes: Vec<Change>) -> Result<(), EditError> {
        let name = name.to_owned();
        self.run(move |w| w.update(&name, &changes)).await
    }

    pub async fn add(&self, name: &str, user: UserEntry) -> Result<(), EditError> {
        let name = name.to_owned();
        self.run(move |w| w.add(&name, &user)).await
    }

    pub async fn remove(&self, name: &str) -> Result<(), EditError> {
        let name = name.to_owned();
        self.run(move |w| w.remove(&name)).await
    }

    /// Runs a blocking edit of the file off the async runtime.
    async fn run<T: Send + 'static>(
        &self,
        edit: impl FnOnce(&UsersFileWriter) -> Result<T, EditError> + Send + 'static,
    ) -> Result<T, EditError> {
        match self {
            UsersWriter::ReadOnly { backend } => Err(EditError::Unavailable { backend }),
            UsersWriter::File(writer) => {
                let writer = writer.clone();
                tokio::task::spawn_blocking(move || edit(&writer))
                    .await
                    .map_err(|e| EditError::Io(format!("the users file's writer failed: {e}")))?
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_only_backend_refuses_every_change_by_name() {
        let w = UsersWriter::read_only("ldap");
        assert!(!w.is_writable());
        let e = w.set_password("alice", "$argon2id$...").await.unwrap_err();
        assert!(matches!(e, EditError::Unavailable { backend: "ldap" }), "{e:?}");
        assert_eq!(e.to_string(), "password change and user edits are not available with the ldap user backend");
        assert!(matches!(w.remove("alice").await, Err(EditError::Unavailable { .. })));
        assert!(matches!(w.set_disabled("alice", true).await, Err(EditError::Unavailable { .. })));
    }

    #[tokio::test]
    async fn the_file_backend_writes_from_async_code() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let w = UsersWriter::file(&path);
        assert!(w.is_writable());
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J8I4fhkHh1u7yDw4x2JRq2x3v3Kwm3bD8d1p4C4mYfI";
        let entry = UserEntry { email: "alice@example.com".into(), password: hash.into(), ..Default::default() };
        w.add("alice", entry).await.unwrap();
        assert!(w.set_disabled("alice", true).await.unwrap());
        let dir = crate::auth::users::load(&path).unwrap();
        assert!(dir.get("alice").unwrap().disabled);
    }
}
