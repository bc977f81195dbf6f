//! A small test user agent that drives Keyward's sign-in pages the way a browser without
//! JavaScript would: it keeps cookies, follows redirects itself, and submits forms, filling
//! inputs by their `autocomplete` token.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

/// One page as the user agent received it.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: StatusCode,
    /// The path the page was loaded from.
    pub path: String,
    pub html: String,
    /// The `Set-Cookie` headers of the last response, as received.
    pub set_cookies: Vec<String>,
}

/// A form on a page: where it posts and its fields.
#[derive(Debug, Clone)]
pub struct Form {
    pub action: String,
    /// The opening `<form …>` tag.
    pub tag: String,
    /// `(name, value, autocomplete, type)` of each input.
    pub inputs: Vec<(String, String, String, String)>,
}

impl Page {
    /// The `<h1>` text.
    pub fn title(&self) -> String {
        between(&self.html, "<h1>", "</h1>").map(unescape).unwrap_or_default()
    }

    /// The page's text with tags removed (for "does it say …" checks).
    pub fn text(&self) -> String {
        let mut res = String::new();
        let mut in_tag = false;
        for ch in self.html.chars() {
            match ch {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    res.push(' ');
                }
                _ if !in_tag => res.push(ch),
                _ => (),
            }
        }
        unescape(&res.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// The text inside the element with this `id`.
    pub fn by_id(&self, id: &str) -> Option<String> {
        let marker = format!("id=\"{id}\"");
        let start = self.html.find(&marker)?;
        let rest = &self.html[start..];
        let open_end = rest.find('>')? + 1;
        let close = rest[open_end..].find('<')?;
        Some(unescape(&rest[open_end..open_end + close]))
    }

    /// Every form on the page.
    pub fn forms(&self) -> Vec<Form> {
        let mut res = Vec::new();
        let mut rest = self.html.as_str();
        while let Some(start) = rest.find("<form") {
            let Some(end) = rest[start..].find("</form>") else { break };
            let chunk = &rest[start..start + end];
            let open = &chunk[..chunk.find('>').unwrap_or(chunk.len())];
            let action = attr(open, "action").unwrap_or_default();
            let mut inputs = Vec::new();
            let mut inner = chunk;
            while let Some(at) = inner.find("<input") {
                let tag_end = inner[at..].find('>').map_or(inner.len(), |it| at + it);
                let tag = &inner[at..tag_end];
                inputs.push((
                    attr(tag, "name").unwrap_or_default(),
                    attr(tag, "value").unwrap_or_default(),
                    attr(tag, "autocomplete").unwrap_or_default(),
                    attr(tag, "type").unwrap_or_else(|| "text".into()),
                ));
                inner = &inner[tag_end..];
            }
            res.push(Form { action, tag: open.to_owned(), inputs });
            rest = &rest[start + end..];
        }
        res
    }

    /// The form whose hidden `step` field is `step`.
    pub fn form(&self, step: &str) -> Option<Form> {
        self.forms()
            .into_iter()
            .find(|form| form.inputs.iter().any(|(name, value, ..)| name == "step" && value == step))
    }
}

impl Form {
    /// An attribute of the form element (`data-options`), unescaped.
    pub fn attr(&self, name: &str) -> Option<String> {
        attr(&self.tag, name)
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let from = tag.find(&marker)? + marker.len();
    let to = tag[from..].find('"')? + from;
    Some(unescape(&tag[from..to]))
}

/// Decodes the character references a page may carry: the named ones for markup characters and
/// numeric ones (`&#38;`, `&#x26;`), as a browser does.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|end| *end <= 10).and_then(|end| {
            let name = &rest[1..end];
            let ch = match name {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "amp" => Some('&'),
                _ => match name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok().and_then(char::from_u32),
                    None => name.strip_prefix('#').and_then(|it| it.parse().ok()).and_then(char::from_u32),
                },
            };
            ch.map(|it| (it, end + 1))
        });
        match decoded {
            Some((ch, len)) => {
                out.push(ch);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A user agent with its own cookie jar (a clone has a copy: a second tab of the same session).
#[derive(Debug, Clone)]
pub struct Browser {
    base_url: String,
    client: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    pub fn new(base_url: &str) -> Browser {
        Self::with_user_agent(base_url, None)
    }

    /// A browser that also trusts the certificates in `pem` (a server's self-signed one).
    pub fn trusting(base_url: &str, pem: &[u8]) -> Browser {
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        for certificate in reqwest::Certificate::from_pem_bundle(pem).expect("PEM certificates") {
            builder = builder.add_root_certificate(certificate);
        }
        Browser {
            base_url: base_url.to_owned(),
            client: builder.build().expect("http client"),
            cookies: BTreeMap::new(),
        }
    }

    /// A browser that sends `user_agent` as its `User-Agent` (none by default).
    pub fn with_user_agent(base_url: &str, user_agent: Option<&str>) -> Browser {
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(agent) = user_agent {
            builder = builder.user_agent(agent);
        }
        Browser {
            base_url: base_url.to_owned(),
            client: builder.build().expect("http client"),
            cookies: BTreeMap::new(),
        }
    }

    /// A browser with cookies of its own on `client`, which must not follow redirects (as
    /// [`Browser::new`]'s does not). Many browsers on one client share its connections and load
    /// the trusted roots once: the benchmark's simulated users.
    pub fn on_client(base_url: &str, client: reqwest::Client) -> Browser {
        Browser { base_url: base_url.to_owned(), client, cookies: BTreeMap::new() }
    }

    /// A client for [`Browser::on_client`].
    pub fn client() -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http client")
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ")
    }

    fn store_cookies(&mut self, response: &reqwest::Response) -> Vec<String> {
        let mut raw = Vec::new();
        for value in response.headers().get_all(SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            raw.push(text.to_owned());
            let first = text.split(';').next().unwrap_or_default();
            let Some((name, value)) = first.split_once('=') else { continue };
            let expired = text.split(';').any(|it| it.trim().eq_ignore_ascii_case("Max-Age=0"));
            if expired || value.is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        raw
    }

    /// Loads a page, following redirects on this site.
    pub async fn get(&mut self, path: &str) -> Page {
        self.get_from(path, None).await
    }

    /// Loads a page as a browser does when `fetch_site` (its `Sec-Fetch-Site`: `cross-site` for
    /// a link on another site) sent it there.
    pub async fn get_from(&mut self, path: &str, fetch_site: Option<&str>) -> Page {
        let mut path = path.to_owned();
        let mut set_cookies = Vec::new();
        for _ in 0..10 {
            let response = self
                .client
                .get(format!("{}{path}", self.base_url))
                .header(COOKIE, self.cookie_header())
                .header("sec-fetch-site", fetch_site.unwrap_or("same-origin"))
                .send()
                .await
                .expect("GET");
            set_cookies.extend(self.store_cookies(&response));
            let status = response.status();
            if status.is_redirection() {
                let location = response.headers().get(LOCATION).and_then(|it| it.to_str().ok()).expect("Location");
                // A redirect off this site (an application's redirect URI) ends the walk: the
                // page's `path` holds where it points.
                match location.strip_prefix(&self.base_url) {
                    Some(local) => path = local.to_owned(),
                    None if location.starts_with('/') => path = location.to_owned(),
                    None => return Page { status, path: location.to_owned(), html: String::new(), set_cookies },
                }
                continue;
            }
            let html = response.text().await.expect("body");
            return Page { status, path, html, set_cookies };
        }
        panic!("too many redirects, last at {path}");
    }

    /// Submits the form for `step`, filling inputs by `autocomplete` token from `fills` and
    /// by name from `extra` (checkboxes are sent only when named in `extra`).
    pub async fn submit(&mut self, page: &Page, step: &str, fills: &[(&str, &str)], extra: &[(&str, &str)]) -> Page {
        let form = page.form(step).unwrap_or_else(|| panic!("no '{step}' form on page:\n{}", page.text()));
        let mut fields: Vec<(String, String)> = Vec::new();
        for (name, value, autocomplete, kind) in &form.inputs {
            if name.is_empty() || kind == "checkbox" {
                continue;
            }
            // `autocomplete` may hold several tokens (`username webauthn`).
            let filled = fills
                .iter()
                .find(|(token, _)| autocomplete.split_whitespace().any(|it| it == *token))
                .map(|(_, it)| (*it).to_owned());
            match filled {
                // Both new-password inputs take the same value, as a password manager fills them.
                Some(value) => fields.push((name.clone(), value)),
                None => fields.push((name.clone(), value.clone())),
            }
        }
        for (name, value) in extra {
            fields.retain(|(it, _)| it != name);
            fields.push(((*name).to_owned(), (*value).to_owned()));
        }
        self.post_form(&form.action, &fields).await
    }

    /// Posts raw form fields to `action` (for tests that forge or replay a form).
    pub async fn post_form(&mut self, action: &str, fields: &[(String, String)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let response = self
            .client
            .post(format!("{}{action}", self.base_url))
            .header(COOKIE, self.cookie_header())
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST");
        let set_cookies = self.store_cookies(&response);
        let status = response.status();
        if status.is_redirection() {
            let target = response.headers().get(LOCATION).and_then(|it| it.to_str().ok()).expect("Location").to_owned();
            if !target.starts_with('/') && !target.starts_with(&self.base_url) {
                return Page { status, path: target, html: String::new(), set_cookies };
            }
            let target = target.strip_prefix(&self.base_url).map(str::to_owned).unwrap_or(target);
            let mut page = self.get(&target).await;
            page.set_cookies.splice(0..0, set_cookies);
            return page;
        }
        let html = response.text().await.expect("body");
        Page { status, path: action.to_owned(), html, set_cookies }
    }
}
