//! An in-memory [`History`] for tests of the hub and the Watch service: a revision
//! log of events with etcd's key semantics, and compaction.

use std::collections::BTreeMap;

use mnemo_proto::mvccpb::event::EventType;
use mnemo_proto::mvccpb::{Event, KeyValue};
use parking_lot::RwLock;

use super::History;
use crate::error::{Error, Result};
use crate::mvcc::Applied;

#[derive(Debug, Default)]
pub(crate) struct FakeHistory {
    state: RwLock<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    revision: i64,
    compact: i64,
    log: Vec<Event>,
    live: BTreeMap<Vec<u8>, KeyValue>,
}

/// One operation of a fake transaction.
pub(crate) enum Op<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
}

impl FakeHistory {
    /// Applies one transaction (one revision) and returns what the state machine would
    /// hand to the hub. A transaction that changes nothing takes no revision.
    pub(crate) fn txn(&self, ops: &[Op<'_>]) -> Applied {
        let mut st = self.state.write();
        let rev = st.revision + 1;
        let mut events = Vec::new();
        for op in ops {
            match op {
                Op::Put(key, value) => {
                    let prev = st.live.get(*key).cloned();
                    let kv = KeyValue {
                        key: key.to_vec(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        value: value.to_vec(),
                        lease: 0,
                    };
                    st.live.insert(key.to_vec(), kv.clone());
                    events.push(Event {
                        r#type: EventType::Put as i32,
                        kv: Some(kv),
                        prev_kv: prev,
                    });
                }
                Op::Delete(key) => {
                    if let Some(prev) = st.live.remove(*key) {
                        events.push(Event {
                            r#type: EventType::Delete as i32,
                            kv: Some(KeyValue {
                                key: key.to_vec(),
                                mod_revision: rev,
                                ..KeyValue::default()
                            }),
                            prev_kv: Some(prev),
                        });
                    }
                }
            }
        }
        if !events.is_empty() {
            st.revision = rev;
            st.log.extend(events.iter().cloned());
        }
        Applied {
            events,
            revision: st.revision,
            ..Applied::default()
        }
    }

    pub(crate) fn put(&self, key: &[u8], value: &[u8]) -> Applied {
        self.txn(&[Op::Put(key, value)])
    }

    pub(crate) fn delete(&self, key: &[u8]) -> Applied {
        self.txn(&[Op::Delete(key)])
    }

    /// Every event still in the log, in revision order.
    pub(crate) fn log(&self) -> Vec<Event> {
        self.state.read().log.clone()
    }

    pub(crate) fn compact(&self, rev: i64) {
        let mut st = self.state.write();
        st.compact = rev;
        st.log
            .retain(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision > rev));
    }
}

fn in_range(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}

impl History for FakeHistory {
    fn current_revision(&self) -> i64 {
        self.state.read().revision
    }

    fn compact_revision(&self) -> i64 {
        self.state.read().compact
    }

    fn events_since(
        &self,
        start_rev: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
    ) -> Result<Vec<Event>> {
        let st = self.state.read();
        if st.compact > 0 && start_rev <= st.compact {
            return Err(Error::Compacted);
        }
        Ok(st
            .log
            .iter()
            .filter(|e| {
                e.kv.as_ref().is_some_and(|kv| {
                    kv.mod_revision >= start_rev && in_range(&kv.key, key, range_end)
                })
            })
            .take(limit)
            .cloned()
            .collect())
    }
}
