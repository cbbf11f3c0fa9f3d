//! Passkeys (WebAuthn) as a second factor, with `webauthn-rs`.
//!
//! The relying party is the gateway's public URL: its host is the RP ID
//! (or `session.cookie_domain`, so one passkey serves every subdomain the
//! session cookie covers) and its origin the one origin accepted. A host
//! that is an IP address cannot be an RP ID: passkeys are then off
//! (`check-config` says why).
//!
//! A ceremony's state (the challenge) is kept in the store between its start
//! and its finish, keyed by the session (registration) or the pending login
//! (sign-in), for `CEREMONY_TTL`, and taken at the finish: each challenge
//! answers once. The passkeys themselves are public keys; the store keeps
//! them per user, with a name and when they were added.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid, Webauthn, WebauthnBuilder,
};

use crate::auth::users::User;
use crate::clock::Clock;
use crate::store::{Store, StoreError};

/// How long a started ceremony waits for its finish.
pub const CEREMONY_TTL: Duration = Duration::from_secs(300);
/// Passkeys one account may hold.
pub const MAX_PASSKEYS: usize = 10;
/// The longest name a passkey may be given.
pub const MAX_NAME: usize = 64;

/// The relying party a public URL (and cookie domain) gives: its RP ID and
/// origin, or why passkeys cannot work there.
pub fn relying_party(public_url: &Url, cookie_domain: Option<&str>) -> Result<(String, Url), String> {
    let Some(host) = public_url.domain() else {
        return Err(format!(
            "server.public_url ({public_url}) has no domain name (an IP address cannot be a passkey's relying \
             party): passkeys are off"
        ));
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let rp_id = match cookie_domain.map(|d| d.trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase()) {
        Some(d) if !d.is_empty() => {
            if host != d && !host.ends_with(&format!(".{d}")) {
                return Err(format!(
                    "session.cookie_domain ({d}) does not cover server.public_url's host ({host}): a passkey's \
                     relying party must be the host or a parent domain of it"
                ));
            }
            d
        }
        _ => host,
    };
    let origin = Url::parse(&public_url.origin().ascii_serialization()).map_err(|e| e.to_string())?;
    Ok((rp_id, origin))
}

/// One stored passkey.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    /// The credential id, base64url: what `remove` names.
    id: String,
    name: String,
    /// Unix seconds.
    created: u64,
    key: Passkey,
}

/// A passkey as the account page and API list it.
#[derive(Debug, Clone, Serialize)]
pub struct PasskeyInfo {
    pub id: String,
    pub name: String,
    /// Unix seconds.
    pub created: u64,
}

/// A registration under way: whose, the name asked for, the challenge.
#[derive(Serialize, Deserialize)]
struct Registering {
    user: String,
    name: String,
    state: PasskeyRegistration,
}

/// A sign-in under way.
#[derive(Serialize, Deserialize)]
struct SigningIn {
    user: String,
    state: PasskeyAuthentication,
}

/// What a passkey sign-in's finish found.
#[derive(Debug, PartialEq, Eq)]
pub enum PasskeyCheck {
    Accepted,
    /// No ceremony was started for this login (or it expired, or finished).
    NoCeremony,
    /// The answer did not verify (wrong origin, unknown key, bad signature...).
    Refused,
    NotEnrolled,
}

/// Why a registration failed.
#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("Passkeys are not available on this server.")]
    Unavailable,
    #[error("Start adding the passkey first (or start again: the request expired).")]
    NotStarted,
    #[error("The passkey could not be verified.")]
    Refused,
    #[error("Give the passkey a name (at most 64 characters).")]
    BadName,
    #[error("This account already has the most passkeys allowed (10).")]
    TooMany,
    #[error("No such passkey.")]
    NoSuchPasskey,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Passkey ceremonies and storage; cheap to clone.
#[derive(Clone)]
pub struct Passkeys {
    webauthn: Option<Arc<Webauthn>>,
    store: Store,
    clock: Clock,
}

fn user_handle(user: &User) -> Uuid {
    let digest = Sha256::digest(user.username.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(b)
}

impl Passkeys {
    /// Passkeys for the relying party of `public_url`; off (every call
    /// answers `Unavailable`) when it cannot be one.
    pub fn new(store: Store, public_url: &Url, cookie_domain: Option<&str>, clock: Clock) -> Passkeys {
        let webauthn = relying_party(public_url, cookie_domain).ok().and_then(|(rp_id, origin)| {
            let subdomains = cookie_domain.is_some();
            WebauthnBuilder::new(&rp_id, &origin)
                .ok()?
                .rp_name("Portcullis")
                .allow_subdomains(subdomains)
                .timeout(CEREMONY_TTL)
                .build()
                .ok()
                .map(Arc::new)
        });
        Passkeys { webauthn, store, clock }
    }

    pub fn available(&self) -> bool {
        self.webauthn.is_some()
    }

    fn webauthn(&self) -> Result<&Webauthn, PasskeyError> {
        self.webauthn.as_deref().ok_or(PasskeyError::Unavailable)
    }

    /// The user's passkeys, with the text they were read from.
    async fn read(&self, user: &str) -> Result<(Option<String>, Vec<Stored>), PasskeyError> {
        let raw = self.store.passkeys(user).await?;
        let keys = match &raw {
            None => Vec::new(),
            Some(json) => {
                serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("passkeys of {user}: {e}")))?
            }
        };
        Ok((raw, keys))
    }

    async fn stored(&self, user: &str) -> Result<Vec<Stored>, PasskeyError> {
        Ok(self.read(user).await?.1)
    }

    /// Changes the user's passkeys in one atomic step (`Store::swap_passkeys`):
    /// `edit` changes the list as read, and if another change came first it
    /// runs again on the list as that change left it. Nothing is written when
    /// `edit` leaves the list as it was, or fails.
    async fn change<T>(
        &self,
        user: &str,
        mut edit: impl FnMut(&mut Vec<Stored>) -> Result<T, PasskeyError>,
    ) -> Result<T, PasskeyError> {
        // Each retry means another change landed meanwhile; a handful of them
        // in a row means something is wrong, not busy.
        for _ in 0..8 {
            let (raw, mut keys) = self.read(user).await?;
            let out = edit(&mut keys)?;
            let new = if keys.is_empty() {
                None
            } else {
                Some(serde_json::to_string(&keys).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            };
            if new == raw || self.store.swap_passkeys(user, raw.as_deref(), new.as_deref()).await? {
                return Ok(out);
            }
        }
        Err(StoreError::Unavailable(format!("the passkeys of {user} kept changing")).into())
    }

    /// The user's passkeys, oldest first.
    pub async fn list(&self, user: &User) -> Result<Vec<PasskeyInfo>, PasskeyError> {
        Ok(self
            .stored(&user.username)
            .await?
            .into_iter()
            .map(|s| PasskeyInfo { id: s.id, name: s.name, created: s.created })
            .collect())
    }

    /// Starts adding a passkey named `name` (the session is `session_id`):
    /// the options for `navigator.credentials.create`.
    pub async fn start_registration(
        &self,
        user: &User,
        session_id: &str,
        name: &str,
    ) -> Result<CreationChallengeResponse, PasskeyError> {
        let webauthn = self.webauthn()?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(PasskeyError::BadName);
        }
        let existing = self.stored(&user.username).await?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(PasskeyError::TooMany);
        }
        let exclude = existing.iter().map(|s| s.key.cred_id().clone()).collect::<Vec<_>>();
        let (options, state) = webauthn
            .start_passkey_registration(user_handle(user), &user.username, &user.display_name, Some(exclude))
            .map_err(|_| PasskeyError::Refused)?;
        let reg = Registering { user: user.username.clone(), name: name.to_owned(), state };
        let json = serde_json::to_string(&reg).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.store.put_ceremony(&format!("reg:{session_id}"), &json, CEREMONY_TTL).await?;
        Ok(options)
    }

    /// Finishes adding a passkey with the authenticator's answer; returns its name.
    pub async fn finish_registration(
        &self,
        user: &User,
        session_id: &str,
        credential: &str,
    ) -> Result<PasskeyInfo, PasskeyError> {
        let webauthn = self.webauthn()?;
        let json = self.store.take_ceremony(&format!("reg:{session_id}")).await?.ok_or(PasskeyError::NotStarted)?;
        let reg: Registering = serde_json::from_str(&json).map_err(|_| PasskeyError::NotStarted)?;
        if reg.user != user.username {
            return Err(PasskeyError::NotStarted);
        }
        let credential: RegisterPublicKeyCredential =
            serde_json::from_str(credential).map_err(|_| PasskeyError::Refused)?;
        let key = webauthn.finish_passkey_registration(&credential, &reg.state).map_err(|_| PasskeyError::Refused)?;
        let id = URL_SAFE_NO_PAD.encode(key.cred_id().as_slice());
        let info = PasskeyInfo { id: id.clone(), name: reg.name.clone(), created: self.clock.now_unix() };
        self.change(&user.username, |keys| {
            if keys.iter().any(|k| k.id == id) {
                return Err(PasskeyError::Refused);
            }
            if keys.len() >= MAX_PASSKEYS {
                return Err(PasskeyError::TooMany);
            }
            keys.push(Stored { id: id.clone(), name: reg.name.clone(), created: info.created, key: key.clone() });
            Ok(())
        })
        .await?;
        Ok(info)
    }

    /// Removes the passkey `id`; returns its name and how many remain.
    pub async fn remove(&self, user: &User, id: &str) -> Result<(String, usize), PasskeyError> {
        self.change(&user.username, |keys| {
            let at = keys.iter().position(|k| k.id == id).ok_or(PasskeyError::NoSuchPasskey)?;
            let gone = keys.remove(at);
            Ok((gone.name, keys.len()))
        })
        .await
    }

    /// Starts a sign-in for the pending login `login_id`: the options for
    /// `navigator.credentials.get`. None: the user has no passkey.
    pub async fn start_login(
        &self,
        user: &User,
        login_id: &str,
    ) -> Result<Option<RequestChallengeResponse>, PasskeyError> {
        let webauthn = self.webauthn()?;
        let keys: Vec<Passkey> = self.stored(&user.username).await?.into_iter().map(|s| s.key).collect();
        if keys.is_empty() {
            return Ok(None);
        }
        let (options, state) = webauthn.start_passkey_authentication(&keys).map_err(|_| PasskeyError::Refused)?;
        let json = serde_json::to_string(&SigningIn { user: user.username.clone(), state })
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.store.put_ceremony(&format!("auth:{login_id}"), &json, CEREMONY_TTL).await?;
        Ok(Some(options))
    }

    /// Checks the authenticator's answer for the pending login `login_id`
    /// (the challenge is taken: it answers once), and updates the key's
    /// signature counter.
    pub async fn finish_login(
        &self,
        user: &User,
        login_id: &str,
        credential: &str,
    ) -> Result<PasskeyCheck, PasskeyError> {
        let webauthn = self.webauthn()?;
        let Some(json) = self.store.take_ceremony(&format!("auth:{login_id}")).await? else {
            return Ok(PasskeyCheck::NoCeremony);
        };
        let Ok(signing) = serde_json::from_str::<SigningIn>(&json) else {
            return Ok(PasskeyCheck::NoCeremony);
        };
        if signing.user != user.username {
            return Ok(PasskeyCheck::NoCeremony);
        }
        let Ok(credential) = serde_json::from_str::<PublicKeyCredential>(credential) else {
            return Ok(PasskeyCheck::Refused);
        };
        let Ok(result) = webauthn.finish_passkey_authentication(&credential, &signing.state) else {
            return Ok(PasskeyCheck::Refused);
        };
        // The signature counter is written back in one atomic step with the
        // check that the key is still there: a passkey removed meanwhile
        // stays removed, and signs nobody in.
        self.change(&user.username, |keys| {
            if keys.is_empty() {
                return Ok(PasskeyCheck::NotEnrolled);
            }
            Ok(match keys.iter_mut().find(|k| k.key.cred_id() == result.cred_id()) {
                Some(key) => {
                    key.key.update_credential(&result);
                    PasskeyCheck::Accepted
                }
                // Removed between the start and the finish.
                None => PasskeyCheck::Refused,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relying_party_is_the_public_host_or_the_cookie_domain() {
        let url = Url::parse("https://auth.example.com:8443/x").unwrap();
        let (id, origin) = relying_party(&url, None).unwrap();
        assert_eq!(id, "auth.example.com");
        assert_eq!(origin.as_str(), "https://auth.example.com:8443/");
        assert_eq!(relying_party(&url, Some(".example.com")).unwrap().0, "example.com");
        let err = relying_party(&url, Some("other.org")).unwrap_err();
        assert!(err.contains("session.cookie_domain"), "{err}");
        let ip = Url::parse("http://127.0.0.1:8080").unwrap();
        assert!(relying_party(&ip, None).unwrap_err().contains("IP address"));
    }
}
