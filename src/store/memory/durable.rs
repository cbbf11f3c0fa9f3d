//! Durable per-user state of the memory backend (2FA switch, backup-code
//! hashes, sealed authenticator-app secrets and the last code step used,
//! known IPs, access tokens) and its state file. The file is rewritten whole after
//! every change: written to a temporary file in the same directory, synced,
//! then renamed over the old one, so a crash leaves either the old or the new
//! state, never a torn file. Writes are serialized and versioned so an older
//! snapshot never lands after a newer one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::store::types::{
    IpHistory, KNOWN_IPS_PER_USER, StoreError, StoreResult, TokenInfo, TokenRecord, TotpSecrets, UserState, hex32,
    lock, unhex32,
};

/// Everything durable, for every user.
pub(super) struct Durable {
    state: Mutex<State>,
    file: Option<StateFile>,
    max_users: usize,
}

struct State {
    users: HashMap<String, UserDurable>,
    /// Access tokens by id (looked up by id on every request that carries
    /// one). A token's `last_used` is kept here and written to the file with
    /// the next change, not on its own: a restart may forget the last minute.
    tokens: HashMap<String, TokenRecord>,
    /// Bumped on every change; the file records which version it holds.
    version: u64,
}

#[derive(Default)]
struct UserDurable {
    otp_enabled: bool,
    backup_codes: Vec<[u8; 32]>,
    /// IP → unix seconds last seen.
    known_ips: HashMap<String, u64>,
    totp: TotpDurable,
    /// The passkeys, as `auth::passkey` serialized them.
    passkeys: Option<String>,
}

/// The authenticator app's secrets (sealed) and the last code step used.
#[derive(Default, Clone, Serialize, Deserialize)]
struct TotpDurable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
    #[serde(default)]
    last_step: u64,
}

impl TotpDurable {
    fn is_empty(&self) -> bool {
        self.secret.is_none() && self.pending.is_none()
    }
}

/// Where the state is written, and the version last written.
struct StateFile {
    path: PathBuf,
    written: tokio::sync::Mutex<u64>,
}

/// The on-disk shape (JSON). Hashes are hex; they are keyed hashes, useless
/// without the gateway secret, but the file is still created mode 0600.
#[derive(Serialize, Deserialize, Default)]
struct OnDisk {
    version: u32,
    users: BTreeMap<String, UserOnDisk>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tokens: BTreeMap<String, TokenRecord>,
}

#[derive(Serialize, Deserialize, Default)]
struct UserOnDisk {
    #[serde(default)]
    otp_enabled: bool,
    #[serde(default)]
    backup_codes: Vec<String>,
    #[serde(default)]
    known_ips: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "TotpDurable::is_empty")]
    totp: TotpDurable,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    passkeys: Option<String>,
}

const FORMAT_VERSION: u32 = 1;

impl Durable {
    /// Reads the state file if there is one (a missing file is an empty state).
    pub(super) async fn load(path: Option<PathBuf>, max_users: usize) -> StoreResult<Durable> {
        let (mut users, mut tokens) = (HashMap::new(), HashMap::new());
        if let Some(path) = &path {
            match tokio::fs::read(path).await {
                Ok(bytes) => (users, tokens) = decode(&bytes)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(file_error(path, &e)),
            }
        }
        Ok(Durable {
            state: Mutex::new(State { users, tokens, version: 0 }),
            file: path.map(|path| StateFile { path, written: tokio::sync::Mutex::new(0) }),
            max_users,
        })
    }

    pub(super) fn user_state(&self, user: &str) -> UserState {
        let state = lock(&self.state);
        state
            .users
            .get(user)
            .map(|u| UserState {
                otp_enabled: u.otp_enabled,
                backup_codes_left: u32::try_from(u.backup_codes.len()).unwrap_or(u32::MAX),
                totp_enabled: u.totp.secret.is_some(),
                passkey_enabled: u.passkeys.is_some(),
            })
            .unwrap_or_default()
    }

    pub(super) fn totp_secrets(&self, user: &str) -> TotpSecrets {
        let state = lock(&self.state);
        state
            .users
            .get(user)
            .map(|u| TotpSecrets { active: u.totp.secret.clone(), pending: u.totp.pending.clone() })
            .unwrap_or_default()
    }

    pub(super) fn passkeys(&self, user: &str) -> Option<String> {
        lock(&self.state).users.get(user).and_then(|u| u.passkeys.clone())
    }

    /// Replaces the passkeys if they are still `old`; false (and nothing
    /// changed) if another change came first.
    pub(super) async fn swap_passkeys(&self, user: &str, old: Option<&str>, new: Option<&str>) -> StoreResult<bool> {
        let snapshot = {
            let mut state = lock(&self.state);
            if state.users.get(user).and_then(|u| u.passkeys.as_deref()) != old {
                return Ok(false);
            }
            if !state.users.contains_key(user) && state.users.len() >= self.max_users {
                return Err(StoreError::Full);
            }
            state.users.entry(user.to_owned()).or_default().passkeys = new.map(str::to_owned);
            self.snapshot(&mut state)
        };
        self.persist(snapshot).await?;
        Ok(true)
    }

    pub(super) async fn set_totp_pending(&self, user: &str, sealed: &str) -> StoreResult<()> {
        self.change(user, |u| u.totp.pending = Some(sealed.to_owned())).await
    }

    pub(super) async fn enable_totp(&self, user: &str, sealed: &str, step: u64) -> StoreResult<()> {
        self.change(user, |u| u.totp = TotpDurable { secret: Some(sealed.to_owned()), pending: None, last_step: step })
            .await
    }

    pub(super) async fn remove_totp(&self, user: &str) -> StoreResult<bool> {
        let snapshot = {
            let mut state = lock(&self.state);
            let Some(u) = state.users.get_mut(user) else {
                return Ok(false);
            };
            let had = u.totp.secret.is_some();
            if u.totp.is_empty() {
                return Ok(false);
            }
            u.totp = TotpDurable::default();
            (had, self.snapshot(&mut state))
        };
        self.persist(snapshot.1).await?;
        Ok(snapshot.0)
    }

    /// The check and the mark happen under one lock: two concurrent uses of
    /// one code cannot both pass. The step is persisted before the answer,
    /// so a restart does not reopen a used code's window.
    pub(super) async fn use_totp_step(&self, user: &str, step: u64) -> StoreResult<bool> {
        let snapshot = {
            let mut state = lock(&self.state);
            let Some(u) = state.users.get_mut(user) else {
                return Ok(false);
            };
            if u.totp.secret.is_none() || step <= u.totp.last_step {
                return Ok(false);
            }
            u.totp.last_step = step;
            self.snapshot(&mut state)
        };
        self.persist(snapshot).await?;
        Ok(true)
    }

    pub(super) async fn set_otp_enabled(&self, user: &str, enabled: bool) -> StoreResult<()> {
        self.change(user, |u| {
            u.otp_enabled = enabled;
        })
        .await
    }

    pub(super) async fn replace_backup_codes(&self, user: &str, hashes: &[[u8; 32]]) -> StoreResult<()> {
        self.change(user, |u| u.backup_codes = hashes.to_vec()).await
    }

    pub(super) async fn consume_backup_code(&self, user: &str, hash: &[u8; 32]) -> StoreResult<bool> {
        let snapshot = {
            let mut state = lock(&self.state);
            let Some(u) = state.users.get_mut(user) else {
                return Ok(false);
            };
            // Compare against every code, without stopping at the match.
            let mut found = None;
            for (i, code) in u.backup_codes.iter().enumerate() {
                if bool::from(code.ct_eq(hash)) {
                    found = Some(i);
                }
            }
            let Some(i) = found else {
                return Ok(false);
            };
            u.backup_codes.swap_remove(i);
            self.snapshot(&mut state)
        };
        self.persist(snapshot).await?;
        Ok(true)
    }

    /// When the user last logged in (the latest time a known address was
    /// seen), unix seconds.
    pub(super) fn last_login(&self, user: &str) -> Option<u64> {
        lock(&self.state).users.get(user).and_then(|u| u.known_ips.values().copied().max())
    }

    pub(super) async fn record_known_ip(&self, user: &str, ip: &str, now: u64) -> StoreResult<IpHistory> {
        let mut before = None;
        let mut had_any = false;
        self.change(user, |u| {
            had_any = !u.known_ips.is_empty();
            before = u.known_ips.insert(ip.to_owned(), now);
            if u.known_ips.len() > KNOWN_IPS_PER_USER {
                let oldest = u
                    .known_ips
                    .iter()
                    .filter(|(k, _)| k.as_str() != ip)
                    .min_by_key(|(_, seen)| **seen)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    u.known_ips.remove(&oldest);
                }
            }
        })
        .await?;
        Ok(IpHistory::from_parts(before, had_any))
    }

    /// Removes everything kept of the user; returns what they had.
    pub(super) async fn forget(&self, user: &str) -> StoreResult<UserState> {
        let had = self.user_state(user);
        let snapshot = {
            let mut state = lock(&self.state);
            if state.users.remove(user).is_none() {
                return Ok(had);
            }
            self.snapshot(&mut state)
        };
        self.persist(snapshot).await?;
        Ok(had)
    }

    pub(super) async fn create_token(&self, id: &str, rec: &TokenRecord) -> StoreResult<()> {
        let snapshot = {
            let mut state = lock(&self.state);
            if state.tokens.len() >= self.max_users.saturating_mul(16) {
                return Err(StoreError::Full);
            }
            state.tokens.insert(id.to_owned(), rec.clone());
            self.snapshot(&mut state)
        };
        self.persist(snapshot).await
    }

    /// The live token `id` (`now` in unix seconds).
    pub(super) fn token(&self, id: &str, now: u64) -> Option<TokenRecord> {
        lock(&self.state).tokens.get(id).filter(|t| t.expires_at > now).cloned()
    }

    pub(super) fn touch_token(&self, id: &str, now: u64) -> bool {
        match lock(&self.state).tokens.get_mut(id) {
            Some(t) => {
                t.last_used = Some(now);
                true
            }
            None => false,
        }
    }

    pub(super) fn list_tokens(&self, user: &str, now: u64) -> Vec<TokenInfo> {
        let state = lock(&self.state);
        state
            .tokens
            .iter()
            .filter(|(_, t)| t.user == user && t.expires_at > now)
            .map(|(id, t)| TokenInfo { id: id.clone(), record: t.clone() })
            .collect()
    }

    /// Ends token `id` if it is `user`'s (expired ones are dropped on the way).
    pub(super) async fn revoke_token(&self, user: &str, id: &str, now: u64) -> StoreResult<bool> {
        let (revoked, snapshot) = {
            let mut state = lock(&self.state);
            let before = state.tokens.len();
            state.tokens.retain(|_, t| t.expires_at > now);
            let revoked = state.tokens.get(id).is_some_and(|t| t.user == user) && state.tokens.remove(id).is_some();
            let changed = revoked || state.tokens.len() != before;
            (revoked, changed.then(|| self.snapshot(&mut state)).flatten())
        };
        self.persist(snapshot).await?;
        Ok(revoked)
    }

    /// Applies `f` to the user's state (creating it within `max_users`) and persists.
    async fn change(&self, user: &str, f: impl FnOnce(&mut UserDurable)) -> StoreResult<()> {
        let snapshot = {
            let mut state = lock(&self.state);
            if !state.users.contains_key(user) && state.users.len() >= self.max_users {
                return Err(StoreError::Full);
            }
            f(state.users.entry(user.to_owned()).or_default());
            self.snapshot(&mut state)
        };
        self.persist(snapshot).await
    }

    /// Bumps the version and, if there is a file, serializes the state.
    fn snapshot(&self, state: &mut State) -> Option<(u64, Vec<u8>)> {
        state.version += 1;
        self.file.as_ref()?;
        Some((state.version, encode(state)))
    }

    /// Writes `snapshot` unless a newer one is already on disk.
    async fn persist(&self, snapshot: Option<(u64, Vec<u8>)>) -> StoreResult<()> {
        let (Some(file), Some((version, bytes))) = (&self.file, snapshot) else {
            return Ok(());
        };
        let mut written = file.written.lock().await;
        if *written >= version {
            return Ok(());
        }
        let path = file.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| StoreError::Unavailable(format!("state file writer failed: {e}")))??;
        *written = version;
        Ok(())
    }
}

fn encode(state: &State) -> Vec<u8> {
    let on_disk = OnDisk {
        version: FORMAT_VERSION,
        tokens: state.tokens.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        users: state
            .users
            .iter()
            .map(|(name, u)| {
                let user = UserOnDisk {
                    otp_enabled: u.otp_enabled,
                    backup_codes: u.backup_codes.iter().map(hex32).collect(),
                    known_ips: u.known_ips.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                    totp: u.totp.clone(),
                    passkeys: u.passkeys.clone(),
                };
                (name.clone(), user)
            })
            .collect(),
    };
    // Serializing plain maps of strings and numbers cannot fail.
    serde_json::to_vec_pretty(&on_disk).unwrap_or_default()
}

type Decoded = (HashMap<String, UserDurable>, HashMap<String, TokenRecord>);

fn decode(bytes: &[u8]) -> StoreResult<Decoded> {
    let on_disk: OnDisk = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("state file: {e}")))?;
    if on_disk.version != FORMAT_VERSION {
        return Err(StoreError::Corrupt(format!("state file: unknown format version {}", on_disk.version)));
    }
    let mut users = HashMap::with_capacity(on_disk.users.len());
    for (name, u) in on_disk.users {
        let backup_codes = u
            .backup_codes
            .iter()
            .map(|h| unhex32(h))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| StoreError::Corrupt(format!("state file: bad backup code hash for {name}")))?;
        let user = UserDurable {
            otp_enabled: u.otp_enabled,
            backup_codes,
            known_ips: u.known_ips.into_iter().collect(),
            totp: u.totp,
            passkeys: u.passkeys,
        };
        users.insert(name, user);
    }
    Ok((users, on_disk.tokens.into_iter().collect()))
}

fn file_error(path: &Path, e: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("state file {}: {e}", path.display()))
}

/// Temp file in the same directory, fsync, rename, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        std::fs::create_dir_all(&dir)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable; not every platform can open a directory.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| file_error(path, &e))
}
