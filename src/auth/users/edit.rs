//! Edits of the users file's text that keep what the operator wrote: every
//! comment, blank line, key order and spelling outside the one value or entry
//! that changes (`toml_edit`, the parser behind the `toml` crate the config
//! already uses). The file's writer (`file`) runs these on the text it read
//! under its lock, then checks the result with the gateway's own parser.
//!
//! What each edit keeps:
//! - a changed value keeps the spacing and the comment around it
//!   (`password = "..."  # set by hand` stays so, with the new hash);
//! - a new user goes at the end of the file, after everything already there
//!   (comments at the end of the file stay above it), as a `[users.NAME]` table;
//! - a removed user takes its table, the comments inside it, and the comment
//!   block directly above its header (no blank line between: that block is
//!   about the user); a comment separated by a blank line stays, and so does
//!   the comment block above the file's first entry (the file's own header).

use toml_edit::{Array, DocumentMut, Item, Table, TableLike, Value, value};

use super::directory::UserEntry;

/// One change to an existing user's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new password, as an argon2 PHC string (never the password itself).
    Password(String),
    Disabled(bool),
    Email(String),
    DisplayName(Option<String>),
    Groups(Vec<String>),
}

impl Change {
    fn key(&self) -> &'static str {
        match self {
            Change::Password(_) => "password",
            Change::Disabled(_) => "disabled",
            Change::Email(_) => "email",
            Change::DisplayName(_) => "display_name",
            Change::Groups(_) => "groups",
        }
    }

    /// The new value; None removes the key.
    fn value(&self) -> Option<Value> {
        match self {
            Change::Password(s) | Change::Email(s) => Some(s.as_str().into()),
            Change::Disabled(d) => Some((*d).into()),
            Change::DisplayName(d) => d.as_deref().map(Value::from),
            Change::Groups(g) => Some(Value::Array(g.iter().map(String::as_str).collect::<Array>())),
        }
    }
}

/// Why an edit could not be made to the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditRefused {
    #[error("no user {0:?}")]
    UnknownUser(String),
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// The file's shape is one these edits do not write into (say `users`
    /// given as an inline table): the operator edits it by hand.
    #[error("{0}")]
    Shape(String),
}

/// The user's entry, as a table or an inline table.
fn entry_mut<'a>(doc: &'a mut DocumentMut, name: &str) -> Option<&'a mut dyn TableLike> {
    doc.get_mut("users")?.as_table_like_mut()?.get_mut(name)?.as_table_like_mut()
}

/// Whether the file has an entry for `name`.
pub fn has_user(doc: &DocumentMut, name: &str) -> bool {
    doc.get("users").and_then(Item::as_table_like).and_then(|u| u.get(name)).is_some()
}

/// Applies `changes` to the entry of `name`, in place.
pub fn update(doc: &mut DocumentMut, name: &str, changes: &[Change]) -> Result<(), EditRefused> {
    let entry = entry_mut(doc, name).ok_or_else(|| EditRefused::UnknownUser(name.to_owned()))?;
    for change in changes {
        let key = change.key();
        match (change.value(), entry.get_mut(key)) {
            (None, _) => {
                entry.remove(key);
            }
            (Some(mut new), Some(Item::Value(old))) => {
                // The spacing around the value and a comment after it stay.
                *new.decor_mut() = old.decor().clone();
                *old = new;
            }
            (Some(new), _) => {
                entry.insert(key, Item::Value(new));
            }
        }
    }
    Ok(())
}

/// Adds `name` as a `[users.NAME]` table after everything in the file.
pub fn add(doc: &mut DocumentMut, name: &str, user: &UserEntry) -> Result<(), EditRefused> {
    if has_user(doc, name) {
        return Err(EditRefused::UserExists(name.to_owned()));
    }
    let mut table = Table::new();
    table.insert("email", value(user.email.as_str()));
    if let Some(display) = &user.display_name {
        table.insert("display_name", value(display.as_str()));
    }
    table.insert("password", value(user.password.as_str()));
    table.insert("groups", value(user.groups.iter().map(String::as_str).collect::<Array>()));
    table.insert("disabled", value(user.disabled));
    // After every table there is, and after the text that ends the file
    // (comments a table's position would otherwise put below it).
    let last = tables(doc).iter().filter_map(|t| t.position()).max();
    table.set_position(last.map_or(0, |p| p + 1));
    let before = doc.trailing().as_str().unwrap_or("").to_owned();
    let empty = before.trim().is_empty() && doc.as_table().is_empty();
    let separator = if empty || before.ends_with("\n\n") { "" } else { "\n" };
    let prefix = if empty { String::new() } else { format!("{before}{separator}") };
    table.decor_mut().set_prefix(prefix);
    doc.set_trailing("");
    let users = doc.entry("users").or_insert_with(|| {
        let mut users = Table::new();
        users.set_implicit(true);
        Item::Table(users)
    });
    match users {
        Item::Table(users) => {
            users.insert(name, Item::Table(table));
            Ok(())
        }
        _ => Err(EditRefused::Shape(
            "`users` is not written as a table here; add the user by hand, or write users as [users.NAME] tables"
                .into(),
        )),
    }
}

/// Removes the entry of `name` (see the module's note on which comments go with it).
pub fn remove(doc: &mut DocumentMut, name: &str) -> Result<(), EditRefused> {
    let first_position = tables(doc).iter().filter_map(|t| t.position()).min();
    let users =
        doc.get_mut("users").and_then(Item::as_table_like_mut).ok_or_else(|| EditRefused::UnknownUser(name.into()))?;
    let removed = users.remove(name).ok_or_else(|| EditRefused::UnknownUser(name.to_owned()))?;
    let Item::Table(removed) = removed else {
        // A key = { ... } entry: its own comments went with its key.
        return Ok(());
    };
    let prefix = removed.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
    let is_first = removed.position().is_some() && removed.position() == first_position;
    let kept = if is_first { prefix } else { &prefix[..detached_end(prefix)] };
    if kept.is_empty() {
        return Ok(());
    }
    let kept = kept.to_owned();
    let position = removed.position();
    let next = users_tables_mut(doc).into_iter().filter(|t| t.position() > position).min_by_key(|t| t.position());
    match next {
        Some(next) => {
            let rest = next.decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_owned();
            next.decor_mut().set_prefix(format!("{kept}{rest}"));
        }
        None => {
            let rest = doc.trailing().as_str().unwrap_or("").to_owned();
            doc.set_trailing(format!("{kept}{rest}"));
        }
    }
    Ok(())
}

/// The end of the part of a table's prefix that is not attached to it: up to
/// and including its last blank line (0 when the whole prefix is attached).
fn detached_end(prefix: &str) -> usize {
    let mut end = 0;
    let mut at = 0;
    for line in prefix.split_inclusive('\n') {
        at += line.len();
        if line.trim().is_empty() && line.ends_with('\n') {
            end = at;
        }
    }
    end
}

/// Every standard table of the document (`[x]` headers), any depth.
fn tables(doc: &DocumentMut) -> Vec<&Table> {
    fn walk<'a>(t: &'a Table, out: &mut Vec<&'a Table>) {
        for (_, item) in t.iter() {
            if let Item::Table(child) = item {
                out.push(child);
                walk(child, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(doc.as_table(), &mut out);
    out
}

/// The tables directly under `users`.
fn users_tables_mut(doc: &mut DocumentMut) -> Vec<&mut Table> {
    match doc.get_mut("users") {
        Some(Item::Table(users)) => users.iter_mut().filter_map(|(_, item)| item.as_table_mut()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> DocumentMut {
        text.parse().expect("valid TOML")
    }

    fn carol() -> UserEntry {
        UserEntry {
            email: "carol@example.com".into(),
            display_name: None,
            password: "$argon2id$carol".into(),
            groups: vec!["dev".into()],
            disabled: false,
        }
    }

    const CAROL: &str = "[users.carol]\nemail = \"carol@example.com\"\npassword = \"$argon2id$carol\"\ngroups = [\"dev\"]\ndisabled = false\n";

    #[test]
    fn a_user_added_to_a_file_of_comments_goes_below_them() {
        let text = "# Users, one table each.\n#\n# [users.alice]\n# email = \"...\"\n";
        let mut d = doc(text);
        add(&mut d, "carol", &carol()).unwrap();
        assert_eq!(d.to_string(), format!("{text}\n{CAROL}"));
    }

    #[test]
    fn a_user_added_after_others_keeps_their_text_and_the_end_of_the_file() {
        let text = "# head\n\n[users.alice]   # the admin\nemail = \"a@x\"   # work address\n\
                    password = \"p\"\n\n# closing remark\n";
        let mut d = doc(text);
        add(&mut d, "carol", &carol()).unwrap();
        assert_eq!(d.to_string(), format!("{text}\n{CAROL}"));
        let mut d = doc("");
        add(&mut d, "carol", &carol()).unwrap();
        assert_eq!(d.to_string(), CAROL, "an empty file gets the entry alone");
        assert_eq!(add(&mut d, "carol", &carol()), Err(EditRefused::UserExists("carol".into())));
    }

    #[test]
    fn a_changed_value_keeps_its_spacing_and_comment() {
        let text = "[users.alice]\nemail    = \"a@x\"  # work\npassword = \"old\"   # set 2025\n\n# bob\n[users.bob]\n\
                    email = \"b@x\"\npassword = \"b\"\n";
        let mut d = doc(text);
        update(&mut d, "alice", &[Change::Password("new".into()), Change::Disabled(true)]).unwrap();
        let want =
            text.replace("password = \"old\"   # set 2025\n", "password = \"new\"   # set 2025\ndisabled = true\n");
        assert_eq!(d.to_string(), want);
        update(&mut d, "alice", &[Change::Disabled(false), Change::Groups(vec!["a".into(), "b".into()])]).unwrap();
        assert!(d.to_string().contains("disabled = false\ngroups = [\"a\", \"b\"]\n\n# bob\n"), "{d}");
        assert_eq!(update(&mut d, "nobody", &[Change::Disabled(true)]), Err(EditRefused::UnknownUser("nobody".into())));
    }

    #[test]
    fn an_inline_entry_is_edited_in_place() {
        let text = "[users]\nalice = { email = \"a@x\", password = \"old\" } # inline\n";
        let mut d = doc(text);
        update(&mut d, "alice", &[Change::Password("new".into())]).unwrap();
        assert_eq!(d.to_string(), text.replace("old", "new"));
    }

    #[test]
    fn a_removed_user_takes_its_own_comments_and_leaves_the_others() {
        let text = "# The users.\n[users.alice]\nemail = \"a@x\"\n\n# kept: about the file\n\n\
                    # bob, until March\n[users.bob]\nemail = \"b@x\"\n# inside bob\npassword = \"b\"\n\n\
                    [users.carol]\nemail = \"c@x\"\n";
        let mut d = doc(text);
        remove(&mut d, "bob").unwrap();
        assert_eq!(
            d.to_string(),
            "# The users.\n[users.alice]\nemail = \"a@x\"\n\n# kept: about the file\n\n\n[users.carol]\nemail = \"c@x\"\n"
        );
        remove(&mut d, "alice").unwrap();
        assert_eq!(
            d.to_string(),
            "# The users.\n\n# kept: about the file\n\n\n[users.carol]\nemail = \"c@x\"\n",
            "the first entry's comment is the file's header"
        );
        remove(&mut d, "carol").unwrap();
        assert_eq!(d.to_string(), "# The users.\n\n# kept: about the file\n\n\n");
        assert_eq!(remove(&mut d, "carol"), Err(EditRefused::UnknownUser("carol".into())));
    }

    #[test]
    fn removing_the_last_user_keeps_the_comment_that_ends_the_file() {
        let text = "[users.alice]\nemail = \"a@x\"\n\n[users.bob]\nemail = \"b@x\"\n# the end\n";
        let mut d = doc(text);
        remove(&mut d, "bob").unwrap();
        assert_eq!(d.to_string(), "[users.alice]\nemail = \"a@x\"\n\n# the end\n");
    }
}
