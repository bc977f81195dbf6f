//! Service principals, custom roles, role assignments and administrative units.
//!
//! `impl_role_stores!` is the same SQL for SQLite and PostgreSQL, expanded once per backend in
//! `backend/mod.rs`.

/// The columns an assignment is read from.
macro_rules! assignment_columns {
    () => {
        concat!(
            "id, tenant_id, principal_id, role_definition_id, directory_scope_id, created_at, ",
            "start_at, end_at, activated_using"
        )
    };
}

/// The condition that `role_assignments` row counts at the time in parameter `$n`: inside its
/// window and, for an activation, while the eligibility it was made from holds at that time for
/// its principal (directly or through a role-assignable group the principal is a member of).
macro_rules! current_assignment {
    ($n:literal) => {
        concat!(
            " AND (role_assignments.start_at IS NULL OR role_assignments.start_at <= $",
            $n,
            ") AND (role_assignments.end_at IS NULL OR role_assignments.end_at > $",
            $n,
            ") AND (role_assignments.activated_using IS NULL OR EXISTS (SELECT 1 FROM ",
            "role_eligibilities e WHERE e.id = role_assignments.activated_using AND e.start_at <= $",
            $n,
            " AND (e.end_at IS NULL OR e.end_at > $",
            $n,
            ") AND (e.principal_id = role_assignments.principal_id OR e.principal_id IN (SELECT ",
            "gm.group_id FROM group_members gm WHERE gm.member_id = role_assignments.principal_id))))"
        )
    };
}

/// `principal_id IN (…)`: principal `$p` and the role-assignable groups (`$a` = true) it is a
/// member of, as one list, so that each is one lookup in the table's `(tenant_id, principal_id)`
/// index (role assignments, eligibilities). Written as `principal_id = $p OR principal_id IN
/// (…)`, PostgreSQL read every row of the tenant (it cannot look an `OR` with a subquery up in an
/// index: 22 ms a statement at 100,000 assignments, against 0.1 ms), and so did SQLite without
/// statistics (14 ms).
macro_rules! principal_or_its_groups {
    ($p:literal, $a:literal) => {
        concat!(
            "principal_id IN (SELECT $",
            $p,
            " UNION ALL SELECT m.group_id FROM group_members m JOIN directory_groups g ON g.id = m.group_id ",
            "WHERE m.member_id = $",
            $p,
            " AND g.is_assignable_to_role = $",
            $a,
            ")"
        )
    };
}

/// The role assignments of tenant `$1` made to principal `$2` or to a role-assignable group
/// (`$3` = true) it is a member of; the statements below add when they count.
macro_rules! assignments_of_principal {
    () => {
        concat!(
            "SELECT ",
            assignment_columns!(),
            " FROM role_assignments WHERE tenant_id = $1 AND ",
            principal_or_its_groups!("2", "3")
        )
    };
}

/// The role assignments of principal `$2` that apply at `$4`, directly or through a
/// role-assignable group (`$3` = true) it is a member of (`RoleStore::list_role_assignments_for`).
pub(super) const ASSIGNMENTS_FOR: &str = concat!(assignments_of_principal!(), current_assignment!("4"), " ORDER BY id");

/// The role assignments of principal `$2` not ended at `$4` (started or scheduled to start),
/// directly or through a role-assignable group (`$3` = true) it is a member of
/// (`RoleStore::list_unended_role_assignments_for`).
pub(super) const UNENDED_ASSIGNMENTS_FOR: &str = concat!(
    assignments_of_principal!(),
    " AND (role_assignments.end_at IS NULL OR role_assignments.end_at > $4)",
    " ORDER BY id"
);

/// A role assignment's columns, each named with `ra_` before it, as `USER_AND_ROLES` reads them.
macro_rules! joined_assignment_columns {
    () => {
        concat!(
            "role_assignments.id AS ra_id, role_assignments.tenant_id AS ra_tenant_id, ",
            "role_assignments.principal_id AS ra_principal_id, role_assignments.role_definition_id AS ",
            "ra_role_definition_id, role_assignments.directory_scope_id AS ra_directory_scope_id, ",
            "role_assignments.created_at AS ra_created_at, role_assignments.start_at AS ra_start_at, ",
            "role_assignments.end_at AS ra_end_at, role_assignments.activated_using AS ra_activated_using"
        )
    };
}

/// `USER_AND_ROLES` ([`USER_AND_ROLES_SPLIT`] on SQLite, [`USER_AND_ROLES_LISTED`] on
/// PostgreSQL): a user and the role assignments that apply to them at `$4` (directly, or through
/// a role-assignable group (`$3` = true) of which they are a member), in one statement. What
/// authenticating a user's request needs, in one driver round trip; `has_values` says whether the
/// user has multi-valued properties to read. Each backend has its text (`Dialect::user_and_roles`),
/// both folded by `UserAndRoles`, which takes the user from the first row that has it and orders
/// the assignments.
///
/// The user is read in a subquery with `LIMIT 1`, which SQLite runs on its own (by the primary
/// key) rather than folding it into the join: folded, a planner whose statistics were taken while
/// the directory was nearly empty (a first start, then an import) scanned every user of the
/// tenant, 240 ms a request at a million users.
macro_rules! user_and_roles_user {
    () => {
        "(SELECT {user}, {has_values} FROM users WHERE users.tenant_id = $1 AND users.id = $2 LIMIT 1) users"
    };
}

/// `USER_AND_ROLES` on SQLite: the user with each direct assignment (or once, with empty `ra_`
/// columns), then a row for each assignment through a group, its user columns empty; unordered.
/// One row per assignment because a membership is one row (`group_members`' key is `(group_id,
/// member_id)`) and a group one (`directory_groups.id`); the one-list form needs neither.
/// Each half is index lookups, also without statistics (the test
/// `a_principals_role_assignments_are_looked_up_by_principal`): the direct assignments by
/// `(tenant_id, principal_id)`, the groups' through the user's memberships (`CROSS JOIN` keeps
/// SQLite to that order). Written as PostgreSQL's [`USER_AND_ROLES_LISTED`], SQLite built the
/// list, two Bloom filters and a sorter on every request: an API read served 10–17% fewer
/// requests a second.
pub(super) static USER_AND_ROLES_SPLIT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let user_columns = super::USER_COLUMNS.split(',').count() + 1;
    let no_user = vec!["NULL"; user_columns].join(", ");
    format!(
        concat!(
            "SELECT users.*, ",
            joined_assignment_columns!(),
            " FROM ",
            user_and_roles_user!(),
            " LEFT JOIN role_assignments ON role_assignments.tenant_id = $1 AND ",
            "role_assignments.principal_id = $2",
            current_assignment!("4"),
            " UNION ALL SELECT {no_user}, ",
            joined_assignment_columns!(),
            " FROM group_members m CROSS JOIN directory_groups g CROSS JOIN role_assignments ",
            "WHERE m.member_id = $2 AND g.id = m.group_id AND g.is_assignable_to_role = $3 AND ",
            "role_assignments.tenant_id = $1 AND role_assignments.principal_id = m.group_id",
            current_assignment!("4")
        ),
        user = super::USER_COLUMNS,
        has_values = super::users::HAS_VALUES,
        no_user = no_user
    )
});

/// `USER_AND_ROLES` on PostgreSQL: one row per assignment, or one row with empty `ra_` columns,
/// the principal and its groups one list ([`principal_or_its_groups!`]); unordered, as
/// `UserAndRoles` orders the assignments for both texts. PostgreSQL ran
/// [`USER_AND_ROLES_SPLIT`] about 5% slower (`pgbench`, prepared, 0.137 ms against 0.130 ms).
pub(super) static USER_AND_ROLES_LISTED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        concat!(
            "SELECT users.*, a.* FROM ",
            user_and_roles_user!(),
            " LEFT JOIN (SELECT ",
            joined_assignment_columns!(),
            " FROM role_assignments WHERE tenant_id = $1 AND ",
            principal_or_its_groups!("2", "3"),
            current_assignment!("4"),
            ") a ON TRUE"
        ),
        user = super::USER_COLUMNS,
        has_values = super::users::HAS_VALUES
    )
});

/// [`USER_AND_ROLES_LISTED`] and one more user in one statement, PostgreSQL only: what a request
/// that reads one user needs (`Store::get_user_and_roles_and_user`), in one round trip instead of
/// two. The other user by id (`[0]`) or by lowercased user principal name (`[1]`) at `$5`, in a
/// row of its own with `is_target` set and empty `ra_` columns.
pub(super) static USER_AND_ROLES_AND_USER: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    let no_assignment = vec!["NULL"; super::JOINED_ASSIGNMENT.len()].join(", ");
    ["id", "upn_lc"].map(|key| {
        format!(
            "SELECT FALSE AS is_target, listed.* FROM ({listed}) listed UNION ALL SELECT TRUE, {user}, {has_values}, \
             {no_assignment} FROM users WHERE tenant_id = $1 AND {key} = $5",
            listed = USER_AND_ROLES_LISTED.as_str(),
            user = super::USER_COLUMNS,
            has_values = super::users::HAS_VALUES,
        )
    })
});

/// Implements `ServicePrincipalStore`, `RoleStore` for a backend's transaction type.
macro_rules! impl_role_stores {
    ($tx:ident, $db:ty) => {
        #[async_trait]
        impl ServicePrincipalStore for $tx {
            async fn insert_service_principal(&mut self, principal: &ServicePrincipal) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO service_principals (id, tenant_id, app_id, display_name, ",
                    "display_name_lc, account_enabled, created_at) VALUES ($1, $2, $3, $4, ",
                    "$5, $6, $7)"
                ))
                .bind(principal.id.as_str())
                .bind(principal.tenant_id.as_str())
                .bind(&principal.app_id)
                .bind(&principal.display_name)
                .bind(principal.display_name.to_lowercase())
                .bind(principal.account_enabled)
                .bind(fmt_ts(principal.created))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn get_service_principal(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
            ) -> Result<Option<ServicePrincipal>, StoreError> {
                Ok(self.get_service_principals(tenant, std::slice::from_ref(id)).await?.pop())
            }

            async fn find_service_principal(
                &mut self,
                tenant: &ObjectId,
                app_id: &str,
            ) -> Result<Option<ServicePrincipal>, StoreError> {
                let sql = q::AssertSqlSafe(crate::backend::SERVICE_PRINCIPAL_BY_APP_ID.as_str());
                self.one_by_key(sql, tenant, app_id.to_lowercase(), Self::service_principal_from_row).await
            }

            async fn get_service_principals(
                &mut self,
                tenant: &ObjectId,
                ids: &[ObjectId],
            ) -> Result<Vec<ServicePrincipal>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut sql = Sql::new(&format!(
                    concat!("SELECT {SERVICE_PRINCIPAL_COLUMNS} FROM service_principals WHERE ", "tenant_id = "),
                    SERVICE_PRINCIPAL_COLUMNS = SERVICE_PRINCIPAL_COLUMNS
                ));
                sql.arg(Arg::Text(tenant.to_string()));
                push_id_list(&mut sql, "id", ids);
                let rows = bind_args!(q::query(q::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                rows.iter().map(Self::service_principal_from_row).collect()
            }

            async fn list_service_principals(
                &mut self,
                tenant: &ObjectId,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<ServicePrincipal>, StoreError> {
                let sql = format!(
                    concat!(
                        "SELECT {SERVICE_PRINCIPAL_COLUMNS} FROM service_principals WHERE ",
                        "tenant_id = $1 AND id > $2 ORDER BY id{}"
                    ),
                    limit_clause(limit),
                    SERVICE_PRINCIPAL_COLUMNS = SERVICE_PRINCIPAL_COLUMNS
                );
                let rows = q::query(q::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(after.unwrap_or(""))
                    .fetch_all(&mut *self.0)
                    .await?;
                rows.iter().map(Self::service_principal_from_row).collect()
            }

            async fn delete_service_principal(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                let done = q::query("DELETE FROM service_principals WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn get_service_principal_for_update(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
            ) -> Result<Option<ServicePrincipal>, StoreError> {
                let lock = if DIALECT.row_locks { " FOR NO KEY UPDATE" } else { "" };
                let sql = format!(
                    "SELECT {} FROM service_principals WHERE tenant_id = $1 AND id = $2{lock}",
                    SERVICE_PRINCIPAL_COLUMNS
                );
                self.one_by_key(q::AssertSqlSafe(sql), tenant, id.to_string(), Self::service_principal_from_row).await
            }

            async fn update_service_principal(&mut self, principal: &ServicePrincipal) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "UPDATE service_principals SET display_name = $3, display_name_lc = $4, ",
                    "account_enabled = $5 WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(principal.tenant_id.as_str())
                .bind(principal.id.as_str())
                .bind(&principal.display_name)
                .bind(principal.display_name.to_lowercase())
                .bind(principal.account_enabled)
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }
        }

        impl $tx {
            /// A principal's assignments by `sql` (`ASSIGNMENTS_FOR` or `UNENDED_ASSIGNMENTS_FOR`),
            /// judged at this transaction's time.
            async fn assignments_by(
                &mut self,
                sql: &'static str,
                tenant: &ObjectId,
                principal: &ObjectId,
            ) -> Result<Vec<RoleAssignment>, StoreError> {
                let rows = q::query(sql)
                    .bind(tenant.as_str())
                    .bind(principal.as_str())
                    .bind(true)
                    .bind(&self.1)
                    .fetch_all(&mut *self.0)
                    .await?;
                rows.iter().map(Self::assignment_from_row).collect()
            }
        }

        #[async_trait]
        impl RoleStore for $tx {
            async fn insert_role_assignment(&mut self, assignment: &RoleAssignment) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO role_assignments (id, tenant_id, principal_id, ",
                    "role_definition_id, directory_scope_id, created_at, start_at, end_at, ",
                    "activated_using) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(&assignment.id)
                .bind(assignment.tenant_id.as_str())
                .bind(assignment.principal_id.as_str())
                .bind(assignment.role_definition_id.to_lowercase())
                .bind(&assignment.directory_scope_id)
                .bind(fmt_ts(assignment.created))
                .bind(assignment.start.map(fmt_ts))
                .bind(assignment.end.map(fmt_ts))
                .bind(&assignment.activated_using)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn list_unended_role_assignments_for(
                &mut self,
                tenant: &ObjectId,
                principal: &ObjectId,
            ) -> Result<Vec<RoleAssignment>, StoreError> {
                self.assignments_by(crate::backend::roles::UNENDED_ASSIGNMENTS_FOR, tenant, principal).await
            }

            async fn list_role_assignments_for(
                &mut self,
                tenant: &ObjectId,
                principal: &ObjectId,
            ) -> Result<Vec<RoleAssignment>, StoreError> {
                self.assignments_by(crate::backend::roles::ASSIGNMENTS_FOR, tenant, principal).await
            }

            async fn delete_role_assignments_of(&mut self, principal: &ObjectId) -> Result<(), StoreError> {
                for sql in [
                    "DELETE FROM role_assignments WHERE principal_id = $1",
                    "DELETE FROM role_eligibilities WHERE principal_id = $1",
                ] {
                    q::query(sql).bind(principal.as_str()).execute(&mut *self.0).await?;
                }
                Ok(())
            }

            fn set_now(&mut self, now: OffsetDateTime) {
                self.1 = fmt_ts(now);
            }

            async fn insert_administrative_unit(&mut self, unit: &AdministrativeUnit) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO administrative_units (id, tenant_id, display_name, ",
                    "description, is_member_management_restricted, created_at) VALUES ($1, ",
                    "$2, $3, $4, $5, $6)"
                ))
                .bind(unit.id.as_str())
                .bind(unit.tenant_id.as_str())
                .bind(&unit.display_name)
                .bind(&unit.description)
                .bind(unit.is_member_management_restricted)
                .bind(fmt_ts(unit.created))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn list_units_of(&mut self, member: &ObjectId) -> Result<Vec<(ObjectId, bool)>, StoreError> {
                self.units_of_in("administrative_unit_members", member).await
            }

            async fn list_deleted_units_of(&mut self, member: &ObjectId) -> Result<Vec<(ObjectId, bool)>, StoreError> {
                self.units_of_in("deleted_administrative_unit_members", member).await
            }

            async fn list_restricted_units(&mut self, tenant: &ObjectId) -> Result<Vec<ObjectId>, StoreError> {
                let ids: Vec<String> = q::query_scalar(concat!(
                    "SELECT id FROM administrative_units WHERE tenant_id = $1 AND ",
                    "is_member_management_restricted = $2 ORDER BY id"
                ))
                .bind(tenant.as_str())
                .bind(true)
                .fetch_all(&mut *self.0)
                .await?;
                ids.iter().map(|it| oid(it)).collect()
            }

            async fn is_in_role_assignable_group(&mut self, user: &ObjectId) -> Result<bool, StoreError> {
                let found: Option<String> = q::query_scalar(concat!(
                    "SELECT g.id FROM directory_groups g WHERE g.is_assignable_to_role = $2 ",
                    "AND g.id IN (SELECT group_id FROM group_members WHERE member_id = $1 ",
                    "UNION ALL SELECT group_id FROM group_owners WHERE owner_id = $1) ",
                    "LIMIT 1"
                ))
                .bind(user.as_str())
                .bind(true)
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(found.is_some())
            }

            async fn lock_role_changes(&mut self, tenant: &ObjectId) -> Result<(), StoreError> {
                self.role_lock(tenant, true).await
            }

            async fn share_role_changes(&mut self, tenant: &ObjectId) -> Result<(), StoreError> {
                self.role_lock(tenant, false).await
            }

            async fn get_role_assignment(
                &mut self,
                tenant: &ObjectId,
                id: &str,
            ) -> Result<Option<RoleAssignment>, StoreError> {
                let row = q::query(concat!(
                    "SELECT ",
                    assignment_columns!(),
                    " FROM role_assignments WHERE tenant_id = $1 AND id = $2",
                    current_assignment!("3")
                ))
                .bind(tenant.as_str())
                .bind(id)
                .bind(&self.1)
                .fetch_optional(&mut *self.0)
                .await?;
                row.as_ref().map(Self::assignment_from_row).transpose()
            }

            async fn list_role_assignments(
                &mut self,
                tenant: &ObjectId,
                filter: &AssignmentFilter,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<RoleAssignment>, StoreError> {
                let mut sql =
                    Sql::new(concat!("SELECT ", assignment_columns!(), " FROM role_assignments WHERE tenant_id = "));
                sql.arg(Arg::Text(tenant.to_string()));
                sql.args.push(Arg::Text(self.1.clone()));
                sql.push(current_assignment!("2"));
                let lists: [(&str, Option<Vec<String>>); 3] = [
                    (
                        "principal_id",
                        filter.principal_id.as_ref().map(|it| it.iter().map(ToString::to_string).collect()),
                    ),
                    (
                        "role_definition_id",
                        filter.role_definition_id.as_ref().map(|it| it.iter().map(|id| id.to_lowercase()).collect()),
                    ),
                    ("directory_scope_id", filter.directory_scope_id.clone()),
                ];
                for (column, values) in lists {
                    if let Some(values) = values {
                        push_in(&mut sql, column, values);
                    }
                }
                if let Some(after) = after {
                    sql.push(" AND id > ");
                    sql.arg(Arg::Text(after.to_owned()));
                }
                sql.push(&format!(" ORDER BY id{}", limit_clause(limit)));
                let rows = bind_args!(q::query(q::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                rows.iter().map(Self::assignment_from_row).collect()
            }

            async fn delete_role_assignment(&mut self, tenant: &ObjectId, id: &str) -> Result<(), StoreError> {
                let done = q::query("DELETE FROM role_assignments WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn activate_directory_role(
                &mut self,
                tenant: &ObjectId,
                role_template_id: &str,
                at: OffsetDateTime,
            ) -> Result<bool, StoreError> {
                let done = q::query(concat!(
                    "INSERT INTO activated_directory_roles (tenant_id, role_template_id, activated_at) ",
                    "VALUES ($1, $2, $3) ON CONFLICT (tenant_id, role_template_id) DO NOTHING"
                ))
                .bind(tenant.as_str())
                .bind(role_template_id.to_lowercase())
                .bind(fmt_ts(at))
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn list_activated_directory_roles(&mut self, tenant: &ObjectId) -> Result<Vec<String>, StoreError> {
                Ok(q::query_scalar(concat!(
                    "SELECT role_template_id FROM activated_directory_roles WHERE tenant_id = $1 ",
                    "ORDER BY role_template_id"
                ))
                .bind(tenant.as_str())
                .fetch_all(&mut *self.0)
                .await?)
            }

            async fn insert_custom_role(&mut self, role: &CustomRole) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO role_definitions (id, tenant_id, display_name, ",
                    "display_name_lc, description, is_enabled, template_id, version, ",
                    "allowed_resource_actions, created_at) VALUES ($1, $2, $3, $4, $5, $6, ",
                    "$7, $8, $9, $10)"
                ))
                .bind(role.id.as_str())
                .bind(role.tenant_id.as_str())
                .bind(&role.display_name)
                .bind(role.display_name.to_lowercase())
                .bind(&role.description)
                .bind(role.is_enabled)
                .bind(&role.template_id)
                .bind(&role.version)
                .bind(role.allowed_resource_actions.join("\n"))
                .bind(fmt_ts(role.created))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn update_custom_role(&mut self, role: &CustomRole) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "UPDATE role_definitions SET display_name = $3, display_name_lc = $4, ",
                    "description = $5, is_enabled = $6, version = $7, ",
                    "allowed_resource_actions = $8 WHERE id = $1 AND tenant_id = $2"
                ))
                .bind(role.id.as_str())
                .bind(role.tenant_id.as_str())
                .bind(&role.display_name)
                .bind(role.display_name.to_lowercase())
                .bind(&role.description)
                .bind(role.is_enabled)
                .bind(&role.version)
                .bind(role.allowed_resource_actions.join("\n"))
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn delete_custom_role(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                // An eligibility for a role that no longer exists can never be activated.
                q::query("DELETE FROM role_eligibilities WHERE tenant_id = $1 AND role_definition_id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                let done = q::query("DELETE FROM role_definitions WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn get_custom_role(&mut self, tenant: &ObjectId, id: &str) -> Result<Option<CustomRole>, StoreError> {
                self.one_by_key(
                    concat!(
                        "SELECT id, tenant_id, display_name, description, is_enabled, ",
                        "template_id, version, allowed_resource_actions, created_at FROM ",
                        "role_definitions WHERE tenant_id = $1 AND (id = $2 OR template_id = $2) ",
                        "ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1"
                    ),
                    tenant,
                    id.to_lowercase(),
                    Self::custom_role_from_row,
                )
                .await
            }

            async fn list_custom_roles(&mut self, tenant: &ObjectId) -> Result<Vec<CustomRole>, StoreError> {
                let rows = q::query(concat!(
                    "SELECT id, tenant_id, display_name, description, is_enabled, ",
                    "template_id, version, allowed_resource_actions, created_at FROM ",
                    "role_definitions WHERE tenant_id = $1 ORDER BY display_name_lc, id"
                ))
                .bind(tenant.as_str())
                .fetch_all(&mut *self.0)
                .await?;
                rows.iter().map(Self::custom_role_from_row).collect()
            }

            async fn get_administrative_unit(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
            ) -> Result<Option<AdministrativeUnit>, StoreError> {
                self.one_by_key(
                    concat!(
                        "SELECT id, tenant_id, display_name, description, ",
                        "is_member_management_restricted, created_at FROM administrative_units ",
                        "WHERE tenant_id = $1 AND id = $2"
                    ),
                    tenant,
                    id.to_string(),
                    Self::unit_from_row,
                )
                .await
            }

            async fn list_administrative_units(
                &mut self,
                tenant: &ObjectId,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<AdministrativeUnit>, StoreError> {
                let rows = q::query(q::AssertSqlSafe(format!(
                    concat!(
                        "SELECT id, tenant_id, display_name, description, ",
                        "is_member_management_restricted, created_at FROM administrative_units ",
                        "WHERE tenant_id = $1 AND id > $2 ORDER BY id{}"
                    ),
                    limit_clause(limit)
                )))
                .bind(tenant.as_str())
                .bind(after.unwrap_or(""))
                .fetch_all(&mut *self.0)
                .await?;
                rows.iter().map(Self::unit_from_row).collect()
            }

            async fn update_administrative_unit(&mut self, unit: &AdministrativeUnit) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "UPDATE administrative_units SET display_name = $3, description = $4 ",
                    "WHERE id = $1 AND tenant_id = $2"
                ))
                .bind(unit.id.as_str())
                .bind(unit.tenant_id.as_str())
                .bind(&unit.display_name)
                .bind(&unit.description)
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn delete_administrative_unit(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                for sql in [
                    "DELETE FROM role_assignments WHERE tenant_id = $1 AND directory_scope_id = $2",
                    "DELETE FROM role_eligibilities WHERE tenant_id = $1 AND directory_scope_id = $2",
                ] {
                    q::query(sql)
                        .bind(tenant.as_str())
                        .bind(format!("/administrativeUnits/{id}"))
                        .execute(&mut *self.0)
                        .await?;
                }
                let done = q::query("DELETE FROM administrative_units WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn list_unit_members(
                &mut self,
                unit: &ObjectId,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<MemberRef>, StoreError> {
                self.list_refs(
                    concat!(
                        "SELECT member_id, member_kind FROM administrative_unit_members WHERE ",
                        "unit_id = $1 AND member_id > $2 ORDER BY member_id"
                    ),
                    unit,
                    after,
                    limit,
                )
                .await
            }

            async fn is_unit_member(&mut self, unit: &ObjectId, member: &ObjectId) -> Result<bool, StoreError> {
                let found: Option<String> = q::query_scalar(concat!(
                    "SELECT member_id FROM administrative_unit_members WHERE unit_id = $1 ",
                    "AND member_id = $2"
                ))
                .bind(unit.as_str())
                .bind(member.as_str())
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(found.is_some())
            }

            async fn delete_administrative_unit_member(
                &mut self,
                unit: &ObjectId,
                member: &ObjectId,
            ) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "DELETE FROM administrative_unit_members WHERE unit_id = $1 AND ",
                    "member_id = $2"
                ))
                .bind(unit.as_str())
                .bind(member.as_str())
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn insert_administrative_unit_member(
                &mut self,
                unit: &ObjectId,
                member: &MemberRef,
            ) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO administrative_unit_members (unit_id, member_id, ",
                    "member_kind) VALUES ($1, $2, $3)"
                ))
                .bind(unit.as_str())
                .bind(member.id.as_str())
                .bind(member.kind.as_str())
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }
        }
    };
}
