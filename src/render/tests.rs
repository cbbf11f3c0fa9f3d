//! Every template renders with a representative context, escaping holds, and the
//! pages stay compatible with the gateway's CSP (no inline script or style).

use serde_json::json;
use tera::Context;

use super::Templates;

fn templates() -> Templates {
    match Templates::load() {
        Ok(t) => t,
        Err(e) => panic!("templates must load: {e}"),
    }
}

fn ctx(value: serde_json::Value) -> Context {
    match Context::from_serialize(&value) {
        Ok(c) => c,
        Err(e) => panic!("context: {e}"),
    }
}

fn render(name: &str, value: serde_json::Value) -> String {
    match templates().render(name, &ctx(value)) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn common() -> serde_json::Value {
    json!({"prefix": "/_auth", "app_name": "Portcullis", "csrf_token": "tok123"})
}

fn with(extra: serde_json::Value) -> serde_json::Value {
    let mut base = common();
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

fn login_ctx() -> serde_json::Value {
    with(
        json!({"rd": "https://app.example.com/x?a=1&b=2", "username": "", "error": "", "info": "", "step_up_user": null}),
    )
}

fn otp_ctx(backup: bool) -> serde_json::Value {
    with(json!({
        "rd": "", "masked_email": "ali***@example.com", "expires_in": 600, "resend_in": 42,
        "error": "Invalid code", "info": "", "remaining_attempts": 2, "backup": backup, "code_digits": 6,
        "totp": false, "totp_enabled": false, "totp_digits": 6
    }))
}

fn account_ctx() -> serde_json::Value {
    with(json!({
        "user": {"username": "alice", "email": "alice@example.com", "display_name": "Alice Liddell",
                 "groups": ["admins", "dev"]},
        "otp_enabled": true, "otp_required_by_policy": false, "backup_codes_left": 7,
        "backup_codes": ["ABCD2345", "EFGH6789"], "backup_codes_txt": "ABCD2345%0AEFGH6789%0A", "confirm_enable": false,
        "recent_logins": [{"time": "2026-11-24 13:05 UTC", "ip": "203.0.113.9", "device": "Firefox on Linux"}],
        "sessions": [
            {"id": "s1", "created": "2026-11-24 13:05 UTC", "last_seen": "2026-11-24 13:30 UTC",
             "ip": "203.0.113.9", "device": "Firefox on Linux", "current": true},
            {"id": "s2", "created": "2026-11-20 08:00 UTC", "last_seen": "2026-11-21 09:00 UTC",
             "ip": "198.51.100.7", "device": "Safari on iOS", "current": false}
        ],
        "message": "Backup codes generated", "error": "", "code_digits": 6,
        "totp_enabled": false, "totp_setup": null, "totp_digits": 6,
        "passkeys_available": true, "needs_step_up": false, "account_url": "https://auth.example.com/_auth/account", "is_operator": true,
        "tokens": [{"id": "tid1", "name": "Backup <script>", "created": "2026-11-24T13:05:00Z",
                    "expires": "2027-02-22T13:05:00Z", "last_used": "never"}],
        "access_token": null
    }))
}

#[test]
fn every_embedded_template_parses() {
    let t = templates();
    assert_eq!(Templates::names().count(), 30);
    for name in Templates::names() {
        assert!(t.tera.contains_template(name), "{name} missing");
    }
}

#[test]
fn login_page_renders_the_form_contract() {
    let html = render("login.html", login_ctx());
    assert!(html.contains("<title>Sign in · Portcullis</title>"));
    assert!(html.contains(r#"action="/_auth/login""#));
    assert!(html.contains(r#"method="post""#));
    for field in ["username_or_email", "password", "remember_me", "rd", "csrf_token"] {
        assert!(html.contains(&format!(r#"name="{field}""#)), "{field}");
    }
    assert!(html.contains(r#"value="true""#));
    assert!(html.contains(r#"value="tok123""#));
    // The return address is attribute-escaped, not dropped.
    assert!(html.contains("https://app.example.com/x?a=1&amp;b=2"));
    assert!(html.contains(r#"href="/_auth/static/portcullis.css""#));
    assert!(!html.contains("role=\"alert\""), "no error box when error is empty");
}

#[test]
fn login_page_shows_error_and_prefill() {
    let mut v = login_ctx();
    v["error"] = json!("Invalid username/email or password");
    v["username"] = json!("alice");
    let html = render("login.html", v);
    assert!(html.contains("Invalid username/email or password"));
    assert!(html.contains(r#"value="alice""#));
    assert!(html.contains("aria-live=\"polite\""));
}

#[test]
fn otp_page_renders_code_form_countdowns_and_resend() {
    let html = render("otp.html", otp_ctx(false));
    assert!(html.contains("ali***@example.com"));
    assert!(html.contains(r#"name="otp_code""#));
    assert!(html.contains(r#"inputmode="numeric""#));
    assert!(html.contains(r#"autocomplete="one-time-code""#));
    assert!(html.contains(r#"pattern="[0-9]{6}""#));
    assert!(html.contains(r#"maxlength="6""#));
    assert!(html.contains(r#"data-countdown="600""#));
    assert!(html.contains("10 min 0 s"));
    assert!(html.contains(r#"action="/_auth/otp/resend""#));
    assert!(html.contains(r#"data-resend-cooldown="42""#));
    assert!(html.contains(r#"href="/_auth/otp?backup=1""#));
    assert!(html.contains("2 attempts left"));
    assert!(html.contains("Invalid code"));
    assert!(!html.contains(r#"name="code""#));
}

#[test]
fn code_forms_follow_the_configured_digits() {
    let mut otp = otp_ctx(false);
    otp["code_digits"] = json!(8);
    let html = render("otp.html", otp);
    assert!(html.contains(r#"pattern="[0-9]{8}""#) && html.contains(r#"maxlength="8""#), "{html}");
    assert!(html.contains("8-digit") && html.contains("the 8 digits"), "{html}");
    assert!(!html.contains("6-digit") && !html.contains("{6}") && !html.contains("6 digits"), "{html}");
    let mut account = account_ctx();
    account["otp_enabled"] = json!(false);
    account["confirm_enable"] = json!(true);
    account["code_digits"] = json!(8);
    let html = render("account.html", account);
    assert!(html.contains(r#"pattern="[0-9]{8}""#) && html.contains(r#"maxlength="8""#), "{html}");
    assert!(html.contains("8-digit code"), "{html}");
}

#[test]
fn otp_page_without_remaining_attempts_or_cooldown() {
    let mut v = otp_ctx(false);
    if let Some(o) = v.as_object_mut() {
        o.remove("remaining_attempts");
    }
    v["resend_in"] = json!(0);
    let html = render("otp.html", v.clone());
    assert!(!html.contains("attempts left"));
    assert!(html.contains("Didn't get it?"));

    v["remaining_attempts"] = serde_json::Value::Null;
    let html = render("otp.html", v);
    assert!(!html.contains("attempts left"));
}

#[test]
fn otp_page_in_backup_mode_shows_backup_form() {
    let html = render("otp.html", otp_ctx(true));
    assert!(html.contains(r#"name="code""#));
    assert!(!html.contains(r#"name="otp_code""#));
    assert!(html.contains(r#"href="/_auth/otp""#));
    assert!(html.contains("<title>Use a backup code · Portcullis</title>"));
}

#[test]
fn logout_page_posts_to_logout() {
    let html = render("logout.html", with(json!({"username": "alice"})));
    assert!(html.contains(r#"action="/_auth/logout""#));
    assert!(html.contains("alice"));
    assert!(html.contains(r#"name="csrf_token""#));
}

#[test]
fn account_page_renders_every_section() {
    let html = render("account.html", account_ctx());
    assert!(html.contains("Alice Liddell"));
    assert!(html.contains(r#"<span class="badge">admins</span>"#));
    assert!(html.contains(r#"action="/_auth/account/otp""#));
    assert!(html.contains(r#"name="enable_otp" value="false""#));
    assert!(html.contains(r#"action="/_auth/account/backup-codes""#));
    assert!(html.contains("ABCD2345"));
    assert!(html.contains("Store these codes somewhere safe"));
    assert!(html.contains("<strong>7</strong> unused backup codes"));
    assert!(html.contains("198.51.100.7"));
    assert!(html.contains(r#"action="/_auth/account/sessions/revoke""#));
    assert!(html.contains(r#"name="id" value="s2""#));
    assert!(!html.contains(r#"value="s1""#), "the current session has no revoke form");
    assert!(html.contains(r#"href="/_auth/logout""#));
    assert!(html.contains("Backup codes generated"));
}

#[test]
fn account_page_states_off_and_confirm() {
    let mut v = account_ctx();
    v["otp_enabled"] = json!(false);
    v["backup_codes"] = json!([]);
    v["recent_logins"] = json!([]);
    v["sessions"] = json!([]);
    v["message"] = json!("");
    v["user"]["display_name"] = json!("");
    v["user"]["groups"] = json!([]);
    let html = render("account.html", v.clone());
    assert!(html.contains(r#"name="enable_otp" value="true""#));
    assert!(!html.contains("Store these codes"));
    assert!(html.contains("No sign-ins recorded yet."));
    assert!(html.contains("Signed in as <strong>alice</strong>"));
    assert!(html.contains("none"));

    assert!(html.contains("Only your password protects this account"));
    assert!(!html.contains("Required by your organisation"));

    // The policy asks for a code though the user has not turned 2FA on.
    v["otp_required_by_policy"] = json!(true);
    let html = render("account.html", v.clone());
    assert!(html.contains("Required by your organisation"), "{html}");
    assert!(!html.contains("Only your password protects"), "{html}");
    assert!(html.contains(r#"name="enable_otp" value="true""#), "enrolling stays possible");
    v["otp_required_by_policy"] = json!(false);

    v["confirm_enable"] = json!(true);
    let html = render("account.html", v);
    assert!(html.contains(r#"action="/_auth/account/otp/confirm""#));
    assert!(html.contains(r#"name="otp_code""#));
}

#[test]
fn error_page_renders_status_title_and_message() {
    let html = render(
        "error.html",
        json!({"prefix": "/_auth", "app_name": "Portcullis", "status": 502,
               "title": "Bad gateway", "message": "The application is not answering."}),
    );
    assert!(html.contains("<title>Bad gateway · Portcullis</title>"));
    assert!(html.contains("502"));
    assert!(html.contains("The application is not answering."));
}

#[test]
fn user_controlled_values_are_escaped_in_pages() {
    let mut v = login_ctx();
    v["username"] = json!("<script>alert(1)</script>");
    v["error"] = json!("<b>x</b>");
    let html = render("login.html", v);
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;") || html.contains("&lt;script&gt;"));
    assert!(!html.contains("<b>x</b>"));

    let mut v = account_ctx();
    v["user"]["display_name"] = json!("<script>x</script>");
    v["sessions"][1]["device"] = json!("\"><img src=x onerror=alert(1)>");
    let html = render("account.html", v);
    assert!(!html.contains("<script>x"));
    assert!(!html.contains("<img src=x"));
}

#[test]
fn pages_have_no_inline_script_or_style() {
    let pages = [
        ("login.html", login_ctx()),
        ("otp.html", otp_ctx(false)),
        ("otp.html", otp_ctx(true)),
        ("logout.html", with(json!({"username": "alice"}))),
        ("account.html", account_ctx()),
        ("error.html", with(json!({"status": 404, "title": "Not found", "message": "No such page."}))),
        ("password.html", password_ctx()),
        ("reset.html", reset_ctx("start")),
        ("reset.html", reset_ctx("finish")),
        ("reset.html", reset_ctx("done")),
    ];
    for (name, v) in pages {
        let html = render(name, v);
        assert_eq!(html.matches("<script").count(), 2, "{name}: only the external scripts");
        assert!(html.contains(r#"<script src="/_auth/static/portcullis.js" defer></script>"#));
        assert!(html.contains(r#"<script src="/_auth/static/passkey.js" defer></script>"#));
        assert!(!html.contains("<style"), "{name}: inline <style>");
        assert!(!html.contains("style="), "{name}: style attribute");
        assert!(!html.contains(" onclick="), "{name}: inline handler");
        assert!(!html.contains("javascript:"), "{name}: javascript: url");
        assert!(html.contains(r#"<html lang="en">"#));
        assert!(html.contains(r#"name="viewport""#));
    }
}

fn code_mail_ctx(purpose: &str) -> serde_json::Value {
    json!({
        "app_name": "Portcullis", "name": "Alice <Liddell>", "username": "alice", "code": "123456",
        "purpose": purpose, "expires_minutes": 10, "expires_at": "2026-11-24 13:15 UTC",
        "ip": "203.0.113.9", "device": "Firefox on Linux", "time": "2026-11-24 13:05 UTC"
    })
}

#[test]
fn code_mail_renders_in_text_and_html() {
    let text = render("email/login_code.txt", code_mail_ctx("login"));
    assert!(text.contains("    123456\n"));
    assert!(text.contains("expires in 10 minutes, at 2026-11-24 13:15 UTC"));
    assert!(text.contains("IP address: 203.0.113.9"));
    assert!(text.contains("Device: Firefox on Linux"));
    assert!(text.contains("didn't request"));
    assert!(text.contains("Hello Alice <Liddell>,"), "text is not HTML-escaped");

    let html = render("email/login_code.html", code_mail_ctx("enable_otp"));
    assert!(html.contains("123456"));
    assert!(html.contains("Confirm two-factor authentication"));
    assert!(html.contains("Alice &lt;Liddell&gt;"));
}

#[test]
fn reset_mail_says_what_the_code_is_for() {
    let text = render("email/login_code.txt", code_mail_ctx("password_reset"));
    assert!(text.contains("choose a new password for your account \"alice\""), "{text}");
    assert!(text.contains("a request to reset the password of your account"));
    assert!(!text.contains("finish signing in"));
    let html = render("email/login_code.html", code_mail_ctx("password_reset"));
    assert!(html.contains("Reset your password"));
}

fn password_ctx() -> serde_json::Value {
    with(json!({"user": {"username": "alice", "email": "a@example.com", "display_name": "Alice", "groups": []},
        "available": true, "error": "", "info": "", "message": ""}))
}

fn reset_ctx(step: &str) -> serde_json::Value {
    with(json!({"step": step, "username": "alice", "available": true, "code_digits": 6,
        "error": "", "info": "", "message": ""}))
}

#[test]
fn reset_page_shows_one_form_per_step() {
    let start = render("reset.html", reset_ctx("start"));
    assert!(start.contains(r#"name="username_or_email""#) && !start.contains(r#"name="code""#));
    let finish = render("reset.html", reset_ctx("finish"));
    for field in ["username_or_email", "code", "new_password", "confirm_password", "otp_code"] {
        assert!(finish.contains(&format!(r#"name="{field}""#)), "{field}");
    }
    assert!(finish.contains(r#"value="alice""#));
    let done = render("reset.html", reset_ctx("done"));
    assert!(!done.contains("<form class=\"form\" method=\"post\" action=\"/_auth/reset\""));
    assert!(done.contains("Sign in with the new password"));
    let mut off = reset_ctx("start");
    off["available"] = json!(false);
    let off = render("reset.html", off);
    assert!(off.contains("Passwords cannot be reset here") && !off.contains(r#"name="username_or_email""#));
}

#[test]
fn alert_mail_renders_in_text_and_html() {
    let v = json!({
        "app_name": "Portcullis", "name": "alice", "username": "alice",
        "title": "Two-factor authentication was turned off", "details": "It was turned off <now>.",
        "ip": "203.0.113.9", "device": "Firefox on Linux", "time": "2026-11-24 13:05 UTC"
    });
    let text = render("email/security_alert.txt", v.clone());
    assert!(text.contains("Two-factor authentication was turned off"));
    assert!(text.contains("It was turned off <now>."));
    let html = render("email/security_alert.html", v);
    assert!(html.contains("It was turned off &lt;now&gt;."));
}

#[test]
fn missing_variable_is_a_render_error_naming_the_template() {
    let err = templates().render("login.html", &Context::new());
    match err {
        Ok(_) => panic!("must fail"),
        Err(e) => assert_eq!(e.name, "login.html"),
    }
}

#[test]
fn code_page_for_an_app_user_asks_for_the_app_code_and_offers_email_and_backup() {
    let mut v = otp_ctx(false);
    v["totp"] = json!(true);
    v["totp_enabled"] = json!(true);
    v["totp_digits"] = json!(8);
    let html = render("otp.html", v.clone());
    assert!(html.contains("<title>Use your authenticator app · Portcullis</title>"));
    assert!(html.contains(r#"name="method" value="totp""#));
    assert!(html.contains(r#"maxlength="8""#), "the app's digits");
    assert!(html.contains("E-mail me a code instead"));
    assert!(html.contains(r#"name="method" value="email""#));
    assert!(html.contains(r#"href="/_auth/otp?backup=1""#));
    assert!(!html.contains("Check your e-mail"), "nothing was e-mailed");

    v["totp"] = json!(false);
    let html = render("otp.html", v.clone());
    assert!(html.contains("Check your e-mail"));
    assert!(html.contains(r#"href="/_auth/otp?method=totp""#), "the e-mail form offers the app back");

    v["backup"] = json!(true);
    let html = render("otp.html", v);
    assert!(html.contains(r#"name="code""#));
    assert!(html.contains(r#"href="/_auth/otp?method=totp""#));
    assert!(html.contains("E-mail me a code instead"));
}

#[test]
fn account_page_sets_up_shows_and_removes_the_authenticator_app() {
    let mut v = account_ctx();
    let html = render("account.html", v.clone());
    assert!(html.contains(r#"action="/_auth/account/totp""#), "set up, with the password");
    assert!(html.contains(r#"id="totp-setup-password""#));

    v["totp_setup"] = json!({"secret": "MZXW6YTBOI", "otpauth_uri": "otpauth://totp/x",
                             "qr_svg": "<svg xmlns=\"http://www.w3.org/2000/svg\"><path d=\"M0 0h1\"/></svg>"});
    let html = render("account.html", v.clone());
    assert!(html.contains(r#"<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0h1"/></svg>"#), "inline SVG");
    assert!(html.contains("MZXW6YTBOI"));
    assert!(html.contains(r#"action="/_auth/account/totp/confirm""#));
    assert!(!html.contains("style="), "the QR code needs no inline style");

    v["totp_setup"] = serde_json::Value::Null;
    v["totp_enabled"] = json!(true);
    let html = render("account.html", v);
    assert!(html.contains(r#"action="/_auth/account/totp/remove""#));
    assert!(html.contains("Remove the authenticator app"));
}

#[test]
fn the_account_page_lists_tokens_escaped_and_shows_a_new_one_once() {
    let mut v = account_ctx();
    let html = render("account.html", v.clone());
    assert!(html.contains("Backup &lt;script&gt;"), "names are escaped");
    assert!(html.contains(r#"action="/_auth/account/tokens/revoke""#) && html.contains(r#"value="tid1""#));
    assert!(html.contains(r#"action="/_auth/account/tokens""#) && html.contains(r#"name="expires_in""#));
    assert!(!html.contains("new-access-token"));
    v["access_token"] = json!({"id": "tid2", "name": "git", "token": "pct_secret", "expires_at": 1});
    let html = render("account.html", v);
    assert!(html.contains(r#"<code id="new-access-token">pct_secret</code>"#));
}

#[test]
fn a_one_factor_session_is_offered_the_step_up_instead_of_the_forms_that_add_a_factor() {
    let mut v = account_ctx();
    v["needs_step_up"] = json!(true);
    let html = render("account.html", v);
    assert!(!html.contains(r#"action="/_auth/account/totp""#), "no setup form");
    assert!(!html.contains("data-passkey-register"), "no passkey form");
    assert_eq!(html.matches(r#"action="/_auth/login/step-up""#).count(), 3, "a step-up for each");
    assert!(!html.contains(r#"action="/_auth/account/tokens""#), "no token form");
    assert!(html.contains("E-mail me a code to add an authenticator app"));
    assert!(html.contains("E-mail me a code to add a passkey"));
    assert!(html.contains(r#"name="rd" value="https://auth.example.com/_auth/account""#), "and back here");
}
