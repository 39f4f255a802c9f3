//! The Lock service against the real binary: etcd's mutex semantics (the oldest key under
//! `name/` holds the lock), waiting for the holder, leases that end while waiting, and
//! waiters that go away.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::MnemoProcess;
use mnemo_proto::etcdserverpb::kv_client::KvClient;
use mnemo_proto::etcdserverpb::lease_client::LeaseClient;
use mnemo_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, RangeRequest,
};
use mnemo_proto::v3lockpb::{LockRequest, UnlockRequest};
use tonic::transport::Channel;
use tonic::Code;

async fn grant(lease: &mut LeaseClient<Channel>, ttl: i64) -> i64 {
    lease
        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
        .await
        .unwrap()
        .into_inner()
        .id
}

/// The key's create revision, or None while it does not exist.
async fn create_revision(kv: &mut KvClient<Channel>, key: &[u8]) -> Option<i64> {
    let r = kv
        .range(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    r.kvs.first().map(|kv| kv.create_revision)
}

/// Polls until `key` exists (a waiter has queued) and returns its create revision.
async fn wait_for_key(kv: &mut KvClient<Channel>, key: &[u8]) -> i64 {
    loop {
        if let Some(rev) = create_revision(kv, key).await {
            return rev;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_no_key(kv: &mut KvClient<Channel>, key: &[u8]) {
    while create_revision(kv, key).await.is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lock_key(name: &str, lease: i64) -> Vec<u8> {
    format!("{name}/{lease:x}").into_bytes()
}

#[tokio::test]
async fn a_second_locker_waits_until_the_holder_unlocks() {
    let m = MnemoProcess::start(&[]);
    let mut leases = m.lease().await;
    let mut kv = m.kv().await;
    let (l1, l2) = (grant(&mut leases, 60).await, grant(&mut leases, 60).await);

    let mut a = m.lock().await;
    let held = a
        .lock(LockRequest {
            name: b"mtx".to_vec(),
            lease: l1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.key, lock_key("mtx", l1));
    let first_rev = create_revision(&mut kv, &held.key).await.unwrap();
    assert!(held.header.unwrap().revision >= first_rev);
    // The key is attached to the lease.
    let ttl = leases
        .lease_time_to_live(LeaseTimeToLiveRequest { id: l1, keys: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.keys, vec![held.key.clone()]);

    let order = Arc::new(Mutex::new(Vec::new()));
    let mut b = m.lock().await;
    let b_order = order.clone();
    let waiter = tokio::spawn(async move {
        let r = b
            .lock(LockRequest {
                name: b"mtx".to_vec(),
                lease: l2,
            })
            .await;
        b_order.lock().unwrap().push("b locked");
        r
    });
    // B has queued behind A and is still waiting.
    let second_rev = wait_for_key(&mut kv, &lock_key("mtx", l2)).await;
    assert!(second_rev > first_rev);
    assert!(!waiter.is_finished());

    order.lock().unwrap().push("a unlocks");
    let unlocked = a
        .unlock(UnlockRequest {
            key: held.key.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let got = waiter.await.unwrap().unwrap().into_inner();
    assert_eq!(got.key, lock_key("mtx", l2));
    assert_eq!(*order.lock().unwrap(), ["a unlocks", "b locked"]);
    assert!(got.header.unwrap().revision >= unlocked.header.unwrap().revision);
    assert_eq!(create_revision(&mut kv, &held.key).await, None);

    // Locking again with the lease that holds the lock answers at once, same key.
    let again = a
        .lock(LockRequest {
            name: b"mtx".to_vec(),
            lease: l2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.key, got.key);
    assert_eq!(create_revision(&mut kv, &again.key).await, Some(second_rev));
}

#[tokio::test]
async fn waiters_are_served_in_the_order_they_queued() {
    let m = MnemoProcess::start(&[]);
    let mut leases = m.lease().await;
    let mut kv = m.kv().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(grant(&mut leases, 60).await);
    }
    let mut holder = m.lock().await;
    let first = holder
        .lock(LockRequest {
            name: b"q".to_vec(),
            lease: ids[0],
        })
        .await
        .unwrap()
        .into_inner();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for &id in &ids[1..] {
        let mut c = m.lock().await;
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            let r = c
                .lock(LockRequest {
                    name: b"q".to_vec(),
                    lease: id,
                })
                .await
                .unwrap()
                .into_inner();
            order.lock().unwrap().push(id);
            // Hold briefly, then hand over.
            c.unlock(UnlockRequest { key: r.key }).await.unwrap();
        }));
        // Queue one at a time, so the queue order is known.
        wait_for_key(&mut kv, &lock_key("q", id)).await;
    }
    holder
        .unlock(UnlockRequest { key: first.key })
        .await
        .unwrap();
    for w in waiters {
        w.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), ids[1..]);
}

#[tokio::test]
async fn an_unknown_lease_is_refused() {
    let m = MnemoProcess::start(&[]);
    let mut lock = m.lock().await;
    let e = lock
        .lock(LockRequest {
            name: b"mtx".to_vec(),
            lease: 0x1234_5678,
        })
        .await
        .unwrap_err();
    // etcd answers through its own client inside the server: code Unknown.
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unknown, "etcdserver: requested lease not found")
    );
    let mut kv = m.kv().await;
    assert_eq!(
        create_revision(&mut kv, &lock_key("mtx", 0x1234_5678)).await,
        None
    );
}

#[tokio::test]
async fn a_lease_revoked_while_waiting_ends_the_wait_with_lease_not_found() {
    let m = MnemoProcess::start(&[]);
    let mut leases = m.lease().await;
    let mut kv = m.kv().await;
    let (l1, l2) = (grant(&mut leases, 60).await, grant(&mut leases, 60).await);
    let mut a = m.lock().await;
    let held = a
        .lock(LockRequest {
            name: b"mtx".to_vec(),
            lease: l1,
        })
        .await
        .unwrap()
        .into_inner();
    let mut b = m.lock().await;
    let waiter = tokio::spawn(async move {
        b.lock(LockRequest {
            name: b"mtx".to_vec(),
            lease: l2,
        })
        .await
    });
    wait_for_key(&mut kv, &lock_key("mtx", l2)).await;
    leases
        .lease_revoke(LeaseRevokeRequest { id: l2 })
        .await
        .unwrap();
    let e = waiter.await.unwrap().unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unknown, "etcdserver: requested lease not found")
    );
    // The holder is unaffected.
    assert!(create_revision(&mut kv, &held.key).await.is_some());
}

#[tokio::test]
async fn a_lease_that_expires_while_waiting_ends_the_wait_with_lease_not_found() {
    // Short election timeouts let a 1 s lease stand (the minimum TTL follows them).
    let m = MnemoProcess::start(&["--heartbeat-interval=20", "--election-timeout=200"]);
    let mut leases = m.lease().await;
    let (l1, short) = (grant(&mut leases, 60).await, grant(&mut leases, 1).await);
    let mut a = m.lock().await;
    let held = a
        .lock(LockRequest {
            name: b"mtx".to_vec(),
            lease: l1,
        })
        .await
        .unwrap()
        .into_inner();
    // Nobody keeps the short lease alive: the wait ends when the leader's clock expires it.
    let e = a
        .lock(LockRequest {
            name: b"mtx".to_vec(),
            lease: short,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unknown, "etcdserver: requested lease not found")
    );
    let mut kv = m.kv().await;
    assert_eq!(
        create_revision(&mut kv, &lock_key("mtx", short)).await,
        None
    );
    assert!(create_revision(&mut kv, &held.key).await.is_some());
}

#[tokio::test]
async fn a_waiter_that_goes_away_leaves_no_key_behind() {
    let m = MnemoProcess::start(&[]);
    let mut leases = m.lease().await;
    let mut kv = m.kv().await;
    let (l1, l2, l3) = (
        grant(&mut leases, 60).await,
        grant(&mut leases, 60).await,
        grant(&mut leases, 60).await,
    );
    let mut a = m.lock().await;
    let held = a
        .lock(LockRequest {
            name: b"mtx".to_vec(),
            lease: l1,
        })
        .await
        .unwrap()
        .into_inner();
    let mut b = m.lock().await;
    let gone = tokio::spawn(async move {
        b.lock(LockRequest {
            name: b"mtx".to_vec(),
            lease: l2,
        })
        .await
    });
    wait_for_key(&mut kv, &lock_key("mtx", l2)).await;
    // Dropping the call resets its stream: the server withdraws the waiter's key.
    gone.abort();
    wait_for_no_key(&mut kv, &lock_key("mtx", l2)).await;

    a.unlock(UnlockRequest { key: held.key }).await.unwrap();
    let mut c = m.lock().await;
    let next = c
        .lock(LockRequest {
            name: b"mtx".to_vec(),
            lease: l3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.key, lock_key("mtx", l3));
}

#[tokio::test]
async fn a_lock_without_a_lease_gets_one_of_etcds_session_ttl() {
    let m = MnemoProcess::start(&[]);
    let mut lock = m.lock().await;
    let held = lock
        .lock(LockRequest {
            name: b"free".to_vec(),
            lease: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let key = String::from_utf8(held.key.clone()).unwrap();
    let hex = key.strip_prefix("free/").unwrap();
    let lease = i64::from_str_radix(hex, 16).unwrap();
    let mut leases = m.lease().await;
    let ttl = leases
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: lease,
            keys: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.granted_ttl, 60);
    assert_eq!(ttl.keys, vec![held.key.clone()]);
    lock.unlock(UnlockRequest { key: held.key }).await.unwrap();
    // Unlocking a key that is gone is no error.
    lock.unlock(UnlockRequest {
        key: b"free/0".to_vec(),
    })
    .await
    .unwrap();
}
