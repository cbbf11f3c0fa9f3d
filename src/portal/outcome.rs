//! What a handler returns, and the one place it becomes a response. A handler
//! says what happened once (`Result<Done, Failure>`); [`Cx::reply`] renders it
//! as the request's format wants: JSON, or for a browser a `303`, a page, or
//! the form it came from again with the failure's message.

use http::{HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::context::Cx;
pub(super) use super::pages::{CodeNotice, Notice};
use crate::auth::error::{AuthError, Factor};
use crate::body::Response;
use crate::gate::Authenticated;
use crate::reply::{self, Failure, Format};

/// What an endpoint did, for either reply format.
pub(super) struct Done {
    /// The API's fields, answered beside `"success": true`.
    json: Map<String, Value>,
    /// What a browser gets.
    page: Page,
    /// Cookies set in either format (a new session, a cleared one).
    cookies: Vec<HeaderValue>,
    /// The API's status (200 unless something was created).
    status: StatusCode,
}

/// What a browser gets when an endpoint did its work.
pub(super) enum Page {
    /// `303 See Other` to this URL.
    SeeOther(String),
    /// The account page, with what the action did.
    Account(Box<Notice>),
    /// The reset page's next form (`step`), for `username`, saying `info`.
    Reset { step: &'static str, username: String, info: &'static str },
}

impl Done {
    /// `view`'s fields for the API (an object), and `page` for a browser.
    pub fn new(view: impl Serialize, page: Page) -> Done {
        let json = match serde_json::to_value(view) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        Done { json, page, cookies: Vec::new(), status: StatusCode::OK }
    }

    /// The account page saying `message`; the API answers `view`.
    pub fn account(view: impl Serialize, notice: Notice) -> Done {
        Done::new(view, Page::Account(Box::new(notice)))
    }

    /// `201 Created` for the API.
    pub fn created(mut self) -> Done {
        self.status = StatusCode::CREATED;
        self
    }

    pub fn with_cookie(mut self, cookie: HeaderValue) -> Done {
        self.cookies.push(cookie);
        self
    }
}

/// Where a browser is shown a failure: the form it came from, again, with
/// the message (or the error page).
pub(super) enum Back<'a> {
    /// The login form, keeping the return address and the typed name.
    Login { rd: Option<&'a str>, username: &'a str },
    /// The form that offers a one-factor session the second factor.
    StepUp { rd: Option<&'a str>, username: &'a str },
    /// The code page, on the form of `method`.
    Code { method: Factor },
    /// The account page.
    Account(&'a Authenticated),
    /// The account page, still asking for the code that turns e-mailed
    /// codes on (unless the code died: then it offers a new one).
    ConfirmEnable(&'a Authenticated),
    /// The password-change form.
    Password(&'a Authenticated),
    /// The reset page's form `step`, keeping the typed name.
    Reset { step: &'static str, username: &'a str },
    /// The error page.
    ErrorPage,
}

impl Cx<'_> {
    /// The one place a handler's outcome becomes a response.
    pub(super) async fn reply(&self, result: Result<Done, Failure>, back: Back<'_>) -> Response {
        match result {
            Ok(done) => self.done(done, &back).await,
            Err(failure) => self.failed(failure, back).await,
        }
    }

    async fn done(&self, done: Done, back: &Back<'_>) -> Response {
        let Done { mut json, page, cookies, status } = done;
        let mut r = match self.format {
            Format::Json => {
                json.insert("success".into(), json!(true));
                reply::json(status, &Value::Object(json))
            }
            Format::Html => match page {
                Page::SeeOther(url) => reply::redirect(StatusCode::SEE_OTHER, &url),
                Page::Account(notice) => match back {
                    Back::Account(auth) | Back::ConfirmEnable(auth) | Back::Password(auth) => {
                        self.account_page(auth, StatusCode::OK, *notice).await
                    }
                    _ => self.fail(Failure::Render),
                },
                Page::Reset { step, username, info } => {
                    let n = super::pages::ResetNotice { step, username: &username, error: "", info, message: "" };
                    super::pages::reset_form(self, StatusCode::OK, n)
                }
            },
        };
        for c in cookies {
            reply::set_cookie(&mut r, c);
        }
        r
    }

    async fn failed(&self, failure: Failure, back: Back<'_>) -> Response {
        if self.format == Format::Json {
            return self.fail(failure);
        }
        let auth_error = match &failure {
            Failure::Auth(e) => Some(e),
            _ => None,
        };
        if let (Back::Code { .. }, Some(AuthError::NoPendingLogin)) = (&back, auth_error) {
            // Nothing to enter a code for: start again.
            return reply::redirect(StatusCode::SEE_OTHER, &self.link("/login"));
        }
        let back = match (back, auth_error) {
            // The app is refused for this login: the page falls back to e-mail.
            (
                Back::Code { .. },
                Some(AuthError::Exhausted { factor: Factor::Totp } | AuthError::NotEnrolled { factor: Factor::Totp }),
            ) => Back::Code { method: Factor::Email },
            (back, _) => back,
        };
        // A dead code cannot be retried: the account page offers a new one.
        let code_dead = matches!(auth_error, Some(AuthError::Exhausted { .. } | AuthError::Expired));
        let e = failure.explain(Format::Html);
        let mut r = match back {
            Back::Login { rd, username } => super::pages::login_form(self, e.status, rd, username, &e.message, ""),
            Back::StepUp { rd, username } => super::pages::step_up_form(self, e.status, rd, username, &e.message),
            Back::Code { method } => {
                // The code's own tries (a backup code's count is the account's).
                let remaining = e.extra.get("remaining_attempts").and_then(Value::as_u64).map(|n| n as u32);
                let counts_down = matches!(method, Factor::Email | Factor::Totp);
                let notice = CodeNotice {
                    error: &e.message,
                    info: "",
                    remaining: remaining.filter(|n| *n > 0 && counts_down),
                    method: Some(method),
                    resend_in: if method == Factor::Email { e.retry_after.unwrap_or(0) } else { 0 },
                };
                super::pages::code_form(self, e.status, notice).await
            }
            Back::Account(auth) => {
                let notice = Notice { error: e.message.to_string(), ..Notice::default() };
                self.account_page(auth, e.status, notice).await
            }
            Back::ConfirmEnable(auth) => {
                let notice = Notice { error: e.message.to_string(), confirm_enable: !code_dead, ..Notice::default() };
                self.account_page(auth, e.status, notice).await
            }
            Back::Password(auth) => super::pages::password_form(self, auth, e.status, &e.message),
            Back::Reset { step, username } => {
                let n = super::pages::ResetNotice { step, username, error: &e.message, info: "", message: "" };
                super::pages::reset_form(self, e.status, n)
            }
            Back::ErrorPage => return self.fail(failure),
        };
        if let Some(s) = e.retry_after {
            reply::retry_after(&mut r, s);
        }
        r
    }
}
