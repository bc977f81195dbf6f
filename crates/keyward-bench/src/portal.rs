//! Times docs/performance.md's "admin portal pages with 100,000 users": the pages a service desk
//! opens most, served over HTTP to a signed-in Global Administrator (with MFA), against the
//! server's static stylesheet handler measured in the same run (the same HTTP stack, session
//! cookie and client, without the page's work).
//!
//! Every fiftieth user has an authenticator app, every tenth a phone. Requests are sequential
//! (one browser), after 20 unmeasured ones per page. `KEYWARD_BENCH_PAGES=users,activity` times
//! only the pages whose names contain one of the words (and the baseline).

use std::time::{Duration, Instant};

use keyward_core::directory::User;
use keyward_core::ids::ObjectId;
use keyward_testkit::browser::Browser;
use keyward_testkit::{ADMIN_PASSWORD, ADMIN_UPN, Backend, DOMAIN, TestApp};

use crate::report::{Line, thousands};

fn id(n: u64) -> ObjectId {
    ObjectId::parse(&format!("000000b1-0000-4000-8000-{n:012x}")).expect("id")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

pub async fn run(backend: Backend, users: u64, requests: usize) -> Vec<Line> {
    let backend_name = if backend == Backend::Sqlite { "SQLite" } else { "PostgreSQL" };
    let mut lines = Vec::new();
    let mut baseline = 0.0_f64;
    let app = TestApp::spawn(backend).await;
    let tenant = app.app.find_tenant(DOMAIN).await.expect("tenant").expect("the tenant").id;

    eprintln!("seeding {users} users ({backend:?})…");
    let store = app.app.store().clone();
    let now = app.app.now();
    let started = Instant::now();
    for chunk in (0..users).collect::<Vec<_>>().chunks(1000) {
        let mut tx = store.write().await.expect("tx");
        for &n in chunk {
            let user = User {
                mail: Some(format!("bench{n}@{DOMAIN}")),
                ..keyward_testkit::bench_user(id(n), &tenant, n, now)
            };
            tx.insert_user(&user, None).await.expect("user");
            if n % 10 == 0 {
                tx.put_phone_method(&user.id, "mobile", "+1 2065550100", now).await.expect("phone");
            }
            if n % 50 == 0 {
                tx.insert_software_oath_method(&keyward_store::SoftwareOathMethod {
                    id: ObjectId::parse(&uuid::Uuid::new_v4().to_string()).expect("id"),
                    user_id: user.id.clone(),
                    sealed_secret: vec![0; 48],
                    created: now,
                    last_used_step: 0,
                })
                .await
                .expect("method");
            }
        }
        tx.commit().await.expect("commit");
    }
    // What the server's hourly maintenance (and PostgreSQL's autovacuum, within a minute or so)
    // does after a large change. Without statistics PostgreSQL took the freshly seeded table for
    // 80 rows and sorted all 100,000 users for each per-user MFA page (70-80 ms), or not,
    // depending on whether autovacuum had analysed the table by then.
    store.optimize().await.expect("statistics");
    eprintln!("seeded in {:.1} s", started.elapsed().as_secs_f64());

    // The administrator signs in with a password and a new authenticator app, as in the portal.
    let mut browser = Browser::new(&app.base_url);
    let page = browser.get(&format!("/{DOMAIN}/login")).await;
    let page = browser.submit(&page, "username", &[("username", ADMIN_UPN)], &[]).await;
    let page = browser.submit(&page, "password", &[("current-password", ADMIN_PASSWORD)], &[]).await;
    let page = browser.submit(&page, "more_info", &[], &[]).await;
    let secret = keyward_core::totp::base32_decode(&page.by_id("secret").expect("secret")).expect("base32");
    let code = keyward_core::totp::code_at_step(&secret, keyward_core::totp::step_at(app.app.now().unix_timestamp()));
    let page = browser.submit(&page, "register_totp", &[("one-time-code", &code)], &[]).await;
    assert_eq!(page.title(), "My account", "signed in");
    let cookie = browser.cookies.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

    let pages = [
        ("baseline: the stylesheet", "/assets/keyward.css".to_owned()),
        ("users, first page", format!("/{DOMAIN}/admin/users")),
        ("users, search", format!("/{DOMAIN}/admin/users?search=bench7777")),
        ("a user's page", format!("/{DOMAIN}/admin/users/{}", id(users / 2))),
        ("per-user MFA (100 users)", format!("/{DOMAIN}/admin/mfa")),
        ("methods activity", format!("/{DOMAIN}/admin/reports")),
        ("audit logs", format!("/{DOMAIN}/admin/audit")),
        ("sign-in logs", format!("/{DOMAIN}/admin/sign-ins")),
    ];
    // `KEYWARD_BENCH_PAGES=users,activity` times only the pages whose names contain one of the
    // words (and the baseline).
    let only: Vec<String> = std::env::var("KEYWARD_BENCH_PAGES")
        .map(|it| it.split(',').map(str::trim).filter(|it| !it.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let chosen = pages.into_iter().filter(|(name, _)| {
        name.starts_with("baseline") || only.is_empty() || only.iter().any(|it| name.contains(it.as_str()))
    });
    for (name, path) in chosen {
        let url = format!("{}{path}", app.base_url);
        let mut times = Vec::with_capacity(requests);
        let mut first = Duration::ZERO;
        for round in 0..requests + 20 {
            let started = Instant::now();
            let reply = client.get(&url).header("cookie", &cookie).send().await.expect("GET");
            let status = reply.status();
            let body = reply.bytes().await.expect("body");
            let took = started.elapsed();
            assert!(status.is_success(), "{path}: {status} {}", String::from_utf8_lossy(&body));
            if round == 0 {
                // Nothing kept yet (the methods activity page's counts, say).
                first = took;
            }
            if round >= 20 {
                times.push(took);
            }
        }
        times.sort();
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        if name.starts_with("baseline") {
            baseline = p99;
            continue;
        }
        lines.push(Line {
            workload: format!("portal with {} users, {backend_name}: {name}", thousands(users as f64)),
            figure: format!("p50 {p50:.2} ms, p99 {p99:.2} ms (first request {:.2} ms)", first.as_secs_f64() * 1000.0),
            limit: format!("the stylesheet: p99 {baseline:.2} ms"),
            ratio: format!("{:.0}×", p99 / baseline.max(1e-6)),
            target: "p99 < 50 ms".into(),
            met: Some(p99 < 50.0),
        });
    }
    lines
}
