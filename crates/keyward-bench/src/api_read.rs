//! `api-read`: `GET /v1.0/users/{id}` with a bearer token, through `keyward serve` pinned to one
//! core and `wrk` on the other, against a bare axum handler returning the same JSON on the same
//! core. Target: at least 50% of the bare handler's rate, and a p99 under 1 ms at half that load
//! (a quarter of the bare handler's rate).

use std::path::Path;
use std::time::Duration;

use keyward_core::ids::ObjectId;
use keyward_testkit::{Backend, DOMAIN};

use crate::load::{self, Load};
use crate::report::{Line, ms, percent, thousands};

/// The issuer every node answers with (nodes listen on different ports).
pub const PUBLIC_URL: &str = "http://keyward-bench.test";
const CONNECTIONS: u32 = 32;

pub async fn run(binary: &Path, backend: Backend, nodes: usize, seconds: u64) -> anyhow::Result<Vec<Line>> {
    let started = load::start_nodes(binary, backend, nodes, "api-read").await?;
    let (where_, url, servers, data) = (&started.name, &started.url, &started.servers, &started.data);

    // A token for the Global Administrator and a user to read, made by a node in this process.
    let (app, token) = load::admin_node(url, PUBLIC_URL).await?;
    let tenant = app.find_tenant(DOMAIN).await?.ok_or_else(|| anyhow::anyhow!("no tenant"))?;
    let target = ObjectId::parse("000000b1-0000-4000-8000-000000000001").expect("id");
    let mut tx = app.store().write().await?;
    tx.insert_user(&keyward_testkit::bench_user(target.clone(), &tenant.id, 1, app.now()), None).await?;
    tx.commit().await?;
    let path = format!("/v1.0/users/{target}");
    let body = reqwest::Client::new()
        .get(format!("{}{path}", servers[0].base_url))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;

    // The limit: the same JSON from a bare handler on the same core.
    let bare = load::start_bare(&body, data.path()).await?;
    let bare_load = load::wrk(&[format!("{}{path}", bare.base_url)], None, None, CONNECTIONS, seconds, None)?;
    drop(bare);

    let urls: Vec<String> = servers.iter().map(|it| format!("{}{path}", it.base_url)).collect();
    let per_node = (CONNECTIONS / nodes as u32).max(1);
    let full = load::wrk(&urls, Some(&token), None, per_node, seconds, None)?;
    // Half the target's load: a quarter of the bare rate, held by a pause between requests.
    let light = light_load(&urls, &token, bare_load.rate / 4.0, seconds)?;
    let met = full.rate >= bare_load.rate / 2.0 && light.p99 < Duration::from_millis(1);
    Ok(vec![Line {
        workload: format!("api-read: GET /v1.0/users/{{id}}, {where_}"),
        figure: format!(
            "{} req/s, p99 {} at {CONNECTIONS} connections; p99 {} at {} req/s",
            thousands(full.rate),
            ms(full.p99),
            ms(light.p99),
            thousands(light.rate)
        ),
        limit: format!("bare axum handler {} req/s", thousands(bare_load.rate)),
        ratio: percent(full.rate, bare_load.rate),
        target: format!("≥ 50%; p99 < 1 ms at {} req/s", thousands(bare_load.rate / 4.0)),
        met: Some(met),
    }])
}

/// About `rate` requests a second: connections that each wait 1 ms between requests.
fn light_load(urls: &[String], token: &str, rate: f64, seconds: u64) -> anyhow::Result<Load> {
    let connections = ((rate / 1000.0).ceil() as u32 / urls.len() as u32).max(1);
    load::wrk(urls, Some(token), None, connections, seconds, Some(Duration::from_millis(1)))
}
