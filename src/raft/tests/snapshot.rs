//! Snapshot builds next to applies.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mnemo_proto::etcdserverpb::PutRequest;
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use tokio::io::AsyncReadExt;

use super::mem_store::MemStore;
use crate::command::{Command, Op};
use crate::raft::state_machine::{DurabilityPolicy, StateMachine};
use crate::raft::{Progress, Proposal, TypeConfig};

fn put_entry(index: u64, key: &str) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal::one(Command::new(Op::Put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })))),
    }
}

/// The copy is written after the apply lock is released: an apply completes while the
/// snapshot's write is held, and the snapshot still holds exactly the state it froze.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_go_on_while_a_snapshot_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::default());
    let mut sm = StateMachine::open(
        Arc::clone(&store),
        dir.path(),
        Arc::new(Progress::default()),
        DurabilityPolicy::default(),
        Arc::new(|_| {}),
    )
    .unwrap();
    sm.apply(vec![put_entry(1, "a")]).await.unwrap();
    store.hold_snapshot_writes(true);
    let mut builder = sm.get_snapshot_builder().await;
    let build = tokio::spawn(async move { builder.build_snapshot().await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.freezes.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the build never froze the store");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), sm.apply(vec![put_entry(2, "b")]))
        .await
        .expect("an apply while the snapshot is written")
        .unwrap();
    assert!(!build.is_finished(), "the write was held");
    store.hold_snapshot_writes(false);
    let mut snap = build.await.unwrap().unwrap();
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(1));
    let mut bytes = Vec::new();
    snap.snapshot.read_to_end(&mut bytes).await.unwrap();
    let state = MemStore::decode_snapshot(&bytes).unwrap();
    assert!(state.kv.contains_key(b"a".as_slice()));
    assert!(!state.kv.contains_key(b"b".as_slice()));

    let mut builder = sm.get_snapshot_builder().await;
    let snap = builder.build_snapshot().await.unwrap();
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2));
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.snapshot_id, snap.meta.snapshot_id);
}
