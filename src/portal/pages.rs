//! The portal's pages as typed views: each page is a serialisable struct that
//! the template renders, so a page cannot miss a variable its template needs
//! without the compiler noticing. [`Chrome`] is what every page shares; its
//! CSRF token is bound to one of the visitor's cookies (an anonymous visitor
//! gets a fresh CSRF cookie to bind it to).

use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use super::context::{Portal, format_time};
use crate::auth::account::RecentLogin;
use crate::auth::users::User;
use crate::body::Response;
use crate::reply::{self, Failure, Format};
use crate::store::SessionInfo;

/// What every page carries.
#[derive(Serialize)]
pub struct Chrome<'a> {
    pub prefix: &'a str,
    pub app_name: &'a str,
    pub csrf_token: String,
    pub title: &'static str,
    /// Set when the visitor had no cookie to bind the CSRF token to.
    #[serde(skip)]
    csrf_cookie: Option<HeaderValue>,
}

#[derive(Serialize)]
pub struct LoginView<'a> {
    #[serde(flatten)]
    pub chrome: Chrome<'a>,
    pub rd: &'a str,
    pub username: &'a str,
    pub error: &'a str,
    pub info: &'a str,
    /// A one-factor session's user, offered the second factor instead of
    /// the password form.
    pub step_up_user: Option<&'a str>,
}

#[derive(Serialize)]
pub struct CodeView<'a> {
    #[serde(flatten)]
    pub chrome: Chrome<'a>,
    pub rd: &'a str,
    pub masked_email: &'a str,
    pub expires_in: u64,
    pub resend_in: u64,
    pub error: &'a str,
    pub info: &'a str,
    pub remaining_attempts: Option<u32>,
    /// The backup-code form instead of the e-mailed code's.
    pub backup: bool,
    /// The authenticator app's form instead of the e-mailed code's.
    pub totp: bool,
    /// The user has an authenticator app (the other forms offer it).
    pub totp_enabled: bool,
    /// The user has a passkey (the page offers it, with JavaScript).
    pub passkey_enabled: bool,
    /// Digits of an e-mailed code (`otp.digits`).
    pub code_digits: u32,
    /// Digits of an app's code (`totp.digits`).
    pub totp_digits: u32,
}

#[derive(Serialize)]
pub struct LogoutView<'a> {
    #[serde(flatten)]
    pub chrome: Chrome<'a>,
    pub username: &'a str,
}

#[derive(Serialize)]
pub struct UserView<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub display_name: &'a str,
    pub groups: &'a [String],
}

impl<'a> UserView<'a> {
    pub fn of(user: &'a User) -> UserView<'a> {
        UserView {
            username: &user.username,
            email: &user.email,
            display_name: &user.display_name,
            groups: &user.groups,
        }
    }
}

/// A session as the account page and `api/sessions` list it.
#[derive(Serialize)]
pub struct SessionRow<'a> {
    pub id: &'a str,
    pub created: String,
    pub last_seen: String,
    pub ip: &'a str,
    pub device: &'a str,
    pub current: bool,
}

impl<'a> SessionRow<'a> {
    pub fn of(s: &'a SessionInfo, current_id: &str) -> SessionRow<'a> {
        SessionRow {
            id: &s.id,
            created: format_time(s.record.created),
            last_seen: format_time(s.record.last_seen),
            ip: &s.record.ip,
            device: &s.record.device,
            current: s.id == current_id,
        }
    }
}

/// A recent login as the account page lists it.
#[derive(Serialize)]
pub struct LoginRow<'a> {
    pub time: String,
    pub ip: &'a str,
    pub device: &'a str,
}

impl<'a> LoginRow<'a> {
    pub fn of(l: &'a RecentLogin) -> LoginRow<'a> {
        LoginRow { time: format_time(l.time), ip: &l.ip, device: &l.device }
    }
}

/// A passkey on the account page.
#[derive(Serialize)]
pub struct PasskeyRow {
    pub id: String,
    pub name: String,
    pub created: String,
}

impl PasskeyRow {
    pub fn of(p: crate::auth::passkey::PasskeyInfo) -> PasskeyRow {
        PasskeyRow { created: format_time(p.created), id: p.id, name: p.name }
    }
}

#[derive(Serialize)]
pub struct AccountView<'a> {
    #[serde(flatten)]
    pub chrome: Chrome<'a>,
    pub user: UserView<'a>,
    pub otp_enabled: bool,
    /// The deployment's policy asks every login for a code anyway.
    pub otp_required_by_policy: bool,
    /// An authenticator app is set up.
    pub totp_enabled: bool,
    /// An authenticator app being set up: secret and QR code to show.
    pub totp_setup: Option<&'a crate::auth::totp::Enrolment>,
    /// Digits of an app's code (`totp.digits`).
    pub totp_digits: u32,
    /// The user's passkeys.
    pub passkeys: Vec<PasskeyRow>,
    /// This server can be a passkey's relying party.
    pub passkeys_available: bool,
    /// The session is below what adding a factor needs: the page offers the
    /// step-up (a code e-mailed to the address on file) instead of the forms.
    pub needs_step_up: bool,
    /// Where the step-up comes back to (this page).
    pub account_url: &'a str,
    pub backup_codes_left: u32,
    /// New backup codes, shown once.
    pub backup_codes: &'a [String],
    /// The same codes as a percent-encoded text file (the download link).
    pub backup_codes_txt: String,
    /// Waiting for the code that confirms turning 2FA on.
    pub confirm_enable: bool,
    /// Digits of an e-mailed code (`otp.digits`).
    pub code_digits: u32,
    pub recent_logins: Vec<LoginRow<'a>>,
    pub sessions: Vec<SessionRow<'a>>,
    pub message: &'a str,
    pub error: &'a str,
}

/// A page view that carries the chrome.
pub trait View: Serialize {
    fn chrome(&self) -> &Chrome<'_>;
}

macro_rules! views {
    ($($t:ident),*) => {
        $(impl View for $t<'_> {
            fn chrome(&self) -> &Chrome<'_> {
                &self.chrome
            }
        })*
    };
}
views!(LoginView, CodeView, LogoutView, AccountView);

impl Portal {
    /// The chrome of a page for this visitor; `binding` overrides the cookie
    /// the CSRF token is bound to (a session token just issued).
    pub(super) fn chrome(&self, headers: &HeaderMap, binding: Option<&str>, title: &'static str) -> Chrome<'_> {
        let (binding, csrf_cookie) = match binding.or_else(|| self.cookies.csrf_binding(headers)) {
            Some(b) => (b.to_owned(), None),
            None => {
                let fresh = crate::session::new_token();
                let cookie = self.cookies.csrf(&fresh);
                (fresh, Some(cookie))
            }
        };
        Chrome {
            prefix: &self.settings.prefix,
            app_name: self.replies.app_name(),
            csrf_token: self.csrf.token(&binding),
            title,
            csrf_cookie,
        }
    }

    /// Renders a page view, setting the anonymous CSRF cookie if the chrome made one.
    pub(super) fn page<V: View>(&self, status: StatusCode, template: &str, view: &V) -> Response {
        let Some(html) = self.replies.render(template, view) else {
            return self.replies.failure(Format::Html, &Failure::Render);
        };
        let mut r = reply::html(status, html);
        if let Some(c) = &view.chrome().csrf_cookie {
            reply::set_cookie(&mut r, c.clone());
        }
        r
    }
}
