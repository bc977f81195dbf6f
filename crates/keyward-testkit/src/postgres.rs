//! A throwaway PostgreSQL cluster for tests, and a fresh database per test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Cluster {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|it| String::from_utf8_lossy(&it.stdout).trim() == "0").unwrap_or(false)
}

fn bin_dir() -> Result<PathBuf, String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|err| format!("PostgreSQL binaries not found under /usr/lib/postgresql ({err}); install postgresql or set KEYWARD_TEST_POSTGRES_URL"))?
        .filter_map(|it| it.ok().map(|entry| entry.path().join("bin")))
        .filter(|it| it.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        "no initdb under /usr/lib/postgresql/*/bin; install postgresql or set KEYWARD_TEST_POSTGRES_URL".into()
    })
}

/// Runs a program, as the `postgres` user when we are root (initdb refuses root).
fn command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|err| err.to_string())?;
    listener.local_addr().map(|it| it.port()).map_err(|err| err.to_string())
}

fn start_cluster() -> Result<Cluster, String> {
    if let Ok(url) = std::env::var("KEYWARD_TEST_POSTGRES_URL") {
        let cluster = parse_url(&url)?;
        drop_databases_on_exit(&cluster)?;
        return Ok(cluster);
    }
    let bin = bin_dir()?;
    let as_postgres = is_root();
    let dir = std::env::temp_dir().join(format!("keyward-pg-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    if as_postgres {
        let status =
            Command::new("chown").args(["postgres:postgres"]).arg(&dir).status().map_err(|err| err.to_string())?;
        if !status.success() {
            return Err(format!("cannot chown {} to postgres", dir.display()));
        }
    }
    let data = dir.join("data");
    let output = command(&bin.join("initdb"), as_postgres)
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        .output()
        .map_err(|err| format!("cannot run initdb: {err}"))?;
    if !output.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let port = free_port()?;
    // The watchdog shell stops the server and removes the cluster when this test process exits.
    let script = format!(
        "{postgres} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300 >{dir}/postgres.log 2>&1 & pg=$!; \
         while [ -d /proc/{parent} ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done; kill -INT $pg 2>/dev/null; wait $pg; rm -rf {dir}",
        postgres = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
        parent = std::process::id(),
    );
    command(Path::new("sh"), as_postgres)
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot start postgres: {err}"))?;
    let cluster = Cluster { host: "127.0.0.1".into(), port, user: "postgres".into(), password: None };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if psql(&cluster, "postgres", "SELECT 1").is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            return Err(format!("PostgreSQL did not accept connections within 30 s; its log:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    #[allow(clippy::print_stderr, reason = "make the PostgreSQL run visible in test output")]
    {
        eprintln!("keyward-testkit: started PostgreSQL ({}) on 127.0.0.1:{port}", bin.display());
    }
    Ok(cluster)
}

/// The prefix of the databases this test process creates (see [`fresh_database_url`]): the
/// process id and a random part, since test processes on other machines may share the server.
fn database_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX
        .get_or_init(|| format!("keyward_{}_{}_", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]))
}

/// On a server the tests did not start, each test's database would outlive the test process
/// (about 10 MB each, 1.7 GB a run of the suite): a watchdog drops this process's databases once
/// it has exited, ending their connections if any remain.
fn drop_databases_on_exit(cluster: &Cluster) -> Result<(), String> {
    let quoted = |it: &str| format!("'{}'", it.replace('\'', r"'\''"));
    let connect =
        format!("psql -h {} -p {} -U {} -d postgres -qAt", quoted(&cluster.host), cluster.port, quoted(&cluster.user));
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; \
         {connect} -c \"SELECT format('DROP DATABASE %I WITH (FORCE);', datname) FROM pg_database \
         WHERE starts_with(datname, '{prefix}')\" | {connect} >/dev/null 2>&1",
        parent = std::process::id(),
        prefix = database_prefix(),
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    if let Some(password) = &cluster.password {
        cmd.env("PGPASSWORD", password);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|err| format!("cannot start the watchdog that drops the test databases: {err}"))
}

fn parse_url(url: &str) -> Result<Cluster, String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| format!("KEYWARD_TEST_POSTGRES_URL '{url}' must start with postgres://"))?;
    let (userinfo, hostpart) = rest.split_once('@').ok_or("KEYWARD_TEST_POSTGRES_URL needs USER@HOST")?;
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user.to_owned(), Some(password.to_owned())),
        None => (userinfo.to_owned(), None),
    };
    let hostport = hostpart.split('/').next().unwrap_or(hostpart);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().map_err(|_| "bad port in KEYWARD_TEST_POSTGRES_URL")?),
        None => (hostport.to_owned(), 5432),
    };
    Ok(Cluster { host, port, user, password })
}

fn psql(cluster: &Cluster, database: &str, sql: &str) -> Result<(), String> {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-h",
        &cluster.host,
        "-p",
        &cluster.port.to_string(),
        "-U",
        &cluster.user,
        "-d",
        database,
        "-v",
        "ON_ERROR_STOP=1",
        "-qAt",
        "-c",
        sql,
    ]);
    if let Some(password) = &cluster.password {
        cmd.env("PGPASSWORD", password);
    }
    let output = cmd.stdin(Stdio::null()).output().map_err(|err| format!("cannot run psql: {err}"))?;
    if output.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).into_owned()) }
}

/// The URL of a new, empty database in the test cluster (started on first use).
pub fn fresh_database_url() -> String {
    let cluster = match CLUSTER.get_or_init(start_cluster) {
        Ok(it) => it,
        Err(err) => panic!("PostgreSQL for tests: {err}"),
    };
    let name = format!("{}{}", database_prefix(), uuid::Uuid::new_v4().simple());
    if let Err(err) = psql(cluster, "postgres", &format!("CREATE DATABASE {name}")) {
        panic!("cannot create test database {name}: {err}");
    }
    let auth = match &cluster.password {
        Some(password) => format!("{}:{password}", cluster.user),
        None => cluster.user.clone(),
    };
    format!("postgres://{auth}@{}:{}/{name}", cluster.host, cluster.port)
}
