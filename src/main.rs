//! The `portcullis` command line: parsing and wiring only.
//! Exit codes: 0 ok, 1 usage or configuration error, 2 runtime failure.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use portcullis::app;

use portcullis::auth::operator::{
    AccountState, Forgotten, IpUnlocked, Operator, OperatorActions, Revoked, TokensOf, TokensRevoked, Unlocked,
};
use portcullis::auth::users::{self, EditError, UserEntry, UsersFile, UsersFileWriter};
use portcullis::config::{self, Config};
use portcullis::logging;
use portcullis::logging::terminal_safe;
use portcullis::reach::{Fallback, Reach};
use portcullis::shutdown::Shutdown;
use portcullis::{demo, store};

/// jemalloc rather than the system allocator: with its background thread it
/// gives the memory of a burst (thousands of connections) back to the system
/// within seconds, where glibc and mimalloc keep it, and its allocations cost
/// less on the hot path; bench/README.md has the figures.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`_RJEM_MALLOC_CONF` in the
/// environment still overrides them): freed pages go back to the system
/// after about a second rather than ten, so the memory of connections that
/// went to sleep or closed does not pile up while thousands more open
/// (bench/README.md, "Footprint"). The background thread is on from the build.
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: JemallocConf = JemallocConf(c"dirty_decay_ms:1000".as_ptr());

/// A C string jemalloc reads at start; never written.
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
struct JemallocConf(*const std::ffi::c_char);

// SAFETY: it points at a string literal, immutable for the program's life.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for JemallocConf {}

/// mimalloc instead, when built for it (bench/README.md compares the three).
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Two-factor authentication gateway")]
struct Cli {
    /// Log format: human-readable on a terminal, JSON lines otherwise (auto).
    #[arg(long, value_enum, default_value_t = LogFormat::Auto, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve(ConfigArg),
    /// Try it out: in-memory store, console mail, a demo user and a whoami upstream.
    Demo(ConfigArg),
    /// Validate the configuration, open every file `serve` would open (users
    /// file, TLS certificate and key, CA bundles, state file), and print the
    /// effective configuration (secrets redacted).
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
        /// Only validate the configuration, without opening the users file, TLS
        /// certificate and key or state file (a config meant for another machine).
        #[arg(long)]
        no_files: bool,
    },
    /// Read a password (without echo on a terminal, else from stdin) and print its argon2id hash.
    HashPassword,
    /// Manage the users file.
    #[command(subcommand)]
    User(UserCommand),
    /// Clear the lockout of an account (or of a name typed at the login form),
    /// or with --ip every rate window of a client address. Asks the running
    /// gateway through its metrics listener (server.metrics_listen); with a
    /// Redis store and no gateway running there, works on the store directly.
    Unlock {
        /// The account's name or e-mail address.
        #[arg(required_unless_present = "ip", conflicts_with = "ip")]
        name: Option<String>,
        /// Instead: clear every rate window of this address (login, codes,
        /// resends, code e-mails and the ban after failures).
        #[arg(long, value_name = "ADDR")]
        ip: Option<std::net::IpAddr>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the audit trail (login attempts and security events), newest
    /// first, searched as the operator console searches it. Asks the running
    /// gateway through its metrics listener (server.metrics_listen), so it
    /// works on the memory store too; with a Redis store and no gateway
    /// running there, reads the store directly.
    Audit {
        /// Only this user's records (else the global trail).
        #[arg(long)]
        user: Option<String>,
        /// Only `login_attempt` or `security_event` records.
        #[arg(long, value_parser = ["login_attempt", "security_event"])]
        kind: Option<String>,
        /// Only this event or attempt result (e.g. invalid_credentials).
        #[arg(long)]
        event: Option<String>,
        /// Only records of this client address.
        #[arg(long, value_name = "ADDR")]
        ip: Option<String>,
        /// From this time on: unix seconds, 2026-12-06 or 2026-12-06T17:05 (UTC).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Up to this time (a date means its end), as --since.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Manage sessions in the configured store.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// List or revoke a user's access tokens (through the running gateway, as `unlock` does).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write a starter portcullis.toml (with a fresh secret) and an empty users file.
    Init {
        /// Directory for the two files (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The application to protect.
        #[arg(long, default_value = portcullis::init::DEFAULT_UPSTREAM)]
        upstream: String,
        /// The address users type to reach the gateway (or the proxy in front of it).
        #[arg(long, default_value = portcullis::init::DEFAULT_PUBLIC_URL)]
        public_url: String,
        /// Where the gateway listens (default: the public URL's port on 127.0.0.1
        /// when that URL is plain http on loopback, else 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Where Prometheus scrapes /metrics (a second instance on one host needs its own).
        #[arg(long, value_name = "ADDR", default_value = portcullis::init::DEFAULT_METRICS_LISTEN)]
        metrics_listen: String,
    },
    /// Print a shell completion script (e.g. `portcullis completions bash > /etc/bash_completion.d/portcullis`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `portcullis man | man -l -`.
    Man {
        /// Instead, write portcullis.1 and a page per subcommand (portcullis-init.1, ...) here.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Exit 0 if the running gateway answers its health check (for container health checks).
    Healthcheck {
        /// Probe this URL instead of the configured listener's {prefix}/healthz.
        #[arg(long)]
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(clap::Args, Clone)]
struct ConfigArg {
    /// Config file (default: $PORTCULLIS_CONFIG, else config/portcullis.toml if present).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// Which users file a `user` command edits: `--users-file`, else the
/// `auth.users_file` of the config (`--config`, `$PORTCULLIS_CONFIG` or
/// config/portcullis.toml).
#[derive(clap::Args, Clone)]
struct UsersFileArg {
    /// The users file (default: auth.users_file of the config).
    #[arg(long)]
    users_file: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user.
    ///
    /// The password is asked for twice without echo on a terminal;
    /// otherwise, or with --stdin, the first line of stdin is the password (`printf '%s\n' "$PW" | portcullis user add ...`). A weak
    /// password (zxcvbn score below 3 of 4) is refused unless --allow-weak is
    /// given. Like every command that writes the users file, it keeps the
    /// file's comments, order, owner and mode.
    Add {
        name: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        file: UsersFileArg,
    },
    /// Change a user's password.
    ///
    /// It is asked for as `user add` asks (twice without echo on a terminal,
    /// else or with --stdin the first line of stdin), and
    /// refused when weak unless --allow-weak is given. A running gateway ends
    /// the user's sessions at once (it watches the users file).
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        file: UsersFileArg,
    },
    /// List users, their second factors and locks.
    ///
    /// A header row, then one row per user: name, e-mail, groups, whether
    /// disabled, the second factors each enrolled and how long they are
    /// locked out.
    /// Factors and locks come from the configured store, through the running
    /// gateway as `unlock` does (or from Redis, or the memory store's state
    /// file when no gateway runs); `?` where it cannot be asked.
    List {
        #[command(flatten)]
        file: UsersFileArg,
    },
    /// Disable a user.
    ///
    /// They can no longer log in, and a running gateway ends their sessions
    /// within about a second (it watches the users file).
    Disable {
        name: String,
        #[command(flatten)]
        file: UsersFileArg,
    },
    /// Enable a disabled user again.
    ///
    /// Sessions from before it was disabled stay ended.
    Enable {
        name: String,
        #[command(flatten)]
        file: UsersFileArg,
    },
    /// Remove a user, end their sessions and forget their second factors.
    ///
    /// The user is removed from the users file; their sessions end, and their
    /// second factors (authenticator app, passkeys, backup codes, e-mailed
    /// codes) and known addresses are forgotten in the configured store,
    /// through the running gateway as `unlock` does (or in Redis, or the
    /// memory store's state file when no gateway runs). Their audit trail is
    /// kept. Nothing is changed when the store cannot be reached.
    Remove {
        name: String,
        /// Only edit the users file; the store keeps the user's second factors
        /// (a running gateway still ends their sessions).
        #[arg(long, conflicts_with = "store_only")]
        file_only: bool,
        /// Only forget the user in the store, for a user already gone from the
        /// users file.
        #[arg(long)]
        store_only: bool,
        #[command(flatten)]
        file: UsersFileArg,
    },
}

/// How a new password is given.
#[derive(clap::Args, Clone)]
struct PasswordArgs {
    /// Read the password from the first line of stdin, without prompting.
    #[arg(long)]
    stdin: bool,
    /// Accept a password the strength estimate calls weak.
    #[arg(long)]
    allow_weak: bool,
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// End every session of a user (through the running gateway, as `unlock` does).
    Revoke {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// A user's access tokens: id, name, created, expires, last used.
    List {
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Revoke one of a user's access tokens (by ID), or all of them.
    Revoke {
        name: String,
        id: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// An error with the exit code it deserves.
enum Failure {
    Usage(String),
    Runtime(String),
}

impl From<config::ConfigError> for Failure {
    fn from(e: config::ConfigError) -> Self {
        Failure::Usage(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let _log_guard = logging::init(match cli.log_format {
        LogFormat::Auto => logging::LogFormat::Auto,
        LogFormat::Text => logging::LogFormat::Text,
        LogFormat::Json => logging::LogFormat::Json,
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command.unwrap_or(Command::Serve(ConfigArg { config: None })) {
        Command::Serve(a) => runtime().and_then(|rt| rt.block_on(serve(a.config.as_deref()))),
        Command::Demo(a) => runtime().and_then(|rt| rt.block_on(run_demo(a.config.as_deref()))),
        Command::CheckConfig { config, no_files } => check_config(config.config.as_deref(), !no_files),
        Command::HashPassword => hash_password(),
        Command::User(u) => user_command(u),
        Command::Unlock { name, ip, config } => {
            runtime().and_then(|rt| rt.block_on(unlock(name.as_deref(), ip, config.config.as_deref())))
        }
        Command::Audit { user, kind, event, ip, since, until, limit, json, config } => {
            let time = |flag: &str, v: Option<String>, end: bool| -> Result<Option<u64>, Failure> {
                v.map(|v| {
                    portcullis::audit::parse_time(&v, end).ok_or_else(|| {
                        Failure::Usage(format!("{flag}: not a time (use 2026-12-06, 2026-12-06T17:05 or unix seconds)"))
                    })
                })
                .transpose()
            };
            let kind = kind.map(|k| match k.as_str() {
                "login_attempt" => store::AuditKind::LoginAttempt,
                _ => store::AuditKind::SecurityEvent,
            });
            time("--since", since, false).and_then(|since| {
                let until = time("--until", until, true)?;
                let q = store::AuditQuery { user, kind, event, ip, since, until, before: None, limit };
                runtime().and_then(|rt| rt.block_on(audit(q, json, config.config.as_deref())))
            })
        }
        Command::Sessions(SessionsCommand::Revoke { name, config }) => {
            runtime().and_then(|rt| rt.block_on(revoke_sessions(&name, config.config.as_deref())))
        }
        Command::Token(TokenCommand::List { name, config }) => {
            runtime().and_then(|rt| rt.block_on(list_tokens(&name, config.config.as_deref())))
        }
        Command::Token(TokenCommand::Revoke { name, id, config }) => {
            runtime().and_then(|rt| rt.block_on(revoke_tokens(&name, id.as_deref(), config.config.as_deref())))
        }
        Command::Init { dir, upstream, public_url, listen, metrics_listen } => {
            init(dir, &upstream, &public_url, listen.as_deref(), &metrics_listen)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "portcullis",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man { out_dir: None } => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut std::io::stdout())
            .map_err(|e| Failure::Runtime(e.to_string())),
        Command::Man { out_dir: Some(dir) } => std::fs::create_dir_all(&dir)
            .and_then(|()| clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir))
            .map_err(|e| Failure::Runtime(format!("{}: {e}", dir.display()))),
        Command::Healthcheck { url, timeout, config } => healthcheck(url, timeout, config.config.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {}", m.trim_end());
            ExitCode::from(1)
        }
        Err(Failure::Runtime(m)) => {
            eprintln!("error: {}", m.trim_end());
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(portcullis::server::STACK_SIZE)
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the runtime: {e}")))
}

fn start_error(e: app::StartError) -> Failure {
    match e {
        app::StartError::Config(_) | app::StartError::Users(_) => Failure::Usage(e.to_string()),
        other => Failure::Runtime(other.to_string()),
    }
}

async fn serve(config_flag: Option<&Path>) -> Result<(), Failure> {
    let loaded = config::load(config_flag, Config::default(), false)?;
    for w in app::warnings(&loaded.config) {
        tracing::warn!(key = %w.key, "{}", w.message);
    }
    let app = app::build(loaded.config, None).await.map_err(start_error)?;
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    app::run(app, shutdown).await.map_err(start_error)
}

async fn run_demo(config_flag: Option<&Path>) -> Result<(), Failure> {
    // The demo reads a config file only when asked to; env overrides always apply.
    let flag = config_flag.map(Path::to_path_buf).or_else(|| std::env::var_os("PORTCULLIS_CONFIG").map(PathBuf::from));
    let mut loaded = config::load_file(flag, demo::base_config(), true)?;
    demo::give_a_secret(&mut loaded.config);
    demo::public_url_follows_listen(&mut loaded.config.server);
    let shutdown = Shutdown::default();
    shutdown.on_signals();
    let whoami = demo::start_whoami(shutdown.clone()).await.map_err(|e| Failure::Runtime(e.to_string()))?;
    let mut upstream = loaded.config.upstream.first().cloned().unwrap_or_default();
    upstream.url = url::Url::parse(&format!("http://{whoami}")).map_err(|e| Failure::Runtime(e.to_string()))?;
    upstream.host = None;
    loaded.config.upstream = vec![upstream];
    let user = demo::demo_user().map_err(start_error)?;
    let listen = loaded.config.server.listen;
    let public = loaded.config.server.public_url.clone();
    let app = app::build(loaded.config, Some(user.users)).await.map_err(start_error)?;
    println!();
    println!("  Portcullis demo");
    println!("  open      {public}  (gateway on {listen}, whoami upstream on {whoami})");
    println!("  user      {}", user.name);
    println!("  password  {}", user.password);
    println!("  codes and alerts are e-mailed to this console");
    println!();
    app::run(app, shutdown).await.map_err(start_error)
}

fn check_config(flag: Option<&Path>, open_files: bool) -> Result<(), Failure> {
    let loaded = config::load(flag, Config::default(), false)?;
    let mut problems = if open_files { app::preflight(&loaded.config) } else { Vec::new() };
    // The directory is asked as `serve` would ask it: the service account
    // binds and the user filter runs once.
    if open_files && loaded.config.auth.backend == config::UserBackend::Ldap {
        let ldap = &loaded.config.ldap;
        problems.extend(runtime()?.block_on(portcullis::auth::users::ldap::Directory::check(ldap)));
    }
    if !problems.is_empty() {
        return Err(config::ConfigError { file: loaded.file, problems }.into());
    }
    let source = loaded.file.as_ref().map_or("built-in defaults".to_string(), |p| p.display().to_string());
    for w in app::warnings(&loaded.config) {
        eprintln!("warning: {w}");
    }
    let text = toml::to_string_pretty(&loaded.config).map_err(|e| Failure::Runtime(e.to_string()))?;
    println!("# effective configuration (from {source} and PORTCULLIS_* variables; secrets redacted)");
    println!("{text}");
    let (url, domain) = (&loaded.config.server.public_url, loaded.config.session.cookie_domain.as_deref());
    match portcullis::auth::passkey::relying_party(url, domain) {
        Ok((rp_id, origin)) => {
            println!(
                "# passkeys: relying party ID \"{rp_id}\", accepted origin {}",
                origin.as_str().trim_end_matches('/')
            );
            if url.scheme() != "https" && rp_id != "localhost" {
                println!("# passkeys: browsers offer them only over https (or on localhost); set an https public_url");
            }
        }
        Err(why) => println!("# {why}"),
    }
    Ok(())
}

fn read_password(prompt: &str) -> Result<String, Failure> {
    let pw = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt).map_err(|e| Failure::Runtime(e.to_string()))?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| Failure::Runtime(e.to_string()))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if pw.is_empty() {
        return Err(Failure::Usage("empty password".into()));
    }
    Ok(pw)
}

fn hash_password() -> Result<(), Failure> {
    let pw = read_password("Password: ")?;
    let hash = portcullis::auth::password::hash_password(&pw).map_err(|e| Failure::Runtime(e.to_string()))?;
    println!("{hash}");
    Ok(())
}

fn users_file_path(arg: &UsersFileArg) -> Result<PathBuf, Failure> {
    if let Some(f) = &arg.users_file {
        return Ok(f.clone());
    }
    let loaded = config::load(arg.config.config.as_deref(), Config::default(), true)?;
    if loaded.config.auth.backend == config::UserBackend::Ldap {
        return Err(Failure::Usage(
            "auth.backend is \"ldap\": users and their passwords live in the directory, which Portcullis only \
             reads; add, change or disable them there (or pass --users-file to edit a users file anyway)"
                .into(),
        ));
    }
    Ok(loaded.config.auth.users_file)
}

fn edit_error(e: EditError) -> Failure {
    match e {
        EditError::Io(m) => Failure::Runtime(m),
        other => Failure::Usage(other.to_string()),
    }
}

/// The users file's entries, or a usage error naming the file.
fn read_users(path: &Path) -> Result<UsersFile, Failure> {
    UsersFile::read(path).map_err(|e| match e {
        users::UsersError::Io { .. } => Failure::Runtime(e.to_string()),
        users::UsersError::Invalid { .. } => Failure::Usage(e.to_string()),
    })
}

/// The entry of `name`, or the error every `user` command gives for a name
/// the file does not have.
fn existing<'a>(file: &'a UsersFile, name: &str, path: &Path) -> Result<&'a UserEntry, Failure> {
    file.users.get(name).ok_or_else(|| Failure::Usage(format!("NAME: no user {name:?} in {}", path.display())))
}

/// Reads a new password for `name` as `args` say, refuses a weak one, and
/// returns its argon2id hash.
fn new_password(name: &str, email: &str, args: &PasswordArgs) -> Result<String, Failure> {
    let pw = if args.stdin || !std::io::stdin().is_terminal() {
        read_line_password()?
    } else {
        let first = rpassword::prompt_password(format!("New password for {name}: "))
            .map_err(|e| Failure::Runtime(e.to_string()))?;
        let again = rpassword::prompt_password("Again: ").map_err(|e| Failure::Runtime(e.to_string()))?;
        if first != again {
            return Err(Failure::Usage("the two passwords differ; nothing was changed".into()));
        }
        first
    };
    if pw.is_empty() {
        return Err(Failure::Usage("empty password".into()));
    }
    let strength = portcullis::auth::password::strength(&pw, &[name, email]);
    if strength.is_weak() && !args.allow_weak {
        return Err(Failure::Usage(format!(
            "the password is too weak (strength {} of 4; at least {} is needed). {}\n\
             Choose a longer one (a few unrelated words work well), or pass --allow-weak.",
            strength.score,
            portcullis::auth::password::MIN_STRENGTH,
            strength.advice
        )));
    }
    portcullis::auth::password::hash_password(&pw).map_err(|e| Failure::Runtime(e.to_string()))
}

/// The first line of stdin, as a password.
fn read_line_password() -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| Failure::Runtime(e.to_string()))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn user_command(cmd: UserCommand) -> Result<(), Failure> {
    match cmd {
        UserCommand::Add { name, email, display_name, groups, password, file } => {
            if !users::valid_username(&name) {
                return Err(Failure::Usage(format!("NAME {name:?}: use 1-64 of A-Z a-z 0-9 . _ @ + -")));
            }
            if !email.contains('@') {
                return Err(Failure::Usage(format!("--email {email:?}: not an e-mail address")));
            }
            let path = users_file_path(&file)?;
            // Checked before the password prompt (the writer checks again
            // under its lock), so a typo costs no typing.
            let existing = read_users(&path)?;
            if existing.users.contains_key(&name) {
                return Err(Failure::Usage(format!("NAME: user {name:?} already exists in {}", path.display())));
            }
            if let Some(other) = existing.email_owner(&email) {
                return Err(Failure::Usage(format!(
                    "--email {email:?}: already used by user {other:?} in {}",
                    path.display()
                )));
            }
            let hash = new_password(&name, &email, &password)?;
            let entry = UserEntry { email, display_name, password: hash, groups, disabled: false };
            UsersFileWriter::new(&path).add(&name, &entry).map_err(edit_error)?;
            println!("Added user {} to {}", terminal_safe(&name), path.display());
            Ok(())
        }
        UserCommand::Passwd { name, password, file } => {
            let path = users_file_path(&file)?;
            let email = existing(&read_users(&path)?, &name, &path)?.email.clone();
            let hash = new_password(&name, &email, &password)?;
            UsersFileWriter::new(&path).set_password(&name, &hash).map_err(edit_error)?;
            println!("Changed the password of user {} in {}", terminal_safe(&name), path.display());
            Ok(())
        }
        UserCommand::Disable { name, file } => set_disabled(&name, true, &file),
        UserCommand::Enable { name, file } => set_disabled(&name, false, &file),
        UserCommand::List { file } => {
            let path = users_file_path(&file)?;
            let listed = read_users(&path)?;
            let names: Vec<String> = listed.users.keys().cloned().collect();
            let states = runtime().and_then(|rt| rt.block_on(account_states(&file, &path, &names)));
            let states = states
                .inspect_err(|e| {
                    let (Failure::Usage(why) | Failure::Runtime(why)) = e;
                    eprintln!("warning: second factors and locks are not shown: {}", why.trim_end());
                })
                .ok();
            print!("{}", user_table(&listed, states.as_ref()));
            Ok(())
        }
        UserCommand::Remove { name, file_only, store_only, file } => {
            runtime().and_then(|rt| rt.block_on(remove_user(&name, file_only, store_only, &file)))
        }
    }
}

fn set_disabled(name: &str, disabled: bool, file: &UsersFileArg) -> Result<(), Failure> {
    let path = users_file_path(file)?;
    existing(&read_users(&path)?, name, &path)?;
    let changed = UsersFileWriter::new(&path).set_disabled(name, disabled).map_err(edit_error)?;
    let (name, state) = (terminal_safe(name), if disabled { "disabled" } else { "enabled" });
    match changed {
        true => println!("{} user {name} in {}", if disabled { "Disabled" } else { "Enabled" }, path.display()),
        false => println!("User {name} was already {state} in {}", path.display()),
    }
    Ok(())
}

async fn remove_user(name: &str, file_only: bool, store_only: bool, file: &UsersFileArg) -> Result<(), Failure> {
    let path = users_file_path(file)?;
    let listed = read_users(&path)?;
    let shown = terminal_safe(name);
    match (listed.users.contains_key(name), store_only) {
        (false, false) => return Err(Failure::Usage(format!("NAME: no user {name:?} in {}", path.display()))),
        (true, true) => {
            return Err(Failure::Usage(format!(
                "--store-only: user {name:?} is still in {}; remove them without --store-only",
                path.display()
            )));
        }
        _ => {}
    }
    // The store is found before the file changes: if it cannot be reached,
    // nothing is changed.
    let reach = match file_only {
        true => None,
        false => {
            let config = config::load(file.config.config.as_deref(), Config::default(), false)
                .map_err(|e| Failure::Usage(format!("{e}\nnothing was changed")))?
                .config;
            let found = Reach::find(&config, &path, Fallback::StateFile).await;
            Some(found.map_err(|e| Failure::Runtime(format!("{e}\nnothing was changed")))?)
        }
    };
    if !store_only {
        UsersFileWriter::new(&path).remove(name).map_err(edit_error)?;
        println!("Removed user {shown} from {}", path.display());
    }
    if let Some(reach) = reach {
        let body = serde_json::json!({"name": name});
        let done: Forgotten =
            reach.act("users/forget", body, async |a, by| a.forget_user(name, by).await).await.map_err(|e| {
                Failure::Runtime(format!(
                    "{e}\nthe sessions and second factors of {shown} are still in the store: \
                 once it answers, run `portcullis user remove {shown} --store-only`"
                ))
            })?;
        // Not how many sessions: a running gateway may have ended them on
        // seeing the file change, just before.
        println!(
            "Ended the sessions of {shown} and forgot their second factors: {}",
            portcullis::auth::operator::describe_factors(&done.factors)
        );
    }
    Ok(())
}

/// What the store holds of `names`, by name.
async fn account_states(
    file: &UsersFileArg,
    path: &Path,
    names: &[String],
) -> Result<HashMap<String, AccountState>, Failure> {
    let config = config::load(file.config.config.as_deref(), Config::default(), false)?.config;
    let reach = Reach::find(&config, path, Fallback::StateFile).await.map_err(runtime_failure)?;
    let mut out = HashMap::new();
    for batch in names.chunks(portcullis::admin::MAX_NAMES) {
        let body = serde_json::json!({"names": batch});
        let states: Vec<AccountState> = reach
            .act("users/state", body, async |a, _| a.account_states(batch).await)
            .await
            .map_err(runtime_failure)?;
        out.extend(states.into_iter().map(|s| (s.name.clone(), s)));
    }
    Ok(out)
}

fn runtime_failure(e: impl std::fmt::Display) -> Failure {
    Failure::Runtime(e.to_string())
}

/// `user list`'s table: a header row, then a row per user, in columns.
/// Every cell is one word (lists joined by commas, `-` for none), so the
/// output splits on whitespace; names and addresses are escaped for the terminal.
fn user_table(file: &UsersFile, states: Option<&HashMap<String, AccountState>>) -> String {
    let mut rows = vec![["NAME", "EMAIL", "GROUPS", "STATE", "FACTORS", "LOCKED"].map(String::from).to_vec()];
    for (name, u) in &file.users {
        let groups = if u.groups.is_empty() { "-".to_owned() } else { terminal_safe(&u.groups.join(",")).into_owned() };
        let state = if u.disabled { "disabled" } else { "active" };
        let (factors, locked) = match states.map(|s| s.get(name)) {
            None | Some(None) => ("?".to_owned(), "?".to_owned()),
            Some(Some(s)) => (factor_list(&s.factors), s.locked_for.map_or("no".to_owned(), short_duration)),
        };
        let (name, email) = (terminal_safe(name).into_owned(), terminal_safe(&u.email).into_owned());
        rows.push(vec![name, email, groups, state.into(), factors, locked]);
    }
    let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A user's second factors as one word: `email,app,passkey,backup:8`, or `none`.
fn factor_list(f: &portcullis::store::UserState) -> String {
    let mut parts: Vec<String> = Vec::new();
    if f.otp_enabled {
        parts.push("email".into());
    }
    if f.totp_enabled {
        parts.push("app".into());
    }
    if f.passkey_enabled {
        parts.push("passkey".into());
    }
    if f.backup_codes_left > 0 {
        parts.push(format!("backup:{}", f.backup_codes_left));
    }
    if parts.is_empty() { "none".into() } else { parts.join(",") }
}

/// `45s`, `14m`, `2h`: rounded up, so a lock is never shown shorter than it is.
fn short_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..7200 => format!("{}m", secs.div_ceil(60)),
        _ => format!("{}h", secs.div_ceil(3600)),
    }
}

/// An operator action: asked of the running gateway through its admin
/// endpoint; done on the store directly when no gateway listens and the
/// store is shared (Redis), where the result is the same.
async fn operator_action(
    flag: Option<&Path>,
    action: &str,
    body: serde_json::Value,
    direct: impl AsyncFnOnce(&OperatorActions, &Operator) -> Result<serde_json::Value, store::StoreError>,
) -> Result<serde_json::Value, Failure> {
    let config = config::load(flag, Config::default(), false)?.config;
    let reach = Reach::find(&config, &config.auth.users_file, Fallback::SharedStore).await.map_err(runtime_failure)?;
    reach.act(action, body, direct).await.map_err(runtime_failure)
}

fn answer<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| Failure::Runtime(format!("unexpected answer from the gateway: {e}")))
}

async fn list_tokens(name: &str, flag: Option<&Path>) -> Result<(), Failure> {
    let body = serde_json::json!({"name": name});
    let v = operator_action(flag, "tokens/list", body, async |a, _| a.tokens(name).await.map(|r| serde_json::json!(r)))
        .await?;
    let list: TokensOf = answer(v)?;
    if list.tokens.is_empty() {
        println!("{} has no access tokens", list.account);
        return Ok(());
    }
    let time = |t: u64| portcullis::portal::format_time(t);
    println!("{:<22}  {:<24}  {:<20}  {:<20}  LAST USED", "ID", "NAME", "CREATED", "EXPIRES");
    for t in list.tokens {
        let r = t.record;
        let used = r.last_used.map_or_else(|| "never".to_owned(), time);
        println!("{:<22}  {:<24}  {:<20}  {:<20}  {used}", t.id, r.name, time(r.created), time(r.expires_at));
    }
    Ok(())
}

async fn revoke_tokens(name: &str, id: Option<&str>, flag: Option<&Path>) -> Result<(), Failure> {
    let body = serde_json::json!({"name": name, "id": id});
    let v = operator_action(flag, "tokens/revoke", body, async |a, by| {
        a.revoke_tokens(name, id, by).await.map(|r| serde_json::json!(r))
    })
    .await?;
    let done: TokensRevoked = answer(v)?;
    match (id, done.revoked) {
        (Some(id), 0) => return Err(Failure::Usage(format!("ID: {} has no token {id}", done.account))),
        (Some(id), _) => println!("Revoked token {id} of {}", done.account),
        (None, n) => println!("Revoked {n} access token(s) of {}", done.account),
    }
    Ok(())
}

async fn unlock(name: Option<&str>, ip: Option<std::net::IpAddr>, flag: Option<&Path>) -> Result<(), Failure> {
    if let Some(ip) = ip {
        let body = serde_json::json!({"ip": ip.to_string()});
        let v = operator_action(flag, "unlock-ip", body, async |a, by| {
            a.unlock_ip(ip, by).await.map(|r| serde_json::json!(r))
        })
        .await?;
        let done: IpUnlocked = answer(v)?;
        println!("{}: {} rate windows cleared", done.ip, done.windows_cleared);
        return Ok(());
    }
    let name = name.ok_or_else(|| Failure::Usage("NAME or --ip ADDR is required".into()))?;
    let body = serde_json::json!({"name": name});
    let v = operator_action(flag, "unlock", body, async |a, by| a.unlock(name, by).await.map(|r| serde_json::json!(r)))
        .await?;
    let done: Unlocked = answer(v)?;
    let state = if done.was_locked { "unlocked" } else { "was not locked (failure count cleared)" };
    println!("{}: {state}", terminal_safe(name));
    Ok(())
}

async fn revoke_sessions(name: &str, flag: Option<&Path>) -> Result<(), Failure> {
    let body = serde_json::json!({"name": name});
    let v = operator_action(flag, "sessions/revoke", body, async |a, by| {
        a.revoke_sessions(name, by).await.map(|r| serde_json::json!(r))
    })
    .await?;
    let done: Revoked = answer(v)?;
    println!("{}: {} session(s) revoked", terminal_safe(name), done.revoked);
    Ok(())
}

/// Records the command line asks the gateway for at a time: a page must fit
/// the admin endpoint's answer (64 KiB), even of records at their longest
/// (896 bytes of name, user agent and details, each control character six
/// bytes as JSON).
const AUDIT_PAGE: usize = 10;

async fn audit(q: store::AuditQuery, json: bool, flag: Option<&Path>) -> Result<(), Failure> {
    let config = config::load(flag, Config::default(), false)?.config;
    let reach = Reach::find(&config, &config.auth.users_file, Fallback::SharedStore).await.map_err(runtime_failure)?;
    let mut records = Vec::new();
    let mut page = store::AuditQuery { limit: q.limit.min(AUDIT_PAGE), ..q.clone() };
    // Each page looks at a bounded number of records; a search that matches
    // little goes on from where the last one stopped.
    for _ in 0..1000 {
        if records.len() >= q.limit {
            break;
        }
        page.limit = (q.limit - records.len()).min(AUDIT_PAGE);
        let body = serde_json::to_value(&page).map_err(runtime_failure)?;
        let found: store::AuditPage =
            reach.act("audit", body, async |a, _| a.search_audit(&page).await).await.map_err(runtime_failure)?;
        records.extend(found.records.into_iter().map(|(_, r)| r));
        match found.next {
            Some(c) => page.before = Some(c),
            None => break,
        }
    }
    if !json && !records.is_empty() {
        println!(
            "{:<20} {:<15} {:<22} {:<16} {:<12} {:<15} DETAILS",
            "TIME (UTC)", "KIND", "EVENT", "USER", "BY", "ADDRESS"
        );
    }
    for r in &records {
        if json {
            println!("{}", serde_json::to_string(r).map_err(|e| Failure::Runtime(e.to_string()))?);
        } else {
            // Names and details are as clients typed them: escaped for the terminal.
            println!(
                "{:<20} {:<15} {:<22} {:<16} {:<12} {:<15} {}",
                portcullis::portal::format_time(r.time),
                r.kind.as_str(),
                terminal_safe(&r.event),
                terminal_safe(&r.username),
                terminal_safe(r.actor.as_deref().unwrap_or("-")),
                terminal_safe(&r.ip),
                terminal_safe(&r.details)
            );
        }
    }
    if records.is_empty() && !json {
        println!("no audit records");
    }
    Ok(())
}

fn init(
    dir: PathBuf,
    upstream: &str,
    public_url: &str,
    listen: Option<&str>,
    metrics_listen: &str,
) -> Result<(), Failure> {
    use portcullis::init::{self, InitError};
    let usage = |e: InitError| Failure::Usage(e.to_string());
    let request = init::InitRequest {
        dir,
        upstream: init::parse_url("--upstream", upstream).map_err(usage)?,
        public_url: init::parse_url("--public-url", public_url).map_err(usage)?,
        listen: listen.map(|l| init::parse_address("--listen", l)).transpose().map_err(usage)?,
        metrics_listen: init::parse_address("--metrics-listen", metrics_listen).map_err(usage)?,
    };
    let done = init::init(&request).map_err(|e| match e {
        InitError::Io { .. } => Failure::Runtime(e.to_string()),
        other => usage(other),
    })?;
    print!("{}", init::next_steps(&done));
    Ok(())
}

fn healthcheck(url: Option<String>, timeout: u64, flag: Option<&Path>) -> Result<(), Failure> {
    use portcullis::healthcheck;
    let url = match url {
        Some(u) => u,
        // The probe needs only the listener and prefix: the secret is not required.
        None => healthcheck::local_healthz_url(&config::load(flag, Config::default(), true)?.config)
            .map_err(|e| Failure::Usage(e.to_string()))?,
    };
    healthcheck::probe(&url, std::time::Duration::from_secs(timeout)).map_err(|e| Failure::Runtime(e.to_string()))
}
