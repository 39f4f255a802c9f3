//! The page file: opening and recovery, snapshots, and read transactions.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::backend::{FileBackend, StorageBackend};
use crate::btree::{self, Cursor, PageSource, Seek};
use crate::cache::PageCache;
use crate::error::{Location, Result, StorageError};
use crate::header::{self, Slot, HEADER_BYTES, SLOT_LEN, SLOT_OFFSETS};
use crate::page::{self, ChildRef, LeafPage, LeafValue, PageId, PageKind};
use crate::write::WriteTransaction;

/// How a commit is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The commit is on disk when `commit` returns (one `fdatasync`).
    Durable,
    /// The commit is visible to new transactions at once and becomes durable with the
    /// next durable commit; a crash before that loses it (and every deferred commit
    /// since the last durable one), never anything older.
    Deferred,
}

/// Options fixed when a page file is created or opened.
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    /// Page size for a new file (a power of two, 1 KiB to 64 KiB). An existing file
    /// keeps the page size it was created with.
    pub page_size: usize,
    /// Bytes of validated pages kept in memory. Pages of deferred commits waiting for a
    /// checkpoint (see `Held`) take up to half as much again.
    pub cache_bytes: usize,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        DatabaseOptions {
            page_size: 4096,
            cache_bytes: 64 << 20,
        }
    }
}

/// A commit that [`CommitPoint::checkpoint`] can make durable after the fact, while
/// later (deferred) commits go on. It counts as a reader of its snapshot, so the pages
/// the checkpoint writes stay available until it is dropped.
#[derive(Debug)]
pub struct CommitPoint {
    inner: Arc<Inner>,
    snap: Snapshot,
}

impl Clone for CommitPoint {
    fn clone(&self) -> Self {
        *self.inner.readers.lock().entry(self.snap.txn).or_insert(0) += 1;
        CommitPoint {
            inner: self.inner.clone(),
            snap: self.snap,
        }
    }
}

impl Drop for CommitPoint {
    fn drop(&mut self) {
        self.inner.unregister_reader(self.snap.txn);
    }
}

impl CommitPoint {
    /// Transaction id of the commit.
    pub fn txn(&self) -> u64 {
        self.snap.txn
    }

    /// Makes this commit durable, unless it or a newer one already is; returns whether it
    /// wrote a slot. Writers are not held up: the held pages of commits up to this one
    /// that are still needed are written (see [`Held`]), one fdatasync makes them durable
    /// with every page written before, then the slot naming the commit is written and
    /// synced.
    ///
    /// Safe alongside later commits because no page of an undurable commit is reused
    /// until a commit that freed it is durable (see `write.rs`): every page this commit
    /// reads is still what it wrote when its slot lands. On an I/O error the database
    /// refuses further writes, as after a failed commit.
    pub fn checkpoint(&self) -> Result<bool> {
        let inner = &self.inner;
        let res = (|| {
            let _slots = inner.slots.lock();
            if poisoned(inner) {
                return Err(StorageError::Closed);
            }
            if inner.committed.lock().last_durable >= self.snap.txn {
                return Ok(false);
            }
            inner.write_durable(&self.snap, Vec::new(), true, |_| {})?;
            Ok(true)
        })();
        if res.is_err() {
            inner.poisoned.store(true, Ordering::Release);
        }
        res
    }
}

/// The roots and size of one committed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub txn: u64,
    pub catalog: Option<ChildRef>,
    pub freedb: Option<ChildRef>,
    pub page_count: u64,
}

/// Pages of deferred commits kept in memory instead of being written (docs/format.md,
/// "Held pages"). A page that a later commit replaces before the next checkpoint is
/// then never written at all: most of the pages a small commit touches (the path from
/// a leaf to the root, the catalog, the free DB) are replaced by the very next one.
///
/// A held page is written by the first checkpoint or durable commit at or after its
/// commit, unless by then a commit up to that one freed it and no reader holds a
/// snapshot that still uses it; or earlier, when held pages exceed their memory limit
/// (written without a sync: like the pages of any undurable commit, no durable slot
/// names them). At any time an id has at most one held page: an id is reused only
/// after the commit that freed it is durable, and that checkpoint dealt with every
/// held page up to it.
#[derive(Debug, Default)]
pub(crate) struct Held {
    pages: HashMap<PageId, HeldPage>,
    bytes: usize,
}

/// Sealed pages with their ids, as a commit writes them.
pub(crate) type Pages = Vec<(PageId, Arc<[u8]>)>;

#[derive(Debug)]
struct HeldPage {
    page: Arc<[u8]>,
    /// The commit that wrote it.
    txn: u64,
    /// The commit that stopped using it, once one has.
    freed_by: Option<u64>,
}

impl Held {
    fn insert(&mut self, id: PageId, page: Arc<[u8]>, txn: u64) {
        self.bytes += page.len();
        let old = self.pages.insert(
            id,
            HeldPage {
                page,
                txn,
                freed_by: None,
            },
        );
        debug_assert!(old.is_none(), "page {id} held twice");
        if let Some(old) = old {
            self.bytes -= old.page.len();
        }
    }

    fn remove(&mut self, id: PageId) {
        if let Some(old) = self.pages.remove(&id) {
            self.bytes -= old.page.len();
        }
    }
}

/// Whether a page written by `txn` and freed by `freed_by` can be forgotten: no reader
/// holds a snapshot in `txn..freed_by`, the only ones that use it.
fn unused(readers: &BTreeMap<u64, usize>, txn: u64, freed_by: u64) -> bool {
    readers.range(txn..freed_by).next().is_none()
}

#[derive(Debug)]
pub(crate) struct Committed {
    pub snap: Snapshot,
    /// The newest commit known to be on disk.
    pub last_durable: u64,
    /// The slot holding `last_durable`; the next durable commit writes the other one.
    pub active_slot: usize,
    /// The file's length as commits left it: grown ahead of the page count in zero-filled
    /// steps, shrunk only after a durable commit (see `write::grow_step`).
    pub file_len: u64,
}

pub(crate) struct Inner {
    pub backend: Arc<dyn StorageBackend>,
    pub page_size: usize,
    pub cache: PageCache,
    pub committed: Mutex<Committed>,
    /// Held while a commit slot is written and synced (a durable commit, a checkpoint,
    /// a shrink), so that only one of them decides `active_slot` at a time. Taken before
    /// `committed`.
    pub slots: Mutex<()>,
    /// Live readers (read transactions and commit points) per snapshot txn id. Taken
    /// after `committed`, before `held`.
    pub readers: Mutex<BTreeMap<u64, usize>>,
    /// Pages of deferred commits not written yet. Taken last.
    pub held: Mutex<Held>,
    /// Bytes of held pages above which a deferred commit writes them all out.
    pub held_limit: usize,
    writer_busy: Mutex<bool>,
    writer_cv: Condvar,
    /// Set when a commit failed part-way: the in-memory state may no longer match the
    /// file, so writes are refused until the file is reopened.
    pub poisoned: AtomicBool,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Reads and validates a page, bypassing the cache: a held page (not on disk yet)
    /// from memory, any other from the backend.
    pub(crate) fn read_page_uncached(&self, id: PageId) -> Result<Vec<u8>> {
        if id == 0 {
            return Err(StorageError::page(
                0,
                "page 0 is the header, not a tree page",
            ));
        }
        if let Some(p) = self.held_page(id) {
            let buf = p.to_vec();
            page::validate(&buf, id)?;
            return Ok(buf);
        }
        let mut buf = vec![0u8; self.page_size];
        let off = id
            .checked_mul(self.page_size as u64)
            .ok_or_else(|| StorageError::page(id, "page number overflows a file offset"))?;
        self.backend.read_at(off, &mut buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                StorageError::page(id, "page lies beyond the end of the file (truncated file?)")
            } else {
                StorageError::Io(e)
            }
        })?;
        page::validate(&buf, id)?;
        Ok(buf)
    }

    fn held_page(&self, id: PageId) -> Option<Arc<[u8]>> {
        self.held.lock().pages.get(&id).map(|h| h.page.clone())
    }

    /// Writes sealed pages in file order, coalescing neighbours into one write.
    pub(crate) fn write_pages(&self, pages: &mut [(PageId, Arc<[u8]>)]) -> Result<()> {
        pages.sort_unstable_by_key(|(id, _)| *id);
        let ps = self.page_size as u64;
        let mut i = 0;
        let mut buf = Vec::new();
        while i < pages.len() {
            let start = pages[i].0;
            let mut j = i + 1;
            while j < pages.len()
                && pages[j].0 == start + (j - i) as u64
                && (j - i) * self.page_size < (8 << 20)
            {
                j += 1;
            }
            if j == i + 1 {
                self.backend.write_at(start * ps, &pages[i].1)?;
            } else {
                buf.clear();
                for (_, p) in &pages[i..j] {
                    buf.extend_from_slice(p);
                }
                self.backend.write_at(start * ps, &buf)?;
            }
            i = j;
        }
        Ok(())
    }

    /// Publishes a deferred commit's pages, as held ones unless `written` (the caller
    /// holds `committed`, so no reader can start on a snapshot between the old one and
    /// this one): held pages it freed that no reader uses are forgotten, the others
    /// remember it freed them.
    pub(crate) fn hold(&self, txn: u64, pages: Pages, freed: &[PageId], written: bool) {
        let readers = self.readers.lock();
        let mut held = self.held.lock();
        for &id in freed {
            let Some(h) = held.pages.get_mut(&id) else {
                continue;
            };
            if unused(&readers, h.txn, txn) {
                held.remove(id);
                self.cache.remove(id);
            } else {
                h.freed_by = Some(txn);
            }
        }
        drop(readers);
        for (id, p) in pages {
            self.cache.insert(id, p.clone());
            if !written {
                held.insert(id, p, txn);
            }
        }
    }

    /// Called by the writer before publishing a deferred commit's `pages`: if holding
    /// them too would exceed `held_limit`, writes them and every held page (no sync, no
    /// slot) and returns true.
    pub(crate) fn spill_held(&self, pages: &[(PageId, Arc<[u8]>)]) -> Result<bool> {
        let adding: usize = pages.iter().map(|(_, p)| p.len()).sum();
        if self.held.lock().bytes + adding <= self.held_limit {
            return Ok(false);
        }
        let (mut all, written) = self.take_held(u64::MAX);
        all.extend_from_slice(pages);
        self.write_pages(&mut all)?;
        self.forget_held(&written);
        Ok(true)
    }

    /// The held pages of commits up to `upto` that must be written, and their (id, txn);
    /// forgets those freed by a commit up to `upto` that no reader uses. The freeing
    /// commits are published, so no new reader can start on a snapshot that uses them.
    fn take_held(&self, upto: u64) -> (Pages, Vec<(PageId, u64)>) {
        let readers = self.readers.lock();
        let mut held = self.held.lock();
        let mut pages = Vec::new();
        let mut written = Vec::new();
        let mut dropped = Vec::new();
        for (&id, h) in &held.pages {
            if h.txn > upto {
                continue;
            }
            match h.freed_by {
                Some(f) if f <= upto && unused(&readers, h.txn, f) => dropped.push(id),
                _ => {
                    pages.push((id, h.page.clone()));
                    written.push((id, h.txn));
                }
            }
        }
        drop(readers);
        for id in dropped {
            held.remove(id);
            self.cache.remove(id);
        }
        (pages, written)
    }

    /// Forgets held pages once written (unless the id holds a newer page by now).
    fn forget_held(&self, written: &[(PageId, u64)]) {
        let mut held = self.held.lock();
        for &(id, txn) in written {
            if held.pages.get(&id).is_some_and(|h| h.txn == txn) {
                held.remove(id);
            }
        }
    }

    /// Makes `snap` durable: writes the held pages it may need and `pages` (its own, for
    /// a durable commit), syncs (first separately when `sync_before_slot`: a checkpoint
    /// runs beside later commits' writes), writes the slot naming it, and records it in
    /// `committed`, where `publish` runs too. The caller holds `slots`.
    pub(crate) fn write_durable(
        &self,
        snap: &Snapshot,
        mut pages: Pages,
        sync_before_slot: bool,
        publish: impl FnOnce(&mut Committed),
    ) -> Result<()> {
        let (base_txn, active) = {
            let c = self.committed.lock();
            (c.last_durable, c.active_slot)
        };
        let (held, written) = self.take_held(snap.txn);
        pages.extend(held);
        self.write_pages(&mut pages)?;
        if sync_before_slot {
            self.backend.sync_data()?;
        }
        let target = self.write_slot(snap, base_txn, active)?;
        // Forget what was written before releasing `committed`: a writer that begins
        // once `last_durable` moves may reuse the ids of pages freed up to it, and must
        // then find no held page under them.
        let mut c = self.committed.lock();
        c.active_slot = target;
        c.last_durable = snap.txn;
        publish(&mut c);
        self.forget_held(&written);
        Ok(())
    }

    /// Writes `snap` into the commit slot other than `active`, built on the durable
    /// commit `base_txn`, and syncs; returns the slot written. The caller holds `slots`.
    pub(crate) fn write_slot(
        &self,
        snap: &Snapshot,
        base_txn: u64,
        active: usize,
    ) -> Result<usize> {
        let slot = Slot {
            txn: snap.txn,
            catalog: snap.catalog,
            freedb: snap.freedb,
            page_count: snap.page_count,
            base_txn,
        };
        let target = 1 - active;
        self.backend
            .write_at(SLOT_OFFSETS[target], &slot.encode())?;
        self.backend.sync_data()?;
        Ok(target)
    }

    /// Shrinks the file to the latest commit's page count if that commit is durable
    /// (commits leave up to two growth steps of free tail in place).
    pub(crate) fn shrink_file(&self) -> Result<()> {
        self.begin_writer();
        let res = (|| {
            let _slots = self.slots.lock();
            let mut c = self.committed.lock();
            let len = c.snap.page_count * self.page_size as u64;
            if c.last_durable == c.snap.txn && c.file_len > len {
                self.backend.set_len(len)?;
                c.file_len = len;
            }
            Ok(())
        })();
        self.end_writer();
        res
    }

    pub(crate) fn end_writer(&self) {
        *self.writer_busy.lock() = false;
        self.writer_cv.notify_one();
    }

    pub(crate) fn begin_writer(&self) {
        let mut busy = self.writer_busy.lock();
        while *busy {
            self.writer_cv.wait(&mut busy);
        }
        *busy = true;
    }

    /// Oldest snapshot a live reader holds, if any.
    pub(crate) fn oldest_reader(&self) -> Option<u64> {
        self.readers.lock().keys().next().copied()
    }

    pub(crate) fn register_reader(&self) -> Snapshot {
        // Hold `committed` while registering so a commit cannot slip between reading the
        // snapshot and recording it (the writer reads `readers` under the same lock).
        let c = self.committed.lock();
        *self.readers.lock().entry(c.snap.txn).or_insert(0) += 1;
        c.snap
    }

    pub(crate) fn unregister_reader(&self, txn: u64) {
        let mut r = self.readers.lock();
        if let Some(n) = r.get_mut(&txn) {
            *n -= 1;
            if *n == 0 {
                r.remove(&txn);
            }
        }
    }
}

impl PageSource for Inner {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn load(&self, id: PageId) -> Result<Arc<[u8]>> {
        if let Some(p) = self.cache.get(id) {
            return Ok(p);
        }
        if let Some(p) = self.held_page(id) {
            self.cache.insert(id, p.clone());
            return Ok(p);
        }
        let page: Arc<[u8]> = self.read_page_uncached(id)?.into();
        self.cache.insert(id, page.clone());
        Ok(page)
    }
}

/// A page file: named ordered tables of byte strings, one writer, many snapshot readers.
#[derive(Debug, Clone)]
pub struct Database {
    pub(crate) inner: Arc<Inner>,
}

/// What opening a file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Transaction id of the commit that was opened.
    pub txn: u64,
    /// Pages checked because they were written after the last commit known durable.
    pub pages_verified: u64,
    /// Set when the newest commit slot was unusable and the older one was opened; says why.
    pub fell_back: Option<String>,
}

impl Database {
    /// Creates a new, empty page file on `backend` (which must be empty).
    pub fn create(backend: Arc<dyn StorageBackend>, opts: DatabaseOptions) -> Result<Database> {
        let ps = opts.page_size;
        if !ps.is_power_of_two() || !(page::MIN_PAGE_SIZE..=page::MAX_PAGE_SIZE).contains(&ps) {
            return Err(StorageError::InvalidArgument(format!(
                "page size {ps} is not a power of two between {} and {}",
                page::MIN_PAGE_SIZE,
                page::MAX_PAGE_SIZE
            )));
        }
        if backend.len()? != 0 {
            return Err(StorageError::InvalidArgument(
                "refusing to create over a non-empty file".into(),
            ));
        }
        let mut page0 = vec![0u8; ps];
        page0[..HEADER_BYTES].copy_from_slice(&header::encode_header(ps));
        let slot = Slot {
            txn: 1,
            catalog: None,
            freedb: None,
            page_count: 1,
            base_txn: 0,
        };
        let s0 = SLOT_OFFSETS[0] as usize;
        page0[s0..s0 + SLOT_LEN].copy_from_slice(&slot.encode());
        backend.write_at(0, &page0)?;
        backend.sync_data()?;
        Ok(Self::from_slot(backend, &opts, ps, slot, 0, ps as u64))
    }

    fn from_slot(
        backend: Arc<dyn StorageBackend>,
        opts: &DatabaseOptions,
        ps: usize,
        slot: Slot,
        active_slot: usize,
        file_len: u64,
    ) -> Database {
        let snap = Snapshot {
            txn: slot.txn,
            catalog: slot.catalog,
            freedb: slot.freedb,
            page_count: slot.page_count,
        };
        Database {
            inner: Arc::new(Inner {
                backend,
                page_size: ps,
                cache: PageCache::new(opts.cache_bytes, ps),
                committed: Mutex::new(Committed {
                    snap,
                    last_durable: slot.txn,
                    active_slot,
                    file_len,
                }),
                slots: Mutex::new(()),
                readers: Mutex::new(BTreeMap::new()),
                held: Mutex::new(Held::default()),
                held_limit: (opts.cache_bytes / 2).max(64 * ps),
                writer_busy: Mutex::new(false),
                writer_cv: Condvar::new(),
                poisoned: AtomicBool::new(false),
            }),
        }
    }

    /// Opens an existing page file, recovering from a crash if needed: the newest commit
    /// slot is used if every page written since the last known-durable commit verifies,
    /// otherwise the older slot.
    pub fn open(backend: Arc<dyn StorageBackend>, opts: DatabaseOptions) -> Result<Database> {
        Self::open_with_report(backend, opts).map(|(db, _)| db)
    }

    pub fn open_with_report(
        backend: Arc<dyn StorageBackend>,
        opts: DatabaseOptions,
    ) -> Result<(Database, OpenReport)> {
        let mut head = vec![0u8; HEADER_BYTES];
        backend.read_at(0, &mut head).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                StorageError::corrupted(Location::Header, "file is too short for a header")
            }
            _ => StorageError::Io(e),
        })?;
        let ps = header::decode_header(&head)?;
        let slots: Vec<std::result::Result<Slot, String>> = SLOT_OFFSETS
            .iter()
            .map(|&o| Slot::decode(&head[o as usize..o as usize + SLOT_LEN]))
            .collect();
        let mut order: Vec<usize> = (0..2).filter(|&i| slots[i].is_ok()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(slots[i].as_ref().map(|s| s.txn).unwrap_or(0)));
        if order.is_empty() {
            let why = slots
                .iter()
                .filter_map(|s| s.as_ref().err())
                .cloned()
                .collect::<Vec<_>>();
            return Err(StorageError::corrupted(
                Location::Header,
                format!("no valid commit slot: {}", why.join("; ")),
            ));
        }
        // A durable commit never claims more pages than the file holds: the file grows
        // before a slot naming the new size is synced, and shrinks only after (see
        // docs/format.md, "Commit"). A slot that claims more is damaged, or its commit's
        // writes did not all reach the disk.
        let file_len = backend.len()?;
        let file_pages = file_len / ps as u64;
        // Why each slot tried so far was passed over, newest first.
        let mut passed_over: Vec<String> = Vec::new();
        let mut last_err = None;
        for &i in &order {
            let Ok(slot) = slots[i].clone() else { continue };
            if slot.page_count > file_pages {
                passed_over.push(format!(
                    "commit {} (slot {i}) claims {} pages, more than the {file_len}-byte file \
                     holds ({file_pages} pages)",
                    slot.txn, slot.page_count
                ));
                last_err = None;
                continue;
            }
            let db = Self::from_slot(backend.clone(), &opts, ps, slot, i, file_len);
            match crate::check::verify_since(&db.inner, &slot) {
                Ok(pages_verified) => {
                    let fell_back = (!passed_over.is_empty()).then(|| passed_over.join("; "));
                    let report = OpenReport {
                        txn: slot.txn,
                        pages_verified,
                        fell_back,
                    };
                    return Ok((db, report));
                }
                Err(e) => {
                    passed_over.push(format!("commit {} is incomplete: {e}", slot.txn));
                    last_err = Some(e);
                }
            }
        }
        // The oldest slot's own failure names its page; a refused size is a header matter.
        if let Some(e) = last_err {
            return Err(e);
        }
        passed_over.extend(
            slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().err().map(|e| format!("slot {i}: {e}"))),
        );
        Err(StorageError::corrupted(
            Location::Header,
            format!("no usable commit slot: {}", passed_over.join("; ")),
        ))
    }

    /// Opens the page file at `path`, creating it if it does not exist.
    pub fn open_path(path: impl AsRef<Path>, opts: DatabaseOptions) -> Result<Database> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let backend: Arc<dyn StorageBackend> = Arc::new(FileBackend::new(file)?);
        let empty = backend.is_empty()?;
        if empty {
            Database::create(backend, opts)
        } else {
            Database::open(backend, opts)
        }
    }

    pub fn page_size(&self) -> usize {
        self.inner.page_size
    }

    /// Starts a read transaction on the latest commit. Never blocks on the writer.
    pub fn begin_read(&self) -> Result<ReadTransaction> {
        let snap = self.inner.register_reader();
        Ok(ReadTransaction {
            inner: self.inner.clone(),
            snap,
        })
    }

    /// Starts the write transaction, waiting for the current one to finish.
    pub fn begin_write(&self) -> Result<WriteTransaction> {
        WriteTransaction::begin(self.inner.clone())
    }

    /// Transaction id of the latest commit.
    pub fn last_txn(&self) -> u64 {
        self.inner.committed.lock().snap.txn
    }

    /// Transaction id of the latest commit known to be on disk.
    pub fn last_durable_txn(&self) -> u64 {
        self.inner.committed.lock().last_durable
    }

    /// The latest commit, to be made durable later with [`CommitPoint::checkpoint`].
    pub fn commit_point(&self) -> CommitPoint {
        CommitPoint {
            inner: self.inner.clone(),
            snap: self.inner.register_reader(),
        }
    }

    /// Bytes of deferred commits' pages held in memory, not written yet (see
    /// docs/format.md, "Held pages").
    pub fn held_bytes(&self) -> usize {
        self.inner.held.lock().bytes
    }

    /// Walks the whole file and reports every problem found, plus statistics.
    pub fn check(&self) -> Result<crate::check::CheckReport> {
        let rtx = self.begin_read()?;
        crate::check::check(&self.inner, &rtx.snap)
    }

    /// The walk of [`Database::check`], also recording which tree each page belongs to.
    pub fn page_map(&self) -> Result<(crate::check::CheckReport, crate::check::PageMap)> {
        let rtx = self.begin_read()?;
        crate::check::page_map(&self.inner, &rtx.snap)
    }

    /// Page counts, free space and tree shapes (the same walk as [`Database::check`]).
    pub fn stats(&self) -> Result<crate::check::Stats> {
        self.check().map(|r| r.stats)
    }

    /// Length of the backing file in bytes.
    pub fn file_len(&self) -> Result<u64> {
        Ok(self.inner.backend.len()?)
    }
}

/// A consistent snapshot of every table as of one commit.
#[derive(Debug)]
pub struct ReadTransaction {
    inner: Arc<Inner>,
    pub(crate) snap: Snapshot,
}

impl Drop for ReadTransaction {
    fn drop(&mut self) {
        self.inner.unregister_reader(self.snap.txn);
    }
}

impl ReadTransaction {
    /// Transaction id of the snapshot.
    pub fn txn_id(&self) -> u64 {
        self.snap.txn
    }

    /// Opens a table; `TableNotFound` if it does not exist.
    pub fn open_table(&self, name: &str) -> Result<Table<'_>> {
        let meta = lookup_table(&*self.inner, self.snap.catalog, name)?
            .ok_or_else(|| StorageError::TableNotFound(name.to_string()))?;
        Ok(Table {
            src: &*self.inner,
            meta,
        })
    }

    /// Names and entry counts of every table.
    pub fn list_tables(&self) -> Result<Vec<(String, u64)>> {
        list_tables(&*self.inner, self.snap.catalog)
    }

    /// Copies every table named in `tables` (every table when `None`) into `dst`, creating
    /// tables there as needed, in key order, committing deferred every
    /// `entries_per_commit` entries and durably at the end. Because entries arrive in key
    /// order, `dst`'s leaves come out full and its pages in tree order: this is how a
    /// compact copy of a file is made. Returns the entries copied.
    pub fn copy_into(
        &self,
        dst: &Database,
        tables: Option<&[&str]>,
        entries_per_commit: usize,
    ) -> Result<u64> {
        let names: Vec<String> = match tables {
            Some(t) => t.iter().map(|n| n.to_string()).collect(),
            None => self.list_tables()?.into_iter().map(|(n, _)| n).collect(),
        };
        let mut w = dst.begin_write()?;
        for name in &names {
            w.open_table(name)?;
        }
        let mut n = 0u64;
        for name in &names {
            let src = self.open_table(name)?;
            for e in src.iter()? {
                let e = e?;
                w.open_table(name)?.insert(e.key(), e.value())?;
                n += 1;
                if n.is_multiple_of(entries_per_commit.max(1) as u64) {
                    w.commit(Durability::Deferred)?;
                    w = dst.begin_write()?;
                }
            }
        }
        w.commit(Durability::Durable)?;
        Ok(n)
    }
}

/// A table's root and entry count, as stored in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TableMeta {
    pub root: Option<ChildRef>,
    pub len: u64,
}

pub(crate) const TABLE_META_LEN: usize = 20;

impl TableMeta {
    pub(crate) fn encode(&self) -> [u8; TABLE_META_LEN] {
        let mut b = [0u8; TABLE_META_LEN];
        let r = self.root.unwrap_or(ChildRef { page: 0, crc: 0 });
        page::put_u64(&mut b, 0, r.page);
        page::put_u32(&mut b, 8, r.crc);
        page::put_u64(&mut b, 12, self.len);
        b
    }

    pub(crate) fn decode(b: &[u8], at: PageId) -> Result<TableMeta> {
        if b.len() != TABLE_META_LEN {
            return Err(StorageError::page(at, "catalog entry has the wrong size"));
        }
        let page = page::u64_at(b, 0);
        Ok(TableMeta {
            root: (page != 0).then(|| ChildRef {
                page,
                crc: page::u32_at(b, 8),
            }),
            len: page::u64_at(b, 12),
        })
    }
}

pub(crate) fn lookup_table<S: PageSource>(
    src: &S,
    catalog: Option<ChildRef>,
    name: &str,
) -> Result<Option<TableMeta>> {
    match btree::get(src, catalog.map(|c| c.page), name.as_bytes())? {
        None => Ok(None),
        Some((page, i)) => {
            let leaf = LeafPage::new(&page);
            let (bytes, _) = leaf.stored_value(i);
            TableMeta::decode(bytes, page::page_id(&page)).map(Some)
        }
    }
}

pub(crate) fn list_tables<S: PageSource>(
    src: &S,
    catalog: Option<ChildRef>,
) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut c = Cursor::first(src, catalog.map(|c| c.page))?;
    while let Some((page, i)) = c.current() {
        let leaf = LeafPage::new(page);
        let meta = TableMeta::decode(leaf.stored_value(i).0, page::page_id(page))?;
        out.push((String::from_utf8_lossy(leaf.key(i)).into_owned(), meta.len));
        c.next(src)?;
    }
    Ok(out)
}

/// A value read from a table: borrowed from a cached page, or assembled from overflow
/// pages.
#[derive(Clone)]
pub struct ValueGuard(ValueBytes);

#[derive(Clone)]
enum ValueBytes {
    InPage(Arc<[u8]>, std::ops::Range<usize>),
    Owned(Vec<u8>),
}

impl fmt::Debug for ValueGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValueGuard({} bytes)", self.len())
    }
}

impl std::ops::Deref for ValueGuard {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            ValueBytes::InPage(p, r) => &p[r.clone()],
            ValueBytes::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for ValueGuard {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

pub(crate) fn value_at(src: &dyn PageSource, page: &Arc<[u8]>, i: usize) -> Result<ValueGuard> {
    let leaf = LeafPage::new(page);
    Ok(ValueGuard(match leaf.value(i) {
        LeafValue::Inline(_) => ValueBytes::InPage(page.clone(), leaf.value_range(i)),
        LeafValue::Overflow(r) => ValueBytes::Owned(btree::read_overflow(&src, r)?),
    }))
}

/// One entry yielded by a range scan.
#[derive(Clone)]
pub struct Entry {
    page: Arc<[u8]>,
    key: std::ops::Range<usize>,
    value: ValueGuard,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key())
            .field("value", &self.value)
            .finish()
    }
}

impl Entry {
    pub fn key(&self) -> &[u8] {
        &self.page[self.key.clone()]
    }
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

/// A read-only view of one table in a snapshot (or in the write transaction).
#[derive(Clone, Copy)]
pub struct Table<'a> {
    pub(crate) src: &'a dyn PageSource,
    pub(crate) meta: TableMeta,
}

impl fmt::Debug for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.meta.len)
            .finish()
    }
}

impl<'a> Table<'a> {
    fn root(&self) -> Option<PageId> {
        self.meta.root.map(|r| r.page)
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.meta.len
    }

    pub fn is_empty(&self) -> bool {
        self.meta.len == 0
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<ValueGuard>> {
        match btree::get(&self.src, self.root(), key)? {
            None => Ok(None),
            Some((page, i)) => value_at(self.src, &page, i).map(Some),
        }
    }

    /// Entries with keys in `range`, in key order; `.rev()` walks backwards.
    pub fn range<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Result<Range<'a>> {
        Ok(Range {
            src: self.src,
            root: self.root(),
            lower: owned_bound(range.start_bound()),
            upper: owned_bound(range.end_bound()),
            front: None,
            back: None,
            done: false,
        })
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Result<Range<'a>> {
        self.range::<&[u8]>(..)
    }

    /// Number of entries with keys in `range`.
    pub fn count_range<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Result<u64> {
        let mut n = 0;
        let mut it = self.range(range)?;
        while it.next_key()?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

/// An ordered scan over a key range; iterates forwards, backwards, or from both ends.
pub struct Range<'a> {
    src: &'a dyn PageSource,
    root: Option<PageId>,
    /// Bounds still to be yielded; each end narrows as entries are taken from it.
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    front: Option<Cursor>,
    back: Option<Cursor>,
    done: bool,
}

impl fmt::Debug for Range<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Range")
            .field("lower", &self.lower)
            .field("upper", &self.upper)
            .finish()
    }
}

impl Range<'_> {
    fn step(&mut self, backward: bool) -> Result<Option<(Arc<[u8]>, usize)>> {
        if self.done {
            return Ok(None);
        }
        let src = self.src;
        let cursor = if backward {
            &mut self.back
        } else {
            &mut self.front
        };
        match cursor {
            Some(c) => {
                if backward {
                    c.prev(&src)?
                } else {
                    c.next(&src)?
                }
            }
            None => {
                let c = match (backward, &self.lower, &self.upper) {
                    (false, Bound::Unbounded, _) => Cursor::first(&src, self.root)?,
                    (false, Bound::Included(k), _) => Cursor::seek(&src, self.root, k, Seek::Ge)?,
                    (false, Bound::Excluded(k), _) => Cursor::seek(&src, self.root, k, Seek::Gt)?,
                    (true, _, Bound::Unbounded) => Cursor::last(&src, self.root)?,
                    (true, _, Bound::Included(k)) => Cursor::seek(&src, self.root, k, Seek::Le)?,
                    (true, _, Bound::Excluded(k)) => Cursor::seek(&src, self.root, k, Seek::Lt)?,
                };
                *cursor = Some(c);
            }
        }
        let Some(c) = cursor.as_ref() else {
            return Ok(None);
        };
        let Some((page, i)) = c.current() else {
            self.done = true;
            return Ok(None);
        };
        let key = LeafPage::new(page).key(i);
        if !btree::in_bounds(key, &self.lower, &self.upper) {
            self.done = true;
            return Ok(None);
        }
        let taken = Bound::Excluded(key.to_vec());
        if backward {
            self.upper = taken;
        } else {
            self.lower = taken;
        }
        Ok(Some((page.clone(), i)))
    }

    fn entry(&self, page: Arc<[u8]>, i: usize) -> Result<Entry> {
        let leaf = LeafPage::new(&page);
        let start = leaf.key(i).as_ptr() as usize - page.as_ptr() as usize;
        let key = start..start + leaf.key(i).len();
        let value = value_at(self.src, &page, i)?;
        Ok(Entry { page, key, value })
    }

    /// Next key without reading its value (no overflow reads).
    pub fn next_key(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .step(false)?
            .map(|(p, i)| LeafPage::new(&p).key(i).to_vec()))
    }
}

impl Iterator for Range<'_> {
    type Item = Result<Entry>;
    fn next(&mut self) -> Option<Result<Entry>> {
        match self.step(false) {
            Ok(Some((p, i))) => Some(self.entry(p, i)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Result<Entry>> {
        match self.step(true) {
            Ok(Some((p, i))) => Some(self.entry(p, i)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A key bound copied out of the caller's range.
pub(crate) fn owned_bound<K: AsRef<[u8]>>(b: Bound<&K>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

pub(crate) fn is_leaf(page: &[u8]) -> bool {
    page::kind_byte(page) == PageKind::Leaf as u8
}

pub(crate) fn poisoned(inner: &Inner) -> bool {
    inner.poisoned.load(Ordering::Acquire)
}
