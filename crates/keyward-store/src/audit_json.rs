//! The stored form of an audit record: one JSON document per record.

use keyward_core::audit::{AuditRecord, AuditResult, Initiator, TargetResource};
use keyward_core::directory::PropertyChange;
use keyward_core::ids::ObjectId;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::sql::{fmt_ts, parse_ts};

#[derive(Serialize, Deserialize)]
struct Row {
    id: String,
    tenant_id: String,
    correlation_id: String,
    activity_date_time: String,
    logged_by_service: String,
    category: String,
    activity_display_name: String,
    operation_type: String,
    result: String,
    result_reason: String,
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

#[derive(Serialize, Deserialize)]
struct TargetRow {
    id: String,
    display_name: Option<String>,
    kind: String,
    user_principal_name: Option<String>,
    modified_properties: Vec<(String, Option<String>, Option<String>)>,
}

pub(crate) fn to_json(record: &AuditRecord) -> String {
    let row = Row {
        id: record.id.clone(),
        tenant_id: record.tenant_id.to_string(),
        correlation_id: record.correlation_id.clone(),
        activity_date_time: fmt_ts(record.activity_date_time),
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
    };
    // Serializing plain strings and vectors cannot fail.
    serde_json::to_string(&row).unwrap_or_default()
}

pub(crate) fn from_json(text: &str) -> Result<AuditRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Other(format!("corrupt audit record: {what}"));
    let row: Row = serde_json::from_str(text).map_err(|err| corrupt(&err.to_string()))?;
    let id = |raw: &str| ObjectId::parse(raw).ok_or_else(|| corrupt(raw));
    Ok(AuditRecord {
        id: row.id,
        tenant_id: id(&row.tenant_id)?,
        correlation_id: row.correlation_id,
        activity_date_time: parse_ts(&row.activity_date_time)?,
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
