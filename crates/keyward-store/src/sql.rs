//! SQL shared by both dialects: timestamps, a parameter builder, and the translation of a
//! validated `$filter`/`$search`/`$orderby` plan into a WHERE clause.
//!
//! Both drivers accept `$N` placeholders, so one text serves SQLite and PostgreSQL.

use keyward_core::odata::{CmpOp, Expr, Literal, Path, StrFunc};
use keyward_core::query::{Plan, Search, SearchJoin};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::error::StoreError;

/// Formats a timestamp as stored: UTC, microseconds, `Z`; text order equals time order.
pub(crate) fn fmt_ts(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

pub(crate) fn parse_ts(raw: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(raw, &Rfc3339).map_err(|err| StoreError::Other(format!("corrupt timestamp '{raw}': {err}")))
}

/// A bound value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Text(String),
    /// Text or SQL NULL.
    MaybeText(Option<String>),
    Int(i64),
    Bool(bool),
}

/// SQL text with its arguments, numbered `$1..`.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Sql {
        Sql { text: text.to_owned(), args: Vec::new() }
    }

    pub(crate) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Appends a placeholder for `arg`.
    pub(crate) fn arg(&mut self, arg: Arg) {
        self.args.push(arg);
        self.text.push_str(&format!("${}", self.args.len()));
    }
}

/// How a Graph property maps to SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    /// Case-insensitive text; the `_lc` column holds the lowercased value.
    Text(&'static str),
    /// Exact text compared in lowercase (ids).
    Id(&'static str),
    Bool(&'static str),
    Time(&'static str),
    /// Multi-valued property in `user_values` with this kind.
    Values(&'static str),
    /// Comma-joined lowercased values in one column.
    Joined(&'static str),
}

pub(crate) fn user_col(property: &str) -> Option<Col> {
    Some(match property {
        "id" => Col::Id("users.id"),
        "userPrincipalName" => Col::Text("users.upn_lc"),
        "displayName" => Col::Text("users.display_name_lc"),
        "givenName" => Col::Text("users.given_name_lc"),
        "surname" => Col::Text("users.surname_lc"),
        "mail" => Col::Text("users.mail_lc"),
        "mailNickname" => Col::Text("users.mail_nickname_lc"),
        "mobilePhone" => Col::Text("users.mobile_phone_lc"),
        "jobTitle" => Col::Text("users.job_title_lc"),
        "department" => Col::Text("users.department_lc"),
        "usageLocation" => Col::Text("users.usage_location_lc"),
        "accountEnabled" => Col::Bool("users.account_enabled"),
        "createdDateTime" => Col::Time("users.created_at"),
        // Read through the user's activity row: a primary-key lookup per user the filter meets.
        "signInActivity/lastSignInDateTime" => {
            Col::Time("(SELECT a.last_sign_in_at FROM user_sign_in_activity a WHERE a.user_id = users.id)")
        }
        "signInActivity/lastNonInteractiveSignInDateTime" => {
            Col::Time("(SELECT a.last_non_interactive_at FROM user_sign_in_activity a WHERE a.user_id = users.id)")
        }
        "signInActivity/lastSuccessfulSignInDateTime" => {
            Col::Time("(SELECT a.last_success_at FROM user_sign_in_activity a WHERE a.user_id = users.id)")
        }
        "otherMails" => Col::Values("otherMails"),
        "businessPhones" => Col::Values("businessPhones"),
        // Never stored: Keyward's users have no Exchange proxy addresses.
        "proxyAddresses" => Col::Values("proxyAddresses"),
        // The profile (`backend/profile.rs`).
        "ageGroup" => Col::Text("users.age_group_lc"),
        "city" => Col::Text("users.city_lc"),
        "companyName" => Col::Text("users.company_name_lc"),
        "consentProvidedForMinor" => Col::Text("users.consent_provided_for_minor_lc"),
        "country" => Col::Text("users.country_lc"),
        "creationType" => Col::Text("users.creation_type_lc"),
        "employeeId" => Col::Text("users.employee_id_lc"),
        "employeeType" => Col::Text("users.employee_type_lc"),
        "externalUserState" => Col::Text("users.external_user_state_lc"),
        "faxNumber" => Col::Text("users.fax_number_lc"),
        "officeLocation" => Col::Text("users.office_location_lc"),
        "passwordPolicies" => Col::Text("users.password_policies_lc"),
        "postalCode" => Col::Text("users.postal_code_lc"),
        "preferredLanguage" => Col::Text("users.preferred_language_lc"),
        "state" => Col::Text("users.state_lc"),
        "streetAddress" => Col::Text("users.street_address_lc"),
        "userType" => Col::Text("users.user_type_lc"),
        "employeeHireDate" => Col::Time("users.employee_hire_date"),
        "lastPasswordChangeDateTime" => Col::Time("users.password_changed_at"),
        "onPremisesSyncEnabled" => Col::Bool("users.on_premises_sync_enabled"),
        _ => return None,
    })
}

pub(crate) fn group_col(property: &str) -> Option<Col> {
    Some(match property {
        "id" => Col::Id("directory_groups.id"),
        "displayName" => Col::Text("directory_groups.display_name_lc"),
        "description" => Col::Text("directory_groups.description_lc"),
        "mailNickname" => Col::Text("directory_groups.mail_nickname_lc"),
        "mailEnabled" => Col::Bool("directory_groups.mail_enabled"),
        "securityEnabled" => Col::Bool("directory_groups.security_enabled"),
        "isAssignableToRole" => Col::Bool("directory_groups.is_assignable_to_role"),
        "createdDateTime" => Col::Time("directory_groups.created_at"),
        "groupTypes" => Col::Joined("directory_groups.group_types_lc"),
        _ => return None,
    })
}

/// Everything a list query needs to know about its table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) columns: fn(&str) -> Option<Col>,
}

pub(crate) const USERS: Table = Table { name: "users", columns: user_col };
pub(crate) const GROUPS: Table = Table { name: "directory_groups", columns: group_col };

fn unsupported(what: &str) -> StoreError {
    StoreError::Other(format!("query not supported by the store: {what}"))
}

/// Columns declared NOT NULL, which sort as they are and can use their index.
const NOT_NULL: &[&str] =
    &["users.upn_lc", "users.display_name_lc", "users.mail_nickname_lc", "directory_groups.display_name_lc"];

/// The sort expression for a property (NULLs sort as empty text).
pub(crate) fn sort_expr(table: Table, property: &str) -> Result<String, StoreError> {
    match (table.columns)(property) {
        Some(Col::Text(col)) if NOT_NULL.contains(&col) => Ok(col.to_owned()),
        Some(Col::Text(col)) => Ok(format!("COALESCE({col}, '')")),
        Some(Col::Time(col) | Col::Id(col)) => Ok(col.to_owned()),
        _ => Err(unsupported(&format!("$orderby {property}"))),
    }
}

/// Appends ` AND (…)` for the plan's filter and search.
/// The condition of a listing of `table` in `tenant` by `plan` (what follows `WHERE`). A filter
/// whose top level is `or` carries the tenant into each branch: `(tenant AND a) OR (tenant AND
/// b)` lets SQLite answer each branch from its own index and merge them ("multi-index OR"), where
/// `tenant AND (a OR b)` makes it walk every row of the tenant (a search over three names of
/// 100,000 users: 0.2 ms against 100 ms).
pub(crate) fn push_where(sql: &mut Sql, table: Table, tenant: &str, plan: &Plan) -> Result<(), StoreError> {
    let tenant_col = format!("{}.tenant_id = ", table.name);
    let mut branches = Vec::new();
    if let (Some(filter), None) = (&plan.filter, &plan.search) {
        or_branches(filter, &mut branches);
    }
    if branches.len() < 2 {
        sql.push(&tenant_col);
        sql.arg(Arg::Text(tenant.to_owned()));
        return push_conditions(sql, table, plan);
    }
    sql.push("(");
    for (idx, branch) in branches.into_iter().enumerate() {
        if idx > 0 {
            sql.push(" OR ");
        }
        sql.push(&format!("({tenant_col}"));
        sql.arg(Arg::Text(tenant.to_owned()));
        sql.push(" AND (");
        push_expr(sql, table, branch, None)?;
        sql.push("))");
    }
    sql.push(")");
    Ok(())
}

/// The operands of a tree of `or`s, left to right.
fn or_branches<'a>(expr: &'a Expr, into: &mut Vec<&'a Expr>) {
    match expr {
        Expr::Or(left, right) => {
            or_branches(left, into);
            or_branches(right, into);
        }
        other => into.push(other),
    }
}

pub(crate) fn push_conditions(sql: &mut Sql, table: Table, plan: &Plan) -> Result<(), StoreError> {
    if let Some(filter) = &plan.filter {
        sql.push(" AND (");
        push_expr(sql, table, filter, None)?;
        sql.push(")");
    }
    if let Some(search) = &plan.search {
        sql.push(" AND (");
        push_search(sql, table, search)?;
        sql.push(")");
    }
    Ok(())
}

fn push_search(sql: &mut Sql, table: Table, search: &Search) -> Result<(), StoreError> {
    let joiner = match search.join {
        SearchJoin::And => " AND ",
        SearchJoin::Or => " OR ",
    };
    for (idx, (property, term)) in search.clauses.iter().enumerate() {
        if idx > 0 {
            sql.push(joiner);
        }
        let Some(Col::Text(col)) = (table.columns)(property) else { return Err(unsupported(property)) };
        sql.push(&format!("{col} LIKE "));
        sql.arg(Arg::Text(format!("%{}%", escape_like(term))));
        sql.push(" ESCAPE '\\'");
    }
    Ok(())
}

/// The lambda in scope: its variable and the column its elements live in.
#[derive(Clone, Copy)]
struct Lambda<'a> {
    var: &'a str,
    col: Col,
}

fn resolve(table: Table, path: &Path, lambda: Option<Lambda<'_>>) -> Result<Col, StoreError> {
    match (lambda, path.0.as_slice()) {
        (Some(it), [head]) if head == it.var => Ok(it.col),
        (None, [name]) => (table.columns)(name).ok_or_else(|| unsupported(name)),
        _ => Err(unsupported(&path.to_string())),
    }
}

fn push_expr(sql: &mut Sql, table: Table, expr: &Expr, lambda: Option<Lambda<'_>>) -> Result<(), StoreError> {
    match expr {
        Expr::And(left, right) | Expr::Or(left, right) => {
            let joiner = if matches!(expr, Expr::And(..)) { " AND " } else { " OR " };
            sql.push("(");
            push_expr(sql, table, left, lambda)?;
            sql.push(joiner);
            push_expr(sql, table, right, lambda)?;
            sql.push(")");
            Ok(())
        }
        Expr::Not(inner) => {
            // A comparison with NULL is unknown; `not` of it must be true, as `ne` treats NULL.
            sql.push("NOT COALESCE((");
            push_expr(sql, table, inner, lambda)?;
            sql.push("), FALSE)");
            Ok(())
        }
        Expr::Compare { path, op, value } => {
            let col = resolve(table, path, lambda)?;
            push_compare(sql, col, *op, value)
        }
        Expr::In { path, values } => {
            let col = resolve(table, path, lambda)?;
            if values.is_empty() {
                sql.push("1 = 0");
                return Ok(());
            }
            sql.push("(");
            for (idx, value) in values.iter().enumerate() {
                if idx > 0 {
                    sql.push(" OR ");
                }
                push_compare(sql, col, CmpOp::Eq, value)?;
            }
            sql.push(")");
            Ok(())
        }
        Expr::Func { func, path, value } => {
            let col = resolve(table, path, lambda)?;
            let Literal::String(text) = value else { return Err(unsupported("non-string function argument")) };
            let text = text.to_lowercase();
            match (col, func) {
                (Col::Text(col), StrFunc::StartsWith) => {
                    if text.is_empty() {
                        sql.push(&format!("{col} IS NOT NULL"));
                        return Ok(());
                    }
                    sql.push(&format!("({col} >= "));
                    sql.arg(Arg::Text(text.clone()));
                    sql.push(&format!(" AND {col} < "));
                    sql.arg(Arg::Text(format!("{text}\u{10FFFF}")));
                    sql.push(")");
                    Ok(())
                }
                (Col::Text(col), StrFunc::EndsWith) => {
                    sql.push(&format!("{col} LIKE "));
                    sql.arg(Arg::Text(format!("%{}", escape_like(&text))));
                    sql.push(" ESCAPE '\\'");
                    Ok(())
                }
                (Col::Joined(col), StrFunc::StartsWith) => {
                    sql.push(&format!("(',' || {col}) LIKE "));
                    sql.arg(Arg::Text(format!("%,{}%", escape_like(&text))));
                    sql.push(" ESCAPE '\\'");
                    Ok(())
                }
                _ => Err(unsupported("function on this property")),
            }
        }
        Expr::Any { collection, var, body } => {
            let [name] = collection.0.as_slice() else { return Err(unsupported("nested collection")) };
            match (table.columns)(name) {
                Some(Col::Values(kind)) => {
                    sql.push("EXISTS (SELECT 1 FROM user_values v WHERE v.user_id = users.id AND v.kind = ");
                    sql.arg(Arg::Text(kind.to_owned()));
                    sql.push(" AND (");
                    push_expr(sql, table, body, Some(Lambda { var, col: Col::Text("v.value_lc") }))?;
                    sql.push("))");
                    Ok(())
                }
                Some(col @ Col::Joined(_)) => push_expr(sql, table, body, Some(Lambda { var, col })),
                _ => Err(unsupported(name)),
            }
        }
        Expr::All { .. } => Err(unsupported("all()")),
    }
}

fn push_compare(sql: &mut Sql, col: Col, op: CmpOp, value: &Literal) -> Result<(), StoreError> {
    let (col_name, arg) = match (col, value) {
        (Col::Text(col) | Col::Id(col) | Col::Time(col) | Col::Bool(col), Literal::Null) => {
            match op {
                CmpOp::Eq => sql.push(&format!("{col} IS NULL")),
                CmpOp::Ne => sql.push(&format!("{col} IS NOT NULL")),
                _ => return Err(unsupported("ordering comparison with null")),
            }
            return Ok(());
        }
        (Col::Text(col), Literal::String(text)) => (col, Arg::Text(text.to_lowercase())),
        (Col::Id(col), Literal::String(text) | Literal::Guid(text)) => (col, Arg::Text(text.to_lowercase())),
        (Col::Bool(col), Literal::Bool(flag)) => (col, Arg::Bool(*flag)),
        (Col::Time(col), Literal::DateTime(at)) => (col, Arg::Text(fmt_ts(*at))),
        (Col::Joined(col), Literal::String(text)) if op == CmpOp::Eq => {
            sql.push(&format!("(',' || {col} || ',') LIKE "));
            sql.arg(Arg::Text(format!("%,{},%", escape_like(&text.to_lowercase()))));
            sql.push(" ESCAPE '\\'");
            return Ok(());
        }
        _ => return Err(unsupported("literal type for this property")),
    };
    let operator = match op {
        CmpOp::Eq => "=",
        CmpOp::Ne => "<>",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
    };
    if op == CmpOp::Ne {
        sql.push(&format!("({col_name} IS NULL OR {col_name} <> "));
        sql.arg(arg);
        sql.push(")");
    } else {
        sql.push(&format!("{col_name} {operator} "));
        sql.arg(arg);
    }
    Ok(())
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
pub(crate) fn escape_like(text: &str) -> String {
    let mut res = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            res.push('\\');
        }
        res.push(ch);
    }
    res
}

/// ` LIMIT n`, written into the statement rather than bound: SQLite plans with a bound LIMIT's
/// value and so prepares the statement again at every execution with a new binding (a tenth of a
/// small query's time). A number cannot carry SQL. Each page size a client asks for (`$top`,
/// 1–999) is its own statement in the driver's per-connection cache, which keeps the 100 most
/// recently used; clients use a handful of sizes.
pub(crate) fn limit_clause(limit: usize) -> String {
    if limit == crate::ALL_ROWS { String::new() } else { format!(" LIMIT {}", limit.min(i64::MAX as usize)) }
}

#[cfg(test)]
mod tests {
    use keyward_core::query::{RawQuery, USER, plan};

    use super::*;

    #[test]
    fn all_rows_reads_unpaged() {
        assert_eq!(limit_clause(crate::ALL_ROWS), "");
        assert_eq!(limit_clause(100_001), " LIMIT 100001");
    }

    fn where_clause(filter: &str) -> Sql {
        let raw = RawQuery {
            filter: Some(filter.into()),
            is_eventual: true,
            count: Some("true".into()),
            ..RawQuery::default()
        };
        let plan = plan(&USER, &raw).expect("valid plan");
        let mut sql = Sql::new("");
        push_conditions(&mut sql, USERS, &plan).expect("translatable");
        sql
    }

    #[test]
    fn an_or_filter_carries_the_tenant_into_each_branch() {
        let raw = RawQuery {
            filter: Some("startswith(displayName,'a') or userPrincipalName eq 'b@c.d'".into()),
            ..RawQuery::default()
        };
        let or_plan = plan(&USER, &raw).expect("valid plan");
        let mut sql = Sql::new("");
        push_where(&mut sql, USERS, "t1", &or_plan).expect("translatable");
        assert_eq!(
            sql.text,
            "((users.tenant_id = $1 AND ((users.display_name_lc >= $2 AND users.display_name_lc < $3))) OR \
             (users.tenant_id = $4 AND (users.upn_lc = $5)))"
        );
        assert_eq!(sql.args[0], Arg::Text("t1".into()));
        assert_eq!(sql.args[3], Arg::Text("t1".into()));
        // Without a top-level `or`, the tenant comes first, once.
        let raw = RawQuery { filter: Some("accountEnabled eq true".into()), ..RawQuery::default() };
        let mut sql = Sql::new("");
        push_where(&mut sql, USERS, "t1", &plan(&USER, &raw).expect("valid plan")).expect("translatable");
        assert_eq!(sql.text, "users.tenant_id = $1 AND (users.account_enabled = $2)");
    }

    #[test]
    fn translates_filters_to_parameterised_sql() {
        let sql = where_clause("startswith(displayName,'Ad') and accountEnabled eq true");
        assert_eq!(
            sql.text,
            " AND (((users.display_name_lc >= $1 AND users.display_name_lc < $2) AND users.account_enabled = $3))"
        );
        assert_eq!(sql.args, [Arg::Text("ad".into()), Arg::Text("ad\u{10FFFF}".into()), Arg::Bool(true)]);
        let sql = where_clause("otherMails/any(x:x eq 'A@b.c')");
        assert!(sql.text.contains(
            "EXISTS (SELECT 1 FROM user_values v WHERE v.user_id = users.id AND v.kind = $1 AND (v.value_lc = $2))"
        ));
        let sql = where_clause("endswith(mail,'_x%')");
        assert_eq!(sql.args, [Arg::Text("%\\_x\\%".into())]);
        let sql = where_clause("mail eq null or displayName ne 'x'");
        assert!(
            sql.text
                .contains("users.mail_lc IS NULL OR (users.display_name_lc IS NULL OR users.display_name_lc <> $1)"),
            "{}",
            sql.text
        );
    }

    #[test]
    fn every_filterable_or_searchable_property_has_a_column() {
        use keyward_core::query::{FilterSupport, GROUP, Resource};
        let cases: [(&Resource, Table); 2] = [(&USER, USERS), (&GROUP, GROUPS)];
        for (resource, table) in cases {
            for property in resource.properties {
                if property.filter != FilterSupport::None || property.is_searchable || property.is_sortable {
                    assert!(
                        (table.columns)(property.name).is_some(),
                        "{}.{} has no column",
                        resource.type_name,
                        property.name
                    );
                }
                if property.is_sortable {
                    assert!(
                        sort_expr(table, property.name).is_ok(),
                        "{}.{} cannot sort",
                        resource.type_name,
                        property.name
                    );
                }
            }
        }
    }

    #[test]
    fn timestamps_sort_as_text() {
        let early = OffsetDateTime::from_unix_timestamp(1_000).expect("ts");
        let late = OffsetDateTime::from_unix_timestamp(1_000_000_000).expect("ts");
        assert!(fmt_ts(early) < fmt_ts(late));
        assert_eq!(parse_ts(&fmt_ts(late)).ok(), Some(late));
    }
}
