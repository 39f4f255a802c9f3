//! The MVCC store against a plain in-memory model of etcd's semantics: random batches of
//! puts, deletes, txns and compactions, with reads at past revisions, history reads for
//! watchers, and reopens in between.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::collections::BTreeMap;

use mnemo::command::{Command, CommandResponse, Op};
use mnemo::error::Error;
use mnemo::mvcc::Store;
use mnemo_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mnemo_proto::etcdserverpb::request_op::Request;
use mnemo_proto::etcdserverpb::response_op::Response;
use mnemo_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use mnemo_proto::mvccpb::{event::EventType, Event, KeyValue};
use mnemo_storage::Durability;
use proptest::prelude::*;

const KEYS: [&str; 6] = ["a", "ab", "abc", "b", "ba", "c"];
const ENDS: [&str; 6] = ["", "\0", "b", "c", "bb", "a"];

fn key(i: u8) -> Vec<u8> {
    KEYS[i as usize % KEYS.len()].as_bytes().to_vec()
}

fn end(i: u8) -> Vec<u8> {
    ENDS[i as usize % ENDS.len()].as_bytes().to_vec()
}

fn in_range(k: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => k == start,
        [0] => k >= start,
        e => k >= start && k < e,
    }
}

/// etcd's history, kept whole: per key, every change (None: deleted).
#[derive(Debug, Clone, Default)]
struct Model {
    rev: i64,
    compact: i64,
    history: BTreeMap<Vec<u8>, Vec<(i64, Option<KeyValue>)>>,
    events: Vec<Event>,
    leases: std::collections::BTreeSet<i64>,
}

/// A command being applied to the model: writes staged until it ends.
struct ModelTxn<'m> {
    m: &'m mut Model,
    staged: BTreeMap<Vec<u8>, Option<KeyValue>>,
    changes: usize,
}

impl Model {
    fn new() -> Model {
        Model {
            rev: 1,
            ..Default::default()
        }
    }

    fn at(&self, k: &[u8], rev: i64) -> Option<KeyValue> {
        self.history
            .get(k)?
            .iter()
            .rev()
            .find(|(r, _)| *r <= rev)
            .and_then(|(_, kv)| kv.clone())
    }

    fn range(&self, start: &[u8], end: &[u8], rev: i64) -> Result<Vec<KeyValue>, Error> {
        let rev = if rev <= 0 { self.rev } else { rev };
        if rev > self.rev {
            return Err(Error::FutureRev);
        }
        if rev < self.compact {
            return Err(Error::Compacted);
        }
        Ok(self
            .history
            .keys()
            .filter(|k| in_range(k, start, end))
            .filter_map(|k| self.at(k, rev))
            .collect())
    }

    fn begin(&mut self) -> ModelTxn<'_> {
        ModelTxn {
            m: self,
            staged: BTreeMap::new(),
            changes: 0,
        }
    }
}

impl ModelTxn<'_> {
    fn current(&self, k: &[u8]) -> Option<KeyValue> {
        match self.staged.get(k) {
            Some(v) => v.clone(),
            None => self.m.at(k, self.m.rev),
        }
    }

    fn live_keys(&self, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = self
            .m
            .history
            .keys()
            .chain(self.staged.keys())
            .filter(|k| in_range(k, start, end))
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all.retain(|k| self.current(k).is_some());
        all
    }

    fn put(&mut self, k: &[u8], v: &[u8]) -> Option<KeyValue> {
        self.put_leased(k, v, 0)
    }

    fn put_leased(&mut self, k: &[u8], v: &[u8], lease: i64) -> Option<KeyValue> {
        let prev = self.current(k);
        let rev = self.m.rev + 1;
        let kv = KeyValue {
            key: k.to_vec(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value: v.to_vec(),
            lease,
        };
        self.record(k, Some(kv), prev.clone());
        prev
    }

    fn delete(&mut self, start: &[u8], end: &[u8]) -> Vec<KeyValue> {
        let mut prevs = Vec::new();
        for k in self.live_keys(start, end) {
            let prev = self.current(&k);
            self.record(&k, None, prev.clone());
            prevs.extend(prev);
        }
        prevs
    }

    fn record(&mut self, k: &[u8], kv: Option<KeyValue>, prev: Option<KeyValue>) {
        let rev = self.m.rev + 1;
        self.changes += 1;
        self.staged.insert(k.to_vec(), kv.clone());
        self.m.history.entry(k.to_vec()).or_default();
        let (ty, ev_kv) = match kv {
            Some(kv) => (EventType::Put, kv),
            None => (
                EventType::Delete,
                KeyValue {
                    key: k.to_vec(),
                    mod_revision: rev,
                    ..Default::default()
                },
            ),
        };
        self.m.events.push(Event {
            r#type: ty as i32,
            kv: Some(ev_kv),
            prev_kv: prev,
        });
    }

    fn read_rev(&self) -> i64 {
        self.m.rev + i64::from(self.changes > 0)
    }

    fn range(&self, start: &[u8], end: &[u8]) -> Vec<KeyValue> {
        self.live_keys(start, end)
            .into_iter()
            .filter_map(|k| self.current(&k))
            .collect()
    }

    fn finish(self) {
        if self.changes == 0 {
            return;
        }
        self.m.rev += 1;
        let rev = self.m.rev;
        for (k, v) in self.staged {
            self.m.history.entry(k).or_default().push((rev, v));
        }
    }
}

#[derive(Debug, Clone)]
enum TxnOp {
    Put(u8, u8),
    Delete(u8, u8),
    Range(u8, u8),
}

#[derive(Debug, Clone)]
enum Cmd {
    Put(u8, u8),
    /// Put with lease id 1..=3 (which may not exist).
    PutLeased(u8, u8, u8),
    Grant(u8),
    Revoke(u8),
    Delete(u8, u8),
    Txn {
        key: u8,
        /// 0: version ==, 1: version >, 2: version <, 3: value ==.
        kind: u8,
        operand: u8,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    },
    /// Compact at `current - back`.
    Compact(u8),
}

#[derive(Debug, Clone)]
enum Step {
    Batch(Vec<Cmd>),
    /// Range at `current - back`.
    Read {
        key: u8,
        end: u8,
        back: u8,
        limit: u8,
    },
    Events(u8),
    /// A txn of ranges only, served by `Store::read_txn`.
    ReadTxn(Cmd),
    Reopen,
}

fn txn_op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        (any::<u8>(), any::<u8>()).prop_map(|(k, v)| TxnOp::Put(k, v % 4)),
        (any::<u8>(), any::<u8>()).prop_map(|(k, e)| TxnOp::Delete(k, e)),
        (any::<u8>(), any::<u8>()).prop_map(|(k, e)| TxnOp::Range(k, e)),
    ]
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Cmd::Put(k, v % 4)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(k, e)| Cmd::Delete(k, e)),
        3 => (
            any::<u8>(),
            0u8..4,
            0u8..4,
            prop::collection::vec(txn_op(), 0..5),
            prop::collection::vec(txn_op(), 0..3)
        )
            .prop_map(|(key, kind, operand, success, failure)| Cmd::Txn {
                key,
                kind,
                operand,
                success,
                failure
            }),
        1 => (0u8..6).prop_map(Cmd::Compact),
        2 => (any::<u8>(), any::<u8>(), 1u8..4).prop_map(|(k, v, l)| Cmd::PutLeased(k, v % 4, l)),
        1 => (1u8..4).prop_map(Cmd::Grant),
        1 => (1u8..4).prop_map(Cmd::Revoke),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop::collection::vec(cmd(), 1..6).prop_map(Step::Batch),
        3 => (any::<u8>(), any::<u8>(), 0u8..8, 0u8..4).prop_map(|(key, end, back, limit)| Step::Read {
            key,
            end,
            back,
            limit
        }),
        1 => (0u8..8).prop_map(Step::Events),
        2 => (
            any::<u8>(),
            0u8..4,
            0u8..4,
            prop::collection::vec((any::<u8>(), any::<u8>()), 0..4),
            prop::collection::vec((any::<u8>(), any::<u8>()), 0..3)
        )
            .prop_map(|(key, kind, operand, s, f)| Step::ReadTxn(Cmd::Txn {
                key,
                kind,
                operand,
                success: s.into_iter().map(|(k, e)| TxnOp::Range(k, e)).collect(),
                failure: f.into_iter().map(|(k, e)| TxnOp::Range(k, e)).collect(),
            })),
        1 => Just(Step::Reopen),
    ]
}

fn value(v: u8) -> Vec<u8> {
    format!("v{v}").into_bytes()
}

fn to_request_op(op: &TxnOp) -> RequestOp {
    RequestOp {
        request: Some(match op {
            TxnOp::Put(k, v) => Request::RequestPut(PutRequest {
                key: key(*k),
                value: value(*v),
                prev_kv: true,
                ..Default::default()
            }),
            TxnOp::Delete(k, e) => Request::RequestDeleteRange(DeleteRangeRequest {
                key: key(*k),
                range_end: end(*e),
                prev_kv: true,
            }),
            TxnOp::Range(k, e) => Request::RequestRange(RangeRequest {
                key: key(*k),
                range_end: end(*e),
                ..Default::default()
            }),
        }),
    }
}

/// Applies a command to the model and returns what the store must answer.
fn model_apply(m: &mut Model, c: &Cmd) -> CommandResponse {
    use mnemo_proto::etcdserverpb as pb;
    let hdr = |rev| {
        Some(pb::ResponseHeader {
            revision: rev,
            ..Default::default()
        })
    };
    match c {
        Cmd::Put(k, v) => {
            let mut t = m.begin();
            t.put(&key(*k), &value(*v));
            t.finish();
            CommandResponse::Put(pb::PutResponse {
                header: hdr(m.rev),
                prev_kv: None,
            })
        }
        Cmd::PutLeased(k, v, l) => {
            if !m.leases.contains(&i64::from(*l)) {
                return CommandResponse::Error(Error::LeaseNotFound);
            }
            let mut t = m.begin();
            t.put_leased(&key(*k), &value(*v), i64::from(*l));
            t.finish();
            CommandResponse::Put(pb::PutResponse {
                header: hdr(m.rev),
                prev_kv: None,
            })
        }
        Cmd::Grant(l) => {
            let id = i64::from(*l);
            if !m.leases.insert(id) {
                return CommandResponse::Error(Error::LeaseExist);
            }
            CommandResponse::LeaseGrant(pb::LeaseGrantResponse {
                header: hdr(m.rev),
                id,
                ttl: 30,
                error: String::new(),
            })
        }
        Cmd::Revoke(l) => {
            let id = i64::from(*l);
            if !m.leases.remove(&id) {
                return CommandResponse::Error(Error::LeaseNotFound);
            }
            let attached: Vec<Vec<u8>> = m
                .history
                .keys()
                .filter(|k| m.at(k, m.rev).is_some_and(|kv| kv.lease == id))
                .cloned()
                .collect();
            let mut t = m.begin();
            for k in attached {
                t.delete(&k, b"");
            }
            t.finish();
            CommandResponse::LeaseRevoke(pb::LeaseRevokeResponse { header: hdr(m.rev) })
        }
        Cmd::Delete(k, e) => {
            let mut t = m.begin();
            let prevs = t.delete(&key(*k), &end(*e));
            t.finish();
            CommandResponse::DeleteRange(pb::DeleteRangeResponse {
                header: hdr(m.rev),
                deleted: prevs.len() as i64,
                prev_kvs: prevs,
            })
        }
        Cmd::Compact(back) => {
            let rev = m.rev - i64::from(*back);
            if rev <= m.compact {
                return CommandResponse::Error(Error::Compacted);
            }
            m.compact = rev;
            CommandResponse::Compaction(pb::CompactionResponse { header: hdr(m.rev) })
        }
        Cmd::Txn {
            key: k,
            kind,
            operand,
            success,
            failure,
        } => {
            let cur = m.at(&key(*k), m.rev);
            let version = cur.as_ref().map_or(0, |kv| kv.version);
            let ok = match kind {
                0 => version == i64::from(*operand),
                1 => version > i64::from(*operand),
                2 => version < i64::from(*operand),
                _ => cur.is_some_and(|kv| kv.value == value(*operand)),
            };
            let ops = if ok { success } else { failure };
            let mut t = m.begin();
            let mut responses = Vec::new();
            for op in ops {
                let response = match op {
                    TxnOp::Put(k, v) => {
                        let prev = t.put(&key(*k), &value(*v));
                        Response::ResponsePut(pb::PutResponse {
                            header: hdr(t.read_rev()),
                            prev_kv: prev,
                        })
                    }
                    TxnOp::Delete(k, e) => {
                        let prevs = t.delete(&key(*k), &end(*e));
                        Response::ResponseDeleteRange(pb::DeleteRangeResponse {
                            header: hdr(t.read_rev()),
                            deleted: prevs.len() as i64,
                            prev_kvs: prevs,
                        })
                    }
                    TxnOp::Range(k, e) => {
                        let kvs = t.range(&key(*k), &end(*e));
                        Response::ResponseRange(pb::RangeResponse {
                            header: hdr(t.read_rev()),
                            count: kvs.len() as i64,
                            kvs,
                            more: false,
                        })
                    }
                };
                responses.push(pb::ResponseOp {
                    response: Some(response),
                });
            }
            let rev = t.read_rev();
            t.finish();
            CommandResponse::Txn(pb::TxnResponse {
                header: hdr(rev),
                succeeded: ok,
                responses,
            })
        }
    }
}

fn to_command(m: &Model, c: &Cmd) -> Command {
    Command::new(match c {
        Cmd::Put(k, v) => Op::Put(PutRequest {
            key: key(*k),
            value: value(*v),
            ..Default::default()
        }),
        Cmd::PutLeased(k, v, l) => Op::Put(PutRequest {
            key: key(*k),
            value: value(*v),
            lease: i64::from(*l),
            ..Default::default()
        }),
        Cmd::Grant(l) => Op::LeaseGrant(LeaseGrantRequest {
            ttl: 30,
            id: i64::from(*l),
        }),
        Cmd::Revoke(l) => Op::LeaseRevoke(LeaseRevokeRequest { id: i64::from(*l) }),
        Cmd::Delete(k, e) => Op::DeleteRange(DeleteRangeRequest {
            key: key(*k),
            range_end: end(*e),
            prev_kv: true,
        }),
        Cmd::Compact(back) => Op::Compaction(CompactionRequest {
            revision: m.rev - i64::from(*back),
            physical: false,
        }),
        Cmd::Txn {
            key: k,
            kind,
            operand,
            success,
            failure,
        } => {
            let (result, target, union) = match kind {
                0 => (
                    CompareResult::Equal,
                    CompareTarget::Version,
                    TargetUnion::Version(i64::from(*operand)),
                ),
                1 => (
                    CompareResult::Greater,
                    CompareTarget::Version,
                    TargetUnion::Version(i64::from(*operand)),
                ),
                2 => (
                    CompareResult::Less,
                    CompareTarget::Version,
                    TargetUnion::Version(i64::from(*operand)),
                ),
                _ => (
                    CompareResult::Equal,
                    CompareTarget::Value,
                    TargetUnion::Value(value(*operand)),
                ),
            };
            Op::Txn(TxnRequest {
                compare: vec![Compare {
                    result: result as i32,
                    target: target as i32,
                    key: key(*k),
                    range_end: Vec::new(),
                    target_union: Some(union),
                }],
                success: success.iter().map(to_request_op).collect(),
                failure: failure.iter().map(to_request_op).collect(),
            })
        }
    })
}

/// Leases and their attached keys.
fn check_leases(store: &Store, m: &Model) -> Result<(), TestCaseError> {
    let ids: Vec<i64> = store.leases().iter().map(|l| l.id).collect();
    prop_assert_eq!(&ids, &m.leases.iter().copied().collect::<Vec<_>>());
    for id in ids {
        let want: Vec<Vec<u8>> = m
            .history
            .keys()
            .filter(|k| m.at(k, m.rev).is_some_and(|kv| kv.lease == id))
            .cloned()
            .collect();
        prop_assert_eq!(store.lease_keys(id), want, "keys of lease {}", id);
    }
    Ok(())
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut store = Store::open(&path).unwrap();
    let mut m = Model::new();
    for step in steps {
        match step {
            Step::Batch(cmds) => {
                let first_event = m.events.len();
                let mut a = store.begin_apply().unwrap();
                for c in &cmds {
                    let cmd = to_command(&m, c);
                    let want = model_apply(&mut m, c);
                    let got = a.apply(&cmd);
                    prop_assert_eq!(got, want, "command {:?}", c);
                }
                let applied = a.commit(Durability::Deferred).unwrap();
                prop_assert_eq!(applied.revision, m.rev);
                prop_assert_eq!(&applied.events[..], &m.events[first_event..]);
                prop_assert_eq!(store.current_revision(), m.rev);
                prop_assert_eq!(store.compact_revision(), m.compact);
                check_leases(&store, &m)?;
            }
            Step::Read {
                key: k,
                end: e,
                back,
                limit,
            } => {
                let rev = m.rev - i64::from(back);
                let req = RangeRequest {
                    key: key(k),
                    range_end: end(e),
                    revision: rev,
                    limit: i64::from(limit),
                    ..Default::default()
                };
                match (store.range(&req), m.range(&key(k), &end(e), rev)) {
                    (Ok(got), Ok(mut want)) => {
                        let count = want.len() as i64;
                        let more = limit > 0 && want.len() > usize::from(limit);
                        if limit > 0 {
                            want.truncate(usize::from(limit));
                        }
                        prop_assert_eq!(got.kvs, want, "range {:?} at {}", req, rev);
                        prop_assert_eq!(got.count, count);
                        prop_assert_eq!(got.more, more);
                        prop_assert_eq!(got.header.unwrap().revision, m.rev);
                    }
                    (Err(g), Err(w)) => prop_assert_eq!(g, w),
                    (g, w) => prop_assert!(false, "range {:?}: store {:?}, model {:?}", req, g, w),
                }
            }
            Step::Events(back) => {
                let start = (m.rev - i64::from(back)).max(1);
                let got = store.events_since(start, b"\0", b"\0", usize::MAX);
                if m.compact > 0 && start <= m.compact {
                    prop_assert_eq!(got, Err(Error::Compacted));
                } else {
                    let want: Vec<Event> = m
                        .events
                        .iter()
                        .filter(|e| e.kv.as_ref().unwrap().mod_revision >= start)
                        .cloned()
                        .collect();
                    prop_assert_eq!(got.unwrap(), want);
                }
            }
            Step::ReadTxn(cmd) => {
                let Op::Txn(req) = to_command(&m, &cmd).op.unwrap() else {
                    unreachable!()
                };
                let want = match model_apply(&mut m.clone(), &cmd) {
                    CommandResponse::Txn(t) => t,
                    other => panic!("{other:?}"),
                };
                prop_assert_eq!(store.read_txn(&req).unwrap(), want);
            }
            Step::Reopen => {
                let hash = store.hash_kv(0).unwrap();
                store.sync().unwrap();
                drop(store);
                store = Store::open(&path).unwrap();
                prop_assert_eq!(store.current_revision(), m.rev);
                prop_assert_eq!(store.compact_revision(), m.compact);
                prop_assert_eq!(store.hash_kv(0).unwrap(), hash);
                check_leases(&store, &m)?;
            }
        }
    }
    // Everything at the end, at every readable revision.
    for rev in m.compact.max(1)..=m.rev {
        let req = RangeRequest {
            key: b"\0".to_vec(),
            range_end: b"\0".to_vec(),
            revision: rev,
            ..Default::default()
        };
        prop_assert_eq!(
            store.range(&req).unwrap().kvs,
            m.range(b"\0", b"\0", rev).unwrap()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_the_model(steps in prop::collection::vec(step(), 1..40)) {
        run(steps)?;
    }
}
