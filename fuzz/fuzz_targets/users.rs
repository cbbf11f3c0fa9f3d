//! The users file parser (`auth::users::parse`), which a reload runs on
//! whatever an operator (or `portcullis user`) wrote, and the edits the
//! file's writer makes (`auth::users::edit`).
//!
//! Properties: every accepted user has a valid name, an e-mail with `@` and
//! identity header values that are the name, e-mail, display name and
//! groups; a user is found by its name, and by its e-mail in any case (no
//! name is another account's address). Edited as `portcullis user` edits it,
//! an accepted file stays accepted: a user added goes after everything that
//! was there (the old text is kept byte for byte), a changed password
//! changes only that user's hash, a removed user is the only one gone.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portcullis::auth::users::edit::{self, Change};
use portcullis::auth::users::{UserEntry, UsersFile, parse, valid_username};

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J8I4fhkHh1u7yDw4x2JRq2x3v3Kwm3bD8d1p4C4mYfI";

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
    let Ok(doc) = text.parse::<toml_edit::DocumentMut>() else {
        panic!("an accepted file is one toml_edit parses");
    };

    // A new user: after everything that was there.
    let new = UserEntry { email: "fuzz-new@fuzz.invalid".into(), password: HASH.into(), ..Default::default() };
    let mut added = doc.clone();
    if !file.users.contains_key("fuzz-new") && file.email_owner(&new.email).is_none()
        && edit::add(&mut added, "fuzz-new", &new).is_ok()
    {
        let written = added.to_string();
        assert!(written.starts_with(text), "the old text was changed:\n{text}\n---\n{written}");
        let reread = parse(path, &written).unwrap_or_else(|e| panic!("refused after an add: {e}\n{written}"));
        assert_eq!(reread.len(), dir.len() + 1);
        assert_eq!(reread.get("fuzz-new").map(|u| u.password_hash.as_str()), Some(HASH));
    }

    // Each user: a new password, then removed; nobody else changes.
    for name in file.users.keys() {
        let mut changed = doc.clone();
        edit::update(&mut changed, name, &[Change::Password(HASH.into())]).expect("an existing user's password");
        let reread = parse(path, &changed.to_string()).expect("accepted after a new password");
        assert_eq!(reread.get(name).map(|u| u.password_hash.as_str()), Some(HASH));
        let mut removed = doc.clone();
        edit::remove(&mut removed, name).expect("an existing user is removed");
        let reread = parse(path, &removed.to_string()).expect("accepted after a removal");
        assert!(reread.get(name).is_none());
        for other in file.users.keys().filter(|o| *o != name) {
            let (a, b, c) = (dir.get(other).unwrap(), reread.get(other).expect("kept"), changed_user(&changed, other));
            assert_eq!((&a.email, &a.password_hash, &a.groups, a.disabled), (&b.email, &b.password_hash, &b.groups, b.disabled));
            assert_eq!(a.password_hash, c, "another user's password changed");
        }
    }
});

fn changed_user(doc: &toml_edit::DocumentMut, name: &str) -> String {
    let dir = parse(Path::new("users.toml"), &doc.to_string()).expect("accepted");
    dir.get(name).expect("kept").password_hash.clone()
}
