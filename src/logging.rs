//! Logging: tracing to stderr, human-readable on a terminal and JSON lines
//! otherwise, through a background writer so a slow stderr never blocks the
//! runtime. The `access` target carries one line per request, `security` the
//! audit trail.

use std::io::IsTerminal;

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
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(BatchedStderr(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr())));
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
