//! The Election service against the real binary: campaigns queue by create revision,
//! the leader proclaims values, Observe follows every leader change, and etcd's errors
//! for a lost leadership or an empty election.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::MnemoProcess;
use mnemo_proto::etcdserverpb::kv_client::KvClient;
use mnemo_proto::etcdserverpb::lease_client::LeaseClient;
use mnemo_proto::etcdserverpb::{
    DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, RangeRequest,
};
use mnemo_proto::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ResignRequest,
};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

async fn grant(lease: &mut LeaseClient<Channel>, ttl: i64) -> i64 {
    lease
        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn wait_for_key(kv: &mut KvClient<Channel>, key: &[u8]) {
    loop {
        let r = kv
            .range(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if !r.kvs.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn campaign(name: &str, lease: i64, value: &str) -> CampaignRequest {
    CampaignRequest {
        name: name.into(),
        lease,
        value: value.into(),
    }
}

/// The next message of an Observe stream as (key, value).
async fn next(stream: &mut Streaming<LeaderResponse>) -> (String, String) {
    let msg = stream.message().await.unwrap().expect("Observe ended");
    let kv = msg.kv.unwrap();
    (
        String::from_utf8(kv.key).unwrap(),
        String::from_utf8(kv.value).unwrap(),
    )
}

#[tokio::test]
async fn campaign_proclaim_leader_and_resign_follow_etcd() {
    let m = MnemoProcess::start(&[]);
    let mut leases = m.lease().await;
    let mut e = m.election().await;

    let e_err = e
        .leader(LeaderRequest { name: "job".into() })
        .await
        .unwrap_err();
    assert_eq!(
        (e_err.code(), e_err.message()),
        (Code::Unknown, "election: no leader")
    );

    let l1 = grant(&mut leases, 60).await;
    let won = e
        .campaign(campaign("job", l1, "v1"))
        .await
        .unwrap()
        .into_inner();
    let leader = won.leader.unwrap();
    assert_eq!(leader.name, b"job");
    assert_eq!(leader.key, format!("job/{l1:x}").into_bytes());
    assert_eq!(leader.lease, l1);
    assert_eq!(leader.rev, won.header.unwrap().revision);

    let now = e
        .leader(LeaderRequest { name: "job".into() })
        .await
        .unwrap()
        .into_inner();
    let kv = now.kv.unwrap();
    assert_eq!(
        (kv.key.as_slice(), kv.value.as_slice()),
        (&leader.key[..], &b"v1"[..])
    );
    assert_eq!((kv.create_revision, kv.lease), (leader.rev, l1));

    e.proclaim(ProclaimRequest {
        leader: Some(leader.clone()),
        value: "v2".into(),
    })
    .await
    .unwrap();
    let kv = e
        .leader(LeaderRequest { name: "job".into() })
        .await
        .unwrap()
        .into_inner()
        .kv
        .unwrap();
    assert_eq!(kv.value, b"v2");

    // A leader key with the wrong revision is not the leader.
    let stale = LeaderKey {
        rev: leader.rev + 100,
        ..leader.clone()
    };
    let err = e
        .proclaim(ProclaimRequest {
            leader: Some(stale.clone()),
            value: "v3".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "election: not leader")
    );
    // Resigning with it changes nothing.
    e.resign(ResignRequest {
        leader: Some(stale),
    })
    .await
    .unwrap();
    let err = e
        .proclaim(ProclaimRequest {
            leader: None,
            value: "v3".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "\"leader\" field must be provided")
    );
    let err = e.resign(ResignRequest { leader: None }).await.unwrap_err();
    assert_eq!(err.message(), "\"leader\" field must be provided");

    e.resign(ResignRequest {
        leader: Some(leader.clone()),
    })
    .await
    .unwrap();
    let err = e
        .leader(LeaderRequest { name: "job".into() })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "election: no leader");
    // After resigning, proclaiming fails.
    let err = e
        .proclaim(ProclaimRequest {
            leader: Some(leader),
            value: "v4".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "election: not leader");
}

#[tokio::test]
async fn a_second_candidate_wins_when_the_leader_resigns_and_observe_sees_each_change() {
    let m = MnemoProcess::start(&[]);
    let mut leases = m.lease().await;
    let mut kv = m.kv().await;
    let (l1, l2) = (grant(&mut leases, 60).await, grant(&mut leases, 60).await);
    let mut a = m.election().await;
    let first = a
        .campaign(campaign("svc", l1, "alpha"))
        .await
        .unwrap()
        .into_inner()
        .leader
        .unwrap();
    let mut observer = m.election().await;
    let mut changes = observer
        .observe(LeaderRequest { name: "svc".into() })
        .await
        .unwrap()
        .into_inner();
    let a_key = format!("svc/{l1:x}");
    let b_key = format!("svc/{l2:x}");
    assert_eq!(next(&mut changes).await, (a_key.clone(), "alpha".into()));

    let mut b = m.election().await;
    let second = tokio::spawn(async move { b.campaign(campaign("svc", l2, "beta")).await });
    wait_for_key(&mut kv, b_key.as_bytes()).await;
    assert!(!second.is_finished());

    a.proclaim(ProclaimRequest {
        leader: Some(first.clone()),
        value: "alpha2".into(),
    })
    .await
    .unwrap();
    assert_eq!(next(&mut changes).await, (a_key.clone(), "alpha2".into()));

    a.resign(ResignRequest {
        leader: Some(first),
    })
    .await
    .unwrap();
    let won = second.await.unwrap().unwrap().into_inner().leader.unwrap();
    assert_eq!(won.key, b_key.as_bytes());
    assert_eq!(next(&mut changes).await, (b_key.clone(), "beta".into()));

    // The new leader's lease ends: the election is empty, then a new candidate leads.
    leases
        .lease_revoke(LeaseRevokeRequest { id: l2 })
        .await
        .unwrap();
    let l3 = grant(&mut leases, 60).await;
    a.campaign(campaign("svc", l3, "gamma")).await.unwrap();
    assert_eq!(
        next(&mut changes).await,
        (format!("svc/{l3:x}"), "gamma".into())
    );
}

#[tokio::test]
async fn observe_on_an_empty_election_waits_for_the_first_leader() {
    let m = MnemoProcess::start(&[]);
    let mut leases = m.lease().await;
    let mut observer = m.election().await;
    // etcd sends Observe's response headers with its first message: wait for that in
    // a task of its own.
    let first = tokio::spawn(async move {
        let mut changes = observer
            .observe(LeaderRequest {
                name: "empty".into(),
            })
            .await
            .unwrap()
            .into_inner();
        next(&mut changes).await
    });
    // The observer waits on a watcher of the election's prefix.
    while watchers(&m) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut kv = m.kv().await;
    // A key of another election with a common prefix is no candidate.
    kv.put(mnemo_proto::etcdserverpb::PutRequest {
        key: b"emptyish/1".to_vec(),
        value: b"x".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let l1 = grant(&mut leases, 60).await;
    let mut e = m.election().await;
    e.campaign(campaign("empty", l1, "first")).await.unwrap();
    assert_eq!(
        first.await.unwrap(),
        (format!("empty/{l1:x}"), "first".into())
    );
}

/// `etcd_debugging_mvcc_watcher_total` from /metrics.
fn watchers(m: &MnemoProcess) -> u64 {
    let metrics = common::http_request(m.client_addr(), "GET", "/metrics").body;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .unwrap()
}

#[tokio::test]
async fn campaigning_again_with_the_same_lease_keeps_the_key_and_updates_the_value() {
    let m = MnemoProcess::start(&[]);
    let mut leases = m.lease().await;
    let mut kv = m.kv().await;
    let l1 = grant(&mut leases, 60).await;
    let mut e = m.election().await;
    let first = e
        .campaign(campaign("again", l1, "one"))
        .await
        .unwrap()
        .into_inner()
        .leader
        .unwrap();
    let second = e
        .campaign(campaign("again", l1, "two"))
        .await
        .unwrap()
        .into_inner()
        .leader
        .unwrap();
    assert_eq!(
        (second.key.clone(), second.rev),
        (first.key.clone(), first.rev)
    );
    let r = kv
        .range(RangeRequest {
            key: first.key.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.kvs[0].value, b"two");
}

/// etcd 3.4 goes on waiting here and then reports a leadership nobody holds.
#[tokio::test]
async fn a_candidate_whose_key_is_deleted_while_waiting_is_not_leader() {
    let m = MnemoProcess::start(&[]);
    let mut leases = m.lease().await;
    let mut kv = m.kv().await;
    let l1 = grant(&mut leases, 60).await;
    let mut e = m.election().await;
    e.campaign(campaign("again", l1, "one")).await.unwrap();
    let l2 = grant(&mut leases, 60).await;
    let mut waiter = m.election().await;
    let waiting = tokio::spawn(async move { waiter.campaign(campaign("again", l2, "w")).await });
    let w_key = format!("again/{l2:x}");
    wait_for_key(&mut kv, w_key.as_bytes()).await;
    kv.delete_range(DeleteRangeRequest {
        key: w_key.into_bytes(),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = waiting.await.unwrap().unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "election: not leader")
    );
}

#[tokio::test]
async fn sigterm_with_a_campaign_waiting_and_an_observer_open_exits_cleanly() {
    let mut m = MnemoProcess::start(&[]);
    let mut leases = m.lease().await;
    let mut kv = m.kv().await;
    let (l1, l2) = (grant(&mut leases, 60).await, grant(&mut leases, 60).await);
    let mut e = m.election().await;
    e.campaign(campaign("stop", l1, "a")).await.unwrap();
    let mut observer = m.election().await;
    let mut changes = observer
        .observe(LeaderRequest {
            name: "stop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut changes).await.1, "a");
    let mut waiter = m.election().await;
    let _waiting = tokio::spawn(async move { waiter.campaign(campaign("stop", l2, "b")).await });
    wait_for_key(&mut kv, format!("stop/{l2:x}").as_bytes()).await;
    let status = m.terminate();
    assert_eq!(status.code(), Some(0), "{}", m.stderr());
}
