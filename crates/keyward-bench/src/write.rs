//! Times docs/performance.md's "audited admin write": "Require re-register MFA" (delete the user's phone and
//! authenticator-app methods and write the `Update user` audit record, in one transaction, after
//! the authorization decision) against the bare single-row commit rate of the same database,
//! measured in the same run (one row inserted and committed through the same store).
//!
//! `write`: SQLite with 1 writer, PostgreSQL with 4, 3,000 operations per measurement. Each
//! measurement runs twice and the better run counts (the machine is shared).

use std::sync::Arc;
use std::time::Instant;

use keyward_app::{ManualClock, RequestMeta};
use keyward_core::ids::ObjectId;
use keyward_core::signin::SignInRecord;
use keyward_testkit::{ADMIN_PASSWORD, ADMIN_UPN, Backend, DOMAIN};
use time::OffsetDateTime;

use crate::report::{Line, percent, thousands};

fn id(kind: u64, n: u64) -> ObjectId {
    ObjectId::parse(&format!("{kind:08x}-0000-4000-8000-{n:012x}")).expect("id")
}

pub async fn run(backend: Backend, ops: u64, writers: u64) -> Vec<Line> {
    let (url, _dir) = keyward_testkit::fresh_url(backend);
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let app = keyward_testkit::node(&url, clock, "http://127.0.0.1:1").await;
    app.bootstrap(keyward_app::BootstrapRequest {
        admin_upn: Some(ADMIN_UPN.into()),
        admin_password: Some(keyward_core::secret::Secret::new(ADMIN_PASSWORD)),
        tenant_domain: DOMAIN.into(),
    })
    .await
    .expect("bootstrap");
    let token = app.issue_access_token_for_upn(ADMIN_UPN).await.expect("token");
    let meta = RequestMeta { correlation_id: uuid::Uuid::new_v4().to_string(), ip_address: None, user_agent: None };
    let caller = app.authenticate(Some(&token), meta).await.expect("caller");
    let tenant = caller.tenant.id.clone();

    // Targets: one user per operation and run, each with a mobile phone to delete.
    let runs = 2;
    let total = ops * runs;
    eprintln!("seeding {total} users with a phone method each ({backend:?})…");
    let store = app.store().clone();
    let now = app.now();
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        let mut tx = store.write().await.expect("tx");
        for &n in chunk {
            let user = keyward_testkit::bench_user(id(0xb0, n), &tenant, n, now);
            tx.insert_user(&user, None).await.expect("user");
            tx.put_phone_method(&user.id, "mobile", "+1 2065550100", now).await.expect("phone");
        }
        tx.commit().await.expect("commit");
    }

    let mut best_bare = 0.0_f64;
    let mut best_audited = 0.0_f64;
    for run in 0..runs {
        // Bare: one row (a sign-in log entry) inserted and committed per operation.
        let started = Instant::now();
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let store = store.clone();
            let tenant = tenant.clone();
            tasks.push(tokio::spawn(async move {
                for n in (writer..ops).step_by(writers as usize) {
                    let record = SignInRecord {
                        correlation_id: "bench".into(),
                        ..SignInRecord::browser(
                            format!("bench-{run}-{n}"),
                            tenant.clone(),
                            OffsetDateTime::now_utc(),
                            format!("bench{n}@{DOMAIN}"),
                            ("bench", "bench"),
                        )
                    };
                    let mut tx = store.write().await.expect("tx");
                    tx.insert_sign_in(&record).await.expect("insert");
                    tx.commit().await.expect("commit");
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer");
        }
        let bare = ops as f64 / started.elapsed().as_secs_f64();

        // Audited: Require re-register MFA through the app layer (authorize, delete, audit, commit).
        let started = Instant::now();
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let app = app.clone();
            let caller = caller.clone();
            tasks.push(tokio::spawn(async move {
                for n in (writer..ops).step_by(writers as usize) {
                    let target = id(0xb0, run * ops + n).to_string();
                    app.require_mfa_reregistration(&caller, &target).await.expect("re-registration");
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer");
        }
        let audited = ops as f64 / started.elapsed().as_secs_f64();
        eprintln!("run {run}: bare {bare:.0} commits/s, audited re-registration {audited:.0}/s");
        best_bare = best_bare.max(bare);
        best_audited = best_audited.max(audited);
    }
    let name = if backend == Backend::Sqlite { "SQLite" } else { "PostgreSQL" };
    vec![Line {
        workload: format!("audited admin write (require re-registration), {name}, {writers} writer(s)"),
        figure: format!("{}/s", thousands(best_audited)),
        limit: format!("bare single-row commit {}/s", thousands(best_bare)),
        ratio: percent(best_audited, best_bare),
        target: "≥ 80%".into(),
        met: Some(best_audited >= 0.8 * best_bare),
    }]
}
