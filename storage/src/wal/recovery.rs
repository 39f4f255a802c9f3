//! Opening a WAL directory: replay every segment in order, rebuild the in-memory index,
//! and cut a torn tail.
//!
//! Rules (docs/wal.md, "Recovery"):
//! * Segments `{id}.wal` must have consecutive ids; older ones before a gap are left over
//!   from an interrupted purge and are removed. `.tmp` files are removed.
//! * Every segment header must be valid (a segment gets its final name only once its header
//!   is durable) and continue the previous segment (`first_seq`, `first_index`).
//! * Records are accepted while each has the next seq. The first position that does not
//!   hold the next record ends the log. In a segment that is not the last, the next
//!   segment's header must start exactly there; otherwise acknowledged data is missing.
//! * In the last segment, if any later well-formed record (seq >= the missing one) says
//!   the missing seq was already durable when it was written, the missing record had been
//!   acknowledged: `Corrupted` at that offset. Otherwise it is a torn, unacknowledged tail:
//!   it and every later record of this generation are zeroed so no stale record can ever
//!   follow a newer one.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::backend::StorageBackend;
use crate::error::{Location, Result, StorageError};

use super::dir::WalDir;
use super::index::{DiskLoc, LogIndex, Slot};
use super::record::{
    decode_record, framed_len, Decoded, RecordKind, SegmentHeader, NO_INDEX, RECORD_ALIGN,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use super::segment::{
    parse_name, prepare_segment, segment_name, ActiveSegment, FileKind, SegmentFile,
};

/// What opening the WAL found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files replayed.
    pub segments: usize,
    /// Records (entries and truncations) read back.
    pub records: u64,
    /// Bytes of a torn, unacknowledged tail that were zeroed.
    pub truncated_bytes: u64,
    /// Leftover files (`.tmp`, segments from an interrupted purge) removed.
    pub removed_files: usize,
}

/// The state recovery hands to the live WAL.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub index: LogIndex,
    pub next_seq: u64,
    pub segments: BTreeMap<u64, Arc<dyn StorageBackend>>,
    pub active: ActiveSegment,
    pub spares: Vec<String>,
    pub report: RecoveryReport,
}

fn corrupted(segment: u64, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::corrupted(
        Location::Segment {
            file: segment_name(segment),
            offset,
        },
        reason,
    )
}

fn read_all(b: &dyn StorageBackend) -> Result<Vec<u8>> {
    let len = usize::try_from(b.len()?)
        .map_err(|_| StorageError::InvalidArgument("segment too large".into()))?;
    let mut buf = vec![0u8; len];
    b.read_at(0, &mut buf)?;
    Ok(buf)
}

pub(crate) fn recover(dir: &dyn WalDir, segment_size: u64) -> Result<Recovered> {
    let mut report = RecoveryReport::default();
    let mut ids = Vec::new();
    let mut spares = Vec::new();
    let mut removed_any = false;
    for name in dir.list()? {
        match parse_name(&name) {
            Some(FileKind::Segment(id)) => ids.push(id),
            Some(FileKind::Spare(_)) => spares.push(name),
            Some(FileKind::Temp(_)) => {
                dir.remove(&name)?;
                report.removed_files += 1;
                removed_any = true;
            }
            None => {}
        }
    }
    ids.sort_unstable();
    spares.sort();
    // Segments before the last gap were being purged when the process stopped.
    if let Some(gap) = ids.windows(2).rposition(|w| w[1] != w[0] + 1) {
        for &id in &ids[..=gap] {
            tracing::warn!(segment = id, "removing WAL segment left over from a purge");
            dir.remove(&segment_name(id))?;
            report.removed_files += 1;
        }
        ids.drain(..=gap);
        removed_any = true;
    }
    if removed_any {
        dir.sync_dir()?;
    }

    let Some(&last_id) = ids.last() else {
        // A fresh WAL (or one whose first segment never got its final name).
        let header = SegmentHeader {
            segment_id: 1,
            first_index: NO_INDEX,
            first_seq: 1,
        };
        let spare = spares.pop();
        let file = match spare.as_deref() {
            Some(name) => SegmentFile::Spare(name),
            None => SegmentFile::New,
        };
        let active = prepare_segment(dir, header, file, segment_size)?;
        let mut segments = BTreeMap::new();
        segments.insert(active.id, active.backend.clone());
        return Ok(Recovered {
            index: LogIndex::new(None),
            next_seq: 1,
            segments,
            active,
            spares,
            report,
        });
    };

    let mut index = LogIndex::new(None);
    let mut segments = BTreeMap::new();
    let mut expected_seq = 0;
    // Where the previous segment's records ended: (segment, offset).
    let mut prev_end: Option<(u64, u64)> = None;
    let mut active = None;
    for &id in &ids {
        let backend = dir.open(&segment_name(id))?;
        let bytes = read_all(backend.as_ref())?;
        let header = SegmentHeader::decode(&bytes).map_err(|r| corrupted(id, 0, r))?;
        if header.segment_id != id {
            return Err(corrupted(id, 0, "segment header names a different segment"));
        }
        let header_next = (header.first_index != NO_INDEX).then_some(header.first_index);
        match prev_end {
            None => {
                expected_seq = header.first_seq;
                index = LogIndex::new(header_next);
            }
            Some((seg, off)) => {
                if header.first_seq != expected_seq || header_next != index.next() {
                    return Err(corrupted(
                        seg,
                        off,
                        format!(
                            "log ends here but segment {} starts at seq {} (expected {})",
                            segment_name(id),
                            header.first_seq,
                            expected_seq
                        ),
                    ));
                }
            }
        }
        report.segments += 1;
        let mut pos = SEGMENT_HEADER_LEN;
        while let Decoded::Valid(r) = decode_record(&bytes, pos) {
            if r.seq != expected_seq {
                break;
            }
            match r.kind {
                RecordKind::Entry => {
                    if !index.accepts(r.index) {
                        return Err(corrupted(
                            id,
                            pos as u64,
                            format!("entry {} does not follow {:?}", r.index, index.last()),
                        ));
                    }
                    let loc = DiskLoc {
                        segment: id,
                        offset: pos as u64,
                        len: r.len,
                        seq: r.seq,
                    };
                    index.push(r.index, Slot::Disk(loc));
                }
                RecordKind::Truncate => {
                    if index.next().is_some_and(|n| r.index > n) {
                        return Err(corrupted(id, pos as u64, "truncation beyond the log's end"));
                    }
                    index.truncate(r.index);
                }
            }
            report.records += 1;
            expected_seq += 1;
            pos += framed_len(r.len as usize);
        }
        if id == last_id {
            report.truncated_bytes = cut_tail(backend.as_ref(), &bytes, id, pos, expected_seq)?;
            // What we read may be only in the page cache (the previous process died, the
            // machine did not): make it durable before new records vouch for it.
            backend.sync_data()?;
            active = Some(ActiveSegment {
                id,
                backend: backend.clone(),
                pos: pos as u64,
                capacity: bytes.len() as u64,
            });
        }
        segments.insert(id, backend);
        prev_end = Some((id, pos as u64));
    }
    let active = active.ok_or(StorageError::Closed)?;
    Ok(Recovered {
        index,
        next_seq: expected_seq,
        segments,
        active,
        spares,
        report,
    })
}

/// Handles the end of the log at `end` in the last segment (see the module docs).
/// Returns the number of bytes zeroed.
fn cut_tail(
    backend: &dyn StorageBackend,
    bytes: &[u8],
    segment: u64,
    end: usize,
    expected_seq: u64,
) -> Result<u64> {
    let mut dirty_end = end;
    match decode_record(bytes, end) {
        // Zeros, or a well-formed record (a stale one of an older generation, or a later
        // seq, which the scan below judges).
        Decoded::Zero | Decoded::Valid(_) => {}
        Decoded::Invalid => {
            // The record that was being written when the process stopped, if its seq
            // field made it to disk (anything else here is stale bytes of an older
            // generation, or the segment's unusable last few bytes).
            let raw = |at: usize, n: usize| bytes.get(end + at..end + at + n);
            let seq = raw(8, 8).map(|b| b.iter().rev().fold(0u64, |a, &x| a << 8 | u64::from(x)));
            if seq == Some(expected_seq) {
                let declared = raw(4, 4)
                    .map(|b| b.iter().rev().fold(0usize, |a, &x| a << 8 | usize::from(x)))
                    .unwrap_or(0);
                dirty_end = end + framed_len(declared).min(bytes.len() - end);
            }
        }
    }
    let mut q = end;
    while q + RECORD_HEADER_LEN <= bytes.len() {
        if let Decoded::Valid(r) = decode_record(bytes, q) {
            if r.seq >= expected_seq {
                if r.synced_seq >= expected_seq {
                    return Err(corrupted(
                        segment,
                        end as u64,
                        format!(
                            "record seq {expected_seq} is unreadable but seq {} at offset {q} \
                             was written after it was durable",
                            r.seq
                        ),
                    ));
                }
                dirty_end = dirty_end.max(q + framed_len(r.len as usize));
            }
        }
        q += RECORD_ALIGN;
    }
    if dirty_end > end {
        let zeros = vec![0u8; dirty_end - end];
        backend.write_at(end as u64, &zeros)?;
        backend.sync_data()?;
        tracing::info!(
            segment,
            offset = end,
            bytes = dirty_end - end,
            "cut torn WAL tail"
        );
    }
    Ok((dirty_end - end) as u64)
}
