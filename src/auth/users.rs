//! The users file: who may log in, their e-mail, groups and password hash.
//! Loaded at start; reloaded when the file changes or on SIGHUP. A broken edit
//! keeps the last good copy (and says why in the log), so a typo never locks
//! everyone out. [`UsersFile`] also reads and writes the file for the
//! `portcullis user` commands.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::identity::IdentityValues;
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, Audit, SecurityEvent};
use crate::store::Store;

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

/// Why the users file could not be read or written by a command.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The file (or what would be written) is not a valid users file.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
}

impl UsersFile {
    /// Reads the file; a missing file is an empty one.
    pub fn read(path: &Path) -> Result<UsersFile, EditError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| EditError::Invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::default()),
            Err(e) => Err(EditError::Io(format!("{}: {e}", path.display()))),
        }
    }

    /// Writes the file atomically (a temporary file renamed into place), after
    /// checking that what is written loads back, so a reload never sees a
    /// half-written or invalid file.
    ///
    /// The file holds password hashes: a new one is written 0600. An existing
    /// one keeps its owner, group and mode, less any access for others and
    /// group write (the Debian package's 0640 root:portcullis stays so), so an
    /// edit never widens who can read it. The temporary file has that mode
    /// from its creation on.
    pub fn write(&self, path: &Path) -> Result<(), EditError> {
        let text = toml::to_string_pretty(self).map_err(|e| EditError::Io(e.to_string()))?;
        parse(path, &text).map_err(|e| EditError::Invalid(e.to_string()))?;
        let tmp = path.with_extension("toml.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let existing = std::fs::metadata(path).ok();
            // A temporary file left by a crash may have any mode: start afresh.
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp)?;
            #[cfg(unix)]
            if let Some(old) = &existing {
                keep_owner_and_mode(&f, old)?;
            }
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            EditError::Io(format!("{}: {e}", path.display()))
        })
    }

    /// The user whose e-mail is `email` (case-insensitive), if any.
    pub fn email_owner(&self, email: &str) -> Option<&str> {
        self.users.iter().find_map(|(n, u)| u.email.eq_ignore_ascii_case(email).then_some(n.as_str()))
    }
}

/// Gives the new file `f` the owner and group of the file it replaces, and
/// its mode less group write and any access for others.
#[cfg(unix)]
fn keep_owner_and_mode(f: &std::fs::File, old: &std::fs::Metadata) -> std::io::Result<()> {
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
    f.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o640))
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

/// The live user directory, swapped atomically on reload.
pub struct Users {
    path: PathBuf,
    current: ArcSwap<UserDirectory>,
    stamps: std::sync::Mutex<Stamps>,
}

/// What the poller knows of the file: (modification time, size).
type Stamp = Option<(SystemTime, u64)>;

/// A change is applied only once the file has held still for one poll: an
/// editor that truncates and then writes can be caught in between, and that
/// half-written (say empty) file must not become the user list, ending
/// everyone's sessions.
#[derive(Clone, Copy)]
struct Stamps {
    /// The stamp of the file last loaded.
    applied: Stamp,
    /// The stamp seen at the previous poll.
    seen: Stamp,
}

impl Stamps {
    fn new(now: Stamp) -> Self {
        Stamps { applied: now, seen: now }
    }

    /// Records a poll; true when the file changed and has since settled.
    fn settled_change(&mut self, now: Stamp) -> bool {
        let settled = now == self.seen && now != self.applied;
        self.seen = now;
        if settled {
            self.applied = now;
        }
        settled
    }
}

impl Users {
    pub fn open(path: &Path) -> Result<Users, UsersError> {
        let dir = load(path)?;
        Ok(Users {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(dir),
            stamps: std::sync::Mutex::new(Stamps::new(file_stamp(path))),
        })
    }

    /// A fixed directory (tests, demo).
    pub fn fixed(path: &Path, dir: UserDirectory) -> Users {
        Users {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(dir),
            stamps: std::sync::Mutex::new(Stamps::new(file_stamp(path))),
        }
    }

    /// A consistent snapshot; cheap (no lock held across awaits).
    pub fn snapshot(&self) -> Arc<UserDirectory> {
        self.current.load_full()
    }

    /// Re-reads the file; on error keeps the previous directory and reports why.
    pub async fn reload(&self) -> Result<Reloaded, UsersError> {
        let path = self.path.clone();
        let dir = tokio::task::spawn_blocking(move || load(&path))
            .await
            .map_err(|e| UsersError::Invalid { path: self.path.clone(), message: e.to_string() })??;
        let dir = Arc::new(dir);
        let previous = self.current.swap(dir.clone());
        Ok(Reloaded {
            users: dir.len(),
            lost_access: lost_access(&previous, &dir),
            credential_changed: credential_changed(&previous, &dir),
        })
    }

    /// Reloads when the file's modification time or size changed and then
    /// held still for a poll interval.
    async fn reload_if_changed(&self, store: &Store, audit: &Audit) {
        let now = file_stamp(&self.path);
        let settled = self.stamps.lock().unwrap_or_else(|p| p.into_inner()).settled_change(now);
        if settled {
            self.reload_logged("file changed", store, audit).await;
        }
    }

    async fn reload_logged(&self, why: &str, store: &Store, audit: &Audit) {
        match self.reload().await {
            Ok(r) => {
                tracing::info!(users = r.users, reason = why, "users file reloaded");
                let lost = r.lost_access.iter().map(|u| (u.clone(), "account removed or disabled".to_owned()));
                let changed =
                    r.credential_changed.iter().map(|(u, parts)| (u.clone(), format!("{} changed", parts.join(", "))));
                end_sessions(store, audit, lost.chain(changed)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "users file not reloaded; keeping the last good copy")
            }
        }
    }

    /// Watches the file and SIGHUP until shutdown; ends the sessions of users
    /// an edit removed or disabled. The file's directory is watched through the
    /// kernel (inotify), so an edit applies within about a second: once the
    /// file has held still for [`SETTLE`]. Where watching is unavailable, or
    /// an event is missed, the file's stamp is polled every [`POLL`] as well.
    /// Call it before announcing the listener: the SIGHUP handler is in place
    /// when this returns, so a reload right after start-up does not meet the
    /// default action (terminate).
    pub fn watch(self: &Arc<Self>, store: Store, audit: Audit, shutdown: crate::server::Shutdown) {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .inspect_err(|e| tracing::warn!(error = %e, "no SIGHUP handler; the users file reloads on change only"))
            .ok();
        let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let watcher = watch_file(&self.path, tx);
        let users = self.clone();
        tokio::spawn(async move {
            let _watcher = watcher;
            let mut tick = tokio::time::interval(POLL);
            loop {
                #[cfg(unix)]
                let hup_fut = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let hup_fut = std::future::pending::<()>();
                tokio::select! {
                    _ = tick.tick() => users.reload_if_changed(&store, &audit).await,
                    Some(()) = changes.recv() => {
                        users.settle(&mut changes).await;
                        users.reload_if_new(&store, &audit).await;
                    }
                    _ = hup_fut => users.reload_logged("SIGHUP", &store, &audit).await,
                    _ = shutdown.wait() => return,
                }
            }
        });
    }

    /// Waits until the file has neither changed nor been reported for [`SETTLE`]:
    /// an editor that truncates and then writes is not caught in between.
    async fn settle(&self, changes: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
        loop {
            let before = file_stamp(&self.path);
            tokio::select! {
                _ = tokio::time::sleep(SETTLE) => {
                    if file_stamp(&self.path) == before {
                        return;
                    }
                }
                more = changes.recv() => {
                    if more.is_none() {
                        return;
                    }
                }
            }
        }
    }

    /// Reloads when the file differs from the copy last applied (a watched
    /// change that has settled).
    async fn reload_if_new(&self, store: &Store, audit: &Audit) {
        let now = file_stamp(&self.path);
        let new = {
            let mut stamps = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
            let new = now != stamps.applied;
            if new {
                *stamps = Stamps::new(now);
            }
            new
        };
        if new {
            self.reload_logged("file changed", store, audit).await;
        }
    }
}

/// How long a watched users file must hold still before it is applied.
const SETTLE: Duration = Duration::from_millis(250);
/// How often the users file's stamp is polled (the fallback to watching).
const POLL: Duration = Duration::from_secs(2);

/// Watches the directory of `path` (editors and `portcullis user` replace the
/// file by renaming a new one over it, which a watch on the file itself would
/// lose) and reports changes that concern the file. None, logged, when the
/// platform cannot watch: polling then does the work alone.
fn watch_file(path: &Path, tx: tokio::sync::mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    use notify::event::{AccessKind, AccessMode, EventKind};
    let name = path.file_name()?.to_owned();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Opening and reading (ours included) change nothing.
        if let EventKind::Access(kind) = event.kind
            && kind != AccessKind::Close(AccessMode::Write)
        {
            return;
        }
        if event.paths.iter().any(|p| p.file_name() == Some(name.as_os_str())) {
            let _ = tx.send(());
        }
    };
    let watched = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(dir, notify::RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    watched
        .inspect_err(|e| {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the users file's directory; polling it every 2 s")
        })
        .ok()
}

/// What a successful reload changed.
#[derive(Debug)]
pub struct Reloaded {
    pub users: usize,
    /// Users who could log in before and cannot now (removed or disabled).
    pub lost_access: Vec<String>,
    /// Users still enabled whose password hash, e-mail or groups changed,
    /// with the parts that did.
    pub credential_changed: Vec<(String, Vec<&'static str>)>,
}

/// Users enabled before and after whose credential changed.
fn credential_changed(before: &UserDirectory, after: &UserDirectory) -> Vec<(String, Vec<&'static str>)> {
    let mut changed: Vec<(String, Vec<&'static str>)> = before
        .by_name
        .values()
        .filter(|u| !u.disabled)
        .filter_map(|u| {
            let now = after.get(&u.username).filter(|now| !now.disabled)?;
            let parts = u.credential_changes(now);
            (!parts.is_empty()).then(|| (u.username.clone(), parts))
        })
        .collect();
    changed.sort();
    changed
}

/// Names enabled in `before` that are missing or disabled in `after`.
fn lost_access(before: &UserDirectory, after: &UserDirectory) -> Vec<String> {
    let mut names: Vec<String> = before
        .by_name
        .values()
        .filter(|u| !u.disabled && after.get(&u.username).is_none_or(|now| now.disabled))
        .map(|u| u.username.clone())
        .collect();
    names.sort();
    names
}

/// Ends every session of users who lost access or whose credential changed,
/// and audits each ending with its reason. A request would find them refused
/// anyway, but a session not used while the account was off would otherwise
/// come back to life when it is re-enabled (or re-added): after a compromise,
/// that would hand the attacker's session back. Ending them now also takes
/// them off the account page's list at once.
async fn end_sessions(store: &Store, audit: &Audit, users: impl Iterator<Item = (String, String)>) {
    for (user, why) in users {
        match store.revoke_user_sessions(&user).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(user = %user, sessions = n, reason = %why, "sessions ended by the users file");
                let details = format!("users file reloaded: {why}; {n} session(s) ended");
                audit.event(Actor::system(&user), SecurityEvent::SessionRevoked, &details).await;
            }
            Err(e) => tracing::warn!(user = %user, error = %e, reason = %why, "sessions not ended"),
        }
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_applied_only_after_it_holds_for_a_poll() {
        let t = |secs: u64, len: u64| Some((SystemTime::UNIX_EPOCH + Duration::from_secs(secs), len));
        let mut st = Stamps::new(t(1, 100));
        assert!(!st.settled_change(t(1, 100)), "unchanged");
        assert!(!st.settled_change(t(2, 0)), "truncated mid-save: wait");
        assert!(!st.settled_change(t(2, 120)), "still being written: wait");
        assert!(st.settled_change(t(2, 120)), "held still: apply");
        assert!(!st.settled_change(t(2, 120)), "applied once");
        assert!(!st.settled_change(None), "deleted: wait");
        assert!(st.settled_change(None), "still gone: apply (and fail to load, keeping the last good copy)");
    }

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
    fn removed_and_disabled_users_lose_access_and_nobody_else() {
        let entry = |name: &str, disabled: bool| {
            format!("[users.{name}]\nemail = \"{name}@example.com\"\npassword = \"{HASH}\"\ndisabled = {disabled}\n")
        };
        let p = Path::new("u.toml");
        let before = [entry("kept", false), entry("removed", false), entry("disabled", false), entry("was_off", true)];
        let after = [entry("kept", false), entry("disabled", true), entry("new", false)];
        let back = [entry("kept", false), entry("removed", false), entry("disabled", false), entry("new", false)];
        let (before, after, back) = (
            parse(p, &before.concat()).unwrap(),
            parse(p, &after.concat()).unwrap(),
            parse(p, &back.concat()).unwrap(),
        );
        assert_eq!(lost_access(&before, &after), ["disabled", "removed"]);
        assert!(lost_access(&after, &back).is_empty(), "re-enabling or re-adding takes nothing away");
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
