//! Logging: tracing to stderr, human-readable on a terminal and JSON lines
//! otherwise, through a background writer so a slow stderr never blocks the
//! runtime. The `access` target carries one line per request, `security` the
//! audit trail.

use std::cell::RefCell;
use std::io::{IsTerminal, Write as _};
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::NonBlocking;

/// The log writer, when lines are JSON: access-log lines are formatted here
/// and handed to it directly (see [`access`]).
static JSON_WRITER: OnceLock<NonBlocking> = OnceLock::new();

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    Text,
    Json,
}

/// Installs the subscriber (filter from `PORTCULLIS_LOG`, default `info`). The
/// guard flushes the writer at exit: keep it alive for the program's life.
pub fn init(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    // 8,192 messages waiting for stderr, not the crate's 128,000: the queue's
    // slots are allocated and touched up front (4 MiB at that size), and
    // access-log lines come in batches of up to 16 KiB a message (see
    // [`batch_access_log`]), so this is still over 100 MiB of lines.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(8192)
        .lossy(false)
        .finish(BatchedStderr(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr())));
    if json {
        let _ = JSON_WRITER.set(writer.clone());
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    if json {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        // Field values carry what clients typed (a user name in the audit
        // trail): each is written with its control characters escaped, so
        // none can move the cursor, recolour the terminal or start a forged
        // line. (JSON escapes them already.)
        use tracing_subscriber::field::MakeExt;
        let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
            let text = format!("{value:?}");
            match field.name() {
                "message" => write!(w, "{}", escape(&text, false)),
                name => write!(w, "{name}={}", escape(&text, false)),
            }
        })
        .delimited(" ");
        builder.fmt_fields(fields).with_ansi(std::io::stderr().is_terminal()).init();
    }
    guard
}

/// `s` with every control character (C0, DEL, C1) and every invisible
/// direction or format mark escaped (`\x1b`, `\u{202e}`), and `\` doubled,
/// for writing to a terminal: text from clients (a user name as typed, a
/// user agent) can then neither send escape sequences to an operator's
/// terminal nor pose as other output.
pub fn terminal_safe(s: &str) -> std::borrow::Cow<'_, str> {
    escape(s, true)
}

/// As [`terminal_safe`]; `backslash`: double backslashes too (log fields
/// come Debug-formatted, their backslashes already escaped).
fn escape(s: &str, backslash: bool) -> std::borrow::Cow<'_, str> {
    let invisible = |c: char| matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}');
    let unsafe_char = |c: char| c.is_control() || invisible(c) || (backslash && c == '\\');
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' if backslash => out.push_str("\\\\"),
            c if (c as u32) < 0x80 && unsafe_char(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The log writer thread's sink. The thread drains every queued line into this
/// buffer, then flushes; after a flush it pauses briefly, so that under load
/// lines pile up in the queue instead of each one waking the thread (a futex
/// wake and a write(2) per access-log line cost a third of the proxy's
/// throughput). A line waits at most the pause before it is written.
struct BatchedStderr(std::io::BufWriter<std::io::Stderr>);

impl std::io::Write for BatchedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        // The writer thread's own pause (above), never a runtime thread.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(std::time::Duration::from_millis(2));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(terminal_safe("alice"), "alice");
        assert!(matches!(terminal_safe("Zoë"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(terminal_safe("\u{1b}[2Jx\u{7}"), "\\x1b[2Jx\\x07");
        assert_eq!(terminal_safe("a\nb\rc\td\u{7f}"), "a\\x0ab\\x0dc\\x09d\\x7f");
        assert_eq!(terminal_safe("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(terminal_safe("evil\u{202e}gnp.exe"), "evil\\u{202e}gnp.exe");
        assert_eq!(terminal_safe("C:\\x1b"), "C:\\\\x1b", "a typed backslash cannot pose as an escape");
    }
}

/// One request, as the access log records it.
pub struct AccessEntry<'a> {
    pub method: &'a str,
    pub route: &'static str,
    pub status: u16,
    pub duration: Duration,
    /// The logged-in user, or "-".
    pub user: &'a str,
    pub client_ip: IpAddr,
}

/// Writes one access-log line (target `access`, level info). Under JSON
/// logging the line is formatted here, straight into a reused buffer, in the
/// shape the JSON subscriber gives every other event: a generic event cost a
/// fifth of a proxied request's instructions (field visitors, `fmt`
/// machinery, time formatting), this a small fraction of that. Otherwise (a
/// terminal, or logging not set up) it is an ordinary tracing event.
///
/// On a thread that runs [`batch_access_log`] (each server worker), lines
/// gather in the thread's buffer and go to the writer together, within
/// [`BATCH_PAUSE`] or once [`BATCH_BYTES`] have gathered; elsewhere each
/// line goes at once.
pub fn access(e: &AccessEntry<'_>) {
    if !tracing::enabled!(target: "access", tracing::Level::INFO) {
        return;
    }
    let Some(writer) = JSON_WRITER.get() else {
        tracing::info!(
            target: "access",
            method = e.method,
            route = e.route,
            status = e.status,
            duration_ms = e.duration.as_secs_f64() * 1000.0,
            user = e.user,
            client_ip = %e.client_ip,
        );
        return;
    };
    LINE.with(|line| {
        let mut line = line.borrow_mut();
        let was_empty = line.buf.is_empty();
        line.format(e);
        match &line.batch {
            Some(wake) if line.buf.len() < BATCH_BYTES => {
                if was_empty {
                    wake.notify_one();
                }
            }
            _ => line.hand_off(writer),
        }
    });
}

/// How long an access-log line may wait in a worker's buffer.
pub const BATCH_PAUSE: Duration = Duration::from_millis(20);
/// How much a worker's buffer gathers before it is handed on without waiting.
const BATCH_BYTES: usize = 16 * 1024;

thread_local! {
    static LINE: RefCell<Line> = const {
        RefCell::new(Line { buf: Vec::new(), second: u64::MAX, stamp: [0; 19], writer: None, batch: None })
    };
}

/// Batches this thread's access-log lines for as long as it runs (spawn it
/// on a worker's runtime): each line then costs an append to the thread's
/// buffer, not a hand-off to the writer thread (an allocation, a copy and a
/// channel send, which the writer thread then undoes). When the runtime
/// ends, what is left is handed on.
pub async fn batch_access_log() {
    let Some(writer) = JSON_WRITER.get() else { return };
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    LINE.with(|line| line.borrow_mut().batch = Some(wake.clone()));
    struct Unbatch(&'static NonBlocking);
    impl Drop for Unbatch {
        fn drop(&mut self) {
            let _ = LINE.try_with(|line| {
                let mut line = line.borrow_mut();
                line.batch = None;
                line.hand_off(self.0);
            });
        }
    }
    let _unbatch = Unbatch(writer);
    loop {
        wake.notified().await;
        tokio::time::sleep(BATCH_PAUSE).await;
        LINE.with(|line| line.borrow_mut().hand_off(writer));
    }
}

/// A thread's access-log buffer, its cached timestamp second, and its handle
/// on the log writer.
struct Line {
    /// Lines not yet handed to the writer.
    buf: Vec<u8>,
    second: u64,
    /// "YYYY-MM-DDTHH:MM:SS" of `second`.
    stamp: [u8; 19],
    writer: Option<NonBlocking>,
    /// Set while [`batch_access_log`] runs on this thread: it is woken when
    /// the buffer gets its first line.
    batch: Option<std::sync::Arc<tokio::sync::Notify>>,
}

impl Line {
    /// Hands the gathered lines to the log writer.
    fn hand_off(&mut self, writer: &NonBlocking) {
        if self.buf.is_empty() {
            return;
        }
        let writer = self.writer.get_or_insert_with(|| writer.clone());
        let _ = writer.write_all(&self.buf);
        self.buf.clear();
    }

    /// Appends one line.
    fn format(&mut self, e: &AccessEntry<'_>) {
        // The access log's timestamp is the wall clock's, whatever a test's clock says.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        if now.as_secs() != self.second {
            self.second = now.as_secs();
            let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            let text = time::OffsetDateTime::from_unix_timestamp(i64::try_from(self.second).unwrap_or(0))
                .ok()
                .and_then(|t| t.format(&fmt).ok())
                .unwrap_or_default();
            if text.len() == self.stamp.len() {
                self.stamp.copy_from_slice(text.as_bytes());
            }
        }
        let mut num = itoa::Buffer::new();
        let b = &mut self.buf;
        b.extend_from_slice(b"{\"timestamp\":\"");
        b.extend_from_slice(&self.stamp);
        b.push(b'.');
        let micros = now.subsec_micros();
        let digits = num.format(micros);
        b.extend(std::iter::repeat_n(b'0', 6 - digits.len()));
        b.extend_from_slice(digits.as_bytes());
        b.extend_from_slice(b"Z\",\"level\":\"INFO\",\"method\":");
        json_str(b, e.method);
        b.extend_from_slice(b",\"route\":");
        json_str(b, e.route);
        b.extend_from_slice(b",\"status\":");
        b.extend_from_slice(num.format(e.status).as_bytes());
        b.extend_from_slice(b",\"duration_ms\":");
        let micros = e.duration.as_micros();
        b.extend_from_slice(num.format(micros / 1000).as_bytes());
        b.push(b'.');
        let frac = num.format(micros % 1000);
        b.extend(std::iter::repeat_n(b'0', 3 - frac.len()));
        b.extend_from_slice(frac.as_bytes());
        b.extend_from_slice(b",\"user\":");
        json_str(b, e.user);
        b.extend_from_slice(b",\"client_ip\":\"");
        crate::client_ip::push_ip(b, e.client_ip);
        b.extend_from_slice(b"\",\"target\":\"access\"}\n");
    }
}

/// Appends `s` as a JSON string.
fn json_str(b: &mut Vec<u8>, s: &str) {
    b.push(b'"');
    // Method, route and user name rarely need escaping: copied whole then.
    if !s.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\') {
        b.extend_from_slice(s.as_bytes());
        b.push(b'"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => b.extend_from_slice(b"\\\""),
            '\\' => b.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(b, "\\u{:04x}", c as u32);
            }
            c => {
                let mut tmp = [0u8; 4];
                b.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    b.push(b'"');
}

#[cfg(test)]
mod access_tests {
    use super::*;

    #[test]
    fn an_access_line_is_one_json_object_with_every_field() {
        let mut line = Line { buf: Vec::new(), second: u64::MAX, stamp: [0; 19], writer: None, batch: None };
        line.format(&AccessEntry {
            method: "GET",
            route: "proxy",
            status: 200,
            duration: Duration::from_micros(1_234_056),
            user: "al\"ice",
            client_ip: "192.0.2.7".parse().unwrap(),
        });
        let text = String::from_utf8(line.buf.clone()).unwrap();
        assert!(text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["target"], "access");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1234.056);
        assert_eq!(v["user"], "al\"ice");
        assert_eq!(v["client_ip"], "192.0.2.7");
        let stamp = v["timestamp"].as_str().unwrap();
        assert!(stamp.len() == 27 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{stamp}");
    }
}
