//! The SQLite and PostgreSQL stores. Both are generated from the same SQL: `impl_backend!` here
//! (the store, its transactions, migrations) and one macro per store trait in the sibling files,
//! each expanded once per backend at the end of this file. The two differ only in their
//! connection set-up, their migrations, and what their [`Dialect`] names.

// Each store trait's SQL, as a macro expanded for both backends at the end of this file.
#[macro_use]
mod audit;
#[macro_use]
mod credentials;
#[macro_use]
mod deleted;
#[macro_use]
mod groups;
#[macro_use]
mod keys;
#[macro_use]
mod oauth;
#[macro_use]
mod reports;
#[macro_use]
mod roles;
#[macro_use]
mod outbox;
#[macro_use]
mod pim;
#[macro_use]
mod service_desk;
#[macro_use]
mod bulk;
#[macro_use]
mod signin;
#[macro_use]
mod tenants;
#[macro_use]
mod users;
mod client_cache;
mod direct;
mod kept_users;
mod lite;
mod profile;
mod readers;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keyward_core::agent_limits::AgentLimits;
use keyward_core::audit::AuditRecord;
use keyward_core::audit_chain::{self, ChainPosition, Checkpoint};
use keyward_core::audit_query::{AuditFilter, TextMatch};
use keyward_core::authz::custom::CustomRole;
use keyward_core::directory::{Domain, Group, ObjectKind, ServicePrincipal, Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_core::methods_policy::{CampaignSnooze, MethodsPolicy};
use keyward_core::oauth::DeviceCodeStatus;
use keyward_core::pim::RoleSettings;
use keyward_core::query::Plan;
use keyward_core::registration::{
    IncludedRoles, IncludedTypes, RegisteredMethods, RegistrationCounts, RegistrationFilter, RegistrationOrder,
    SummaryScope,
};
use keyward_core::signin::{
    Amr, Lockout, PerUserMfaState, RememberedDevice, SecondaryMethod, SignInActivity, SignInEventType, SignInPolicy,
    SignInPreferences, SignInRecord, Stage, TapPolicy,
};
use keyward_core::signin_query::SignInFilter;
use sqlx::Row;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use time::OffsetDateTime;

use self::audit::{
    COPY_BLOCK_BITS, CopyKeys, Indexed, RECORD_INSERT, audit_page_sql, chain_position, checkpoint_from_row,
    next_copy_key, push_record_row, stored_index,
};
use self::deleted::Kept;
use self::groups::KEPT_GROUP;
use self::profile::{INSERT_USER, UPDATE_USER, profile_args, read_extra};
use self::reports::{
    ADMIN_SET, METHOD_COUNTS, PRIVILEGED_ADMIN_SET, PROTECTED_SET, SET_COUNTS, SUMS, flag_condition, method_condition,
    push_text_match, registration_source,
};
use self::signin::{ACTIVITY_UPSERT, sign_ins_insert};
use self::users::{HAS_VALUES, KEPT_USER};
use crate::error::{StoreError, db};
use crate::migrate::{CREATE_TABLE, MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE};
use crate::sql::{Arg, GROUPS, Sql, Table, USERS, fmt_ts, limit_clause, parse_ts, push_where, sort_expr};
use crate::{
    AdministrativeUnit, AssignmentFilter, AuditCursor, AuditStore, Backend, ChainRow, CredentialStore, Cursor,
    GroupStore, HeldRoles, KeyStore, MemberRef, Page, PimStore, RoleAssignment, RoleEligibility, RoleScheduleRequest,
    RoleStore, ScheduleKind, ServicePrincipalStore, SigningKey, Store, TemporaryAccessPass, TenantStore, Tx, UserStore,
    audit_json,
};
use crate::{AppCredential, Application, AuthCode, DeviceCode, Grant, OAuthStore, PermissionGrant, RefreshToken};
use crate::{
    BrowserSession, Fido2Method, SignInCursor, SignInStore, SoftwareOathMethod, UserSignInState, WebauthnChallenge,
    sign_in_json,
};
use crate::{BulkItem, BulkJob, BulkStore, CallerVerification};
use crate::{OutboxMessage, OutboxStore, RegistrationRow, ReportStore, ServiceDeskRequest, ServiceDeskStore};
use keyward_core::dual_control::DualControl;

fn opt_ts(raw: Option<String>) -> Result<Option<OffsetDateTime>, StoreError> {
    raw.as_deref().map(parse_ts).transpose()
}

const USER_COLUMNS: &str = concat!(
    "users.id, users.tenant_id, users.upn, users.display_name, ",
    "users.given_name, users.surname, users.mail, users.mail_nickname, ",
    "users.mobile_phone, users.job_title, users.department, ",
    "users.usage_location, users.account_enabled, users.created_at, ",
    "users.sessions_valid_from, users.force_change_password, ",
    // The profile (`profile.rs`, whose test checks this list).
    "users.age_group, users.city, users.company_name, users.consent_provided_for_minor, ",
    "users.country, users.creation_type, users.employee_id, users.employee_type, ",
    "users.external_user_state, users.fax_number, users.office_location, ",
    "users.password_policies, users.postal_code, users.preferred_language, users.state, ",
    "users.street_address, users.user_type, users.employee_hire_date, users.manager_id, ",
    "users.password_changed_at"
);

/// One user by id (`$2`) or by user principal name (`$2`, lowercased), with [`HAS_VALUES`].
static USER_BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {USER_COLUMNS}, {HAS_VALUES} FROM users WHERE tenant_id = $1 AND id = $2")
});
static USER_BY_UPN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {USER_COLUMNS}, {HAS_VALUES} FROM users WHERE tenant_id = $1 AND upn_lc = $2")
});

const SERVICE_PRINCIPAL_COLUMNS: &str = "id, tenant_id, app_id, display_name, account_enabled, created_at";

/// The statements of `Store::find_client`, shared by the pool's reads and the direct reads: an
/// application by `appId` (lowercased), its service principal, its credentials, and the
/// principal's role assignments (`RoleStore::list_role_assignments_for`).
static APPLICATION_BY_APP_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {} FROM applications WHERE tenant_id = $1 AND app_id = $2", oauth::APPLICATION_COLUMNS)
});
static SERVICE_PRINCIPAL_BY_APP_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {SERVICE_PRINCIPAL_COLUMNS} FROM service_principals WHERE tenant_id = $1 AND app_id = $2")
});
/// An application's credentials, from `table`: `application_credentials`, or its deleted copy.
macro_rules! credentials_of {
    ($table:literal) => {
        concat!(
            "SELECT key_id, application_id, display_name, hint, secret_sha256, ",
            "certificate, thumbprint, start_at, end_at FROM ",
            $table,
            " WHERE application_id = $1 ORDER BY start_at, key_id"
        )
    };
}
const CREDENTIALS_OF: &str = credentials_of!("application_credentials");
const DELETED_CREDENTIALS_OF: &str = credentials_of!("deleted_application_credentials");

fn service_principal_from(row: &impl Columns) -> Result<ServicePrincipal, StoreError> {
    Ok(ServicePrincipal {
        id: oid(&row.required("id")?)?,
        tenant_id: oid(&row.required("tenant_id")?)?,
        app_id: row.required("app_id")?,
        display_name: row.required("display_name")?,
        account_enabled: row.flag("account_enabled")?,
        created: parse_ts(&row.required("created_at")?)?,
    })
}

fn credential_from(row: &impl Columns) -> Result<crate::AppCredential, StoreError> {
    let hint = row.text("hint")?;
    let thumbprint = row.text("thumbprint")?;
    Ok(crate::AppCredential {
        key_id: oid(&row.required("key_id")?)?,
        application_id: oid(&row.required("application_id")?)?,
        display_name: row.text("display_name")?,
        secret: row.bytes("secret_sha256")?.map(|it| (it, hint.unwrap_or_default())),
        certificate: row.bytes("certificate")?.map(|it| (it, thumbprint.unwrap_or_default())),
        start: parse_ts(&row.required("start_at")?)?,
        end: parse_ts(&row.required("end_at")?)?,
    })
}

const GROUP_COLUMNS: &str = concat!(
    "directory_groups.id, directory_groups.tenant_id, ",
    "directory_groups.display_name, directory_groups.description, ",
    "directory_groups.mail_nickname, directory_groups.mail_enabled, ",
    "directory_groups.security_enabled, ",
    "directory_groups.is_assignable_to_role, ",
    "directory_groups.group_types_lc, directory_groups.created_at"
);

fn oid(raw: &str) -> Result<ObjectId, StoreError> {
    ObjectId::parse(raw).ok_or_else(|| StoreError::Other(format!("corrupt object id '{raw}'")))
}

/// A row's columns by name, from either driver: sqlx's rows (the pools) and rusqlite's (the
/// direct reads, `direct.rs`), so one decoder serves both.
pub(crate) trait Columns {
    /// A text column, `None` for NULL.
    fn text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// A boolean column.
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
    /// A binary column, `None` for NULL.
    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// A text column that is never NULL.
    fn required(&self, column: &str) -> Result<String, StoreError> {
        self.text(column)?.ok_or_else(|| StoreError::Other(format!("column {column} is unexpectedly NULL")))
    }
}

macro_rules! sqlx_columns {
    ($($row:ty),*) => {$(
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<Option<String>, StoreError> {
                Ok(self.try_get(column)?)
            }

            fn flag(&self, column: &str) -> Result<bool, StoreError> {
                Ok(self.try_get(column)?)
            }

            fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
                Ok(self.try_get(column)?)
            }
        }
    )*};
}
sqlx_columns!(sqlx::sqlite::SqliteRow, sqlx::postgres::PgRow);

// Rows are decoded by column name, so a statement may add columns (a sort key, a password hash)
// or prefix them with their table without changing what is read.
fn user_from(row: &impl Columns) -> Result<User, StoreError> {
    let extra = read_extra(|column| row.text(column))?;
    Ok(User {
        id: oid(&row.required("id")?)?,
        tenant_id: oid(&row.required("tenant_id")?)?,
        user_principal_name: row.required("upn")?,
        display_name: row.required("display_name")?,
        given_name: row.text("given_name")?,
        surname: row.text("surname")?,
        mail: row.text("mail")?,
        mail_nickname: row.required("mail_nickname")?,
        other_mails: Vec::new(),
        mobile_phone: row.text("mobile_phone")?,
        business_phones: Vec::new(),
        job_title: row.text("job_title")?,
        department: row.text("department")?,
        usage_location: row.text("usage_location")?,
        account_enabled: row.flag("account_enabled")?,
        created: parse_ts(&row.required("created_at")?)?,
        sign_in_sessions_valid_from: parse_ts(&row.required("sessions_valid_from")?)?,
        force_change_password_next_sign_in: row.flag("force_change_password")?,
        last_password_change: extra.password_changed,
        manager: extra.manager,
        profile: extra.profile,
    })
}

/// The names of a role assignment's columns, each after `$prefix`.
macro_rules! assignment_column_names {
    ($prefix:literal) => {
        [
            concat!($prefix, "id"),
            concat!($prefix, "tenant_id"),
            concat!($prefix, "principal_id"),
            concat!($prefix, "role_definition_id"),
            concat!($prefix, "directory_scope_id"),
            concat!($prefix, "created_at"),
            concat!($prefix, "start_at"),
            concat!($prefix, "end_at"),
            concat!($prefix, "activated_using"),
        ]
    };
}

/// A role assignment's columns as `role_assignments` names them.
const ASSIGNMENT: [&str; 9] = assignment_column_names!("");
/// A role assignment's columns as `USER_AND_ROLES` names them.
const JOINED_ASSIGNMENT: [&str; 9] = assignment_column_names!("ra_");

/// An assignment from columns named as in `columns` ([`ASSIGNMENT`] or [`JOINED_ASSIGNMENT`]).
fn assignment_from(row: &impl Columns, columns: &[&str; 9]) -> Result<RoleAssignment, StoreError> {
    let [id, tenant_id, principal_id, role_definition_id, directory_scope_id, created, start, end, activated_using] =
        *columns;
    Ok(RoleAssignment {
        id: row.required(id)?,
        tenant_id: oid(&row.required(tenant_id)?)?,
        principal_id: oid(&row.required(principal_id)?)?,
        role_definition_id: row.required(role_definition_id)?,
        directory_scope_id: row.required(directory_scope_id)?,
        created: parse_ts(&row.required(created)?)?,
        start: opt_ts(row.text(start)?)?,
        end: opt_ts(row.text(end)?)?,
        activated_using: row.text(activated_using)?,
    })
}

/// A user's key in a path, as `Store::find_user` takes it: whether it is an object id, and the
/// id in its canonical form or the user principal name lowercased (as `upn_lc` holds it).
fn user_key(key: &str) -> (bool, String) {
    match ObjectId::parse(key) {
        Some(id) => (true, id.to_string()),
        None => (false, key.to_lowercase()),
    }
}

/// A user, the role assignments that apply to them, and whether they have multi-valued
/// properties (not read yet).
type UserRolesValues = (Arc<User>, Vec<RoleAssignment>, bool);

/// `USER_AND_ROLES`'s rows folded: the user (and whether they have multi-valued properties)
/// from the first row that has them, an assignment from each row that has one, in the order of
/// their ids (bytes; the ids are lowercase GUIDs, which every collation orders alike, so this is
/// the order `ASSIGNMENTS_FOR` reads them in).
#[derive(Default)]
struct UserAndRoles {
    user: Option<(User, bool)>,
    assignments: Vec<RoleAssignment>,
}

impl UserAndRoles {
    fn push(&mut self, row: &impl Columns) -> Result<(), StoreError> {
        if self.user.is_none() && row.text("id")?.is_some() {
            self.user = Some((user_from(row)?, row.flag("has_values")?));
        }
        if row.text("ra_id")?.is_some() {
            self.assignments.push(assignment_from(row, &JOINED_ASSIGNMENT)?);
        }
        Ok(())
    }

    /// The user, their assignments, and whether they have values; `None` if there is no user.
    fn finish(mut self) -> Option<UserRolesValues> {
        self.assignments.sort_by(|a, b| a.id.cmp(&b.id));
        self.user.map(|(user, has_values)| (Arc::new(user), self.assignments, has_values))
    }
}

fn lc(value: &Option<String>) -> Option<String> {
    value.as_ref().map(|it| it.to_lowercase())
}

/// Appends `($n, …)`, each value an argument.
fn push_list(sql: &mut Sql, values: impl IntoIterator<Item = String>) {
    sql.push("(");
    for (idx, value) in values.into_iter().enumerate() {
        if idx > 0 {
            sql.push(", ");
        }
        sql.arg(Arg::Text(value));
    }
    sql.push(")");
}

/// Appends ` AND {column} IN ($n, …)`.
fn push_in(sql: &mut Sql, column: &str, values: impl IntoIterator<Item = String>) {
    sql.push(&format!(" AND {column} IN "));
    push_list(sql, values);
}

/// Appends ` AND {column} IN ($n, …)` for object ids.
fn push_id_list(sql: &mut Sql, column: &str, ids: &[ObjectId]) {
    push_in(sql, column, ids.iter().map(ToString::to_string));
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

/// Everything that differs between the two databases beyond their migrations and connection
/// set-up, named once; the shared SQL asks this value instead of testing which backend it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    /// SQLite: maintenance is `PRAGMA optimize`; PostgreSQL: `ANALYZE`.
    pub(crate) is_sqlite: bool,
    /// Audit target rows (schema 8) and initiator rows (schema 9, `audit_initiators`) point at a
    /// copy of their record in `audit_copies`. On SQLite a target's or initiator's copies have
    /// consecutive keys, so its newest records are a few adjacent pages; PostgreSQL tables are
    /// heaps in insertion order, where a copy would sit as scattered as the record itself.
    pub(crate) record_copies: bool,
    /// A page of audit records is fetched as one concatenated row: the SQLite driver hands rows
    /// over from its worker thread one at a time, a thread wake-up each. PostgreSQL sends rows
    /// in a stream; concatenating them there cost more than it saved (an initiator's first 100
    /// records of a day: 0.43 ms against 0.32 ms a query in `pgbench`).
    pub(crate) page_as_one_row: bool,
    /// Rows read for update are locked with `FOR UPDATE` and role changes with a transaction
    /// advisory lock (PostgreSQL); SQLite's write transaction already holds the database's only
    /// write lock.
    pub(crate) row_locks: bool,
}

impl Dialect {
    /// Parameter `n` (from 1) of a statement built at run time with many parameters: `?n` on
    /// SQLite, where `$n` is a named parameter that SQLite finds by comparing its name with every
    /// earlier one's (as it parses the text and again as each value is bound), `$n` on PostgreSQL.
    pub(crate) fn param(self, n: usize) -> String {
        if self.is_sqlite { format!("?{n}") } else { format!("${n}") }
    }

    /// The statement that reads a user and the role assignments that apply to them (see
    /// `roles::USER_AND_ROLES_SPLIT`).
    pub(crate) fn user_and_roles(self) -> &'static str {
        if self.is_sqlite { roles::USER_AND_ROLES_SPLIT.as_str() } else { roles::USER_AND_ROLES_LISTED.as_str() }
    }

    /// A text member of the JSON document in `column` (`path`, dotted), with its ASCII letters
    /// lowercased (SQLite's `lower` folds only those; PostgreSQL's does the same under the `C`
    /// collation): for a condition on what no column holds, compared with ASCII-lowercased values.
    pub(crate) fn json_text_lc(self, column: &str, path: &str) -> String {
        if self.is_sqlite {
            format!("lower(json_extract({column}, '$.{path}'))")
        } else {
            format!("lower(({column}::json #>> '{{{}}}') COLLATE \"C\")", path.replace('.', ","))
        }
    }
}

/// `expr` matches `text` (both lowercase); a prefix with `LIKE`, its own `%`, `_` and `\`
/// escaped. For expressions no index serves (see [`Dialect::json_text_lc`]).
pub(crate) fn push_json_text_match(sql: &mut Sql, expr: &str, text: &TextMatch) {
    match text {
        TextMatch::Equals(value) => {
            sql.push(&format!(" AND {expr} = "));
            sql.arg(Arg::Text(value.clone()));
        }
        TextMatch::StartsWith(prefix) => {
            sql.push(&format!(" AND {expr} LIKE "));
            sql.arg(Arg::Text(format!("{}%", crate::sql::escape_like(prefix))));
            sql.push(" ESCAPE '\\'");
        }
    }
}

impl Backend {
    /// This database's dialect.
    pub(crate) const fn dialect(self) -> Dialect {
        match self {
            Backend::Sqlite => {
                Dialect { is_sqlite: true, record_copies: true, page_as_one_row: true, row_locks: false }
            }
            Backend::Postgres => {
                Dialect { is_sqlite: false, record_copies: false, page_as_one_row: false, row_locks: true }
            }
        }
    }
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

/// How long a PostgreSQL connection may sit unused before it is checked with a round trip when
/// taken (the pool's and the readers' alike).
const CHECK_CONNECTIONS_IDLE_FOR: Duration = Duration::from_millis(500);
/// How long a request waits for a PostgreSQL connection, opening one included (the pool's and
/// the readers' alike).
const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(10);
/// A PostgreSQL connection is replaced once it is this old (the pool's and the readers' alike;
/// sqlx's default).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30 * 60);

macro_rules! impl_backend {
    (
        $store:ident, $tx:ident, $db:ty, $pool:ty, $backend:expr, $migrations:expr, $begin_write:expr,
        $begin_read:expr
    ) => {
        /// A store on this database.
        #[derive(Debug, Clone)]
        pub(crate) struct $store {
            pool: $pool,
            /// Reads on the calling thread (SQLite on a file; `None` otherwise).
            direct: Option<std::sync::Arc<direct::DirectReads>>,
            /// Connections for single-statement reads beside the pool (PostgreSQL; `None` for
            /// SQLite).
            readers: Option<std::sync::Arc<readers::Readers>>,
            /// This node's write transactions one at a time (SQLite; `None` for PostgreSQL).
            writer: Option<WriteGate>,
            /// Write transactions on the calling thread (SQLite on a file; `None` otherwise).
            lite: Option<std::sync::Arc<lite::Writer>>,
            /// The clients this node has read for the token endpoint.
            clients: std::sync::Arc<client_cache::ClientCache>,
        }

        /// A transaction on this database, the time its reads judge role windows by (see
        /// `RoleStore::set_now`), formatted as stored, and its turn at the write gate (given up
        /// once the transaction has ended: see `Drop`), which role-change lock it holds, and the
        /// service-desk policies it has read (see `DeskPolicies`), and the audit records it was
        /// asked to write later (`AuditStore::defer_audit`).
        pub(crate) struct $tx(
            Open<$db>,
            String,
            Option<WriteTurn>,
            RoleLock,
            Option<Box<DeskPolicies>>,
            Vec<AuditRecord>,
        );

        impl $tx {
            fn new(tx: sqlx::Transaction<'static, $db>, turn: Option<WriteTurn>) -> Self {
                $tx(Open::new(tx), fmt_ts(OffsetDateTime::now_utc()), turn, RoleLock::None, None, Vec::new())
            }
        }

        impl Drop for $tx {
            /// A write transaction dropped without commit or rollback (an error, a refusal)
            /// keeps its turn until its rollback has run. sqlx only queues the rollback of a
            /// dropped transaction; a writer let in before it ran would meet a locked database
            /// and sleep in SQLite's busy handler, holding up every writer queued behind it.
            fn drop(&mut self) {
                let (Some(tx), Some(turn)) = (self.0.0.take(), self.2.take()) else { return };
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        runtime.spawn(async move {
                            let _ = tx.rollback().await;
                            drop(turn);
                        });
                    }
                    // No runtime at all: sqlx's queued rollback, as without the gate.
                    Err(_) => drop((tx, turn)),
                }
            }
        }

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
                        concat!(
                            "the database is at schema version {applied} but this Keyward knows only ",
                            "up to {known}; run a newer Keyward (downgrades are not supported)"
                        ),
                        applied = applied,
                        known = known
                    )));
                }
                for migration in $migrations.iter().filter(|it| it.version > applied) {
                    tracing::info!(version = migration.version, name = migration.name, "applying migration");
                    let mut tx = pool.begin().await?;
                    sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
                    sqlx::query(concat!(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, ",
                        "$2, $3)"
                    ))
                    .bind(migration.version)
                    .bind(migration.name)
                    .bind(fmt_ts(OffsetDateTime::now_utc()))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                }
                Ok(())
            }
        }

        impl $store {
            /// This store's turn to write (SQLite's gate; PostgreSQL has none).
            async fn write_turn(&self) -> Result<Option<WriteTurn>, StoreError> {
                match &self.writer {
                    Some(gate) => Ok(Some(gate.turn().await?)),
                    None => Ok(None),
                }
            }

            /// A write transaction on the pool, with its turn at the write gate (if any).
            async fn write_on_pool(&self, turn: Option<WriteTurn>) -> Result<Box<dyn Tx>, StoreError> {
                let begin = $begin_write;
                let tx = begin(&self.pool).await?;
                Ok(Box::new($tx::new(tx, turn)))
            }

            /// The user again, with their multi-valued properties, from one snapshot: the row read
            /// alone and the values read by a second statement could straddle an update that
            /// changed both. Only for users who have values (few do). `None` if the user is gone.
            async fn reread_with_values(&self, user: &User) -> Result<Option<User>, StoreError> {
                let begin = $begin_read;
                let mut tx = $tx::new(begin(&self.pool).await?, None);
                tx.get_user(&user.tenant_id, &user.id).await
            }

            /// `user` as read (shared, when a direct connection keeps it), or read again with
            /// their values when their row said they have some (`reread_with_values`). `None` if
            /// the user is gone.
            async fn whole_user(&self, user: Arc<User>, has_values: bool) -> Result<Option<Arc<User>>, StoreError> {
                if has_values { Ok(self.reread_with_values(&user).await?.map(Arc::new)) } else { Ok(Some(user)) }
            }

            /// An application as the token endpoint reads it, from one snapshot, kept by this node
            /// under `version`, its tenant's version read before it.
            async fn read_client(
                &self,
                tenant: &ObjectId,
                app_id: &str,
                version: i64,
                now: OffsetDateTime,
            ) -> Result<Option<crate::ClientRecord>, StoreError> {
                let direct = match &self.direct {
                    Some(direct) => direct.client(tenant, app_id, now)?,
                    None => None,
                };
                let found = match direct {
                    Some(found) => found,
                    None => {
                        let begin = $begin_read;
                        let mut tx = $tx::new(begin(&self.pool).await?, None);
                        tx.set_now(now);
                        let Some(application) = tx.find_application(tenant, app_id).await? else { return Ok(None) };
                        let service_principal = tx.find_service_principal(tenant, app_id).await?;
                        let credentials = tx.list_app_credentials(&application.id).await?;
                        let (principal_roles, until) = match &service_principal {
                            Some(principal) => {
                                let roles = tx.list_role_assignments_for(tenant, &principal.id).await?;
                                let until: Option<String> = sqlx::query_scalar(client_cache::CLIENT_CHANGES_AT)
                                    .bind(tenant.as_str())
                                    .bind(principal.id.as_str())
                                    .bind(true)
                                    .bind(fmt_ts(now))
                                    .fetch_one(&mut *tx.0)
                                    .await?;
                                (roles, until.as_deref().map(parse_ts).transpose()?)
                            }
                            None => (Vec::new(), None),
                        };
                        let record =
                            crate::ClientRecord { application, service_principal, credentials, principal_roles };
                        Some((record, until))
                    }
                };
                let Some((record, until)) = found else { return Ok(None) };
                self.clients.put(tenant, app_id, version, now, until, record.clone());
                Ok(Some(record))
            }
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> Backend {
                $backend
            }

            async fn write(&self) -> Result<Box<dyn Tx>, StoreError> {
                let turn = self.write_turn().await?;
                if let Some(lite) = &self.lite
                    && let Some(open) = lite.begin().await?
                {
                    return Ok(Box::new(lite_impl::LiteTx::new(open, turn)));
                }
                self.write_on_pool(turn).await
            }

            async fn write_long(&self) -> Result<Box<dyn Tx>, StoreError> {
                let turn = self.write_turn().await?;
                self.write_on_pool(turn).await
            }

            async fn read(&self) -> Result<Box<dyn Tx>, StoreError> {
                let begin = $begin_read;
                let tx = begin(&self.pool).await?;
                Ok(Box::new($tx::new(tx, None)))
            }

            async fn read_short(&self) -> Result<Box<dyn Tx>, StoreError> {
                if let Some(direct) = &self.direct
                    && let Some(open) = direct.begin()
                {
                    return Ok(Box::new(lite_impl::LiteTx::new(open, None)));
                }
                self.read().await
            }

            async fn schema_version(&self) -> Result<i64, StoreError> {
                let version: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations").fetch_one(&self.pool).await?;
                Ok(version.unwrap_or(0))
            }

            async fn close(&self) {
                if let Some(direct) = &self.direct {
                    direct.close();
                }
                if let Some(lite) = &self.lite {
                    lite.close();
                }
                if let Some(readers) = &self.readers {
                    readers.close().await;
                }
                if let Some(gate) = &self.writer {
                    gate.0.close();
                }
                self.pool.close().await;
            }

            async fn get_user_and_roles(
                &self,
                tenant: &ObjectId,
                id: &ObjectId,
                now: OffsetDateTime,
            ) -> Result<Option<(Arc<User>, Vec<RoleAssignment>)>, StoreError> {
                let direct = match &self.direct {
                    Some(direct) => direct.user_and_roles(tenant, id, now)?,
                    None => None,
                };
                let found = match direct {
                    Some(found) => found,
                    None => {
                        let rows = self
                            .read_all(|| {
                                sqlx::query(sqlx::AssertSqlSafe(DIALECT.user_and_roles()))
                                    .bind(tenant.as_str())
                                    .bind(id.as_str())
                                    .bind(true)
                                    .bind(fmt_ts(now))
                            })
                            .await?;
                        let mut folded = UserAndRoles::default();
                        for row in &rows {
                            folded.push(row)?;
                        }
                        folded.finish()
                    }
                };
                let Some((user, assignments, has_values)) = found else { return Ok(None) };
                Ok(self.whole_user(user, has_values).await?.map(|user| (user, assignments)))
            }

            async fn get_user_and_roles_and_user(
                &self,
                tenant: &ObjectId,
                id: &ObjectId,
                now: OffsetDateTime,
                key: &str,
            ) -> Result<Option<crate::UserRolesAndUser>, StoreError> {
                let (by_id, key) = user_key(key);
                // SQLite: both statements on the request's thread in one read transaction; the
                // pool, if no direct connection answers, reads the caller alone.
                let (caller, other) = if DIALECT.is_sqlite {
                    let direct = match &self.direct {
                        Some(direct) => direct.user_and_roles_and_user(tenant, id, now, &key, by_id)?,
                        None => None,
                    };
                    match direct {
                        Some(Some((caller, other))) => (caller, other),
                        Some(None) => return Ok(None),
                        None => return Ok(self.get_user_and_roles(tenant, id, now).await?.map(|found| (found, None))),
                    }
                } else {
                    let sql = &roles::USER_AND_ROLES_AND_USER[usize::from(!by_id)];
                    let rows = self
                        .read_all(|| {
                            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                                .bind(tenant.as_str())
                                .bind(id.as_str())
                                .bind(true)
                                .bind(fmt_ts(now))
                                .bind(key.as_str())
                        })
                        .await?;
                    let (mut folded, mut other) = (UserAndRoles::default(), None);
                    for row in &rows {
                        if row.flag("is_target")? {
                            other = Some((Arc::new(user_from(row)?), row.flag("has_values")?));
                        } else {
                            folded.push(row)?;
                        }
                    }
                    let Some(caller) = folded.finish() else { return Ok(None) };
                    (caller, other)
                };
                let (user, assignments, has_values) = caller;
                let Some(user) = self.whole_user(user, has_values).await? else { return Ok(None) };
                // A user with multi-valued properties is left for `find_user`, after the caller's
                // checks: nothing more is read for a caller who is then refused.
                let other = match other {
                    Some((_, true)) => None,
                    Some((other, false)) => Some(Some(other)),
                    None => Some(None),
                };
                Ok(Some(((user, assignments), other)))
            }

            async fn find_user(&self, tenant: &ObjectId, key: &str) -> Result<Option<User>, StoreError> {
                let (by_id, key) = user_key(key);
                let direct = match &self.direct {
                    Some(direct) => direct.find_user(tenant, &key, by_id)?,
                    None => None,
                };
                let found = match direct {
                    Some(found) => found,
                    None => {
                        let sql = if by_id { &*USER_BY_ID } else { &*USER_BY_UPN };
                        // At most one row: the key is unique in the tenant.
                        let row = self
                            .read_all(|| {
                                sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(tenant.as_str()).bind(key.as_str())
                            })
                            .await?
                            .pop();
                        row.map(|row| Ok::<_, StoreError>((Arc::new(user_from(&row)?), row.flag("has_values")?)))
                            .transpose()?
                    }
                };
                let Some((user, has_values)) = found else { return Ok(None) };
                // A kept user is copied out here: `find_user`'s callers own what it returns.
                Ok(self.whole_user(user, has_values).await?.map(Arc::unwrap_or_clone))
            }

            async fn find_client(
                &self,
                tenant: &ObjectId,
                app_id: &str,
                now: OffsetDateTime,
            ) -> Result<Option<crate::ClientRecord>, StoreError> {
                let app_id = app_id.to_lowercase();
                // The version first, then the client (see `client_cache`).
                let version = self.client_version(tenant).await?;
                if let Some(kept) = self.clients.get(tenant, &app_id, version, now) {
                    return Ok(Some(kept));
                }
                self.read_client(tenant, &app_id, version, now).await
            }

            async fn kept_client(
                &self,
                tenant: &ObjectId,
                app_id: &str,
                now: OffsetDateTime,
            ) -> Result<Option<(crate::ClientRecord, i64)>, StoreError> {
                let app_id = app_id.to_lowercase();
                if let Some(kept) = self.clients.get_unchecked(tenant, &app_id, now) {
                    return Ok(Some(kept));
                }
                let version = self.client_version(tenant).await?;
                Ok(self.read_client(tenant, &app_id, version, now).await?.map(|it| (it, version)))
            }

            async fn insert_app_sign_ins(
                &self,
                entries: &[(&SignInRecord, Option<i64>)],
            ) -> Result<Option<Vec<bool>>, StoreError> {
                app_sign_ins_at_once(&self.pool, entries).await
            }

            async fn client_version(&self, tenant: &ObjectId) -> Result<i64, StoreError> {
                if let Some(direct) = &self.direct
                    && let Some(version) = direct.client_version(tenant)?
                {
                    return Ok(version);
                }
                let rows = self.read_all(|| sqlx::query(client_cache::CLIENT_VERSION).bind(tenant.as_str())).await?;
                Ok(rows.first().map(|row| row.try_get::<i64, _>(0)).transpose()?.unwrap_or(0))
            }

            async fn get_audit(&self, tenant: &ObjectId, id: &str) -> Result<Option<AuditRecord>, StoreError> {
                let record: Option<String> =
                    sqlx::query_scalar("SELECT record FROM audit_records WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant.as_str())
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
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
                let (mut sql, copies) = audit_page_sql(tenant, filter, after, is_ascending, limit, DIALECT);
                if DIALECT.page_as_one_row {
                    // The SQLite driver hands rows over from its worker thread one at a time, a
                    // thread wake-up each; the page comes back as one row instead.
                    sql.text = format!(
                        concat!(
                            "SELECT group_concat(page.seq || char(31) || page.activity_date_time || ",
                            "char(31) || page.record, char(30)) FROM ({}) page"
                        ),
                        sql.text
                    );
                    let page: Option<String> = bind_args!(sqlx::query_scalar(sqlx::AssertSqlSafe(sql.text)), sql.args)
                        .fetch_one(&self.pool)
                        .await?;
                    return audit_json::page(
                        page.as_deref().unwrap_or_default(),
                        is_ascending,
                        copies.then_some(tenant),
                    );
                }
                let rows =
                    bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.text)), sql.args).fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|row| {
                        let cursor = AuditCursor { activity_date_time: row.try_get(1)?, seq: row.try_get(0)? };
                        Ok((cursor, audit_json::from_json(&row.try_get::<String, _>(2)?)?))
                    })
                    .collect()
            }

            async fn optimize(&self) -> Result<(), StoreError> {
                if DIALECT.is_sqlite {
                    // Analysing writes (the statistics tables): it waits for its turn as writers do.
                    let _turn = self.write_turn().await?;
                    let mut conn = self.pool.acquire().await?;
                    // Users and groups are analysed whole. Sampled, every index that leads with
                    // `tenant_id` looked selective when one tenant holds every row, and the planner
                    // chose such an index over a better one: 300 ms for one
                    // `startswith(displayName,…)` at a million users. Reading every index of
                    // `users` takes about 1.3 s of a core at a million users, holding the write
                    // lock (this server's writers wait at the gate, other processes up to the busy
                    // timeout), so it is done only when the table's rows have changed by a tenth
                    // since its statistics were taken (`needs_analysis`): a server restarted on a
                    // large directory served its first requests beside that analysis, 4 ms at p99
                    // for a read by id. Before `PRAGMA optimize`, which would otherwise sample a
                    // grown table first and leave counts that look current. Memberships and the
                    // audit log, larger and not led by `tenant_id`, stay sampled.
                    sqlx::query("PRAGMA analysis_limit = 0").execute(&mut *conn).await?;
                    for table in ["users", "directory_groups"] {
                        // The rows when last analysed (the largest index's count; none before the
                        // first analysis), and the rows now (a count of the smallest index: about
                        // 60 ms at a million users, against the analysis's 1.3 s).
                        let analysed: Option<i64> =
                            sqlx::query_scalar("SELECT max(CAST(stat AS INTEGER)) FROM sqlite_stat1 WHERE tbl = $1")
                                .bind(table)
                                .fetch_one(&mut *conn)
                                .await
                                .unwrap_or(None);
                        let rows: i64 =
                            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                                .fetch_one(&mut *conn)
                                .await?;
                        if needs_analysis(analysed, rows) {
                            sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}"))).execute(&mut *conn).await?;
                        }
                    }
                    // The rest with bounded work per index (analysis_limit), as SQLite recommends
                    // for periodic runs.
                    sqlx::query("PRAGMA analysis_limit = 1000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA optimize = 0x10002").execute(&mut *conn).await?;
                    // Every other connection, in this process or another, loads statistics only
                    // with the schema, and reloads the schema only when its version changes: a
                    // server started on a small directory kept planning its pooled connections'
                    // statements by the old statistics after an import and this analysis, 300 ms
                    // for one `startswith(displayName,…)` at a million users until restarted. A
                    // table made and dropped changes the schema version, so each reloads both
                    // before its next statement. One transaction, so no table is left behind.
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    sqlx::raw_sql(
                        "DROP TABLE IF EXISTS keyward_reload_statistics; \
                         CREATE TABLE keyward_reload_statistics (x); DROP TABLE keyward_reload_statistics",
                    )
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                } else {
                    // Autovacuum analyzes tables eventually; a bulk load (an import, a restored
                    // backup) can leave the planner without statistics until then, and without them
                    // it walks the whole audit log for one target's records. ANALYZE samples a
                    // bounded number of rows per table and takes no lock that blocks writers. Only
                    // Keyward's own schema: a database-wide ANALYZE warns about every system
                    // catalog a non-superuser may not analyze.
                    sqlx::raw_sql(concat!(
                        "DO $$ DECLARE t record; BEGIN FOR t IN SELECT tablename FROM pg_tables ",
                        "WHERE schemaname = current_schema() LOOP EXECUTE format('ANALYZE %I', ",
                        "t.tablename); END LOOP; END $$"
                    ))
                    .execute(&self.pool)
                    .await?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl Tx for $tx {
            async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
                if !self.5.is_empty() {
                    self.insert_audits(&[]).await?;
                }
                let tx = self.0.take();
                let committed = tx.commit().await.map_err(db);
                // The next writer's turn once this transaction has ended.
                drop(self.2.take());
                committed
            }

            async fn rollback(mut self: Box<Self>) -> Result<(), StoreError> {
                let tx = self.0.take();
                let rolled_back = tx.rollback().await.map_err(db);
                drop(self.2.take());
                rolled_back
            }
        }
    };
}

/// The helpers every transaction type shares (locks, row decoders, paged lists), expanded for the
/// sqlx transactions of both databases and for SQLite's write transactions on rusqlite
/// (`lite.rs`).
macro_rules! impl_tx_helpers {
    ($tx:ident, $db:ty) => {
        impl $tx {
            /// Serialises the transactions that take the lock named `key` until each ends
            /// (PostgreSQL's advisory lock; SQLite's write transactions are serial already).
            async fn advisory_lock(&mut self, key: String) -> Result<(), StoreError> {
                if DIALECT.row_locks {
                    q::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(key).execute(&mut *self.0).await?;
                }
                Ok(())
            }

            /// The tenant's role-change lock in the mode asked, unless this transaction holds it
            /// already (PostgreSQL: advisory locks until the transaction ends; SQLite: only
            /// noted, its write transactions being serial).
            async fn role_lock(&mut self, tenant: &ObjectId, exclusive: bool) -> Result<(), StoreError> {
                let Some(taken) = self.3.to_take(tenant, exclusive) else { return Ok(()) };
                if DIALECT.row_locks {
                    let sql = if exclusive {
                        "SELECT pg_advisory_xact_lock(hashtext($1))"
                    } else {
                        "SELECT pg_advisory_xact_lock_shared(hashtext($1))"
                    };
                    q::query(sql).bind(format!("keyward-roles-{tenant}")).execute(&mut *self.0).await?;
                }
                // A second tenant in one transaction (none does) keeps the first noted.
                if self.3 == RoleLock::None || matches!(&self.3, RoleLock::Shared(held) if held == tenant) {
                    self.3 = taken;
                }
                Ok(())
            }

            /// The one row `sql` finds by tenant (`$1`) and key (`$2`), decoded.
            async fn one_by_key<T>(
                &mut self,
                sql: impl q::SqlSafeStr,
                tenant: &ObjectId,
                key: String,
                decode: fn(&DbRow) -> Result<T, StoreError>,
            ) -> Result<Option<T>, StoreError> {
                let row = q::query(sql).bind(tenant.as_str()).bind(key).fetch_optional(&mut *self.0).await?;
                row.as_ref().map(decode).transpose()
            }

            fn user_from_row(row: &DbRow) -> Result<User, StoreError> {
                user_from(row)
            }

            fn group_from_row(row: &DbRow) -> Result<Group, StoreError> {
                Ok(Group {
                    id: oid(&row.try_get::<String, _>("id")?)?,
                    tenant_id: oid(&row.try_get::<String, _>("tenant_id")?)?,
                    display_name: row.try_get("display_name")?,
                    description: row.try_get("description")?,
                    mail_nickname: row.try_get("mail_nickname")?,
                    mail_enabled: row.try_get("mail_enabled")?,
                    security_enabled: row.try_get("security_enabled")?,
                    is_assignable_to_role: row.try_get("is_assignable_to_role")?,
                    group_types: group_types_from(&row.try_get::<String, _>("group_types_lc")?),
                    created: parse_ts(&row.try_get::<String, _>("created_at")?)?,
                })
            }

            fn assignment_from_row(row: &DbRow) -> Result<RoleAssignment, StoreError> {
                assignment_from(row, &ASSIGNMENT)
            }

            fn eligibility_from_row(row: &DbRow) -> Result<RoleEligibility, StoreError> {
                Ok(RoleEligibility {
                    id: row.try_get("id")?,
                    tenant_id: oid(&row.try_get::<String, _>("tenant_id")?)?,
                    principal_id: oid(&row.try_get::<String, _>("principal_id")?)?,
                    role_definition_id: row.try_get("role_definition_id")?,
                    directory_scope_id: row.try_get("directory_scope_id")?,
                    start: parse_ts(&row.try_get::<String, _>("start_at")?)?,
                    end: opt_ts(row.try_get("end_at")?)?,
                    created_using: row.try_get("created_using")?,
                    created: parse_ts(&row.try_get::<String, _>("created_at")?)?,
                    modified: parse_ts(&row.try_get::<String, _>("modified_at")?)?,
                })
            }

            fn schedule_request_from_row(
                row: &DbRow,
            ) -> Result<RoleScheduleRequest, StoreError> {
                use keyward_core::pim::{Expiration, ScheduleInfo};
                let kind = match row.try_get::<String, _>("kind")?.as_str() {
                    "eligibility" => ScheduleKind::Eligibility,
                    _ => ScheduleKind::Assignment,
                };
                let end = opt_ts(row.try_get("end_at")?)?;
                let duration: Option<String> = row.try_get("duration")?;
                let expiration = match (row.try_get::<String, _>("expiration_type")?.as_str(), end, duration) {
                    ("noExpiration", _, _) => Expiration::NoExpiration,
                    ("afterDateTime", Some(end), _) => Expiration::AfterDateTime(end),
                    ("afterDuration", _, Some(text)) => keyward_core::pim::parse_duration(&text)
                        .map_or(Expiration::NotSpecified, Expiration::AfterDuration),
                    _ => Expiration::NotSpecified,
                };
                Ok(RoleScheduleRequest {
                    id: row.try_get("id")?,
                    tenant_id: oid(&row.try_get::<String, _>("tenant_id")?)?,
                    kind,
                    action: row.try_get("action")?,
                    principal_id: oid(&row.try_get::<String, _>("principal_id")?)?,
                    role_definition_id: row.try_get("role_definition_id")?,
                    directory_scope_id: row.try_get("directory_scope_id")?,
                    justification: row.try_get("justification")?,
                    status: row.try_get("status")?,
                    schedule: ScheduleInfo { start: opt_ts(row.try_get("start_at")?)?, expiration },
                    ticket_number: row.try_get("ticket_number")?,
                    ticket_system: row.try_get("ticket_system")?,
                    target_schedule_id: row.try_get("target_schedule_id")?,
                    created_by: oid(&row.try_get::<String, _>("created_by")?)?,
                    created: parse_ts(&row.try_get::<String, _>("created_at")?)?,
                    completed: opt_ts(row.try_get("completed_at")?)?,
                    review: match row.try_get::<Option<String>, _>("review_result")? {
                        Some(result) => Some(keyward_core::directory::Review {
                            approved: result == "Approve",
                            by: oid(&row.try_get::<String, _>("reviewed_by")?)?,
                            at: parse_ts(&row.try_get::<String, _>("reviewed_at")?)?,
                            justification: row.try_get("review_justification")?,
                        }),
                        None => None,
                    },
                })
            }

            fn role_settings_from_row(
                row: &DbRow,
            ) -> Result<(String, RoleSettings, OffsetDateTime, ObjectId), StoreError> {
                let seconds = |column: &str| -> Result<time::Duration, StoreError> {
                    Ok(time::Duration::seconds(row.try_get::<i64, _>(column)?))
                };
                let approvers: String = row.try_get("approvers")?;
                let settings = RoleSettings {
                    activation_maximum: seconds("activation_maximum_seconds")?,
                    activation_requires_mfa: row.try_get("activation_requires_mfa")?,
                    activation_requires_justification: row.try_get("activation_requires_justification")?,
                    activation_requires_ticket: row.try_get("activation_requires_ticket")?,
                    approval_required: row.try_get("approval_required")?,
                    approvers: approvers.split_whitespace().map(oid).collect::<Result<_, _>>()?,
                    eligibility_expiration_required: row.try_get("eligibility_expiration_required")?,
                    eligibility_maximum: seconds("eligibility_maximum_seconds")?,
                    assignment_expiration_required: row.try_get("assignment_expiration_required")?,
                    assignment_maximum: seconds("assignment_maximum_seconds")?,
                    assignment_requires_justification: row.try_get("assignment_requires_justification")?,
                };
                Ok((
                    row.try_get("role_definition_id")?,
                    settings,
                    parse_ts(&row.try_get::<String, _>("modified_at")?)?,
                    oid(&row.try_get::<String, _>("modified_by")?)?,
                ))
            }

            fn custom_role_from_row(row: &DbRow) -> Result<CustomRole, StoreError> {
                let actions: String = row.try_get("allowed_resource_actions")?;
                Ok(CustomRole {
                    id: oid(&row.try_get::<String, _>("id")?)?,
                    tenant_id: oid(&row.try_get::<String, _>("tenant_id")?)?,
                    display_name: row.try_get("display_name")?,
                    description: row.try_get("description")?,
                    is_enabled: row.try_get("is_enabled")?,
                    template_id: row.try_get("template_id")?,
                    version: row.try_get("version")?,
                    allowed_resource_actions: actions.lines().map(str::to_owned).collect(),
                    created: parse_ts(&row.try_get::<String, _>("created_at")?)?,
                })
            }

            fn service_principal_from_row(row: &DbRow) -> Result<ServicePrincipal, StoreError> {
                service_principal_from(row)
            }

            /// A deleted group and when it was deleted, from a row of `deleted_rows`.
            fn deleted_group_from_row(
                row: &DbRow,
            ) -> Result<(Group, OffsetDateTime), StoreError> {
                Ok((Self::group_from_row(row)?, parse_ts(&row.try_get::<String, _>("deleted_at")?)?))
            }

            fn unit_from_row(row: &DbRow) -> Result<AdministrativeUnit, StoreError> {
                Ok(AdministrativeUnit {
                    id: oid(&row.try_get::<String, _>("id")?)?,
                    tenant_id: oid(&row.try_get::<String, _>("tenant_id")?)?,
                    display_name: row.try_get("display_name")?,
                    description: row.try_get("description")?,
                    is_member_management_restricted: row.try_get("is_member_management_restricted")?,
                    created: parse_ts(&row.try_get::<String, _>("created_at")?)?,
                })
            }

            /// Fills in the multi-valued properties of a batch of users.
            /// Deleted users from rows of `deleted_users` joined with their deletion time, with
            /// their multi-valued properties from the deleted copy.
            async fn deleted_users_from_rows(
                &mut self,
                rows: &[DbRow],
            ) -> Result<Vec<(User, OffsetDateTime)>, StoreError> {
                let mut users = rows.iter().map(Self::user_from_row).collect::<Result<Vec<_>, _>>()?;
                self.load_values_from(&mut users, "deleted_user_values").await?;
                let times = rows.iter().map(|row| parse_ts(&row.try_get::<String, _>("deleted_at")?));
                users.into_iter().zip(times).map(|(user, at)| Ok((user, at?))).collect()
            }

            async fn load_user_values(&mut self, users: &mut [User]) -> Result<(), StoreError> {
                self.load_values_from(users, "user_values").await
            }

            async fn load_values_from(&mut self, users: &mut [User], table: &str) -> Result<(), StoreError> {
                if users.is_empty() {
                    return Ok(());
                }
                let mut sql = Sql::new(&format!("SELECT user_id, kind, value FROM {table} WHERE user_id IN "));
                push_list(&mut sql, users.iter().map(|it| it.id.to_string()));
                sql.push(" ORDER BY user_id, kind, position");
                let query = bind_args!(q::query(q::AssertSqlSafe(sql.text)), sql.args);
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
                q::query("DELETE FROM user_values WHERE user_id = $1")
                    .bind(user.id.as_str())
                    .execute(&mut *self.0)
                    .await?;
                let lists = [("otherMails", &user.other_mails), ("businessPhones", &user.business_phones)];
                for (kind, values) in lists {
                    for (position, value) in values.iter().enumerate() {
                        q::query(concat!(
                            "INSERT INTO user_values (user_id, kind, position, value, value_lc) ",
                            "VALUES ($1, $2, $3, $4, $5)"
                        ))
                        .bind(user.id.as_str())
                        .bind(kind)
                        .bind(i64::try_from(position).unwrap_or(i64::MAX))
                        .bind(value)
                        .bind(value.to_lowercase())
                        .execute(&mut *self.0)
                        .await?;
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
            ) -> Result<(Vec<DbRow>, Option<u64>), StoreError> {
                let id_col = format!("{}.id", table.name);
                let sort = match &plan.order_by {
                    Some(order) => Some((sort_expr(table, order.property)?, order.is_descending)),
                    None => None,
                };
                let mut sql = Sql::new(&format!("SELECT {columns} FROM {} WHERE ", table.name));
                push_where(&mut sql, table, tenant.as_str(), plan)?;
                let count = if plan.count {
                    let count_text = sql.text.replacen(&format!("SELECT {columns} FROM"), "SELECT COUNT(*) FROM", 1);
                    let query =
                        bind_args!(q::query_scalar(q::AssertSqlSafe(count_text)), sql.args.clone());
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
                let query = bind_args!(q::query(q::AssertSqlSafe(sql.text)), sql.args);
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
                let rows = q::query(q::AssertSqlSafe(format!("{sql_text}{}", limit_clause(limit))))
                    .bind(group.as_str())
                    .bind(after.unwrap_or(""))
                    .fetch_all(&mut *self.0)
                    .await?;
                rows.iter()
                    .map(|row| {
                        let kind: String = row.try_get(1)?;
                        Ok(MemberRef {
                            id: oid(&row.try_get::<String, _>(0)?)?,
                            kind: ObjectKind::parse(&kind)
                                .ok_or_else(|| StoreError::Other(format!("corrupt kind '{kind}'")))?,
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
    };
}

/// Days the audit log keeps records unless the tenant says otherwise (Entra P1).
pub const DEFAULT_AUDIT_RETENTION_DAYS: i64 = 30;

/// Whether a table analysed at `analysed` rows (`None`: never) with `rows` now needs its
/// statistics taken again: never analysed, or grown or shrunk by more than a tenth (and 100 rows).
fn needs_analysis(analysed: Option<i64>, rows: i64) -> bool {
    match analysed {
        None => true,
        Some(analysed) => rows.abs_diff(analysed) > (analysed / 10).max(100).unsigned_abs(),
    }
}

/// The tenant role-change lock a transaction holds (see `Tx::lock_role_changes` and
/// `Tx::share_role_changes`). Kept on SQLite too, where the lock itself is not needed, so the
/// tests of both databases catch a use case that asks in the wrong order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoleLock {
    None,
    Shared(ObjectId),
    Exclusive(ObjectId),
}

impl RoleLock {
    /// What a transaction holding `self` must do to hold the lock on `tenant` in the mode asked
    /// (`exclusive`): `None` when it holds it already (an exclusive lock covers a shared one).
    fn to_take(&self, tenant: &ObjectId, exclusive: bool) -> Option<RoleLock> {
        let wanted = if exclusive { RoleLock::Exclusive(tenant.clone()) } else { RoleLock::Shared(tenant.clone()) };
        match self {
            RoleLock::Exclusive(held) if held == tenant => None,
            RoleLock::Shared(held) if held == tenant && !exclusive => None,
            RoleLock::Shared(held) if held == tenant => {
                // Two transactions holding the shared lock that both ask for the exclusive one
                // wait for each other (PostgreSQL ends one of them with a deadlock error after
                // a second). A use case that changes who holds roles takes the exclusive lock
                // before anything it decides on; the tests of both databases run this check.
                debug_assert!(false, "the role-change lock is taken exclusive after shared: take it exclusive first");
                tracing::warn!("the role-change lock was taken exclusive after shared; this may deadlock");
                Some(wanted)
            }
            _ => Some(wanted),
        }
    }
}

/// A tenant's three service-desk policies (caller verification, dual control, per-agent limits),
/// which a service-desk change asks for one after another: the first ask reads all three in one
/// statement and the transaction keeps them until it ends or one of them is written through it.
/// Nothing outlives the transaction, so a policy change counts at the next change on every node.
#[derive(Debug, Clone)]
pub(crate) struct DeskPolicies {
    tenant: ObjectId,
    caller_verification: keyward_core::caller_verification::Policy,
    dual_control: DualControl,
    agent_limits: AgentLimits,
}

/// A transaction until it commits or rolls back; derefs to its connection, as sqlx's transaction
/// does, so statements run on `&mut *self.0`.
pub(crate) struct Open<DB: sqlx::Database>(Option<sqlx::Transaction<'static, DB>>);

impl<DB: sqlx::Database> Open<DB> {
    fn new(tx: sqlx::Transaction<'static, DB>) -> Open<DB> {
        Open(Some(tx))
    }

    /// The transaction, to end it; once only (commit and rollback consume the `Tx`).
    fn take(&mut self) -> sqlx::Transaction<'static, DB> {
        self.0.take().expect("a transaction is ended once")
    }
}

impl<DB: sqlx::Database> std::ops::Deref for Open<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.0.as_deref().expect("the transaction is open")
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for Open<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.0.as_deref_mut().expect("the transaction is open")
    }
}

/// SQLite's write transactions (and the maintenance's analysis), one at a time in this store, in
/// the order they asked.
///
/// SQLite has one writer. Without the gate, a second `BEGIN IMMEDIATE` meets a busy database and
/// SQLite's busy handler sleeps (1 ms, then 2, 5, 10 ms and more) holding a pooled connection,
/// while the writer it waits for needed well under a millisecond. Waiting here wakes the next
/// writer as the last one ends (a dropped transaction's turn ends with its rollback; only a
/// commit cancelled midway gives its turn up before sqlx's queued rollback has run) and holds no
/// connection. Writers of another store on the same file (another process: the `keyward`
/// commands) still meet the busy handler.
#[derive(Debug, Clone)]
pub(crate) struct WriteGate(std::sync::Arc<tokio::sync::Semaphore>);

/// A write transaction's turn at the [`WriteGate`].
pub(crate) type WriteTurn = tokio::sync::OwnedSemaphorePermit;

impl Default for WriteGate {
    fn default() -> WriteGate {
        WriteGate(std::sync::Arc::new(tokio::sync::Semaphore::new(1)))
    }
}

impl WriteGate {
    /// As long as a busy database is waited for (the pool's `busy_timeout`), then the error a
    /// busy database gives: a task that opens a second write transaction while it holds one
    /// fails as it did without the gate, instead of waiting for ever.
    const WAIT: Duration = Duration::from_secs(10);

    async fn turn(&self) -> Result<WriteTurn, StoreError> {
        match tokio::time::timeout(Self::WAIT, std::sync::Arc::clone(&self.0).acquire_owned()).await {
            Ok(Ok(turn)) => Ok(turn),
            Ok(Err(_)) => Err(StoreError::Other("the store is closed".into())),
            Err(_) => Err(StoreError::Other(
                "database is locked: another write transaction held it for 10 s; try again".into(),
            )),
        }
    }
}

mod sqlite_impl {
    use super::*;
    use sqlx as q;

    type DbRow = sqlx::sqlite::SqliteRow;

    const DIALECT: Dialect = Backend::Sqlite.dialect();

    /// Several rows are written in one statement: each statement is a round trip to the
    /// driver's worker thread or to the server.
    const ONE_ROW_INSERTS: bool = false;

    /// SQLite writes a batch of entries in a transaction: on its thread, without round trips.
    async fn app_sign_ins_at_once(
        _: &sqlx::SqlitePool,
        _: &[(&SignInRecord, Option<i64>)],
    ) -> Result<Option<Vec<bool>>, StoreError> {
        Ok(None)
    }

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
    impl_tx_helpers!(SqliteTx, sqlx::Sqlite);
    impl_tenant_store!(SqliteTx, sqlx::Sqlite);
    impl_user_store!(SqliteTx, sqlx::Sqlite);
    impl_group_store!(SqliteTx, sqlx::Sqlite);
    impl_deleted_rows!(SqliteTx, sqlx::Sqlite);
    impl_role_stores!(SqliteTx, sqlx::Sqlite);
    impl_pim_store!(SqliteTx, sqlx::Sqlite);
    impl_outbox_store!(SqliteTx, sqlx::Sqlite);
    impl_service_desk_store!(SqliteTx, sqlx::Sqlite);
    impl_bulk_store!(SqliteTx, sqlx::Sqlite);
    impl_credential_store!(SqliteTx, sqlx::Sqlite);
    impl_key_store!(SqliteTx, sqlx::Sqlite);
    impl_audit_store!(SqliteTx, sqlx::Sqlite);
    impl_sign_in_store!(SqliteTx, sqlx::Sqlite);
    impl_oauth_store!(SqliteTx, sqlx::Sqlite);
    impl_report_store!(SqliteTx, sqlx::Sqlite);

    /// The database file that direct reads may open: only a plain file. Not an in-memory
    /// database (sqlx names `sqlite::memory:` `file:sqlx-in-memory-N`, which is no file), nor one
    /// opened through another VFS or as immutable, which a second connection would open
    /// differently.
    pub(super) fn plain_file(url: &str, path: &std::path::Path) -> Option<std::path::PathBuf> {
        let url = url.to_ascii_lowercase();
        let special = ["mode=memory", "vfs=", "immutable="].iter().any(|it| url.contains(it));
        let named = path.to_str().is_some_and(|it| it == ":memory:" || it.starts_with("file:"));
        (!special && !named && path.is_file()).then(|| path.to_owned())
    }

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
                // 16 MiB of page cache per connection, 128 MiB for the pool of 8: the operating
                // system caches the file as well, and 64 MiB each let a server that had paged
                // through a million users hold 400 MB (keyward-bench's directory workload).
                .pragma("cache_size", "-16384");
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .test_before_acquire(false)
                .connect_with(options.clone())
                .await?;
            Self::migrate(&pool).await?;
            let file = plain_file(url, options.get_filename());
            let direct = file.clone().map(direct::DirectReads::new);
            let lite = file.map(lite::Writer::new);
            Ok(SqliteStore {
                pool,
                direct,
                readers: None,
                writer: Some(WriteGate::default()),
                lite,
                clients: Default::default(),
            })
        }

        /// A statement's rows, on the pool (the hot reads go to `direct` first).
        async fn read_all<'q>(
            &self,
            query: impl Fn() -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
        ) -> Result<Vec<sqlx::sqlite::SqliteRow>, StoreError> {
            Ok(query().fetch_all(&self.pool).await?)
        }
    }
}

mod postgres_impl {
    use super::*;
    use sqlx as q;

    type DbRow = sqlx::postgres::PgRow;

    const DIALECT: Dialect = Backend::Postgres.dialect();

    /// Several rows are written in one statement: each statement is a round trip to the
    /// driver's worker thread or to the server.
    const ONE_ROW_INSERTS: bool = false;

    async fn begin(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        pool.begin().await
    }

    /// An application's sign-in log entries in one statement: the entries as arrays (one
    /// statement text for any number of them, so the server plans it once per connection), each
    /// with the version of its tenant's clients it needs (`NULL`: none), checked in the same
    /// statement. A batch in a transaction took four round trips to the server (`BEGIN`, the
    /// version, the rows, `COMMIT`) and a plan for each batch size.
    const APP_SIGN_INS: &str = concat!(
        "INSERT INTO sign_ins (id, tenant_id, created_at, user_id, upn_lc, app_id, error_code, record, event_type) ",
        "SELECT e.id, e.tenant_id, e.created_at, NULL, e.upn_lc, e.app_id, e.error_code, e.record, e.event_type ",
        "FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], ",
        "$8::text[], $9::bigint[]) WITH ORDINALITY AS e(id, tenant_id, created_at, upn_lc, app_id, error_code, ",
        "record, event_type, needs, n) ",
        "LEFT JOIN client_versions v ON v.tenant_id = e.tenant_id ",
        "WHERE e.needs IS NULL OR e.needs = COALESCE(v.version, 0) ORDER BY e.n RETURNING id"
    );

    async fn app_sign_ins_at_once(
        pool: &sqlx::PgPool,
        entries: &[(&SignInRecord, Option<i64>)],
    ) -> Result<Option<Vec<bool>>, StoreError> {
        if entries.iter().any(|(record, _)| record.user_id.is_some()) {
            return Ok(None);
        }
        // The columns as `SignInStore::insert_sign_ins` writes them, one array each.
        let n = entries.len();
        let (mut ids, mut tenants, mut created, mut upns, mut apps) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut codes, mut records, mut kinds) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for (record, _) in entries {
            let row = sign_in_json::columns(record)?;
            ids.push(row.id);
            tenants.push(row.tenant_id);
            created.push(row.created_at);
            upns.push(row.upn_lc);
            apps.push(row.app_id);
            codes.push(row.error_code);
            records.push(row.record);
            kinds.push(row.event_type);
        }
        let written: Vec<String> = sqlx::query_scalar(APP_SIGN_INS)
            .bind(ids)
            .bind(tenants)
            .bind(created)
            .bind(upns)
            .bind(apps)
            .bind(codes)
            .bind(records)
            .bind(kinds)
            .bind(entries.iter().map(|(_, version)| *version).collect::<Vec<_>>())
            .fetch_all(pool)
            .await?;
        let written: std::collections::HashSet<String> = written.into_iter().collect();
        Ok(Some(entries.iter().map(|(it, _)| written.contains(&it.id)).collect()))
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
    impl_tx_helpers!(PostgresTx, sqlx::Postgres);
    impl_tenant_store!(PostgresTx, sqlx::Postgres);
    impl_user_store!(PostgresTx, sqlx::Postgres);
    impl_group_store!(PostgresTx, sqlx::Postgres);
    impl_deleted_rows!(PostgresTx, sqlx::Postgres);
    impl_role_stores!(PostgresTx, sqlx::Postgres);
    impl_pim_store!(PostgresTx, sqlx::Postgres);
    impl_outbox_store!(PostgresTx, sqlx::Postgres);
    impl_service_desk_store!(PostgresTx, sqlx::Postgres);
    impl_bulk_store!(PostgresTx, sqlx::Postgres);
    impl_credential_store!(PostgresTx, sqlx::Postgres);
    impl_key_store!(PostgresTx, sqlx::Postgres);
    impl_audit_store!(PostgresTx, sqlx::Postgres);
    impl_sign_in_store!(PostgresTx, sqlx::Postgres);
    impl_oauth_store!(PostgresTx, sqlx::Postgres);
    impl_report_store!(PostgresTx, sqlx::Postgres);

    impl PostgresStore {
        /// Connects to PostgreSQL and applies migrations (serialised by an advisory lock, so
        /// several nodes can start at once).
        pub(crate) async fn open(url: &str) -> Result<PostgresStore, StoreError> {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(WAIT_FOR_CONNECTION)
                .max_lifetime(CONNECTION_LIFETIME)
                // By default sqlx checks a connection with a round trip to the server each time it
                // is taken from the pool, which doubled the round trips of a statement run on the
                // pool (sqlx also checks each connection as it is returned). Only a connection idle
                // for a while is checked when taken, as HikariCP does: one the server dropped
                // meanwhile (a restart, an idle timeout) is replaced before it is used.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= CHECK_CONNECTIONS_IDLE_FOR {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .connect(url)
                .await?;
            let mut lock_conn = pool.acquire().await?;
            sqlx::query("SELECT pg_advisory_lock(7007001)").execute(&mut *lock_conn).await?;
            let migrated = Self::migrate(&pool).await;
            sqlx::query("SELECT pg_advisory_unlock(7007001)").execute(&mut *lock_conn).await?;
            migrated?;
            let readers = Some(std::sync::Arc::new(readers::Readers::new(pool.connect_options())));
            Ok(PostgresStore { pool, direct: None, readers, writer: None, lite: None, clients: Default::default() })
        }

        /// A statement's rows, on a reader (see `readers.rs`). The statement is made again, on a
        /// new connection, if the connection it first ran on turns out to have been dropped by
        /// the server since its last use (a restart, an administrator): a single read is safe to
        /// repeat, so `query` must make one read (a `SELECT`), never a write.
        async fn read_all<'q>(
            &self,
            query: impl Fn() -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
        ) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
            let Some(readers) = &self.readers else { return Ok(query().fetch_all(&self.pool).await?) };
            let mut reader = readers.take().await?;
            let rows = match query().fetch_all(reader.conn()).await {
                Ok(rows) => rows,
                Err(err) if !reader.checked && readers::dropped_by_server(&err) => {
                    tracing::warn!(error = %err, "a reader's connection was dropped by the server; reading on a new one");
                    reader.reconnect().await?;
                    query().fetch_all(reader.conn()).await?
                }
                Err(err) => return Err(err.into()),
            };
            reader.done();
            Ok(rows)
        }
    }
}

/// SQLite's write transactions, and its short read transactions (`Store::read_short`), on the
/// calling thread (`lite.rs`): the same SQL as the others, through `lite`'s query API.
mod lite_impl {
    use super::lite as q;
    use super::*;

    type DbRow = lite::Row;

    const DIALECT: Dialect = Backend::Sqlite.dialect();

    /// Several rows are written one statement each, prepared once and kept: on the calling
    /// thread a statement costs microseconds, and a multi-row text of each new length would be
    /// prepared anew (client credentials on one core: 2.8% of the samples).
    const ONE_ROW_INSERTS: bool = true;

    /// `lite`'s errors are the store's already (the sqlx transactions map sqlx's with
    /// `error::db`).
    fn db(err: StoreError) -> StoreError {
        err
    }

    /// A SQLite write transaction on the store's write connection, or a short read transaction on
    /// a direct-read connection (no turn); its fields are those of the sqlx transactions
    /// (`impl_backend!`). The connection is rolled back, if still open, before the write gate's
    /// turn passes on (fields drop in order).
    pub(crate) struct LiteTx(
        lite::Open,
        String,
        Option<WriteTurn>,
        RoleLock,
        Option<Box<DeskPolicies>>,
        Vec<AuditRecord>,
    );

    impl LiteTx {
        pub(crate) fn new(open: lite::Open, turn: Option<WriteTurn>) -> LiteTx {
            LiteTx(open, fmt_ts(OffsetDateTime::now_utc()), turn, RoleLock::None, None, Vec::new())
        }
    }

    impl std::fmt::Debug for LiteTx {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("LiteTx")
        }
    }

    #[async_trait]
    impl Tx for LiteTx {
        async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
            if !self.5.is_empty() {
                self.insert_audits(&[]).await?;
            }
            let LiteTx(open, _, turn, ..) = *self;
            open.commit(turn).await
        }

        async fn rollback(self: Box<Self>) -> Result<(), StoreError> {
            let LiteTx(open, _, turn, ..) = *self;
            let rolled_back = open.rollback();
            drop(turn);
            rolled_back
        }
    }

    impl_tx_helpers!(LiteTx, ());
    impl_tenant_store!(LiteTx, ());
    impl_user_store!(LiteTx, ());
    impl_group_store!(LiteTx, ());
    impl_deleted_rows!(LiteTx, ());
    impl_role_stores!(LiteTx, ());
    impl_pim_store!(LiteTx, ());
    impl_outbox_store!(LiteTx, ());
    impl_service_desk_store!(LiteTx, ());
    impl_bulk_store!(LiteTx, ());
    impl_credential_store!(LiteTx, ());
    impl_key_store!(LiteTx, ());
    impl_audit_store!(LiteTx, ());
    impl_sign_in_store!(LiteTx, ());
    impl_oauth_store!(LiteTx, ());
    impl_report_store!(LiteTx, ());
}

pub(crate) use postgres_impl::PostgresStore;
pub(crate) use sqlite_impl::SqliteStore;

#[cfg(test)]
mod tests {
    use super::next_copy_key;
    use super::sqlite_impl::plain_file;
    use std::path::Path;

    /// A new SQLite database with every migration, in a directory of its own (the caller removes
    /// it), and a plain connection to it: statistics none, as on a first start.
    async fn new_database(name: &str) -> (std::path::PathBuf, rusqlite::Connection) {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |it| it.as_nanos());
        let dir = std::env::temp_dir().join(format!("keyward-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("directory");
        let path = dir.join("keyward.db");
        drop(crate::open(&format!("sqlite://{}", path.display())).await.expect("store"));
        (dir, rusqlite::Connection::open(&path).expect("open"))
    }

    /// The statements that read a principal's role assignments (every request's caller among
    /// them) look each of the principal and its groups up in `role_assignments_principal`,
    /// also on a database without statistics (a new one, or one whose last analysis saw few
    /// assignments). Written with `principal_id = $2 OR principal_id IN (…)`, SQLite then read
    /// every assignment of the tenant (through `role_assignments_ending`), and PostgreSQL always.
    #[tokio::test]
    async fn a_principals_role_assignments_are_looked_up_by_principal() {
        let (dir, db) = new_database("plans").await;
        let statements = [
            ("ASSIGNMENTS_FOR", super::roles::ASSIGNMENTS_FOR.to_owned()),
            ("UNENDED_ASSIGNMENTS_FOR", super::roles::UNENDED_ASSIGNMENTS_FOR.to_owned()),
            ("USER_AND_ROLES_SPLIT", super::roles::USER_AND_ROLES_SPLIT.to_string()),
            ("USER_AND_ROLES_LISTED", super::roles::USER_AND_ROLES_LISTED.to_string()),
            ("USER_AND_ROLES_AND_USER by id", super::roles::USER_AND_ROLES_AND_USER[0].clone()),
            ("USER_AND_ROLES_AND_USER by name", super::roles::USER_AND_ROLES_AND_USER[1].clone()),
            ("CLIENT_CHANGES_AT", super::client_cache::CLIENT_CHANGES_AT.to_owned()),
        ];
        for (name, sql) in statements {
            let mut plan = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("explain");
            // Parameters left unbound: without statistics the plan does not depend on them.
            let mut rows = plan.raw_query();
            let mut steps = Vec::new();
            while let Some(row) = rows.next().expect("plan") {
                steps.push(row.get::<_, String>(3).expect("step"));
            }
            let reads: Vec<&String> = steps.iter().filter(|it| it.contains(" role_assignments")).collect();
            assert!(!reads.is_empty(), "{name}: {steps:?}");
            for read in reads {
                assert!(
                    read.contains("USING INDEX role_assignments_principal (tenant_id=? AND principal_id=?)"),
                    "{name} reads role assignments otherwise: {steps:?}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every refresh asks whether its family was revoked: by the partial index of revoked rows,
    /// not by reading each rotation of the family (`refresh_tokens_family`).
    #[tokio::test]
    async fn a_revoked_family_is_looked_up_among_revoked_rows_only() {
        let (dir, db) = new_database("family-plan").await;
        let plan: String = db
            .query_row(&format!("EXPLAIN QUERY PLAN {}", super::oauth::FAMILY_REVOKED), ["family"], |row| row.get(3))
            .expect("plan");
        assert!(plan.contains("USING INDEX refresh_tokens_family_revoked (family_id=?)"), "{plan}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_table_is_analysed_whole_again_only_once_its_rows_changed_by_a_tenth() {
        use super::needs_analysis;
        assert!(needs_analysis(None, 0), "never analysed");
        assert!(needs_analysis(Some(0), 1_000_000), "analysed empty, then a million users added");
        assert!(!needs_analysis(Some(1_000_000), 1_000_000), "unchanged");
        assert!(!needs_analysis(Some(1_000_000), 1_099_000), "grown by less than a tenth");
        assert!(needs_analysis(Some(1_000_000), 1_100_001), "grown by more than a tenth");
        assert!(!needs_analysis(Some(10), 100), "a small directory: within 100 rows");
        assert!(needs_analysis(Some(10), 111));
        assert!(needs_analysis(Some(1_000_000), 899_999), "shrunk by more than a tenth");
        assert!(!needs_analysis(Some(1_000_000), 950_000), "shrunk by less than a tenth");
    }

    #[test]
    fn a_role_change_lock_held_is_not_asked_for_again() {
        use super::RoleLock;
        use keyward_core::ids::ObjectId;
        let (tenant, other) = (ObjectId::from_bytes([1; 16]), ObjectId::from_bytes([2; 16]));
        assert_eq!(RoleLock::None.to_take(&tenant, false), Some(RoleLock::Shared(tenant.clone())));
        assert_eq!(RoleLock::None.to_take(&tenant, true), Some(RoleLock::Exclusive(tenant.clone())));
        assert_eq!(RoleLock::Shared(tenant.clone()).to_take(&tenant, false), None, "shared, held");
        assert_eq!(RoleLock::Exclusive(tenant.clone()).to_take(&tenant, false), None, "exclusive covers shared");
        assert_eq!(RoleLock::Exclusive(tenant.clone()).to_take(&tenant, true), None, "exclusive, held");
        assert_eq!(RoleLock::Exclusive(tenant).to_take(&other, false), Some(RoleLock::Shared(other.clone())));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "take it exclusive first")]
    fn asking_for_the_exclusive_lock_after_the_shared_one_is_a_bug() {
        use super::RoleLock;
        let tenant = keyward_core::ids::ObjectId::from_bytes([1; 16]);
        let _ = RoleLock::Shared(tenant.clone()).to_take(&tenant, true);
    }

    #[test]
    fn direct_reads_open_only_a_plain_file() {
        let file = std::env::current_exe().expect("a file that exists");
        let url = format!("sqlite://{}", file.display());
        assert_eq!(plain_file(&url, &file), Some(file.clone()));
        assert_eq!(plain_file("sqlite::memory:", Path::new("file:sqlx-in-memory-1")), None);
        assert_eq!(plain_file("sqlite::memory:", Path::new(":memory:")), None);
        assert_eq!(plain_file(&format!("{url}?mode=memory"), &file), None);
        assert_eq!(plain_file(&format!("{url}?VFS=unix-none"), &file), None);
        assert_eq!(plain_file(&format!("{url}?immutable=1"), &file), None);
        assert_eq!(plain_file("sqlite://missing.db", Path::new("missing.db")), None, "not made yet");
    }

    #[test]
    fn a_targets_copy_keys_run_on_in_its_block_and_a_full_block_asks_for_a_new_one() {
        let block = 7_i64 << 32;
        assert_eq!(next_copy_key(None), None, "a target without copies starts a block");
        assert_eq!(next_copy_key(Some(block)), Some(block + 1));
        assert_eq!(next_copy_key(Some(block + 0xffff_fffe)), Some(block + 0xffff_ffff));
        assert_eq!(next_copy_key(Some(block + 0xffff_ffff)), None, "the block's last key was used");
    }
}
