//! The stored form of a sign-in record: one JSON document per record.

use keyward_core::ids::ObjectId;
use keyward_core::signin::{AuthenticationDetail, SignInRecord};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::sql::{fmt_ts, parse_ts};

#[derive(Serialize, Deserialize)]
struct Row {
    id: String,
    tenant_id: String,
    created: String,
    user_id: Option<String>,
    user_principal_name: String,
    user_display_name: Option<String>,
    app_id: String,
    app_display_name: String,
    ip_address: Option<String>,
    correlation_id: String,
    error_code: i32,
    failure_reason: Option<String>,
    is_multi_factor: bool,
    requirement_policies: Vec<String>,
    details: Vec<DetailRow>,
    /// Absent in records written before it was kept: the sign-in pages were the only path.
    #[serde(default = "browser")]
    client_app_used: String,
    #[serde(default = "interactive")]
    is_interactive: bool,
    /// The fields below are absent in records written before they were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_principal_id: Option<String>,
    #[serde(default = "none")]
    protocol: String,
    #[serde(default = "none")]
    client_credential: String,
    #[serde(default = "none")]
    incoming_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
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
        id: record.id.clone(),
        tenant_id: record.tenant_id.to_string(),
        created: fmt_ts(record.created),
        user_id: record.user_id.as_ref().map(ToString::to_string),
        user_principal_name: record.user_principal_name.clone(),
        user_display_name: record.user_display_name.clone(),
        app_id: record.app_id.clone(),
        app_display_name: record.app_display_name.clone(),
        ip_address: record.ip_address.clone(),
        correlation_id: record.correlation_id.clone(),
        error_code: record.error_code,
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

pub(crate) fn from_json(text: &str) -> Result<SignInRecord, StoreError> {
    let row: Row =
        serde_json::from_str(text).map_err(|err| StoreError::Other(format!("corrupt sign-in record: {err}")))?;
    let oid = |raw: &str| {
        ObjectId::parse(raw).ok_or_else(|| StoreError::Other(format!("corrupt object id '{raw}' in a sign-in record")))
    };
    Ok(SignInRecord {
        id: row.id,
        tenant_id: oid(&row.tenant_id)?,
        created: parse_ts(&row.created)?,
        user_id: row.user_id.as_deref().map(oid).transpose()?,
        user_principal_name: row.user_principal_name,
        user_display_name: row.user_display_name,
        app_id: row.app_id,
        app_display_name: row.app_display_name,
        ip_address: row.ip_address,
        correlation_id: row.correlation_id,
        error_code: row.error_code,
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
