//! The users file's contents: its entries as written ([`UsersFile`],
//! [`UserEntry`]), and the directory the gateway looks users up in
//! ([`UserDirectory`] of [`User`]s), built by [`parse`], which checks every
//! entry and refuses the whole file over one bad entry. The gateway, every
//! writer (`file`) and the fuzz target run this one parser.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::identity::IdentityValues;

/// Allowed user names: also used in store keys and logs, so kept plain.
pub fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b))
}

/// One entry of the users file, as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// argon2 PHC string.
    pub password: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
}

/// The file as a whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: BTreeMap<String, UserEntry>,
}

impl UsersFile {
    /// Reads the file's entries as written; a missing file has none. (The
    /// gateway reads it with [`load`], which also checks every entry.)
    pub fn read(path: &Path) -> Result<UsersFile, UsersError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| UsersError::Invalid { path: path.to_path_buf(), message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::default()),
            Err(source) => Err(UsersError::Io { path: path.to_path_buf(), source }),
        }
    }

    /// The user whose e-mail is `email` (case-insensitive), if any.
    pub fn email_owner(&self, email: &str) -> Option<&str> {
        self.users.iter().find_map(|(n, u)| u.email.eq_ignore_ascii_case(email).then_some(n.as_str()))
    }
}

/// A user as the gateway uses it, with identity header values prepared once.
#[derive(Debug)]
pub struct User {
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub groups: Vec<String>,
    pub disabled: bool,
    /// The identity headers' values for this user.
    pub identity: IdentityValues,
    /// The credential's fingerprint, computed on first use (`auth::credential`):
    /// a session check compares against it instead of hashing on every request.
    pub(crate) fingerprint: std::sync::OnceLock<String>,
    /// A directory user's entry, whose password a bind checks (None: a
    /// users-file user, whose `password_hash` argon2 checks). For a
    /// directory user `password_hash` stands for the password's last change.
    pub dn: Option<String>,
}

/// The parts of a user's credential: a change to any ends their sessions
/// (`auth::credential`).
pub const CREDENTIAL_PARTS: [&str; 3] = ["password", "e-mail", "groups"];

impl User {
    /// The groups in a canonical order (their order in the file means nothing).
    pub fn sorted_groups(&self) -> Vec<&str> {
        let mut g: Vec<&str> = self.groups.iter().map(String::as_str).collect();
        g.sort_unstable();
        g.dedup();
        g
    }

    /// The parts of the credential that differ in `other`, a later version
    /// of this user.
    pub fn credential_changes(&self, other: &User) -> Vec<&'static str> {
        let changed = [
            self.password_hash != other.password_hash,
            self.email != other.email,
            self.sorted_groups() != other.sorted_groups(),
        ];
        CREDENTIAL_PARTS.iter().zip(changed).filter(|(_, c)| *c).map(|(p, _)| *p).collect()
    }
}

/// One consistent view of the users file.
#[derive(Debug, Default)]
pub struct UserDirectory {
    by_name: HashMap<String, Arc<User>>,
    by_email: HashMap<String, String>,
}

impl UserDirectory {
    /// Finds a user by name or (case-insensitive) e-mail, as the login form allows.
    pub fn find(&self, name_or_email: &str) -> Option<&Arc<User>> {
        let key = name_or_email.trim();
        self.by_name.get(key).or_else(|| self.by_email.get(&key.to_ascii_lowercase()).and_then(|n| self.by_name.get(n)))
    }

    pub fn get(&self, username: &str) -> Option<&Arc<User>> {
        self.by_name.get(username)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every user, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = &Arc<User>> {
        self.by_name.values()
    }

    /// The users read from a directory. A name or an address met twice
    /// keeps its first owner (logged): a directory does not promise either
    /// is unique, and the login never looks users up here by address.
    pub fn from_users(users: impl IntoIterator<Item = User>) -> UserDirectory {
        let mut dir = UserDirectory::default();
        for user in users {
            if dir.by_name.contains_key(&user.username) {
                tracing::warn!(user = %user.username, "two directory entries have this name; the second is left out");
                continue;
            }
            dir.by_email.entry(user.email.to_ascii_lowercase()).or_insert_with(|| user.username.clone());
            dir.by_name.insert(user.username.clone(), Arc::new(user));
        }
        dir
    }

    /// This directory with `user` added, or replacing the user of its name.
    pub fn with(&self, user: Arc<User>) -> UserDirectory {
        let mut by_name = self.by_name.clone();
        let mut by_email = self.by_email.clone();
        if let Some(old) = by_name.insert(user.username.clone(), user.clone()) {
            by_email.retain(|_, n| *n != old.username);
        }
        by_email.entry(user.email.to_ascii_lowercase()).or_insert_with(|| user.username.clone());
        UserDirectory { by_name, by_email }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Parses and checks a users file's text.
pub fn parse(path: &Path, text: &str) -> Result<UserDirectory, UsersError> {
    let invalid = |message: String| UsersError::Invalid { path: path.to_path_buf(), message };
    let file: UsersFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut dir = UserDirectory::default();
    for (name, e) in file.users {
        if !valid_username(&name) {
            return Err(invalid(format!("users.{name}: name must be 1-64 of A-Z a-z 0-9 . _ @ + -")));
        }
        if !e.email.contains('@') {
            return Err(invalid(format!("users.{name}.email: not an e-mail address")));
        }
        if argon2::password_hash::phc::PasswordHash::new(&e.password).is_err() {
            return Err(invalid(format!(
                "users.{name}.password: not a PHC hash (make one with `portcullis hash-password`)"
            )));
        }
        let display_name = e.display_name.clone().unwrap_or_else(|| name.clone());
        let header = |s: &str| {
            HeaderValue::from_str(s).map_err(|_| invalid(format!("users.{name}: {s:?} cannot be sent in a header")))
        };
        let identity = IdentityValues {
            user: header(&name)?,
            email: header(&e.email)?,
            name: header(&display_name)?,
            groups: header(&e.groups.join(","))?,
        };
        let email_key = e.email.to_ascii_lowercase();
        if let Some(other) = dir.by_email.insert(email_key, name.clone()) {
            return Err(invalid(format!("users.{name}.email: already used by users.{other}")));
        }
        dir.by_name.insert(
            name.clone(),
            Arc::new(User {
                username: name,
                email: e.email,
                display_name,
                password_hash: e.password,
                groups: e.groups,
                disabled: e.disabled,
                identity,
                fingerprint: std::sync::OnceLock::new(),
                dn: None,
            }),
        );
    }
    // The login form takes a name or an e-mail, names first: a name that is
    // another account's address would take that account's logins by e-mail.
    let mut names: Vec<&String> = dir.by_name.keys().collect();
    names.sort();
    for name in names {
        if let Some(owner) = dir.by_email.get(&name.to_ascii_lowercase())
            && owner != name
        {
            return Err(invalid(format!("users.{name}: the name is the e-mail address of users.{owner}")));
        }
    }
    Ok(dir)
}

/// Reads and parses the users file.
pub fn load(path: &Path) -> Result<UserDirectory, UsersError> {
    let text = std::fs::read_to_string(path).map_err(|source| UsersError::Io { path: path.to_path_buf(), source })?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J8I4fhkHh1u7yDw4x2JRq2x3v3Kwm3bD8d1p4C4mYfI";

    #[test]
    fn users_are_found_by_name_or_email() {
        let text =
            format!("[users.alice]\nemail = \"Alice@Example.com\"\npassword = \"{HASH}\"\ngroups = [\"admins\"]\n");
        let dir = parse(Path::new("u.toml"), &text).unwrap();
        assert_eq!(dir.find("alice").unwrap().email, "Alice@Example.com");
        assert_eq!(dir.find("alice@example.com").unwrap().username, "alice");
        assert_eq!(dir.find("alice").unwrap().identity.groups, "admins");
        assert!(dir.find("bob").is_none());
    }

    #[test]
    fn a_name_that_is_another_accounts_email_is_refused() {
        // The property fuzz/fuzz_targets/users.rs checks: every address finds
        // its owner. Here "Z@B.C" found the account named "z@b.c" instead.
        let text = format!(
            "[users.\"z@b.c\"]\nemail = \"other@b.c\"\npassword = \"{HASH}\"\n\
             [users.zed]\nemail = \"Z@B.C\"\npassword = \"{HASH}\"\n"
        );
        let err = parse(Path::new("u.toml"), &text).expect_err("refused").to_string();
        assert!(err.contains("users.z@b.c: the name is the e-mail address of users.zed"), "{err}");
        // A name that is the account's own address is fine.
        let own = format!("[users.\"zed@b.c\"]\nemail = \"Zed@B.C\"\npassword = \"{HASH}\"\n");
        assert_eq!(parse(Path::new("u.toml"), &own).unwrap().find("ZED@b.c").unwrap().username, "zed@b.c");
    }

    #[test]
    fn a_bad_entry_names_the_user_and_key() {
        let err = parse(Path::new("u.toml"), "[users.bob]\nemail = \"bob@x\"\npassword = \"plain\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("users.bob.password"), "{err}");
        let err = parse(Path::new("u.toml"), "[users.bob]\nemail = \"bob@x\"\n").err().unwrap().to_string();
        assert!(err.contains("password"), "{err}");
    }
}
