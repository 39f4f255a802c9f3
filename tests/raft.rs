//! Raft over the real MVCC store: openraft's storage suite, a single member that restarts
//! and keeps every acknowledged write, and a restart after a crash that left the store
//! behind the WAL.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mnemo::command::{Command, CommandResponse, Op};
use mnemo::mvcc::{Applied, Store};
use mnemo::raft::state_machine::StateMachine;
use mnemo::raft::{
    DurabilityPolicy, LogStore, Member, Progress, RaftNode, RaftOptions, TypeConfig,
};
use mnemo_proto::etcdserverpb::{PutRequest, RangeRequest};
use mnemo_storage::wal::WalOptions;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use parking_lot::Mutex;
use tempfile::TempDir;

/// Where the tests keep the store: beside the raft snapshots, as etcd keeps `snap/db`.
fn store_path(member_dir: &Path) -> PathBuf {
    member_dir.join("snap").join("db")
}

fn open_store(member_dir: &Path) -> Arc<Store> {
    std::fs::create_dir_all(member_dir.join("snap")).unwrap();
    Arc::new(Store::open(&store_path(member_dir)).unwrap())
}

struct RealStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine<Store>, TempDir> for RealStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine<Store>), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let progress = Arc::new(Progress::default());
        let log = LogStore::open(dir.path(), WalOptions::default(), progress.clone()).unwrap();
        let sm = StateMachine::open(
            open_store(dir.path()),
            dir.path(),
            progress,
            DurabilityPolicy::default(),
            Arc::new(|_| {}),
        )
        .unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_over_the_mvcc_store() {
    Suite::test_all(RealStoreBuilder).unwrap();
}

fn options(dir: &Path) -> RaftOptions {
    let member = Member {
        name: "default".into(),
        peer_urls: vec!["http://localhost:2380".into()],
        client_urls: vec!["http://localhost:2379".into()],
    };
    let mut o = RaftOptions::new(0x8e9e05c52164694d, member, dir.join("member"));
    o.heartbeat_ms = 20;
    o.election_timeout_ms = 200;
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
        CommandResponse::Put(p) => p.header.as_ref().unwrap().revision,
        other => panic!("not a put response: {other:?}"),
    }
}

/// Every key under "k" with its value and mod revision.
fn contents(store: &Store) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    let resp = store
        .range(&RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        })
        .unwrap();
    resp.kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value, kv.mod_revision))
        .collect()
}

async fn start(opts: &RaftOptions, store: Arc<Store>) -> (RaftNode, Arc<Mutex<Vec<Applied>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let node = RaftNode::start(opts.clone(), store, Arc::new(move |a| s.lock().push(a)))
        .await
        .unwrap();
    node.wait_for_leader(Duration::from_secs(10)).await.unwrap();
    (node, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_member_restarts_with_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    let store = open_store(&opts.member_dir);
    let (node, seen) = start(&opts, store.clone()).await;
    let mut acked = Vec::new();
    for i in 0..50 {
        let r = node
            .propose(put(&format!("k{i:03}"), &format!("v{i}")))
            .await
            .unwrap();
        acked.push(revision(&r));
    }
    // One revision per put, starting after etcd's initial revision 1.
    assert_eq!(acked, (2..52).collect::<Vec<i64>>());
    let events: usize = seen.lock().iter().map(|a| a.events.len()).sum();
    assert_eq!(events, 50);
    node.read_index().await.unwrap();
    let before = contents(&store);
    assert_eq!(before.len(), 50);
    let status = node.status();
    node.shutdown().await.unwrap();
    drop(node);
    drop(store);

    let store = open_store(&opts.member_dir);
    assert_eq!(store.current_revision(), 51);
    assert_eq!(contents(&store), before);
    let (node, _) = start(&opts, store.clone()).await;
    let after = node.status();
    assert!(after.term >= status.term);
    assert!(after.applied_index >= status.applied_index);
    let r = node.propose(put("k999", "v")).await.unwrap();
    assert_eq!(revision(&r), 52);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_the_wal_is_caught_up_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.durability = DurabilityPolicy {
        every_entries: u64::MAX,
        every: Duration::from_secs(3600),
    };
    let store = open_store(&opts.member_dir);
    let (node, _) = start(&opts, store.clone()).await;
    for i in 0..20 {
        node.propose(put(&format!("k{i:03}"), &format!("v{i}")))
            .await
            .unwrap();
    }
    // What a crash could leave on disk: the store as of some earlier commit.
    let early = dir.path().join("early.db");
    store.snapshot_to(&early).unwrap();
    for i in 20..40 {
        node.propose(put(&format!("k{i:03}"), &format!("w{i}")))
            .await
            .unwrap();
    }
    node.propose(put("k005", "overwritten")).await.unwrap();
    let acknowledged = contents(&store);
    let revision = store.current_revision();
    assert_eq!(revision, 42);
    // Stop raft without the final durable store commit, then put the old store in place.
    node.raft().shutdown().await.unwrap();
    drop(node);
    drop(store);
    std::fs::rename(&early, store_path(&opts.member_dir)).unwrap();

    let store = open_store(&opts.member_dir);
    assert_eq!(store.current_revision(), 21);
    let (node, seen) = start(&opts, store.clone()).await;
    node.read_index().await.unwrap();
    assert_eq!(store.current_revision(), revision);
    assert_eq!(contents(&store), acknowledged);
    // The re-applied writes reached the watch hub's callback, in revision order.
    let revs: Vec<i64> = seen
        .lock()
        .iter()
        .flat_map(|a| {
            a.events
                .iter()
                .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
        })
        .collect();
    assert_eq!(revs, (22..=42).collect::<Vec<i64>>());
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_the_mvcc_store_are_taken_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.snapshot_count = 30;
    let store = open_store(&opts.member_dir);
    let (node, _) = start(&opts, store.clone()).await;
    for i in 0..70 {
        node.propose(put(&format!("k{i:03}"), "v")).await.unwrap();
    }
    let m = node
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= 50), "snapshot")
        .await
        .unwrap();
    let snap = m.snapshot.unwrap();
    let snap_dir = opts.member_dir.join("snap");
    let files: Vec<String> = std::fs::read_dir(&snap_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files.contains(&"db".to_string()));
    assert!(files.contains(&"snapshot.meta".to_string()));
    let data = files.iter().find(|f| f.ends_with(".snap")).unwrap();
    // The snapshot is a page file holding the store as of its last log id.
    let copy = Store::open(&snap_dir.join(data)).unwrap();
    // Index 0 is the membership, 1 the blank entry, then one put (one revision) per entry.
    assert_eq!(copy.current_revision(), snap.index as i64);
    drop(copy);
    node.shutdown().await.unwrap();
    drop(node);
    drop(store);

    let store = open_store(&opts.member_dir);
    let (node, _) = start(&opts, store.clone()).await;
    assert!(node.raft().metrics().borrow().snapshot >= Some(snap));
    assert_eq!(contents(&store).len(), 70);
    node.shutdown().await.unwrap();
}
