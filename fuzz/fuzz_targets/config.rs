//! The config file: figment over the built-in defaults and TOML text, then
//! validation (`config::load_from_figment`), as `serve` and `check-config`
//! do (without the environment).
//!
//! Properties: a refused file names every problem with a non-empty key and
//! message; an accepted one validates again without a problem (validation is
//! stable), can be printed as TOML (`check-config` prints it), and builds
//! the parts the gateway assembles from it without a panic: the access
//! rules, the session cookies (whose names and attributes make a valid
//! `Set-Cookie`), the return-address check (which accepts the portal's own
//! login URL) and the CSRF origin.
#![no_main]

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use libfuzzer_sys::fuzz_target;
use portcullis::access::AccessRules;
use portcullis::config::{Config, load_from_figment, validate};
use portcullis::portal::Redirects;
use portcullis::session::SessionCookies;

fuzz_target!(|text: &str| {
    // Validation reads the CA and TLS files the config names; keep the
    // fuzzer to the files a test tree could hold.
    if text.contains("/dev") || text.contains("/proc") || text.contains("/sys") {
        return;
    }
    let figment = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text));
    for demo in [true, false] {
        let loaded = match load_from_figment(figment.clone(), None, demo) {
            Ok(l) => l,
            Err(e) => {
                assert!(!e.problems.is_empty(), "refused without a reason");
                for p in &e.problems {
                    assert!(!p.key.is_empty() && !p.message.is_empty(), "{p:?}");
                }
                continue;
            }
        };
        let mut again = loaded.config.clone();
        let problems = validate(&mut again, demo);
        assert!(problems.is_empty(), "an accepted config fails validation again: {problems:?}");
        toml::to_string_pretty(&loaded.config).expect("check-config can print it");

        let c = &loaded.config;
        let _ = AccessRules::new(&c.access_control);
        let secure = c.server.public_url.scheme() == "https";
        let jar = SessionCookies::new(&c.session, secure);
        let set = jar.session("AAAA", None);
        assert!(!set.is_empty(), "the session cookie cannot be written");
        let redirects = Redirects::new(&c.server.public_url, &c.auth.allowed_redirect_domains);
        let home = format!("{}{}/account", c.server.public_url.origin().ascii_serialization(), c.auth.prefix);
        assert!(redirects.validate(Some(&home)).is_some(), "the portal's own page {home:?} refused as rd");
    }
});
