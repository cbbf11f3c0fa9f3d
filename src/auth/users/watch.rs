//! The live directory ([`Users`]): loaded at start, swapped atomically when
//! the file changes or on SIGHUP. A broken edit keeps the last good copy (and
//! says why in the log), so a typo never locks everyone out. A reload ends the
//! sessions of users it removed or disabled, and of users whose password,
//! e-mail or groups changed.
//!
//! With an LDAP directory behind it (`auth.backend = "ldap"`) there is no
//! file: every user the directory could log in is read at start-up and
//! again every `ldap.refresh` (and on SIGHUP), and a login adds the user it
//! found; each read ends sessions exactly as a reload of the file does.
//! Until the first read succeeds, a session whose user is not known yet is
//! neither accepted nor ended: the gate answers 503 ([`Users::complete`]).
//!
//! The file's directory is watched through the kernel (inotify): a file
//! renamed into place (every writer of `file`, and most editors) is complete,
//! so it is applied at once; any other change is applied once the file has
//! held still for [`SETTLE`], so an editor that truncates and then writes is
//! never caught in between. The file's stamp is polled every [`POLL`] as well,
//! for platforms that cannot watch and for missed events.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::directory::{User, UserDirectory, UsersError, load};
use super::ldap::Directory;
use super::writer::UsersWriter;
use crate::audit::{Actor, Audit, SecurityEvent};
use crate::store::Store;

/// The live user directory, swapped atomically on reload.
pub struct Users {
    path: PathBuf,
    current: ArcSwap<UserDirectory>,
    stamps: std::sync::Mutex<Stamps>,
    writer: UsersWriter,
    /// Which sessions a reload ends for a changed credential (set by `watch`).
    stale: std::sync::OnceLock<Stale>,
    pub(super) source: Source,
    /// Whether `current` holds every user (always, for a file).
    complete: AtomicBool,
}

/// Where the users come from.
pub(super) enum Source {
    /// The users file at `path` (or the demo's fixed users).
    File,
    /// An LDAP directory, asked at login and re-read periodically.
    Ldap(Arc<Directory>),
}

/// Which kind of backend holds the users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    File,
    Ldap,
}

/// Whether a session, made with the credential fingerprint given, is stale
/// for the user as the file now has them (`auth::credential`). A reload ends
/// only those: a session made after the change (the one a password change
/// keeps, made with the new password) survives every replica's reload.
pub type Stale = Arc<dyn Fn(&User, &str) -> bool + Send + Sync>;

/// What the poller knows of the file: (modification time, size, inode). The
/// inode tells a file renamed into place from the one it replaced even when
/// both have the same size and time.
type Stamp = Option<(SystemTime, u64, u64)>;

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

/// What the watcher saw happen to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Another file was renamed onto it: complete, apply at once.
    Replaced,
    /// Written, truncated, created or removed: perhaps half done, let it settle.
    Touched,
}

impl Users {
    /// Loads the users file; its edits go through the file's writer.
    pub fn open(path: &Path) -> Result<Users, UsersError> {
        let dir = load(path)?;
        Ok(Users::fixed(path, dir))
    }

    /// A directory already parsed from the file at `path` (tests), which
    /// reloads from that file and whose edits go to it.
    pub fn fixed(path: &Path, dir: UserDirectory) -> Users {
        Users::with_writer(path, dir, UsersWriter::file(path))
    }

    /// A directory with no file behind it (the demo's): nothing reloads it and
    /// edits are refused with [`super::EditError::Unavailable`], naming `backend`.
    pub fn read_only(label: &Path, dir: UserDirectory, backend: &'static str) -> Users {
        Users::with_writer(label, dir, UsersWriter::read_only(backend))
    }

    fn with_writer(path: &Path, dir: UserDirectory, writer: UsersWriter) -> Users {
        Users {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(dir),
            stamps: std::sync::Mutex::new(Stamps::new(file_stamp(path))),
            writer,
            stale: std::sync::OnceLock::new(),
            source: Source::File,
            complete: AtomicBool::new(true),
        }
    }

    /// Users in an LDAP directory, which Portcullis reads and never writes.
    /// Empty until the first read ([`Users::watch`] starts it).
    pub fn ldap(directory: Directory) -> Users {
        Users {
            path: PathBuf::from("(ldap)"),
            current: ArcSwap::from_pointee(UserDirectory::default()),
            stamps: std::sync::Mutex::new(Stamps::new(None)),
            writer: UsersWriter::read_only("ldap"),
            stale: std::sync::OnceLock::new(),
            source: Source::Ldap(Arc::new(directory)),
            complete: AtomicBool::new(false),
        }
    }

    /// Which kind of backend holds the users.
    pub fn backend(&self) -> Backend {
        match self.source {
            Source::File => Backend::File,
            Source::Ldap(_) => Backend::Ldap,
        }
    }

    /// Whether passwords can be changed or reset here (the users file can;
    /// a directory Portcullis only reads, or the demo's user, cannot): the
    /// password pages and `user passwd` ask this, and say "not available".
    pub fn can_write_passwords(&self) -> bool {
        self.writer.is_writable()
    }

    /// Whether the snapshot holds every user. False until a directory's
    /// first read: a user missing then may yet exist, and their session
    /// must be neither accepted nor ended.
    pub fn complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// Adds or replaces a user read from the directory at login. An
    /// unchanged user is left as it is (their credential's fingerprint is
    /// cached on it).
    pub(super) fn upsert(&self, user: User) -> Arc<User> {
        let current = self.current.load();
        if let Some(known) = current.get(&user.username)
            && known.credential_changes(&user).is_empty()
            && known.disabled == user.disabled
            && known.display_name == user.display_name
        {
            return known.clone();
        }
        let user = Arc::new(user);
        self.current.rcu(|dir| dir.with(user.clone()));
        user
    }

    /// A consistent snapshot; cheap (no lock held across awaits).
    pub fn snapshot(&self) -> Arc<UserDirectory> {
        self.current.load_full()
    }

    /// Where changes to these users are written (password change and reset,
    /// the operator's actions): the users file, or a refusal for a directory
    /// Portcullis only reads. A write is applied by the watcher at once.
    pub fn writer(&self) -> &UsersWriter {
        &self.writer
    }

    /// Re-reads the users; on error keeps the previous directory and reports why.
    pub async fn reload(&self) -> Result<Reloaded, UsersError> {
        if let Source::Ldap(directory) = &self.source {
            let listed = directory
                .every_user()
                .await
                .map_err(|e| UsersError::Invalid { path: self.path.clone(), message: e.to_string() })?;
            let dir = Arc::new(UserDirectory::from_users(listed));
            let previous = self.current.swap(dir.clone());
            let first = !self.complete.swap(true, Ordering::AcqRel);
            return Ok(Reloaded {
                users: dir.len(),
                // Before the first read, the users known were only those
                // logins added: none lost access by not being listed then.
                lost_access: if first { Vec::new() } else { lost_access(&previous, &dir) },
                credential_changed: credential_changed(&previous, &dir),
            });
        }
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

    /// Reloads when the file's stamp changed and then held still for a poll interval.
    async fn reload_if_changed(&self, store: &Store, audit: &Audit) {
        let now = file_stamp(&self.path);
        let settled = self.stamps.lock().unwrap_or_else(|p| p.into_inner()).settled_change(now);
        if settled {
            self.reload_logged("file changed", store, audit).await;
        }
    }

    /// Reloads and ends the sessions the reload calls for; false when the
    /// users could not be read (the last good copy stays).
    async fn reload_logged(&self, why: &str, store: &Store, audit: &Audit) -> bool {
        let ldap = matches!(self.source, Source::Ldap(_));
        match self.reload().await {
            Ok(r) => {
                match ldap {
                    false => tracing::info!(users = r.users, reason = why, "users file reloaded"),
                    true => tracing::info!(users = r.users, reason = why, "directory users read"),
                }
                let lost = r.lost_access.iter().map(|u| (u.clone(), "account removed or disabled".to_owned(), None));
                let dir = self.snapshot();
                let stale = self.stale.get();
                let changed = r.credential_changed.iter().map(|(u, parts)| {
                    let keep = stale.zip(dir.get(u)).map(|(f, user)| (f, user.as_ref()));
                    (u.clone(), format!("{} changed", parts.join(", ")), keep)
                });
                let by = if ldap { "directory re-read" } else { "users file reloaded" };
                end_sessions(store, audit, by, lost.chain(changed)).await;
                true
            }
            Err(e) => {
                match ldap {
                    false => tracing::error!(error = %e, "users file not reloaded; keeping the last good copy"),
                    true => tracing::error!(error = %e, "directory users not read; keeping the last good copy"),
                }
                false
            }
        }
    }

    /// Watches the file and SIGHUP until shutdown; ends the sessions of users
    /// an edit removed, disabled or whose credential it changed. A file renamed
    /// into place applies at once; another change once it has held still for
    /// [`SETTLE`]; missed events within [`POLL`]. Call it before announcing the
    /// listener: the SIGHUP handler is in place when this returns, so a reload
    /// right after start-up does not meet the default action (terminate).
    pub fn watch(self: &Arc<Self>, store: Store, audit: Audit, stale: Stale, shutdown: crate::shutdown::Shutdown) {
        let _ = self.stale.set(stale);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .inspect_err(|e| tracing::warn!(error = %e, "no SIGHUP handler; the users file reloads on change only"))
            .ok();
        if let Source::Ldap(directory) = &self.source {
            let every = directory.refresh_every();
            let users = self.clone();
            tokio::spawn(async move {
                loop {
                    // After a failed read, try again soon: until then the
                    // directory's changes do not reach the sessions.
                    let read = users.reload_logged("refresh", &store, &audit).await;
                    let wait = if read { every } else { RETRY_FAILED_READ.min(every) };
                    #[cfg(unix)]
                    let hup_fut = hangup(&mut hup);
                    #[cfg(not(unix))]
                    let hup_fut = std::future::pending::<()>();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = hup_fut => {}
                        _ = shutdown.wait() => return,
                    }
                }
            });
            return;
        }
        let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let watcher = watch_file(&self.path, tx);
        let users = self.clone();
        tokio::spawn(async move {
            let _watcher = watcher;
            let mut tick = tokio::time::interval(POLL);
            loop {
                #[cfg(unix)]
                let hup_fut = hangup(&mut hup);
                #[cfg(not(unix))]
                let hup_fut = std::future::pending::<()>();
                tokio::select! {
                    _ = tick.tick() => users.reload_if_changed(&store, &audit).await,
                    Some(change) = changes.recv() => {
                        if change == Change::Touched {
                            users.settle(&mut changes).await;
                        }
                        users.reload_if_new(&store, &audit).await;
                    }
                    _ = hup_fut => {
                        users.reload_logged("SIGHUP", &store, &audit).await;
                    }
                    _ = shutdown.wait() => return,
                }
            }
        });
    }

    /// Waits until the file has neither changed nor been reported for
    /// [`SETTLE`], or until a complete file is renamed into place.
    async fn settle(&self, changes: &mut tokio::sync::mpsc::UnboundedReceiver<Change>) {
        loop {
            let before = file_stamp(&self.path);
            tokio::select! {
                _ = tokio::time::sleep(SETTLE) => {
                    if file_stamp(&self.path) == before {
                        return;
                    }
                }
                more = changes.recv() => {
                    if matches!(more, None | Some(Change::Replaced)) {
                        return;
                    }
                }
            }
        }
    }

    /// Applies an edit this process just wrote (a password change or reset)
    /// at once, so the answer to the request that made it already holds: the
    /// new password works and sessions made with the old one have ended. The
    /// watcher then finds nothing new; applying twice would change nothing.
    pub async fn apply_written(&self, store: &Store, audit: &Audit) {
        let now = file_stamp(&self.path);
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) = Stamps::new(now);
        self.reload_logged("written by the gateway", store, audit).await;
    }

    /// Reloads when the file differs from the copy last applied.
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

/// How soon a directory's users are read again after a read failed.
const RETRY_FAILED_READ: Duration = Duration::from_secs(5);
/// The next SIGHUP; never, where no handler could be installed.
#[cfg(unix)]
async fn hangup(hup: &mut Option<tokio::signal::unix::Signal>) {
    match hup.as_mut() {
        Some(h) => {
            h.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// How long a watched users file must hold still before it is applied.
const SETTLE: Duration = Duration::from_millis(250);
/// How often the users file's stamp is polled (the fallback to watching).
const POLL: Duration = Duration::from_secs(2);

/// Watches the directory of `path` (editors and the writer replace the file by
/// renaming a new one over it, which a watch on the file itself would lose)
/// and reports changes that concern the file. None, logged, when the platform
/// cannot watch: polling then does the work alone.
fn watch_file(path: &Path, tx: tokio::sync::mpsc::UnboundedSender<Change>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let name = path.file_name()?.to_owned();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && let Some(change) = classify(&event, &name)
        {
            let _ = tx.send(change);
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

/// What `event` in the file's directory means for the file named `name`.
fn classify(event: &notify::Event, name: &std::ffi::OsStr) -> Option<Change> {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
    let ours = |p: &PathBuf| p.file_name() == Some(name);
    match event.kind {
        // Opening and reading (ours included) change nothing.
        EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write) => None,
        // A rename's destination is its last path; a file renamed onto ours
        // was written in full before (the writer's, an editor's).
        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
            if event.paths.last().is_some_and(ours) =>
        {
            Some(Change::Replaced)
        }
        _ => event.paths.iter().any(ours).then_some(Change::Touched),
    }
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
        .users()
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
        .users()
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
/// `by` says what read the users ("users file reloaded", "directory re-read").
///
/// With `keep` (a credential change, and what tells a stale session), only
/// the sessions made with the old credential end: the rest were made since,
/// with the new one.
async fn end_sessions<'a>(
    store: &Store,
    audit: &Audit,
    by: &str,
    users: impl Iterator<Item = (String, String, Option<(&'a Stale, &'a User)>)>,
) {
    for (user, why, keep) in users {
        let ended = match keep {
            None => store.revoke_user_sessions(&user).await,
            Some((stale, now)) => revoke_stale(store, &user, |credential| stale(now, credential)).await,
        };
        match ended {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(user = %user, sessions = n, reason = %why, by, "sessions ended");
                let details = format!("{by}: {why}; {n} session(s) ended");
                audit.event(Actor::system(&user), SecurityEvent::SessionRevoked, &details).await;
            }
            Err(e) => tracing::warn!(user = %user, error = %e, reason = %why, "sessions not ended"),
        }
    }
}

/// Ends the sessions of `user` whose credential fingerprint `stale` refuses.
async fn revoke_stale(
    store: &Store,
    user: &str,
    stale: impl Fn(&str) -> bool,
) -> Result<usize, crate::store::StoreError> {
    let mut n = 0;
    for s in store.list_sessions(user).await? {
        if stale(&s.record.credential) && store.revoke_session(user, &s.id).await? {
            n += 1;
        }
    }
    Ok(n)
}

fn file_stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = 0;
    Some((m.modified().ok()?, m.len(), inode))
}

#[cfg(test)]
mod tests {
    use super::super::directory::parse;
    use super::*;

    #[tokio::test]
    async fn a_directory_cannot_take_password_changes_and_is_incomplete_until_read() {
        let config = crate::config::LdapConfig { base_dn: "dc=example,dc=com".into(), ..Default::default() };
        let users = Users::ldap(Directory::new(&config).unwrap());
        assert_eq!(users.backend(), Backend::Ldap);
        assert!(!users.can_write_passwords(), "password change and reset are not available");
        assert!(!users.complete(), "a session's user missing now may yet exist");
        let file = Users::fixed(Path::new("u.toml"), UserDirectory::default());
        assert_eq!(file.backend(), Backend::File);
        assert!(file.can_write_passwords() && file.complete());
    }

    #[test]
    fn a_change_is_applied_only_after_it_holds_for_a_poll() {
        let t = |secs: u64, len: u64| Some((SystemTime::UNIX_EPOCH + Duration::from_secs(secs), len, 7));
        let mut st = Stamps::new(t(1, 100));
        assert!(!st.settled_change(t(1, 100)), "unchanged");
        assert!(!st.settled_change(t(2, 0)), "truncated mid-save: wait");
        assert!(!st.settled_change(t(2, 120)), "still being written: wait");
        assert!(st.settled_change(t(2, 120)), "held still: apply");
        assert!(!st.settled_change(t(2, 120)), "applied once");
        assert!(!st.settled_change(None), "deleted: wait");
        assert!(st.settled_change(None), "still gone: apply (and fail to load, keeping the last good copy)");
    }

    #[test]
    fn a_file_renamed_onto_the_users_file_is_complete_and_a_write_is_not() {
        use notify::event::{CreateKind, DataChange, EventKind, ModifyKind, RenameMode};
        let name = std::ffi::OsStr::new("users.toml");
        let event = |kind, paths: &[&str]| notify::Event {
            kind,
            paths: paths.iter().map(PathBuf::from).collect(),
            attrs: Default::default(),
        };
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(classify(&event(renamed, &["/d/.users.toml.tmp", "/d/users.toml"]), name), Some(Change::Replaced));
        let moved_to = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert_eq!(classify(&event(moved_to, &["/d/users.toml"]), name), Some(Change::Replaced));
        let moved_away = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(
            classify(&event(moved_away, &["/d/users.toml", "/d/users.toml.bak"]), name),
            Some(Change::Touched),
            "the file renamed away is gone, not complete"
        );
        let written = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert_eq!(classify(&event(written, &["/d/users.toml"]), name), Some(Change::Touched));
        let created = EventKind::Create(CreateKind::File);
        assert_eq!(classify(&event(created, &["/d/users.toml"]), name), Some(Change::Touched));
        assert_eq!(classify(&event(written, &["/d/.users.toml.tmp"]), name), None, "the writer's temporary file");
    }

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J8I4fhkHh1u7yDw4x2JRq2x3v3Kwm3bD8d1p4C4mYfI";

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
}
