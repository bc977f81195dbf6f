//! Role management through HTTP, on both backends.

use keyward_core::authz::roles;
use keyward_testkit::{ADMIN_UPN, Backend, DOMAIN, TestApp, assert_graph_error, id_of};
use reqwest::StatusCode;
use serde_json::json;

async fn role_definitions_built_in_and_custom(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let all = app.get("/v1.0/roleManagement/directory/roleDefinitions").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let ga = all.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|it| it["id"] == roles::GLOBAL_ADMINISTRATOR)
        .expect("GA listed")
        .clone();
    assert_eq!(ga["templateId"], roles::GLOBAL_ADMINISTRATOR);
    assert_eq!(
        ga["description"],
        "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities."
    );
    // isPrivileged is beta's (msgraph-sdk's v1.0 model has no such property).
    assert_eq!((ga["isBuiltIn"].as_bool(), ga.get("isPrivileged")), (Some(true), None));
    let beta =
        app.get(&format!("/beta/roleManagement/directory/roleDefinitions/{}", roles::GLOBAL_ADMINISTRATOR)).await;
    assert_eq!(beta.body["isPrivileged"], true, "{}", beta.text);
    let v1_filter = app.get("/v1.0/roleManagement/directory/roleDefinitions?$filter=isPrivileged eq true").await;
    assert_graph_error(&v1_filter, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let aa = app
        .get("/v1.0/roleManagement/directory/roleDefinitions?$filter=displayName eq 'Authentication Administrator'")
        .await;
    assert_eq!(aa.body["value"].as_array().map(Vec::len), Some(1), "{}", aa.text);
    assert!(
        aa.body["value"][0]["rolePermissions"][0]["allowedResourceActions"]
            .as_array()
            .expect("actions")
            .iter()
            .any(|it| it == "microsoft.directory/users/authenticationMethods/standard/restrictedRead")
    );
    let privileged = app.get("/beta/roleManagement/directory/roleDefinitions?$filter=isPrivileged eq false").await;
    let names: Vec<&str> = privileged.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|it| it["displayName"].as_str())
        .collect();
    assert!(
        names.contains(&"Authentication Policy Administrator") && !names.contains(&"Global Administrator"),
        "{names:?}"
    );
    assert_eq!(
        app.get(&format!("/beta/roleManagement/directory/roleDefinitions/{}", roles::HELPDESK_ADMINISTRATOR))
            .await
            .body["inheritsPermissionsFrom"][0]["id"],
        roles::DIRECTORY_READERS
    );

    let custom = json!({
        "displayName": "Per-user MFA operators",
        "description": "Enables and enforces per-user MFA for non-admins",
        "isEnabled": true,
        "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/users/strongAuthentication/update", "microsoft.directory/users/basic/update"]}],
    });
    let created = app.post("/v1.0/roleManagement/directory/roleDefinitions", &custom).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["isBuiltIn"], false);
    let custom_id = id_of(&created.body);
    let unsupported = app
        .post(
            "/v1.0/roleManagement/directory/roleDefinitions",
            &json!({"displayName": "X",
        "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/policies/standard/read"]}]}),
        )
        .await;
    assert_graph_error(&unsupported, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_eq!(
        unsupported.body["error"]["message"],
        "Action 'microsoft.directory/policies/standard/read' is not supported for Custom Role creation."
    );
    let escalation = app.post("/v1.0/roleManagement/directory/roleDefinitions", &json!({"displayName": "Y",
        "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/roleAssignments/allProperties/allTasks"]}]})).await;
    assert_graph_error(&escalation, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let builtin = app
        .patch(
            &format!("/v1.0/roleManagement/directory/roleDefinitions/{}", roles::GLOBAL_ADMINISTRATOR),
            &json!({"displayName": "Mine"}),
        )
        .await;
    assert_graph_error(&builtin, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let customs = app.get("/v1.0/roleManagement/directory/roleDefinitions?$filter=isBuiltIn eq false").await;
    assert_eq!(customs.body["value"].as_array().map(Vec::len), Some(1));
    // A disabled role is not available for assignment, directly or through PIM.
    let disabled = app
        .post(
            "/v1.0/roleManagement/directory/roleDefinitions",
            &json!({"displayName": "Dormant", "isEnabled": false,
                "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/users/basic/update"]}]}),
        )
        .await;
    assert_eq!(disabled.status, StatusCode::CREATED, "{}", disabled.text);
    let dormant_id = id_of(&disabled.body);
    let someone = app.create_user("someone", "Some One").await;
    let body = json!({"principalId": id_of(&someone), "roleDefinitionId": dormant_id, "directoryScopeId": "/"});
    let refused = app.post("/v1.0/roleManagement/directory/roleAssignments", &body).await;
    assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert!(refused.text.contains("disabled"), "{}", refused.text);
    let mut eligible = body.clone();
    eligible["action"] = json!("adminAssign");
    eligible["justification"] = json!("test");
    eligible["scheduleInfo"] = json!({"expiration": {"type": "noExpiration"}});
    let refused = app.post("/v1.0/roleManagement/directory/roleEligibilityScheduleRequests", &eligible).await;
    assert_graph_error(&refused, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_eq!(
        app.delete(&format!("/v1.0/roleManagement/directory/roleDefinitions/{dormant_id}")).await.status,
        StatusCode::NO_CONTENT
    );
    // An eligibility at a unit stays removable when its role is narrowed to permissions that
    // cannot be held at a unit.
    let unit = app.create_unit("Narrowed unit", false, &[]).await;
    let scoped = app
        .post(
            "/v1.0/roleManagement/directory/roleDefinitions",
            &json!({"displayName": "Unit desk",
                "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/users/basic/update"]}]}),
        )
        .await;
    let scoped_id = id_of(&scoped.body);
    let mut eligible = eligible.clone();
    eligible["roleDefinitionId"] = json!(scoped_id);
    eligible["directoryScopeId"] = json!(format!("/administrativeUnits/{unit}"));
    let made = app.post("/v1.0/roleManagement/directory/roleEligibilityScheduleRequests", &eligible).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let narrowed = app
        .patch(
            &format!("/v1.0/roleManagement/directory/roleDefinitions/{scoped_id}"),
            &json!({"rolePermissions": [{"allowedResourceActions": ["microsoft.directory/applications/standard/read"]}]}),
        )
        .await;
    assert_eq!(narrowed.status, StatusCode::NO_CONTENT, "{}", narrowed.text);
    // Made longer, it would be granted anew: refused now the role cannot be held at a unit.
    let mut extend = eligible.clone();
    extend["action"] = json!("adminExtend");
    let extended = app.post("/v1.0/roleManagement/directory/roleEligibilityScheduleRequests", &extend).await;
    assert_graph_error(&extended, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let mut remove = eligible.clone();
    remove["action"] = json!("adminRemove");
    let removed = app.post("/v1.0/roleManagement/directory/roleEligibilityScheduleRequests", &remove).await;
    assert_eq!(removed.status, StatusCode::CREATED, "removable after the narrowing: {}", removed.text);

    // The custom role acts on non-admins only, and counts on the next request.
    let operator = app.create_user("operator", "Mfa Operator").await;
    let plain = app.create_user("plain", "Plain User").await;
    let admin_id = id_of(&app.get("/v1.0/me").await.body);
    let token = app.token_for(&format!("operator@{DOMAIN}")).await;
    let patch_plain =
        app.as_user(&token).patch(&format!("/v1.0/users/{}", id_of(&plain)), &json!({"jobTitle": "Clerk"})).await;
    assert_graph_error(&patch_plain, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let assigned = app
        .post(
            "/v1.0/roleManagement/directory/roleAssignments",
            &json!({"principalId": id_of(&operator), "roleDefinitionId": custom_id, "directoryScopeId": "/"}),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::CREATED, "{}", assigned.text);
    let patch_plain =
        app.as_user(&token).patch(&format!("/v1.0/users/{}", id_of(&plain)), &json!({"jobTitle": "Clerk"})).await;
    assert_eq!(patch_plain.status, StatusCode::NO_CONTENT, "{}", patch_plain.text);
    let patch_admin = app.as_user(&token).patch(&format!("/v1.0/users/{admin_id}"), &json!({"jobTitle": "Boss"})).await;
    assert_graph_error(&patch_admin, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let refused = app.audit_for(&admin_id).await;
    assert!(
        refused
            .iter()
            .any(|it| it.activity_display_name == "Update user"
                && it.result == keyward_core::audit::AuditResult::Failure),
        "refusals are audited"
    );

    let in_use = app.delete(&format!("/v1.0/roleManagement/directory/roleDefinitions/{custom_id}")).await;
    assert_graph_error(&in_use, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_eq!(
        app.delete(&format!("/v1.0/roleManagement/directory/roleAssignments/{}", id_of(&assigned.body))).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&format!("/v1.0/roleManagement/directory/roleDefinitions/{custom_id}")).await.status,
        StatusCode::NO_CONTENT
    );
    let activities: Vec<String> =
        app.audit_for(&custom_id).await.iter().map(|it| it.activity_display_name.clone()).collect();
    assert_eq!(
        activities,
        ["Delete role definition", "Remove member from role", "Add member to role", "Add role definition"]
    );

    let actions = app.get("/beta/roleManagement/directory/resourceNamespaces/microsoft.directory/resourceActions?$filter=isPrivileged eq true").await;
    let values = actions.body["value"].as_array().expect("value");
    assert!(!values.is_empty() && values.iter().all(|it| it["isPrivileged"] == true), "{}", actions.text);
    assert!(values.iter().any(|it| it["name"] == "microsoft.directory/users/password/update"));
    assert_graph_error(
        &app.get("/v1.0/roleManagement/directory/resourceNamespaces/microsoft.directory/resourceActions").await,
        StatusCode::BAD_REQUEST,
        "BadRequest",
    );
}

async fn role_assignments_and_their_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin_id = id_of(&app.get("/v1.0/me").await.body);
    let desk = app.create_user("desk", "Service Desk").await;
    let plain = app.create_user("plain", "Plain User").await;
    let assign = |principal: &str, role: &str, scope: &str| json!({"principalId": principal, "roleDefinitionId": role, "directoryScopeId": scope});
    let created = app
        .post(
            "/v1.0/roleManagement/directory/roleAssignments",
            &assign(&id_of(&desk), roles::AUTHENTICATION_ADMINISTRATOR, "/"),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        created.body["@odata.context"],
        format!("{}/v1.0/$metadata#roleManagement/directory/roleAssignments/$entity", app.base_url)
    );
    let duplicate = app
        .post(
            "/v1.0/roleManagement/directory/roleAssignments",
            &assign(&id_of(&desk), roles::AUTHENTICATION_ADMINISTRATOR, "/"),
        )
        .await;
    assert_graph_error(&duplicate, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let listed = app.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{}'&$expand=principal,roleDefinition", id_of(&desk))).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1), "{}", listed.text);
    assert_eq!(listed.body["value"][0]["principal"]["userPrincipalName"], format!("desk@{DOMAIN}"));
    assert_eq!(listed.body["value"][0]["roleDefinition"]["displayName"], "Authentication Administrator");
    let by_role = app
        .get(&format!(
            "/v1.0/roleManagement/directory/roleAssignments?$filter=roleDefinitionId eq '{}'",
            roles::GLOBAL_ADMINISTRATOR
        ))
        .await;
    assert_eq!(by_role.body["value"][0]["principalId"], admin_id.as_str());
    // `in` takes several values: both roles' assignments, and no other.
    let either = app
        .get(&format!(
            "/v1.0/roleManagement/directory/roleAssignments?$filter=roleDefinitionId in ('{}', '{}') and directoryScopeId eq '/'",
            roles::GLOBAL_ADMINISTRATOR,
            roles::AUTHENTICATION_ADMINISTRATOR
        ))
        .await;
    let mut holders: Vec<&str> =
        either.body["value"].as_array().expect("value").iter().filter_map(|it| it["principalId"].as_str()).collect();
    holders.sort_unstable();
    let desk_id = id_of(&desk);
    let mut expected = vec![admin_id.as_str(), desk_id.as_str()];
    expected.sort_unstable();
    assert_eq!(holders, expected, "{}", either.text);
    let principals = app
        .get(&format!(
            "/v1.0/roleManagement/directory/roleAssignments?$filter=principalId in ('{}', '{}')",
            id_of(&desk),
            id_of(&plain)
        ))
        .await;
    assert_eq!(principals.body["value"].as_array().map(Vec::len), Some(1), "{}", principals.text);
    let transitive = app
        .get(&format!(
            "/v1.0/roleManagement/directory/transitiveRoleAssignments?$filter=principalId eq '{}' and roleDefinitionId in ('{}')",
            id_of(&desk),
            roles::GLOBAL_ADMINISTRATOR
        ))
        .await;
    assert_eq!(transitive.body["value"], json!([]), "the role clause narrows: {}", transitive.text);
    assert_graph_error(
        &app.get("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId in ('not-an-id')").await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    assert_graph_error(
        &app.get("/v1.0/roleManagement/directory/roleAssignments?$filter=startswith(principalId,'a')").await,
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
    );

    // The assignment counts on the desk's next request: an Authentication Administrator disables
    // non-admins, but not a Global Administrator (the sensitive-action table).
    let token = app.token_for(&format!("desk@{DOMAIN}")).await;
    let disable =
        app.as_user(&token).patch(&format!("/v1.0/users/{}", id_of(&plain)), &json!({"accountEnabled": false})).await;
    assert_eq!(disable.status, StatusCode::NO_CONTENT, "{}", disable.text);
    let on_admin =
        app.as_user(&token).patch(&format!("/v1.0/users/{admin_id}"), &json!({"accountEnabled": false})).await;
    assert_graph_error(&on_admin, StatusCode::FORBIDDEN, "Authorization_RequestDenied");

    // Scopes: only administrative-unit-scopable roles take a unit scope.
    let unit = app.post("/v1.0/directory/administrativeUnits", &json!({"displayName": "Sales"})).await;
    assert_eq!(unit.status, StatusCode::CREATED, "{}", unit.text);
    let scope = format!("/administrativeUnits/{}", id_of(&unit.body));
    let not_scopable = app
        .post(
            "/v1.0/roleManagement/directory/roleAssignments",
            &assign(&id_of(&plain), roles::GLOBAL_ADMINISTRATOR, &scope),
        )
        .await;
    assert_graph_error(&not_scopable, StatusCode::BAD_REQUEST, "Request_BadRequest");
    let scoped = app
        .post(
            "/v1.0/roleManagement/directory/roleAssignments",
            &assign(&id_of(&plain), roles::HELPDESK_ADMINISTRATOR, &scope),
        )
        .await;
    assert_eq!(scoped.status, StatusCode::CREATED, "{}", scoped.text);
    // A unit scope filters in any spelling, and narrows the transitive assignments too.
    for filter in
        [format!("directoryScopeId eq '{}'", scope.to_uppercase()), format!("directoryScopeId in ('{scope}', '/')")]
    {
        let found = app
            .get(&format!(
                "/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{}' and {filter}",
                id_of(&plain)
            ))
            .await;
        assert_eq!(found.body["value"][0]["directoryScopeId"], scope.as_str(), "{filter}: {}", found.text);
    }
    let transitive = app
        .get(&format!(
            "/v1.0/roleManagement/directory/transitiveRoleAssignments?$filter=principalId eq '{}' and directoryScopeId eq '{scope}'",
            id_of(&plain)
        ))
        .await;
    assert_eq!(transitive.body["value"].as_array().map(Vec::len), Some(1), "{}", transitive.text);
    let records = app.audit_for(&id_of(&plain)).await;
    assert!(
        records
            .iter()
            .any(|it| it.activity_display_name == "Add scoped member to role" && it.category == "RoleManagement"),
        "{records:?}"
    );

    // Principals: role-assignable groups yes, other groups no.
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "G", "mailEnabled": false, "mailNickname": "g", "securityEnabled": true}),
        )
        .await;
    let refused_group = app
        .post(
            "/v1.0/roleManagement/directory/roleAssignments",
            &assign(&id_of(&group.body), roles::HELPDESK_ADMINISTRATOR, "/"),
        )
        .await;
    assert_graph_error(&refused_group, StatusCode::BAD_REQUEST, "Request_BadRequest");

    // Only role administrators assign roles; the refusal is audited as a failure.
    let attempt = app
        .as_user(&token)
        .post(
            "/v1.0/roleManagement/directory/roleAssignments",
            &assign(&id_of(&desk), roles::GLOBAL_ADMINISTRATOR, "/"),
        )
        .await;
    assert_graph_error(&attempt, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let failures: Vec<_> = app
        .audit_for(&id_of(&desk))
        .await
        .into_iter()
        .filter(|it| it.result == keyward_core::audit::AuditResult::Failure)
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].activity_display_name, "Add member to role");
    assert!(
        failures[0]
            .result_reason
            .starts_with("Insufficient privileges to complete the operation. None of the caller's roles grants")
            && failures[0].result_reason.ends_with("(rule: no-role-grants-action)"),
        "{}",
        failures[0].result_reason
    );

    // A Global Administrator cannot remove their own Global Administrator assignment.
    let own = by_role.body["value"][0]["id"].as_str().expect("assignment id").to_owned();
    let removal = app.delete(&format!("/v1.0/roleManagement/directory/roleAssignments/{own}")).await;
    assert_graph_error(&removal, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_eq!(
        app.get(&format!("/v1.0/roleManagement/directory/roleAssignments/{own}")).await.status,
        StatusCode::OK,
        "still there"
    );

    // Directory roles and effective memberships.
    let directory_roles = app.get("/v1.0/directoryRoles").await;
    let names: Vec<&str> = directory_roles.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|it| it["displayName"].as_str())
        .collect();
    assert!(names.contains(&"Global Administrator") && names.contains(&"Authentication Administrator"), "{names:?}");
    assert!(
        !names.contains(&"Helpdesk Administrator"),
        "a unit-scoped assignment does not activate the directory role"
    );
    let members = app.get(&format!("/v1.0/directoryRoles/{}/members", roles::GLOBAL_ADMINISTRATOR)).await;
    assert_eq!(members.body["value"][0]["userPrincipalName"], ADMIN_UPN, "{}", members.text);

    let rag = app.post("/v1.0/groups", &json!({"displayName": "Tier", "mailEnabled": false, "mailNickname": "tier", "securityEnabled": true, "isAssignableToRole": true})).await;
    let outer = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Outer", "mailEnabled": false, "mailNickname": "outer", "securityEnabled": true}),
        )
        .await;
    let inner = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Inner", "mailEnabled": false, "mailNickname": "inner", "securityEnabled": true}),
        )
        .await;
    let reference = |id: &str| json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")});
    for (group, member) in [(&rag, &plain), (&inner, &plain)] {
        let added =
            app.post(&format!("/v1.0/groups/{}/members/$ref", id_of(&group.body)), &reference(&id_of(member))).await;
        assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    }
    let nested =
        app.post(&format!("/v1.0/groups/{}/members/$ref", id_of(&outer.body)), &reference(&id_of(&inner.body))).await;
    assert_eq!(nested.status, StatusCode::NO_CONTENT, "{}", nested.text);
    let via_group = app
        .post(
            "/v1.0/roleManagement/directory/roleAssignments",
            &assign(&id_of(&rag.body), roles::PASSWORD_ADMINISTRATOR, "/"),
        )
        .await;
    assert_eq!(via_group.status, StatusCode::CREATED, "{}", via_group.text);
    let transitive = app.get(&format!("/v1.0/users/{}/transitiveMemberOf", id_of(&plain))).await;
    let names: Vec<&str> = transitive.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|it| it["displayName"].as_str())
        .collect();
    for expected in ["Tier", "Inner", "Outer", "Password Administrator"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let effective = app
        .get(&format!(
            "/beta/roleManagement/directory/transitiveRoleAssignments?$filter=principalId eq '{}'",
            id_of(&plain)
        ))
        .await;
    let held: Vec<&str> = effective.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|it| it["roleDefinitionId"].as_str())
        .collect();
    assert!(held.contains(&roles::PASSWORD_ADMINISTRATOR) && held.contains(&roles::HELPDESK_ADMINISTRATOR), "{held:?}");
}

async fn administrative_units_and_scoped_role_members(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.create_user("alice", "Alice Exec").await;
    let bob = app.create_user("bob", "Bob Admin").await;
    let unit = app
        .post(
            "/v1.0/directory/administrativeUnits",
            &json!({"displayName": "Executives", "description": "C-suite", "isMemberManagementRestricted": true}),
        )
        .await;
    assert_eq!(unit.status, StatusCode::CREATED, "{}", unit.text);
    assert_eq!(unit.body["isMemberManagementRestricted"], true);
    let unit_id = id_of(&unit.body);
    let immutable = app
        .patch(
            &format!("/v1.0/directory/administrativeUnits/{unit_id}"),
            &json!({"isMemberManagementRestricted": false}),
        )
        .await;
    assert_graph_error(&immutable, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_eq!(
        app.patch(&format!("/v1.0/directory/administrativeUnits/{unit_id}"), &json!({"displayName": "Execs"}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&format!("/v1.0/directory/administrativeUnits/{unit_id}")).await.body["displayName"], "Execs");
    assert_eq!(app.get("/v1.0/directory/administrativeUnits").await.body["value"].as_array().map(Vec::len), Some(1));

    let reference = |id: &str| json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")});
    let added = app
        .post(&format!("/v1.0/directory/administrativeUnits/{unit_id}/members/$ref"), &reference(&id_of(&alice)))
        .await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    let members = app.get(&format!("/v1.0/directory/administrativeUnits/{unit_id}/members")).await;
    assert_eq!(members.body["value"][0]["id"], id_of(&alice).as_str());
    let records = app.audit_for(&id_of(&alice)).await;
    assert_eq!(records[0].activity_display_name, "Add member to restricted management administrative unit");
    assert_eq!(records[0].category, "AdministrativeUnit");

    // The Global Administrator manages the unit but not its members.
    let blocked = app.patch(&format!("/v1.0/users/{}", id_of(&alice)), &json!({"jobTitle": "CEO"})).await;
    assert_graph_error(&blocked, StatusCode::FORBIDDEN, "Authorization_RequestDenied");

    // A role scoped to the unit reaches its (non-admin) members.
    let scoped = app
        .post(
            &format!("/v1.0/directory/administrativeUnits/{unit_id}/scopedRoleMembers"),
            &json!({"roleId": roles::USER_ADMINISTRATOR, "roleMemberInfo": {"id": id_of(&bob)}}),
        )
        .await;
    assert_eq!(scoped.status, StatusCode::CREATED, "{}", scoped.text);
    assert_eq!(scoped.body["roleMemberInfo"]["userPrincipalName"], format!("bob@{DOMAIN}"));
    let listed = app.get(&format!("/v1.0/directory/administrativeUnits/{unit_id}/scopedRoleMembers")).await;
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1), "{}", listed.text);
    let bob_token = app.token_for(&format!("bob@{DOMAIN}")).await;
    let allowed =
        app.as_user(&bob_token).patch(&format!("/v1.0/users/{}", id_of(&alice)), &json!({"jobTitle": "CEO"})).await;
    assert_eq!(allowed.status, StatusCode::NO_CONTENT, "{}", allowed.text);
    let elsewhere = app.create_user("carol", "Carol Outside").await;
    let outside =
        app.as_user(&bob_token).patch(&format!("/v1.0/users/{}", id_of(&elsewhere)), &json!({"jobTitle": "X"})).await;
    assert_graph_error(&outside, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let records = app.audit_for(&id_of(&bob)).await;
    assert!(
        records
            .iter()
            .any(|it| it.activity_display_name
                == "Add member to role scoped over Restricted Management Administrative Unit"),
        "{records:?}"
    );

    let removed = app
        .delete(&format!("/v1.0/directory/administrativeUnits/{unit_id}/scopedRoleMembers/{}", id_of(&scoped.body)))
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    let again =
        app.as_user(&bob_token).patch(&format!("/v1.0/users/{}", id_of(&alice)), &json!({"jobTitle": "Chair"})).await;
    assert_graph_error(&again, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_eq!(
        app.delete(&format!("/v1.0/directory/administrativeUnits/{unit_id}/members/{}/$ref", id_of(&alice)))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.patch(&format!("/v1.0/users/{}", id_of(&alice)), &json!({"jobTitle": "Chair"})).await.status,
        StatusCode::NO_CONTENT,
        "out of the unit, tenant-wide roles apply again"
    );
    assert_eq!(
        app.delete(&format!("/v1.0/directory/administrativeUnits/{unit_id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_graph_error(
        &app.get(&format!("/v1.0/directory/administrativeUnits/{unit_id}")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    let plain_token = app.token_for(&format!("carol@{DOMAIN}")).await;
    let denied =
        app.as_user(&plain_token).post("/v1.0/directory/administrativeUnits", &json!({"displayName": "Mine"})).await;
    assert_graph_error(&denied, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
}

async fn takeover_paths_are_closed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin_id = id_of(&app.get("/v1.0/me").await.body);
    let desk = app.create_user("desk", "Service Desk").await;
    let plain = app.create_user("plain", "Plain User").await;
    let pra = app.create_user("pra", "Role Admin").await;
    let doomed = app.create_user("doomed", "Doomed Admin").await;
    let assign = |principal: &str, role: &str| json!({"principalId": principal, "roleDefinitionId": role, "directoryScopeId": "/"});
    for (who, role) in [
        (&desk, roles::AUTHENTICATION_ADMINISTRATOR),
        (&pra, roles::PRIVILEGED_ROLE_ADMINISTRATOR),
        (&doomed, roles::HELPDESK_ADMINISTRATOR),
    ] {
        let created = app.post("/v1.0/roleManagement/directory/roleAssignments", &assign(&id_of(who), role)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    }

    // Contact properties that reset flows trust are sensitive: not on a Global Administrator.
    let desk_token = app.token_for(&format!("desk@{DOMAIN}")).await;
    let phone = json!({"mobilePhone": "+1 5555550100", "otherMails": ["attacker@evil.test"]});
    let on_admin = app.as_user(&desk_token).patch(&format!("/v1.0/users/{admin_id}"), &phone).await;
    assert_graph_error(&on_admin, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let on_plain = app.as_user(&desk_token).patch(&format!("/v1.0/users/{}", id_of(&plain)), &phone).await;
    assert_eq!(on_plain.status, StatusCode::NO_CONTENT, "{}", on_plain.text);

    // Global Administrator only through a role-assignable group: the group is then the last one.
    let rag = app.post("/v1.0/groups", &json!({"displayName": "Tier 0", "mailEnabled": false, "mailNickname": "tier0", "securityEnabled": true, "isAssignableToRole": true})).await;
    let rag_id = id_of(&rag.body);
    let reference = |id: &str| json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")});
    // A Privileged Role Administrator manages role-assignable group membership.
    let pra_token = app.token_for(&format!("pra@{DOMAIN}")).await;
    let added =
        app.as_user(&pra_token).post(&format!("/v1.0/groups/{rag_id}/members/$ref"), &reference(&admin_id)).await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    let group_ga =
        app.post("/v1.0/roleManagement/directory/roleAssignments", &assign(&rag_id, roles::GLOBAL_ADMINISTRATOR)).await;
    assert_eq!(group_ga.status, StatusCode::CREATED, "{}", group_ga.text);
    let direct = app.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{admin_id}' and roleDefinitionId eq '{}'", roles::GLOBAL_ADMINISTRATOR)).await;
    let direct_id = direct.body["value"][0]["id"].as_str().expect("direct assignment").to_owned();
    // The administrator still holds the role through the group, so a Privileged Role
    // Administrator may remove the direct assignment...
    let removed =
        app.as_user(&pra_token).delete(&format!("/v1.0/roleManagement/directory/roleAssignments/{direct_id}")).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    // ...but neither the group's assignment, nor the member, nor the group may go: that would
    // leave no Global Administrator.
    let last = app
        .as_user(&pra_token)
        .delete(&format!("/v1.0/roleManagement/directory/roleAssignments/{}", id_of(&group_ga.body)))
        .await;
    assert_graph_error(&last, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let out = app.as_user(&pra_token).delete(&format!("/v1.0/groups/{rag_id}/members/{admin_id}/$ref")).await;
    assert_graph_error(&out, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let gone = app.delete(&format!("/v1.0/groups/{rag_id}")).await;
    assert_graph_error(&gone, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    // And the Global Administrator cannot take it away from themselves either.
    let myself = app.delete(&format!("/v1.0/roleManagement/directory/roleAssignments/{}", id_of(&group_ga.body))).await;
    assert_graph_error(&myself, StatusCode::FORBIDDEN, "Authorization_RequestDenied");

    // Deleting a user ends their assignments, and the audit log says so.
    assert_eq!(app.delete(&format!("/v1.0/users/{}", id_of(&doomed))).await.status, StatusCode::NO_CONTENT);
    let activities: Vec<String> =
        app.audit_for(&id_of(&doomed)).await.iter().map(|it| it.activity_display_name.clone()).collect();
    assert!(
        activities.contains(&"Remove member from role".to_owned()) && activities.contains(&"Delete user".to_owned()),
        "{activities:?}"
    );

    // Refused creations are recorded too.
    let plain_token = app.token_for(&format!("plain@{DOMAIN}")).await;
    let group = app
        .as_user(&plain_token)
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Mine", "mailEnabled": false, "mailNickname": "mine", "securityEnabled": true}),
        )
        .await;
    assert_graph_error(&group, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
}

async fn service_principals_hold_roles(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let app_id = "9a1b2c3d-0000-4000-8000-00000000a99e";
    let created =
        app.post("/v1.0/servicePrincipals", &json!({"appId": app_id, "displayName": "Provisioning robot"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["appId"], app_id);
    let sp_id = id_of(&created.body);
    let again = app.post("/v1.0/servicePrincipals", &json!({"appId": app_id})).await;
    assert_graph_error(&again, StatusCode::BAD_REQUEST, "Request_BadRequest");
    assert_graph_error(
        &app.post("/v1.0/servicePrincipals", &json!({"appId": "not-a-guid"})).await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    assert_eq!(app.get("/v1.0/servicePrincipals").await.body["value"].as_array().map(Vec::len), Some(1));

    let assigned = app
        .post(
            "/v1.0/roleManagement/directory/roleAssignments",
            &json!({"principalId": sp_id, "roleDefinitionId": roles::GLOBAL_READER, "directoryScopeId": "/"}),
        )
        .await;
    assert_eq!(assigned.status, StatusCode::CREATED, "{}", assigned.text);
    let listed = app
        .get(&format!(
            "/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{sp_id}'&$expand=principal"
        ))
        .await;
    assert_eq!(
        listed.body["value"][0]["principal"]["@odata.type"], "#microsoft.graph.servicePrincipal",
        "{}",
        listed.text
    );
    let members = app.get(&format!("/v1.0/directoryRoles/{}/members", roles::GLOBAL_READER)).await;
    assert_eq!(members.body["value"][0]["appId"], app_id, "{}", members.text);

    let plain = app.create_user("plain", "Plain User").await;
    let token = app.token_for(&format!("plain@{DOMAIN}")).await;
    let refused = app
        .as_user(&token)
        .post("/v1.0/servicePrincipals", &json!({"appId": "9a1b2c3d-0000-4000-8000-00000000b00b"}))
        .await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let _ = plain;

    assert_eq!(app.delete(&format!("/v1.0/servicePrincipals/{sp_id}")).await.status, StatusCode::NO_CONTENT);
    assert_graph_error(
        &app.get(&format!("/v1.0/roleManagement/directory/roleAssignments/{}", id_of(&assigned.body))).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    let activities: Vec<String> =
        app.audit_for(&sp_id).await.iter().map(|it| it.activity_display_name.clone()).collect();
    assert_eq!(
        activities,
        ["Remove service principal", "Remove member from role", "Add member to role", "Add service principal"]
    );
}

/// Authentication reads the caller and their roles in one statement outside a transaction
/// (`Store::get_user_and_roles`), and `GET /users/{id}` the user in one (`Store::find_user`): both
/// must find exactly what the transactional reads find, for roles held directly, through a
/// role-assignable group, scoped to a unit, expired, or not yet started.
async fn one_statement_reads_match_the_transactional_reads(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ada = id_of(&app.create_user("ada", "Ada").await);
    let bo = id_of(&app.create_user("bo", "Bo").await);
    let cy = id_of(&app.create_user("cy", "Cy").await);
    let reply = app
        .patch(
            &format!("/v1.0/users/{ada}"),
            &json!({"otherMails": ["ada@fabrikam.test", "a2@fabrikam.test"], "businessPhones": ["+1 425 555 0100"]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let rag = app.post("/v1.0/groups", &json!({"displayName": "Tier", "mailEnabled": false, "mailNickname": "tier", "securityEnabled": true, "isAssignableToRole": true})).await;
    let reference = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{ada}")});
    let added = app.post(&format!("/v1.0/groups/{}/members/$ref", id_of(&rag.body)), &reference).await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    let reference = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{cy}")});
    let added = app.post(&format!("/v1.0/groups/{}/members/$ref", id_of(&rag.body)), &reference).await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    app.assign_role(&id_of(&rag.body), roles::HELPDESK_ADMINISTRATOR, "/").await;
    app.assign_role(&ada, roles::USER_ADMINISTRATOR, "/").await;
    let unit = app.create_unit("Paris", false, &[]).await;
    app.assign_role(&ada, roles::AUTHENTICATION_ADMINISTRATOR, &format!("/administrativeUnits/{unit}")).await;

    let store = app.app.store().clone();
    let tenant = app.app.find_tenant(DOMAIN).await.expect("tenant").expect("the tenant").id;
    let compare = |now: time::OffsetDateTime, who: String| {
        let store = store.clone();
        let tenant = tenant.clone();
        async move {
            let id = keyward_core::ids::ObjectId::parse(&who).expect("id");
            let mut tx = store.read().await.expect("tx");
            tx.set_now(now);
            let user = tx.get_user(&tenant, &id).await.expect("user").expect("the user");
            let assignments = tx.list_role_assignments_for(&tenant, &id).await.expect("roles");
            drop(tx);
            let (one_user, one_assignments) =
                store.get_user_and_roles(&tenant, &id, now).await.expect("one read").expect("found");
            assert_eq!(*one_user, user);
            assert_eq!(one_assignments, assignments);
            assignments.len()
        }
    };
    let now = app.app.now();
    assert_eq!(compare(now, ada.clone()).await, 3, "direct, through the group, scoped to the unit");
    assert_eq!(compare(now, bo.clone()).await, 0);
    assert_eq!(compare(now, cy.clone()).await, 1, "through the group only");
    let user = store.get_user_and_roles(&tenant, &keyward_core::ids::ObjectId::parse(&ada).expect("id"), now).await;
    let user = user.expect("read").expect("found").0;
    assert_eq!(user.other_mails, ["ada@fabrikam.test", "a2@fabrikam.test"]);
    assert_eq!(user.business_phones, ["+1 425 555 0100"]);

    // A time-bound assignment counts inside its window only, as in the transactional read.
    let start = now + time::Duration::hours(1);
    let mut tx = store.write().await.expect("tx");
    tx.insert_role_assignment(&keyward_core::directory::RoleAssignment {
        id: "bounded-assignment".into(),
        tenant_id: tenant.clone(),
        principal_id: keyward_core::ids::ObjectId::parse(&bo).expect("id"),
        role_definition_id: roles::GROUPS_ADMINISTRATOR.to_lowercase(),
        directory_scope_id: "/".into(),
        created: now,
        start: Some(start),
        end: Some(start + time::Duration::hours(2)),
        activated_using: None,
    })
    .await
    .expect("insert");
    tx.commit().await.expect("commit");
    assert_eq!(compare(now, bo.clone()).await, 0, "not started");
    assert_eq!(compare(start + time::Duration::minutes(1), bo.clone()).await, 1, "inside the window");
    assert_eq!(compare(start + time::Duration::hours(3), bo.clone()).await, 0, "ended");

    // Unknown users, and `find_user` by id and by sign-in name in any case.
    let nobody = keyward_core::ids::ObjectId::parse("00000000-0000-4000-8000-00000000dead").expect("id");
    assert!(store.get_user_and_roles(&tenant, &nobody, now).await.expect("read").is_none());
    assert!(store.find_user(&tenant, nobody.as_str()).await.expect("read").is_none());
    assert!(store.find_user(&tenant, "nobody@contoso.test").await.expect("read").is_none());
    let by_id = store.find_user(&tenant, &ada).await.expect("read").expect("found");
    let by_upn = store.find_user(&tenant, "ADA@Contoso.test").await.expect("read").expect("found");
    assert_eq!(by_id, *user);
    assert_eq!(by_upn, *user);
    let plain = store.find_user(&tenant, &bo).await.expect("read").expect("found");
    assert!(plain.other_mails.is_empty() && plain.business_phones.is_empty());
}

/// The token endpoint reads an application, its service principal, its credentials and the
/// principal's roles in one snapshot (`Store::find_client`; on SQLite on the request's thread):
/// the same as the transactional reads, for any case of the `appId`, with and without a principal.
async fn the_token_endpoints_client_read_matches_the_transactional_reads(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app.post("/v1.0/applications", &json!({"displayName": "Robot"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let (object_id, app_id) = (id_of(&created.body), created.body["appId"].as_str().expect("appId").to_owned());
    for _ in 0..2 {
        let added = app.post(&format!("/v1.0/applications/{object_id}/addPassword"), &json!({})).await;
        assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    }
    let store = app.app.store().clone();
    let tenant = app.app.find_tenant(DOMAIN).await.expect("tenant").expect("the tenant").id;
    let now = app.app.now();
    let transactional = |key: String| {
        let store = store.clone();
        let tenant = tenant.clone();
        async move {
            let mut tx = store.read().await.expect("tx");
            tx.set_now(now);
            let application = tx.find_application(&tenant, &key).await.expect("application")?;
            let service_principal = tx.find_service_principal(&tenant, &key).await.expect("principal");
            let credentials = tx.list_app_credentials(&application.id).await.expect("credentials");
            let principal_roles = match &service_principal {
                Some(principal) => tx.list_role_assignments_for(&tenant, &principal.id).await.expect("roles"),
                None => Vec::new(),
            };
            Some(keyward_store::ClientRecord { application, service_principal, credentials, principal_roles })
        }
    };

    // Registered with its service principal, which holds two roles.
    let first = store.find_client(&tenant, &app_id.to_uppercase(), now).await.expect("read").expect("found");
    assert_eq!(Some(first.clone()), transactional(app_id.clone()).await);
    assert_eq!(first.credentials.len(), 2, "{first:?}");
    assert!(first.credentials.iter().all(|it| it.secret.as_ref().is_some_and(|(hash, _)| hash.len() == 32)));
    let principal_id = first.service_principal.as_ref().expect("its service principal").id.to_string();
    app.assign_role(&principal_id, roles::USER_ADMINISTRATOR, "/").await;
    let unit = app.create_unit("Lyon", false, &[]).await;
    app.assign_role(&principal_id, roles::HELPDESK_ADMINISTRATOR, &format!("/administrativeUnits/{unit}")).await;
    let full = store.find_client(&tenant, &app_id, now).await.expect("read").expect("found");
    assert_eq!(Some(full.clone()), transactional(app_id.clone()).await);
    assert_eq!(full.principal_roles.len(), 2, "{full:?}");

    // Without a service principal: none, and no roles.
    let deleted = app.delete(&format!("/v1.0/servicePrincipals/{principal_id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let alone = store.find_client(&tenant, &app_id, now).await.expect("read").expect("found");
    assert_eq!(Some(alone.clone()), transactional(app_id.clone()).await);
    assert_eq!((alone.service_principal, alone.principal_roles.len(), alone.credentials.len()), (None, 0, 2));

    let unknown = "00000000-0000-4000-8000-0000000000ff";
    assert!(store.find_client(&tenant, unknown, now).await.expect("read").is_none());
}

/// Each node keeps the clients the token endpoint has read, and reads the version of the tenant's
/// clients at every read: a change made on another node (a secret removed or added, a role given
/// directly or through a role-assignable group, a membership ended, the principal deleted) shows
/// at the next read, and so does a role window that opens or closes while nothing is written.
async fn the_token_endpoints_kept_clients_follow_every_change_on_every_node(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app.post("/v1.0/applications", &json!({"displayName": "Robot"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let (object_id, app_id) = (id_of(&created.body), created.body["appId"].as_str().expect("appId").to_owned());
    let added = app.post(&format!("/v1.0/applications/{object_id}/addPassword"), &json!({})).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    let key_id = added.body["keyId"].as_str().expect("keyId").to_owned();
    let (other, other_url) = app.second_server(|_| {}).await;
    let store = other.store().clone();
    let tenant = app.app.find_tenant(DOMAIN).await.expect("tenant").expect("the tenant").id;
    let now = app.app.now();
    let read = |at: time::OffsetDateTime| {
        let store = store.clone();
        let (tenant, app_id) = (tenant.clone(), app_id.clone());
        async move { store.find_client(&tenant, &app_id, at).await.expect("read").expect("found") }
    };

    let first = read(now).await;
    assert_eq!(read(now).await, first, "read twice, unchanged");
    assert_eq!(first.credentials.len(), 1, "{first:?}");
    assert!(first.principal_roles.is_empty(), "{first:?}");
    let principal_id = first.service_principal.as_ref().expect("its service principal").id.to_string();

    // A secret removed on the first node no longer counts on the second, nor does a new one wait.
    let removed = app.post(&format!("/v1.0/applications/{object_id}/removePassword"), &json!({"keyId": key_id})).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    assert!(read(now).await.credentials.is_empty());
    let added = app.post(&format!("/v1.0/applications/{object_id}/addPassword"), &json!({})).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    assert_eq!(read(now).await.credentials.len(), 1);

    // A role given directly, then one through a role-assignable group, then the membership ended.
    app.assign_role(&principal_id, roles::USER_ADMINISTRATOR, "/").await;
    assert_eq!(read(now).await.principal_roles.len(), 1);
    let group = app
        .post(
            "/v1.0/groups",
            &json!({"displayName": "Robots", "mailEnabled": false, "mailNickname": "robots",
                "securityEnabled": true, "isAssignableToRole": true}),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let group_id = id_of(&group.body);
    app.assign_role(&group_id, roles::HELPDESK_ADMINISTRATOR, "/").await;
    assert_eq!(read(now).await.principal_roles.len(), 1, "not a member yet");
    let member = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{principal_id}")});
    let joined = app.post(&format!("/v1.0/groups/{group_id}/members/$ref"), &member).await;
    assert_eq!(joined.status, StatusCode::NO_CONTENT, "{}", joined.text);
    assert_eq!(read(now).await.principal_roles.len(), 2);
    let left = app.delete(&format!("/v1.0/groups/{group_id}/members/{principal_id}/$ref")).await;
    assert_eq!(left.status, StatusCode::NO_CONTENT, "{}", left.text);
    assert_eq!(read(now).await.principal_roles.len(), 1);

    // A role that starts in an hour and ends an hour later: kept clients hold only until then.
    // Written straight in the database through the first node's store, without the use cases.
    let principal = keyward_core::ids::ObjectId::parse(&principal_id).expect("id");
    let assignment = |id: &str, role: &str| keyward_store::RoleAssignment {
        id: id.to_owned(),
        tenant_id: tenant.clone(),
        principal_id: principal.clone(),
        role_definition_id: role.to_owned(),
        directory_scope_id: "/".to_owned(),
        created: now,
        start: None,
        end: None,
        activated_using: None,
    };
    let (start, end) = (now + time::Duration::hours(1), now + time::Duration::hours(2));
    let mut tx = app.app.store().write().await.expect("tx");
    let scheduled = keyward_store::RoleAssignment {
        start: Some(start),
        end: Some(end),
        ..assignment("scheduled-robot-role", roles::GROUPS_ADMINISTRATOR)
    };
    tx.insert_role_assignment(&scheduled).await.expect("assignment");
    tx.commit().await.expect("commit");
    assert_eq!(read(now).await.principal_roles.len(), 1, "not started");
    assert_eq!(read(now + time::Duration::minutes(59)).await.principal_roles.len(), 1, "not started");
    let during = read(start + time::Duration::seconds(1)).await;
    assert_eq!(during.principal_roles.len(), 2, "started: {during:?}");
    assert_eq!(read(end - time::Duration::seconds(1)).await.principal_roles.len(), 2, "not ended");
    assert_eq!(read(end).await.principal_roles.len(), 1, "ended");

    // A role activated from an eligibility that ends in three hours counts until then, though
    // the activation itself has no end: the eligibility's end bounds what is kept too.
    let eligibility_end = now + time::Duration::hours(3);
    let mut tx = app.app.store().write().await.expect("tx");
    tx.insert_eligibility(&keyward_store::RoleEligibility {
        id: "robot-eligibility".to_owned(),
        tenant_id: tenant.clone(),
        principal_id: principal.clone(),
        role_definition_id: roles::SECURITY_READER.to_owned(),
        directory_scope_id: "/".to_owned(),
        start: now - time::Duration::hours(1),
        end: Some(eligibility_end),
        created_using: None,
        created: now,
        modified: now,
    })
    .await
    .expect("eligibility");
    let activated = keyward_store::RoleAssignment {
        activated_using: Some("robot-eligibility".to_owned()),
        ..assignment("activated-robot-role", roles::SECURITY_READER)
    };
    tx.insert_role_assignment(&activated).await.expect("activation");
    tx.commit().await.expect("commit");
    let later = end + time::Duration::seconds(1);
    assert_eq!(read(later).await.principal_roles.len(), 2, "activated, the scheduled one ended");
    assert_eq!(read(eligibility_end - time::Duration::seconds(1)).await.principal_roles.len(), 2);
    assert_eq!(read(eligibility_end).await.principal_roles.len(), 1, "the eligibility ended");

    // The principal deleted on the first node: the second node's token endpoint, which has just
    // granted a token on its kept copy of the client (read again at the clock's time, since the
    // reads above kept it for later times), refuses the next grant.
    let secret = added.body["secretText"].as_str().expect("secretText");
    let path = format!("/{DOMAIN}/oauth2/v2.0/token");
    let fields = [
        ("grant_type", "client_credentials"),
        ("scope", "https://graph.microsoft.com/.default"),
        ("client_id", app_id.as_str()),
        ("client_secret", secret),
    ];
    assert_eq!(read(now).await.principal_roles.len(), 2, "the direct role and the activated one");
    let granted = keyward_testkit::post_form(&app.client, &other_url, &path, &fields).await;
    assert!(granted["access_token"].is_string(), "{granted}");
    let deleted = app.delete(&format!("/v1.0/servicePrincipals/{principal_id}")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(read(now).await.service_principal, None);
    let refused = keyward_testkit::post_form(&app.client, &other_url, &path, &fields).await;
    assert!(refused["access_token"].is_null() && refused["error"].is_string(), "{refused}");
}

/// Graph's older role API: templates, activation, and members added and removed by reference,
/// each decided and recorded as the role-assignment API decides and records it.
async fn directory_roles_activated_and_their_members(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let helpdesk = roles::HELPDESK_ADMINISTRATOR;
    let templates = app.get("/v1.0/directoryRoleTemplates").await;
    assert_eq!(templates.status, StatusCode::OK, "{}", templates.text);
    let names: Vec<&str> =
        templates.body["value"].as_array().expect("value").iter().filter_map(|it| it["displayName"].as_str()).collect();
    assert!(names.contains(&"Helpdesk Administrator") && names.contains(&"Global Administrator"), "{names:?}");
    let one = app.get(&format!("/v1.0/directoryRoleTemplates/{helpdesk}")).await;
    assert_eq!((one.status, &one.body["id"]), (StatusCode::OK, &json!(helpdesk)), "{}", one.text);
    assert_graph_error(
        &app.get("/v1.0/directoryRoleTemplates/00000000-0000-4000-8000-00000000dead").await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );

    // Not activated: the older API does not know it yet.
    assert_graph_error(
        &app.get(&format!("/v1.0/directoryRoles/{helpdesk}")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    let member = app.create_user("agent", "Agent").await;
    let member_id = id_of(&member);
    let reference = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{member_id}")});
    assert_graph_error(
        &app.post(&format!("/v1.0/directoryRoles/{helpdesk}/members/$ref"), &reference).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );

    // One who may not change role members learns nothing from the older API: a role not
    // activated and a principal holding nothing answer 403 as the rest do, and each refusal is
    // recorded.
    app.create_guest("guest", "Guest").await;
    let guest_token = app.token_for(&format!("guest@{DOMAIN}")).await;
    let as_guest = app.as_user(&guest_token);
    let operator = roles::SECURITY_OPERATOR;
    let probe_add = as_guest.post(&format!("/v1.0/directoryRoles/{operator}/members/$ref"), &reference).await;
    assert_graph_error(&probe_add, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let probe_remove = as_guest
        .delete(&format!("/v1.0/directoryRoles/{}/members/{member_id}/$ref", roles::GLOBAL_ADMINISTRATOR))
        .await;
    assert_graph_error(&probe_remove, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    // A guest reads no role templates; without a token nothing of this API answers but 401.
    let templates = as_guest.get("/v1.0/directoryRoleTemplates").await;
    assert_graph_error(&templates, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    for (method, path, body) in [
        (reqwest::Method::GET, "/v1.0/directoryRoleTemplates".to_owned(), None),
        (reqwest::Method::POST, "/v1.0/directoryRoles".to_owned(), Some(json!({"roleTemplateId": operator}))),
        (reqwest::Method::POST, format!("/v1.0/directoryRoles/{operator}/members/$ref"), Some(reference.clone())),
        (reqwest::Method::DELETE, format!("/v1.0/directoryRoles/{operator}/members/{member_id}/$ref"), None),
    ] {
        let anonymous = app.send(method, &path, None, body.as_ref(), &[]).await;
        assert_graph_error(&anonymous, StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
    }
    let refusals: Vec<String> = app
        .audit_for(&member_id)
        .await
        .iter()
        .filter(|it| it.result.as_str() == "failure")
        .map(|it| it.activity_display_name.clone())
        .collect();
    assert_eq!(refusals, ["Remove member from role", "Add member to role"], "newest first");

    // A member may not activate a role; the refusal is recorded.
    let token = app.token_for(&format!("agent@{DOMAIN}")).await;
    let refused = app.as_user(&token).post("/v1.0/directoryRoles", &json!({"roleTemplateId": helpdesk})).await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    // Bad bodies change nothing.
    for body in [
        json!({}),
        json!({"roleTemplateId": helpdesk, "displayName": "Mine"}),
        json!({"roleTemplateId": 7}),
        json!([helpdesk]),
    ] {
        assert_graph_error(
            &app.post("/v1.0/directoryRoles", &body).await,
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
        );
    }
    assert_graph_error(
        &app.post("/v1.0/directoryRoles", &json!({"roleTemplateId": "00000000-0000-4000-8000-00000000dead"})).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    assert_eq!(app.get(&format!("/v1.0/directoryRoles/{helpdesk}")).await.status, StatusCode::NOT_FOUND);

    let activated = app.post("/v1.0/directoryRoles", &json!({"roleTemplateId": helpdesk.to_uppercase()})).await;
    assert_eq!(activated.status, StatusCode::CREATED, "{}", activated.text);
    assert_eq!(
        (&activated.body["roleTemplateId"], &activated.body["displayName"]),
        (&json!(helpdesk), &json!("Helpdesk Administrator"))
    );
    let again = app.post("/v1.0/directoryRoles", &json!({"roleTemplateId": helpdesk})).await;
    assert_graph_error(&again, StatusCode::BAD_REQUEST, "Request_BadRequest");
    // Two activations of one role at once: one is created, the other is the conflict.
    let reader = json!({"roleTemplateId": roles::REPORTS_READER});
    let (one, two) = tokio::join!(app.post("/v1.0/directoryRoles", &reader), app.post("/v1.0/directoryRoles", &reader));
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::BAD_REQUEST], "{} / {}", one.text, two.text);
    let listed = app.get("/v1.0/directoryRoles").await;
    assert!(listed.body["value"].as_array().expect("value").iter().any(|it| it["id"] == helpdesk), "{}", listed.text);
    let records = app.audit_for(helpdesk).await;
    let activations: Vec<(&str, &str)> = records
        .iter()
        .filter(|it| it.activity_display_name == "Add role from template")
        .map(|it| (it.result.as_str(), it.category.as_str()))
        .collect();
    assert_eq!(activations, [("success", "RoleManagement"), ("failure", "RoleManagement")], "newest first");

    // Members by reference: a tenant-wide assignment, decided as the assignment API decides.
    let refused = app.as_user(&token).post(&format!("/v1.0/directoryRoles/{helpdesk}/members/$ref"), &reference).await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_graph_error(
        &app.post(&format!("/v1.0/directoryRoles/{helpdesk}/members/$ref"), &json!({"id": member_id})).await,
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
    );
    let added = app.post(&format!("/v1.0/directoryRoles/{helpdesk}/members/$ref"), &reference).await;
    assert_eq!(added.status, StatusCode::NO_CONTENT, "{}", added.text);
    let assignments =
        app.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{member_id}'")).await;
    assert_eq!(assignments.body["value"][0]["roleDefinitionId"], helpdesk, "{}", assignments.text);
    assert_eq!(assignments.body["value"][0]["directoryScopeId"], "/");
    for path in [
        format!("/v1.0/directoryRoles/{helpdesk}/members"),
        format!("/v1.0/directoryRoles(roleTemplateId='{helpdesk}')/members"),
    ] {
        let members = app.get(&path).await;
        assert_eq!(members.body["value"][0]["id"], member_id.as_str(), "{path}: {}", members.text);
    }
    assert!(
        app.audit_for(&member_id).await.iter().any(|it| it.activity_display_name == "Add member to role"),
        "recorded as an assignment"
    );

    // Removed by id, then by URL (Kiota's form); a member no more is 404.
    let refused =
        app.as_user(&token).delete(&format!("/v1.0/directoryRoles/{helpdesk}/members/{member_id}/$ref")).await;
    assert_graph_error(&refused, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    let removed = app.delete(&format!("/v1.0/directoryRoles/{helpdesk}/members/{member_id}/$ref")).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    assert_graph_error(
        &app.delete(&format!("/v1.0/directoryRoles/{helpdesk}/members/{member_id}/$ref")).await,
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
    );
    assert_eq!(
        app.post(&format!("/v1.0/directoryRoles/{helpdesk}/members/$ref"), &reference).await.status,
        StatusCode::NO_CONTENT
    );
    let url = format!("https://graph.microsoft.com/v1.0/directoryObjects/{member_id}");
    let removed = app
        .delete(&format!("/v1.0/directoryRoles/{helpdesk}/members/$ref?$id={}", keyward_app::url_encode(&url)))
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    let assignments =
        app.get(&format!("/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{member_id}'")).await;
    assert_eq!(assignments.body["value"], json!([]), "{}", assignments.text);
    // The role stays activated with no members, as in Entra.
    assert_eq!(app.get(&format!("/v1.0/directoryRoles/{helpdesk}")).await.status, StatusCode::OK);

    // A role assigned through the newer API is activated by it, and stays so.
    let reader = app
        .post(
            "/v1.0/roleManagement/directory/roleAssignments",
            &json!({"principalId": member_id, "roleDefinitionId": roles::SECURITY_READER, "directoryScopeId": "/"}),
        )
        .await;
    assert_eq!(reader.status, StatusCode::CREATED, "{}", reader.text);
    let removed = app.delete(&format!("/v1.0/roleManagement/directory/roleAssignments/{}", id_of(&reader.body))).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/v1.0/directoryRoles/{}", roles::SECURITY_READER)).await.status, StatusCode::OK);

    // The older API keeps the newer one's rules: nobody removes their own Global Administrator role.
    let admin = app.get("/v1.0/me").await;
    let own = app
        .delete(&format!("/v1.0/directoryRoles/{}/members/{}/$ref", roles::GLOBAL_ADMINISTRATOR, id_of(&admin.body)))
        .await;
    assert_graph_error(&own, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
}

keyward_testkit::on_both_backends!(
    directory_roles_activated_and_their_members,
    one_statement_reads_match_the_transactional_reads,
    the_token_endpoints_client_read_matches_the_transactional_reads,
    the_token_endpoints_kept_clients_follow_every_change_on_every_node,
    service_principals_hold_roles,
    takeover_paths_are_closed,
    role_definitions_built_in_and_custom,
    role_assignments_and_their_rules,
    administrative_units_and_scoped_role_members,
);
