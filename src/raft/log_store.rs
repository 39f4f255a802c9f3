//! openraft's log storage (`RaftLogStorage`, storage v2) over the WAL.
//!
//! Entries are WAL records (index = raft index, record type = entry kind, payload =
//! [`codec::encode_entry`]). Appends go to [`Wal::append_with`] and openraft's
//! `LogFlushed` callback runs when the WAL's group commit made them durable. The vote and
//! the purge point live in the hard-state file; the committed log id in its hint file
//! (see [`super::hard_state`]).
//!
//! **Purging is lazy.** The MVCC store commits most batches without fsync, so after a
//! crash it may be behind what it had applied; the WAL must still hold every entry after
//! the store's last *durable* applied index for the restart to re-apply them. openraft's
//! `purge(id)` therefore only moves the logical purge point (reads stop returning those
//! entries at once); WAL segments are removed up to `min(logical, durable applied)`, and
//! the hard state records that physical point before the removal. On restart the purge
//! point is the physical one, which the store's applied index is never below.
//!
//! ```text
//! index:      1 ........ 40 ........ 70 ......... 100
//! logical purge ─────────────────────┘ (openraft: after a snapshot at 70+keep)
//! store durable applied ───┘ 40
//! WAL segments removed ≤ 40; hard state purged = 40; reads start at 71
//! ```

// The helpers return openraft's `StorageError` (large) just as the trait methods must.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::fs;
use std::io;
use std::ops::{Bound, Range, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use mnemo_storage::wal::{AppendCallback, Record, Wal, WalOptions};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, LogId, LogIdOptionExt, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use parking_lot::RwLock;

use super::codec::{decode_entry, decode_entry_log_id, encode_entry};
use super::hard_state::{read_hard_state, sync_dir, write_hard_state, CommittedFile, HardState};
use super::TypeConfig;

/// The WAL's directory inside the member directory.
pub const WAL_DIR: &str = "wal";
/// A WAL being discarded by [`LogStore`]'s reset (removed at open if a crash left it).
const WAL_RESET_DIR: &str = "wal.reset";

/// Physical purges wait until at least this many entries can go (each costs an fsync of
/// the hard state), unless they reach the logical purge point.
const PURGE_STEP: u64 = 10_000;

type StoreResult<T> = Result<T, StorageError<u64>>;

/// Positions shared by the log store, the state machine and the node: each an index + 1,
/// 0 meaning none (raft index 0 is a real index); and how many commands this member has
/// proposed and not yet answered.
#[derive(Debug, Default)]
pub struct Progress {
    flushed: AtomicU64,
    committed: AtomicU64,
    applied: AtomicU64,
    durable_applied: AtomicU64,
    proposed: AtomicUsize,
    /// Members (voters and learners) of the applied membership.
    members: AtomicUsize,
}

/// Counts one proposed command in [`Progress::proposed`] while it lives.
#[derive(Debug)]
pub struct ProposedGuard<'a>(&'a Progress);

impl Drop for ProposedGuard<'_> {
    fn drop(&mut self) {
        self.0.proposed.fetch_sub(1, Ordering::AcqRel);
    }
}

fn load(a: &AtomicU64) -> Option<u64> {
    a.load(Ordering::Acquire).checked_sub(1)
}

fn raise(a: &AtomicU64, index: u64) {
    a.fetch_max(index + 1, Ordering::AcqRel);
}

impl Progress {
    /// The last entry known durable in the WAL.
    pub fn flushed(&self) -> Option<u64> {
        load(&self.flushed)
    }
    /// The last committed index the log store was told of.
    pub fn committed(&self) -> Option<u64> {
        load(&self.committed)
    }
    /// The last index applied to the store.
    pub fn applied(&self) -> Option<u64> {
        load(&self.applied)
    }
    /// The last index applied to the store by a durable commit.
    pub fn durable_applied(&self) -> Option<u64> {
        load(&self.durable_applied)
    }
    pub(crate) fn set_applied(&self, index: u64) {
        raise(&self.applied, index);
    }
    pub(crate) fn set_durable_applied(&self, index: u64) {
        raise(&self.durable_applied, index);
    }
    /// Commands proposed through this member's own raft and not yet answered, queued
    /// ones included (commands a follower forwarded to the leader are not counted).
    pub fn proposed(&self) -> usize {
        self.proposed.load(Ordering::Acquire)
    }
    /// Counts a command as proposed until the guard drops.
    pub(crate) fn propose(&self) -> ProposedGuard<'_> {
        self.proposed.fetch_add(1, Ordering::AcqRel);
        ProposedGuard(self)
    }
    /// Members of the cluster as of the last applied membership (0 before one is).
    pub fn members(&self) -> usize {
        self.members.load(Ordering::Acquire)
    }
    pub(crate) fn set_members(&self, n: usize) {
        self.members.store(n, Ordering::Release);
    }
    /// A member alone in its cluster, with at most one command of its own in flight and
    /// every durable entry applied: its log appends write the WAL inline
    /// ([`Wal::append_inline`]). With peers, an append must not hold up replication;
    /// with entries waiting to be applied and answered, the raft task must not stop for
    /// an fdatasync (one queued behind a checkpoint's can take tens of milliseconds);
    /// under load, appends group in the writer thread.
    fn quiet_and_alone(&self) -> bool {
        self.members() <= 1
            && self.proposed() <= 1
            && self.applied().unwrap_or(0) >= self.flushed().unwrap_or(0)
    }
    fn set_flushed(&self, index: Option<u64>) {
        self.flushed
            .store(index.map_or(0, |i| i + 1), Ordering::Release);
    }
}

fn io_err<E: std::error::Error + 'static>(e: E) -> StorageError<u64> {
    StorageIOError::write_logs(&e).into()
}

fn read_err<E: std::error::Error + 'static>(e: E) -> StorageError<u64> {
    StorageIOError::read_logs(&e).into()
}

fn join_err(e: tokio::task::JoinError) -> StorageError<u64> {
    StorageIOError::write_logs(&e).into()
}

/// State shared by the log store and its readers.
#[derive(Debug)]
struct LogShared {
    /// Replaced (never mutated) by a reset; readers clone the `Arc`.
    wal: RwLock<Arc<Wal>>,
    /// The logical purge point: entries up to it are gone for openraft.
    purged: RwLock<Option<LogId<u64>>>,
}

impl LogShared {
    fn wal(&self) -> Arc<Wal> {
        self.wal.read().clone()
    }

    fn read_entries(&self, range: Range<u64>) -> StoreResult<Vec<Entry<TypeConfig>>> {
        let start = range.start.max(self.purged.read().next_index());
        if start >= range.end {
            return Ok(Vec::new());
        }
        let records = self.wal().read_range(start..range.end).map_err(read_err)?;
        records
            .iter()
            .map(|r| decode_entry(r.index, r.record_type, &r.payload).map_err(read_err))
            .collect()
    }

    /// The log id of entry `index` if the WAL holds it.
    fn log_id_at(&self, index: u64) -> StoreResult<Option<LogId<u64>>> {
        match self.wal().read(index).map_err(read_err)? {
            Some(r) => Ok(Some(
                decode_entry_log_id(r.index, &r.payload).map_err(read_err)?,
            )),
            None => Ok(None),
        }
    }
}

fn to_range(range: impl RangeBounds<u64>) -> Range<u64> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    start..end
}

/// Reads log entries for openraft's replication tasks.
#[derive(Debug, Clone)]
pub struct LogReader {
    shared: Arc<LogShared>,
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        self.shared.read_entries(to_range(range))
    }
}

/// The raft log: WAL + hard state.
#[derive(Debug)]
pub struct LogStore {
    shared: Arc<LogShared>,
    member_dir: PathBuf,
    wal_options: WalOptions,
    hard: HardState,
    committed: CommittedFile,
    progress: Arc<Progress>,
}

impl LogStore {
    /// Opens the log in `member_dir` (creating the directory and an empty log if needed).
    pub fn open(
        member_dir: &Path,
        wal_options: WalOptions,
        progress: Arc<Progress>,
    ) -> io::Result<LogStore> {
        fs::create_dir_all(member_dir)?;
        let reset = member_dir.join(WAL_RESET_DIR);
        if reset.exists() {
            // A reset was interrupted after the hard state recorded the new purge point.
            fs::remove_dir_all(&reset)?;
        }
        let wal = Wal::open(member_dir.join(WAL_DIR), wal_options.clone())
            .map_err(|e| io::Error::other(format!("opening the WAL: {e}")))?;
        sync_dir(member_dir)?;
        let hard = read_hard_state(member_dir)?;
        // A log that was never purged may start anywhere (openraft's own start at 0; its
        // test suite elsewhere); after a purge it must continue right after the purge point.
        if let (Some(first), Some(purged)) = (wal.first_index(), hard.purged) {
            if first > purged.index + 1 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the WAL starts at entry {first} but the log was purged only up to {}: entries are missing",
                        purged.index
                    ),
                ));
            }
        }
        progress.set_flushed(wal.last_index());
        let committed = CommittedFile::open(member_dir)?;
        Ok(LogStore {
            shared: Arc::new(LogShared {
                wal: RwLock::new(Arc::new(wal)),
                purged: RwLock::new(hard.purged),
            }),
            member_dir: member_dir.to_path_buf(),
            wal_options,
            hard,
            committed,
            progress,
        })
    }

    /// The WAL (for its I/O path and statistics).
    pub fn wal(&self) -> Arc<Wal> {
        self.shared.wal()
    }

    /// A handle to the WAL that follows resets, for the node's status.
    pub(crate) fn wal_handle(&self) -> WalHandle {
        WalHandle {
            shared: self.shared.clone(),
        }
    }

    async fn write_hard_state(&mut self, next: HardState) -> StoreResult<()> {
        let dir = self.member_dir.clone();
        let s = next.clone();
        tokio::task::spawn_blocking(move || write_hard_state(&dir, &s))
            .await
            .map_err(join_err)?
            .map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))?;
        self.hard = next;
        Ok(())
    }

    /// Removes WAL segments up to `min(logical purge, store's durable applied)`.
    async fn purge_physically(&mut self) -> StoreResult<()> {
        let Some(logical) = *self.shared.purged.read() else {
            return Ok(());
        };
        let Some(durable) = self.progress.durable_applied() else {
            return Ok(());
        };
        let target = logical.index.min(durable);
        let done = self.hard.purged.next_index();
        if target < done || (target < logical.index && target - done < PURGE_STEP) {
            return Ok(());
        }
        let id = if target == logical.index {
            logical
        } else {
            match self.shared.log_id_at(target)? {
                Some(id) => id,
                None => return Ok(()),
            }
        };
        // The hard state first: a crash after it and before the removal only leaves
        // entries that are no longer needed.
        self.write_hard_state(HardState {
            vote: self.hard.vote,
            purged: Some(id),
        })
        .await?;
        let wal = self.wal();
        let removed = tokio::task::spawn_blocking(move || wal.purge(id.index + 1))
            .await
            .map_err(join_err)?
            .map_err(io_err)?;
        tracing::debug!(upto = id.index, segments = removed, "WAL purged");
        Ok(())
    }

    /// Starts an empty WAL whose next entry may be `purged + 1`, for an append that
    /// continues the log past its end (after a snapshot was installed). Every entry of the
    /// old WAL is at or below the purge point.
    async fn reset_wal(&mut self, purged: LogId<u64>) -> StoreResult<()> {
        tracing::info!(purged = %purged, "log continues past the WAL's end; starting a new WAL");
        if self.progress.durable_applied() < Some(purged.index) {
            tracing::warn!(
                purged = purged.index,
                durable = ?self.progress.durable_applied(),
                "resetting the WAL above the store's durable applied index"
            );
        }
        self.write_hard_state(HardState {
            vote: self.hard.vote,
            purged: Some(purged),
        })
        .await?;
        let dir = self.member_dir.clone();
        let options = self.wal_options.clone();
        let new = tokio::task::spawn_blocking(move || -> io::Result<Wal> {
            let reset = dir.join(WAL_RESET_DIR);
            fs::rename(dir.join(WAL_DIR), &reset)?;
            let wal = Wal::open(dir.join(WAL_DIR), options)
                .map_err(|e| io::Error::other(format!("opening the WAL: {e}")))?;
            sync_dir(&dir)?;
            Ok(wal)
        })
        .await
        .map_err(join_err)?
        .map_err(io_err)?;
        let old = std::mem::replace(&mut *self.shared.wal.write(), Arc::new(new));
        drop(old);
        let reset = self.member_dir.join(WAL_RESET_DIR);
        tokio::task::spawn_blocking(move || fs::remove_dir_all(reset))
            .await
            .map_err(join_err)?
            .map_err(io_err)?;
        self.progress.set_flushed(Some(purged.index));
        Ok(())
    }
}

/// Follows the log store's current WAL.
#[derive(Debug, Clone)]
pub(crate) struct WalHandle {
    shared: Arc<LogShared>,
}

impl WalHandle {
    pub(crate) fn wal(&self) -> Arc<Wal> {
        self.shared.wal()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        self.shared.read_entries(to_range(range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let purged = *self.shared.purged.read();
        let last = match self.wal().last_index() {
            Some(last) if last >= purged.next_index() => self.shared.log_id_at(last)?,
            _ => None,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StoreResult<()> {
        self.write_hard_state(HardState {
            vote: Some(*vote),
            purged: self.hard.purged,
        })
        .await
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<u64>>> {
        Ok(self.hard.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StoreResult<()> {
        self.committed.write(committed.as_ref()).map_err(io_err)?;
        if let Some(c) = committed {
            raise(&self.progress.committed, c.index);
        }
        Ok(())
    }

    /// The saved hint, clamped to what the WAL still holds: entries past its end were not
    /// durable here and cannot be re-applied from this log.
    async fn read_committed(&mut self) -> StoreResult<Option<LogId<u64>>> {
        let Some(saved) = self.committed.read() else {
            return Ok(None);
        };
        let purged = *self.shared.purged.read();
        let got = if purged.is_some_and(|p| saved.index <= p.index) {
            // Entries up to the purge point are applied, hence committed.
            Some(saved)
        } else {
            match self.wal().last_index() {
                Some(last) if last >= saved.index => match self.shared.log_id_at(saved.index)? {
                    Some(id) if id == saved => Some(saved),
                    other => {
                        tracing::warn!(saved = %saved, found = ?other, "committed hint does not match the log; ignored");
                        None
                    }
                },
                Some(last) if last >= purged.next_index() => self.shared.log_id_at(last)?,
                _ => None,
            }
        };
        if let Some(c) = got {
            raise(&self.progress.committed, c.index);
        }
        Ok(got)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records: Vec<Record> = entries
            .into_iter()
            .map(|e| {
                let (record_type, payload) = encode_entry(&e);
                Record {
                    index: e.log_id.index,
                    record_type,
                    payload,
                }
            })
            .collect();
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let (first, last) = (first.index, last.index);
        let next = self.wal().next_index();
        if next.is_some_and(|n| n < first) {
            let purged = *self.shared.purged.read();
            match purged {
                Some(p) if p.index + 1 == first => self.reset_wal(p).await?,
                _ => {
                    return Err(io_err(io::Error::other(format!(
                        "append at {first} would leave a hole after entry {next:?}"
                    ))))
                }
            }
        }
        let progress = self.progress.clone();
        let done: AppendCallback = Box::new(move |r| {
            if r.is_ok() {
                raise(&progress.flushed, last);
            }
            callback.log_io_completed(r.map_err(io::Error::other));
        });
        let wal = self.wal();
        if self.progress.quiet_and_alone() {
            wal.append_inline(records, done)
        } else {
            wal.append_with(records, done)
        }
        .map_err(io_err)?;
        self.purge_physically().await
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StoreResult<()> {
        let wal = self.wal();
        let from = log_id.index;
        tokio::task::spawn_blocking(move || wal.truncate(from))
            .await
            .map_err(join_err)?
            .map_err(io_err)?;
        let flushed = match self.progress.flushed() {
            Some(f) if f >= from => from.checked_sub(1),
            other => other,
        };
        self.progress.set_flushed(flushed);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StoreResult<()> {
        {
            let mut purged = self.shared.purged.write();
            if Some(log_id) > *purged {
                *purged = Some(log_id);
            }
        }
        self.purge_physically().await
    }
}
