//! An [`ApplyStore`] in memory: puts and deletes of single keys, one revision per
//! command, meta keys, and a "disk" image that only durable commits and `sync` update.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mnemo_proto::etcdserverpb::{PutResponse, ResponseHeader};
use mnemo_storage::Durability;
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::command::{Command, CommandResponse, Op};
use crate::error::{Error, Result};
use crate::mvcc::Applied;
use crate::raft::codec::Reader;
use crate::raft::state_machine::{ApplyBatch, ApplyStore, FrozenStore};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemState {
    pub kv: BTreeMap<Vec<u8>, Vec<u8>>,
    pub meta: BTreeMap<Vec<u8>, Vec<u8>>,
    pub revision: i64,
}

#[derive(Debug, Default)]
pub struct MemStore {
    current: Mutex<MemState>,
    durable: Mutex<MemState>,
    pub durable_commits: AtomicU64,
    pub deferred_commits: AtomicU64,
    pub freezes: AtomicU64,
    /// The thread each apply batch ran on, in order.
    pub batch_threads: Mutex<Vec<std::thread::ThreadId>>,
    /// While set, writing out a frozen state waits (see [`MemStore::hold_snapshot_writes`]).
    write_gate: Arc<(Mutex<bool>, Condvar)>,
}

impl MemStore {
    /// A store reopened after a crash: only what was durable.
    pub fn after_crash(&self) -> MemStore {
        let d = self.durable.lock().clone();
        MemStore {
            current: Mutex::new(d.clone()),
            durable: Mutex::new(d),
            ..Default::default()
        }
    }

    /// A store reopened after a clean stop or a process crash (the page cache survives).
    pub fn reopen(&self) -> MemStore {
        let c = self.current.lock().clone();
        MemStore {
            current: Mutex::new(c),
            durable: Mutex::new(self.durable.lock().clone()),
            ..Default::default()
        }
    }

    pub fn state(&self) -> MemState {
        self.current.lock().clone()
    }

    pub fn durable_state(&self) -> MemState {
        self.durable.lock().clone()
    }
}

fn encode_state(s: &MemState) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&s.revision.to_le_bytes());
    for (tag, map) in [(1u8, &s.kv), (2u8, &s.meta)] {
        for (k, v) in map {
            out.push(tag);
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
    }
    out
}

fn decode_state(bytes: &[u8]) -> Result<MemState> {
    let bad = |e: crate::raft::codec::CodecError| Error::Internal(e.to_string());
    let mut r = Reader::new(bytes);
    let mut s = MemState {
        revision: r.u64().map_err(bad)? as i64,
        ..Default::default()
    };
    while r.remaining() > 0 {
        let tag = r.u8().map_err(bad)?;
        let n = r.u32().map_err(bad)? as usize;
        let k = r.bytes(n).map_err(bad)?.to_vec();
        let n = r.u32().map_err(bad)? as usize;
        let v = r.bytes(n).map_err(bad)?.to_vec();
        match tag {
            1 => s.kv.insert(k, v),
            _ => s.meta.insert(k, v),
        };
    }
    Ok(s)
}

#[derive(Debug)]
pub struct MemBatch<'a> {
    store: &'a MemStore,
    current: MutexGuard<'a, MemState>,
    work: MemState,
}

/// The encoded state as of [`ApplyStore::freeze`], and the store's write gate.
pub struct FrozenMem(Vec<u8>, Arc<(Mutex<bool>, Condvar)>);

impl FrozenStore for FrozenMem {
    fn write_to(&self, path: &Path) -> Result<u64> {
        let (held, cv) = &*self.1;
        let mut held = held.lock();
        while *held {
            cv.wait(&mut held);
        }
        drop(held);
        std::fs::write(path, &self.0).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(self.0.len() as u64)
    }
}

impl MemStore {
    /// Makes snapshot writes wait (`true`) or lets them go (`false`).
    pub fn hold_snapshot_writes(&self, hold: bool) {
        let (held, cv) = &*self.write_gate;
        *held.lock() = hold;
        cv.notify_all();
    }

    /// The state as a snapshot file holds it.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<MemState> {
        decode_state(bytes)
    }
}

impl ApplyStore for MemStore {
    type Batch<'a> = MemBatch<'a>;

    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.current.lock().meta.get(key).cloned())
    }

    fn begin_apply(&self) -> Result<MemBatch<'_>> {
        self.batch_threads.lock().push(std::thread::current().id());
        let current = self.current.lock();
        let work = current.clone();
        Ok(MemBatch {
            store: self,
            current,
            work,
        })
    }

    fn sync(&self) -> Result<()> {
        let c = self.current.lock().clone();
        *self.durable.lock() = c;
        Ok(())
    }

    type Point = MemState;
    fn commit_point(&self) -> MemState {
        self.current.lock().clone()
    }

    fn checkpoint(&self, point: &MemState) -> Result<()> {
        let mut durable = self.durable.lock();
        if point.revision >= durable.revision {
            *durable = point.clone();
            self.durable_commits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    type Frozen = FrozenMem;
    fn freeze(&self) -> Result<FrozenMem> {
        self.freezes.fetch_add(1, Ordering::SeqCst);
        Ok(FrozenMem(
            encode_state(&self.current.lock()),
            Arc::clone(&self.write_gate),
        ))
    }

    fn restore_from(&self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| Error::Internal(e.to_string()))?;
        let s = decode_state(&bytes)?;
        *self.current.lock() = s.clone();
        *self.durable.lock() = s;
        Ok(())
    }
}

impl ApplyBatch for MemBatch<'_> {
    fn apply(&mut self, cmd: &Command) -> CommandResponse {
        match &cmd.op {
            Some(Op::Put(p)) => {
                self.work.revision += 1;
                self.work.kv.insert(p.key.clone(), p.value.clone());
                CommandResponse::Put(PutResponse {
                    header: Some(ResponseHeader {
                        revision: self.work.revision,
                        ..Default::default()
                    }),
                    prev_kv: None,
                })
            }
            _ => CommandResponse::Error(Error::Unsupported("this command in MemStore")),
        }
    }

    fn set_meta(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.work.meta.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn commit(mut self, durability: Durability) -> Result<Applied> {
        let revision = self.work.revision;
        *self.current = std::mem::take(&mut self.work);
        match durability {
            Durability::Durable => {
                *self.store.durable.lock() = self.current.clone();
                self.store.durable_commits.fetch_add(1, Ordering::Relaxed);
            }
            Durability::Deferred => {
                self.store.deferred_commits.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(Applied {
            revision,
            ..Default::default()
        })
    }
}
