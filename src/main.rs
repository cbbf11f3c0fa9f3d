//! The `portcullis` command line: parsing and wiring only.
//! Exit codes: 0 ok, 1 usage or configuration error, 2 runtime failure.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use portcullis::app;
use std::sync::Arc;

use portcullis::auth::operator::{IpUnlocked, Operator, OperatorActions, Revoked, Unlocked};
use portcullis::auth::users::{self, EditError, UserEntry, Users, UsersFile, UsersFileWriter};
use portcullis::config::{self, Config};
use portcullis::logging;
use portcullis::logging::terminal_safe;
use portcullis::server::Shutdown;
use portcullis::{demo, store};

/// jemalloc rather than the system allocator: with its background thread it
/// gives the memory of a burst (thousands of connections) back to the system
/// within seconds, where glibc and mimalloc keep it, and its allocations cost
/// less on the hot path; bench/README.md has the figures.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Print recent login attempts and security events from the configured store.
    Audit {
        /// Only this user's records (else the global trail).
        #[arg(long)]
        user: Option<String>,
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
    /// Add a user. The password is asked for without echo on a terminal;
    /// without a terminal, the first line of stdin is the password
    /// (`printf '%s\n' "$PW" | portcullis user add ...`). A weak password
    /// (zxcvbn score below 3 of 4) is refused unless --allow-weak is given.
    Add {
        name: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Accept a password the strength estimate calls weak.
        #[arg(long)]
        allow_weak: bool,
        #[command(flatten)]
        file: UsersFileArg,
    },
    /// List users.
    List {
        #[command(flatten)]
        file: UsersFileArg,
    },
    /// Disable a user: they can no longer log in, and a running gateway ends
    /// their sessions within about a second (it watches the users file).
    Disable {
        name: String,
        #[command(flatten)]
        file: UsersFileArg,
    },
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
        Command::Audit { user, limit, json, config } => {
            runtime().and_then(|rt| rt.block_on(audit(user.as_deref(), limit, json, config.config.as_deref())))
        }
        Command::Sessions(SessionsCommand::Revoke { name, config }) => {
            runtime().and_then(|rt| rt.block_on(revoke_sessions(&name, config.config.as_deref())))
        }
        Command::Init { dir, upstream, public_url } => init(dir, &upstream, &public_url),
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
    let problems = if open_files { app::preflight(&loaded.config) } else { Vec::new() };
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

fn users_file_path(arg: UsersFileArg) -> Result<PathBuf, Failure> {
    if let Some(f) = arg.users_file {
        return Ok(f);
    }
    let loaded = config::load(arg.config.config.as_deref(), Config::default(), true)?;
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

fn user_command(cmd: UserCommand) -> Result<(), Failure> {
    match cmd {
        UserCommand::Add { name, email, display_name, groups, allow_weak, file: users_file } => {
            if !users::valid_username(&name) {
                return Err(Failure::Usage(format!("NAME {name:?}: use 1-64 of A-Z a-z 0-9 . _ @ + -")));
            }
            if !email.contains('@') {
                return Err(Failure::Usage(format!("--email {email:?}: not an e-mail address")));
            }
            let path = users_file_path(users_file)?;
            // Checked before the password prompt (the writer checks again
            // under its lock), so a typo costs no typing.
            let file = read_users(&path)?;
            if file.users.contains_key(&name) {
                return Err(Failure::Usage(format!("NAME: user {name:?} already exists in {}", path.display())));
            }
            // Checked here, before the password prompt, so the message is about
            // the user being added (the file check would blame the other entry).
            if let Some(other) = file.email_owner(&email) {
                return Err(Failure::Usage(format!(
                    "--email {email:?}: already used by user {other:?} in {}",
                    path.display()
                )));
            }
            let pw = read_password(&format!("Password for {name}: "))?;
            let strength = portcullis::auth::password::strength(&pw, &[&name, &email]);
            if strength.is_weak() && !allow_weak {
                return Err(Failure::Usage(format!(
                    "the password is too weak (strength {} of 4; at least {} is needed). {}\n\
                     Choose a longer one (a few unrelated words work well), or pass --allow-weak.",
                    strength.score,
                    portcullis::auth::password::MIN_STRENGTH,
                    strength.advice
                )));
            }
            let password =
                portcullis::auth::password::hash_password(&pw).map_err(|e| Failure::Runtime(e.to_string()))?;
            let entry = UserEntry { email, display_name, password, groups, disabled: false };
            UsersFileWriter::new(&path).add(&name, &entry).map_err(edit_error)?;
            println!("Added user {} to {}", terminal_safe(&name), path.display());
            Ok(())
        }
        UserCommand::List { file: users_file } => {
            let path = users_file_path(users_file)?;
            let file = read_users(&path)?;
            for (name, u) in &file.users {
                let state = if u.disabled { "disabled" } else { "active" };
                let (name, email, groups) = (terminal_safe(name), terminal_safe(&u.email), u.groups.join(","));
                println!("{name}\t{email}\t{}\t{state}", terminal_safe(&groups));
            }
            Ok(())
        }
        UserCommand::Disable { name, file: users_file } => {
            let path = users_file_path(users_file)?;
            if !read_users(&path)?.users.contains_key(&name) {
                return Err(Failure::Usage(format!("NAME: no user {name:?} in {}", path.display())));
            }
            UsersFileWriter::new(&path).set_disabled(&name, true).map_err(edit_error)?;
            println!("Disabled user {} in {}", terminal_safe(&name), path.display());
            Ok(())
        }
    }
}

async fn open_store(flag: Option<&Path>) -> Result<store::Store, Failure> {
    let loaded = config::load(flag, Config::default(), true)?;
    open_shared_store(&loaded.config).await
}

/// The configured store, when it is one the command line can share with the
/// gateway (not the memory store, which lives inside the gateway process).
async fn open_shared_store(config: &Config) -> Result<store::Store, Failure> {
    if config.store.url.expose().starts_with("memory:") {
        return Err(Failure::Usage(
            "store.url: the memory store lives inside the running gateway process; \
             this command needs a shared store (redis://...)"
                .into(),
        ));
    }
    store::Store::open(&config.store).await.map_err(|e| Failure::Runtime(e.to_string()))
}

/// An operator action: asked of the running gateway through its admin
/// endpoint; done on the store directly when no gateway answers and the
/// store is shared (Redis), where the result is the same.
async fn operator_action(
    flag: Option<&Path>,
    action: &str,
    body: serde_json::Value,
    direct: impl AsyncFnOnce(&OperatorActions, &Operator) -> Result<serde_json::Value, store::StoreError>,
) -> Result<serde_json::Value, Failure> {
    let config = config::load(flag, Config::default(), false)?.config;
    let secret = config.auth.secret.expose().as_bytes();
    let unreachable = match portcullis::admin::local_address(config.server.metrics_listen) {
        Some(addr) => match portcullis::admin::call(addr, secret, action, &body).await {
            Ok(answer) => return Ok(answer),
            Err(e @ portcullis::admin::CallError::Refused { .. }) => return Err(Failure::Runtime(e.to_string())),
            Err(e) => e.to_string(),
        },
        None => "server.metrics_listen is off or on port 0, so the gateway's admin endpoint cannot be found".into(),
    };
    if config.store.url.expose().starts_with("memory:") {
        return Err(Failure::Runtime(format!(
            "{unreachable}; with store.url = memory:// only the running gateway holds the state"
        )));
    }
    let store = open_shared_store(&config).await?;
    let users = Users::open(&config.auth.users_file).unwrap_or_else(|e| {
        eprintln!("warning: {e}; names are taken as account names");
        Users::fixed(&config.auth.users_file, Default::default())
    });
    let audit = portcullis::audit::Audit::new(store.clone(), portcullis::clock::Clock::system());
    let actions = OperatorActions::new(store, Arc::new(users), audit, secret.into());
    let by = Operator { ip: "-".into(), agent: "portcullis command line (store)".into() };
    direct(&actions, &by).await.map_err(|e| Failure::Runtime(e.to_string()))
}

fn answer<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| Failure::Runtime(format!("unexpected answer from the gateway: {e}")))
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

async fn audit(user: Option<&str>, limit: usize, json: bool, flag: Option<&Path>) -> Result<(), Failure> {
    let store = open_store(flag).await?;
    let records = store.recent_audit(user, limit).await.map_err(|e| Failure::Runtime(e.to_string()))?;
    for r in &records {
        if json {
            println!("{}", serde_json::to_string(r).map_err(|e| Failure::Runtime(e.to_string()))?);
        } else {
            // Names and details are as clients typed them: escaped for the terminal.
            println!(
                "{}  {:<15} {:<22} {:<16} {:<15} {}",
                portcullis::portal::format_time(r.time),
                r.kind.as_str(),
                terminal_safe(&r.event),
                terminal_safe(&r.username),
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

fn init(dir: PathBuf, upstream: &str, public_url: &str) -> Result<(), Failure> {
    use portcullis::init::{self, InitError};
    let usage = |e: InitError| Failure::Usage(e.to_string());
    let request = init::InitRequest {
        dir,
        upstream: init::parse_url("--upstream", upstream).map_err(usage)?,
        public_url: init::parse_url("--public-url", public_url).map_err(usage)?,
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
