//! What an operator meets: metrics series that exist from the start.

mod support;

use support::flow::{Backend, Harness, Options};

#[tokio::test]
async fn a_fresh_gateway_exposes_every_labelled_counter_at_zero() {
    let Some(h) = Harness::start(Backend::Memory, Options::default()).await else { return };
    let m = h.metrics().await;
    let zero = |series: &str| {
        let found = m.lines().find(|l| l.starts_with(series));
        assert_eq!(found.map(|l| l.rsplit(' ').next().unwrap_or_default()), Some("0"), "{series} in\n{m}");
    };
    zero("portcullis_auth_attempts_total{result=\"invalid_credentials\",stage=\"password\"}");
    zero("portcullis_auth_attempts_total{result=\"invalid_otp\",stage=\"otp\"}");
    zero("portcullis_auth_attempts_total{result=\"invalid_credentials\",stage=\"recheck\"}");
    zero("portcullis_rate_limited_total{bucket=\"login\"}");
    zero("portcullis_rate_limited_total{bucket=\"resend_cooldown\"}");
    zero("portcullis_otp_sent_total{purpose=\"enable_otp\"}");
    zero("portcullis_forward_auth_decisions_total{decision=\"deny\"}");
    zero(&format!(
        "portcullis_upstream_errors_total{{kind=\"timeout\",upstream=\"{}\"}}",
        h.up.url().trim_start_matches("http://")
    ));
    zero("portcullis_store_errors_total{op=\"touch_session\"}");
    zero("portcullis_mail_failures_total");
}
