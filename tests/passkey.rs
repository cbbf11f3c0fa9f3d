//! Passkeys over HTTP, on both stores: what the gateway answers before and
//! around a WebAuthn ceremony. The ceremonies themselves (a real
//! authenticator's answers) are driven in Chromium with its virtual
//! authenticator (tests/browser/passkey.mjs); here: the creation options
//! (RP ID from server.public_url, the user, the challenge), the password
//! re-check, answers without a started ceremony, forged answers refused and
//! counted like wrong codes, the refusals of removal, and passkeys off on an
//! address that is not a domain name.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::json;
use support::flow::{Backend, Harness, Options, PASSWORD};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

fn on_localhost(policy: &'static str) -> Options {
    Options { policy, public_host: "localhost", ..Default::default() }
}

support::on_both_stores!(
    adding_a_passkey_needs_the_password_and_offers_creation_options_for_this_host,
    a_forged_or_unstarted_answer_adds_no_passkey,
    a_user_without_a_passkey_cannot_start_a_passkey_sign_in,
    a_passkey_answer_without_a_started_sign_in_is_refused_and_the_code_still_works,
    removing_a_passkey_needs_the_password_and_an_existing_passkey,
);

async fn adding_a_passkey_needs_the_password_and_offers_creation_options_for_this_host(b: Backend) {
    let Some(h) = Harness::start(b, on_localhost("one_factor")).await else { return };
    let anon = reqwest::Client::new();
    let (s, _) =
        h.post_as(&anon, "/_auth/api/passkey/register/start", json!({"password": PASSWORD, "name": "x"})).await;
    assert_eq!(s, 401, "a session is needed");

    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let (s, v) =
        h.post_as(&c, "/_auth/api/passkey/register/start", json!({"password": PASSWORD, "name": "Laptop"})).await;
    assert_eq!((s.as_u16(), &v["step_up"]), (401, &json!(true)), "the password alone adds no factor: {v}");
    let (s, v) = h.post_as(&c, "/_auth/api/passkey/register/finish", json!({"credential": {}})).await;
    assert_eq!((s.as_u16(), &v["step_up"]), (401, &json!(true)), "nor finishes adding one: {v}");
    h.step_up(&c).await;
    let (s, v) = h.post_as(&c, "/_auth/api/passkey/register/start", json!({"name": "Laptop"})).await;
    assert_eq!(s, 400, "the password is required: {v}");
    let (s, v) =
        h.post_as(&c, "/_auth/api/passkey/register/start", json!({"password": "wrong", "name": "Laptop"})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "Incorrect password.");
    let (s, v) = h.post_as(&c, "/_auth/api/passkey/register/start", json!({"password": PASSWORD, "name": " "})).await;
    assert_eq!(s, 400, "a name is required: {v}");

    let (s, v) =
        h.post_as(&c, "/_auth/api/passkey/register/start", json!({"password": PASSWORD, "name": "Laptop"})).await;
    assert_eq!(s, 200, "{v}");
    let pk = &v["options"]["publicKey"];
    assert_eq!(pk["rp"]["id"], "localhost", "the RP ID is public_url's host: {v}");
    assert_eq!(pk["user"]["name"], "testuser");
    assert!(pk["challenge"].as_str().is_some_and(|c| c.len() >= 43), "a 256-bit challenge: {v}");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required", "{v}");

    let m = h.metrics().await;
    for result in ["success", "invalid_passkey", "no_ceremony", "not_enrolled", "rate_limited", "locked"] {
        assert!(
            m.contains(&format!("auth_attempts_total{{result=\"{result}\",stage=\"passkey\"}}")),
            "passkey series {result} pre-created"
        );
    }
    let me: serde_json::Value = c.get(h.url("/_auth/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["passkeys"], json!([]), "starting adds nothing: {me}");
}

async fn a_forged_or_unstarted_answer_adds_no_passkey(b: Backend) {
    let Some(h) = Harness::start(b, on_localhost("one_factor")).await else { return };
    let c = h.two_factor_client("testuser", PASSWORD, FIREFOX).await;
    let forged = json!({
        "id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"attestationObject": "AAAA", "clientDataJSON": "AAAA"}
    });
    let (s, v) = h.post_as(&c, "/_auth/api/passkey/register/finish", json!({"credential": forged})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("Start adding the passkey first"), "{v}");
    let (s, v) = h.post_as(&c, "/_auth/api/passkey/register/finish", json!({})).await;
    assert_eq!(s, 400, "the credential is required: {v}");

    let (s, _) = h.post_as(&c, "/_auth/api/passkey/register/start", json!({"password": PASSWORD, "name": "Key"})).await;
    assert_eq!(s, 200);
    let (s, v) = h.post_as(&c, "/_auth/api/passkey/register/finish", json!({"credential": forged})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "The passkey could not be verified.");
    let (s, v) = h.post_as(&c, "/_auth/api/passkey/register/finish", json!({"credential": forged})).await;
    assert_eq!(s, 400, "the challenge answers once: {v}");
    assert!(v["error"].as_str().unwrap().contains("Start adding"), "{v}");
    let me: serde_json::Value = c.get(h.url("/_auth/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["passkeys"], json!([]), "{me}");
    assert_eq!(me["second_factors"], json!([]), "{me}");
}

async fn a_user_without_a_passkey_cannot_start_a_passkey_sign_in(b: Backend) {
    let Some(h) = Harness::start(b, on_localhost("two_factor")).await else { return };
    let (s, v) = h.post_json("/_auth/api/passkey/login/start", json!({})).await;
    assert_eq!(s, 400, "no pending login: {v}");
    let (s, v) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["methods"], json!(["email"]), "no passkey offered to a user without one: {v}");
    let (s, v) = h.post_json("/_auth/api/passkey/login/start", json!({})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "No passkey is set up for this account.");
    let (s, v) = h.post_json("/_auth/api/passkey/login/finish", json!({"credential": {"id": "x"}})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("Start signing in with your passkey"), "{v}");
}

async fn a_passkey_answer_without_a_started_sign_in_is_refused_and_the_code_still_works(b: Backend) {
    // Without an authenticator here, a login whose ceremony was never
    // started is what a forged answer meets; the counted refusal of a real
    // ceremony's wrong answer is covered in Chromium (another origin's answer).
    let Some(h) = Harness::start(b, on_localhost("two_factor")).await else { return };
    let (s, _) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 200);
    let (s, v) = h.post_json("/_auth/api/passkey/login/finish", json!({})).await;
    assert_eq!(s, 400, "the credential is required: {v}");
    let (s, v) = h.post_json("/_auth/api/passkey/login/finish", json!({"credential": {"id": "x"}})).await;
    assert_eq!(s, 400, "{v}");
    let m = h.metrics().await;
    assert_eq!(
        support::sample(&m, "portcullis_auth_attempts_total", &[("stage", "passkey"), ("result", "no_ceremony")]),
        1.0
    );
    assert_eq!(
        support::sample(&m, "portcullis_auth_attempts_total", &[("stage", "passkey"), ("result", "success")]),
        0.0
    );
    // The e-mailed code still signs in.
    let code = h.code_from_mail(1).await;
    let (s, v) = h.verify(&code).await;
    assert_eq!(s, 200, "{v}");
}

async fn removing_a_passkey_needs_the_password_and_an_existing_passkey(b: Backend) {
    let Some(h) = Harness::start(b, on_localhost("one_factor")).await else { return };
    let c = h.login_client("testuser", PASSWORD, FIREFOX).await;
    let (s, v) = h.post_as(&c, "/_auth/api/passkey/remove", json!({"id": "AAAA", "password": "wrong"})).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "Incorrect password.");
    let (s, v) = h.post_as(&c, "/_auth/api/passkey/remove", json!({"id": "AAAA", "password": PASSWORD})).await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"], "No such passkey.");
}

#[tokio::test]
async fn passkeys_are_off_when_the_public_url_is_an_ip_address() {
    let Some(h) = Harness::start(Backend::Memory, Options { policy: "one_factor", ..Default::default() }).await else {
        return;
    };
    let c = h.two_factor_client("testuser", PASSWORD, FIREFOX).await;
    let (s, v) = h.post_as(&c, "/_auth/api/passkey/register/start", json!({"password": PASSWORD, "name": "x"})).await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"], "Passkeys are not available on this server.");
    let page = c.get(h.url("/_auth/account")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Passkeys are not available here"), "the account page says why");
}
