//! The portal's pages as typed views: each page is a serialisable struct that
//! the template renders, so a page cannot miss a variable its template needs
//! without the compiler noticing. [`Chrome`] is what every page shares; its
//! CSRF token is bound to one of the visitor's cookies (an anonymous visitor
//! gets a fresh CSRF cookie to bind it to). The pages a handler's outcome
//! is shown on (the login, step-up and code forms, the account page) are
//! rendered here, for handlers and `outcome` alike.

use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use super::context::{Cx, Portal, format_time};
use crate::auth::account::RecentLogin;
use crate::auth::error::{AuthError, Factor};
use crate::auth::totp::Enrolment;
use crate::auth::users::User;
use crate::body::Response;
use crate::gate::{Authenticated, Target};
use crate::reply::{self, Failure, Format};
use crate::store::{SessionInfo, Store};

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
    /// The "forgot your password?" link (passwords can be reset here).
    pub reset_available: bool,
}

/// `account/password`: changing the password.
#[derive(Serialize)]
pub struct PasswordView<'a> {
    #[serde(flatten)]
    pub chrome: Chrome<'a>,
    pub user: UserView<'a>,
    /// Passwords can be changed here.
    pub available: bool,
    pub error: &'a str,
}

/// `reset`: asking for a code (`start`), then giving it with the new
/// password (`finish`), then done (`done`).
#[derive(Serialize)]
pub struct ResetView<'a> {
    #[serde(flatten)]
    pub chrome: Chrome<'a>,
    pub step: &'static str,
    pub username: &'a str,
    /// Passwords can be reset here.
    pub available: bool,
    pub code_digits: u32,
    pub error: &'a str,
    pub info: &'a str,
    pub message: &'a str,
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

/// An access token on the account page.
#[derive(Serialize)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub expires: String,
    pub last_used: String,
}

impl TokenRow {
    pub fn of(t: crate::auth::tokens::TokenView) -> TokenRow {
        TokenRow {
            created: format_time(t.created),
            expires: format_time(t.expires_at),
            last_used: t.last_used.map_or_else(|| "never".to_owned(), format_time),
            id: t.id,
            name: t.name,
        }
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
    /// Passwords can be changed here (the page links to the form).
    pub password_changeable: bool,
    /// The user is in the admin group: the page links to the operator console.
    pub is_operator: bool,
    /// The user's access tokens.
    pub tokens: Vec<TokenRow>,
    /// An access token just made, shown this once.
    pub access_token: Option<&'a crate::auth::tokens::NewToken>,
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
views!(LoginView, CodeView, LogoutView, AccountView, PasswordView, ResetView);

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

/// What the account page shows beyond the stored data.
#[derive(Default)]
pub(super) struct Notice {
    pub message: String,
    pub error: String,
    /// New backup codes, shown once.
    pub backup_codes: Vec<String>,
    /// Waiting for the code that confirms e-mailed codes.
    pub confirm_enable: bool,
    /// An authenticator app being set up: its secret and QR code.
    pub totp_setup: Option<Enrolment>,
    /// A session token just issued (the session rotated): the page binds
    /// its forms to it.
    pub new_token: Option<String>,
    /// An access token just made, shown this once.
    pub access_token: Option<crate::auth::tokens::NewToken>,
}

impl Notice {
    pub fn said(message: impl Into<String>) -> Notice {
        Notice { message: message.into(), ..Notice::default() }
    }
}

/// The message for the code form (`remaining_attempts`, and the form to show).
pub(super) struct CodeNotice<'a> {
    pub error: &'a str,
    pub info: &'a str,
    pub remaining: Option<u32>,
    /// The form to show: the backup code's, the e-mailed code's, or (None)
    /// the app's for a user who has one, else the e-mailed code's.
    pub method: Option<Factor>,
    pub resend_in: u64,
}

/// The login form, with `error` or `info` shown above it.
pub(super) fn login_form(
    cx: &Cx<'_>,
    status: StatusCode,
    rd: Option<&str>,
    username: &str,
    error: &str,
    info: &str,
) -> Response {
    let view = LoginView {
        chrome: cx.portal.chrome(cx.headers, None, "Sign in"),
        rd: rd.unwrap_or(""),
        username,
        error,
        info,
        step_up_user: None,
        reset_available: cx.portal.reset.available(),
    };
    cx.portal.page(status, "login.html", &view)
}

/// The page that offers a one-factor session the second factor.
pub(super) fn step_up_form(cx: &Cx<'_>, status: StatusCode, rd: Option<&str>, username: &str, error: &str) -> Response {
    let view = LoginView {
        chrome: cx.portal.chrome(cx.headers, None, "Verify it's you"),
        rd: rd.unwrap_or(""),
        username: "",
        error,
        info: "",
        step_up_user: Some(username),
        reset_available: false,
    };
    cx.portal.page(status, "login.html", &view)
}

/// The password-change form for the session's user.
pub(super) fn password_form(cx: &Cx<'_>, auth: &Authenticated, status: StatusCode, error: &str) -> Response {
    let view = PasswordView {
        chrome: cx.portal.chrome(cx.headers, None, "Change your password"),
        user: UserView::of(&auth.user),
        available: cx.portal.account.passwords_available(),
        error,
    };
    cx.portal.page(status, "password.html", &view)
}

/// Which form of the reset page, and what it says.
pub(super) struct ResetNotice<'a> {
    pub step: &'static str,
    pub username: &'a str,
    pub error: &'a str,
    pub info: &'a str,
    pub message: &'a str,
}

/// The password-reset page.
pub(super) fn reset_form(cx: &Cx<'_>, status: StatusCode, n: ResetNotice<'_>) -> Response {
    let view = ResetView {
        chrome: cx.portal.chrome(cx.headers, None, "Reset your password"),
        step: n.step,
        username: n.username,
        available: cx.portal.reset.available(),
        code_digits: cx.portal.settings.otp_digits,
        error: n.error,
        info: n.info,
        message: n.message,
    };
    cx.portal.page(status, "reset.html", &view)
}

/// The code page for the pending login; without one, back to the login page.
pub(super) async fn code_form(cx: &Cx<'_>, status: StatusCode, n: CodeNotice<'_>) -> Response {
    let pending = cx.portal.cookies.pending_token(cx.headers);
    let view = match cx.portal.login.pending_view(pending).await {
        Ok(view) => view,
        Err(AuthError::Store(e)) => return cx.fail(e),
        Err(_) => return reply::redirect(StatusCode::SEE_OTHER, &cx.link("/login")),
    };
    let method = match n.method {
        Some(m) => m,
        None if view.totp_enabled => Factor::Totp,
        None => Factor::Email,
    };
    let view = CodeView {
        chrome: cx.portal.chrome(cx.headers, None, "Verification code"),
        rd: "",
        masked_email: &view.masked_email,
        expires_in: cx.portal.settings.otp_ttl_secs,
        resend_in: n.resend_in,
        error: n.error,
        info: n.info,
        remaining_attempts: n.remaining,
        backup: method == Factor::BackupCode,
        totp: method == Factor::Totp && view.totp_enabled,
        totp_enabled: view.totp_enabled,
        passkey_enabled: view.passkey_enabled,
        code_digits: cx.portal.settings.otp_digits,
        totp_digits: cx.portal.settings.totp_digits,
    };
    cx.portal.page(status, "otp.html", &view)
}

impl Cx<'_> {
    /// The account page for the session's user, saying what `n` says.
    pub(super) async fn account_page(&self, auth: &Authenticated, status: StatusCode, n: Notice) -> Response {
        let portal = self.portal;
        let data = match portal.account.overview(&auth.user).await {
            Ok(d) => d,
            Err(e) => return self.fail(e),
        };
        let passkeys = match portal.account.passkeys(&auth.user).await {
            Ok(p) => p.into_iter().map(PasskeyRow::of).collect(),
            Err(e) => return self.fail(e),
        };
        let tokens = match portal.account.tokens(&auth.user).await {
            Ok(t) => t.into_iter().map(TokenRow::of).collect(),
            Err(e) => return self.fail(e),
        };
        let adding = match portal.account.required_level(&auth.user, Target::NewFactor).await {
            Ok(level) => level,
            Err(e) => return self.fail(e),
        };
        let account_url = format!("{}{}/account", portal.settings.public_origin, portal.settings.prefix);
        let token = n.new_token.as_deref();
        let current = Store::session_id(token.unwrap_or(&auth.token));
        let txt = n.backup_codes.join("\n") + "\n";
        let view = AccountView {
            chrome: portal.chrome(self.headers, token, "Your account"),
            user: UserView::of(&auth.user),
            otp_enabled: data.state.otp_enabled,
            otp_required_by_policy: portal.account.policy_requires_two_factor(&auth.user),
            totp_enabled: data.state.totp_enabled,
            totp_setup: n.totp_setup.as_ref(),
            totp_digits: portal.settings.totp_digits,
            passkeys,
            passkeys_available: portal.account.passkeys_available(),
            needs_step_up: auth.record.level < adding,
            account_url: &account_url,
            password_changeable: portal.account.passwords_available(),
            is_operator: auth.user.groups.contains(&portal.settings.admin_group),
            tokens,
            access_token: n.access_token.as_ref(),
            backup_codes_left: data.state.backup_codes_left,
            backup_codes: &n.backup_codes,
            backup_codes_txt: form_urlencoded::byte_serialize(txt.as_bytes()).collect::<String>().replace('+', "%20"),
            confirm_enable: n.confirm_enable,
            code_digits: portal.settings.otp_digits,
            recent_logins: data.recent_logins.iter().map(LoginRow::of).collect(),
            sessions: data.sessions.iter().map(|s| SessionRow::of(s, &current)).collect(),
            message: &n.message,
            error: &n.error,
        };
        portal.page(status, "account.html", &view)
    }

    /// The cookie of a session that just rotated (its kind kept: remember-me,
    /// or the browser session).
    pub(super) fn rotated(&self, auth: &Authenticated, token: &str) -> http::HeaderValue {
        let persistent = auth.record.remember_me.then_some(self.portal.settings.remember_me);
        self.portal.cookies.session(token, persistent)
    }
}
