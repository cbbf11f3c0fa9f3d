//! The one writer of the users file, for every writer there is: the
//! `portcullis user` commands and the gateway itself (password change and
//! reset, the operator console). Each write is a read-modify-write of the
//! whole file under a lock, so two writers never lose each other's edit:
//!
//! 1. lock: `flock` on the file itself. Since every write replaces the file
//!    (a rename), the lock is taken on the inode the path names, and taken
//!    again if the path names another inode once it is held: a writer that
//!    waited on the file its predecessor replaced starts over on the new one.
//!    No lock file is left beside the users file, and a reader of the file
//!    (the gateway) can always take it.
//! 2. read the file through the locked descriptor, edit its text (`edit`:
//!    comments, order and spelling kept), and check the result with the
//!    gateway's own parser, so a reload never meets a file a writer broke;
//! 3. write a temporary file beside it with the file's owner, group and mode
//!    (exactly: a file 0644 for a container's user stays 0644; a new file is
//!    0600), sync it, rename it over the file, sync the directory.
//!
//! A symbolic link is followed: the file it points to is replaced and the
//! link stays. The gateway's watcher sees the rename and applies the file at
//! once. Blocking; async callers use [`UsersWriter`](super::UsersWriter),
//! which runs it on the blocking pool.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use toml_edit::DocumentMut;

use super::directory::{UserDirectory, UserEntry, parse};
use super::edit::{self, Change, EditRefused};

/// How long a writer waits for another's lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Why the users file was not changed.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The users come from a directory Portcullis only reads (LDAP, the
    /// demo's built-in user): passwords and accounts are changed there.
    #[error("password change and user edits are not available with the {backend} user backend")]
    Unavailable { backend: &'static str },
    #[error("no user {name:?} in {path}")]
    UnknownUser { name: String, path: PathBuf },
    #[error("user {name:?} already exists in {path}")]
    UserExists { name: String, path: PathBuf },
    /// Another user has this address, and the login form finds users by it.
    #[error("{email:?} is already the e-mail address of user {owner:?} in {path}")]
    EmailTaken { email: String, owner: String, path: PathBuf },
    /// The file as it is, or as the edit would leave it, is not a users file
    /// the gateway would load; nothing was written.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
}

/// The users file at one path, and the edits it can take.
#[derive(Debug, Clone)]
pub struct UsersFileWriter {
    path: PathBuf,
}

impl UsersFileWriter {
    pub fn new(path: impl Into<PathBuf>) -> UsersFileWriter {
        UsersFileWriter { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds a user. Refused when the name exists, or when another user has
    /// the e-mail address.
    pub fn add(&self, name: &str, user: &UserEntry) -> Result<(), EditError> {
        self.edit(|doc, dir| {
            if let Some(owner) = dir.users().find(|u| u.email.eq_ignore_ascii_case(&user.email)) {
                return Err(EditError::EmailTaken {
                    email: user.email.clone(),
                    owner: owner.username.clone(),
                    path: self.path.clone(),
                });
            }
            edit::add(doc, name, user).map_err(|e| self.refused(e))
        })
    }

    /// Sets a user's password to `phc`, an argon2 PHC string.
    pub fn set_password(&self, name: &str, phc: &str) -> Result<(), EditError> {
        self.update(name, &[Change::Password(phc.to_owned())])
    }

    /// Disables or enables a user; returns false when they already were so
    /// (the file is then left as it is).
    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, EditError> {
        let mut changed = false;
        self.edit(|doc, dir| {
            let user = dir.get(name).ok_or_else(|| self.refused(EditRefused::UnknownUser(name.into())))?;
            changed = user.disabled != disabled;
            if changed {
                edit::update(doc, name, &[Change::Disabled(disabled)]).map_err(|e| self.refused(e))?;
            }
            Ok(())
        })?;
        Ok(changed)
    }

    /// Applies `changes` to a user's entry.
    pub fn update(&self, name: &str, changes: &[Change]) -> Result<(), EditError> {
        self.edit(|doc, _| edit::update(doc, name, changes).map_err(|e| self.refused(e)))
    }

    /// Removes a user's entry (the store's state of the user is the caller's:
    /// `Store::forget_user`).
    pub fn remove(&self, name: &str) -> Result<(), EditError> {
        self.edit(|doc, _| edit::remove(doc, name).map_err(|e| self.refused(e)))
    }

    fn refused(&self, e: EditRefused) -> EditError {
        let path = self.path.clone();
        match e {
            EditRefused::UnknownUser(name) => EditError::UnknownUser { name, path },
            EditRefused::UserExists(name) => EditError::UserExists { name, path },
            EditRefused::Shape(why) => EditError::Invalid(format!("{}: {why}", path.display())),
        }
    }

    /// Locks the file, reads it, lets `change` edit it (seeing the users as
    /// the gateway would), checks the result and replaces the file with it.
    /// A missing file is created (0600) empty first.
    fn edit(
        &self,
        change: impl FnOnce(&mut DocumentMut, &UserDirectory) -> Result<(), EditError>,
    ) -> Result<(), EditError> {
        let path = self.target()?;
        let io = |e: std::io::Error| EditError::Io(format!("{}: {e}", path.display()));
        let mut locked = lock(&path).map_err(io)?;
        let mut text = String::new();
        locked.read_to_string(&mut text).map_err(io)?;
        let before = parse(&path, &text).map_err(|e| EditError::Invalid(format!("{e}; fix the file first")))?;
        let mut doc: DocumentMut =
            text.parse().map_err(|e| EditError::Invalid(format!("{}: {e}; fix the file first", path.display())))?;
        change(&mut doc, &before)?;
        let new = doc.to_string();
        parse(&path, &new).map_err(|e| EditError::Invalid(format!("the edit would leave an invalid file: {e}")))?;
        if new != text {
            replace(&path, &locked, new.as_bytes()).map_err(io)?;
        }
        // The lock is held until the new file is in place.
        drop(locked);
        Ok(())
    }

    /// The path to write: the configured one, or the file a symbolic link there names.
    fn target(&self) -> Result<PathBuf, EditError> {
        match std::fs::canonicalize(&self.path) {
            Ok(real) => Ok(real),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling link would be replaced by a file: say so instead.
                if std::fs::symlink_metadata(&self.path).is_ok() {
                    return Err(EditError::Io(format!("{}: a link to a missing file", self.path.display())));
                }
                Ok(self.path.clone())
            }
            Err(e) => Err(EditError::Io(format!("{}: {e}", self.path.display()))),
        }
    }
}

/// Opens `path` and holds its lock, on the inode the path names once the lock
/// is held (see the module's note). Creates the file (empty, 0600) if missing.
// A real deadline, on the blocking pool (the writer runs there), not a runtime thread.
#[allow(clippy::disallowed_methods)]
fn lock(path: &Path) -> std::io::Result<File> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_empty(path)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        wait_for_lock(&file, deadline)?;
        if same_file(&file, path)? {
            return Ok(file);
        }
        // Replaced while we waited: the lock guards a file no longer there.
    }
}

// Polls flock on the blocking pool (the writer runs there), not a runtime thread.
#[allow(clippy::disallowed_methods)]
fn wait_for_lock(file: &File, deadline: Instant) -> std::io::Result<()> {
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("another writer has held the file's lock for {} s", LOCK_WAIT.as_secs()),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Whether `path` still names the open `file`.
fn same_file(file: &File, path: &Path) -> std::io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (held, named) = (
            file.metadata()?,
            match std::fs::metadata(path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            },
        );
        Ok((held.dev(), held.ino()) == (named.dev(), named.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        Ok(true)
    }
}

/// Creates an empty users file, readable by its owner only; someone else
/// creating it first is as good.
fn create_empty(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(f) => f.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces `path` (open and locked as `old`) by a file holding `bytes`, with
/// `old`'s owner, group and mode, in one rename.
fn replace(path: &Path, old: &File, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Hidden, and named after the file so the watcher can tell it apart. Only
    // the lock holder writes it, so one name serves; a crash's leftover (with
    // whatever mode) is removed, not reused.
    let tmp = dir.join(format!(".{name}.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        #[cfg(unix)]
        keep_owner_and_mode(&f, &old.metadata()?)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Gives `f` the owner, group and permission bits of the file it replaces,
/// exactly: the mode says who may read the file (the gateway's user, a
/// container's), so a writer neither widens nor narrows it.
#[cfg(unix)]
fn keep_owner_and_mode(f: &File, old: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let new = f.metadata()?;
    if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
        std::os::unix::fs::fchown(f, Some(old.uid()), Some(old.gid())).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot keep the file's owner and group ({}:{}): {e}; run this as root or as its owner",
                    old.uid(),
                    old.gid()
                ),
            )
        })?;
    }
    // After the change of owner, which clears the set-id bits.
    f.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J8I4fhkHh1u7yDw4x2JRq2x3v3Kwm3bD8d1p4C4mYfI";

    fn entry(email: &str) -> UserEntry {
        UserEntry { email: email.into(), password: HASH.into(), ..Default::default() }
    }

    #[test]
    fn a_new_file_is_created_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/users.toml");
        let w = UsersFileWriter::new(&path);
        w.add("alice", &entry("alice@example.com")).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
        assert!(crate::auth::users::load(&path).unwrap().get("alice").is_some());
        assert!(!dir.path().join("sub/.users.toml.tmp").exists(), "no temporary file is left");
    }

    #[test]
    fn a_refused_edit_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let w = UsersFileWriter::new(&path);
        w.add("alice", &entry("alice@example.com")).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(w.add("alice", &entry("a2@example.com")), Err(EditError::UserExists { .. })));
        let taken = w.add("bob", &entry("ALICE@example.com"));
        assert!(matches!(&taken, Err(EditError::EmailTaken { owner, .. }) if owner == "alice"), "{taken:?}");
        assert!(matches!(w.set_password("bob", HASH), Err(EditError::UnknownUser { .. })));
        let bad = w.set_password("alice", "not a hash");
        assert!(matches!(&bad, Err(EditError::Invalid(m)) if m.contains("users.alice.password")), "{bad:?}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_file_the_gateway_would_refuse_is_not_edited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(&path, "[users.bob]\nemail = \"bob@x\"\npassword = \"plain\"\n").unwrap();
        let e = UsersFileWriter::new(&path).add("alice", &entry("alice@example.com")).unwrap_err();
        assert!(e.to_string().contains("users.bob.password") && e.to_string().contains("fix the file first"), "{e}");
    }

    #[test]
    fn a_link_to_the_users_file_stays_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        let link = dir.path().join("users.toml");
        std::fs::write(&real, "").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        UsersFileWriter::new(&link).add("alice", &entry("alice@example.com")).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(std::fs::read_to_string(&real).unwrap().contains("[users.alice]"));
    }

    #[test]
    fn disabling_twice_changes_the_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let w = UsersFileWriter::new(&path);
        w.add("alice", &entry("alice@example.com")).unwrap();
        assert!(w.set_disabled("alice", true).unwrap());
        let once = std::fs::read(&path).unwrap();
        assert!(!w.set_disabled("alice", true).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), once);
        assert!(crate::auth::users::load(&path).unwrap().get("alice").unwrap().disabled);
        assert!(w.set_disabled("alice", false).unwrap());
        assert!(!crate::auth::users::load(&path).unwrap().get("alice").unwrap().disabled);
    }

    /// Threads of one process, each with its own descriptor (flock locks
    /// belong to the open file, so they exclude each other as processes do).
    #[test]
    fn concurrent_writers_lose_no_edit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::thread::scope(|s| {
            for i in 0..8 {
                let path = &path;
                s.spawn(move || {
                    let w = UsersFileWriter::new(path);
                    for j in 0..5 {
                        w.add(&format!("u{i}-{j}"), &entry(&format!("u{i}-{j}@example.com"))).unwrap();
                    }
                });
            }
        });
        assert_eq!(crate::auth::users::load(&path).unwrap().len(), 40);
    }
}
