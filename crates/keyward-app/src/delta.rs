//! Delta queries on users and groups (`GET /users/delta`, `/groups/delta`; see
//! `keyward_core::delta`). The round's state travels in its tokens: which collection and tenant,
//! the options of the first request, the chain number the changes are read after, when the
//! round started and, in the initial round, where the listing continues.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_core::authz::{Target, actions};
use keyward_core::delta;
use keyward_core::directory::DirectoryObject;
use keyward_core::ids::ObjectId;
use keyward_core::query::{self, RawQuery};
use keyward_store::Cursor;
use serde::{Deserialize, Serialize};

use crate::directory::{decode_cursor, encode_cursor};
use crate::{App, AppError, Caller, require};

/// The collection a delta round walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaResource {
    Users,
    Groups,
}

impl DeltaResource {
    fn name(self) -> &'static str {
        match self {
            DeltaResource::Users => "users",
            DeltaResource::Groups => "groups",
        }
    }

    /// The audit target kind of its objects.
    fn kind(self) -> &'static str {
        match self {
            DeltaResource::Users => "User",
            DeltaResource::Groups => "Group",
        }
    }

    fn query_resource(self) -> &'static query::Resource {
        match self {
            DeltaResource::Users => &query::USER,
            DeltaResource::Groups => &query::GROUP,
        }
    }
}

/// One entry of a delta page.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "a page's entries, short-lived; boxing buys nothing")]
pub enum DeltaItem {
    /// The object as it is now (created or changed since the last round; every object in the
    /// initial round).
    Current(DirectoryObject),
    /// The object was deleted for good (Graph's `"reason":"deleted"`).
    Removed(ObjectId),
    /// The user or group was deleted and can still be restored from the deleted items (Graph's
    /// `"reason":"changed"`).
    SoftDeleted(ObjectId),
}

/// What follows a delta page: another page of this round, or the round's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaNext {
    /// `@odata.nextLink` with this `$skiptoken`.
    Page(String),
    /// `@odata.deltaLink` with this `$deltatoken`: the next round starts here.
    Round(String),
}

/// A page of a delta round.
#[derive(Debug, Clone)]
pub struct DeltaPage {
    pub items: Vec<DeltaItem>,
    /// The round's `$select`.
    pub select: Option<Vec<&'static str>>,
    pub next: DeltaNext,
}

/// A round's state, in its tokens (JSON, base64url).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Token {
    /// Tenant id.
    t: String,
    /// Collection (`users`, `groups`).
    k: String,
    /// The first request's `$select`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    /// The ids the first request's `$filter` tracks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    f: Option<Vec<String>>,
    /// Changes are read after this chain number.
    i: i64,
    /// When the round's token was issued (unix time).
    at: i64,
    /// The initial round's listing continues after this (sort key, id); `None` once it is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<(String, String)>,
    /// Whether the initial listing is done (the round reads changes).
    ch: bool,
}

/// What a token's MAC covers: a fixed prefix (so no other MAC under the same key can pass for
/// a token's) and the token's JSON.
fn mac_message(json: &[u8]) -> Vec<u8> {
    [b"keyward delta token v1\n".as_slice(), json].concat()
}

fn invalid_token() -> AppError {
    AppError::BadRequest(
        "The delta token is invalid. Use the @odata.nextLink or @odata.deltaLink exactly as returned, or start a new round without a token.".into(),
    )
}

impl App {
    /// A token as a link carries it: the JSON in base64url, a dot, and its MAC under the
    /// server's key-encryption key, so a client can neither forge a round nor extend its life.
    fn encode_delta(&self, token: &Token) -> Result<String, AppError> {
        let json = serde_json::to_vec(token).map_err(|err| AppError::Unexpected(err.into()))?;
        let mac = self.inner.keys.sign_checkpoint(&mac_message(&json))?;
        Ok(format!("{}.{mac}", URL_SAFE_NO_PAD.encode(json)))
    }

    /// The token a link carried, if this server issued it unchanged.
    fn decode_delta(&self, raw: &str) -> Result<Token, AppError> {
        let (body, mac) = raw.trim().rsplit_once('.').ok_or_else(invalid_token)?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid_token())?;
        if self.inner.keys.verify_checkpoint(&mac_message(&json), mac) != Some(true) {
            return Err(invalid_token());
        }
        serde_json::from_slice(&json).map_err(|_| invalid_token())
    }
}

/// The `$filter` that lists only the tracked ids.
fn ids_filter(ids: &[String]) -> String {
    ids.iter().map(|id| format!("id eq '{}'", id.replace('\'', "''"))).collect::<Vec<_>>().join(" or ")
}

impl App {
    /// A page of a delta round on `resource` (`GET /users/delta`, `/groups/delta`): needs the
    /// collection's tenant-wide read permission. `raw` holds the request's options, its
    /// `$skiptoken` included; `deltatoken` is `$deltatoken` (`latest` starts from now);
    /// `page_size` the client's `odata.maxpagesize` for the initial round's pages (at most 999).
    pub async fn delta(
        &self,
        caller: &Caller,
        resource: DeltaResource,
        raw: &RawQuery,
        deltatoken: Option<&str>,
        page_size: Option<usize>,
    ) -> Result<DeltaPage, AppError> {
        let action = match resource {
            DeltaResource::Users => actions::USERS_READ,
            DeltaResource::Groups => actions::GROUPS_READ,
        };
        require(caller, action, Target::Tenant)?;
        let tracked = delta::tracked_ids(&RawQuery { skiptoken: None, ..raw.clone() })?;
        // The request's own $select (a token's was checked when the round began).
        let only_select = RawQuery { select: raw.select.clone(), ..RawQuery::default() };
        let requested = query::plan(resource.query_resource(), &only_select)?;
        if requested.reads_sign_in_activity() {
            return Err(AppError::UnsupportedQuery(
                "signInActivity is not tracked by delta: read it from /users with $select.".into(),
            ));
        }
        let tenant = caller.tenant.id.to_string();
        let now = self.now().unix_timestamp();
        let mut tx = self.read().await?;
        let head = tx.audit_chain_head(&tenant).await?.map_or(0, |it| i64::try_from(it.index).unwrap_or(i64::MAX));
        // A new round's token (the initial listing; `latest` skips it).
        let fresh = Token {
            t: tenant.clone(),
            k: resource.name().into(),
            s: raw.select.clone(),
            f: tracked,
            i: head,
            at: now,
            c: None,
            ch: false,
        };
        let token = match (raw.skiptoken.as_deref(), deltatoken) {
            (Some(_), Some(_)) => return Err(AppError::BadRequest("Send $skiptoken or $deltatoken, not both.".into())),
            (None, Some(latest)) if latest.eq_ignore_ascii_case("latest") => {
                // Sync from now: no objects, only the link to the changes after this moment.
                let token = self.encode_delta(&Token { ch: true, ..fresh })?;
                return Ok(DeltaPage { items: Vec::new(), select: requested.select, next: DeltaNext::Round(token) });
            }
            (Some(raw_token), None) | (None, Some(raw_token)) => {
                let token = self.decode_delta(raw_token)?;
                if token.t != tenant || token.k != resource.name() {
                    return Err(invalid_token());
                }
                // The token carries the round's options; a request may repeat them, not change them.
                if raw.select.is_some() && raw.select != token.s || fresh.f.is_some() && fresh.f != token.f {
                    return Err(AppError::BadRequest(
                        "A delta token keeps the first request's $select and $filter: follow the link as returned."
                            .into(),
                    ));
                }
                let cut = tx.audit_checkpoint(&tenant).await?.position.index;
                let cut = i64::try_from(cut).unwrap_or(i64::MAX);
                if token.ch && delta::expiry(token.at, token.i, now, cut).is_some() {
                    return Err(AppError::SyncStateNotFound);
                }
                token
            }
            (None, None) => fresh,
        };
        let options = RawQuery {
            select: token.s.clone(),
            filter: token.f.as_deref().map(ids_filter),
            top: Some(page_size.unwrap_or(delta::PAGE_SIZE).min(query::MAX_TOP).to_string()),
            ..RawQuery::default()
        };
        let plan = query::plan(resource.query_resource(), &options)?;
        // A delta entry always carries its id.
        let select = plan.select.clone().map(|mut it| {
            if !it.contains(&"id") {
                it.insert(0, "id");
            }
            it
        });
        if !token.ch {
            // The initial round: every object, a page at a time.
            // The cursor passes the directory's own check, as a $skiptoken's does.
            let after = match token.c.clone() {
                Some((sort_key, id)) => Some(decode_cursor(&encode_cursor(&Cursor { sort_key, id }))?),
                None => None,
            };
            let (items, next) = match resource {
                DeltaResource::Users => {
                    let page = tx.list_users(&caller.tenant.id, &plan, after.as_ref()).await?;
                    (
                        page.items.into_iter().map(|it| DeltaItem::Current(DirectoryObject::User(it))).collect(),
                        page.next,
                    )
                }
                DeltaResource::Groups => {
                    let page = tx.list_groups(&caller.tenant.id, &plan, after.as_ref()).await?;
                    (
                        page.items.into_iter().map(|it| DeltaItem::Current(DirectoryObject::Group(it))).collect(),
                        page.next,
                    )
                }
            };
            let next = match next {
                Some(cursor) => {
                    DeltaNext::Page(self.encode_delta(&Token { c: Some((cursor.sort_key, cursor.id)), ..token })?)
                }
                None => DeltaNext::Round(self.encode_delta(&Token { c: None, ch: true, at: now, ..token })?),
            };
            return Ok(DeltaPage { items, select, next });
        }
        // A round of changes: the objects the audit log names after the token's chain number.
        let records = tx.audit_targets_after(&caller.tenant.id, token.i, delta::CHANGES_READ).await?;
        let last = records.last().map_or(token.i, |(index, _)| *index);
        let is_done = records.len() < delta::CHANGES_READ;
        let mut ids: Vec<ObjectId> = Vec::new();
        for (_, targets) in records {
            for (id, kind) in targets {
                let is_tracked = token.f.as_ref().is_none_or(|it| it.contains(&id.to_string()));
                if kind == resource.kind() && is_tracked && !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let object = match resource {
                DeltaResource::Users => tx.get_user(&caller.tenant.id, &id).await?.map(DirectoryObject::User),
                DeltaResource::Groups => tx.get_group(&caller.tenant.id, &id).await?.map(DirectoryObject::Group),
            };
            let item = match object {
                Some(object) => DeltaItem::Current(object),
                None => {
                    let since = self.now() - crate::deleted_items::RETENTION;
                    let is_kept = match resource {
                        DeltaResource::Users => tx.get_deleted_user(&caller.tenant.id, &id, since).await?.is_some(),
                        DeltaResource::Groups => tx.get_deleted_group(&caller.tenant.id, &id, since).await?.is_some(),
                    };
                    if is_kept { DeltaItem::SoftDeleted(id) } else { DeltaItem::Removed(id) }
                }
            };
            items.push(item);
        }
        let next = if is_done {
            DeltaNext::Round(self.encode_delta(&Token { i: last, at: now, ..token })?)
        } else {
            DeltaNext::Page(self.encode_delta(&Token { i: last, ..token })?)
        };
        Ok(DeltaPage { items, select, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_serialise_and_filters_quote() {
        let token = Token {
            t: "t".into(),
            k: "users".into(),
            s: Some("displayName".into()),
            f: None,
            i: 7,
            at: 1,
            c: Some(("adele".into(), "00000000-0000-0000-0000-000000000001".into())),
            ch: false,
        };
        let json = serde_json::to_vec(&token).expect("encodes");
        assert_eq!(serde_json::from_slice::<Token>(&json).expect("decodes"), token);
        assert!(mac_message(&json).starts_with(b"keyward delta token v1\n"));
        assert_eq!(ids_filter(&["a".into(), "b'c".into()]), "id eq 'a' or id eq 'b''c'");
    }
}
