//! An in-process SMTP sink for tests: real SMTP over TCP on a free loopback port.
//!
//! It greets, answers EHLO/HELO (advertising `AUTH PLAIN LOGIN` and `8BITMIME`, no
//! STARTTLS), accepts any AUTH PLAIN/LOGIN credentials (recording the user),
//! MAIL FROM, RCPT TO, DATA (with dot-unstuffing), RSET, NOOP and QUIT, and keeps
//! every delivered message. It can be told to reject senders (`554`) or to stay
//! silent after accepting the TCP connection (to exercise timeouts). It counts the
//! connections it accepted, times each DATA section (from its `354` to the
//! terminating dot) and can hang up on every open connection. Dropping the sink
//! closes the listener and every open connection.
//!
//! Use from a test file with `#[path = "support/smtp.rs"] mod smtp;`.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// One message as the sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub from: String,
    pub to: Vec<String>,
    /// The DATA section, dot-unstuffed, without the terminating `.` line.
    pub data: String,
    /// The user name given in AUTH on this connection, if any.
    pub auth_user: Option<String>,
}

impl Message {
    /// The first value of header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        header_value(head_of(&self.data), name)
    }

    /// The decoded `text/plain` part (or the whole body of a single-part message).
    pub fn text_body(&self) -> Option<String> {
        decode_part(&self.data, "text/plain")
    }

    /// The decoded `text/html` part.
    pub fn html_body(&self) -> Option<String> {
        decode_part(&self.data, "text/html")
    }

    /// The first run of exactly six digits in the text body: the one-time code.
    pub fn code(&self) -> Option<String> {
        self.text_body().and_then(|t| find_code(&t))
    }
}

#[derive(Default)]
struct State {
    messages: Mutex<Vec<Message>>,
    reject: AtomicBool,
    silent: AtomicBool,
    arrived: Notify,
    connections: AtomicUsize,
    data_times: Mutex<Vec<Duration>>,
    hang_up: Notify,
}

impl State {
    fn messages(&self) -> MutexGuard<'_, Vec<Message>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running sink; stops when dropped.
pub struct SmtpSink {
    port: u16,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl SmtpSink {
    /// Binds 127.0.0.1 on a free port and starts accepting.
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp sink");
        let port = listener.local_addr().expect("sink address").port();
        let state = Arc::new(State::default());
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        SmtpSink { port, state, accept }
    }

    /// A sink that accepts connections but never says a word.
    pub async fn start_silent() -> SmtpSink {
        let sink = SmtpSink::start().await;
        sink.set_silent(true);
        sink
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message delivered so far.
    pub fn messages(&self) -> Vec<Message> {
        self.state.messages().clone()
    }

    /// Waits until at least `n` messages arrived or `timeout` passed; returns what is there.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so an arrival in between is not missed.
            let arrived = self.state.arrived.notified();
            {
                let messages = self.state.messages();
                if messages.len() >= n {
                    return messages.clone();
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.messages();
            }
        }
    }

    /// While on, `MAIL FROM` is answered with `554` (a permanent failure).
    pub fn set_reject(&self, reject: bool) {
        self.state.reject.store(reject, Ordering::SeqCst);
    }

    /// While on, new connections are accepted and then ignored (no greeting).
    pub fn set_silent(&self, silent: bool) {
        self.state.silent.store(silent, Ordering::SeqCst);
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// For each delivered message, the time from the `354` reply to the
    /// terminating `.` line: near zero unless the client held the dot back.
    pub fn data_times(&self) -> Vec<Duration> {
        self.state.data_times.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Closes every open connection without a word, as a server restart or an
    /// idle timeout would; the listener keeps accepting.
    pub fn hang_up(&self) {
        self.state.hang_up.notify_waiters();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every connection.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                state.connections.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&state);
                connections.spawn(async move {
                    let hang_up = state.hang_up.notified();
                    if state.silent.load(Ordering::SeqCst) {
                        // Hold the socket open and say nothing until the sink is dropped.
                        let _held = stream;
                        std::future::pending::<()>().await
                    } else {
                        // Biased: once told to hang up, not another command is answered.
                        tokio::select! {
                            biased;
                            _ = hang_up => {}
                            _ = serve(stream, Arc::clone(&state)) => {}
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

const HOST: &str = "sink.test";

async fn serve(stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut auth_user: Option<String> = None;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();

    write.write_all(format!("220 {HOST} ESMTP test sink\r\n").as_bytes()).await?;
    loop {
        let Some(line) = read_line(&mut lines).await? else {
            return Ok(());
        };
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_owned()),
            None => (line.to_ascii_uppercase(), String::new()),
        };
        let reply: String = match verb.as_str() {
            "EHLO" => {
                format!("250-{HOST} greets {arg}\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n")
            }
            "HELO" => format!("250 {HOST}\r\n"),
            "AUTH" => {
                let mut parts = arg.split_whitespace();
                let mechanism = parts.next().unwrap_or_default().to_ascii_uppercase();
                let initial = parts.next().map(str::to_owned);
                match mechanism.as_str() {
                    "PLAIN" => {
                        let response = match initial {
                            Some(r) => r,
                            None => {
                                write.write_all(b"334 \r\n").await?;
                                read_line(&mut lines).await?.unwrap_or_default()
                            }
                        };
                        // authzid NUL authcid NUL password
                        let decoded = b64_text(&response);
                        auth_user = decoded.split('\0').nth(1).map(str::to_owned);
                        "235 2.7.0 Authentication successful\r\n".into()
                    }
                    "LOGIN" => {
                        let user = match initial {
                            Some(r) => r,
                            None => {
                                write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                                read_line(&mut lines).await?.unwrap_or_default()
                            }
                        };
                        write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        let _password = read_line(&mut lines).await?;
                        auth_user = Some(b64_text(&user));
                        "235 2.7.0 Authentication successful\r\n".into()
                    }
                    _ => "504 5.5.4 Unrecognized authentication type\r\n".into(),
                }
            }
            "MAIL" => {
                if state.reject.load(Ordering::SeqCst) {
                    "554 5.7.1 Rejected by test sink\r\n".into()
                } else {
                    from = Some(angle_address(&arg));
                    to.clear();
                    "250 2.1.0 OK\r\n".into()
                }
            }
            "RCPT" => {
                if from.is_none() {
                    "503 5.5.1 MAIL first\r\n".into()
                } else {
                    to.push(angle_address(&arg));
                    "250 2.1.5 OK\r\n".into()
                }
            }
            "DATA" => {
                if from.is_none() || to.is_empty() {
                    "503 5.5.1 RCPT first\r\n".into()
                } else {
                    write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                    let started = Instant::now();
                    let Some(data) = read_data(&mut lines).await? else {
                        return Ok(());
                    };
                    state.data_times.lock().unwrap_or_else(|e| e.into_inner()).push(started.elapsed());
                    let message = Message {
                        from: from.take().unwrap_or_default(),
                        to: std::mem::take(&mut to),
                        data,
                        auth_user: auth_user.clone(),
                    };
                    state.messages().push(message);
                    state.arrived.notify_waiters();
                    "250 2.0.0 OK queued\r\n".into()
                }
            }
            "RSET" => {
                from = None;
                to.clear();
                "250 2.0.0 OK\r\n".into()
            }
            "NOOP" => "250 2.0.0 OK\r\n".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Command not implemented\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// One line without its CRLF; `None` at end of stream.
async fn read_line<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    if r.read_until(b'\n', &mut buf).await? == 0 {
        return Ok(None);
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// The DATA section up to the lone `.` line, dot-unstuffed, lines joined with CRLF.
async fn read_data<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<String>> {
    let mut data = String::new();
    loop {
        let Some(line) = read_line(r).await? else {
            return Ok(None);
        };
        if line == "." {
            return Ok(Some(data));
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
        data.push_str("\r\n");
    }
}

/// `FROM:<a@b> SIZE=1` → `a@b`.
fn angle_address(arg: &str) -> String {
    match (arg.find('<'), arg.find('>')) {
        (Some(start), Some(end)) if start < end => arg[start + 1..end].to_owned(),
        _ => arg.split_once(':').map(|(_, a)| a.trim().to_owned()).unwrap_or_default(),
    }
}

fn b64_text(s: &str) -> String {
    B64.decode(s.trim()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

// ---- just enough MIME to read what lettre writes ----

/// The header block of a message or part (everything before the first blank line).
fn head_of(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map_or(raw, |(h, _)| h)
}

fn header_value(head: &str, name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if let Some(v) = value.as_mut() {
            if line.starts_with(' ') || line.starts_with('\t') {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_owned());
        }
    }
    value
}

/// Finds the part whose Content-Type starts with `mime` and decodes its body
/// (quoted-printable, base64, or 7bit/8bit as is).
pub fn decode_part(raw: &str, mime: &str) -> Option<String> {
    let head = head_of(raw);
    let content_type = header_value(head, "Content-Type").unwrap_or_default();
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        if !content_type.is_empty() && !content_type.to_ascii_lowercase().starts_with(mime) {
            return None;
        }
        let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        return Some(decode_body(head, body));
    }
    let boundary = boundary_of(&content_type)?;
    let delimiter = format!("--{boundary}");
    raw.split(delimiter.as_str())
        .skip(1)
        .filter(|part| !part.starts_with("--"))
        .map(|part| part.strip_prefix("\r\n").unwrap_or(part))
        .find_map(|part| decode_part(part.strip_suffix("\r\n").unwrap_or(part), mime))
}

fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|param| {
        let (k, v) = param.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary").then(|| v.trim_matches('"').to_owned())
    })
}

fn decode_body(head: &str, body: &str) -> String {
    let encoding = header_value(head, "Content-Transfer-Encoding").unwrap_or_default().to_ascii_lowercase();
    match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            B64.decode(compact).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
        }
        _ => body.to_owned(),
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes[i + 1..].starts_with(b"\r\n") {
                i += 3; // soft line break
                continue;
            }
            if bytes[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first run of exactly six ASCII digits.
pub fn find_code(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == 6 {
                return Some(text[start..i].to_owned());
            }
        } else {
            i += 1;
        }
    }
    None
}
