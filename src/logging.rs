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
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
    guard
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
