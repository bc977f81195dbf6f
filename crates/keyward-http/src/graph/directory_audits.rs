//! `/auditLogs/directoryAudits`: the audit log in Graph's `directoryAudit` shape.

use super::{Query, pick, select_suffix};
use crate::context::{GraphCtx, Version, collection, entity, rfc3339};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use keyward_app::AppError;
use keyward_core::audit::{AuditRecord, Initiator};
use keyward_core::audit_query;
use serde_json::{Value, json};

/// A record in v1.0's `directoryAudit` shape: `oldValue`/`newValue` are JSON text or null.
pub fn directory_audit(record: &AuditRecord) -> Value {
    directory_audit_in(record, Version::V1)
}

/// A record in `version`'s `directoryAudit` shape: beta's initiating user is an
/// `auditUserIdentity`, with the home tenant.
pub fn directory_audit_in(record: &AuditRecord, version: Version) -> Value {
    let initiated_by = match &record.initiated_by {
        Initiator::User { id, display_name, user_principal_name, ip_address } => {
            let mut user = json!({
                "id": id.as_str(), "displayName": display_name, "userPrincipalName": user_principal_name,
                "ipAddress": ip_address,
            });
            if version == Version::Beta {
                user["@odata.type"] = json!("#microsoft.graph.auditUserIdentity");
                user["homeTenantId"] = json!(record.tenant_id.as_str());
                user["homeTenantName"] = Value::Null;
            }
            json!({"user": user, "app": null})
        }
        Initiator::App { app_id, display_name, service_principal_id } => json!({
            "user": null,
            "app": {
                "appId": app_id, "displayName": display_name,
                "servicePrincipalId": service_principal_id.as_ref().map(|it| it.as_str()), "servicePrincipalName": display_name,
            },
        }),
    };
    let targets: Vec<Value> = record
        .target_resources
        .iter()
        .map(|it| {
            json!({
                "id": it.id.as_str(),
                "displayName": it.display_name,
                "type": it.kind,
                "userPrincipalName": it.user_principal_name,
                "groupType": null,
                "modifiedProperties": it.modified_properties.iter().map(|p| json!({
                    "displayName": p.name, "oldValue": p.old_value, "newValue": p.new_value,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "id": record.id,
        "category": record.category,
        "correlationId": record.correlation_id,
        "result": record.result.as_str(),
        "resultReason": record.result_reason,
        "activityDisplayName": record.activity_display_name,
        "activityDateTime": rfc3339(record.activity_date_time),
        "loggedByService": record.logged_by_service,
        "operationType": record.operation_type,
        "initiatedBy": initiated_by,
        "targetResources": targets,
        "additionalDetails": record.additional_details.iter().map(|(key, value)| json!({"key": key, "value": value})).collect::<Vec<_>>(),
    })
}

/// `GET /auditLogs/directoryAudits` — `microsoft.directory/auditLogs/allProperties/read`.
async fn list_audits(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    let plan = audit_query::plan(&query.raw).map_err(AppError::from)?;
    let page = ctx.state.app.list_audit(&ctx.caller, &plan).await?;
    let next = page.skiptoken.map(|token| query.next_link(&ctx.state.app.config().public_url, &path, &token));
    let select = plan.select.as_deref();
    let items: Vec<Value> = page.items.iter().map(|it| pick(directory_audit_in(it, ctx.version), select)).collect();
    let context = format!("{}/$metadata#auditLogs/directoryAudits{}", ctx.base(), select_suffix(select));
    Ok(collection(context, items, None, next))
}

/// `GET /auditLogs/directoryAudits/{id}`.
async fn get_audit(ctx: GraphCtx, Path(id): Path<String>, Query(query, _): Query) -> Result<Response, GraphError> {
    let select = audit_query::plan_one(&query.raw).map_err(AppError::from)?;
    let record = ctx.state.app.get_audit(&ctx.caller, &id).await?;
    let context =
        format!("{}/$metadata#auditLogs/directoryAudits{}/$entity", ctx.base(), select_suffix(select.as_deref()));
    Ok(entity(context, pick(directory_audit_in(&record, ctx.version), select.as_deref()), StatusCode::OK))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    api.route(
        "/auditLogs/directoryAudits",
        get(list_audits),
        Op::get(
            "auditLogs",
            "List audit records, newest first ($filter on id, activityDateTime, activityDisplayName, category, correlationId, loggedByService, result, initiatedBy/user/id, initiatedBy/user/userPrincipalName, initiatedBy/user/displayName, initiatedBy/app/appId, initiatedBy/app/displayName, targetResources/any; $select; $top up to 1000)",
            "microsoft.directory/auditLogs/allProperties/read",
            "DirectoryAuditCollection",
        )
        .pages_only().with_options(crate::context::QUERY_OPTIONS_ALL),
    ).route(
        "/auditLogs/directoryAudits/{id}",
        get(get_audit),
        Op::get("auditLogs", "Get an audit record", "microsoft.directory/auditLogs/allProperties/read", "DirectoryAudit").with_id().with_options(crate::context::QUERY_OPTIONS_ALL),
    )
}
