//! Requests to a Keyward server's Graph API as the signed-in administrator: paging, retries on
//! throttling, and errors that say what to do next.

use std::time::Duration;

use serde_json::Value;

use super::session::{self, Session};
use super::{Failure, exit};

/// The signed-in administrator's view of one server's API.
#[derive(Debug)]
pub struct Graph {
    http: reqwest::Client,
    session: Session,
}

impl Graph {
    /// The session named `server` (or the default one), refreshed if needed.
    pub async fn connect(server: Option<&str>) -> anyhow::Result<Graph> {
        let session = session::session(server).await?;
        let http = session::http_client(session.server.ca_cert.as_deref())?;
        Ok(Graph { http, session })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// `path` is under the server: `/v1.0/users?…`. Query values must already be encoded
    /// (see [`encode`]).
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.session.server.url)
    }

    /// Sends a request and returns its JSON body (`Null` when empty), retrying throttled ones (429, 503 with Retry-After) up to three times.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        eventual: bool,
    ) -> anyhow::Result<Value> {
        let url =
            if path.starts_with("http://") || path.starts_with("https://") { path.to_owned() } else { self.url(path) };
        let mut attempt = 0;
        loop {
            let mut request = self.http.request(method.clone(), &url).bearer_auth(&self.session.access_token);
            if eventual {
                request = request.header("ConsistencyLevel", "eventual");
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let reply = request.send().await.map_err(|err| session::unreachable(&self.session.server.url, &err))?;
            let status = reply.status();
            let retry_after = reply
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|it| it.to_str().ok())
                .and_then(|it| it.parse::<u64>().ok());
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
            if let (true, Some(seconds)) = (matches!(status.as_u16(), 429 | 503) && attempt < 3, retry_after) {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(seconds.clamp(1, 60))).await;
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
        let server = &self.session.server;
        match status.as_u16() {
            401 => Failure::new(
                exit::SESSION,
                format!(
                    "{} no longer accepts your session ({message}); log in again: keyward login --url {} --name {}",
                    server.url, server.url, self.session.name
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

/// An OData string literal: quotes doubled.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_encoded_for_urls_and_filters() {
        assert_eq!(encode("adele@contoso.com"), "adele@contoso.com");
        assert_eq!(encode("a b/c?d#e&f"), "a%20b%2Fc%3Fd%23e%26f");
        assert_eq!(literal("O'Brien"), "'O''Brien'");
    }
}
