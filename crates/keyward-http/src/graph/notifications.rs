//! `/beta/keyward/notifications` (Keyward extension): the notification outbox, what was (or
//! will be) sent to users about changes to their security info and to administrators, with each
//! message's delivery state. Readable by whoever may read the audit log.

use super::{Query, allow_only, next_link};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::graph::shape::timestamp;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use keyward_app::OutboxMessage;
use serde_json::{Value, json};

const READ: &str = "microsoft.directory/auditLogs/allProperties/read";

fn message_json(it: &OutboxMessage) -> Value {
    let at = |value: Option<time::OffsetDateTime>| value.map(timestamp);
    json!({
        "id": it.id,
        "kind": it.kind,
        "userId": it.user_id.as_str(),
        "recipient": it.recipient,
        "subject": it.subject,
        "body": it.body,
        "correlationId": it.correlation_id,
        "createdDateTime": timestamp(it.created_at),
        "state": it.state,
        "attempts": it.attempts,
        "nextAttemptDateTime": at(it.next_attempt_at),
        "lastError": it.last_error,
        "sentDateTime": at(it.sent_at),
        "reportedDateTime": at(it.reported_at),
    })
}

/// `GET /beta/keyward/notifications` — `microsoft.directory/auditLogs/allProperties/read`;
/// newest first, `$filter=state eq '…'`, `$top`, paged.
async fn list(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$filter", "$top", "$skiptoken"])?;
    let raw = &query.raw;
    let page = ctx
        .state
        .app
        .list_notifications(&ctx.caller, raw.filter.as_deref(), raw.top.as_deref(), raw.skiptoken.as_deref())
        .await?;
    let items = page.items.iter().map(message_json).collect::<Vec<_>>();
    let context = format!("{}/$metadata#keyward/notifications", ctx.base());
    Ok(collection(context, items, None, next_link(&ctx, &query, &path, page.skiptoken)))
}

/// `GET /beta/keyward/notifications/{id}` — `microsoft.directory/auditLogs/allProperties/read`.
async fn get_one(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let message = ctx.state.app.get_notification(&ctx.caller, &id).await?;
    let context = format!("{}/$metadata#keyward/notifications/$entity", ctx.base());
    Ok(entity(context, message_json(&message), StatusCode::OK))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const TAG: &str = "notifications";
    api.route(
        "/keyward/notifications",
        get(list),
        Op::get(
            TAG,
            "Keyward extension: the notification outbox, newest first ($filter=state eq 'pending'|'sent'|'failed'|'noAddress')",
            READ,
            "KeywardNotificationCollection",
        )
        .pages_only()
        .with_options(&["$filter"])
        .beta_only(),
    )
    .route(
        "/keyward/notifications/{id}",
        get(get_one),
        Op::get(TAG, "Keyward extension: one notification and its delivery state", READ, "KeywardNotification")
            .with_id()
            .beta_only(),
    )
}
