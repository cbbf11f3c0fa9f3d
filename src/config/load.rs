//! Loading: built-in defaults, then the TOML file, then `PORTCULLIS_*` env vars.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use super::types::Config;
use super::upstream_env;
use super::validate::{Problem, validate};

/// The top-level sections; only env vars naming one of them are configuration
/// (so `PORTCULLIS_CONFIG` or `PORTCULLIS_REQUIRE_SERVICES` are not mistaken for keys).
/// `upstream`, a list, has its own reading (`upstream_env`).
const SECTIONS: &[&str] =
    &["server", "auth", "session", "otp", "totp", "store", "mail", "rate_limit", "lockout", "access_control", "ldap"];

/// A validated configuration and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file that was read, if any (built-in defaults otherwise).
    pub file: Option<PathBuf>,
}

/// Why a configuration was refused: every problem found, each with its key.
#[derive(Debug)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.file {
            Some(p) => p.display().to_string(),
            None => "built-in defaults".to_string(),
        };
        writeln!(f, "invalid configuration ({source}):")?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Which file to read: the flag, else `$PORTCULLIS_CONFIG`, else
/// `config/portcullis.toml` when it exists, else none (built-in defaults).
pub fn resolve_config_path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("PORTCULLIS_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from("config/portcullis.toml");
    default.exists().then_some(default)
}

fn env_provider() -> Env {
    Env::prefixed("PORTCULLIS_").filter(|key| names_a_key(key.as_str())).split("__")
}

/// Whether `PORTCULLIS_<var>` names a configuration key (`SECTION__KEY`).
fn names_a_key(var: &str) -> bool {
    let var = var.to_ascii_lowercase();
    SECTIONS.iter().any(|s| var.strip_prefix(s).is_some_and(|rest| rest.starts_with("__")))
}

/// Loads and validates the configuration for `serve` and `check-config`.
/// `demo` relaxes the checks that only make sense in production (the secret).
pub fn load(flag: Option<&Path>, base: Config, demo: bool) -> Result<LoadedConfig, ConfigError> {
    load_file(resolve_config_path(flag), base, demo)
}

/// Loads from exactly `file` (None: defaults and environment only).
pub fn load_file(file: Option<PathBuf>, base: Config, demo: bool) -> Result<LoadedConfig, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(base));
    if let Some(path) = &file {
        if !path.is_file() {
            return Err(ConfigError {
                file: file.clone(),
                problems: vec![Problem::new("--config", "file not found or not readable")],
            });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(env_provider());
    let upstream = upstream_env::apply(
        &figment,
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )
    .map_err(|problems| ConfigError { file: file.clone(), problems })?;
    let Some(upstream) = upstream else {
        return load_from_figment(figment, file, demo);
    };
    figment = figment.merge(Serialized::default("upstream", upstream.list));
    load_from_figment(figment, file, demo).map_err(|mut e| {
        upstream_env::name_variables(&mut e.problems, &upstream.set_by);
        e
    })
}

/// Extracts and validates from an assembled figment (also used by tests).
pub fn load_from_figment(figment: Figment, file: Option<PathBuf>, demo: bool) -> Result<LoadedConfig, ConfigError> {
    let mut config: Config = figment
        .extract()
        .map_err(|e| ConfigError { file: file.clone(), problems: e.into_iter().map(problem_from_figment).collect() })?;
    if let Some(path) = &file {
        resolve_relative_paths(&mut config, &figment, path);
    }
    let problems = validate(&mut config, demo);
    if !problems.is_empty() {
        return Err(ConfigError { file, problems });
    }
    Ok(LoadedConfig { config, file })
}

/// Makes the relative paths written in the config file relative to the file's
/// directory, so the gateway finds the same files whatever directory it was
/// started from (a systemd unit, a shell in another directory). Paths from
/// `PORTCULLIS_*` variables and the built-in defaults stay relative to the
/// working directory, as paths on a command line are.
fn resolve_relative_paths(c: &mut Config, figment: &Figment, file: &Path) {
    let dir = file.parent().unwrap_or(Path::new(""));
    let from_file = |key: &str| {
        figment
            .find_metadata(key)
            .and_then(|m| m.source.as_ref())
            .and_then(|s| s.file_path())
            .is_some_and(|f| f == file)
    };
    let resolve = |key: &str, path: &mut PathBuf| {
        if path.is_relative() && from_file(key) {
            *path = dir.join(&*path);
        }
    };
    resolve("auth.users_file", &mut c.auth.users_file);
    if let Some(p) = &mut c.server.tls_cert {
        resolve("server.tls_cert", p);
    }
    if let Some(p) = &mut c.server.tls_key {
        resolve("server.tls_key", p);
    }
    if let Some(p) = &mut c.store.state_file {
        resolve("store.state_file", p);
    }
    if let Some(ca) = &mut c.store.ca_file {
        resolve("store.ca_file", &mut ca.path);
    }
    if let Some(p) = &mut c.mail.file_dir {
        resolve("mail.file_dir", p);
    }
    if let Some(ca) = &mut c.mail.smtp_ca_file {
        resolve("mail.smtp_ca_file", &mut ca.path);
    }
    if let Some(ca) = &mut c.ldap.ca_file {
        resolve("ldap.ca_file", &mut ca.path);
    }
    for u in &mut c.upstream {
        if let Some(ca) = &mut u.ca_file {
            resolve("upstream", &mut ca.path);
        }
    }
}

/// `["access_control", "rules", "2", "networks"]` → `access_control.rules[2].networks`,
/// the spelling validation uses too.
fn key_path(segments: &[String]) -> String {
    let mut key = String::new();
    for seg in segments {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            key.push_str(&format!("[{seg}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(seg);
        }
    }
    key
}

fn problem_from_figment(e: figment::Error) -> Problem {
    use figment::error::Kind;
    let mut key = key_path(&e.path);
    let what = match &e.kind {
        Kind::UnknownField(field, known) => {
            let table = if e.path.last() == Some(field) { key_path(&e.path[..e.path.len() - 1]) } else { key.clone() };
            if e.path.last() != Some(field) {
                key = if key.is_empty() { field.clone() } else { format!("{key}.{field}") };
            }
            // The whole list, so a misspelt key is fixed without opening the
            // reference (and tests read the schema from here).
            let place = if table.is_empty() { "at the top level".to_string() } else { format!("in [{table}]") };
            format!("unknown key; the keys {place} are: {}", known.join(", "))
        }
        Kind::MissingField(field) => {
            if e.path.last().map(String::as_str) != Some(field.as_ref()) {
                key = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
            }
            "missing required key".to_string()
        }
        _ => e.kind.to_string(),
    };
    let origin =
        e.metadata.as_ref().and_then(|m| m.source.as_ref()).map(|s| format!(" (from {s})")).unwrap_or_default();
    Problem::new(if key.is_empty() { "<root>".into() } else { key }, format!("{what}{origin}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Result<LoadedConfig, ConfigError> {
        let fig = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text));
        load_from_figment(fig, None, true)
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let err = from_toml("[server]\nlisten_port = 8080\n").unwrap_err();
        assert_eq!(err.problems[0].key, "server.listen_port", "{err}");
        assert!(err.problems[0].message.contains("unknown key"));
        assert!(err.problems[0].message.contains("the keys in [server] are: listen, public_url,"), "{err}");
    }

    #[test]
    fn every_section_takes_environment_variables() {
        for section in ["server", "upstream", "auth", "session", "otp", "totp", "store", "mail", "ldap"] {
            let var = format!("{}__ISSUER", section.to_ascii_uppercase());
            assert_eq!(names_a_key(&var), section != "upstream", "{var}: upstream has a reading of its own");
        }
        assert!(!names_a_key("CONFIG") && !names_a_key("REQUIRE_SERVICES") && !names_a_key("TOTPX__A"));
    }

    #[test]
    fn bad_values_are_named_with_their_path() {
        let err = from_toml("[otp]\nttl = \"ten minutes\"\n").unwrap_err();
        assert_eq!(err.problems[0].key, "otp.ttl", "{err}");
        let err = from_toml("[rate_limit]\nlogin = \"5 per minute\"\n").unwrap_err();
        assert_eq!(err.problems[0].key, "rate_limit.login", "{err}");
        let err = from_toml("[server]\ntrusted_proxies = [\"10.0.0.0/99\"]\n").unwrap_err();
        assert_eq!(err.problems[0].key, "server.trusted_proxies[0]", "{err}");
        let err = from_toml("[[access_control.rules]]\npolicy = \"deny\"\nnetworks = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert_eq!(err.problems[0].key, "access_control.rules[0].networks[0]", "{err}");
    }

    #[test]
    fn values_parse_into_their_types() {
        let c = from_toml(
            "[session]\nremember_me = \"7d\"\n[rate_limit]\nlogin = \"3/1m\"\n\
             [[upstream]]\nurl = \"http://10.0.0.5:8000\"\nhost = \"app.example.com\"\n",
        )
        .unwrap()
        .config;
        assert_eq!(c.session.remember_me.as_secs(), 7 * 86400);
        assert_eq!(c.rate_limit.login.limit, 3);
        assert_eq!(c.upstream.len(), 1);
        assert_eq!(c.upstream[0].host.as_deref(), Some("app.example.com"));
    }
}
