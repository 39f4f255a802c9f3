//! The writer thread: gathers every queued operation into a batch, writes it and makes
//! it durable with one fdatasync (group commit), then acknowledges, strictly in order.
//!
//! With io_uring the batch's write and fdatasync are linked submissions and up to
//! [`PIPELINE_DEPTH`] batches are in flight: the next batch is gathered and submitted
//! while the previous fdatasync runs. Without it (or when forced) each batch is a
//! `write_at` + `sync_data` on the calling thread.
//!
//! A small batch with nothing in flight is written inline even on io_uring: the kernel
//! runs an io_uring fdatasync on a worker thread, which adds a hand-off to the latency
//! of a lone appender (a raft log hands the WAL one batch at a time), while there is no
//! earlier batch to overlap with anyway. Batches with many waiters, or arriving while
//! another is in flight, take the pipelined path.
//!
//! An appender may do the thread's work itself when the writer is idle (nothing queued,
//! nothing in flight): the writer's state is behind a mutex that the thread gives up only
//! while it waits for work, and `Wal::append_inline` takes it to write and sync one batch
//! on the calling thread, saving a lone appender the two thread wake-ups of a hand-off.
//!
//! Invariants:
//! * records reach the segment in seq order, each at the offset recorded for it;
//! * a segment is durable up to its last record before the next segment is created, so
//!   only the last segment can have an unacknowledged tail;
//! * a callback runs only after every byte of its records and of all earlier records is
//!   durable; after any write or sync error nothing more is acknowledged.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use crate::error::{Result, StorageError};

use super::dir::WalDir;
use super::index::{DiskLoc, Slot};
use super::record::{encode_record, framed_len, RecordHeader, RecordKind, SegmentHeader, NO_INDEX};
use super::segment::{
    preallocate, prepare_segment, segment_name, spare_name, ActiveSegment, SegmentFile,
};
use super::uring::{Completed, Uring};
use super::{AppendCallback, Op, Shared};

/// Batches in flight at once on the io_uring path.
pub(crate) const PIPELINE_DEPTH: usize = 2;

/// A batch with at most this many waiters and nothing in flight is written inline.
const INLINE_MAX_WAITERS: usize = 2;

/// Records of one write + fdatasync, all in one segment.
struct Batch {
    tag: u64,
    segment: Arc<dyn crate::backend::StorageBackend>,
    /// File offset of `buf[0]`.
    offset: u64,
    buf: Vec<u8>,
    placed: Vec<(u64, DiskLoc)>,
    done: Vec<AppendCallback>,
    last_seq: u64,
    /// Set when both io_uring completions arrived.
    completion: Option<Completed>,
    /// When the io_uring write + fdatasync was submitted.
    submitted: Option<std::time::Instant>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("tag", &self.tag)
            .field("offset", &self.offset)
            .field("bytes", &self.buf.len())
            .field("waiters", &self.done.len())
            .finish()
    }
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Append {
                records, first_seq, ..
            } => {
                write!(f, "Append({} records from seq {first_seq})", records.len())
            }
            Op::Truncate { from, seq, .. } => write!(f, "Truncate(from {from}, seq {seq})"),
            Op::Purge { before, .. } => write!(f, "Purge(before {before})"),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub dir: Arc<dyn WalDir>,
    pub active: ActiveSegment,
    pub spares: Vec<String>,
    pub segment_size: u64,
    pub max_spares: usize,
    /// Highest seq known durable.
    pub durable_seq: u64,
    /// The log's next index in the order records are placed (`None`: any).
    pub stream_next: Option<u64>,
    pub uring: Option<Uring>,
    next_tag: u64,
    inflight: VecDeque<Batch>,
    current: Option<Batch>,
    /// The next segment's file, zero-filled on a helper thread while the active segment
    /// fills, so that a rollover costs a header write and two syncs instead of writing
    /// a whole segment of zeros while appenders wait.
    preparing: Option<Preparing>,
}

/// A helper thread preallocating `{id:016x}.tmp`.
#[derive(Debug)]
struct Preparing {
    id: u64,
    cancel: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<io::Result<Arc<dyn crate::backend::StorageBackend>>>,
}

impl Preparing {
    /// Waits for the file (normally long done); `None` if preparing it failed.
    fn finish(self) -> Option<Arc<dyn crate::backend::StorageBackend>> {
        match self.handle.join() {
            Ok(Ok(b)) => Some(b),
            Ok(Err(e)) => {
                tracing::warn!(segment = self.id, error = %e, "preallocating a WAL segment failed");
                None
            }
            Err(_) => None,
        }
    }

    fn cancel(self) {
        self.cancel.store(true, Ordering::Relaxed);
        // The half-written `.tmp` is removed at the next open, or replaced when this id
        // is prepared again.
        let _ = self.handle.join();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(p) = self.preparing.take() {
            p.cancel();
        }
    }
}

/// A copy of an error for each waiter (io::Error is not Clone).
pub(crate) fn copy_error(e: &StorageError) -> StorageError {
    match e {
        StorageError::Io(io) => StorageError::Io(io::Error::new(io.kind(), io.to_string())),
        StorageError::Corrupted { location, reason } => StorageError::Corrupted {
            location: location.clone(),
            reason: reason.clone(),
        },
        StorageError::InvalidArgument(m) => StorageError::InvalidArgument(m.clone()),
        StorageError::TableNotFound(t) => StorageError::TableNotFound(t.clone()),
        StorageError::Closed => StorageError::Closed,
    }
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shared: Arc<Shared>,
        dir: Arc<dyn WalDir>,
        active: ActiveSegment,
        spares: Vec<String>,
        segment_size: u64,
        max_spares: usize,
        durable_seq: u64,
        stream_next: Option<u64>,
        uring: Option<Uring>,
    ) -> Self {
        Self {
            shared,
            dir,
            active,
            spares,
            segment_size,
            max_spares,
            durable_seq,
            stream_next,
            uring,
            next_tag: 0,
            inflight: VecDeque::new(),
            current: None,
            preparing: None,
        }
    }

    /// Starts preallocating the segment after the active one, unless a spare will be
    /// recycled for it.
    fn prepare_next(&mut self) {
        if !self.spares.is_empty() || self.preparing.is_some() {
            return;
        }
        let id = self.active.id + 1;
        let (dir, size) = (self.dir.clone(), self.segment_size);
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name("mnemo-wal-prealloc".into())
            .spawn(move || preallocate(dir.as_ref(), id, size, &flag));
        match spawned {
            Ok(handle) => {
                self.preparing = Some(Preparing { id, cancel, handle });
            }
            // Without the thread the rollover zero-fills the file itself.
            Err(e) => tracing::warn!(error = %e, "cannot start the WAL preallocation thread"),
        }
    }

    /// The writer thread's loop. It holds the writer's lock while it works and lets go
    /// only while it waits for work with nothing in flight, which is when an appender may
    /// write inline ([`Writer::process_inline`]).
    pub fn run(state: &Mutex<Writer>) {
        let mut w = state.lock();
        w.prepare_next();
        let result = (|| -> Result<()> {
            while let Some(ops) = next_ops(&mut w)? {
                w.process(ops)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!(error = %e, "WAL write failed; refusing further appends");
            w.fail(&e);
        }
    }

    /// Nothing being gathered or in flight: the next write may start at once.
    pub fn idle(&self) -> bool {
        self.inflight.is_empty() && self.current.is_none()
    }

    /// Writes and syncs `op` on the calling thread (the writer is [`Writer::idle`] and
    /// nothing is queued before it); its callback runs before this returns. A failure
    /// fails the WAL as it would on the writer thread.
    pub fn process_inline(&mut self, op: Op) {
        debug_assert!(self.idle());
        self.shared.stats.inline.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.process(vec![op]) {
            tracing::error!(error = %e, "WAL write failed; refusing further appends");
            self.fail(&e);
        }
    }

    fn process(&mut self, ops: Vec<Op>) -> Result<()> {
        for op in ops {
            match op {
                Op::Append {
                    records,
                    first_seq,
                    done,
                } => {
                    let placed = records.iter().enumerate().try_for_each(|(i, r)| {
                        let seq = first_seq + i as u64;
                        self.place(RecordKind::Entry, seq, r.index, r.record_type, &r.payload)
                    });
                    if let Err(e) = placed {
                        done(Err(copy_error(&e)));
                        return Err(e);
                    }
                    self.batch().done.push(done);
                }
                Op::Truncate { from, seq, done } => {
                    if let Err(e) = self.place(RecordKind::Truncate, seq, from, 0, &[]) {
                        done(Err(copy_error(&e)));
                        return Err(e);
                    }
                    self.batch().done.push(done);
                }
                Op::Purge { before, done } => {
                    self.flush()?;
                    self.drain()?;
                    match self.purge(before) {
                        Ok(n) => done(Ok(n)),
                        Err(e) => {
                            done(Err(copy_error(&e)));
                            return Err(e);
                        }
                    }
                }
            }
        }
        self.flush()
    }

    /// The batch being filled, started at the active segment's write position.
    fn batch(&mut self) -> &mut Batch {
        let (tag, segment, offset) = (self.next_tag, self.active.backend.clone(), self.active.pos);
        if self.current.is_none() {
            self.next_tag += 1;
        }
        self.current.get_or_insert_with(|| Batch {
            tag,
            segment,
            offset,
            buf: Vec::new(),
            placed: Vec::new(),
            done: Vec::new(),
            last_seq: 0,
            completion: None,
            submitted: None,
        })
    }

    fn place(
        &mut self,
        kind: RecordKind,
        seq: u64,
        index: u64,
        entry_type: u8,
        payload: &[u8],
    ) -> Result<()> {
        let need = framed_len(payload.len()) as u64;
        if self.active.pos + need > self.active.capacity {
            // The rest of this segment stays unused; the next starts at this record.
            self.flush()?;
            self.drain()?;
            self.rollover(seq)?;
            if self.active.pos + need > self.active.capacity {
                return Err(StorageError::InvalidArgument(format!(
                    "record of {} bytes does not fit in a segment",
                    payload.len()
                )));
            }
        }
        let header = RecordHeader {
            kind,
            entry_type,
            len: payload.len() as u32,
            seq,
            index,
            synced_seq: self.durable_seq,
        };
        let segment = self.active.id;
        let offset = self.active.pos;
        let b = self.batch();
        debug_assert_eq!(b.offset + b.buf.len() as u64, offset);
        encode_record(&mut b.buf, &header, payload);
        b.last_seq = seq;
        if kind == RecordKind::Entry {
            b.placed.push((
                index,
                DiskLoc {
                    segment,
                    offset,
                    len: header.len,
                    seq,
                },
            ));
            self.stream_next = Some(index + 1);
        } else {
            self.stream_next = Some(index);
        }
        self.active.pos += need;
        Ok(())
    }

    /// Writes the current batch: submitted to io_uring, or written and synced now.
    fn flush(&mut self) -> Result<()> {
        let Some(mut batch) = self.current.take() else {
            return Ok(());
        };
        self.shared.stats.batches.fetch_add(1, Ordering::Relaxed);
        let fd = batch.segment.raw_fd();
        let inline = self.inflight.is_empty() && batch.done.len() <= INLINE_MAX_WAITERS;
        if let (Some(uring), Some(fd), false) = (self.uring.as_mut(), fd, inline) {
            let buf = mem::take(&mut batch.buf);
            let tag = batch.tag;
            let offset = batch.offset;
            let file = batch.segment.clone();
            batch.submitted = Some(std::time::Instant::now());
            self.inflight.push_back(batch);
            uring.submit_write_sync(tag, file, fd, offset, buf)?;
            return Ok(());
        }
        let written = batch
            .segment
            .write_at(batch.offset, &batch.buf)
            .and_then(|()| {
                let start = std::time::Instant::now();
                let synced = batch.segment.sync_data();
                self.shared.stats.fsync_latency.observe(start.elapsed());
                synced
            });
        if let Err(e) = written {
            // Keep the waiters so `fail` tells them.
            self.current = Some(batch);
            return Err(e.into());
        }
        self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.complete(batch);
        Ok(())
    }

    /// Waits for io_uring completions and acknowledges finished batches in order.
    fn reap(&mut self) -> Result<()> {
        let Some(uring) = self.uring.as_mut() else {
            return Ok(());
        };
        for c in uring.wait()? {
            if let Some(b) = self.inflight.iter_mut().find(|b| b.tag == c.tag) {
                b.completion = Some(c);
            }
        }
        while self
            .inflight
            .front()
            .is_some_and(|b| b.completion.is_some())
        {
            let Some(mut batch) = self.inflight.pop_front() else {
                break;
            };
            let Some(c) = batch.completion.take() else {
                break;
            };
            if let Err(e) = finish_uring_write(&c) {
                self.inflight.push_front(batch);
                return Err(e);
            }
            if let Some(t) = batch.submitted {
                self.shared.stats.fsync_latency.observe(t.elapsed());
            }
            self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.complete(batch);
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<()> {
        while !self.inflight.is_empty() {
            self.reap()?;
        }
        Ok(())
    }

    /// A durable batch: its slots now point at the segment; its waiters hear success.
    fn complete(&mut self, batch: Batch) {
        self.durable_seq = self.durable_seq.max(batch.last_seq);
        {
            let mut st = self.shared.state.lock();
            for (index, loc) in &batch.placed {
                // A truncation queued after this append may have replaced the slot.
                if let Some(slot) = st.index.get_mut(*index) {
                    if slot.seq() == loc.seq {
                        *slot = Slot::Disk(*loc);
                    }
                }
            }
        }
        self.shared
            .stats
            .records
            .fetch_add(batch.placed.len() as u64, Ordering::Relaxed);
        for done in batch.done {
            done(Ok(()));
        }
    }

    /// Starts the next segment; its first record will have `first_seq`.
    fn rollover(&mut self, first_seq: u64) -> Result<()> {
        debug_assert!(self.current.is_none() && self.inflight.is_empty());
        let id = self.active.id + 1;
        let header = SegmentHeader {
            segment_id: id,
            first_index: self.stream_next.unwrap_or(NO_INDEX),
            first_seq,
        };
        let prepared = match self.preparing.take() {
            Some(p) if p.id == id => p.finish(),
            Some(p) => {
                p.cancel();
                None
            }
            None => None,
        };
        let mut spare = None;
        while prepared.is_none() {
            let Some(name) = self.spares.pop() else { break };
            let big_enough = self.dir.open(&name)?.len()? >= self.segment_size;
            if big_enough {
                spare = Some(name);
                break;
            }
            self.dir.remove(&name)?;
        }
        let (recycled, preallocated) = (spare.is_some(), prepared.is_some());
        let file = match (prepared, spare.as_deref()) {
            (Some(b), _) => SegmentFile::Prepared(b),
            (None, Some(name)) => SegmentFile::Spare(name),
            (None, None) => SegmentFile::New,
        };
        let next = prepare_segment(self.dir.as_ref(), header, file, self.segment_size)?;
        tracing::debug!(segment = id, recycled, preallocated, "WAL rolled over");
        let stats = &self.shared.stats;
        stats.rollovers.fetch_add(1, Ordering::Relaxed);
        if preallocated {
            stats.preallocated.fetch_add(1, Ordering::Relaxed);
        }
        self.shared
            .state
            .lock()
            .segments
            .insert(id, next.backend.clone());
        self.active = next;
        self.prepare_next();
        Ok(())
    }

    /// Removes (or keeps as spares) the segments holding only entries below `before`.
    fn purge(&mut self, before: u64) -> Result<usize> {
        let victims: Vec<u64> = {
            let mut st = self.shared.state.lock();
            let keep_from = match st.index.get(before) {
                Some(Slot::Disk(l)) => l.segment,
                Some(Slot::Pending { .. }) => self.active.id,
                None if st.index.first().is_some_and(|f| before < f) => return Ok(0),
                None => self.active.id,
            };
            st.index.drop_segments_below(keep_from);
            let victims: Vec<u64> = st.segments.range(..keep_from).map(|(&id, _)| id).collect();
            for id in &victims {
                st.segments.remove(id);
            }
            victims
        };
        // Oldest first, so a crash leaves a contiguous run of segments.
        for &id in &victims {
            if self.spares.len() < self.max_spares {
                self.dir.rename(&segment_name(id), &spare_name(id))?;
                self.spares.push(spare_name(id));
            } else {
                self.dir.remove(&segment_name(id))?;
            }
        }
        if !victims.is_empty() {
            self.dir.sync_dir()?;
        }
        Ok(victims.len())
    }

    /// After an error: refuse everything from now on and tell every waiter.
    fn fail(&mut self, e: &StorageError) {
        let queued = {
            let mut st = self.shared.state.lock();
            st.failed = true;
            mem::take(&mut st.queue)
        };
        let mut waiters: Vec<AppendCallback> = Vec::new();
        for b in self.inflight.drain(..).chain(self.current.take()) {
            waiters.extend(b.done);
        }
        for w in waiters {
            w(Err(copy_error(e)));
        }
        for op in queued {
            match op {
                Op::Append { done, .. } | Op::Truncate { done, .. } => done(Err(copy_error(e))),
                Op::Purge { done, .. } => done(Err(copy_error(e))),
            }
        }
    }
}

/// The next group of queued operations; reaps io_uring completions while waiting.
/// `None` once closing (or failed by an inline appender) with nothing left to do. The
/// writer's lock is released only while waiting with nothing in flight.
fn next_ops(w: &mut MutexGuard<'_, Writer>) -> Result<Option<Vec<Op>>> {
    let shared = w.shared.clone();
    loop {
        {
            let mut st = shared.state.lock();
            if !st.queue.is_empty() && w.inflight.len() < PIPELINE_DEPTH {
                return Ok(Some(mem::take(&mut st.queue)));
            }
            if w.inflight.is_empty() {
                if st.closing || st.failed {
                    return Ok(None);
                }
                drop(st);
                // Lock order: the writer, then the state.
                MutexGuard::unlocked(w, || {
                    let mut st = shared.state.lock();
                    if st.queue.is_empty() && !st.closing && !st.failed {
                        shared.wake.wait(&mut st);
                    }
                });
                continue;
            }
        }
        w.reap()?;
    }
}

/// Checks an io_uring write+fdatasync pair; finishes a short write synchronously.
fn finish_uring_write(c: &Completed) -> Result<()> {
    if c.write_res < 0 {
        return Err(io::Error::from_raw_os_error(-c.write_res).into());
    }
    let written = c.write_res as usize;
    if written < c.buf.len() {
        // A short write cancels the linked fdatasync: write the rest and sync here.
        c.file
            .write_at(c.offset + written as u64, &c.buf[written..])?;
        c.file.sync_data()?;
        return Ok(());
    }
    if c.fsync_res < 0 {
        return Err(io::Error::from_raw_os_error(-c.fsync_res).into());
    }
    Ok(())
}
