//! The audit log: records, their target and initiator rows, the per-target copies that keep one
//! user's records together on SQLite, the hash chain's head and checkpoints, retention.
//!
//! # Chaining
//!
//! Records are chained as they are inserted (`insert_audit`, `insert_audits`): the writer takes
//! the tenant's row in `audit_chain_heads` with an upsert (a row lock on PostgreSQL; SQLite
//! writers are serial anyway), links the records and moves the head in the same transaction, so
//! chain order is commit order. The indexed columns (`audit_json::columns`) are derived from the
//! stored record; verification re-derives and compares them, so editing a column to hide a record
//! from queries is detected.
//!
//! # Layout: one target's (or initiator's) records together
//!
//! A target filter drives the query from `audit_targets` (`CROSS JOIN` fixes the join order on
//! SQLite), whose rows carry their record's tenant and time and are keyed `(tenant_id, target_id,
//! activity_date_time, audit_seq)`: a target's newest records are the first index entries however
//! many it has. On SQLite the table is clustered on that key (`WITHOUT ROWID`, narrow rows) and
//! each row carries the key of a copy of its record in `audit_copies`, a rowid table (schema 8).
//! A target's copies take consecutive keys in a block of 2^32 keys of its own ([`COPY_BLOCK_BITS`];
//! `take_copy_key`: the next key after the largest in the block of the target's newest copy,
//! looked up for a whole statement's targets at once by `look_up_copy_blocks`; a new block after
//! the largest key in the table when the target has none or its block is full). So a query by
//! target alone (and time) reads a page or two of target rows and a few adjacent copy pages and
//! never touches `audit_records`, whose rows for one target lie anywhere in the file.
//!
//! The copy is the record's fields by position, a JSON array without the tenant and time the row
//! holds (`audit_json::copy_json`, about 55% of the canonical form; schema 8 wrote the canonical
//! form, and both are read), and goes when its target row goes (a trigger; retention deletes
//! records, which cascades). Keeping copies in a table of their own keeps both b-trees shallow:
//! interior pages hold only keys.
//!
//! Schema 9 does the same for initiators on SQLite: every record with an initiator id has a row in
//! `audit_initiators`, keyed `(tenant_id, initiator_id, activity_date_time, audit_seq)`, with its
//! own copy. The database writes these rows and copies itself, in the trigger
//! `audit_initiators_follow_records` (the same block rule in SQL, the copy from the view
//! `audit_record_copies`), so a record inserted by any writer, such as a server of the previous
//! version during an upgrade, is indexed. A block is never shared by two targets or initiators;
//! `insert_audits` starts each 40-record statement's new target blocks from the largest key
//! again, because the trigger may have started initiator blocks meanwhile.
//!
//! PostgreSQL keeps no copies (its tables are heaps in insertion order, where a copy would be as
//! scattered as the record) and joins; it keeps the initiator index. This is
//! `Dialect::record_copies`.
//!
//! # Verification
//!
//! Verification checks every target row's time, tenant and copy against its record; on SQLite,
//! that a record with an initiator id has exactly one initiator row with its initiator, time,
//! tenant and copy (and one without has none); and that no target or initiator row lacks a record
//! of its tenant (`ChainBreak::StrayRow`: a query would show its copy). A missing copy is a
//! change; a copy is compared with its decoded record (`audit_json::is_copy_of`), so its form and
//! formatting do not matter. How this layout was measured and chosen is in
//! `bench/audit-cluster/README.md`.

use super::*;

/// A target's (or initiator's) copies take consecutive keys in a block of `1 << COPY_BLOCK_BITS`
/// keys of its own; block `b` holds keys `b << COPY_BLOCK_BITS ..`. One whose block is used up
/// (four billion records) continues in a new block, as does one all of whose records retention
/// removed.
pub(super) const COPY_BLOCK_BITS: u32 = 32;

/// The target copy keys one `insert_audits` call has handed out: each target's latest, and the
/// last new block it started in this chunk of records (initiator rows' copies take blocks of
/// their own between chunks, in the database's trigger); and, looked up once per target, the
/// largest key in the block of its newest stored copy (`None`: no copy).
#[derive(Default)]
pub(super) struct CopyKeys {
    pub(super) last: std::collections::HashMap<String, i64>,
    pub(super) new_block: Option<i64>,
    pub(super) stored: std::collections::HashMap<String, Option<i64>>,
}

/// The key for a target's next copy given the largest key its newest block holds, or `None` when
/// the target needs a new block.
pub(super) fn next_copy_key(largest: Option<i64>) -> Option<i64> {
    let next = largest? + 1;
    (next & ((1 << COPY_BLOCK_BITS) - 1) != 0).then_some(next)
}

/// A chain position's index as stored (a signed 64-bit column).
pub(super) fn stored_index(position: &ChainPosition) -> Result<i64, StoreError> {
    i64::try_from(position.index).map_err(|_| StoreError::Other("audit chain overflow".into()))
}

/// The head of the statement that inserts audit records; `push_record_row` adds each row.
pub(super) const RECORD_INSERT: &str = concat!(
    "INSERT INTO audit_records (id, tenant_id, activity_date_time, correlation_id, category, ",
    "activity_display_name, activity_display_name_lc, logged_by_service, result, initiator_id, ",
    "initiator_upn_lc, initiator_app_id, record, chain_index, prev_hash, hash) VALUES "
);

/// Appends `record`'s row to a [`RECORD_INSERT`] (`first`: its first row), chained after `at`,
/// which moves on to the record's position; returns the record's stored time and its targets
/// (id, lower-cased user principal name).
#[allow(clippy::type_complexity)]
pub(super) fn push_record_row(
    sql: &mut Sql,
    first: bool,
    tenant: &str,
    record: &AuditRecord,
    at: &mut ChainPosition,
) -> Result<(String, Vec<(String, Option<String>)>), StoreError> {
    let columns = audit_json::columns(record);
    let canonical = audit_json::to_json(record);
    let prev_hash = audit_chain::to_hex(&at.hash);
    *at = at.append(tenant, &canonical);
    let index = stored_index(at)?;
    sql.push(if first { "(" } else { ", (" });
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
    Ok((columns.activity_date_time, columns.targets))
}

/// What `insert_audits` indexes of one record once it has its `seq`: its target rows, each
/// (SQLite) with a copy of the record. (Its initiator row and copy are the database's own work,
/// in the `audit_initiators_follow_records` trigger.)
pub(super) struct Indexed {
    pub(super) id: String,
    pub(super) at: String,
    pub(super) targets: Vec<(String, Option<String>)>,
    pub(super) copy: Option<String>,
}

/// Appends an audit filter's `activityDateTime` range on `column`.
pub(super) fn push_time_range(sql: &mut Sql, column: &str, filter: &AuditFilter) {
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
pub(super) fn audit_page_sql(
    tenant: &ObjectId,
    filter: &AuditFilter,
    after: Option<&AuditCursor>,
    is_ascending: bool,
    limit: usize,
    dialect: Dialect,
) -> (Sql, bool) {
    let copies = dialect.record_copies;
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
    let mut sql = Sql::new(&format!(
        concat!("SELECT {seq} AS seq, {time} AS activity_date_time, {record} AS record ", "FROM "),
        seq = seq,
        time = time,
        record = record
    ));
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
                push_audit_filter(&mut sql, &rest, dialect);
            }
        }
        None => {
            sql.push("audit_records r WHERE r.tenant_id = ");
            sql.arg(Arg::Text(tenant.to_string()));
            push_audit_filter(&mut sql, &rest, dialect);
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
pub(super) fn push_audit_filter(sql: &mut Sql, filter: &AuditFilter, dialect: Dialect) {
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
    exact(sql, "r.id", &filter.id);
    push_time_range(sql, "r.activity_date_time", filter);
    // Initiators' display names are read from the record: no column holds them.
    for (kind, value) in [("User", &filter.initiator_user_name), ("App", &filter.initiator_app_name)] {
        if let Some(name) = value {
            sql.push(&format!(" AND {} = ", dialect.json_text_lc("r.record", "initiated_by.kind")));
            sql.arg(Arg::Text(kind.to_lowercase()));
            sql.push(&format!(" AND {} = ", dialect.json_text_lc("r.record", "initiated_by.display_name")));
            sql.arg(Arg::Text(name.clone()));
        }
    }
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
        sql.push(concat!(" AND r.seq IN (SELECT t.audit_seq FROM audit_targets t WHERE ", "t.target_id = "));
        sql.arg(Arg::Text(target.clone()));
        sql.push(")");
    }
    if let Some(upn) = &filter.target_upn {
        sql.push(concat!(" AND r.seq IN (SELECT t.audit_seq FROM audit_targets t WHERE ", "t.target_upn_lc = "));
        sql.arg(Arg::Text(upn.clone()));
        sql.push(")");
    }
}

/// A stored chain head, if both parts are present and well-formed.
pub(super) fn chain_position(index: Option<i64>, hash: Option<&str>) -> Option<ChainPosition> {
    Some(ChainPosition { index: u64::try_from(index?).ok()?, hash: audit_chain::from_hex(hash?)? })
}

pub(super) fn checkpoint_from_row(
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

/// Implements `AuditStore` (and the copy-key helpers) for a backend's transaction type.
macro_rules! impl_audit_store {
    ($tx:ident, $db:ty) => {
        impl $tx {
            /// The key for the next copy of `target`'s records (see [`COPY_BLOCK_BITS`]), given
            /// the keys this call has already handed out.
            async fn take_copy_key(
                &mut self,
                tenant: &str,
                target: &str,
                keys: &mut CopyKeys,
            ) -> Result<i64, StoreError> {
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
                                let largest: Option<i64> = q::query_scalar("SELECT max(key) FROM audit_copies")
                                    .fetch_one(&mut *self.0)
                                    .await?;
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

            /// PostgreSQL (no record copies): the records, their target rows and the new chain
            /// head in one statement (data-modifying `WITH` clauses), after the head was taken.
            /// The head's row lock holds back the tenant's other audited writes until the commit,
            /// so what runs under it is two round trips and the commit instead of four and the
            /// commit.
            async fn insert_audits_at_once(
                &mut self,
                tenant: &str,
                records: &[AuditRecord],
                mut at: ChainPosition,
            ) -> Result<(), StoreError> {
                let mut sql = Sql::new("WITH r AS (");
                sql.push(RECORD_INSERT);
                let mut targets: Vec<(String, String, Option<String>)> = Vec::new();
                for (n, record) in records.iter().enumerate() {
                    let (_, record_targets) = push_record_row(&mut sql, n == 0, tenant, record, &mut at)?;
                    targets.extend(record_targets.into_iter().map(|(id, upn)| (record.id.clone(), id, upn)));
                }
                sql.push(" RETURNING seq, id, tenant_id, activity_date_time)");
                if !targets.is_empty() {
                    sql.push(concat!(
                        ", t AS (INSERT INTO audit_targets (tenant_id, audit_seq, activity_date_time, target_id, ",
                        "target_upn_lc) SELECT r.tenant_id, r.seq, r.activity_date_time, v.target_id, v.target_upn ",
                        "FROM r JOIN (VALUES "
                    ));
                    for (n, (record, target, upn)) in targets.into_iter().enumerate() {
                        sql.push(if n == 0 { "(" } else { ", (" });
                        sql.arg(Arg::Text(record));
                        sql.push(", ");
                        sql.arg(Arg::Text(target));
                        sql.push(", ");
                        sql.arg(Arg::MaybeText(upn));
                        sql.push(")");
                    }
                    sql.push(") AS v (record_id, target_id, target_upn) ON v.record_id = r.id)");
                }
                sql.push(", h AS (UPDATE audit_chain_heads SET chain_index = ");
                sql.arg(Arg::Int(stored_index(&at)?));
                sql.push(", hash = ");
                sql.arg(Arg::Text(audit_chain::to_hex(&at.hash)));
                sql.push(" WHERE tenant_id = ");
                sql.arg(Arg::Text(tenant.to_owned()));
                sql.push(" RETURNING 1) SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM h)");
                // Its text depends on how many records and targets there are: only the common
                // shape, one record, stays in the connection's statement cache.
                let (inserted, heads): (i64, i64) = bind_args!(q::query_as(q::AssertSqlSafe(sql.text)), sql.args)
                    .persistent(records.len() == 1)
                    .fetch_one(&mut *self.0)
                    .await?;
                if usize::try_from(inserted).ok() != Some(records.len()) || heads != 1 {
                    return Err(StoreError::Other("audit insert lost a row".into()));
                }
                Ok(())
            }

            /// Looks up the largest key in the block of each target's newest stored copy, for the
            /// targets not looked up yet, a statement per 200 targets (after a block fills, the
            /// newest by time could sit in the old block only if times went backwards: then the
            /// target starts a new block early, which wastes keys but never reuses one).
            async fn look_up_copy_blocks(
                &mut self,
                tenant: &str,
                targets: &[String],
                keys: &mut CopyKeys,
            ) -> Result<(), StoreError> {
                let mut wanted: Vec<&String> = Vec::new();
                for target in targets {
                    if !keys.last.contains_key(target) && !keys.stored.contains_key(target) && !wanted.contains(&target)
                    {
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
                            concat!(
                                "SELECT {n}, (SELECT (SELECT max(c.key) FROM audit_copies c WHERE c.key ",
                                ">= (t.copy_key >> {bits}) << {bits} AND c.key < ((t.copy_key >> {bits}) ",
                                "+ 1) << {bits}) FROM audit_targets t WHERE t.tenant_id = "
                            ),
                            bits = COPY_BLOCK_BITS,
                            n = n
                        ));
                        sql.arg(Arg::Text(tenant.to_owned()));
                        sql.push(" AND t.target_id = ");
                        sql.arg(Arg::Text((*target).clone()));
                        sql.push(" ORDER BY t.activity_date_time DESC, t.audit_seq DESC LIMIT 1)");
                    }
                    let found: Vec<(i64, Option<i64>)> =
                        bind_args!(q::query_as(q::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                    for (n, largest) in found {
                        let target = usize::try_from(n)
                            .ok()
                            .and_then(|n| group.get(n))
                            .ok_or_else(|| StoreError::Other("copy key lookup".into()))?;
                        keys.stored.insert((*target).clone(), largest);
                    }
                }
                Ok(())
            }
        }

        #[async_trait]
        impl AuditStore for $tx {
            async fn insert_audit(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
                self.insert_audits(std::slice::from_ref(record)).await
            }

            fn defer_audit(&mut self, record: AuditRecord) {
                self.5.push(record);
            }

            async fn insert_audits(&mut self, records: &[AuditRecord]) -> Result<(), StoreError> {
                // Rows per INSERT statement: the SQLite driver looks parameters up by name, at a cost
                // that grows with their number, so statements stay small.
                const ROWS_PER_STATEMENT: usize = 40;
                if !self.5.is_empty() {
                    // The deferred records first, in the order they were deferred.
                    let mut all = std::mem::take(&mut self.5);
                    all.extend_from_slice(records);
                    return self.insert_audits(&all).await;
                }
                let Some(first) = records.first() else { return Ok(()) };
                let tenant = first.tenant_id.as_str();
                if records.iter().any(|it| it.tenant_id.as_str() != tenant) {
                    return Err(StoreError::Other("one batch of audit records belongs to one tenant".into()));
                }
                // Take the tenant's chain head, locking its row (PostgreSQL) for the rest of the
                // transaction, so records are chained one at a time in commit order. The upsert
                // creates the head on a tenant's first record. Callers write the audit record last,
                // so the lock is held only for the final statements and the commit.
                let (head_index, head_hash): (i64, String) = q::query_as(concat!(
                    "INSERT INTO audit_chain_heads (tenant_id, chain_index, hash) VALUES ",
                    "($1, 0, $2) ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = ",
                    "excluded.tenant_id RETURNING chain_index, hash"
                ))
                .bind(tenant)
                .bind(audit_chain::to_hex(&audit_chain::GENESIS))
                .fetch_one(&mut *self.0)
                .await?;
                let corrupt = || StoreError::Other("corrupt audit chain head".into());
                let mut at = ChainPosition {
                    index: u64::try_from(head_index).map_err(|_| corrupt())?,
                    hash: audit_chain::from_hex(&head_hash).ok_or_else(corrupt)?,
                };
                if !DIALECT.record_copies && records.len() <= ROWS_PER_STATEMENT {
                    return self.insert_audits_at_once(tenant, records, at).await;
                }
                // Each record's id, time, targets and (SQLite: the copy its target rows keep) canonical form.
                let mut indexed: Vec<Indexed> = Vec::with_capacity(records.len());
                let mut copy_keys = CopyKeys::default();
                for chunk in records.chunks(ROWS_PER_STATEMENT) {
                    let mut sql = Sql::new(RECORD_INSERT);
                    for (n, record) in chunk.iter().enumerate() {
                        let (time, targets) = push_record_row(&mut sql, n == 0, tenant, record, &mut at)?;
                        let copy =
                            (DIALECT.record_copies && !targets.is_empty()).then(|| audit_json::copy_json(record));
                        indexed.push(Indexed { id: record.id.clone(), at: time, targets, copy });
                    }
                    sql.push(" RETURNING seq, id");
                    let rows: Vec<(i64, String)> =
                        bind_args!(q::query_as(q::AssertSqlSafe(sql.text)), sql.args).fetch_all(&mut *self.0).await?;
                    let seqs: std::collections::HashMap<String, i64> =
                        rows.into_iter().map(|(seq, id)| (id, seq)).collect();
                    let mut sql = Sql::new(if DIALECT.record_copies {
                        concat!(
                            "INSERT INTO audit_targets (tenant_id, audit_seq, activity_date_time, ",
                            "target_id, target_upn_lc, copy_key) VALUES "
                        )
                    } else {
                        concat!(
                            "INSERT INTO audit_targets (tenant_id, audit_seq, activity_date_time, ",
                            "target_id, target_upn_lc) VALUES "
                        )
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
                        bind_args!(q::query(q::AssertSqlSafe(sql.text)), sql.args).execute(&mut *self.0).await?;
                    }
                    if !copies.args.is_empty() {
                        bind_args!(q::query(q::AssertSqlSafe(copies.text)), copies.args).execute(&mut *self.0).await?;
                    }
                }
                q::query(concat!("UPDATE audit_chain_heads SET chain_index = $2, hash = $3 WHERE ", "tenant_id = $1"))
                    .bind(tenant)
                    .bind(stored_index(&at)?)
                    .bind(audit_chain::to_hex(&at.hash))
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }

            async fn audit_checkpoint(&mut self, tenant: &str) -> Result<Checkpoint, StoreError> {
                let row: Option<(i64, String, String, String)> = q::query_as(concat!(
                    "SELECT chain_index, hash, cut_before, signature FROM audit_checkpoints ",
                    "WHERE tenant_id = $1"
                ))
                .bind(tenant)
                .fetch_optional(&mut *self.0)
                .await?;
                row.map_or(
                    Ok(Checkpoint {
                        position: ChainPosition::START,
                        cut_before: String::new(),
                        signature: String::new(),
                    }),
                    checkpoint_from_row,
                )
            }

            async fn lock_audit_checkpoint(&mut self, tenant: &str) -> Result<Checkpoint, StoreError> {
                let row: (i64, String, String, String) = q::query_as(concat!(
                    "INSERT INTO audit_checkpoints (tenant_id, chain_index, hash, ",
                    "cut_before, signature) VALUES ($1, 0, $2, '', '') ON CONFLICT ",
                    "(tenant_id) DO UPDATE SET tenant_id = excluded.tenant_id RETURNING ",
                    "chain_index, hash, cut_before, signature"
                ))
                .bind(tenant)
                .bind(audit_chain::to_hex(&audit_chain::GENESIS))
                .fetch_one(&mut *self.0)
                .await?;
                checkpoint_from_row(row)
            }

            async fn set_audit_checkpoint(&mut self, tenant: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
                q::query(concat!(
                    "UPDATE audit_checkpoints SET chain_index = $2, hash = $3, cut_before = ",
                    "$4, signature = $5 WHERE tenant_id = $1"
                ))
                .bind(tenant)
                .bind(stored_index(&checkpoint.position)?)
                .bind(audit_chain::to_hex(&checkpoint.position.hash))
                .bind(&checkpoint.cut_before)
                .bind(&checkpoint.signature)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn first_audit_since(
                &mut self,
                tenant: &str,
                after: i64,
                at: OffsetDateTime,
            ) -> Result<Option<i64>, StoreError> {
                q::query_scalar(concat!(
                    "SELECT chain_index FROM audit_records WHERE tenant_id = $1 AND ",
                    "chain_index > $2 AND activity_date_time >= $3 ORDER BY chain_index ",
                    "LIMIT 1"
                ))
                .bind(tenant)
                .bind(after)
                .bind(fmt_ts(at))
                .fetch_optional(&mut *self.0)
                .await
                .map_err(db)
            }

            async fn audit_targets_after(
                &mut self,
                tenant: &ObjectId,
                after_index: i64,
                limit: usize,
            ) -> Result<Vec<(i64, Vec<(ObjectId, &'static str)>)>, StoreError> {
                let rows: Vec<(i64, String)> = q::query_as(q::AssertSqlSafe(format!(
                    concat!(
                        "SELECT chain_index, record FROM audit_records WHERE tenant_id = $1 AND chain_index > $2 ",
                        "AND result = 'success' ORDER BY chain_index{}"
                    ),
                    limit_clause(limit)
                )))
                .bind(tenant.as_str())
                .bind(after_index)
                .fetch_all(&mut *self.0)
                .await?;
                rows.into_iter()
                    .map(|(index, record)| {
                        let record = audit_json::from_json(&record)?;
                        Ok((index, record.target_resources.into_iter().map(|it| (it.id, it.kind)).collect()))
                    })
                    .collect()
            }

            async fn audit_chain_head(&mut self, tenant: &str) -> Result<Option<ChainPosition>, StoreError> {
                let row: Option<(i64, String)> =
                    q::query_as("SELECT chain_index, hash FROM audit_chain_heads WHERE tenant_id = $1")
                        .bind(tenant)
                        .fetch_optional(&mut *self.0)
                        .await?;
                Ok(row.and_then(|(index, hash)| chain_position(Some(index), Some(&hash))))
            }

            async fn delete_audit_range(&mut self, tenant: &str, after: i64, through: i64) -> Result<u64, StoreError> {
                let done = q::query(concat!(
                    "DELETE FROM audit_records WHERE tenant_id = $1 AND chain_index > $2 AND ",
                    "chain_index <= $3"
                ))
                .bind(tenant)
                .bind(after)
                .bind(through)
                .execute(&mut *self.0)
                .await?;
                Ok(done.rows_affected())
            }

            async fn audit_retention(&mut self, tenant: &str) -> Result<(i64, String), StoreError> {
                let row: Option<(i64, String)> = q::query_as(concat!(
                    "SELECT CAST(audit_retention_days AS BIGINT), audit_retention_mac FROM ",
                    "tenants WHERE id = $1"
                ))
                .bind(tenant)
                .fetch_optional(&mut *self.0)
                .await?;
                Ok(row.unwrap_or((DEFAULT_AUDIT_RETENTION_DAYS, String::new())))
            }

            async fn set_audit_retention(&mut self, tenant: &str, days: i64, mac: &str) -> Result<(), StoreError> {
                let done = q::query(concat!(
                    "UPDATE tenants SET audit_retention_days = $2, audit_retention_mac = $3 ",
                    "WHERE id = $1"
                ))
                .bind(tenant)
                .bind(i32::try_from(days).map_err(|_| StoreError::Other("retention out of range".into()))?)
                .bind(mac)
                .execute(&mut *self.0)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Other(format!("no tenant {tenant}")));
                }
                Ok(())
            }

            async fn audit_stray_row(&mut self, tenant: &str) -> Result<Option<i64>, StoreError> {
                if !DIALECT.record_copies {
                    // PostgreSQL's queries by target join each record of the tenant.
                    return Ok(None);
                }
                let mut first: Option<i64> = None;
                for (table, index) in
                    [("audit_targets", "audit_targets_seq"), ("audit_initiators", "audit_initiators_seq")]
                {
                    // In record order (the seq index), so the records are read front to back, not a page each.
                    let stray: Option<i64> = q::query_scalar(q::AssertSqlSafe(format!(
                        concat!(
                            "SELECT t.audit_seq FROM {table} t INDEXED BY {index} WHERE t.tenant_id ",
                            "= $1 AND NOT EXISTS (SELECT 1 FROM audit_records r WHERE r.seq = ",
                            "t.audit_seq AND r.tenant_id = $1) ORDER BY t.audit_seq LIMIT 1"
                        ),
                        table = table,
                        index = index
                    )))
                    .bind(tenant)
                    .fetch_optional(&mut *self.0)
                    .await?;
                    first = first.into_iter().chain(stray).min();
                }
                Ok(first)
            }

            async fn audit_chain_tenants(&mut self) -> Result<Vec<(String, Option<ChainPosition>)>, StoreError> {
                let initiators = if DIALECT.record_copies {
                    concat!("OR EXISTS (SELECT 1 FROM audit_initiators x WHERE x.tenant_id = ", "tenants.id)")
                } else {
                    ""
                };
                let rows: Vec<(String, Option<i64>, Option<String>)> = q::query_as(q::AssertSqlSafe(format!(
                    // Every tenant (so a deleted head is noticed) without scanning the records.
                    "SELECT t.tenant_id, h.chain_index, h.hash FROM (SELECT tenant_id FROM \
audit_chain_heads UNION SELECT id AS tenant_id FROM tenants WHERE \
EXISTS (SELECT 1 FROM audit_records r WHERE r.tenant_id = tenants.id) \
OR EXISTS (SELECT 1 FROM audit_targets x WHERE x.tenant_id = \
tenants.id) {initiators}) t LEFT JOIN audit_chain_heads h ON \
h.tenant_id = t.tenant_id ORDER BY t.tenant_id"
                )))
                .fetch_all(&mut *self.0)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(tenant, index, hash)| {
                        let head = chain_position(index, hash.as_deref());
                        (tenant, head)
                    })
                    .collect())
            }

            async fn audit_chain_page(
                &mut self,
                tenant: &str,
                after_index: i64,
                limit: usize,
            ) -> Result<Vec<ChainRow>, StoreError> {
                let rows = q::query(q::AssertSqlSafe(format!(
                    concat!(
                        "SELECT seq, id, chain_index, prev_hash, hash, record, ",
                        "activity_date_time, correlation_id, category, activity_display_name, ",
                        "activity_display_name_lc, logged_by_service, result, initiator_id, ",
                        "initiator_upn_lc, initiator_app_id FROM audit_records WHERE tenant_id = ",
                        "$1 AND chain_index > $2 ORDER BY chain_index{}"
                    ),
                    limit_clause(limit)
                )))
                .bind(tenant)
                .bind(after_index)
                .fetch_all(&mut *self.0)
                .await?;
                // Each record's target rows, and what else those rows carry (time, tenant, record copy).
                let mut targets: std::collections::HashMap<i64, Vec<(String, Option<String>)>> =
                    std::collections::HashMap::new();
                #[allow(clippy::type_complexity)]
                let mut target_rows: std::collections::HashMap<i64, Vec<(String, String, Option<String>)>> =
                    std::collections::HashMap::new();
                // Each record's initiator rows (SQLite): initiator, time, tenant, record copy.
                #[allow(clippy::type_complexity)]
                let mut initiator_rows: std::collections::HashMap<
                    i64,
                    Vec<(String, String, String, Option<String>)>,
                > = std::collections::HashMap::new();
                if let Some(last) = rows.last() {
                    // The targets of exactly this page's records (not other tenants' in the same seq range).
                    let through: i64 = last.try_get(2)?;
                    let copy = if DIALECT.record_copies {
                        "(SELECT c.record FROM audit_copies c WHERE c.key = t.copy_key)"
                    } else {
                        "CAST(NULL AS TEXT)"
                    };
                    let found: Vec<(i64, String, Option<String>, String, String, Option<String>)> =
                        q::query_as(q::AssertSqlSafe(format!(
                            concat!(
                                "SELECT t.audit_seq, t.target_id, t.target_upn_lc, t.activity_date_time, ",
                                "t.tenant_id, {copy} FROM audit_records r CROSS JOIN audit_targets t ",
                                "WHERE r.tenant_id = $1 AND r.chain_index > $2 AND r.chain_index <= $3 ",
                                "AND t.audit_seq = r.seq"
                            ),
                            copy = copy
                        )))
                        .bind(tenant)
                        .bind(after_index)
                        .bind(through)
                        .fetch_all(&mut *self.0)
                        .await?;
                    for (seq, id, upn, at, target_tenant, copy) in found {
                        targets.entry(seq).or_default().push((id, upn));
                        target_rows.entry(seq).or_default().push((at, target_tenant, copy));
                    }
                    if DIALECT.record_copies {
                        let found: Vec<(i64, String, String, String, Option<String>)> = q::query_as(concat!(
                            "SELECT i.audit_seq, i.initiator_id, i.activity_date_time, i.tenant_id, ",
                            "(SELECT c.record FROM audit_copies c WHERE c.key = i.copy_key) FROM ",
                            "audit_records r CROSS JOIN audit_initiators i WHERE r.tenant_id = $1 ",
                            "AND r.chain_index > $2 AND r.chain_index <= $3 AND i.audit_seq = r.seq"
                        ))
                        .bind(tenant)
                        .bind(after_index)
                        .bind(through)
                        .fetch_all(&mut *self.0)
                        .await?;
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
                        let is_copy =
                            |copy: &str| decoded.as_ref().is_some_and(|record| audit_json::is_copy_of(copy, record));
                        let times_match =
                            target_rows.remove(&seq).unwrap_or_default().iter().all(|(at, target_tenant, copy)| {
                                *at == stored.activity_date_time
                                    && target_tenant == tenant
                                    && match copy {
                                        Some(copy) => is_copy(copy),
                                        None => !DIALECT.record_copies,
                                    }
                            });
                        // The record's initiator row (SQLite): one, with the record's initiator, time,
                        // tenant and a copy of it, or none when the record has no initiator id.
                        let initiator_matches = !DIALECT.record_copies
                            || match (initiator_rows.remove(&seq).unwrap_or_default().as_slice(), &stored.initiator_id)
                            {
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
                                record.tenant_id.as_str() == tenant
                                    && record.id == id
                                    && audit_json::columns(&record) == stored
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
