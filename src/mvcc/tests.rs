//! Unit tests of the store's etcd rules, through the public API.

use mnemo_proto::etcdserverpb::alarm_request::AlarmAction;
use mnemo_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mnemo_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use mnemo_proto::etcdserverpb::request_op::Request;
use mnemo_proto::etcdserverpb::response_op::Response;
use mnemo_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmType, CompactionRequest, Compare, DeleteRangeRequest,
    DeleteRangeResponse, LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest,
    LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
    WatchCreateRequest,
};
use mnemo_proto::mvccpb::{event::EventType, KeyValue};
use std::sync::Arc;

use mnemo_storage::Durability;
use tempfile::TempDir;

use super::*;
use crate::command::{Command, CommandResponse, Op};
use crate::error::Error;

fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    (dir, s)
}

/// Reopens after making every deferred commit durable (a clean shutdown).
fn reopen(dir: &TempDir, s: Store) -> Store {
    s.sync().unwrap();
    drop(s);
    Store::open(&dir.path().join("db")).unwrap()
}

/// Applies one command in its own batch.
fn apply(s: &Store, op: Op) -> CommandResponse {
    let mut a = s.begin_apply().unwrap();
    let r = a.apply(&Command::new(op));
    a.commit(Durability::Deferred).unwrap();
    r
}

fn put(s: &Store, k: &str, v: &str) -> i64 {
    match apply(s, Op::Put(preq(k, v))) {
        CommandResponse::Put(r) => r.header.unwrap().revision,
        other => panic!("put failed: {other:?}"),
    }
}

fn preq(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

fn del(s: &Store, k: &str, end: &str) -> CommandResponse {
    apply(
        s,
        Op::DeleteRange(DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            prev_kv: true,
        }),
    )
}

fn err(r: CommandResponse) -> Error {
    match r {
        CommandResponse::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn get(s: &Store, k: &str) -> Option<KeyValue> {
    let r = s
        .range(&RangeRequest {
            key: k.into(),
            ..Default::default()
        })
        .unwrap();
    assert!(r.kvs.len() <= 1);
    r.kvs.into_iter().next()
}

fn get_at(s: &Store, k: &str, rev: i64) -> crate::error::Result<Option<KeyValue>> {
    let r = s.range(&RangeRequest {
        key: k.into(),
        revision: rev,
        ..Default::default()
    })?;
    Ok(r.kvs.into_iter().next())
}

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn txn(s: &Store, t: TxnRequest) -> TxnResponse {
    match apply(s, Op::Txn(t)) {
        CommandResponse::Txn(r) => r,
        other => panic!("txn failed: {other:?}"),
    }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(preq(k, v))),
    }
}

fn op_get(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: k.into(),
            range_end: end.into(),
            ..Default::default()
        })),
    }
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            prev_kv: true,
        })),
    }
}

fn cmp(k: &str, target: CompareTarget, result: CompareResult, u: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: k.into(),
        range_end: Vec::new(),
        target_union: Some(u),
    }
}

fn grant(s: &Store, id: i64, ttl: i64) -> CommandResponse {
    apply(s, Op::LeaseGrant(LeaseGrantRequest { ttl, id }))
}

#[test]
fn revisions_versions_and_tombstones() {
    let (_d, s) = open();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.compact_revision(), 0);
    assert_eq!(put(&s, "a", "1"), 2);
    assert_eq!(put(&s, "a", "2"), 3);
    let kv = get(&s, "a").unwrap();
    assert_eq!(
        (
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            &kv.value[..]
        ),
        (2, 3, 2, &b"2"[..])
    );
    match del(&s, "a", "") {
        CommandResponse::DeleteRange(r) => {
            assert_eq!(r.deleted, 1);
            assert_eq!(r.header.unwrap().revision, 4);
            assert_eq!(r.prev_kvs[0].value, b"2");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&s, "a"), None);
    assert_eq!(put(&s, "a", "3"), 5);
    let kv = get(&s, "a").unwrap();
    assert_eq!((kv.create_revision, kv.version), (5, 1));
    // Old revisions stay readable.
    assert_eq!(get_at(&s, "a", 2).unwrap().unwrap().value, b"1");
    assert_eq!(get_at(&s, "a", 4).unwrap(), None);
    assert_eq!(get_at(&s, "a", 1).unwrap(), None);
    assert_eq!(get_at(&s, "a", 6).unwrap_err(), Error::FutureRev);
}

#[test]
fn deleting_nothing_does_not_bump_the_revision() {
    let (_d, s) = open();
    put(&s, "a", "1");
    match del(&s, "zz", "") {
        CommandResponse::DeleteRange(r) => {
            assert_eq!(r.deleted, 0);
            assert_eq!(r.header.unwrap().revision, 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.current_revision(), 2);
    // A range delete takes every key in one revision.
    put(&s, "b", "1");
    put(&s, "c", "1");
    match del(&s, "a", "c") {
        CommandResponse::DeleteRange(r) => {
            assert_eq!(r.deleted, 2);
            assert_eq!(keys(&r.prev_kvs), ["a", "b"]);
            assert_eq!(r.header.unwrap().revision, 5);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.current_revision(), 5);
    assert!(get(&s, "c").is_some());
}

fn seed(s: &Store) {
    // foo rev 2, foo/a rev 3, foo/b rev 4, goo rev 5, foo/a again rev 6.
    for (k, v) in [
        ("foo", "z"),
        ("foo/a", "y"),
        ("foo/b", "x"),
        ("goo", "w"),
        ("foo/a", "v"),
    ] {
        put(s, k, v);
    }
}

fn rng(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

#[test]
fn range_key_rules() {
    let (_d, s) = open();
    seed(&s);
    let r = s.range(&rng("foo/", "foo0")).unwrap();
    assert_eq!(keys(&r.kvs), ["foo/a", "foo/b"]);
    assert_eq!(r.count, 2);
    assert_eq!(r.header.unwrap().revision, 6);
    assert_eq!(
        keys(&s.range(&rng("foo/", "\0")).unwrap().kvs),
        ["foo/a", "foo/b", "goo"]
    );
    assert_eq!(
        keys(&s.range(&rng("\0", "\0")).unwrap().kvs),
        ["foo", "foo/a", "foo/b", "goo"]
    );
    assert_eq!(keys(&s.range(&rng("foo", "")).unwrap().kvs), ["foo"]);
    assert!(s.range(&rng("goo", "foo")).unwrap().kvs.is_empty());
    assert!(s.range(&rng("nope", "")).unwrap().kvs.is_empty());
}

#[test]
fn range_limit_count_and_flags() {
    let (_d, s) = open();
    seed(&s);
    let mut req = rng("\0", "\0");
    req.limit = 2;
    let r = s.range(&req).unwrap();
    assert_eq!(keys(&r.kvs), ["foo", "foo/a"]);
    assert!(r.more);
    assert_eq!(r.count, 4);
    req.limit = 4;
    let r = s.range(&req).unwrap();
    assert!(!r.more);
    assert_eq!(r.kvs.len(), 4);

    let mut req = rng("\0", "\0");
    req.count_only = true;
    let r = s.range(&req).unwrap();
    assert!(r.kvs.is_empty() && !r.more);
    assert_eq!(r.count, 4);

    let mut req = rng("foo", "");
    req.keys_only = true;
    let r = s.range(&req).unwrap();
    assert_eq!(r.kvs[0].value, b"");
    assert_eq!(r.kvs[0].version, 1);

    // Count is taken at the requested revision, and ignores the revision filters.
    let mut req = rng("\0", "\0");
    req.revision = 3;
    assert_eq!(s.range(&req).unwrap().count, 2);
    let mut req = rng("\0", "\0");
    req.min_mod_revision = 4;
    let r = s.range(&req).unwrap();
    assert_eq!(keys(&r.kvs), ["foo/a", "foo/b", "goo"]);
    assert_eq!(r.count, 4);
    req.max_mod_revision = 5;
    assert_eq!(keys(&s.range(&req).unwrap().kvs), ["foo/b", "goo"]);
    let mut req = rng("\0", "\0");
    req.min_create_revision = 3;
    req.max_create_revision = 4;
    assert_eq!(keys(&s.range(&req).unwrap().kvs), ["foo/a", "foo/b"]);
    // Filters apply before the limit.
    let mut req = rng("\0", "\0");
    req.min_mod_revision = 5;
    req.limit = 1;
    let r = s.range(&req).unwrap();
    assert_eq!(keys(&r.kvs), ["foo/a"]);
    assert!(r.more);
}

#[test]
fn range_sorting() {
    let (_d, s) = open();
    seed(&s);
    let sorted = |order: SortOrder, target: SortTarget, limit: i64| {
        let mut req = rng("\0", "\0");
        req.sort_order = order as i32;
        req.sort_target = target as i32;
        req.limit = limit;
        keys(&s.range(&req).unwrap().kvs)
    };
    assert_eq!(
        sorted(SortOrder::None, SortTarget::Key, 0),
        ["foo", "foo/a", "foo/b", "goo"]
    );
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Key, 0),
        ["goo", "foo/b", "foo/a", "foo"]
    );
    // No order with another target: ascending by that target.
    assert_eq!(
        sorted(SortOrder::None, SortTarget::Mod, 0),
        ["foo", "foo/b", "goo", "foo/a"]
    );
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Create, 0),
        ["goo", "foo/b", "foo/a", "foo"]
    );
    assert_eq!(
        sorted(SortOrder::Ascend, SortTarget::Value, 0),
        ["foo/a", "goo", "foo/b", "foo"]
    );
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Version, 1),
        ["foo/a"]
    );
    // The limit applies after sorting.
    assert_eq!(
        sorted(SortOrder::Descend, SortTarget::Mod, 2),
        ["foo/a", "goo"]
    );
}

#[test]
fn put_options() {
    let (_d, s) = open();
    let r = apply(
        &s,
        Op::Put(PutRequest {
            key: "k".into(),
            value: "v".into(),
            prev_kv: true,
            ..Default::default()
        }),
    );
    let CommandResponse::Put(r) = r else { panic!() };
    assert_eq!(r.prev_kv, None);
    assert_eq!(grant(&s, 7, 60), grant_ok(7, 60, 2));
    apply(
        &s,
        Op::Put(PutRequest {
            key: "k".into(),
            value: "v2".into(),
            lease: 7,
            ..Default::default()
        }),
    );
    let r = apply(
        &s,
        Op::Put(PutRequest {
            key: "k".into(),
            value: "ignored".into(),
            ignore_value: true,
            ignore_lease: true,
            prev_kv: true,
            ..Default::default()
        }),
    );
    let CommandResponse::Put(r) = r else { panic!() };
    assert_eq!(r.prev_kv.unwrap().value, b"v2");
    let kv = get(&s, "k").unwrap();
    assert_eq!((&kv.value[..], kv.lease, kv.version), (&b"v2"[..], 7, 3));
    let r = apply(
        &s,
        Op::Put(PutRequest {
            key: "missing".into(),
            ignore_value: true,
            ..Default::default()
        }),
    );
    assert_eq!(err(r), Error::KeyNotFound);
    let r = apply(
        &s,
        Op::Put(PutRequest {
            key: "x".into(),
            lease: 99,
            ..Default::default()
        }),
    );
    assert_eq!(err(r), Error::LeaseNotFound);
    assert_eq!(s.current_revision(), 4);
}

fn grant_ok(id: i64, ttl: i64, rev: i64) -> CommandResponse {
    CommandResponse::LeaseGrant(mnemo_proto::etcdserverpb::LeaseGrantResponse {
        header: Some(range::header(rev)),
        id,
        ttl,
        error: String::new(),
    })
}

#[test]
fn txn_compares() {
    let (_d, s) = open();
    put(&s, "a", "1"); // rev 2
    put(&s, "a", "2"); // rev 3, version 2
    put(&s, "b", "x"); // rev 4
    use CompareResult::*;
    use CompareTarget as T;
    let check = |c: Compare| {
        txn(
            &s,
            TxnRequest {
                compare: vec![c],
                ..Default::default()
            },
        )
        .succeeded
    };
    assert!(check(cmp("a", T::Version, Equal, TargetUnion::Version(2))));
    assert!(check(cmp(
        "a",
        T::Version,
        Greater,
        TargetUnion::Version(1)
    )));
    assert!(check(cmp(
        "a",
        T::Create,
        Equal,
        TargetUnion::CreateRevision(2)
    )));
    assert!(check(cmp("a", T::Mod, Less, TargetUnion::ModRevision(4))));
    assert!(!check(cmp(
        "a",
        T::Mod,
        NotEqual,
        TargetUnion::ModRevision(3)
    )));
    assert!(check(cmp(
        "a",
        T::Value,
        Equal,
        TargetUnion::Value("2".into())
    )));
    assert!(check(cmp(
        "a",
        T::Value,
        Greater,
        TargetUnion::Value("1".into())
    )));
    assert!(check(cmp("a", T::Lease, Equal, TargetUnion::Lease(0))));
    // A missing key: version/create/mod compare as 0; a value compare always fails.
    assert!(check(cmp("zz", T::Version, Equal, TargetUnion::Version(0))));
    assert!(check(cmp(
        "zz",
        T::Create,
        Equal,
        TargetUnion::CreateRevision(0)
    )));
    assert!(!check(cmp(
        "zz",
        T::Value,
        NotEqual,
        TargetUnion::Value("q".into())
    )));
    assert!(!check(cmp(
        "zz",
        T::Value,
        Equal,
        TargetUnion::Value(Vec::new())
    )));
    // Ranges: every key must satisfy.
    let mut c = cmp("a", T::Mod, Greater, TargetUnion::ModRevision(2));
    c.range_end = b"c".to_vec();
    assert!(check(c.clone()));
    c.target_union = Some(TargetUnion::ModRevision(3));
    assert!(!check(c));
    let mut c = cmp("x", T::Version, Equal, TargetUnion::Version(0));
    c.range_end = b"\0".to_vec();
    assert!(check(c));
    // A read-only txn does not bump the revision.
    assert_eq!(s.current_revision(), 4);
}

#[test]
fn txn_branches_revisions_and_visibility() {
    let (_d, s) = open();
    put(&s, "a", "1"); // rev 2
    let r = txn(
        &s,
        TxnRequest {
            compare: vec![cmp(
                "a",
                CompareTarget::Value,
                CompareResult::Equal,
                TargetUnion::Value("1".into()),
            )],
            success: vec![
                op_get("a", ""),
                op_put("a", "2"),
                op_put("b", "1"),
                op_get("a", "c"),
                op_del("a", ""),
                op_get("a", "c"),
                op_put("a", "3"),
            ],
            failure: vec![op_put("never", "x")],
        },
    );
    assert!(r.succeeded);
    assert_eq!(r.header.as_ref().unwrap().revision, 3);
    let rr = |i: usize| match &r.responses[i].response {
        Some(Response::ResponseRange(x)) => x.clone(),
        other => panic!("{other:?}"),
    };
    // Before any write, reads see revision 2; after, revision 3 with the txn's writes.
    assert_eq!(rr(0).header.unwrap().revision, 2);
    assert_eq!(rr(0).kvs[0].value, b"1");
    let mid = rr(3);
    assert_eq!(mid.header.unwrap().revision, 3);
    assert_eq!(keys(&mid.kvs), ["a", "b"]);
    assert_eq!(mid.kvs[0].value, b"2");
    assert_eq!(mid.kvs[0].version, 2);
    assert_eq!(keys(&rr(5).kvs), ["b"]);
    match &r.responses[4].response {
        Some(Response::ResponseDeleteRange(d)) => {
            assert_eq!(d.deleted, 1);
            assert_eq!(d.prev_kvs[0].value, b"2");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.current_revision(), 3);
    let a = get(&s, "a").unwrap();
    // Deleted and put again within the txn: a new generation.
    assert_eq!((a.create_revision, a.mod_revision, a.version), (3, 3, 1));
    assert!(get(&s, "never").is_none());

    // Failure branch.
    let r = txn(
        &s,
        TxnRequest {
            compare: vec![cmp(
                "a",
                CompareTarget::Version,
                CompareResult::Equal,
                TargetUnion::Version(9),
            )],
            success: vec![op_put("never", "x")],
            failure: vec![op_put("f", "1")],
        },
    );
    assert!(!r.succeeded);
    assert_eq!(r.header.unwrap().revision, 4);
    assert!(get(&s, "f").is_some());
    // A txn whose branch deletes nothing does not bump.
    let r = txn(
        &s,
        TxnRequest {
            success: vec![op_del("nothing", "")],
            ..Default::default()
        },
    );
    assert_eq!(r.header.unwrap().revision, 4);
    assert_eq!(s.current_revision(), 4);
}

#[test]
fn nested_txns_compare_against_the_state_before_the_txn() {
    let (_d, s) = open();
    put(&s, "a", "1"); // rev 2
    let inner = TxnRequest {
        // Evaluated before the outer put: a is still "1".
        compare: vec![cmp(
            "a",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value("1".into()),
        )],
        success: vec![op_put("inner", "yes"), op_get("a", "")],
        failure: vec![op_put("inner", "no")],
    };
    let r = txn(
        &s,
        TxnRequest {
            success: vec![
                op_put("a", "2"),
                RequestOp {
                    request: Some(Request::RequestTxn(inner)),
                },
                op_put("after", "1"),
            ],
            ..Default::default()
        },
    );
    assert!(r.succeeded);
    assert_eq!(get(&s, "inner").unwrap().value, b"yes");
    match &r.responses[1].response {
        Some(Response::ResponseTxn(t)) => {
            assert!(t.succeeded);
            assert_eq!(t.header, Some(Default::default()));
            // ...but reads inside it see the outer put.
            match &t.responses[1].response {
                Some(Response::ResponseRange(g)) => assert_eq!(g.kvs[0].value, b"2"),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.current_revision(), 3);
    let kvs = s.range(&rng("\0", "\0")).unwrap().kvs;
    assert!(kvs.iter().all(|kv| kv.mod_revision == 3));
}

#[test]
fn txn_sub_revisions_order_the_events() {
    let (_d, s) = open();
    put(&s, "b", "0");
    let mut a = s.begin_apply().unwrap();
    a.apply(&Command::new(Op::Txn(TxnRequest {
        success: vec![op_put("c", "1"), op_del("b", ""), op_put("a", "1")],
        ..Default::default()
    })));
    let applied = a.commit(Durability::Deferred).unwrap();
    let ev: Vec<(i32, String, i64)> = applied
        .events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (
                e.r#type,
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            )
        })
        .collect();
    assert_eq!(
        ev,
        [
            (EventType::Put as i32, "c".into(), 3),
            (EventType::Delete as i32, "b".into(), 3),
            (EventType::Put as i32, "a".into(), 3),
        ]
    );
    assert_eq!(applied.events[1].prev_kv.as_ref().unwrap().value, b"0");
    assert_eq!(applied.revision, 3);
    // The same order comes back from history.
    let again = s.events_since(3, b"\0", b"\0", 100).unwrap();
    assert_eq!(again, applied.events);
}

#[test]
fn txn_request_checks_reject_the_whole_txn() {
    let (_d, s) = open();
    put(&s, "a", "1");
    let bad_range = RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: "a".into(),
            revision: 50,
            ..Default::default()
        })),
    };
    let r = apply(
        &s,
        Op::Txn(TxnRequest {
            success: vec![op_put("x", "1"), bad_range],
            ..Default::default()
        }),
    );
    assert_eq!(err(r), Error::FutureRev);
    let r = apply(
        &s,
        Op::Txn(TxnRequest {
            success: vec![
                op_put("x", "1"),
                RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        key: "nope".into(),
                        ignore_value: true,
                        ..Default::default()
                    })),
                },
            ],
            ..Default::default()
        }),
    );
    assert_eq!(err(r), Error::KeyNotFound);
    let r = apply(
        &s,
        Op::Txn(TxnRequest {
            success: vec![RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: "x".into(),
                    lease: 5,
                    ..Default::default()
                })),
            }],
            ..Default::default()
        }),
    );
    assert_eq!(err(r), Error::LeaseNotFound);
    // A put with ignore_value after a delete of the same key in one txn fails while
    // executing: nothing of the txn is kept.
    let r = apply(
        &s,
        Op::Txn(TxnRequest {
            success: vec![
                op_put("y", "1"),
                op_del("a", ""),
                RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        key: "a".into(),
                        ignore_value: true,
                        ..Default::default()
                    })),
                },
            ],
            ..Default::default()
        }),
    );
    assert_eq!(err(r), Error::KeyNotFound);
    assert!(get(&s, "x").is_none() && get(&s, "y").is_none());
    assert_eq!(get(&s, "a").unwrap().value, b"1");
    assert_eq!(s.current_revision(), 2);
}

#[test]
fn compaction_rules() {
    let (d, s) = open();
    put(&s, "a", "1"); // 2
    put(&s, "a", "2"); // 3
    put(&s, "b", "1"); // 4
    del(&s, "b", ""); // 5
    put(&s, "c", "1"); // 6
    let compact = |rev| {
        apply(
            &s,
            Op::Compaction(CompactionRequest {
                revision: rev,
                physical: false,
            }),
        )
    };
    assert_eq!(err(compact(7)), Error::FutureRev);
    match compact(5) {
        CommandResponse::Compaction(r) => assert_eq!(r.header.unwrap().revision, 6),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.compact_revision(), 5);
    assert_eq!(err(compact(5)), Error::Compacted);
    assert_eq!(err(compact(3)), Error::Compacted);
    assert_eq!(get_at(&s, "a", 4).unwrap_err(), Error::Compacted);
    // The compact revision itself stays readable.
    assert_eq!(get_at(&s, "a", 5).unwrap().unwrap().value, b"2");
    assert_eq!(get_at(&s, "b", 5).unwrap(), None);
    assert_eq!(
        s.events_since(5, b"\0", b"\0", 10).unwrap_err(),
        Error::Compacted
    );
    assert_eq!(s.events_since(6, b"\0", b"\0", 10).unwrap().len(), 1);
    // b's history ended in a tombstone at or below 5: it is gone from the index.
    assert_eq!(s.indexed_keys(), 2);
    let kv = get(&s, "a").unwrap();
    assert_eq!((kv.create_revision, kv.version), (2, 2));
    let h = s.hash_kv(0).unwrap();
    // The next batch removes the dropped records; the hash does not change.
    put(&s, "d", "1"); // 7
    let h2 = s.hash_kv(6).unwrap();
    assert_eq!(h, h2);
    // Compaction survives a reopen, with versions intact.
    let s = reopen(&d, s);
    assert_eq!(s.compact_revision(), 5);
    assert_eq!(s.current_revision(), 7);
    let kv = get(&s, "a").unwrap();
    assert_eq!((kv.create_revision, kv.version), (2, 2));
    assert_eq!(get_at(&s, "a", 4).unwrap_err(), Error::Compacted);
    assert_eq!(s.hash_kv(6).unwrap(), h);
    put(&s, "a", "3");
    assert_eq!(get(&s, "a").unwrap().version, 3);
}

#[test]
fn compaction_of_everything_keeps_the_revision() {
    let (d, s) = open();
    put(&s, "a", "1"); // 2
    del(&s, "a", ""); // 3
    apply(
        &s,
        Op::Compaction(CompactionRequest {
            revision: 3,
            physical: true,
        }),
    );
    put(&s, "x", "1"); // 4: also removes the compacted records
    del(&s, "x", ""); // 5
    apply(
        &s,
        Op::Compaction(CompactionRequest {
            revision: 5,
            physical: true,
        }),
    );
    assert_eq!(s.indexed_keys(), 0);
    let s = reopen(&d, s);
    assert_eq!(s.current_revision(), 5);
    assert_eq!(put(&s, "y", "1"), 6);
}

#[test]
fn leases() {
    let (d, s) = open();
    assert_eq!(grant(&s, 1, 30), grant_ok(1, 30, 1));
    assert_eq!(err(grant(&s, 1, 30)), Error::LeaseExist);
    assert_eq!(
        err(grant(&s, 2, MAX_LEASE_TTL + 1)),
        Error::LeaseTtlTooLarge
    );
    assert_eq!(err(grant(&s, 0, 30)), Error::LeaseNotFound);
    grant(&s, 2, 60);
    for (k, l) in [("a", 1), ("b", 1), ("c", 2), ("d", 1)] {
        apply(
            &s,
            Op::Put(PutRequest {
                key: k.into(),
                value: "v".into(),
                lease: l,
                ..Default::default()
            }),
        );
    }
    // Moving d to lease 2 detaches it from lease 1.
    apply(
        &s,
        Op::Put(PutRequest {
            key: "d".into(),
            lease: 2,
            ..Default::default()
        }),
    );
    assert_eq!(s.lease_keys(1), [b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(s.lease_keys(2), [b"c".to_vec(), b"d".to_vec()]);
    apply(
        &s,
        Op::LeaseCheckpoint(LeaseCheckpointRequest {
            checkpoints: vec![
                LeaseCheckpoint {
                    id: 2,
                    remaining_ttl: 17,
                },
                LeaseCheckpoint {
                    id: 99,
                    remaining_ttl: 1,
                },
            ],
        }),
    );
    assert_eq!(s.lease(2).unwrap().remaining_ttl, 17);
    let s = reopen(&d, s);
    assert_eq!(s.leases().len(), 2);
    assert_eq!(
        s.lease(2),
        Some(LeaseInfo {
            id: 2,
            ttl: 60,
            remaining_ttl: 17
        })
    );
    assert_eq!(s.lease_keys(1), [b"a".to_vec(), b"b".to_vec()]);
    let rev = s.current_revision();
    let mut a = s.begin_apply().unwrap();
    let r = a.apply(&Command::new(Op::LeaseRevoke(LeaseRevokeRequest { id: 1 })));
    let CommandResponse::LeaseRevoke(r) = r else {
        panic!("{r:?}")
    };
    assert_eq!(r.header.unwrap().revision, rev + 1);
    let applied = a.commit(Durability::Deferred).unwrap();
    assert_eq!(applied.leases_revoked, [1]);
    assert_eq!(applied.events.len(), 2);
    assert!(applied
        .events
        .iter()
        .all(|e| e.kv.as_ref().unwrap().mod_revision == rev + 1 && e.prev_kv.is_some()));
    assert_eq!(s.current_revision(), rev + 1);
    assert!(get(&s, "a").is_none() && get(&s, "b").is_none());
    assert!(s.lease(1).is_none());
    assert!(s.lease_keys(1).is_empty());
    assert_eq!(
        err(apply(&s, Op::LeaseRevoke(LeaseRevokeRequest { id: 1 }))),
        Error::LeaseNotFound
    );
    // Revoking a lease without keys does not bump the revision.
    grant(&s, 3, 10);
    apply(&s, Op::LeaseRevoke(LeaseRevokeRequest { id: 3 }));
    assert_eq!(s.current_revision(), rev + 1);
    let s = reopen(&d, s);
    assert_eq!(s.leases().iter().map(|l| l.id).collect::<Vec<_>>(), [2]);
}

#[test]
fn leases_within_one_batch() {
    let (_d, s) = open();
    let mut a = s.begin_apply().unwrap();
    let cmds = [
        Op::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 5 }),
        Op::Put(PutRequest {
            key: "k".into(),
            lease: 5,
            ..Default::default()
        }),
        Op::LeaseCheckpoint(LeaseCheckpointRequest {
            checkpoints: vec![LeaseCheckpoint {
                id: 5,
                remaining_ttl: 3,
            }],
        }),
        Op::LeaseRevoke(LeaseRevokeRequest { id: 5 }),
    ];
    for c in cmds {
        let r = a.apply(&Command::new(c));
        assert!(!matches!(r, CommandResponse::Error(_)), "{r:?}");
    }
    let applied = a.commit(Durability::Deferred).unwrap();
    assert_eq!(applied.leases_granted.len(), 1);
    assert_eq!(applied.leases_revoked, [5]);
    assert_eq!(applied.revision, 3);
    assert!(get(&s, "k").is_none());
    assert!(s.leases().is_empty());
    assert!(s.lease_keys(5).is_empty());
}

fn alarm(s: &Store, action: AlarmAction, member: u64, a: AlarmType) -> Vec<AlarmMember> {
    match apply(
        s,
        Op::Alarm(AlarmRequest {
            action: action as i32,
            member_id: member,
            alarm: a as i32,
        }),
    ) {
        CommandResponse::Alarm(r) => r.alarms,
        other => panic!("{other:?}"),
    }
}

#[test]
fn alarms_and_what_they_refuse() {
    let (d, s) = open();
    put(&s, "a", "1");
    grant(&s, 1, 10);
    let nospace = AlarmMember {
        member_id: 9,
        alarm: AlarmType::Nospace as i32,
    };
    assert_eq!(
        alarm(&s, AlarmAction::Activate, 9, AlarmType::Nospace),
        [nospace]
    );
    assert!(alarm(&s, AlarmAction::Activate, 9, AlarmType::Nospace).is_empty());
    assert_eq!(alarm(&s, AlarmAction::Get, 0, AlarmType::None), [nospace]);
    assert!(alarm(&s, AlarmAction::Get, 0, AlarmType::Corrupt).is_empty());
    let s = reopen(&d, s);
    assert_eq!(s.alarms(), [nospace]);
    assert_eq!(err(apply(&s, Op::Put(preq("b", "1")))), Error::NoSpace);
    assert_eq!(err(grant(&s, 2, 10)), Error::NoSpace);
    let r = apply(
        &s,
        Op::Txn(TxnRequest {
            failure: vec![op_put("b", "1")],
            ..Default::default()
        }),
    );
    assert_eq!(err(r), Error::NoSpace);
    // Reads, deletes and compaction still work.
    txn(
        &s,
        TxnRequest {
            success: vec![op_get("a", "")],
            ..Default::default()
        },
    );
    assert!(matches!(del(&s, "a", ""), CommandResponse::DeleteRange(_)));
    apply(&s, Op::LeaseRevoke(LeaseRevokeRequest { id: 1 }));
    assert_eq!(
        alarm(&s, AlarmAction::Deactivate, 9, AlarmType::Nospace),
        [nospace]
    );
    assert!(alarm(&s, AlarmAction::Deactivate, 9, AlarmType::Nospace).is_empty());
    put(&s, "b", "1");
    alarm(&s, AlarmAction::Activate, 3, AlarmType::Corrupt);
    assert_eq!(err(apply(&s, Op::Put(preq("c", "1")))), Error::Corrupt);
    assert_eq!(err(del(&s, "b", "")), Error::Corrupt);
    let s = reopen(&d, s);
    assert_eq!(s.alarms().len(), 1);
}

#[test]
fn readers_never_see_a_batch_before_it_commits() {
    let (d, s) = open();
    put(&s, "a", "1");
    let mut a = s.begin_apply().unwrap();
    a.apply(&Command::new(Op::Put(preq("a", "2"))));
    a.apply(&Command::new(Op::Put(preq("b", "1"))));
    a.set_meta(b"applied", b"42").unwrap();
    assert_eq!(a.current_revision(), 4);
    // Meanwhile, readers see the last committed state.
    assert_eq!(get(&s, "a").unwrap().value, b"1");
    assert!(get(&s, "b").is_none());
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.get_meta(b"applied").unwrap(), None);
    let applied = a.commit(Durability::Durable).unwrap();
    assert_eq!(applied.revision, 4);
    assert_eq!(applied.events.len(), 2);
    assert_eq!(applied.events[0].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(get(&s, "a").unwrap().value, b"2");
    assert_eq!(s.get_meta(b"applied").unwrap().unwrap(), b"42");
    // A dropped batch changes nothing.
    let mut a = s.begin_apply().unwrap();
    a.apply(&Command::new(Op::Put(preq("c", "1"))));
    a.set_meta(b"applied", b"43").unwrap();
    drop(a);
    assert!(get(&s, "c").is_none());
    assert_eq!(put(&s, "c", "1"), 5);
    let s = reopen(&d, s);
    assert_eq!(s.get_meta(b"applied").unwrap().unwrap(), b"42");
    assert_eq!(s.current_revision(), 5);
}

#[test]
fn empty_commands_are_rejected() {
    let (_d, s) = open();
    let mut a = s.begin_apply().unwrap();
    let r = a.apply(&Command::default());
    assert!(matches!(
        r,
        CommandResponse::Error(Error::InvalidArgument(_))
    ));
    a.commit(Durability::Deferred).unwrap();
}

#[test]
fn events_since_with_prev_kv_and_limit() {
    let (_d, s) = open();
    put(&s, "a", "1"); // 2
    put(&s, "b", "1"); // 3
    put(&s, "a", "2"); // 4
    del(&s, "a", ""); // 5
    put(&s, "a", "3"); // 6
    let ev = s.events_since(2, b"a", b"", 100).unwrap();
    let summary: Vec<(i64, Option<Vec<u8>>)> = ev
        .iter()
        .map(|e| {
            (
                e.kv.as_ref().unwrap().mod_revision,
                e.prev_kv.as_ref().map(|p| p.value.clone()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (2, None),
            (4, Some(b"1".to_vec())),
            (5, Some(b"2".to_vec())),
            (6, None)
        ]
    );
    assert_eq!(ev[2].r#type, EventType::Delete as i32);
    let del_kv = ev[2].kv.as_ref().unwrap();
    assert_eq!((del_kv.version, del_kv.create_revision), (0, 0));
    assert_eq!(s.events_since(3, b"\0", b"\0", 2).unwrap().len(), 2);
    assert!(s.events_since(7, b"\0", b"\0", 2).unwrap().is_empty());
    assert_eq!(s.events_since(0, b"b", b"c", 10).unwrap().len(), 1);
}

#[test]
fn hashes_agree_between_members() {
    let (_d1, s1) = open();
    let (_d2, s2) = open();
    // The same commands in different batches.
    let ops = || {
        vec![
            Op::Put(preq("a", "1")),
            Op::Put(preq("b", "1")),
            Op::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 3 }),
            Op::Put(preq("a", "2")),
            Op::Compaction(CompactionRequest {
                revision: 3,
                physical: false,
            }),
            Op::Put(preq("c", "1")),
        ]
    };
    for op in ops() {
        apply(&s1, op);
    }
    let mut a = s2.begin_apply().unwrap();
    for op in ops() {
        a.apply(&Command::new(op));
    }
    a.set_meta(b"only-here", b"x").unwrap();
    a.commit(Durability::Deferred).unwrap();
    assert_eq!(s1.hash_kv(0).unwrap(), s2.hash_kv(0).unwrap());
    assert_eq!(s1.hash_kv(4).unwrap(), s2.hash_kv(4).unwrap());
    assert_eq!(s1.hash().unwrap(), s2.hash().unwrap());
    let (h, compact, rev) = s1.hash_kv(0).unwrap();
    assert_eq!((compact, rev), (3, 5));
    assert_ne!(h, s1.hash_kv(4).unwrap().0);
    assert_eq!(s1.hash_kv(2).unwrap_err(), Error::Compacted);
    assert_eq!(s1.hash_kv(9).unwrap_err(), Error::FutureRev);
    put(&s1, "z", "1");
    assert_ne!(s1.hash().unwrap(), s2.hash().unwrap());
}

#[test]
fn snapshot_and_restore() {
    let (d, s) = open();
    for i in 0..500 {
        put(&s, &format!("key{i:04}"), &"v".repeat(i % 50));
    }
    grant(&s, 4, 40);
    let mut a = s.begin_apply().unwrap();
    a.set_meta(b"applied", b"7").unwrap();
    a.commit(Durability::Deferred).unwrap();
    let snap = d.path().join("snap");
    let size = s.snapshot_to(&snap).unwrap();
    assert!(size > 0);
    let h = s.hash().unwrap();
    // Later writes are not in the snapshot.
    put(&s, "late", "1");
    let copy = Store::open(&snap).unwrap();
    assert_eq!(copy.hash().unwrap(), h);
    assert_eq!(copy.get_meta(b"applied").unwrap().unwrap(), b"7");
    drop(copy);

    let (_d2, other) = open();
    put(&other, "gone", "1");
    other.restore_from(&snap).unwrap();
    assert_eq!(other.hash().unwrap(), h);
    assert!(get(&other, "gone").is_none());
    assert_eq!(get(&other, "key0007").unwrap().value, b"vvvvvvv");
    assert_eq!(other.lease(4).unwrap().ttl, 40);
    put(&other, "after", "1");
    let other = reopen(&_d2, other);
    assert!(get(&other, "after").is_some());
    assert_eq!(other.current_revision(), 502);
}

#[test]
fn defrag_gives_space_back_while_data_stays() {
    let (_d, s) = open();
    let big = "x".repeat(1500);
    for i in 0..2000 {
        put(&s, &format!("k{i:05}"), &big);
    }
    del(&s, "k", "l");
    put(&s, "keep", "1");
    let rev = s.current_revision();
    apply(
        &s,
        Op::Compaction(CompactionRequest {
            revision: rev,
            physical: true,
        }),
    );
    // Removal of compacted history runs a bounded amount per batch; defrag finishes it.
    put(&s, "tick", "1");
    s.sync().unwrap();
    let h = s.hash_kv(0).unwrap();
    let before = s.db_size();
    assert!(s.db_size_in_use() <= before);
    s.defrag().unwrap();
    let after = s.db_size();
    assert!(after < before / 4, "{before} -> {after}");
    assert_eq!(get(&s, "keep").unwrap().value, b"1");
    assert_eq!(s.range(&rng("\0", "\0")).unwrap().count, 2);
    assert_eq!(s.hash_kv(0).unwrap(), h);
    assert_eq!(s.remove_compacted().unwrap(), 0);
}

#[test]
fn corrupt_history_is_an_error_naming_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let s = Store::open(&path).unwrap();
    put(&s, "a", "1");
    drop(s);
    let db = mnemo_storage::Database::open_path(&path, Default::default()).unwrap();
    let mut w = db.begin_write().unwrap();
    let rev = Revision::new(2, 0).encode();
    let mut bad = record::Record::put(b"a", b"1", 2, 1, 0).encode(Revision::new(2, 0));
    let last = bad.len() - 1;
    bad[last] ^= 1;
    w.open_table(record::KV_TABLE)
        .unwrap()
        .insert(&rev, &bad)
        .unwrap();
    w.commit(Durability::Durable).unwrap();
    drop(db);
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, Error::Internal(_)), "{e:?}");
    assert!(e.to_string().contains("revision 2_0"), "{e}");
}

#[test]
fn the_store_is_shared_and_a_batch_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Store>();
    send::<Applier<'static>>();
    let (_d, s) = open();
    let s = std::sync::Arc::new(s);
    let a = s.begin_apply().unwrap();
    let s2 = s.clone();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut a = a;
            a.apply(&Command::new(Op::Put(preq("t", "1"))));
            a.commit(Durability::Deferred).unwrap();
        });
    });
    assert!(get(&s2, "t").is_some());
}

#[test]
fn read_only_txns_run_beside_an_open_batch() {
    let (_d, s) = open();
    put(&s, "a", "1"); // 2
    put(&s, "b", "1"); // 3
    let req = TxnRequest {
        compare: vec![cmp(
            "a",
            CompareTarget::Mod,
            CompareResult::Equal,
            TargetUnion::ModRevision(2),
        )],
        success: vec![
            op_get("a", "c"),
            RequestOp {
                request: Some(Request::RequestTxn(TxnRequest {
                    success: vec![RequestOp {
                        request: Some(Request::RequestRange(RangeRequest {
                            key: "a".into(),
                            revision: 2,
                            ..Default::default()
                        })),
                    }],
                    ..Default::default()
                })),
            },
        ],
        failure: vec![],
    };
    // An open batch (even on this thread) neither blocks the read nor shows through.
    let mut a = s.begin_apply().unwrap();
    a.apply(&Command::new(Op::Put(preq("a", "2"))));
    let r = s.read_txn(&req).unwrap();
    assert!(r.succeeded);
    assert_eq!(r.header.as_ref().unwrap().revision, 3);
    match &r.responses[0].response {
        Some(Response::ResponseRange(g)) => {
            assert_eq!(keys(&g.kvs), ["a", "b"]);
            assert_eq!(g.kvs[0].value, b"1");
        }
        other => panic!("{other:?}"),
    }
    match &r.responses[1].response {
        Some(Response::ResponseTxn(t)) => match &t.responses[0].response {
            Some(Response::ResponseRange(g)) => assert_eq!(g.kvs.len(), 1),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    a.commit(Durability::Deferred).unwrap();
    // Now the compare fails (a was modified at 4).
    assert!(!s.read_txn(&req).unwrap().succeeded);
    // Writes are refused, and revision checks apply.
    let w = TxnRequest {
        failure: vec![op_put("x", "1")],
        ..Default::default()
    };
    assert!(matches!(s.read_txn(&w), Err(Error::InvalidArgument(_))));
    let future = TxnRequest {
        success: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: "a".into(),
                revision: 9,
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    assert_eq!(s.read_txn(&future).unwrap_err(), Error::FutureRev);
}

#[test]
fn large_values_round_trip_through_overflow_pages() {
    let (d, s) = open();
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let r = apply(
        &s,
        Op::Put(PutRequest {
            key: b"big".to_vec(),
            value: big.clone(),
            ..Default::default()
        }),
    );
    assert!(matches!(r, CommandResponse::Put(_)));
    put(&s, "small", "1");
    assert_eq!(get(&s, "big").unwrap().value, big);
    let ev = s.events_since(2, b"big", b"", 10).unwrap();
    assert_eq!(ev[0].kv.as_ref().unwrap().value, big);
    let s = reopen(&d, s);
    assert_eq!(get(&s, "big").unwrap().value, big);
    match del(&s, "big", "") {
        CommandResponse::DeleteRange(r) => assert_eq!(r.prev_kvs[0].value, big),
        other => panic!("{other:?}"),
    }
}

/// Reads one watch update (events of one revision) within 10 s.
async fn watch_update(rx: &mut watch::WatchReceiver) -> watch::WatchUpdate {
    loop {
        let item = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("an item within 10s")
            .expect("stream open");
        match item {
            watch::StreamItem::Update(u) => return u,
            watch::StreamItem::Created { .. } => {}
            other => panic!("expected an update, got {other:?}"),
        }
    }
}

/// A big delete with a watch hub attached: events are listed only while there are
/// watchers, prev_kv is read for the response and the events only when someone asked
/// for it, and every result stays etcd's, including for a prev_kv watcher created while
/// a batch that omits events is open. The last delete spans more than one of the
/// pieces a delete gathers its keys in.
#[tokio::test]
async fn big_delete_results_with_and_without_prev_kv_and_watchers() {
    const N: usize = 2000 + 2 * super::apply::DELETE_PIECE + 5;
    let (_d, s) = open();
    let s = Arc::new(s);
    let mut a = s.begin_apply().unwrap();
    for i in 0..N {
        let r = a.apply(&Command::new(Op::Put(preq(
            &format!("/p/{i:05}"),
            &format!("v{i}"),
        ))));
        assert!(matches!(r, CommandResponse::Put(_)));
    }
    a.commit(Durability::Deferred).unwrap();
    put(&s, "/p/00007", "again"); // version 2, mod revision N + 2
    let hub = watch::WatchHub::new(Arc::clone(&s) as Arc<dyn History>);
    let expect_prev = |i: usize| -> KeyValue {
        if i == 7 {
            KeyValue {
                key: b"/p/00007".to_vec(),
                create_revision: 9,
                mod_revision: N as i64 + 2,
                version: 2,
                value: b"again".to_vec(),
                lease: 0,
            }
        } else {
            KeyValue {
                key: format!("/p/{i:05}").into_bytes(),
                create_revision: i as i64 + 2,
                mod_revision: i as i64 + 2,
                version: 1,
                value: format!("v{i}").into_bytes(),
                lease: 0,
            }
        }
    };
    let delete = |key: &str, end: &str, prev_kv: bool| -> (DeleteRangeResponse, Applied) {
        let mut a = s.begin_apply().unwrap();
        let r = a.apply(&Command::new(Op::DeleteRange(DeleteRangeRequest {
            key: key.into(),
            range_end: end.into(),
            prev_kv,
        })));
        let applied = a.commit(Durability::Deferred).unwrap();
        match r {
            CommandResponse::DeleteRange(r) => (r, applied),
            other => panic!("delete failed: {other:?}"),
        }
    };

    // No watcher: the response still has exact prev_kvs when asked; no events are listed.
    let (r, applied) = delete("/p/00000", "/p/01000", true);
    assert_eq!(r.deleted, 1000);
    assert_eq!(r.prev_kvs, (0..1000).map(expect_prev).collect::<Vec<_>>());
    assert!(applied.prev_kv_omitted && applied.events_omitted);
    assert!(applied.events.is_empty());
    hub.notify(&applied);
    let (r, applied) = delete("/p/01000", "/p/01500", false);
    assert_eq!((r.deleted, r.prev_kvs.len()), (500, 0));
    hub.notify(&applied);

    // A prev_kv watcher created after the batch began still gets prev_kv (from history).
    let (stream, mut rx) = hub.new_stream();
    let mut a = s.begin_apply().unwrap();
    stream
        .watch(&WatchCreateRequest {
            key: b"/p/".to_vec(),
            range_end: b"/p0".to_vec(),
            prev_kv: true,
            ..Default::default()
        })
        .unwrap();
    let r = a.apply(&Command::new(Op::DeleteRange(DeleteRangeRequest {
        key: "/p/01500".into(),
        range_end: "/p/02000".into(),
        prev_kv: false,
    })));
    assert!(matches!(r, CommandResponse::DeleteRange(ref d) if d.deleted == 500));
    let applied = a.commit(Durability::Deferred).unwrap();
    assert!(applied.prev_kv_omitted && applied.events_omitted);
    hub.notify(&applied);
    let mut got = Vec::new();
    while got.len() < 500 {
        let u = watch_update(&mut rx).await;
        got.extend(u.events);
    }
    assert_eq!(got.len(), 500);
    for (j, e) in got.iter().enumerate() {
        assert_eq!(e.prev_kv.as_ref(), Some(&expect_prev(1500 + j)));
    }

    for (j, e) in got.iter().enumerate() {
        assert_eq!(e.kv.as_ref().unwrap().key, expect_prev(1500 + j).key);
        assert_eq!(e.r#type, EventType::Delete as i32);
    }

    // With the watcher in place, batches list events and fill prev_kv again.
    let (r, applied) = delete("/p/02000", "/p0", false);
    let rest = N - 2000;
    assert_eq!((r.deleted, r.prev_kvs.len()), (rest as i64, 0));
    assert!(!applied.prev_kv_omitted && !applied.events_omitted);
    assert_eq!(applied.events.len(), rest);
    assert!(applied
        .events
        .iter()
        .enumerate()
        .all(|(j, e)| e.prev_kv.as_ref() == Some(&expect_prev(2000 + j))));
    hub.notify(&applied);
    let mut got = Vec::new();
    while got.len() < rest {
        got.extend(watch_update(&mut rx).await.events);
    }
    assert_eq!(got, applied.events);

    // Once the watcher is gone, they are omitted again.
    drop(stream);
    let (r, applied) = delete("/p/", "/p0", true);
    assert_eq!((r.deleted, r.prev_kvs.len()), (0, 0));
    put(&s, "/p/x", "1");
    let (r, applied2) = delete("/p/x", "", true);
    assert_eq!(r.prev_kvs.len(), 1);
    assert!(applied2.events_omitted && applied2.events.is_empty());
    drop(applied);
}

/// A txn that puts keys and then deletes a from-key range over more keys than one piece
/// of a delete: every live key goes once, in key order, with the txn's own puts among
/// them, all at one revision; the index and a reopen agree.
#[test]
fn delete_over_many_pieces_inside_a_txn() {
    let n = 3 * super::apply::DELETE_PIECE + 7;
    let (dir, s) = open();
    let mut a = s.begin_apply().unwrap();
    for i in 0..n {
        let r = a.apply(&Command::new(Op::Put(preq(&format!("k{i:05}"), "v"))));
        assert!(matches!(r, CommandResponse::Put(_)));
    }
    a.commit(Durability::Deferred).unwrap();
    // Gaps: already deleted keys are skipped, not counted.
    del(&s, "k00100", "k00200");
    let before = s.current_revision();
    let r = txn(
        &s,
        TxnRequest {
            success: vec![
                op_put("k01024x", "new"),
                op_put("a", "outside"),
                op_del("k", "\0"),
            ],
            ..Default::default()
        },
    );
    let Some(Response::ResponseDeleteRange(d)) = &r.responses[2].response else {
        panic!("expected a delete response: {r:?}");
    };
    let mut expect: Vec<String> = (0..n)
        .filter(|i| !(100..200).contains(i))
        .map(|i| format!("k{i:05}"))
        .collect();
    expect.push("k01024x".into());
    expect.sort();
    assert_eq!(d.deleted, expect.len() as i64);
    assert_eq!(keys(&d.prev_kvs), expect);
    let staged = d.prev_kvs.iter().find(|kv| kv.key == b"k01024x").unwrap();
    assert_eq!(
        (staged.value.as_slice(), staged.mod_revision),
        (&b"new"[..], before + 1)
    );
    assert_eq!(s.current_revision(), before + 1);
    let s = reopen(&dir, s);
    for k in ["k00000", "k01024", "k01024x", &format!("k{:05}", n - 1)] {
        assert_eq!(get(&s, k), None, "{k}");
    }
    assert_eq!(get(&s, "a").unwrap().value, b"outside");
    let at_before = |k: &str| get_at(&s, k, before).unwrap().is_some();
    assert_eq!((at_before("k01025"), at_before("k00150")), (true, false));
}

/// A watcher created while a batch that lists no events is open (there were no watchers
/// when it began) still gets that batch's events, from history.
#[tokio::test]
async fn watcher_created_during_a_batch_without_events_gets_them() {
    let (_d, s) = open();
    let s = Arc::new(s);
    put(&s, "w/a", "0");
    let hub = watch::WatchHub::new(Arc::clone(&s) as Arc<dyn History>);
    let mut a = s.begin_apply().unwrap();
    let (stream, mut rx) = hub.new_stream();
    stream
        .watch(&WatchCreateRequest {
            key: b"w/".to_vec(),
            range_end: b"w0".to_vec(),
            ..Default::default()
        })
        .unwrap();
    let r = a.apply(&Command::new(Op::Put(preq("w/a", "1"))));
    assert!(matches!(r, CommandResponse::Put(_)));
    let r = a.apply(&Command::new(Op::Put(preq("w/b", "2"))));
    assert!(matches!(r, CommandResponse::Put(_)));
    let applied = a.commit(Durability::Deferred).unwrap();
    assert!(applied.events_omitted && applied.events.is_empty());
    hub.notify(&applied);
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(watch_update(&mut rx).await.events);
    }
    let seen: Vec<(&[u8], &[u8], i64)> = got
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (kv.key.as_slice(), kv.value.as_slice(), kv.version)
        })
        .collect();
    assert_eq!(
        seen,
        [(&b"w/a"[..], &b"1"[..], 2), (&b"w/b"[..], &b"2"[..], 1)]
    );
    // Now that there is a watcher, batches list their events again.
    let mut a = s.begin_apply().unwrap();
    a.apply(&Command::new(Op::Put(preq("w/c", "3"))));
    let applied = a.commit(Durability::Deferred).unwrap();
    assert!(!applied.events_omitted && applied.events.len() == 1);
}
