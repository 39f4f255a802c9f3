//! The KV service against the real binary: etcd's range options, puts, deletes, txns,
//! compaction and the errors and limits around them.

#![allow(clippy::unwrap_used)]

mod common;

use common::MnemoProcess;
use mnemo_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mnemo_proto::etcdserverpb::kv_client::KvClient;
use mnemo_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use mnemo_proto::etcdserverpb::request_op::Request as Op;
use mnemo_proto::etcdserverpb::response_op::Response as OpResp;
use mnemo_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tonic::transport::Channel;
use tonic::Code;

async fn put(kv: &mut KvClient<Channel>, k: &str, v: &str) -> i64 {
    let r = kv
        .put(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    r.header.unwrap().revision
}

fn range(key: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

fn keys(r: &mnemo_proto::etcdserverpb::RangeResponse) -> Vec<String> {
    r.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

#[tokio::test]
async fn revisions_versions_and_range_options_follow_etcd() {
    let m = MnemoProcess::start(&[]);
    let mut kv = m.kv().await;
    // An empty store is at revision 1; the first write makes revision 2.
    let r = kv.range(range("a", "")).await.unwrap().into_inner();
    assert_eq!(r.header.as_ref().unwrap().revision, 1);
    assert_ne!(r.header.as_ref().unwrap().member_id, 0);
    assert_eq!(put(&mut kv, "a", "1").await, 2);
    assert_eq!(put(&mut kv, "b", "2").await, 3);
    assert_eq!(put(&mut kv, "c", "3").await, 4);
    assert_eq!(put(&mut kv, "a", "4").await, 5);

    let r = kv.range(range("a", "")).await.unwrap().into_inner();
    let a = &r.kvs[0];
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 5, 2));
    assert_eq!(a.value, b"4");

    // Prefix, limit with more and count, from-key, all keys.
    let mut req = range("a", "d");
    req.limit = 2;
    let r = kv.range(req).await.unwrap().into_inner();
    assert_eq!(keys(&r), ["a", "b"]);
    assert!(r.more);
    assert_eq!(r.count, 3);
    let r = kv.range(range("b", "\0")).await.unwrap().into_inner();
    assert_eq!(keys(&r), ["b", "c"]);
    let r = kv.range(range("\0", "\0")).await.unwrap().into_inner();
    assert_eq!(r.count, 3);

    // Sorting by value descending; keys_only; count_only.
    let mut req = range("a", "d");
    req.sort_order = SortOrder::Descend as i32;
    req.sort_target = SortTarget::Value as i32;
    let r = kv.range(req).await.unwrap().into_inner();
    assert_eq!(keys(&r), ["a", "c", "b"]);
    let mut req = range("a", "d");
    req.keys_only = true;
    let r = kv.range(req).await.unwrap().into_inner();
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
    let mut req = range("a", "d");
    req.count_only = true;
    let r = kv.range(req).await.unwrap().into_inner();
    assert!(r.kvs.is_empty());
    assert_eq!(r.count, 3);

    // Reading the past; min/max revision filters.
    let mut req = range("a", "");
    req.revision = 3;
    let r = kv.range(req).await.unwrap().into_inner();
    assert_eq!(r.kvs[0].value, b"1");
    let mut req = range("a", "d");
    req.min_mod_revision = 4;
    let r = kv.range(req).await.unwrap().into_inner();
    assert_eq!(keys(&r), ["a", "c"]);
    let mut req = range("a", "");
    req.revision = 99;
    let e = kv.range(req).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision is a future revision"
    );

    // A serializable read sees the same data.
    let mut req = range("a", "d");
    req.serializable = true;
    assert_eq!(kv.range(req).await.unwrap().into_inner().count, 3);
}

#[tokio::test]
async fn put_and_delete_options_and_errors() {
    let m = MnemoProcess::start(&[]);
    let mut kv = m.kv().await;
    put(&mut kv, "k", "v1").await;
    let r = kv
        .put(PutRequest {
            key: "k".into(),
            value: "v2".into(),
            prev_kv: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.prev_kv.unwrap().value, b"v1");

    let e = kv
        .put(PutRequest {
            key: vec![],
            value: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "etcdserver: key is not provided")
    );
    let e = kv
        .put(PutRequest {
            key: "missing".into(),
            ignore_value: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "etcdserver: key not found");
    let e = kv
        .put(PutRequest {
            key: "k".into(),
            lease: 12345,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "etcdserver: requested lease not found")
    );

    // ignore_value keeps the value and bumps the version.
    let r = kv
        .put(PutRequest {
            key: "k".into(),
            ignore_value: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rev = r.header.unwrap().revision;
    let got = kv.range(range("k", "")).await.unwrap().into_inner();
    assert_eq!(
        (
            got.kvs[0].value.as_slice(),
            got.kvs[0].version,
            got.kvs[0].mod_revision
        ),
        (&b"v2"[..], 3, rev)
    );

    put(&mut kv, "k2", "x").await;
    let r = kv
        .delete_range(DeleteRangeRequest {
            key: "k".into(),
            range_end: "l".into(),
            prev_kv: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.deleted, 2);
    assert_eq!(r.prev_kvs.len(), 2);
    let before = r.header.unwrap().revision;
    // Deleting nothing does not make a revision.
    let r = kv
        .delete_range(DeleteRangeRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.deleted, r.header.unwrap().revision), (0, before));
    // A recreated key starts again at version 1.
    put(&mut kv, "k", "again").await;
    let got = kv.range(range("k", "")).await.unwrap().into_inner();
    assert_eq!(got.kvs[0].version, 1);
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })),
    }
}

fn op_get(k: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(range(k, ""))),
    }
}

fn cmp_value(k: &str, result: CompareResult, v: &str) -> Compare {
    Compare {
        result: result as i32,
        target: CompareTarget::Value as i32,
        key: k.into(),
        target_union: Some(TargetUnion::Value(v.into())),
        range_end: vec![],
    }
}

#[tokio::test]
async fn txns_compare_branch_nest_and_are_checked() {
    let m = MnemoProcess::start(&[]);
    let mut kv = m.kv().await;
    put(&mut kv, "x", "1").await;
    let rev = put(&mut kv, "y", "1").await;

    // Success branch: two puts share one revision; the later get sees the earlier put.
    let r = kv
        .txn(TxnRequest {
            compare: vec![cmp_value("x", CompareResult::Equal, "1")],
            success: vec![op_put("x", "2"), op_put("z", "2"), op_get("z")],
            failure: vec![op_put("x", "failed")],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.succeeded);
    assert_eq!(r.header.unwrap().revision, rev + 1);
    match &r.responses[2].response {
        Some(OpResp::ResponseRange(g)) => assert_eq!(g.kvs[0].value, b"2"),
        other => panic!("unexpected {other:?}"),
    }
    let z = kv.range(range("z", "")).await.unwrap().into_inner();
    assert_eq!(z.kvs[0].mod_revision, rev + 1);

    // Failure branch, with a nested txn, and compares over a range.
    let nested = RequestOp {
        request: Some(Op::RequestTxn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Greater as i32,
                target: CompareTarget::Version as i32,
                key: "x".into(),
                range_end: "zz".into(),
                target_union: Some(TargetUnion::Version(0)),
            }],
            success: vec![op_put("n", "inner")],
            failure: vec![],
        })),
    };
    let r = kv
        .txn(TxnRequest {
            compare: vec![cmp_value("x", CompareResult::Equal, "1")],
            success: vec![],
            failure: vec![nested],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.succeeded);
    match &r.responses[0].response {
        Some(OpResp::ResponseTxn(t)) => assert!(t.succeeded),
        other => panic!("unexpected {other:?}"),
    }
    let n = kv.range(range("n", "")).await.unwrap().into_inner();
    assert_eq!(n.kvs[0].value, b"inner");

    // etcd's checks.
    let e = kv
        .txn(TxnRequest {
            compare: vec![],
            success: vec![op_put("d", "1"), op_put("d", "2")],
            failure: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "etcdserver: duplicate key given in txn request"
    );
    let e = kv
        .txn(TxnRequest {
            compare: vec![],
            success: (0..129).map(|i| op_put(&format!("m{i}"), "v")).collect(),
            failure: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "etcdserver: too many operations in txn request"
    );

    // A read-only txn makes no revision.
    let before = kv
        .range(range("x", ""))
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    let r = kv
        .txn(TxnRequest {
            compare: vec![],
            success: vec![op_get("x")],
            failure: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.header.unwrap().revision, before);
}

#[tokio::test]
async fn compaction_drops_history_with_etcds_errors() {
    let m = MnemoProcess::start(&[]);
    let mut kv = m.kv().await;
    for i in 0..10 {
        put(&mut kv, "h", &i.to_string()).await;
    }
    kv.compact(CompactionRequest {
        revision: 6,
        physical: true,
    })
    .await
    .unwrap();
    let mut req = range("h", "");
    req.revision = 5;
    let e = kv.range(req).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted"
        )
    );
    let mut req = range("h", "");
    req.revision = 6;
    assert_eq!(kv.range(req).await.unwrap().into_inner().kvs[0].value, b"4");
    let e = kv
        .compact(CompactionRequest {
            revision: 6,
            physical: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    let e = kv
        .compact(CompactionRequest {
            revision: 100,
            physical: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision is a future revision"
    );
}

#[tokio::test]
async fn requests_over_the_size_limit_are_refused_and_nothing_is_written() {
    let m = MnemoProcess::start(&["--max-request-bytes", "4096"]);
    let mut kv = m.kv().await;
    let e = kv
        .put(PutRequest {
            key: "big".into(),
            value: vec![b'x'; 8192],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "etcdserver: request is too large")
    );
    let r = kv.range(range("big", "")).await.unwrap().into_inner();
    assert_eq!(r.count, 0);
    put(&mut kv, "small", "ok").await;
}

#[tokio::test]
async fn writes_survive_a_graceful_restart() {
    let mut m = MnemoProcess::start(&[]);
    let mut kv = m.kv().await;
    let mut last = 0;
    for i in 0..50 {
        last = put(&mut kv, &format!("r{i:02}"), &i.to_string()).await;
    }
    assert!(m.terminate().success());
    m.restart();
    let mut kv = m.kv().await;
    let r = kv.range(range("r", "s")).await.unwrap().into_inner();
    assert_eq!(r.count, 50);
    assert_eq!(r.header.unwrap().revision, last);
    assert_eq!(put(&mut kv, "after", "x").await, last + 1);
}

#[tokio::test]
async fn periodic_auto_compaction_drops_old_history() {
    let m = MnemoProcess::start(&[
        "--auto-compaction-mode",
        "periodic",
        "--auto-compaction-retention",
        "2s",
    ]);
    let mut kv = m.kv().await;
    for i in 0..5 {
        put(&mut kv, "auto", &i.to_string()).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut req = range("auto", "");
        req.revision = 2;
        match kv.range(req).await {
            Err(e) if e.message() == "etcdserver: mvcc: required revision has been compacted" => {
                break
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "history was never compacted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The newest value is kept.
    let r = kv.range(range("auto", "")).await.unwrap().into_inner();
    assert_eq!(r.kvs[0].value, b"4");
}
