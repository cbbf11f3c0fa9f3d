//! The users file parser (`auth::users::parse`), which a reload runs on
//! whatever an operator (or `portcullis user`) wrote.
//!
//! Properties: every accepted user has a valid name, an e-mail with `@` and
//! identity header values that are the name, e-mail, display name and
//! groups; a user is found by its name, and by its e-mail in any case (no
//! name is another account's address); the file, written back as
//! `portcullis user` writes it, parses to the same users.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portcullis::auth::users::{UsersFile, parse, valid_username};

fuzz_target!(|text: &str| {
    let path = Path::new("users.toml");
    let Ok(dir) = parse(path, text) else {
        return;
    };
    let file: UsersFile = toml::from_str(text).expect("an accepted file is a users file");
    assert_eq!(dir.len(), file.users.len());
    for (name, entry) in &file.users {
        assert!(valid_username(name), "{name:?}");
        let user = dir.get(name).expect("every entry is a user");
        assert_eq!(user.username, *name);
        assert!(user.email.contains('@'));
        assert_eq!(user.identity.user.as_bytes(), name.as_bytes());
        assert_eq!(user.identity.email.as_bytes(), entry.email.as_bytes());
        assert_eq!(user.identity.name.as_bytes(), user.display_name.as_bytes());
        assert_eq!(user.identity.groups.as_bytes(), entry.groups.join(",").as_bytes());
        assert_eq!(dir.find(name).map(|u| u.username.as_str()), Some(name.as_str()), "found by name");
        // The login form takes a name or an e-mail: an address finds its
        // owner, in any case.
        if entry.email.trim() == entry.email {
            for spelling in [entry.email.clone(), entry.email.to_ascii_uppercase(), entry.email.to_ascii_lowercase()] {
                let found = dir.find(&spelling).map(|u| u.username.as_str());
                assert_eq!(found, Some(name.as_str()), "{spelling:?} finds another account");
            }
        }
    }
    // Written back (as `portcullis user` writes), it reads the same.
    let written = toml::to_string_pretty(&file).expect("a users file can be written");
    let reread = parse(path, &written).unwrap_or_else(|e| panic!("written back, refused: {e}\n{written}"));
    assert_eq!(reread.len(), dir.len());
    for name in file.users.keys() {
        let (a, b) = (dir.get(name).unwrap(), reread.get(name).expect("still there"));
        assert_eq!(
            (&a.email, &a.display_name, &a.password_hash, &a.groups, a.disabled),
            (&b.email, &b.display_name, &b.password_hash, &b.groups, b.disabled)
        );
    }
});
