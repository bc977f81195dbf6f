//! `POST /$batch`: Graph's JSON batching. Up to 20 requests in one, each sent through the same
//! router as if it came alone (its own authorisation, audit, rate limits and errors) with the
//! batch's `Authorization`, in the order given; a request whose `dependsOn` names one that failed
//! is not sent and answers `424`.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Body as HttpBody;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use super::Body;
use crate::context::GraphCtx;
use crate::error::GraphError;
use crate::openapi::{Api, Op};

/// The most requests one batch holds, as in Graph.
const MAX_REQUESTS: usize = 20;

/// One request of a batch, as validated.
struct Item {
    id: String,
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    depends_on: Vec<String>,
}

fn invalid(ctx: &GraphCtx, message: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", message, &ctx.ids)
}

/// Reads and checks the batch: ids unique and present, methods known, relative URLs that are not
/// batches themselves, `dependsOn` naming earlier requests, at most [`MAX_REQUESTS`].
fn items(ctx: &GraphCtx, body: &Value) -> Result<Vec<Item>, GraphError> {
    let requests = body
        .get("requests")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(ctx, "Invalid batch payload format: the body needs a 'requests' array."))?;
    if requests.is_empty() {
        return Err(invalid(ctx, "Invalid batch payload format: 'requests' is empty."));
    }
    if requests.len() > MAX_REQUESTS {
        return Err(invalid(ctx, format!("The number of batch requests exceeds the limit of {MAX_REQUESTS}.")));
    }
    let mut res: Vec<Item> = Vec::with_capacity(requests.len());
    for request in requests {
        let field = |name: &str| request.get(name).and_then(Value::as_str).map(str::trim).filter(|it| !it.is_empty());
        let id = field("id").ok_or_else(|| invalid(ctx, "Every batch request needs an 'id'."))?.to_owned();
        // Ids compare in any case, as Graph's do.
        if res.iter().any(|it| it.id.eq_ignore_ascii_case(&id)) {
            return Err(invalid(ctx, format!("Batch request id '{id}' is used twice; ids must be unique.")));
        }
        let method = field("method")
            .and_then(|it| Method::from_bytes(it.to_ascii_uppercase().as_bytes()).ok())
            .filter(|it| [Method::GET, Method::POST, Method::PATCH, Method::PUT, Method::DELETE].contains(it))
            .ok_or_else(|| {
                invalid(ctx, format!("Batch request '{id}' needs a 'method' (GET, POST, PATCH, PUT, DELETE)."))
            })?;
        let url = field("url").ok_or_else(|| invalid(ctx, format!("Batch request '{id}' needs a 'url'.")))?;
        if url.contains("://") || url.starts_with("//") {
            return Err(invalid(ctx, format!("Batch request '{id}': the url must be relative, like /users?$top=5.")));
        }
        let url = if url.starts_with('/') { url.to_owned() } else { format!("/{url}") };
        let path = url.split('?').next().unwrap_or_default();
        if path.split('/').any(|it| it.eq_ignore_ascii_case("$batch")) {
            return Err(invalid(ctx, format!("Batch request '{id}': batches cannot be nested.")));
        }
        let mut headers = Vec::new();
        if let Some(given) = request.get("headers").and_then(Value::as_object) {
            for (name, value) in given {
                let Some(value) = value.as_str() else { continue };
                // The batch's own credentials are used; an inner request cannot bring others.
                if !name.eq_ignore_ascii_case("authorization") && !name.eq_ignore_ascii_case("host") {
                    headers.push((name.clone(), value.to_owned()));
                }
            }
        }
        let body = match request.get("body") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| invalid(ctx, format!("Batch request '{id}': a string body must be base64.")))?,
            ),
            Some(other) => Some(serde_json::to_vec(other).unwrap_or_default()),
        };
        // `depends_on` is how msgraph-sdk for Python spells it.
        let depends_on: Vec<String> = request
            .get("dependsOn")
            .or_else(|| request.get("depends_on"))
            .and_then(Value::as_array)
            .map(|it| it.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        if let Some(unknown) = depends_on.iter().find(|it| !res.iter().any(|item| item.id.eq_ignore_ascii_case(it))) {
            return Err(invalid(
                ctx,
                format!("Batch request '{id}' depends on '{unknown}', which is not an earlier request of the batch."),
            ));
        }
        res.push(Item { id, method, url, headers, body, depends_on });
    }
    Ok(res)
}

/// `POST /$batch` (200, each response with its own status).
async fn batch(
    ctx: GraphCtx,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    outer: HeaderMap,
    Body(body): Body,
) -> Result<Response, GraphError> {
    let items = items(&ctx, &body)?;
    let Some(router) = ctx.state.routes.get().and_then(std::sync::Weak::upgrade).map(crate::HttpService) else {
        return Err(GraphError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceNotAvailable", "Not ready.", &ctx.ids));
    };
    let version = ctx.version.segment();
    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut responses = Vec::with_capacity(items.len());
    for item in items {
        if let Some(failed) =
            item.depends_on.iter().find(|it| statuses.get(&it.to_ascii_lowercase()).is_none_or(|status| *status >= 400))
        {
            statuses.insert(item.id.to_ascii_lowercase(), 424);
            responses.push(json!({
                "id": item.id,
                "status": 424,
                "headers": {"Content-Type": "application/json"},
                "body": {"error": {"code": "FailedDependency", "message": format!("Request '{failed}', which this one depends on, failed.")}},
            }));
            continue;
        }
        let mut request = Request::builder().method(item.method).uri(format!("/{version}{}", item.url));
        for name in [header::AUTHORIZATION, header::ACCEPT_LANGUAGE] {
            if let Some(value) = outer.get(&name) {
                request = request.header(name, value);
            }
        }
        for (name, value) in &item.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if item.body.is_some() && !item.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let mut request = match request.body(HttpBody::from(item.body.unwrap_or_default())) {
            Ok(it) => it,
            Err(_) => {
                return Err(invalid(&ctx, format!("Batch request '{}' has a header that is not valid.", item.id)));
            }
        };
        // The caller's address, for rate limits and logs, as for the batch itself.
        if let Some(peer) = &peer {
            request.extensions_mut().insert(peer.0);
        }
        let response = match router.clone().oneshot(request).await {
            Ok(it) => it,
            Err(never) => match never {},
        };
        let (status, inner) = inner_response(&item.id, response).await;
        statuses.insert(item.id.to_ascii_lowercase(), status);
        responses.push(inner);
    }
    let mut response = (StatusCode::OK, axum::Json(json!({"responses": responses}))).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// An inner response as the batch reports it: status, the headers a client needs, and the body
/// (JSON as JSON, anything else as base64), and its status.
async fn inner_response(id: &str, response: Response) -> (u16, Value) {
    // The body is our own handler's answer, already bounded by its paging, so it is read whole.
    // One that cannot be read is reported as that request's failure, never as an empty success.
    let (parts, body) = response.into_parts();
    let (parts, bytes) = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => (parts, bytes),
        Err(_) => {
            let (parts, body) =
                crate::error::GraphError::unexpected(&crate::context::current_ids()).into_response().into_parts();
            (parts, axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default())
        }
    };
    let mut headers = Map::new();
    for name in [header::CONTENT_TYPE, header::LOCATION, header::RETRY_AFTER, header::CACHE_CONTROL] {
        if let Some(value) = parts.headers.get(&name).and_then(|it| it.to_str().ok()) {
            headers.insert(canonical_name(name.as_str()), json!(value));
        }
    }
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|it| it.to_str().ok())
        .is_some_and(|it| it.starts_with("application/json"));
    let mut item = json!({"id": id, "status": parts.status.as_u16(), "headers": headers});
    if !bytes.is_empty() {
        item["body"] = match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) if is_json => value,
            _ => json!(base64::engine::general_purpose::STANDARD.encode(&bytes)),
        };
    }
    (parts.status.as_u16(), item)
}

/// `content-type` → `Content-Type`.
fn canonical_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Registers `$batch`.
pub fn routes(api: Api) -> Api {
    api.route(
        "/$batch",
        post(batch),
        Op::post(
            "batch",
            "Send up to 20 requests in one (JSON batching)",
            "(each request's own)",
            "BatchRequest",
            200,
            "BatchResponse",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_inner_answer_is_reported_whole() {
        // Larger than any request body Graph accepts, four times over: it was cut to nothing.
        let big = "x".repeat(5 << 20);
        let response = (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&json!({"value": big})).expect("json"),
        )
            .into_response();
        let (status, item) = inner_response("1", response).await;
        assert_eq!(status, 200);
        assert_eq!(item["status"], 200);
        assert_eq!(item["headers"]["Content-Type"], "application/json");
        assert_eq!(item["body"]["value"].as_str().map(str::len), Some(5 << 20));
    }
}
