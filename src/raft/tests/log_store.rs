//! The WAL log store: reads, truncation, lazy purging, resets, the vote and the
//! committed hint, across reopen.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use mnemo_proto::etcdserverpb::PutRequest;
use mnemo_storage::wal::WalOptions;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, Vote};

use crate::command::{Command, Op};
use crate::raft::hard_state::{read_hard_state, write_hard_state};
use crate::raft::{LogStore, Progress, Proposal, TypeConfig};

fn id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn put(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: id(term, index),
        payload: EntryPayload::Normal(Proposal::one(Command::new(Op::Put(PutRequest {
            key: format!("key-{index}").into_bytes(),
            value: vec![b'v'; 100],
            ..Default::default()
        })))),
    }
}

fn open(dir: &Path, progress: &Arc<Progress>) -> LogStore {
    let wal = WalOptions {
        segment_size: 4096,
        force_pwrite: true,
        max_spare_segments: 0,
    };
    LogStore::open(dir, wal, progress.clone()).unwrap()
}

async fn indexes(log: &mut LogStore, range: std::ops::Range<u64>) -> Vec<u64> {
    log.try_get_log_entries(range)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

#[tokio::test]
async fn append_read_truncate_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let progress = Arc::new(Progress::default());
    let mut log = open(dir.path(), &progress);
    let st = log.get_log_state().await.unwrap();
    assert_eq!((st.last_purged_log_id, st.last_log_id), (None, None));

    let membership = Entry {
        log_id: id(0, 0),
        payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], ())),
    };
    let blank = Entry {
        log_id: id(1, 1),
        payload: EntryPayload::Blank,
    };
    let mut all = vec![membership, blank];
    all.extend((2..=20).map(|i| put(1, i)));
    log.blocking_append(all.clone()).await.unwrap();
    assert_eq!(progress.flushed(), Some(20));
    assert_eq!(log.try_get_log_entries(0..).await.unwrap(), all);
    assert_eq!(indexes(&mut log, 5..8).await, [5, 6, 7]);
    assert_eq!(indexes(&mut log, 18..100).await, [18, 19, 20]);
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(id(1, 20))
    );

    // A new leader overwrites the tail.
    log.truncate(id(1, 15)).await.unwrap();
    assert_eq!(progress.flushed(), Some(14));
    assert_eq!(
        log.get_log_state().await.unwrap().last_log_id,
        Some(id(1, 14))
    );
    log.blocking_append((15..=17).map(|i| put(2, i)))
        .await
        .unwrap();
    log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
    log.save_committed(Some(id(2, 16))).await.unwrap();
    drop(log);

    let mut log = open(dir.path(), &Arc::new(Progress::default()));
    let got = log.try_get_log_entries(0..).await.unwrap();
    assert_eq!(got.len(), 18);
    assert_eq!(got[..15], all[..15]);
    assert_eq!(got[15..], [put(2, 15), put(2, 16), put(2, 17)]);
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(2, 1))
    );
    assert_eq!(log.read_committed().await.unwrap(), Some(id(2, 16)));
    let st = log.get_log_state().await.unwrap();
    assert_eq!(
        (st.last_purged_log_id, st.last_log_id),
        (None, Some(id(2, 17)))
    );
    // Appending anywhere but the end is refused.
    assert!(log.blocking_append([put(2, 30)]).await.is_err());
}

#[tokio::test]
async fn purge_keeps_entries_the_store_has_not_made_durable() {
    let dir = tempfile::tempdir().unwrap();
    let progress = Arc::new(Progress::default());
    let mut log = open(dir.path(), &progress);
    log.blocking_append((1..=300).map(|i| put(1, i)))
        .await
        .unwrap();
    let first_segment_end = log.wal().first_index();
    assert_eq!(first_segment_end, Some(1));

    // The store durably applied only up to 120: openraft's purge to 200 is logical.
    progress.set_durable_applied(120);
    log.purge(id(1, 200)).await.unwrap();
    assert_eq!(indexes(&mut log, 0..205).await, [201, 202, 203, 204]);
    let st = log.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(id(1, 200)));
    assert_eq!(log.wal().first_index(), Some(1));
    assert_eq!(read_hard_state(dir.path()).unwrap().purged, None);
    drop(log);

    // After a crash the store may be back at 120: the log still has what follows.
    let progress = Arc::new(Progress::default());
    let mut log = open(dir.path(), &progress);
    assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, None);
    assert_eq!(indexes(&mut log, 121..124).await, [121, 122, 123]);

    // Once the store is durable past the purge point, segments go.
    progress.set_durable_applied(250);
    log.purge(id(1, 200)).await.unwrap();
    let first = log.wal().first_index().unwrap();
    assert!(first > 1 && first <= 201, "WAL starts at {first}");
    assert_eq!(
        read_hard_state(dir.path()).unwrap().purged,
        Some(id(1, 200))
    );
    drop(log);

    let mut log = open(dir.path(), &Arc::new(Progress::default()));
    let st = log.get_log_state().await.unwrap();
    assert_eq!(
        (st.last_purged_log_id, st.last_log_id),
        (Some(id(1, 200)), Some(id(1, 300)))
    );
    assert_eq!(indexes(&mut log, 0..203).await, [201, 202]);
}

#[tokio::test]
async fn append_past_the_end_after_a_purge_starts_a_new_wal() {
    let dir = tempfile::tempdir().unwrap();
    let progress = Arc::new(Progress::default());
    let mut log = open(dir.path(), &progress);
    log.blocking_append((1..=10).map(|i| put(1, i)))
        .await
        .unwrap();
    // As after installing a snapshot that covers more than the log holds.
    progress.set_durable_applied(50);
    log.purge(id(3, 50)).await.unwrap();
    let st = log.get_log_state().await.unwrap();
    assert_eq!(
        (st.last_purged_log_id, st.last_log_id),
        (Some(id(3, 50)), Some(id(3, 50)))
    );
    assert_eq!(indexes(&mut log, 0..100).await, Vec::<u64>::new());

    log.blocking_append((51..=55).map(|i| put(3, i)))
        .await
        .unwrap();
    assert_eq!(indexes(&mut log, 0..100).await, [51, 52, 53, 54, 55]);
    assert!(!dir.path().join("wal.reset").exists());
    drop(log);

    let mut log = open(dir.path(), &Arc::new(Progress::default()));
    let st = log.get_log_state().await.unwrap();
    assert_eq!(
        (st.last_purged_log_id, st.last_log_id),
        (Some(id(3, 50)), Some(id(3, 55)))
    );
    assert_eq!(indexes(&mut log, 0..100).await, [51, 52, 53, 54, 55]);
}

#[tokio::test]
async fn committed_hint_is_clamped_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let progress = Arc::new(Progress::default());
    let mut log = open(dir.path(), &progress);
    assert_eq!(log.read_committed().await.unwrap(), None);
    log.blocking_append((1..=10).map(|i| put(1, i)))
        .await
        .unwrap();
    log.save_committed(Some(id(1, 8))).await.unwrap();
    assert_eq!(log.read_committed().await.unwrap(), Some(id(1, 8)));
    assert_eq!(progress.committed(), Some(8));
    // Entries past the WAL's end were never durable here: clamp to the last one.
    log.save_committed(Some(id(1, 15))).await.unwrap();
    assert_eq!(log.read_committed().await.unwrap(), Some(id(1, 10)));
    // A hint that names an entry the log does not hold is ignored.
    log.save_committed(Some(id(7, 5))).await.unwrap();
    assert_eq!(log.read_committed().await.unwrap(), None);
}

#[tokio::test]
async fn a_gap_between_the_purge_point_and_the_wal_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let progress = Arc::new(Progress::default());
        let mut log = open(dir.path(), &progress);
        log.blocking_append((1..=300).map(|i| put(1, i)))
            .await
            .unwrap();
        progress.set_durable_applied(300);
        log.purge(id(1, 200)).await.unwrap();
        assert!(log.wal().first_index().unwrap() > 3);
    }
    // The hard state claims less was purged than the WAL lost.
    let mut hard = read_hard_state(dir.path()).unwrap();
    hard.purged = Some(id(1, 2));
    write_hard_state(dir.path(), &hard).unwrap();
    let wal = WalOptions {
        segment_size: 4096,
        ..Default::default()
    };
    let err = LogStore::open(dir.path(), wal, Arc::new(Progress::default())).unwrap_err();
    assert!(err.to_string().contains("entries are missing"), "{err}");
}

#[tokio::test]
async fn an_interrupted_reset_is_finished_and_a_damaged_vote_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = open(dir.path(), &Arc::new(Progress::default()));
        log.blocking_append((1..=3).map(|i| put(1, i)))
            .await
            .unwrap();
        log.save_vote(&Vote::new(4, 2)).await.unwrap();
    }
    // A crash after the old WAL was renamed aside.
    std::fs::create_dir(dir.path().join("wal.reset")).unwrap();
    std::fs::write(dir.path().join("wal.reset").join("junk"), b"x").unwrap();
    let mut log = open(dir.path(), &Arc::new(Progress::default()));
    assert!(!dir.path().join("wal.reset").exists());
    assert_eq!(indexes(&mut log, 0..10).await, [1, 2, 3]);
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(4, 2)));
    drop(log);

    let path = dir.path().join("raft-state");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[14] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let wal = WalOptions {
        segment_size: 4096,
        ..Default::default()
    };
    let err = LogStore::open(dir.path(), wal, Arc::new(Progress::default())).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
}
