//! The authorization endpoint: validating the request, the session and its MFA, consent, and the
//! code or error sent back.

use crate::consent::ConsentCheck;
use crate::{App, AppError, random_token, sha256};
use keyward_core::authorize::{self, Prompt};
use keyward_core::directory::{Tenant, User};
use keyward_core::oauth::{self, codes};
use keyward_store::{AuthCode, Grant};
use time::OffsetDateTime;

use super::{
    AuthorizeOutcome, AuthorizeRequest, CODE_LIFETIME, ResponseMode, not_consented, scope_string, strip_param,
    url_encode,
};

impl App {
    /// `GET /{tenant}/oauth2/v2.0/authorize`.
    pub async fn authorize(
        &self,
        tenant_key: &str,
        request: &AuthorizeRequest,
        session_cookie: Option<&str>,
    ) -> Result<AuthorizeOutcome, AppError> {
        let Some(tenant) = self.find_tenant(tenant_key).await? else {
            return Ok(AuthorizeOutcome::ErrorPage(format!(
                "AADSTS90002: Tenant '{tenant_key}' not found. Check the sign-in address your application uses."
            )));
        };
        // A repeated client or redirect URI leaves no address to answer safely (RFC 6749 §4.1.2.1).
        if let Some(name) = request.repeated.iter().find(|it| matches!(it.as_str(), "client_id" | "redirect_uri")) {
            let description = oauth::repeated_parameter(name);
            return Ok(AuthorizeOutcome::ErrorPage(format!("AADSTS{}: {description}", codes::AMBIGUOUS_REQUEST)));
        }
        let Some(client_id) = request.get("client_id") else {
            return Ok(AuthorizeOutcome::ErrorPage(format!(
                "AADSTS{}: {}",
                codes::MISSING_PARAMETER,
                oauth::missing_parameter("client_id")
            )));
        };
        let Some(client) = self.client(&tenant, client_id).await? else {
            let (code, text) = self.missing_client(&tenant, client_id).await?;
            let next = if code == codes::CLIENT_DISABLED {
                "An administrator of this tenant can enable it again."
            } else {
                "Ask the application's owner to register it in this tenant."
            };
            return Ok(AuthorizeOutcome::ErrorPage(format!("AADSTS{code}: {text} {next}")));
        };
        let Some(redirect_uri) = request.get("redirect_uri") else {
            return Ok(AuthorizeOutcome::ErrorPage(
                "AADSTS900144: The request must contain the following parameter: 'redirect_uri'.".into(),
            ));
        };
        let Some(is_public) = client.redirect(redirect_uri) else {
            return Ok(AuthorizeOutcome::ErrorPage(format!(
                "AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not match the redirect \
                 URIs configured for the application '{client_id}'."
            )));
        };
        let (mode, mode_ok) = ResponseMode::parse(request.get("response_mode"));
        let issuer = self.issuer(&tenant.id);
        let fail = |error: &str, code: i64, description: &str| {
            let mut params = vec![
                ("error".to_owned(), error.to_owned()),
                ("error_description".to_owned(), format!("AADSTS{code}: {description}")),
                ("error_codes".to_owned(), format!("[{code}]")),
            ];
            if let Some(state) = request.get("state") {
                params.push(("state".into(), state.to_owned()));
            }
            params.push(("iss".into(), issuer.clone()));
            Ok(AuthorizeOutcome::Respond { redirect_uri: redirect_uri.to_owned(), mode, params })
        };
        if let Some(name) = request.repeated.first() {
            return fail("invalid_request", codes::AMBIGUOUS_REQUEST, &oauth::repeated_parameter(name));
        }
        if let Err(refused) = mode_ok.and_then(|()| authorize::check_response_type(request.get("response_type"))) {
            return fail(refused.error, refused.code, refused.description);
        }
        let scopes =
            match oauth::parse_requested_scope(request.get("scope").unwrap_or("openid"), &self.inner.config.public_url)
            {
                Ok(it) => it,
                Err(err) => return fail("invalid_scope", codes::INVALID_SCOPE, &err.0),
            };
        let parsed =
            authorize::code_challenge(request.get("code_challenge"), request.get("code_challenge_method"), is_public)
                .and_then(|challenge| Ok((challenge, authorize::max_age(request.get("max_age"))?)))
                .and_then(|(challenge, max_age)| Ok((challenge, max_age, Prompt::parse(request.get("prompt"))?)));
        let (challenge, max_age, prompt) = match parsed {
            Ok(it) => it,
            Err(refused) => return fail(refused.error, refused.code, refused.description),
        };
        // `kw_after`: the time this request sent the user to sign in (prompt=login, max_age);
        // a sign-in at or after it satisfies them.
        // It carries this server's MAC, so a client cannot hand in a marker of its own to skip a
        // fresh sign-in.
        let now = self.now();
        let signed_in_after =
            request.get("kw_after").and_then(|it| self.parse_after_marker(it, request, now.unix_timestamp()));
        let session = match session_cookie {
            Some(cookie) => self.signed_in_session(&tenant, cookie).await?,
            None => None,
        };
        let fresh_enough =
            |auth_time: OffsetDateTime| authorize::session_is_fresh(prompt, max_age, signed_in_after, auth_time, now);
        let has_session = session.is_some();
        let mut usable = session.filter(|(_, session)| session.authenticated_at.is_some_and(fresh_enough));
        // Step-up: a session signed in without MFA is not reused for a user who must now use it;
        // the user signs in again and meets the second factor.
        let mut needs_mfa = false;
        if let Some((user, session)) = &usable
            && self.mfa_missing(&tenant, user, &session.methods).await?
        {
            needs_mfa = true;
            usable = None;
        }
        // A `login_hint` naming someone other than the signed-in user: the session is not this
        // request's; the code must not silently be for another account.
        // A sign-in made for this very request stands, whoever it is: the hint only suggests
        // (and the user may have chosen another account on the sign-in page).
        let mut other_user = false;
        if let (Some(hint), Some((user, session))) = (request.get("login_hint").map(str::trim), &usable)
            && !hint.is_empty()
            && signed_in_after.is_none_or(|after| session.authenticated_at.is_none_or(|at| at.unix_timestamp() < after))
            && !self.hint_names(&tenant, user, hint).await?
        {
            other_user = true;
            usable = None;
        }
        let Some((user, session)) = usable else {
            if prompt == Prompt::None && other_user {
                return fail(
                    "login_required",
                    50058,
                    "A silent sign-in request was sent for the account login_hint names, and that account is not the one signed in.",
                );
            }
            if prompt == Prompt::None && needs_mfa {
                return fail(
                    "interaction_required",
                    codes::MFA_REQUIRED,
                    "The user must use multi-factor authentication, which a silent request cannot ask for.",
                );
            }
            if prompt == Prompt::None {
                return fail("login_required", 50058, "A silent sign-in request was sent but no user is signed in.");
            }
            let back = format!(
                "{}&kw_after={}",
                strip_param(&request.path_and_query, "kw_after"),
                self.after_marker(now.unix_timestamp(), request)?
            );
            let mut location = format!("/{}/login?return_to={}", tenant.id, url_encode(&back));
            if has_session {
                // Signed in, but not recently enough (prompt=login, max_age), or as someone else
                // than login_hint names: sign in again.
                location.push_str("&prompt=login");
            }
            if let Some(hint) = request.get("login_hint") {
                location.push_str(&format!("&login_hint={}", url_encode(hint)));
            }
            return Ok(AuthorizeOutcome::SignIn { location });
        };
        // Consent: no code for permissions nobody granted this client for this user.
        if request.get("kw_consent") == Some("denied") {
            return fail("access_denied", codes::ACCESS_DENIED, "The user declined to consent to access the app.");
        }
        let return_to = strip_param(&request.path_and_query, "kw_consent");
        match self.consent_check(&tenant, &client, &user, &scopes, prompt == Prompt::Consent, &return_to).await? {
            ConsentCheck::Granted => (),
            ConsentCheck::Ask(consent) if prompt != Prompt::None => return Ok(AuthorizeOutcome::Consent(consent)),
            ConsentCheck::AdminRequired if prompt != Prompt::None => {
                return Ok(AuthorizeOutcome::ErrorPage(format!(
                    "AADSTS90094: {} needs permission to access resources in your organization that only an admin \
                     can grant. Ask an admin to grant permission to this app before you can use it.",
                    client.display_name
                )));
            }
            ConsentCheck::Ask(_) | ConsentCheck::AdminRequired => {
                return fail("consent_required", codes::CONSENT_REQUIRED, &not_consented(&client));
            }
        }
        let code = random_token()?;
        let auth_time = session.authenticated_at.unwrap_or(now);
        let record = AuthCode {
            code_sha256: sha256(code.as_bytes()),
            grant: Grant {
                tenant_id: tenant.id.clone(),
                client_id: client.client_id.clone(),
                user_id: user.id.clone(),
                scope: scope_string(&scopes),
                auth_time,
                amr: session.methods.clone(),
                pass_expires_at: session.pass_expires_at,
            },
            redirect_uri: redirect_uri.to_owned(),
            nonce: request.get("nonce").map(str::to_owned),
            code_challenge_method: challenge.as_ref().map(|it| it.method.clone()),
            code_challenge: challenge.map(|it| it.challenge),
            created: now,
            expires_at: now + CODE_LIFETIME,
            used_at: None,
        };
        let mut tx = self.write().await?;
        tx.insert_auth_code(&record).await?;
        tx.commit().await?;
        let mut params = vec![("code".to_owned(), code)];
        if let Some(state) = request.get("state") {
            params.push(("state".into(), state.to_owned()));
        }
        params.push(("iss".into(), issuer));
        Ok(AuthorizeOutcome::Respond { redirect_uri: redirect_uri.to_owned(), mode, params })
    }
}

impl App {
    /// Whether `login_hint` names `user`: their user principal name, or their `mail` when no
    /// account has that user principal name (a mail set to another user's name names that user).
    async fn hint_names(&self, tenant: &Tenant, user: &User, hint: &str) -> Result<bool, AppError> {
        if hint.eq_ignore_ascii_case(&user.user_principal_name) {
            return Ok(true);
        }
        if !user.mail.as_deref().is_some_and(|mail| hint.eq_ignore_ascii_case(mail)) {
            return Ok(false);
        }
        Ok(self.read_short().await?.find_user_by_upn(&tenant.id, hint).await?.is_none())
    }
}
