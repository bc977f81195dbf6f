//! Groups, members and owners, and deleted groups ([`KEPT_GROUP`], moved by `backend/deleted.rs`).
//!
//! `impl_group_store!` is the same SQL for SQLite and PostgreSQL, expanded once per backend in
//! `backend/mod.rs`.

/// Implements `GroupStore` for a backend's transaction type.
macro_rules! impl_group_store {
    ($tx:ident, $db:ty) => {
        impl $tx {
            /// One group by id; with `lock`, its row locked until the transaction ends
            /// (`FOR NO KEY UPDATE`, as `get_user_for_update` locks a user's).
            async fn group_by_id(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
                lock: bool,
            ) -> Result<Option<Group>, StoreError> {
                let lock = if lock { " FOR NO KEY UPDATE OF directory_groups" } else { "" };
                let sql = format!(
                    "SELECT {GROUP_COLUMNS} FROM directory_groups WHERE tenant_id = $1 AND id = $2{lock}",
                    GROUP_COLUMNS = GROUP_COLUMNS
                );
                self.one_by_key(q::AssertSqlSafe(sql), tenant, id.to_string(), Self::group_from_row).await
            }
        }

        #[async_trait]
        impl GroupStore for $tx {
            async fn insert_group(&mut self, group: &Group) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO directory_groups (id, tenant_id, display_name, ",
                    "display_name_lc, description, description_lc, mail_nickname, ",
                    "mail_nickname_lc, mail_enabled, security_enabled, ",
                    "is_assignable_to_role, group_types_lc, created_at) VALUES ($1, $2, $3, ",
                    "$4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                ))
                .bind(group.id.as_str())
                .bind(group.tenant_id.as_str())
                .bind(&group.display_name)
                .bind(group.display_name.to_lowercase())
                .bind(&group.description)
                .bind(lc(&group.description))
                .bind(&group.mail_nickname)
                .bind(group.mail_nickname.to_lowercase())
                .bind(group.mail_enabled)
                .bind(group.security_enabled)
                .bind(group.is_assignable_to_role)
                .bind(group_types_lc(group))
                .bind(fmt_ts(group.created))
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn update_group(&mut self, group: &Group) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "UPDATE directory_groups SET display_name = $2, display_name_lc = $3, ",
                    "description = $4, description_lc = $5, mail_nickname = $6, ",
                    "mail_nickname_lc = $7, security_enabled = $8 WHERE id = $1 AND ",
                    "tenant_id = $9"
                ))
                .bind(group.id.as_str())
                .bind(&group.display_name)
                .bind(group.display_name.to_lowercase())
                .bind(&group.description)
                .bind(lc(&group.description))
                .bind(&group.mail_nickname)
                .bind(group.mail_nickname.to_lowercase())
                .bind(group.security_enabled)
                .bind(group.tenant_id.as_str())
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn delete_group(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                let done = q::query("DELETE FROM directory_groups WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn get_group(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<Group>, StoreError> {
                self.group_by_id(tenant, id, false).await
            }

            async fn get_group_for_update(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
            ) -> Result<Option<Group>, StoreError> {
                self.group_by_id(tenant, id, DIALECT.row_locks).await
            }

            async fn get_groups(&mut self, tenant: &ObjectId, ids: &[ObjectId]) -> Result<Vec<Group>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut sql = Sql::new(&format!("SELECT {GROUP_COLUMNS} FROM directory_groups WHERE tenant_id = "));
                sql.arg(Arg::Text(tenant.to_string()));
                push_id_list(&mut sql, "directory_groups.id", ids);
                let rows = bind_args!(q::query(q::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                rows.iter().map(Self::group_from_row).collect()
            }

            async fn list_groups(
                &mut self,
                tenant: &ObjectId,
                plan: &Plan,
                after: Option<&Cursor>,
            ) -> Result<Page<Group>, StoreError> {
                let (rows, count) = self.list_rows(GROUPS, GROUP_COLUMNS, tenant, plan, after).await?;
                let mut items = rows.iter().map(Self::group_from_row).collect::<Result<Vec<_>, _>>()?;
                let next = next_cursor(&mut items, plan, |group| {
                    let key = match plan.order_by.map(|it| it.property) {
                        Some("createdDateTime") => fmt_ts(group.created),
                        _ => group.display_name.to_lowercase(),
                    };
                    (key, group.id.to_string())
                });
                Ok(Page { items, next, count })
            }

            async fn insert_member(&mut self, group: &ObjectId, member: &MemberRef) -> Result<(), StoreError> {
                q::query(concat!(
                    "INSERT INTO group_members (group_id, member_id, member_kind) VALUES ",
                    "($1, $2, $3)"
                ))
                .bind(group.as_str())
                .bind(member.id.as_str())
                .bind(member.kind.as_str())
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn delete_member(&mut self, group: &ObjectId, member: &ObjectId) -> Result<(), StoreError> {
                let done = q::query("DELETE FROM group_members WHERE group_id = $1 AND member_id = $2")
                    .bind(group.as_str())
                    .bind(member.as_str())
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn is_member(&mut self, group: &ObjectId, member: &ObjectId) -> Result<bool, StoreError> {
                let found: Option<String> = q::query_scalar(concat!(
                    "SELECT member_id FROM group_members WHERE group_id = $1 AND member_id = ",
                    "$2"
                ))
                .bind(group.as_str())
                .bind(member.as_str())
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(found.is_some())
            }

            async fn list_members(
                &mut self,
                group: &ObjectId,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<MemberRef>, StoreError> {
                self.list_refs(
                    concat!(
                        "SELECT member_id, member_kind FROM group_members WHERE group_id = $1 ",
                        "AND member_id > $2 ORDER BY member_id"
                    ),
                    group,
                    after,
                    limit,
                )
                .await
            }

            async fn insert_owner(&mut self, group: &ObjectId, owner: &MemberRef) -> Result<(), StoreError> {
                q::query(concat!("INSERT INTO group_owners (group_id, owner_id, owner_kind) VALUES ($1, ", "$2, $3)"))
                    .bind(group.as_str())
                    .bind(owner.id.as_str())
                    .bind(owner.kind.as_str())
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn delete_owner(&mut self, group: &ObjectId, owner: &ObjectId) -> Result<(), StoreError> {
                let done = q::query("DELETE FROM group_owners WHERE group_id = $1 AND owner_id = $2")
                    .bind(group.as_str())
                    .bind(owner.as_str())
                    .execute(&mut *self.0)
                    .await?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn is_owner(&mut self, group: &ObjectId, owner: &ObjectId) -> Result<bool, StoreError> {
                let found: Option<String> =
                    q::query_scalar("SELECT owner_id FROM group_owners WHERE group_id = $1 AND owner_id = $2")
                        .bind(group.as_str())
                        .bind(owner.as_str())
                        .fetch_optional(&mut *self.0)
                        .await?;
                Ok(found.is_some())
            }

            async fn list_owners(
                &mut self,
                group: &ObjectId,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<MemberRef>, StoreError> {
                self.list_refs(
                    concat!(
                        "SELECT owner_id, owner_kind FROM group_owners WHERE group_id = $1 AND ",
                        "owner_id > $2 ORDER BY owner_id"
                    ),
                    group,
                    after,
                    limit,
                )
                .await
            }

            async fn list_member_of(
                &mut self,
                member: &ObjectId,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<ObjectId>, StoreError> {
                let ids: Vec<String> = q::query_scalar(q::AssertSqlSafe(format!(
                    concat!(
                        "SELECT group_id FROM group_members WHERE member_id = $1 AND group_id > ",
                        "$2 ORDER BY group_id{}"
                    ),
                    limit_clause(limit)
                )))
                .bind(member.as_str())
                .bind(after.unwrap_or(""))
                .fetch_all(&mut *self.0)
                .await?;
                ids.iter().map(|it| oid(it)).collect()
            }

            async fn list_owned_groups(
                &mut self,
                owner: &ObjectId,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<ObjectId>, StoreError> {
                let ids: Vec<String> = q::query_scalar(q::AssertSqlSafe(format!(
                    "SELECT group_id FROM group_owners WHERE owner_id = $1 AND group_id > $2 ORDER BY group_id{}",
                    limit_clause(limit)
                )))
                .bind(owner.as_str())
                .bind(after.unwrap_or(""))
                .fetch_all(&mut *self.0)
                .await?;
                ids.iter().map(|it| oid(it)).collect()
            }

            async fn delete_memberships_of(&mut self, object: &ObjectId) -> Result<(), StoreError> {
                for sql in [
                    "DELETE FROM group_members WHERE member_id = $1",
                    "DELETE FROM group_owners WHERE owner_id = $1",
                    "DELETE FROM administrative_unit_members WHERE member_id = $1",
                ] {
                    q::query(sql).bind(object.as_str()).execute(&mut *self.0).await?;
                }
                Ok(())
            }

            async fn soft_delete_group(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
                at: OffsetDateTime,
            ) -> Result<(), StoreError> {
                self.keep_deleted(&KEPT_GROUP, tenant, id, at).await?;
                self.delete_group(tenant, id).await
            }

            async fn list_deleted_groups(
                &mut self,
                tenant: &ObjectId,
                since: OffsetDateTime,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<(Group, OffsetDateTime)>, StoreError> {
                let after = after.unwrap_or("");
                let rows = self.deleted_rows(&KEPT_GROUP, GROUP_COLUMNS, tenant, since, after, false, limit).await?;
                rows.iter().map(Self::deleted_group_from_row).collect()
            }

            async fn get_deleted_group(
                &mut self,
                tenant: &ObjectId,
                id: &ObjectId,
                since: OffsetDateTime,
            ) -> Result<Option<(Group, OffsetDateTime)>, StoreError> {
                let rows = self.deleted_rows(&KEPT_GROUP, GROUP_COLUMNS, tenant, since, id.as_str(), true, 1).await?;
                rows.first().map(Self::deleted_group_from_row).transpose()
            }

            async fn restore_group(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                self.bring_back(&KEPT_GROUP, tenant, id).await
            }

            async fn purge_deleted_group(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                self.forget_deleted(&KEPT_GROUP, tenant, id).await
            }

            async fn purge_deleted_groups_before(
                &mut self,
                tenant: &ObjectId,
                before: OffsetDateTime,
            ) -> Result<u64, StoreError> {
                self.forget_deleted_before(&KEPT_GROUP, tenant, before).await
            }
        }
    };
}

use super::deleted::Kept;

/// A deleted group, kept for restore: its row, members, owners and administrative units; a
/// member, owner or unit comes back only if it still exists; its memberships of other groups and
/// its role assignments do not.
pub(super) const KEPT_GROUP: Kept = Kept {
    kind: "group",
    table: "directory_groups",
    children: &[
        (
            "group_members",
            "group_id",
            " AND (member_id IN (SELECT id FROM users) OR member_id IN (SELECT id FROM directory_groups) \
             OR member_id IN (SELECT id FROM service_principals))",
        ),
        (
            "group_owners",
            "group_id",
            " AND (owner_id IN (SELECT id FROM users) OR owner_id IN (SELECT id FROM service_principals))",
        ),
        ("administrative_unit_members", "member_id", " AND unit_id IN (SELECT id FROM administrative_units)"),
    ],
    stale: &[
        "DELETE FROM group_members WHERE member_id = $1",
        "DELETE FROM administrative_unit_members WHERE member_id = $1",
        "DELETE FROM role_assignments WHERE principal_id = $1",
        "DELETE FROM role_eligibilities WHERE principal_id = $1",
    ],
    referenced: &[
        "SELECT 1 FROM users WHERE id IN (SELECT member_id FROM deleted_group_members WHERE group_id = $1 \
         UNION SELECT owner_id FROM deleted_group_owners WHERE group_id = $1) FOR SHARE",
        "SELECT 1 FROM directory_groups WHERE id IN \
         (SELECT member_id FROM deleted_group_members WHERE group_id = $1) FOR SHARE",
        "SELECT 1 FROM service_principals WHERE id IN (SELECT member_id FROM deleted_group_members WHERE group_id = $1 \
         UNION SELECT owner_id FROM deleted_group_owners WHERE group_id = $1) FOR SHARE",
        super::users::UNITS_REFERENCED,
    ],
};
