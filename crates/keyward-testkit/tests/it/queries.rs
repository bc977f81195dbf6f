//! Query options never answer `5xx`: generated `$filter`s over every property of the directory
//! collections (any casing, every operator, nested `and`/`or`/`not`, lambdas, with and without
//! advanced query mode) get a result or Graph's `400`, and where the server answers, the same
//! objects as the in-memory evaluator finds in the whole collection. The logs' filters are
//! sent in any casing too.

use keyward_core::odata::eval::{Value as Field, matches};
use keyward_core::query::{self, FilterSupport, PropType, Property, Resource};
use keyward_testkit::{Backend, DOMAIN, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The property name in a random casing.
fn cased(rng: &mut Rng, name: &str) -> String {
    match rng.below(3) {
        0 => name.to_owned(),
        1 => name.to_lowercase(),
        _ => name
            .chars()
            .map(|it| if rng.chance(50) { it.to_ascii_uppercase() } else { it.to_ascii_lowercase() })
            .collect(),
    }
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A value to compare `property` with: mostly one the objects have, so filters match something.
fn literal(rng: &mut Rng, property: &Property, samples: &[Value]) -> String {
    let seen: Vec<&Value> = samples.iter().map(|it| &it[property.name]).filter(|it| !it.is_null()).collect();
    match property.ty {
        PropType::Bool => if rng.chance(50) { "true" } else { "false" }.to_owned(),
        PropType::DateTime => "2020-01-01T00:00:00Z".to_owned(),
        PropType::Guid | PropType::String => match seen.get(rng.below(seen.len() + 1)).and_then(|it| it.as_str()) {
            Some(text) if rng.chance(30) => quoted(&text[..text.len().min(3)]),
            Some(text) => quoted(text),
            None if rng.chance(10) => "null".to_owned(),
            None => quoted("zz-none"),
        },
        PropType::StringCollection => quoted("+1 555 0100"),
    }
}

/// One generated clause over `resource`.
fn clause(rng: &mut Rng, resource: &Resource, samples: &[Value], depth: u32) -> String {
    if depth > 0 && rng.chance(35) {
        let left = clause(rng, resource, samples, depth - 1);
        let right = clause(rng, resource, samples, depth - 1);
        return match rng.below(3) {
            0 => format!("({left}) and ({right})"),
            1 => format!("({left}) or ({right})"),
            _ => format!("not ({left})"),
        };
    }
    let property = rng.pick(resource.properties);
    let name = cased(rng, property.name);
    let value = literal(rng, property, samples);
    if property.ty == PropType::StringCollection || property.filter == FilterSupport::Any {
        let var = *rng.pick(&["x", "p", "item"]);
        return match rng.below(3) {
            0 => format!("{name}/any({var}:{var} eq {value})"),
            1 => format!("{name}/any({var}:startswith({var},{value}))"),
            _ => format!("{name} eq {value}"),
        };
    }
    match rng.below(9) {
        0 | 1 => format!("{name} eq {value}"),
        2 => format!("{name} ne {value}"),
        3 => format!("startswith({name},{value})"),
        4 => format!("endswith({name},{value})"),
        5 => format!("{name} in ({value},{})", quoted("other")),
        6 => format!("{name} ge {value}"),
        7 => format!("{name} lt {value}"),
        _ => format!("{name} eq {value} and {} eq {value}", cased(rng, property.name)),
    }
}

/// The objects of `path` the in-memory evaluator matches, by id; `None` when the filter uses
/// something the evaluator does not decide (ranges, lambdas, collections, `null`).
fn evaluate(filter: &str, resource: &Resource, objects: &[Value]) -> Option<Vec<String>> {
    let raw = query::RawQuery {
        filter: Some(filter.to_owned()),
        is_eventual: true,
        count: Some("true".into()),
        ..query::RawQuery::default()
    };
    let expr = query::plan(resource, &raw).ok()?.filter?;
    let text = expr.to_string();
    if [" ge ", " le ", " gt ", " lt ", "/any(", "null", "endswith("].iter().any(|it| text.contains(it)) {
        return None;
    }
    let mut res: Vec<String> = objects
        .iter()
        .filter(|object| {
            let get = |name: &str| match &object[name] {
                Value::String(it) => Some(Field::Str(it.as_str())),
                Value::Bool(it) => Some(Field::Bool(*it)),
                Value::Null => Some(Field::Null),
                _ => None,
            };
            matches(&expr, &get)
        })
        .filter_map(|it| it["id"].as_str().map(str::to_owned))
        .collect();
    res.sort();
    Some(res)
}

async fn get(app: &TestApp, path: &str, filter: &str, advanced: bool) -> (StatusCode, Value) {
    let mut url = reqwest::Url::parse(&format!("{}{path}", app.base_url)).expect("url");
    url.query_pairs_mut().append_pair("$filter", filter);
    if path.ends_with("/users") || path.ends_with("/groups") {
        url.query_pairs_mut().append_pair("$top", "999");
    }
    if advanced {
        url.query_pairs_mut().append_pair("$count", "true");
    }
    let headers: &[(&str, &str)] = if advanced { &[("ConsistencyLevel", "eventual")] } else { &[] };
    let reply = app.send(reqwest::Method::GET, url.as_str(), Some(&app.admin_token), None, headers).await;
    (reply.status, reply.body)
}

fn ids(body: &Value) -> Vec<String> {
    let mut res: Vec<String> = body["value"]
        .as_array()
        .map(|it| it.iter().filter_map(|it| it["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    res.sort();
    res
}

async fn filters_never_fail_and_agree_with_the_evaluator(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (alias, name, job, department, enabled) in [
        ("adele", "Adele Vance", "Retail Manager", "Sales", true),
        ("alex", "Alex Wilber", "Marketing Assistant", "Marketing", true),
        ("megan", "Megan Bowen", "Auditor", "Finance", false),
        ("lee", "Lee Gu", "Director", "Engineering", true),
        ("o'neil", "Ann O'Neil", "Engineer", "Engineering", true),
    ] {
        let body = json!({
            "accountEnabled": enabled, "displayName": name, "mailNickname": alias.replace('\'', ""),
            "userPrincipalName": format!("{}@{DOMAIN}", alias.replace('\'', "")),
            "jobTitle": job, "department": department, "givenName": name.split(' ').next(),
            "mail": format!("{}@{DOMAIN}", alias.replace('\'', "")), "mobilePhone": "+1 555 0100",
            "passwordProfile": {"password": "Tq7-harbour-Lantern-92!"},
        });
        assert_eq!(app.post("/v1.0/users", &body).await.status, StatusCode::CREATED);
    }
    for (name, assignable) in [("Sales Team", false), ("Helpdesk Team", true), ("Finance", false)] {
        let body = json!({"displayName": name, "mailEnabled": false, "mailNickname": name.replace(' ', ""),
            "securityEnabled": true, "isAssignableToRole": assignable, "description": format!("{name} group")});
        assert_eq!(app.post("/v1.0/groups", &body).await.status, StatusCode::CREATED);
    }
    let mut rng = Rng(0x6b65_7977_6172_6421);
    let collections: [(&str, &Resource, &str); 3] = [
        (
            "/beta/users",
            &query::USER,
            "$top=999&$select=id,displayName,givenName,surname,jobTitle,mail,mobilePhone,userPrincipalName,accountEnabled,department,mailNickname,usageLocation",
        ),
        ("/v1.0/groups", &query::GROUP, "$top=999"),
        ("/v1.0/roleManagement/directory/roleDefinitions", &query::ROLE_DEFINITION, ""),
    ];
    let mut compared = 0;
    for (path, resource, select) in collections {
        let all = app.get(&format!("{path}?{select}")).await;
        assert_eq!(all.status, StatusCode::OK, "{}", all.text);
        let objects = all.body["value"].as_array().expect("value").clone();
        for round in 0..120 {
            let filter = clause(&mut rng, resource, &objects, 2);
            let advanced = rng.chance(50);
            let (status, body) = get(&app, path, &filter, advanced).await;
            assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{path} $filter={filter} (advanced: {advanced}, round {round}) answered {status}: {body}"
            );
            if status == StatusCode::BAD_REQUEST {
                let code = body["error"]["code"].as_str().unwrap_or_default();
                assert!(code == "Request_BadRequest" || code == "Request_UnsupportedQuery", "{filter}: {body}");
                continue;
            }
            if advanced && let Some(expected) = evaluate(&filter, resource, &objects) {
                assert_eq!(ids(&body), expected, "{path} $filter={filter}");
                compared += 1;
            }
        }
    }
    assert!(compared > 30, "only {compared} answers were compared with the evaluator");

    // The logs' filters take property names in any casing too.
    for filter in [
        "activitydisplayname eq 'Add user'",
        "ActivityDisplayName eq 'Add user' and RESULT eq 'success'",
        "startswith(activityDisplayName,'Add')",
        "targetresources/any(t:t/ID eq '00000000-0000-0000-0000-000000000000')",
        "initiatedby/user/userprincipalname eq 'admin@contoso.test'",
    ] {
        let (status, body) = get(&app, "/v1.0/auditLogs/directoryAudits", filter, false).await;
        assert_eq!(status, StatusCode::OK, "{filter}: {body}");
    }
    let (status, body) = get(&app, "/v1.0/auditLogs/directoryAudits", "activitydisplayname eq 'Add user'", false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!ids(&body).is_empty(), "a lowercase property name finds the records: {body}");
    for filter in ["userprincipalname eq 'x@y.z'", "STATUS/ERRORCODE eq 0", "startswith(UserPrincipalName,'a')"] {
        let (status, body) = get(&app, "/v1.0/auditLogs/signIns", filter, false).await;
        assert_eq!(status, StatusCode::OK, "{filter}: {body}");
    }
    let (status, body) = get(
        &app,
        "/v1.0/roleManagement/directory/roleAssignments",
        "PrincipalID eq '00000000-0000-0000-0000-000000000000'",
        false,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

keyward_testkit::on_both_backends!(filters_never_fail_and_agree_with_the_evaluator);
