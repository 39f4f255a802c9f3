//! What Lock and Election share, the server side of etcd's `concurrency` package: the
//! lease a waiter's key is attached to, its key under the name's prefix, and the wait
//! until every key created before it is gone.
//!
//! Waiters of one name queue by create revision. For the name `jobs`:
//!
//! ```text
//! jobs/694d7a1b3c2e0a01  create_revision 7   holder (smallest create revision)
//! jobs/694d7a1b3c2e0a05  create_revision 9   waits for the key at 7 to be deleted
//! jobs/694d7a1b3c2e0a09  create_revision 12  waits for the key at 9, then for any
//!                                            key below 12 still left (here 7)
//! ```
//!
//! Each waiter watches only the last key created before its own (no thundering herd),
//! and its own key: when that one goes (its lease expired or was revoked), the wait ends
//! with an error rather than handing out a lock nobody holds.

use std::sync::Arc;

use mnemo_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mnemo_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use mnemo_proto::etcdserverpb::request_op::Request as Op;
use mnemo_proto::etcdserverpb::response_op::Response as OpResponse;
use mnemo_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, TxnRequest, TxnResponse, WatchCreateRequest,
};
use mnemo_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::Access;
use super::EtcdServer;
use crate::error::{Error, Result};
use crate::mvcc::watch::{StreamItem, WatchReceiver, WatchStream};

/// TTL of the lease granted when Lock or Campaign names none (etcd's session default).
pub const DEFAULT_SESSION_TTL: i64 = 60;

/// The end of the range holding every key that starts with `prefix` (etcd's
/// `GetPrefixRangeEnd`): the prefix with its last byte below 0xff incremented and the
/// rest dropped; `\0` (every key) when all bytes are 0xff.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A waiter's key: `<name>/<lease id in lowercase hex>`.
pub fn waiter_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut key = name.to_vec();
    key.push(b'/');
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// `name/`: the prefix all waiters of `name` share.
pub fn waiters_prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// `create_revision(key) == revision`.
pub fn created_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        range_end: vec![],
    }
}

pub fn get_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

pub fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

pub fn delete_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// The range of keys under `prefix`, oldest first or newest first by create revision,
/// one key.
pub fn by_create(prefix: &[u8], order: SortOrder, max_create_revision: i64) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..Default::default()
    }
}

/// The key-values of the `i`-th response of a txn, if it is a range.
pub fn range_kvs(resp: &TxnResponse, i: usize) -> &[KeyValue] {
    match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(OpResponse::ResponseRange(RangeResponse { kvs, .. })) => kvs,
        _ => &[],
    }
}

/// A waiter's key, created (or found, when the lease already has one) in one txn.
#[derive(Debug, Clone)]
pub struct WaiterKey {
    pub key: Vec<u8>,
    pub lease: i64,
    /// The key's create revision: its place in the queue.
    pub create_revision: i64,
    /// The value the key held before, when it existed already.
    pub existing_value: Option<Vec<u8>>,
    pub header: Option<ResponseHeader>,
}

impl EtcdServer {
    /// The lease a waiter's key is attached to: `lease`, or when 0 a new one with etcd's
    /// session TTL (nobody keeps it alive: it ends the lock or candidacy after a while).
    pub(super) async fn session_lease(&self, lease: i64) -> Result<i64> {
        if lease != 0 {
            return Ok(lease);
        }
        let resp = self
            .lease_grant(LeaseGrantRequest {
                ttl: DEFAULT_SESSION_TTL,
                id: 0,
            })
            .await?;
        Ok(resp.id)
    }

    /// Creates `name/<lease hex>` holding `value` unless it exists (etcd's txn:
    /// create_revision == 0 → put with the lease, else get). An unknown lease fails
    /// the put with "requested lease not found".
    pub(super) async fn enqueue(&self, name: &[u8], lease: i64, value: &[u8]) -> Result<WaiterKey> {
        let key = waiter_key(name, lease);
        let resp = self
            .txn(
                &Access::unchecked(),
                TxnRequest {
                    compare: vec![created_at(&key, 0)],
                    success: vec![put_op(&key, value, lease)],
                    failure: vec![get_op(&key)],
                },
            )
            .await?;
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        let (create_revision, existing_value) = if resp.succeeded {
            (revision, None)
        } else {
            match range_kvs(&resp, 0).first() {
                Some(kv) => (kv.create_revision, Some(kv.value.clone())),
                // Deleted between the compare and the get cannot happen in one txn.
                None => return Err(Error::Internal("waiter key vanished in its txn".into())),
            }
        };
        Ok(WaiterKey {
            key,
            lease,
            create_revision,
            existing_value,
            header: resp.header,
        })
    }

    /// Waits until no key under `prefix` has a create revision below `me`'s (etcd's
    /// `waitDeletes`), and fails if `me`'s own key is deleted first: with "requested
    /// lease not found" when its lease is gone, else with `lost`.
    pub(super) async fn wait_predecessors(
        &self,
        prefix: &[u8],
        me: &WaiterKey,
        lost: Error,
    ) -> Result<ResponseHeader> {
        loop {
            // One read for both: my key still there, and the newest key before mine.
            let resp = self
                .txn(
                    &Access::unchecked(),
                    TxnRequest {
                        compare: vec![],
                        success: vec![
                            get_op(&me.key),
                            RequestOp {
                                request: Some(Op::RequestRange(by_create(
                                    prefix,
                                    SortOrder::Descend,
                                    me.create_revision - 1,
                                ))),
                            },
                        ],
                        failure: vec![],
                    },
                )
                .await?;
            let header = resp.header.unwrap_or_default();
            let mine = range_kvs(&resp, 0).first();
            if mine.is_none_or(|kv| kv.create_revision != me.create_revision) {
                return Err(self.waiter_lost(me.lease, lost));
            }
            let Some(before) = range_kvs(&resp, 1).first() else {
                return Ok(header);
            };
            let mut watch = KeyWatch::new(self, &[&before.key, &me.key], header.revision + 1)?;
            loop {
                let events = watch.next().await?.1;
                let deleted = |k: &[u8]| {
                    events
                        .iter()
                        .any(|e| e.r#type == EventType::Delete as i32 && event_key(e) == k)
                };
                if deleted(&me.key) {
                    return Err(self.waiter_lost(me.lease, lost));
                }
                if deleted(&before.key) {
                    break;
                }
            }
        }
    }

    fn waiter_lost(&self, lease: i64, lost: Error) -> Error {
        if self.store.lease(lease).is_none() {
            Error::LeaseNotFound
        } else {
            lost
        }
    }
}

pub fn event_key(e: &Event) -> &[u8] {
    e.kv.as_ref().map_or(&[], |kv| &kv.key)
}

/// Watchers inside the server, on the watch hub like a client's: single keys or
/// ranges, from a start revision, yielding their events in order.
#[derive(Debug)]
pub struct KeyWatch {
    _stream: WatchStream,
    receiver: WatchReceiver,
}

impl KeyWatch {
    /// Watches each of `keys` (single keys) from `start_revision`.
    pub fn new(server: &EtcdServer, keys: &[&[u8]], start_revision: i64) -> Result<KeyWatch> {
        let ranges: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (*k, &[][..])).collect();
        KeyWatch::ranges(server, &ranges, start_revision)
    }

    /// Watches each `(key, range_end)` from `start_revision`.
    pub fn ranges(
        server: &EtcdServer,
        ranges: &[(&[u8], &[u8])],
        start_revision: i64,
    ) -> Result<KeyWatch> {
        let (stream, receiver) = server.hub.new_stream();
        for (key, range_end) in ranges {
            let req = WatchCreateRequest {
                key: key.to_vec(),
                range_end: range_end.to_vec(),
                start_revision,
                ..Default::default()
            };
            stream
                .watch(&req)
                .map_err(|e| Error::Internal(format!("watch: {}", e.reason())))?;
        }
        Ok(KeyWatch {
            _stream: stream,
            receiver,
        })
    }

    /// The next non-empty batch of events and its header revision.
    pub async fn next(&mut self) -> Result<(i64, Vec<Event>)> {
        loop {
            match self.receiver.recv().await {
                Some(StreamItem::Update(u)) if !u.events.is_empty() => {
                    return Ok((u.revision, u.events));
                }
                Some(StreamItem::Update(_)) | Some(StreamItem::Created { .. }) => {}
                Some(StreamItem::Compacted { .. }) => return Err(Error::Compacted),
                Some(StreamItem::Rejected { reason, .. })
                | Some(StreamItem::Canceled { reason, .. }) => {
                    return Err(Error::Internal(format!("watch: {reason}")));
                }
                None => return Err(Error::Stopped),
            }
        }
    }
}

/// Deletes a waiter's key (if it is still the one created at its revision) when
/// dropped armed: a caller that goes away while waiting leaves no key behind (etcd's
/// Mutex and Election clean up the same way on a canceled context).
#[derive(Debug)]
pub struct Withdraw {
    server: Option<Arc<EtcdServer>>,
    key: Vec<u8>,
    create_revision: i64,
}

impl Withdraw {
    pub fn new(server: &Arc<EtcdServer>, me: &WaiterKey) -> Withdraw {
        Withdraw {
            server: Some(server.clone()),
            key: me.key.clone(),
            create_revision: me.create_revision,
        }
    }

    /// The key stays: the wait succeeded.
    pub fn disarm(mut self) {
        self.server = None;
    }
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        let req = TxnRequest {
            compare: vec![created_at(&self.key, self.create_revision)],
            success: vec![delete_op(&self.key)],
            failure: vec![],
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = server.txn(&Access::unchecked(), req).await {
                    tracing::debug!(error = %e, "withdrawing a lock or election key failed");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_follow_etcd() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(waiter_key(b"jobs", 0x694d_7a1b), b"jobs/694d7a1b");
    }
}
