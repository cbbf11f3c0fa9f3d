//! The small value languages of the config file: durations ("90s", "30d"),
//! rate specs ("5/5m"), secrets that never print, and "one or many" lists.
//! Each parses at deserialisation time so that figment attributes an error to
//! the key that holds the bad value.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// Parses "90s", "10m", "1h 30m", "30d" (humantime syntax); a bare number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"90s\", \"10m\", \"30d\""))
}

/// Renders a duration the way an operator writes it, in the units the
/// reference config uses ("30d", "1h 30m", "90s" prints as "1m 30s"), so
/// `check-config` shows back what was written and what parses again.
pub fn format_duration(d: Duration) -> String {
    let mut parts = Vec::new();
    let mut secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let millis = d.subsec_millis();
    if millis > 0 {
        parts.push(format!("{millis}ms"));
    }
    if parts.is_empty() { "0s".to_string() } else { parts.join(" ") }
}

/// `#[serde(with = "duration")]` for `Duration` fields.
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Secs(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => parse_duration(&s).map_err(de::Error::custom),
            Raw::Secs(n) => Ok(Duration::from_secs(n)),
        }
    }
}

/// A limit over a sliding window: at most `limit` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    pub limit: u32,
    pub window: Duration,
}

impl RateSpec {
    pub const fn new(limit: u32, window: Duration) -> Self {
        RateSpec { limit, window }
    }
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let help = "write it as \"N/window\", e.g. \"5/5m\"";
        let (n, w) = s.split_once('/').ok_or_else(|| format!("invalid rate {s:?}: {help}"))?;
        let limit: u32 = n.trim().parse().map_err(|_| format!("invalid rate {s:?}: {n:?} is not a count; {help}"))?;
        let window = parse_duration(w)?;
        if limit == 0 || window.is_zero() {
            return Err(format!("invalid rate {s:?}: count and window must be above zero"));
        }
        Ok(RateSpec { limit, window })
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.limit, format_duration(self.window))
    }
}

impl Serialize for RateSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A value that must never be printed: passwords, keys, URLs with credentials.
/// `Debug` and `Serialize` (used by `check-config`) show a placeholder instead.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The real value; call sites that need it are few and deliberate.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"[redacted]\"" })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            s.serialize_str("")
        } else if let Some(shown) = redacted_url(&self.0) {
            s.serialize_str(&shown)
        } else {
            s.serialize_str("[redacted]")
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A URL keeps its scheme, host and path visible with only its password hidden,
/// so `check-config` still tells the operator which store it will use.
fn redacted_url(s: &str) -> Option<String> {
    let mut url = url::Url::parse(s).ok()?;
    if url.cannot_be_a_base() {
        return None;
    }
    if url.password().is_some() {
        url.set_password(Some("REDACTED")).ok()?;
    }
    Some(url.to_string())
}

/// Accepts `x = "a"` as well as `x = ["a", "b"]`.
pub fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// A header name, checked when the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNameSetting(pub http::HeaderName);

impl HeaderNameSetting {
    pub fn from_static(name: &'static str) -> Self {
        HeaderNameSetting(http::HeaderName::from_static(name))
    }
}

impl Serialize for HeaderNameSetting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for HeaderNameSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        http::HeaderName::from_bytes(s.as_bytes())
            .map(HeaderNameSetting)
            .map_err(|_| de::Error::custom(format!("{s:?} is not a valid header name")))
    }
}

/// A path regular expression of an access rule, compiled when the config is read.
#[derive(Debug, Clone)]
pub struct PathPattern(pub regex::Regex);

impl PartialEq for PathPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Serialize for PathPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for PathPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s).map(PathPattern).map_err(|e| de::Error::custom(format!("invalid regex: {e}")))
    }
}

/// An HTTP method of an access rule, upper-cased and checked when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSetting(pub http::Method);

impl Serialize for MethodSetting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for MethodSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        http::Method::from_bytes(s.to_ascii_uppercase().as_bytes())
            .map(MethodSetting)
            .map_err(|_| de::Error::custom(format!("{s:?} is not a method")))
    }
}

/// A PEM file of trust anchors (an upstream's or the mail relay's private CA).
/// The config names the path; validation reads the certificates once, so the
/// clients use exactly what `check-config` accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct CaFile {
    pub path: std::path::PathBuf,
    certs: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl CaFile {
    /// Reads and checks the file.
    pub fn read(path: &std::path::Path) -> Result<CaFile, String> {
        Ok(CaFile { path: path.to_path_buf(), certs: crate::ca_file::read(path)? })
    }

    /// Reads the certificates of a path that was only named so far.
    pub(super) fn load(&mut self) -> Result<(), String> {
        self.certs = crate::ca_file::read(&self.path)?;
        Ok(())
    }

    /// The certificates (empty until the config is validated).
    pub fn certs(&self) -> &[rustls_pki_types::CertificateDer<'static>] {
        &self.certs
    }
}

impl Serialize for CaFile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.path.serialize(s)
    }
}

impl<'de> Deserialize<'de> for CaFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(CaFile { path: std::path::PathBuf::deserialize(d)?, certs: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_operator_spellings() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert!(parse_duration("ten minutes").is_err());
    }

    #[test]
    fn durations_print_as_operators_write_them_and_parse_back() {
        for (d, text) in [
            (Duration::from_secs(30 * 86400), "30d"),
            (Duration::from_secs(12 * 3600), "12h"),
            (Duration::from_secs(5400), "1h 30m"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text).unwrap(), d, "{text} parses back");
        }
        assert_eq!(RateSpec::new(5, Duration::from_secs(3600)).to_string(), "5/1h");
    }

    #[test]
    fn rate_specs_parse_and_print_back() {
        let r: RateSpec = "5/5m".parse().unwrap();
        assert_eq!(r, RateSpec::new(5, Duration::from_secs(300)));
        assert_eq!(r.to_string(), "5/5m");
        assert!("5".parse::<RateSpec>().is_err());
        assert!("0/5m".parse::<RateSpec>().is_err());
        assert!("x/5m".parse::<RateSpec>().is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"[redacted]\"");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        let u = Secret::new("redis://:pw@10.0.0.1:6379/0");
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"redis://:REDACTED@10.0.0.1:6379/0\"");
    }
}
