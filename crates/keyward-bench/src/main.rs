//! `keyward-bench`: every performance target of docs/performance.md, each measured against its
//! limit in the same run, one line per workload.
//!
//! ```text
//! cargo run --release -p keyward-bench -- all
//! cargo run --release -p keyward-bench -- api-read --backend sqlite
//! ```
//!
//! HTTP workloads (`api-read`, `client-credentials`, `directory`) run the release `keyward serve`
//! binary (built first if needed) pinned to core 0 with `taskset`, and load it from core 1: with
//! `wrk` (installed with apt-get when missing), or with sequential requests (`directory`).
//! `sign-in`, whose client must read each page and answer it, runs its simulated browsers and its
//! server in this process; the others run Keyward's application layer in this process.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod api_read;
mod audit;
mod authz;
mod directory;
mod driver;
mod grants;
mod load;
mod oidc;
mod portal;
mod report;
mod write;

use anyhow::Context;
use clap::{Parser, ValueEnum};

use keyward_testkit::Backend;

use crate::report::Line;

/// The server's allocator (`keyward serve` uses mimalloc): the workloads that run Keyward's
/// application layer and store in this process (`sign-in`, `write`, `audit`, ...) measure them as
/// the server runs them. With mimalloc the `sign-in` workload measures Argon2id hashes about 15%
/// and sign-ins about 10% faster than on glibc's malloc (five interleaved runs of each, 2026-12-06).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keyward's benchmarks: each workload against its limit measured in the same run.
#[derive(Debug, Parser)]
#[command(
    name = "keyward-bench",
    after_help = "Examples:\n  \
    cargo run --release -p keyward-bench -- all\n  \
    cargo run --release -p keyward-bench -- api-read directory --backend sqlite\n  \
    cargo run --release -p keyward-bench -- directory --users 1000000 --data-dir /var/tmp/keyward-bench\n\n\
    PostgreSQL: a throwaway cluster is started as the tests start it (initdb under\n\
    /usr/lib/postgresql/*/bin), or KEYWARD_TEST_POSTGRES_URL names a server to create databases on.\n\
    KEYWARD_BENCH_SERVER=PATH runs that keyward binary in the HTTP workloads instead of building\n\
    one, to compare two builds in one session.\n\
    Every line is also printed as it is measured, so a long run shows its progress."
)]
struct Args {
    /// The workloads to run (`all` for every one).
    #[arg(value_enum, required = true)]
    workloads: Vec<Workload>,
    /// The databases to run them on.
    #[arg(long, value_enum, default_value = "both")]
    backend: Backends,
    /// Seconds of load per HTTP measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Users in the `directory` workload's directory.
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    /// Where the `directory` workload keeps its SQLite database between runs (seeding resumes
    /// where it stopped), and `audit` its SQLite log.
    #[arg(long, default_value = "/var/tmp/keyward-bench")]
    data_dir: std::path::PathBuf,
    /// Records in the `audit` workload's log (the target is stated at 10,000,000: seeding that
    /// takes hours, so `all` uses fewer unless told).
    #[arg(long, default_value_t = 1_000_000)]
    audit_records: u64,
    /// Users in the `portal` workload's directory.
    #[arg(long, default_value_t = 100_000)]
    portal_users: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Every workload below.
    All,
    /// `GET /v1.0/users/{id}` with a bearer token, against a bare axum handler (wrk).
    ApiRead,
    /// Password + TOTP sign-in through the code flow, against Argon2id hashes per second.
    SignIn,
    /// The client-credentials grant (wrk), against ES256 signatures per second on the server's core.
    ClientCredentials,
    /// An audited admin write (require re-registration), against a bare single-row commit.
    Write,
    /// The audit log's queries, against reading one record by id.
    Audit,
    /// The admin portal's pages, against the stylesheet handler.
    Portal,
    /// The authorization decision, against cedar-policy on the same model.
    Authz,
    /// A directory of a million users: filters, paging, $count and the server's memory.
    Directory,
    /// What the SQLite driver costs per statement: sqlx against rusqlite on the task's thread
    /// (no target of its own).
    SqliteDriver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backends {
    Sqlite,
    Postgres,
    Both,
}

impl Backends {
    fn list(self) -> Vec<Backend> {
        match self {
            Backends::Sqlite => vec![Backend::Sqlite],
            Backends::Postgres => vec![Backend::Postgres],
            Backends::Both => vec![Backend::Sqlite, Backend::Postgres],
        }
    }
}

fn main() -> anyhow::Result<()> {
    // The bare handler's own process (see `load::start_bare`): `__bare PORT BODY_FILE`.
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("__bare") {
        let port = raw.get(2).and_then(|it| it.parse().ok()).context("__bare PORT BODY_FILE")?;
        let file = raw.get(3).context("__bare PORT BODY_FILE")?;
        return load::serve_bare(port, std::path::Path::new(file));
    }
    // The signing limit's own process (see `load::signing_rate`): `__sign SECONDS`.
    if raw.get(1).map(String::as_str) == Some("__sign") {
        let seconds = raw.get(2).and_then(|it| it.parse().ok()).context("__sign SECONDS")?;
        println!("{}", grants::sign_for(seconds)?);
        return Ok(());
    }
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let all = args.workloads.contains(&Workload::All);
    let wants = |workload: Workload| all || args.workloads.contains(&workload);
    let backends = args.backend.list();
    let mut lines: Vec<Line> = Vec::new();
    // A workload that returns an error is reported and the others still run (the in-process
    // workloads stop the run when an operation they time fails: that is a bug to see at once).
    let mut failed: Vec<String> = Vec::new();
    report::print_header();
    let mut keep = |what: &str, new: anyhow::Result<Vec<Line>>| match new {
        Ok(new) => {
            for line in &new {
                line.print();
            }
            lines.extend(new);
        }
        Err(err) => {
            eprintln!("{what} failed: {err:#}");
            failed.push(what.to_owned());
        }
    };
    // The release server, built once for the HTTP workloads that run it.
    let http = [Workload::ApiRead, Workload::ClientCredentials, Workload::Directory];
    let server = http.into_iter().any(wants).then(|| load::keyward_binary().map_err(|err| format!("{err:#}")));
    let server = |name: &str| match &server {
        Some(Ok(path)) => Ok(path.clone()),
        Some(Err(err)) => Err(anyhow::anyhow!("{err}")),
        None => Err(anyhow::anyhow!("{name}: the server binary was not built")),
    };
    // On PostgreSQL the HTTP and sign-in workloads also run with two nodes on one database.
    let node_counts =
        |backend: Backend| -> &'static [usize] { if backend == Backend::Postgres { &[1, 2] } else { &[1] } };
    for (workload, name) in [(Workload::ApiRead, "api-read"), (Workload::ClientCredentials, "client-credentials")] {
        if !wants(workload) {
            continue;
        }
        let binary = match server(name) {
            Ok(it) => it,
            Err(err) => {
                keep(name, Err(err));
                continue;
            }
        };
        for &backend in &backends {
            for &nodes in node_counts(backend) {
                let what = if nodes > 1 { format!("{name}, {nodes} nodes") } else { name.to_owned() };
                let measured = match workload {
                    Workload::ApiRead => api_read::run(&binary, backend, nodes, args.seconds).await,
                    _ => grants::run(&binary, backend, nodes, args.seconds).await,
                };
                keep(&what, measured);
            }
        }
    }
    if wants(Workload::SignIn) {
        for &backend in &backends {
            for &nodes in node_counts(backend) {
                keep("sign-in", Ok(oidc::run(backend, nodes).await));
            }
        }
    }
    if wants(Workload::Write) {
        for &backend in &backends {
            let writers = if backend == Backend::Postgres { 4 } else { 1 };
            keep("write", Ok(write::run(backend, 3000, writers).await));
        }
    }
    if wants(Workload::Audit) {
        for &backend in &backends {
            keep("audit", audit::run(backend, &args.data_dir, args.audit_records).await);
        }
    }
    if wants(Workload::Portal) {
        for &backend in &backends {
            keep("portal", Ok(portal::run(backend, args.portal_users, 300).await));
        }
    }
    if wants(Workload::Authz) {
        keep("authz", authz::run());
    }
    if wants(Workload::Directory) {
        match server("directory") {
            Ok(binary) => {
                for &backend in &backends {
                    let nodes = node_counts(backend);
                    keep("directory", directory::run(&binary, backend, &args.data_dir, args.users, nodes).await);
                }
            }
            Err(err) => keep("directory", Err(err)),
        }
    }
    if wants(Workload::SqliteDriver) && backends.contains(&Backend::Sqlite) {
        keep("sqlite-driver", driver::run().await);
    }
    println!();
    report::print_summary(&lines);
    if !failed.is_empty() {
        anyhow::bail!("{} workload(s) failed: {}; see their errors above", failed.len(), failed.join(", "));
    }
    Ok(())
}
