//! Signing in to Keyward servers and keeping their tokens: the credentials file, the device-code
//! flow with the first-party client `keyward-cli`, silent refresh and signing out.
//!
//! The file is `$XDG_CONFIG_HOME/keyward/credentials.json` (or `~/.config/…`), mode 0600 in a
//! 0700 directory, replaced atomically. Refresh tokens rotate on every use and a reused one ends
//! the session, so a refresh holds an exclusive lock on `credentials.lock` and re-reads the file
//! first: two commands started at once never present the same refresh token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Failure, exit};

/// The first-party public client every Keyward server knows.
pub const CLIENT_ID: &str = "keyward-cli";
/// What the command line asks for: the user's identity, a refresh token, and the API with every
/// permission the user's roles allow (Keyward's roles decide, as Entra's do for Graph).
const SCOPE: &str = "openid profile offline_access https://graph.microsoft.com/.default";
/// An access token this close to its end is refreshed before use.
const REFRESH_MARGIN_SECONDS: i64 = 120;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Credentials {
    /// The server used when `--server` is not given: the last one logged in to.
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    servers: BTreeMap<String, Server>,
}

/// One server's session as the credentials file keeps it (`Debug` leaves the tokens out).
#[derive(Clone, Serialize, Deserialize)]
pub struct Server {
    pub url: String,
    /// The tenant's domain or id, as the server's paths name it.
    pub tenant: String,
    pub user_principal_name: String,
    /// A PEM file of certificates to trust for this server (a self-signed development certificate).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    access_token: String,
    /// Unix seconds.
    pub access_expires_at: i64,
    refresh_token: Option<String>,
    /// Unix seconds: when the user signed in.
    pub signed_in_at: i64,
    /// Unix seconds: when the refresh token was last renewed (it lives 90 days from then).
    pub refreshed_at: i64,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url)
            .field("tenant", &self.tenant)
            .field("user_principal_name", &self.user_principal_name)
            .field("access_expires_at", &self.access_expires_at)
            .finish_non_exhaustive()
    }
}

/// Whether the server's access token ends soon enough to be renewed before use.
pub fn is_ending(server: &Server) -> bool {
    server.access_expires_at - now() <= REFRESH_MARGIN_SECONDS
}

/// The directory the credentials live in.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|it| !it.is_empty()) {
        return Ok(PathBuf::from(dir).join("keyward"));
    }
    let home = std::env::var_os("HOME")
        .filter(|it| !it.is_empty())
        .context("neither XDG_CONFIG_HOME nor HOME is set, so there is nowhere to keep the session; set one of them")?;
    Ok(PathBuf::from(home).join(".config").join("keyward"))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The credentials file under an exclusive lock, for one read-change-write.
struct Locked {
    dir: PathBuf,
    _lock: std::fs::File,
    credentials: Credentials,
}

impl Locked {
    fn open() -> anyhow::Result<Locked> {
        let dir = config_dir()?;
        create_private_dir(&dir)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("credentials.lock"))
            .with_context(|| format!("cannot open {}", dir.join("credentials.lock").display()))?;
        lock.lock().with_context(|| format!("cannot lock {}", dir.join("credentials.lock").display()))?;
        let credentials = read_credentials(&dir)?;
        Ok(Locked { dir, _lock: lock, credentials })
    }

    fn save(&self) -> anyhow::Result<()> {
        let path = self.dir.join("credentials.json");
        let temporary = self.dir.join(format!("credentials.json.{}", std::process::id()));
        let _ = std::fs::remove_file(&temporary);
        let text = serde_json::to_string_pretty(&self.credentials)?;
        crate::cli::write_private(&temporary, &text)?;
        std::fs::rename(&temporary, &path).with_context(|| format!("cannot replace {}", path.display()))
    }
}

fn read_credentials(dir: &Path) -> anyhow::Result<Credentials> {
    let path = dir.join("credentials.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| {
            format!("{} is not a Keyward credentials file; remove it and log in again", path.display())
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    use std::os::unix::fs::PermissionsExt;
    if dir.is_dir() {
        // Kept private even if it was created by hand or by another tool.
        return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (mode 0700)", dir.display()));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// An HTTP client that trusts the system's roots and, when given, a server's own certificate.
pub fn http_client(ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("keyward-cli/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("cannot read the certificate {}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} is not a PEM certificate bundle", path.display()))?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().context("cannot set up HTTPS")
}

/// What `keyward login` needs.
#[derive(Debug)]
pub struct LoginRequest {
    pub url: String,
    pub name: String,
    pub tenant: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub open_browser: bool,
}

/// Checks a server address (http or https, no query; plain HTTP only to this machine unless
/// allowed) and returns it normalized, without a trailing `/`.
pub fn server_url(raw: &str, allow_http: bool) -> Result<String, Failure> {
    let url = raw.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(url).map_err(|err| {
        Failure::usage(format!("'{raw}' is not a URL ({err}); give one like https://keyward.example.com"))
    })?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let is_local = matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1");
            if !is_local && !allow_http {
                return Err(Failure::usage(format!(
                    "'{raw}' is plain HTTP: tokens would cross the network unencrypted. Use https://, or pass \
                     --allow-http for a test server"
                )));
            }
        }
        other => return Err(Failure::usage(format!("'{raw}' uses {other}:; give an https:// address"))),
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Failure::usage(format!("'{raw}' has a query or fragment; give the server's base address")));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// The tenant a server's `/` leads to (`/{tenant}/login`).
async fn discover_tenant(http: &reqwest::Client, url: &str) -> Result<String, Failure> {
    let reply = http.get(format!("{url}/")).send().await.map_err(|err| unreachable(url, &err))?;
    let location = reply.headers().get(reqwest::header::LOCATION).and_then(|it| it.to_str().ok()).unwrap_or_default();
    location
        .strip_prefix('/')
        .and_then(|rest| rest.split('/').next())
        .filter(|it| !it.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::new(
                exit::FAILURE,
                format!(
                    "{url} does not look like a Keyward server (its / answered {} without leading to a sign-in page); \
                     check the address, or give the tenant with --tenant DOMAIN",
                    reply.status()
                ),
            )
        })
}

pub fn unreachable(url: &str, err: &reqwest::Error) -> Failure {
    let mut cause = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        cause = format!("{cause}: {inner}");
        source = inner.source();
    }
    let lower = cause.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        return Failure::new(
            exit::UNREACHABLE,
            format!(
                "the server at {url} presented a certificate this machine does not trust ({cause}); if it is yours, \
                 log in again with --ca-cert PEM naming its certificate (for keyward serve --dev-tls: \
                 dev-tls-cert.pem in its data directory)"
            ),
        );
    }
    Failure::new(
        exit::UNREACHABLE,
        format!("cannot reach the Keyward server at {url} ({cause}); is it running, and is the address right?"),
    )
}

/// The device-code flow: prints the code and the address, opens a browser when there is one,
/// waits for the user, and keeps the tokens under `request.name`.
pub async fn login(request: LoginRequest, say: &mut dyn FnMut(&str)) -> anyhow::Result<Server> {
    let http = http_client(request.ca_cert.as_deref())?;
    let url = request.url.clone();
    let tenant = match &request.tenant {
        Some(it) => it.clone(),
        None => discover_tenant(&http, &url).await?,
    };
    let reply = http
        .post(format!("{url}/{tenant}/oauth2/v2.0/devicecode"))
        .form(&[("client_id", CLIENT_ID), ("scope", SCOPE)])
        .send()
        .await
        .map_err(|err| unreachable(&url, &err))?;
    let status = reply.status();
    let device: Value = reply.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(oauth_failure(&url, &device, "cannot start the sign-in").into());
    }
    let text = |key: &str| device[key].as_str().unwrap_or_default().to_owned();
    let (device_code, user_code, verification) = (text("device_code"), text("user_code"), text("verification_uri"));
    if device_code.is_empty() || user_code.is_empty() || verification.is_empty() {
        return Err(
            Failure::new(exit::FAILURE, format!("{url} answered the device-code request without a code")).into()
        );
    }
    let lifetime = device["expires_in"].as_i64().unwrap_or(900);
    say(&format!(
        "To sign in to {url}, open {verification} in a browser and enter the code {user_code} (valid {} minutes).",
        lifetime / 60
    ));
    // Only the server's own pages are opened: a server cannot make this machine open anything else.
    let is_own_page = verification.starts_with(&format!("{url}/"));
    if request.open_browser && is_own_page && open_browser(&verification) {
        say("A browser window was opened for you.");
    }
    let mut interval = Duration::from_secs(device["interval"].as_u64().unwrap_or(5).clamp(1, 60));
    let deadline = std::time::Instant::now() + Duration::from_secs(u64::try_from(lifetime).unwrap_or(900));
    let spinner = super::output::spinner("Waiting for you to finish signing in in the browser…");
    let expired =
        || Failure::new(exit::FAILURE, "the code expired before the sign-in was finished; run keyward login again");
    let polled: anyhow::Result<Value> = async {
        loop {
            tokio::time::sleep(interval).await;
            if std::time::Instant::now() > deadline {
                return Err(expired().into());
            }
            let reply = http
                .post(format!("{url}/{tenant}/oauth2/v2.0/token"))
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("client_id", CLIENT_ID),
                    ("device_code", device_code.as_str()),
                ])
                .send()
                .await
                .map_err(|err| unreachable(&url, &err))?;
            let status = reply.status();
            let body: Value = reply.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(body);
            }
            match body["error"].as_str().unwrap_or_default() {
                "authorization_pending" => {}
                "slow_down" => interval += Duration::from_secs(5),
                "expired_token" => return Err(expired().into()),
                "access_denied" | "authorization_declined" => {
                    return Err(Failure::new(exit::SESSION, "the sign-in was declined in the browser").into());
                }
                _ => return Err(oauth_failure(&url, &body, "the sign-in failed").into()),
            }
        }
    }
    .await;
    spinner.finish_and_clear();
    let tokens = polled?;
    let at = now();
    let access_token = tokens["access_token"].as_str().unwrap_or_default().to_owned();
    let user_principal_name = claim(tokens["id_token"].as_str().unwrap_or(&access_token), "preferred_username")
        .or_else(|| claim(&access_token, "upn"))
        .unwrap_or_default();
    let server = Server {
        url,
        tenant,
        user_principal_name,
        ca_cert: request.ca_cert.map(|it| it.canonicalize().unwrap_or(it)),
        access_expires_at: at + tokens["expires_in"].as_i64().unwrap_or(3600),
        access_token,
        refresh_token: tokens["refresh_token"].as_str().map(str::to_owned),
        signed_in_at: at,
        refreshed_at: at,
    };
    let mut locked = Locked::open()?;
    locked.credentials.servers.insert(request.name.clone(), server.clone());
    locked.credentials.default = Some(request.name);
    locked.save()?;
    Ok(server)
}

/// One claim of a JWT's payload, read without verifying it (for display only: the server checks
/// every token it is given).
pub fn claim(token: &str, name: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims[name].as_str().map(str::to_owned)
}

fn oauth_failure(url: &str, body: &Value, what: &str) -> Failure {
    let description = body["error_description"].as_str().or(body["error"].as_str()).unwrap_or("no reason given");
    let description = description.lines().next().unwrap_or(description);
    Failure::new(exit::FAILURE, format!("{what} at {url}: {description}"))
}

/// Opens `url` in the user's browser when this session has a display.
fn open_browser(url: &str) -> bool {
    let has_display = cfg!(target_os = "macos")
        || std::env::var_os("DISPLAY").is_some_and(|it| !it.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|it| !it.is_empty());
    if !has_display {
        return false;
    }
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

/// A session ready for requests: the server, its name, and a current access token (`Debug`
/// leaves it out).
#[derive(Clone)]
pub struct Session {
    pub name: String,
    pub server: Server,
    pub access_token: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("name", &self.name).field("server", &self.server).finish_non_exhaustive()
    }
}

/// The session of `name` (or the default server), refreshed when its access token is about to end.
pub async fn session(name: Option<&str>) -> anyhow::Result<Session> {
    let dir = config_dir()?;
    let credentials = read_credentials(&dir)?;
    let name = match name.map(str::to_owned).or(credentials.default.clone()) {
        Some(it) => it,
        None => {
            return Err(Failure::new(
                exit::SESSION,
                "you are not logged in to a Keyward server; run keyward login --url https://YOUR-SERVER",
            )
            .into());
        }
    };
    let Some(server) = credentials.servers.get(&name).cloned() else {
        let known = credentials.servers.keys().cloned().collect::<Vec<_>>().join(", ");
        let hint = if known.is_empty() { String::new() } else { format!(" (known: {known})") };
        return Err(Failure::new(
            exit::SESSION,
            format!("there is no session named '{name}'{hint}; run keyward login --url URL --name {name}"),
        )
        .into());
    };
    if !is_ending(&server) {
        return Ok(Session { name, access_token: server.access_token.clone(), server });
    }
    refresh(&name, None).await
}

/// A new access token for `name` when `stale` (the one in use) is ending or was refused.
pub async fn renew(name: &str, stale: &str) -> anyhow::Result<Session> {
    refresh(name, Some(stale)).await
}

/// Renews the access token of `name` with its refresh token, under the lock: unless another
/// command already did (a token other than `stale`, or one not ending, is in the file).
async fn refresh(name: &str, stale: Option<&str>) -> anyhow::Result<Session> {
    let mut locked = Locked::open()?;
    let Some(mut server) = locked.credentials.servers.get(name).cloned() else {
        return Err(Failure::new(exit::SESSION, format!("the session '{name}' was removed; run keyward login")).into());
    };
    // Another command may have refreshed it while this one waited for the lock.
    let is_other = stale.is_some_and(|stale| stale != server.access_token);
    if !is_ending(&server) && (stale.is_none() || is_other) {
        return Ok(Session { name: name.to_owned(), access_token: server.access_token.clone(), server });
    }
    let login_again = |why: &str| {
        Failure::new(
            exit::SESSION,
            format!(
                "your session with {} has ended ({why}); log in again: keyward login --url {} --name {name}",
                server.url, server.url
            ),
        )
    };
    let Some(refresh_token) = server.refresh_token.clone() else {
        return Err(login_again("the access token expired").into());
    };
    let http = http_client(server.ca_cert.as_deref())?;
    let reply = http
        .post(format!("{}/{}/oauth2/v2.0/token", server.url, server.tenant))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("refresh_token", refresh_token.as_str()),
            ("scope", SCOPE),
        ])
        .send()
        .await
        .map_err(|err| unreachable(&server.url, &err))?;
    let status = reply.status();
    let body: Value = reply.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        if body["error"] == "invalid_grant" || status == reqwest::StatusCode::UNAUTHORIZED {
            let why = body["error_description"].as_str().and_then(|it| it.lines().next()).unwrap_or(
                "it was revoked, or a renewal's answer was lost and the server saw its refresh token used twice",
            );
            let failure = login_again(why);
            // A refresh token the server refused never works again: forget it.
            locked.credentials.servers.remove(name);
            if locked.credentials.default.as_deref() == Some(name) {
                locked.credentials.default = locked.credentials.servers.keys().next().cloned();
            }
            locked.save()?;
            return Err(failure.into());
        }
        return Err(oauth_failure(&server.url, &body, "cannot renew the session").into());
    }
    let at = now();
    server.access_token = body["access_token"].as_str().unwrap_or_default().to_owned();
    server.access_expires_at = at + body["expires_in"].as_i64().unwrap_or(3600);
    if let Some(token) = body["refresh_token"].as_str() {
        server.refresh_token = Some(token.to_owned());
        server.refreshed_at = at;
    }
    locked.credentials.servers.insert(name.to_owned(), server.clone());
    locked.save()?;
    Ok(Session { name: name.to_owned(), access_token: server.access_token.clone(), server })
}

/// Forgets the session of `name` (or every session) and revokes its refresh token at the server.
/// Returns each name signed out, with why its token could not be revoked (`None`: revoked).
pub async fn logout(name: Option<&str>, all: bool) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut locked = Locked::open()?;
    let names: Vec<String> = if all {
        locked.credentials.servers.keys().cloned().collect()
    } else {
        match name.map(str::to_owned).or(locked.credentials.default.clone()) {
            Some(it) if locked.credentials.servers.contains_key(&it) => vec![it],
            Some(it) => return Err(Failure::new(exit::SESSION, format!("there is no session named '{it}'")).into()),
            None => return Ok(Vec::new()),
        }
    };
    let mut outcomes = Vec::new();
    for name in &names {
        let Some(server) = locked.credentials.servers.remove(name) else { continue };
        // The local copy goes either way; a token the server could not revoke still ends after
        // 90 days unused, or when an administrator revokes the user's sessions.
        let problem = match &server.refresh_token {
            None => None,
            Some(token) => match http_client(server.ca_cert.as_deref()) {
                Err(err) => Some(format!("{err:#}")),
                Ok(http) => match http
                    .post(format!("{}/{}/oauth2/v2.0/revoke", server.url, server.tenant))
                    .form(&[("token", token.as_str()), ("token_type_hint", "refresh_token"), ("client_id", CLIENT_ID)])
                    .send()
                    .await
                {
                    Ok(reply) if reply.status().is_success() => None,
                    Ok(reply) => Some(format!("the server answered {}", reply.status())),
                    Err(err) => Some(unreachable(&server.url, &err).message),
                },
            },
        };
        outcomes.push((name.clone(), problem));
    }
    if locked.credentials.default.as_ref().is_some_and(|it| names.contains(it)) {
        locked.credentials.default = locked.credentials.servers.keys().next().cloned();
    }
    locked.save()?;
    Ok(outcomes)
}

/// A session for unit tests of the code that uses one.
#[cfg(test)]
pub fn test_session(url: &str) -> Session {
    let server = Server {
        url: url.to_owned(),
        tenant: "contoso.test".into(),
        user_principal_name: "admin@contoso.test".into(),
        ca_cert: None,
        access_token: "token".into(),
        access_expires_at: now() + 3600,
        refresh_token: None,
        signed_in_at: now(),
        refreshed_at: now(),
    };
    Session { name: "test".into(), access_token: "token".into(), server }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_leaves_tokens_out() {
        let session = test_session("https://id.contoso.test");
        let text = format!("{session:?}");
        assert!(text.contains("id.contoso.test") && !text.contains("token\""), "{text}");
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        assert_eq!(server_url("http://localhost:8080/", false).expect("local"), "http://localhost:8080");
        assert_eq!(server_url("HTTPS://ID.Contoso.com/", false).expect("case"), "https://id.contoso.com");
        assert!(server_url("http://127.0.0.1:1", false).is_ok());
        assert!(server_url("http://keyward.example.com", false).is_err());
        assert!(server_url("http://keyward.example.com", true).is_ok());
        assert!(server_url("https://keyward.example.com?x=1", false).is_err());
        assert!(server_url("ftp://keyward.example.com", false).is_err());
    }

    #[test]
    fn claims_are_read_from_the_payload() {
        // {"preferred_username":"a@b.test"}
        let token = "x.eyJwcmVmZXJyZWRfdXNlcm5hbWUiOiJhQGIudGVzdCJ9.y";
        assert_eq!(claim(token, "preferred_username").as_deref(), Some("a@b.test"));
        assert_eq!(claim(token, "upn"), None);
        assert_eq!(claim("not a token", "upn"), None);
    }
}
