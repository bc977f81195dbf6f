//! The stored form of an audit record: one JSON document per record.

use keyward_core::audit::{AuditRecord, AuditResult, Initiator, TargetResource};
use keyward_core::directory::PropertyChange;
use keyward_core::ids::ObjectId;
use serde::{Deserialize, Serialize};

use crate::AuditCursor;
use crate::error::StoreError;
use crate::sql::{fmt_ts, parse_ts};

#[derive(Serialize, Deserialize)]
struct Row {
    id: String,
    /// Absent only in a copy written by schema 8 (see [`copy_json`]), whose row holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
    correlation_id: String,
    /// Absent only in a schema 8 copy, like `tenant_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    activity_date_time: Option<String>,
    logged_by_service: String,
    category: String,
    activity_display_name: String,
    operation_type: String,
    result: String,
    result_reason: String,
    #[serde(deserialize_with = "initiator")]
    initiated_by: InitiatorRow,
    target_resources: Vec<TargetRow>,
    additional_details: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind")]
enum InitiatorRow {
    User { id: String, display_name: String, user_principal_name: String, ip_address: Option<String> },
    App { app_id: String, display_name: String, service_principal_id: Option<String> },
}

/// The initiator read as one flat object: the same JSON as the tagged [`InitiatorRow`], without
/// serde's buffering of internally tagged enums (a third of the decoding time of a record).
#[derive(Deserialize)]
struct InitiatorFields {
    kind: String,
    id: Option<String>,
    app_id: Option<String>,
    display_name: String,
    user_principal_name: Option<String>,
    ip_address: Option<String>,
    service_principal_id: Option<String>,
}

fn initiator<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<InitiatorRow, D::Error> {
    let it = InitiatorFields::deserialize(deserializer)?;
    let missing = |field| serde::de::Error::missing_field(field);
    match it.kind.as_str() {
        "User" => Ok(InitiatorRow::User {
            id: it.id.ok_or_else(|| missing("id"))?,
            display_name: it.display_name,
            user_principal_name: it.user_principal_name.ok_or_else(|| missing("user_principal_name"))?,
            ip_address: it.ip_address,
        }),
        "App" => Ok(InitiatorRow::App {
            app_id: it.app_id.ok_or_else(|| missing("app_id"))?,
            display_name: it.display_name,
            service_principal_id: it.service_principal_id,
        }),
        other => Err(serde::de::Error::unknown_variant(other, &["User", "App"])),
    }
}

#[derive(Serialize, Deserialize)]
struct TargetRow {
    id: String,
    display_name: Option<String>,
    kind: String,
    user_principal_name: Option<String>,
    modified_properties: Vec<(String, Option<String>, Option<String>)>,
}

/// The canonical stored form of a record (hashed into the chain).
pub(crate) fn to_json(record: &AuditRecord) -> String {
    // Serializing plain strings and vectors cannot fail.
    serde_json::to_string(&row(record)).unwrap_or_default()
}

/// A copy's fields by position: id, correlation id, logged by service, category, activity,
/// operation type, result, result reason, initiator, targets, additional details.
type CopyOf<S, I, T> = (S, S, S, S, S, S, S, S, I, Vec<T>, Vec<(S, S)>);
/// `["User", id, display name, UPN, IP address]` or `["App", app id, display name, service principal id, null]`.
type CopyInitiator<S> = (S, S, S, Option<S>, Option<S>);
/// `[id, display name, kind, UPN, [[name, old value, new value], ...]]`.
type CopyTarget<S> = (S, Option<S>, S, Option<S>, Vec<(S, Option<S>, Option<S>)>);

/// The copy of a record that an audit target or initiator row points at (SQLite): a JSON array of
/// the record's fields by position, without the tenant and time the row holds. About 55% of the
/// canonical form's length (its field names are most of it), so more of one target's or
/// initiator's records share a page. Schema 8 wrote copies as the canonical form without tenant
/// and time; [`page`] reads both.
pub(crate) fn copy_json(record: &AuditRecord) -> String {
    let initiator: CopyInitiator<&str> = match &record.initiated_by {
        Initiator::User { id, display_name, user_principal_name, ip_address } => {
            ("User", id.as_str(), display_name, Some(user_principal_name), ip_address.as_deref())
        }
        Initiator::App { app_id, display_name, service_principal_id } => {
            ("App", app_id, display_name, service_principal_id.as_ref().map(ObjectId::as_str), None)
        }
    };
    let targets: Vec<CopyTarget<&str>> = record
        .target_resources
        .iter()
        .map(|it| {
            (
                it.id.as_str(),
                it.display_name.as_deref(),
                it.kind,
                it.user_principal_name.as_deref(),
                it.modified_properties
                    .iter()
                    .map(|p| (p.name.as_str(), p.old_value.as_deref(), p.new_value.as_deref()))
                    .collect(),
            )
        })
        .collect();
    let copy: CopyOf<&str, CopyInitiator<&str>, CopyTarget<&str>> = (
        &record.id,
        &record.correlation_id,
        &record.logged_by_service,
        &record.category,
        &record.activity_display_name,
        &record.operation_type,
        record.result.as_str(),
        &record.result_reason,
        initiator,
        targets,
        record.additional_details.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
    );
    // Serializing plain strings and vectors cannot fail.
    serde_json::to_string(&copy).unwrap_or_default()
}

/// Whether `copy` (either format) reads back as `record`: what a query served from the copy would
/// show is the record itself.
pub(crate) fn is_copy_of(copy: &str, record: &AuditRecord) -> bool {
    decode(copy, Some((&record.tenant_id, &fmt_ts(record.activity_date_time)))).is_ok_and(|it| it == *record)
}

fn row(record: &AuditRecord) -> Row {
    Row {
        id: record.id.clone(),
        tenant_id: Some(record.tenant_id.to_string()),
        correlation_id: record.correlation_id.clone(),
        activity_date_time: Some(fmt_ts(record.activity_date_time)),
        logged_by_service: record.logged_by_service.clone(),
        category: record.category.clone(),
        activity_display_name: record.activity_display_name.clone(),
        operation_type: record.operation_type.clone(),
        result: record.result.as_str().to_owned(),
        result_reason: record.result_reason.clone(),
        initiated_by: match &record.initiated_by {
            Initiator::User { id, display_name, user_principal_name, ip_address } => InitiatorRow::User {
                id: id.to_string(),
                display_name: display_name.clone(),
                user_principal_name: user_principal_name.clone(),
                ip_address: ip_address.clone(),
            },
            Initiator::App { app_id, display_name, service_principal_id } => InitiatorRow::App {
                app_id: app_id.clone(),
                display_name: display_name.clone(),
                service_principal_id: service_principal_id.as_ref().map(ToString::to_string),
            },
        },
        target_resources: record
            .target_resources
            .iter()
            .map(|it| TargetRow {
                id: it.id.to_string(),
                display_name: it.display_name.clone(),
                kind: it.kind.to_owned(),
                user_principal_name: it.user_principal_name.clone(),
                modified_properties: it
                    .modified_properties
                    .iter()
                    .map(|p| (p.name.clone(), p.old_value.clone(), p.new_value.clone()))
                    .collect(),
            })
            .collect(),
        additional_details: record.additional_details.clone(),
    }
}

/// A page of records packed into one string by SQLite's `group_concat`: records separated by
/// U+001E, each `seq U+001F activityDateTime U+001F record`. JSON escapes every control
/// character, so neither separator can occur inside a record. Sorted here, because an aggregate's
/// input order is not guaranteed.
///
/// With `copies_of`, the records are target or initiator rows' copies of that tenant's records
/// (see [`copy_json`]), and take their tenant and time from it and from the packed time.
pub(crate) fn page(
    packed: &str,
    is_ascending: bool,
    copies_of: Option<&ObjectId>,
) -> Result<Vec<(AuditCursor, AuditRecord)>, StoreError> {
    let corrupt = || StoreError::Other("corrupt audit page".into());
    let mut records = packed
        .split('\u{1e}')
        .filter(|it| !it.is_empty())
        .map(|item| {
            let mut parts = item.splitn(3, '\u{1f}');
            let seq = parts.next().and_then(|it| it.parse::<i64>().ok()).ok_or_else(corrupt)?;
            let activity_date_time = parts.next().ok_or_else(corrupt)?.to_owned();
            let text = parts.next().ok_or_else(corrupt)?;
            let record = match copies_of {
                Some(tenant) => decode(text, Some((tenant, &activity_date_time)))?,
                None => from_json(text)?,
            };
            Ok((AuditCursor { activity_date_time, seq }, record))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    records.sort_by(|(a, _), (b, _)| {
        let order = (&a.activity_date_time, a.seq).cmp(&(&b.activity_date_time, b.seq));
        if is_ascending { order } else { order.reverse() }
    });
    Ok(records)
}

pub(crate) fn from_json(text: &str) -> Result<AuditRecord, StoreError> {
    decode(text, None)
}

/// Decodes a canonical record, or with `key` (tenant, time) a copy in either format.
fn decode(text: &str, key: Option<(&ObjectId, &str)>) -> Result<AuditRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Other(format!("corrupt audit record: {what}"));
    let row: Row = if key.is_some() && text.starts_with('[') {
        row_of_copy(text).map_err(|err| corrupt(&err))?
    } else {
        serde_json::from_str(text).map_err(|err| corrupt(&err.to_string()))?
    };
    let id = |raw: &str| ObjectId::parse(raw).ok_or_else(|| corrupt(raw));
    let (tenant_id, activity_date_time) = match (key, row.tenant_id, row.activity_date_time) {
        (None, Some(tenant), Some(at)) => (id(&tenant)?, parse_ts(&at)?),
        (Some((tenant, at)), None, None) => (tenant.clone(), parse_ts(at)?),
        _ => return Err(corrupt("tenant or time missing, or present in a copy")),
    };
    Ok(AuditRecord {
        id: row.id,
        tenant_id,
        correlation_id: row.correlation_id,
        activity_date_time,
        logged_by_service: row.logged_by_service,
        category: row.category,
        activity_display_name: row.activity_display_name,
        operation_type: row.operation_type,
        result: if row.result == "success" { AuditResult::Success } else { AuditResult::Failure },
        result_reason: row.result_reason,
        initiated_by: match row.initiated_by {
            InitiatorRow::User { id: user_id, display_name, user_principal_name, ip_address } => {
                Initiator::User { id: id(&user_id)?, display_name, user_principal_name, ip_address }
            }
            InitiatorRow::App { app_id, display_name, service_principal_id } => Initiator::App {
                app_id,
                display_name,
                service_principal_id: service_principal_id.as_deref().map(id).transpose()?,
            },
        },
        target_resources: row
            .target_resources
            .into_iter()
            .map(|it| {
                Ok(TargetResource {
                    id: id(&it.id)?,
                    display_name: it.display_name,
                    kind: target_kind(&it.kind),
                    user_principal_name: it.user_principal_name,
                    modified_properties: it
                        .modified_properties
                        .into_iter()
                        .map(|(name, old_value, new_value)| PropertyChange { name, old_value, new_value })
                        .collect(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?,
        additional_details: row.additional_details,
    })
}

/// Reads a copy in the positional format of [`copy_json`] as the [`Row`] it holds (without
/// tenant and time, like a schema 8 copy), for [`decode`] to finish.
fn row_of_copy(text: &str) -> Result<Row, String> {
    let (
        id,
        correlation_id,
        logged_by_service,
        category,
        activity_display_name,
        operation_type,
        result,
        result_reason,
        (kind, initiator_id, display_name, third, fourth),
        targets,
        additional_details,
    ): CopyOf<String, CopyInitiator<String>, CopyTarget<String>> =
        serde_json::from_str(text).map_err(|err| err.to_string())?;
    let initiated_by = match kind.as_str() {
        "User" => InitiatorRow::User {
            id: initiator_id,
            display_name,
            user_principal_name: third.ok_or("a user initiator without a userPrincipalName")?,
            ip_address: fourth,
        },
        "App" if fourth.is_none() => {
            InitiatorRow::App { app_id: initiator_id, display_name, service_principal_id: third }
        }
        other => return Err(format!("initiator kind {other}")),
    };
    Ok(Row {
        id,
        tenant_id: None,
        correlation_id,
        activity_date_time: None,
        logged_by_service,
        category,
        activity_display_name,
        operation_type,
        result,
        result_reason,
        initiated_by,
        target_resources: targets
            .into_iter()
            .map(|(id, display_name, kind, user_principal_name, modified_properties)| TargetRow {
                id,
                display_name,
                kind,
                user_principal_name,
                modified_properties,
            })
            .collect(),
        additional_details,
    })
}

fn target_kind(raw: &str) -> &'static str {
    match raw {
        "User" => "User",
        "Group" => "Group",
        "Role" => "Role",
        "Policy" => "Policy",
        "ServicePrincipal" => "ServicePrincipal",
        "Application" => "Application",
        "Directory" => "Directory",
        _ => "Other",
    }
}

/// The indexed columns of an audit record, derived from the record; written on insert and compared
/// with what is stored when the chain is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Columns {
    pub activity_date_time: String,
    pub correlation_id: String,
    pub category: String,
    pub activity_display_name: String,
    pub activity_display_name_lc: String,
    pub logged_by_service: String,
    pub result: String,
    pub initiator_id: Option<String>,
    pub initiator_upn_lc: Option<String>,
    pub initiator_app_id: Option<String>,
    /// `(target id, lower-cased UPN)`, each target once, sorted.
    pub targets: Vec<(String, Option<String>)>,
}

pub(crate) fn columns(record: &AuditRecord) -> Columns {
    let (initiator_id, initiator_upn_lc, initiator_app_id) = match &record.initiated_by {
        Initiator::User { id, user_principal_name, .. } => {
            (Some(id.to_string()), Some(user_principal_name.to_lowercase()), None)
        }
        Initiator::App { app_id, service_principal_id, .. } => {
            (service_principal_id.as_ref().map(ToString::to_string), None, Some(app_id.to_lowercase()))
        }
    };
    let mut targets: Vec<(String, Option<String>)> = Vec::with_capacity(record.target_resources.len());
    for target in &record.target_resources {
        if !targets.iter().any(|(id, _)| id == target.id.as_str()) {
            targets.push((target.id.to_string(), target.user_principal_name.as_ref().map(|it| it.to_lowercase())));
        }
    }
    targets.sort();
    Columns {
        activity_date_time: fmt_ts(record.activity_date_time),
        correlation_id: record.correlation_id.to_lowercase(),
        category: record.category.clone(),
        activity_display_name: record.activity_display_name.clone(),
        activity_display_name_lc: record.activity_display_name.to_lowercase(),
        logged_by_service: record.logged_by_service.clone(),
        result: record.result.as_str().to_owned(),
        initiator_id,
        initiator_upn_lc,
        initiator_app_id,
        targets,
    }
}

#[cfg(test)]
mod tests {
    use keyward_core::audit::{Activity, AuditContext};
    use time::macros::datetime;

    use super::*;

    fn record(id: &str, seconds: i64, initiated_by: Initiator) -> AuditRecord {
        let context = AuditContext {
            tenant_id: ObjectId::parse("0be9c1a2-0000-4000-8000-00000000b001").expect("id"),
            correlation_id: "c0rre1a7-0000-4000-8000-000000000001".into(),
            at: datetime!(2026-11-26 10:00 UTC) + time::Duration::seconds(seconds),
            initiated_by,
        };
        let target = TargetResource {
            id: ObjectId::parse("000000a5-0000-4000-8000-000000000007").expect("id"),
            display_name: Some("Adele \"AV\" Vance\u{1e}".into()),
            kind: "User",
            user_principal_name: Some("adele@contoso.test".into()),
            modified_properties: vec![PropertyChange::new("JobTitle", "[\"Analyst\"]", "[\"Lead\"]")],
        };
        context.failure(
            id.into(),
            Activity::UpdateUser,
            vec![target],
            "Insufficient privileges to complete the operation.",
        )
    }

    fn user() -> Initiator {
        Initiator::User {
            id: ObjectId::parse("000000ad-0000-4000-8000-000000000001").expect("id"),
            display_name: "Admin".into(),
            user_principal_name: "admin@contoso.test".into(),
            ip_address: None,
        }
    }

    fn app(service_principal: Option<&str>) -> Initiator {
        Initiator::App {
            app_id: "keyward-cli".into(),
            display_name: "Keyward CLI".into(),
            service_principal_id: service_principal.map(|it| ObjectId::parse(it).expect("id")),
        }
    }

    #[test]
    fn records_read_back_as_written_whoever_initiated_them() {
        for initiated_by in [user(), app(None), app(Some("000000b0-0000-4000-8000-000000000002"))] {
            let written = record("Directory_1", 0, initiated_by);
            assert_eq!(from_json(&to_json(&written)).expect("decodes"), written);
        }
        let unknown = to_json(&record("Directory_1", 0, user())).replace("\"kind\":\"User\"", "\"kind\":\"Robot\"");
        assert!(from_json(&unknown).is_err());
        let no_upn =
            to_json(&record("Directory_1", 0, user())).replace("\"user_principal_name\":\"admin@contoso.test\",", "");
        assert!(from_json(&no_upn).is_err(), "a user initiator needs its userPrincipalName");
    }

    #[test]
    fn a_packed_page_is_split_and_sorted_whatever_order_it_came_in() {
        let records =
            [record("Directory_a", 5, user()), record("Directory_b", 5, app(None)), record("Directory_c", 9, user())];
        let item =
            |seq: i64, it: &AuditRecord| format!("{seq}\u{1f}{}\u{1f}{}", fmt_ts(it.activity_date_time), to_json(it));
        let packed = [item(3, &records[2]), item(1, &records[0]), item(2, &records[1])].join("\u{1e}");
        let ids = |page: Vec<(AuditCursor, AuditRecord)>| page.into_iter().map(|(_, it)| it.id).collect::<Vec<_>>();
        assert_eq!(ids(page(&packed, false, None).expect("page")), ["Directory_c", "Directory_b", "Directory_a"]);
        assert_eq!(ids(page(&packed, true, None).expect("page")), ["Directory_a", "Directory_b", "Directory_c"]);
        assert!(page("", true, None).expect("empty").is_empty());
        assert!(page("x\u{1f}y", true, None).is_err());
    }

    #[test]
    fn a_copy_leaves_out_what_its_row_holds_and_reads_back_whole() {
        for initiated_by in [user(), app(None), app(Some("000000b0-0000-4000-8000-000000000002"))] {
            let written = record("Directory_1", 7, initiated_by);
            let (canonical, copy) = (to_json(&written), copy_json(&written));
            assert!(copy.starts_with('[') && !copy.contains(written.tenant_id.as_str()), "{copy}");
            assert!(copy.len() * 10 < canonical.len() * 7, "{} against {}", copy.len(), canonical.len());
            let at = fmt_ts(written.activity_date_time);
            assert!(!copy.contains(&at), "{copy}");
            let packed = format!("1\u{1f}{at}\u{1f}{copy}");
            let read = page(&packed, false, Some(&written.tenant_id)).expect("copies decode");
            assert_eq!(read[0].1, written);
            assert!(page(&packed, false, None).is_err(), "a copy is not a record");
            let as_copy = format!("1\u{1f}{at}\u{1f}{canonical}");
            assert!(page(&as_copy, false, Some(&written.tenant_id)).is_err(), "a record is not a copy");
            assert!(is_copy_of(&copy, &written));
            assert!(!is_copy_of(&copy.replace("Adele", "Eve"), &written), "an edited target");
            let initiator =
                if matches!(written.initiated_by, Initiator::User { .. }) { "Admin" } else { "Keyward CLI" };
            assert!(!is_copy_of(&copy.replace(initiator, "Nobody"), &written), "an edited initiator");
            assert!(!is_copy_of(&canonical, &written), "the tenant and time do not belong in a copy");
            assert!(!is_copy_of("not json", &written));
            assert!(!is_copy_of("[1, 2]", &written));
        }
    }

    #[test]
    fn a_copy_written_by_schema_8_still_reads_back_whole() {
        // Schema 8 kept the canonical form without tenant and time, formatted by serde or, in its
        // migration, by SQLite's json_remove.
        let written = record("Directory_1", 7, user());
        let mut old = serde_json::from_str::<serde_json::Value>(&to_json(&written)).expect("json");
        let fields = old.as_object_mut().expect("object");
        fields.shift_remove("tenant_id");
        fields.shift_remove("activity_date_time");
        let old = serde_json::to_string(&old).expect("json");
        let at = fmt_ts(written.activity_date_time);
        let read = page(&format!("1\u{1f}{at}\u{1f}{old}"), false, Some(&written.tenant_id)).expect("decodes");
        assert_eq!(read[0].1, written);
        assert!(is_copy_of(&old, &written));
        assert!(is_copy_of(&old.replace("\":", "\": ").replace(",\"", ", \""), &written), "formatted differently");
        assert!(!is_copy_of(&old.replace("Admin", "Nobody"), &written));
    }

    /// The canonical form is what the audit chain hashes: a stored record must read back, and a
    /// new one be written, byte for byte as before. Strings with escapes (quotes, control
    /// characters, JSON in a property's value) read back as well as those borrowed whole.
    #[test]
    fn the_canonical_form_is_unchanged_and_escapes_read_back() {
        let mut written = record("Directory_1", 0, user());
        written.additional_details = vec![("User-Agent".into(), "curl/8 \"x\"\n".into())];
        let canonical = to_json(&written);
        assert_eq!(
            canonical,
            r#"{"id":"Directory_1","tenant_id":"0be9c1a2-0000-4000-8000-00000000b001","correlation_id":"c0rre1a7-0000-4000-8000-000000000001","activity_date_time":"2026-11-26T10:00:00.000000Z","logged_by_service":"Core Directory","category":"UserManagement","activity_display_name":"Update user","operation_type":"Update","result":"failure","result_reason":"Insufficient privileges to complete the operation.","initiated_by":{"kind":"User","id":"000000ad-0000-4000-8000-000000000001","display_name":"Admin","user_principal_name":"admin@contoso.test","ip_address":null},"target_resources":[{"id":"000000a5-0000-4000-8000-000000000007","display_name":"Adele \"AV\" Vance\u001e","kind":"User","user_principal_name":"adele@contoso.test","modified_properties":[["JobTitle","[\"Analyst\"]","[\"Lead\"]"]]}],"additional_details":[["User-Agent","curl/8 \"x\"\n"]]}"#
        );
        assert_eq!(from_json(&canonical).expect("decodes"), written);
        let at = fmt_ts(written.activity_date_time);
        let read = page(&format!("1\u{1f}{at}\u{1f}{}", copy_json(&written)), false, Some(&written.tenant_id));
        assert_eq!(read.expect("decodes")[0].1, written);
    }
}
