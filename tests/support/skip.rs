//! Skipped cases, made visible. A case whose server (redis-server, nginx,
//! Chromium, promtool, ...) is missing may skip under plain `cargo test`, but
//! libtest captures what a passing test prints and reports it as passed, so a
//! message printed at the skip is never seen. Each skip is therefore also
//! recorded here, and when the test binary exits a summary naming every skipped
//! case and why goes straight to the process's stderr, past the capture.
//! With `PORTCULLIS_REQUIRE_SERVICES=1` (CI) a skip is a failure instead.

use std::io::Write;
use std::sync::{Mutex, Once};

/// (test, why) for every case skipped so far in this process.
static SKIPPED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
static REPORT_AT_EXIT: Once = Once::new();

unsafe extern "C" {
    /// The C library's exit hook: runs after libtest's `main` has printed its result.
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

/// Skips the running case because `why` (e.g. "redis-server is not on PATH"):
/// panics when services are required, else records it for the exit summary.
/// The caller returns without testing anything.
pub fn skip(why: &str) {
    let test = current_test();
    if super::services_required() {
        panic!("{test}: {why}, and PORTCULLIS_REQUIRE_SERVICES=1 does not allow skipping");
    }
    // Also in the case's own (captured) output, for `--nocapture` runs.
    eprintln!("SKIPPED {test}: {why}");
    SKIPPED.lock().unwrap_or_else(|e| e.into_inner()).push((test, why.to_owned()));
    REPORT_AT_EXIT.call_once(|| {
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        unsafe { atexit(report) };
    });
}

/// libtest runs each case on a thread named after it (tokio's test runtime
/// polls the body on that same thread).
fn current_test() -> String {
    std::thread::current().name().unwrap_or("(unnamed test)").to_owned()
}

/// Writes the summary to the real stderr (not `eprintln!`, which the capture
/// would take). Runs at process exit, so it must not panic.
extern "C" fn report() {
    let skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    if skipped.is_empty() {
        return;
    }
    let binary = std::env::args()
        .next()
        .and_then(|p| std::path::Path::new(&p).file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| stem.rsplit_once('-').map_or(stem.clone(), |(name, _hash)| name.to_owned()))
        .unwrap_or_default();
    let mut text = format!(
        "\nSKIPPED in {binary}: {} case(s) reported as passed but did not run \
         (PORTCULLIS_REQUIRE_SERVICES=1 makes these failures):\n",
        skipped.len()
    );
    for (test, why) in skipped.iter() {
        text.push_str(&format!("    {test}: {why}\n"));
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
