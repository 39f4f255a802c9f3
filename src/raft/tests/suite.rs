//! openraft's storage conformance suite against the WAL log store and the state machine.

use std::sync::Arc;

use mnemo_storage::wal::WalOptions;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

use super::mem_store::MemStore;
use crate::raft::state_machine::{DurabilityPolicy, StateMachine};
use crate::raft::{LogStore, Progress, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine<MemStore>, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachine<MemStore>), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let progress = Arc::new(Progress::default());
        let wal = WalOptions {
            segment_size: 64 << 10,
            ..Default::default()
        };
        let log = LogStore::open(dir.path(), wal, progress.clone()).unwrap();
        let sm = StateMachine::open(
            Arc::new(MemStore::default()),
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
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}
