//! The stored form of a sign-in record: one JSON document per record.

use keyward_core::ids::ObjectId;
use keyward_core::signin::{AuthenticationDetail, SignInRecord};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::sql::{fmt_ts, parse_ts};

/// The record as stored. What the row's own columns hold (the id, the tenant, the time, the user
/// and the error code) is not repeated here: it is read back from them. Records written before
/// that was so (before schema 35, which changed no table) still carry those fields, which reading
/// ignores. Empty and default values are left out too: a client-credentials entry's JSON is 360
/// bytes, against 678 before. The sign-in log's filters read some fields from the JSON: those
/// compared in a way a missing key would change (`is_multi_factor`, compared with `<>`) or that
/// always have a value (`correlation_id`, `client_app_used`, `app_display_name`) are always
/// written; an optional text left out (`ip_address`, `user_display_name`) reads as SQL's NULL
/// there, as JSON's `null` did, and matches no `=` or `startswith`.
#[derive(Serialize, Deserialize)]
struct Row {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    user_principal_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_display_name: Option<String>,
    app_id: String,
    app_display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip_address: Option<String>,
    correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
    is_multi_factor: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    requirement_policies: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    details: Vec<DetailRow>,
    /// Absent in records written before it was kept: the sign-in pages were the only path.
    #[serde(default = "browser")]
    client_app_used: String,
    #[serde(default = "interactive")]
    is_interactive: bool,
    /// The fields below are absent in records written before they were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_principal_id: Option<String>,
    #[serde(default = "none", skip_serializing_if = "is_none")]
    protocol: String,
    #[serde(default = "none", skip_serializing_if = "is_none")]
    client_credential: String,
    #[serde(default = "none", skip_serializing_if = "is_none")]
    incoming_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
}

fn is_none(value: &str) -> bool {
    value == "none"
}

fn none() -> String {
    "none".to_owned()
}

fn browser() -> String {
    keyward_core::signin::CLIENT_APP_BROWSER.to_owned()
}

fn interactive() -> bool {
    true
}

#[derive(Serialize, Deserialize)]
struct DetailRow {
    at: String,
    method: String,
    succeeded: bool,
    result_detail: String,
}

/// A sign-in log entry's columns in `sign_ins`, as every writer stores them: the indexed columns
/// (sign-in names and application ids lowercased) and the record itself.
pub(crate) struct Columns {
    pub(crate) id: String,
    pub(crate) tenant_id: String,
    pub(crate) created_at: String,
    pub(crate) user_id: Option<String>,
    pub(crate) upn_lc: String,
    pub(crate) app_id: String,
    pub(crate) error_code: i64,
    pub(crate) record: String,
    pub(crate) event_type: &'static str,
}

pub(crate) fn columns(record: &SignInRecord) -> Result<Columns, StoreError> {
    Ok(Columns {
        id: record.id.clone(),
        tenant_id: record.tenant_id.to_string(),
        created_at: fmt_ts(record.created),
        user_id: record.user_id.as_ref().map(ObjectId::to_string),
        upn_lc: record.user_principal_name.to_lowercase(),
        app_id: record.app_id.to_lowercase(),
        error_code: i64::from(record.error_code),
        record: to_json(record)?,
        event_type: record.event_type().as_str(),
    })
}

pub(crate) fn to_json(record: &SignInRecord) -> Result<String, StoreError> {
    let row = Row {
        user_principal_name: record.user_principal_name.clone(),
        user_display_name: record.user_display_name.clone(),
        app_id: record.app_id.clone(),
        app_display_name: record.app_display_name.clone(),
        ip_address: record.ip_address.clone(),
        correlation_id: record.correlation_id.clone(),
        failure_reason: record.failure_reason.clone(),
        is_multi_factor: record.is_multi_factor,
        requirement_policies: record.requirement_policies.clone(),
        details: record
            .details
            .iter()
            .map(|it| DetailRow {
                at: fmt_ts(it.at),
                method: it.method.clone(),
                succeeded: it.succeeded,
                result_detail: it.result_detail.clone(),
            })
            .collect(),
        client_app_used: record.client_app_used.clone(),
        is_interactive: record.is_interactive,
        service_principal_id: record.service_principal_id.clone(),
        protocol: record.protocol.clone(),
        client_credential: record.client_credential.clone(),
        incoming_token: record.incoming_token.clone(),
        user_agent: record.user_agent.clone(),
    };
    serde_json::to_string(&row).map_err(|err| StoreError::Other(format!("encoding a sign-in record: {err}")))
}

/// The columns a sign-in record is read back with, besides its JSON (`Row`).
pub(crate) struct Stored {
    pub(crate) id: String,
    pub(crate) tenant_id: String,
    pub(crate) created_at: String,
    pub(crate) user_id: Option<String>,
    pub(crate) error_code: i64,
    pub(crate) record: String,
}

/// `SELECT`s these columns of `sign_ins` (aliased `s`) in `Stored`'s order, for `from_stored`.
pub(crate) const STORED_COLUMNS: &str = "s.id, s.tenant_id, s.created_at, s.user_id, s.error_code, s.record";

pub(crate) fn from_stored(stored: Stored) -> Result<SignInRecord, StoreError> {
    let row: Row = serde_json::from_str(&stored.record)
        .map_err(|err| StoreError::Other(format!("corrupt sign-in record: {err}")))?;
    let oid = |raw: &str| {
        ObjectId::parse(raw).ok_or_else(|| StoreError::Other(format!("corrupt object id '{raw}' in a sign-in record")))
    };
    let error_code = i32::try_from(stored.error_code)
        .map_err(|_| StoreError::Other(format!("corrupt error code {} in a sign-in record", stored.error_code)))?;
    Ok(SignInRecord {
        id: stored.id,
        tenant_id: oid(&stored.tenant_id)?,
        created: parse_ts(&stored.created_at)?,
        user_id: stored.user_id.as_deref().map(oid).transpose()?,
        user_principal_name: row.user_principal_name,
        user_display_name: row.user_display_name,
        app_id: row.app_id,
        app_display_name: row.app_display_name,
        ip_address: row.ip_address,
        correlation_id: row.correlation_id,
        error_code,
        failure_reason: row.failure_reason,
        is_multi_factor: row.is_multi_factor,
        requirement_policies: row.requirement_policies,
        details: row
            .details
            .into_iter()
            .map(|it| {
                Ok(AuthenticationDetail {
                    at: parse_ts(&it.at)?,
                    method: it.method,
                    succeeded: it.succeeded,
                    result_detail: it.result_detail,
                })
            })
            .collect::<Result<_, StoreError>>()?,
        client_app_used: row.client_app_used,
        is_interactive: row.is_interactive,
        service_principal_id: row.service_principal_id,
        protocol: row.protocol,
        client_credential: row.client_credential,
        incoming_token: row.incoming_token,
        user_agent: row.user_agent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn stored(record: &SignInRecord, json: String) -> Stored {
        let columns = columns(record).expect("columns");
        Stored {
            id: columns.id,
            tenant_id: columns.tenant_id,
            created_at: columns.created_at,
            user_id: columns.user_id,
            error_code: columns.error_code,
            record: json,
        }
    }

    fn application_sign_in() -> SignInRecord {
        SignInRecord {
            id: "01a24d62-ecd9-7515-b14b-f4a9b580031a".into(),
            tenant_id: ObjectId::parse("bad89b7b-a0d1-4b3b-8695-0055e325c09d").expect("id"),
            created: datetime!(2026-12-06 22:04:18.521226 UTC),
            user_id: None,
            user_principal_name: String::new(),
            user_display_name: None,
            app_id: "7172C7F6-0f5a-4f0b-9a1f-5b2f5133a1ba".into(),
            app_display_name: "Bench daemon".into(),
            ip_address: Some("127.0.0.1".into()),
            correlation_id: "c3666360-2067-42ac-a27a-5892a0dfe601".into(),
            error_code: 0,
            failure_reason: None,
            is_multi_factor: false,
            requirement_policies: Vec::new(),
            details: Vec::new(),
            client_app_used: "Mobile Apps and Desktop clients".into(),
            is_interactive: false,
            service_principal_id: Some("13145f9c-2be2-4c43-b17e-8f204e6a3e62".into()),
            protocol: "none".into(),
            client_credential: "clientSecret".into(),
            incoming_token: "none".into(),
            user_agent: None,
        }
    }

    fn user_sign_in() -> SignInRecord {
        SignInRecord {
            id: "01a24d62-ecd9-7515-b14b-f4a9b580031b".into(),
            user_id: Some(ObjectId::parse("5ad00000-0000-4000-8000-000000000001").expect("id")),
            user_principal_name: "Adele@Contoso.test".into(),
            user_display_name: Some("Adele Vance".into()),
            app_id: "c44b4083-3bb0-49c1-b47d-974e53cbdf3c".into(),
            app_display_name: "Keyward portal".into(),
            error_code: 50126,
            failure_reason: Some("Invalid username or password.".into()),
            is_multi_factor: true,
            requirement_policies: vec!["multiFactorAuthentication".into()],
            details: vec![AuthenticationDetail {
                at: datetime!(2026-12-06 22:04:17.5 UTC),
                method: "Password".into(),
                succeeded: false,
                result_detail: "Invalid username or password.".into(),
            }],
            client_app_used: "Browser".into(),
            is_interactive: true,
            service_principal_id: None,
            protocol: "ropc".into(),
            client_credential: "none".into(),
            incoming_token: "refreshToken".into(),
            user_agent: Some("Mozilla/5.0".into()),
            ..application_sign_in()
        }
    }

    #[test]
    fn records_read_back_whole_from_their_json_and_columns() {
        for record in [application_sign_in(), user_sign_in()] {
            let json = to_json(&record).expect("json");
            let read = from_stored(stored(&record, json)).expect("read");
            assert_eq!(read, record);
        }
    }

    #[test]
    fn the_json_leaves_out_what_the_columns_hold_and_what_is_empty() {
        let json = to_json(&application_sign_in()).expect("json");
        let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json).expect("object");
        for left_out in [
            "id",
            "tenant_id",
            "created",
            "user_id",
            "error_code",
            "user_principal_name",
            "user_display_name",
            "failure_reason",
            "requirement_policies",
            "details",
            "protocol",
            "incoming_token",
            "user_agent",
        ] {
            assert!(!fields.contains_key(left_out), "{left_out} in {json}");
        }
        // What the sign-in log's filters read from the JSON is always there.
        for kept in ["correlation_id", "client_app_used", "is_multi_factor", "app_display_name", "ip_address"] {
            assert!(fields.contains_key(kept), "{kept} missing from {json}");
        }
        assert!(json.len() <= 360, "{} bytes: {json}", json.len());
    }

    #[test]
    fn a_record_written_whole_as_before_still_reads_back() {
        // As Keyward wrote records before schema 35: every field, the columns' ones included.
        let old = r#"{"id":"01a24d62-ecd9-7515-b14b-f4a9b580031b","tenant_id":"bad89b7b-a0d1-4b3b-8695-0055e325c09d","created":"2026-12-06T22:04:18.521226Z","user_id":"5ad00000-0000-4000-8000-000000000001","user_principal_name":"Adele@Contoso.test","user_display_name":"Adele Vance","app_id":"c44b4083-3bb0-49c1-b47d-974e53cbdf3c","app_display_name":"Keyward portal","ip_address":"127.0.0.1","correlation_id":"c3666360-2067-42ac-a27a-5892a0dfe601","error_code":50126,"failure_reason":"Invalid username or password.","is_multi_factor":true,"requirement_policies":["multiFactorAuthentication"],"details":[{"at":"2026-12-06T22:04:17.500000Z","method":"Password","succeeded":false,"result_detail":"Invalid username or password."}],"client_app_used":"Browser","is_interactive":true,"protocol":"ropc","client_credential":"none","incoming_token":"refreshToken","user_agent":"Mozilla/5.0"}"#;
        let record = user_sign_in();
        let read = from_stored(stored(&record, old.to_owned())).expect("read");
        assert_eq!(read, record);
        // And the oldest, from before the grants' fields were kept: their defaults.
        let oldest = r#"{"id":"x","tenant_id":"bad89b7b-a0d1-4b3b-8695-0055e325c09d","created":"2026-12-06T22:04:18.521226Z","user_id":null,"user_principal_name":"a@contoso.test","user_display_name":null,"app_id":"c44b4083-3bb0-49c1-b47d-974e53cbdf3c","app_display_name":"Keyward portal","ip_address":null,"correlation_id":"c","error_code":0,"failure_reason":null,"is_multi_factor":false,"requirement_policies":[],"details":[]}"#;
        let read = from_stored(stored(&application_sign_in(), oldest.to_owned())).expect("read");
        assert_eq!(
            (read.client_app_used.as_str(), read.is_interactive, read.protocol.as_str()),
            ("Browser", true, "none")
        );
        assert_eq!(read.id, application_sign_in().id, "the id is the column's");
    }
}
