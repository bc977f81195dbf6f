//! `client-credentials`: the client-credentials grant (`POST /{tenant}/oauth2/v2.0/token` with a
//! client secret) through `keyward serve` pinned to one core and `wrk` on the other, against the
//! ES256 signing rate on that same core (the same claims, signed by the same key ring). Target:
//! at least 25% of the signing rate.
//!
//! Each grant reads the application, its credentials, its service principal and the principal's
//! roles, signs a token and answers once the grant's sign-in log entry is durable, as the server
//! always does.

use std::path::Path;
use std::time::{Duration, Instant};

use keyward_app::KeyRing;
use keyward_testkit::{Backend, DOMAIN, MASTER_KEY};
use serde_json::{Value, json};

use crate::api_read::PUBLIC_URL;
use crate::load;
use crate::report::{Line, ms, percent, thousands};

const CONNECTIONS: u32 = 32;

/// The claims of an application's access token, as the server signs them.
const CLAIMS: &[u8] = br#"{"aud":"https://graph.microsoft.com","iss":"https://id.example/0000/v2.0","iat":1800000000,"nbf":1800000000,"exp":1800003600,"sub":"00000000-0000-4000-8000-000000000001","oid":"00000000-0000-4000-8000-000000000001","tid":"00000000-0000-4000-8000-000000000002","ver":"2.0","idtyp":"app","appid":"00000000-0000-4000-8000-000000000003","azp":"00000000-0000-4000-8000-000000000003","roles":[],"wids":["fe930be7-5e62-47db-91af-98c3a49a38b1"],"uti":"0123456789abcdef0123456789abcdef"}"#;

/// ES256 signatures a second on this thread for `seconds` (this binary's `__sign` mode, run
/// pinned to the server's core by [`load::signing_rate`]).
pub fn sign_for(seconds: f64) -> anyhow::Result<f64> {
    let ring = KeyRing::new(&MASTER_KEY)?;
    let key = ring.generate(time::OffsetDateTime::now_utc())?;
    ring.load(&[key])?;
    // Warm up (the key's first use), then count whole batches until the time is up.
    for _ in 0..100 {
        ring.sign(CLAIMS)?;
    }
    let started = Instant::now();
    let mut signed = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        for _ in 0..500 {
            ring.sign(CLAIMS)?;
        }
        signed += 500;
    }
    Ok(signed as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(binary: &Path, backend: Backend, nodes: usize, seconds: u64) -> anyhow::Result<Vec<Line>> {
    let started = load::start_nodes(binary, backend, nodes, "client-credentials").await?;
    let (where_, url, servers) = (&started.name, &started.url, &started.servers);

    // An application with a secret, registered through Graph by the Global Administrator.
    let (_app, token) = load::admin_node(url, PUBLIC_URL).await?;
    let client = reqwest::Client::new();
    let graph = |path: &str, body: Value| {
        client.post(format!("{}/v1.0{path}", servers[0].base_url)).bearer_auth(&token).json(&body).send()
    };
    let created: Value =
        graph("/applications", json!({"displayName": "Bench daemon"})).await?.error_for_status()?.json().await?;
    let (object_id, app_id) = (&created["id"], created["appId"].as_str().unwrap_or_default());
    let secret: Value =
        graph(&format!("/applications/{}/addPassword", object_id.as_str().unwrap_or_default()), json!({}))
            .await?
            .error_for_status()?
            .json()
            .await?;
    let secret = secret["secretText"].as_str().ok_or_else(|| anyhow::anyhow!("no secretText: {secret}"))?;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", app_id),
        ("client_secret", secret),
        ("scope", "https://graph.microsoft.com/.default"),
    ]
    .iter()
    .map(|(name, value)| format!("{name}={}", keyward_app::url_encode(value)))
    .collect::<Vec<_>>()
    .join("&");
    let path = format!("/{DOMAIN}/oauth2/v2.0/token");
    // One grant first: a refused one would make wrk's figure meaningless.
    for server in servers {
        let answer: Value = client
            .post(format!("{}{path}", server.base_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
            .await?
            .json()
            .await?;
        if !answer["access_token"].is_string() {
            anyhow::bail!("the grant was refused: {answer}");
        }
    }

    // The limit: ES256 signing on the server's core with the server idle, before the load and
    // after it (the machine's rate drifts by a tenth or more within minutes; the mean of both).
    let signing = Duration::from_secs(seconds.clamp(2, 5));
    let sign_before = load::signing_rate(signing)?;
    let urls: Vec<String> = servers.iter().map(|it| format!("{}{path}", it.base_url)).collect();
    let per_node = (CONNECTIONS / nodes as u32).max(1);
    let load = load::wrk(&urls, None, Some(&form), per_node, seconds, None)?;
    let sign_after = load::signing_rate(signing)?;
    let sign_rate = f64::midpoint(sign_before, sign_after);
    // A grant answers even if its sign-in log entry could not be written (the token is issued;
    // the failure is logged): such a run would count grants that skipped the log's write.
    for server in servers {
        let log = server.log.as_ref().map(std::fs::read_to_string).transpose()?.unwrap_or_default();
        if log.contains("cannot write the sign-in log") {
            anyhow::bail!("the server could not write sign-in log entries during the run (see {:?})", server.log);
        }
    }
    Ok(vec![Line {
        workload: format!("client-credentials grant over HTTP, {where_}"),
        figure: format!("{} grants/s, p99 {} at {CONNECTIONS} connections", thousands(load.rate), ms(load.p99)),
        limit: format!(
            "ES256 signing {}/s on the server's core ({} before the grants, {} after)",
            thousands(sign_rate),
            thousands(sign_before),
            thousands(sign_after)
        ),
        ratio: percent(load.rate, sign_rate),
        target: "≥ 25%".into(),
        met: Some(load.rate >= 0.25 * sign_rate),
    }])
}
