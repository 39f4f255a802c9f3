//! A single-member [`RaftNode`] over the in-memory store: proposals, restarts, a crash
//! that leaves the store behind the log, snapshots, and errors without a leader.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mnemo_proto::etcdserverpb::{DeleteRangeRequest, PutRequest};
use mnemo_storage::wal::WalOptions;

use super::mem_store::MemStore;
use crate::command::{Command, CommandResponse, Op};
use crate::error::Error;
use crate::raft::{DurabilityPolicy, Member, RaftNode, RaftOptions, ServerState};

fn member() -> Member {
    Member {
        name: "default".into(),
        peer_urls: vec!["http://127.0.0.1:2380".into()],
        client_urls: vec!["http://127.0.0.1:2379".into()],
    }
}

fn options(dir: &Path) -> RaftOptions {
    let mut o = RaftOptions::new(0x8e9e05c52164694d, member(), dir.join("member"));
    o.heartbeat_ms = 20;
    o.election_timeout_ms = 200;
    o.wal = WalOptions {
        segment_size: 1 << 20,
        ..Default::default()
    };
    o
}

fn put(key: &str, value: &str) -> Command {
    Command::new(Op::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    }))
}

fn revision(r: &CommandResponse) -> i64 {
    match r {
        CommandResponse::Put(p) => p.header.as_ref().map_or(0, |h| h.revision),
        other => panic!("not a put response: {other:?}"),
    }
}

async fn start(opts: RaftOptions, store: Arc<MemStore>) -> (RaftNode<MemStore>, Arc<AtomicI64>) {
    let seen = Arc::new(AtomicI64::new(0));
    let s = seen.clone();
    let node = RaftNode::start(
        opts,
        store,
        Arc::new(move |a| {
            s.fetch_max(a.revision, Ordering::SeqCst);
        }),
    )
    .await
    .unwrap();
    node.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    (node, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposes_restarts_and_keeps_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let store = Arc::new(MemStore::default());
    let (node, seen) = start(opts.clone(), store.clone()).await;
    let st = node.status();
    assert_eq!(st.leader, Some(opts.node_id));
    assert_eq!(st.state, ServerState::Leader);
    assert!(!st.is_learner);
    assert_eq!(st.members.len(), 1);
    assert_eq!(st.members[0].member, member());

    for i in 1..=30 {
        let r = node.propose(put(&format!("k{i}"), "v")).await.unwrap();
        assert_eq!(revision(&r), i);
    }
    assert_eq!(seen.load(Ordering::SeqCst), 30);
    let read = node.read_index().await.unwrap();
    let st = node.status();
    assert_eq!(st.applied_index, Some(read));
    assert_eq!(st.commit_index, st.applied_index);
    assert_eq!(st.last_log_index, st.applied_index);
    node.shutdown().await.unwrap();
    assert_eq!(node.propose(put("late", "v")).await, Err(Error::Stopped));
    let before = store.state();
    drop(node);

    let store = Arc::new(store.reopen());
    let (node, _) = start(opts, store.clone()).await;
    assert_eq!(store.state().kv, before.kv);
    let r = node.propose(put("k31", "v")).await.unwrap();
    assert_eq!(revision(&r), 31);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_the_log_after_a_crash_is_caught_up_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    // Never durable while running: everything the store applied is lost in the crash.
    opts.durability = DurabilityPolicy {
        every_entries: u64::MAX,
        every: Duration::from_secs(3600),
    };
    let store = Arc::new(MemStore::default());
    let (node, _) = start(opts.clone(), store.clone()).await;
    for i in 1..=40 {
        node.propose(put(&format!("k{i}"), &format!("v{i}")))
            .await
            .unwrap();
    }
    // Stop raft without the final durable store commit, as a crash would.
    node.raft().shutdown().await.unwrap();
    let acknowledged = store.state();
    assert_eq!(acknowledged.revision, 40);
    assert_eq!(store.durable_commits.load(Ordering::Relaxed), 0);
    drop(node);

    let crashed = Arc::new(store.after_crash());
    assert_eq!(crashed.state().revision, 0);
    let (node, seen) = start(opts, crashed.clone()).await;
    node.read_index().await.unwrap();
    let after = crashed.state();
    assert_eq!(after.kv, acknowledged.kv);
    assert_eq!(after.revision, 40);
    assert!(
        seen.load(Ordering::SeqCst) >= 40,
        "re-applied batches reach on_applied"
    );
    let r = node.propose(put("k41", "v")).await.unwrap();
    assert_eq!(revision(&r), 41);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_commits_follow_the_policy_and_snapshots_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.durability = DurabilityPolicy {
        every_entries: 10,
        every: Duration::from_secs(3600),
    };
    opts.snapshot_count = 25;
    let store = Arc::new(MemStore::default());
    let (node, _) = start(opts.clone(), store.clone()).await;
    for i in 1..=60 {
        node.propose(put(&format!("k{i}"), "v")).await.unwrap();
    }
    // Checkpoints finish in the background: wait (bounded) for the one after entry 50.
    for _ in 0..500 {
        if store.durable_state().revision >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store.durable_commits.load(Ordering::Relaxed) >= 3);
    let durable = store.durable_state();
    assert!(durable.revision >= 50, "durable at {}", durable.revision);

    let m = node
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= 40), "snapshot")
        .await
        .unwrap();
    let snap = m.snapshot.unwrap();
    let snap_dir = opts.member_dir.join("snap");
    let files: Vec<String> = std::fs::read_dir(&snap_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().any(|f| f == "snapshot.meta"));
    node.shutdown().await.unwrap();
    drop(node);

    // A restart finds the snapshot and the same state.
    let store2 = Arc::new(store.reopen());
    let (node, _) = start(opts, store2.clone()).await;
    let m = node.raft().metrics().borrow().clone();
    assert!(m.snapshot >= Some(snap), "{:?} < {snap:?}", m.snapshot);
    assert_eq!(store2.state().kv, store.state().kv);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_not_in_a_cluster_has_no_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.new_cluster = false;
    let node = RaftNode::start(opts, Arc::new(MemStore::default()), Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(node.propose(put("k", "v")).await, Err(Error::NoLeader));
    assert_eq!(node.read_index().await, Err(Error::NoLeader));
    assert_eq!(node.status().leader, None);
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_timeouts_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.election_timeout_ms = opts.heartbeat_ms;
    let err = RaftNode::start(opts, Arc::new(MemStore::default()), Arc::new(|_| {}))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_share_entries_and_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::default());
    let (node, _) = start(options(dir.path()), store.clone()).await;
    let node = Arc::new(node);
    let before = node.wal_stats().unwrap();
    let mut tasks = Vec::new();
    for c in 0..32 {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..20 {
                let r = node.propose(put(&format!("c{c}-{i}"), "v")).await.unwrap();
                revs.push(revision(&r));
            }
            revs
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        let mine = t.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "a client's writes keep their order"
        );
        revs.extend(mine);
    }
    revs.sort();
    // Every command got its own revision, as if proposed alone.
    assert_eq!(revs, (1..=640).collect::<Vec<i64>>());
    assert_eq!(store.state().kv.len(), 640);
    let after = node.wal_stats().unwrap();
    let entries = after.records - before.records;
    assert!(entries < 320, "640 commands took {entries} entries");
    assert!(after.fsyncs - before.fsyncs <= entries);
    node.shutdown().await.unwrap();
}

/// Run on a current-thread runtime, so "applied on the raft task" is "applied on this
/// thread": a lone put applies inline, batches under concurrent proposals and commands
/// that may touch many keys go to the blocking pool.
#[tokio::test]
async fn lone_point_commands_apply_inline_and_the_rest_on_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::default());
    let (node, _) = start(options(dir.path()), store.clone()).await;
    let node = Arc::new(node);
    let here = std::thread::current().id();
    let inline = |from: usize| {
        let t = store.batch_threads.lock();
        (
            t[from..].iter().filter(|&&id| id == here).count(),
            t.len() - from,
        )
    };

    // The leader's blank entry applies on its own: wait until it has.
    node.propose(put("first", "v")).await.unwrap();
    let from = store.batch_threads.lock().len();
    for i in 0..10 {
        node.propose(put(&format!("lone{i}"), "v")).await.unwrap();
        assert_eq!(
            node.proposed(),
            0,
            "an answered proposal is no longer counted"
        );
    }
    assert_eq!(inline(from), (10, 10), "(inline, all) batches of lone puts");

    // A delete of a range may touch any number of keys: never inline.
    let from = store.batch_threads.lock().len();
    let range_delete = Command::new(Op::DeleteRange(DeleteRangeRequest {
        key: b"lone".to_vec(),
        range_end: b"lonf".to_vec(),
        ..Default::default()
    }));
    node.propose(range_delete).await.unwrap();
    assert_eq!(inline(from), (0, 1));

    // 16 proposals at once: the first may apply alone, the batches behind it do not.
    let from = store.batch_threads.lock().len();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let node = node.clone();
            tokio::spawn(async move { node.propose(put(&format!("c{i}"), "v")).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let (on_task, batches) = inline(from);
    assert!(
        batches >= 1 && on_task <= 1,
        "{on_task} of {batches} batches applied inline"
    );
    assert_eq!(node.proposed(), 0);
    assert_eq!(store.state().kv.len(), 27);
    Arc::try_unwrap(node).unwrap().shutdown().await.unwrap();
}
