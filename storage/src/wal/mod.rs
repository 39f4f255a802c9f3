//! A segmented write-ahead log with group commit, for the Raft log store.
//!
//! Records carry a Raft index, a type byte and an opaque payload; indexes are contiguous.
//! Appenders queue records (the index is checked and a sequence number assigned under one
//! lock, so concurrent appenders cannot interleave wrongly); one writer thread writes all
//! queued records and makes them durable with a single fdatasync, then acknowledges them
//! in order. Truncating the tail appends a truncation record (never rewrites the past);
//! purging removes whole segments, keeping a few as spares to recycle. docs/wal.md has the
//! byte layout, the crash analysis and the recovery rules.
//!
//! ```text
//! append(5..=7) ─┐                          ┌─ write 5..=9 ─ fdatasync ─ ack 5..=7, 8..=9
//! append(8..=9) ─┴─ queue ─ writer thread ──┤
//! append(10)    ───────────── (next batch) ─└─ write 10 ─ fdatasync ─ ack 10
//! ```

pub mod dir;
mod index;
pub mod record;
mod recovery;
mod segment;
mod uring;
mod writer;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::backend::StorageBackend;
use crate::error::{Location, Result, StorageError};

pub use dir::{FaultDir, FsDir, WalDir};
pub use recovery::RecoveryReport;
pub use segment::{parse_name as segment_kind, FileKind};

use index::{DiskLoc, LogIndex, Slot};
use record::{
    decode_record, framed_len, Decoded, RecordKind, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use writer::Writer;

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Raft log index; a batch's indexes must continue the log without gaps.
    pub index: u64,
    /// Opaque to the WAL (e.g. normal entry / membership / blank).
    pub record_type: u8,
    pub payload: Vec<u8>,
}

/// How appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPath {
    /// Linked write + fdatasync submissions, two batches in flight.
    IoUring,
    /// `pwrite` + `fdatasync` from the writer thread.
    Pwrite,
}

#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Size of each preallocated segment file.
    pub segment_size: u64,
    /// Use pwrite + fdatasync even where io_uring works.
    pub force_pwrite: bool,
    /// Purged segments kept for recycling instead of being removed.
    pub max_spare_segments: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            force_pwrite: false,
            max_spare_segments: 2,
        }
    }
}

/// Counters since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// fdatasyncs of batches (not counting segment creation).
    pub fsyncs: u64,
    pub batches: u64,
    /// Entries made durable.
    pub records: u64,
    /// Segments started after the first (rollovers).
    pub rollovers: u64,
    /// Rollovers into a file zero-filled ahead of time by the preallocation thread.
    pub preallocated: u64,
    /// Batches an appender wrote itself ([`Wal::append_inline`]).
    pub inline: u64,
}

/// Called once with the outcome of an append or truncation: `Ok` only when durable.
pub type AppendCallback = Box<dyn FnOnce(Result<()>) + Send>;
type PurgeCallback = Box<dyn FnOnce(Result<usize>) + Send>;

/// Work for the writer thread, in queue order.
pub(crate) enum Op {
    Append {
        records: Vec<Arc<Record>>,
        first_seq: u64,
        done: AppendCallback,
    },
    Truncate {
        from: u64,
        seq: u64,
        done: AppendCallback,
    },
    Purge {
        before: u64,
        done: PurgeCallback,
    },
}

#[derive(Debug)]
pub(crate) struct State {
    /// Includes accepted, not yet durable entries (as `Slot::Pending`).
    index: LogIndex,
    /// Seq of the next record to be accepted.
    next_seq: u64,
    queue: Vec<Op>,
    /// Live segments, for reads.
    segments: BTreeMap<u64, Arc<dyn StorageBackend>>,
    /// A write or sync failed: nothing more is accepted.
    failed: bool,
    closing: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Batch fdatasyncs: on io_uring the linked write + fdatasync, from submission to
    /// completion; on the pwrite path the fdatasync alone.
    fsync_latency: crate::histogram::LatencyHistogram,
    fsyncs: AtomicU64,
    batches: AtomicU64,
    records: AtomicU64,
    pub(crate) rollovers: AtomicU64,
    pub(crate) preallocated: AtomicU64,
    pub(crate) inline: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Signalled when work is queued or the WAL closes.
    wake: Condvar,
    stats: Counters,
}

/// The write-ahead log. Dropping it finishes queued work and stops the writer.
#[derive(Debug)]
pub struct Wal {
    shared: Arc<Shared>,
    /// The writer's state: held by the writer thread while it works, and by an appender
    /// writing inline ([`Wal::append_inline`]).
    writer_state: Arc<Mutex<Writer>>,
    writer: Option<JoinHandle<()>>,
    io_path: IoPath,
    report: RecoveryReport,
    max_payload: usize,
}

impl Wal {
    /// Opens (creating if needed) the WAL in directory `path`.
    pub fn open(path: impl AsRef<Path>, options: WalOptions) -> Result<Wal> {
        Self::open_dir(Arc::new(FsDir::open(path)?), options)
    }

    /// Opens the WAL in `dir`, recovering what is there.
    pub fn open_dir(dir: Arc<dyn WalDir>, options: WalOptions) -> Result<Wal> {
        let min = (SEGMENT_HEADER_LEN + framed_len(0)) as u64;
        if options.segment_size < min {
            return Err(StorageError::InvalidArgument(format!(
                "segment_size must be at least {min}"
            )));
        }
        let rec = recovery::recover(dir.as_ref(), options.segment_size)?;
        let (uring, io_path) = choose_io_path(&options, rec.active.backend.as_ref());
        tracing::info!(?io_path, report = ?rec.report, "WAL opened");
        let state = State {
            next_seq: rec.next_seq,
            queue: Vec::new(),
            segments: rec.segments,
            index: rec.index.clone(),
            failed: false,
            closing: false,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            wake: Condvar::new(),
            stats: Counters::default(),
        });
        let writer = Writer::new(
            shared.clone(),
            dir,
            rec.active,
            rec.spares,
            options.segment_size,
            options.max_spare_segments,
            rec.next_seq - 1,
            rec.index.next(),
            uring,
        );
        let writer_state = Arc::new(Mutex::new(writer));
        let state = writer_state.clone();
        let handle = std::thread::Builder::new()
            .name("mnemo-wal-writer".into())
            .spawn(move || Writer::run(&state))?;
        let max_payload = (options.segment_size as usize - SEGMENT_HEADER_LEN - framed_len(0))
            .min(u32::MAX as usize);
        Ok(Wal {
            shared,
            writer_state,
            writer: Some(handle),
            io_path,
            report: rec.report,
            max_payload,
        })
    }

    /// Which I/O path appends use.
    pub fn io_path(&self) -> IoPath {
        self.io_path
    }

    /// What recovery found at open.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    pub fn stats(&self) -> WalStats {
        let c = &self.shared.stats;
        WalStats {
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            rollovers: c.rollovers.load(Ordering::Relaxed),
            preallocated: c.preallocated.load(Ordering::Relaxed),
            inline: c.inline.load(Ordering::Relaxed),
        }
    }

    /// How long batch fdatasyncs took since open: on io_uring the linked write +
    /// fdatasync, from submission to completion; on the pwrite path the fdatasync alone.
    pub fn fsync_latency(&self) -> crate::histogram::HistogramSnapshot {
        self.shared.stats.fsync_latency.snapshot()
    }

    /// Appends `records` and returns once they are durable.
    pub fn append(&self, records: Vec<Record>) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.append_with(
            records,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )?;
        rx.recv().map_err(|_| StorageError::Closed)?
    }

    /// Queues `records`; `done` runs (on the writer thread) once they are durable or failed.
    ///
    /// The records are readable as soon as this returns. An `Err` here (non-contiguous
    /// indexes, oversized payload, failed or closed WAL) means `done` will not be called.
    pub fn append_with(&self, records: Vec<Record>, done: AppendCallback) -> Result<()> {
        let mut st = self.shared.state.lock();
        let Some((records, first_seq)) = self.admit(&mut st, records)? else {
            drop(st);
            done(Ok(()));
            return Ok(());
        };
        st.queue.push(Op::Append {
            records,
            first_seq,
            done,
        });
        drop(st);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// [`Wal::append_with`], except that when the writer is idle (nothing queued, nothing
    /// in flight) the calling thread writes and syncs the records itself and `done` runs
    /// before this returns. A lone appender saves the two thread wake-ups of a hand-off to
    /// the writer thread; otherwise the records join the queue as usual.
    pub fn append_inline(&self, records: Vec<Record>, done: AppendCallback) -> Result<()> {
        let Some(mut writer) = self.writer_state.try_lock() else {
            return self.append_with(records, done);
        };
        if !writer.idle() {
            drop(writer);
            return self.append_with(records, done);
        }
        let mut st = self.shared.state.lock();
        let Some((records, first_seq)) = self.admit(&mut st, records)? else {
            drop(st);
            drop(writer);
            done(Ok(()));
            return Ok(());
        };
        let op = Op::Append {
            records,
            first_seq,
            done,
        };
        if !st.queue.is_empty() {
            // Earlier records wait for the writer thread: these go after them.
            st.queue.push(op);
            drop(st);
            drop(writer);
            self.shared.wake.notify_one();
            return Ok(());
        }
        drop(st);
        writer.process_inline(op);
        Ok(())
    }

    /// Checks `records` against the log under the state lock, assigns their sequence
    /// numbers and makes them readable. `None`: there is nothing to append.
    fn admit(
        &self,
        st: &mut State,
        records: Vec<Record>,
    ) -> Result<Option<(Vec<Arc<Record>>, u64)>> {
        if st.failed || st.closing {
            return Err(StorageError::Closed);
        }
        if records.is_empty() {
            return Ok(None);
        }
        let mut expect = st.index.next();
        for r in &records {
            if expect.is_some_and(|n| n != r.index) || r.index == u64::MAX {
                return Err(StorageError::InvalidArgument(format!(
                    "append of index {} but the log's next index is {}",
                    r.index,
                    expect.map_or("any".to_string(), |n| n.to_string())
                )));
            }
            if r.payload.len() > self.max_payload {
                return Err(StorageError::InvalidArgument(format!(
                    "payload of {} bytes exceeds the segment limit of {}",
                    r.payload.len(),
                    self.max_payload
                )));
            }
            expect = Some(r.index + 1);
        }
        let first_seq = st.next_seq;
        let records: Vec<Arc<Record>> = records.into_iter().map(Arc::new).collect();
        for (i, r) in records.iter().enumerate() {
            let seq = first_seq + i as u64;
            st.index.push(
                r.index,
                Slot::Pending {
                    seq,
                    record: r.clone(),
                },
            );
        }
        st.next_seq += records.len() as u64;
        Ok(Some((records, first_seq)))
    }

    /// Discards entries `>= from` durably; the next append must have index `from`.
    /// `from` past the last entry is a no-op.
    pub fn truncate(&self, from: u64) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        {
            let mut st = self.shared.state.lock();
            if st.failed || st.closing {
                return Err(StorageError::Closed);
            }
            if st.index.next().is_some_and(|n| from >= n) {
                return Ok(());
            }
            let seq = st.next_seq;
            st.next_seq += 1;
            st.index.truncate(from);
            let done: AppendCallback = Box::new(move |r| {
                let _ = tx.send(r);
            });
            st.queue.push(Op::Truncate { from, seq, done });
        }
        self.shared.wake.notify_one();
        rx.recv().map_err(|_| StorageError::Closed)?
    }

    /// Removes the segments that hold only entries below `before` (never the segment
    /// being written). Entries below `before` in a segment that is kept stay readable,
    /// so [`Wal::first_index`] may stay below `before`. Returns the segments removed.
    pub fn purge(&self, before: u64) -> Result<usize> {
        let (tx, rx) = mpsc::channel();
        {
            let mut st = self.shared.state.lock();
            if st.failed || st.closing {
                return Err(StorageError::Closed);
            }
            let done: PurgeCallback = Box::new(move |r| {
                let _ = tx.send(r);
            });
            st.queue.push(Op::Purge { before, done });
        }
        self.shared.wake.notify_one();
        rx.recv().map_err(|_| StorageError::Closed)?
    }

    /// The first entry's index, or `None` if the log holds no entries.
    pub fn first_index(&self) -> Option<u64> {
        self.shared.state.lock().index.first()
    }

    /// The last accepted entry's index (it may not be durable yet).
    pub fn last_index(&self) -> Option<u64> {
        self.shared.state.lock().index.last()
    }

    /// The index the next append must start at (`None`: any, for a WAL never written).
    pub fn next_index(&self) -> Option<u64> {
        self.shared.state.lock().index.next()
    }

    /// Entry `index`, if the log holds it.
    pub fn read(&self, index: u64) -> Result<Option<Record>> {
        Ok(self.read_range(index..index.saturating_add(1))?.pop())
    }

    /// The entries of `range` that the log holds (a contiguous run, possibly empty).
    pub fn read_range(&self, range: Range<u64>) -> Result<Vec<Record>> {
        let mut wanted = Vec::new();
        {
            let st = self.shared.state.lock();
            let (Some(first), Some(last)) = (st.index.first(), st.index.last()) else {
                return Ok(Vec::new());
            };
            let lo = range.start.max(first);
            let hi = range.end.min(last.saturating_add(1));
            for i in lo..hi {
                let Some(slot) = st.index.get(i) else { break };
                let seg = match slot {
                    Slot::Disk(l) => st.segments.get(&l.segment).cloned(),
                    Slot::Pending { .. } => None,
                };
                wanted.push((i, slot.clone(), seg));
            }
        }
        let mut out = Vec::with_capacity(wanted.len());
        let mut i = 0;
        while i < wanted.len() {
            match &wanted[i] {
                (_, Slot::Pending { record, .. }, _) => {
                    out.push(Record::clone(record));
                    i += 1;
                }
                (_, Slot::Disk(first), seg) => {
                    // One read for a run of adjacent records in the same segment.
                    let mut j = i + 1;
                    // `next`: where an adjacent record would start; `end`: the last byte
                    // read (padding after the last record may lie past the file's end).
                    let mut next = first.offset + framed_len(first.len as usize) as u64;
                    let mut end = first.offset + (RECORD_HEADER_LEN as u64) + u64::from(first.len);
                    while let Some((_, Slot::Disk(l), _)) = wanted.get(j) {
                        if l.segment != first.segment || l.offset != next {
                            break;
                        }
                        next += framed_len(l.len as usize) as u64;
                        end = l.offset + (RECORD_HEADER_LEN as u64) + u64::from(l.len);
                        j += 1;
                    }
                    let seg = seg.as_ref().ok_or_else(|| {
                        StorageError::InvalidArgument(format!("entry {} was purged", wanted[i].0))
                    })?;
                    let mut buf = vec![0u8; (end - first.offset) as usize];
                    seg.read_at(first.offset, &mut buf)?;
                    for (index, slot, _) in &wanted[i..j] {
                        if let Slot::Disk(l) = slot {
                            out.push(decode_at(
                                &buf,
                                (l.offset - first.offset) as usize,
                                *index,
                                l,
                            )?);
                        }
                    }
                    i = j;
                }
            }
        }
        Ok(out)
    }
}

/// Decodes entry `index` at `pos` of `buf`, checking it is the record the index expects.
fn decode_at(buf: &[u8], pos: usize, index: u64, loc: &DiskLoc) -> Result<Record> {
    let bad = |reason: &str| {
        StorageError::corrupted(
            Location::Segment {
                file: segment::segment_name(loc.segment),
                offset: loc.offset,
            },
            format!("entry {index}: {reason}"),
        )
    };
    match decode_record(buf, pos) {
        Decoded::Valid(h)
            if h.kind == RecordKind::Entry && h.seq == loc.seq && h.index == index =>
        {
            let start = pos + RECORD_HEADER_LEN;
            let payload = buf
                .get(start..start + h.len as usize)
                .ok_or_else(|| bad("short"))?;
            Ok(Record {
                index,
                record_type: h.entry_type,
                payload: payload.to_vec(),
            })
        }
        Decoded::Valid(_) => Err(bad("a different record is stored here")),
        _ => Err(bad("record checksum mismatch")),
    }
}

fn choose_io_path(
    options: &WalOptions,
    active: &dyn StorageBackend,
) -> (Option<uring::Uring>, IoPath) {
    if options.force_pwrite {
        return (None, IoPath::Pwrite);
    }
    if active.raw_fd().is_none() {
        tracing::info!("WAL backend has no file descriptor; using pwrite + fdatasync");
        return (None, IoPath::Pwrite);
    }
    match uring::Uring::new() {
        Ok(u) => (Some(u), IoPath::IoUring),
        Err(e) => {
            tracing::info!(error = %e, "io_uring unavailable; using pwrite + fdatasync");
            (None, IoPath::Pwrite)
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shared.state.lock().closing = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
        // Anything still queued (the writer died) hears that the WAL closed.
        let queued = std::mem::take(&mut self.shared.state.lock().queue);
        for op in queued {
            match op {
                Op::Append { done, .. } | Op::Truncate { done, .. } => {
                    done(Err(StorageError::Closed))
                }
                Op::Purge { done, .. } => done(Err(StorageError::Closed)),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
