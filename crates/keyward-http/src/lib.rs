//! Keyward's HTTP surface: the Graph-compatible API under `/v1.0` and `/beta`, the signing keys,
//! health, metrics and the OpenAPI document with its viewer.
//!
//! Invariant: the only crate that knows HTTP, JSON and HTML; it never touches the store, and maps
//! errors to responses once (`error.rs`).
#![forbid(unsafe_code)]
#![recursion_limit = "256"]

mod casing;
mod context;
mod error;
mod graph;
mod metrics;
mod oauth;
mod openapi;
mod pages;
mod rendered_users;
mod serve;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use keyward_app::App;
use serde_json::json;

pub use crate::context::Version;
pub use crate::graph::directory_audits::directory_audit;
pub use crate::metrics::Metrics;
pub use crate::serve::{ServeConfig, TlsFiles, serve};

/// State shared by every handler: one reference count, since the router clones it for each
/// layer and handler a request passes through (with a count per field, taking and dropping those
/// copies was 2% of an API read's samples).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] shares.
#[derive(Debug)]
pub struct Shared {
    pub app: App,
    pub metrics: Metrics,
    /// The JSON of the users the store keeps (see `rendered_users`).
    rendered_users: rendered_users::RenderedUsers,
    openapi: serde_json::Value,
    /// The whole service, for `$batch` to send each of its requests through (set once built;
    /// weak, as the service holds this state).
    routes: std::sync::OnceLock<std::sync::Weak<Routes>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Keyward's whole HTTP surface as one service (what [`router`] builds and [`serve`] serves):
/// a Graph path is put in the routes' spelling (see `casing`), then routed once.
#[derive(Debug, Clone)]
pub struct HttpService(Arc<Routes>);

/// What [`HttpService`] shares.
#[derive(Debug)]
pub struct Routes {
    router: Router,
    segments: casing::Segments,
}

impl tower::Service<axum::extract::Request> for HttpService {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        // The rewrite happens before routing, so the handlers' `OriginalUri` is set here to the
        // address as sent (links and errors echo it); the router sets it for the others.
        let request = self.0.segments.rewrite(request);
        tower::Service::call(&mut self.0.router.clone(), request)
    }
}

/// The largest Graph request body.
pub const GRAPH_BODY_LIMIT: usize = 1 << 20;
/// The largest body at the OpenID Connect endpoints (token, device code, revoke, consent).
pub const OIDC_BODY_LIMIT: usize = 64 << 10;
/// The largest sign-in form.
pub const FORM_BODY_LIMIT: usize = 16 << 10;
/// How long a request body may take to arrive.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Builds the whole service.
///
/// Every route sits in one router (Graph's under `/v1.0` and `/beta` each), so a request is
/// matched once: nesting the Graph routes, and wrapping the router in another for the rewrite
/// and for `$batch`, each cost a matching, a copy of the path and several allocations a request.
pub fn router(app: App) -> HttpService {
    let graph = graph::routes(openapi::Api::new());
    let segments = casing::Segments::of(&graph.paths());
    let openapi = openapi::document(&graph.ops, &app.config().public_url);
    let state = AppState(Arc::new(Shared {
        app,
        metrics: Metrics::default(),
        rendered_users: rendered_users::RenderedUsers::default(),
        openapi,
        routes: std::sync::OnceLock::new(),
    }));
    let batch_state = state.clone();
    // A path under a version that no route matches is Graph's unknown segment (after
    // authentication); a method a Graph path does not take, Graph's 405.
    let graph_router = [Version::V1, Version::Beta]
        .into_iter()
        .fold(Router::new(), |router, version| {
            let prefix = format!("/{}", version.segment());
            router
                .merge(graph.router(&prefix))
                .route(&prefix, axum::routing::any(graph::unknown_segment))
                .route(&format!("{prefix}/"), axum::routing::any(graph::unknown_segment))
                .route(&format!("{prefix}/{{*rest}}"), axum::routing::any(graph::unknown_segment))
        })
        .method_not_allowed_fallback(graph::method_not_allowed);
    // Bodies are capped per surface: Graph JSON (certificates included) at 1 MiB, the OpenID
    // Connect endpoints (client assertions) at 64 KiB, the sign-in forms at 16 KiB. Each is read
    // whole before the handler runs (`read_whole_body`), so a request refused before its body is
    // looked at (no token, say) leaves a connection that can carry the next request. The
    // extractors' own limit (axum's default, 2 MB) is then above every body they see: no
    // `DefaultBodyLimit` layer, which cost each request a cloned service and a map for its
    // extension.
    let graph_router = graph_router.layer(WholeBody { limit: GRAPH_BODY_LIMIT, envelope: Envelope::Graph });
    let router = Router::new()
        .merge(graph_router)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs))
        .merge(pages::routes().layer(WholeBody { limit: FORM_BODY_LIMIT, envelope: Envelope::Text }))
        .merge(oauth::browser_routes().layer(WholeBody { limit: OIDC_BODY_LIMIT, envelope: Envelope::Text }))
        .merge(oauth::client_routes().layer(WholeBody { limit: OIDC_BODY_LIMIT, envelope: Envelope::OAuth }))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), context::observe))
        .with_state(state);
    let routes = Arc::new(Routes { router, segments });
    // `$batch` sends its requests through the same service, so each is authorised, audited and
    // limited as if it came alone. The state holds it weakly (the service holds the state), so a
    // server's router, state and database pool go when the server does.
    let _ = batch_state.routes.set(Arc::downgrade(&routes));
    HttpService(routes)
}

/// Reads a request's body whole (up to `limit`) before the handler runs. HTTP/1.1 cannot reuse
/// a connection whose request body was left unread, and a client that sent its next request on
/// it meanwhile sees the connection end under it. A larger body is answered `413` and the
/// connection closed, in the envelope of the routes' errors (`envelope`). A layer of its own
/// rather than `middleware::from_fn`: a request without a body (most) passes through it without
/// a boxed future or a cloned service.
#[derive(Debug, Clone, Copy)]
struct WholeBody {
    limit: usize,
    envelope: Envelope,
}

/// How the routes behind a [`WholeBody`] answer errors, and so a body it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Envelope {
    /// Graph's `{"error": {"code", "message", "innerError"}}`.
    Graph,
    /// The token endpoint's: RFC 6749's `error` and `error_description` with Entra's fields.
    OAuth,
    /// Plain text: pages a browser posts a form to.
    Text,
}

impl<S> tower::Layer<S> for WholeBody {
    type Service = ReadingWholeBody<S>;

    fn layer(&self, inner: S) -> ReadingWholeBody<S> {
        ReadingWholeBody { inner, body: *self }
    }
}

/// The service [`WholeBody`] makes.
#[derive(Debug, Clone)]
struct ReadingWholeBody<S> {
    inner: S,
    body: WholeBody,
}

type Answer = Result<Response, std::convert::Infallible>;

impl<S> tower::Service<axum::extract::Request> for ReadingWholeBody<S>
where
    S: tower::Service<axum::extract::Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + Unpin + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = WholeBodyRead<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), std::convert::Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::extract::Request) -> WholeBodyRead<S::Future> {
        // Nothing to read (a `GET` without a body, most requests): no timer, no copy.
        if axum::body::HttpBody::size_hint(request.body()).exact() == Some(0) {
            return WholeBodyRead::Passed(self.inner.call(request));
        }
        // The service made ready is the one called; its clone serves the next request.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        WholeBodyRead::Reading(Box::pin(read_whole_body(request, ready, self.body)))
    }
}

/// The answer of [`ReadingWholeBody`]: the handler's own, or the one reading the body first.
enum WholeBodyRead<F> {
    Passed(F),
    Reading(std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>),
}

impl<F: std::future::Future<Output = Answer> + Unpin> std::future::Future for WholeBodyRead<F> {
    type Output = Answer;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Answer> {
        match self.get_mut() {
            WholeBodyRead::Passed(future) => std::pin::Pin::new(future).poll(cx),
            WholeBodyRead::Reading(future) => future.as_mut().poll(cx),
        }
    }
}

async fn read_whole_body<S>(request: axum::extract::Request, mut inner: S, body: WholeBody) -> Answer
where
    S: tower::Service<axum::extract::Request, Response = Response, Error = std::convert::Infallible>,
{
    let WholeBody { limit, envelope } = body;
    let (parts, body) = request.into_parts();
    // A body that trickles in is cut off like slow headers are.
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await;
    let mut refused = match read {
        Ok(Ok(bytes)) => {
            return inner.call(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await;
        }
        Err(_) => {
            refuse_body(envelope, StatusCode::REQUEST_TIMEOUT, "The request body took too long to arrive.", &parts)
        }
        Ok(Err(_)) => refuse_body(
            envelope,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("The request body is larger than {limit} bytes."),
            &parts,
        ),
    };
    // The rest of an unread body would be taken for the next request: the connection ends.
    refused.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    Ok(refused)
}

/// The answer to a body [`read_whole_body`] refuses (`status`, and `why` in words), in
/// `envelope`.
fn refuse_body(envelope: Envelope, status: StatusCode, why: &str, parts: &axum::http::request::Parts) -> Response {
    let ids = context::request_ids(parts);
    match envelope {
        Envelope::Graph => {
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "RequestEntityTooLarge" } else { "RequestTimeout" };
            error::GraphError::new(status, code, why.to_owned(), &ids).into_response()
        }
        // RFC 6749 has no error of its own for these; `invalid_request` is its error for a
        // request it cannot read. No AADSTS code: Entra documents none for either.
        Envelope::OAuth => oauth::oauth_error_in(
            &keyward_app::OAuthError {
                status: status.as_u16(),
                error: "invalid_request",
                description: why.to_owned(),
                codes: Vec::new(),
                retry_after: None,
            },
            &ids.client_request_id,
        ),
        Envelope::Text => (status, format!("{why}\n")).into_response(),
    }
}

pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Not found. The API is under /v1.0 and /beta; see /docs.\n",
    )
        .into_response()
}

/// `GET /healthz`: 200 when the database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.app.health().await {
        Ok(version) => (StatusCode::OK, axum::Json(json!({"status": "ok", "schemaVersion": version}))).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable", "reason": "database unreachable"})),
            )
                .into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    text.push_str("# HELP keyward_password_verifications_total Passwords checked against their stored hash.\n");
    text.push_str("# TYPE keyward_password_verifications_total counter\n");
    text.push_str(&format!("keyward_password_verifications_total {}\n", state.app.password_verifications()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn openapi_json(State(state): State<AppState>) -> Response {
    axum::Json(state.openapi.clone()).into_response()
}

async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

#[cfg(test)]
mod tests {
    use super::{Envelope, refuse_body};
    use axum::http::{Request, StatusCode};

    /// Each surface refuses a body in its own error form: a body too slow to arrive too (which
    /// takes `BODY_READ_TIMEOUT` to see over HTTP).
    #[tokio::test]
    async fn a_refused_body_is_answered_in_its_surfaces_form() {
        let (parts, ()) = Request::builder().header("client-request-id", "abc").body(()).expect("request").into_parts();
        let parts = &parts;
        for status in [StatusCode::PAYLOAD_TOO_LARGE, StatusCode::REQUEST_TIMEOUT] {
            let body = |envelope| async move {
                let response = refuse_body(envelope, status, "Why.", parts);
                assert_eq!(response.status(), status, "{envelope:?}");
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
                String::from_utf8(bytes.to_vec()).expect("text")
            };
            let graph: serde_json::Value = serde_json::from_str(&body(Envelope::Graph).await).expect("json");
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "RequestEntityTooLarge" } else { "RequestTimeout" };
            assert_eq!(graph["error"]["code"], code);
            assert_eq!(graph["error"]["message"], "Why.");
            let oauth: serde_json::Value = serde_json::from_str(&body(Envelope::OAuth).await).expect("json");
            assert_eq!(oauth["error"], "invalid_request");
            assert_eq!(oauth["error_description"], "Why.");
            assert_eq!(oauth["error_codes"], serde_json::json!([]));
            assert_eq!(body(Envelope::Text).await, "Why.\n");
        }
    }
}
