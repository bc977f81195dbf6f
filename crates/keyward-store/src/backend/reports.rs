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
        let holds = concat!(
            "EXISTS (SELECT 1 FROM role_assignments r WHERE (r.principal_id = u.id OR r.principal_id IN ",
            "(SELECT g.group_id FROM group_members g WHERE g.member_id = u.id))"
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

pub(super) const MFA_REGISTERED: &str = "(d.has_oath OR d.has_mobile OR d.has_alternate OR d.has_office)";
pub(super) const SSPR_REGISTERED: &str = "(d.has_email OR d.has_mobile OR d.has_alternate OR d.has_office)";

/// The condition on `d` a report flag stands for; "1 = 0" for what Keyward never has.
pub(super) fn flag_condition(flag: Flag) -> &'static str {
    match flag {
        Flag::IsAdmin => "d.is_admin",
        Flag::IsMfaRegistered => MFA_REGISTERED,
        Flag::IsMfaCapable => "d.has_oath",
        Flag::IsSsprRegistered => SSPR_REGISTERED,
        Flag::IsPasswordlessCapable
        | Flag::IsSsprEnabled
        | Flag::IsSsprCapable
        | Flag::IsSystemPreferredAuthenticationMethodEnabled => "1 = 0",
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
                if filter.guests_only {
                    sql.push(" AND 1 = 0");
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
                    bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
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
                                is_admin: row.try_get("is_admin")?,
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
                let count = |condition: &str| format!(", COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0)");
                let mut text = String::from("SELECT COUNT(*)");
                for condition in [
                    "d.has_password",
                    "d.has_oath",
                    "d.has_mobile",
                    "d.has_alternate",
                    "d.has_office",
                    "d.has_email",
                    MFA_REGISTERED,
                    "d.has_oath",
                    SSPR_REGISTERED,
                ] {
                    text.push_str(&count(condition));
                }
                text.push_str(" FROM ");
                text.push_str(registration_source());
                text.push_str(match scope.roles {
                    IncludedRoles::All => "",
                    IncludedRoles::PrivilegedAdmin => " AND d.is_privileged_admin",
                    IncludedRoles::Admin => " AND d.is_admin",
                    IncludedRoles::User => " AND NOT d.is_admin",
                });
                if scope.types == IncludedTypes::Guest {
                    text.push_str(" AND 1 = 0");
                }
                let row = sqlx::query(sqlx::AssertSqlSafe(text)).bind(tenant.as_str()).fetch_one(&mut *self.0).await?;
                let at = |index: usize| -> Result<i64, StoreError> { Ok(row.try_get::<i64, _>(index)?) };
                Ok(RegistrationCounts {
                    total: at(0)?,
                    password: at(1)?,
                    software_oath: at(2)?,
                    mobile_phone: at(3)?,
                    alternate_mobile_phone: at(4)?,
                    office_phone: at(5)?,
                    email: at(6)?,
                    mfa_registered: at(7)?,
                    mfa_capable: at(8)?,
                    sspr_registered: at(9)?,
                })
            }
        }
    };
}
