//! `/users/{id}/authentication/…` and `/me/authentication/…`: a user's authentication methods
//! (password, phone, email, software OATH, Temporary Access Pass, and the types Keyward lists
//! empty), password resets and their operations.

use super::{Body, OptionalBody};
use crate::AppState;
use crate::context::{GraphCtx, entity, rfc3339};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::routing::{delete, get, post};
use keyward_app::{AppError, AuthMethod, OathView, PhoneView, TapView, Who};
use keyward_core::auth_methods::{EMAIL_METHOD_ID, PASSWORD_METHOD_ID, PhoneType, TapRequest};
use keyward_core::secret::Secret;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

fn password_json(created: Option<time::OffsetDateTime>) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.passwordAuthenticationMethod",
        "id": PASSWORD_METHOD_ID,
        "password": null,
        "createdDateTime": created.map(rfc3339),
    })
}

fn oath_json(view: &OathView) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.softwareOathAuthenticationMethod",
        "id": view.id.as_str(),
        "secretKey": null,
        "createdDateTime": rfc3339(view.created),
    })
}

pub(super) fn tap_json(view: &TapView) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.temporaryAccessPassAuthenticationMethod",
        "id": view.id.as_str(),
        "temporaryAccessPass": view.pass.as_ref().map(Secret::expose),
        "createdDateTime": rfc3339(view.created),
        "startDateTime": rfc3339(view.start),
        "lifetimeInMinutes": view.lifetime_minutes,
        "isUsableOnce": view.is_usable_once,
        "isUsable": view.usability.is_usable(),
        "methodUsabilityReason": view.usability.as_str(),
    })
}

fn phone_json(phone: &PhoneView) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.phoneAuthenticationMethod",
        "id": phone.phone_type.id(),
        "phoneNumber": phone.number,
        "phoneType": phone.phone_type.as_str(),
        // Keyward does not sign in with SMS.
        "smsSignInState": "notAllowedByPolicy",
    })
}

fn email_json(address: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.emailAuthenticationMethod", "id": EMAIL_METHOD_ID, "emailAddress": address})
}

fn method_json(method: &AuthMethod) -> Value {
    match method {
        AuthMethod::Password { created } => password_json(*created),
        AuthMethod::Phone(phone) => phone_json(phone),
        AuthMethod::Email { address } => email_json(address),
        AuthMethod::SoftwareOath(view) => oath_json(view),
        AuthMethod::TemporaryAccessPass(view) => tap_json(view),
        AuthMethod::Passkey(view) => super::passkeys::passkey_json(view),
    }
}

pub(super) fn list(ctx: &GraphCtx, key: &str, segment: &str, items: Vec<Value>) -> Response {
    let context = format!("{}/$metadata#users('{key}')/authentication/{segment}", ctx.base());
    crate::context::collection(context, items, None, None)
}

/// One method of a collection as an entity, or Graph's 404 naming `id`.
pub(super) fn one(
    ctx: &GraphCtx,
    key: &str,
    segment: &str,
    id: &str,
    found: Option<Value>,
) -> Result<Response, GraphError> {
    let found = found.ok_or_else(|| GraphError::from(AppError::NotFound(id.to_owned())))?;
    Ok(entity(
        format!("{}/$metadata#users('{key}')/authentication/{segment}/$entity", ctx.base()),
        found,
        StatusCode::OK,
    ))
}

/// `GET /users/{id}/authentication/methods` — `users/authenticationMethods/standard/read` (or oneself).
async fn list_methods(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let methods = ctx.state.app.list_auth_methods(&ctx.caller, &key).await?;
    Ok(list(&ctx, &key, "methods", methods.iter().map(method_json).collect()))
}

/// `GET /me/authentication/methods`.
async fn list_my_methods(ctx: GraphCtx) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    let methods = ctx.state.app.list_auth_methods(&ctx.caller, &key).await?;
    Ok(list(&ctx, &key, "methods", methods.iter().map(method_json).collect()))
}

/// `GET /users/{id}/authentication/methods/{method}`: one method of any type, by its id.
async fn get_method(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
    let methods = ctx.state.app.list_auth_methods(&ctx.caller, &key).await?;
    let found = methods
        .iter()
        .map(method_json)
        .find(|it| it.get("id").and_then(Value::as_str).is_some_and(|it| it.eq_ignore_ascii_case(&id)));
    one(&ctx, &key, "methods", &id, found)
}

/// The `/me` form of a handler on one of the signed-in user's methods (`/me/authentication/…/{id}`).
macro_rules! for_me {
    ($name:ident, $handler:ident, $doc:literal) => {
        #[doc = $doc]
        async fn $name(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
            let key = ctx.me_key()?;
            $handler(ctx, Path((key, id))).await
        }
    };
}

for_me!(get_my_method, get_method, "`GET /me/authentication/methods/{id}`.");
for_me!(get_my_password_method, get_password_method, "`GET /me/authentication/passwordMethods/{id}`.");
for_me!(get_my_phone, get_phone, "`GET /me/authentication/phoneMethods/{id}`.");
for_me!(get_my_email, get_email, "`GET /me/authentication/emailMethods/{id}`.");
for_me!(get_my_oath, get_oath, "`GET /me/authentication/softwareOathMethods/{id}`.");

/// `GET /me/authentication/passwordMethods`.
async fn list_my_password_methods(ctx: GraphCtx) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    list_password_methods(ctx, Path(key)).await
}

/// `GET /users/{id}/authentication/passwordMethods`.
async fn list_password_methods(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let methods = ctx.state.app.list_auth_methods(&ctx.caller, &key).await?;
    let items = methods.iter().filter(|it| matches!(it, AuthMethod::Password { .. })).map(method_json).collect();
    Ok(list(&ctx, &key, "passwordMethods", items))
}

/// `GET /users/{id}/authentication/passwordMethods/{method}`.
async fn get_password_method(
    ctx: GraphCtx,
    Path((key, method)): Path<(String, String)>,
) -> Result<Response, GraphError> {
    let methods = ctx.state.app.list_auth_methods(&ctx.caller, &key).await?;
    let found = methods.iter().find(|it| matches!(it, AuthMethod::Password { .. }) && method == PASSWORD_METHOD_ID);
    let found = found.ok_or_else(|| GraphError::from(AppError::NotFound(method.clone())))?;
    Ok(entity(
        format!("{}/$metadata#users('{key}')/authentication/passwordMethods/$entity", ctx.base()),
        method_json(found),
        StatusCode::OK,
    ))
}

/// `POST …/methods/{id}/resetPassword` and `…/passwordMethods/{id}/resetPassword` (202) —
/// `users/password/update` and `users/authenticationMethods/basic/update`; not on oneself.
async fn reset_password(
    ctx: GraphCtx,
    Path((key, method)): Path<(String, String)>,
    OptionalBody(body): OptionalBody,
) -> Result<Response, GraphError> {
    if method != PASSWORD_METHOD_ID {
        return Err(GraphError::from(AppError::BadRequest(format!(
            "resetPassword applies to the password method '{PASSWORD_METHOD_ID}' only."
        ))));
    }
    if let Some(unknown) = body.as_object().and_then(|it| it.keys().find(|key| key.as_str() != "newPassword")) {
        return Err(GraphError::from(AppError::BadRequest(format!(
            "'{unknown}' is not a parameter of resetPassword: it takes 'newPassword' only."
        ))));
    }
    let new_password = match body.get("newPassword") {
        None | Some(Value::Null) => None,
        Some(Value::String(it)) => Some(Secret::new(it.clone())),
        Some(_) => return Err(GraphError::from(AppError::BadRequest("'newPassword' must be a string.".into()))),
    };
    let reset = ctx.state.app.reset_password(&ctx.caller, &key, new_password).await?;
    let location = format!("{}/users/{key}/authentication/operations/{}", ctx.base(), reset.operation_id);
    let body = match &reset.generated {
        Some(password) => json!({
            "@odata.context": format!("{}/$metadata#microsoft.graph.passwordResetResponse", ctx.base()),
            "newPassword": password.expose(),
        }),
        None => json!({}),
    };
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /users/{id}/authentication/operations/{id}`: a password reset's status.
async fn get_operation(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
    let (status, created) = ctx.state.app.reset_operation(&ctx.caller, &key, &id).await?;
    Ok(entity(
        format!("{}/$metadata#users('{key}')/authentication/operations/$entity", ctx.base()),
        json!({
            "@odata.type": "#microsoft.graph.longRunningOperation",
            "id": id, "createdDateTime": rfc3339(created), "lastActionDateTime": rfc3339(created),
            "status": status, "statusDetail": null, "resourceLocation": null,
        }),
        StatusCode::OK,
    ))
}

/// `GET …/phoneMethods` (numbers masked for `restrictedRead` holders).
async fn list_phones(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let phones = ctx.state.app.list_phones(&ctx.caller, &key).await?;
    Ok(list(&ctx, &key, "phoneMethods", phones.iter().map(phone_json).collect()))
}

/// `GET …/phoneMethods/{id}`.
async fn get_phone(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
    let phones = ctx.state.app.list_phones(&ctx.caller, &key).await?;
    let found = phones.iter().find(|it| it.phone_type.id().eq_ignore_ascii_case(&id)).map(phone_json);
    one(&ctx, &key, "phoneMethods", &id, found)
}

/// A phone method's body: its type and number. On an update (`existing`, the method's type), the
/// documented body repeats `phoneType`; only a different type is refused.
fn phone_body(body: &Value, existing: Option<PhoneType>) -> Result<(Option<PhoneType>, String), GraphError> {
    let object = body
        .as_object()
        .ok_or_else(|| GraphError::from(AppError::BadRequest("The request body must be a JSON object.".into())))?;
    let mut kind = None;
    let mut number = None;
    for (name, value) in object {
        let bad = |what: &str| GraphError::from(AppError::BadRequest(format!("Property '{name}' {what}.")));
        match name.as_str() {
            "@odata.type" => (),
            "phoneNumber" => number = Some(value.as_str().ok_or_else(|| bad("must be a string"))?.to_owned()),
            "phoneType" => {
                let parsed = value
                    .as_str()
                    .and_then(PhoneType::parse)
                    .ok_or_else(|| bad("must be mobile, alternateMobile or office"))?;
                if existing.is_some_and(|it| it != parsed) {
                    return Err(bad("cannot be changed; delete the method and add another"));
                }
                kind = Some(parsed);
            }
            "smsSignInState" => return Err(bad("is read-only")),
            _ => return Err(bad("does not exist on type 'microsoft.graph.phoneAuthenticationMethod'")),
        }
    }
    let number =
        number.ok_or_else(|| GraphError::from(AppError::BadRequest("Property 'phoneNumber' is required.".into())))?;
    Ok((kind, number))
}

/// `POST …/phoneMethods` (201) — `users/authenticationMethods/create`.
async fn create_phone(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    add_phone(&ctx, Who::User(&key), &key, &body).await
}

/// Adds `who`'s phone method from `body`; `key` names the user in the reply's context URL.
async fn add_phone(ctx: &GraphCtx, who: Who<'_>, key: &str, body: &Value) -> Result<Response, GraphError> {
    let (kind, number) = phone_body(body, None)?;
    let kind =
        kind.ok_or_else(|| GraphError::from(AppError::BadRequest("Property 'phoneType' is required.".into())))?;
    let phone = ctx.state.app.put_phone(&ctx.caller, who, kind, &number, false).await?;
    Ok(entity(
        format!("{}/$metadata#users('{key}')/authentication/phoneMethods/$entity", ctx.base()),
        phone_json(&phone),
        StatusCode::CREATED,
    ))
}

/// `PATCH …/phoneMethods/{id}` (204) — `users/authenticationMethods/basic/update`.
async fn update_phone(
    ctx: GraphCtx,
    Path((key, id)): Path<(String, String)>,
    Body(body): Body,
) -> Result<Response, GraphError> {
    let kind = PhoneType::from_id(&id).ok_or_else(|| GraphError::from(AppError::NotFound(id.clone())))?;
    let (_, number) = phone_body(&body, Some(kind))?;
    ctx.state.app.put_phone(&ctx.caller, Who::User(&key), kind, &number, true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST …/phoneMethods/{id}/enableSmsSignIn` and `…/disableSmsSignIn`: Keyward sends no text
/// messages, so SMS sign-in stays `notAllowedByPolicy`; enabling it is refused with the reason,
/// disabling it has nothing to do (`204`). Either needs the update permission on the method.
async fn sms_sign_in(
    ctx: GraphCtx,
    Path((key, id)): Path<(String, String)>,
    _: super::NoParameters,
    enable: bool,
) -> Result<Response, GraphError> {
    let kind = PhoneType::from_id(&id).ok_or_else(|| GraphError::from(AppError::NotFound(id.clone())))?;
    let phones = ctx.state.app.list_phones(&ctx.caller, &key).await?;
    if !phones.iter().any(|it| it.phone_type == kind) {
        return Err(GraphError::from(AppError::NotFound(id)));
    }
    ctx.state.app.check_phone_update(&ctx.caller, &key).await?;
    if enable {
        return Err(GraphError::from(AppError::BadRequest(
            "SMS sign-in is not available: Keyward sends no text messages, so smsSignInState stays notAllowedByPolicy."
                .into(),
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE …/phoneMethods/{id}` (204) — `users/authenticationMethods/delete`.
async fn delete_phone(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
    remove_phone(&ctx, Who::User(&key), id).await
}

async fn remove_phone(ctx: &GraphCtx, who: Who<'_>, id: String) -> Result<Response, GraphError> {
    let kind = PhoneType::from_id(&id).ok_or_else(|| GraphError::from(AppError::NotFound(id.clone())))?;
    ctx.state.app.delete_phone(&ctx.caller, who, kind).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET …/emailMethods`.
async fn list_emails(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let email = ctx.state.app.get_email(&ctx.caller, &key).await?;
    Ok(list(&ctx, &key, "emailMethods", email.iter().map(|it| email_json(it)).collect()))
}

/// `GET …/emailMethods/{id}`.
async fn get_email(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
    let email = ctx.state.app.get_email(&ctx.caller, &key).await?;
    let found = email.filter(|_| id.eq_ignore_ascii_case(EMAIL_METHOD_ID)).map(|it| email_json(&it));
    one(&ctx, &key, "emailMethods", &id, found)
}

fn email_address(body: &Value) -> Result<String, GraphError> {
    let bad = |message: String| GraphError::from(AppError::BadRequest(message));
    if let Some(object) = body.as_object()
        && let Some(unknown) = object.keys().find(|it| !matches!(it.as_str(), "emailAddress" | "id" | "@odata.type"))
    {
        return Err(bad(format!(
            "Property '{unknown}' does not exist as a declared property or extension property on type \
             'microsoft.graph.emailAuthenticationMethod'."
        )));
    }
    match body.get("emailAddress") {
        Some(Value::String(it)) => Ok(it.clone()),
        None | Some(Value::Null) => Err(bad("Property 'emailAddress' is required.".into())),
        Some(_) => Err(bad("Property 'emailAddress' must be a string.".into())),
    }
}

/// `POST …/emailMethods` (201) — `users/authenticationMethods/create`.
async fn create_email(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    add_email(&ctx, Who::User(&key), &key, &body).await
}

/// Sets `who`'s email method from `body`; `key` names the user in the reply's context URL.
async fn add_email(ctx: &GraphCtx, who: Who<'_>, key: &str, body: &Value) -> Result<Response, GraphError> {
    let address = email_address(body)?;
    ctx.state.app.put_email(&ctx.caller, who, &address, false).await?;
    Ok(entity(
        format!("{}/$metadata#users('{key}')/authentication/emailMethods/$entity", ctx.base()),
        email_json(&address),
        StatusCode::CREATED,
    ))
}

/// `PATCH …/emailMethods/{id}` (204) — `users/authenticationMethods/basic/update`.
async fn update_email(
    ctx: GraphCtx,
    Path((key, id)): Path<(String, String)>,
    Body(body): Body,
) -> Result<Response, GraphError> {
    if !id.eq_ignore_ascii_case(EMAIL_METHOD_ID) {
        return Err(GraphError::from(AppError::NotFound(id)));
    }
    let address = email_address(&body)?;
    ctx.state.app.put_email(&ctx.caller, Who::User(&key), &address, true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE …/emailMethods/{id}` (204) — `users/authenticationMethods/delete`.
async fn delete_email(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
    remove_email(&ctx, Who::User(&key), id).await
}

async fn remove_email(ctx: &GraphCtx, who: Who<'_>, id: String) -> Result<Response, GraphError> {
    if !id.eq_ignore_ascii_case(EMAIL_METHOD_ID) {
        return Err(GraphError::from(AppError::NotFound(id)));
    }
    ctx.state.app.delete_email(&ctx.caller, who).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Collections of method types Keyward does not register: Microsoft Authenticator, Windows Hello for Business, platform credentials. Reads are authorised like
/// any method read and answer an empty collection; an item is a 404.
macro_rules! empty_collection {
    ($list:ident, $my_list:ident, $item:ident, $delete:ident, $segment:literal) => {
        #[doc = concat!("`GET …/", $segment, "`: always empty.")]
        async fn $list(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
            ctx.state.app.list_auth_methods(&ctx.caller, &key).await?;
            Ok(list(&ctx, &key, $segment, Vec::new()))
        }

        #[doc = concat!("`GET /me/authentication/", $segment, "`: always empty.")]
        async fn $my_list(ctx: GraphCtx) -> Result<Response, GraphError> {
            let key = ctx.me_key()?;
            $list(ctx, Path(key)).await
        }

        #[doc = concat!("`GET …/", $segment, "/{id}`: no such method.")]
        async fn $item(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
            ctx.state.app.list_auth_methods(&ctx.caller, &key).await?;
            Err(GraphError::from(AppError::NotFound(id)))
        }

        #[doc = concat!("`DELETE …/", $segment, "/{id}`: allowed or refused like any delete; then no such method.")]
        async fn $delete(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
            ctx.state.app.check_method_delete(&ctx.caller, &key).await?;
            Err(GraphError::from(AppError::NotFound(id)))
        }
    };
}

empty_collection!(
    list_authenticator,
    list_my_authenticator,
    authenticator_method,
    delete_authenticator,
    "microsoftAuthenticatorMethods"
);
empty_collection!(list_hello, list_my_hello, hello_method, delete_hello, "windowsHelloForBusinessMethods");
empty_collection!(list_platform, list_my_platform, platform_method, delete_platform, "platformCredentialMethods");

/// `GET /me/authentication/temporaryAccessPassMethods` (the pass itself is never shown).
async fn list_my_taps(ctx: GraphCtx) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    list_taps(ctx, Path(key)).await
}

/// `GET …/softwareOathMethods`.
async fn list_oath(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let methods = ctx.state.app.list_software_oath(&ctx.caller, &key).await?;
    Ok(list(&ctx, &key, "softwareOathMethods", methods.iter().map(oath_json).collect()))
}

/// `GET …/softwareOathMethods/{id}`.
async fn get_oath(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
    let methods = ctx.state.app.list_software_oath(&ctx.caller, &key).await?;
    let found = methods.iter().find(|it| it.id.as_str().eq_ignore_ascii_case(&id)).map(oath_json);
    one(&ctx, &key, "softwareOathMethods", &id, found)
}

/// `DELETE …/softwareOathMethods/{id}` (204) — `users/authenticationMethods/delete`.
async fn delete_oath(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
    ctx.state.app.delete_software_oath(&ctx.caller, Who::User(&key), &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET …/temporaryAccessPassMethods`.
async fn list_taps(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    let passes = ctx.state.app.list_taps(&ctx.caller, &key).await?;
    Ok(list(&ctx, &key, "temporaryAccessPassMethods", passes.iter().map(tap_json).collect()))
}

/// `GET …/temporaryAccessPassMethods/{id}`.
async fn get_tap(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
    let passes = ctx.state.app.list_taps(&ctx.caller, &key).await?;
    let found = passes.iter().find(|it| it.id.as_str().eq_ignore_ascii_case(&id)).map(tap_json);
    one(&ctx, &key, "temporaryAccessPassMethods", &id, found)
}

/// `POST …/temporaryAccessPassMethods` (201) — `users/authenticationMethods/create`; not for oneself.
async fn create_tap(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let request = tap_request(&body)?;
    let created = ctx.state.app.create_tap(&ctx.caller, &key, request).await?;
    let mut response = entity(
        format!("{}/$metadata#users('{key}')/authentication/temporaryAccessPassMethods/$entity", ctx.base()),
        tap_json(&created),
        StatusCode::CREATED,
    );
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A Temporary Access Pass request from Graph's `temporaryAccessPassAuthenticationMethod` body.
pub(super) fn tap_request(body: &Value) -> Result<TapRequest, GraphError> {
    let object = body
        .as_object()
        .ok_or_else(|| GraphError::from(AppError::BadRequest("The request body must be a JSON object.".into())))?;
    let mut request = TapRequest::default();
    for (name, value) in object {
        let bad = |what: &str| GraphError::from(AppError::BadRequest(format!("Property '{name}' {what}.")));
        match name.as_str() {
            "@odata.type" => (),
            "startDateTime" => {
                let text = value.as_str().ok_or_else(|| bad("must be a date and time"))?;
                request.start =
                    Some(time::OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad("must be a date and time"))?);
            }
            "lifetimeInMinutes" => {
                request.lifetime_minutes = Some(value.as_i64().ok_or_else(|| bad("must be an integer"))?)
            }
            "isUsableOnce" => {
                request.is_usable_once = Some(value.as_bool().ok_or_else(|| bad("must be true or false"))?)
            }
            _ => return Err(bad("does not exist on type 'microsoft.graph.temporaryAccessPassAuthenticationMethod'")),
        }
    }
    Ok(request)
}

/// `DELETE …/temporaryAccessPassMethods/{id}` (204) — `users/authenticationMethods/delete`.
async fn delete_tap(ctx: GraphCtx, Path((key, id)): Path<(String, String)>) -> Result<Response, GraphError> {
    ctx.state.app.delete_tap(&ctx.caller, &key, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// Self-service on `/me/authentication/…`: reads for any signed-in user; changes need MFA within
// the last ten minutes (checked by the app layer).

/// `GET /me/authentication/phoneMethods`.
async fn list_my_phones(ctx: GraphCtx) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    list_phones(ctx, Path(key)).await
}

/// `POST /me/authentication/phoneMethods` (201).
async fn create_my_phone(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    add_phone(&ctx, Who::Me, &key, &body).await
}

/// `DELETE /me/authentication/phoneMethods/{id}` (204).
async fn delete_my_phone(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    remove_phone(&ctx, Who::Me, id).await
}

/// `GET /me/authentication/emailMethods`.
async fn list_my_emails(ctx: GraphCtx) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    list_emails(ctx, Path(key)).await
}

/// `POST /me/authentication/emailMethods` (201).
async fn create_my_email(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    add_email(&ctx, Who::Me, &key, &body).await
}

/// `DELETE /me/authentication/emailMethods/{id}` (204).
async fn delete_my_email(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    remove_email(&ctx, Who::Me, id).await
}

/// `GET /me/authentication/softwareOathMethods`.
async fn list_my_oath(ctx: GraphCtx) -> Result<Response, GraphError> {
    let key = ctx.me_key()?;
    list_oath(ctx, Path(key)).await
}

/// `DELETE /me/authentication/softwareOathMethods/{id}` (204).
async fn delete_my_oath(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_software_oath(&ctx.caller, Who::Me, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A method type Keyward registers none of: the collection's and an item's path and summary, and
/// their handlers.
type EmptyCollection =
    (&'static str, &'static str, &'static str, &'static str, MethodRouter<AppState>, MethodRouter<AppState>);

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const READ: &str = "microsoft.directory/users/authenticationMethods/standard/read";
    const SELF: &str = "(self; changes need MFA within 10 minutes)";
    // Method types Keyward registers none of: each an empty collection and a 404 item.
    let empty: [EmptyCollection; 3] = [
        (
            "/users/{id}/authentication/microsoftAuthenticatorMethods",
            "/users/{id}/authentication/microsoftAuthenticatorMethods/{method}",
            "Microsoft Authenticator methods (none: Keyward registers authenticator apps as software OATH)",
            "A Microsoft Authenticator method",
            get(list_authenticator),
            get(authenticator_method).delete(delete_authenticator),
        ),
        (
            "/users/{id}/authentication/windowsHelloForBusinessMethods",
            "/users/{id}/authentication/windowsHelloForBusinessMethods/{method}",
            "Windows Hello for Business methods (none)",
            "A Windows Hello for Business method",
            get(list_hello),
            get(hello_method).delete(delete_hello),
        ),
        (
            "/users/{id}/authentication/platformCredentialMethods",
            "/users/{id}/authentication/platformCredentialMethods/{method}",
            "Platform credential methods (none)",
            "A platform credential method",
            get(list_platform),
            get(platform_method).delete(delete_platform),
        ),
    ];
    let api = empty.into_iter().fold(api, |api, (list_path, item_path, list_summary, item_summary, list, item)| {
        api.route(
            list_path,
            list,
            Op::get("authentication", list_summary, READ, "AuthenticationMethodCollection").with_id(),
        )
        .route(
            item_path,
            item,
            Op::get("authentication", item_summary, READ, "AuthenticationMethod").with_id().with_param("method"),
        )
    });
    let mine: [(&str, MethodRouter<AppState>, &str); 4] = [
        (
            "/me/authentication/microsoftAuthenticatorMethods",
            get(list_my_authenticator),
            "Your Microsoft Authenticator methods (none)",
        ),
        (
            "/me/authentication/windowsHelloForBusinessMethods",
            get(list_my_hello),
            "Your Windows Hello for Business methods (none)",
        ),
        (
            "/me/authentication/platformCredentialMethods",
            get(list_my_platform),
            "Your platform credential methods (none)",
        ),
        (
            "/me/authentication/temporaryAccessPassMethods",
            get(list_my_taps),
            "Your Temporary Access Pass (never shown)",
        ),
    ];
    let api = mine.into_iter().fold(api, |api, (path, handler, summary)| {
        api.route(path, handler, Op::get("authentication", summary, "(self)", "AuthenticationMethodCollection"))
    });
    api.route(
        "/me/authentication/phoneMethods",
        get(list_my_phones),
        Op::get("authentication", "List your phone methods", SELF, "AuthenticationMethodCollection"),
    )
    .route(
        "/me/authentication/phoneMethods",
        post(create_my_phone),
        Op::post(
            "authentication",
            "Add a phone method to your account",
            SELF,
            "PhoneMethod",
            201,
            "AuthenticationMethod",
        ),
    )
    .route(
        "/me/authentication/phoneMethods/{method}",
        delete(delete_my_phone),
        Op::delete("authentication", "Delete one of your phone methods", SELF).with_param("method"),
    )
    .route(
        "/me/authentication/emailMethods",
        get(list_my_emails),
        Op::get("authentication", "Your email method", SELF, "AuthenticationMethodCollection"),
    )
    .route(
        "/me/authentication/emailMethods",
        post(create_my_email),
        Op::post("authentication", "Add your email method", SELF, "EmailMethod", 201, "AuthenticationMethod"),
    )
    .route(
        "/me/authentication/emailMethods/{method}",
        delete(delete_my_email),
        Op::delete("authentication", "Delete your email method", SELF).with_param("method"),
    )
    .route(
        "/me/authentication/softwareOathMethods",
        get(list_my_oath),
        Op::get("authentication", "Your authenticator apps", SELF, "AuthenticationMethodCollection"),
    )
    .route(
        "/me/authentication/softwareOathMethods/{method}",
        delete(delete_my_oath),
        Op::delete("authentication", "Delete one of your authenticator apps", SELF).with_param("method"),
    )
    .route(
        "/users/{id}/authentication/phoneMethods",
        get(list_phones),
        Op::get(
            "authentication",
            "List phone methods (masked for restrictedRead)",
            READ,
            "AuthenticationMethodCollection",
        )
        .with_id(),
    )
    .route(
        "/users/{id}/authentication/phoneMethods",
        post(create_phone),
        Op::post(
            "authentication",
            "Add a phone method (one per phoneType)",
            "microsoft.directory/users/authenticationMethods/create",
            "PhoneMethod",
            201,
            "AuthenticationMethod",
        )
        .with_id(),
    )
    .route(
        "/users/{id}/authentication/phoneMethods/{method}",
        get(get_phone),
        Op::get("authentication", "Get a phone method", READ, "AuthenticationMethod").with_id().with_param("method"),
    )
    .route(
        "/users/{id}/authentication/phoneMethods/{method}",
        axum::routing::patch(update_phone),
        Op::patch(
            "authentication",
            "Change a phone method's number",
            "microsoft.directory/users/authenticationMethods/basic/update",
            "PhoneMethod",
        )
        .with_id()
        .with_param("method"),
    )
    .route(
        "/users/{id}/authentication/phoneMethods/{method}/enableSmsSignIn",
        post(|ctx, path, body| sms_sign_in(ctx, path, body, true)),
        Op::post(
            "authentication",
            "Enable SMS sign-in (refused: Keyward sends no text messages)",
            "microsoft.directory/users/authenticationMethods/basic/update",
            "Empty",
            400,
            "Error",
        )
        .with_id()
        .with_param("method"),
    )
    .route(
        "/users/{id}/authentication/phoneMethods/{method}/disableSmsSignIn",
        post(|ctx, path, body| sms_sign_in(ctx, path, body, false)),
        Op::post(
            "authentication",
            "Disable SMS sign-in (it is never on)",
            "microsoft.directory/users/authenticationMethods/basic/update",
            "Empty",
            204,
            "",
        )
        .with_id()
        .with_param("method"),
    )
    .route(
        "/users/{id}/authentication/phoneMethods/{method}",
        delete(delete_phone),
        Op::delete("authentication", "Delete a phone method", "microsoft.directory/users/authenticationMethods/delete")
            .with_id()
            .with_param("method")
            .may_be_held(),
    )
    .route(
        "/users/{id}/authentication/emailMethods",
        get(list_emails),
        Op::get("authentication", "List the email method", READ, "AuthenticationMethodCollection").with_id(),
    )
    .route(
        "/users/{id}/authentication/emailMethods",
        post(create_email),
        Op::post(
            "authentication",
            "Add the email method",
            "microsoft.directory/users/authenticationMethods/create",
            "EmailMethod",
            201,
            "AuthenticationMethod",
        )
        .with_id(),
    )
    .route(
        "/users/{id}/authentication/emailMethods/{method}",
        get(get_email),
        Op::get("authentication", "Get the email method", READ, "AuthenticationMethod").with_id().with_param("method"),
    )
    .route(
        "/users/{id}/authentication/emailMethods/{method}",
        axum::routing::patch(update_email),
        Op::patch(
            "authentication",
            "Change the email method's address",
            "microsoft.directory/users/authenticationMethods/basic/update",
            "EmailMethod",
        )
        .with_id()
        .with_param("method"),
    )
    .route(
        "/users/{id}/authentication/emailMethods/{method}",
        delete(delete_email),
        Op::delete(
            "authentication",
            "Delete the email method",
            "microsoft.directory/users/authenticationMethods/delete",
        )
        .with_id()
        .with_param("method")
        .may_be_held(),
    )
    .route(
        "/users/{id}/authentication/methods",
        get(list_methods),
        Op::get("authentication", "List the user's authentication methods", READ, "AuthenticationMethodCollection")
            .with_id(),
    )
    .route(
        "/me/authentication/methods",
        get(list_my_methods),
        Op::get(
            "authentication",
            "List the signed-in user's authentication methods",
            "(self)",
            "AuthenticationMethodCollection",
        ),
    )
    .route(
        "/users/{id}/authentication/methods/{method}",
        get(get_method),
        Op::get("authentication", "Get one of the user's authentication methods", READ, "AuthenticationMethod")
            .with_id()
            .with_param("method"),
    )
    .route(
        "/me/authentication/methods/{method}",
        get(get_my_method),
        Op::get("authentication", "Get one of your authentication methods", "(self)", "AuthenticationMethod")
            .with_param("method"),
    )
    .route(
        "/me/authentication/passwordMethods",
        get(list_my_password_methods),
        Op::get("authentication", "Your password method", "(self)", "AuthenticationMethodCollection"),
    )
    .route(
        "/me/authentication/passwordMethods/{method}",
        get(get_my_password_method),
        Op::get("authentication", "Get your password method", "(self)", "AuthenticationMethod").with_param("method"),
    )
    .route(
        "/me/authentication/phoneMethods/{method}",
        get(get_my_phone),
        Op::get("authentication", "Get one of your phone methods", "(self)", "AuthenticationMethod")
            .with_param("method"),
    )
    .route(
        "/me/authentication/emailMethods/{method}",
        get(get_my_email),
        Op::get("authentication", "Get your email method", "(self)", "AuthenticationMethod").with_param("method"),
    )
    .route(
        "/me/authentication/softwareOathMethods/{method}",
        get(get_my_oath),
        Op::get("authentication", "Get one of your authenticator apps", "(self)", "AuthenticationMethod")
            .with_param("method"),
    )
    .route(
        "/users/{id}/authentication/passwordMethods",
        get(list_password_methods),
        Op::get("authentication", "List the password method", READ, "AuthenticationMethodCollection").with_id(),
    )
    .route(
        "/users/{id}/authentication/passwordMethods/{method}",
        get(get_password_method),
        Op::get("authentication", "Get the password method", READ, "AuthenticationMethod")
            .with_id()
            .with_param("method"),
    )
    .route(
        "/users/{id}/authentication/methods/{method}/resetPassword",
        post(reset_password),
        Op::post(
            "authentication",
            "Reset the user's password (202; with or without newPassword)",
            "microsoft.directory/users/password/update",
            "ResetPasswordRequest",
            202,
            "PasswordResetResponse",
        )
        .with_id()
        .with_param("method"),
    )
    .route(
        "/users/{id}/authentication/passwordMethods/{method}/resetPassword",
        post(reset_password),
        Op::post(
            "authentication",
            "Reset the user's password (202)",
            "microsoft.directory/users/password/update",
            "ResetPasswordRequest",
            202,
            "PasswordResetResponse",
        )
        .with_id()
        .with_param("method"),
    )
    .route(
        "/users/{id}/authentication/operations/{operation}",
        get(get_operation),
        Op::get("authentication", "A password reset's status", READ, "LongRunningOperation")
            .with_id()
            .with_param("operation"),
    )
    .route(
        "/users/{id}/authentication/softwareOathMethods",
        get(list_oath),
        Op::get(
            "authentication",
            "List authenticator-app (software OATH) methods",
            READ,
            "AuthenticationMethodCollection",
        )
        .with_id(),
    )
    .route(
        "/users/{id}/authentication/softwareOathMethods/{method}",
        get(get_oath),
        Op::get("authentication", "Get a software OATH method", READ, "AuthenticationMethod")
            .with_id()
            .with_param("method"),
    )
    .route(
        "/users/{id}/authentication/softwareOathMethods/{method}",
        delete(delete_oath),
        Op::delete(
            "authentication",
            "Delete a software OATH method",
            "microsoft.directory/users/authenticationMethods/delete",
        )
        .with_id()
        .with_param("method")
        .may_be_held(),
    )
    .route(
        "/users/{id}/authentication/temporaryAccessPassMethods",
        get(list_taps),
        Op::get(
            "authentication",
            "List the Temporary Access Pass (the pass is never shown)",
            READ,
            "AuthenticationMethodCollection",
        )
        .with_id(),
    )
    .route(
        "/users/{id}/authentication/temporaryAccessPassMethods",
        post(create_tap),
        Op::post(
            "authentication",
            "Create a Temporary Access Pass (shown only in this response; replaces the previous one)",
            "microsoft.directory/users/authenticationMethods/create",
            "TemporaryAccessPassRequest",
            201,
            "AuthenticationMethod",
        )
        .with_id()
        .may_be_held(),
    )
    .route(
        "/users/{id}/authentication/temporaryAccessPassMethods/{method}",
        get(get_tap),
        Op::get("authentication", "Get the Temporary Access Pass", READ, "AuthenticationMethod")
            .with_id()
            .with_param("method"),
    )
    .route(
        "/users/{id}/authentication/temporaryAccessPassMethods/{method}",
        delete(delete_tap),
        Op::delete(
            "authentication",
            "Delete the Temporary Access Pass",
            "microsoft.directory/users/authenticationMethods/delete",
        )
        .with_id()
        .with_param("method")
        .may_be_held(),
    )
}
