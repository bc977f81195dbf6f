//! Requests to a Keyward server's Graph API as the signed-in administrator: paging, retries on
//! throttling, and errors that say what to do next.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::session::{self, Session};
use super::{Failure, exit};

/// The signed-in administrator's view of one server's API. The access token is renewed as a
/// command goes on (a `--follow` or a long bulk run outlives it), and once on a `401`.
#[derive(Debug)]
pub struct Graph {
    http: reqwest::Client,
    session: Mutex<Session>,
}

/// How long to wait before retrying a throttled request without a usable `Retry-After`.
const DEFAULT_BACK_OFF: [u64; 3] = [2, 4, 8];

impl Graph {
    /// The session named `server` (or the default one), refreshed if needed.
    pub async fn connect(server: Option<&str>) -> anyhow::Result<Graph> {
        let session = session::session(server).await?;
        let http = session::http_client(session.server.ca_cert.as_deref())?;
        Ok(Graph { http, session: Mutex::new(session) })
    }

    /// The session as it is now.
    pub fn session(&self) -> Session {
        self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The URL of `path` on the session's server. An absolute URL (a `@odata.nextLink`) is
    /// moved onto the session's origin: the token only ever goes where the user logged in, even
    /// when the server names itself differently (behind a proxy) or names another host.
    fn url(&self, path: &str) -> anyhow::Result<String> {
        let base = self.session().server.url;
        if !(path.starts_with("http://") || path.starts_with("https://")) {
            return Ok(format!("{base}{path}"));
        }
        let (Ok(link), Ok(origin)) = (reqwest::Url::parse(path), reqwest::Url::parse(&base)) else {
            return Err(Failure::new(
                exit::FAILURE,
                format!("the server answered with a link that is not a URL: {path}"),
            )
            .into());
        };
        let mut moved = origin;
        moved.set_path(link.path());
        moved.set_query(link.query());
        Ok(moved.to_string())
    }

    /// The access token to send, renewed first when it is about to end.
    async fn token(&self) -> anyhow::Result<String> {
        let current = self.session();
        if !session::is_ending(&current.server) {
            return Ok(current.access_token);
        }
        self.renew(&current.access_token).await
    }

    async fn renew(&self, stale: &str) -> anyhow::Result<String> {
        let name = self.session().name;
        let fresh = session::renew(&name, stale).await?;
        let token = fresh.access_token.clone();
        *self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(token)
    }

    /// Sends a request and returns its JSON body (`Null` when empty). Throttled requests (429,
    /// 503) are retried up to three times after `Retry-After` (or 2, 4, 8 seconds); a `401` is
    /// retried once with a renewed token.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        eventual: bool,
    ) -> anyhow::Result<Value> {
        let url = self.url(path)?;
        let mut token = self.token().await?;
        let (mut attempt, mut renewed) = (0, false);
        loop {
            let mut request = self.http.request(method.clone(), &url).bearer_auth(&token);
            if eventual {
                request = request.header("ConsistencyLevel", "eventual");
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let server = self.session().server.url;
            let reply = request.send().await.map_err(|err| session::unreachable(&server, &err))?;
            let status = reply.status();
            let retry_after = reply
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|it| it.to_str().ok())
                .and_then(|it| it.trim().parse::<u64>().ok());
            let is_json = reply
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|it| it.to_str().ok())
                .is_some_and(|it| it.contains("json"));
            let text = reply.text().await.unwrap_or_default();
            let body = if text.is_empty() {
                Value::Null
            } else if is_json {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            } else {
                Value::String(text)
            };
            if matches!(status.as_u16(), 429 | 503) && attempt < DEFAULT_BACK_OFF.len() {
                let wait = retry_after.unwrap_or(DEFAULT_BACK_OFF[attempt]).clamp(1, 60);
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            if status == reqwest::StatusCode::UNAUTHORIZED && !renewed {
                // The token may have been refused for a reason a new one fixes (a key rotated,
                // the clock); a revoked session fails the renewal and says to log in again.
                renewed = true;
                token = self.renew(&token).await?;
                continue;
            }
            if status.is_success() {
                return Ok(body);
            }
            return Err(self.failure(status, &body).into());
        }
    }

    /// Turns an error answer into a message that names the cause and the fix.
    fn failure(&self, status: reqwest::StatusCode, body: &Value) -> Failure {
        let message = body["error"]["message"].as_str().map(str::to_owned).unwrap_or_else(|| match body {
            Value::String(text) if !text.is_empty() => text.chars().take(300).collect(),
            _ => status.to_string(),
        });
        let session = self.session();
        let server = &session.server;
        match status.as_u16() {
            401 => Failure::new(
                exit::SESSION,
                format!(
                    "{} no longer accepts your session ({message}); log in again: keyward login --url {} --name {}",
                    server.url, server.url, session.name
                ),
            ),
            403 => Failure::new(
                exit::FORBIDDEN,
                format!(
                    "refused: {message} Ask an administrator who manages roles (a Privileged Role Administrator) for \
                     a role that allows it, then run the command again."
                ),
            ),
            404 => Failure::new(exit::NOT_FOUND, format!("not found: {message}")),
            429 | 503 => Failure::new(exit::FAILURE, format!("the server is busy ({message}); try again in a minute")),
            _ => Failure::new(exit::FAILURE, format!("{message} (HTTP {})", status.as_u16())),
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, None, false).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body), false).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::PATCH, path, Some(body), false).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::DELETE, path, None, false).await
    }

    /// Every item of a collection, following `@odata.nextLink`, up to `limit` items.
    pub async fn list(&self, path: &str, limit: Option<usize>, eventual: bool) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(page) = next.take() {
            let body = self.send(reqwest::Method::GET, &page, None, eventual).await?;
            if let Some(values) = body["value"].as_array() {
                items.extend(values.iter().cloned());
            }
            if limit.is_some_and(|limit| items.len() >= limit) {
                items.truncate(limit.unwrap_or(usize::MAX));
                break;
            }
            next = body["@odata.nextLink"].as_str().map(str::to_owned);
        }
        Ok(items)
    }

    /// A user by sign-in name or id, with the properties `select` names.
    pub async fn user(&self, key: &str, select: &str) -> anyhow::Result<Value> {
        let key = key.trim();
        if key.is_empty() {
            return Err(Failure::usage("an empty user name; give a sign-in name (UPN) or an object id").into());
        }
        match self.get(&format!("/v1.0/users/{}?$select={select}", encode(key))).await {
            Err(err) if err.downcast_ref::<Failure>().is_some_and(|it| it.code == exit::NOT_FOUND) => {
                Err(Failure::new(exit::NOT_FOUND, format!("there is no user '{key}'")).into())
            }
            other => other,
        }
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A directory object's id from its JSON, encoded for a path.
pub fn id_segment(object: &Value) -> String {
    encode(object["id"].as_str().unwrap_or_default())
}

/// An OData string literal: quotes doubled.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_only_goes_to_the_server_logged_in_to() {
        let graph = Graph {
            http: reqwest::Client::new(),
            session: Mutex::new(session::test_session("https://id.contoso.test")),
        };
        assert_eq!(graph.url("/v1.0/users").expect("path"), "https://id.contoso.test/v1.0/users");
        // A next link the server built from another name of itself, or another host, is moved
        // onto the session's origin.
        for link in
            ["http://localhost:8080/v1.0/users?$skiptoken=abc", "https://evil.example/v1.0/users?$skiptoken=abc"]
        {
            assert_eq!(graph.url(link).expect("link"), "https://id.contoso.test/v1.0/users?$skiptoken=abc", "{link}");
        }
    }

    #[test]
    fn values_are_encoded_for_urls_and_filters() {
        assert_eq!(encode("adele@contoso.com"), "adele@contoso.com");
        assert_eq!(encode("a b/c?d#e&f"), "a%20b%2Fc%3Fd%23e%26f");
        assert_eq!(literal("O'Brien"), "'O''Brien'");
    }
}
