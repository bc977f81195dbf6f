//! The OpenAPI 3.1 description, built from the same calls that register the routes, so a route
//! cannot exist without its documentation.

use axum::Router;
use axum::routing::MethodRouter;
use serde_json::{Map, Value, json};

use crate::AppState;

/// The documentation of one operation.
#[derive(Debug, Clone)]
pub struct Op {
    pub method: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub permission: &'static str,
    pub request: Option<&'static str>,
    pub status: u16,
    pub response: &'static str,
    pub params: Vec<&'static str>,
    pub paging: Paging,
    /// Query options the handler honours besides those its paging implies (`$select` on an
    /// entity, `$filter` on a log, …); any other is refused before the handler runs.
    pub options: &'static [&'static str],
    /// Served under `/beta` only (as in Graph); `/v1.0` answers 400 for it.
    pub is_beta_only: bool,
    /// Dual control may hold it: `202` with the held request.
    pub may_be_held: bool,
}

/// Which query options an operation documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    None,
    /// `$top` and `$skiptoken` only (relationships).
    PagesOnly,
    /// Every option of a directory collection.
    Full,
}

impl Op {
    pub fn get(tag: &'static str, summary: &'static str, permission: &'static str, response: &'static str) -> Op {
        Op {
            method: "get",
            tag,
            summary,
            permission,
            request: None,
            status: 200,
            response,
            params: Vec::new(),
            paging: Paging::None,
            options: &[],
            is_beta_only: false,
            may_be_held: false,
        }
    }

    pub fn post(
        tag: &'static str,
        summary: &'static str,
        permission: &'static str,
        request: &'static str,
        status: u16,
        response: &'static str,
    ) -> Op {
        Op { method: "post", request: Some(request), status, ..Op::get(tag, summary, permission, response) }
    }

    pub fn patch(tag: &'static str, summary: &'static str, permission: &'static str, request: &'static str) -> Op {
        Op { method: "patch", request: Some(request), status: 204, ..Op::get(tag, summary, permission, "") }
    }

    pub fn put(tag: &'static str, summary: &'static str, permission: &'static str, request: &'static str) -> Op {
        Op { method: "put", request: Some(request), status: 204, ..Op::get(tag, summary, permission, "") }
    }

    pub fn delete(tag: &'static str, summary: &'static str, permission: &'static str) -> Op {
        Op { method: "delete", status: 204, ..Op::get(tag, summary, permission, "") }
    }

    /// Answers `status` with `response` (a PATCH that returns the object).
    pub fn with_status(mut self, status: u16, response: &'static str) -> Op {
        self.status = status;
        self.response = response;
        self
    }

    pub fn with_id(self) -> Op {
        self.with_param("id")
    }

    pub fn with_param(mut self, name: &'static str) -> Op {
        self.params.push(name);
        self
    }

    pub fn paged(mut self) -> Op {
        self.paging = Paging::Full;
        self
    }

    pub fn pages_only(mut self) -> Op {
        self.paging = Paging::PagesOnly;
        self
    }

    /// A relationship collection (`members`, `memberOf`, …): paged, with `$select` and `$count`.
    pub fn relationship(self) -> Op {
        self.pages_only().with_options(&["$select", "$count"])
    }

    /// Declares query options the handler honours (see [`Op::options`]).
    pub fn with_options(mut self, options: &'static [&'static str]) -> Op {
        self.options = options;
        self
    }

    /// Every query option this operation honours: all of a directory collection's, `$top` and
    /// `$skiptoken` for a relationship, and the declared ones.
    pub fn allowed_options(&self) -> Vec<&'static str> {
        let mut res: Vec<&'static str> = match self.paging {
            Paging::None => Vec::new(),
            Paging::PagesOnly => vec!["$top", "$skiptoken"],
            Paging::Full => crate::context::QUERY_OPTIONS.to_vec(),
        };
        res.extend(self.options);
        res
    }

    pub fn beta_only(mut self) -> Op {
        self.is_beta_only = true;
        self
    }

    /// Documents the `202` dual control answers when it holds the change for approval.
    pub fn may_be_held(mut self) -> Op {
        self.may_be_held = true;
        self
    }
}

/// Graph's routes under construction together with their documentation. The routes are kept
/// unprefixed, in the order they were added: the caller routes each under `/v1.0` and `/beta` in
/// one router (see [`Api::router`]).
#[derive(Debug)]
pub struct Api {
    pub routes: Vec<(&'static str, MethodRouter<AppState>)>,
    pub ops: Vec<(String, Op)>,
}

impl Api {
    pub fn new() -> Api {
        Api { routes: Vec::new(), ops: Vec::new() }
    }

    /// Every routed path (for the case-insensitive matching of their fixed segments).
    pub fn paths(&self) -> Vec<&'static str> {
        self.routes.iter().map(|(path, _)| *path).collect()
    }

    /// The routes under `prefix` (`/v1.0`, `/beta`), added in the order they were declared.
    pub fn router(&self, prefix: &str) -> Router<AppState> {
        self.routes
            .iter()
            .fold(Router::new(), |router, (path, handler)| router.route(&format!("{prefix}{path}"), handler.clone()))
    }

    /// Routes a path documented by [`Api::document`] under its concrete forms. It takes no query
    /// option (an alternate key, a function call), so any is refused rather than ignored.
    pub fn route_undocumented(self, path: &'static str, handler: MethodRouter<AppState>) -> Api {
        self.route_undocumented_with(path, handler, &[])
    }

    /// [`route_undocumented`](Self::route_undocumented) for a handler that honours `options` (its
    /// documenting `Op` declares them too).
    pub fn route_undocumented_with(
        mut self,
        path: &'static str,
        handler: MethodRouter<AppState>,
        options: &'static [&'static str],
    ) -> Api {
        let handler = handler.layer(crate::context::RefuseOptions(options.into()));
        self.routes.push((path, handler));
        self
    }

    /// Documents a path that another route serves (a function call whose parameters sit inside
    /// one path segment, routed with a capture of the whole segment).
    pub fn document(mut self, path: &'static str, op: Op) -> Api {
        self.ops.push((path.to_owned(), op));
        self
    }

    /// Adds a route and documents it. A `GET` refuses the query options it does not honour
    /// ([`Op::allowed_options`]), so a `200` always means the options were applied.
    pub fn route(mut self, path: &'static str, handler: MethodRouter<AppState>, op: Op) -> Api {
        let handler = if op.method == "get" {
            handler.layer(crate::context::RefuseOptions(op.allowed_options().into()))
        } else {
            handler
        };
        self.routes.push((path, handler));
        self.ops.push((path.to_owned(), op));
        self
    }
}

impl Default for Api {
    fn default() -> Api {
        Api::new()
    }
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn schemas() -> Value {
    let string = json!({"type": "string"});
    let nullable = json!({"type": ["string", "null"]});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let mut user_props = json!({
        "id": {"type": "string", "format": "uuid", "readOnly": true},
        "userPrincipalName": string, "displayName": string, "givenName": nullable, "surname": nullable,
        "mail": nullable, "mailNickname": string, "otherMails": strings, "mobilePhone": nullable,
        "businessPhones": strings, "jobTitle": nullable, "department": nullable, "accountEnabled": {"type": "boolean"},
        "usageLocation": nullable, "createdDateTime": {"type": "string", "format": "date-time", "readOnly": true},
        "signInSessionsValidFromDateTime": {"type": "string", "format": "date-time", "readOnly": true, "description": "Returned only with $select."},
        "passwordProfile": {"anyOf": [{"$ref": "#/components/schemas/PasswordProfile"}, {"type": "null"}], "description": "Read back as null: the password is never returned."},
    });
    // The profile: text properties, the hire date, and what only the directory sets.
    for field in keyward_core::profile::FIELDS {
        let schema = match field.format {
            keyward_core::profile::Format::DateTime => json!({"type": ["string", "null"], "format": "date-time"}),
            keyward_core::profile::Format::ReadOnly => json!({"type": ["string", "null"], "readOnly": true}),
            _ => nullable.clone(),
        };
        user_props[field.name] = schema;
    }
    user_props["identities"] = json!({"type": "array", "readOnly": true, "items": {"type": "object"}});
    user_props["proxyAddresses"] = json!({"type": "array", "readOnly": true, "items": {"type": "string"}});
    user_props["onPremisesSyncEnabled"] = json!({"type": ["boolean", "null"], "readOnly": true});
    user_props["lastPasswordChangeDateTime"] =
        json!({"type": ["string", "null"], "format": "date-time", "readOnly": true});
    let group_props = json!({
        "id": {"type": "string", "format": "uuid", "readOnly": true},
        "displayName": string, "description": nullable, "mailNickname": string, "mailEnabled": {"type": "boolean"},
        "securityEnabled": {"type": "boolean"}, "isAssignableToRole": {"type": "boolean", "description": "Set only at creation."},
        "groupTypes": strings, "createdDateTime": {"type": "string", "format": "date-time", "readOnly": true},
    });
    let collection = |item: &str| {
        json!({"type": "object", "properties": {
            "@odata.context": string, "@odata.count": {"type": "integer"}, "@odata.nextLink": string,
            "value": {"type": "array", "items": reference(item)},
        }})
    };
    let mut res = json!({
        "User": {"type": "object", "properties": user_props},
        "UserCreate": {"type": "object", "properties": user_props, "required": ["accountEnabled", "displayName", "mailNickname", "passwordProfile", "userPrincipalName"]},
        "UserUpdate": {"type": "object", "properties": user_props},
        "PasswordProfile": {"type": "object", "properties": {"password": {"type": "string", "writeOnly": true}, "forceChangePasswordNextSignIn": {"type": "boolean"}}},
        "Group": {"type": "object", "properties": group_props},
        "GroupCreate": {"type": "object", "properties": group_props, "required": ["displayName", "mailEnabled", "mailNickname", "securityEnabled"]},
        "GroupUpdate": {"type": "object", "properties": group_props},
        "DirectoryObject": {"type": "object", "properties": {"@odata.type": string, "id": string}},
        "Organization": {"type": "object", "properties": {"id": string, "displayName": string, "verifiedDomains": {"type": "array", "items": {"type": "object"}}}},
        "Reference": {"type": "object", "required": ["@odata.id"], "properties": {"@odata.id": {"type": "string", "format": "uri"}}},
        "Count": {"type": "integer"},
        "MemberFunction": {"type": "object", "properties": {
            "securityEnabledOnly": {"type": "boolean", "description": "getMemberGroups, getMemberObjects"},
            "groupIds": {"type": "array", "items": string, "maxItems": 20, "description": "checkMemberGroups"},
            "ids": {"type": "array", "items": string, "maxItems": 20, "description": "checkMemberObjects"},
        }},
        "StringCollection": {"type": "object", "properties": {"value": strings}},
        "UserCollection": collection("User"),
        "GroupCollection": collection("Group"),
        "DirectoryObjectCollection": collection("DirectoryObject"),
        "OrganizationCollection": collection("Organization"),
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "code": string, "message": string,
            "innerError": {"type": "object", "properties": {"date": string, "request-id": string, "client-request-id": string}},
        }}}},
        "Jwks": {"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "object"}}}},
        "RoleDefinition": {"type": "object", "properties": {
            "id": string, "templateId": string, "displayName": string, "description": nullable, "isBuiltIn": {"type": "boolean"},
            "isEnabled": {"type": "boolean"}, "isPrivileged": {"type": "boolean"}, "version": string,
            "rolePermissions": {"type": "array", "items": {"type": "object", "properties": {"allowedResourceActions": strings, "condition": nullable}}},
        }},
        "RoleDefinitionCollection": collection("RoleDefinition"),
        "ResourceAction": {"type": "object", "properties": {"id": string, "name": string, "actionVerb": string, "description": string, "isPrivileged": {"type": "boolean"}}},
        "ResourceActionCollection": collection("ResourceAction"),
        "RoleAssignment": {"type": "object", "required": ["principalId", "roleDefinitionId", "directoryScopeId"], "properties": {
            "id": string, "principalId": string, "roleDefinitionId": string, "directoryScopeId": string, "appScopeId": nullable,
        }},
        "RoleAssignmentCollection": collection("RoleAssignment"),
        "DirectoryRole": {"type": "object", "properties": {"id": string, "displayName": string, "description": string, "roleTemplateId": string}},
        "DirectoryRoleCollection": collection("DirectoryRole"),
        "AdministrativeUnit": {"type": "object", "properties": {"id": string, "displayName": string, "description": nullable, "isMemberManagementRestricted": {"type": "boolean"}}},
        "AdministrativeUnitCollection": collection("AdministrativeUnit"),
        "ScopedRoleMembership": {"type": "object", "properties": {"id": string, "roleId": string, "administrativeUnitId": string, "roleMemberInfo": {"type": "object"}}},
        "ScopedRoleMembershipCollection": collection("ScopedRoleMembership"),
        "ServicePrincipal": {"type": "object", "required": ["appId"], "properties": {"id": string, "appId": string, "displayName": string, "accountEnabled": {"type": "boolean"}, "servicePrincipalType": string}},
        "ServicePrincipalCollection": collection("ServicePrincipal"),
        "DirectoryAudit": {"type": "object", "properties": {
            "id": string, "category": string, "correlationId": string, "result": string, "resultReason": string,
            "activityDisplayName": string, "activityDateTime": {"type": "string", "format": "date-time"}, "loggedByService": string,
            "operationType": string, "initiatedBy": {"type": "object"}, "targetResources": {"type": "array", "items": {"type": "object"}},
            "additionalDetails": {"type": "array", "items": {"type": "object"}},
        }},
        "DirectoryAuditCollection": collection("DirectoryAudit"),
        "SignIn": {"type": "object", "properties": {
            "id": string, "createdDateTime": {"type": "string", "format": "date-time"}, "userId": nullable,
            "userPrincipalName": string, "appId": string, "ipAddress": nullable, "correlationId": string,
            "status": {"type": "object", "properties": {"errorCode": {"type": "integer"}, "failureReason": nullable}},
            "authenticationRequirement": string,
            "authenticationDetails": {"type": "array", "items": {"type": "object"}},
        }},
        "SignInCollection": collection("SignIn"),
        "UserRegistrationDetails": {"type": "object", "properties": {"id": string, "userPrincipalName": string, "userDisplayName": string, "userType": string, "isAdmin": {"type": "boolean"}, "isMfaRegistered": {"type": "boolean"}, "isMfaCapable": {"type": "boolean"}, "isPasswordlessCapable": {"type": "boolean"}, "isSsprRegistered": {"type": "boolean"}, "isSsprEnabled": {"type": "boolean"}, "isSsprCapable": {"type": "boolean"}, "isSystemPreferredAuthenticationMethodEnabled": {"type": "boolean"}, "methodsRegistered": strings, "systemPreferredAuthenticationMethods": strings, "userPreferredMethodForSecondaryAuthentication": string, "lastUpdatedDateTime": string}},
        "UserRegistrationDetailsCollection": collection("UserRegistrationDetails"),
        "UserRegistrationMethodSummary": {"type": "object", "properties": {"userTypes": string, "userRoles": string, "userRegistrationMethodCounts": {"type": "array", "items": {"type": "object", "properties": {"authenticationMethod": string, "userCount": {"type": "integer"}}}}}},
        "UserRegistrationFeatureSummary": {"type": "object", "properties": {"totalUserCount": {"type": "integer"}, "userTypes": string, "userRoles": string, "userRegistrationFeatureCounts": {"type": "array", "items": {"type": "object", "properties": {"feature": string, "userCount": {"type": "integer"}}}}}},
        "MethodTarget": {"type": "object", "properties": {"targetType": {"type": "string", "enum": ["user", "group"]}, "id": string, "isRegistrationRequired": {"type": "boolean"}}},
        "AuthenticationMethodConfiguration": {"type": "object", "properties": {
            "@odata.type": string, "id": string, "state": {"type": "string", "enum": ["enabled", "disabled"]},
            "includeTargets": {"type": "array", "items": {"$ref": "#/components/schemas/MethodTarget"}},
            "excludeTargets": {"type": "array", "items": {"$ref": "#/components/schemas/MethodTarget"}},
            "defaultLifetimeInMinutes": {"type": "integer"}, "defaultLength": {"type": "integer"},
            "minimumLifetimeInMinutes": {"type": "integer"}, "maximumLifetimeInMinutes": {"type": "integer"},
            "isUsableOnce": {"type": "boolean"}, "allowExternalIdToUseEmailOtp": string,
        }},
        "AuthenticationMethodConfigurationCollection": collection("AuthenticationMethodConfiguration"),
        "AuthenticationMethodsPolicy": {"type": "object", "properties": {
            "id": string, "displayName": string, "description": string, "lastModifiedDateTime": nullable,
            "policyVersion": string, "policyMigrationState": string,
            "registrationEnforcement": {"type": "object", "properties": {"authenticationMethodsRegistrationCampaign": {"type": "object", "properties": {
                "state": {"type": "string", "enum": ["default", "enabled", "disabled"]},
                "snoozeDurationInDays": {"type": "integer", "minimum": 0, "maximum": 14},
                "enforceRegistrationAfterAllowedSnoozes": {"type": "boolean"},
                "includeTargets": {"type": "array", "items": {"type": "object", "properties": {"id": string, "targetType": string, "targetedAuthenticationMethod": string}}},
                "excludeTargets": {"type": "array", "items": {"$ref": "#/components/schemas/MethodTarget"}},
            }}}},
            "authenticationMethodConfigurations": {"type": "array", "items": {"$ref": "#/components/schemas/AuthenticationMethodConfiguration"}},
        }},
        "NewPasskey": {"type": "object", "required": ["publicKeyCredential"], "properties": {
            "displayName": string,
            "publicKeyCredential": {"type": "object", "required": ["id", "response"], "properties": {
                "id": string,
                "response": {"type": "object", "required": ["clientDataJSON", "attestationObject"], "properties": {"clientDataJSON": string, "attestationObject": string}},
                "clientExtensionResults": {"type": "object"},
            }},
        }},
        "PasskeyCreationOptions": {"type": "object", "properties": {"challengeTimeoutDateTime": string, "publicKey": {"type": "object"}}},
        "SecurityDefaultsPolicy": {"type": "object", "properties": {"id": string, "displayName": string, "description": string, "isEnabled": {"type": "boolean"}}},
        "KeywardSignInPolicy": {"type": "object", "properties": {
            "requireMfaForPrivilegedRoles": {"type": "boolean"},
            "rememberMfaOnDeviceDays": {"type": "integer", "minimum": 0, "maximum": 365},
            "lockoutThreshold": {"type": "integer"}, "lockoutDurationInSeconds": {"type": "integer"},
            "codeAttemptLimit": {"type": "integer"},
        }},
        "KeywardServiceDeskPolicy": {"type": "object", "properties": {
            "temporaryAccessPassesPerAgentPerHour": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000},
            "passwordResetsPerAgentPerHour": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000},
            "mfaResetsPerAgentPerHour": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000},
            "dualControlEnabled": {"type": "boolean"},
            "callerVerificationEnabled": {"type": "boolean"},
            "callerVerificationOperations": {"type": "array", "items": {"type": "string", "enum": ["temporaryAccessPasses", "passwordResets", "mfaResets", "privilegedUserMethodChanges", "allMethodChanges"]}},
            "dualControlGroupId": {"type": ["string", "null"]},
            "dualControlRequestLifetimeInMinutes": {"type": "integer", "minimum": 5, "maximum": 10080},
        }},
        "Empty": {"type": "object"},
        "PhoneMethod": {"type": "object", "properties": {"phoneNumber": string, "phoneType": {"type": "string", "enum": ["mobile", "alternateMobile", "office"]}}},
        "EmailMethod": {"type": "object", "required": ["emailAddress"], "properties": {"emailAddress": string}},
        "AuthenticationMethod": {"type": "object", "properties": {"@odata.type": string, "id": string}},
        "AuthenticationMethodCollection": collection("AuthenticationMethod"),
        "ResetPasswordRequest": {"type": "object", "properties": {"newPassword": {"type": "string", "writeOnly": true}}},
        "BatchRequest": {"type": "object", "required": ["requests"], "properties": {"requests": {"type": "array", "maxItems": 20, "items": {"type": "object", "required": ["id", "method", "url"], "properties": {"id": {"type": "string"}, "method": {"type": "string"}, "url": {"type": "string"}, "headers": {"type": "object"}, "body": {}, "dependsOn": {"type": "array", "items": {"type": "string"}}}}}}},
        "BatchResponse": {"type": "object", "properties": {"responses": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "status": {"type": "integer"}, "headers": {"type": "object"}, "body": {}}}}}},
        "ChangePasswordRequest": {"type": "object", "required": ["currentPassword", "newPassword"], "properties": {"currentPassword": {"type": "string", "writeOnly": true}, "newPassword": {"type": "string", "writeOnly": true}}},
        "PasswordResetResponse": {"type": "object", "properties": {"newPassword": {"type": "string", "description": "Only when Keyward chose the password."}}},
        "LongRunningOperation": {"type": "object", "properties": {"id": string, "status": string, "createdDateTime": {"type": "string", "format": "date-time"}}},
        "TemporaryAccessPassRequest": {"type": "object", "properties": {"startDateTime": {"type": "string", "format": "date-time"}, "lifetimeInMinutes": {"type": "integer"}, "isUsableOnce": {"type": "boolean"}}},
        "Application": {"type": "object", "properties": {
            "id": string, "appId": string, "displayName": string, "uniqueName": string, "isFallbackPublicClient": {"type": "boolean"},
            "publicClient": {"type": "object", "properties": {"redirectUris": strings}},
            "web": {"type": "object", "properties": {"redirectUris": strings}},
            "passwordCredentials": {"type": "array", "items": {"$ref": "#/components/schemas/PasswordCredential"}},
        }},
        "ApplicationCollection": collection("Application"),
        "PasswordCredential": {"type": "object", "properties": {
            "keyId": string, "displayName": nullable, "hint": string, "secretText": {"type": ["string", "null"], "description": "Only in the addPassword response."},
            "startDateTime": {"type": "string", "format": "date-time"}, "endDateTime": {"type": "string", "format": "date-time"},
        }},
        "PasswordCredentialRequest": {"type": "object", "properties": {"passwordCredential": {"type": "object", "properties": {"displayName": string, "endDateTime": {"type": "string", "format": "date-time"}}}}},
        "KeyIdRequest": {"type": "object", "required": ["keyId"], "properties": {"keyId": string}},
        "OAuth2PermissionGrant": {"type": "object", "properties": {"id": string, "clientId": string, "consentType": {"type": "string", "enum": ["AllPrincipals", "Principal"]}, "principalId": nullable, "resourceId": string, "scope": string}},
        "OAuth2PermissionGrantCreate": {"type": "object", "required": ["clientId", "consentType", "resourceId"], "properties": {"clientId": string, "consentType": {"type": "string", "enum": ["AllPrincipals", "Principal"]}, "principalId": nullable, "resourceId": string, "scope": string}, "additionalProperties": false},
        "OAuth2PermissionGrantUpdate": {"type": "object", "required": ["scope"], "properties": {"scope": string}, "additionalProperties": false},
        "OAuth2PermissionGrantCollection": collection("OAuth2PermissionGrant"),
        "AuthorizationPolicy": {"type": "object", "properties": {"id": string, "displayName": string, "description": string, "defaultUserRolePermissions": {"type": "object", "properties": {"permissionGrantPoliciesAssigned": strings}}}},
        "StrongAuthenticationRequirements": {"type": "object", "properties": {"perUserMfaState": {"type": "string", "enum": ["disabled", "enabled", "enforced"]}}},
        "SignInPreferences": {"type": "object", "properties": {
            "isSystemPreferredAuthenticationMethodEnabled": {"type": "boolean"},
            "userPreferredMethodForSecondaryAuthentication": {"type": ["string", "null"], "enum": ["push", "oath", "voiceMobile", "voiceAlternateMobile", "voiceOffice", "sms", null]},
        }},
        "Boolean": {"type": "object", "properties": {"value": {"type": "boolean"}}},
        "MfaReset": {"type": "object", "properties": {"temporaryAccessPass": {"type": "object", "description": "Request: a TemporaryAccessPassRequest to create a pass too. Answer: the pass created (its code shown only here), or null."}}},
    });
    // Just-in-time roles, in a second literal (one would exceed the macro's recursion limit).
    let pim = json!({
        "ScheduleRequest": {"type": "object", "required": ["action", "principalId", "roleDefinitionId"], "properties": {
            "id": string, "status": string, "action": {"type": "string", "enum": ["adminAssign", "adminUpdate", "adminRemove", "adminExtend", "adminRenew", "selfActivate", "selfDeactivate"]},
            "principalId": string, "roleDefinitionId": string, "directoryScopeId": string, "justification": nullable,
            "isValidationOnly": {"type": "boolean"}, "targetScheduleId": nullable, "approvalId": nullable,
            "createdDateTime": {"type": "string", "format": "date-time", "readOnly": true}, "completedDateTime": nullable,
            "scheduleInfo": {"type": "object", "properties": {"startDateTime": nullable, "expiration": {"type": "object", "properties": {
                "type": {"type": "string", "enum": ["notSpecified", "noExpiration", "afterDateTime", "afterDuration"]}, "endDateTime": nullable, "duration": nullable}}}},
            "ticketInfo": {"type": "object", "properties": {"ticketNumber": nullable, "ticketSystem": nullable}},
        }},
        "ScheduleRequestCollection": collection("ScheduleRequest"),
        "Schedule": {"type": "object", "properties": {
            "id": string, "principalId": string, "roleDefinitionId": string, "directoryScopeId": string, "memberType": string,
            "assignmentType": string, "status": string, "startDateTime": nullable, "endDateTime": nullable, "scheduleInfo": {"type": "object"},
        }},
        "ScheduleCollection": collection("Schedule"),
        "ApprovalStep": {"type": "object", "properties": {
            "id": string, "assignedToMe": {"type": "boolean"}, "justification": nullable, "reviewResult": string,
            "reviewedBy": {"type": ["object", "null"]}, "reviewedDateTime": nullable, "status": string,
        }},
        "ApprovalStepCollection": collection("ApprovalStep"),
        "ApprovalStepReview": {"type": "object", "required": ["reviewResult", "justification"], "properties": {
            "reviewResult": {"type": "string", "enum": ["Approve", "Deny"]}, "justification": string,
        }},
        "Approval": {"type": "object", "properties": {"id": string, "steps": {"type": "array", "items": reference("ApprovalStep")}}},
        "RoleManagementPolicyRule": {"type": "object", "properties": {"@odata.type": string, "id": string, "target": {"type": "object"}}},
        "RoleManagementPolicyRuleCollection": collection("RoleManagementPolicyRule"),
        "RoleManagementPolicy": {"type": "object", "properties": {
            "id": string, "displayName": string, "description": string, "isOrganizationDefault": {"type": "boolean"},
            "scopeId": string, "scopeType": string, "lastModifiedDateTime": nullable,
            "rules": {"type": "array", "items": reference("RoleManagementPolicyRule")},
        }},
        "RoleManagementPolicyCollection": collection("RoleManagementPolicy"),
        "RoleManagementPolicyAssignment": {"type": "object", "properties": {
            "id": string, "policyId": string, "scopeId": string, "scopeType": string, "roleDefinitionId": string,
            "policy": reference("RoleManagementPolicy"),
        }},
        "RoleManagementPolicyAssignmentCollection": collection("RoleManagementPolicyAssignment"),
        "KeywardNotification": {"type": "object", "properties": {
            "id": string, "kind": {"type": "string", "enum": ["securityInfoChanged", "suspiciousActivityReported", "agentLimitReached", "approvalRequested"]},
            "userId": string, "recipient": {"type": ["string", "null"]}, "subject": string, "body": string,
            "correlationId": string, "createdDateTime": string,
            "state": {"type": "string", "enum": ["pending", "sent", "failed", "noAddress"]},
            "attempts": {"type": "integer"}, "nextAttemptDateTime": {"type": ["string", "null"]},
            "lastError": {"type": ["string", "null"]}, "sentDateTime": {"type": ["string", "null"]},
            "reportedDateTime": {"type": ["string", "null"]},
        }},
        "KeywardNotificationCollection": collection("KeywardNotification"),
    });
    if let (Some(all), Value::Object(more)) = (res.as_object_mut(), pim) {
        all.extend(more);
    }
    let domains = json!({
        "Domain": {"type": "object", "properties": {
            "id": string, "authenticationType": string, "isDefault": {"type": "boolean"},
            "isInitial": {"type": "boolean"}, "isVerified": {"type": "boolean"},
        }},
        "DomainCollection": collection("Domain"),
        "DirectoryRoleTemplate": {"type": "object", "properties": {"id": string, "displayName": string, "description": string, "deletedDateTime": nullable}},
        "DirectoryRoleTemplateCollection": collection("DirectoryRoleTemplate"),
        "GetByIdsRequest": {"type": "object", "required": ["ids"], "additionalProperties": false, "properties": {
            "ids": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"type": "string"}},
            "types": {"type": "array", "items": {"type": "string", "enum": ["user", "group", "servicePrincipal", "application", "administrativeUnit"]}},
        }},
    });
    if let (Some(all), Value::Object(more)) = (res.as_object_mut(), domains) {
        all.extend(more);
    }
    let service_desk = json!({
        "KeywardServiceDeskRequest": {"type": "object", "properties": {
            "id": string,
            "operation": {"type": "string", "enum": ["createTemporaryAccessPass", "resetPassword", "requireMfaReregistration", "resetMfa", "deleteMethod"]},
            "description": string,
            "status": {"type": "string", "enum": ["pendingApproval", "completed", "denied", "failed", "expired"]},
            "requestedBy": {"type": "object"}, "target": {"type": "object"},
            "createdDateTime": string, "expirationDateTime": string,
            "decidedBy": {"type": ["object", "null"]}, "decidedDateTime": {"type": ["string", "null"]},
            "decisionNote": {"type": ["string", "null"]}, "canBeDecidedByMe": {"type": "boolean"},
            "pendingTemporaryAccessPass": {"type": "string", "description": "Only in the 202 answer that held a pass: valid once approved"},
            "pendingPassword": {"type": "string", "description": "Only in the 202 answer that held a generated password: valid once approved"},
        }},
        "KeywardServiceDeskRequestCollection": collection("KeywardServiceDeskRequest"),
        "KeywardBulkOperationRequest": {"type": "object", "required": ["operation", "users"], "properties": {
            "operation": {"type": "string", "enum": ["requireMfaReregistration", "revokeMfaSessions", "setPerUserMfa", "assignRole", "removeRole"]},
            "perUserMfaState": {"type": "string", "enum": ["disabled", "enabled", "enforced"]},
            "roleDefinitionId": string, "directoryScopeId": string, "dryRun": {"type": "boolean"},
            "users": {"type": "object", "description": "exactly one of groupId, administrativeUnitId, filter, ids (array), csv (text with a userPrincipalName or id column)"},
        }},
        "KeywardBulkOperation": {"type": "object", "properties": {
            "id": {"type": ["string", "null"]}, "operation": string, "source": string,
            "status": {"type": "string", "enum": ["dryRun", "running", "completed"]},
            "createdDateTime": string, "finishedDateTime": {"type": ["string", "null"]},
            "summary": {"type": "object"}, "results": {"type": "array", "items": reference("KeywardBulkResult")},
        }},
        "KeywardBulkResult": {"type": "object", "properties": {
            "position": {"type": "integer"}, "user": string, "userId": {"type": ["string", "null"]},
            "result": {"type": "string", "enum": ["pending", "wouldChange", "done", "already", "refused", "heldForApproval", "failed"]},
            "detail": {"type": ["string", "null"]},
        }},
        "KeywardBulkResultCollection": collection("KeywardBulkResult"),
        "KeywardCallerVerificationRequest": {"type": "object", "required": ["userId"], "properties": {"userId": string}},
        "KeywardCallerVerification": {"type": "object", "properties": {
            "id": string, "userId": string, "agentId": string, "agentDisplayName": string,
            "status": {"type": "string", "enum": ["pending", "verified", "failed", "expired"]},
            "method": {"type": ["string", "null"]}, "createdDateTime": string, "expirationDateTime": string,
            "code": {"type": "string", "description": "Only in the answer that started it: the code the agent reads out"},
        }},
        "KeywardServiceDeskDecision": {"type": "object", "required": ["justification"], "properties": {"justification": {"type": "string", "maxLength": 500}}},
    });
    if let (Some(all), Value::Object(more)) = (res.as_object_mut(), service_desk) {
        all.extend(more);
    }
    res
}

fn operation(op: &Op, version: &str, path: &str) -> Value {
    let mut parameters: Vec<Value> = op
        .params
        .iter()
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let options: &[(&str, &str)] = match op.paging {
        Paging::None => &[],
        Paging::PagesOnly => {
            &[("$top", "Page size, 1-999 (default 100)"), ("$skiptoken", "Opaque; taken from @odata.nextLink")]
        }
        Paging::Full => &[
            ("$filter", "OData filter: eq, ne, startswith, endswith, in, and, or, not, any()"),
            ("$select", "Comma-separated properties"),
            ("$top", "Page size, 1-999 (default 100)"),
            ("$orderby", "One property, asc or desc"),
            ("$count", "true with ConsistencyLevel: eventual"),
            ("$search", "\"property:term\" with ConsistencyLevel: eventual"),
            ("$skiptoken", "Opaque; taken from @odata.nextLink"),
        ],
    };
    for (name, description) in options {
        parameters.push(
            json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}}),
        );
    }
    if op.paging == Paging::Full {
        parameters.push(json!({"name": "ConsistencyLevel", "in": "header", "required": false, "description": "`eventual` (with `$count=true`) turns on advanced query mode; any other value is ignored, as Graph ignores it", "schema": {"type": "string"}}));
    }
    let mut responses = Map::new();
    let success = if op.response.is_empty() {
        json!({"description": "Success"})
    } else {
        json!({"description": "Success", "content": {"application/json": {"schema": reference(op.response)}}})
    };
    responses.insert(op.status.to_string(), success);
    if op.may_be_held {
        responses.insert(
            "202".into(),
            json!({"description": "Held by dual control (keywardServiceDeskPolicy) for a second administrator's approval; Location names the request", "content": {"application/json": {"schema": reference("KeywardServiceDeskRequest")}}}),
        );
    }
    for (status, description) in [
        ("400", "Request_BadRequest or Request_UnsupportedQuery"),
        ("401", "InvalidAuthenticationToken"),
        ("403", "Authorization_RequestDenied"),
        ("404", "Request_ResourceNotFound"),
    ] {
        responses.insert(
            status.into(),
            json!({"description": description, "content": {"application/json": {"schema": reference("Error")}}}),
        );
    }
    let mut res = json!({
        "tags": [op.tag],
        "summary": op.summary,
        "description": format!("Required permission: `{}`. Microsoft Graph {version} compatible.", op.permission),
        "operationId": operation_id(version, op.method, path),
        "parameters": parameters,
        "responses": responses,
        "security": [{"bearer": []}],
    });
    if let Some(request) = op.request {
        // Actions that take no parameters (the "Empty" body) accept a request without a body, as
        // Graph's do.
        let is_required = request != "Empty";
        res["requestBody"] =
            json!({"required": is_required, "content": {"application/json": {"schema": reference(request)}}});
    }
    res
}

/// A unique operation id: the version, the method and the path's segments, e.g.
/// `v1_0_get_users_id_authentication_methods`.
pub fn operation_id(version: &str, method: &str, path: &str) -> String {
    let segments: Vec<String> = path
        .split('/')
        .filter(|it| !it.is_empty())
        .map(|it| it.chars().map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' }).collect::<String>())
        .map(|it| it.trim_matches('_').to_owned())
        .collect();
    format!("{}_{method}_{}", version.replace('.', "_"), segments.join("_"))
}

/// The whole document: the Graph routes under both versions (beta-only operations under
/// `/beta` alone) plus the operational endpoints.
pub fn document(graph_ops: &[(String, Op)], public_url: &str) -> Value {
    let mut paths = Map::new();
    for version in ["v1.0", "beta"] {
        for (path, op) in graph_ops.iter().filter(|(_, op)| version == "beta" || !op.is_beta_only) {
            let entry = paths.entry(format!("/{version}{path}")).or_insert_with(|| json!({}));
            entry[op.method] = operation(op, version, path);
        }
    }
    let plain = |summary: &str, content: &str, schema: Value| json!({"get": {"summary": summary, "tags": ["operations"], "responses": {"200": {"description": "Success", "content": {content: {"schema": schema}}}}}});
    paths.insert(
        "/healthz".into(),
        plain("Liveness and database reachability", "application/json", json!({"type": "object"})),
    );
    paths.insert("/metrics".into(), plain("Prometheus metrics", "text/plain", json!({"type": "string"})));
    paths.insert("/openapi.json".into(), plain("This document", "application/json", json!({"type": "object"})));
    paths.insert("/docs".into(), plain("API viewer (no external assets)", "text/html", json!({"type": "string"})));
    let mut jwks = plain("Token signing keys (JWKS)", "application/json", reference("Jwks"));
    jwks["get"]["parameters"] = json!([{"name": "tenant", "in": "path", "required": true, "schema": {"type": "string"}, "description": "Tenant id or verified domain"}]);
    paths.insert("/{tenant}/discovery/v2.0/keys".into(), jwks);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Keyward API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Microsoft Graph-compatible directory API of Keyward. Send `Authorization: Bearer <token>`; errors use Graph's envelope.",
        },
        "servers": [{"url": public_url}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    })
}
