//! The registration report half of the SQLite and PostgreSQL stores (`ReportStore`): one query
//! derives, per enabled user, what is registered, and the list and the counts filter it.

use keyward_core::audit_query::TextMatch;
use std::sync::LazyLock;

use keyward_core::registration::{Flag, PRIVILEGED_ADMIN_ROLES};

use crate::sql::{Arg, Sql};

/// Per enabled user of the tenant (`$1`): the registered methods and role holding, as `d.*`.
/// Privileged roles are the core's `PRIVILEGED_ADMIN_ROLES` (GUIDs, so safe to inline).
pub(super) fn registration_source() -> &'static str {
    static SOURCE: LazyLock<String> = LazyLock::new(|| {
        // Holding a role, or being eligible for one (protected as its holder), counts.
        let holds = concat!(
            "EXISTS (SELECT 1 FROM (SELECT principal_id, role_definition_id FROM role_assignments UNION ALL ",
            "SELECT principal_id, role_definition_id FROM role_eligibilities) r WHERE (r.principal_id = u.id OR ",
            "r.principal_id IN (SELECT g.group_id FROM group_members g WHERE g.member_id = u.id))"
        );
        let privileged = PRIVILEGED_ADMIN_ROLES.map(|it| format!("'{it}'")).join(", ");
        format!(
            concat!(
                "(SELECT u.id, u.upn, u.display_name, u.upn_lc, u.display_name_lc, ",
                "(u.password_hash IS NOT NULL) AS has_password, ",
                "EXISTS (SELECT 1 FROM software_oath_methods m WHERE m.user_id = u.id) AS has_oath, ",
                "EXISTS (SELECT 1 FROM phone_methods p WHERE p.user_id = u.id AND p.phone_type = 'mobile') ",
                "AS has_mobile, ",
                "EXISTS (SELECT 1 FROM phone_methods p WHERE p.user_id = u.id ",
                "AND p.phone_type = 'alternateMobile') AS has_alternate, ",
                "EXISTS (SELECT 1 FROM phone_methods p WHERE p.user_id = u.id AND p.phone_type = 'office') ",
                "AS has_office, ",
                "EXISTS (SELECT 1 FROM email_methods e WHERE e.user_id = u.id) AS has_email, ",
                "EXISTS (SELECT 1 FROM fido2_methods f WHERE f.user_id = u.id AND NOT f.backup_eligible) ",
                "AS has_passkey_bound, ",
                "EXISTS (SELECT 1 FROM fido2_methods f WHERE f.user_id = u.id AND f.backup_eligible) ",
                "AS has_passkey_synced, ",
                "COALESCE(u.user_type_lc = 'guest', FALSE) AS is_guest, ",
                "{holds}) AS is_admin, ",
                "{holds} AND lower(r.role_definition_id) IN ({privileged})) AS is_privileged_admin ",
                "FROM users u WHERE u.account_enabled AND u.tenant_id = $1) d WHERE 1 = 1"
            ),
            holds = holds,
            privileged = privileged
        )
    });
    &SOURCE
}

/// The ids of the tenant's role holders (`$1`): principals of a role assignment, and members of a
/// group that holds one (role-assignable groups do not nest).
pub(super) static ADMIN_SET: LazyLock<String> = LazyLock::new(|| role_holders(""));

/// The ids of those protected as administrators (`$1`, the tenant): role holders (and those
/// eligible), and members and owners of role-assignable groups, whether or not the group holds
/// a role.
pub(super) static PROTECTED_SET: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} UNION SELECT m.member_id FROM group_members m JOIN directory_groups g ON g.id = m.group_id \
         WHERE g.tenant_id = $1 AND g.is_assignable_to_role \
         UNION SELECT o.owner_id FROM group_owners o JOIN directory_groups g ON g.id = o.group_id \
         WHERE g.tenant_id = $1 AND g.is_assignable_to_role",
        *ADMIN_SET
    )
});

/// The ids of the holders of a privileged admin role (`$1`, the tenant).
pub(super) static PRIVILEGED_ADMIN_SET: LazyLock<String> = LazyLock::new(|| {
    let privileged = PRIVILEGED_ADMIN_ROLES.map(|it| format!("'{it}'")).join(", ");
    role_holders(&format!(" AND lower(r.role_definition_id) IN ({privileged})"))
});

fn role_holders(condition: &str) -> String {
    // Holders, and those eligible (protected as holders: see `facts::user_facts`).
    let mut res = String::new();
    for table in ["role_assignments", "role_eligibilities"] {
        if !res.is_empty() {
            res.push_str(" UNION ");
        }
        res.push_str(&format!(
            "SELECT r.principal_id FROM {table} r WHERE r.tenant_id = $1{condition} \
             UNION SELECT g.member_id FROM {table} r JOIN group_members g ON g.group_id = r.principal_id \
             WHERE r.tenant_id = $1{condition}"
        ));
    }
    res
}

/// The sums every count statement selects, in order, over rows `d` with a 0/1 column per method
/// (`oath`, `mobile`, `alternate`, `office`, `email`, `bound` and `synced` passkeys): users with
/// each of the first five, with a method for MFA (an app, a phone or a passkey) and for
/// self-service reset (a phone or an e-mail address), with each kind of passkey, with a second
/// factor Keyward prompts for (an app or a passkey), and with a passkey.
fn method_sums() -> String {
    let users_with = |condition: &str| format!("COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0)");
    [
        users_with("d.oath = 1"),
        users_with("d.mobile = 1"),
        users_with("d.alternate = 1"),
        users_with("d.office = 1"),
        users_with("d.email = 1"),
        users_with("d.oath + d.mobile + d.alternate + d.office + d.bound + d.synced > 0"),
        users_with("d.email + d.mobile + d.alternate + d.office > 0"),
        users_with("d.bound = 1"),
        users_with("d.synced = 1"),
        users_with("d.oath + d.bound + d.synced > 0"),
        users_with("d.bound + d.synced > 0"),
    ]
    .join(", ")
}

/// How many sums [`method_sums`] selects.
pub(super) const SUMS: usize = 11;

/// [`method_sums`] over the tenant's (`$1`) enabled users with a method: the method rows are
/// folded into one row per user, and drive the join to the users (`CROSS JOIN` keeps SQLite from
/// reading every user first; PostgreSQL plans it as an inner join). The method tables have no
/// tenant column, so the folding reads every tenant's method rows; a server of several large
/// tenants pays that for each tenant's count (at most once a minute for the portal's page), a
/// cost weighed against a tenant column on every method row.
pub(super) static METHOD_COUNTS: LazyLock<String> = LazyLock::new(|| {
    let has = |kind: &str| format!("MAX(CASE WHEN m.k = '{kind}' THEN 1 ELSE 0 END)");
    format!(
        "SELECT {} FROM (SELECT m.user_id, {} AS oath, {} AS mobile, {} AS alternate, {} AS office, {} AS email, \
         {} AS bound, {} AS synced \
         FROM (SELECT user_id, 'oath' AS k FROM software_oath_methods UNION ALL SELECT user_id, phone_type FROM \
         phone_methods UNION ALL SELECT user_id, 'email' FROM email_methods UNION ALL SELECT user_id, \
         CASE WHEN backup_eligible THEN 'synced' ELSE 'bound' END FROM fido2_methods) m GROUP BY m.user_id) d \
         CROSS JOIN users u WHERE u.id = d.user_id AND u.tenant_id = $1 AND u.account_enabled",
        method_sums(),
        has("oath"),
        has("mobile"),
        has("alternateMobile"),
        has("office"),
        has("email"),
        has("bound"),
        has("synced"),
    )
});

/// [`method_sums`], then the users and those with a password, over the tenant's (`$1`) enabled
/// users in `{set}`, user by user.
pub(super) static SET_COUNTS: LazyLock<String> = LazyLock::new(|| {
    let has = |table: &str, condition: &str| {
        format!("CASE WHEN EXISTS (SELECT 1 FROM {table} m WHERE m.user_id = u.id{condition}) THEN 1 ELSE 0 END")
    };
    format!(
        "SELECT {}, COUNT(*), COALESCE(SUM(d.password), 0) FROM (SELECT \
         CASE WHEN u.password_hash IS NULL THEN 0 ELSE 1 END AS password, {} AS oath, {} AS mobile, \
         {} AS alternate, {} AS office, {} AS email, {} AS bound, {} AS synced FROM users u \
         WHERE u.tenant_id = $1 AND u.account_enabled AND u.id IN ({{set}})) d",
        method_sums(),
        has("software_oath_methods", ""),
        has("phone_methods", " AND m.phone_type = 'mobile'"),
        has("phone_methods", " AND m.phone_type = 'alternateMobile'"),
        has("phone_methods", " AND m.phone_type = 'office'"),
        has("email_methods", ""),
        has("fido2_methods", " AND NOT m.backup_eligible"),
        has("fido2_methods", " AND m.backup_eligible"),
    )
});

pub(super) const MFA_REGISTERED: &str =
    "(d.has_oath OR d.has_mobile OR d.has_alternate OR d.has_office OR d.has_passkey_bound OR d.has_passkey_synced)";
pub(super) const SSPR_REGISTERED: &str = "(d.has_email OR d.has_mobile OR d.has_alternate OR d.has_office)";

/// The condition on `d` a report flag stands for; "1 = 0" for what Keyward never has.
pub(super) fn flag_condition(flag: Flag) -> &'static str {
    match flag {
        Flag::IsAdmin => "d.is_admin",
        Flag::InRoleAssignableGroup => concat!(
            "(EXISTS (SELECT 1 FROM group_members m JOIN directory_groups g ON g.id = m.group_id ",
            "WHERE m.member_id = d.id AND g.is_assignable_to_role) OR EXISTS (SELECT 1 FROM group_owners o ",
            "JOIN directory_groups g ON g.id = o.group_id WHERE o.owner_id = d.id AND g.is_assignable_to_role))"
        ),
        Flag::IsMfaRegistered => MFA_REGISTERED,
        Flag::IsMfaCapable => "(d.has_oath OR d.has_passkey_bound OR d.has_passkey_synced)",
        Flag::IsSsprRegistered => SSPR_REGISTERED,
        Flag::IsPasswordlessCapable => "(d.has_passkey_bound OR d.has_passkey_synced)",
        Flag::IsSsprEnabled | Flag::IsSsprCapable | Flag::IsSystemPreferredAuthenticationMethodEnabled => "1 = 0",
    }
}

/// The column of a `methodsRegistered` value; "1 = 0" for values Keyward never reports.
pub(super) fn method_condition(method: &str) -> &'static str {
    match method {
        "softwareOneTimePasscode" => "d.has_oath",
        "mobilePhone" => "d.has_mobile",
        "alternateMobilePhone" => "d.has_alternate",
        "officePhone" => "d.has_office",
        "email" => "d.has_email",
        "passKeyDeviceBound" => "d.has_passkey_bound",
        "passKeySynced" => "d.has_passkey_synced",
        _ => "1 = 0",
    }
}

pub(super) fn push_text_match(sql: &mut Sql, column: &str, text: &TextMatch) {
    match text {
        TextMatch::Equals(value) => {
            sql.push(&format!(" AND {column} = "));
            sql.arg(Arg::Text(value.clone()));
        }
        TextMatch::StartsWith(prefix) => {
            sql.push(&format!(" AND {column} >= "));
            sql.arg(Arg::Text(prefix.clone()));
            sql.push(&format!(" AND {column} < "));
            sql.arg(Arg::Text(format!("{prefix}\u{10FFFF}")));
        }
    }
}

macro_rules! impl_report_store {
    ($tx:ident, $db:ty) => {
        #[async_trait]
        impl ReportStore for $tx {
            async fn registration_details(
                &mut self,
                tenant: &ObjectId,
                filter: &RegistrationFilter,
                order: RegistrationOrder,
                descending: bool,
                after: Option<&Cursor>,
                limit: usize,
            ) -> Result<Vec<RegistrationRow>, StoreError> {
                let mut sql = Sql::new(&format!("SELECT d.* FROM {}", registration_source()));
                sql.args.push(Arg::Text(tenant.to_string()));
                if let Some(id) = &filter.id {
                    sql.push(" AND d.id = ");
                    sql.arg(Arg::Text(id.clone()));
                }
                if let Some(upn) = &filter.user_principal_name {
                    push_text_match(&mut sql, "d.upn_lc", upn);
                }
                if let Some(name) = &filter.user_display_name {
                    push_text_match(&mut sql, "d.display_name_lc", name);
                }
                for (flag, wanted) in &filter.flags {
                    let negation = if *wanted { "" } else { "NOT " };
                    sql.push(&format!(" AND {negation}{}", flag_condition(*flag)));
                }
                for method in &filter.methods {
                    sql.push(&format!(" AND {}", method_condition(method)));
                }
                match filter.guests {
                    Some(true) => sql.push(" AND d.is_guest"),
                    Some(false) => sql.push(" AND NOT d.is_guest"),
                    None => (),
                }
                let key = match order {
                    RegistrationOrder::UserPrincipalName => "d.upn_lc",
                    RegistrationOrder::UserDisplayName => "d.display_name_lc",
                };
                let (direction, comparison) = if descending { ("DESC", "<") } else { ("ASC", ">") };
                if let Some(cursor) = after {
                    sql.push(&format!(" AND ({key}, d.id) {comparison} ("));
                    sql.arg(Arg::Text(cursor.sort_key.clone()));
                    sql.push(", ");
                    sql.arg(Arg::Text(cursor.id.clone()));
                    sql.push(")");
                }
                sql.push(&format!(" ORDER BY {key} {direction}, d.id {direction}{}", limit_clause(limit)));
                let rows =
                    bind_args!(q::query(q::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                rows.iter()
                    .map(|row| {
                        Ok(RegistrationRow {
                            id: oid(&row.try_get::<String, _>("id")?)?,
                            user_principal_name: row.try_get("upn")?,
                            display_name: row.try_get("display_name")?,
                            methods: RegisteredMethods {
                                password: row.try_get("has_password")?,
                                software_oath: row.try_get("has_oath")?,
                                mobile_phone: row.try_get("has_mobile")?,
                                alternate_mobile_phone: row.try_get("has_alternate")?,
                                office_phone: row.try_get("has_office")?,
                                email: row.try_get("has_email")?,
                                passkey_device_bound: row.try_get("has_passkey_bound")?,
                                passkey_synced: row.try_get("has_passkey_synced")?,
                                is_admin: row.try_get("is_admin")?,
                                is_guest: row.try_get("is_guest")?,
                            },
                        })
                    })
                    .collect()
            }

            async fn registration_counts(
                &mut self,
                tenant: &ObjectId,
                scope: &SummaryScope,
            ) -> Result<RegistrationCounts, StoreError> {
                // Members or guests only: the set of users of that type, or of that type among
                // the role holders.
                let of_type = match scope.types {
                    IncludedTypes::All => None,
                    IncludedTypes::Member => Some("member"),
                    IncludedTypes::Guest => Some("guest"),
                };
                let within = |set: Option<&str>| -> Option<String> {
                    match (of_type, set) {
                        (None, None) => None,
                        (None, Some(set)) => Some(set.to_owned()),
                        (Some(kind), None) => Some(format!(
                            "SELECT id FROM users WHERE tenant_id = $1 AND user_type_lc = '{kind}'"
                        )),
                        (Some(kind), Some(set)) => Some(format!(
                            "SELECT id FROM users WHERE tenant_id = $1 AND user_type_lc = '{kind}' AND id IN ({set})"
                        )),
                    }
                };
                match scope.roles {
                    IncludedRoles::All => self.counts_among(tenant, within(None).as_deref()).await,
                    IncludedRoles::Admin => self.counts_among(tenant, within(Some(&ADMIN_SET)).as_deref()).await,
                    IncludedRoles::PrivilegedAdmin => {
                        self.counts_among(tenant, within(Some(&PRIVILEGED_ADMIN_SET)).as_deref()).await
                    }
                    IncludedRoles::User => {
                        let all = self.counts_among(tenant, within(None).as_deref()).await?;
                        Ok(all.without(&self.counts_among(tenant, within(Some(&ADMIN_SET)).as_deref()).await?))
                    }
                    IncludedRoles::Reachable => {
                        let all = self.counts_among(tenant, within(None).as_deref()).await?;
                        Ok(all.without(&self.counts_among(tenant, within(Some(&PROTECTED_SET)).as_deref()).await?))
                    }
                }
            }
        }

        impl $tx {
            /// The registration counts of the tenant's enabled users, or of those among them in
            /// `set` (a query of user ids taking the tenant as `$1`; role holders are few). The
            /// whole tenant is counted from the method tables (few rows) and the partial indexes
            /// of migration 0012, so no statement reads every user: its totals are its user count
            /// less the disabled and the password-less, each counted in its partial index. A set
            /// is counted user by user.
            async fn counts_among(
                &mut self,
                tenant: &ObjectId,
                set: Option<&str>,
            ) -> Result<RegistrationCounts, StoreError> {
                let (text, totals) = match set {
                    None => {
                        let count = |sql: &'static str| q::query_scalar(sql).bind(tenant.as_str());
                        let users: i64 =
                            count("SELECT COUNT(*) FROM users WHERE tenant_id = $1").fetch_one(&mut *self.0).await?;
                        let disabled: i64 = count("SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND NOT account_enabled")
                            .fetch_one(&mut *self.0)
                            .await?;
                        let without_password: i64 = count(
                            "SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND account_enabled AND password_hash IS NULL",
                        )
                        .fetch_one(&mut *self.0)
                        .await?;
                        (METHOD_COUNTS.clone(), Some((users - disabled, users - disabled - without_password)))
                    }
                    Some(set) => (SET_COUNTS.replace("{set}", set), None),
                };
                let row = q::query(q::AssertSqlSafe(text)).bind(tenant.as_str()).fetch_one(&mut *self.0).await?;
                let at = |index: usize| -> Result<i64, StoreError> {
                    Ok(row.try_get::<Option<i64>, _>(index)?.unwrap_or_default())
                };
                let (total, password) = match totals {
                    Some(it) => it,
                    None => (at(SUMS)?, at(SUMS + 1)?),
                };
                Ok(RegistrationCounts {
                    total,
                    password,
                    software_oath: at(0)?,
                    mobile_phone: at(1)?,
                    alternate_mobile_phone: at(2)?,
                    office_phone: at(3)?,
                    email: at(4)?,
                    mfa_registered: at(5)?,
                    sspr_registered: at(6)?,
                    passkey_device_bound: at(7)?,
                    passkey_synced: at(8)?,
                    mfa_capable: at(9)?,
                    passwordless_capable: at(10)?,
                })
            }
        }
    };
}
