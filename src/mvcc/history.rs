//! Reading history in revision order: events for watchers, and the consistency hashes.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use mnemo_proto::mvccpb::{event::EventType, Event};
use mnemo_storage::{ReadTransaction, Table};

use super::index::KeyRange;
use super::record::{
    Record, RecordKind, ALARM_TABLE, AUTH_TABLE, KV_TABLE, LEASE_TABLE, META_TABLE,
    RAFT_META_PREFIX,
};
use super::revision::Revision;
use super::store::{read_kv, Store};
use super::History;
use crate::error::{Error, Result};

/// A page-file snapshot that matches the index exactly, with what it holds beyond it.
struct Pinned {
    rtx: ReadTransaction,
    current: i64,
    compact: i64,
    /// History records compaction dropped but the page file still holds.
    garbage: HashSet<Revision>,
}

impl Store {
    /// Takes the apply lock for a moment, so that no batch is between its page-file
    /// commit and its index update: the snapshot then holds exactly the published state.
    fn pin(&self) -> Result<Pinned> {
        let _apply = self.apply_gate.enter();
        let st = self.state.read();
        Ok(Pinned {
            rtx: st.db.begin_read()?,
            current: st.current_rev,
            compact: st.compact_rev,
            garbage: st.pending_removal.iter().copied().collect(),
        })
    }

    /// Events with revision >= `start_rev` on keys in [key, range_end) (etcd's range
    /// rules), in revision order, at most `limit`, each with `prev_kv` filled where a
    /// previous version exists.
    pub fn events_since(
        &self,
        start_rev: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
    ) -> Result<Vec<Event>> {
        let range = KeyRange::new(key, range_end);
        let (rtx, current, compact) = {
            let st = self.state.read();
            (st.db.begin_read()?, st.current_rev, st.compact_rev)
        };
        if compact > 0 && start_rev <= compact {
            return Err(Error::Compacted);
        }
        let start = start_rev.max(1);
        if start > current || limit == 0 || range.bounds().is_none() {
            return Ok(Vec::new());
        }
        let table = rtx.open_table(KV_TABLE)?;
        let lo = Revision::first_of(start).encode();
        let hi = Revision::first_of(current + 1).encode();
        let mut found: Vec<(Revision, Event)> = Vec::new();
        for e in table.range(lo..hi)? {
            let e = e?;
            let rev = Revision::decode(e.key())
                .ok_or_else(|| Error::Internal(format!("mvcc: malformed kv key {:?}", e.key())))?;
            let rec = Record::decode(e.key(), e.value())?;
            if !range.contains(rec.key) {
                continue;
            }
            let kind = match rec.kind {
                RecordKind::Put => EventType::Put,
                RecordKind::Tombstone => EventType::Delete,
            };
            found.push((
                rev,
                Event {
                    r#type: kind as i32,
                    kv: Some(rec.to_kv(rev)),
                    prev_kv: None,
                },
            ));
            if found.len() >= limit {
                break;
            }
        }
        // Previous versions come from the index; a compaction since the snapshot could
        // have dropped them, and then the events themselves are compacted.
        let prevs: Vec<_> = {
            let st = self.state.read();
            if st.compact_rev > 0 && start_rev <= st.compact_rev {
                return Err(Error::Compacted);
            }
            found
                .iter()
                .map(|(rev, ev)| {
                    let k = ev.kv.as_ref().map_or(&[][..], |kv| &kv.key[..]);
                    st.index
                        .get(k)
                        .and_then(|e| e.before(*rev))
                        .filter(|p| !p.tombstone)
                })
                .collect()
        };
        let mut events = Vec::with_capacity(found.len());
        for ((_, mut ev), prev) in found.into_iter().zip(prevs) {
            if let (Some(p), Some(kv)) = (prev, &ev.kv) {
                ev.prev_kv = Some(read_kv(&table, &kv.key, p)?);
            }
            events.push(ev);
        }
        Ok(events)
    }

    /// A crc32c of the whole replicated state (history as kept, leases, alarms and the
    /// store's revisions; not raft metadata), the same on every member at the same
    /// applied state.
    pub fn hash(&self) -> Result<u32> {
        let p = self.pin()?;
        let mut crc = hash_history(&p, p.current)?;
        for name in [LEASE_TABLE, ALARM_TABLE, META_TABLE, AUTH_TABLE] {
            crc = crc32c::crc32c_append(crc, name.as_bytes());
            for e in p.rtx.open_table(name)?.iter()? {
                let e = e?;
                if name == META_TABLE && e.key().starts_with(RAFT_META_PREFIX) {
                    continue;
                }
                crc = crc32c::crc32c_append(crc, e.key());
                crc = crc32c::crc32c_append(crc, e.value());
            }
        }
        Ok(crc)
    }

    /// etcd's HashKV: a crc32c of the kept history up to `rev` (0: the current revision),
    /// with the compact revision and the revision hashed. Two members that applied the
    /// same commands give the same hash for the same revision and compact revision.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64)> {
        let p = self.pin()?;
        if rev > 0 && rev < p.compact {
            return Err(Error::Compacted);
        }
        if rev > p.current {
            return Err(Error::FutureRev);
        }
        let rev = if rev <= 0 { p.current } else { rev };
        Ok((hash_history(&p, rev)?, p.compact, rev))
    }
}

/// crc32c over (revision key, sealed record) of every kept record with main revision <=
/// `upto`, in revision order.
fn hash_history(p: &Pinned, upto: i64) -> Result<u32> {
    let table: Table<'_> = p.rtx.open_table(KV_TABLE)?;
    let hi = Revision::first_of(upto.saturating_add(1)).encode();
    let mut crc = 0u32;
    for e in table.range(..hi)? {
        let e = e?;
        let rev = Revision::decode(e.key())
            .ok_or_else(|| Error::Internal(format!("mvcc: malformed kv key {:?}", e.key())))?;
        if p.garbage.contains(&rev) {
            continue;
        }
        crc = crc32c::crc32c_append(crc, e.key());
        crc = crc32c::crc32c_append(crc, e.value());
    }
    Ok(crc)
}

impl History for Store {
    fn set_watcher_counts(&self, watchers: usize, prev_kv: usize) {
        self.watchers.store(watchers, Ordering::Release);
        self.prev_kv_watchers.store(prev_kv, Ordering::Release);
    }

    fn current_revision(&self) -> i64 {
        Store::current_revision(self)
    }

    fn compact_revision(&self) -> i64 {
        Store::compact_revision(self)
    }

    fn events_since(
        &self,
        start_rev: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
    ) -> Result<Vec<Event>> {
        Store::events_since(self, start_rev, key, range_end, limit)
    }
}
