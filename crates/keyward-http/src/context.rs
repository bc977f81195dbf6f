//! What every request carries: its ids, the caller, the API version, the query options.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
pub use keyward_app::rfc3339;
use keyward_app::{Caller, RequestMeta};
use keyward_core::ids::is_guid;
use keyward_core::query::RawQuery;

use crate::AppState;
use crate::error::GraphError;

/// The ids of a request: ours, and the client's if it sent a usable one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    pub request_id: String,
    pub client_request_id: String,
}

tokio::task_local! {
    /// The ids of the request this task serves (set by `observe` around the handler), so an
    /// app error converts into its Graph envelope with `?` alone.
    static CURRENT_IDS: RequestIds;
}

/// The ids of the request being served; fresh ones outside a request.
pub fn current_ids() -> RequestIds {
    CURRENT_IDS.try_with(Clone::clone).unwrap_or_else(|_| {
        let id = uuid::Uuid::new_v4().to_string();
        RequestIds { request_id: id.clone(), client_request_id: id }
    })
}

/// Graph's request id headers, named once (a name given as text is parsed at every use).
const REQUEST_ID: header::HeaderName = header::HeaderName::from_static("request-id");
const CLIENT_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("client-request-id");

/// Assigns request ids, records metrics and writes one log line per request.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = request
        .headers()
        .get(CLIENT_REQUEST_ID)
        .and_then(|it| it.to_str().ok())
        .filter(|it| is_guid(it))
        .map_or_else(|| request_id.clone(), str::to_ascii_lowercase);
    let ids = RequestIds { request_id, client_request_id };
    request.extensions_mut().insert(ids.clone());
    let method = request.method().clone();
    // Both shared, not copied: the matched route's text and the address's bytes.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let uri = request.uri().clone();
    let path = uri.path();
    let is_graph = path.starts_with("/v1.0/") || path.starts_with("/beta/");
    let mut response = guarded(&ids, is_graph, CURRENT_IDS.scope(ids.clone(), next.run(request))).await;
    let accepted = response.status() == axum::http::StatusCode::ACCEPTED;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&ids.request_id) {
        headers.insert(REQUEST_ID, value);
    }
    if let Ok(value) = HeaderValue::from_str(&ids.client_request_id) {
        headers.insert(CLIENT_REQUEST_ID, value);
    }
    // A root-relative `Location` (a change held for approval names its request so) becomes absolute.
    let relative = accepted
        .then(|| {
            headers.get(header::LOCATION).and_then(|it| it.to_str().ok()).filter(|it| it.starts_with("/beta/keyward/"))
        })
        .flatten();
    if let Some(absolute) =
        relative.and_then(|it| HeaderValue::from_str(&format!("{}{it}", state.app.config().public_url)).ok())
    {
        headers.insert(header::LOCATION, absolute);
    }
    // No response is to be read as anything but its declared type (JSON, HTML, CSS, script).
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.record(method.as_str(), route.as_ref().map_or("unmatched", MatchedPath::as_str), status, elapsed);
    tracing::info!(
        request_id = %ids.request_id,
        method = %method,
        path = %loggable(path),
        status,
        micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

/// `path` as the request's log line writes it: a control character (C0, DEL or C1, which the
/// URI parser lets through as UTF-8) as `\u{..}`, so a request cannot send a terminal reading
/// the log an escape sequence. Any other path is written as sent.
fn loggable(path: &str) -> std::borrow::Cow<'_, str> {
    // Bytes first, every one looked at (a loop without an early exit runs many at once): a C1
    // control's UTF-8 starts with 0xC2, and most paths have no such byte.
    let may_have = path.bytes().fold(false, |seen, it| seen | (it < 0x20) | (it == 0x7f) | (it == 0xc2));
    if !may_have || !path.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(path);
    }
    use std::fmt::Write as _;
    let mut text = String::with_capacity(path.len() + 8);
    for it in path.chars() {
        if it.is_control() {
            let _ = write!(text, "\\u{{{:x}}}", it as u32);
        } else {
            text.push(it);
        }
    }
    std::borrow::Cow::Owned(text)
}

/// A future that turns a panic while it is polled into `Err`, so a bug in one handler answers
/// its own request with a 500 (and a log line naming the request) instead of dropping the
/// connection under the client. What the handler held is dropped while unwinding, as it is when
/// a task panics: an open transaction rolls back, a write turn is handed on.
pub struct CatchPanic<F>(pub std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchPanic<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}

/// Runs a request's handler; if it panics, answers 500 (Graph's envelope on the Graph paths,
/// plain text elsewhere), naming the request id the server's log has it under.
async fn guarded(ids: &RequestIds, is_graph: bool, handler: impl std::future::Future<Output = Response>) -> Response {
    match CatchPanic(Box::pin(handler)).await {
        Ok(response) => response,
        Err(()) => {
            tracing::error!(request_id = %ids.request_id, "the request's handler panicked");
            if is_graph {
                GraphError::unexpected(ids).into_response()
            } else {
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, crate::error::unexpected_message(ids) + "\n")
                    .into_response()
            }
        }
    }
}

/// Which API version a request addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    Beta,
}

impl Version {
    pub fn segment(self) -> &'static str {
        match self {
            Version::V1 => "v1.0",
            Version::Beta => "beta",
        }
    }

    /// The version a Graph path addresses (`/beta/…` or `/v1.0/…`, already in the routes'
    /// spelling when routed).
    pub fn of_path(path: &str) -> Version {
        if path.strip_prefix("/beta").is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) {
            Version::Beta
        } else {
            Version::V1
        }
    }
}

/// An authenticated Graph request.
#[derive(Debug, Clone)]
pub struct GraphCtx {
    pub caller: Caller,
    pub version: Version,
    pub ids: RequestIds,
    pub state: AppState,
}

impl GraphCtx {
    /// `{public-url}/{version}`, the base of `@odata.context` and `@odata.nextLink`.
    pub fn base(&self) -> String {
        format!("{}/{}", self.state.app.config().public_url, self.version.segment())
    }

    /// The signed-in user's id, for `/me/…` routes (app-only tokens have no `/me`).
    pub fn me_key(&self) -> Result<String, GraphError> {
        Ok(self.caller.delegated_user()?.id.to_string())
    }
}

pub fn request_ids(parts: &Parts) -> RequestIds {
    parts.extensions.get::<RequestIds>().cloned().unwrap_or_else(|| {
        let id = uuid::Uuid::new_v4().to_string();
        RequestIds { request_id: id.clone(), client_request_id: id }
    })
}

impl FromRequestParts<AppState> for GraphCtx {
    type Rejection = GraphError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<GraphCtx, GraphError> {
        Ok(graph_ctx(parts, state, None).await?.0)
    }
}

/// A Graph request that reads the one user its path names (`/users/{id}`): its context, the
/// key (decoded, as `Path` has it), and what was read of that user with the caller (see
/// `App::authenticate_and_find_user`), for `App::get_found_user`.
pub struct UserRead {
    pub ctx: GraphCtx,
    pub key: String,
    pub found: keyward_app::FoundUser,
}

impl FromRequestParts<AppState> for UserRead {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<UserRead, Response> {
        let key = axum::extract::Path::<String>::from_request_parts(parts, state).await.map(|it| it.0);
        // A key PostgreSQL refuses as text (a NUL) is read later: read with the caller, its 400
        // would come before the caller's 401. So is a path that does not decode, refused once the
        // caller is authenticated.
        let also = key.as_deref().ok().filter(|it| !it.contains('\0'));
        let (ctx, found) = graph_ctx(parts, state, also).await.map_err(IntoResponse::into_response)?;
        let key = key.map_err(IntoResponse::into_response)?;
        Ok(UserRead { ctx, key, found })
    }
}

/// Authenticates a Graph request (reading the user `also` with the caller, if named).
async fn graph_ctx(
    parts: &Parts,
    state: &AppState,
    also: Option<&str>,
) -> Result<(GraphCtx, keyward_app::FoundUser), GraphError> {
    let ids = request_ids(parts);
    let version = Version::of_path(parts.uri.path());
    let bearer =
        parts.headers.get(header::AUTHORIZATION).and_then(|it| it.to_str().ok()).map(|it| match it.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token,
            _ => "",
        });
    let ip_address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|it| ip_text(it.0.ip()));
    let user_agent = crate::pages::user_agent(&parts.headers);
    let meta = RequestMeta { correlation_id: ids.client_request_id.clone(), ip_address, user_agent };
    let (caller, found) = match also {
        Some(key) => state.app.authenticate_and_find_user(bearer, meta, key).await,
        None => state.app.authenticate(bearer, meta).await.map(|caller| (caller, keyward_app::FoundUser::default())),
    }
    .map_err(|err| GraphError::from_app(err, &ids))?;
    // A query option the route does not honour, found by `RefuseOptions`: refused after
    // authentication, so an anonymous caller still gets 401 first.
    if let Some(RefusedOption(name)) = parts.extensions.get::<RefusedOption>() {
        return Err(GraphError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            format!("The query option '{name}' is not supported on this resource."),
            &ids,
        ));
    }
    Ok((GraphCtx { caller, version, ids, state: state.clone() }, found))
}

/// A client's address as text, as `to_string` writes it; an IPv4 address without the formatting
/// machinery, which took more of a request than its database read's locks.
pub(crate) fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut res = String::with_capacity(15);
    for (idx, octet) in v4.octets().into_iter().enumerate() {
        if idx > 0 {
            res.push('.');
        }
        if octet >= 100 {
            res.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            res.push(char::from(b'0' + octet / 10 % 10));
        }
        res.push(char::from(b'0' + octet % 10));
    }
    res
}

/// Every Graph query option Keyward knows, as `allow_only` and the routes name them.
pub const QUERY_OPTIONS: [&str; 10] =
    ["$filter", "$select", "$orderby", "$search", "$expand", "$count", "$skip", "$top", "$skiptoken", "$deltatoken"];

/// For routes whose query planner checks every option itself (the logs, the registration
/// report, delta): all pass the gate.
pub const QUERY_OPTIONS_ALL: &[&str] = &QUERY_OPTIONS;

/// A query option the route does not honour (see [`RefuseOptions`]).
#[derive(Debug, Clone)]
struct RefusedOption(&'static str);

/// Marks a request that carries a query option outside its route's allowed ones; the Graph
/// context refuses it once the caller is authenticated. Options are named with or without `$`,
/// in any case. A layer of its own rather than `middleware::from_fn`, whose boxed futures and
/// cloned services cost every Graph `GET` several allocations.
#[derive(Debug, Clone)]
pub(crate) struct RefuseOptions(pub(crate) Arc<[&'static str]>);

impl<S> tower::Layer<S> for RefuseOptions {
    type Service = RefusingOptions<S>;

    fn layer(&self, inner: S) -> RefusingOptions<S> {
        RefusingOptions { inner, allowed: Arc::clone(&self.0) }
    }
}

/// The service [`RefuseOptions`] makes.
#[derive(Debug, Clone)]
pub(crate) struct RefusingOptions<S> {
    inner: S,
    allowed: Arc<[&'static str]>,
}

impl<S: tower::Service<Request>> tower::Service<Request> for RefusingOptions<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> S::Future {
        if let Some(name) = request.uri().query().and_then(|query| refused_option(query, &self.allowed)) {
            request.extensions_mut().insert(RefusedOption(name));
        }
        self.inner.call(request)
    }
}

/// The first option in `query` that Keyward knows and `allowed` does not hold.
fn refused_option(query: &str, allowed: &[&'static str]) -> Option<&'static str> {
    form_urlencoded::parse(query.as_bytes()).find_map(|(key, _)| {
        let name = key.strip_prefix('$').unwrap_or(&key).to_ascii_lowercase();
        QUERY_OPTIONS.iter().find(|it| it[1..] == name).filter(|it| !allowed.contains(it)).copied()
    })
}

/// The query options of a request, decoded, with `$` optional as Graph allows.
#[derive(Debug, Clone, Default)]
pub struct GraphQuery {
    pub raw: RawQuery,
    /// `$deltatoken`, which only delta requests take (see [`GraphQuery::parse`]).
    pub deltatoken: Option<String>,
    /// `Prefer: odata.maxpagesize=N`, which delta requests honour.
    pub max_page_size: Option<usize>,
    /// The query string without `$skiptoken`, to rebuild `@odata.nextLink`.
    pub rest: Vec<(String, String)>,
}

impl GraphQuery {
    pub fn parse(query: Option<&str>, headers: &HeaderMap) -> Result<GraphQuery, String> {
        let mut res = GraphQuery::default();
        res.raw.is_eventual = headers
            .get("consistencylevel")
            .and_then(|it| it.to_str().ok())
            .is_some_and(|it| it.trim().eq_ignore_ascii_case("eventual"));
        res.max_page_size = headers
            .get_all("prefer")
            .iter()
            .filter_map(|it| it.to_str().ok())
            .flat_map(|it| it.split(','))
            .filter_map(|it| it.trim().strip_prefix("odata.maxpagesize="))
            .find_map(|it| it.trim().parse::<usize>().ok())
            .filter(|it| *it > 0);
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let name = key.strip_prefix('$').unwrap_or(&key).to_ascii_lowercase();
            let value = value.into_owned();
            let slot = match name.as_str() {
                "filter" => &mut res.raw.filter,
                "select" => &mut res.raw.select,
                "top" => &mut res.raw.top,
                "orderby" => &mut res.raw.orderby,
                "count" => &mut res.raw.count,
                "search" => &mut res.raw.search,
                "expand" => &mut res.raw.expand,
                "skiptoken" => {
                    res.raw.skiptoken = Some(value);
                    continue;
                }
                "deltatoken" => {
                    res.deltatoken = Some(value);
                    continue;
                }
                "skip" => {
                    res.raw.has_skip = true;
                    continue;
                }
                _ if key.starts_with('$') => {
                    return Err(format!("Query option '{key}' is not supported."));
                }
                _ => {
                    res.rest.push((key.into_owned(), value));
                    continue;
                }
            };
            if slot.is_some() {
                return Err(format!(
                    "Query option '${name}' was specified more than once, but it must be specified at most once."
                ));
            }
            *slot = Some(value.clone());
            res.rest.push((key.into_owned(), value));
        }
        Ok(res)
    }

    /// `@odata.nextLink` for a page continuing at `skiptoken`.
    pub fn next_link(&self, base: &str, path: &str, skiptoken: &str) -> String {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.rest {
            serializer.append_pair(key, value);
        }
        let mut query = serializer.finish().replace("%24", "$");
        if !query.is_empty() {
            query.push('&');
        }
        format!("{base}{path}?{query}$skiptoken={skiptoken}")
    }
}

/// A Graph collection: `@odata.context`, `@odata.count`, `@odata.nextLink`, then `value`, in
/// Graph's order.
pub fn collection<T: Into<serde_json::Value>>(
    context: String,
    items: Vec<T>,
    count: Option<u64>,
    next_link: Option<String>,
) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("@odata.context".into(), serde_json::Value::String(context));
    if let Some(count) = count {
        body.insert("@odata.count".into(), serde_json::Value::from(count));
    }
    if let Some(link) = next_link {
        body.insert("@odata.nextLink".into(), serde_json::Value::String(link));
    }
    body.insert("value".into(), serde_json::Value::Array(items.into_iter().map(Into::into).collect()));
    graph_json(serde_json::Value::Object(body))
}

/// A Graph entity: `@odata.context` followed by the entity's properties.
pub fn entity(context: String, value: impl Into<serde_json::Value>, status: axum::http::StatusCode) -> Response {
    // The context goes first into the entity's own map (moving its entries along) rather than
    // each property into a new map (hashing every name again). The context is the server's: an
    // entity's own `@odata.context`, if it had one, is replaced.
    let mut body = match value.into() {
        serde_json::Value::Object(fields) => fields,
        _ => serde_json::Map::new(),
    };
    body.shift_insert(0, "@odata.context".into(), serde_json::Value::String(context));
    (status, graph_json(serde_json::Value::Object(body))).into_response()
}

/// An entity (`@odata.context` first, as [`entity`] writes it) written straight from `body`,
/// with Graph's content type.
pub fn entity_written(body: &impl serde::Serialize, status: axum::http::StatusCode) -> Response {
    entity_json(status, written_json(body))
}

/// `body` written as JSON; `None` (logged) if it cannot be, which only a type whose serialisation
/// can fail could: a bug.
pub fn written_json(body: &impl serde::Serialize) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(512);
    match serde_json::to_writer(&mut bytes, body) {
        Ok(()) => Some(bytes),
        Err(err) => {
            tracing::error!(error = %err, "an entity could not be written as JSON");
            None
        }
    }
}

/// An entity already written as JSON (by [`written_json`]; `None`: it could not be, answered as a
/// bug) with Graph's content type.
pub fn entity_json(status: axum::http::StatusCode, json: Option<impl Into<axum::body::Body>>) -> Response {
    match json {
        Some(json) => {
            let mut response = (status, json.into()).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(GRAPH_JSON));
            response
        }
        None => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Graph's content type for JSON.
const GRAPH_JSON: &str =
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// A JSON response with Graph's content type.
pub fn graph_json(body: serde_json::Value) -> Response {
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(GRAPH_JSON));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_paths_carry_no_terminal_controls() {
        assert!(matches!(loggable("/v1.0/users/a%1B?$x=y"), std::borrow::Cow::Borrowed("/v1.0/users/a%1B?$x=y")));
        assert_eq!(loggable("/v1.0/users/Zo\u{eb}"), "/v1.0/users/Zo\u{eb}");
        assert!(matches!(loggable("/v1.0/users/caf\u{a9}\u{a0}"), std::borrow::Cow::Borrowed(_)), "0xC2, no control");
        assert_eq!(loggable("/v1.0/\u{85}x"), "/v1.0/\\u{85}x", "a C1 control alone");
        assert_eq!(loggable("/a\u{9b}2J\u{1b}[31m\u{7f}b"), "/a\\u{9b}2J\\u{1b}[31m\\u{7f}b");
    }

    #[test]
    fn addresses_read_as_to_string_writes_them() {
        for text in ["127.0.0.1", "0.0.0.0", "255.255.255.255", "10.0.99.100", "192.168.1.9", "::1", "fe80::1"] {
            let ip: std::net::IpAddr = text.parse().expect("an address");
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for octet in 0..=255u8 {
            let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::new(octet, 1, octet, 200));
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn parses_dollar_and_bare_options_and_rebuilds_next_links() {
        let mut headers = HeaderMap::new();
        headers.insert("ConsistencyLevel", HeaderValue::from_static("eventual"));
        let query = GraphQuery::parse(
            Some("%24filter=startswith(displayName,%27a%27)&top=5&$skiptoken=abc&$count=true"),
            &headers,
        )
        .expect("valid");
        assert_eq!(query.raw.filter.as_deref(), Some("startswith(displayName,'a')"));
        assert_eq!(query.raw.top.as_deref(), Some("5"));
        assert_eq!(query.raw.skiptoken.as_deref(), Some("abc"));
        assert!(query.raw.is_eventual);
        let link = query.next_link("https://h/v1.0", "/users", "XYZ");
        assert_eq!(
            link,
            "https://h/v1.0/users?$filter=startswith%28displayName%2C%27a%27%29&top=5&$count=true&$skiptoken=XYZ"
        );
        assert!(GraphQuery::parse(Some("$top=1&$top=2"), &HeaderMap::new()).is_err());
        assert!(GraphQuery::parse(Some("$apply=x"), &HeaderMap::new()).is_err());
        assert!(GraphQuery::parse(Some("$skip=10"), &HeaderMap::new()).is_ok_and(|it| it.raw.has_skip));
    }

    #[tokio::test]
    async fn a_handler_that_panics_answers_500_in_its_surfaces_envelope() {
        let ids = RequestIds { request_id: "r-1".into(), client_request_id: "c-1".into() };
        // A panic after the handler has already waited once, as one in a handler's later step would.
        let late_panic = async {
            tokio::task::yield_now().await;
            if ids.request_id.len() == 3 {
                panic!("a bug");
            }
            (axum::http::StatusCode::OK, "fine").into_response()
        };
        let response = guarded(&ids, true, late_panic).await;
        assert_eq!(response.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("Graph's envelope");
        assert_eq!(json["error"]["code"], "generalException");
        assert!(json["error"]["message"].as_str().is_some_and(|it| it.contains("request-id r-1")), "{json}");
        assert!(!String::from_utf8_lossy(&body).contains("a bug"), "the panic's message stays in the log");

        let response = guarded(&ids, false, async { panic!("a bug") }).await;
        assert_eq!(response.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        assert!(String::from_utf8_lossy(&body).contains("request-id r-1"));

        let response = guarded(&ids, true, async { (axum::http::StatusCode::CREATED, "made").into_response() }).await;
        assert_eq!(response.status(), axum::http::StatusCode::CREATED);
    }
}
