//! Keyward persistence.
//!
//! One store trait family ([`Store`] hands out a [`Tx`], which combines the role traits
//! [`TenantStore`], [`UserStore`], [`GroupStore`], [`RoleStore`], [`CredentialStore`], [`KeyStore`]
//! and [`AuditStore`]) with a SQLite and a PostgreSQL implementation generated from one body.
//!
//! Invariants: no business rules live here; every public signature uses core or store types, never
//! driver types; every migration exists for both dialects under the same number.
#![forbid(unsafe_code)]

mod audit_json;
mod backend;
mod error;
mod methods_policy_json;
mod migrate;
mod sign_in_json;
mod sql;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use keyward_core::agent_limits::AgentLimits;
use keyward_core::audit::AuditRecord;
use keyward_core::audit_chain::{ChainPosition, Checkpoint};
use keyward_core::audit_query::AuditFilter;
use keyward_core::authz::custom::CustomRole;
use keyward_core::directory::{Group, ObjectKind, ServicePrincipal, Tenant, User};
use keyward_core::ids::ObjectId;
use keyward_core::methods_policy::{CampaignSnooze, MethodsPolicy};
use keyward_core::oauth::DeviceCodeStatus;
use keyward_core::pim::RoleSettings;
use keyward_core::query::Plan;
use keyward_core::registration::{
    RegisteredMethods, RegistrationCounts, RegistrationFilter, RegistrationOrder, SummaryScope,
};
use keyward_core::signin::{
    Amr, Lockout, PerUserMfaState, RememberedDevice, SignInActivity, SignInPolicy, SignInPreferences, SignInRecord,
    Stage, TapPolicy,
};
use keyward_core::signin_query::SignInFilter;
use time::OffsetDateTime;

pub use crate::backend::DEFAULT_AUDIT_RETENTION_DAYS;
pub use crate::error::StoreError;
// Domain types the store reads and writes; they live in the core so the HTTP layer can use them.
pub use crate::migrate::{MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE, Migration};
pub use keyward_core::consent::PermissionGrant;
pub use keyward_core::directory::{
    AdministrativeUnit, AssignmentFilter, RoleAssignment, RoleEligibility, RoleScheduleRequest, ScheduleKind,
};

/// The `limit` of a list that reads every row, unpaged: what a decision reads (a role dropped
/// by a page limit would silently change who may do what).
pub const ALL_ROWS: usize = usize::MAX;

/// What [`Store::get_user_and_roles_and_user`] finds: a user with the role assignments that apply
/// to them, and the other user if it was read (`Some(None)`: there is none; `None`: not read, to
/// be read on its own with [`Store::find_user`]).
/// The users are shared (`Arc`): each direct-read connection keeps the callers and users it read
/// (see `backend/kept_users.rs`), and hands out the kept user itself rather than a copy.
pub type UserRolesAndUser = ((Arc<User>, Vec<RoleAssignment>), Option<Option<Arc<User>>>);

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database: the entry point of the store trait family.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Which database this is.
    fn backend(&self) -> Backend;
    /// Starts a transaction that may write. On SQLite it takes the write lock at once.
    async fn write(&self) -> Result<Box<dyn Tx>, StoreError>;
    /// Starts a write transaction whose statements may run long (the maintenance's deletes,
    /// deleting or restoring an object with many rows, a bulk job's rows): on SQLite it runs on
    /// sqlx's pool, whose statements run on a thread of their own, not on the caller's as
    /// `write`'s do (see `backend/lite.rs`); otherwise as `write`.
    async fn write_long(&self) -> Result<Box<dyn Tx>, StoreError>;
    /// Starts a read-only transaction (a consistent snapshot).
    async fn read(&self) -> Result<Box<dyn Tx>, StoreError>;
    /// Starts a read-only transaction for a few point reads (one user's state, a session, a
    /// code): on a SQLite file its statements run on the caller's thread through rusqlite, as
    /// `write`'s do, and not on sqlx's worker threads (see `backend/direct.rs`); otherwise, and
    /// when no such connection is ready, as `read`. Not for anything whose statements may run long
    /// (a list, a count, a report): they would hold the caller's thread.
    async fn read_short(&self) -> Result<Box<dyn Tx>, StoreError>;
    /// The highest applied migration.
    async fn schema_version(&self) -> Result<i64, StoreError>;
    /// Refreshes the query planner's statistics (SQLite's `PRAGMA optimize`, PostgreSQL's
    /// `ANALYZE`, which autovacuum runs too but only after enough changes). Without them SQLite
    /// may answer an initiator's day from the time index, walking the whole day, and PostgreSQL
    /// may find one target's records by walking the log.
    async fn optimize(&self) -> Result<(), StoreError>;
    /// Closes every connection; used at shutdown.
    async fn close(&self);

    /// A user and the role assignments that apply to them at `now` (directly or through a
    /// role-assignable group): what authenticating a user's request needs. One statement outside a
    /// transaction (a statement is its own snapshot), plus one for the user's multi-valued
    /// properties when they have any.
    async fn get_user_and_roles(
        &self,
        tenant: &ObjectId,
        id: &ObjectId,
        now: OffsetDateTime,
    ) -> Result<Option<(Arc<User>, Vec<RoleAssignment>)>, StoreError>;

    /// One user by object id or user principal name, outside a transaction: for a use case whose
    /// only read it is.
    async fn find_user(&self, tenant: &ObjectId, key: &str) -> Result<Option<User>, StoreError>;

    /// [`Store::get_user_and_roles`] for the user `id` and [`Store::find_user`] for `key`, read
    /// together: on PostgreSQL one statement (one round trip), on SQLite both statements in one
    /// read transaction on the request's thread (SQLite's read lock taken once). The other user is
    /// returned unless they have multi-valued properties (read on their own then, once the caller
    /// has been checked), or SQLite's pool answered (no direct connection was ready): then it is
    /// not read. `None` when there is no user `id`, whatever `key` finds.
    async fn get_user_and_roles_and_user(
        &self,
        tenant: &ObjectId,
        id: &ObjectId,
        now: OffsetDateTime,
        key: &str,
    ) -> Result<Option<UserRolesAndUser>, StoreError>;

    /// An application by `appId` with what the token endpoint needs of it, from one snapshot: its
    /// service principal, its credentials, and the role assignments that apply to the principal
    /// at `now`. Each node keeps the clients it has read, and every call reads the version of the
    /// tenant's clients, which every change to any of these replaces in the same transaction: a
    /// kept client is used only while the version is unchanged and no role window has opened or
    /// closed since, so a removed secret or a disabled application stops working at once on every
    /// node.
    async fn find_client(
        &self,
        tenant: &ObjectId,
        app_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ClientRecord>, StoreError>;

    /// [`find_client`](Self::find_client) without reading the version when this node keeps the
    /// client: the client (as kept, or read now) and the version it was read under. The caller
    /// must not act on it before confirming, in a write transaction, that the version is still
    /// that ([`SignInStore::client_version`]); the sign-in log does that for a client-credentials
    /// grant as it writes the grant's entry.
    async fn kept_client(
        &self,
        tenant: &ObjectId,
        app_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(ClientRecord, i64)>, StoreError>;

    /// The version of the tenant's clients now (see [`kept_client`](Self::kept_client)).
    async fn client_version(&self, tenant: &ObjectId) -> Result<i64, StoreError>;

    /// Writes sign-in log entries that name no user (an application's sign-ins, a sign-in
    /// attempt with an unknown user name), each only if its tenant's clients still have the
    /// version given with it (if any), in one statement that is its own transaction: which were
    /// written, in order. `None` when this database has no such statement (SQLite, whose
    /// transactions cost no round trips): write them in a transaction
    /// ([`SignInStore::insert_sign_ins`]) then.
    async fn insert_app_sign_ins(
        &self,
        entries: &[(&SignInRecord, Option<i64>)],
    ) -> Result<Option<Vec<bool>>, StoreError>;

    // Reads of the audit log are one statement each and run outside a transaction: a statement
    // is its own snapshot, and BEGIN and COMMIT would cost two more driver round trips.

    /// One audit record by id.
    async fn get_audit(&self, tenant: &ObjectId, id: &str) -> Result<Option<AuditRecord>, StoreError>;
    /// Records matching `filter`, newest first (or oldest first), continuing after `after`.
    async fn query_audit(
        &self,
        tenant: &ObjectId,
        filter: &AuditFilter,
        after: Option<&AuditCursor>,
        is_ascending: bool,
        limit: usize,
    ) -> Result<Vec<(AuditCursor, AuditRecord)>, StoreError>;
}

/// A transaction: every store operation happens inside one, and nothing is visible to others until
/// [`Tx::commit`]. Dropping it without committing rolls back. After any error the transaction must
/// be dropped (PostgreSQL refuses further statements in it; the SQLite store follows the same rule).
#[async_trait]
pub trait Tx:
    TenantStore
    + UserStore
    + GroupStore
    + ServicePrincipalStore
    + RoleStore
    + PimStore
    + OutboxStore
    + ServiceDeskStore
    + BulkStore
    + CredentialStore
    + KeyStore
    + AuditStore
    + SignInStore
    + OAuthStore
    + ReportStore
    + Send
{
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
    /// Ends the transaction without its changes, and returns once it has ended. Dropping a
    /// transaction does the same later: the rollback is queued, and a writer that begins before
    /// it has run finds the database still locked.
    async fn rollback(self: Box<Self>) -> Result<(), StoreError>;
}

/// A page of a collection and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
    pub count: Option<u64>,
}

/// A keyset position: the sort key of the last item (empty when ordered by id) and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub sort_key: String,
    pub id: String,
}

/// A position in the audit log: the record's stored time and sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    pub activity_date_time: String,
    pub seq: i64,
}

/// A member or owner reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    pub kind: ObjectKind,
    pub id: ObjectId,
}

/// A Temporary Access Pass row; only a SHA-256 of the pass is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporaryAccessPass {
    pub id: ObjectId,
    pub user_id: ObjectId,
    pub pass_sha256: Vec<u8>,
    pub created: OffsetDateTime,
    pub start: OffsetDateTime,
    pub lifetime_minutes: i64,
    pub is_usable_once: bool,
    pub used_at: Option<OffsetDateTime>,
    /// Usable (for its lifetime, from any browser) until its holder registers a method, then
    /// spent: the first Global Administrator's pass and an operator's recovery pass.
    pub ends_at_registration: bool,
}

/// A token signing key; the private half is sealed by the app before it reaches the store.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub algorithm: String,
    pub sealed_private_key: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created: OffsetDateTime,
    pub activated: Option<OffsetDateTime>,
    pub retired: Option<OffsetDateTime>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("created", &self.created)
            .field("activated", &self.activated)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

/// Tenants and their verified domains.
#[async_trait]
pub trait TenantStore: Send {
    async fn insert_tenant(&mut self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn get_tenant(&mut self, id: &ObjectId) -> Result<Option<Tenant>, StoreError>;
    /// The tenant's display name alone (one statement; `get_tenant` reads its domains too).
    async fn tenant_display_name(&mut self, id: &ObjectId) -> Result<Option<String>, StoreError>;
    /// All tenants, oldest first.
    async fn list_tenants(&mut self) -> Result<Vec<Tenant>, StoreError>;
}

/// Users.
#[async_trait]
pub trait UserStore: Send {
    async fn insert_user(&mut self, user: &User, password_hash: Option<&str>) -> Result<(), StoreError>;
    /// Replaces every property of an existing user (not its password).
    async fn update_user(&mut self, user: &User) -> Result<(), StoreError>;
    async fn delete_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    async fn get_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<User>, StoreError>;
    /// [`get_user`](Self::get_user) for a change that writes the user back (`update_user`
    /// replaces every property): the row is locked until the transaction ends (PostgreSQL
    /// `FOR NO KEY UPDATE`; SQLite's writers are serial), so a concurrent change to it either committed
    /// before this read or waits for this transaction, and neither undoes the other.
    async fn get_user_for_update(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<User>, StoreError>;
    /// The users among `ids` that exist, in no particular order (one query, for pages of references).
    async fn get_users(&mut self, tenant: &ObjectId, ids: &[ObjectId]) -> Result<Vec<User>, StoreError>;
    /// Finds a user by user principal name, case-insensitively.
    async fn find_user_by_upn(&mut self, tenant: &ObjectId, upn: &str) -> Result<Option<User>, StoreError>;
    async fn list_users(
        &mut self,
        tenant: &ObjectId,
        plan: &Plan,
        after: Option<&Cursor>,
    ) -> Result<Page<User>, StoreError>;
    /// Moves a user to the deleted items (its row, multi-valued properties, sign-in state,
    /// authentication methods and units, kept for restore) with what it `held`, then deletes it as
    /// `delete_user` does.
    async fn soft_delete_user(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
        at: OffsetDateTime,
        held: &HeldRoles,
    ) -> Result<(), StoreError>;
    /// What a deleted user held when deleted; `None` when it was deleted before Keyward kept it.
    async fn deleted_user_held_roles(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
    ) -> Result<Option<HeldRoles>, StoreError>;
    /// The tenant's deleted users deleted at or after `since`, ordered by id after `after`, with
    /// when each was deleted.
    async fn list_deleted_users(
        &mut self,
        tenant: &ObjectId,
        since: OffsetDateTime,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(User, OffsetDateTime)>, StoreError>;
    /// One deleted user, deleted at or after `since`.
    async fn get_deleted_user(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
        since: OffsetDateTime,
    ) -> Result<Option<(User, OffsetDateTime)>, StoreError>;
    /// Waits for any other transaction restoring or removing the deleted item `id` (a user or
    /// group) to finish (PostgreSQL locks its row; SQLite writers are serial), so a restore or
    /// permanent delete reads the item as that transaction left it.
    async fn lock_deleted_item(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    /// Moves a deleted user back with its methods and sign-in state (`Conflict` when its user
    /// principal name is taken again); a manager deleted meanwhile is cleared, and memberships or
    /// role assignments naming the id are removed rather than revived.
    async fn restore_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    /// Removes a deleted user for good (`NotFound` when there is none).
    async fn purge_deleted_user(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    /// Removes for good the users deleted before `before`; returns how many.
    async fn purge_deleted_users_before(
        &mut self,
        tenant: &ObjectId,
        before: OffsetDateTime,
    ) -> Result<u64, StoreError>;
    /// Sets or clears a user's manager (the only write of it besides creation, deletion and restore).
    async fn set_manager(
        &mut self,
        tenant: &ObjectId,
        user: &ObjectId,
        manager: Option<&ObjectId>,
    ) -> Result<(), StoreError>;
    /// The users whose manager is `manager` (`directReports`), ordered by id, after `after`.
    async fn list_direct_reports(
        &mut self,
        tenant: &ObjectId,
        manager: &ObjectId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectId>, StoreError>;
}

/// The roles a user held when it was deleted, kept with it for the decisions on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldRoles {
    pub role_ids: Vec<String>,
    pub has_role_scoped_to_restricted_unit: bool,
    pub is_role_assignable_group_member_or_owner: bool,
}

/// Groups, their members and owners.
#[async_trait]
pub trait GroupStore: Send {
    async fn insert_group(&mut self, group: &Group) -> Result<(), StoreError>;
    async fn update_group(&mut self, group: &Group) -> Result<(), StoreError>;
    async fn delete_group(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    async fn get_group(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<Group>, StoreError>;
    /// [`get_group`](Self::get_group) for a change that writes the group back (`update_group`
    /// replaces every property), the row locked as [`UserStore::get_user_for_update`] locks a
    /// user's: a concurrent change either committed before this read or waits for this one.
    async fn get_group_for_update(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<Group>, StoreError>;
    /// The groups among `ids` that exist, in no particular order.
    async fn get_groups(&mut self, tenant: &ObjectId, ids: &[ObjectId]) -> Result<Vec<Group>, StoreError>;
    async fn list_groups(
        &mut self,
        tenant: &ObjectId,
        plan: &Plan,
        after: Option<&Cursor>,
    ) -> Result<Page<Group>, StoreError>;
    async fn insert_member(&mut self, group: &ObjectId, member: &MemberRef) -> Result<(), StoreError>;
    /// Removes a member; `NotFound` when it was not a member.
    async fn delete_member(&mut self, group: &ObjectId, member: &ObjectId) -> Result<(), StoreError>;
    async fn is_member(&mut self, group: &ObjectId, member: &ObjectId) -> Result<bool, StoreError>;
    /// Members ordered by id, starting after `after`.
    async fn list_members(
        &mut self,
        group: &ObjectId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MemberRef>, StoreError>;
    async fn insert_owner(&mut self, group: &ObjectId, owner: &MemberRef) -> Result<(), StoreError>;
    async fn delete_owner(&mut self, group: &ObjectId, owner: &ObjectId) -> Result<(), StoreError>;
    async fn is_owner(&mut self, group: &ObjectId, owner: &ObjectId) -> Result<bool, StoreError>;
    async fn list_owners(
        &mut self,
        group: &ObjectId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MemberRef>, StoreError>;
    /// The groups `member` is a direct member of, ordered by id, starting after `after`.
    async fn list_member_of(
        &mut self,
        member: &ObjectId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectId>, StoreError>;
    /// The groups `owner` owns, ordered by id, starting after `after` (`ownedObjects`).
    async fn list_owned_groups(
        &mut self,
        owner: &ObjectId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectId>, StoreError>;
    /// Removes `object` from every group's members and owners (when the object is deleted).
    async fn delete_memberships_of(&mut self, object: &ObjectId) -> Result<(), StoreError>;
    /// Moves a group to the deleted items (its row, members and owners, kept for restore), then
    /// deletes it as `delete_group` does.
    async fn soft_delete_group(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// The tenant's deleted groups deleted at or after `since`, ordered by id after `after`, with
    /// when each was deleted.
    async fn list_deleted_groups(
        &mut self,
        tenant: &ObjectId,
        since: OffsetDateTime,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Group, OffsetDateTime)>, StoreError>;
    /// One deleted group, deleted at or after `since`.
    async fn get_deleted_group(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
        since: OffsetDateTime,
    ) -> Result<Option<(Group, OffsetDateTime)>, StoreError>;
    /// Moves a deleted group back with those of its members and owners that still exist;
    /// memberships or role assignments naming its id are removed rather than revived.
    async fn restore_group(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    /// Removes a deleted group for good (`NotFound` when there is none).
    async fn purge_deleted_group(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    /// Removes for good the groups deleted before `before`; returns how many.
    async fn purge_deleted_groups_before(
        &mut self,
        tenant: &ObjectId,
        before: OffsetDateTime,
    ) -> Result<u64, StoreError>;
}

/// Service principals.
#[async_trait]
pub trait ServicePrincipalStore: Send {
    async fn insert_service_principal(&mut self, principal: &ServicePrincipal) -> Result<(), StoreError>;
    async fn get_service_principal(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
    ) -> Result<Option<ServicePrincipal>, StoreError>;
    /// The service principal of an application, by `appId` (case-insensitively; stored lowercase).
    async fn find_service_principal(
        &mut self,
        tenant: &ObjectId,
        app_id: &str,
    ) -> Result<Option<ServicePrincipal>, StoreError>;
    /// The service principals among `ids` that exist, in no particular order.
    async fn get_service_principals(
        &mut self,
        tenant: &ObjectId,
        ids: &[ObjectId],
    ) -> Result<Vec<ServicePrincipal>, StoreError>;
    /// Service principals ordered by id, starting after `after`.
    async fn list_service_principals(
        &mut self,
        tenant: &ObjectId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ServicePrincipal>, StoreError>;
    async fn delete_service_principal(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    /// [`Self::get_service_principal`] with its row locked until the transaction ends (PostgreSQL;
    /// SQLite's one writer needs none), for a change that writes it back.
    async fn get_service_principal_for_update(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
    ) -> Result<Option<ServicePrincipal>, StoreError>;
    /// Writes a principal's display name and `accountEnabled` back.
    async fn update_service_principal(&mut self, principal: &ServicePrincipal) -> Result<(), StoreError>;
}

/// A message in the notification outbox (`keyward_core::notify`). Its "This wasn't me" link is
/// kept only as a hash, set when the message is sent, and never read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// A UUID v7: messages sort by it as they were written.
    pub id: String,
    pub tenant_id: ObjectId,
    /// `keyward_core::notify::Kind`'s name.
    pub kind: String,
    /// The user the message is about.
    pub user_id: ObjectId,
    /// The address it goes to; `None`: the user has none.
    pub recipient: Option<String>,
    pub subject: String,
    /// Plain text, with `keyward_core::notify::LINK_PLACEHOLDER` where the link goes.
    pub body: String,
    pub correlation_id: String,
    pub created_at: OffsetDateTime,
    /// `keyward_core::notify::State`'s name.
    pub state: String,
    pub attempts: i64,
    /// When the sender may try it (again); `None` once it is no longer pending.
    pub next_attempt_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub sent_at: Option<OffsetDateTime>,
    /// When its "This wasn't me" link was used.
    pub reported_at: Option<OffsetDateTime>,
}

/// The notification outbox.
#[async_trait]
pub trait OutboxStore: Send {
    async fn insert_message(&mut self, message: &OutboxMessage) -> Result<(), StoreError>;
    /// A tenant's messages, newest first (by id), in `state` when given, with ids below `before`.
    async fn list_messages(
        &mut self,
        tenant: &ObjectId,
        state: Option<&str>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    async fn get_message(&mut self, tenant: &ObjectId, id: &str) -> Result<Option<OutboxMessage>, StoreError>;
    /// Up to `limit` pending messages due at `now` that no node holds, of every tenant, now held
    /// under `lease_id` for `keyward_core::notify::LEASE` (PostgreSQL skips rows another node is
    /// claiming).
    async fn claim_messages(
        &mut self,
        now: OffsetDateTime,
        lease_id: &str,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    /// Keeps the SHA-256 of the message's "This wasn't me" token; `false` (nothing written) when
    /// the lease `lease_id` no longer holds the message.
    async fn set_message_link(&mut self, id: &str, lease_id: &str, hash: &[u8]) -> Result<bool, StoreError>;
    /// Writes a message's delivery state (state, attempts, next attempt, error, sent time) and
    /// releases its lease; `false` (nothing written) when the lease `lease_id` no longer holds a
    /// pending message (another node took it over).
    async fn finish_message(&mut self, message: &OutboxMessage, lease_id: &str) -> Result<bool, StoreError>;
    /// Deletes the tenant's messages no longer pending that were sent (or written) before
    /// `before`; how many.
    async fn delete_messages_before(&mut self, tenant: &ObjectId, before: OffsetDateTime) -> Result<u64, StoreError>;
    /// Marks the message whose link hashes to `hash` as reported, once: `None` when no sent
    /// message within the link's lifetime has it, or its link was used.
    async fn spend_message_link(
        &mut self,
        hash: &[u8],
        now: OffsetDateTime,
    ) -> Result<Option<OutboxMessage>, StoreError>;
}

/// A change held by dual control (`keyward_core::dual_control`) until a second administrator
/// decides. Its secret (a pass's SHA-256 or a password's Argon2 hash, chosen at request time) is
/// kept for the change to use and never read out to a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDeskRequest {
    pub id: ObjectId,
    pub tenant_id: ObjectId,
    pub requester_id: ObjectId,
    /// The requester is an application (a service principal), not a user.
    pub requester_is_app: bool,
    /// The requester's token's delegated permissions, space-separated (`None`: app-only or the
    /// portal, which acts with roles alone).
    pub requester_scopes: Option<String>,
    pub requester_ip: Option<String>,
    pub target_id: ObjectId,
    /// `keyward_core::dual_control::Operation::name`.
    pub operation: String,
    pub pass_start: Option<OffsetDateTime>,
    pub pass_lifetime_minutes: Option<i64>,
    pub pass_usable_once: Option<bool>,
    /// The deleted method's collection (`MethodKind::as_str`) and id.
    pub method_kind: Option<String>,
    pub method_id: Option<String>,
    pub secret_hash: Option<String>,
    pub justification: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// `keyward_core::dual_control::Status::as_str` as stored (never `expired`: that is read from
    /// `expires_at`).
    pub status: String,
    pub decided_by: Option<ObjectId>,
    pub decided_at: Option<OffsetDateTime>,
    /// The decider's justification, or why the approved change failed.
    pub decision_note: Option<String>,
    pub correlation_id: String,
}

/// A caller verification (`keyward_core::caller_verification`); its code is kept as a SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerVerification {
    pub id: ObjectId,
    pub tenant_id: ObjectId,
    pub agent_id: ObjectId,
    pub user_id: ObjectId,
    pub code_sha256: Vec<u8>,
    /// `keyward_core::caller_verification::Status::as_str` as stored (never `expired`).
    pub status: String,
    /// How it was confirmed: `user`, `manager` or `administrator`.
    pub method: Option<String>,
    pub attested_by: Option<ObjectId>,
    pub attempts: i64,
    pub created_at: OffsetDateTime,
    pub verified_at: Option<OffsetDateTime>,
}

/// Dual control's policy and its held changes; caller verification.
#[async_trait]
pub trait ServiceDeskStore: Send {
    async fn caller_verification_policy(
        &mut self,
        tenant: &ObjectId,
    ) -> Result<keyward_core::caller_verification::Policy, StoreError>;
    async fn set_caller_verification_policy(
        &mut self,
        tenant: &ObjectId,
        policy: &keyward_core::caller_verification::Policy,
    ) -> Result<(), StoreError>;
    async fn insert_caller_verification(&mut self, it: &CallerVerification) -> Result<(), StoreError>;
    async fn get_caller_verification(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
    ) -> Result<Option<CallerVerification>, StoreError>;
    /// A user's verifications made after `since`, newest first.
    async fn list_caller_verifications(
        &mut self,
        tenant: &ObjectId,
        user: &ObjectId,
        since: OffsetDateTime,
    ) -> Result<Vec<CallerVerification>, StoreError>;
    /// Writes a verification's outcome (status, method, attester, attempts, verified time) where it
    /// is still pending with `previous_attempts` wrong codes and was made after `made_after` (not
    /// expired); `false` (nothing written) otherwise: answered meanwhile.
    async fn update_caller_verification(
        &mut self,
        it: &CallerVerification,
        previous_attempts: i64,
        made_after: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Whether `agent` holds a verification of `user` confirmed after `verified_after`.
    async fn has_verified_caller(
        &mut self,
        tenant: &ObjectId,
        agent: &ObjectId,
        user: &ObjectId,
        verified_after: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    async fn dual_control_policy(
        &mut self,
        tenant: &ObjectId,
    ) -> Result<keyward_core::dual_control::DualControl, StoreError>;
    async fn set_dual_control_policy(
        &mut self,
        tenant: &ObjectId,
        policy: &keyward_core::dual_control::DualControl,
    ) -> Result<(), StoreError>;
    async fn insert_service_desk_request(&mut self, request: &ServiceDeskRequest) -> Result<(), StoreError>;
    /// How many of `requester`'s requests wait for a decision at `now`. Holds the requester's
    /// lock until the transaction ends (PostgreSQL; SQLite's writers are serial), so concurrent
    /// requests of one administrator count each other before one more is added.
    async fn count_pending_service_desk_requests(
        &mut self,
        tenant: &ObjectId,
        requester: &ObjectId,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError>;
    async fn get_service_desk_request(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
    ) -> Result<Option<ServiceDeskRequest>, StoreError>;
    /// A tenant's requests, newest first, with ids below `before` (ids are UUID v7).
    async fn list_service_desk_requests(
        &mut self,
        tenant: &ObjectId,
        before: Option<&ObjectId>,
        limit: usize,
    ) -> Result<Vec<ServiceDeskRequest>, StoreError>;
    /// Decides a waiting request, once: sets `status`, the decider, the time and the note (and
    /// forgets the secret's hash) where it is still `pendingApproval` and has not expired at `at`;
    /// `false` (nothing written) otherwise (decided meanwhile, by another node too, or expired).
    async fn decide_service_desk_request(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
        status: &str,
        by: &ObjectId,
        at: OffsetDateTime,
        note: Option<&str>,
    ) -> Result<bool, StoreError>;
}

/// A bulk operation (`keyward_core::bulk`) and who runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkJob {
    pub id: ObjectId,
    pub tenant_id: ObjectId,
    pub caller_id: ObjectId,
    pub caller_is_app: bool,
    /// The caller's token's delegated permissions, space-separated (`None`: app-only or the
    /// portal).
    pub caller_scopes: Option<String>,
    pub caller_ip: Option<String>,
    /// `keyward_core::bulk::Operation::name` and its parameters.
    pub operation: String,
    pub per_user_mfa_state: Option<String>,
    pub role_id: Option<String>,
    pub scope: Option<String>,
    /// Where the users came from, as the caller named it (`group 'Sales'`, a `$filter`, …).
    pub source: String,
    /// `running` or `completed`.
    pub status: String,
    pub created_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    pub correlation_id: String,
}

/// One user of a bulk operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItem {
    pub position: i64,
    /// The user as the source named them (a user principal name or an id).
    pub user_key: String,
    pub user_id: Option<ObjectId>,
    /// `keyward_core::bulk::ItemState::as_str`.
    pub state: String,
    pub detail: Option<String>,
}

/// Bulk operations and their users.
#[async_trait]
pub trait BulkStore: Send {
    /// Writes the job, held by `lease_id` until `leased_until`, and its items.
    async fn insert_bulk_job(
        &mut self,
        job: &BulkJob,
        items: &[BulkItem],
        lease_id: &str,
        leased_until: OffsetDateTime,
    ) -> Result<(), StoreError>;
    async fn get_bulk_job(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<BulkJob>, StoreError>;
    /// A job's items in order, after `after` (a position).
    async fn list_bulk_items(
        &mut self,
        job: &ObjectId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<BulkItem>, StoreError>;
    /// How many of a job's items are in each state.
    async fn count_bulk_items(&mut self, job: &ObjectId) -> Result<Vec<(String, i64)>, StoreError>;
    /// Sets a pending item's outcome, once: `false` (nothing written) when it is no longer pending.
    async fn finish_bulk_item(
        &mut self,
        job: &ObjectId,
        position: i64,
        state: &str,
        detail: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// A running job of any tenant whose lease lapsed at `now`, now held by `lease_id` until
    /// `leased_until` (PostgreSQL skips rows another node is claiming).
    async fn claim_bulk_job(
        &mut self,
        now: OffsetDateTime,
        lease_id: &str,
        leased_until: OffsetDateTime,
    ) -> Result<Option<BulkJob>, StoreError>;
    /// Extends the lease `lease_id` holds on a running job; `false` when it holds it no more.
    async fn renew_bulk_job(
        &mut self,
        job: &ObjectId,
        lease_id: &str,
        leased_until: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Marks every still pending item of a job with `state` and `detail`; how many.
    async fn finish_pending_bulk_items(&mut self, job: &ObjectId, state: &str, detail: &str)
    -> Result<u64, StoreError>;
    /// How many of a tenant's jobs are running (`caller`: only theirs). Takes the tenant's bulk
    /// lock first (PostgreSQL: an advisory lock until the transaction ends; SQLite's writers are
    /// serial), so jobs started at once are counted one after another against the limits.
    async fn count_running_bulk_jobs(
        &mut self,
        tenant: &ObjectId,
        caller: Option<&ObjectId>,
    ) -> Result<i64, StoreError>;
    /// Deletes a tenant's completed jobs (and their items) finished before `before`; how many.
    async fn delete_bulk_jobs_before(&mut self, tenant: &ObjectId, before: OffsetDateTime) -> Result<u64, StoreError>;
    /// Marks a running job completed at `at` (and releases its lease), once: `false` when it was
    /// completed already.
    async fn complete_bulk_job(&mut self, job: &ObjectId, at: OffsetDateTime) -> Result<bool, StoreError>;
}

/// Just-in-time roles: eligibilities, the requests on schedules, and each role's settings.
#[async_trait]
pub trait PimStore: Send {
    async fn insert_eligibility(&mut self, eligibility: &RoleEligibility) -> Result<(), StoreError>;
    /// Sets an eligibility's window; `NotFound` when it does not exist.
    async fn update_eligibility(&mut self, eligibility: &RoleEligibility) -> Result<(), StoreError>;
    /// Deletes an eligibility; `NotFound` when it does not exist.
    async fn delete_eligibility(&mut self, tenant: &ObjectId, id: &str) -> Result<(), StoreError>;
    async fn get_eligibility(&mut self, tenant: &ObjectId, id: &str) -> Result<Option<RoleEligibility>, StoreError>;
    /// The eligibilities that have not ended, ordered by id: all of them, or those of `principal`.
    async fn list_eligibilities(
        &mut self,
        tenant: &ObjectId,
        principal: Option<&ObjectId>,
    ) -> Result<Vec<RoleEligibility>, StoreError>;
    /// The eligibilities that apply to a user and have not ended: the user's own, and those of
    /// role-assignable groups the user is a direct member of.
    async fn list_eligibilities_for(
        &mut self,
        tenant: &ObjectId,
        user: &ObjectId,
    ) -> Result<Vec<RoleEligibility>, StoreError>;
    /// Deletes the eligibilities that have ended and returns them.
    async fn take_ended_eligibilities(&mut self, tenant: &ObjectId) -> Result<Vec<RoleEligibility>, StoreError>;
    /// The assignments that have not ended (including those that start later), ordered by id:
    /// all of them, or those of `principal`.
    async fn list_role_assignment_schedules(
        &mut self,
        tenant: &ObjectId,
        principal: Option<&ObjectId>,
    ) -> Result<Vec<RoleAssignment>, StoreError>;
    /// Deletes the assignments that have ended, and the activations whose eligibility no longer
    /// holds for their principal, and returns them.
    async fn take_ended_role_assignments(&mut self, tenant: &ObjectId) -> Result<Vec<RoleAssignment>, StoreError>;
    /// Sets when an assignment ends, and when it starts if `start` is given.
    async fn set_role_assignment_window(
        &mut self,
        tenant: &ObjectId,
        id: &str,
        start: Option<OffsetDateTime>,
        end: Option<OffsetDateTime>,
    ) -> Result<(), StoreError>;
    async fn insert_schedule_request(&mut self, request: &RoleScheduleRequest) -> Result<(), StoreError>;
    /// Moves a request out of `PendingApproval`: rewrites its status, completion, target schedule
    /// and review; `NotFound` when it is not (or no longer) waiting for approval.
    async fn update_schedule_request(&mut self, request: &RoleScheduleRequest) -> Result<(), StoreError>;
    async fn get_schedule_request(
        &mut self,
        tenant: &ObjectId,
        kind: ScheduleKind,
        id: &str,
    ) -> Result<Option<RoleScheduleRequest>, StoreError>;
    /// Requests of one kind, newest first: all of them, or those for `principal`; only those
    /// waiting for approval when `pending_only`.
    async fn list_schedule_requests(
        &mut self,
        tenant: &ObjectId,
        kind: ScheduleKind,
        principal: Option<&ObjectId>,
        pending_only: bool,
    ) -> Result<Vec<RoleScheduleRequest>, StoreError>;
    /// A role's settings where they were changed, with when and by whom.
    async fn get_role_settings(
        &mut self,
        tenant: &ObjectId,
        role_definition_id: &str,
    ) -> Result<Option<(RoleSettings, OffsetDateTime, ObjectId)>, StoreError>;
    /// Every changed role's settings, by role definition id.
    async fn list_role_settings(
        &mut self,
        tenant: &ObjectId,
    ) -> Result<Vec<(String, RoleSettings, OffsetDateTime, ObjectId)>, StoreError>;
    async fn put_role_settings(
        &mut self,
        tenant: &ObjectId,
        role_definition_id: &str,
        settings: &RoleSettings,
        at: OffsetDateTime,
        by: &ObjectId,
    ) -> Result<(), StoreError>;
}

/// Role assignments and administrative units.
///
/// An assignment with a window (an activation, or a time-bound assignment) is read only while
/// the transaction's time is inside it, and an activation only while the eligibility it was
/// made from holds for its principal: every read below judges by [`RoleStore::set_now`].
#[async_trait]
pub trait RoleStore: Send {
    /// The time this transaction's reads judge windows by; by default the wall clock when it began.
    fn set_now(&mut self, now: OffsetDateTime);
    async fn insert_role_assignment(&mut self, assignment: &RoleAssignment) -> Result<(), StoreError>;
    /// The assignments of a principal that have not ended: those that apply now and those
    /// scheduled to start later, made to it directly or to a role-assignable group it is a member
    /// of. What protecting a target weighs: whoever takes over an account or a credential before
    /// a scheduled role starts holds the role when it does.
    async fn list_unended_role_assignments_for(
        &mut self,
        tenant: &ObjectId,
        principal: &ObjectId,
    ) -> Result<Vec<RoleAssignment>, StoreError>;
    /// The assignments that apply to a user: made to the user directly or to a group the user is a
    /// direct member of.
    async fn list_role_assignments_for(
        &mut self,
        tenant: &ObjectId,
        principal: &ObjectId,
    ) -> Result<Vec<RoleAssignment>, StoreError>;
    async fn delete_role_assignments_of(&mut self, principal: &ObjectId) -> Result<(), StoreError>;
    async fn insert_administrative_unit(&mut self, unit: &AdministrativeUnit) -> Result<(), StoreError>;
    async fn insert_administrative_unit_member(
        &mut self,
        unit: &ObjectId,
        member: &MemberRef,
    ) -> Result<(), StoreError>;
    /// The administrative units `member` belongs to, with whether each is restricted-management.
    async fn list_units_of(&mut self, member: &ObjectId) -> Result<Vec<(ObjectId, bool)>, StoreError>;
    /// [`list_units_of`](Self::list_units_of) for a deleted user or group: the units it was a
    /// member of when it was deleted, that still exist.
    async fn list_deleted_units_of(&mut self, member: &ObjectId) -> Result<Vec<(ObjectId, bool)>, StoreError>;
    /// The ids of the tenant's restricted-management administrative units.
    async fn list_restricted_units(&mut self, tenant: &ObjectId) -> Result<Vec<ObjectId>, StoreError>;
    /// Whether `user` is a member or owner of any role-assignable group.
    async fn is_in_role_assignable_group(&mut self, user: &ObjectId) -> Result<bool, StoreError>;
    /// The tenant's role-change lock, exclusive, until the transaction ends: for a change to who
    /// holds roles or who is protected (a promotion, a demotion, disabling or deleting a user).
    /// Such a transaction takes it before anything it decides on. PostgreSQL: an advisory lock;
    /// SQLite's write transactions are serial already.
    async fn lock_role_changes(&mut self, tenant: &ObjectId) -> Result<(), StoreError>;
    /// The same lock, shared, until the transaction ends: for a decision on a target's roles,
    /// so no promotion or demotion commits between the decision and this transaction's end,
    /// while decisions in the tenant run side by side. Nothing when the transaction holds the
    /// lock already; asking for it exclusive afterwards is a bug (two such transactions would
    /// wait for each other), which debug builds stop at.
    async fn share_role_changes(&mut self, tenant: &ObjectId) -> Result<(), StoreError>;
    async fn get_role_assignment(&mut self, tenant: &ObjectId, id: &str) -> Result<Option<RoleAssignment>, StoreError>;
    /// Role assignments matching `filter`, ordered by id, starting after `after`.
    async fn list_role_assignments(
        &mut self,
        tenant: &ObjectId,
        filter: &AssignmentFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RoleAssignment>, StoreError>;
    /// Deletes an assignment; `NotFound` when it does not exist.
    async fn delete_role_assignment(&mut self, tenant: &ObjectId, id: &str) -> Result<(), StoreError>;
    /// Records a built-in role as activated in the tenant (Graph's older role API); whether it
    /// was not activated before.
    async fn activate_directory_role(
        &mut self,
        tenant: &ObjectId,
        role_template_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// The template ids of the roles activated in the tenant, lowercase.
    async fn list_activated_directory_roles(&mut self, tenant: &ObjectId) -> Result<Vec<String>, StoreError>;
    async fn insert_custom_role(&mut self, role: &CustomRole) -> Result<(), StoreError>;
    async fn update_custom_role(&mut self, role: &CustomRole) -> Result<(), StoreError>;
    async fn delete_custom_role(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    async fn get_custom_role(&mut self, tenant: &ObjectId, id: &str) -> Result<Option<CustomRole>, StoreError>;
    /// Every custom role of the tenant, by display name.
    async fn list_custom_roles(&mut self, tenant: &ObjectId) -> Result<Vec<CustomRole>, StoreError>;
    async fn get_administrative_unit(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
    ) -> Result<Option<AdministrativeUnit>, StoreError>;
    /// Administrative units ordered by id, starting after `after`.
    async fn list_administrative_units(
        &mut self,
        tenant: &ObjectId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AdministrativeUnit>, StoreError>;
    async fn update_administrative_unit(&mut self, unit: &AdministrativeUnit) -> Result<(), StoreError>;
    /// Deletes a unit with its memberships and the role assignments scoped to it.
    async fn delete_administrative_unit(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    /// Members ordered by id, starting after `after`.
    async fn list_unit_members(
        &mut self,
        unit: &ObjectId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MemberRef>, StoreError>;
    async fn is_unit_member(&mut self, unit: &ObjectId, member: &ObjectId) -> Result<bool, StoreError>;
    /// Removes a member; `NotFound` when it was not a member.
    async fn delete_administrative_unit_member(&mut self, unit: &ObjectId, member: &ObjectId)
    -> Result<(), StoreError>;
}

/// Passwords and Temporary Access Passes.
#[async_trait]
pub trait CredentialStore: Send {
    async fn get_password_hash(&mut self, user: &ObjectId) -> Result<Option<String>, StoreError>;
    /// Sets the password hash and the time it changed (`lastPasswordChangeDateTime`).
    async fn set_password_hash(&mut self, user: &ObjectId, hash: &str, at: OffsetDateTime) -> Result<(), StoreError>;
    /// Stores a pass, replacing the user's previous one.
    async fn put_temporary_access_pass(&mut self, pass: &TemporaryAccessPass) -> Result<(), StoreError>;
    async fn get_temporary_access_pass(&mut self, user: &ObjectId) -> Result<Option<TemporaryAccessPass>, StoreError>;
}

/// Token signing keys.
#[async_trait]
pub trait KeyStore: Send {
    async fn insert_signing_key(&mut self, key: &SigningKey) -> Result<(), StoreError>;
    /// Every key, oldest first.
    async fn list_signing_keys(&mut self) -> Result<Vec<SigningKey>, StoreError>;
    async fn retire_signing_key(&mut self, kid: &str, at: OffsetDateTime) -> Result<(), StoreError>;
}

/// Audit records (append-only).
#[async_trait]
pub trait AuditStore: Send {
    async fn insert_audit(&mut self, record: &AuditRecord) -> Result<(), StoreError>;
    /// Keeps `record` to be written first by this transaction's next `insert_audit(s)`, or else
    /// just before it commits (dropped with a rollback). Writing a record takes the tenant's
    /// audit chain head, which holds back the tenant's other audited writes until the commit; a
    /// use case that knows a record early (an approval, before the change it approves runs)
    /// defers it, so the head is still taken last, after the change's own locks.
    fn defer_audit(&mut self, record: AuditRecord);
    /// Appends one tenant's records to its chain in order, with a few multi-row statements (bulk
    /// loads such as the benchmark seeder).
    async fn insert_audits(&mut self, records: &[AuditRecord]) -> Result<(), StoreError>;
    /// The targets of `tenant`'s successful audit records with a chain number above
    /// `after_index`, up to `limit` records in chain order: each record's chain number and its
    /// targets' ids and kinds (`User`, `Group`, …). Delta queries read what changed here.
    async fn audit_targets_after(
        &mut self,
        tenant: &ObjectId,
        after_index: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Vec<(ObjectId, &'static str)>)>, StoreError>;
    /// Every tenant with an audit chain, and its stored head (`None` if the head row is missing).
    async fn audit_chain_tenants(&mut self) -> Result<Vec<(String, Option<ChainPosition>)>, StoreError>;
    /// Up to `limit` of `tenant`'s records with a chain number above `after_index`, in chain order,
    /// as verification reads them.
    async fn audit_chain_page(
        &mut self,
        tenant: &str,
        after_index: i64,
        limit: usize,
    ) -> Result<Vec<ChainRow>, StoreError>;
    /// The tenant's retention checkpoint (the chain's start if retention never ran).
    async fn audit_checkpoint(&mut self, tenant: &str) -> Result<Checkpoint, StoreError>;
    /// Like [`AuditStore::audit_checkpoint`], locking it for the rest of the transaction so one
    /// retention pass runs at a time per tenant.
    async fn lock_audit_checkpoint(&mut self, tenant: &str) -> Result<Checkpoint, StoreError>;
    async fn set_audit_checkpoint(&mut self, tenant: &str, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    /// The lowest chain number above `after` of a record at or after `at` (chain order, not time
    /// order: records whose times are out of order must not be cut).
    async fn first_audit_since(
        &mut self,
        tenant: &str,
        after: i64,
        at: OffsetDateTime,
    ) -> Result<Option<i64>, StoreError>;
    /// The tenant's chain head (`None` before its first record, or if the head row is missing).
    async fn audit_chain_head(&mut self, tenant: &str) -> Result<Option<ChainPosition>, StoreError>;
    /// The lowest record number of a target or initiator row in the tenant's log that belongs to
    /// none of its records, if any. Only where queries by target or initiator read those rows
    /// without their record (SQLite's copies).
    async fn audit_stray_row(&mut self, tenant: &str) -> Result<Option<i64>, StoreError>;
    /// Deletes the records numbered `after < n <= through` (their target and initiator rows cascade); returns how many.
    async fn delete_audit_range(&mut self, tenant: &str, after: i64, through: i64) -> Result<u64, StoreError>;
    /// The tenant's audit retention in days and its MAC (empty for the default).
    async fn audit_retention(&mut self, tenant: &str) -> Result<(i64, String), StoreError>;
    async fn set_audit_retention(&mut self, tenant: &str, days: i64, mac: &str) -> Result<(), StoreError>;
}

/// A user's sign-in state: per-user MFA, the remembered-devices cut-off, smart-lockout counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserSignInState {
    pub per_user_mfa: PerUserMfaState,
    pub remembered_devices_not_before: Option<OffsetDateTime>,
    pub password: Lockout,
    pub code: Lockout,
    pub preferences: SignInPreferences,
    /// Skips of the registration campaign.
    pub campaign: CampaignSnooze,
}

/// A passkey (a FIDO2 / WebAuthn credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fido2Method {
    pub id: ObjectId,
    pub tenant_id: ObjectId,
    pub user_id: ObjectId,
    pub display_name: String,
    pub credential_id: Vec<u8>,
    /// The public key as the authenticator sent it (COSE_Key).
    pub cose_key: Vec<u8>,
    pub aaguid: String,
    pub sign_count: i64,
    /// Backup eligible (a synced passkey) and backed up, from the authenticator's flags.
    pub backup_eligible: bool,
    pub backed_up: bool,
    /// `attested` or `notAttested`.
    pub attestation_level: String,
    pub created: OffsetDateTime,
}

/// A WebAuthn ceremony's challenge, stored by its SHA-256 until used or expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebauthnChallenge {
    pub tenant_id: ObjectId,
    /// The user the ceremony is for (`None` for a sign-in that names no user).
    pub user_id: Option<ObjectId>,
    /// `registration` or `authentication`.
    pub purpose: String,
    pub expires_at: OffsetDateTime,
}

/// A software OATH (TOTP) method; the secret is sealed by the app.
#[derive(Clone, PartialEq, Eq)]
pub struct SoftwareOathMethod {
    pub id: ObjectId,
    pub user_id: ObjectId,
    pub sealed_secret: Vec<u8>,
    pub created: OffsetDateTime,
    pub last_used_step: i64,
}

impl fmt::Debug for SoftwareOathMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareOathMethod")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// A browser session, from the first sign-in page to sign-out.
#[derive(Clone, PartialEq, Eq)]
pub struct BrowserSession {
    /// SHA-256 of the cookie value.
    pub id_sha256: Vec<u8>,
    pub tenant_id: ObjectId,
    pub user_id: Option<ObjectId>,
    /// Where the sign-in stands.
    pub stage: Stage,
    /// The name the user typed, as typed.
    pub username: Option<String>,
    pub return_to: String,
    /// When the sign-in began, or began again: a user's own password change during it is the
    /// cut-off of every session issued before it, this one's start included. It only moves
    /// forward: a save from a page loaded before the change (another tab) keeps the later start.
    pub created: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub authenticated_at: Option<OffsetDateTime>,
    pub mfa_at: Option<OffsetDateTime>,
    /// The methods used.
    pub methods: Amr,
    pub pass_expires_at: Option<OffsetDateTime>,
    /// A TOTP secret awaiting confirmation, sealed.
    pub pending_secret: Option<Vec<u8>>,
    pub correlation_id: String,
    /// When the session last used the admin portal (read only; set by `touch_portal_session`).
    pub portal_seen_at: Option<OffsetDateTime>,
}

impl fmt::Debug for BrowserSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserSession")
            .field("user_id", &self.user_id)
            .field("stage", &self.stage)
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

/// A position in the sign-in log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInCursor {
    pub created: String,
    pub seq: i64,
}

/// Sign-in policy, per-user sign-in state, software OATH methods, browser sessions, remembered
/// devices and the sign-in log.
#[async_trait]
pub trait SignInStore: Send {
    /// The tenant's sign-in and Temporary Access Pass policies (defaults when never set).
    async fn sign_in_policy(&mut self, tenant: &ObjectId) -> Result<(SignInPolicy, TapPolicy), StoreError>;
    async fn set_sign_in_policy(
        &mut self,
        tenant: &ObjectId,
        policy: &SignInPolicy,
        tap: &TapPolicy,
    ) -> Result<(), StoreError>;
    /// The tenant's per-agent limits (no limits when never set).
    async fn agent_limits(&mut self, tenant: &ObjectId) -> Result<AgentLimits, StoreError>;
    async fn set_agent_limits(&mut self, tenant: &ObjectId, limits: &AgentLimits) -> Result<(), StoreError>;
    /// How many `action`s `agent` did since `since`. On PostgreSQL it first takes a lock on the
    /// agent held until the transaction ends, so two concurrent actions cannot both pass a cap.
    async fn count_agent_actions(
        &mut self,
        tenant: &ObjectId,
        agent: &str,
        action: &str,
        since: OffsetDateTime,
    ) -> Result<i64, StoreError>;
    /// Counts one `action` of `agent` at `at`, and forgets the agent's actions older than an hour.
    async fn record_agent_action(
        &mut self,
        tenant: &ObjectId,
        agent: &str,
        action: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// The tenant's authentication methods policy (targets and the registration campaign;
    /// defaults when never set).
    async fn methods_policy(&mut self, tenant: &ObjectId) -> Result<MethodsPolicy, StoreError>;
    async fn set_methods_policy(&mut self, tenant: &ObjectId, policy: &MethodsPolicy) -> Result<(), StoreError>;
    /// Serialises changes to a tenant's sign-in and methods policies until the transaction ends
    /// (PostgreSQL: an advisory lock; SQLite's write transactions are serial already), so two
    /// administrators changing different parts at once both keep their change.
    async fn lock_policy_changes(&mut self, tenant: &ObjectId) -> Result<(), StoreError>;
    async fn user_sign_in_state(&mut self, user: &ObjectId) -> Result<UserSignInState, StoreError>;
    /// Like [`SignInStore::user_sign_in_state`], locking the row for the rest of the transaction
    /// (PostgreSQL `FOR UPDATE`), so concurrent failures on several nodes all count.
    async fn lock_user_sign_in_state(&mut self, user: &ObjectId) -> Result<UserSignInState, StoreError>;
    async fn set_user_sign_in_state(&mut self, user: &ObjectId, state: &UserSignInState) -> Result<(), StoreError>;
    async fn list_software_oath_methods(&mut self, user: &ObjectId) -> Result<Vec<SoftwareOathMethod>, StoreError>;
    /// A user's passkeys, oldest first.
    async fn list_fido2_methods(&mut self, user: &ObjectId) -> Result<Vec<Fido2Method>, StoreError>;
    /// The passkey with this credential id (in any tenant).
    async fn find_fido2_method(&mut self, credential_id: &[u8]) -> Result<Option<Fido2Method>, StoreError>;
    /// Records a sign-in with a passkey: its new signature counter and backup state, only if the
    /// counter is still `seen_count`; `false` when another sign-in used it meanwhile.
    async fn use_fido2_method(
        &mut self,
        id: &ObjectId,
        seen_count: i64,
        new_count: i64,
        backed_up: bool,
    ) -> Result<bool, StoreError>;
    /// Adds a passkey; `Conflict` when the credential is registered already (in any tenant).
    async fn insert_fido2_method(&mut self, method: &Fido2Method) -> Result<(), StoreError>;
    /// Deletes one of a user's passkeys; `false` when there was none with that id.
    async fn delete_fido2_method(&mut self, user: &ObjectId, id: &ObjectId) -> Result<bool, StoreError>;
    async fn put_webauthn_challenge(
        &mut self,
        challenge_sha256: &[u8],
        challenge: &WebauthnChallenge,
    ) -> Result<(), StoreError>;
    /// Takes a challenge stored for `purpose`: returns and deletes it, so it is used once on
    /// every node. A row stored for another purpose (a spent sign-in challenge) is left alone.
    async fn take_webauthn_challenge(
        &mut self,
        challenge_sha256: &[u8],
        purpose: &str,
    ) -> Result<Option<WebauthnChallenge>, StoreError>;
    /// Deletes challenges that expired before `now`; how many.
    async fn delete_expired_webauthn_challenges(&mut self, now: OffsetDateTime) -> Result<u64, StoreError>;
    async fn insert_software_oath_method(&mut self, method: &SoftwareOathMethod) -> Result<(), StoreError>;
    /// Records that `step` was used, only if it is newer than the last used step; `false` when
    /// another request used this or a later step first (a replay).
    async fn use_software_oath_step(&mut self, id: &ObjectId, step: i64) -> Result<bool, StoreError>;
    /// Deletes one method (`NotFound` if absent) or, with `None`, all of the user's; returns how many.
    async fn delete_software_oath_methods(&mut self, user: &ObjectId, id: Option<&ObjectId>)
    -> Result<u64, StoreError>;
    /// Deletes the user's Temporary Access Pass (only the one with `id`, if given); whether one was deleted.
    async fn delete_temporary_access_pass(
        &mut self,
        user: &ObjectId,
        id: Option<&ObjectId>,
    ) -> Result<bool, StoreError>;
    /// The user's phone methods: `(phoneType, phoneNumber)` in type order.
    async fn list_phone_methods(&mut self, user: &ObjectId) -> Result<Vec<(String, String)>, StoreError>;
    /// Adds or replaces the user's phone of a type.
    async fn put_phone_method(
        &mut self,
        user: &ObjectId,
        phone_type: &str,
        number: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Deletes the user's phone of a type; whether one was deleted.
    async fn delete_phone_method(&mut self, user: &ObjectId, phone_type: &str) -> Result<bool, StoreError>;
    /// Deletes every phone of the user, in one statement; the types deleted, in type order.
    async fn delete_phone_methods(&mut self, user: &ObjectId) -> Result<Vec<String>, StoreError>;
    /// The user's email method address.
    async fn get_email_method(&mut self, user: &ObjectId) -> Result<Option<String>, StoreError>;
    async fn put_email_method(&mut self, user: &ObjectId, address: &str, at: OffsetDateTime) -> Result<(), StoreError>;
    async fn delete_email_method(&mut self, user: &ObjectId) -> Result<bool, StoreError>;
    /// Records a password reset operation (`status`: `succeeded`).
    async fn insert_reset_operation(
        &mut self,
        tenant: &ObjectId,
        user: &ObjectId,
        id: &ObjectId,
        status: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// A password reset operation of a user: its status and time.
    async fn get_reset_operation(
        &mut self,
        user: &ObjectId,
        id: &ObjectId,
    ) -> Result<Option<(String, OffsetDateTime)>, StoreError>;
    /// Marks a one-time pass used; `false` if it was used already.
    async fn use_temporary_access_pass(&mut self, id: &ObjectId, at: OffsetDateTime) -> Result<bool, StoreError>;
    /// Spends the user's pass that ends at registration (see `TemporaryAccessPass`), if any.
    async fn spend_registration_pass(&mut self, user: &ObjectId, at: OffsetDateTime) -> Result<(), StoreError>;
    async fn insert_browser_session(&mut self, session: &BrowserSession) -> Result<(), StoreError>;
    async fn get_browser_session(&mut self, id_sha256: &[u8]) -> Result<Option<BrowserSession>, StoreError>;
    /// Replaces a session's row (matched by `id_sha256`).
    async fn update_browser_session(&mut self, session: &BrowserSession) -> Result<(), StoreError>;
    /// Records that the session used the admin portal at `at` (never moving the mark back).
    async fn touch_portal_session(&mut self, id_sha256: &[u8], at: OffsetDateTime) -> Result<(), StoreError>;
    async fn delete_browser_session(&mut self, id_sha256: &[u8]) -> Result<(), StoreError>;
    /// Gives a session a new cookie hash (at sign-in, against session fixation).
    async fn rekey_browser_session(&mut self, old_sha256: &[u8], new_sha256: &[u8]) -> Result<(), StoreError>;
    /// Clears a session's pending TOTP secret; `false` if it held none (another request used it).
    async fn take_pending_secret(&mut self, id_sha256: &[u8]) -> Result<bool, StoreError>;
    /// Deletes sessions that expired before `now`; returns how many.
    async fn delete_expired_browser_sessions(&mut self, now: OffsetDateTime) -> Result<u64, StoreError>;
    async fn insert_remembered_device(&mut self, id_sha256: &[u8], device: &RememberedDevice)
    -> Result<(), StoreError>;
    async fn get_remembered_device(&mut self, id_sha256: &[u8]) -> Result<Option<RememberedDevice>, StoreError>;
    /// Forgets every remembered device of a user.
    async fn delete_remembered_devices(&mut self, user: &ObjectId) -> Result<(), StoreError>;
    /// Logs a sign-in and, for a user's, updates their [`SignInActivity`].
    async fn insert_sign_in(&mut self, record: &SignInRecord) -> Result<(), StoreError>;
    /// [`insert_sign_in`](Self::insert_sign_in) for several: the entries in one statement (then
    /// each user's activity, in the order given).
    async fn insert_sign_ins(&mut self, records: &[&SignInRecord]) -> Result<(), StoreError>;
    /// The version of the tenant's clients (see [`Store::kept_client`]), as this transaction
    /// sees it.
    async fn client_version(&mut self, tenant: &ObjectId) -> Result<i64, StoreError>;
    /// The sign-in activity of those of `users` who ever signed in.
    async fn sign_in_activity(&mut self, users: &[ObjectId]) -> Result<Vec<(ObjectId, SignInActivity)>, StoreError>;
    /// Sign-ins matching `filter`, newest first, continuing after `after`.
    async fn query_sign_ins(
        &mut self,
        tenant: &ObjectId,
        filter: &SignInFilter,
        after: Option<&SignInCursor>,
        limit: usize,
    ) -> Result<Vec<(SignInCursor, SignInRecord)>, StoreError>;
    async fn get_sign_in(&mut self, tenant: &ObjectId, id: &str) -> Result<Option<SignInRecord>, StoreError>;
    /// Deletes a tenant's sign-ins older than `before`; returns how many.
    async fn delete_sign_ins_before(&mut self, tenant: &ObjectId, before: OffsetDateTime) -> Result<u64, StoreError>;
}

/// An app registration (Graph's `application`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: ObjectId,
    pub tenant_id: ObjectId,
    pub app_id: String,
    pub display_name: String,
    pub is_fallback_public_client: bool,
    pub public_redirect_uris: Vec<String>,
    pub web_redirect_uris: Vec<String>,
    pub created: OffsetDateTime,
    /// `uniqueName`: the alternate key an upsert created the application under (immutable).
    pub unique_name: Option<String>,
}

/// An application as the token endpoint reads it (`Store::find_client`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub application: Application,
    /// Its service principal, enabled or not (`None`: none in this tenant).
    pub service_principal: Option<ServicePrincipal>,
    pub credentials: Vec<AppCredential>,
    /// The service principal's role assignments that apply now (none without a principal).
    pub principal_roles: Vec<RoleAssignment>,
}

/// A credential of an app registration: a client secret (only its SHA-256 is kept) or a
/// certificate whose key signs `private_key_jwt` client assertions.
#[derive(Clone, PartialEq, Eq)]
pub struct AppCredential {
    pub key_id: ObjectId,
    pub application_id: ObjectId,
    pub display_name: Option<String>,
    pub secret: Option<(Vec<u8>, String)>,
    pub certificate: Option<(Vec<u8>, String)>,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

impl fmt::Debug for AppCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredential").field("key_id", &self.key_id).field("end", &self.end).finish_non_exhaustive()
    }
}

/// What an authorization code, a refresh token or an approved device code carries about the
/// user's authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub tenant_id: ObjectId,
    pub client_id: String,
    pub user_id: ObjectId,
    pub scope: String,
    pub auth_time: OffsetDateTime,
    pub amr: Amr,
    /// Tokens obtained with a Temporary Access Pass end with it.
    pub pass_expires_at: Option<OffsetDateTime>,
}

/// An authorization code (stored as SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCode {
    pub code_sha256: Vec<u8>,
    pub grant: Grant,
    pub redirect_uri: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub created: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

/// A refresh token (stored as SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub token_sha256: Vec<u8>,
    pub family_id: String,
    pub grant: Grant,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub rotated_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// The client authenticated (a secret or an assertion) when the family was granted, so each
    /// redemption must too, whatever the application's settings are then.
    pub client_authenticated: bool,
}

/// A device authorization (RFC 8628); the device code is stored as SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    pub device_sha256: Vec<u8>,
    pub user_code: String,
    pub tenant_id: ObjectId,
    pub client_id: String,
    pub scope: String,
    pub created: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub interval_seconds: i64,
    pub last_poll_at: Option<OffsetDateTime>,
    pub status: DeviceCodeStatus,
    pub user_id: Option<ObjectId>,
    pub auth_time: Option<OffsetDateTime>,
    pub amr: Amr,
    pub pass_expires_at: Option<OffsetDateTime>,
}

/// App registrations, authorization codes, refresh tokens and device codes.
/// One enabled user's row of the registration report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRow {
    pub id: ObjectId,
    pub user_principal_name: String,
    pub display_name: String,
    pub methods: RegisteredMethods,
}

/// The authentication methods registration report, computed from the directory.
#[async_trait]
pub trait ReportStore: Send {
    /// The tenant's enabled users matching `filter`, sorted by `order` (its lowercased value, then
    /// the id; descending with `descending`), after `after`, at most `limit`.
    async fn registration_details(
        &mut self,
        tenant: &ObjectId,
        filter: &RegistrationFilter,
        order: RegistrationOrder,
        descending: bool,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<RegistrationRow>, StoreError>;
    /// The report's counts over the tenant's enabled users that `scope` includes.
    async fn registration_counts(
        &mut self,
        tenant: &ObjectId,
        scope: &SummaryScope,
    ) -> Result<RegistrationCounts, StoreError>;
}

#[async_trait]
pub trait OAuthStore: Send {
    async fn insert_application(&mut self, app: &Application) -> Result<(), StoreError>;
    async fn update_application(&mut self, app: &Application) -> Result<(), StoreError>;
    async fn delete_application(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    /// Keeps an application and its credentials in the deleted items (deleted at `at`), then
    /// deletes it.
    async fn soft_delete_application(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// The tenant's applications deleted at or after `since`, ordered by id after `after`, with
    /// when each was deleted.
    async fn list_deleted_applications(
        &mut self,
        tenant: &ObjectId,
        since: OffsetDateTime,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(Application, OffsetDateTime)>, StoreError>;
    /// One deleted application, deleted at or after `since`.
    async fn get_deleted_application(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
        since: OffsetDateTime,
    ) -> Result<Option<(Application, OffsetDateTime)>, StoreError>;
    /// A deleted application's credentials, as [`list_app_credentials`](Self::list_app_credentials).
    async fn list_deleted_app_credentials(&mut self, application: &ObjectId) -> Result<Vec<AppCredential>, StoreError>;
    /// Moves a deleted application back with its credentials; `Conflict` when another
    /// application has taken its `uniqueName` meanwhile.
    async fn restore_application(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    /// Removes a deleted application for good (`NotFound` when there is none).
    async fn purge_deleted_application(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<(), StoreError>;
    /// Removes for good the applications deleted before `before`; returns how many.
    async fn purge_deleted_applications_before(
        &mut self,
        tenant: &ObjectId,
        before: OffsetDateTime,
    ) -> Result<u64, StoreError>;
    /// Revokes every refresh token issued to client `client_id` (an application's `appId`) in the
    /// tenant that is not revoked yet, and deletes its authorization and device codes not yet
    /// redeemed; returns how many refresh tokens it revoked.
    async fn revoke_client_tokens(
        &mut self,
        tenant: &ObjectId,
        client_id: &str,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError>;
    async fn get_application(&mut self, tenant: &ObjectId, id: &ObjectId) -> Result<Option<Application>, StoreError>;
    /// [`get_application`](Self::get_application) for a change that writes the application back
    /// (`update_application` replaces every property), the row locked as
    /// [`UserStore::get_user_for_update`] locks a user's.
    async fn get_application_for_update(
        &mut self,
        tenant: &ObjectId,
        id: &ObjectId,
    ) -> Result<Option<Application>, StoreError>;
    async fn find_application(&mut self, tenant: &ObjectId, app_id: &str) -> Result<Option<Application>, StoreError>;
    /// The application whose `uniqueName` is `name`, without case.
    async fn find_application_by_unique_name(
        &mut self,
        tenant: &ObjectId,
        name: &str,
    ) -> Result<Option<Application>, StoreError>;
    /// Applications ordered by id, starting after `after`.
    async fn list_applications(
        &mut self,
        tenant: &ObjectId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Application>, StoreError>;
    async fn insert_app_credential(&mut self, credential: &AppCredential) -> Result<(), StoreError>;
    async fn list_app_credentials(&mut self, application: &ObjectId) -> Result<Vec<AppCredential>, StoreError>;
    /// Removes a credential; `NotFound` if the application has no such key.
    async fn delete_app_credential(&mut self, application: &ObjectId, key_id: &ObjectId) -> Result<(), StoreError>;
    async fn insert_auth_code(&mut self, code: &AuthCode) -> Result<(), StoreError>;
    async fn get_auth_code(&mut self, code_sha256: &[u8]) -> Result<Option<AuthCode>, StoreError>;
    /// Marks a code used; `false` if it was used already (a second redemption).
    async fn use_auth_code(&mut self, code_sha256: &[u8], at: OffsetDateTime) -> Result<bool, StoreError>;
    async fn insert_refresh_token(&mut self, token: &RefreshToken) -> Result<(), StoreError>;
    async fn get_refresh_token(&mut self, token_sha256: &[u8]) -> Result<Option<RefreshToken>, StoreError>;
    /// Marks a token rotated; `false` if it was rotated or revoked already (a replay).
    async fn rotate_refresh_token(&mut self, token_sha256: &[u8], at: OffsetDateTime) -> Result<bool, StoreError>;
    /// Whether any token of a family has been revoked. Takes the family's lock first (as
    /// `revoke_refresh_family` does; PostgreSQL: an advisory lock until the transaction ends,
    /// SQLite's write transactions are serial already), so a token this transaction inserts after
    /// the check and a concurrent revocation of the family cannot miss each other.
    async fn is_refresh_family_revoked(&mut self, family_id: &str) -> Result<bool, StoreError>;
    /// Revokes every token of a family, under the family's lock (see `is_refresh_family_revoked`).
    async fn revoke_refresh_family(&mut self, family_id: &str, at: OffsetDateTime) -> Result<(), StoreError>;
    /// Deletes refresh tokens and codes that expired before `before`; returns how many.
    async fn delete_expired_grants(&mut self, before: OffsetDateTime) -> Result<u64, StoreError>;
    async fn insert_device_code(&mut self, code: &DeviceCode) -> Result<(), StoreError>;
    async fn get_device_code(&mut self, device_sha256: &[u8]) -> Result<Option<DeviceCode>, StoreError>;
    async fn find_device_code(&mut self, user_code: &str) -> Result<Option<DeviceCode>, StoreError>;
    /// Replaces a device code's status, user, poll time and authentication, only if its status is
    /// still `expected_status`; whether it was (a concurrent approval or poll wins otherwise).
    async fn update_device_code(
        &mut self,
        code: &DeviceCode,
        expected_status: DeviceCodeStatus,
    ) -> Result<bool, StoreError>;
    /// Moves an approved code to `redeemed`; `false` if another poll redeemed it first.
    async fn redeem_device_code(&mut self, device_sha256: &[u8]) -> Result<bool, StoreError>;
    /// Records a client assertion's `jti` until `expires_at`; `false` if the client used it
    /// before (a replay). Forgets assertions that expired over a minute before `now`.
    async fn use_client_assertion(
        &mut self,
        client_id: &str,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    async fn insert_permission_grant(&mut self, grant: &PermissionGrant) -> Result<(), StoreError>;
    async fn update_permission_grant_scope(&mut self, id: &str, scope: &str) -> Result<(), StoreError>;
    async fn delete_permission_grant(&mut self, tenant: &ObjectId, id: &str) -> Result<bool, StoreError>;
    async fn get_permission_grant(
        &mut self,
        tenant: &ObjectId,
        id: &str,
    ) -> Result<Option<PermissionGrant>, StoreError>;
    /// The grants that let `client` act for `principal`, ordered by id: the client's grant for
    /// everyone (`AllPrincipals`) and, with a principal, that principal's own (`Principal`).
    /// Found through the grants' unique key: a client many users consented to has a grant for
    /// each of them, and listing them all for every sign-in grew with that number.
    async fn permission_grants_for(
        &mut self,
        tenant: &ObjectId,
        client: &ObjectId,
        principal: Option<&ObjectId>,
    ) -> Result<Vec<PermissionGrant>, StoreError>;
    /// A tenant's grants that match `filter`, ordered by id, from after `after`, at most `limit`
    /// (one client's for one user: `permission_grants_for`).
    async fn list_permission_grants(
        &mut self,
        tenant: &ObjectId,
        filter: &keyward_core::consent::GrantFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PermissionGrant>, StoreError>;
    /// The permission grant policies users are assigned (`None`: the default).
    async fn user_consent_policies(&mut self, tenant: &ObjectId) -> Result<Option<Vec<String>>, StoreError>;
    async fn set_user_consent_policies(&mut self, tenant: &ObjectId, policies: &[String]) -> Result<(), StoreError>;
}

/// One stored audit record as chain verification reads it; see `keyward_core::audit_chain::StoredLink`.
#[derive(Debug, Clone)]
pub struct ChainRow {
    pub seq: i64,
    pub id: String,
    pub chain_index: i64,
    pub prev_hash: String,
    pub hash: String,
    pub canonical: String,
    /// Whether the indexed columns and target rows agree with the stored record.
    pub columns_match: bool,
}

impl ChainRow {
    pub fn link(&self) -> keyward_core::audit_chain::StoredLink<'_> {
        keyward_core::audit_chain::StoredLink {
            seq: self.seq,
            id: &self.id,
            index: self.chain_index,
            prev_hash: &self.prev_hash,
            hash: &self.hash,
            canonical: &self.canonical,
            columns_match: self.columns_match,
        }
    }
}

/// Opens the database named by `url` (`sqlite://PATH` or `postgres://…`) and applies migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(backend::SqliteStore::open(url).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(backend::PostgresStore::open(url).await?));
    }
    Err(StoreError::Other(format!(
        "unsupported database URL scheme in '{}': use sqlite://PATH or postgres://USER@HOST/DB",
        redact_url(url)
    )))
}

/// A database URL with any password replaced, for messages and logs: the password of the user
/// part (which may itself contain `@`) and any `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (rest, None),
    };
    let mut res = match authority_and_path.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://{authority_and_path}"),
        },
        None => format!("{scheme}://{authority_and_path}"),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        res.push('?');
        res.push_str(&pairs.join("&"));
    }
    res
}

#[cfg(test)]
mod tests {
    use keyward_core::ids::ObjectId;

    /// sqlx names an in-memory database `file:sqlx-in-memory-N`: reads must not look for a file
    /// of that name (they did, and every authenticated request failed).
    #[tokio::test]
    async fn an_in_memory_database_answers_reads() {
        let store = super::open("sqlite::memory:").await.expect("open");
        let (tenant, id) = (ObjectId::from_bytes([1; 16]), ObjectId::from_bytes([2; 16]));
        let now = time::OffsetDateTime::now_utc();
        assert_eq!(store.get_user_and_roles(&tenant, &id, now).await.map(|it| it.is_none()), Ok(true));
        assert_eq!(store.find_user(&tenant, "nobody@example.com").await.map(|it| it.is_none()), Ok(true));
        store.close().await;
    }

    #[test]
    fn redacts_passwords_in_database_urls() {
        assert_eq!(super::redact_url("postgres://kw:s3cret@db:5432/kw"), "postgres://kw:***@db:5432/kw");
        assert_eq!(super::redact_url("postgres://kw@db/kw"), "postgres://kw@db/kw");
        assert_eq!(super::redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert_eq!(super::redact_url("postgres://kw:p@ss@db/kw"), "postgres://kw:***@db/kw");
        assert_eq!(
            super::redact_url("postgres://db/kw?user=kw&password=s3cret&sslmode=require"),
            "postgres://db/kw?user=kw&password=***&sslmode=require"
        );
    }
}
