//! `/applications`: registrations, their redirect URIs, certificates and client secrets.

use super::{Body, Query, allow_only};
use crate::context::{GraphCtx, collection, entity, rfc3339};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use base64::Engine;
use keyward_app::{AppError, ApplicationDraft, ApplicationView, KeyCredentialDraft};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

// ---------------------------------------------------------------------------------------------
// Graph: /applications

pub(super) fn application_json(view: &ApplicationView) -> Value {
    let app = &view.application;
    let passwords: Vec<Value> = view
        .credentials
        .iter()
        .filter_map(|it| {
            it.secret.as_ref().map(|(_, hint)| {
                json!({
                    "keyId": it.key_id.as_str(), "displayName": it.display_name, "hint": hint,
                    "startDateTime": rfc3339(it.start),
                    "endDateTime": rfc3339(it.end),
                    "secretText": null, "customKeyIdentifier": null,
                })
            })
        })
        .collect();
    json!({
        "id": app.id.as_str(),
        "appId": app.app_id,
        "displayName": app.display_name,
        "createdDateTime": rfc3339(app.created),
        "uniqueName": app.unique_name,
        "signInAudience": "AzureADMyOrg",
        "isFallbackPublicClient": app.is_fallback_public_client,
        "publicClient": {"redirectUris": app.public_redirect_uris},
        "web": {"redirectUris": app.web_redirect_uris},
        "passwordCredentials": passwords,
        "keyCredentials": view.credentials.iter().filter_map(|it| it.certificate.as_ref().map(|(_, thumbprint)| json!({
            "keyId": it.key_id.as_str(), "type": "AsymmetricX509Cert", "usage": "Verify", "displayName": it.display_name,
            "customKeyIdentifier": thumbprint, "key": null,
            "startDateTime": rfc3339(it.start),
            "endDateTime": rfc3339(it.end),
        }))).collect::<Vec<_>>(),
    })
}

fn uris(value: &Value, path: &str) -> Result<Option<Vec<String>>, AppError> {
    let Some(object) = value.as_object() else {
        return Err(AppError::BadRequest(format!("Property '{path}' must be an object with 'redirectUris'.")));
    };
    let Some(list) = object.get("redirectUris") else { return Ok(None) };
    let list = list
        .as_array()
        .ok_or_else(|| AppError::BadRequest(format!("'{path}.redirectUris' must be an array of strings.")))?;
    list.iter()
        .map(|it| {
            it.as_str()
                .map(str::to_owned)
                .ok_or_else(|| AppError::BadRequest(format!("'{path}.redirectUris' must be an array of strings.")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn key_credentials(value: &Value) -> Result<Vec<KeyCredentialDraft>, AppError> {
    let bad = |what: &str| AppError::BadRequest(format!("keyCredentials: {what}."));
    let list = value.as_array().ok_or_else(|| bad("must be an array"))?;
    list.iter()
        .map(|item| {
            let kind = item.get("type").and_then(Value::as_str).unwrap_or("AsymmetricX509Cert");
            let usage = item.get("usage").and_then(Value::as_str).unwrap_or("Verify");
            if kind != "AsymmetricX509Cert" || usage != "Verify" {
                return Err(bad("only type 'AsymmetricX509Cert' with usage 'Verify' is supported"));
            }
            let key = item
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("each needs 'key', the base64 DER certificate"))?;
            let der =
                base64::engine::general_purpose::STANDARD.decode(key.trim()).map_err(|_| bad("'key' is not base64"))?;
            let time = |name: &str| -> Result<Option<time::OffsetDateTime>, AppError> {
                item.get(name)
                    .and_then(Value::as_str)
                    .map(|it| {
                        time::OffsetDateTime::parse(it, &Rfc3339)
                            .map_err(|_| bad(&format!("'{name}' is not a date and time")))
                    })
                    .transpose()
            };
            Ok(KeyCredentialDraft {
                der,
                display_name: item.get("displayName").and_then(Value::as_str).map(str::to_owned),
                start: time("startDateTime")?,
                end: time("endDateTime")?,
            })
        })
        .collect()
}

fn application_draft(body: &Value) -> Result<ApplicationDraft, AppError> {
    let object =
        body.as_object().ok_or_else(|| AppError::BadRequest("The request body must be a JSON object.".into()))?;
    let mut draft = ApplicationDraft::default();
    for (name, value) in object {
        match name.as_str() {
            "displayName" => {
                draft.display_name = Some(
                    value
                        .as_str()
                        .ok_or_else(|| AppError::BadRequest("'displayName' must be a string.".into()))?
                        .to_owned(),
                );
            }
            "isFallbackPublicClient" => {
                draft.is_fallback_public_client =
                    Some(value.as_bool().ok_or_else(|| {
                        AppError::BadRequest("'isFallbackPublicClient' must be true or false.".into())
                    })?);
            }
            "publicClient" => draft.public_redirect_uris = uris(value, "publicClient")?,
            "keyCredentials" => draft.key_credentials = Some(key_credentials(value)?),
            "web" => draft.web_redirect_uris = uris(value, "web")?,
            "signInAudience" if value.as_str() == Some("AzureADMyOrg") => (),
            "@odata.type" => (),
            "id" | "appId" => {
                let value = value
                    .as_str()
                    .ok_or_else(|| AppError::BadRequest(format!("'{name}' must be a string.")))?
                    .to_owned();
                draft.stated_ids.push((if name == "id" { "id" } else { "appId" }, value));
            }
            "uniqueName" => {
                return Err(AppError::BadRequest(
                    "Property 'uniqueName' is read-only: it is set by creating the application with PATCH /applications(uniqueName='…') and the header Prefer: create-if-missing.".into(),
                ));
            }
            other => {
                return Err(AppError::BadRequest(format!(
                    "Property '{other}' is not supported on 'microsoft.graph.application' by Keyward."
                )));
            }
        }
    }
    Ok(draft)
}

/// `GET /applications` — `microsoft.directory/applications/standard/read`.
async fn list_applications(ctx: GraphCtx, Query(query, path): Query) -> Result<Response, GraphError> {
    // Options Keyward does not apply here are refused, never ignored.
    allow_only(&ctx, &query, &["$top", "$skiptoken", "$filter", "$select"])?;
    let top = keyward_core::query::parse_top(query.raw.top.as_deref()).map_err(AppError::from)?;
    let filter = super::in_memory_filter(&keyward_core::query::APPLICATION, query.raw.filter.as_deref())?;
    let select = super::select_for(&keyward_core::query::APPLICATION, query.raw.select.as_deref())?;
    let skiptoken = query.raw.skiptoken.as_deref();
    let (apps, next) = ctx.state.app.list_applications(&ctx.caller, filter.as_ref(), skiptoken, top).await?;
    let next = next.map(|token| query.next_link(&ctx.state.app.config().public_url, &path, &token));
    Ok(collection(
        format!("{}/$metadata#applications{}", ctx.base(), super::select_suffix(select.as_deref())),
        apps.iter().map(|it| super::pick(application_json(it), select.as_deref())).collect(),
        None,
        next,
    ))
}

/// `POST /applications` — `microsoft.directory/applications/create` (also creates the service principal).
async fn create_application(ctx: GraphCtx, Body(body): Body) -> Result<Response, GraphError> {
    let draft = application_draft(&body)?;
    let view = ctx.state.app.create_application(&ctx.caller, draft).await?;
    Ok(entity(format!("{}/$metadata#applications/$entity", ctx.base()), application_json(&view), StatusCode::CREATED))
}

/// `GET /applications/{id}` — `microsoft.directory/applications/standard/read`.
async fn get_application(ctx: GraphCtx, Path(key): Path<String>, query: Query) -> Result<Response, GraphError> {
    let Query(query, _) = query;
    allow_only(&ctx, &query, &["$select"])?;
    let select = super::select_for(&keyward_core::query::APPLICATION, query.raw.select.as_deref())?;
    let view = ctx.state.app.get_application(&ctx.caller, &key).await?;
    let suffix = super::select_suffix(select.as_deref());
    Ok(entity(
        format!("{}/$metadata#applications{suffix}/$entity", ctx.base()),
        super::pick(application_json(&view), select.as_deref()),
        StatusCode::OK,
    ))
}

/// `PATCH /applications/{id}` — `microsoft.directory/applications/basic/update`.
async fn update_application(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let draft = application_draft(&body)?;
    ctx.state.app.update_application(&ctx.caller, &key, draft).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /applications/{id}` — `microsoft.directory/applications/delete`.
async fn delete_application(ctx: GraphCtx, Path(key): Path<String>) -> Result<Response, GraphError> {
    ctx.state.app.delete_application(&ctx.caller, &key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /applications/{id}/addPassword` — `microsoft.directory/applications/credentials/update`.
async fn add_password(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let credential = body.get("passwordCredential").cloned().unwrap_or(Value::Null);
    let display_name = credential.get("displayName").and_then(Value::as_str).map(str::to_owned);
    let end = match credential.get("endDateTime").and_then(Value::as_str) {
        Some(text) => Some(time::OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
            GraphError::from(AppError::BadRequest(format!("'endDateTime' is not a valid date and time: '{text}'.")))
        })?),
        None => None,
    };
    let created = ctx.state.app.add_application_password(&ctx.caller, &key, display_name, end).await?;
    let hint = created.credential.secret.as_ref().map(|it| it.1.clone()).unwrap_or_default();
    Ok(entity(
        format!("{}/$metadata#microsoft.graph.passwordCredential", ctx.base()),
        json!({
            "keyId": created.credential.key_id.as_str(),
            "displayName": created.credential.display_name,
            "hint": hint,
            "secretText": created.secret.expose(),
            "startDateTime": rfc3339(created.credential.start),
            "endDateTime": rfc3339(created.credential.end),
            "customKeyIdentifier": null,
        }),
        StatusCode::OK,
    ))
}

/// `POST /applications/{id}/removePassword` (204) — `microsoft.directory/applications/credentials/update`.
async fn remove_password(ctx: GraphCtx, Path(key): Path<String>, Body(body): Body) -> Result<Response, GraphError> {
    let key_id = body
        .get("keyId")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::from(AppError::BadRequest("Property 'keyId' is required.".into())))?;
    ctx.state.app.remove_application_password(&ctx.caller, &key, key_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An application's alternate key: `/applications(appId='…')` or `/applications(uniqueName='…')`.
#[derive(Debug, Clone, Copy)]
enum AlternateKey {
    AppId,
    UniqueName,
}

/// The object id the alternate key `captured` names.
async fn by_key(ctx: &GraphCtx, key: AlternateKey, captured: &str) -> Result<String, GraphError> {
    let app = &ctx.state.app;
    let id = match key {
        AlternateKey::AppId => {
            app.application_by_app_id(&ctx.caller, &super::alternate_key(ctx, "appId", captured)?).await
        }
        AlternateKey::UniqueName => {
            app.application_by_unique_name(&ctx.caller, &super::alternate_key(ctx, "uniqueName", captured)?).await
        }
    };
    Ok(id?)
}

/// `GET /applications(appId='…')` and `GET /applications(uniqueName='…')`.
async fn get_by_key(
    key: AlternateKey,
    ctx: GraphCtx,
    Path(captured): Path<String>,
    query: Query,
) -> Result<Response, GraphError> {
    let id = by_key(&ctx, key, &captured).await?;
    get_application(ctx, Path(id), query).await
}

/// `DELETE /applications(appId='…')` and `DELETE /applications(uniqueName='…')`.
async fn delete_by_key(key: AlternateKey, ctx: GraphCtx, Path(captured): Path<String>) -> Result<Response, GraphError> {
    let id = by_key(&ctx, key, &captured).await?;
    delete_application(ctx, Path(id)).await
}

/// `PATCH /applications(appId='…')`.
async fn update_by_app_id(ctx: GraphCtx, Path(captured): Path<String>, body: Body) -> Result<Response, GraphError> {
    let id = by_key(&ctx, AlternateKey::AppId, &captured).await?;
    update_application(ctx, Path(id), body).await
}

/// `PATCH /applications(uniqueName='…')`: Graph's upsert. With `Prefer: create-if-missing` a
/// missing application is created under that name (`201` with it); otherwise it is updated (`204`),
/// or `404` when there is none.
async fn upsert_by_unique_name(
    ctx: GraphCtx,
    Path(captured): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, GraphError> {
    let name = super::alternate_key(&ctx, "uniqueName", &captured)?;
    let create_if_missing = headers
        .get_all("prefer")
        .iter()
        .filter_map(|it| it.to_str().ok())
        .flat_map(|it| it.split(','))
        .any(|it| it.trim().eq_ignore_ascii_case("create-if-missing"));
    let draft = application_draft(&body)?;
    match ctx.state.app.upsert_application(&ctx.caller, &name, draft, create_if_missing).await? {
        Some(view) => Ok(entity(
            format!("{}/$metadata#applications/$entity", ctx.base()),
            application_json(&view),
            StatusCode::CREATED,
        )),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    const CREDENTIALS: &str = "microsoft.directory/applications/credentials/update";
    const READ: &str = "microsoft.directory/applications/standard/read";
    api.route_undocumented_with(
        "/applications(appId={key}",
        get(|ctx, path, query| get_by_key(AlternateKey::AppId, ctx, path, query)),
        &["$select"],
    )
    .route_undocumented(
        "/applications(appId={key}",
        patch(update_by_app_id).delete(|ctx, path| delete_by_key(AlternateKey::AppId, ctx, path)),
    )
    .document(
        "/applications(appId='{appId}')",
        Op::get("applications", "Get an app registration by its application id", READ, "Application")
            .with_param("appId")
            .with_options(&["$select"]),
    )
    .document(
        "/applications(appId='{appId}')",
        Op::patch(
            "applications",
            "Update an app registration by its application id",
            "microsoft.directory/applications/basic/update",
            "Application",
        )
        .with_param("appId"),
    )
    .document(
        "/applications(appId='{appId}')",
        Op::delete(
            "applications",
            "Delete an app registration by its application id",
            "microsoft.directory/applications/delete",
        )
        .with_param("appId"),
    )
    .route_undocumented_with(
        "/applications(uniqueName={key}",
        get(|ctx, path, query| get_by_key(AlternateKey::UniqueName, ctx, path, query)),
        &["$select"],
    )
    .route_undocumented(
        "/applications(uniqueName={key}",
        patch(upsert_by_unique_name).delete(|ctx, path| delete_by_key(AlternateKey::UniqueName, ctx, path)),
    )
    .document(
        "/applications(uniqueName='{uniqueName}')",
        Op::get("applications", "Get an app registration by its uniqueName", READ, "Application")
            .with_param("uniqueName")
            .with_options(&["$select"]),
    )
    .document(
        "/applications(uniqueName='{uniqueName}')",
        Op::patch(
            "applications",
            "Update an app registration by its uniqueName, or with Prefer: create-if-missing create it (201)",
            "microsoft.directory/applications/basic/update (create: applications/create)",
            "Application",
        )
        .with_param("uniqueName"),
    )
    .document(
        "/applications(uniqueName='{uniqueName}')",
        Op::delete(
            "applications",
            "Delete an app registration by its uniqueName",
            "microsoft.directory/applications/delete",
        )
        .with_param("uniqueName"),
    )
    .route(
        "/applications",
        get(list_applications),
        Op::get("applications", "List app registrations", READ, "ApplicationCollection")
            .pages_only()
            .with_options(&["$filter", "$select"]),
    )
    .route(
        "/applications",
        post(create_application),
        Op::post(
            "applications",
            "Register an application (and create its service principal)",
            "microsoft.directory/applications/create",
            "Application",
            201,
            "Application",
        ),
    )
    .route(
        "/applications/{id}",
        get(get_application),
        Op::get("applications", "Get an app registration", READ, "Application").with_id().with_options(&["$select"]),
    )
    .route(
        "/applications/{id}",
        axum::routing::patch(update_application),
        Op::patch(
            "applications",
            "Update displayName, isFallbackPublicClient, publicClient and web redirect URIs",
            "microsoft.directory/applications/basic/update",
            "Application",
        )
        .with_id(),
    )
    .route(
        "/applications/{id}",
        axum::routing::delete(delete_application),
        Op::delete(
            "applications",
            "Delete an app registration and its service principal",
            "microsoft.directory/applications/delete",
        )
        .with_id(),
    )
    .route(
        "/applications/{id}/addPassword",
        post(add_password),
        Op::post(
            "applications",
            "Add a client secret (returned once, in secretText)",
            CREDENTIALS,
            "PasswordCredentialRequest",
            200,
            "PasswordCredential",
        )
        .with_id(),
    )
    .route(
        "/applications/{id}/removePassword",
        post(remove_password),
        Op::post("applications", "Remove a client secret", CREDENTIALS, "KeyIdRequest", 204, "").with_id(),
    )
}
