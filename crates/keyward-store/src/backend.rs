//! The SQLite and PostgreSQL stores. Both are generated from one body by `impl_backend!`, so the
//! two can only differ in their connection set-up and their migrations.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use keyward_core::audit::AuditRecord;
use keyward_core::audit_chain::{self, ChainPosition, Checkpoint};
use keyward_core::audit_query::{AuditFilter, TextMatch};
use keyward_core::authz::custom::CustomRole;
use keyward_core::directory::{Domain, Group, ObjectKind, ServicePrincipal, Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_core::query::Plan;
use keyward_core::signin::{Lockout, PerUserMfaState, RememberedDevice, SignInPolicy, SignInRecord, TapPolicy};
use keyward_core::signin_query::SignInFilter;
use sqlx::Row;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use time::OffsetDateTime;

use crate::error::{StoreError, db};
use crate::migrate::{CREATE_TABLE, MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE};
use crate::sql::{Arg, GROUPS, Sql, Table, USERS, fmt_ts, limit_clause, parse_ts, push_conditions, sort_expr};
use crate::{
    AdministrativeUnit, AssignmentFilter, AuditCursor, AuditStore, Backend, ChainRow, CredentialStore, Cursor,
    GroupStore, KeyStore, MemberRef, Page, RoleAssignment, RoleStore, ServicePrincipalStore, SigningKey, Store,
    TemporaryAccessPass, TenantStore, Tx, UserStore, audit_json,
};
use crate::{AppCredential, Application, AuthCode, DeviceCode, Grant, OAuthStore, PermissionGrant, RefreshToken};
use crate::{BrowserSession, SignInCursor, SignInStore, SoftwareOathMethod, UserSignInState, sign_in_json};

fn opt_ts(raw: Option<String>) -> Result<Option<OffsetDateTime>, StoreError> {
    raw.as_deref().map(parse_ts).transpose()
}

const USER_COLUMNS: &str = "users.id, users.tenant_id, users.upn, users.display_name, users.given_name, users.surname, \
     users.mail, users.mail_nickname, users.mobile_phone, users.job_title, users.department, users.usage_location, \
     users.account_enabled, users.created_at, users.sessions_valid_from, users.force_change_password";

const SERVICE_PRINCIPAL_COLUMNS: &str = "id, tenant_id, app_id, display_name, account_enabled, created_at";

const GROUP_COLUMNS: &str = "directory_groups.id, directory_groups.tenant_id, directory_groups.display_name, \
     directory_groups.description, directory_groups.mail_nickname, directory_groups.mail_enabled, \
     directory_groups.security_enabled, directory_groups.is_assignable_to_role, directory_groups.group_types_lc, \
     directory_groups.created_at";

fn oid(raw: &str) -> Result<ObjectId, StoreError> {
    ObjectId::parse(raw).ok_or_else(|| StoreError::Other(format!("corrupt object id '{raw}'")))
}

fn lc(value: &Option<String>) -> Option<String> {
    value.as_ref().map(|it| it.to_lowercase())
}

/// Appends ` AND {column} IN ($n, …)`.
fn push_id_list(sql: &mut Sql, column: &str, ids: &[ObjectId]) {
    sql.push(&format!(" AND {column} IN ("));
    for (idx, id) in ids.iter().enumerate() {
        if idx > 0 {
            sql.push(", ");
        }
        sql.arg(Arg::Text(id.to_string()));
    }
    sql.push(")");
}

/// Whether audit target rows (schema 8) and initiator rows (schema 9, `audit_initiators`) point at
/// a copy of their record in `audit_copies`. On SQLite a target's or initiator's copies have
/// consecutive keys, so its newest records are a few adjacent pages; PostgreSQL tables are heaps in
/// insertion order, where a copy would sit as scattered as the record itself.
fn record_copies(backend: Backend) -> bool {
    backend == Backend::Sqlite
}

/// A target's (or initiator's) copies take consecutive keys in a block of `1 << COPY_BLOCK_BITS`
/// keys of its own; block `b` holds keys `b << COPY_BLOCK_BITS ..`. One whose block is used up
/// (four billion records) continues in a new block, as does one all of whose records retention
/// removed.
const COPY_BLOCK_BITS: u32 = 32;

/// The target copy keys one `insert_audits` call has handed out: each target's latest, and the
/// last new block it started in this chunk of records (initiator rows' copies take blocks of
/// their own between chunks, in the database's trigger); and, looked up once per target, the
/// largest key in the block of its newest stored copy (`None`: no copy).
#[derive(Default)]
struct CopyKeys {
    last: std::collections::HashMap<String, i64>,
    new_block: Option<i64>,
    stored: std::collections::HashMap<String, Option<i64>>,
}

/// The key for a target's next copy given the largest key its newest block holds, or `None` when
/// the target needs a new block.
fn next_copy_key(largest: Option<i64>) -> Option<i64> {
    let next = largest? + 1;
    (next & ((1 << COPY_BLOCK_BITS) - 1) != 0).then_some(next)
}

/// What `insert_audits` indexes of one record once it has its `seq`: its target rows, each
/// (SQLite) with a copy of the record. (Its initiator row and copy are the database's own work,
/// in the `audit_initiators_follow_records` trigger.)
struct Indexed {
    id: String,
    at: String,
    targets: Vec<(String, Option<String>)>,
    copy: Option<String>,
}

/// Appends an audit filter's `activityDateTime` range on `column`.
fn push_time_range(sql: &mut Sql, column: &str, filter: &AuditFilter) {
    if let Some(from) = filter.from {
        sql.push(&format!(" AND {column} >= "));
        sql.arg(Arg::Text(fmt_ts(from)));
    }
    if let Some(until) = filter.until {
        sql.push(&format!(" AND {column} <= "));
        sql.arg(Arg::Text(fmt_ts(until)));
    }
}

/// The statement for one page of a tenant's audit records, newest or oldest first, after `after`.
///
/// A target filter drives the query from the target rows, which are ordered by (tenant, target,
/// time): a target's newest records are the first index entries, however many records the target
/// has. Time and order are then taken from the target row, which carries the record's time (the
/// cursor too, so order and cursor always come from the same columns). Without a target filter, an
/// initiator filter drives it the same way from the initiator rows where they exist (`copies`).
/// Where the driving rows keep a copy of their record (`copies`) and nothing else is filtered, the
/// record comes from there: one target's or initiator's copies sit together, the records
/// themselves anywhere in the log. Returns the statement and whether its `record` column holds
/// such copies.
fn audit_page_sql(
    tenant: &ObjectId,
    filter: &AuditFilter,
    after: Option<&AuditCursor>,
    is_ascending: bool,
    limit: usize,
    copies: bool,
) -> (Sql, bool) {
    let mut rest = filter.clone();
    // The rows driving the query (alias `t`), the column they are looked up by, and its value.
    let driver = if let Some(target) = rest.target_id.take() {
        Some(("audit_targets", "t.target_id", target))
    } else if let Some(upn) = rest.target_upn.take() {
        Some(("audit_targets", "t.target_upn_lc", upn))
    } else if copies
        && rest.correlation_id.is_none()
        && let Some(initiator) = rest.initiator_user_id.take()
    {
        // Initiator rows exist where copies do (SQLite, schema 9). With a correlation id, the
        // records' correlation index finds the few records at once, where an initiator's rows
        // would be walked through its whole history.
        Some(("audit_initiators", "t.initiator_id", initiator))
    } else {
        None
    };
    let (time, seq) =
        if driver.is_some() { ("t.activity_date_time", "t.audit_seq") } else { ("r.activity_date_time", "r.seq") };
    let only_time = AuditFilter { from: None, until: None, ..rest.clone() } == AuditFilter::default();
    let from_copy = driver.is_some() && only_time && copies;
    let record = if from_copy { "c.record" } else { "r.record" };
    let mut sql = Sql::new(&format!("SELECT {seq} AS seq, {time} AS activity_date_time, {record} AS record FROM "));
    match driver {
        Some((table, column, value)) => {
            let joined = if from_copy { "audit_copies c" } else { "audit_records r" };
            sql.push(&format!("{table} t CROSS JOIN {joined} WHERE t.tenant_id = "));
            sql.arg(Arg::Text(tenant.to_string()));
            sql.push(&format!(" AND {column} = "));
            sql.arg(Arg::Text(value));
            // The time range on the driving rows, so it bounds the index scan.
            push_time_range(&mut sql, time, &rest);
            if from_copy {
                sql.push(" AND c.key = t.copy_key");
            } else {
                sql.push(" AND r.seq = t.audit_seq AND r.tenant_id = ");
                sql.arg(Arg::Text(tenant.to_string()));
                push_audit_filter(&mut sql, &rest);
            }
        }
        None => {
            sql.push("audit_records r WHERE r.tenant_id = ");
            sql.arg(Arg::Text(tenant.to_string()));
            push_audit_filter(&mut sql, &rest);
        }
    }
    let cmp = if is_ascending { ">" } else { "<" };
    if let Some(cursor) = after {
        sql.push(&format!(" AND ({time}, {seq}) {cmp} ("));
        sql.arg(Arg::Text(cursor.activity_date_time.clone()));
        sql.push(", ");
        sql.arg(Arg::Int(cursor.seq));
        sql.push(")");
    }
    let direction = if is_ascending { "ASC" } else { "DESC" };
    sql.push(&format!(" ORDER BY {time} {direction}, {seq} {direction}{}", limit_clause(limit)));
    (sql, from_copy)
}

/// Appends the conditions of an audit filter on `audit_records r`.
fn push_audit_filter(sql: &mut Sql, filter: &AuditFilter) {
    let exact = |sql: &mut Sql, column: &str, value: &Option<String>| {
        if let Some(value) = value {
            sql.push(&format!(" AND {column} = "));
            sql.arg(Arg::Text(value.clone()));
        }
    };
    exact(sql, "r.category", &filter.category);
    exact(sql, "r.correlation_id", &filter.correlation_id);
    exact(sql, "r.logged_by_service", &filter.logged_by_service);
    exact(sql, "r.result", &filter.result);
    exact(sql, "r.initiator_id", &filter.initiator_user_id);
    exact(sql, "r.initiator_app_id", &filter.initiator_app_id);
    push_time_range(sql, "r.activity_date_time", filter);
    for (column, value) in
        [("r.activity_display_name_lc", &filter.activity), ("r.initiator_upn_lc", &filter.initiator_upn)]
    {
        match value {
            Some(TextMatch::Equals(text)) => {
                sql.push(&format!(" AND {column} = "));
                sql.arg(Arg::Text(text.clone()));
            }
            Some(TextMatch::StartsWith(prefix)) => {
                sql.push(&format!(" AND {column} >= "));
                sql.arg(Arg::Text(prefix.clone()));
                sql.push(&format!(" AND {column} < "));
                sql.arg(Arg::Text(format!("{prefix}\u{10FFFF}")));
            }
            None => (),
        }
    }
    if let Some(target) = &filter.target_id {
        sql.push(" AND r.seq IN (SELECT t.audit_seq FROM audit_targets t WHERE t.target_id = ");
        sql.arg(Arg::Text(target.clone()));
        sql.push(")");
    }
    if let Some(upn) = &filter.target_upn {
        sql.push(" AND r.seq IN (SELECT t.audit_seq FROM audit_targets t WHERE t.target_upn_lc = ");
        sql.arg(Arg::Text(upn.clone()));
        sql.push(")");
    }
}

fn group_types_lc(group: &Group) -> String {
    let lowered: Vec<String> = group.group_types.iter().map(|it| it.to_lowercase()).collect();
    lowered.join(",")
}

fn group_types_from(raw: &str) -> Vec<String> {
    raw.split(',')
        .filter(|it| !it.is_empty())
        .map(|it| if it == "unified" { "Unified".to_owned() } else { it.to_owned() })
        .collect()
}

macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Text(it) => query.bind(it),
                Arg::MaybeText(it) => query.bind(it),
                Arg::Int(it) => query.bind(it),
                Arg::Bool(it) => query.bind(it),
            };
        }
        query
    }};
}

/// Binds a user's columns as `$1..$26` in the order `INSERT INTO users` and `UPDATE users` use.
macro_rules! bind_user_columns {
    ($query:expr, $user:expr) => {{
        let user = $user;
        $query
            .bind(user.id.as_str())
            .bind(user.tenant_id.as_str())
            .bind(&user.user_principal_name)
            .bind(user.user_principal_name.to_lowercase())
            .bind(&user.display_name)
            .bind(user.display_name.to_lowercase())
            .bind(&user.given_name)
            .bind(lc(&user.given_name))
            .bind(&user.surname)
            .bind(lc(&user.surname))
            .bind(&user.mail)
            .bind(lc(&user.mail))
            .bind(&user.mail_nickname)
            .bind(user.mail_nickname.to_lowercase())
            .bind(&user.mobile_phone)
            .bind(lc(&user.mobile_phone))
            .bind(&user.job_title)
            .bind(lc(&user.job_title))
            .bind(&user.department)
            .bind(lc(&user.department))
            .bind(&user.usage_location)
            .bind(lc(&user.usage_location))
            .bind(user.account_enabled)
            .bind(fmt_ts(user.created))
            .bind(fmt_ts(user.sign_in_sessions_valid_from))
            .bind(user.force_change_password_next_sign_in)
    }};
}

macro_rules! impl_backend {
    ($store:ident, $tx:ident, $db:ty, $pool:ty, $backend:expr, $migrations:expr, $begin_write:expr, $begin_read:expr) => {
        /// A store on this database.
        #[derive(Debug, Clone)]
        pub(crate) struct $store {
            pool: $pool,
        }

        /// A transaction on this database.
        pub(crate) struct $tx(sqlx::Transaction<'static, $db>);

        impl std::fmt::Debug for $tx {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($tx))
            }
        }

        impl $store {
            async fn migrate(pool: &$pool) -> Result<(), StoreError> {
                sqlx::query(CREATE_TABLE).execute(pool).await?;
                let applied: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(pool).await?;
                let applied = applied.unwrap_or(0);
                let known = $migrations.last().map(|it| it.version).unwrap_or(0);
                if applied > known {
                    return Err(StoreError::Other(format!(
                        "the database is at schema version {applied} but this Keyward knows only up to {known}; \
                         run a newer Keyward (downgrades are not supported)"
                    )));
                }
                for migration in $migrations.iter().filter(|it| it.version > applied) {
                    tracing::info!(version = migration.version, name = migration.name, "applying migration");
                    let mut tx = pool.begin().await?;
                    sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
                    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                        .bind(migration.version)
                        .bind(migration.name)
                        .bind(fmt_ts(OffsetDateTime::now_utc()))
                        .execute(&mut *tx)
                        .await
                        ?;
                    tx.commit().await?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> Backend {
                $backend
            }

            async fn write(&self) -> Result<Box<dyn Tx>, StoreError> {
                let begin = $begin_write;
                let tx = begin(&self.pool).await?;
                Ok(Box::new($tx(tx)))
            }

            async fn read(&self) -> Result<Box<dyn Tx>, StoreError> {
                let begin = $begin_read;
                let tx = begin(&self.pool).await?;
                Ok(Box::new($tx(tx)))
            }

            async fn schema_version(&self) -> Result<i64, StoreError> {
                let version: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(&self.pool).await?;
                Ok(version.unwrap_or(0))
            }

            async fn close(&self) {
                self.pool.close().await;
            }

            async fn get_audit(&self, tenant: &ObjectId, id: &str) -> Result<Option<AuditRecord>, StoreError> {
                let record: Option<String> = sqlx::query_scalar("SELECT record FROM audit_records WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    ?;
                record.as_deref().map(audit_json::from_json).transpose()
            }

            async fn query_audit(
                &self,
                tenant: &ObjectId,
                filter: &AuditFilter,
                after: Option<&AuditCursor>,
                is_ascending: bool,
                limit: usize,
            ) -> Result<Vec<(AuditCursor, AuditRecord)>, StoreError> {
                let (mut sql, copies) = audit_page_sql(tenant, filter, after, is_ascending, limit, record_copies($backend));
                if $backend == Backend::Sqlite {
                    // The SQLite driver hands rows over from its worker thread one at a time, a
                    // thread wake-up each; the page comes back as one row instead.
                    sql.text = format!("SELECT group_concat(page.seq || char(31) || page.activity_date_time || char(31) || page.record, char(30)) FROM ({}) page", sql.text);
                    let page: Option<String> = bind_args!(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.text)), sql.args).fetch_one(&self.pool).await?;
                    return audit_json::page(page.as_deref().unwrap_or_default(), is_ascending, copies.then_some(tenant));
                }
                let rows = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args).fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|row| {
                        let cursor = AuditCursor { activity_date_time: row.try_get(1)?, seq: row.try_get(0)? };
                        Ok((cursor, audit_json::from_json(&row.try_get::<String, _>(2)?)?))
                    })
                    .collect()
            }

            async fn optimize(&self) -> Result<(), StoreError> {
                if matches!($backend, Backend::Sqlite) {
                    // Bounded work per index (analysis_limit), as SQLite recommends for periodic runs.
                    let mut conn = self.pool.acquire().await?;
                    sqlx::query("PRAGMA analysis_limit = 1000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA optimize = 0x10002").execute(&mut *conn).await?;
                } else {
                    // Autovacuum analyzes tables eventually; a bulk load (an import, a restored
                    // backup) can leave the planner without statistics until then, and without them
                    // it walks the whole audit log for one target's records. ANALYZE samples a
                    // bounded number of rows per table and takes no lock that blocks writers. Only
                    // Keyward's own schema: a database-wide ANALYZE warns about every system
                    // catalog a non-superuser may not analyze.
                    sqlx::raw_sql(
                        "DO $$ DECLARE t record; BEGIN \
                         FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP \
                         EXECUTE format('ANALYZE %I', t.tablename); END LOOP; END $$",
                    )
                    .execute(&self.pool)
                    .await
                    ?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl Tx for $tx {
            async fn commit(self: Box<Self>) -> Result<(), StoreError> {
                self.0.commit().await.map_err(db)
            }
        }

        impl $tx {
            /// The key for the next copy of `target`'s records (see [`COPY_BLOCK_BITS`]), given
            /// the keys this call has already handed out.
            async fn take_copy_key(&mut self, tenant: &str, target: &str, keys: &mut CopyKeys) -> Result<i64, StoreError> {
                let next = match keys.last.get(target) {
                    Some(&key) => next_copy_key(Some(key)),
                    None => {
                        if !keys.stored.contains_key(target) {
                            self.look_up_copy_blocks(tenant, &[target.to_owned()], keys).await?;
                        }
                        next_copy_key(keys.stored.get(target).copied().flatten())
                    }
                };
                let key = match next {
                    Some(key) => key,
                    None => {
                        let block = match keys.new_block {
                            Some(block) => block + 1,
                            None => {
                                let largest: Option<i64> = sqlx::query_scalar("SELECT max(key) FROM audit_copies")
                                    .fetch_one(&mut *self.0)
                                    .await
                                    ?;
                                (largest.unwrap_or(0) >> COPY_BLOCK_BITS) + 1
                            }
                        };
                        keys.new_block = Some(block);
                        block
                            .checked_mul(1 << COPY_BLOCK_BITS)
                            .ok_or_else(|| StoreError::Other("the audit log has used up its copy keys".into()))?
                    }
                };
                keys.last.insert(target.to_owned(), key);
                Ok(key)
            }

            /// Looks up the largest key in the block of each target's newest stored copy, for the
            /// targets not looked up yet, a statement per 200 targets (after a block fills, the
            /// newest by time could sit in the old block only if times went backwards: then the
            /// target starts a new block early, which wastes keys but never reuses one).
            async fn look_up_copy_blocks(&mut self, tenant: &str, targets: &[String], keys: &mut CopyKeys) -> Result<(), StoreError> {
                let mut wanted: Vec<&String> = Vec::new();
                for target in targets {
                    if !keys.last.contains_key(target) && !keys.stored.contains_key(target) && !wanted.contains(&target) {
                        wanted.push(target);
                    }
                }
                // SQLite allows 500 terms in a compound SELECT.
                for group in wanted.chunks(200) {
                    let mut sql = Sql::new("");
                    for (n, target) in group.iter().enumerate() {
                        if n > 0 {
                            sql.push(" UNION ALL ");
                        }
                        sql.push(&format!(
                            "SELECT {n}, (SELECT (SELECT max(c.key) FROM audit_copies c \
                             WHERE c.key >= (t.copy_key >> {bits}) << {bits} AND c.key < ((t.copy_key >> {bits}) + 1) << {bits}) \
                             FROM audit_targets t WHERE t.tenant_id = ",
                            bits = COPY_BLOCK_BITS
                        ));
                        sql.arg(Arg::Text(tenant.to_owned()));
                        sql.push(" AND t.target_id = ");
                        sql.arg(Arg::Text((*target).clone()));
                        sql.push(" ORDER BY t.activity_date_time DESC, t.audit_seq DESC LIMIT 1)");
                    }
                    let found: Vec<(i64, Option<i64>)> =
                        bind_args!(sqlx::query_as(sqlx::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                    for (n, largest) in found {
                        let target = usize::try_from(n).ok().and_then(|n| group.get(n)).ok_or_else(|| StoreError::Other("copy key lookup".into()))?;
                        keys.stored.insert((*target).clone(), largest);
                    }
                }
                Ok(())
            }

            fn user_from_row(row: &<$db as sqlx::Database>::Row) -> Result<User, StoreError> {
                Ok(User {
                    id: oid(&row.try_get::<String, _>(0)?)?,
                    tenant_id: oid(&row.try_get::<String, _>(1)?)?,
                    user_principal_name: row.try_get(2)?,
                    display_name: row.try_get(3)?,
                    given_name: row.try_get(4)?,
                    surname: row.try_get(5)?,
                    mail: row.try_get(6)?,
                    mail_nickname: row.try_get(7)?,
                    other_mails: Vec::new(),
                    mobile_phone: row.try_get(8)?,
                    business_phones: Vec::new(),
                    job_title: row.try_get(9)?,
                    department: row.try_get(10)?,
                    usage_location: row.try_get(11)?,
                    account_enabled: row.try_get(12)?,
                    created: parse_ts(&row.try_get::<String, _>(13)?)?,
                    sign_in_sessions_valid_from: parse_ts(&row.try_get::<String, _>(14)?)?,
                    force_change_password_next_sign_in: row.try_get(15)?,
                })
            }

            fn group_from_row(row: &<$db as sqlx::Database>::Row) -> Result<Group, StoreError> {
                Ok(Group {
                    id: oid(&row.try_get::<String, _>(0)?)?,
                    tenant_id: oid(&row.try_get::<String, _>(1)?)?,
                    display_name: row.try_get(2)?,
                    description: row.try_get(3)?,
                    mail_nickname: row.try_get(4)?,
                    mail_enabled: row.try_get(5)?,
                    security_enabled: row.try_get(6)?,
                    is_assignable_to_role: row.try_get(7)?,
                    group_types: group_types_from(&row.try_get::<String, _>(8)?),
                    created: parse_ts(&row.try_get::<String, _>(9)?)?,
                })
            }

            fn assignment_from_row(row: &<$db as sqlx::Database>::Row) -> Result<RoleAssignment, StoreError> {
                Ok(RoleAssignment {
                    id: row.try_get(0)?,
                    tenant_id: oid(&row.try_get::<String, _>(1)?)?,
                    principal_id: oid(&row.try_get::<String, _>(2)?)?,
                    role_definition_id: row.try_get(3)?,
                    directory_scope_id: row.try_get(4)?,
                    created: parse_ts(&row.try_get::<String, _>(5)?)?,
                })
            }

            fn custom_role_from_row(row: &<$db as sqlx::Database>::Row) -> Result<CustomRole, StoreError> {
                let actions: String = row.try_get(7)?;
                Ok(CustomRole {
                    id: oid(&row.try_get::<String, _>(0)?)?,
                    tenant_id: oid(&row.try_get::<String, _>(1)?)?,
                    display_name: row.try_get(2)?,
                    description: row.try_get(3)?,
                    is_enabled: row.try_get(4)?,
                    template_id: row.try_get(5)?,
                    version: row.try_get(6)?,
                    allowed_resource_actions: actions.lines().map(str::to_owned).collect(),
                    created: parse_ts(&row.try_get::<String, _>(8)?)?,
                })
            }

            fn service_principal_from_row(row: &<$db as sqlx::Database>::Row) -> Result<ServicePrincipal, StoreError> {
                Ok(ServicePrincipal {
                    id: oid(&row.try_get::<String, _>(0)?)?,
                    tenant_id: oid(&row.try_get::<String, _>(1)?)?,
                    app_id: row.try_get(2)?,
                    display_name: row.try_get(3)?,
                    account_enabled: row.try_get(4)?,
                    created: parse_ts(&row.try_get::<String, _>(5)?)?,
                })
            }

            fn unit_from_row(row: &<$db as sqlx::Database>::Row) -> Result<AdministrativeUnit, StoreError> {
                Ok(AdministrativeUnit {
                    id: oid(&row.try_get::<String, _>(0)?)?,
                    tenant_id: oid(&row.try_get::<String, _>(1)?)?,
                    display_name: row.try_get(2)?,
                    description: row.try_get(3)?,
                    is_member_management_restricted: row.try_get(4)?,
                    created: parse_ts(&row.try_get::<String, _>(5)?)?,
                })
            }

            /// Fills in the multi-valued properties of a batch of users.
            async fn load_user_values(&mut self, users: &mut [User]) -> Result<(), StoreError> {
                if users.is_empty() {
                    return Ok(());
                }
                let mut sql = Sql::new("SELECT user_id, kind, value FROM user_values WHERE user_id IN (");
                for (idx, user) in users.iter().enumerate() {
                    if idx > 0 {
                        sql.push(", ");
                    }
                    sql.arg(Arg::Text(user.id.to_string()));
                }
                sql.push(") ORDER BY user_id, kind, position");
                let query = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args);
                let rows = query.fetch_all(&mut *self.0).await?;
                for row in rows {
                    let user_id: String = row.try_get(0)?;
                    let kind: String = row.try_get(1)?;
                    let value: String = row.try_get(2)?;
                    let Some(user) = users.iter_mut().find(|it| it.id.as_str() == user_id) else { continue };
                    match kind.as_str() {
                        "otherMails" => user.other_mails.push(value),
                        "businessPhones" => user.business_phones.push(value),
                        _ => (),
                    }
                }
                Ok(())
            }

            async fn store_user_values(&mut self, user: &User) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM user_values WHERE user_id = $1")
                    .bind(user.id.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                let lists = [("otherMails", &user.other_mails), ("businessPhones", &user.business_phones)];
                for (kind, values) in lists {
                    for (position, value) in values.iter().enumerate() {
                        sqlx::query("INSERT INTO user_values (user_id, kind, position, value, value_lc) VALUES ($1, $2, $3, $4, $5)")
                            .bind(user.id.as_str())
                            .bind(kind)
                            .bind(i64::try_from(position).unwrap_or(i64::MAX))
                            .bind(value)
                            .bind(value.to_lowercase())
                            .execute(&mut *self.0)
                            .await
                            ?;
                    }
                }
                Ok(())
            }

            /// Runs a keyset-paged list query over `table` and returns raw rows plus the next cursor.
            async fn list_rows(
                &mut self,
                table: Table,
                columns: &str,
                tenant: &ObjectId,
                plan: &Plan,
                after: Option<&Cursor>,
            ) -> Result<(Vec<<$db as sqlx::Database>::Row>, Option<u64>), StoreError> {
                let id_col = format!("{}.id", table.name);
                let sort = match &plan.order_by {
                    Some(order) => Some((sort_expr(table, order.property)?, order.is_descending)),
                    None => None,
                };
                let mut sql = Sql::new(&format!("SELECT {columns} FROM {} WHERE {}.tenant_id = ", table.name, table.name));
                sql.arg(Arg::Text(tenant.to_string()));
                push_conditions(&mut sql, table, plan)?;
                let count = if plan.count {
                    let count_text = sql.text.replacen(&format!("SELECT {columns} FROM"), "SELECT COUNT(*) FROM", 1);
                    let query = bind_args!(sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_text)), sql.args.clone());
                    let n: i64 = query.fetch_one(&mut *self.0).await?;
                    Some(u64::try_from(n).unwrap_or(0))
                } else {
                    None
                };
                let is_descending = sort.as_ref().is_some_and(|it| it.1);
                let cmp = if is_descending { "<" } else { ">" };
                if let Some(cursor) = after {
                    // Row-value comparison lets both databases seek in the (sort key, id) index.
                    match &sort {
                        Some((expr, _)) => {
                            sql.push(&format!(" AND ({expr}, {id_col}) {cmp} ("));
                            sql.arg(Arg::Text(cursor.sort_key.clone()));
                            sql.push(", ");
                            sql.arg(Arg::Text(cursor.id.clone()));
                            sql.push(")");
                        }
                        None => {
                            sql.push(&format!(" AND {id_col} {cmp} "));
                            sql.arg(Arg::Text(cursor.id.clone()));
                        }
                    }
                }
                let direction = if is_descending { "DESC" } else { "ASC" };
                match &sort {
                    Some((expr, _)) => sql.push(&format!(" ORDER BY {expr} {direction}, {id_col} {direction}")),
                    None => sql.push(&format!(" ORDER BY {id_col} {direction}")),
                }
                sql.push(&limit_clause(plan.top + 1));
                let query = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args);
                let rows = query.fetch_all(&mut *self.0).await?;
                Ok((rows, count))
            }

            async fn list_refs(
                &mut self,
                sql_text: &'static str,
                group: &ObjectId,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<MemberRef>, StoreError> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{sql_text}{}", limit_clause(limit))))
                    .bind(group.as_str())
                    .bind(after.unwrap_or(""))
                    .fetch_all(&mut *self.0)
                    .await
                    ?;
                rows.iter()
                    .map(|row| {
                        let kind: String = row.try_get(1)?;
                        Ok(MemberRef {
                            id: oid(&row.try_get::<String, _>(0)?)?,
                            kind: ObjectKind::parse(&kind).ok_or_else(|| StoreError::Other(format!("corrupt kind '{kind}'")))?,
                        })
                    })
                    .collect()
            }
        }

        fn next_cursor<T>(items: &mut Vec<T>, plan: &Plan, key: impl Fn(&T) -> (String, String)) -> Option<Cursor> {
            if items.len() <= plan.top {
                return None;
            }
            items.truncate(plan.top);
            items.last().map(|it| {
                let (sort_key, id) = key(it);
                Cursor { sort_key: if plan.order_by.is_some() { sort_key } else { String::new() }, id }
            })
        }

        #[async_trait]
        impl TenantStore for $tx {
            async fn insert_tenant(&mut self, tenant: &Tenant) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO tenants (id, display_name, created_at) VALUES ($1, $2, $3)")
                    .bind(tenant.id.as_str())
                    .bind(&tenant.display_name)
                    .bind(fmt_ts(tenant.created))
                    .execute(&mut *self.0)
                    .await
                    ?;
                for domain in &tenant.domains {
                    sqlx::query("INSERT INTO domains (name, tenant_id, is_default, is_initial) VALUES ($1, $2, $3, $4)")
                        .bind(domain.name.to_lowercase())
                        .bind(tenant.id.as_str())
                        .bind(domain.is_default)
                        .bind(domain.is_initial)
                        .execute(&mut *self.0)
                        .await
                        ?;
                }
                Ok(())
            }

            async fn get_tenant(&mut self, id: &ObjectId) -> Result<Option<Tenant>, StoreError> {
                let row = sqlx::query("SELECT id, display_name, created_at FROM tenants WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    ?;
                let Some(row) = row else { return Ok(None) };
                let domains = sqlx::query("SELECT name, is_default, is_initial FROM domains WHERE tenant_id = $1 ORDER BY name")
                    .bind(id.as_str())
                    .fetch_all(&mut *self.0)
                    .await
                    ?;
                Ok(Some(Tenant {
                    id: oid(&row.try_get::<String, _>(0)?)?,
                    display_name: row.try_get(1)?,
                    created: parse_ts(&row.try_get::<String, _>(2)?)?,
                    domains: domains
                        .iter()
                        .map(|it| {
                            Ok(Domain {
                                name: it.try_get(0)?,
                                is_default: it.try_get(1)?,
                                is_initial: it.try_get(2)?,
                            })
                        })
                        .collect::<Result<_, StoreError>>()?,
                }))
            }

            async fn list_tenants(&mut self) -> Result<Vec<Tenant>, StoreError> {
                let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM tenants ORDER BY created_at, id")
                    .fetch_all(&mut *self.0)
                    .await
                    ?;
                let mut res = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(tenant) = self.get_tenant(&oid(&id)?).await? {
                        res.push(tenant);
                    }
                }
                Ok(res)
            }
        }

        #[async_trait]
        impl UserStore for $tx {
            async fn insert_user(&mut self, user: &User, password_hash: Option<&str>) -> Result<(), StoreError> {
                let query = sqlx::query(
                    "INSERT INTO users (id, tenant_id, upn, upn_lc, display_name, display_name_lc, given_name, given_name_lc, \
                     surname, surname_lc, mail, mail_lc, mail_nickname, mail_nickname_lc, mobile_phone, mobile_phone_lc, \
                     job_title, job_title_lc, department, department_lc, usage_location, usage_location_lc, account_enabled, \
                     created_at, sessions_valid_from, force_change_password, password_hash) VALUES ($1, $2, $3, $4, $5, $6, \
                     $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)",
                );
                bind_user_columns!(query, user).bind(password_hash).execute(&mut *self.0).await?;
                self.store_user_values(user).await
            }

            async fn update_user(&mut self, user: &User) -> Result<(), StoreError> {
                let query = sqlx::query(
                    "UPDATE users SET upn = $3, upn_lc = $4, display_name = $5, display_name_lc = $6, given_name = $7, \
                     given_name_lc = $8, surname = $9, surname_lc = $10, mail = $11, mail_lc = $12, mail_nickname = $13, \
                     mail_nickname_lc = $14, mobile_phone = $15, mobile_phone_lc = $16, job_title = $17, job_title_lc = $18, \
                     department = $19, department_lc = $20, usage_location = $21, usage_location_lc = $22, \
                     account_enabled = $23, created_at = $24, sessions_valid_from = $25, force_change_password = $26 \
                     WHERE id = $1 AND tenant_id = $2",
                );
                let done = bind_user_columns!(query, user).execute(&mut *self.0).await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                self.store_user_values(user).await
            }

            async fn delete_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                let done = sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn get_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<User>, StoreError> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    ?;
                let Some(row) = row else { return Ok(None) };
                let mut users = vec![Self::user_from_row(&row)?];
                self.load_user_values(&mut users).await?;
                Ok(users.pop())
            }

            async fn get_users(&mut self, tenant: &ObjectId, ids: &[ObjectId]) -> Result<Vec<User>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut sql = Sql::new(&format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = "));
                sql.arg(Arg::Text(tenant.to_string()));
                push_id_list(&mut sql, "users.id", ids);
                let rows = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                let mut users = rows.iter().map(Self::user_from_row).collect::<Result<Vec<_>, _>>()?;
                self.load_user_values(&mut users).await?;
                Ok(users)
            }

            async fn find_user_by_upn(&mut self, tenant: &ObjectId, upn: &str) -> Result<Option<User>, StoreError> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND upn_lc = $2");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(upn.to_lowercase())
                    .fetch_optional(&mut *self.0)
                    .await
                    ?;
                let Some(row) = row else { return Ok(None) };
                let mut users = vec![Self::user_from_row(&row)?];
                self.load_user_values(&mut users).await?;
                Ok(users.pop())
            }

            async fn list_users(&mut self, tenant: &ObjectId, plan: &Plan, after: Option<&Cursor>) -> Result<Page<User>, StoreError> {
                let (rows, count) = self.list_rows(USERS, USER_COLUMNS, tenant, plan, after).await?;
                let mut items = rows.iter().map(Self::user_from_row).collect::<Result<Vec<_>, _>>()?;
                let next = next_cursor(&mut items, plan, |user| {
                    let key = match plan.order_by.map(|it| it.property) {
                        Some("createdDateTime") => fmt_ts(user.created),
                        Some("userPrincipalName") => user.user_principal_name.to_lowercase(),
                        Some("givenName") => user.given_name.clone().unwrap_or_default().to_lowercase(),
                        Some("surname") => user.surname.clone().unwrap_or_default().to_lowercase(),
                        Some("mail") => user.mail.clone().unwrap_or_default().to_lowercase(),
                        Some("jobTitle") => user.job_title.clone().unwrap_or_default().to_lowercase(),
                        Some("department") => user.department.clone().unwrap_or_default().to_lowercase(),
                        _ => user.display_name.to_lowercase(),
                    };
                    (key, user.id.to_string())
                });
                self.load_user_values(&mut items).await?;
                Ok(Page { items, next, count })
            }
        }

        #[async_trait]
        impl GroupStore for $tx {
            async fn insert_group(&mut self, group: &Group) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO directory_groups (id, tenant_id, display_name, display_name_lc, description, description_lc, \
                     mail_nickname, mail_nickname_lc, mail_enabled, security_enabled, is_assignable_to_role, group_types_lc, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
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
                .await
                ?;
                Ok(())
            }

            async fn update_group(&mut self, group: &Group) -> Result<(), StoreError> {
                let done = sqlx::query(
                    "UPDATE directory_groups SET display_name = $2, display_name_lc = $3, description = $4, description_lc = $5, \
                     mail_nickname = $6, mail_nickname_lc = $7, security_enabled = $8 WHERE id = $1 AND tenant_id = $9",
                )
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
                .await
                ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn delete_group(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                let done = sqlx::query("DELETE FROM directory_groups WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn get_group(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<Group>, StoreError> {
                let sql = format!("SELECT {GROUP_COLUMNS} FROM directory_groups WHERE tenant_id = $1 AND id = $2");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    ?;
                row.as_ref().map(Self::group_from_row).transpose()
            }

            async fn get_groups(&mut self, tenant: &ObjectId, ids: &[ObjectId]) -> Result<Vec<Group>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut sql = Sql::new(&format!("SELECT {GROUP_COLUMNS} FROM directory_groups WHERE tenant_id = "));
                sql.arg(Arg::Text(tenant.to_string()));
                push_id_list(&mut sql, "directory_groups.id", ids);
                let rows = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                rows.iter().map(Self::group_from_row).collect()
            }

            async fn list_groups(&mut self, tenant: &ObjectId, plan: &Plan, after: Option<&Cursor>) -> Result<Page<Group>, StoreError> {
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
                sqlx::query("INSERT INTO group_members (group_id, member_id, member_kind) VALUES ($1, $2, $3)")
                    .bind(group.as_str())
                    .bind(member.id.as_str())
                    .bind(member.kind.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                Ok(())
            }

            async fn delete_member(&mut self, group: &ObjectId, member: &ObjectId) -> Result<(), StoreError> {
                let done = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND member_id = $2")
                    .bind(group.as_str())
                    .bind(member.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn is_member(&mut self, group: &ObjectId, member: &ObjectId) -> Result<bool, StoreError> {
                let found: Option<String> = sqlx::query_scalar("SELECT member_id FROM group_members WHERE group_id = $1 AND member_id = $2")
                    .bind(group.as_str())
                    .bind(member.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    ?;
                Ok(found.is_some())
            }

            async fn list_members(&mut self, group: &ObjectId, after: Option<&str>, limit: usize) -> Result<Vec<MemberRef>, StoreError> {
                self.list_refs(
                    "SELECT member_id, member_kind FROM group_members WHERE group_id = $1 AND member_id > $2 ORDER BY member_id",
                    group,
                    after,
                    limit,
                )
                .await
            }

            async fn insert_owner(&mut self, group: &ObjectId, owner: &MemberRef) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO group_owners (group_id, owner_id, owner_kind) VALUES ($1, $2, $3)")
                    .bind(group.as_str())
                    .bind(owner.id.as_str())
                    .bind(owner.kind.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                Ok(())
            }

            async fn delete_owner(&mut self, group: &ObjectId, owner: &ObjectId) -> Result<(), StoreError> {
                let done = sqlx::query("DELETE FROM group_owners WHERE group_id = $1 AND owner_id = $2")
                    .bind(group.as_str())
                    .bind(owner.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn is_owner(&mut self, group: &ObjectId, owner: &ObjectId) -> Result<bool, StoreError> {
                let found: Option<String> = sqlx::query_scalar("SELECT owner_id FROM group_owners WHERE group_id = $1 AND owner_id = $2")
                    .bind(group.as_str())
                    .bind(owner.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    ?;
                Ok(found.is_some())
            }

            async fn list_owners(&mut self, group: &ObjectId, after: Option<&str>, limit: usize) -> Result<Vec<MemberRef>, StoreError> {
                self.list_refs(
                    "SELECT owner_id, owner_kind FROM group_owners WHERE group_id = $1 AND owner_id > $2 ORDER BY owner_id",
                    group,
                    after,
                    limit,
                )
                .await
            }

            async fn list_member_of(&mut self, member: &ObjectId, after: Option<&str>, limit: usize) -> Result<Vec<ObjectId>, StoreError> {
                let ids: Vec<String> = sqlx::query_scalar(
                    sqlx::AssertSqlSafe(format!("SELECT group_id FROM group_members WHERE member_id = $1 AND group_id > $2 ORDER BY group_id{}", limit_clause(limit))),
                )
                .bind(member.as_str())
                .bind(after.unwrap_or(""))
                .fetch_all(&mut *self.0)
                .await
                ?;
                ids.iter().map(|it| oid(it)).collect()
            }

            async fn delete_memberships_of(&mut self, object: &ObjectId) -> Result<(), StoreError> {
                for sql in [
                    "DELETE FROM group_members WHERE member_id = $1",
                    "DELETE FROM group_owners WHERE owner_id = $1",
                    "DELETE FROM administrative_unit_members WHERE member_id = $1",
                ] {
                    sqlx::query(sql).bind(object.as_str()).execute(&mut *self.0).await?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl ServicePrincipalStore for $tx {
            async fn insert_service_principal(&mut self, principal: &ServicePrincipal) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO service_principals (id, tenant_id, app_id, display_name, display_name_lc, account_enabled, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(principal.id.as_str())
                .bind(principal.tenant_id.as_str())
                .bind(&principal.app_id)
                .bind(&principal.display_name)
                .bind(principal.display_name.to_lowercase())
                .bind(principal.account_enabled)
                .bind(fmt_ts(principal.created))
                .execute(&mut *self.0)
                .await
                ?;
                Ok(())
            }

            async fn get_service_principal(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<ServicePrincipal>, StoreError> {
                Ok(self.get_service_principals(tenant, std::slice::from_ref(id)).await?.pop())
            }

            async fn find_service_principal(&mut self, tenant: &ObjectId, app_id: &str) -> Result<Option<ServicePrincipal>, StoreError> {
                let sql = format!("SELECT {SERVICE_PRINCIPAL_COLUMNS} FROM service_principals WHERE tenant_id = $1 AND app_id = $2");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(app_id.to_lowercase())
                    .fetch_optional(&mut *self.0)
                    .await
                    ?;
                row.as_ref().map(Self::service_principal_from_row).transpose()
            }

            async fn get_service_principals(&mut self, tenant: &ObjectId, ids: &[ObjectId]) -> Result<Vec<ServicePrincipal>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut sql = Sql::new(&format!("SELECT {SERVICE_PRINCIPAL_COLUMNS} FROM service_principals WHERE tenant_id = "));
                sql.arg(Arg::Text(tenant.to_string()));
                push_id_list(&mut sql, "id", ids);
                let rows = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                rows.iter().map(Self::service_principal_from_row).collect()
            }

            async fn list_service_principals(&mut self, tenant: &ObjectId, after: Option<&str>, limit: usize) -> Result<Vec<ServicePrincipal>, StoreError> {
                let sql = format!("SELECT {SERVICE_PRINCIPAL_COLUMNS} FROM service_principals WHERE tenant_id = $1 AND id > $2 ORDER BY id{}", limit_clause(limit));
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(after.unwrap_or(""))
                    .fetch_all(&mut *self.0)
                    .await
                    ?;
                rows.iter().map(Self::service_principal_from_row).collect()
            }

            async fn delete_service_principal(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                let done = sqlx::query("DELETE FROM service_principals WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }
        }

        #[async_trait]
        impl RoleStore for $tx {
            async fn insert_role_assignment(&mut self, assignment: &RoleAssignment) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO role_assignments (id, tenant_id, principal_id, role_definition_id, directory_scope_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&assignment.id)
                .bind(assignment.tenant_id.as_str())
                .bind(assignment.principal_id.as_str())
                .bind(assignment.role_definition_id.to_lowercase())
                .bind(&assignment.directory_scope_id)
                .bind(fmt_ts(assignment.created))
                .execute(&mut *self.0)
                .await
                ?;
                Ok(())
            }

            async fn list_role_assignments_for(&mut self, tenant: &ObjectId, principal: &ObjectId) -> Result<Vec<RoleAssignment>, StoreError> {
                let rows = sqlx::query(
                    "SELECT id, tenant_id, principal_id, role_definition_id, directory_scope_id, created_at FROM role_assignments \
                     WHERE tenant_id = $1 AND (principal_id = $2 OR principal_id IN \
                     (SELECT m.group_id FROM group_members m JOIN directory_groups g ON g.id = m.group_id \
                      WHERE m.member_id = $2 AND g.is_assignable_to_role = $3)) ORDER BY id",
                )
                .bind(tenant.as_str())
                .bind(principal.as_str())
                .bind(true)
                .fetch_all(&mut *self.0)
                .await
                ?;
                rows.iter().map(Self::assignment_from_row).collect()
            }

            async fn delete_role_assignments_of(&mut self, principal: &ObjectId) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM role_assignments WHERE principal_id = $1")
                    .bind(principal.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                Ok(())
            }

            async fn insert_administrative_unit(&mut self, unit: &AdministrativeUnit) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO administrative_units (id, tenant_id, display_name, description, is_member_management_restricted, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(unit.id.as_str())
                .bind(unit.tenant_id.as_str())
                .bind(&unit.display_name)
                .bind(&unit.description)
                .bind(unit.is_member_management_restricted)
                .bind(fmt_ts(unit.created))
                .execute(&mut *self.0)
                .await
                ?;
                Ok(())
            }

            async fn list_units_of(&mut self, member: &ObjectId) -> Result<Vec<(ObjectId, bool)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT u.id, u.is_member_management_restricted FROM administrative_unit_members m \
                     JOIN administrative_units u ON u.id = m.unit_id WHERE m.member_id = $1 ORDER BY u.id",
                )
                .bind(member.as_str())
                .fetch_all(&mut *self.0)
                .await
                ?;
                rows.iter().map(|row| Ok((oid(&row.try_get::<String, _>(0)?)?, row.try_get(1)?))).collect()
            }

            async fn list_restricted_units(&mut self, tenant: &ObjectId) -> Result<Vec<ObjectId>, StoreError> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM administrative_units WHERE tenant_id = $1 AND is_member_management_restricted = $2 ORDER BY id",
                )
                .bind(tenant.as_str())
                .bind(true)
                .fetch_all(&mut *self.0)
                .await
                ?;
                ids.iter().map(|it| oid(it)).collect()
            }

            async fn is_in_role_assignable_group(&mut self, user: &ObjectId) -> Result<bool, StoreError> {
                let found: Option<String> = sqlx::query_scalar(
                    "SELECT g.id FROM directory_groups g WHERE g.is_assignable_to_role = $2 AND (\
                     g.id IN (SELECT group_id FROM group_members WHERE member_id = $1) OR \
                     g.id IN (SELECT group_id FROM group_owners WHERE owner_id = $1)) LIMIT 1",
                )
                .bind(user.as_str())
                .bind(true)
                .fetch_optional(&mut *self.0)
                .await
                ?;
                Ok(found.is_some())
            }

            async fn lock_role_changes(&mut self, tenant: &ObjectId) -> Result<(), StoreError> {
                if $backend == Backend::Postgres {
                    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                        .bind(format!("keyward-roles-{tenant}"))
                        .execute(&mut *self.0)
                        .await
                        ?;
                }
                Ok(())
            }

            async fn get_role_assignment(&mut self, tenant: &ObjectId, id: &str) -> Result<Option<RoleAssignment>, StoreError> {
                let row = sqlx::query(
                    "SELECT id, tenant_id, principal_id, role_definition_id, directory_scope_id, created_at FROM role_assignments \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(&mut *self.0)
                .await
                ?;
                row.as_ref().map(Self::assignment_from_row).transpose()
            }

            async fn list_role_assignments(
                &mut self,
                tenant: &ObjectId,
                filter: &AssignmentFilter,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<RoleAssignment>, StoreError> {
                let mut sql = Sql::new(
                    "SELECT id, tenant_id, principal_id, role_definition_id, directory_scope_id, created_at FROM role_assignments \
                     WHERE tenant_id = ",
                );
                sql.arg(Arg::Text(tenant.to_string()));
                if let Some(principal) = &filter.principal_id {
                    sql.push(" AND principal_id = ");
                    sql.arg(Arg::Text(principal.to_string()));
                }
                if let Some(role) = &filter.role_definition_id {
                    sql.push(" AND role_definition_id = ");
                    sql.arg(Arg::Text(role.to_lowercase()));
                }
                if let Some(scope) = &filter.directory_scope_id {
                    sql.push(" AND directory_scope_id = ");
                    sql.arg(Arg::Text(scope.clone()));
                }
                if let Some(after) = after {
                    sql.push(" AND id > ");
                    sql.arg(Arg::Text(after.to_owned()));
                }
                sql.push(&format!(" ORDER BY id{}", limit_clause(limit)));
                let rows = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                rows.iter().map(Self::assignment_from_row).collect()
            }

            async fn delete_role_assignment(&mut self, tenant: &ObjectId, id: &str) -> Result<(), StoreError> {
                let done = sqlx::query("DELETE FROM role_assignments WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id)
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn insert_custom_role(&mut self, role: &CustomRole) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO role_definitions (id, tenant_id, display_name, display_name_lc, description, is_enabled, \
                     template_id, version, allowed_resource_actions, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
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
                .await
                ?;
                Ok(())
            }

            async fn update_custom_role(&mut self, role: &CustomRole) -> Result<(), StoreError> {
                let done = sqlx::query(
                    "UPDATE role_definitions SET display_name = $3, display_name_lc = $4, description = $5, is_enabled = $6, \
                     version = $7, allowed_resource_actions = $8 WHERE id = $1 AND tenant_id = $2",
                )
                .bind(role.id.as_str())
                .bind(role.tenant_id.as_str())
                .bind(&role.display_name)
                .bind(role.display_name.to_lowercase())
                .bind(&role.description)
                .bind(role.is_enabled)
                .bind(&role.version)
                .bind(role.allowed_resource_actions.join("\n"))
                .execute(&mut *self.0)
                .await
                ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn delete_custom_role(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                let done = sqlx::query("DELETE FROM role_definitions WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn get_custom_role(&mut self, tenant: &ObjectId, id: &str) -> Result<Option<CustomRole>, StoreError> {
                let row = sqlx::query(
                    "SELECT id, tenant_id, display_name, description, is_enabled, template_id, version, allowed_resource_actions, \
                     created_at FROM role_definitions WHERE tenant_id = $1 AND (id = $2 OR template_id = $2) \
                     ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1",
                )
                .bind(tenant.as_str())
                .bind(id.to_lowercase())
                .fetch_optional(&mut *self.0)
                .await
                ?;
                row.as_ref().map(Self::custom_role_from_row).transpose()
            }

            async fn list_custom_roles(&mut self, tenant: &ObjectId) -> Result<Vec<CustomRole>, StoreError> {
                let rows = sqlx::query(
                    "SELECT id, tenant_id, display_name, description, is_enabled, template_id, version, allowed_resource_actions, \
                     created_at FROM role_definitions WHERE tenant_id = $1 ORDER BY display_name_lc, id",
                )
                .bind(tenant.as_str())
                .fetch_all(&mut *self.0)
                .await
                ?;
                rows.iter().map(Self::custom_role_from_row).collect()
            }

            async fn get_administrative_unit(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<AdministrativeUnit>, StoreError> {
                let row = sqlx::query(
                    "SELECT id, tenant_id, display_name, description, is_member_management_restricted, created_at \
                     FROM administrative_units WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *self.0)
                .await
                ?;
                row.as_ref().map(Self::unit_from_row).transpose()
            }

            async fn list_administrative_units(&mut self, tenant: &ObjectId, after: Option<&str>, limit: usize) -> Result<Vec<AdministrativeUnit>, StoreError> {
                let rows = sqlx::query(
                    sqlx::AssertSqlSafe(format!(
                        "SELECT id, tenant_id, display_name, description, is_member_management_restricted, created_at \
                     FROM administrative_units WHERE tenant_id = $1 AND id > $2 ORDER BY id{}",
                        limit_clause(limit)
                    ))
                )
                .bind(tenant.as_str())
                .bind(after.unwrap_or(""))
                .fetch_all(&mut *self.0)
                .await
                ?;
                rows.iter().map(Self::unit_from_row).collect()
            }

            async fn update_administrative_unit(&mut self, unit: &AdministrativeUnit) -> Result<(), StoreError> {
                let done = sqlx::query("UPDATE administrative_units SET display_name = $3, description = $4 WHERE id = $1 AND tenant_id = $2")
                    .bind(unit.id.as_str())
                    .bind(unit.tenant_id.as_str())
                    .bind(&unit.display_name)
                    .bind(&unit.description)
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn delete_administrative_unit(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM role_assignments WHERE tenant_id = $1 AND directory_scope_id = $2")
                    .bind(tenant.as_str())
                    .bind(format!("/administrativeUnits/{id}"))
                    .execute(&mut *self.0)
                    .await
                    ?;
                let done = sqlx::query("DELETE FROM administrative_units WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn list_unit_members(&mut self, unit: &ObjectId, after: Option<&str>, limit: usize) -> Result<Vec<MemberRef>, StoreError> {
                self.list_refs(
                    "SELECT member_id, member_kind FROM administrative_unit_members WHERE unit_id = $1 AND member_id > $2 \
                     ORDER BY member_id",
                    unit,
                    after,
                    limit,
                )
                .await
            }

            async fn is_unit_member(&mut self, unit: &ObjectId, member: &ObjectId) -> Result<bool, StoreError> {
                let found: Option<String> = sqlx::query_scalar(
                    "SELECT member_id FROM administrative_unit_members WHERE unit_id = $1 AND member_id = $2",
                )
                .bind(unit.as_str())
                .bind(member.as_str())
                .fetch_optional(&mut *self.0)
                .await
                ?;
                Ok(found.is_some())
            }

            async fn delete_administrative_unit_member(&mut self, unit: &ObjectId, member: &ObjectId) -> Result<(), StoreError> {
                let done = sqlx::query("DELETE FROM administrative_unit_members WHERE unit_id = $1 AND member_id = $2")
                    .bind(unit.as_str())
                    .bind(member.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn insert_administrative_unit_member(&mut self, unit: &ObjectId, member: &MemberRef) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO administrative_unit_members (unit_id, member_id, member_kind) VALUES ($1, $2, $3)")
                    .bind(unit.as_str())
                    .bind(member.id.as_str())
                    .bind(member.kind.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                Ok(())
            }
        }

        #[async_trait]
        impl CredentialStore for $tx {
            async fn get_password_hash(&mut self, user: &ObjectId) -> Result<Option<String>, StoreError> {
                let hash: Option<Option<String>> = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                    .bind(user.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    ?;
                Ok(hash.flatten())
            }

            async fn set_password_hash(&mut self, user: &ObjectId, hash: &str) -> Result<(), StoreError> {
                let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                    .bind(user.as_str())
                    .bind(hash)
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }

            async fn put_temporary_access_pass(&mut self, pass: &TemporaryAccessPass) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM temporary_access_passes WHERE user_id = $1")
                    .bind(pass.user_id.as_str())
                    .execute(&mut *self.0)
                    .await
                    ?;
                sqlx::query(
                    "INSERT INTO temporary_access_passes (id, user_id, pass_sha256, created_at, start_at, lifetime_minutes, \
                     is_usable_once, used_at, ends_at_registration) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(pass.id.as_str())
                .bind(pass.user_id.as_str())
                .bind(&pass.pass_sha256)
                .bind(fmt_ts(pass.created))
                .bind(fmt_ts(pass.start))
                .bind(pass.lifetime_minutes)
                .bind(pass.is_usable_once)
                .bind(pass.used_at.map(fmt_ts))
                .bind(pass.ends_at_registration)
                .execute(&mut *self.0)
                .await
                ?;
                Ok(())
            }

            async fn get_temporary_access_pass(&mut self, user: &ObjectId) -> Result<Option<TemporaryAccessPass>, StoreError> {
                let row = sqlx::query(
                    "SELECT id, user_id, pass_sha256, created_at, start_at, lifetime_minutes, is_usable_once, used_at, \
                     ends_at_registration FROM temporary_access_passes WHERE user_id = $1",
                )
                .bind(user.as_str())
                .fetch_optional(&mut *self.0)
                .await
                ?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(TemporaryAccessPass {
                    id: oid(&row.try_get::<String, _>(0)?)?,
                    user_id: oid(&row.try_get::<String, _>(1)?)?,
                    pass_sha256: row.try_get(2)?,
                    created: parse_ts(&row.try_get::<String, _>(3)?)?,
                    start: parse_ts(&row.try_get::<String, _>(4)?)?,
                    lifetime_minutes: row.try_get(5)?,
                    is_usable_once: row.try_get(6)?,
                    used_at: row.try_get::<Option<String>, _>(7)?.as_deref().map(parse_ts).transpose()?,
                    ends_at_registration: row.try_get(8)?,
                }))
            }
        }

        #[async_trait]
        impl KeyStore for $tx {
            async fn insert_signing_key(&mut self, key: &SigningKey) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, algorithm, sealed_private_key, public_key, created_at, activated_at, retired_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&key.kid)
                .bind(&key.algorithm)
                .bind(&key.sealed_private_key)
                .bind(&key.public_key)
                .bind(fmt_ts(key.created))
                .bind(key.activated.map(fmt_ts))
                .bind(key.retired.map(fmt_ts))
                .execute(&mut *self.0)
                .await
                ?;
                Ok(())
            }

            async fn list_signing_keys(&mut self) -> Result<Vec<SigningKey>, StoreError> {
                let rows = sqlx::query(
                    "SELECT kid, algorithm, sealed_private_key, public_key, created_at, activated_at, retired_at \
                     FROM signing_keys ORDER BY created_at, kid",
                )
                .fetch_all(&mut *self.0)
                .await
                ?;
                let time = |raw: Option<String>| raw.as_deref().map(parse_ts).transpose();
                rows.iter()
                    .map(|row| {
                        Ok(SigningKey {
                            kid: row.try_get(0)?,
                            algorithm: row.try_get(1)?,
                            sealed_private_key: row.try_get(2)?,
                            public_key: row.try_get(3)?,
                            created: parse_ts(&row.try_get::<String, _>(4)?)?,
                            activated: time(row.try_get(5)?)?,
                            retired: time(row.try_get(6)?)?,
                        })
                    })
                    .collect()
            }

            async fn retire_signing_key(&mut self, kid: &str, at: OffsetDateTime) -> Result<(), StoreError> {
                let done = sqlx::query("UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL")
                    .bind(kid)
                    .bind(fmt_ts(at))
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
            }
        }

        #[async_trait]
        impl AuditStore for $tx {
            async fn insert_audit(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
                self.insert_audits(std::slice::from_ref(record)).await
            }

            async fn insert_audits(&mut self, records: &[AuditRecord]) -> Result<(), StoreError> {
                // Rows per INSERT statement: the SQLite driver looks parameters up by name, at a cost
                // that grows with their number, so statements stay small.
                const ROWS_PER_STATEMENT: usize = 40;
                let Some(first) = records.first() else { return Ok(()) };
                let tenant = first.tenant_id.as_str();
                if records.iter().any(|it| it.tenant_id.as_str() != tenant) {
                    return Err(StoreError::Other("one batch of audit records belongs to one tenant".into()));
                }
                // Take the tenant's chain head, locking its row (PostgreSQL) for the rest of the
                // transaction, so records are chained one at a time in commit order. The upsert
                // creates the head on a tenant's first record. Callers write the audit record last,
                // so the lock is held only for the final statements and the commit.
                let (head_index, head_hash): (i64, String) = sqlx::query_as(
                    "INSERT INTO audit_chain_heads (tenant_id, chain_index, hash) VALUES ($1, 0, $2) \
                     ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = excluded.tenant_id \
                     RETURNING chain_index, hash",
                )
                .bind(tenant)
                .bind(audit_chain::to_hex(&audit_chain::GENESIS))
                .fetch_one(&mut *self.0)
                .await
                ?;
                let corrupt = || StoreError::Other("corrupt audit chain head".into());
                let mut at = ChainPosition {
                    index: u64::try_from(head_index).map_err(|_| corrupt())?,
                    hash: audit_chain::from_hex(&head_hash).ok_or_else(corrupt)?,
                };
                // Each record's id, time, targets and (SQLite: the copy its target rows keep) canonical form.
                let mut indexed: Vec<Indexed> = Vec::with_capacity(records.len());
                let mut copy_keys = CopyKeys::default();
                for chunk in records.chunks(ROWS_PER_STATEMENT) {
                    let mut sql = Sql::new(
                        "INSERT INTO audit_records (id, tenant_id, activity_date_time, correlation_id, category, \
                         activity_display_name, activity_display_name_lc, logged_by_service, result, initiator_id, \
                         initiator_upn_lc, initiator_app_id, record, chain_index, prev_hash, hash) VALUES ",
                    );
                    for (n, record) in chunk.iter().enumerate() {
                        let columns = audit_json::columns(record);
                        let canonical = audit_json::to_json(record);
                        let copy = (record_copies($backend) && !columns.targets.is_empty()).then(|| audit_json::copy_json(record));
                        let prev_hash = audit_chain::to_hex(&at.hash);
                        at = at.append(tenant, &canonical);
                        let index = i64::try_from(at.index).map_err(|_| StoreError::Other("audit chain overflow".into()))?;
                        sql.push(if n == 0 { "(" } else { ", (" });
                        let values = [
                            Arg::Text(record.id.clone()),
                            Arg::Text(tenant.to_owned()),
                            Arg::Text(columns.activity_date_time.clone()),
                            Arg::Text(columns.correlation_id),
                            Arg::Text(columns.category),
                            Arg::Text(columns.activity_display_name),
                            Arg::Text(columns.activity_display_name_lc),
                            Arg::Text(columns.logged_by_service),
                            Arg::Text(columns.result),
                            Arg::MaybeText(columns.initiator_id),
                            Arg::MaybeText(columns.initiator_upn_lc),
                            Arg::MaybeText(columns.initiator_app_id),
                            Arg::Text(canonical),
                            Arg::Int(index),
                            Arg::Text(prev_hash),
                            Arg::Text(audit_chain::to_hex(&at.hash)),
                        ];
                        for (k, value) in values.into_iter().enumerate() {
                            if k > 0 {
                                sql.push(", ");
                            }
                            sql.arg(value);
                        }
                        sql.push(")");
                        indexed.push(Indexed {
                            id: record.id.clone(),
                            at: columns.activity_date_time.clone(),
                            targets: columns.targets,
                            copy,
                        });
                    }
                    sql.push(" RETURNING seq, id");
                    let rows: Vec<(i64, String)> = bind_args!(sqlx::query_as(sqlx::AssertSqlSafe(sql.text)), sql.args)
                        .fetch_all(&mut *self.0)
                        .await
                        ?;
                    let seqs: std::collections::HashMap<String, i64> = rows.into_iter().map(|(seq, id)| (id, seq)).collect();
                    let mut sql = Sql::new(if record_copies($backend) {
                        "INSERT INTO audit_targets (tenant_id, audit_seq, activity_date_time, target_id, target_upn_lc, copy_key) VALUES "
                    } else {
                        "INSERT INTO audit_targets (tenant_id, audit_seq, activity_date_time, target_id, target_upn_lc) VALUES "
                    });
                    let mut copies = Sql::new("INSERT INTO audit_copies (key, record) VALUES ");
                    // The records' trigger may have started initiator blocks since the last chunk.
                    copy_keys.new_block = None;
                    let owners: Vec<String> = indexed
                        .iter()
                        .filter(|it| it.copy.is_some())
                        .flat_map(|it| it.targets.iter().map(|(id, _)| id.clone()))
                        .collect();
                    self.look_up_copy_blocks(tenant, &owners, &mut copy_keys).await?;
                    let mut is_first = true;
                    for Indexed { id, at: at_time, targets: record_targets, copy } in indexed.drain(..) {
                        let seq = *seqs.get(&id).ok_or_else(|| StoreError::Other("audit insert lost a row".into()))?;
                        for (target_id, target_upn) in record_targets {
                            let copy_key = match &copy {
                                Some(copy) => {
                                    let key = self.take_copy_key(tenant, &target_id, &mut copy_keys).await?;
                                    copies.push(if copies.args.is_empty() { "(" } else { ", (" });
                                    copies.arg(Arg::Int(key));
                                    copies.push(", ");
                                    copies.arg(Arg::Text(copy.clone()));
                                    copies.push(")");
                                    Some(key)
                                }
                                None => None,
                            };
                            sql.push(if is_first { "(" } else { ", (" });
                            is_first = false;
                            sql.arg(Arg::Text(tenant.to_owned()));
                            sql.push(", ");
                            sql.arg(Arg::Int(seq));
                            sql.push(", ");
                            sql.arg(Arg::Text(at_time.clone()));
                            sql.push(", ");
                            sql.arg(Arg::Text(target_id));
                            sql.push(", ");
                            sql.arg(Arg::MaybeText(target_upn));
                            if let Some(key) = copy_key {
                                sql.push(", ");
                                sql.arg(Arg::Int(key));
                            }
                            sql.push(")");
                        }
                    }
                    if !is_first {
                        bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args)
                            .execute(&mut *self.0)
                            .await
                            ?;
                    }
                    if !copies.args.is_empty() {
                        bind_args!(sqlx::query(sqlx::AssertSqlSafe(copies.text)), copies.args)
                            .execute(&mut *self.0)
                            .await
                            ?;
                    }
                }
                sqlx::query("UPDATE audit_chain_heads SET chain_index = $2, hash = $3 WHERE tenant_id = $1")
                    .bind(tenant)
                    .bind(i64::try_from(at.index).map_err(|_| StoreError::Other("audit chain overflow".into()))?)
                    .bind(audit_chain::to_hex(&at.hash))
                    .execute(&mut *self.0)
                    .await
                    ?;
                Ok(())
            }

            async fn audit_checkpoint(&mut self, tenant: &str) -> Result<Checkpoint, StoreError> {
                let row: Option<(i64, String, String, String)> = sqlx::query_as(
                    "SELECT chain_index, hash, cut_before, signature FROM audit_checkpoints WHERE tenant_id = $1",
                )
                .bind(tenant)
                .fetch_optional(&mut *self.0)
                .await
                ?;
                row.map_or(Ok(Checkpoint { position: ChainPosition::START, cut_before: String::new(), signature: String::new() }), checkpoint_from_row)
            }

            async fn lock_audit_checkpoint(&mut self, tenant: &str) -> Result<Checkpoint, StoreError> {
                let row: (i64, String, String, String) = sqlx::query_as(
                    "INSERT INTO audit_checkpoints (tenant_id, chain_index, hash, cut_before, signature) VALUES ($1, 0, $2, '', '') \
                     ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = excluded.tenant_id \
                     RETURNING chain_index, hash, cut_before, signature",
                )
                .bind(tenant)
                .bind(audit_chain::to_hex(&audit_chain::GENESIS))
                .fetch_one(&mut *self.0)
                .await
                ?;
                checkpoint_from_row(row)
            }

            async fn set_audit_checkpoint(&mut self, tenant: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
                sqlx::query("UPDATE audit_checkpoints SET chain_index = $2, hash = $3, cut_before = $4, signature = $5 WHERE tenant_id = $1")
                    .bind(tenant)
                    .bind(i64::try_from(checkpoint.position.index).map_err(|_| StoreError::Other("audit chain overflow".into()))?)
                    .bind(audit_chain::to_hex(&checkpoint.position.hash))
                    .bind(&checkpoint.cut_before)
                    .bind(&checkpoint.signature)
                    .execute(&mut *self.0)
                    .await
                    ?;
                Ok(())
            }

            async fn first_audit_since(&mut self, tenant: &str, after: i64, at: OffsetDateTime) -> Result<Option<i64>, StoreError> {
                sqlx::query_scalar(
                    "SELECT chain_index FROM audit_records WHERE tenant_id = $1 AND chain_index > $2 \
                     AND activity_date_time >= $3 ORDER BY chain_index LIMIT 1",
                )
                .bind(tenant)
                .bind(after)
                .bind(fmt_ts(at))
                .fetch_optional(&mut *self.0)
                .await
                .map_err(db)
            }

            async fn audit_chain_head(&mut self, tenant: &str) -> Result<Option<ChainPosition>, StoreError> {
                let row: Option<(i64, String)> =
                    sqlx::query_as("SELECT chain_index, hash FROM audit_chain_heads WHERE tenant_id = $1")
                        .bind(tenant)
                        .fetch_optional(&mut *self.0)
                        .await
                        ?;
                Ok(row.and_then(|(index, hash)| chain_position(Some(index), Some(&hash))))
            }

            async fn delete_audit_range(&mut self, tenant: &str, after: i64, through: i64) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM audit_records WHERE tenant_id = $1 AND chain_index > $2 AND chain_index <= $3")
                    .bind(tenant)
                    .bind(after)
                    .bind(through)
                    .execute(&mut *self.0)
                    .await
                    ?;
                Ok(done.rows_affected())
            }

            async fn audit_retention(&mut self, tenant: &str) -> Result<(i64, String), StoreError> {
                let row: Option<(i64, String)> = sqlx::query_as(
                    "SELECT CAST(audit_retention_days AS BIGINT), audit_retention_mac FROM tenants WHERE id = $1",
                )
                .bind(tenant)
                .fetch_optional(&mut *self.0)
                .await
                ?;
                Ok(row.unwrap_or((DEFAULT_AUDIT_RETENTION_DAYS, String::new())))
            }

            async fn set_audit_retention(&mut self, tenant: &str, days: i64, mac: &str) -> Result<(), StoreError> {
                let done = sqlx::query("UPDATE tenants SET audit_retention_days = $2, audit_retention_mac = $3 WHERE id = $1")
                    .bind(tenant)
                    .bind(i32::try_from(days).map_err(|_| StoreError::Other("retention out of range".into()))?)
                    .bind(mac)
                    .execute(&mut *self.0)
                    .await
                    ?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Other(format!("no tenant {tenant}")));
                }
                Ok(())
            }

            async fn audit_stray_row(&mut self, tenant: &str) -> Result<Option<i64>, StoreError> {
                if !record_copies($backend) {
                    // PostgreSQL's queries by target join each record of the tenant.
                    return Ok(None);
                }
                let mut first: Option<i64> = None;
                for (table, index) in [("audit_targets", "audit_targets_seq"), ("audit_initiators", "audit_initiators_seq")] {
                    // In record order (the seq index), so the records are read front to back, not a page each.
                    let stray: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT t.audit_seq FROM {table} t INDEXED BY {index} WHERE t.tenant_id = $1 \
                         AND NOT EXISTS (SELECT 1 FROM audit_records r WHERE r.seq = t.audit_seq AND r.tenant_id = $1) \
                         ORDER BY t.audit_seq LIMIT 1"
                    )))
                    .bind(tenant)
                    .fetch_optional(&mut *self.0)
                    .await
                    ?;
                    first = first.into_iter().chain(stray).min();
                }
                Ok(first)
            }

            async fn audit_chain_tenants(&mut self) -> Result<Vec<(String, Option<ChainPosition>)>, StoreError> {
                let initiators = if record_copies($backend) {
                    "OR EXISTS (SELECT 1 FROM audit_initiators x WHERE x.tenant_id = tenants.id)"
                } else {
                    ""
                };
                let rows: Vec<(String, Option<i64>, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    // Every tenant (so a deleted head is noticed) without scanning the records.
                    "SELECT t.tenant_id, h.chain_index, h.hash FROM \
                     (SELECT tenant_id FROM audit_chain_heads UNION SELECT id AS tenant_id FROM tenants \
                      WHERE EXISTS (SELECT 1 FROM audit_records r WHERE r.tenant_id = tenants.id) \
                      OR EXISTS (SELECT 1 FROM audit_targets x WHERE x.tenant_id = tenants.id) {initiators}) t \
                     LEFT JOIN audit_chain_heads h ON h.tenant_id = t.tenant_id ORDER BY t.tenant_id"
                )))
                .fetch_all(&mut *self.0)
                .await
                ?;
                Ok(rows
                    .into_iter()
                    .map(|(tenant, index, hash)| {
                        let head = chain_position(index, hash.as_deref());
                        (tenant, head)
                    })
                    .collect())
            }

            async fn audit_chain_page(&mut self, tenant: &str, after_index: i64, limit: usize) -> Result<Vec<ChainRow>, StoreError> {
                let rows = sqlx::query(
                    sqlx::AssertSqlSafe(format!(
                        "SELECT seq, id, chain_index, prev_hash, hash, record, activity_date_time, correlation_id, category, \
                     activity_display_name, activity_display_name_lc, logged_by_service, result, initiator_id, \
                     initiator_upn_lc, initiator_app_id FROM audit_records \
                     WHERE tenant_id = $1 AND chain_index > $2 ORDER BY chain_index{}",
                        limit_clause(limit)
                    ))
                )
                .bind(tenant)
                .bind(after_index)
                .fetch_all(&mut *self.0)
                .await
                ?;
                // Each record's target rows, and what else those rows carry (time, tenant, record copy).
                let mut targets: std::collections::HashMap<i64, Vec<(String, Option<String>)>> = std::collections::HashMap::new();
                #[allow(clippy::type_complexity)]
                let mut target_rows: std::collections::HashMap<i64, Vec<(String, String, Option<String>)>> = std::collections::HashMap::new();
                // Each record's initiator rows (SQLite): initiator, time, tenant, record copy.
                #[allow(clippy::type_complexity)]
                let mut initiator_rows: std::collections::HashMap<i64, Vec<(String, String, String, Option<String>)>> =
                    std::collections::HashMap::new();
                if let Some(last) = rows.last() {
                    // The targets of exactly this page's records (not other tenants' in the same seq range).
                    let through: i64 = last.try_get(2)?;
                    let copy = if record_copies($backend) {
                        "(SELECT c.record FROM audit_copies c WHERE c.key = t.copy_key)"
                    } else {
                        "CAST(NULL AS TEXT)"
                    };
                    let found: Vec<(i64, String, Option<String>, String, String, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT t.audit_seq, t.target_id, t.target_upn_lc, t.activity_date_time, t.tenant_id, {copy} FROM audit_records r \
                         CROSS JOIN audit_targets t WHERE r.tenant_id = $1 AND r.chain_index > $2 AND r.chain_index <= $3 \
                         AND t.audit_seq = r.seq"
                    )))
                    .bind(tenant)
                    .bind(after_index)
                    .bind(through)
                    .fetch_all(&mut *self.0)
                    .await
                    ?;
                    for (seq, id, upn, at, target_tenant, copy) in found {
                        targets.entry(seq).or_default().push((id, upn));
                        target_rows.entry(seq).or_default().push((at, target_tenant, copy));
                    }
                    if record_copies($backend) {
                        let found: Vec<(i64, String, String, String, Option<String>)> = sqlx::query_as(
                            "SELECT i.audit_seq, i.initiator_id, i.activity_date_time, i.tenant_id, \
                             (SELECT c.record FROM audit_copies c WHERE c.key = i.copy_key) FROM audit_records r \
                             CROSS JOIN audit_initiators i WHERE r.tenant_id = $1 AND r.chain_index > $2 AND r.chain_index <= $3 \
                             AND i.audit_seq = r.seq",
                        )
                        .bind(tenant)
                        .bind(after_index)
                        .bind(through)
                        .fetch_all(&mut *self.0)
                        .await
                        ?;
                        for (seq, initiator, at, initiator_tenant, copy) in found {
                            initiator_rows.entry(seq).or_default().push((initiator, at, initiator_tenant, copy));
                        }
                    }
                }
                rows.iter()
                    .map(|row| {
                        let seq: i64 = row.try_get(0)?;
                        let canonical: String = row.try_get(5)?;
                        let stored = audit_json::Columns {
                            activity_date_time: row.try_get(6)?,
                            correlation_id: row.try_get(7)?,
                            category: row.try_get(8)?,
                            activity_display_name: row.try_get(9)?,
                            activity_display_name_lc: row.try_get(10)?,
                            logged_by_service: row.try_get(11)?,
                            result: row.try_get(12)?,
                            initiator_id: row.try_get(13)?,
                            initiator_upn_lc: row.try_get(14)?,
                            initiator_app_id: row.try_get(15)?,
                            targets: {
                                let mut it = targets.remove(&seq).unwrap_or_default();
                                it.sort();
                                it
                            },
                        };
                        let id: String = row.try_get(1)?;
                        // Target rows carry the record's time, tenant and (SQLite) a copy of it:
                        // all must agree, or a query by target would show something else.
                        let decoded = audit_json::from_json(&canonical).ok();
                        // A copy must read back as the record, whatever its format.
                        let is_copy = |copy: &str| decoded.as_ref().is_some_and(|record| audit_json::is_copy_of(copy, record));
                        let times_match = target_rows.remove(&seq).unwrap_or_default().iter().all(|(at, target_tenant, copy)| {
                            *at == stored.activity_date_time && target_tenant == tenant && match copy {
                                Some(copy) => is_copy(copy),
                                None => !record_copies($backend),
                            }
                        });
                        // The record's initiator row (SQLite): one, with the record's initiator, time,
                        // tenant and a copy of it, or none when the record has no initiator id.
                        let initiator_matches = !record_copies($backend)
                            || match (initiator_rows.remove(&seq).unwrap_or_default().as_slice(), &stored.initiator_id) {
                                ([], None) => true,
                                ([(initiator, at, initiator_tenant, copy)], Some(expected)) => {
                                    initiator == expected
                                        && *at == stored.activity_date_time
                                        && initiator_tenant == tenant
                                        && copy.as_deref().is_some_and(is_copy)
                                }
                                _ => false,
                            };
                        let columns_match = times_match
                            && initiator_matches
                            && decoded.is_some_and(|record| {
                                record.tenant_id.as_str() == tenant && record.id == id && audit_json::columns(&record) == stored
                            });
                        Ok(ChainRow {
                            seq,
                            id,
                            chain_index: row.try_get(2)?,
                            prev_hash: row.try_get(3)?,
                            hash: row.try_get(4)?,
                            canonical,
                            columns_match,
                        })
                    })
                    .collect()
            }
        }
    };
}

/// Days the audit log keeps records unless the tenant says otherwise (Entra P1).
pub const DEFAULT_AUDIT_RETENTION_DAYS: i64 = 30;

/// A stored chain head, if both parts are present and well-formed.
fn chain_position(index: Option<i64>, hash: Option<&str>) -> Option<ChainPosition> {
    Some(ChainPosition { index: u64::try_from(index?).ok()?, hash: audit_chain::from_hex(hash?)? })
}

fn checkpoint_from_row(
    (index, hash, cut_before, signature): (i64, String, String, String),
) -> Result<Checkpoint, StoreError> {
    let corrupt = || StoreError::Other("corrupt audit checkpoint".into());
    Ok(Checkpoint {
        position: ChainPosition {
            index: u64::try_from(index).map_err(|_| corrupt())?,
            hash: audit_chain::from_hex(&hash).ok_or_else(corrupt)?,
        },
        cut_before,
        signature,
    })
}

mod sqlite_impl {
    use super::*;

    async fn begin_immediate(pool: &sqlx::SqlitePool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// A deferred transaction reads one snapshot in WAL mode.
    async fn begin_deferred(pool: &sqlx::SqlitePool) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        pool.begin().await
    }

    impl_backend!(
        SqliteStore,
        SqliteTx,
        sqlx::Sqlite,
        sqlx::SqlitePool,
        Backend::Sqlite,
        MIGRATIONS_SQLITE,
        begin_immediate,
        begin_deferred
    );
    impl_sign_in_store!(SqliteTx, sqlx::Sqlite, Backend::Sqlite);
    impl_oauth_store!(SqliteTx, sqlx::Sqlite);

    impl SqliteStore {
        /// Opens (creating if missing) a SQLite database in WAL mode with foreign keys on.
        pub(crate) async fn open(url: &str) -> Result<SqliteStore, StoreError> {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                // No memory-mapped reads: a page fault on a mapped page that is not cached reads
                // ahead around it, which made a fully cold lookup by id ~17x slower at 10M records
                // (bench/audit-cluster/measure.py with MMAP=1073741824: 9.3 ms against 0.55 ms).
                .pragma("cache_size", "-65536");
            let pool =
                SqlitePoolOptions::new().max_connections(8).test_before_acquire(false).connect_with(options).await?;
            Self::migrate(&pool).await?;
            Ok(SqliteStore { pool })
        }
    }
}

mod postgres_impl {
    use super::*;

    async fn begin(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        pool.begin().await
    }

    /// Reads see one snapshot (a page and its `@odata.count` agree) and cannot write.
    async fn begin_snapshot(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await
    }

    impl_backend!(
        PostgresStore,
        PostgresTx,
        sqlx::Postgres,
        sqlx::PgPool,
        Backend::Postgres,
        MIGRATIONS_POSTGRES,
        begin,
        begin_snapshot
    );
    impl_sign_in_store!(PostgresTx, sqlx::Postgres, Backend::Postgres);
    impl_oauth_store!(PostgresTx, sqlx::Postgres);

    impl PostgresStore {
        /// Connects to PostgreSQL and applies migrations (serialised by an advisory lock, so
        /// several nodes can start at once).
        pub(crate) async fn open(url: &str) -> Result<PostgresStore, StoreError> {
            let pool =
                PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
            let mut lock_conn = pool.acquire().await?;
            sqlx::query("SELECT pg_advisory_lock(7007001)").execute(&mut *lock_conn).await?;
            let migrated = Self::migrate(&pool).await;
            sqlx::query("SELECT pg_advisory_unlock(7007001)").execute(&mut *lock_conn).await?;
            migrated?;
            Ok(PostgresStore { pool })
        }
    }
}

pub(crate) use postgres_impl::PostgresStore;
pub(crate) use sqlite_impl::SqliteStore;

#[cfg(test)]
mod tests {
    use super::next_copy_key;

    #[test]
    fn a_targets_copy_keys_run_on_in_its_block_and_a_full_block_asks_for_a_new_one() {
        let block = 7_i64 << 32;
        assert_eq!(next_copy_key(None), None, "a target without copies starts a block");
        assert_eq!(next_copy_key(Some(block)), Some(block + 1));
        assert_eq!(next_copy_key(Some(block + 0xffff_fffe)), Some(block + 0xffff_ffff));
        assert_eq!(next_copy_key(Some(block + 0xffff_ffff)), None, "the block's last key was used");
    }
}
