//! The file transport: one RFC 5322 `.eml` file per message in a directory, for
//! development and for tests that read the mail a user would get.
//!
//! Files are written to a temporary name and renamed into place, so a reader
//! polling the directory never sees half a message. Names sort by time and are
//! unique per process (time, pid, counter). Mode 0600: the files hold codes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;

use super::message::MailError;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `raw` into `dir` (created if missing) and returns the file's path.
pub(super) async fn write(dir: &Path, raw: &[u8]) -> Result<PathBuf, MailError> {
    let fail = |what: &str, path: &Path, e: std::io::Error| {
        MailError::Transport(format!("outbox {what} {}: {e}", path.display()))
    };
    tokio::fs::create_dir_all(dir).await.map_err(|e| fail("creating", dir, e))?;

    // A file name that sorts by when the mail was written, on the wall clock.
    #[allow(clippy::disallowed_methods)]
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default();
    let seq = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{millis:013}-{}-{seq:06}.eml", std::process::id());
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);

    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let result = async {
        let mut file = options.open(&tmp).await?;
        file.write_all(raw).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, &path).await
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(fail("writing", &path, e));
    }
    Ok(path)
}
