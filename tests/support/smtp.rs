//! An in-process SMTP sink for tests: real SMTP over TCP on a free loopback port.
//!
//! It greets, answers EHLO/HELO (advertising `AUTH PLAIN LOGIN` and `8BITMIME`, no
//! STARTTLS), accepts any AUTH PLAIN/LOGIN credentials (recording the user),
//! MAIL FROM, RCPT TO, DATA (with dot-unstuffing), RSET, NOOP and QUIT, and keeps
//! every delivered message. It can be told to reject senders (`554`) or to stay
//! silent after accepting the TCP connection (to exercise timeouts), and to fail
//! the way real relays do ([`Failure`]): refuse the credentials (`535`), defer at
//! the greeting (`421`) or after taking the message (`451`), or hang up in the
//! middle of DATA. A message it took but did not deliver is kept apart
//! ([`SmtpSink::refused`]). It counts the connections it accepted, records every
//! command verb, times each DATA section (from its `354` to the terminating dot)
//! and can hang up on every open connection. Dropping the sink closes the
//! listener and every open connection.
//!
//! By default it speaks plain SMTP only. Started with a certificate and key it
//! speaks TLS too: either it offers STARTTLS (and, like a permissive server,
//! AUTH before it, so a client that sends credentials in the clear is caught,
//! not turned away), or it expects TLS from the first byte. It records, per
//! message, whether it arrived over TLS; every command received in the clear;
//! and how many TLS handshakes failed (a client refusing its certificate).
//! After STARTTLS it forgets the session, AUTH included (RFC 3207).
//!
//! Use from a test file with `#[path = "support/smtp.rs"] mod smtp;`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// One message as the sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub from: String,
    pub to: Vec<String>,
    /// The DATA section, dot-unstuffed, without the terminating `.` line.
    pub data: String,
    /// The user name given in AUTH on this connection, if any (after STARTTLS,
    /// only an AUTH given over TLS counts).
    pub auth_user: Option<String>,
    /// Whether the message came over TLS (STARTTLS or implicit).
    pub tls: bool,
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

/// How the sink uses TLS.
#[derive(Clone, Default)]
enum SinkTls {
    /// Plain SMTP only; STARTTLS is not offered (the default).
    #[default]
    Off,
    /// STARTTLS offered after EHLO.
    StartTls(TlsAcceptor),
    /// TLS from the first byte (SMTPS).
    Implicit(TlsAcceptor),
}

/// A way the sink fails every delivery, as real relays do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Failure {
    /// Deliver normally.
    #[default]
    None,
    /// `535 5.7.8` to every AUTH (wrong or revoked relay credentials).
    RefuseAuth,
    /// `421 4.3.2` instead of the greeting, then hang up (relay overloaded or
    /// shutting down). Plain and STARTTLS sinks only.
    DeferAtConnect,
    /// Read the whole message, then `451 4.3.0` instead of queueing it.
    DeferAfterData,
    /// Hang up without a reply once the message's header block has arrived.
    DropMidData,
}

impl Failure {
    const ALL: [Failure; 5] =
        [Failure::None, Failure::RefuseAuth, Failure::DeferAtConnect, Failure::DeferAfterData, Failure::DropMidData];
}

#[derive(Default)]
struct State {
    messages: Mutex<Vec<Message>>,
    /// Messages (or, for `DropMidData`, the part of one) taken but not delivered.
    refused: Mutex<Vec<Message>>,
    /// Index into `Failure::ALL`.
    failure: AtomicUsize,
    /// Every command verb received, over all connections, TLS or not.
    commands: Mutex<Vec<String>>,
    reject: AtomicBool,
    silent: AtomicBool,
    arrived: Notify,
    connections: AtomicUsize,
    data_times: Mutex<Vec<Duration>>,
    hang_up: Notify,
    tls: SinkTls,
    clear_commands: Mutex<Vec<String>>,
    tls_failures: AtomicUsize,
}

impl State {
    fn messages(&self) -> MutexGuard<'_, Vec<Message>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failure(&self) -> Failure {
        Failure::ALL[self.failure.load(Ordering::SeqCst)]
    }

    fn refuse(&self, message: Message) {
        self.refused.lock().unwrap_or_else(|e| e.into_inner()).push(message);
        self.arrived.notify_waiters();
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
        SmtpSink::start_with(SinkTls::Off).await
    }

    /// A sink that offers STARTTLS with this PEM certificate (chain) and key.
    pub async fn start_starttls(cert: &Path, key: &Path) -> SmtpSink {
        SmtpSink::start_with(SinkTls::StartTls(acceptor(cert, key))).await
    }

    /// A sink that speaks TLS from the first byte (SMTPS) with this PEM certificate and key.
    pub async fn start_implicit_tls(cert: &Path, key: &Path) -> SmtpSink {
        SmtpSink::start_with(SinkTls::Implicit(acceptor(cert, key))).await
    }

    async fn start_with(tls: SinkTls) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp sink");
        let port = listener.local_addr().expect("sink address").port();
        let state = Arc::new(State { tls, ..State::default() });
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

    /// From now on, fail every delivery this way (`Failure::None` to recover).
    pub fn set_failure(&self, failure: Failure) {
        let index = Failure::ALL.iter().position(|f| *f == failure).unwrap_or(0);
        self.state.failure.store(index, Ordering::SeqCst);
    }

    /// Messages the sink took but did not deliver (`DeferAfterData`: whole;
    /// `DropMidData`: the header block it read before hanging up).
    pub fn refused(&self) -> Vec<Message> {
        self.state.refused.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until at least `n` messages were refused or `timeout` passed.
    pub async fn wait_for_refused(&self, n: usize, timeout: Duration) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            let refused = self.refused();
            if refused.len() >= n || tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.refused();
            }
        }
    }

    /// The verb of every command received, in order, over all connections.
    pub fn commands(&self) -> Vec<String> {
        self.state.commands.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

    /// The verb of every command received outside TLS, in order, over all
    /// connections: against a STARTTLS sink, `["EHLO", "STARTTLS"]` per
    /// connection is all a careful client sends in the clear.
    pub fn commands_in_clear(&self) -> Vec<String> {
        self.state.clear_commands.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// TLS handshakes that failed, e.g. because the client refused the certificate.
    pub fn tls_failures(&self) -> usize {
        self.state.tls_failures.load(Ordering::SeqCst)
    }
}

/// A TLS acceptor for the sink from PEM files (as written by `support::self_signed`).
fn acceptor(cert: &Path, key: &Path) -> TlsAcceptor {
    let chain = CertificateDer::pem_file_iter(cert)
        .expect("open sink certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("read sink certificate");
    let key = PrivateKeyDer::from_pem_file(key).expect("read sink key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("sink TLS config");
    TlsAcceptor::from(Arc::new(config))
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

/// What one connection has said so far; forgotten on STARTTLS.
#[derive(Default)]
struct Session {
    auth_user: Option<String>,
    from: Option<String>,
    to: Vec<String>,
    tls: bool,
}

/// How a stretch of conversation ended.
enum Next {
    Close,
    /// The client asked for STARTTLS and was told to go ahead.
    StartTls,
}

async fn serve(mut stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    if state.failure() == Failure::DeferAtConnect && !matches!(state.tls, SinkTls::Implicit(_)) {
        stream.write_all(format!("421 4.3.2 {HOST} busy, try again later\r\n").as_bytes()).await?;
        return stream.flush().await;
    }
    let mut session = Session::default();
    match state.tls.clone() {
        SinkTls::Implicit(acceptor) => {
            let Some(tls) = handshake(&acceptor, stream, &state).await else { return Ok(()) };
            session.tls = true;
            let mut conn = BufReader::new(tls);
            greet(&mut conn).await?;
            converse(&mut conn, &state, &mut session).await.map(drop)
        }
        SinkTls::StartTls(acceptor) => {
            let mut conn = BufReader::new(stream);
            greet(&mut conn).await?;
            match converse(&mut conn, &state, &mut session).await? {
                Next::Close => Ok(()),
                Next::StartTls => {
                    // Anything the client sent after STARTTLS but before the handshake
                    // is dropped with the buffer, as RFC 3207 servers must.
                    let Some(tls) = handshake(&acceptor, conn.into_inner(), &state).await else { return Ok(()) };
                    session = Session { tls: true, ..Session::default() };
                    converse(&mut BufReader::new(tls), &state, &mut session).await.map(drop)
                }
            }
        }
        SinkTls::Off => {
            let mut conn = BufReader::new(stream);
            greet(&mut conn).await?;
            converse(&mut conn, &state, &mut session).await.map(drop)
        }
    }
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    state: &State,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match acceptor.accept(tcp).await {
        Ok(tls) => Some(tls),
        Err(_) => {
            state.tls_failures.fetch_add(1, Ordering::SeqCst);
            None
        }
    }
}

async fn greet<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut BufReader<S>) -> std::io::Result<()> {
    conn.write_all(format!("220 {HOST} ESMTP test sink\r\n").as_bytes()).await?;
    conn.flush().await
}

/// Answers commands until the client quits, hangs up or starts TLS.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
    state: &State,
    session: &mut Session,
) -> std::io::Result<Next> {
    let offer_starttls = matches!(state.tls, SinkTls::StartTls(_)) && !session.tls;
    loop {
        let Some(line) = read_line(conn).await? else {
            return Ok(Next::Close);
        };
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_owned()),
            None => (line.to_ascii_uppercase(), String::new()),
        };
        if !session.tls {
            state.clear_commands.lock().unwrap_or_else(|e| e.into_inner()).push(verb.clone());
        }
        state.commands.lock().unwrap_or_else(|e| e.into_inner()).push(verb.clone());
        let refuse_auth = state.failure() == Failure::RefuseAuth;
        let reply: String = match verb.as_str() {
            "EHLO" => {
                let starttls = if offer_starttls { "250-STARTTLS\r\n" } else { "" };
                format!(
                    "250-{HOST} greets {arg}\r\n{starttls}250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n"
                )
            }
            "HELO" => format!("250 {HOST}\r\n"),
            "STARTTLS" if offer_starttls => {
                conn.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
                conn.flush().await?;
                return Ok(Next::StartTls);
            }
            "AUTH" => {
                let mut parts = arg.split_whitespace();
                let mechanism = parts.next().unwrap_or_default().to_ascii_uppercase();
                let initial = parts.next().map(str::to_owned);
                match mechanism.as_str() {
                    "PLAIN" => {
                        let response = match initial {
                            Some(r) => r,
                            None => {
                                conn.write_all(b"334 \r\n").await?;
                                conn.flush().await?;
                                read_line(conn).await?.unwrap_or_default()
                            }
                        };
                        // authzid NUL authcid NUL password
                        let decoded = b64_text(&response);
                        if refuse_auth {
                            "535 5.7.8 Authentication credentials invalid\r\n".into()
                        } else {
                            session.auth_user = decoded.split('\0').nth(1).map(str::to_owned);
                            "235 2.7.0 Authentication successful\r\n".into()
                        }
                    }
                    "LOGIN" => {
                        let user = match initial {
                            Some(r) => r,
                            None => {
                                conn.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                                conn.flush().await?;
                                read_line(conn).await?.unwrap_or_default()
                            }
                        };
                        conn.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        conn.flush().await?;
                        let _password = read_line(conn).await?;
                        if refuse_auth {
                            "535 5.7.8 Authentication credentials invalid\r\n".into()
                        } else {
                            session.auth_user = Some(b64_text(&user));
                            "235 2.7.0 Authentication successful\r\n".into()
                        }
                    }
                    _ => "504 5.5.4 Unrecognized authentication type\r\n".into(),
                }
            }
            "MAIL" => {
                if state.reject.load(Ordering::SeqCst) {
                    "554 5.7.1 Rejected by test sink\r\n".into()
                } else {
                    session.from = Some(angle_address(&arg));
                    session.to.clear();
                    "250 2.1.0 OK\r\n".into()
                }
            }
            "RCPT" => {
                if session.from.is_none() {
                    "503 5.5.1 MAIL first\r\n".into()
                } else {
                    session.to.push(angle_address(&arg));
                    "250 2.1.5 OK\r\n".into()
                }
            }
            "DATA" => {
                if session.from.is_none() || session.to.is_empty() {
                    "503 5.5.1 RCPT first\r\n".into()
                } else {
                    conn.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                    conn.flush().await?;
                    let started = Instant::now();
                    let failure = state.failure();
                    let data = if failure == Failure::DropMidData {
                        read_head(conn).await?
                    } else {
                        let Some(data) = read_data(conn).await? else {
                            return Ok(Next::Close);
                        };
                        state.data_times.lock().unwrap_or_else(|e| e.into_inner()).push(started.elapsed());
                        data
                    };
                    let message = Message {
                        from: session.from.take().unwrap_or_default(),
                        to: std::mem::take(&mut session.to),
                        data,
                        auth_user: session.auth_user.clone(),
                        tls: session.tls,
                    };
                    match failure {
                        Failure::DropMidData => {
                            state.refuse(message);
                            return Ok(Next::Close);
                        }
                        Failure::DeferAfterData => {
                            state.refuse(message);
                            "451 4.3.0 Temporary failure, message not queued\r\n".into()
                        }
                        _ => {
                            state.messages().push(message);
                            state.arrived.notify_waiters();
                            "250 2.0.0 OK queued\r\n".into()
                        }
                    }
                }
            }
            "RSET" => {
                session.from = None;
                session.to.clear();
                "250 2.0.0 OK\r\n".into()
            }
            "NOOP" => "250 2.0.0 OK\r\n".into(),
            "QUIT" => {
                conn.write_all(b"221 2.0.0 Bye\r\n").await?;
                conn.flush().await?;
                return Ok(Next::Close);
            }
            _ => "502 5.5.2 Command not implemented\r\n".into(),
        };
        conn.write_all(reply.as_bytes()).await?;
        conn.flush().await?;
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

/// The DATA section's header block (up to its first empty line), read no further.
async fn read_head<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<String> {
    let mut head = String::new();
    while let Some(line) = read_line(r).await? {
        if line.is_empty() || line == "." {
            break;
        }
        head.push_str(&line);
        head.push_str("\r\n");
    }
    Ok(head)
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
