//! Graph's JSON shapes for users, groups and the organization, and the parsing of request bodies
//! into the core's drafts and patches.

use keyward_core::authz::RoleDefinition;
use keyward_core::directory::{
    AdministrativeUnit, DirectoryObject, Group, GroupDraft, GroupPatch, Membership, ServicePrincipal,
    ServicePrincipalDraft, Tenant, User, UserDraft, UserPatch,
};
use keyward_core::profile;
use keyward_core::query::{GROUP, Resource, USER};
use keyward_core::secret::Secret;
use keyward_core::signin::SignInActivity;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::context::Version;

/// Graph's timestamp form: UTC, whole seconds, `Z`.
pub fn timestamp(at: OffsetDateTime) -> String {
    profile::graph_timestamp(at)
}

fn opt(value: &Option<String>) -> Value {
    value.as_ref().map_or(Value::Null, |it| Value::String(it.clone()))
}

fn strings(values: &[String]) -> Value {
    Value::Array(values.iter().cloned().map(Value::String).collect())
}

/// The value of one Graph property of a user ([`UserProperty`] as a JSON value).
fn user_property(user: &User, name: &str) -> Value {
    // Strings, booleans and lists of strings: nothing in it can fail to become a value.
    serde_json::to_value(UserProperty(user, name)).unwrap_or(Value::Null)
}

/// One user as an entity, `@odata.context` first, written straight to JSON: what
/// `context::entity(context, user(..))` writes, without building the map (a request's JSON took
/// a sixth of an API read's instructions, most of it the map: its keys, their hashes, moving
/// its entries along for the context).
pub struct UserEntity<'a> {
    context: &'a str,
    user: &'a User,
    names: std::borrow::Cow<'static, [&'static str]>,
}

/// A user's default properties in v1.0 and in beta, chosen once.
static USER_DEFAULTS: std::sync::LazyLock<[Vec<&'static str>; 2]> =
    std::sync::LazyLock::new(|| [properties(&USER, None, Version::V1), properties(&USER, None, Version::Beta)]);

impl<'a> UserEntity<'a> {
    pub fn new(context: &'a str, user: &'a User, select: Option<&[&'static str]>, version: Version) -> UserEntity<'a> {
        let names = match select {
            None => std::borrow::Cow::Borrowed(USER_DEFAULTS[usize::from(version == Version::Beta)].as_slice()),
            Some(select) => {
                // A map holds a name once, where it was first put.
                let mut names: Vec<&'static str> = Vec::with_capacity(select.len());
                for name in select {
                    if !names.contains(name) {
                        names.push(name);
                    }
                }
                std::borrow::Cow::Owned(names)
            }
        };
        UserEntity { context, user, names }
    }
}

impl serde::Serialize for UserEntity<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.names.len() + 1))?;
        map.serialize_entry("@odata.context", self.context)?;
        for name in self.names.iter() {
            map.serialize_entry(name, &UserProperty(self.user, name))?;
        }
        map.end()
    }
}

/// One Graph property of a user, written straight to JSON (and through [`user_property`] as a
/// value).
struct UserProperty<'a>(&'a User, &'a str);

impl serde::Serialize for UserProperty<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let UserProperty(user, name) = *self;
        match name {
            "id" => serializer.serialize_str(user.id.as_str()),
            "displayName" => serializer.serialize_str(&user.display_name),
            "userPrincipalName" => serializer.serialize_str(&user.user_principal_name),
            "mailNickname" => serializer.serialize_str(&user.mail_nickname),
            "accountEnabled" => serializer.serialize_bool(user.account_enabled),
            "businessPhones" => user.business_phones.serialize(serializer),
            "otherMails" => user.other_mails.serialize(serializer),
            "givenName" => user.given_name.serialize(serializer),
            "jobTitle" => user.job_title.serialize(serializer),
            "mail" => user.mail.serialize(serializer),
            "mobilePhone" => user.mobile_phone.serialize(serializer),
            "surname" => user.surname.serialize(serializer),
            "department" => user.department.serialize(serializer),
            "usageLocation" => user.usage_location.serialize(serializer),
            "createdDateTime" => serializer.serialize_str(&timestamp(user.created)),
            "signInSessionsValidFromDateTime" => serializer.serialize_str(&timestamp(user.sign_in_sessions_valid_from)),
            "lastPasswordChangeDateTime" => user.last_password_change.map(timestamp).serialize(serializer),
            // A cloud account signs in with its user principal name; the issuer is its domain.
            "identities" => json!([{
                "signInType": "userPrincipalName",
                "issuer": user.user_principal_name.rsplit('@').next().unwrap_or_default(),
                "issuerAssignedId": user.user_principal_name,
            }])
            .serialize(serializer),
            "proxyAddresses" => serializer.serialize_seq(Some(0))?.end(),
            name if profile::find(name).is_some() => user.profile.get(name).serialize(serializer),
            // Write-only: Graph always reads it back as null.
            _ => serializer.serialize_none(),
        }
    }
}

fn group_property(group: &Group, name: &str) -> Value {
    match name {
        "id" => json!(group.id.as_str()),
        "createdDateTime" => json!(timestamp(group.created)),
        "description" => opt(&group.description),
        "displayName" => json!(group.display_name),
        "groupTypes" => strings(&group.group_types),
        "isAssignableToRole" => json!(group.is_assignable_to_role),
        "mailEnabled" => json!(group.mail_enabled),
        "mailNickname" => json!(group.mail_nickname),
        "securityEnabled" => json!(group.security_enabled),
        _ => Value::Null,
    }
}

/// The properties to write: `$select`, else v1.0's default set, else (beta) everything readable.
fn properties(resource: &Resource, select: Option<&[&'static str]>, version: Version) -> Vec<&'static str> {
    match select {
        Some(it) => it.to_vec(),
        None => resource
            .properties
            .iter()
            .filter(|it| !it.is_select_only && (version == Version::Beta || it.is_default_selected))
            .map(|it| it.name)
            .collect(),
    }
}

pub fn user(user: &User, select: Option<&[&'static str]>, version: Version) -> Map<String, Value> {
    properties(&USER, select, version).into_iter().map(|name| (name.to_owned(), user_property(user, name))).collect()
}

pub fn group(group: &Group, select: Option<&[&'static str]>, version: Version) -> Map<String, Value> {
    properties(&GROUP, select, version).into_iter().map(|name| (name.to_owned(), group_property(group, name))).collect()
}

/// A user's `signInActivity` (`null` for a user who never signed in).
pub fn sign_in_activity(activity: Option<&SignInActivity>) -> Value {
    let Some(activity) = activity else { return Value::Null };
    let time = |slot: &Option<(OffsetDateTime, String)>| slot.as_ref().map(|(at, _)| timestamp(*at));
    let id = |slot: &Option<(OffsetDateTime, String)>| slot.as_ref().map(|(_, id)| id.clone());
    json!({
        "lastSignInDateTime": time(&activity.last_sign_in),
        "lastSignInRequestId": id(&activity.last_sign_in),
        "lastNonInteractiveSignInDateTime": time(&activity.last_non_interactive),
        "lastNonInteractiveSignInRequestId": id(&activity.last_non_interactive),
        "lastSuccessfulSignInDateTime": time(&activity.last_success),
        "lastSuccessfulSignInRequestId": id(&activity.last_success),
    })
}

/// A service principal in Graph's shape.
pub fn service_principal(principal: &ServicePrincipal) -> Map<String, Value> {
    let Value::Object(res) = json!({
        "id": principal.id.as_str(),
        "appId": principal.app_id,
        "displayName": principal.display_name,
        "accountEnabled": principal.account_enabled,
        "servicePrincipalType": "Application",
        "servicePrincipalNames": [principal.app_id],
    }) else {
        return Map::new();
    };
    res
}

/// A member of a mixed collection, with its `@odata.type`.
pub fn directory_object(object: &DirectoryObject, version: Version) -> Map<String, Value> {
    let (odata_type, mut body) = match object {
        DirectoryObject::User(it) => ("#microsoft.graph.user", user(it, None, version)),
        DirectoryObject::Group(it) => ("#microsoft.graph.group", group(it, None, version)),
        DirectoryObject::ServicePrincipal(it) => ("#microsoft.graph.servicePrincipal", service_principal(it)),
    };
    body.insert("@odata.type".into(), json!(odata_type));
    body
}

/// An administrative unit in Graph's shape.
pub fn administrative_unit(it: &AdministrativeUnit) -> Value {
    json!({
        "id": it.id.as_str(),
        "displayName": it.display_name,
        "description": it.description,
        "visibility": null,
        "isMemberManagementRestricted": it.is_member_management_restricted,
    })
}

/// A directory role (a built-in role; its id is its template id), with its `@odata.type`.
pub fn directory_role(role: &RoleDefinition) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.directoryRole",
        "id": role.id,
        "displayName": role.display_name,
        "description": role.description,
        "roleTemplateId": role.id,
    })
}

/// What a user or group is a member of, with its `@odata.type`.
pub fn membership(it: &Membership, version: Version) -> Map<String, Value> {
    let (odata_type, value) = match it {
        Membership::Group(group) => ("#microsoft.graph.group", Value::Object(self::group(group, None, version))),
        Membership::Role(role) => ("#microsoft.graph.directoryRole", directory_role(role)),
        Membership::Unit(unit) => ("#microsoft.graph.administrativeUnit", administrative_unit(unit)),
    };
    let Value::Object(mut body) = value else { return Map::new() };
    body.insert("@odata.type".into(), json!(odata_type));
    body
}

pub fn organization(tenant: &Tenant) -> Value {
    json!({
        "id": tenant.id.as_str(),
        "displayName": tenant.display_name,
        "createdDateTime": timestamp(tenant.created),
        "tenantType": "AAD",
        "verifiedDomains": tenant.domains.iter().map(|it| json!({
            "capabilities": "None",
            "isDefault": it.is_default,
            "isInitial": it.is_initial,
            "name": it.name,
            "type": "Managed",
        })).collect::<Vec<_>>(),
    })
}

/// Why a body was refused; the message is Graph's.
pub type BodyError = String;

fn property_error(name: &str, resource: &str) -> BodyError {
    format!("Invalid value specified for property '{name}' of resource '{resource}'.")
}

fn unknown_property(name: &str, type_name: &str) -> BodyError {
    format!(
        "Property '{name}' does not exist as a declared property or extension property on type 'microsoft.graph.{type_name}'."
    )
}

fn as_object(body: &Value) -> Result<&Map<String, Value>, BodyError> {
    body.as_object().ok_or_else(|| "The request body must be a JSON object.".to_owned())
}

fn string(value: &Value, name: &str, resource: &str) -> Result<String, BodyError> {
    value.as_str().map(str::to_owned).ok_or_else(|| property_error(name, resource))
}

fn nullable_string(value: &Value, name: &str, resource: &str) -> Result<Option<String>, BodyError> {
    match value {
        Value::Null => Ok(None),
        Value::String(it) => Ok(Some(it.clone())),
        _ => Err(property_error(name, resource)),
    }
}

fn boolean(value: &Value, name: &str, resource: &str) -> Result<bool, BodyError> {
    value.as_bool().ok_or_else(|| property_error(name, resource))
}

fn string_list(value: &Value, name: &str, resource: &str) -> Result<Vec<String>, BodyError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(|it| string(it, name, resource)).collect(),
        _ => Err(property_error(name, resource)),
    }
}

fn is_annotation(key: &str, value: &Value, type_name: &str) -> Result<bool, BodyError> {
    if key == "@odata.type" {
        let expected = format!("#microsoft.graph.{type_name}");
        return match value.as_str() {
            Some(it) if it.eq_ignore_ascii_case(&expected) || it.eq_ignore_ascii_case(&expected[1..]) => Ok(true),
            _ => Err(format!(
                "The @odata.type '{value}' does not match the resource type 'microsoft.graph.{type_name}'."
            )),
        };
    }
    Ok(key.starts_with('@'))
}

struct PasswordProfile {
    password: Option<Secret>,
    force_change: Option<bool>,
}

fn password_profile(value: &Value) -> Result<PasswordProfile, BodyError> {
    let invalid = || property_error("passwordProfile", "User");
    let object = value.as_object().ok_or_else(invalid)?;
    let mut res = PasswordProfile { password: None, force_change: None };
    for (key, value) in object {
        match key.as_str() {
            "password" => res.password = Some(Secret::new(value.as_str().ok_or_else(invalid)?)),
            "forceChangePasswordNextSignIn" => res.force_change = Some(value.as_bool().ok_or_else(invalid)?),
            "forceChangePasswordNextSignInWithMfa" => {
                value.as_bool().ok_or_else(invalid)?;
            }
            k if k.starts_with('@') => (),
            _ => return Err(unknown_property(key, "passwordProfile")),
        }
    }
    Ok(res)
}

fn writable_profile_field(name: &str) -> Option<&'static profile::Field> {
    profile::find(name).filter(|it| it.format != profile::Format::ReadOnly)
}

/// User properties only the directory sets.
fn is_read_only_user_property(name: &str) -> bool {
    profile::find(name).is_some_and(|it| it.format == profile::Format::ReadOnly)
        || [
            "id",
            "createdDateTime",
            "signInSessionsValidFromDateTime",
            "identities",
            "proxyAddresses",
            "onPremisesSyncEnabled",
            "lastPasswordChangeDateTime",
        ]
        .contains(&name)
}

pub fn user_draft(body: &Value) -> Result<UserDraft, BodyError> {
    let mut draft = UserDraft::default();
    for (key, value) in as_object(body)? {
        if is_annotation(key, value, "user")? {
            continue;
        }
        let r = "User";
        if let Some(field) = writable_profile_field(key) {
            draft.profile.push((field, nullable_string(value, key, r)?));
            continue;
        }
        match key.as_str() {
            "userPrincipalName" => draft.user_principal_name = Some(string(value, key, r)?),
            "displayName" => draft.display_name = Some(string(value, key, r)?),
            "mailNickname" => draft.mail_nickname = Some(string(value, key, r)?),
            "accountEnabled" => draft.account_enabled = Some(boolean(value, key, r)?),
            "passwordProfile" => {
                let profile = password_profile(value)?;
                draft.password = profile.password;
                draft.force_change_password_next_sign_in = profile.force_change;
            }
            "givenName" => draft.given_name = nullable_string(value, key, r)?,
            "surname" => draft.surname = nullable_string(value, key, r)?,
            "mail" => draft.mail = nullable_string(value, key, r)?,
            "otherMails" => draft.other_mails = string_list(value, key, r)?,
            "mobilePhone" => draft.mobile_phone = nullable_string(value, key, r)?,
            "businessPhones" => draft.business_phones = string_list(value, key, r)?,
            "jobTitle" => draft.job_title = nullable_string(value, key, r)?,
            "department" => draft.department = nullable_string(value, key, r)?,
            "usageLocation" => draft.usage_location = nullable_string(value, key, r)?,
            name if is_read_only_user_property(name) => {
                return Err(format!("Property '{key}' is read-only and cannot be set."));
            }
            _ => return Err(unknown_property(key, "user")),
        }
    }
    Ok(draft)
}

pub fn user_patch(body: &Value) -> Result<UserPatch, BodyError> {
    let mut patch = UserPatch::default();
    for (key, value) in as_object(body)? {
        if is_annotation(key, value, "user")? {
            continue;
        }
        let r = "User";
        if let Some(field) = writable_profile_field(key) {
            patch.profile.push((field, nullable_string(value, key, r)?));
            continue;
        }
        match key.as_str() {
            "userPrincipalName" => patch.user_principal_name = Some(string(value, key, r)?),
            "displayName" => patch.display_name = Some(string(value, key, r)?),
            "mailNickname" => patch.mail_nickname = Some(string(value, key, r)?),
            "accountEnabled" => patch.account_enabled = Some(boolean(value, key, r)?),
            "passwordProfile" => {
                let profile = password_profile(value)?;
                patch.password = profile.password;
                patch.force_change_password_next_sign_in = profile.force_change;
            }
            "givenName" => patch.given_name = Some(nullable_string(value, key, r)?),
            "surname" => patch.surname = Some(nullable_string(value, key, r)?),
            "mail" => patch.mail = Some(nullable_string(value, key, r)?),
            "otherMails" => patch.other_mails = Some(string_list(value, key, r)?),
            "mobilePhone" => patch.mobile_phone = Some(nullable_string(value, key, r)?),
            "businessPhones" => patch.business_phones = Some(string_list(value, key, r)?),
            "jobTitle" => patch.job_title = Some(nullable_string(value, key, r)?),
            "department" => patch.department = Some(nullable_string(value, key, r)?),
            "usageLocation" => patch.usage_location = Some(nullable_string(value, key, r)?),
            name if is_read_only_user_property(name) => {
                return Err(format!("Property '{key}' is read-only and cannot be set."));
            }
            _ => return Err(unknown_property(key, "user")),
        }
    }
    Ok(patch)
}

pub fn group_draft(body: &Value) -> Result<GroupDraft, BodyError> {
    let mut draft = GroupDraft::default();
    for (key, value) in as_object(body)? {
        if is_annotation(key, value, "group")? {
            continue;
        }
        let r = "Group";
        match key.as_str() {
            "displayName" => draft.display_name = Some(string(value, key, r)?),
            "description" => draft.description = nullable_string(value, key, r)?,
            "mailNickname" => draft.mail_nickname = Some(string(value, key, r)?),
            "mailEnabled" => draft.mail_enabled = Some(boolean(value, key, r)?),
            "securityEnabled" => draft.security_enabled = Some(boolean(value, key, r)?),
            "isAssignableToRole" => draft.is_assignable_to_role = Some(boolean(value, key, r)?),
            "groupTypes" => draft.group_types = string_list(value, key, r)?,
            "visibility" => {
                nullable_string(value, key, r)?;
            }
            "id" | "createdDateTime" => return Err(format!("Property '{key}' is read-only and cannot be set.")),
            _ => return Err(unknown_property(key, "group")),
        }
    }
    Ok(draft)
}

/// The body of `PATCH /servicePrincipals/{id}`: `accountEnabled` and `displayName`; `id` and
/// `appId` are kept for the use case to compare with the principal's own; any other property is
/// refused by name rather than ignored.
pub fn service_principal_patch(body: &Value) -> Result<ServicePrincipalDraft, BodyError> {
    let mut draft = ServicePrincipalDraft::default();
    for (key, value) in as_object(body)? {
        if is_annotation(key, value, "servicePrincipal")? {
            continue;
        }
        let r = "ServicePrincipal";
        match key.as_str() {
            "accountEnabled" => draft.account_enabled = Some(boolean(value, key, r)?),
            "displayName" => draft.display_name = Some(string(value, key, r)?),
            "id" => draft.stated_ids.push(("id", string(value, key, r)?)),
            "appId" => draft.stated_ids.push(("appId", string(value, key, r)?)),
            _ => {
                return Err(format!(
                    "Property '{key}' is not supported on 'microsoft.graph.servicePrincipal' by Keyward."
                ));
            }
        }
    }
    Ok(draft)
}

pub fn group_patch(body: &Value) -> Result<GroupPatch, BodyError> {
    let mut patch = GroupPatch::default();
    for (key, value) in as_object(body)? {
        if is_annotation(key, value, "group")? {
            continue;
        }
        let r = "Group";
        match key.as_str() {
            "displayName" => patch.display_name = Some(string(value, key, r)?),
            "description" => patch.description = Some(nullable_string(value, key, r)?),
            "mailNickname" => patch.mail_nickname = Some(string(value, key, r)?),
            "mailEnabled" => patch.mail_enabled = Some(boolean(value, key, r)?),
            "securityEnabled" => patch.security_enabled = Some(boolean(value, key, r)?),
            "isAssignableToRole" => patch.is_assignable_to_role = Some(boolean(value, key, r)?),
            "id" | "createdDateTime" | "groupTypes" => {
                return Err(format!("Property '{key}' is read-only and cannot be set."));
            }
            _ => return Err(unknown_property(key, "group")),
        }
    }
    Ok(patch)
}

/// The object id named by a `{"@odata.id": ".../directoryObjects/{id}"}` reference body.
pub fn reference_id(body: &Value) -> Result<String, BodyError> {
    let invalid = || "The request body must be {\"@odata.id\": \"https://…/v1.0/directoryObjects/{id}\"}.".to_owned();
    let object = body.as_object().ok_or_else(invalid)?;
    let url = object.get("@odata.id").and_then(Value::as_str).ok_or_else(invalid)?;
    let url = url.split(['?', '#']).next().unwrap_or(url).trim_end_matches('/');
    let id = url.rsplit('/').next().unwrap_or(url);
    let id = id.strip_prefix("$ref").unwrap_or(id);
    if id.is_empty() {
        return Err(invalid());
    }
    Ok(id.to_owned())
}

/// The object id named by a `$ref` removal's query, `$id={its URL}` (the form Kiota's SDKs
/// write); `hint` names the other form, for the error.
pub fn reference_in_query(query: Option<&str>, hint: &str) -> Result<String, BodyError> {
    let url = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "$id" || name == "@id")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| format!("Name the object to remove with $id={{its URL}}, or use {hint}."))?;
    reference_id(&json!({ "@odata.id": url }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_bodies_parse_and_refuse_unknown_or_mistyped_properties() {
        let body = json!({
            "@odata.type": "#microsoft.graph.user",
            "accountEnabled": true,
            "displayName": "Adele",
            "mailNickname": "adele",
            "userPrincipalName": "adele@contoso.test",
            "passwordProfile": {"password": "x", "forceChangePasswordNextSignIn": false},
            "otherMails": ["a@b.c"],
        });
        let draft = user_draft(&body).expect("valid");
        assert_eq!(draft.password.as_ref().map(Secret::expose), Some("x"));
        assert_eq!(draft.force_change_password_next_sign_in, Some(false));
        assert_eq!(draft.other_mails, ["a@b.c"]);
        let unknown = user_draft(&json!({"favouriteColour": "red"})).expect_err("unknown");
        assert!(unknown.contains("favouriteColour"), "{unknown}");
        assert!(user_draft(&json!({"accountEnabled": "yes"})).is_err());
        assert!(user_draft(&json!({"@odata.type": "#microsoft.graph.group"})).is_err());
        let patch = user_patch(&json!({"jobTitle": null, "department": "Sales"})).expect("valid");
        assert_eq!(patch.job_title, Some(None));
        assert_eq!(patch.department, Some(Some("Sales".into())));
        assert_eq!(patch.display_name, None);
    }

    #[test]
    fn a_user_entity_is_written_as_its_map_would_be() {
        use keyward_core::directory::{Domain, Tenant, new_user};
        let now = OffsetDateTime::now_utc();
        let tenant = Tenant {
            id: keyward_core::ids::ObjectId::from_bytes([1; 16]),
            display_name: "Contoso".into(),
            created: now,
            domains: vec![Domain { name: "contoso.test".into(), is_default: true, is_initial: true }],
        };
        let full = user_draft(&json!({
            "accountEnabled": false, "displayName": "Adele \"Vance\" \u{e9}", "mailNickname": "adele",
            "userPrincipalName": "adele@contoso.test", "passwordProfile": {"password": "Tq7-harbour-Lantern-92!"},
            "givenName": "Adele", "surname": "Vance", "mail": "adele@contoso.test", "jobTitle": "Retail Manager",
            "department": "Sales", "mobilePhone": "+1 425 555 0109", "usageLocation": "no",
            "otherMails": ["a@b.test", "c@d.test"], "businessPhones": ["+1 425 555 0100"],
            "city": "Oslo", "employeeId": "E-1001", "companyName": "Contoso",
        }))
        .expect("a valid draft");
        let sparse = user_draft(&json!({
            "accountEnabled": true, "displayName": "Sparse", "mailNickname": "sparse",
            "userPrincipalName": "sparse@contoso.test", "passwordProfile": {"password": "Tq7-harbour-Lantern-92!"},
        }))
        .expect("a valid draft");
        let every: Vec<&'static str> = USER.properties.iter().map(|it| it.name).collect();
        let selects: Vec<Option<Vec<&'static str>>> = vec![
            None,
            Some(every.clone()),
            Some(vec!["displayName", "id", "displayName", "city"]),
            Some(vec![
                "identities",
                "createdDateTime",
                "lastPasswordChangeDateTime",
                "signInSessionsValidFromDateTime",
            ]),
        ];
        for draft in [full, sparse] {
            let mut user =
                new_user(&tenant, keyward_core::ids::ObjectId::from_bytes([2; 16]), draft, now).expect("user").user;
            if user.job_title.is_some() {
                // What no draft may hold, written all the same (escaped alike).
                user.job_title = Some("Retail\nManager\u{1}\\".into());
                // The values themselves, each from its field.
                let every_value =
                    serde_json::to_value(UserEntity::new("c", &user, Some(&every), Version::Beta)).expect("json");
                for (name, value) in [
                    ("accountEnabled", json!(false)),
                    ("otherMails", json!(["a@b.test", "c@d.test"])),
                    ("businessPhones", json!(["+1 425 555 0100"])),
                    ("jobTitle", json!("Retail\nManager\u{1}\\")),
                    ("usageLocation", json!("NO")),
                    ("city", json!("Oslo")),
                    ("employeeId", json!("E-1001")),
                    ("createdDateTime", json!(timestamp(now))),
                    ("lastPasswordChangeDateTime", json!(timestamp(now))),
                    ("proxyAddresses", json!([])),
                    (
                        "identities",
                        json!([{"signInType": "userPrincipalName", "issuer": "contoso.test", "issuerAssignedId": "adele@contoso.test"}]),
                    ),
                ] {
                    assert_eq!(every_value[name], value, "{name}");
                }
                assert_eq!(user_property(&user, "passwordProfile"), Value::Null, "write-only");
            }
            for select in &selects {
                for version in [Version::V1, Version::Beta] {
                    let mut map = super::user(&user, select.as_deref(), version);
                    map.shift_insert(0, "@odata.context".into(), json!("https://h/v1.0/$metadata#users/$entity"));
                    let direct =
                        UserEntity::new("https://h/v1.0/$metadata#users/$entity", &user, select.as_deref(), version);
                    assert_eq!(
                        serde_json::to_string(&direct).expect("json"),
                        serde_json::to_string(&Value::Object(map)).expect("json"),
                        "{select:?} {version:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn references_name_the_last_path_segment() {
        let id = "00000000-0000-0000-0000-000000000001";
        for url in [
            format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}"),
            format!("https://h/v1.0/users/{id}/"),
            id.to_owned(),
        ] {
            assert_eq!(reference_id(&json!({ "@odata.id": url })).as_deref(), Ok(id));
        }
        assert!(reference_id(&json!({"id": id})).is_err());
    }
}
