//! `/policies/roleManagementPolicies` and `roleManagementPolicyAssignments`: each directory
//! role's just-in-time settings as Graph's 17 fixed rules. Keyward enforces the expiration,
//! enablement and approval rules; a change to a rule it cannot enforce (notifications, an
//! authentication context) is refused rather than kept and ignored.

use super::{Body, Query, allow_only, bad, shape, unsupported};
use crate::context::{GraphCtx, collection, entity};
use crate::error::GraphError;
use crate::openapi::{Api, Op};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use keyward_app::{AppError, RolePolicy};
use keyward_core::ids::ObjectId;
use keyward_core::pim::{RoleSettings, RuleChange, format_duration, parse_request_duration};
use serde_json::{Map, Value, json};

const POLICIES: &str = "policies";
const READ: &str = "microsoft.directory/roleAssignments/allProperties/read";
const WRITE: &str = "microsoft.directory/roleAssignments/allProperties/allTasks";

/// The rule ids, in Entra's order.
const RULE_IDS: [&str; 17] = [
    "Expiration_Admin_Eligibility",
    "Enablement_Admin_Eligibility",
    "Notification_Admin_Admin_Eligibility",
    "Notification_Requestor_Admin_Eligibility",
    "Notification_Approver_Admin_Eligibility",
    "Expiration_Admin_Assignment",
    "Enablement_Admin_Assignment",
    "Notification_Admin_Admin_Assignment",
    "Notification_Requestor_Admin_Assignment",
    "Notification_Approver_Admin_Assignment",
    "Approval_EndUser_Assignment",
    "AuthenticationContext_EndUser_Assignment",
    "Enablement_EndUser_Assignment",
    "Expiration_EndUser_Assignment",
    "Notification_Admin_EndUser_Assignment",
    "Notification_Requestor_EndUser_Assignment",
    "Notification_Approver_EndUser_Assignment",
];

fn policy_id(ctx: &GraphCtx, role: &str) -> String {
    format!("DirectoryRole_{}_{}", ctx.caller.tenant.id, role.to_lowercase())
}

/// The role a policy id names, if it is this tenant's.
fn role_of(ctx: &GraphCtx, id: &str) -> Result<String, GraphError> {
    id.strip_prefix("DirectoryRole_")
        .and_then(|rest| rest.split_once('_'))
        .filter(|(tenant, _)| tenant.eq_ignore_ascii_case(ctx.caller.tenant.id.as_str()))
        .map(|(_, role)| role.to_owned())
        .ok_or_else(|| GraphError::from(AppError::NotFound(id.to_owned())))
}

fn target(caller: &str, level: &str) -> Value {
    json!({"caller": caller, "operations": ["All"], "level": level, "inheritableSettings": [], "enforcedSettings": []})
}

fn enabled(rules: &[(bool, &str)]) -> Value {
    Value::Array(rules.iter().filter(|(on, _)| *on).map(|(_, name)| Value::String((*name).to_owned())).collect())
}

fn rule(id: &str, settings: &RoleSettings) -> Value {
    let (caller, level) = match id {
        it if it.ends_with("Admin_Eligibility") => ("Admin", "Eligibility"),
        it if it.ends_with("Admin_Assignment") => ("Admin", "Assignment"),
        _ => ("EndUser", "Assignment"),
    };
    let expiration = |required: bool, maximum| {
        json!({"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyExpirationRule", "id": id,
               "isExpirationRequired": required, "maximumDuration": format_duration(maximum), "target": target(caller, level)})
    };
    let enablement = |rules: Value| {
        json!({"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyEnablementRule", "id": id,
               "enabledRules": rules, "target": target(caller, level)})
    };
    match id {
        "Expiration_Admin_Eligibility" => {
            expiration(settings.eligibility_expiration_required, settings.eligibility_maximum)
        }
        "Expiration_Admin_Assignment" => {
            expiration(settings.assignment_expiration_required, settings.assignment_maximum)
        }
        "Expiration_EndUser_Assignment" => expiration(true, settings.activation_maximum),
        "Enablement_Admin_Eligibility" => enablement(json!([])),
        "Enablement_Admin_Assignment" => {
            enablement(enabled(&[(settings.assignment_requires_justification, "Justification")]))
        }
        "Enablement_EndUser_Assignment" => enablement(enabled(&[
            (settings.activation_requires_mfa, "MultiFactorAuthentication"),
            (settings.activation_requires_justification, "Justification"),
            (settings.activation_requires_ticket, "Ticketing"),
        ])),
        "Approval_EndUser_Assignment" => {
            let approvers: Vec<Value> = settings
                .approvers
                .iter()
                .map(|it| json!({"@odata.type": "#microsoft.graph.singleUser", "userId": it.as_str(), "description": null, "isBackup": false}))
                .collect();
            json!({"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyApprovalRule", "id": id, "target": target(caller, level),
                   "setting": {"isApprovalRequired": settings.approval_required, "isApprovalRequiredForExtension": false,
                               "isRequestorJustificationRequired": true, "approvalMode": "SingleStage",
                               "approvalStages": [{"approvalStageTimeOutInDays": 1, "isApproverJustificationRequired": true,
                                                   "escalationTimeInMinutes": 0, "isEscalationEnabled": false,
                                                   "primaryApprovers": approvers, "escalationApprovers": []}]}})
        }
        "AuthenticationContext_EndUser_Assignment" => {
            json!({"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyAuthenticationContextRule", "id": id,
                   "isEnabled": false, "claimValue": null, "target": target(caller, level)})
        }
        _ => {
            let recipient = id.split('_').nth(1).unwrap_or("Admin");
            json!({"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyNotificationRule", "id": id,
                   "notificationType": "Email", "recipientType": recipient, "notificationLevel": "All",
                   "isDefaultRecipientsEnabled": true, "notificationRecipients": [], "target": target(caller, level)})
        }
    }
}

fn rules(settings: &RoleSettings) -> Value {
    Value::Array(RULE_IDS.iter().map(|id| rule(id, settings)).collect())
}

/// Which of a policy's rule collections a request expanded: `rules`, `effectiveRules` (the same
/// rules here: Keyward's policies have no inherited layer), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct RuleSets {
    rules: bool,
    effective: bool,
}

impl RuleSets {
    /// `$expand=rules`, `effectiveRules` or both (comma-separated, any order).
    fn parse(ctx: &GraphCtx, raw: Option<&str>) -> Result<RuleSets, GraphError> {
        let mut sets = RuleSets::default();
        for item in raw.into_iter().flat_map(|it| it.split(',')).map(str::trim) {
            match item {
                "rules" => sets.rules = true,
                "effectiveRules" => sets.effective = true,
                other => {
                    return Err(bad(ctx, format!("Cannot expand '{other}': use $expand=rules or effectiveRules.")));
                }
            }
        }
        Ok(sets)
    }
}

fn policy_json(ctx: &GraphCtx, it: &RolePolicy, sets: RuleSets) -> Value {
    let mut value = json!({
        "id": policy_id(ctx, &it.role.id()),
        "displayName": "DirectoryRole",
        "description": "DirectoryRole",
        "isOrganizationDefault": false,
        "scopeId": "/",
        "scopeType": "DirectoryRole",
        "lastModifiedDateTime": it.modified.as_ref().map_or(Value::Null, |(at, _)| Value::String(shape::timestamp(*at))),
        "lastModifiedBy": it.modified.as_ref().map_or(Value::Null, |(_, by)| json!({"id": by.as_str(), "displayName": null})),
    });
    if sets.rules {
        value["rules"] = rules(&it.settings);
    }
    if sets.effective {
        value["effectiveRules"] = rules(&it.settings);
    }
    value
}

fn assignment_json(ctx: &GraphCtx, it: &RolePolicy, expand: Expand) -> Value {
    let policy = policy_id(ctx, &it.role.id());
    let mut value = json!({
        "id": format!("{policy}_{}", it.role.id().to_lowercase()),
        "policyId": policy,
        "scopeId": "/",
        "scopeType": "DirectoryRole",
        "roleDefinitionId": it.role.id().to_lowercase(),
    });
    if let Expand::Policy(sets) = expand {
        value["policy"] = policy_json(ctx, it, sets);
    }
    value
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expand {
    None,
    Policy(RuleSets),
}

/// `$filter` on policies and their assignments: `scopeId eq '/'`, `scopeType eq 'DirectoryRole'`
/// (or `'Directory'`), and on assignments `roleDefinitionId eq '…'`, joined with `and`.
fn policy_filter(ctx: &GraphCtx, raw: Option<&str>, with_role: bool) -> Result<Option<Vec<String>>, GraphError> {
    let Some(raw) = raw else { return Ok(None) };
    let expr =
        keyward_core::odata::parse_filter(raw).map_err(|err| bad(ctx, format!("Invalid filter clause: {err}")))?;
    let clauses = keyward_core::odata::eq_or_in_clauses(expr).map_err(|_| {
        unsupported(ctx, "Filter with 'eq' on scopeId, scopeType and roleDefinitionId, joined with 'and'.")
    })?;
    let mut roles = None;
    let mut matches_directory = true;
    for (name, values) in clauses {
        match name.as_str() {
            "scopeId" => matches_directory &= values.iter().any(|it| it == "/"),
            "scopeType" => {
                matches_directory &= values.iter().any(|it| it == "DirectoryRole" || it == "Directory");
            }
            "roleDefinitionId" if with_role => roles = Some(values),
            other => {
                return Err(unsupported(
                    ctx,
                    format!("Unsupported or invalid query filter clause specified for property '{other}'."),
                ));
            }
        }
    }
    Ok(Some(if matches_directory { roles.unwrap_or_default() } else { vec!["-none-".into()] })
        .filter(|it| !it.is_empty()))
}

async fn list_policies(ctx: GraphCtx, Query(query, _): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$filter", "$expand"])?;
    let roles = policy_filter(&ctx, query.raw.filter.as_deref(), false)?;
    let sets = RuleSets::parse(&ctx, query.raw.expand.as_deref())?;
    let items = ctx.state.app.list_role_policies(&ctx.caller).await?;
    let items = items
        .iter()
        .filter(|it| roles.as_ref().is_none_or(|ids| ids.iter().any(|id| id.eq_ignore_ascii_case(&it.role.id()))))
        .map(|it| policy_json(&ctx, it, sets))
        .collect();
    Ok(collection(format!("{}/$metadata#policies/roleManagementPolicies", ctx.base()), items, None, None))
}

async fn find_policy(ctx: &GraphCtx, id: &str) -> Result<RolePolicy, GraphError> {
    let role = role_of(ctx, id)?;
    ctx.state
        .app
        .list_role_policies(&ctx.caller)
        .await?
        .into_iter()
        .find(|it| it.role.id().eq_ignore_ascii_case(&role))
        .ok_or_else(|| GraphError::from(AppError::NotFound(id.to_owned())))
}

async fn get_policy(ctx: GraphCtx, Path(id): Path<String>, Query(query, _): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$expand"])?;
    let sets = RuleSets::parse(&ctx, query.raw.expand.as_deref())?;
    let it = find_policy(&ctx, &id).await?;
    Ok(entity(
        format!("{}/$metadata#policies/roleManagementPolicies/$entity", ctx.base()),
        policy_json(&ctx, &it, sets),
        StatusCode::OK,
    ))
}

async fn list_rules(ctx: GraphCtx, Path(id): Path<String>) -> Result<Response, GraphError> {
    let it = find_policy(&ctx, &id).await?;
    let items = rules(&it.settings).as_array().cloned().unwrap_or_default();
    Ok(collection(format!("{}/$metadata#policies/roleManagementPolicies('{id}')/rules", ctx.base()), items, None, None))
}

async fn get_rule(ctx: GraphCtx, Path((id, rule_id)): Path<(String, String)>) -> Result<Response, GraphError> {
    let it = find_policy(&ctx, &id).await?;
    let Some(known) = RULE_IDS.iter().find(|it| **it == rule_id) else {
        return Err(AppError::NotFound(rule_id).into());
    };
    Ok(entity(
        format!("{}/$metadata#policies/roleManagementPolicies('{id}')/rules/$entity", ctx.base()),
        rule(known, &it.settings),
        StatusCode::OK,
    ))
}

fn bool_of(object: &Map<String, Value>, name: &str) -> Result<Option<bool>, AppError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(it)) => Ok(Some(*it)),
        Some(_) => Err(AppError::BadRequest(format!("Property '{name}' must be true or false."))),
    }
}

fn duration_of(object: &Map<String, Value>) -> Result<Option<time::Duration>, AppError> {
    match object.get("maximumDuration") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_request_duration(text).map(Some).ok_or_else(|| {
            AppError::BadRequest(format!(
                "Invalid maximumDuration '{text}': use an ISO 8601 duration such as PT8H or P365D."
            ))
        }),
        Some(_) => Err(AppError::BadRequest("Property 'maximumDuration' must be an ISO 8601 duration.".into())),
    }
}

fn enabled_rules(object: &Map<String, Value>, allowed: &[&str]) -> Result<Option<Vec<String>>, AppError> {
    let Some(value) = object.get("enabledRules").filter(|it| !it.is_null()) else { return Ok(None) };
    let list = value.as_array().ok_or_else(|| AppError::BadRequest("enabledRules must be an array.".into()))?;
    let mut res = Vec::new();
    for it in list {
        let sent = it.as_str().ok_or_else(|| AppError::BadRequest("enabledRules holds rule names.".into()))?;
        // Any case, as Graph takes it; kept in Graph's spelling.
        let Some(name) = allowed.iter().find(|it| it.eq_ignore_ascii_case(sent)) else {
            return Err(AppError::BadRequest(format!(
                "'{sent}' cannot be enabled on this rule in Keyward; it takes {}.",
                if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") }
            )));
        };
        res.push((*name).to_owned());
    }
    Ok(Some(res))
}

/// The change a rule's `PATCH` body asks for (what it leaves out is kept).
fn rule_change(rule_id: &str, body: &Value) -> Result<Option<RuleChange>, AppError> {
    let object =
        body.as_object().ok_or_else(|| AppError::BadRequest("The request body must be a JSON object.".into()))?;
    match object.get("id") {
        None | Some(Value::Null) => (),
        Some(Value::String(id)) if id == rule_id => (),
        Some(_) => {
            return Err(AppError::BadRequest(format!("The body's id must be '{rule_id}' (rule ids are fixed).")));
        }
    }
    let (kind, fields): (&str, &[&str]) = match rule_id.split('_').next().unwrap_or_default() {
        "Expiration" => ("Expiration", &["isExpirationRequired", "maximumDuration"]),
        "Enablement" => ("Enablement", &["enabledRules"]),
        "Approval" => ("Approval", &["setting"]),
        "AuthenticationContext" => ("AuthenticationContext", &["isEnabled", "claimValue"]),
        _ => (
            "Notification",
            &[
                "notificationType",
                "recipientType",
                "notificationLevel",
                "isDefaultRecipientsEnabled",
                "notificationRecipients",
            ],
        ),
    };
    let type_name = format!("#microsoft.graph.unifiedRoleManagementPolicy{kind}Rule");
    match object.get("@odata.type") {
        None | Some(Value::Null) => (),
        Some(Value::String(it)) if *it == type_name => (),
        Some(_) => return Err(AppError::BadRequest(format!("The rule '{rule_id}' is of type '{type_name}'."))),
    }
    if object.get("target").is_some_and(|it| !it.is_object() && !it.is_null()) {
        return Err(AppError::BadRequest("target must be an object (it cannot be changed).".into()));
    }
    let declared =
        |key: &String| ["@odata.type", "id", "target"].contains(&key.as_str()) || fields.contains(&key.as_str());
    if let Some(key) = object.keys().find(|key| !declared(key)) {
        return Err(AppError::BadRequest(format!(
            "Property '{key}' does not exist as a declared property on type '{}'.",
            type_name.trim_start_matches('#')
        )));
    }
    Ok(Some(match rule_id {
        "Expiration_EndUser_Assignment" => {
            if bool_of(object, "isExpirationRequired")? == Some(false) {
                return Err(AppError::BadRequest("Activations always end: isExpirationRequired must be true.".into()));
            }
            RuleChange::ActivationExpiration { maximum: duration_of(object)? }
        }
        "Expiration_Admin_Eligibility" => RuleChange::EligibilityExpiration {
            required: bool_of(object, "isExpirationRequired")?,
            maximum: duration_of(object)?,
        },
        "Expiration_Admin_Assignment" => RuleChange::AssignmentExpiration {
            required: bool_of(object, "isExpirationRequired")?,
            maximum: duration_of(object)?,
        },
        "Enablement_EndUser_Assignment" => {
            match enabled_rules(object, &["MultiFactorAuthentication", "Justification", "Ticketing"])? {
                None => return Ok(None),
                Some(rules) => RuleChange::ActivationEnablement {
                    mfa: rules.iter().any(|it| it == "MultiFactorAuthentication"),
                    justification: rules.iter().any(|it| it == "Justification"),
                    ticket: rules.iter().any(|it| it == "Ticketing"),
                },
            }
        }
        "Enablement_Admin_Assignment" => match enabled_rules(object, &["Justification"])? {
            None => return Ok(None),
            Some(rules) => {
                RuleChange::AssignmentEnablement { justification: rules.iter().any(|it| it == "Justification") }
            }
        },
        "Enablement_Admin_Eligibility" => {
            enabled_rules(object, &[])?;
            return Ok(None);
        }
        "Approval_EndUser_Assignment" => {
            let Some(setting) = object.get("setting").filter(|it| !it.is_null()) else { return Ok(None) };
            let setting =
                setting.as_object().ok_or_else(|| AppError::BadRequest("setting must be an object.".into()))?;
            let required = bool_of(setting, "isApprovalRequired")?;
            let mut approvers = None;
            if let Some(stages) = setting.get("approvalStages").filter(|it| !it.is_null()) {
                let stages =
                    stages.as_array().ok_or_else(|| AppError::BadRequest("approvalStages must be an array.".into()))?;
                if stages.len() > 1 {
                    return Err(AppError::BadRequest("Keyward supports one approval stage.".into()));
                }
                let mut named = Vec::new();
                let listed = stages
                    .first()
                    .and_then(|it| it.get("primaryApprovers"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for approver in listed {
                    let kind =
                        approver.get("@odata.type").and_then(Value::as_str).unwrap_or("#microsoft.graph.singleUser");
                    if kind != "#microsoft.graph.singleUser" {
                        return Err(AppError::BadRequest(format!(
                            "Approvers of type '{kind}' are not supported: name users (#microsoft.graph.singleUser with userId)."
                        )));
                    }
                    let id =
                        approver.get("userId").and_then(Value::as_str).and_then(ObjectId::parse).ok_or_else(|| {
                            AppError::BadRequest("Each approver needs a userId that is an object id.".into())
                        })?;
                    named.push(id);
                }
                approvers = Some(named);
            }
            RuleChange::Approval { required, approvers }
        }
        "AuthenticationContext_EndUser_Assignment" => {
            if bool_of(object, "isEnabled")? == Some(true) {
                return Err(AppError::BadRequest(
                    "Keyward has no Conditional Access authentication contexts: require MFA with Enablement_EndUser_Assignment instead."
                        .into(),
                ));
            }
            return Ok(None);
        }
        // Unchanged (a change was refused by `fixed_settings_kept`).
        it if RULE_IDS.contains(&it) => return Ok(None),
        other => return Err(AppError::NotFound(other.to_owned())),
    }))
}

/// Refuses a change to what Keyward does not let change (the notification rules; an approval's
/// stage settings beside its approvers), while taking the values it has: a script that writes
/// back every rule as it read them is answered 200, one that changes them gets 400 rather than
/// having them kept and ignored.
fn fixed_settings_kept(rule_id: &str, body: &Value, current: &Value) -> Result<(), AppError> {
    let differs = |given: &Value, kept: &Value| !given.is_null() && given != kept;
    if rule_id.starts_with("Notification_") {
        for field in [
            "notificationType",
            "recipientType",
            "notificationLevel",
            "isDefaultRecipientsEnabled",
            "notificationRecipients",
        ] {
            if differs(&body[field], &current[field]) {
                return Err(AppError::BadRequest(format!(
                    "Keyward does not send PIM notifications: '{field}' of {rule_id} cannot be changed. Activations \
                     and approvals are in the audit log (loggedByService eq 'PIM')."
                )));
            }
        }
    }
    if rule_id == "Approval_EndUser_Assignment" {
        let (setting, kept) = (&body["setting"], &current["setting"]);
        let fields = ["isApprovalRequiredForExtension", "isRequestorJustificationRequired", "approvalMode"];
        let stage_fields = [
            "approvalStageTimeOutInDays",
            "isApproverJustificationRequired",
            "escalationTimeInMinutes",
            "isEscalationEnabled",
            "escalationApprovers",
        ];
        let stage = &setting["approvalStages"][0];
        let changed = fields
            .iter()
            .find(|it| differs(&setting[**it], &kept[**it]))
            .or_else(|| stage_fields.iter().find(|it| differs(&stage[**it], &kept["approvalStages"][0][**it])));
        if let Some(field) = changed {
            return Err(AppError::BadRequest(format!(
                "Keyward supports one approval stage that answers within a day, with the approver's justification and \
                 no escalation: '{field}' cannot be changed. Set isApprovalRequired and primaryApprovers."
            )));
        }
    }
    Ok(())
}

/// `PATCH /policies/roleManagementPolicies/{id}/rules/{ruleId}` — 200 with the rule, as Graph.
async fn patch_rule(
    ctx: GraphCtx,
    Path((id, rule_id)): Path<(String, String)>,
    Body(body): Body,
) -> Result<Response, GraphError> {
    let it = find_policy(&ctx, &id).await?;
    // Who may not change the settings is refused first, whatever the body says.
    ctx.state.app.may_update_role_policy(&ctx.caller).await?;
    fixed_settings_kept(&rule_id, &body, &rule(&rule_id, &it.settings))?;
    let settings = match rule_change(&rule_id, &body)? {
        Some(change) => ctx.state.app.update_role_policy(&ctx.caller, &it.role.id(), change).await?.settings,
        None => it.settings,
    };
    Ok(entity(
        format!("{}/$metadata#policies/roleManagementPolicies('{id}')/rules/$entity", ctx.base()),
        rule(&rule_id, &settings),
        StatusCode::OK,
    ))
}

fn assignment_expand(ctx: &GraphCtx, raw: Option<&str>) -> Result<Expand, GraphError> {
    match raw.map(|it| it.replace(' ', "")) {
        None => Ok(Expand::None),
        Some(it) if it == "policy" => Ok(Expand::Policy(RuleSets::default())),
        Some(it) if it.starts_with("policy($expand=") && it.ends_with(')') => {
            let inner = &it["policy($expand=".len()..it.len() - 1];
            Ok(Expand::Policy(RuleSets::parse(ctx, Some(inner))?))
        }
        Some(other) => Err(bad(ctx, format!("Cannot expand '{other}': use $expand=policy or policy($expand=rules)."))),
    }
}

async fn list_policy_assignments(ctx: GraphCtx, Query(query, _): Query) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$filter", "$expand"])?;
    let roles = policy_filter(&ctx, query.raw.filter.as_deref(), true)?;
    let expand = assignment_expand(&ctx, query.raw.expand.as_deref())?;
    let items = ctx.state.app.list_role_policies(&ctx.caller).await?;
    let items = items
        .iter()
        .filter(|it| roles.as_ref().is_none_or(|ids| ids.iter().any(|id| id.eq_ignore_ascii_case(&it.role.id()))))
        .map(|it| assignment_json(&ctx, it, expand))
        .collect();
    Ok(collection(format!("{}/$metadata#policies/roleManagementPolicyAssignments", ctx.base()), items, None, None))
}

async fn get_policy_assignment(
    ctx: GraphCtx,
    Path(id): Path<String>,
    Query(query, _): Query,
) -> Result<Response, GraphError> {
    allow_only(&ctx, &query, &["$expand"])?;
    let expand = assignment_expand(&ctx, query.raw.expand.as_deref())?;
    let policy = id.rsplit_once('_').map(|(policy, _)| policy).unwrap_or_default();
    let it = find_policy(&ctx, policy).await.map_err(|_| GraphError::from(AppError::NotFound(id.clone())))?;
    let value = assignment_json(&ctx, &it, expand);
    if value["id"].as_str() != Some(id.as_str()) {
        return Err(AppError::NotFound(id).into());
    }
    Ok(entity(
        format!("{}/$metadata#policies/roleManagementPolicyAssignments/$entity", ctx.base()),
        value,
        StatusCode::OK,
    ))
}

/// Registers this resource's routes.
pub fn routes(api: Api) -> Api {
    api.route(
        "/policies/roleManagementPolicies",
        get(list_policies),
        Op::get(POLICIES, "Each directory role's just-in-time settings ($filter scopeId eq '/' and scopeType eq 'DirectoryRole'; $expand=rules)", READ, "RoleManagementPolicyCollection")
            .with_options(&["$filter", "$expand"]),
    )
    .route(
        "/policies/roleManagementPolicies/{id}",
        get(get_policy),
        Op::get(POLICIES, "A role's just-in-time settings", READ, "RoleManagementPolicy").with_id().with_options(&["$expand"]),
    )
    .route(
        "/policies/roleManagementPolicies/{id}/rules",
        get(list_rules),
        Op::get(POLICIES, "A role's 17 rules", READ, "RoleManagementPolicyRuleCollection").with_id(),
    )
    .route(
        "/policies/roleManagementPolicies/{id}/rules/{ruleId}",
        get(get_rule).patch(patch_rule),
        Op::get(POLICIES, "One rule", READ, "RoleManagementPolicyRule").with_id().with_param("ruleId"),
    )
    .document(
        "/policies/roleManagementPolicies/{id}/rules/{ruleId}",
        Op::patch(POLICIES, "Change a rule: expiration, enablement (MFA, justification, ticket) or approval", WRITE, "RoleManagementPolicyRule")
            .with_id()
            .with_param("ruleId")
            .with_status(200, "RoleManagementPolicyRule"),
    )
    .route(
        "/policies/roleManagementPolicyAssignments",
        get(list_policy_assignments),
        Op::get(POLICIES, "Which policy applies to each role ($filter scopeId, scopeType, roleDefinitionId; $expand=policy($expand=rules))", READ, "RoleManagementPolicyAssignmentCollection")
            .with_options(&["$filter", "$expand"]),
    )
    .route(
        "/policies/roleManagementPolicyAssignments/{id}",
        get(get_policy_assignment),
        Op::get(POLICIES, "One policy assignment", READ, "RoleManagementPolicyAssignment").with_id().with_options(&["$expand"]),
    )
}
