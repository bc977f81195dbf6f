//! The HTTP workloads' machinery: the release `keyward` binary run as a server pinned to core 0,
//! a bare axum handler as the limit (this binary again, `__bare`), and `wrk` on core 1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use keyward_testkit::{ADMIN_PASSWORD, ADMIN_UPN, Backend, DOMAIN, MASTER_KEY, TempDir};

/// A node in this process on the server's database (to seed data and mint tokens) and an access
/// token for its Global Administrator.
pub async fn admin_node(database_url: &str, public_url: &str) -> anyhow::Result<(keyward_app::App, String)> {
    let clock = std::sync::Arc::new(keyward_app::ManualClock::new(time::OffsetDateTime::now_utc()));
    let app = keyward_testkit::node(database_url, clock, public_url).await;
    let token = app.issue_access_token_for_upn(ADMIN_UPN).await?;
    Ok((app, token))
}

/// The core the server under test runs on; the load generator runs on the other.
const SERVER_CORE: &str = "0";
const CLIENT_CORE: &str = "1";

/// Builds the release `keyward` binary if needed and returns its path (next to this one).
pub fn keyward_binary() -> anyhow::Result<PathBuf> {
    // Another build of the server, to compare two builds in one session.
    if let Some(binary) = std::env::var_os("KEYWARD_BENCH_SERVER").map(PathBuf::from) {
        if !binary.is_file() {
            bail!("KEYWARD_BENCH_SERVER names {}, which is not a file", binary.display());
        }
        ensure_tool("wrk", "wrk")?;
        ensure_tool("taskset", "util-linux")?;
        return Ok(binary);
    }
    eprintln!("building the release keyward binary (cargo build --release -p keyward)…");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "keyward", "--bin", "keyward", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo build --release -p keyward failed");
    }
    let me = std::env::current_exe()?;
    let binary = me.with_file_name("keyward");
    if !binary.exists() {
        bail!("{} is missing after the build: run keyward-bench with cargo run --release", binary.display());
    }
    ensure_tool("wrk", "wrk")?;
    ensure_tool("taskset", "util-linux")?;
    Ok(binary)
}

/// Installs a Debian package when its command is missing.
fn ensure_tool(command: &str, package: &str) -> anyhow::Result<()> {
    let found = Command::new("sh").args(["-c", &format!("command -v {command}")]).stdout(Stdio::null()).status()?;
    if found.success() {
        return Ok(());
    }
    eprintln!("{command} is missing: installing the Debian package {package} (apt-get install -y {package})…");
    let status = Command::new("apt-get").args(["install", "-y", "--no-install-recommends", package]).status();
    match status {
        Ok(it) if it.success() => Ok(()),
        _ => bail!("{command} is missing and apt-get could not install {package}: install it (as root) and run again"),
    }
}

/// A server process; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub base_url: String,
    /// Where its standard output and error go (`keyward serve`'s log), if anywhere.
    pub log: Option<PathBuf>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident memory now and at its peak, in MiB (`/proc/PID/status`).
    pub fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on the loopback interface.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `keyward serve` on `database_url`, pinned to the server core; the first start creates the
/// tenant and [`ADMIN_UPN`]. Every node answers with `public_url` as its issuer.
pub async fn start_keyward(
    binary: &Path,
    database_url: &str,
    data_dir: &Path,
    public_url: &str,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    std::fs::create_dir_all(data_dir)?;
    let log_path = data_dir.join(format!("server-{port}.log"));
    let log = std::fs::File::create(&log_path)?;
    let key: String = MASTER_KEY.iter().map(|byte| format!("{byte:02x}")).collect();
    let child = Command::new("taskset")
        .args(["-c", SERVER_CORE])
        .arg(binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--public-url", public_url])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--database-url", database_url, "--tenant-domain", DOMAIN, "--rate-limit-per-address", "0"])
        .env("KEYWARD_BOOTSTRAP_ADMIN_UPN", ADMIN_UPN)
        .env("KEYWARD_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("KEYWARD_MASTER_KEY", key)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting keyward serve")?;
    let server = Server { child, base_url: format!("http://127.0.0.1:{port}"), log: Some(log_path.clone()) };
    wait_ready(&format!("{}/healthz", server.base_url)).await?;
    wait_for_maintenance(&log_path).await;
    Ok(server)
}

/// Waits until the server's first maintenance run (retention, then the planner's statistics:
/// an `ANALYZE` of a million users takes PostgreSQL most of a second) has finished, so that
/// measurements start on a server at rest. A server whose log never says so (a build older than
/// the line, given as `KEYWARD_BENCH_SERVER`) is measured after 30 seconds, with a warning.
async fn wait_for_maintenance(log: &Path) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if std::fs::read_to_string(log).is_ok_and(|text| text.contains("maintenance finished")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("{}: no \"maintenance finished\" within 30 s; measuring anyway", log.display());
}

/// `nodes` Keyward servers on one fresh database, as an HTTP workload runs them.
#[derive(Debug)]
pub struct Nodes {
    /// Where they run, for the report: "SQLite", "PostgreSQL", "PostgreSQL, 2 nodes".
    pub name: String,
    /// The database's URL.
    pub url: String,
    pub servers: Vec<Server>,
    /// Where the servers keep their data; the database (SQLite's file); both removed on drop.
    pub data: TempDir,
    _database: TempDir,
}

/// Starts `nodes` servers of `binary` on a fresh database on `backend` (see [`start_keyward`]).
pub async fn start_nodes(binary: &Path, backend: Backend, nodes: usize, workload: &str) -> anyhow::Result<Nodes> {
    let name = match (backend, nodes) {
        (Backend::Sqlite, _) => "SQLite".to_owned(),
        (Backend::Postgres, 1) => "PostgreSQL".to_owned(),
        (Backend::Postgres, n) => format!("PostgreSQL, {n} nodes"),
    };
    eprintln!("{workload}, {name}: starting…");
    let (url, database) = keyward_testkit::fresh_url(backend);
    let data = TempDir::new(&format!("keyward-bench-{workload}"));
    let mut servers = Vec::new();
    for node in 0..nodes {
        let dir = data.path().join(format!("node{node}"));
        servers.push(start_keyward(binary, &url, &dir, crate::api_read::PUBLIC_URL).await?);
    }
    Ok(Nodes { name, url, servers, data, _database: database })
}

/// The bare handler: this binary's `__bare` mode, pinned to the server core, answering every
/// `GET` with `body` as JSON.
pub async fn start_bare(body: &[u8], data_dir: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    std::fs::create_dir_all(data_dir)?;
    let file = data_dir.join("bare-body.json");
    std::fs::write(&file, body)?;
    let child = Command::new("taskset")
        .args(["-c", SERVER_CORE])
        .arg(std::env::current_exe()?)
        .args(["__bare", &port.to_string()])
        .arg(&file)
        .stdin(Stdio::null())
        .spawn()
        .context("starting the bare handler")?;
    let server = Server { child, base_url: format!("http://127.0.0.1:{port}"), log: None };
    wait_ready(&format!("{}/v1.0/users/ready", server.base_url)).await?;
    Ok(server)
}

/// Serves `body` to every `GET /v1.0/users/{id}` with axum on a runtime as `keyward serve`
/// builds it: what any HTTP API over the same stack costs at the least.
pub fn serve_bare(port: u16, body_file: &Path) -> anyhow::Result<()> {
    let body: &'static [u8] = Box::leak(std::fs::read(body_file)?.into_boxed_slice());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let router = axum::Router::new().route(
            "/v1.0/users/{id}",
            axum::routing::get(move || async move { ([("content-type", "application/json")], body) }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, router).await?;
        Ok(())
    })
}

/// ES256 signatures a second on the server's core for `duration`: this binary's `__sign` mode,
/// pinned there as the server would be, with nothing else running.
pub fn signing_rate(duration: Duration) -> anyhow::Result<f64> {
    let output = Command::new("taskset")
        .args(["-c", SERVER_CORE])
        .arg(std::env::current_exe()?)
        .args(["__sign", &duration.as_secs_f64().to_string()])
        .stdin(Stdio::null())
        .output()
        .context("running the signing measurement")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("the signing measurement failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    }
    text.trim().parse().with_context(|| format!("cannot read the signing measurement's output: {text}"))
}

async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(reply) = client.get(url).send().await
            && reply.status().is_success()
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("{url} did not answer within 2 minutes (see the server's log in the data directory)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What `wrk` measured.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Loads `urls` (one `wrk` each, run at once, all on the client core) with `connections` each
/// for `seconds`: `GET`s, or with `form` `POST`s of that URL-encoded body. With `delay`, each
/// connection waits that long between its requests, which holds the load below saturation. Any
/// answer other than 2xx fails the run.
pub fn wrk(
    urls: &[String],
    bearer: Option<&str>,
    form: Option<&str>,
    connections: u32,
    seconds: u64,
    delay: Option<Duration>,
) -> anyhow::Result<Load> {
    let mut lua = String::new();
    if let Some(delay) = delay {
        lua.push_str(&format!("function delay()\n  return {}\nend\n", delay.as_millis().max(1)));
    }
    if let Some(form) = form {
        // A Lua long string, which holds anything but its own closing bracket.
        if form.contains("]==]") {
            bail!("the form body cannot be put in wrk's script: {form}");
        }
        lua.push_str(&format!(
            "wrk.method = \"POST\"\nwrk.body = [==[{form}]==]\n\
             wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n"
        ));
    }
    let script = if lua.is_empty() {
        None
    } else {
        let path = std::env::temp_dir().join(format!("keyward-bench-{}.lua", std::process::id()));
        std::fs::write(&path, lua)?;
        Some(path)
    };
    let children = urls
        .iter()
        .map(|url| {
            let mut command = Command::new("taskset");
            command.args(["-c", CLIENT_CORE, "wrk", "-t1", &format!("-c{connections}"), &format!("-d{seconds}s")]);
            command.arg("--latency");
            if let Some(token) = bearer {
                command.args(["-H", &format!("Authorization: Bearer {token}")]);
            }
            if let Some(script) = &script {
                command.arg("-s").arg(script);
            }
            command.arg(url).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context("running wrk")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let outputs: Vec<_> = children.into_iter().map(std::process::Child::wait_with_output).collect();
    if let Some(script) = &script {
        let _ = std::fs::remove_file(script);
    }
    let mut total = Load { rate: 0.0, p50: Duration::ZERO, p99: Duration::ZERO };
    for output in outputs {
        let output = output?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
        }
        if text.contains("Non-2xx or 3xx responses") || text.contains("Socket errors") {
            bail!("wrk saw failed requests:\n{text}");
        }
        let load = parse_wrk(&text).with_context(|| format!("cannot read wrk's output:\n{text}"))?;
        total.rate += load.rate;
        total.p50 = total.p50.max(load.p50);
        total.p99 = total.p99.max(load.p99);
    }
    Ok(total)
}

fn parse_wrk(text: &str) -> Option<Load> {
    let rate = text.lines().find_map(|line| line.trim().strip_prefix("Requests/sec:"))?.trim().parse().ok()?;
    let latency = |label: &str| {
        text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(label)).then(|| words.next().and_then(parse_duration)).flatten()
        })
    };
    Some(Load { rate, p50: latency("50%")?, p99: latency("99%")? })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`.
fn parse_duration(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(it) = text.strip_suffix("us") {
        (it, 1e-6)
    } else if let Some(it) = text.strip_suffix("ms") {
        (it, 1e-3)
    } else if let Some(it) = text.strip_suffix('s') {
        (it, 1.0)
    } else {
        return None;
    };
    Some(Duration::from_secs_f64(number.parse::<f64>().ok()? * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 10s test @ http://127.0.0.1:1/\n  1 threads and 32 connections\n  \
            Latency Distribution\n     50%  410.00us\n     75%  1.10ms\n     90%    2.00ms\n     99%   17.31ms\n  \
            37750 requests in 10.00s, 45.1MB read\nRequests/sec:   3775.12\nTransfer/sec:      4.51MB\n";
        let load = parse_wrk(text).expect("parsed");
        assert!((load.rate - 3775.12).abs() < 1e-6);
        assert_eq!(load.p50, Duration::from_micros(410));
        assert_eq!(load.p99, Duration::from_secs_f64(0.01731));
        assert_eq!(parse_duration("2.5s"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_duration("12"), None);
    }
}

/// The database a workload keeps between runs: SQLite in `dir` (created), PostgreSQL at the URL in
/// `env` if set, otherwise a throwaway database (with what holds it, to keep alive) that a
/// second run cannot resume. Also names the backend for the report.
pub fn database(backend: Backend, dir: &Path, env: &str) -> anyhow::Result<(String, Option<TempDir>, &'static str)> {
    Ok(match backend {
        Backend::Sqlite => {
            std::fs::create_dir_all(dir)?;
            (format!("sqlite://{}", dir.join("keyward.db").display()), None, "SQLite")
        }
        Backend::Postgres => match std::env::var(env) {
            Ok(url) => (url, None, "PostgreSQL"),
            Err(_) => {
                let (url, holder) = keyward_testkit::fresh_url(backend);
                (url, Some(holder), "PostgreSQL")
            }
        },
    })
}

/// A small deterministic generator (SplitMix64): the same seed gives the same sequence.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
