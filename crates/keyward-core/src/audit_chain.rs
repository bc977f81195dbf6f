//! Tamper evidence for the audit log: each tenant's records form a hash chain.
//!
//! Record number `n` (from 1) of a tenant carries `hash(n) = SHA-256(domain ‖ tenant ‖ n ‖ hash(n-1) ‖
//! canonical form)`, where the canonical form is the record exactly as stored and `hash(0)` is
//! [`GENESIS`] (or, once retention has cut the chain, the hash of the last removed record, kept in a
//! checkpoint). The tenant's chain head (last number and hash) is stored beside the records.
//!
//! [`ChainVerifier`] walks the stored records in chain order and names the first one that was
//! changed, removed, or inserted out of order. A plain hash chain proves integrity relative to its
//! head: someone able to rewrite every record after a point *and* the head is caught only by
//! comparing the head with a copy kept elsewhere (an export, or a previous `keyward audit verify`).

use std::fmt;

use sha2::{Digest, Sha256};

/// A link hash.
pub type ChainHash = [u8; 32];

/// The predecessor of a tenant's first record.
pub const GENESIS: ChainHash = [0; 32];

const DOMAIN: &[u8] = b"keyward-audit-chain-v1\0";

/// The hash of record number `index` of `tenant`'s chain, stored as `canonical`, after `prev`.
pub fn link_hash(tenant: &str, index: u64, prev: &ChainHash, canonical: &str) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update((tenant.len() as u64).to_be_bytes());
    hasher.update(tenant.as_bytes());
    hasher.update(index.to_be_bytes());
    hasher.update(prev);
    hasher.update(canonical.as_bytes());
    hasher.finalize().into()
}

/// Lower-case hex, the stored form of a hash.
pub fn to_hex(hash: &ChainHash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut res = String::with_capacity(64);
    for byte in hash {
        res.push(char::from(DIGITS[usize::from(byte >> 4)]));
        res.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    res
}

/// Parses 64 lower-case hex digits; anything else is `None`.
pub fn from_hex(text: &str) -> Option<ChainHash> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    let mut res = [0u8; 32];
    for (slot, pair) in res.iter_mut().zip(digits.chunks_exact(2)) {
        *slot = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(res)
}

/// A point in a chain: the number of the last record and its hash (`0` and [`GENESIS`] before the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainPosition {
    pub index: u64,
    pub hash: ChainHash,
}

impl ChainPosition {
    pub const START: ChainPosition = ChainPosition { index: 0, hash: GENESIS };

    /// The position after appending the record stored as `canonical`.
    pub fn append(&self, tenant: &str, canonical: &str) -> ChainPosition {
        let index = self.index + 1;
        ChainPosition { index, hash: link_hash(tenant, index, &self.hash, canonical) }
    }
}

/// Where retention cut a tenant's chain: the position of the last removed record, the time
/// before which records were removed, and a MAC by the server's key so that a database writer
/// cannot move the cut to hide more removals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: ChainPosition,
    /// The stored form of the retention cut-off time.
    pub cut_before: String,
    /// Lower-case hex MAC over [`checkpoint_message`]; empty for the starting checkpoint.
    pub signature: String,
}

impl Checkpoint {
    /// Whether this is the chain's start rather than a cut (it needs no signature).
    pub fn is_start(&self) -> bool {
        self.position == ChainPosition::START
    }
}

/// The bytes a checkpoint's MAC covers.
pub fn checkpoint_message(tenant: &str, position: &ChainPosition, cut_before: &str) -> Vec<u8> {
    let mut res = b"keyward-audit-checkpoint-v1\0".to_vec();
    res.extend_from_slice(&(tenant.len() as u64).to_be_bytes());
    res.extend_from_slice(tenant.as_bytes());
    res.extend_from_slice(&position.index.to_be_bytes());
    res.extend_from_slice(&position.hash);
    res.extend_from_slice(cut_before.as_bytes());
    res
}

/// The bytes the MAC of a changed retention setting covers.
pub fn retention_message(tenant: &str, days: i64) -> Vec<u8> {
    let mut res = b"keyward-audit-retention-v1\0".to_vec();
    res.extend_from_slice(&(tenant.len() as u64).to_be_bytes());
    res.extend_from_slice(tenant.as_bytes());
    res.extend_from_slice(&days.to_be_bytes());
    res
}

/// The last chain number retention may remove: the records before `first_kept` (the first record,
/// in chain order, at or after the cut-off), or everything up to `head` when every record is older.
pub fn retention_cut(checkpoint: u64, first_kept: Option<u64>, head: u64) -> Option<u64> {
    let last = first_kept.map_or(head, |it| it.saturating_sub(1));
    (last > checkpoint).then_some(last)
}

/// One stored record, as verification reads it.
#[derive(Debug, Clone, Copy)]
pub struct StoredLink<'a> {
    /// Insertion order (the database's sequence).
    pub seq: i64,
    pub id: &'a str,
    pub index: i64,
    pub prev_hash: &'a str,
    pub hash: &'a str,
    pub canonical: &'a str,
    /// Whether the record's indexed columns (time, activity, initiator, targets) agree with its
    /// canonical form; the store checks this, since it owns those columns.
    pub columns_match: bool,
}

/// The first inconsistency found in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The retention checkpoint's signature does not verify (or cannot be checked).
    Checkpoint { detail: String },
    /// The record's contents (or its indexed columns) no longer match its hash.
    Changed { id: String, index: i64 },
    /// Records are missing: `missing` numbers starting at `from`, before record `before` (or at the end).
    Removed { from: u64, missing: u64, before: Option<String> },
    /// The record does not follow its predecessor: inserted, reordered, or the predecessor rewritten.
    OutOfOrder { id: String, index: i64 },
    /// The stored head disagrees with the last record, or is missing.
    Head { detail: String },
    /// A target or initiator row (and the copy of a record it points at) in this tenant's log
    /// belongs to none of the tenant's records: it was inserted outside Keyward, and a query by
    /// target or initiator would show it.
    StrayRow { seq: i64 },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainBreak::Changed { id, index } => {
                write!(f, "record {id} (#{index}) was changed: its contents do not match its hash")
            }
            ChainBreak::Removed { from, missing, before: Some(id) } => {
                write!(f, "{missing} record(s) from #{from} were removed, before record {id}")
            }
            ChainBreak::Removed { from, missing, before: None } => {
                write!(f, "{missing} record(s) from #{from} were removed from the end of the log")
            }
            ChainBreak::OutOfOrder { id, index } => write!(
                f,
                "record {id} (#{index}) does not follow its predecessor: it was inserted out of order, \
                 or an earlier record was rewritten"
            ),
            ChainBreak::Checkpoint { detail } => write!(f, "the retention checkpoint is not trustworthy: {detail}"),
            ChainBreak::Head { detail } => write!(f, "the chain head does not match the records: {detail}"),
            ChainBreak::StrayRow { seq } => write!(
                f,
                "a target or initiator row for record number {seq} belongs to none of the tenant's records: it was \
                 inserted outside Keyward"
            ),
        }
    }
}

/// Checks a tenant's records, fed in chain order, against the chain rules.
#[derive(Debug)]
pub struct ChainVerifier {
    tenant: String,
    at: ChainPosition,
    last_seq: i64,
    count: u64,
}

impl ChainVerifier {
    /// Starts at `start`: [`ChainPosition::START`], or the retention checkpoint's position.
    pub fn new(tenant: &str, start: ChainPosition) -> ChainVerifier {
        ChainVerifier { tenant: tenant.to_owned(), at: start, last_seq: i64::MIN, count: 0 }
    }

    /// Where the records checked so far end.
    pub fn position(&self) -> ChainPosition {
        self.at
    }

    /// Records checked so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Checks the next record.
    pub fn check(&mut self, link: &StoredLink<'_>) -> Result<(), ChainBreak> {
        let changed = || ChainBreak::Changed { id: link.id.to_owned(), index: link.index };
        let out_of_order = || ChainBreak::OutOfOrder { id: link.id.to_owned(), index: link.index };
        let index = u64::try_from(link.index).map_err(|_| out_of_order())?;
        let prev = from_hex(link.prev_hash).ok_or_else(changed)?;
        let own = link_hash(&self.tenant, index, &prev, link.canonical);
        if to_hex(&own) != link.hash || !link.columns_match {
            return Err(changed());
        }
        if index > self.at.index + 1 {
            return Err(ChainBreak::Removed {
                from: self.at.index + 1,
                missing: index - self.at.index - 1,
                before: Some(link.id.to_owned()),
            });
        }
        if index <= self.at.index || prev != self.at.hash || link.seq <= self.last_seq {
            return Err(out_of_order());
        }
        self.at = ChainPosition { index, hash: own };
        self.last_seq = link.seq;
        self.count += 1;
        Ok(())
    }

    /// Checks the end of the records against the stored head; returns the number of records checked.
    pub fn finish(self, head: Option<ChainPosition>) -> Result<u64, ChainBreak> {
        let Some(head) = head else {
            return if self.count == 0 {
                Ok(0)
            } else {
                Err(ChainBreak::Head { detail: "the tenant's chain head was deleted".into() })
            };
        };
        if head.index > self.at.index {
            return Err(ChainBreak::Removed {
                from: self.at.index + 1,
                missing: head.index - self.at.index,
                before: None,
            });
        }
        if head.index < self.at.index {
            return Err(ChainBreak::Head {
                detail: format!(
                    "records after #{} are not covered by the head (inserted behind the writer's back)",
                    head.index
                ),
            });
        }
        if head.hash != self.at.hash {
            return Err(ChainBreak::Head { detail: format!("the hash of #{} differs from the head's", head.index) });
        }
        Ok(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row {
        seq: i64,
        id: String,
        index: i64,
        prev: String,
        hash: String,
        canonical: String,
    }

    fn chain(n: usize) -> (Vec<Row>, ChainPosition) {
        let mut at = ChainPosition::START;
        let rows = (0..n)
            .map(|i| {
                let canonical = format!("{{\"n\":{i}}}");
                let prev = at;
                at = at.append("t1", &canonical);
                Row {
                    seq: i as i64 * 3,
                    id: format!("r{i}"),
                    index: at.index as i64,
                    prev: to_hex(&prev.hash),
                    hash: to_hex(&at.hash),
                    canonical,
                }
            })
            .collect();
        (rows, at)
    }

    fn verify(rows: &[Row], head: ChainPosition) -> Result<u64, ChainBreak> {
        let mut verifier = ChainVerifier::new("t1", ChainPosition::START);
        for row in rows {
            verifier.check(&StoredLink {
                seq: row.seq,
                id: &row.id,
                index: row.index,
                prev_hash: &row.prev,
                hash: &row.hash,
                canonical: &row.canonical,
                columns_match: true,
            })?;
        }
        verifier.finish(Some(head))
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (rows, head) = chain(5);
        assert_eq!(verify(&rows, head), Ok(5));
        assert_eq!(verify(&[], ChainPosition::START), Ok(0));
    }

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let (_, head) = chain(1);
        assert_eq!(from_hex(&to_hex(&head.hash)), Some(head.hash));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"A".repeat(64)), None);
    }

    #[test]
    fn a_changed_record_is_named() {
        let (mut rows, head) = chain(5);
        rows[2].canonical = "{\"n\":99}".into();
        assert_eq!(verify(&rows, head), Err(ChainBreak::Changed { id: "r2".into(), index: 3 }));
    }

    #[test]
    fn removed_records_are_named_in_the_middle_and_at_the_end() {
        let (mut rows, head) = chain(5);
        rows.remove(1);
        assert_eq!(verify(&rows, head), Err(ChainBreak::Removed { from: 2, missing: 1, before: Some("r2".into()) }));
        let (mut rows, head) = chain(5);
        rows.truncate(3);
        assert_eq!(verify(&rows, head), Err(ChainBreak::Removed { from: 4, missing: 2, before: None }));
    }

    #[test]
    fn a_record_inserted_with_a_recomputed_hash_is_out_of_order() {
        let (mut rows, head) = chain(3);
        // A forger re-links record 2 to a made-up predecessor: its own hash checks out, its link does not.
        let forged_prev = ChainPosition { index: 1, hash: [7; 32] };
        let forged = forged_prev.append("t1", "{\"n\":\"forged\"}");
        rows[1] = Row {
            seq: 100,
            id: "forged".into(),
            index: 2,
            prev: to_hex(&forged_prev.hash),
            hash: to_hex(&forged.hash),
            canonical: "{\"n\":\"forged\"}".into(),
        };
        assert_eq!(verify(&rows, head), Err(ChainBreak::OutOfOrder { id: "forged".into(), index: 2 }));
    }

    #[test]
    fn records_beyond_the_head_or_a_different_head_are_refused() {
        let (rows, head) = chain(4);
        let behind = ChainPosition { index: 3, hash: from_hex(&rows[2].hash).expect("hex") };
        assert!(matches!(verify(&rows, behind), Err(ChainBreak::Head { .. })));
        let other = ChainPosition { index: 4, hash: [1; 32] };
        assert!(matches!(verify(&rows, other), Err(ChainBreak::Head { .. })));
        assert_eq!(verify(&rows, head), Ok(4));
    }

    #[test]
    fn retention_cuts_below_the_first_kept_record() {
        assert_eq!(retention_cut(0, Some(5), 9), Some(4));
        assert_eq!(retention_cut(4, Some(5), 9), None, "already cut there");
        assert_eq!(retention_cut(0, Some(1), 9), None, "nothing is old enough");
        assert_eq!(retention_cut(3, None, 9), Some(9), "everything is old");
        assert_eq!(retention_cut(0, None, 0), None, "empty log");
    }

    #[test]
    fn a_chain_verifies_from_a_checkpoint() {
        let (rows, head) = chain(5);
        let cut = ChainPosition { index: 2, hash: from_hex(&rows[1].hash).expect("hex") };
        let mut verifier = ChainVerifier::new("t1", cut);
        for row in &rows[2..] {
            let link = StoredLink {
                seq: row.seq,
                id: &row.id,
                index: row.index,
                prev_hash: &row.prev,
                hash: &row.hash,
                canonical: &row.canonical,
                columns_match: true,
            };
            assert_eq!(verifier.check(&link), Ok(()));
        }
        assert_eq!(verifier.finish(Some(head)), Ok(3));
        let message = checkpoint_message("t1", &cut, "2026-01-01T00:00:00.000000Z");
        assert_ne!(
            message,
            checkpoint_message("t1", &ChainPosition { index: 3, ..cut }, "2026-01-01T00:00:00.000000Z")
        );
    }

    #[test]
    fn the_tenant_is_part_of_the_hash() {
        let a = ChainPosition::START.append("t1", "{}");
        let b = ChainPosition::START.append("t2", "{}");
        assert_ne!(a.hash, b.hash);
    }
}
