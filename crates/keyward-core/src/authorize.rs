//! The authorization request's parameter rules (OpenID Connect Core §3.1.2.1, RFC 7636, OAuth
//! 2.0 Form Post Response Mode), as Entra applies them: which values are accepted, and whether a
//! signed-in session is fresh enough for what the request asks.

use time::OffsetDateTime;

use crate::oauth::codes;

/// A refused parameter: the OAuth `error`, Entra's `AADSTS` code and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub error: &'static str,
    pub code: i64,
    pub description: &'static str,
}

impl ParamError {
    fn invalid_request(code: i64, description: &'static str) -> ParamError {
        ParamError { error: "invalid_request", code, description }
    }
}

/// How the authorization response travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    Query,
    FormPost,
}

impl ResponseMode {
    /// The mode `response_mode` asks for. An unknown mode is refused, and the refusal itself is
    /// sent back by query (the only mode left to trust).
    pub fn parse(raw: Option<&str>) -> (ResponseMode, Result<(), ParamError>) {
        match raw {
            None | Some("query") => (ResponseMode::Query, Ok(())),
            Some("form_post") => (ResponseMode::FormPost, Ok(())),
            Some(_) => (
                ResponseMode::Query,
                Err(ParamError::invalid_request(
                    codes::MISSING_PARAMETER,
                    "response_mode must be 'query' or 'form_post'.",
                )),
            ),
        }
    }
}

/// `response_type`: only the authorization code flow.
pub fn check_response_type(raw: Option<&str>) -> Result<(), ParamError> {
    match raw {
        Some("code") => Ok(()),
        _ => Err(ParamError {
            error: "unsupported_response_type",
            code: codes::MISSING_PARAMETER,
            description: "The provided value for the input parameter 'response_type' is not allowed: use 'code'.",
        }),
    }
}

/// A code challenge the code is bound to: the challenge and its method (`S256` or `plain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge {
    pub challenge: String,
    pub method: String,
}

/// PKCE (RFC 7636): a challenge's method must be `S256` or `plain` (the default); public clients
/// must send an `S256` challenge, as Entra requires of single-page and native applications.
pub fn code_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
    is_public_client: bool,
) -> Result<Option<CodeChallenge>, ParamError> {
    let method = method.unwrap_or("plain");
    if challenge.is_some() && !matches!(method, "S256" | "plain") {
        return Err(ParamError::invalid_request(codes::PKCE_REQUIRED, "code_challenge_method must be 'S256'."));
    }
    if is_public_client && (challenge.is_none() || method != "S256") {
        return Err(ParamError::invalid_request(
            codes::PKCE_REQUIRED,
            "Proof Key for Code Exchange is required for public clients: send code_challenge with \
             code_challenge_method=S256.",
        ));
    }
    // RFC 7636 section 4.2: 43 to 128 characters of the unreserved set (an S256 challenge is
    // 43); anything else could never match a verifier.
    if let Some(it) = challenge
        && !((43..=128).contains(&it.len())
            && it.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')))
    {
        return Err(ParamError::invalid_request(
            codes::PKCE_REQUIRED,
            "code_challenge must be 43 to 128 characters of letters, digits and '-._~' (RFC 7636): the \
             base64url SHA-256 of the code verifier for S256.",
        ));
    }
    Ok(challenge.map(|it| CodeChallenge { challenge: it.to_owned(), method: method.to_owned() }))
}

/// `max_age`: seconds since the user's last sign-in that the client accepts.
pub fn max_age(raw: Option<&str>) -> Result<Option<i64>, ParamError> {
    match raw.map(str::parse::<i64>) {
        None => Ok(None),
        Some(Ok(seconds)) if seconds >= 0 => Ok(Some(seconds)),
        Some(_) => Err(ParamError::invalid_request(codes::MISSING_PARAMETER, "max_age must be a number of seconds.")),
    }
}

/// What `prompt` asks of the sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// No prompt: reuse a session when there is one.
    Default,
    /// Sign in again, whatever session exists.
    Login,
    /// Never show a page: answer `login_required` or `interaction_required` instead.
    None,
    /// Entra shows the account picker; Keyward, which has one account per browser, signs in again.
    SelectAccount,
    /// Ask for consent even if it was given before.
    Consent,
}

impl Prompt {
    pub fn parse(raw: Option<&str>) -> Result<Prompt, ParamError> {
        match raw.unwrap_or("") {
            "" => Ok(Prompt::Default),
            "login" => Ok(Prompt::Login),
            "none" => Ok(Prompt::None),
            "select_account" => Ok(Prompt::SelectAccount),
            "consent" => Ok(Prompt::Consent),
            _ => Err(ParamError::invalid_request(
                codes::MISSING_PARAMETER,
                "prompt must be login, none, select_account or consent.",
            )),
        }
    }

    /// Whether this prompt asks for a fresh sign-in.
    pub fn wants_fresh_sign_in(self) -> bool {
        matches!(self, Prompt::Login | Prompt::SelectAccount)
    }
}

/// Whether a session signed in at `auth_time` satisfies the request at `now`.
///
/// `signed_in_after` is the time this request sent the user to sign in (the request carries it
/// back, under the server's MAC): a sign-in at or after it satisfies `prompt=login` and
/// `max_age`. Without it, `prompt=login` (or `select_account`) is never satisfied by an existing
/// session, and `max_age` is measured from `auth_time`.
pub fn session_is_fresh(
    prompt: Prompt,
    max_age: Option<i64>,
    signed_in_after: Option<i64>,
    auth_time: OffsetDateTime,
    now: OffsetDateTime,
) -> bool {
    let after_ok = signed_in_after.is_none_or(|after| auth_time.unix_timestamp() >= after);
    let signed_in_for_this_request = signed_in_after.is_some() && after_ok;
    let login_ok = !prompt.wants_fresh_sign_in() || signed_in_for_this_request;
    let age_ok = max_age.is_none_or(|max| (now - auth_time).whole_seconds() <= max) || signed_in_for_this_request;
    login_ok && age_ok
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn response_modes_are_query_or_form_post_and_an_unknown_one_is_refused_by_query() {
        assert_eq!(ResponseMode::parse(None), (ResponseMode::Query, Ok(())));
        assert_eq!(ResponseMode::parse(Some("form_post")), (ResponseMode::FormPost, Ok(())));
        let (mode, refused) = ResponseMode::parse(Some("fragment"));
        assert_eq!(mode, ResponseMode::Query);
        assert_eq!(refused.map_err(|it| it.error), Err("invalid_request"));
    }

    #[test]
    fn only_the_code_response_type_is_accepted() {
        assert!(check_response_type(Some("code")).is_ok());
        for refused in [None, Some("token"), Some("id_token"), Some("code id_token")] {
            assert_eq!(check_response_type(refused).map_err(|it| it.error), Err("unsupported_response_type"));
        }
    }

    #[test]
    fn public_clients_must_send_an_s256_challenge() {
        let abc = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let s256 = code_challenge(Some(abc), Some("S256"), true).expect("S256 accepted");
        assert_eq!(s256, Some(CodeChallenge { challenge: abc.into(), method: "S256".into() }));
        assert_eq!(code_challenge(Some(abc), None, true).map_err(|it| it.code), Err(codes::PKCE_REQUIRED));
        assert_eq!(code_challenge(None, None, true).map_err(|it| it.code), Err(codes::PKCE_REQUIRED));
        assert_eq!(code_challenge(Some(abc), Some("S512"), false).map_err(|it| it.code), Err(codes::PKCE_REQUIRED));
        // RFC 7636's length and alphabet.
        for bad in ["abc", &"a".repeat(129), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"] {
            assert_eq!(code_challenge(Some(bad), Some("S256"), true).map_err(|it| it.code), Err(codes::PKCE_REQUIRED));
        }
        let plain = code_challenge(Some(abc), None, false).expect("plain accepted for confidential clients");
        assert_eq!(plain.map(|it| it.method), Some("plain".into()));
        assert_eq!(code_challenge(None, None, false), Ok(None));
    }

    #[test]
    fn max_age_is_a_non_negative_number_of_seconds() {
        assert_eq!(max_age(None), Ok(None));
        assert_eq!(max_age(Some("0")), Ok(Some(0)));
        assert_eq!(max_age(Some("3600")), Ok(Some(3600)));
        for refused in ["-1", "1h", "", "9999999999999999999999"] {
            assert!(max_age(Some(refused)).is_err(), "{refused}");
        }
    }

    #[test]
    fn prompts_are_entras_four_values() {
        assert_eq!(Prompt::parse(None), Ok(Prompt::Default));
        assert_eq!(Prompt::parse(Some("select_account")), Ok(Prompt::SelectAccount));
        assert!(Prompt::parse(Some("create")).is_err());
        assert!(Prompt::Login.wants_fresh_sign_in() && Prompt::SelectAccount.wants_fresh_sign_in());
        assert!(!Prompt::None.wants_fresh_sign_in() && !Prompt::Consent.wants_fresh_sign_in());
    }

    #[test]
    fn a_session_is_fresh_unless_the_request_asks_for_a_newer_sign_in() {
        let now = datetime!(2026-12-02 10:00 UTC);
        let hour_ago = datetime!(2026-12-02 09:00 UTC);
        let sent_at = datetime!(2026-12-02 09:59 UTC).unix_timestamp();
        let just_now = datetime!(2026-12-02 09:59:30 UTC);
        // No prompt, no max_age: any session.
        assert!(session_is_fresh(Prompt::Default, None, None, hour_ago, now));
        // prompt=login: never an old session, but the sign-in this request asked for.
        assert!(!session_is_fresh(Prompt::Login, None, None, hour_ago, now));
        assert!(!session_is_fresh(Prompt::Login, None, Some(sent_at), hour_ago, now));
        assert!(session_is_fresh(Prompt::Login, None, Some(sent_at), just_now, now));
        // max_age: measured from the sign-in, or satisfied by the requested one.
        assert!(!session_is_fresh(Prompt::Default, Some(600), None, hour_ago, now));
        assert!(session_is_fresh(Prompt::Default, Some(7200), None, hour_ago, now));
        assert!(session_is_fresh(Prompt::Default, Some(0), Some(sent_at), just_now, now));
        // A marker for a later time than the session's sign-in does not make an old one fresh.
        assert!(!session_is_fresh(Prompt::Default, Some(600), Some(sent_at), hour_ago, now));
    }
}
