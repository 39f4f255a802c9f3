//! Multi-version key-value store with etcd's semantics, over the page file.
//!
//! CONTRACT (the interface the raft state machine, the watch hub and the gRPC layer use;
//! bodies are filled in by the MVCC implementation).

pub mod watch;

use std::path::Path;

use mnemo_proto::etcdserverpb::{AlarmMember, RangeRequest, RangeResponse};
use mnemo_proto::mvccpb::Event;
use mnemo_storage::Durability;

use crate::command::{Command, CommandResponse};
use crate::error::Result;

/// One lease as stored by the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    /// TTL in seconds given at grant.
    pub ttl: i64,
    /// Remaining TTL recorded by the last checkpoint, 0 if none.
    pub remaining_ttl: i64,
}

/// What a committed batch of commands changed, for the watch hub and the lessor.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Every event of the batch in revision order (prev_kv always filled when one exists;
    /// the watch hub strips it for watchers that did not ask).
    pub events: Vec<Event>,
    /// Store revision after the batch.
    pub revision: i64,
    pub leases_granted: Vec<LeaseInfo>,
    pub leases_revoked: Vec<i64>,
}

/// The store. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct Store {}

impl Store {
    pub fn open(_path: &Path) -> Result<Store> {
        todo!()
    }
    pub fn current_revision(&self) -> i64 {
        todo!()
    }
    pub fn compact_revision(&self) -> i64 {
        todo!()
    }
    pub fn range(&self, _req: &RangeRequest) -> Result<RangeResponse> {
        todo!()
    }
    pub fn get_meta(&self, _key: &[u8]) -> Result<Option<Vec<u8>>> {
        todo!()
    }
    pub fn begin_apply(&self) -> Result<Applier<'_>> {
        todo!()
    }
    pub fn events_since(
        &self,
        _start_rev: i64,
        _key: &[u8],
        _range_end: &[u8],
        _limit: usize,
    ) -> Result<Vec<Event>> {
        todo!()
    }
    pub fn hash(&self) -> Result<u32> {
        todo!()
    }
    pub fn hash_kv(&self, _rev: i64) -> Result<(u32, i64, i64)> {
        todo!()
    }
    pub fn leases(&self) -> Vec<LeaseInfo> {
        todo!()
    }
    pub fn lease(&self, _id: i64) -> Option<LeaseInfo> {
        todo!()
    }
    pub fn lease_keys(&self, _id: i64) -> Vec<Vec<u8>> {
        todo!()
    }
    pub fn alarms(&self) -> Vec<AlarmMember> {
        todo!()
    }
    pub fn db_size(&self) -> u64 {
        todo!()
    }
    pub fn db_size_in_use(&self) -> u64 {
        todo!()
    }
    pub fn defrag(&self) -> Result<()> {
        todo!()
    }
    pub fn snapshot_to(&self, _path: &Path) -> Result<u64> {
        todo!()
    }
    pub fn sync(&self) -> Result<()> {
        todo!()
    }
}

/// An open apply batch: holds the store's single writer until committed.
#[derive(Debug)]
pub struct Applier<'a> {
    _store: &'a Store,
}

impl Applier<'_> {
    pub fn apply(&mut self, _cmd: &Command) -> CommandResponse {
        todo!()
    }
    pub fn set_meta(&mut self, _key: &[u8], _value: &[u8]) -> Result<()> {
        todo!()
    }
    pub fn commit(self, _durability: Durability) -> Result<Applied> {
        todo!()
    }
}
