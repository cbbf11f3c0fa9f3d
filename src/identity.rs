//! The identity headers that tell the upstream who is logged in (by default
//! `Remote-User`, `Remote-Email`, `Remote-Name`, `Remote-Groups`). This module
//! is the one place that strips a client's copies and applies the gateway's, in
//! proxy mode and in forward-auth answers alike: an upstream that trusts these
//! headers must only ever see values the gateway set.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::IdentityHeadersConfig;

/// A user's values for the identity headers, prepared once when the users
/// file is read (not per request).
#[derive(Debug, Clone)]
pub struct IdentityValues {
    pub user: HeaderValue,
    pub email: HeaderValue,
    pub name: HeaderValue,
    /// Comma-separated group names.
    pub groups: HeaderValue,
}

/// The configured header names.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    user: HeaderName,
    email: HeaderName,
    name: HeaderName,
    groups: HeaderName,
    auth_method: HeaderName,
}

impl IdentityHeaders {
    pub fn new(cfg: &IdentityHeadersConfig) -> IdentityHeaders {
        IdentityHeaders {
            user: cfg.user.0.clone(),
            email: cfg.email.0.clone(),
            name: cfg.name.0.clone(),
            groups: cfg.groups.0.clone(),
            auth_method: cfg.auth_method.0.clone(),
        }
    }

    fn names(&self) -> [&HeaderName; 5] {
        [&self.user, &self.email, &self.name, &self.groups, &self.auth_method]
    }

    /// Removes every client-sent copy of the identity headers, in every
    /// spelling an upstream could read as one: WSGI and CGI servers turn `-`
    /// and `_` alike into `_` (`Remote_User` becomes `REMOTE_USER`, as
    /// `Remote-User` does).
    pub fn strip(&self, headers: &mut HeaderMap) {
        // One pass over the names present, not a hashed removal per name:
        // most requests carry none of them, and then nothing is allocated.
        let names = self.names();
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| {
                names.contains(k)
                    // Header names are lower-case already; only those with `_` can alias.
                    || (k.as_str().contains('_') && names.iter().any(|n| same_with_underscores(k.as_str(), n.as_str())))
            })
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(name);
        }
    }

    /// Sets the identity headers to `values` (replacing any copy), and how
    /// the request was signed (`session` or `token`).
    pub fn apply(&self, values: &IdentityValues, method: &'static str, headers: &mut HeaderMap) {
        headers.insert(self.user.clone(), values.user.clone());
        headers.insert(self.email.clone(), values.email.clone());
        headers.insert(self.name.clone(), values.name.clone());
        headers.insert(self.groups.clone(), values.groups.clone());
        headers.insert(self.auth_method.clone(), HeaderValue::from_static(method));
    }
}

/// `a` and `b` are equal once every `_` is read as `-`.
fn same_with_underscores(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y || (x == b'_' && y == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_copies_are_replaced_by_the_users_values() {
        let ids = IdentityHeaders::new(&IdentityHeadersConfig::default());
        let mut h = HeaderMap::new();
        h.append("remote-user", HeaderValue::from_static("admin"));
        h.append("remote-user", HeaderValue::from_static("root"));
        h.insert("remote-groups", HeaderValue::from_static("admins"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert("remote_user", HeaderValue::from_static("admin"));
        h.insert("x_kept_too", HeaderValue::from_static("1"));
        ids.strip(&mut h);
        assert!(h.get("remote_user").is_none(), "an underscore spelling is stripped");
        assert_eq!(h.get("x_kept_too").unwrap(), "1");
        assert!(h.get("remote-user").is_none() && h.get("remote-groups").is_none());
        let values = IdentityValues {
            user: HeaderValue::from_static("alice"),
            email: HeaderValue::from_static("alice@example.com"),
            name: HeaderValue::from_static("Alice"),
            groups: HeaderValue::from_static("dev"),
        };
        h.insert("remote_auth_method", HeaderValue::from_static("token"));
        ids.strip(&mut h);
        assert!(h.get("remote_auth_method").is_none(), "the method is the gateway's to say too");
        ids.apply(&values, "session", &mut h);
        assert_eq!(h.get_all("remote-user").iter().collect::<Vec<_>>(), ["alice"]);
        assert_eq!(h.get("remote-auth-method").unwrap(), "session");
        assert_eq!(h.get("remote-groups").unwrap(), "dev");
        assert_eq!(h.get("x-kept").unwrap(), "1");
    }
}
