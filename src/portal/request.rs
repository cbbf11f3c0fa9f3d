//! Reading gateway requests: bounded bodies (64 KiB) as JSON or form fields, the
//! CSRF check of SPEC §4 (same-origin `Origin`/`Referer`, or a signed token), and
//! return-address (`rd`) validation against open redirects.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use sha2::Sha256;

use crate::app::App;
use crate::body::Response;
use crate::portal::respond;

/// Largest body accepted on gateway endpoints.
pub const MAX_BODY: usize = 64 * 1024;

/// Request fields from a JSON object or a urlencoded form, by name.
#[derive(Debug, Default)]
pub struct Fields(HashMap<String, String>);

impl Fields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Checkbox / JSON boolean: true, "true", "on", "1", "yes".
    pub fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "on" | "1" | "yes"))
    }

    pub fn insert(&mut self, k: &str, v: &str) {
        self.0.insert(k.to_owned(), v.to_owned());
    }
}

/// Why a body could not be read; each maps to one response.
pub enum BodyError {
    TooLarge,
    Invalid,
}

impl BodyError {
    pub fn response(&self) -> Response {
        match self {
            BodyError::TooLarge => respond::json_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
            BodyError::Invalid => respond::json_error(StatusCode::BAD_REQUEST, "invalid request body"),
        }
    }
}

/// Reads and parses a body of at most 64 KiB.
pub async fn read_fields(headers: &HeaderMap, body: Incoming) -> Result<Fields, BodyError> {
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY)
    {
        return Err(BodyError::TooLarge);
    }
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(BodyError::TooLarge),
        Err(_) => return Err(BodyError::Invalid),
    };
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut fields = Fields::default();
    if ctype.starts_with("application/json") || (ctype.is_empty() && bytes.first() == Some(&b'{')) {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(fields);
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| BodyError::Invalid)?;
        let serde_json::Value::Object(map) = value else {
            return Err(BodyError::Invalid);
        };
        for (k, v) in map {
            let s = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Null => continue,
                _ => return Err(BodyError::Invalid),
            };
            fields.0.insert(k, s);
        }
    } else {
        for (k, v) in form_urlencoded::parse(&bytes) {
            fields.0.insert(k.into_owned(), v.into_owned());
        }
    }
    Ok(fields)
}

/// Query-string parameters.
pub fn query(uri: &http::Uri) -> Fields {
    let mut f = Fields::default();
    if let Some(q) = uri.query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            f.0.insert(k.into_owned(), v.into_owned());
        }
    }
    f
}

// ---- CSRF ----

type HmacSha256 = Hmac<Sha256>;

/// How long a form's CSRF token stays valid.
const CSRF_TTL_SECS: u64 = 12 * 3600;

fn csrf_mac(secret: &[u8], ts: u64, binding: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"csrf\0");
    mac.update(&ts.to_be_bytes());
    mac.update(binding.as_bytes());
    mac.finalize().into_bytes().into()
}

/// A token for forms, bound to the visitor's session or pending-login cookie
/// (`binding`), so a token lifted from one visitor is useless to another.
pub fn csrf_token(secret: &[u8], binding: &str) -> String {
    let ts = crate::session::now_unix();
    let mut raw = Vec::with_capacity(40);
    raw.extend_from_slice(&ts.to_be_bytes());
    raw.extend_from_slice(&csrf_mac(secret, ts, binding));
    URL_SAFE_NO_PAD.encode(raw)
}

fn csrf_token_valid(secret: &[u8], binding: &str, token: &str) -> bool {
    let Ok(raw) = URL_SAFE_NO_PAD.decode(token.trim()) else {
        return false;
    };
    if raw.len() != 40 {
        return false;
    }
    let ts = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
    let now = crate::session::now_unix();
    if ts > now + 60 || now.saturating_sub(ts) > CSRF_TTL_SECS {
        return false;
    }
    subtle::ConstantTimeEq::ct_eq(&csrf_mac(secret, ts, binding)[..], &raw[8..]).into()
}

/// The value CSRF tokens are bound to: the session cookie, else the
/// pending-login cookie, else the anonymous CSRF cookie. None when the request
/// carries none of them: no token is valid then (a cross-site form post sends
/// no SameSite=Lax cookies, so a token lifted elsewhere cannot be replayed).
pub fn csrf_binding<'a>(app: &App, headers: &'a HeaderMap) -> Option<&'a str> {
    let cookie = |name: &str| crate::proxy::headers::cookie_value(headers, name).filter(|v| !v.is_empty());
    cookie(&app.cookies.session_name)
        .or_else(|| cookie(&app.cookies.pending_name))
        .or_else(|| cookie(&app.cookies.csrf_name))
}

fn origin_of(url: &str) -> Option<String> {
    url::Url::parse(url).ok().map(|u| u.origin().ascii_serialization())
}

/// SPEC §4: a state-changing request must come from our own origin (Origin, or
/// failing that Referer), or carry a valid token (form field or X-CSRF-Token).
pub fn csrf_ok(app: &App, headers: &HeaderMap, fields: &Fields) -> bool {
    let same_origin = |v: &str| v == app.public_origin;
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != "null"
    {
        if same_origin(origin) {
            return true;
        }
        return token_ok(app, headers, fields);
    }
    if let Some(referer) = headers.get(header::REFERER).and_then(|v| v.to_str().ok())
        && origin_of(referer).is_some_and(|o| same_origin(&o))
    {
        return true;
    }
    token_ok(app, headers, fields)
}

fn token_ok(app: &App, headers: &HeaderMap, fields: &Fields) -> bool {
    let token = fields.get("csrf_token").or_else(|| headers.get(&respond::X_CSRF_TOKEN).and_then(|v| v.to_str().ok()));
    match (token, csrf_binding(app, headers)) {
        (Some(t), Some(binding)) => csrf_token_valid(&app.secret, binding, t),
        _ => false,
    }
}

// ---- return address ----

/// Validates `rd`: an absolute http(s) URL on public_url's host or an allowed
/// domain, or a path on the portal's origin. Anything else is dropped (None).
pub fn validate_rd(app: &App, rd: Option<&str>) -> Option<String> {
    let rd = rd?.trim();
    if rd.is_empty() || rd.len() > 4096 {
        return None;
    }
    let url = if rd.starts_with('/') {
        if rd.starts_with("//") || rd.starts_with("/\\") {
            return None;
        }
        // A path still goes through the host check below: the URL parser drops
        // tabs and newlines, so "/\t/evil.example" joins to http://evil.example/.
        url::Url::parse(&app.public_origin).ok()?.join(rd).ok()?
    } else {
        url::Url::parse(rd).ok()?
    };
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    let public_host = app.config.server.public_url.host_str().unwrap_or("").to_ascii_lowercase();
    let allowed = host == public_host
        || app
            .config
            .auth
            .allowed_redirect_domains
            .iter()
            .any(|d| crate::access::domain_matches(&d.to_ascii_lowercase(), &host));
    allowed.then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_bound_and_signed() {
        let t = csrf_token(b"secret", "cookie-a");
        assert!(csrf_token_valid(b"secret", "cookie-a", &t));
        assert!(!csrf_token_valid(b"secret", "cookie-b", &t));
        assert!(!csrf_token_valid(b"other", "cookie-a", &t));
        assert!(!csrf_token_valid(b"secret", "cookie-a", "garbage"));
    }
}
