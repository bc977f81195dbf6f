//! `directory`: a directory of a million users behind `keyward serve` (pinned to one core).
//! Seeds the users (resumable, with progress), then times sequential Graph requests:
//! `startswith(displayName,…)` and `userPrincipalName eq …` (target: p99 < 5 ms), paging through
//! the whole directory with `$top=999`, `$count`, and the server's memory afterwards (target:
//! resident set < 200 MB). The limit measured in the same run is one user read by id. On
//! PostgreSQL the same figures are taken again with two servers on the database, the requests
//! taking turns between them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use keyward_core::ids::ObjectId;
use keyward_testkit::{Backend, DOMAIN, TempDir};
use serde_json::Value;

use crate::api_read::PUBLIC_URL;
use crate::load::{self, Rng};
use crate::report::{Line, ms, quantile, thousands};

const SAMPLES: usize = 300;
const CHUNK: u64 = 5_000;

fn id(n: u64) -> ObjectId {
    ObjectId::parse(&format!("000000d1-0000-4000-8000-{n:012x}")).expect("id")
}

pub async fn run(
    binary: &Path,
    backend: Backend,
    data_dir: &Path,
    users: u64,
    node_counts: &[usize],
) -> anyhow::Result<Vec<Line>> {
    // SQLite keeps its file in the data directory, so a second run resumes the seeding;
    // PostgreSQL does on KEYWARD_BENCH_POSTGRES_URL, and otherwise starts from a throwaway database.
    let (url, _throwaway, where_) =
        load::database(backend, &data_dir.join(format!("directory-{users}")), "KEYWARD_BENCH_POSTGRES_URL")?;
    let logs = TempDir::new("keyward-bench-directory");
    let (app, token) = {
        // The first start creates the tenant and its administrator, whose token every node takes.
        let _server = load::start_keyward(binary, &url, &logs.path().join("first"), PUBLIC_URL).await?;
        load::admin_node(&url, PUBLIC_URL).await?
    };
    let mut lines = Vec::new();
    for (round, &nodes) in node_counts.iter().enumerate() {
        let mut servers = Vec::new();
        for node in 0..nodes {
            let dir = logs.path().join(format!("{nodes}-nodes-{node}"));
            servers.push(load::start_keyward(binary, &url, &dir, PUBLIC_URL).await?);
        }
        let client = Client {
            http: reqwest::Client::new(),
            bases: servers.iter().map(|it| it.base_url.clone()).collect(),
            token: token.clone(),
        };
        if round == 0 {
            seed(&client, &app, where_, users).await?;
        }
        let label = if nodes > 1 { format!("{where_}, {nodes} nodes") } else { where_.to_owned() };
        lines.extend(measure(&client, &servers, &label, users).await?);
    }
    Ok(lines)
}

/// Seeds the users a previous run did not commit (chunks commit whole, in order).
async fn seed(client: &Client, app: &keyward_app::App, where_: &str, users: u64) -> anyhow::Result<()> {
    let present = client.count(0).await?;
    let mut seeded = present.saturating_sub(1);
    if seeded >= users {
        return Ok(());
    }
    let tenant = app.find_tenant(DOMAIN).await?.context("no tenant")?.id;
    let store = app.store().clone();
    let now = app.now();
    let started = Instant::now();
    let from = seeded;
    eprintln!("directory, {where_}: seeding users {} to {}…", thousands(from as f64), thousands(users as f64));
    while seeded < users {
        let end = (seeded + CHUNK).min(users);
        let mut tx = store.write().await?;
        for n in seeded..end {
            let user = keyward_core::directory::User {
                mail: Some(format!("bench{n}@{DOMAIN}")),
                ..keyward_testkit::bench_user(id(n), &tenant, n, now)
            };
            tx.insert_user(&user, None).await?;
        }
        tx.commit().await?;
        seeded = end;
        if seeded % 50_000 == 0 || seeded == users {
            let rate = (seeded - from) as f64 / started.elapsed().as_secs_f64();
            eprintln!(
                "  {} of {} users ({}/s, about {:.0} s left)",
                thousands(seeded as f64),
                thousands(users as f64),
                thousands(rate),
                (users - seeded) as f64 / rate.max(1.0)
            );
        }
    }
    // What the server's hourly maintenance does after a large change.
    store.optimize().await?;
    Ok(())
}

/// The directory's figures through `servers` (one, or several on one database: each request goes
/// to the next node in turn, so paging follows each `nextLink` on another node than the one that
/// made it).
async fn measure(client: &Client, servers: &[load::Server], where_: &str, users: u64) -> anyhow::Result<Vec<Line>> {
    let total = client.count(0).await?;
    if total < users + 1 {
        bail!("the directory holds {total} users after seeding {users} (and the administrator)");
    }

    let by_id = client.time(SAMPLES, Rng(0x5eed ^ users), users, |n| format!("/v1.0/users/{}", id(n))).await?;
    let starts = client
        .time(SAMPLES, Rng(0xfeed ^ users), users, |n| {
            format!("/v1.0/users?$filter=startswith(displayName,'Bench%20{n}')&$top=10")
        })
        .await?;
    let upn = client
        .time(SAMPLES, Rng(0xbeef ^ users), users, |n| {
            format!("/v1.0/users?$filter=userPrincipalName%20eq%20'bench{n}@{DOMAIN}'")
        })
        .await?;

    // Paging through everyone, 999 at a time: each user exactly once.
    eprintln!("directory, {where_}: paging through {} users…", thousands(total as f64));
    let started = Instant::now();
    let mut pages = Vec::new();
    let mut seen = 0_u64;
    let mut next = Some("/v1.0/users?$top=999&$select=id,displayName".to_owned());
    while let Some(path) = next {
        let url = format!("{}{path}", client.base(pages.len()));
        let page_started = Instant::now();
        let page = client.get_url(&url, false).await?;
        pages.push(page_started.elapsed());
        seen += page["value"].as_array().map_or(0, Vec::len) as u64;
        // Links name the public URL, which every node shares; the nodes listen elsewhere.
        next = page["@odata.nextLink"].as_str().map(|link| link.replacen(PUBLIC_URL, "", 1));
    }
    let paging = started.elapsed();
    pages.sort();

    let count_started = Instant::now();
    let counted = client.count(servers.len() - 1).await?;
    let count_time = count_started.elapsed();
    let memory: Vec<(f64, f64)> = servers.iter().map(load::Server::memory_mib).collect();

    let base99 = quantile(&by_id, 0.99);
    let limit = format!("one user by id, same server: p99 {}", ms(base99));
    let five = Duration::from_millis(5);
    let workload = |name: &str| format!("directory of {} users, {where_}: {name}", thousands(users as f64));
    let line = |name: &str, times: &[Duration]| {
        let p99 = quantile(times, 0.99);
        Line {
            workload: workload(name),
            figure: format!("p50 {}, p99 {}", ms(quantile(times, 0.5)), ms(p99)),
            limit: limit.clone(),
            ratio: format!("{:.1}×", p99.as_secs_f64() / base99.as_secs_f64().max(1e-9)),
            target: "p99 < 5 ms".into(),
            met: Some(p99 < five),
        }
    };
    let resident =
        memory.iter().map(|(rss, peak)| format!("{rss:.0} MiB (peak {peak:.0} MiB)")).collect::<Vec<_>>().join(" and ");
    Ok(vec![
        line("startswith(displayName,…)", &starts),
        line("userPrincipalName eq …", &upn),
        Line {
            workload: workload("paging with $top=999"),
            figure: format!(
                "{} pages in {:.1} s, page p50 {}, p99 {}; {} users seen",
                pages.len(),
                paging.as_secs_f64(),
                ms(quantile(&pages, 0.5)),
                ms(quantile(&pages, 0.99)),
                thousands(seen as f64)
            ),
            limit: limit.clone(),
            ratio: format!("{:.1}×", quantile(&pages, 0.99).as_secs_f64() / base99.as_secs_f64().max(1e-9)),
            target: "every user exactly once".into(),
            met: Some(seen == total),
        },
        Line {
            workload: workload("$count"),
            figure: format!("{} in {}", thousands(counted as f64), ms(count_time)),
            limit: limit.clone(),
            ratio: format!("{:.1}×", count_time.as_secs_f64() / base99.as_secs_f64().max(1e-9)),
            target: "the exact count".into(),
            met: Some(counted == total),
        },
        Line {
            workload: workload(if servers.len() > 1 {
                "each server's memory after the run"
            } else {
                "server memory after the run"
            }),
            figure: format!("resident {resident}"),
            limit: "n/a".into(),
            ratio: "n/a".into(),
            target: "< 200 MB resident".into(),
            met: Some(memory.iter().all(|(rss, _)| rss * 1.048_576 < 200.0)),
        },
    ])
}

struct Client {
    http: reqwest::Client,
    /// Each node's address; requests take turns between them.
    bases: Vec<String>,
    token: String,
}

impl Client {
    /// The node that request number `n` goes to.
    fn base(&self, n: usize) -> &str {
        &self.bases[n % self.bases.len()]
    }

    async fn get_url(&self, url: &str, eventual: bool) -> anyhow::Result<Value> {
        let mut request = self.http.get(url).bearer_auth(&self.token);
        if eventual {
            request = request.header("ConsistencyLevel", "eventual");
        }
        let reply = request.send().await?;
        let status = reply.status();
        let text = reply.text().await?;
        if !status.is_success() {
            bail!("GET {url}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `GET /v1.0/users/$count` on node `node`: the users in the directory.
    async fn count(&self, node: usize) -> anyhow::Result<u64> {
        let value = self.get_url(&format!("{}/v1.0/users/$count", self.base(node)), true).await?;
        match value {
            Value::Number(it) => it.as_u64().context("count"),
            Value::String(it) => it.trim().parse().context("count"),
            other => bail!("$count answered {other}"),
        }
    }

    /// Times `samples` sequential requests after 20 unmeasured ones, each for the path of a
    /// user number below `users` that `rng` draws; sorted.
    async fn time(
        &self,
        samples: usize,
        mut rng: Rng,
        users: u64,
        path: impl Fn(u64) -> String,
    ) -> anyhow::Result<Vec<Duration>> {
        let mut times = Vec::with_capacity(samples);
        for round in 0..samples + 20 {
            let url = format!("{}{}", self.base(round), path(rng.below(users)));
            let started = Instant::now();
            let value = self.get_url(&url, false).await?;
            let took = started.elapsed();
            if value.get("value").is_some_and(|it| it.as_array().is_some_and(Vec::is_empty)) {
                bail!("GET {url} found nobody");
            }
            if round >= 20 {
                times.push(took);
            }
        }
        times.sort();
        Ok(times)
    }
}
