//! Just-in-time roles (Privileged Identity Management) through Graph's unified role management
//! API on both backends: eligibility, activation with MFA and a justification, the end of an
//! activation on every node, approval, role settings, the last permanent Global Administrator,
//! and the audit records with Entra's PIM strings.

use crate::methods::{token_with_mfa, token_with_mfa_scope, user};
use keyward_core::authz::roles;
use keyward_testkit::{ADMIN_UPN, Backend, DOMAIN, TestApp, assert_graph_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ELIGIBILITY: &str = "/v1.0/roleManagement/directory/roleEligibilityScheduleRequests";
const ASSIGNMENT: &str = "/v1.0/roleManagement/directory/roleAssignmentScheduleRequests";

fn make_eligible(principal: &str, role: &str, expiration: Value) -> Value {
    json!({"action": "adminAssign", "principalId": principal, "roleDefinitionId": role, "directoryScopeId": "/",
           "justification": "on the service-desk rota", "scheduleInfo": {"expiration": expiration}})
}

fn activate(principal: &str, role: &str, duration: &str) -> Value {
    json!({"action": "selfActivate", "principalId": principal, "roleDefinitionId": role, "directoryScopeId": "/",
           "justification": "ticket INC-4711: caller lost their phone",
           "scheduleInfo": {"startDateTime": null, "expiration": {"type": "afterDuration", "duration": duration}}})
}

fn reregister(target: &str) -> String {
    format!("/v1.0/users/{target}/authentication/requireMfaReregistration")
}

/// Every record of the directory audit log with `activity`, newest first, read with a fresh
/// Global Administrator's token (tests move the clock past the first one's life).
async fn records(app: &TestApp, activity: &str) -> Vec<Value> {
    let admin = app.token_for(ADMIN_UPN).await;
    let reply = app
        .as_user(&admin)
        .get(&format!("/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq '{activity}'&$top=50"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["value"].as_array().cloned().unwrap_or_default()
}

fn detail(record: &Value, key: &str) -> Option<String> {
    record["additionalDetails"]
        .as_array()?
        .iter()
        .find(|it| it["key"] == key)
        .and_then(|it| it["value"].as_str())
        .map(str::to_owned)
}

async fn pim_activation_story(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (desk_id, script_token) = user(&app, "desk", None).await;
    let (target, _) = user(&app, "caller", None).await;
    let role = roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR;

    // An eligibility: a Privileged Role Administrator's (here the Global Administrator's) act.
    let made = app.post(ELIGIBILITY, &make_eligible(&desk_id, role, json!({"type": "noExpiration"}))).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    assert_eq!(made.body["status"], "Provisioned");
    assert_eq!(made.body["action"], "adminAssign");
    let eligibility_id = made.body["targetScheduleId"].as_str().expect("schedule").to_owned();
    let again = app.post(ELIGIBILITY, &make_eligible(&desk_id, role, json!({"type": "noExpiration"}))).await;
    assert_graph_error(&again, StatusCode::BAD_REQUEST, "RoleAssignmentExists");
    let schedules = app.get("/v1.0/roleManagement/directory/roleEligibilitySchedules").await;
    let listed = schedules.body["value"].as_array().expect("value");
    assert!(
        listed.iter().any(|it| it["id"] == eligibility_id.as_str()
            && it["principalId"] == desk_id.as_str()
            && it["scheduleInfo"]["expiration"]["type"] == "noExpiration"),
        "{}",
        schedules.text
    );

    // Eligible is not active: the desk may not touch anyone's methods yet.
    let mfa_token = token_with_mfa(&app, &format!("desk@{DOMAIN}")).await;
    assert_eq!(app.as_user(&mfa_token).action(&reregister(&target)).await.status, StatusCode::FORBIDDEN);
    let mine = app
        .as_user(&mfa_token)
        .get("/v1.0/roleManagement/directory/roleEligibilitySchedules/filterByCurrentUser(on='principal')")
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    assert_eq!(mine.body["value"].as_array().map(Vec::len), Some(1), "{}", mine.text);
    assert_eq!(mine.body["value"][0]["memberType"], "Direct");
    // filterByCurrentUser takes the collection's options ($select, $top, $filter, $expand).
    for path in [
        "/v1.0/roleManagement/directory/roleEligibilitySchedules/filterByCurrentUser(on='principal')?$select=id,roleDefinitionId&$top=1",
        "/v1.0/roleManagement/directory/roleAssignmentScheduleRequests/filterByCurrentUser(on='principal')?$select=id&$top=1",
    ] {
        let selected = app.as_user(&mfa_token).get(path).await;
        assert_eq!(selected.status, StatusCode::OK, "{path}: {}", selected.text);
        assert!(
            selected.body["value"].as_array().is_some_and(|it| it.iter().all(|item| item.get("principalId").is_none())),
            "{}",
            selected.text
        );
    }

    // Without MFA in the token, Entra's policy error naming the MFA rule; nothing is granted.
    let no_mfa = app.as_user(&script_token).post(ASSIGNMENT, &activate(&desk_id, role, "PT1H")).await;
    assert_graph_error(&no_mfa, StatusCode::BAD_REQUEST, "RoleAssignmentRequestPolicyValidationFailed");
    assert!(no_mfa.body["error"]["message"].as_str().is_some_and(|it| it.contains("[\"MfaRule\"]")), "{}", no_mfa.text);
    // Nor for someone else, nor without a justification, nor longer than the role allows.
    let (other_id, _) = user(&app, "other", None).await;
    let for_other = app.as_user(&mfa_token).post(ASSIGNMENT, &activate(&other_id, role, "PT1H")).await;
    assert_eq!(for_other.status, StatusCode::FORBIDDEN, "{}", for_other.text);
    let mut silent = activate(&desk_id, role, "PT1H");
    silent["justification"] = Value::Null;
    let refused = app.as_user(&mfa_token).post(ASSIGNMENT, &silent).await;
    assert_graph_error(&refused, StatusCode::BAD_REQUEST, "RoleAssignmentRequestPolicyValidationFailed");
    assert!(refused.body["error"]["message"].as_str().is_some_and(|it| it.contains("JustificationRule")));
    let too_long = app.as_user(&mfa_token).post(ASSIGNMENT, &activate(&desk_id, role, "PT9H")).await;
    assert!(
        too_long.body["error"]["message"].as_str().is_some_and(|it| it.contains("ExpirationRule")),
        "{}",
        too_long.text
    );
    // A role the desk is not eligible for.
    let not_eligible =
        app.as_user(&mfa_token).post(ASSIGNMENT, &activate(&desk_id, roles::GLOBAL_ADMINISTRATOR, "PT1H")).await;
    assert!(
        not_eligible.body["error"]["message"].as_str().is_some_and(|it| it.contains("EligibilityRule")),
        "{}",
        not_eligible.text
    );
    assert_eq!(app.as_user(&mfa_token).action(&reregister(&target)).await.status, StatusCode::FORBIDDEN);

    // Eleven minutes after the MFA sign-in the same token no longer counts as recent MFA.
    app.clock.advance(time::Duration::minutes(11));
    let stale = app.as_user(&mfa_token).post(ASSIGNMENT, &activate(&desk_id, role, "PT1H")).await;
    assert!(stale.body["error"]["message"].as_str().is_some_and(|it| it.contains("MfaRule")), "{}", stale.text);
    let mfa_token = token_with_mfa(&app, &format!("desk@{DOMAIN}")).await;

    // With recent MFA and a justification: active from the next request, for one hour.
    let activated = app.as_user(&mfa_token).post(ASSIGNMENT, &activate(&desk_id, role, "PT1H")).await;
    assert_eq!(activated.status, StatusCode::CREATED, "{}", activated.text);
    assert_eq!(activated.body["status"], "Provisioned");
    let request_id = activated.body["id"].as_str().expect("id").to_owned();
    assert_eq!(app.as_user(&mfa_token).action(&reregister(&target)).await.status, StatusCode::NO_CONTENT);
    let twice = app.as_user(&mfa_token).post(ASSIGNMENT, &activate(&desk_id, role, "PT1H")).await;
    assert_graph_error(&twice, StatusCode::BAD_REQUEST, "RoleAssignmentExists");
    // selfExtend: a later end for the running activation, within the role's settings.
    let mut extend = activate(&desk_id, role, "PT9H");
    extend["action"] = json!("selfExtend");
    let refused = app.as_user(&mfa_token).post(ASSIGNMENT, &extend).await;
    assert!(
        refused.body["error"]["message"].as_str().is_some_and(|it| it.contains("ExpirationRule")),
        "{}",
        refused.text
    );
    extend["scheduleInfo"]["expiration"]["duration"] = json!("PT1H");
    let extended = app.as_user(&mfa_token).post(ASSIGNMENT, &extend).await;
    assert_eq!(extended.status, StatusCode::CREATED, "{}", extended.text);
    let extensions = records(&app, "Update member in PIM requested (extend)").await;
    let results: Vec<&str> = extensions.iter().filter_map(|it| it["result"].as_str()).collect();
    assert_eq!(results, ["success", "failure"], "the refused extension is recorded too: {extensions:?}");
    let instances = app
        .as_user(&mfa_token)
        .get("/v1.0/roleManagement/directory/roleAssignmentScheduleInstances/filterByCurrentUser(on='principal')")
        .await;
    let instance = &instances.body["value"][0];
    assert_eq!(instance["assignmentType"], "Activated", "{}", instances.text);
    assert_eq!(instance["roleDefinitionId"], role);
    let start = time::OffsetDateTime::parse(
        instance["startDateTime"].as_str().expect("start"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("time");
    let end = time::OffsetDateTime::parse(
        instance["endDateTime"].as_str().expect("end"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("time");
    assert_eq!(end - start, time::Duration::hours(1));
    let transitive = app
        .get(&format!(
            "/v1.0/roleManagement/directory/transitiveRoleAssignments?$filter=principalId eq '{desk_id}'&$count=true"
        ))
        .await;
    assert!(
        transitive.body["value"].as_array().expect("value").iter().any(|it| it["roleDefinitionId"] == role),
        "{}",
        transitive.text
    );
    assert_eq!(
        transitive.body["@odata.count"].as_u64(),
        transitive.body["value"].as_array().map(|it| it.len() as u64),
        "{}",
        transitive.text
    );
    let all = app.get(&format!("{ASSIGNMENT}?$filter=principalId eq '{desk_id}' and action eq 'selfActivate'")).await;
    assert_eq!(all.body["value"].as_array().map(Vec::len), Some(1), "{}", all.text);
    // `ne` as Graph documents it for these properties, alone and beside `eq`.
    let others =
        app.get(&format!("{ASSIGNMENT}?$filter=principalId eq '{desk_id}' and action ne 'selfActivate'")).await;
    assert_eq!(others.status, StatusCode::OK, "{}", others.text);
    assert!(
        others.body["value"].as_array().expect("value").iter().all(|it| it["action"] != "selfActivate"),
        "{}",
        others.text
    );
    let not_desk = app.get(&format!("{ASSIGNMENT}?$filter=principalId ne '{desk_id}'")).await;
    assert!(
        not_desk.body["value"].as_array().expect("value").iter().all(|it| it["principalId"] != json!(desk_id)),
        "{}",
        not_desk.text
    );
    let unfiltered = app.get(ASSIGNMENT).await;
    assert_eq!(
        not_desk.body["value"].as_array().map(Vec::len).unwrap_or_default()
            + unfiltered.body["value"]
                .as_array()
                .expect("value")
                .iter()
                .filter(|it| it["principalId"] == json!(desk_id))
                .count(),
        unfiltered.body["value"].as_array().map(Vec::len).unwrap_or_default(),
        "{}",
        unfiltered.text
    );
    let one = app.get(&format!("{ASSIGNMENT}/{request_id}?$expand=roleDefinition")).await;
    assert_eq!(one.body["roleDefinition"]["displayName"], "Privileged Authentication Administrator", "{}", one.text);

    // One minute after the end it counts no more, on this node and on another, with no job run.
    app.clock.advance(time::Duration::minutes(61));
    let late_token = app.token_for(&format!("desk@{DOMAIN}")).await;
    assert_eq!(app.as_user(&late_token).action(&reregister(&target)).await.status, StatusCode::FORBIDDEN);
    let other = app.second_node().await;
    let meta = keyward_app::RequestMeta {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        ip_address: None,
        user_agent: None,
    };
    let caller = other.authenticate(Some(&late_token), meta).await.expect("caller on the other node");
    assert!(matches!(
        other.require_mfa_reregistration(&caller, &target).await,
        Err(keyward_app::AppError::Forbidden { .. })
    ));
    let admin = app.token_for(ADMIN_UPN).await;
    let transitive = app
        .as_user(&admin)
        .get(&format!("/v1.0/roleManagement/directory/transitiveRoleAssignments?$filter=principalId eq '{desk_id}'"))
        .await;
    assert_eq!(transitive.body["value"].as_array().map(Vec::len), Some(0), "{}", transitive.text);
    // The end is recorded when first observed: here by the upkeep, initiated by MS-PIM.
    assert!(records(&app, "Remove member from role (PIM activation expired)").await.is_empty());
    // PIM's record and Core Directory's `Remove member from role` beside it.
    assert_eq!(app.app.end_lapsed_roles().await.expect("upkeep"), 2);
    let expired = records(&app, "Remove member from role (PIM activation expired)").await;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["initiatedBy"]["app"]["displayName"], "MS-PIM", "{}", expired[0]);
    assert_eq!(app.app.end_lapsed_roles().await.expect("upkeep"), 0, "recorded once");
    // The activation activated the directory role for the older API, and it stays activated.
    let directory_role = app.as_user(&admin).get(&format!("/v1.0/directoryRoles/{role}")).await;
    assert_eq!(directory_role.status, StatusCode::OK, "{}", directory_role.text);

    // The records, with Entra's strings, PIM's service and the justification.
    for activity in [
        "Add eligible member to role in PIM requested (permanent)",
        "Add eligible member to role in PIM completed (permanent)",
        "Add member to role requested (PIM activation)",
        "Add member to role completed (PIM activation)",
    ] {
        let found = records(&app, activity).await;
        let record = found.iter().find(|it| it["result"] == "success").unwrap_or_else(|| panic!("{activity}"));
        assert_eq!(record["loggedByService"], "PIM", "{record}");
        assert_eq!(record["category"], "RoleManagement");
        assert!(detail(record, "Justification").is_some(), "{record}");
    }
    let completed = records(&app, "Add member to role completed (PIM activation)").await;
    assert_eq!(detail(&completed[0], "Justification").as_deref(), Some("ticket INC-4711: caller lost their phone"));
    // A token whose permissions do not cover role management cannot activate, even with MFA.
    app.clock.advance(time::Duration::seconds(30));
    let narrow = token_with_mfa_scope(&app, &format!("desk@{DOMAIN}"), "openid User.Read").await;
    let refused = app.as_user(&narrow).post(ASSIGNMENT, &activate(&desk_id, role, "PT1H")).await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    // The refused activations are recorded as failures.
    let requested = records(&app, "Add member to role requested (PIM activation)").await;
    assert!(
        requested.iter().any(|it| it["result"] == "failure"
            && it["resultReason"].as_str().is_some_and(|reason| reason.contains("MfaRule"))),
        "{requested:?}"
    );
}

async fn pim_approval(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (desk_id, _) = user(&app, "desk", None).await;
    let (target, _) = user(&app, "caller", None).await;
    let (approver_id, _) = user(&app, "approver", None).await;
    let role = roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR;
    assert_eq!(
        app.post(ELIGIBILITY, &make_eligible(&desk_id, role, json!({"type": "noExpiration"}))).await.status,
        StatusCode::CREATED
    );
    let desk = token_with_mfa(&app, &format!("desk@{DOMAIN}")).await;

    // The role's settings: Entra's 17 rules, found through the policy assignment as scripts do.
    let assignments = app
        .get(&format!(
            "/v1.0/policies/roleManagementPolicyAssignments?$filter=scopeId eq '/' and scopeType eq 'DirectoryRole' and roleDefinitionId eq '{role}'&$expand=policy($expand=rules)"
        ))
        .await;
    assert_eq!(assignments.status, StatusCode::OK, "{}", assignments.text);
    assert_eq!(assignments.body["value"].as_array().map(Vec::len), Some(1), "{}", assignments.text);
    let policy = &assignments.body["value"][0]["policy"];
    let policy_id = policy["id"].as_str().expect("policy id").to_owned();
    let rules = policy["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 17);
    let rule = |id: &str| rules.iter().find(|it| it["id"] == id).cloned().expect(id);
    assert_eq!(rule("Expiration_EndUser_Assignment")["maximumDuration"], "PT8H");
    assert_eq!(
        rule("Enablement_EndUser_Assignment")["enabledRules"],
        json!(["MultiFactorAuthentication", "Justification"])
    );
    assert_eq!(rule("Approval_EndUser_Assignment")["setting"]["isApprovalRequired"], false);
    // `effectiveRules` is answered under its own name (SDK models read it there).
    let effective = app
        .get(&format!(
            "/v1.0/policies/roleManagementPolicyAssignments?$filter=scopeId eq '/' and scopeType eq 'DirectoryRole' and roleDefinitionId eq '{role}'&$expand=policy($expand=effectiveRules)"
        ))
        .await;
    let expanded = &effective.body["value"][0]["policy"];
    assert_eq!(expanded["effectiveRules"].as_array().map(Vec::len), Some(17), "{}", effective.text);
    assert!(expanded.get("rules").is_none(), "{}", effective.text);
    let one = app.get(&format!("/v1.0/policies/roleManagementPolicies/{policy_id}?$expand=effectiveRules")).await;
    assert_eq!(one.body["effectiveRules"].as_array().map(Vec::len), Some(17), "{}", one.text);
    assert!(one.body.get("rules").is_none(), "{}", one.text);
    let both =
        app.get(&format!("/v1.0/policies/roleManagementPolicies/{policy_id}?$expand=rules,effectiveRules")).await;
    assert_eq!(both.body["rules"], both.body["effectiveRules"], "{}", both.text);

    // Only role administrators change them; what Keyward cannot enforce is refused, not kept.
    let rules_path = format!("/v1.0/policies/roleManagementPolicies/{policy_id}/rules");
    let approval = json!({"@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyApprovalRule", "id": "Approval_EndUser_Assignment",
        "setting": {"isApprovalRequired": true, "approvalStages": [{"primaryApprovers": [
            {"@odata.type": "#microsoft.graph.singleUser", "userId": approver_id}]}]}});
    let refused = app.as_user(&desk).patch(&format!("{rules_path}/Approval_EndUser_Assignment"), &approval).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let notification = app
        .patch(
            &format!("{rules_path}/Notification_Admin_EndUser_Assignment"),
            &json!({"notificationRecipients": ["a@b.c"]}),
        )
        .await;
    assert_graph_error(&notification, StatusCode::BAD_REQUEST, "Request_BadRequest");
    // Every rule written back as it was read is taken (scripts copy settings that way).
    for id in ["Notification_Admin_Admin_Eligibility", "Approval_EndUser_Assignment", "Expiration_EndUser_Assignment"] {
        let read = app.get(&format!("{rules_path}/{id}")).await;
        assert_eq!(read.status, StatusCode::OK, "{id}: {}", read.text);
        let mut body = read.body.clone();
        body.as_object_mut().expect("rule").remove("@odata.context");
        let written = app.patch(&format!("{rules_path}/{id}"), &body).await;
        assert_eq!(written.status, StatusCode::OK, "{id}: {}", written.text);
    }
    // An approval stage setting Keyward does not keep is refused, not ignored.
    let timeout = json!({"setting": {"approvalStages": [{"approvalStageTimeOutInDays": 5}]}});
    let ignored = app.patch(&format!("{rules_path}/Approval_EndUser_Assignment"), &timeout).await;
    assert_graph_error(&ignored, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let bad_duration =
        app.patch(&format!("{rules_path}/Expiration_EndUser_Assignment"), &json!({"maximumDuration": "PT25H"})).await;
    assert_graph_error(&bad_duration, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let set = app.patch(&format!("{rules_path}/Approval_EndUser_Assignment"), &approval).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.body["setting"]["isApprovalRequired"], true);
    assert_eq!(set.body["setting"]["approvalStages"][0]["primaryApprovers"][0]["userId"], approver_id.as_str());
    assert!(!records(&app, "Update role setting in PIM").await.is_empty());

    // A validation-only request keeps nothing: no approval to look up.
    let mut dry = activate(&desk_id, role, "PT2H");
    dry["isValidationOnly"] = json!(true);
    let checked = app.as_user(&desk).post(ASSIGNMENT, &dry).await;
    assert_eq!(checked.status, StatusCode::CREATED, "{}", checked.text);
    assert_eq!(
        (checked.body["isValidationOnly"].clone(), checked.body["approvalId"].clone()),
        (json!(true), Value::Null),
        "{}",
        checked.text
    );
    // The activation waits for the approver; the requester cannot approve it.
    let pending = app.as_user(&desk).post(ASSIGNMENT, &activate(&desk_id, role, "PT2H")).await;
    assert_eq!(pending.status, StatusCode::CREATED, "{}", pending.text);
    assert_eq!(pending.body["status"], "PendingApproval");
    let approval_id = pending.body["approvalId"].as_str().expect("approval").to_owned();
    assert_eq!(app.as_user(&desk).action(&reregister(&target)).await.status, StatusCode::FORBIDDEN);
    let step = format!("/beta/roleManagement/directory/roleAssignmentApprovals/{approval_id}/steps/{approval_id}");
    let decide = |result: &str| json!({"reviewResult": result, "justification": "checked with the caller's manager"});
    let own = app.as_user(&desk).patch(&step, &decide("Approve")).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.text);
    // A Global Administrator who is not a named approver may not decide either.
    assert_eq!(app.patch(&step, &decide("Approve")).await.status, StatusCode::FORBIDDEN);
    assert_graph_error(&app.get(&step.replace("/beta/", "/v1.0/")).await, StatusCode::BAD_REQUEST, "BadRequest");

    let approver = app.token_for(&format!("approver@{DOMAIN}")).await;
    let queue = app
        .as_user(&approver)
        .get("/v1.0/roleManagement/directory/roleAssignmentScheduleRequests/filterByCurrentUser(on='approver')")
        .await;
    assert_eq!(queue.body["value"].as_array().map(Vec::len), Some(1), "{}", queue.text);
    let seen = app
        .as_user(&approver)
        .get(&format!("/beta/roleManagement/directory/roleAssignmentApprovals/{approval_id}"))
        .await;
    assert_eq!(seen.body["steps"][0]["assignedToMe"], true, "{}", seen.text);
    assert_eq!(seen.body["steps"][0]["status"], "InProgress");
    let no_reason = app.as_user(&approver).patch(&step, &json!({"reviewResult": "Approve"})).await;
    assert_graph_error(&no_reason, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let approved = app.as_user(&approver).patch(&step, &decide("Approve")).await;
    assert_eq!(approved.status, StatusCode::NO_CONTENT, "{}", approved.text);
    assert_eq!(app.as_user(&desk).action(&reregister(&target)).await.status, StatusCode::NO_CONTENT);
    let decided = app.as_user(&approver).patch(&step, &decide("Deny")).await;
    assert_eq!(decided.status, StatusCode::CONFLICT, "{}", decided.text);
    let seen = app
        .as_user(&approver)
        .get(&format!("/beta/roleManagement/directory/roleAssignmentApprovals/{approval_id}"))
        .await;
    assert_eq!(
        (seen.body["steps"][0]["assignedToMe"].clone(), seen.body["steps"][0]["status"].clone()),
        (json!(false), json!("Completed")),
        "nothing left to decide: {}",
        seen.text
    );
    let approvals = records(&app, "Add member to role request approved (PIM activation)").await;
    assert_eq!(approvals.iter().filter(|it| it["result"] == "success").count(), 1, "{approvals:?}");
    assert_eq!(approvals.iter().filter(|it| it["result"] == "failure").count(), 2, "both refusals are recorded");
    assert_eq!(records(&app, "Add member to role approval requested (PIM activation)").await.len(), 1);

    // Deactivated; a new request denied; another left unanswered expires after 24 hours.
    let mut deactivate = activate(&desk_id, role, "PT2H");
    deactivate["action"] = json!("selfDeactivate");
    let off = app.as_user(&desk).post(ASSIGNMENT, &deactivate).await;
    assert_eq!(off.status, StatusCode::CREATED, "{}", off.text);
    assert_eq!(off.body["status"], "Revoked");
    assert_eq!(app.as_user(&desk).action(&reregister(&target)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(records(&app, "Remove member from role completed (PIM deactivate)").await.len(), 1);
    app.clock.advance(time::Duration::seconds(30));
    let desk = token_with_mfa(&app, &format!("desk@{DOMAIN}")).await;
    let second = app.as_user(&desk).post(ASSIGNMENT, &activate(&desk_id, role, "PT2H")).await;
    let second_id = second.body["approvalId"].as_str().expect("approval").to_owned();
    let second_step = format!("/beta/roleManagement/directory/roleAssignmentApprovals/{second_id}/steps/{second_id}");
    assert_eq!(app.as_user(&approver).patch(&second_step, &decide("Deny")).await.status, StatusCode::NO_CONTENT);
    let denied = app.as_user(&desk).get(&format!("{ASSIGNMENT}/{second_id}")).await;
    assert_eq!(denied.body["status"], "Denied", "{}", denied.text);
    assert_eq!(app.as_user(&desk).action(&reregister(&target)).await.status, StatusCode::FORBIDDEN);
    app.clock.advance(time::Duration::seconds(30));
    let desk = token_with_mfa(&app, &format!("desk@{DOMAIN}")).await;
    let third = app.as_user(&desk).post(ASSIGNMENT, &activate(&desk_id, role, "PT2H")).await;
    let third_id = third.body["approvalId"].as_str().expect("approval").to_owned();
    app.clock.advance(time::Duration::hours(25));
    let approver = app.token_for(&format!("approver@{DOMAIN}")).await;
    let desk = app.token_for(&format!("desk@{DOMAIN}")).await;
    let third_step = format!("/beta/roleManagement/directory/roleAssignmentApprovals/{third_id}/steps/{third_id}");
    let too_late = app.as_user(&approver).patch(&third_step, &decide("Approve")).await;
    assert_graph_error(&too_late, StatusCode::BAD_REQUEST, "RequestExpired");
    assert_eq!(app.as_user(&desk).get(&format!("{ASSIGNMENT}/{third_id}")).await.body["status"], "Canceled");
    app.app.end_lapsed_roles().await.expect("upkeep");
    assert_eq!(records(&app, "PIM activation request expired").await.len(), 1);

    // An activation asked for a later time and approved before it starts then, not at approval.
    let desk = token_with_mfa(&app, &format!("desk@{DOMAIN}")).await;
    let start = app.app.now() + time::Duration::hours(3);
    let start_text = start.format(&time::format_description::well_known::Rfc3339).expect("time");
    let mut later = activate(&desk_id, role, "PT2H");
    later["scheduleInfo"]["startDateTime"] = json!(start_text);
    // Graph's enumerations in another case, as PowerShell examples write them: taken, answered
    // in camelCase.
    later["action"] = json!("SelfActivate");
    later["scheduleInfo"]["expiration"]["type"] = json!("AfterDuration");
    let fourth = app.as_user(&desk).post(ASSIGNMENT, &later).await;
    assert_eq!(fourth.body["status"], "PendingApproval", "{}", fourth.text);
    assert_eq!(fourth.body["action"], "selfActivate", "{}", fourth.text);
    assert_eq!(fourth.body["scheduleInfo"]["expiration"]["type"], "afterDuration", "{}", fourth.text);
    let fourth_id = fourth.body["approvalId"].as_str().expect("approval").to_owned();
    let fourth_step = format!("/beta/roleManagement/directory/roleAssignmentApprovals/{fourth_id}/steps/{fourth_id}");
    let approver = app.token_for(&format!("approver@{DOMAIN}")).await;
    let approve = json!({"reviewResult": "approve", "justification": "checked with the caller's manager"});
    assert_eq!(app.as_user(&approver).patch(&fourth_step, &approve).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.as_user(&desk).action(&reregister(&target)).await.status, StatusCode::FORBIDDEN, "not yet");
    let admin = app.token_for(ADMIN_UPN).await;
    let path = format!("/v1.0/roleManagement/directory/roleAssignmentSchedules?$filter=principalId eq '{desk_id}'");
    let schedules = app.as_user(&admin).get(&path).await;
    let starts: Vec<&str> = schedules.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|it| it["scheduleInfo"]["startDateTime"].as_str())
        .collect();
    assert_eq!(starts.len(), 1, "{}", schedules.text);
    let stored = time::OffsetDateTime::parse(starts[0], &time::format_description::well_known::Rfc3339).expect("time");
    assert_eq!(stored.unix_timestamp(), start.unix_timestamp(), "{}", schedules.text);
    app.clock.advance(time::Duration::hours(3) + time::Duration::minutes(1));
    let desk = app.token_for(&format!("desk@{DOMAIN}")).await;
    assert_eq!(app.as_user(&desk).action(&reregister(&target)).await.status, StatusCode::NO_CONTENT, "from its start");

    // The collections page with $top and @odata.nextLink, count with $count, and take $select
    // and $expand in any case.
    let admin = app.token_for(ADMIN_UPN).await;
    let schedules = "/v1.0/roleManagement/directory/roleAssignmentSchedules";
    let all = app.as_user(&admin).get(&format!("{schedules}?$count=true")).await;
    let total = all.body["@odata.count"].as_u64().expect("a count");
    assert!(total >= 2, "{}", all.text);
    assert_eq!(all.body["value"].as_array().map(Vec::len), Some(usize::try_from(total).expect("small")));
    let mut seen = Vec::new();
    let mut next = Some(format!("{schedules}?$top=1&$select=principalId,roleDefinitionId&$expand=RoleDefinition"));
    while let Some(link) = next {
        let page = app.as_user(&admin).get(&link.replace(&app.base_url, "")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let value = page.body["value"].as_array().expect("value");
        assert_eq!(value.len(), 1, "{}", page.text);
        let item = value[0].as_object().expect("an object");
        assert!(item.contains_key("roleDefinition") && item.contains_key("principalId"), "{}", page.text);
        assert!(!item.contains_key("scheduleInfo"), "$select keeps what it names: {}", page.text);
        seen.push(item["principalId"].clone());
        next = page.body["@odata.nextLink"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len() as u64, total, "each once through the pages");
    let bad = app.as_user(&admin).get(&format!("{schedules}?$skiptoken=elsewhere")).await;
    assert_graph_error(&bad, StatusCode::BAD_REQUEST, "Request_BadRequest");
}

async fn pim_safety_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (desk_id, _) = user(&app, "desk", None).await;
    let (_, helpdesk) = user(&app, "helper", Some(roles::HELPDESK_ADMINISTRATOR)).await;
    let (_, auth_admin) = user(&app, "authadmin", Some(roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR)).await;
    let role = roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR;
    let body = make_eligible(&desk_id, role, json!({"type": "noExpiration"}));

    // Only those who manage role assignments manage eligibility; anonymous callers get nothing.
    for token in [&helpdesk, &auth_admin] {
        assert_graph_error(
            &app.as_user(token).post(ELIGIBILITY, &body).await,
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
        );
    }
    let anonymous = app.send(reqwest::Method::POST, ELIGIBILITY, None, Some(&body), &[]).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_graph_error(
        &app.as_user(&helpdesk).get(ELIGIBILITY).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
    // Bad input is refused and changes nothing.
    for bad in [
        json!({"action": "adminAssign", "principalId": desk_id, "roleDefinitionId": role, "scheduleInfo": {"expiration": {"type": "afterDuration", "duration": "PT8"}}}),
        json!({"action": "adminAssign", "principalId": desk_id, "roleDefinitionId": role, "scheduleInfo": {"expiration": {"type": "afterDateTime"}}}),
        json!({"action": "selfActivate", "principalId": desk_id, "roleDefinitionId": role}),
        json!({"action": "adminAssign", "principalId": desk_id}),
        json!({"action": "adminAssign", "principalId": desk_id, "roleDefinitionId": role, "surprise": 1}),
        json!({"action": "adminAssign", "principalId": desk_id, "roleDefinitionId": role, "justification": "x".repeat(501)}),
        json!([]),
    ] {
        let reply = app.post(ELIGIBILITY, &bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {}", reply.text);
    }
    // Durations and times at the end of time are refused with 400, never a crash.
    for far in [
        json!({"type": "afterDuration", "duration": "200000000000000 days, 0:00:00"}),
        json!({"type": "afterDuration", "duration": "P9999999D"}),
        json!({"type": "afterDateTime", "endDateTime": "9999-12-31T23:59:59-01:00"}),
    ] {
        let reply = app.post(ELIGIBILITY, &make_eligible(&desk_id, role, far.clone())).await;
        assert_graph_error(&reply, StatusCode::BAD_REQUEST, "Request_BadRequest");
    }
    let late_start = json!({"action": "adminAssign", "principalId": desk_id, "roleDefinitionId": role, "justification": "x",
        "scheduleInfo": {"startDateTime": "8999-12-31T23:00:00Z", "expiration": {"type": "afterDuration", "duration": "P3650D"}}});
    let late = app.post(ASSIGNMENT, &late_start).await;
    assert_eq!(late.status, StatusCode::CREATED, "a late start within range is fine: {}", late.text);
    let mut remove_late = late_start.clone();
    remove_late["action"] = json!("adminRemove");
    let removed_late = app.post(ASSIGNMENT, &remove_late).await;
    assert_eq!(removed_late.status, StatusCode::CREATED, "{}", removed_late.text);
    let unknown = app.post(ELIGIBILITY, &json!({"action": "adminAssign", "principalId": desk_id, "roleDefinitionId": "00000000-0000-0000-0000-00000000abcd"})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    let listed = app.get("/v1.0/roleManagement/directory/roleEligibilitySchedules").await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(0), "{}", listed.text);

    // An activation never outlives its eligibility: two hours of eligibility, eight asked for.
    let two_hours = app
        .post(ELIGIBILITY, &make_eligible(&desk_id, role, json!({"type": "afterDuration", "duration": "PT2H"})))
        .await;
    assert_eq!(two_hours.status, StatusCode::CREATED, "{}", two_hours.text);
    let eligibility_end = app.get("/v1.0/roleManagement/directory/roleEligibilityScheduleInstances").await.body["value"][0]["endDateTime"].clone();
    let desk = token_with_mfa(&app, &format!("desk@{DOMAIN}")).await;
    let activated = app.as_user(&desk).post(ASSIGNMENT, &activate(&desk_id, role, "PT8H")).await;
    assert_eq!(activated.status, StatusCode::CREATED, "{}", activated.text);
    let instance = app
        .get("/v1.0/roleManagement/directory/roleAssignmentScheduleInstances?$filter=assignmentType eq 'Activated'")
        .await;
    assert_eq!(instance.body["value"][0]["endDateTime"], eligibility_end, "{}", instance.text);
    let (target, _) = user(&app, "caller", None).await;
    assert_eq!(app.as_user(&desk).action(&reregister(&target)).await.status, StatusCode::NO_CONTENT);
    // Extending the eligibility keeps the activation running; shortening it cuts the activation.
    let mut extend = make_eligible(&desk_id, role, json!({"type": "afterDuration", "duration": "P30D"}));
    extend["action"] = json!("adminExtend");
    assert_eq!(app.post(ELIGIBILITY, &extend).await.status, StatusCode::CREATED);
    assert_eq!(app.as_user(&desk).action(&reregister(&target)).await.status, StatusCode::NO_CONTENT);
    let mut shorten = make_eligible(&desk_id, role, json!({"type": "afterDuration", "duration": "PT1H"}));
    shorten["action"] = json!("adminUpdate");
    assert_eq!(app.post(ELIGIBILITY, &shorten).await.status, StatusCode::CREATED);
    let instances =
        "/v1.0/roleManagement/directory/roleAssignmentScheduleInstances?$filter=assignmentType eq 'Activated'";
    let cut = app.get(instances).await;
    let eligibility_end =
        app.get("/v1.0/roleManagement/directory/roleEligibilityScheduleInstances").await.body["value"][0]["endDateTime"].clone();
    assert_eq!(cut.body["value"][0]["endDateTime"], eligibility_end, "{}", cut.text);
    assert_eq!(app.as_user(&desk).action(&reregister(&target)).await.status, StatusCode::NO_CONTENT);
    // Removing the eligibility ends the activation at once.
    let mut remove = make_eligible(&desk_id, role, json!(null));
    remove["action"] = json!("adminRemove");
    let removed = app.post(ELIGIBILITY, &remove).await;
    assert_eq!(removed.status, StatusCode::CREATED, "{}", removed.text);
    assert_eq!(removed.body["status"], "Revoked");
    assert_eq!(app.as_user(&desk).action(&reregister(&target)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(records(&app, "Remove eligible member from role in PIM completed (timebound)").await.len(), 1);

    // The last permanent Global Administrator can be neither removed nor made time-bound, even
    // while another user holds the role through an activation.
    let (second_id, _) = user(&app, "second", None).await;
    let ga = roles::GLOBAL_ADMINISTRATOR;
    assert_eq!(
        app.post(ELIGIBILITY, &make_eligible(&second_id, ga, json!({"type": "noExpiration"}))).await.status,
        StatusCode::CREATED
    );
    // Someone eligible for Global Administrator is protected as one: a Helpdesk Administrator
    // may not reset their password (and then activate the role as them).
    let reset =
        format!("/v1.0/users/{second_id}/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword");
    let takeover = app.as_user(&helpdesk).post(&reset, &json!({"newPassword": "Another-harbour-Lantern-93!"})).await;
    assert_graph_error(&takeover, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let second = token_with_mfa(&app, &format!("second@{DOMAIN}")).await;
    let on = app.as_user(&second).post(ASSIGNMENT, &activate(&second_id, ga, "PT4H")).await;
    assert_eq!(on.status, StatusCode::CREATED, "{}", on.text);
    let admin_id = app.get("/v1.0/me").await.body["id"].as_str().expect("id").to_owned();
    let remove_admin = json!({"action": "adminRemove", "principalId": admin_id, "roleDefinitionId": ga, "directoryScopeId": "/", "justification": "leaving"});
    let refused = app.as_user(&second).post(ASSIGNMENT, &remove_admin).await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let mut bound = remove_admin.clone();
    bound["action"] = json!("adminUpdate");
    bound["scheduleInfo"] = json!({"expiration": {"type": "afterDuration", "duration": "P30D"}});
    assert_graph_error(
        &app.as_user(&second).post(ASSIGNMENT, &bound).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
    assert_eq!(app.get("/v1.0/me").await.status, StatusCode::OK);

    // A time-bound active assignment through PIM, and a custom role made eligible.
    let (temp_id, _) = user(&app, "temp", None).await;
    let timebound = json!({"action": "adminAssign", "principalId": temp_id, "roleDefinitionId": roles::HELPDESK_ADMINISTRATOR,
        "directoryScopeId": "/", "justification": "cover for a week", "scheduleInfo": {"expiration": {"type": "afterDuration", "duration": "P7D"}}});
    let assigned = app.post(ASSIGNMENT, &timebound).await;
    assert_eq!(assigned.status, StatusCode::CREATED, "{}", assigned.text);
    let timebound_records = records(&app, "Add member to role in PIM completed (timebound)").await;
    assert!(
        timebound_records.iter().any(|it| it["targetResources"]
            .as_array()
            .is_some_and(|targets| targets.iter().any(|target| target["id"] == temp_id.as_str()))),
        "{timebound_records:?}"
    );
    let schedules = app
        .get(&format!("/v1.0/roleManagement/directory/roleAssignmentSchedules?$filter=principalId eq '{temp_id}'"))
        .await;
    assert_eq!(schedules.body["value"][0]["assignmentType"], "Assigned", "{}", schedules.text);
    assert_eq!(schedules.body["value"][0]["scheduleInfo"]["expiration"]["type"], "afterDateTime");
    // Changed to start in two days for seven: it waits until then, and ends seven days after.
    let start = app.app.now() + time::Duration::days(2);
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let mut later = timebound.clone();
    later["action"] = json!("adminUpdate");
    later["scheduleInfo"]["startDateTime"] = json!(start.format(rfc3339).expect("time"));
    let updated = app.post(ASSIGNMENT, &later).await;
    assert_eq!(updated.status, StatusCode::CREATED, "{}", updated.text);
    let schedules = app
        .get(&format!("/v1.0/roleManagement/directory/roleAssignmentSchedules?$filter=principalId eq '{temp_id}'"))
        .await;
    let info = &schedules.body["value"][0]["scheduleInfo"];
    let stored = |it: &Value| time::OffsetDateTime::parse(it.as_str().expect("a time"), rfc3339).expect("time");
    assert_eq!(stored(&info["startDateTime"]).unix_timestamp(), start.unix_timestamp(), "{}", schedules.text);
    let end = stored(&info["expiration"]["endDateTime"]);
    assert_eq!(end.unix_timestamp(), (start + time::Duration::days(7)).unix_timestamp(), "{}", schedules.text);
    let instances = app
        .get(&format!(
            "/v1.0/roleManagement/directory/roleAssignmentScheduleInstances?$filter=principalId eq '{temp_id}'"
        ))
        .await;
    assert_eq!(instances.body["value"].as_array().map(Vec::len), Some(0), "not active yet: {}", instances.text);
    // Changed again without a start, to end before the start it keeps: refused, not stored as an
    // assignment that never counts.
    let mut short = timebound.clone();
    short["action"] = json!("adminUpdate");
    short["scheduleInfo"] = json!({"expiration": {"type": "afterDuration", "duration": "PT1H"}});
    assert_graph_error(&app.post(ASSIGNMENT, &short).await, StatusCode::BAD_REQUEST, "Request_BadRequest");
    // The last Global Administrator's assignment cannot be put off to a later start either.
    let mut delayed = remove_admin.clone();
    delayed["action"] = json!("adminUpdate");
    delayed["scheduleInfo"] =
        json!({"startDateTime": start.format(rfc3339).expect("time"), "expiration": {"type": "noExpiration"}});
    assert_graph_error(
        &app.as_user(&second).post(ASSIGNMENT, &delayed).await,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
    );
    assert_eq!(app.get("/v1.0/me").await.status, StatusCode::OK);
    let custom = app
        .post(
            "/v1.0/roleManagement/directory/roleDefinitions",
            &json!({"displayName": "Desk readers", "isEnabled": true,
            "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/users/standard/read"]}]}),
        )
        .await;
    assert_eq!(custom.status, StatusCode::CREATED, "{}", custom.text);
    let custom_id = custom.body["id"].as_str().expect("id");
    let eligible = app.post(ELIGIBILITY, &make_eligible(&temp_id, custom_id, json!({"type": "noExpiration"}))).await;
    assert_eq!(eligible.status, StatusCode::CREATED, "{}", eligible.text);
    // Deleting an eligible user ends the eligibility, recorded.
    assert_eq!(app.delete(&format!("/v1.0/users/{temp_id}")).await.status, StatusCode::NO_CONTENT);
    let ended = records(&app, "Remove eligible member from role in PIM completed (permanent)").await;
    assert!(ended.iter().any(|it| it["targetResources"].to_string().contains(&temp_id)), "{ended:?}");
}

/// Eligibility at an administrative unit's scope, and through a role-assignable group.
async fn pim_units_and_groups(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (desk_id, _) = user(&app, "desk", None).await;
    let (member, _) = user(&app, "member", None).await;
    let (outsider, _) = user(&app, "outsider", None).await;
    let unit = app.create_unit("Sales", false, &[&member]).await;
    let scope = format!("/administrativeUnits/{unit}");
    let auth_admin = roles::AUTHENTICATION_ADMINISTRATOR;
    let at_unit = |principal: &str, role: &str, action: &str| {
        json!({"action": action, "principalId": principal, "roleDefinitionId": role, "directoryScopeId": scope,
               "justification": "Sales desk", "scheduleInfo": {"expiration": {"type": "afterDuration", "duration": "PT1H"}}})
    };
    // A role that cannot be scoped to a unit cannot be made eligible there.
    let ga = app.post(ELIGIBILITY, &at_unit(&desk_id, roles::GLOBAL_ADMINISTRATOR, "adminAssign")).await;
    assert_graph_error(&ga, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let made = app.post(ELIGIBILITY, &at_unit(&desk_id, auth_admin, "adminAssign")).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let desk = token_with_mfa(&app, &format!("desk@{DOMAIN}")).await;
    // Activated at the tenant's scope it is refused: the eligibility is the unit's.
    let mut tenant_wide = at_unit(&desk_id, auth_admin, "selfActivate");
    tenant_wide["directoryScopeId"] = json!("/");
    let refused = app.as_user(&desk).post(ASSIGNMENT, &tenant_wide).await;
    assert!(
        refused.body["error"]["message"].as_str().is_some_and(|it| it.contains("EligibilityRule")),
        "{}",
        refused.text
    );
    let on = app.as_user(&desk).post(ASSIGNMENT, &at_unit(&desk_id, auth_admin, "selfActivate")).await;
    assert_eq!(on.status, StatusCode::CREATED, "{}", on.text);
    let reset = |id: &str| {
        format!("/v1.0/users/{id}/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword")
    };
    let body = json!({"newPassword": "Another-harbour-Lantern-93!"});
    let done = app.as_user(&desk).post(&reset(&member), &body).await;
    assert_eq!(done.status, StatusCode::ACCEPTED, "{}", done.text);
    assert_eq!(app.as_user(&desk).post(&reset(&outsider), &body).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        records(&app, "Add scoped member to role").await.len(),
        1,
        "Core Directory's record names the unit scope"
    );

    // A role-assignable group made eligible: its members activate for themselves; leaving the
    // group ends the activation at once, and rejoining does not bring it back.
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Tier 1 desk", "mailEnabled": false, "mailNickname": "tier1",
            "securityEnabled": true, "isAssignableToRole": true}),
        )
        .await;
    let group_id = group.body["id"].as_str().expect("group").to_owned();
    let (joiner, _) = user(&app, "joiner", None).await;
    let reference = json!({"@odata.id": format!("{}/v1.0/directoryObjects/{joiner}", app.base_url)});
    let members = format!("/v1.0/groups/{group_id}/members");
    assert_eq!(app.post(&format!("{members}/$ref"), &reference).await.status, StatusCode::NO_CONTENT);
    let pra = roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR;
    let eligible = app.post(ELIGIBILITY, &make_eligible(&group_id, pra, json!({"type": "noExpiration"}))).await;
    assert_eq!(eligible.status, StatusCode::CREATED, "{}", eligible.text);
    let joiner_token = token_with_mfa(&app, &format!("joiner@{DOMAIN}")).await;
    let mine = app
        .as_user(&joiner_token)
        .get("/v1.0/roleManagement/directory/roleEligibilitySchedules/filterByCurrentUser(on='principal')")
        .await;
    assert_eq!(mine.body["value"][0]["memberType"], "Group", "{}", mine.text);
    let on = app.as_user(&joiner_token).post(ASSIGNMENT, &activate(&joiner, pra, "PT1H")).await;
    assert_eq!(on.status, StatusCode::CREATED, "{}", on.text);
    // An extension starts now, whatever start it names: it cannot stretch the activation past
    // the role's longest one (8 hours) to a window far away.
    let mut stretch = activate(&joiner, pra, "PT8H");
    stretch["action"] = json!("selfExtend");
    stretch["scheduleInfo"]["startDateTime"] = json!("8999-01-01T00:00:00Z");
    let stretched = app.as_user(&joiner_token).post(ASSIGNMENT, &stretch).await;
    assert_eq!(stretched.status, StatusCode::CREATED, "{}", stretched.text);
    let instance = app
        .as_user(&joiner_token)
        .get("/v1.0/roleManagement/directory/roleAssignmentScheduleInstances/filterByCurrentUser(on='principal')")
        .await;
    let at = |key: &str| {
        time::OffsetDateTime::parse(
            instance.body["value"][0][key].as_str().expect("time"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("time")
    };
    assert_eq!(at("endDateTime") - at("startDateTime"), time::Duration::hours(8), "{}", instance.text);
    assert_eq!(app.as_user(&joiner_token).action(&reregister(&outsider)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.delete(&format!("{members}/{joiner}/$ref")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.as_user(&joiner_token).action(&reregister(&outsider)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.post(&format!("{members}/$ref"), &reference).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.as_user(&joiner_token).action(&reregister(&outsider)).await.status,
        StatusCode::FORBIDDEN,
        "rejoining does not bring the activation back"
    );
    // A group that is not role-assignable cannot be made eligible.
    let plain = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Plain", "mailEnabled": false, "mailNickname": "plain", "securityEnabled": true}),
        )
        .await;
    let plain_id = plain.body["id"].as_str().expect("group");
    let refused = app.post(ELIGIBILITY, &make_eligible(plain_id, pra, json!({"type": "noExpiration"}))).await;
    assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
}

/// Concurrent requests: two activations at once give one role and one refusal; an approval and
/// the requester's cancel at once give one outcome, and what holds matches it.
async fn pim_concurrent_requests(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (desk_id, _) = user(&app, "desk", None).await;
    let (approver_id, _) = user(&app, "approver", None).await;
    let (target, _) = user(&app, "caller", None).await;
    let role = roles::PRIVILEGED_AUTHENTICATION_ADMINISTRATOR;
    let made = app.post(ELIGIBILITY, &make_eligible(&desk_id, role, json!({"type": "noExpiration"}))).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let desk = token_with_mfa(&app, &format!("desk@{DOMAIN}")).await;
    let body = activate(&desk_id, role, "PT1H");
    let as_desk = app.as_user(&desk);
    let (first, second) = tokio::join!(as_desk.post(ASSIGNMENT, &body), as_desk.post(ASSIGNMENT, &body));
    let mut statuses = [first.status.as_u16(), second.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 400], "{} / {}", first.text, second.text);
    let mut off = body.clone();
    off["action"] = json!("selfDeactivate");
    assert_eq!(app.as_user(&desk).post(ASSIGNMENT, &off).await.status, StatusCode::CREATED);

    let policies =
        app.get(&format!("/v1.0/policies/roleManagementPolicyAssignments?$filter=roleDefinitionId eq '{role}'")).await;
    let policy = policies.body["value"][0]["policyId"].as_str().expect("policy").to_owned();
    let rule = app
        .patch(
            &format!("/v1.0/policies/roleManagementPolicies/{policy}/rules/Approval_EndUser_Assignment"),
            &json!({"setting": {"isApprovalRequired": true, "approvalStages": [{"primaryApprovers": [
                {"@odata.type": "#microsoft.graph.singleUser", "userId": approver_id}]}]}}),
        )
        .await;
    assert_eq!(rule.status, StatusCode::OK, "{}", rule.text);
    // Whoever may not change the settings is refused a write that would change nothing too.
    let rule_path = format!("/v1.0/policies/roleManagementPolicies/{policy}/rules/Approval_EndUser_Assignment");
    let unchanged = app.as_user(&desk).patch(&rule_path, &json!({"id": "Approval_EndUser_Assignment"})).await;
    assert_eq!(unchanged.status, StatusCode::FORBIDDEN, "{}", unchanged.text);
    let approver = app.token_for(&format!("approver@{DOMAIN}")).await;
    let pending = app.as_user(&desk).post(ASSIGNMENT, &body).await;
    let id = pending.body["id"].as_str().expect("request").to_owned();
    let step = format!("/beta/roleManagement/directory/roleAssignmentApprovals/{id}/steps/{id}");
    let decision = json!({"reviewResult": "Approve", "justification": "checked"});
    let (as_approver, cancel) = (app.as_user(&approver), format!("{ASSIGNMENT}/{id}/cancel"));
    let (approved, canceled) = tokio::join!(as_approver.patch(&step, &decision), as_desk.action(&cancel));
    let holds = app.as_user(&desk).action(&reregister(&target)).await.status == StatusCode::NO_CONTENT;
    let status = app.as_user(&desk).get(&format!("{ASSIGNMENT}/{id}")).await.body["status"].clone();
    match (approved.status, canceled.status) {
        (StatusCode::NO_CONTENT, other) => {
            assert_ne!(other, StatusCode::NO_CONTENT, "both succeeded");
            assert!(holds && status == "Provisioned", "approved: {status}");
        }
        (other, StatusCode::NO_CONTENT) => {
            assert_ne!(other, StatusCode::NO_CONTENT);
            assert!(!holds && status == "Canceled", "canceled: {status}");
        }
        (a, b) => panic!("neither succeeded: {a} {b}: {} {}", approved.text, canceled.text),
    }
}

keyward_testkit::on_both_backends!(
    pim_activation_story,
    pim_approval,
    pim_safety_rules,
    pim_units_and_groups,
    pim_concurrent_requests,
);
