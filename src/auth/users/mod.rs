//! The users file: who may log in, their e-mail, groups and password hash.
//! One concept per file:
//!
//! - `directory`: the file's entries, and the directory the gateway looks
//!   users up in, built by the one parser ([`parse`], [`load`]);
//! - `watch`: the live directory ([`Users`]), reloaded when the file changes
//!   or on SIGHUP, ending the sessions of users an edit changed;
//! - `edit`: changes to the file's text that keep its comments and order
//!   (public for the fuzz target; everyone else writes through `file`);
//! - `file`: the one writer of the file ([`UsersFileWriter`]), for the
//!   command line and the gateway alike: locked, checked, atomic, keeping
//!   the file's owner and mode;
//! - `writer`: where the gateway's async code writes changes to users
//!   ([`UsersWriter`]): the file, or a refusal for a backend it only reads;
//! - `ldap`: the LDAP / Active Directory backend, which the live directory
//!   reads instead of a file;
//! - `check`: the seam the login goes through, whichever backend holds the
//!   users: find an account, check its password.
//!
//! Each file imports only its siblings; this one only names what they offer.

mod check;
mod directory;
pub mod edit;
mod file;
pub mod ldap;
mod watch;
mod writer;

pub use check::CheckError;
pub use directory::{
    CREDENTIAL_PARTS, User, UserDirectory, UserEntry, UsersError, UsersFile, load, parse, valid_username,
};
pub use edit::Change;
pub use file::{EditError, UsersFileWriter};
pub use watch::{Backend, Reloaded, Stale, Users};
pub use writer::UsersWriter;
