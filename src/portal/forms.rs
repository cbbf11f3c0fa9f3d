//! Reading gateway requests: bounded bodies (64 KiB) as JSON or form fields,
//! the CSRF check (a same-origin `Origin`/`Referer`, or a signed token bound to
//! one of the visitor's cookies), and return-address (`rd`) validation against
//! open redirects.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::clock::Clock;
use crate::reply::{BodyError, X_CSRF_TOKEN};

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

    /// The fields as the typed form an endpoint reads: each struct field
    /// names a request field. An empty value is absent (`Option` fields are
    /// `None`); a `bool` field is a flag (`true`, `on`, `1`, `yes`). A field
    /// the endpoint needs is an `Option` it checks itself, so the answer can
    /// name it; anything else is `invalid request body`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, BodyError> {
        let present = self.0.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.as_str(), FieldValue(v)));
        T::deserialize(serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(present))
            .map_err(|_| BodyError::Invalid)
    }

    /// Every field as parsed, empty values included (for the fuzz targets'
    /// round trips).
    #[doc(hidden)]
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// One field's text, read as the type a form's field asks for.
struct FieldValue<'a>(&'a str);

impl<'de, E: serde::de::Error> serde::de::IntoDeserializer<'de, E> for FieldValue<'_> {
    type Deserializer = FieldText<'de, E>;
    fn into_deserializer(self) -> Self::Deserializer {
        FieldText(self.0.to_owned(), std::marker::PhantomData)
    }
}

/// The deserializer of one field's text.
struct FieldText<'de, E>(String, std::marker::PhantomData<(&'de (), E)>);

impl<'de, E: serde::de::Error> serde::de::Deserializer<'de> for FieldText<'de, E> {
    type Error = E;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        v.visit_string(self.0)
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        v.visit_some(self)
    }

    fn deserialize_bool<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        v.visit_bool(matches!(self.0.to_ascii_lowercase().as_str(), "true" | "on" | "1" | "yes"))
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// Reads and parses a body of at most 64 KiB, arriving within `timeout`.
pub async fn read_fields(
    headers: &HeaderMap,
    body: Incoming,
    timeout: std::time::Duration,
) -> Result<Fields, BodyError> {
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY)
    {
        return Err(BodyError::TooLarge);
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect()).await;
    let bytes = match collected.map_err(|_| BodyError::TooSlow)? {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(BodyError::TooLarge),
        Err(_) => return Err(BodyError::Invalid),
    };
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    parse_fields(ctype, &bytes)
}

/// Parses a body already read: a JSON object of strings, booleans and
/// numbers (`null` is absent) when the content type says JSON (or none is
/// given and it starts with `{`), else a urlencoded form.
pub fn parse_fields(content_type: &str, bytes: &[u8]) -> Result<Fields, BodyError> {
    let mut fields = Fields::default();
    if content_type.starts_with("application/json") || (content_type.is_empty() && bytes.first() == Some(&b'{')) {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(fields);
        }
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| BodyError::Invalid)?;
        let serde_json::Value::Object(map) = value else {
            return Err(BodyError::Invalid);
        };
        for (k, v) in map {
            let s = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Null => continue,
                // A WebAuthn credential (`credential`) arrives as an object:
                // kept as its JSON text for the handler to parse.
                v @ serde_json::Value::Object(_) if k == "credential" => v.to_string(),
                _ => return Err(BodyError::Invalid),
            };
            fields.0.insert(k, s);
        }
    } else {
        for (k, v) in form_urlencoded::parse(bytes) {
            fields.0.insert(k.into_owned(), v.into_owned());
        }
    }
    Ok(fields)
}

/// One field of the query string, as [`query`] would give it (the last of
/// repeated names; empty counts as absent), without collecting the others.
pub fn query_field<'a>(uri: &'a http::Uri, name: &str) -> Option<Cow<'a, str>> {
    let q = uri.query()?;
    if !q.contains(['%', '+']) {
        // Nothing to decode (forward-auth's `?mode=nginx` on every check):
        // the same pairs, borrowed.
        let mut pairs = q.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")));
        return pairs.rfind(|(k, _)| *k == name).map(|(_, v)| Cow::Borrowed(v)).filter(|v| !v.is_empty());
    }
    form_urlencoded::parse(q.as_bytes()).filter(|(k, _)| k == name).last().map(|(_, v)| v).filter(|v| !v.is_empty())
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

/// How long a form's CSRF token stays valid.
const CSRF_TTL_SECS: u64 = 12 * 3600;

/// Signs and checks CSRF tokens, and knows which origin is our own.
#[derive(Clone)]
pub struct Csrf {
    secret: std::sync::Arc<[u8]>,
    /// Scheme, host and port of `public_url`.
    public_origin: String,
    clock: Clock,
}

impl Csrf {
    pub fn new(secret: std::sync::Arc<[u8]>, public_origin: &str, clock: Clock) -> Csrf {
        Csrf { secret, public_origin: public_origin.to_owned(), clock }
    }

    fn mac(&self, ts: u64, binding: &str) -> [u8; 32] {
        let mut mac = crate::keys::keyed(&self.secret);
        mac.update(b"csrf\0");
        mac.update(&ts.to_be_bytes());
        mac.update(binding.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A token for forms, bound to the visitor's session, pending-login or
    /// anonymous CSRF cookie (`binding`), so a token lifted from one visitor is
    /// useless to another.
    pub fn token(&self, binding: &str) -> String {
        let ts = self.clock.now_unix();
        let mut raw = Vec::with_capacity(40);
        raw.extend_from_slice(&ts.to_be_bytes());
        raw.extend_from_slice(&self.mac(ts, binding));
        URL_SAFE_NO_PAD.encode(raw)
    }

    fn token_valid(&self, binding: &str, token: &str) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(token.trim()) else {
            return false;
        };
        if raw.len() != 40 {
            return false;
        }
        let ts = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        let now = self.clock.now_unix();
        if ts > now + 60 || now.saturating_sub(ts) > CSRF_TTL_SECS {
            return false;
        }
        subtle::ConstantTimeEq::ct_eq(&self.mac(ts, binding)[..], &raw[8..]).into()
    }

    /// A state-changing request must come from our own origin (`Origin`, or
    /// failing that `Referer`), or carry a valid token (form field or
    /// `X-CSRF-Token`) bound to `binding`.
    pub fn allows(&self, headers: &HeaderMap, fields: &Fields, binding: Option<&str>) -> bool {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
            && origin != "null"
        {
            return origin == self.public_origin || self.token_ok(headers, fields, binding);
        }
        if let Some(referer) = headers.get(header::REFERER).and_then(|v| v.to_str().ok())
            && origin_of(referer).is_some_and(|o| o == self.public_origin)
        {
            return true;
        }
        self.token_ok(headers, fields, binding)
    }

    fn token_ok(&self, headers: &HeaderMap, fields: &Fields, binding: Option<&str>) -> bool {
        let token = fields.get("csrf_token").or_else(|| headers.get(&X_CSRF_TOKEN).and_then(|v| v.to_str().ok()));
        match (token, binding) {
            (Some(t), Some(binding)) => self.token_valid(binding, t),
            _ => false,
        }
    }
}

fn origin_of(url: &str) -> Option<String> {
    url::Url::parse(url).ok().map(|u| u.origin().ascii_serialization())
}

// ---- return address ----

/// Where `rd` may send a browser after login: `public_url`'s host and the
/// allowed redirect domains.
pub struct Redirects {
    public_url: url::Url,
    public_host: String,
    allowed_domains: Vec<String>,
}

impl Redirects {
    pub fn new(public_url: &url::Url, allowed_domains: &[String]) -> Redirects {
        Redirects {
            public_url: public_url.clone(),
            // As `normalize::host` writes a host, as the return address's is compared.
            public_host: public_url
                .host_str()
                .and_then(|h| crate::normalize::host(h).ok())
                .map_or_else(String::new, |h| h.name.into_owned()),
            allowed_domains: allowed_domains.iter().map(|d| d.trim_end_matches('.').to_ascii_lowercase()).collect(),
        }
    }

    /// Validates `rd`: an absolute http(s) URL on public_url's host or an
    /// allowed domain, or a path on the portal's origin, that the gate can
    /// read as a request (`normalize::url`: the login decides the level it
    /// needs the way the gate will). Anything else is dropped (None).
    pub fn validate(&self, rd: Option<&str>) -> Option<String> {
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
            self.public_url.join(rd).ok()?
        } else {
            url::Url::parse(rd).ok()?
        };
        if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let text = url.to_string();
        let normal = crate::normalize::url(crate::normalize::without_fragment(&text)).ok()?;
        let host = normal.host.name.as_ref();
        let allowed =
            host == self.public_host || self.allowed_domains.iter().any(|d| crate::access::domain_matches(d, host));
        allowed.then_some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_as_a_typed_form() {
        #[derive(serde::Deserialize)]
        struct Form {
            otp_code: Option<String>,
            method: Option<String>,
            #[serde(default)]
            remember_me: bool,
            rd: Option<String>,
        }
        let fields =
            parse_fields("application/x-www-form-urlencoded", b"otp_code=123456&remember_me=on&rd=&x=1").unwrap();
        let f: Form = fields.parse().unwrap();
        assert_eq!(f.otp_code.as_deref(), Some("123456"));
        assert!(f.remember_me && f.method.is_none());
        assert!(f.rd.is_none(), "an empty value is absent");
        let json = parse_fields("application/json", br#"{"remember_me": true, "method": "totp"}"#).unwrap();
        let f: Form = json.parse().unwrap();
        assert!(f.remember_me && f.method.as_deref() == Some("totp") && f.otp_code.is_none());
        let off = parse_fields("application/json", br#"{"remember_me": "no"}"#).unwrap();
        assert!(!off.parse::<Form>().unwrap().remember_me);
    }

    fn csrf(secret: &[u8], clock: &Clock) -> Csrf {
        Csrf::new(secret.into(), "http://127.0.0.1:8080", clock.clone())
    }

    #[test]
    fn one_query_field_reads_as_the_whole_query_does() {
        for q in [
            "/v?mode=nginx",
            "/v?a=1&mode=traefik&mode=caddy",
            "/v?mode=&x=1",
            "/v?mode",
            "/v",
            "/v?mo%64e=a%20b",
            "/v?modes=x",
            "/v?&&mode=nginx&",
            "/v?mode=a=b",
            "/v?=x&mode=y&=",
            "/v?mode=a+b",
            "/v?x=%zz&mode=caddy",
        ] {
            let uri: http::Uri = q.parse().unwrap();
            assert_eq!(query_field(&uri, "mode").as_deref(), query(&uri).get("mode"), "{q}");
        }
    }

    #[test]
    fn csrf_tokens_are_bound_and_signed() {
        let clock = Clock::manual(1_800_000_000_000);
        let t = csrf(b"secret", &clock).token("cookie-a");
        assert!(csrf(b"secret", &clock).token_valid("cookie-a", &t));
        assert!(!csrf(b"secret", &clock).token_valid("cookie-b", &t));
        assert!(!csrf(b"other", &clock).token_valid("cookie-a", &t));
        assert!(!csrf(b"secret", &clock).token_valid("cookie-a", "garbage"));
    }

    #[test]
    fn csrf_tokens_expire_after_twelve_hours() {
        let clock = Clock::manual(1_800_000_000_000);
        let c = csrf(b"secret", &clock);
        let t = c.token("cookie-a");
        clock.advance(std::time::Duration::from_secs(12 * 3600));
        assert!(c.token_valid("cookie-a", &t), "valid through its twelfth hour");
        clock.advance(std::time::Duration::from_secs(1));
        assert!(!c.token_valid("cookie-a", &t), "expired after");
    }
}
