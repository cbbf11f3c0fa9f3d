//! Authentication decisions: who the users are (`users`), password checks
//! (`password`), one-time and backup codes (`codes`) and the login state machine
//! (`login`). Handlers speak HTTP; this module decides; the store persists.

pub mod account;
pub mod codes;
pub mod login;
pub mod password;
pub mod suspicious;
pub mod users;
