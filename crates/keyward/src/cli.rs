//! Command-line interface.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::remote;
use keyward_app::{
    App, AppConfig, BootstrapOutcome, BootstrapRequest, HashParams, KeyRing, PasswordHasher, SystemClock,
};
use keyward_core::secret::Secret;
use tracing_subscriber::EnvFilter;

/// Keyward: a self-hosted identity service with Entra's delegated MFA administration and a
/// Microsoft Graph-compatible API.
#[derive(Debug, Parser)]
#[command(name = "keyward", version, about, long_about = None, propagate_version = true)]
#[command(after_help = remote::TOP_HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    server: remote::ServerArg,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (creates the tenant and its first Global Administrator on first start).
    Serve(Box<ServeArgs>),
    /// Sign in to a Keyward server (device code: open the address shown and enter the code).
    Login(remote::LoginArgs),
    /// Sign out of a server (or all) and revoke the session at the server.
    #[command(after_help = "Examples:\n  keyward logout\n  keyward logout --server dev\n  keyward logout --all")]
    Logout {
        /// Every server.
        #[arg(long)]
        all: bool,
    },
    /// Show who you are signed in as: user, tenant, roles, and when the session ends.
    #[command(after_help = "Example:\n  keyward whoami --json")]
    Whoami {
        #[command(flatten)]
        output: remote::output::OutputArgs,
    },
    /// Users: list, show, create, update, disable, enable, delete.
    Users {
        #[command(subcommand)]
        command: remote::UsersCommand,
    },
    /// Groups: list, show, create, delete, members.
    Groups {
        #[command(subcommand)]
        command: remote::GroupsCommand,
    },
    /// Directory roles: definitions, assignments, assign and unassign (one user or a CSV).
    Roles {
        #[command(subcommand)]
        command: remote::RolesCommand,
    },
    /// Users' authentication methods: the service desk's operations (one user or a CSV).
    Mfa {
        #[command(subcommand)]
        command: remote::MfaCommand,
    },
    /// Sign-in logs.
    Signins {
        #[command(subcommand)]
        command: remote::SigninsCommand,
    },
    /// The notification outbox: what was e-mailed to users and administrators, and what waits.
    Notifications {
        #[command(subcommand)]
        command: remote::NotificationsCommand,
    },
    /// Print a shell completion script: keyward completions bash > /etc/bash_completion.d/keyward
    #[command(
        after_help = "Examples:\n  keyward completions bash > ~/.local/share/bash-completion/completions/keyward\n  \
        keyward completions zsh > \"${fpath[1]}/_keyward\"\n  keyward completions fish > ~/.config/fish/completions/keyward.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from the same definitions as --help.
    #[command(after_help = "Example:\n  keyward man > keyward.1 && man ./keyward.1")]
    Man,
    /// Print an access token for a user, for scripts and tests (signed with the server's keys).
    #[command(
        after_help = "Example:\n  TOKEN=$(keyward token --upn admin@contoso.com --data-dir /var/lib/keyward)\n  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/v1.0/me"
    )]
    Token(TokenArgs),
    /// Manage token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Verify the audit log's hash chain, or export the audit log for a SIEM.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Operator tasks that need the server's data (the database and the key-encryption key).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Issue a fresh Temporary Access Pass for a Global Administrator who cannot sign in (lost
    /// pass, lost phone, nobody left to help): valid one hour, usable until a method is
    /// registered; clears the account's lockout. Audited as "Admin registered security info" by
    /// "Keyward operator".
    #[command(after_help = "Example:\n  keyward admin recover --upn admin@contoso.com --data-dir /var/lib/keyward")]
    Recover {
        /// User principal name of an enabled Global Administrator.
        #[arg(long, value_name = "UPN")]
        upn: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// List audit records from a server you are logged in to (keyward login), newest first.
    List(remote::AuditListArgs),
    /// Check every tenant's audit hash chain. Names the first record that was changed, removed or
    /// inserted out of order and exits with status 1; prints each chain's head on success (keep it:
    /// a later head must extend it).
    #[command(after_help = "Example:\n  keyward audit verify --data-dir /var/lib/keyward")]
    Verify(StoreArgs),
    /// Write audit records in Graph's directoryAudit shape, oldest first, to standard output or --output.
    #[command(
        after_help = "Examples:\n  keyward audit export --since 2026-11-01 --output november.jsonl\n  keyward audit export --format csv --since 2026-11-01 --until 2026-11-30 > november.csv"
    )]
    Export(ExportArgs),
    /// Show or set how many days the audit log keeps records (default 30); the server removes older
    /// records hourly and keeps the chain verifiable through a signed checkpoint.
    #[command(after_help = "Examples:\n  keyward audit retention\n  keyward audit retention --days 90 --apply")]
    Retention {
        /// New retention in days (1 to 3650); without it, the current setting is shown.
        #[arg(long, value_name = "DAYS")]
        days: Option<i64>,
        /// Remove records past the retention now instead of waiting for the server's hourly run.
        #[arg(long)]
        apply: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Only records at or after this time: RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01, midnight UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<time::OffsetDateTime>,
    /// Only records at or before this time: RFC 3339, or a date (the whole day is included).
    #[arg(long, value_name = "TIME", value_parser = parse_until)]
    until: Option<time::OffsetDateTime>,
    /// jsonl: one directoryAudit JSON object per line; csv: a header row, then one row per record
    /// (targetResources and additionalDetails as JSON text).
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    format: ExportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List signing keys and their state.
    #[command(after_help = "Example:\n  keyward keys list --data-dir /var/lib/keyward")]
    List(StoreArgs),
    /// Generate a new signing key and make it active; older keys keep verifying until retired.
    #[command(after_help = "Example:\n  keyward keys rotate --data-dir /var/lib/keyward")]
    Rotate(StoreArgs),
    /// Retire a key: it leaves the JWKS and tokens it signed stop verifying.
    #[command(after_help = "Example:\n  keyward keys retire 3f2a9c… --data-dir /var/lib/keyward")]
    Retire {
        /// The key id (`kid`) to retire.
        kid: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where the data lives.
#[derive(Debug, Clone, Args)]
struct StoreArgs {
    /// Directory for the SQLite database and the key-encryption key (keyward.key).
    #[arg(long, env = "KEYWARD_DATA_DIR", default_value = "./keyward-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB [default: SQLite in the data dir].
    #[arg(long, env = "KEYWARD_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  keyward serve --demo\n  keyward serve --listen 0.0.0.0:8443 --public-url https://id.contoso.com --tls-cert cert.pem --tls-key key.pem\n  \
    KEYWARD_DATABASE_URL=postgres://keyward@db/keyward keyward serve\n\n\
    Environment only (kept off the command line, where other users could read it):\n  \
    KEYWARD_BOOTSTRAP_ADMIN_PASSWORD  first start only: the password of KEYWARD_BOOTSTRAP_ADMIN_UPN; without it a one-time\n\
    \x20                                   Temporary Access Pass is printed\n  \
    KEYWARD_MASTER_KEY                64 hex characters: the key-encryption key (default: keyward.key in the data dir)\n  \
    KEYWARD_LOG                       log filter, e.g. info or keyward=debug"
)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KEYWARD_LISTEN", default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// External base URL used in issuers and links [default: derived from --listen].
    #[arg(long, env = "KEYWARD_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// PEM certificate chain; with --tls-key, serve HTTPS.
    #[arg(long, env = "KEYWARD_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "KEYWARD_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Development only: serve HTTPS with a self-signed certificate for localhost and 127.0.0.1,
    /// created in the data directory on first use (dev-tls-cert.pem, dev-tls-key.pem); the public
    /// URL becomes https://localhost:PORT. Prints how to trust the certificate (MSAL and most
    /// clients need HTTPS).
    #[arg(long, env = "KEYWARD_DEV_TLS", conflicts_with_all = ["tls_cert", "tls_key"])]
    dev_tls: bool,
    /// Seed a demo tenant (administrators, users, a role-assignable group, an administrative unit)
    /// and print the sign-in names and passwords.
    #[arg(long)]
    demo: bool,
    /// Log format.
    #[arg(long, env = "KEYWARD_LOG_FORMAT", value_enum, default_value = "human")]
    log_format: LogFormat,
    /// First start only: user principal name of the first Global Administrator; its domain becomes
    /// the tenant's verified domain.
    #[arg(long, env = "KEYWARD_BOOTSTRAP_ADMIN_UPN", value_name = "UPN")]
    bootstrap_admin_upn: Option<String>,
    /// First start only: the tenant's domain when no bootstrap UPN is given (admin@DOMAIN is created).
    #[arg(long, env = "KEYWARD_TENANT_DOMAIN", default_value = "keyward.test", value_name = "DOMAIN")]
    tenant_domain: String,
    /// Allow the resource-owner password grant at the token endpoint (off by default, as in
    /// Entra; a user who must use MFA is refused with AADSTS50076 either way).
    #[arg(long, env = "KEYWARD_ALLOW_PASSWORD_GRANT", value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    allow_password_grant: bool,
    /// Requests per minute one client address may send to the sign-in pages, the token endpoint
    /// and the device-code endpoint, each, before 429 with Retry-After (0: no limit). Behind a
    /// proxy every client has the proxy's address: raise it or turn it off there.
    #[arg(long, env = "KEYWARD_RATE_LIMIT_PER_ADDRESS", value_name = "N", default_value_t = 300)]
    rate_limit_per_address: u32,
    /// Password and code attempts per minute against one account, from anywhere (0: no limit).
    #[arg(long, env = "KEYWARD_RATE_LIMIT_PER_ACCOUNT", value_name = "N", default_value_t = 30)]
    rate_limit_per_account: u32,
    /// PEM bundle of FIDO attestation root certificates (the `attestationRootCertificates` of the
    /// security keys you accept, from the FIDO Metadata Service): a passkey registers as "attested"
    /// when its packed attestation certificate (made for attestation, naming its model) chains to
    /// one, and only then while the methods policy enforces attestation (isAttestationEnforced).
    #[arg(long, env = "KEYWARD_FIDO_ROOTS", value_name = "PEM")]
    fido_roots: Option<PathBuf>,
    /// The SMTP relay that sends notifications (a user's security info changed, "This wasn't me"
    /// reports, agents at their limit): smtps://[user:password@]host[:465] for TLS,
    /// smtp://[user:password@]host:587?tls=required for STARTTLS, smtp://host:25 (no TLS) only
    /// for a relay on this host. Without it, notifications wait in the outbox
    /// (GET /beta/keyward/notifications) and are sent once a relay is set.
    #[arg(long, env = "KEYWARD_SMTP_URL", value_name = "URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// The sender of notifications (default: Keyward <no-reply@the public URL's host>).
    #[arg(long, env = "KEYWARD_SMTP_FROM", value_name = "ADDRESS")]
    smtp_from: Option<String>,
    /// A PEM root certificate the relay's TLS certificate may chain to, besides the public
    /// roots (a relay with a private CA).
    #[arg(long, env = "KEYWARD_SMTP_CA_FILE", value_name = "PEM")]
    smtp_ca_file: Option<PathBuf>,
    /// Seconds between the sender's looks at the outbox.
    #[arg(long, env = "KEYWARD_SMTP_POLL_SECONDS", value_name = "SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    smtp_poll_seconds: u64,
    /// Passwords that may wait for the hasher; more are answered 503 with Retry-After.
    #[arg(long, env = "KEYWARD_HASH_QUEUE_LIMIT", value_name = "N", default_value_t = 64)]
    hash_queue_limit: usize,
    /// Seconds a client may take to send a request's headers, and an HTTP/1.1 connection may
    /// stay idle between requests, before it is closed.
    #[arg(long, env = "KEYWARD_HEADER_READ_TIMEOUT", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout: u64,
    /// Minutes an admin portal session may go unused before the administrator signs in again.
    #[arg(long, env = "KEYWARD_PORTAL_IDLE_MINUTES", value_name = "MINUTES", default_value_t = 60,
          value_parser = clap::value_parser!(i64).range(1..=1440))]
    portal_idle_minutes: i64,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// User principal name of the user to issue the token for.
    #[arg(long, value_name = "UPN")]
    upn: String,
    #[command(flatten)]
    store: StoreArgs,
    /// The server's external base URL: the token's issuer is derived from it and must match the
    /// server's (give the same value as the server's --public-url, e.g. https://… for a TLS server).
    #[arg(long, env = "KEYWARD_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// The server's listen address, to derive the public URL when --public-url is not given.
    #[arg(long, env = "KEYWARD_LISTEN", default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Token lifetime in minutes.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=1440))]
    lifetime_minutes: u32,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs what it does (its lines gathered, `log_writer`); the other commands print
    // their result on standard output and log only warnings and errors, unless KEYWARD_LOG asks
    // for more.
    let (format, level, is_server) = match &cli.command {
        Command::Serve(args) => (args.log_format, "info,sqlx=warn", true),
        // The remote commands print their own messages; reqwest's warnings would only repeat them.
        Command::Login(_) | Command::Users { .. } | Command::Roles { .. } | Command::Mfa { .. } => {
            (LogFormat::Human, "error", false)
        }
        _ => (LogFormat::Human, "warn", false),
    };
    init_logging(format, level, is_server);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(it) => it,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let server = cli.server.server.clone();
    let server = server.as_deref();
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Login(args) => remote::login(args).await,
            Command::Logout { all } => remote::logout(server, all).await,
            Command::Whoami { output } => remote::whoami(server, &output).await,
            Command::Users { command } => remote::users(server, command).await,
            Command::Groups { command } => remote::groups(server, command).await,
            Command::Roles { command } => remote::roles(server, command).await,
            Command::Mfa { command } => remote::mfa(server, command).await,
            Command::Signins { command } => remote::signins(server, command).await,
            Command::Notifications { command } => remote::notifications(server, command).await,
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "keyward", &mut std::io::stdout());
                Ok(())
            }
            Command::Man => clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("cannot write the manual page"),
            Command::Admin { command: AdminCommand::Recover { upn, store } } => recover(&upn, &store).await,
            Command::Token(args) => token(args).await,
            Command::Keys { command } => keys(command).await,
            Command::Audit { command } => audit(command, server).await,
        }
    });
    // What the server logged before its end comes before the error that ended it.
    drop(runtime);
    crate::log_writer::LOG.write_waiting();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let failure = remote::Failure::of(&err);
            if !failure.message.is_empty() {
                remote::output::note(&format!("error: {}", failure.message));
            }
            ExitCode::from(failure.code)
        }
    }
}

/// Logs to standard error: the server through `log_writer` (a line a request, many a write), the
/// other commands a line a write.
fn init_logging(format: LogFormat, level: &str, is_server: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter = EnvFilter::try_from_env("KEYWARD_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let writer = if is_server {
        BoxMakeWriter::new(crate::log_writer::LOG.start())
    } else {
        BoxMakeWriter::new(std::io::stderr)
    };
    // Colour only on a terminal: a log file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_timer(crate::log_writer::LineTime)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    match format {
        LogFormat::Human => builder.event_format(crate::log_writer::LineFormat::default()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Writes a line to standard output (the console the operator reads).
fn say(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
}

fn public_url(explicit: Option<&str>, listen: SocketAddr, is_tls: bool) -> anyhow::Result<String> {
    if let Some(url) = explicit {
        let url = url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--public-url '{url}' must start with http:// or https://");
        }
        return Ok(url.to_owned());
    }
    let scheme = if is_tls { "https" } else { "http" };
    let host = match listen.ip() {
        ip if ip.is_unspecified() => "localhost".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Ok(format!("{scheme}://{host}:{}", listen.port()))
}

/// `--dev-tls`: the self-signed certificate for localhost in the data directory, created on first
/// use; prints how to trust it.
fn dev_certificate(data_dir: &Path) -> anyhow::Result<keyward_http::TlsFiles> {
    let cert = data_dir.join("dev-tls-cert.pem");
    let key = data_dir.join("dev-tls-key.pem");
    if !cert.is_file() || !key.is_file() {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        let generated = rcgen::generate_simple_self_signed(names).context("cannot create a development certificate")?;
        std::fs::write(&cert, generated.cert.pem()).with_context(|| format!("cannot write {}", cert.display()))?;
        let _ = std::fs::remove_file(&key);
        write_private(&key, &generated.signing_key.serialize_pem())?;
    }
    let path = cert.canonicalize().unwrap_or_else(|_| cert.clone());
    say(&format!(
        "Development HTTPS with a self-signed certificate for localhost: {path}\n  Trust it in the shell that \
         runs your client: export REQUESTS_CA_BUNDLE={path} SSL_CERT_FILE={path} (Python: MSAL, requests, \
         httpx), NODE_EXTRA_CA_CERTS={path} (Node.js); curl --cacert {path}. Never use it in production.",
        path = path.display()
    ));
    Ok(keyward_http::TlsFiles { cert, key })
}

/// Reads the key-encryption key from KEYWARD_MASTER_KEY or DATA_DIR/keyward.key, creating the file
/// (mode 0600) on first start.
fn master_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let parse = |text: &str, origin: &str| -> anyhow::Result<[u8; 32]> {
        let text = text.trim();
        if text.len() != 64 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("{origin} must hold 64 hexadecimal characters (a 256-bit key)");
        }
        let mut key = [0_u8; 32];
        for (idx, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[idx * 2..idx * 2 + 2], 16).context("hex")?;
        }
        Ok(key)
    };
    if let Ok(text) = std::env::var("KEYWARD_MASTER_KEY") {
        return parse(&text, "KEYWARD_MASTER_KEY");
    }
    let path = data_dir.join("keyward.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path.display().to_string()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0_u8; 32];
            getrandom_fill(&mut key)?;
            let text: String = key.iter().map(|b| format!("{b:02x}")).collect();
            write_private(&path, &format!("{text}\n"))?;
            tracing::info!(path = %path.display(), "created the key-encryption key; back it up with the database");
            Ok(key)
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub(crate) fn getrandom_fill(buf: &mut [u8]) -> anyhow::Result<()> {
    let mut file = std::fs::File::open("/dev/urandom").context("cannot open /dev/urandom")?;
    std::io::Read::read_exact(&mut file, buf).context("cannot read /dev/urandom")
}

/// Creates `path` (never replacing a file) readable by its owner only, with `text`, on disk.
#[cfg(unix)]
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

impl StoreArgs {
    /// The database URL: `--database-url`, or SQLite in the data directory.
    fn database_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        let path = self.data_dir.join("keyward.db");
        let path = path.to_str().filter(|it| !it.contains(['?', '#'])).with_context(|| {
            format!(
                "the data directory {} cannot be named in a SQLite URL (it holds '?', '#' or non-UTF-8); \
                 choose another --data-dir or give --database-url",
                self.data_dir.display()
            )
        })?;
        Ok(format!("sqlite://{path}"))
    }
}

async fn open_app_with(store_args: &StoreArgs, config: AppConfig) -> anyhow::Result<App> {
    let url = store_args.database_url()?;
    tracing::info!(database = %keyward_store::redact_url(&url), "opening the database");
    let store = keyward_store::open(&url)
        .await
        .with_context(|| format!("cannot open the database {}", keyward_store::redact_url(&url)))?;
    let keys = KeyRing::new(&master_key(&store_args.data_dir)?)?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let hasher = PasswordHasher::new(HashParams::OWASP, cores)?;
    Ok(App::new(store, Arc::new(SystemClock), hasher, keys, config).await?)
}

/// How often each node removes audit records past their tenant's retention (it runs at start too).
const AUDIT_RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// How often ended role activations are removed and recorded (authorization never waits for it).
const PIM_UPKEEP_EVERY: Duration = Duration::from_secs(60);
/// How often a node looks for bulk operations whose node went away.
const BULK_UPKEEP_EVERY: Duration = Duration::from_secs(30);

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let is_tls = args.tls_cert.is_some() || args.dev_tls;
    let public_url = match (&args.public_url, args.dev_tls) {
        // The certificate names localhost, so the public URL must too.
        (None, true) => format!("https://localhost:{}", args.listen.port()),
        (explicit, _) => public_url(explicit.as_deref(), args.listen, is_tls)?,
    };
    // Take the port first: a second server on the same address fails before touching the data.
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| {
        format!("cannot listen on {}; is another server using it? Choose another with --listen", args.listen)
    })?;
    std::fs::create_dir_all(&args.store.data_dir)
        .with_context(|| format!("cannot create the data directory {}", args.store.data_dir.display()))?;
    let mut config = AppConfig::new(public_url.clone());
    config.allow_password_grant = args.allow_password_grant;
    config.portal_idle_timeout = time::Duration::minutes(args.portal_idle_minutes);
    config.limits = keyward_app::Limits {
        per_address: args.rate_limit_per_address,
        per_account: args.rate_limit_per_account,
        hash_queue: args.hash_queue_limit,
    };
    if let Some(path) = &args.fido_roots {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the FIDO attestation roots {} (--fido-roots)", path.display()))?;
        config.fido_attestation_roots = keyward_app::read_fido_roots(&text).map_err(|err| {
            anyhow::anyhow!(
                "the FIDO attestation roots {} (--fido-roots) are not usable: {err}; give a PEM bundle of root \
                 certificates",
                path.display()
            )
        })?;
        tracing::info!(roots = config.fido_attestation_roots.len(), "FIDO attestation roots loaded");
    }
    let relay = smtp_relay(&args, &public_url)?;
    let app = open_app_with(&args.store, config).await?;
    let outcome = app
        .bootstrap(BootstrapRequest {
            admin_upn: args.bootstrap_admin_upn.clone(),
            admin_password: std::env::var("KEYWARD_BOOTSTRAP_ADMIN_PASSWORD")
                .ok()
                .filter(|it| !it.is_empty())
                .map(Secret::new),
            tenant_domain: args.tenant_domain.clone(),
        })
        .await?;
    match &outcome {
        BootstrapOutcome::Existing { tenant_id } => tracing::info!(%tenant_id, "tenant loaded"),
        BootstrapOutcome::Created { tenant_id, admin_upn, temporary_access_pass } => {
            say(&format!("Created tenant {tenant_id} with Global Administrator {admin_upn}."));
            if let Some((pass, expires)) = temporary_access_pass {
                let expires = expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
                say(&format!(
                    "One-time Temporary Access Pass for {admin_upn}: {}\n  (valid until {expires}, from any browser until you register MFA: sign in with it and register an authenticator app. It is not shown again; lost it? `keyward admin recover --upn {admin_upn}`.)",
                    pass.expose()
                ));
            }
        }
    }
    if args.demo {
        let accounts = app.seed_demo().await?;
        if accounts.is_empty() {
            say(&format!(
                "Demo data already present (passwords were shown when it was created). To start over, stop the \
                 server, delete {} (or give another --data-dir) and run `keyward serve --demo` again.",
                args.store.data_dir.display()
            ));
        } else {
            say("Demo accounts (passwords are shown once):");
            for account in &accounts {
                let methods = account.methods.as_deref().map(|it| format!("; {it}")).unwrap_or_default();
                say(&format!(
                    "  {:<34} {:<18} {}{methods}",
                    account.user_principal_name,
                    account.password.expose(),
                    account.role
                ));
            }
        }
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(keyward_http::TlsFiles { cert, key }),
        _ if args.dev_tls => Some(dev_certificate(&args.store.data_dir)?),
        _ => None,
    };
    let tenant_id = match &outcome {
        BootstrapOutcome::Existing { tenant_id } | BootstrapOutcome::Created { tenant_id, .. } => tenant_id,
    };
    let domain = app
        .home_tenant()
        .await?
        .and_then(|it| it.domains.into_iter().find(|it| it.is_default).map(|it| it.name))
        .unwrap_or_else(|| tenant_id.to_string());
    say(&format!(
        "Keyward is listening on {public_url}: sign in at {public_url}/ (or {public_url}/{domain}/login); API under \
         /v1.0 and /beta (viewer at {public_url}/docs); OpenID Connect issuer {public_url}/{tenant_id}/v2.0 \
         (discovery at {public_url}/{domain}/v2.0/.well-known/openid-configuration)."
    ));
    let store = app.store().clone();
    let retention = app.spawn_audit_retention(AUDIT_RETENTION_EVERY);
    let pim = app.spawn_pim_upkeep(PIM_UPKEEP_EVERY);
    // Bulk operations a node left behind (it stopped or crashed) are taken over by another.
    let bulk = app.spawn_bulk_upkeep(BULK_UPKEEP_EVERY);
    let sender = relay.map(|relay| app.spawn_notification_sender(relay, Duration::from_secs(args.smtp_poll_seconds)));
    let router = keyward_http::router(app);
    let mut config = keyward_http::ServeConfig::new(listener, tls);
    config.header_read_timeout = Duration::from_secs(args.header_read_timeout);
    keyward_http::serve(router, config, shutdown).await?;
    retention.abort();
    pim.abort();
    bulk.abort();
    if let Some(sender) = sender {
        sender.abort();
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The SMTP relay from `--smtp-url`, `--smtp-from` and `--smtp-ca-file`, if one is set.
fn smtp_relay(args: &ServeArgs, public_url: &str) -> anyhow::Result<Option<keyward_app::SmtpRelay>> {
    let Some(url) = &args.smtp_url else { return Ok(None) };
    let host = public_url.split_once("://").map_or(public_url, |it| it.1);
    let host = host.split(['/', ':']).next().unwrap_or("localhost");
    let from = args.smtp_from.clone().unwrap_or_else(|| format!("Keyward <no-reply@{host}>"));
    let ca =
        match &args.smtp_ca_file {
            Some(path) => Some(std::fs::read(path).with_context(|| {
                format!("cannot read the relay's CA certificate {} (--smtp-ca-file)", path.display())
            })?),
            None => None,
        };
    let relay = keyward_app::SmtpRelay::new(url, &from, ca.as_deref())
        .map_err(|err| anyhow::anyhow!("{err} (--smtp-url, --smtp-from, --smtp-ca-file)"))?;
    tracing::info!(from = %from, "notifications are sent through the SMTP relay");
    Ok(Some(relay))
}

/// Registers the shutdown signals now (so a SIGTERM during start-up is not lost) and returns the
/// future that completes on the first of SIGTERM or SIGINT.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => (),
            _ = interrupt.recv() => (),
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
    })
}

async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let public_url = public_url(args.public_url.as_deref(), args.listen, false)?;
    let app = open_installed(&args.store, AppConfig::new(public_url)).await?;
    let app = app.with_token_lifetime(time::Duration::minutes(i64::from(args.lifetime_minutes)));
    let token = app
        .issue_access_token_for_upn(&args.upn)
        .await
        .with_context(|| format!("cannot issue a token for {}", args.upn))?;
    say(&token);
    app.store().close().await;
    Ok(())
}

async fn recover(upn: &str, store: &StoreArgs) -> anyhow::Result<()> {
    let app = open_installed(store, AppConfig::new(String::new())).await?;
    let (pass, expires) = app.recover_global_administrator(upn).await?;
    let expires = expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    say(&format!(
        "Temporary Access Pass for {upn}: {}\n  (valid until {expires}, from any browser, until a method is registered; \
         sign in with it at the server's /{{tenant}}/login and register MFA. It is not shown again.)",
        pass.expose()
    ));
    app.store().close().await;
    Ok(())
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let store_args = match &command {
        KeysCommand::List(it) | KeysCommand::Rotate(it) | KeysCommand::Retire { store: it, .. } => it.clone(),
    };
    let app = open_installed(&store_args, AppConfig::new(String::new())).await?;
    match command {
        KeysCommand::List(_) => {
            let keys = app.list_signing_keys().await?;
            let signing =
                keys.iter().rev().find(|it| it.retired.is_none() && it.activated.is_some()).map(|it| it.kid.clone());
            for key in &keys {
                let state = match key.retired {
                    Some(at) => format!("retired {at}"),
                    None if Some(&key.kid) == signing.as_ref() => format!("signing since {}", key.created),
                    None => "verifying only (retire it once its tokens have expired)".to_owned(),
                };
                say(&format!("{}  {}  {state}", key.kid, key.algorithm));
            }
        }
        KeysCommand::Rotate(_) => {
            let kid = app.rotate_signing_key().await?;
            say(&format!("New signing key {kid} is active. Older keys keep verifying until you retire them."));
        }
        KeysCommand::Retire { kid, .. } => {
            app.retire_signing_key(&kid).await?;
            say(&format!("Signing key {kid} is retired."));
        }
    }
    app.store().close().await;
    Ok(())
}

pub(crate) fn parse_time(raw: &str) -> Result<time::OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok(at);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(raw, &format)
        .map(|date| date.midnight().assume_utc())
        .map_err(|_| format!("'{raw}' is not a time: give RFC 3339 (2026-11-01T08:30:00Z) or a date (2026-11-01)"))
}

/// Like [`parse_time`], but a bare date means the end of that day.
fn parse_until(raw: &str) -> Result<time::OffsetDateTime, String> {
    let at = parse_time(raw)?;
    if raw.contains('T') || raw.contains('t') {
        Ok(at)
    } else {
        at.checked_add(time::Duration::days(1))
            .and_then(|it| it.checked_sub(time::Duration::microseconds(1)))
            .ok_or_else(|| format!("'{raw}' has no day after it: name a date before 9999-12-31"))
    }
}

/// Whether the key-encryption key is at hand (never created by maintenance commands).
fn has_master_key(args: &StoreArgs) -> bool {
    std::env::var_os("KEYWARD_MASTER_KEY").is_some() || args.data_dir.join("keyward.key").is_file()
}

/// Refuses a SQLite database that does not exist: commands other than `serve` never create one
/// (a mistyped path would otherwise "verify" an empty database, or say no tenant exists).
fn require_existing_database(url: &str) -> anyhow::Result<()> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = Path::new(path.split('?').next().unwrap_or(path));
        if !path.is_file() {
            bail!(
                "there is no Keyward database at {}; run this command where the server's data directory is, or \
                 give the server's --data-dir (KEYWARD_DATA_DIR) or --database-url (KEYWARD_DATABASE_URL)",
                path.display()
            );
        }
    }
    Ok(())
}

/// The application of an existing installation, for `keyward token` and `keyward keys`: the
/// database and the key-encryption key must exist; neither is created.
async fn open_installed(args: &StoreArgs, config: AppConfig) -> anyhow::Result<App> {
    let url = args.database_url()?;
    require_existing_database(&url)?;
    let is_supported = ["sqlite:", "postgres://", "postgresql://"].iter().any(|it| url.starts_with(it));
    if is_supported && !has_master_key(args) {
        bail!(
            "there is no key-encryption key at {}; give the server's --data-dir (KEYWARD_DATA_DIR), or its key in \
             KEYWARD_MASTER_KEY",
            args.data_dir.join("keyward.key").display()
        );
    }
    open_app_with(args, config).await
}

async fn open_existing(args: &StoreArgs) -> anyhow::Result<App> {
    let url = args.database_url()?;
    require_existing_database(&url)?;
    let store = keyward_store::open(&url)
        .await
        .with_context(|| format!("cannot open the database {}", keyward_store::redact_url(&url)))?;
    let hasher = PasswordHasher::new(HashParams::OWASP, 1)?;
    // The key-encryption key checks and signs retention checkpoints; use it if it is at hand, but
    // never create one here.
    let keys =
        if has_master_key(args) { KeyRing::new(&master_key(&args.data_dir)?)? } else { KeyRing::without_master_key()? };
    Ok(App::without_signing_keys(store, Arc::new(SystemClock), hasher, keys, AppConfig::new(String::new())))
}

/// Progress on standard error, only when it is a terminal.
struct Progress {
    is_shown: bool,
    last: std::time::Instant,
}

impl Progress {
    fn new() -> Progress {
        use std::io::IsTerminal;
        Progress { is_shown: std::io::stderr().is_terminal(), last: std::time::Instant::now() }
    }

    fn update(&mut self, text: &str) {
        if self.is_shown && self.last.elapsed() >= Duration::from_millis(200) {
            self.last = std::time::Instant::now();
            let _ = write!(std::io::stderr(), "\r{text}\x1b[K");
        }
    }

    fn done(&self) {
        if self.is_shown {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

async fn audit(command: AuditCommand, server: Option<&str>) -> anyhow::Result<()> {
    match command {
        AuditCommand::List(args) => remote::audit_list(server, args).await,
        AuditCommand::Verify(args) => {
            let app = open_existing(&args).await?;
            let mut progress = Progress::new();
            let reports = app
                .verify_audit_chains(&mut |tenant, count| {
                    progress.update(&format!("Tenant {tenant}: {count} records verified"))
                })
                .await?;
            progress.done();
            app.store().close().await;
            if reports.is_empty() {
                say("The audit log is empty: nothing to verify.");
                return Ok(());
            }
            let mut broken = 0;
            for report in &reports {
                match &report.outcome {
                    Ok(()) => say(&format!(
                        "Tenant {}: {} records, chain intact; head #{} {}",
                        report.tenant,
                        report.records,
                        report.position.index,
                        keyward_core::audit_chain::to_hex(&report.position.hash)
                    )),
                    Err(found) => {
                        broken += 1;
                        say(&format!(
                            "Tenant {}: TAMPERED: {found}. The {} records before it verify (up to #{}).",
                            report.tenant, report.records, report.position.index
                        ));
                    }
                }
            }
            if broken > 0 {
                bail!(
                    "the audit log of {broken} tenant(s) was altered outside Keyward; restore the named records from a \
                     backup or an export, and find out who had write access to the database"
                );
            }
            Ok(())
        }
        AuditCommand::Retention { days, apply, store } => {
            let app = open_existing(&store).await?;
            let tenants = app.list_tenant_ids().await?;
            for tenant in &tenants {
                if let Some(days) = days {
                    app.set_audit_retention_days(tenant, days).await?;
                }
                say(&format!(
                    "Tenant {tenant}: audit records are kept {} days.",
                    app.audit_retention_days(tenant).await?
                ));
            }
            if apply {
                if !has_master_key(&store) {
                    bail!(
                        "retention signs its checkpoint with the key-encryption key: run with the server's --data-dir \
                         (for keyward.key) or set KEYWARD_MASTER_KEY"
                    );
                }
                let removed = app.apply_audit_retention().await?;
                say(&format!("Removed {removed} records past their retention."));
            }
            app.store().close().await;
            Ok(())
        }
        AuditCommand::Export(args) => {
            if let (Some(since), Some(until)) = (args.since, args.until)
                && since > until
            {
                bail!("--since is after --until: nothing would be exported");
            }
            let app = open_existing(&args.store).await?;
            let out: Box<dyn Write + Send> = match &args.output {
                Some(path) => {
                    Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?)
                }
                None => Box::new(std::io::stdout()),
            };
            let mut out = std::io::BufWriter::new(out);
            if args.format == ExportFormat::Csv {
                writeln!(out, "{}", CSV_COLUMNS.join(","))?;
            }
            let mut progress = Progress::new();
            let mut written = 0_u64;
            let format = args.format;
            let count = app
                .export_audit(args.since, args.until, &mut |record| {
                    let shaped = keyward_http::directory_audit(record);
                    match format {
                        ExportFormat::Jsonl => writeln!(out, "{shaped}")?,
                        ExportFormat::Csv => writeln!(out, "{}", csv_row(&shaped))?,
                    }
                    written += 1;
                    progress.update(&format!("{written} records exported"));
                    Ok(())
                })
                .await?;
            out.flush()?;
            progress.done();
            app.store().close().await;
            if args.output.is_some() {
                say(&format!("Exported {count} records."));
            }
            Ok(())
        }
    }
}

const CSV_COLUMNS: [&str; 15] = [
    "id",
    "activityDateTime",
    "category",
    "activityDisplayName",
    "operationType",
    "result",
    "resultReason",
    "correlationId",
    "loggedByService",
    "initiatedByUserId",
    "initiatedByUserPrincipalName",
    "initiatedByAppId",
    "initiatedByAppDisplayName",
    "targetResources",
    "additionalDetails",
];

/// One CSV row (RFC 4180 quoting) from a record in Graph's shape.
fn csv_row(record: &serde_json::Value) -> String {
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(it) => it.clone(),
        other => other.to_string(),
    };
    let fields = [
        text(&record["id"]),
        text(&record["activityDateTime"]),
        text(&record["category"]),
        text(&record["activityDisplayName"]),
        text(&record["operationType"]),
        text(&record["result"]),
        text(&record["resultReason"]),
        text(&record["correlationId"]),
        text(&record["loggedByService"]),
        text(&record["initiatedBy"]["user"]["id"]),
        text(&record["initiatedBy"]["user"]["userPrincipalName"]),
        text(&record["initiatedBy"]["app"]["appId"]),
        text(&record["initiatedBy"]["app"]["displayName"]),
        record["targetResources"].to_string(),
        record["additionalDetails"].to_string(),
    ];
    fields
        .iter()
        .map(|field| {
            if field.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_a_date_is_the_end_of_it_and_the_last_date_is_refused() {
        let end = parse_until("2026-12-01").expect("a date");
        assert_eq!((end.day(), end.hour(), end.minute(), end.microsecond()), (1, 23, 59, 999_999));
        assert!(parse_until("9999-12-31").is_err_and(|it| it.contains("no day after it")));
        assert!(parse_until("2026-12-01T08:30:00Z").is_ok_and(|it| it.hour() == 8));
    }
}
