//! Three real mnemo processes on 127.0.0.1: replication, forwarding, failover, restarts,
//! membership changes, leadership transfer and quorum loss.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{MemberAddrs, MnemoCluster, MnemoProcess};
use mnemo_proto::etcdserverpb::{
    HashKvRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest,
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MoveLeaderRequest, PutRequest, RangeRequest, StatusRequest, WatchCreateRequest, WatchRequest,
};
use mnemo_proto::mnemopeerpb::peer_client::PeerClient;
use mnemo_proto::mnemopeerpb::PeerHeader;
use tonic::Code;

/// Short timeouts keep elections quick in tests: 50 ms heartbeats, 500 ms elections.
const FAST: &[&str] = &["--heartbeat-interval=50", "--election-timeout=500"];
const ELECTION_TIMEOUT: Duration = Duration::from_millis(500);

async fn status(m: &MnemoProcess) -> Option<mnemo_proto::etcdserverpb::StatusResponse> {
    let mut c = tokio::time::timeout(Duration::from_secs(2), m.maintenance())
        .await
        .ok()?;
    let r = tokio::time::timeout(Duration::from_secs(2), c.status(StatusRequest {}))
        .await
        .ok()?;
    r.ok().map(|r| r.into_inner())
}

/// The index (in `members`) of the member every running member calls leader.
async fn leader(members: &[&MnemoProcess]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut views = Vec::new();
        for m in members {
            if let Some(s) = status(m).await {
                views.push((s.header.unwrap().member_id, s.leader));
            }
        }
        if views.len() == members.len()
            && views[0].1 != 0
            && views.iter().all(|v| v.1 == views[0].1)
        {
            if let Some(i) = views.iter().position(|v| v.0 == views[0].1) {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {views:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn put(m: &MnemoProcess, key: &str, value: &str) -> Result<i64, tonic::Status> {
    let mut kv = m.kv().await;
    kv.put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().header.unwrap().revision)
}

async fn get(m: &MnemoProcess, key: &str, serializable: bool) -> Option<Vec<u8>> {
    let mut kv = m.kv().await;
    let r = kv
        .range(RangeRequest {
            key: key.into(),
            serializable,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    r.kvs.into_iter().next().map(|kv| kv.value)
}

async fn hash_kv(m: &MnemoProcess, revision: i64) -> (u32, i64) {
    let r = m
        .maintenance()
        .await
        .hash_kv(HashKvRequest { revision })
        .await
        .unwrap()
        .into_inner();
    (r.hash, r.header.unwrap().revision)
}

/// Retries `put` through `m` until it succeeds; returns how long that took.
async fn put_until_ok(m: &MnemoProcess, key: &str, value: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(2), put(m, key, value)).await {
            Ok(Ok(_)) => return start.elapsed(),
            Ok(Err(e)) => assert!(
                matches!(e.code(), Code::Unavailable | Code::FailedPrecondition),
                "unexpected error while the cluster recovers: {e:?}"
            ),
            Err(_) => {}
        }
        assert!(
            start.elapsed() < limit,
            "no write succeeded within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_member_serves_writes_reads_and_watches() {
    let c = MnemoCluster::start(3, FAST);
    let m: Vec<&MnemoProcess> = c.members.iter().collect();
    let l = leader(&m).await;
    let f = (l + 1) % 3;

    // A watch on a follower sees writes made through every member.
    let mut watch = m[f].watch().await;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(WatchRequest {
        request_union: Some(
            mnemo_proto::etcdserverpb::watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"k".to_vec(),
                    range_end: b"l".to_vec(),
                    ..Default::default()
                },
            ),
        ),
    })
    .await
    .unwrap();
    let mut events = watch
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let created = events.message().await.unwrap().unwrap();
    assert!(created.created);

    // Writes through each member; a linearizable read through each other member sees
    // the write at once.
    let mut last_rev = 0;
    for (i, writer) in m.iter().enumerate() {
        let key = format!("k{i}");
        let rev = put(writer, &key, &format!("v{i}")).await.unwrap();
        assert!(rev > last_rev, "revisions grow across members");
        last_rev = rev;
        for reader in &m {
            assert_eq!(
                get(reader, &key, false).await.as_deref(),
                Some(format!("v{i}").as_bytes()),
                "linearizable read of {key} through another member"
            );
        }
        // A write answered by a member is applied there: its own serializable read sees it.
        assert_eq!(
            get(writer, &key, true).await.as_deref(),
            Some(format!("v{i}").as_bytes())
        );
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let resp = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("watch events on a follower")
            .unwrap()
            .unwrap();
        seen.extend(resp.events.into_iter().map(|e| e.kv.unwrap().key));
    }
    assert_eq!(seen, vec![b"k0".to_vec(), b"k1".to_vec(), b"k2".to_vec()]);

    // Every member holds the same data at the same revision.
    let hashes: Vec<(u32, i64)> = one_by_one(m.iter().map(|x| hash_kv(x, last_rev))).await;
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "HashKV differs: {hashes:?}"
    );

    // Every header names the cluster and the member that answered.
    let mut ids = Vec::new();
    for x in &m {
        let h = status(x).await.unwrap().header.unwrap();
        ids.push((h.cluster_id, h.member_id));
    }
    assert!(ids.iter().all(|i| i.0 == ids[0].0 && i.0 != 0));
    assert_eq!(
        ids.iter()
            .map(|i| i.1)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );

    // The member list has every member's name, peer and client URLs.
    let list = m[f]
        .cluster()
        .await
        .member_list(MemberListRequest { linearizable: true })
        .await
        .unwrap()
        .into_inner();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut list = list;
    while list.members.iter().any(|x| x.client_ur_ls.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "members did not publish: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        list = m[f]
            .cluster()
            .await
            .member_list(MemberListRequest {
                linearizable: false,
            })
            .await
            .unwrap()
            .into_inner();
    }
    let mut names: Vec<String> = list.members.iter().map(|x| x.name.clone()).collect();
    names.sort();
    assert_eq!(names, vec!["m1", "m2", "m3"]);
    for x in &list.members {
        let p = m.iter().find(|p| p.addrs.name == x.name).unwrap();
        assert_eq!(x.peer_ur_ls, vec![p.addrs.peer_url()]);
        assert_eq!(x.client_ur_ls, vec![p.client_url()]);
    }
}

/// Awaits each future in turn (the members are asked one after another).
async fn one_by_one<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in fs {
        out.push(f.await);
    }
    out
}

#[tokio::test]
async fn leases_work_through_a_follower() {
    let c = MnemoCluster::start(3, FAST);
    let m: Vec<&MnemoProcess> = c.members.iter().collect();
    let f = (leader(&m).await + 1) % 3;
    let mut lease = m[f].lease().await;
    let id = lease
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .unwrap()
        .into_inner()
        .id;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(LeaseKeepAliveRequest { id }).await.unwrap();
    let mut alive = lease
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let r = alive.message().await.unwrap().unwrap();
    assert_eq!((r.id, r.ttl), (id, 30));
    let ttl = lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.granted_ttl, 30);
    assert!(ttl.ttl > 0 && ttl.ttl <= 30, "ttl {}", ttl.ttl);
    // An unknown lease: keep-alive answers TTL 0 as etcd does, TimeToLive -1.
    tx.send(LeaseKeepAliveRequest { id: id + 1 }).await.unwrap();
    let r = alive.message().await.unwrap().unwrap();
    assert_eq!(r.ttl, 0);
}

#[tokio::test]
async fn leader_failover_restart_and_catch_up() {
    let mut c = MnemoCluster::start(3, FAST);
    let l = {
        let m: Vec<&MnemoProcess> = c.members.iter().collect();
        leader(&m).await
    };
    for i in 0..20 {
        put(&c.members[l], &format!("before{i}"), "x")
            .await
            .unwrap();
    }
    // A lease with a key, kept alive by nobody: the new leader must give it its full TTL
    // again (etcd's promote), not expire it because the old leader's clock is gone.
    let lease_id = c.members[l]
        .lease()
        .await
        .lease_grant(LeaseGrantRequest { ttl: 10, id: 0 })
        .await
        .unwrap()
        .into_inner()
        .id;
    c.members[l]
        .kv()
        .await
        .put(PutRequest {
            key: b"leased".to_vec(),
            value: b"v".to_vec(),
            lease: lease_id,
            ..Default::default()
        })
        .await
        .unwrap();
    c.members[l].kill();
    let survivor = (l + 1) % 3;
    let took = put_until_ok(&c.members[survivor], "after", "y", Duration::from_secs(30)).await;
    println!(
        "leader failover: a write through a follower succeeded {took:?} after kill -9 of the leader ({:.1}× the {ELECTION_TIMEOUT:?} election timeout)",
        took.as_secs_f64() / ELECTION_TIMEOUT.as_secs_f64()
    );
    for i in 0..20 {
        put(&c.members[survivor], &format!("during{i}"), "z")
            .await
            .unwrap();
    }
    let ttl = c.members[survivor]
        .lease()
        .await
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: lease_id,
            keys: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        ttl.ttl > 0,
        "the lease expired across the failover: {ttl:?}"
    );
    assert_eq!(ttl.keys, vec![b"leased".to_vec()]);
    assert_eq!(
        get(&c.members[survivor], "leased", false).await.as_deref(),
        Some(&b"v"[..])
    );

    // The old leader comes back as a follower and catches up.
    c.members[l].restart();
    let m: Vec<&MnemoProcess> = c.members.iter().collect();
    let new_leader = leader(&m).await;
    let rev = put(m[new_leader], "final", "w").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(m[l], "final", true).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the restarted member did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(m[l], "during19", true).await.as_deref(),
        Some(&b"z"[..])
    );
    let hashes = one_by_one(m.iter().map(|x| hash_kv(x, rev))).await;
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "HashKV differs: {hashes:?}"
    );
}

#[tokio::test]
async fn losing_quorum_fails_writes_and_regaining_it_resumes_them() {
    let mut c = MnemoCluster::start(3, FAST);
    put(&c.members[0], "a", "1").await.unwrap();
    c.members[1].kill();
    c.members[2].kill();
    let start = Instant::now();
    let r = put(&c.members[0], "b", "2").await;
    let e = r.expect_err("a write without a quorum must fail");
    assert!(
        e.message() == "etcdserver: request timed out" || e.message() == "etcdserver: no leader",
        "unexpected error: {e:?}"
    );
    println!(
        "a write without quorum failed after {:?}: {}",
        start.elapsed(),
        e.message()
    );
    // A linearizable read fails too; a serializable one is served locally.
    let mut kv = c.members[0].kv().await;
    let e = kv
        .range(RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })
        .await
        .expect_err("no linearizable read without a quorum");
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(
        get(&c.members[0], "a", true).await.as_deref(),
        Some(&b"1"[..])
    );

    c.members[1].restart();
    put_until_ok(&c.members[0], "c", "3", Duration::from_secs(30)).await;
    assert_eq!(
        get(&c.members[1], "c", false).await.as_deref(),
        Some(&b"3"[..])
    );
}

#[tokio::test]
async fn learner_added_promoted_and_removed() {
    let c = MnemoCluster::start(3, FAST);
    let m: Vec<&MnemoProcess> = c.members.iter().collect();
    for i in 0..50 {
        put(m[i % 3], &format!("k{i}"), "v").await.unwrap();
    }
    let mut cluster = m[1].cluster().await;
    let addrs = MemberAddrs::new("m4");
    let added = cluster
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![addrs.peer_url()],
            is_learner: true,
        })
        .await
        .unwrap()
        .into_inner();
    let new = added.member.clone().unwrap();
    assert!(new.is_learner);
    assert_eq!(new.peer_ur_ls, vec![addrs.peer_url()]);
    assert_eq!(added.members.len(), 4);
    // A second learner is refused, as etcd allows one at a time.
    let e = cluster
        .member_add(MemberAddRequest {
            peer_ur_ls: vec!["http://127.0.0.1:1".into()],
            is_learner: true,
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "etcdserver: too many learner members in cluster"
    );
    // Same peer URL again.
    let e = cluster
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![addrs.peer_url()],
            is_learner: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "etcdserver: Peer URLs already exists");
    // Not started yet: far behind the leader.
    let e = cluster
        .member_promote(MemberPromoteRequest { id: new.id })
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "etcdserver: can only promote a learner member which is in sync with leader"
    );
    let voter = status(m[0]).await.unwrap().header.unwrap().member_id;
    let e = cluster
        .member_promote(MemberPromoteRequest { id: voter })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "etcdserver: can only promote a learner member");

    // Start it with the initial cluster `member add` printed.
    let mut initial: Vec<String> = m
        .iter()
        .map(|p| format!("{}={}", p.addrs.name, p.addrs.peer_url()))
        .collect();
    initial.push(format!("m4={}", addrs.peer_url()));
    let mut args: Vec<&str> = FAST.to_vec();
    args.push("--initial-cluster-state=existing");
    let mut m4 = MnemoProcess::spawn_member(addrs, initial.join(","), &args, &[]);
    m4.wait_ready();
    let s = status(&m4).await.unwrap();
    assert_eq!(
        s.header.unwrap().member_id,
        new.id,
        "the new member found its id"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !status(&m4).await.unwrap().is_learner {
        assert!(
            Instant::now() < deadline,
            "the new member never saw itself a learner"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while get(&m4, "k49", true).await.is_none() {
        assert!(Instant::now() < deadline, "the learner did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let promoted = loop {
        match cluster
            .member_promote(MemberPromoteRequest { id: new.id })
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("promote failed: {e:?}"),
        }
    };
    assert!(promoted.members.iter().all(|x| !x.is_learner));
    assert_eq!(promoted.members.len(), 4);
    // The new voter serves writes and has published its name.
    put(&m4, "from-m4", "v").await.unwrap();
    assert_eq!(
        get(m[0], "from-m4", false).await.as_deref(),
        Some(&b"v"[..])
    );

    let removed = cluster
        .member_remove(MemberRemoveRequest { id: new.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.members.len(), 3);
    assert!(removed.members.iter().all(|x| x.id != new.id));
    let e = cluster
        .member_remove(MemberRemoveRequest { id: new.id })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "etcdserver: member not found");
    put(m[2], "after-remove", "v").await.unwrap();
}

#[tokio::test]
async fn move_leader_and_remove_the_leader() {
    let c = MnemoCluster::start(3, FAST);
    let m: Vec<&MnemoProcess> = c.members.iter().collect();
    let l = leader(&m).await;
    let target = (l + 1) % 3;
    let target_id = status(m[target]).await.unwrap().header.unwrap().member_id;
    let mut maint = m[l].maintenance().await;
    let e = maint
        .move_leader(MoveLeaderRequest { target_id: 12345 })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "etcdserver: bad leader transferee");
    maint
        .move_leader(MoveLeaderRequest { target_id })
        .await
        .unwrap();
    assert_eq!(leader(&m).await, target);
    put(m[l], "after-move", "v").await.unwrap();

    // Removing the leader itself: the others elect a new one and go on.
    let mut cluster = m[l].cluster().await;
    let r = cluster
        .member_remove(MemberRemoveRequest { id: target_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.members.len(), 2);
    let rest: Vec<&MnemoProcess> = (0..3).filter(|&i| i != target).map(|i| m[i]).collect();
    put_until_ok(
        rest[0],
        "after-leader-removed",
        "v",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        get(rest[1], "after-leader-removed", false).await.as_deref(),
        Some(&b"v"[..])
    );
}

#[tokio::test]
async fn peers_from_another_cluster_are_refused() {
    let c = MnemoCluster::start(3, FAST);
    let p = &c.members[0];
    let mut client = PeerClient::connect(p.addrs.peer_url()).await.unwrap();
    let asked = client
        .members(PeerHeader::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(asked.members.len(), 3);
    let e = client
        .read_index(PeerHeader {
            cluster_id: asked.cluster_id ^ 1,
            from: 1,
            to: asked.member_id,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("cluster id mismatch"), "{e:?}");
    let e = client
        .read_index(PeerHeader {
            cluster_id: asked.cluster_id,
            from: 1,
            to: asked.member_id ^ 1,
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("member id mismatch"), "{e:?}");
}

#[tokio::test]
async fn a_member_behind_the_purged_log_catches_up_from_a_snapshot() {
    let mut args: Vec<&str> = FAST.to_vec();
    args.push("--snapshot-count=50");
    args.push("--experimental-snapshot-catchup-entries=10");
    let mut c = MnemoCluster::start(3, &args);
    let l = {
        let m: Vec<&MnemoProcess> = c.members.iter().collect();
        leader(&m).await
    };
    let lagging = (l + 1) % 3;
    c.members[lagging].kill();
    // Far more entries than the snapshot count plus what is kept after a snapshot: the
    // entries it misses are gone from every log.
    let mut last = 0;
    for i in 0..400 {
        last = put(&c.members[l], &format!("s{i:04}"), &format!("v{i}"))
            .await
            .unwrap();
    }
    c.members[lagging].restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&c.members[lagging], "s0399", true).await.is_none() {
        assert!(Instant::now() < deadline, "the member did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(&c.members[lagging], "s0000", true).await.as_deref(),
        Some(&b"v0"[..])
    );
    assert!(
        c.members[lagging]
            .stderr()
            .contains("installed a snapshot from the leader"),
        "the member caught up without a snapshot"
    );
    let m: Vec<&MnemoProcess> = c.members.iter().collect();
    let hashes = one_by_one(m.iter().map(|x| hash_kv(x, last))).await;
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "HashKV differs: {hashes:?}"
    );
    // It goes on replicating normally after the snapshot.
    put(m[l], "after-snapshot", "v").await.unwrap();
    assert_eq!(
        get(m[lagging], "after-snapshot", false).await.as_deref(),
        Some(&b"v"[..])
    );
}
