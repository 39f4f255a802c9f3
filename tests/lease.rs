//! The Lease service against the real binary: grant, attach, keep-alive, time-to-live,
//! revoke, expiry driven by the leader through raft.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::MnemoProcess;
use mnemo_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest,
};
use tonic::Code;

fn put_with_lease(key: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        lease,
        ..Default::default()
    }
}

fn get(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn grant_attach_time_to_live_and_revoke() {
    let m = MnemoProcess::start(&[]);
    let mut lease = m.lease().await;
    let mut kv = m.kv().await;

    let g = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(g.id > 0);
    assert_eq!(g.ttl, 60);
    // A client-chosen id, then the same id again.
    let mine = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 4242 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.id, 4242);
    let e = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 4242 })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "etcdserver: lease already exists");

    kv.put(put_with_lease("l1", g.id)).await.unwrap();
    kv.put(put_with_lease("l2", g.id)).await.unwrap();
    let t = lease
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: g.id,
            keys: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.granted_ttl, 60);
    assert!(t.ttl > 50 && t.ttl <= 60, "ttl {}", t.ttl);
    assert_eq!(t.keys, vec![b"l1".to_vec(), b"l2".to_vec()]);

    let list = lease
        .lease_leases(LeaseLeasesRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<i64> = list.leases.iter().map(|l| l.id).collect();
    ids.sort();
    let mut want = vec![g.id, 4242];
    want.sort();
    assert_eq!(ids, want);

    // Revoke deletes both keys in one revision.
    let before = kv
        .range(get("l1"))
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    let r = lease
        .lease_revoke(LeaseRevokeRequest { id: g.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.header.unwrap().revision, before + 1);
    assert_eq!(kv.range(get("l1")).await.unwrap().into_inner().count, 0);
    assert_eq!(kv.range(get("l2")).await.unwrap().into_inner().count, 0);
    let t = lease
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: g.id,
            keys: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.ttl, -1);
    let e = lease
        .lease_revoke(LeaseRevokeRequest { id: g.id })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "etcdserver: requested lease not found")
    );
}

#[tokio::test]
async fn an_expired_lease_takes_its_keys_and_keep_alive_holds_it() {
    let m = MnemoProcess::start(&[]);
    let mut lease = m.lease().await;
    let mut kv = m.kv().await;
    let short = lease
        .lease_grant(LeaseGrantRequest { ttl: 2, id: 0 })
        .await
        .unwrap()
        .into_inner();
    let kept = lease
        .lease_grant(LeaseGrantRequest { ttl: 2, id: 0 })
        .await
        .unwrap()
        .into_inner();
    kv.put(put_with_lease("gone", short.id)).await.unwrap();
    kv.put(put_with_lease("kept", kept.id)).await.unwrap();

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut responses = lease
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tx.send(LeaseKeepAliveRequest { id: kept.id })
            .await
            .unwrap();
        let r = responses.message().await.unwrap().unwrap();
        assert_eq!(r.id, kept.id);
        assert!(r.ttl > 0);
        if kv.range(get("gone")).await.unwrap().into_inner().count == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "lease did not expire");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(kv.range(get("kept")).await.unwrap().into_inner().count, 1);
    // A keep-alive for a lease that is gone answers TTL 0, as etcd does.
    tx.send(LeaseKeepAliveRequest { id: short.id })
        .await
        .unwrap();
    let r = responses.message().await.unwrap().unwrap();
    assert_eq!(r.ttl, 0);
}
