//! Graph's URLs are case-insensitive: `/v1.0/auditLogs/directoryaudits`, `/V1.0/USERS` and
//! `…/authenticationMethodConfigurations/temporaryAccessPass` address what their documented
//! spelling does. Rather than a second route for every spelling, a request under `/v1.0` or
//! `/beta` has each fixed path segment (a word of some route, compared without case) put in the
//! routes' spelling before routing; ids, sign-in names and function arguments are left as sent.
//! A last segment calling a function without arguments (`/users/delta()`) is routed as the
//! function's name (`/users/delta`).
//! The handlers still see the original address (`OriginalUri`), so links and errors echo it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{OriginalUri, Request};
use axum::http::Uri;
use axum::http::uri::PathAndQuery;
// The words are fixed when the routes are built: nothing a request sends is inserted.
use keyward_core::fnv::Fnv;

/// What the Graph SDKs write for `/me` before their URL-replacing middleware runs.
const ME_TOKEN: &str = "/users/me-token-to-replace";

/// The functions without parameters Keyward routes by name alone, lowercase.
const FUNCTIONS: &[&str] = &["delta", "creationoptions"];

/// The routes' fixed segments by their lowercase form; a lowercase form two segments share (none
/// today) is left out, so no request is ever rewritten into a guess.
#[derive(Debug, Clone, Default)]
pub struct Segments(Arc<Words>);

#[derive(Debug, Default)]
struct Words {
    by_lowercase: HashMap<String, &'static str, Fnv>,
    /// Bit `n` set when some word is `n` bytes long (bit 63: 63 or more): a segment of another
    /// length (an object id, most often) is no word, and is neither lowercased nor hashed.
    lengths: u64,
}

impl Words {
    fn may_have(&self, len: usize) -> bool {
        self.lengths & (1 << len.min(63)) != 0
    }
}

impl Segments {
    /// The fixed segments of `paths` (route patterns like `/users/{id}/memberOf`) and the API
    /// versions.
    pub fn of(paths: &[&'static str]) -> Segments {
        let mut map: HashMap<String, Option<&'static str>> = HashMap::new();
        let words = paths.iter().flat_map(|it| it.split('/')).chain(["v1.0", "beta"]);
        for word in words.filter(|it| !it.is_empty() && !it.contains('{')) {
            map.entry(word.to_ascii_lowercase())
                .and_modify(|seen| {
                    if seen.is_some_and(|it| it != word) {
                        *seen = None;
                    }
                })
                .or_insert(Some(word));
        }
        let by_lowercase: HashMap<String, &'static str, Fnv> =
            map.into_iter().filter_map(|(key, word)| Some((key, word?))).collect();
        let lengths = by_lowercase.keys().map(String::len).chain(FUNCTIONS.iter().map(|it| it.len()));
        Segments(Arc::new(Words { lengths: lengths.fold(0, |mask, len| mask | 1 << len.min(63)), by_lowercase }))
    }

    /// `path` with its fixed segments in the routes' spelling, if any differed; only Graph's
    /// paths (under `/v1.0` or `/beta`, in any case). A segment that calls a function
    /// (`name(arguments)`) has its name matched and its arguments kept.
    ///
    /// Linear in the path's length, whatever the path holds: it runs before authentication.
    pub fn canonical(&self, path: &str) -> Option<String> {
        let version = path.split('/').nth(1).unwrap_or_default();
        if !version.eq_ignore_ascii_case("v1.0") && !version.eq_ignore_ascii_case("beta") {
            return None;
        }
        match without_me_tokens(path) {
            Some(replaced) => Some(self.segments_canonical(&replaced).unwrap_or(replaced)),
            None => self.segments_canonical(path),
        }
    }

    /// [`Segments::canonical`]'s fixed segments. Most requests are already in the routes'
    /// spelling: each segment is looked up without allocating (lowercased into one reused
    /// buffer), and the path is copied only once a segment differs.
    fn segments_canonical(&self, path: &str) -> Option<String> {
        let mut lower = String::new();
        let mut edits = Edits::of(path);
        // Where the segment starts in `path`.
        let mut start = 0;
        for segment in path.split('/') {
            let segment_start = start;
            start += segment.len() + 1;
            let is_last = start > path.len();
            let (name, rest) = segment.split_at(segment.find('(').unwrap_or(segment.len()));
            if !self.0.may_have(name.len()) {
                continue;
            }
            lower.clear();
            lower.push_str(name);
            lower.make_ascii_lowercase();
            // A function called without arguments (`delta()`, as the SDKs call it) is the route
            // named without the parentheses.
            let is_bare_call = rest == "()" && is_last && FUNCTIONS.contains(&lower.as_str());
            let word = self.0.by_lowercase.get(lower.as_str()).copied().filter(|it| *it != name);
            if word.is_none() && !is_bare_call {
                continue;
            }
            let end = segment_start + if is_bare_call { segment.len() } else { name.len() };
            edits.replace(segment_start, end, word.unwrap_or(name));
        }
        edits.finish()
    }

    /// Rewrites a request's path into the routes' spelling (see [`Segments::canonical`]),
    /// keeping the address as sent as its `OriginalUri` (unless it already has one).
    pub fn rewrite(&self, mut request: Request) -> Request {
        let Some(path) = self.canonical(request.uri().path()) else { return request };
        if request.extensions().get::<OriginalUri>().is_none() {
            let original = OriginalUri(request.uri().clone());
            request.extensions_mut().insert(original);
        }
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let mut parts = request.uri().clone().into_parts();
        match PathAndQuery::try_from(path_and_query) {
            Ok(it) => parts.path_and_query = Some(it),
            Err(_) => return request,
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
        request
    }
}

/// `path` with each whole segment pair `/users/me-token-to-replace` (any case) as `/me`, if it has
/// any: the Graph SDKs build `/me/…` so and rely on a client middleware to put `/me` back; a
/// client without it still reaches `/me`. One pass over the path.
fn without_me_tokens(path: &str) -> Option<String> {
    let mut edits = Edits::of(path);
    let mut from = 0;
    while let Some(at) = find_ignoring_case(&path[from..], ME_TOKEN).map(|it| it + from) {
        let end = at + ME_TOKEN.len();
        if path[end..].is_empty() || path[end..].starts_with('/') {
            edits.replace(at, end, "/me");
        }
        from = end;
    }
    edits.finish()
}

/// A path with some of its byte ranges replaced, left to right: copied only once a range is, and
/// each part of the path copied once.
struct Edits<'a> {
    path: &'a str,
    out: Option<String>,
    /// The end of what `out` holds of `path`.
    done: usize,
}

impl<'a> Edits<'a> {
    fn of(path: &'a str) -> Edits<'a> {
        Edits { path, out: None, done: 0 }
    }

    /// Puts `with` in place of `path[start..end]` (after every range replaced before).
    fn replace(&mut self, start: usize, end: usize, with: &str) {
        let out = self.out.get_or_insert_with(|| String::with_capacity(self.path.len()));
        out.push_str(&self.path[self.done..start]);
        out.push_str(with);
        self.done = end;
    }

    /// The path with its replacements, if it had any.
    fn finish(self) -> Option<String> {
        self.out.map(|mut out| {
            out.push_str(&self.path[self.done..]);
            out
        })
    }
}

/// Where `needle` (ASCII, lowercase, not empty) first occurs in `haystack`, compared without ASCII
/// case: only where its first byte is does the rest get compared.
fn find_ignoring_case(haystack: &str, needle: &str) -> Option<usize> {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    let first = *needle.first()?;
    (0..=haystack.len().checked_sub(needle.len())?).find(|&at| {
        haystack[at].eq_ignore_ascii_case(&first) && haystack[at..at + needle.len()].eq_ignore_ascii_case(needle)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments() -> Segments {
        Segments::of(&[
            "/auditLogs/directoryAudits/{id}",
            "/users/{id}/authentication/methods",
            "/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/TemporaryAccessPass",
            "/reports/authenticationMethods/{function}",
            "/groups/{id}/members/$ref",
            "/users/delta",
        ])
    }

    #[test]
    fn segments_of_a_length_no_word_has_are_passed_over() {
        let it = segments();
        assert_eq!(
            it.canonical("/v1.0/USERS/62E90394-69F5-4237-9190-012177145E10/Authentication/methods").as_deref(),
            Some("/v1.0/users/62E90394-69F5-4237-9190-012177145E10/authentication/methods"),
            "the id is left as sent"
        );
        // A word of 63 bytes or more shares one length bit with every segment that long.
        let word = format!("very{}Long", "x".repeat(70));
        let long = Segments::of(&[Box::leak(format!("/{word}/{{id}}").into_boxed_str())]);
        let sent = format!("/beta/{}/{}", word.to_ascii_uppercase(), "y".repeat(90));
        assert_eq!(long.canonical(&sent), Some(format!("/beta/{word}/{}", "y".repeat(90))));
        assert_eq!(long.canonical(&format!("/beta/{}", "z".repeat(80))), None);
    }

    #[test]
    fn fixed_segments_take_the_routes_spelling() {
        let it = segments();
        assert_eq!(it.canonical("/v1.0/auditLogs/directoryaudits").as_deref(), Some("/v1.0/auditLogs/directoryAudits"));
        assert_eq!(
            it.canonical("/V1.0/Users/Adele@Contoso.test/AUTHENTICATION/Methods").as_deref(),
            Some("/v1.0/users/Adele@Contoso.test/authentication/methods"),
            "the sign-in name is left as sent"
        );
        assert_eq!(
            it.canonical(
                "/beta/policies/authenticationmethodspolicy/authenticationMethodConfigurations/temporaryAccessPass"
            )
            .as_deref(),
            Some("/beta/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/TemporaryAccessPass")
        );
        assert_eq!(it.canonical("/v1.0/GROUPS/x/members/$REF").as_deref(), Some("/v1.0/groups/x/members/$ref"));
        assert_eq!(it.canonical("/v1.0/users/delta()").as_deref(), Some("/v1.0/users/delta"));
        assert_eq!(it.canonical("/v1.0/users/me-token-to-replace/memberOf").as_deref(), Some("/v1.0/me/memberOf"));
        assert_eq!(it.canonical("/beta/users/me-token-to-replace").as_deref(), Some("/beta/me"));
        assert_eq!(it.canonical("/v1.0/users/me-token-to-replaced"), None, "a whole segment only");
        assert_eq!(it.canonical("/v1.0/users/Delta()").as_deref(), Some("/v1.0/users/delta"));
        assert_eq!(it.canonical("/v1.0/users/delta()/x"), None, "only a last segment");
        assert_eq!(it.canonical("/v1.0/users()"), None, "only functions");
        // Function arguments are kept; the documented spelling and other surfaces are untouched.
        assert_eq!(
            it.canonical("/v1.0/Reports/authenticationMethods/f(x='Users')").as_deref(),
            Some("/v1.0/reports/authenticationMethods/f(x='Users')")
        );
        assert_eq!(it.canonical("/v1.0/auditLogs/directoryAudits"), None);
        // Segments longer than any fixed word, or not ASCII, are kept as sent, before and after
        // a segment that changes.
        let long = format!("{}@contoso.test", "a".repeat(70));
        assert_eq!(it.canonical(&format!("/v1.0/users/{long}/authentication/methods")), None);
        assert_eq!(
            it.canonical(&format!("/v1.0/users/{long}/AUTHENTICATION/methods")),
            Some(format!("/v1.0/users/{long}/authentication/methods"))
        );
        assert_eq!(
            it.canonical("/v1.0/USERS/Zoë.Ünal@contoso.test/authentication/Methods").as_deref(),
            Some("/v1.0/users/Zoë.Ünal@contoso.test/authentication/methods")
        );
        assert_eq!(it.canonical("/contoso.test/Users"), None);
        assert_eq!(it.canonical("/v1.0/nosuch/thing"), None);
    }

    /// The rewrite runs before authentication, so a long path of segments that all change, or of
    /// SDK `/me` tokens, must cost one pass (about 64 kB is the longest URI the HTTP parser
    /// takes); found again from the start for each segment, such a path took seconds.
    #[test]
    fn long_paths_are_rewritten_whole() {
        let it = segments();
        let many = format!("/v1.0{}", "/USERS".repeat(10_000));
        let rewritten = it.canonical(&many).expect("changed");
        assert_eq!(rewritten, format!("/v1.0{}", "/users".repeat(10_000)));
        let tokens = format!("/v1.0{}", "/users/ME-TOKEN-TO-REPLACE".repeat(2_500));
        assert_eq!(it.canonical(&tokens).expect("changed"), format!("/v1.0{}", "/me".repeat(2_500)));
        assert_eq!(
            it.canonical("/v1.0/users/me-token-to-replaced/users/me-token-to-replace/x").as_deref(),
            Some("/v1.0/users/me-token-to-replaced/me/x"),
            "only whole segments, wherever they are"
        );
    }

    #[test]
    fn a_needle_is_found_without_case_only_where_it_whole_is() {
        assert_eq!(find_ignoring_case("/USERS/Me-Token", "/users/me-token"), Some(0));
        assert_eq!(find_ignoring_case("/a/b/users/me", "/users/me"), Some(4), "at the very end");
        assert_eq!(find_ignoring_case("/users/m", "/users/me"), None, "longer than what is left");
        assert_eq!(find_ignoring_case("", "/users"), None);
        assert_eq!(find_ignoring_case("/user/users/x", "/users"), Some(5), "after a near miss");
        assert_eq!(find_ignoring_case("/users", ""), None, "an empty needle is never looked for");
    }

    #[test]
    fn a_spelling_two_routes_disagree_on_is_left_alone() {
        let it = Segments::of(&["/a/Thing", "/b/thing"]);
        assert_eq!(it.canonical("/v1.0/a/THING"), None);
    }
}
