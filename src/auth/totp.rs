//! Authenticator apps: time-based one-time codes (RFC 6238 over RFC 4226's
//! HOTP with HMAC-SHA-1, the variant every common app implements).
//!
//! A user enrols by scanning a QR code (rendered here as inline SVG, so the
//! page needs no image or script) or typing the base32 secret, then proves
//! the app works with one code; only then does the secret count. The store
//! never sees a secret in the clear: it is sealed with ChaCha20-Poly1305
//! under a key derived from `auth.secret`, bound to the user's name, so a
//! store dump cannot set up anyone's app and a sealed secret copied to
//! another account does not open. Each code is accepted once: the store
//! keeps the last time step used and refuses it and every earlier one.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::auth::users::User;
use crate::clock::Clock;
use crate::config::TotpConfig;
use crate::store::{Store, StoreResult};

/// Bytes of a new secret: 160 bits, RFC 4226's recommendation and the
/// length of an HMAC-SHA-1 key block's worth of entropy that apps expect.
pub const SECRET_LEN: usize = 20;

/// The HOTP value of `secret` at `counter`, as `digits` decimal digits
/// (RFC 4226 section 5.3: dynamic truncation).
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(secret) else {
        // HMAC takes keys of any length; an empty answer never matches a code.
        return String::new();
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([h[offset] & 0x7f, h[offset + 1], h[offset + 2], h[offset + 3]]);
    let code = u64::from(bin) % 10u64.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

/// The time step `unix` seconds fall in.
pub fn step_at(unix: u64, period: u64) -> u64 {
    unix / period.max(1)
}

/// The TOTP code of `secret` for time step `step`.
pub fn code_at(secret: &[u8], step: u64, digits: u32) -> String {
    hotp(secret, step, digits)
}

/// The step within `skew` steps of `now_step` whose code is `typed`, if any.
/// Every candidate is computed and compared in constant time, so timing does
/// not tell which step (or whether one) matched.
pub fn matching_step(secret: &[u8], typed: &str, now_step: u64, skew: u32, digits: u32) -> Option<u64> {
    let typed = typed.trim();
    if typed.len() != digits as usize || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut found = None;
    let first = now_step.saturating_sub(u64::from(skew));
    for step in first..=now_step.saturating_add(u64::from(skew)) {
        if bool::from(code_at(secret, step, digits).as_bytes().ct_eq(typed.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(BASE32[((buf >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buf << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes base32 as people copy it (any case, spaces and padding ignored);
/// None for any other character.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !matches!(c, b' ' | b'=' | b'-')) {
        let v = BASE32.iter().position(|&a| a == c.to_ascii_uppercase())?;
        buf = (buf << 5) | v as u32;
        bits += 5;
        if bits >= 8 {
            out.push(((buf >> (bits - 8)) & 0xff) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

/// Percent-encodes a URI component (spaces as `%20`, as apps expect).
fn uri_component(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

/// The `otpauth://` URI an app enrols from (Google Authenticator's key URI
/// format, which the other apps read too).
pub fn otpauth_uri(issuer: &str, account: &str, secret_b32: &str, digits: u32, period: u64) -> String {
    let (i, a) = (uri_component(issuer), uri_component(account));
    format!("otpauth://totp/{i}:{a}?secret={secret_b32}&issuer={i}&algorithm=SHA1&digits={digits}&period={period}")
}

/// `text` as a QR code in an inline `<svg>` element (no XML declaration, so
/// it can sit inside an HTML page or a JSON string).
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    let start = svg.find("<svg")?;
    Some(svg[start..].to_owned())
}

/// Seals and opens secrets with a key derived from `auth.secret`.
struct Sealer {
    cipher: ChaCha20Poly1305,
}

/// Format tag of a sealed secret, so a later scheme can be told apart.
const SEALED_V1: &str = "v1.";

impl Sealer {
    fn new(secret: &[u8]) -> Sealer {
        // A key of its own, derived rather than reused: the same secret also
        // keys code hashes and CSRF tokens.
        let key = crate::keys::derive(secret, crate::keys::Purpose::TotpSealing);
        Sealer { cipher: ChaCha20Poly1305::new(&key.into()) }
    }

    /// A random nonce per sealing; the user's name is the associated data.
    fn seal(&self, user: &str, plain: &[u8]) -> Option<String> {
        let nonce: [u8; 12] = rand::random();
        let sealed =
            self.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad: user.as_bytes() }).ok()?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Some(format!("{SEALED_V1}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// None when the text was not sealed for `user` under this key (another
    /// `auth.secret`, another account, or tampered with).
    fn open(&self, user: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed.strip_prefix(SEALED_V1)?).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, body) = bytes.split_at(12);
        self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: user.as_bytes() }).ok()
    }
}

/// What a user is shown to set up their app (once: only the sealed secret is kept).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Enrolment {
    /// Base32, for typing in by hand.
    pub secret: String,
    pub otpauth_uri: String,
    /// The URI as an inline SVG QR code.
    pub qr_svg: String,
}

/// A setup under way: the secret shown, awaiting the app's first code.
pub struct PendingApp {
    sealed: String,
    secret: Vec<u8>,
}

impl PendingApp {
    /// A name for this setup (each setup's sealed secret is new), under
    /// which its wrong confirming codes are capped.
    pub fn id(&self) -> String {
        format!("enrol:{}", Store::session_id(&self.sealed))
    }
}

/// How a code from the app fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    /// Right, and its step not used before: accepted (now used).
    Accepted,
    /// Not the code of any step within the drift.
    Wrong,
    /// Right, but its step (or a later one) was already used: a replay.
    Replayed,
    /// The user has no confirmed app (or its secret no longer opens).
    NotEnrolled,
}

/// Authenticator apps: enrolment and checking codes; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    sealer: Arc<Sealer>,
    settings: TotpConfig,
    clock: Clock,
}

impl Authenticator {
    pub fn new(store: Store, secret: &[u8], settings: &TotpConfig, clock: Clock) -> Authenticator {
        Authenticator { store, sealer: Arc::new(Sealer::new(secret)), settings: settings.clone(), clock }
    }

    /// The `[totp]` settings.
    pub fn settings(&self) -> &TotpConfig {
        &self.settings
    }

    fn now_step(&self) -> u64 {
        step_at(self.clock.now_unix(), self.settings.period)
    }

    /// The step `typed` matches for `secret` now, if any.
    fn matches(&self, secret: &[u8], typed: &str) -> Option<u64> {
        matching_step(secret, typed, self.now_step(), self.settings.skew, self.settings.digits)
    }

    /// A new secret for `user`, kept (sealed) until a code confirms it. A
    /// confirmed app stays in force meanwhile.
    pub async fn start_enrolment(&self, user: &User) -> StoreResult<Option<Enrolment>> {
        let secret: [u8; SECRET_LEN] = rand::random();
        let Some(sealed) = self.sealer.seal(&user.username, &secret) else {
            return Ok(None);
        };
        let b32 = base32_encode(&secret);
        let account = if user.email.is_empty() { &user.username } else { &user.email };
        let uri = otpauth_uri(&self.settings.issuer, account, &b32, self.settings.digits, self.settings.period);
        let Some(qr_svg) = qr_svg(&uri) else {
            return Ok(None);
        };
        self.store.set_totp_pending(&user.username, &sealed).await?;
        Ok(Some(Enrolment { secret: b32, otpauth_uri: uri, qr_svg }))
    }

    /// The secret awaiting its first code, if a setup is under way.
    pub async fn pending(&self, user: &User) -> StoreResult<Option<PendingApp>> {
        let Some(sealed) = self.store.totp_secrets(&user.username).await?.pending else {
            return Ok(None);
        };
        let Some(secret) = self.sealer.open(&user.username, &sealed) else {
            tracing::warn!(user = %user.username, "a pending authenticator secret does not open (auth.secret changed?)");
            return Ok(None);
        };
        Ok(Some(PendingApp { sealed, secret }))
    }

    /// The first code from the app: true when it is right, and the pending
    /// secret becomes the user's (the code's step counts as used).
    pub async fn confirm(&self, user: &User, pending: &PendingApp, typed: &str) -> StoreResult<bool> {
        let Some(step) = self.matches(&pending.secret, typed) else {
            return Ok(false);
        };
        self.store.enable_totp(&user.username, &pending.sealed, step).await?;
        Ok(true)
    }

    /// A code at sign-in: accepted at most once.
    pub async fn check(&self, user: &User, typed: &str) -> StoreResult<TotpCheck> {
        let Some(sealed) = self.store.totp_secrets(&user.username).await?.active else {
            return Ok(TotpCheck::NotEnrolled);
        };
        let Some(secret) = self.sealer.open(&user.username, &sealed) else {
            tracing::warn!(user = %user.username, "an authenticator secret does not open (auth.secret changed?)");
            return Ok(TotpCheck::NotEnrolled);
        };
        let Some(step) = self.matches(&secret, typed) else {
            return Ok(TotpCheck::Wrong);
        };
        Ok(if self.store.use_totp_step(&user.username, step).await? {
            TotpCheck::Accepted
        } else {
            TotpCheck::Replayed
        })
    }

    /// Forgets the user's app (and any setup under way); true if one was confirmed.
    pub async fn remove(&self, user: &User) -> StoreResult<bool> {
        self.store.remove_totp(&user.username).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 column: the 20-byte ASCII secret, 30 s steps, 8 digits.
    #[test]
    fn rfc_6238_sha1_test_vectors() {
        let secret = b"12345678901234567890";
        for (t, want) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(secret, step_at(t, 30), 8), want, "T = {t}");
            assert_eq!(code_at(secret, step_at(t, 30), 6), want[2..], "T = {t}, six digits");
        }
    }

    /// RFC 4226 appendix D: HOTP values for counters 0 to 9.
    #[test]
    fn rfc_4226_hotp_test_vectors() {
        let want = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
        for (counter, want) in want.iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", counter as u64, 6), *want, "counter {counter}");
        }
    }

    #[test]
    fn codes_within_the_skew_match_their_own_step_and_others_do_not() {
        let secret = b"12345678901234567890";
        let now = step_at(1_111_111_111, 30);
        for delta in [-1i64, 0, 1] {
            let step = now.checked_add_signed(delta).unwrap();
            assert_eq!(matching_step(secret, &code_at(secret, step, 6), now, 1, 6), Some(step));
        }
        assert_eq!(matching_step(secret, &code_at(secret, now + 2, 6), now, 1, 6), None, "beyond the skew");
        assert_eq!(matching_step(secret, &code_at(secret, now - 2, 6), now, 1, 6), None);
        assert_eq!(matching_step(secret, &code_at(secret, now, 6), now, 0, 6), Some(now));
        assert_eq!(matching_step(secret, "12345", now, 1, 6), None, "wrong length");
        assert_eq!(matching_step(secret, "abcdef", now, 1, 6), None, "not digits");
        assert_eq!(matching_step(secret, &format!(" {} ", code_at(secret, now, 6)), now, 1, 6), Some(now));
    }

    #[test]
    fn base32_round_trips_and_matches_rfc_4648() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_encode(b"f"), "MY");
        assert_eq!(base32_decode("mzxw 6ytb oi==").as_deref(), Some(&b"foobar"[..]));
        let secret: [u8; SECRET_LEN] = rand::random();
        let b32 = base32_encode(&secret);
        assert_eq!(b32.len(), 32);
        assert_eq!(base32_decode(&b32).as_deref(), Some(&secret[..]));
        assert_eq!(base32_decode("M1"), None);
    }

    #[test]
    fn the_otpauth_uri_names_issuer_account_and_parameters() {
        let uri = otpauth_uri("Acme SSO", "ali ce@example.com", "MZXW6YTBOI", 6, 30);
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20SSO:ali%20ce%40example.com?secret=MZXW6YTBOI&issuer=Acme%20SSO\
             &algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn the_qr_code_is_an_inline_svg() {
        let svg = qr_svg("otpauth://totp/Portcullis:alice?secret=MZXW6YTBOI").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_user_under_its_key() {
        let a = Sealer::new(b"a secret of at least thirty-two bytes!!");
        let b = Sealer::new(b"another secret of thirty-two bytes or more");
        let sealed = a.seal("alice", b"raw secret bytes").unwrap();
        assert!(!sealed.contains("raw secret"));
        assert_ne!(sealed, a.seal("alice", b"raw secret bytes").unwrap(), "a fresh nonce each time");
        assert_eq!(a.open("alice", &sealed).as_deref(), Some(&b"raw secret bytes"[..]));
        assert_eq!(a.open("bob", &sealed), None, "bound to the account");
        assert_eq!(b.open("alice", &sealed), None, "bound to auth.secret");
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(a.open("alice", &tampered), None, "authenticated");
    }
}
