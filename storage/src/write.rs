//! The write transaction: copy-on-write page allocation, the free-page database, and the
//! commit protocol (docs/format.md, "Commit").
//!
//! Free pages are recorded in an internal tree, the *free DB*, keyed by
//! `(txn id that freed them, chunk number)` (both big-endian, so oldest first) with a
//! packed list of page ids as the value. A page freed by transaction `t` is still part of
//! snapshot `t - 1`, so it may be reused only once
//! * every live reader holds snapshot `t` or newer, and
//! * commit `t` or newer is durable (otherwise a crash would reopen a commit that still
//!   uses it).
//!
//! A write transaction takes whole records of reusable pages into an in-memory set,
//! allocates the lowest ids first, and at commit writes everything it freed plus what it
//! took but did not use back as one record under its own id.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::RangeBounds;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::btree::{self, Cursor, OldValue, PageSource, TreeWriter};
use crate::db::{
    lookup_table, poisoned, Durability, Inner, Snapshot, Table, TableMeta, ValueGuard,
};
use crate::error::{Result, StorageError};
use crate::page::{self, BranchPage, ChildRef, LeafEntry, LeafPage, OverflowRef, PageId, PageKind};

/// Page ids per free-DB record, so a record always fits inline in a leaf.
fn ids_per_record(page_size: usize) -> usize {
    (page::max_inline_entry(page_size) - 8 - 12) / 8
}

pub(crate) struct WriteState {
    pub(crate) inner: Arc<Inner>,
    pub(crate) txn: u64,
    /// Pages written by this transaction, not yet sealed (overflow pages are sealed).
    dirty: HashMap<PageId, Arc<[u8]>>,
    /// Pages this transaction wrote before its commit (see `put_done`): no snapshot uses
    /// them, so freeing one makes it reusable at once.
    written_early: HashSet<PageId>,
    /// Pages free to allocate now, lowest first.
    pub(crate) free_now: BTreeSet<PageId>,
    /// Committed pages this transaction stopped using.
    pub(crate) freed: Vec<PageId>,
    pub(crate) page_count: u64,
    pub(crate) freedb: Option<ChildRef>,
    pub(crate) catalog: Option<ChildRef>,
    /// Records of transactions up to this id hold reusable pages.
    pub(crate) reuse_limit: u64,
    /// Set while the free DB itself is being modified: allocation then never takes more
    /// records from it.
    pub(crate) freedb_busy: bool,
}

impl PageSource for WriteState {
    fn page_size(&self) -> usize {
        self.inner.page_size
    }

    fn load(&self, id: PageId) -> Result<Arc<[u8]>> {
        match self.dirty.get(&id) {
            Some(p) => Ok(p.clone()),
            None => self.inner.load(id),
        }
    }
}

impl TreeWriter for WriteState {
    fn is_dirty(&self, id: PageId) -> bool {
        self.dirty.contains_key(&id)
    }

    fn alloc(&mut self) -> Result<PageId> {
        while self.free_now.is_empty() && !self.freedb_busy && self.take_free_record()? {}
        if let Some(id) = self.free_now.pop_first() {
            return Ok(id);
        }
        let id = self.page_count;
        self.page_count += 1;
        Ok(id)
    }

    fn free(&mut self, id: PageId) {
        if self.dirty.remove(&id).is_some() || self.written_early.remove(&id) {
            self.free_now.insert(id);
        } else {
            self.freed.push(id);
        }
    }

    fn put(&mut self, id: PageId, page: Vec<u8>) {
        self.dirty.insert(id, page.into());
    }

    /// Seals and writes the page now: a big transaction that appends (a delete of many
    /// keys writing its tombstones, a bulk load) holds only its unfinished pages in
    /// memory. Like every page this transaction writes, it is a page no committed
    /// snapshot uses, and it becomes reachable only when the commit's slot is written.
    fn put_done(&mut self, id: PageId, mut page: Vec<u8>) -> Result<Option<u32>> {
        if self.freedb_busy {
            // The free DB's own pages stay dirty: recording free pages must not change
            // which pages are free while it runs (see `write_free_records`).
            self.put(id, page);
            return Ok(None);
        }
        let crc = page::seal(&mut page, self.txn, id);
        let ps = self.inner.page_size as u64;
        self.grow_file(self.page_count * ps)?;
        self.inner.backend.write_at(id * ps, &page)?;
        self.dirty.remove(&id);
        self.written_early.insert(id);
        // No reader can be using this id (it was free or new), so the cache may hold
        // the new page already; the transaction itself reads it from there.
        self.inner.cache.insert(id, page.into());
        Ok(Some(crc))
    }
}

impl WriteState {
    /// Grows the file (zero-filled, ahead of need) to hold `needed` bytes.
    fn grow_file(&self, needed: u64) -> Result<()> {
        let ps = self.inner.page_size as u64;
        let mut committed = self.inner.committed.lock();
        if needed > committed.file_len {
            let grown = needed + grow_step(needed, ps);
            zero_fill(&*self.inner.backend, committed.file_len, grown)?;
            committed.file_len = grown;
        }
        Ok(())
    }
}

fn record_key(txn: u64, chunk: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&txn.to_be_bytes());
    k[8..].copy_from_slice(&chunk.to_be_bytes());
    k
}

/// Decodes a free-DB record key into (txn, chunk).
pub(crate) fn decode_record_key(k: &[u8]) -> Option<(u64, u32)> {
    let txn = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let chunk = u32::from_be_bytes(k.get(8..12)?.try_into().ok()?);
    (k.len() == 12).then_some((txn, chunk))
}

/// Decodes a free-DB record value into page ids.
pub(crate) fn decode_record_ids(v: &[u8]) -> Option<Vec<PageId>> {
    if !v.len().is_multiple_of(8) {
        return None;
    }
    Some(v.chunks_exact(8).map(|c| page::u64_at(c, 0)).collect())
}

impl WriteState {
    /// Moves the oldest reusable free-DB record into `free_now`. Returns false if none.
    pub(crate) fn take_free_record(&mut self) -> Result<bool> {
        let root = self.freedb.map(|r| r.page);
        let c = Cursor::first(self, root)?;
        let Some((page, i)) = c.current() else {
            return Ok(false);
        };
        let leaf = LeafPage::new(page);
        let key = leaf.key(i).to_vec();
        let at = page::page_id(page);
        let (txn, _) = decode_record_key(&key)
            .ok_or_else(|| StorageError::page(at, "malformed free-list record key"))?;
        if txn > self.reuse_limit {
            return Ok(false);
        }
        let ids = decode_record_ids(leaf.stored_value(i).0)
            .ok_or_else(|| StorageError::page(at, "malformed free-list record"))?;
        for id in ids {
            if id == 0 || id >= self.page_count {
                return Err(StorageError::page(
                    at,
                    format!("free list names invalid page {id}"),
                ));
            }
            self.free_now.insert(id);
        }
        self.freedb_busy = true;
        let root = self.freedb;
        let res = btree::delete(self, root, &key);
        self.freedb_busy = false;
        self.freedb = res?.0;
        Ok(true)
    }

    /// Writes a value's overflow chain (pages sealed at once) and returns its descriptor.
    pub(crate) fn write_overflow(&mut self, value: &[u8]) -> Result<OverflowRef> {
        let ps = self.inner.page_size;
        let cap = page::overflow_capacity(ps);
        let chunks: Vec<&[u8]> = value.chunks(cap).collect();
        let ids: Vec<PageId> = (0..chunks.len())
            .map(|_| self.alloc())
            .collect::<Result<_>>()?;
        for (n, chunk) in chunks.iter().enumerate() {
            let next = ids.get(n + 1).copied().unwrap_or(0);
            let mut p = page::build_overflow(ps, chunk, next);
            page::seal(&mut p, self.txn, ids[n]);
            self.put(ids[n], p);
        }
        Ok(OverflowRef {
            first: ids[0],
            len: value.len() as u64,
            crc: crc32c::crc32c(value),
        })
    }

    fn release_old(&mut self, old: &OldValue) -> Result<()> {
        if old.overflow {
            let r = decode_overflow(&old.bytes)?;
            for id in btree::overflow_pages(&*self, r)? {
                self.free(id);
            }
        }
        Ok(())
    }

    /// Frees every page of a tree (used when a table is deleted).
    fn free_tree(&mut self, root: Option<ChildRef>) -> Result<()> {
        let mut stack: Vec<(PageId, usize)> = root.map(|r| (r.page, 0)).into_iter().collect();
        while let Some((id, depth)) = stack.pop() {
            if depth >= btree::MAX_DEPTH {
                return Err(StorageError::page(id, "tree too deep while freeing"));
            }
            let p = self.load(id)?;
            if page::kind_byte(&p) == PageKind::Overflow as u8 {
                return Err(StorageError::page(
                    id,
                    "expected a tree page, found an overflow page",
                ));
            }
            if crate::db::is_leaf(&p) {
                let leaf = LeafPage::new(&p);
                for i in 0..leaf.len() {
                    if let (bytes, true) = leaf.stored_value(i) {
                        let r = decode_overflow(bytes)?;
                        for o in btree::overflow_pages(&*self, r)? {
                            self.free(o);
                        }
                    }
                }
            } else {
                let b = BranchPage::new(&p);
                stack.extend((0..b.children()).map(|i| (b.child(i).page, depth + 1)));
            }
            self.free(id);
        }
        Ok(())
    }

    /// Seals the dirty pages of the subtree at `id`, children first, filling in child
    /// checksums; returns the root's checksum. Sealed pages move to `out`.
    fn seal_tree(&mut self, id: PageId, out: &mut Vec<(PageId, Arc<[u8]>)>) -> Result<u32> {
        let Some(page) = self.dirty.remove(&id) else {
            return Err(StorageError::InvalidArgument(format!(
                "page {id} sealed twice"
            )));
        };
        let mut buf = page.to_vec();
        if page::kind_byte(&buf) == PageKind::Branch as u8 {
            let n = page::count(&buf);
            for i in 0..n {
                let child = BranchPage::new(&buf).child(i).page;
                if self.dirty.contains_key(&child) {
                    let crc = self.seal_tree(child, out)?;
                    page::set_child_crc(&mut buf, i, crc);
                }
            }
        }
        let crc = page::seal(&mut buf, self.txn, id);
        out.push((id, buf.into()));
        Ok(crc)
    }

    fn seal_root(
        &mut self,
        root: Option<ChildRef>,
        out: &mut Vec<(PageId, Arc<[u8]>)>,
    ) -> Result<Option<ChildRef>> {
        match root {
            Some(r) if self.dirty.contains_key(&r.page) => Ok(Some(ChildRef {
                page: r.page,
                crc: self.seal_tree(r.page, out)?,
            })),
            other => Ok(other),
        }
    }

    /// Records `freed` and unused `free_now` pages under this transaction's id.
    ///
    /// Writing the records can itself allocate (popping `free_now`) and free (copying
    /// clean free-DB pages), so repeat until the lists stop changing. Chunks are never
    /// deleted inside the loop (a shorter list leaves empty trailing chunks), so no round
    /// frees pages by merging; `free_now` only shrinks and `freed` only grows by the
    /// finitely many clean free-DB pages, which makes the loop terminate.
    fn write_free_records(&mut self) -> Result<()> {
        self.freedb_busy = true;
        let res = self.write_free_records_inner();
        self.freedb_busy = false;
        res
    }

    fn write_free_records_inner(&mut self) -> Result<()> {
        let per = ids_per_record(self.inner.page_size);
        let mut chunks_written = 0usize;
        for _round in 0..10_000 {
            let mut ids: Vec<PageId> = self
                .freed
                .iter()
                .copied()
                .chain(self.free_now.iter().copied())
                .collect();
            ids.sort_unstable();
            let mut chunks: Vec<Vec<u8>> = ids
                .chunks(per)
                .map(|c| c.iter().flat_map(|id| id.to_le_bytes()).collect())
                .collect();
            if chunks.len() < chunks_written {
                chunks.resize(chunks_written, Vec::new());
            }
            if chunks.is_empty() {
                return Ok(());
            }
            chunks_written = chunks.len();
            let before = (self.freed.len(), self.free_now.len());
            for (n, bytes) in chunks.iter().enumerate() {
                let key = record_key(self.txn, n as u32);
                let entry = LeafEntry {
                    key: &key,
                    value: bytes,
                    overflow: false,
                };
                let root = self.freedb;
                self.freedb = Some(btree::insert(self, root, entry)?.0);
            }
            if (self.freed.len(), self.free_now.len()) == before {
                return Ok(());
            }
        }
        Err(StorageError::InvalidArgument(
            "free list did not settle while committing".into(),
        ))
    }

    /// Gives back free pages at the end of the file.
    pub(crate) fn trim_tail(&mut self) {
        while self.page_count > 1 && self.free_now.last() == Some(&(self.page_count - 1)) {
            self.free_now.pop_last();
            self.page_count -= 1;
        }
    }
}

/// How far past the `needed` bytes a growing file is extended, zero-filled: an eighth of
/// `needed`, at least 16 pages, at most 64 MiB, in whole pages. Most commits then write
/// inside the file, and their sync records no new size or blocks. A durable commit
/// shrinks the file back to its page count only when more than two steps are free.
pub(crate) fn grow_step(needed: u64, page_size: u64) -> u64 {
    (needed / 8)
        .clamp(16 * page_size, 64 << 20)
        .div_ceil(page_size)
        * page_size
}

/// Writes zeros over `from..to`.
fn zero_fill(backend: &dyn crate::backend::StorageBackend, from: u64, to: u64) -> Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(to.saturating_sub(from)) as usize];
    let mut at = from;
    while at < to {
        let n = CHUNK.min(to - at);
        backend.write_at(at, &zeros[..n as usize])?;
        at += n;
    }
    Ok(())
}

pub(crate) fn decode_overflow(bytes: &[u8]) -> Result<OverflowRef> {
    if bytes.len() != page::OVERFLOW_DESC_LEN {
        return Err(StorageError::InvalidArgument(
            "malformed overflow descriptor".into(),
        ));
    }
    Ok(OverflowRef {
        first: page::u64_at(bytes, 0),
        len: page::u64_at(bytes, 8),
        crc: page::u32_at(bytes, 16),
    })
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct TableState {
    pub(crate) meta: TableMeta,
    /// False: the table is to be deleted at commit.
    pub(crate) exists: bool,
    pub(crate) dirty: bool,
}

/// The single write transaction. Dropping it without `commit` discards every change.
pub struct WriteTransaction {
    pub(crate) st: WriteState,
    pub(crate) tables: BTreeMap<String, TableState>,
    finished: bool,
}

impl std::fmt::Debug for WriteTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTransaction")
            .field("txn", &self.st.txn)
            .finish_non_exhaustive()
    }
}

impl Drop for WriteTransaction {
    fn drop(&mut self) {
        if !self.finished {
            self.st.inner.end_writer();
        }
    }
}

impl WriteTransaction {
    pub(crate) fn begin(inner: Arc<Inner>) -> Result<WriteTransaction> {
        inner.begin_writer();
        if poisoned(&inner) {
            inner.end_writer();
            return Err(StorageError::Closed);
        }
        let (base, last_durable) = {
            let c = inner.committed.lock();
            (c.snap, c.last_durable)
        };
        let reuse_limit = inner
            .oldest_reader()
            .map_or(last_durable, |r| r.min(last_durable));
        let st = WriteState {
            inner,
            txn: base.txn + 1,
            dirty: HashMap::new(),
            written_early: HashSet::new(),
            free_now: BTreeSet::new(),
            freed: Vec::new(),
            page_count: base.page_count,
            freedb: base.freedb,
            catalog: base.catalog,
            reuse_limit,
            freedb_busy: false,
        };
        Ok(WriteTransaction {
            st,
            tables: BTreeMap::new(),
            finished: false,
        })
    }

    pub fn txn_id(&self) -> u64 {
        self.st.txn
    }

    /// The table's current state, if it exists.
    fn table_state(&mut self, name: &str) -> Result<Option<TableState>> {
        if let Some(t) = self.tables.get(name) {
            return Ok(t.exists.then_some(*t));
        }
        let Some(meta) = lookup_table(&self.st, self.st.catalog, name)? else {
            return Ok(None);
        };
        let t = TableState {
            meta,
            exists: true,
            dirty: false,
        };
        self.tables.insert(name.to_string(), t);
        Ok(Some(t))
    }

    /// Opens a table for writing, creating it if needed.
    pub fn open_table(&mut self, name: &str) -> Result<TableMut<'_>> {
        if name.is_empty() || name.len() > page::max_key_len(self.st.inner.page_size) {
            return Err(StorageError::InvalidArgument(format!(
                "invalid table name {name:?}"
            )));
        }
        if self.table_state(name)?.is_none() {
            let t = TableState {
                meta: TableMeta::default(),
                exists: true,
                dirty: true,
            };
            self.tables.insert(name.to_string(), t);
        }
        Ok(TableMut {
            txn: self,
            name: name.to_string(),
        })
    }

    /// Opens an existing table read-only within this transaction (sees its own writes).
    pub fn table(&mut self, name: &str) -> Result<Table<'_>> {
        let t = self
            .table_state(name)?
            .ok_or_else(|| StorageError::TableNotFound(name.to_string()))?;
        Ok(Table {
            src: &self.st,
            meta: t.meta,
        })
    }

    /// Deletes a table and frees all its pages. Returns false if it did not exist.
    pub fn delete_table(&mut self, name: &str) -> Result<bool> {
        let Some(t) = self.table_state(name)? else {
            return Ok(false);
        };
        self.st.free_tree(t.meta.root)?;
        self.tables.insert(
            name.to_string(),
            TableState {
                meta: TableMeta::default(),
                exists: false,
                dirty: true,
            },
        );
        Ok(true)
    }

    /// Names and entry counts of every table, including this transaction's changes.
    pub fn list_tables(&mut self) -> Result<Vec<(String, u64)>> {
        let mut all: BTreeMap<String, u64> = crate::db::list_tables(&self.st, self.st.catalog)?
            .into_iter()
            .collect();
        for (name, t) in &self.tables {
            if t.exists {
                all.insert(name.clone(), t.meta.len);
            } else {
                all.remove(name);
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Discards every change.
    pub fn abort(self) {}

    /// Commits. With [`Durability::Durable`] the commit is on disk when this returns.
    pub fn commit(mut self, durability: Durability) -> Result<()> {
        let res = self.commit_inner(durability);
        if res.is_err() {
            self.st.inner.poisoned.store(true, Ordering::Release);
        }
        self.finished = true;
        self.st.inner.end_writer();
        res
    }

    fn commit_inner(&mut self, durability: Durability) -> Result<()> {
        let mut out: Vec<(PageId, Arc<[u8]>)> = Vec::with_capacity(self.st.dirty.len());
        // 1. Seal changed tables, then record their roots in the catalog.
        let changed: Vec<(String, TableState)> = self
            .tables
            .iter()
            .filter(|(_, t)| t.dirty)
            .map(|(n, t)| (n.clone(), *t))
            .collect();
        for (name, mut t) in changed {
            if t.exists {
                t.meta.root = self.st.seal_root(t.meta.root, &mut out)?;
                let meta = t.meta.encode();
                let e = LeafEntry {
                    key: name.as_bytes(),
                    value: &meta,
                    overflow: false,
                };
                let root = self.st.catalog;
                self.st.catalog = Some(btree::insert(&mut self.st, root, e)?.0);
            } else {
                let root = self.st.catalog;
                self.st.catalog = btree::delete(&mut self.st, root, name.as_bytes())?.0;
            }
        }
        // 2. Lower the page count past free pages at the end (the file shrinks after a
        //    durable commit, step 5), then record free pages.
        self.st.trim_tail();
        self.st.write_free_records()?;
        // 3. Seal the catalog and free DB; what is left dirty are overflow pages, sealed
        //    when written.
        let catalog = self.st.seal_root(self.st.catalog, &mut out)?;
        let freedb = self.st.seal_root(self.st.freedb, &mut out)?;
        for (id, p) in self.st.dirty.drain() {
            debug_assert_eq!(
                page::kind_byte(&p),
                PageKind::Overflow as u8,
                "page {id} unreachable"
            );
            out.push((id, p));
        }
        // 4. Grow the file ahead of the page count if needed.
        let inner = self.st.inner.clone();
        let ps = inner.page_size as u64;
        let needed = self.st.page_count * ps;
        self.st.grow_file(needed)?;
        let snap = Snapshot {
            txn: self.st.txn,
            catalog,
            freedb,
            page_count: self.st.page_count,
        };
        if durability == Durability::Deferred {
            // 5. A deferred commit writes nothing: its pages are held in memory until a
            //    checkpoint (see `Held`), and publishing them also forgets the held
            //    pages it freed that no reader uses. Past the memory limit for held
            //    pages they are all written instead.
            let written = inner.spill_held(&out)?;
            let mut committed = inner.committed.lock();
            inner.hold(snap.txn, out, &self.st.freed, written);
            committed.snap = snap;
            return Ok(());
        }
        // 5. A durable commit writes its pages and every held one in file order, and one
        //    fdatasync covers them and the slot: opening after a crash verifies every
        //    page newer than `base_txn` (see Slot). Deferred commits never shrink the
        //    file: a crash would keep the shrink and lose their state.
        let _slots = inner.slots.lock();
        inner.write_durable(&snap, out.clone(), false, |committed| {
            // Give back a large free tail only now that a slot naming the smaller size is
            // durable, so no durable slot claims more pages than the file holds (the
            // other slot may; open refuses it). A failed shrink leaves the file longer
            // than its page count, which is allowed, and a later durable commit tries
            // again.
            if committed.file_len > needed + 2 * grow_step(needed, ps)
                && inner.backend.set_len(needed).is_ok()
            {
                committed.file_len = needed;
            }
            // 6. Publish: cache entries for reused ids are replaced before any reader
            //    can see the new snapshot.
            for (id, p) in out {
                inner.cache.insert(id, p);
            }
            committed.snap = snap;
        })
    }

    /// Pages this transaction holds in memory until commit (for tests and tools).
    pub fn pages_held(&self) -> usize {
        self.st.dirty.len()
    }

    /// Pages freed so far by this transaction (for tests and tools).
    pub fn pages_freed(&self) -> usize {
        self.st.freed.len()
    }
}

/// One table open for writing.
pub struct TableMut<'t> {
    txn: &'t mut WriteTransaction,
    name: String,
}

impl std::fmt::Debug for TableMut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableMut")
            .field("name", &self.name)
            .finish()
    }
}

impl TableMut<'_> {
    fn state(&self) -> TableState {
        self.txn.tables[&self.name]
    }

    fn set_state(&mut self, meta: TableMeta) {
        self.txn.tables.insert(
            self.name.clone(),
            TableState {
                meta,
                exists: true,
                dirty: true,
            },
        );
    }

    /// A read view of the table as modified so far.
    pub fn view(&self) -> Table<'_> {
        Table {
            src: &self.txn.st,
            meta: self.state().meta,
        }
    }

    pub fn len(&self) -> u64 {
        self.state().meta.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<ValueGuard>> {
        self.view().get(key)
    }

    /// Inserts or overwrites; returns true if the key existed.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<bool> {
        let ps = self.txn.st.inner.page_size;
        if key.len() > page::max_key_len(ps) {
            return Err(StorageError::InvalidArgument(format!(
                "key of {} bytes exceeds the {}-byte limit for {ps}-byte pages",
                key.len(),
                page::max_key_len(ps)
            )));
        }
        let mut meta = self.state().meta;
        let st = &mut self.txn.st;
        let desc;
        let entry = if 8 + key.len() + value.len() > page::max_inline_entry(ps) {
            desc = st.write_overflow(value)?.encode();
            LeafEntry {
                key,
                value: &desc,
                overflow: true,
            }
        } else {
            LeafEntry {
                key,
                value,
                overflow: false,
            }
        };
        let (root, old) = btree::insert(st, meta.root, entry)?;
        meta.root = Some(root);
        let existed = old.is_some();
        if let Some(old) = old {
            st.release_old(&old)?;
        } else {
            meta.len += 1;
        }
        self.set_state(meta);
        Ok(existed)
    }

    /// Removes a key; returns true if it existed.
    pub fn remove(&mut self, key: &[u8]) -> Result<bool> {
        let mut meta = self.state().meta;
        let st = &mut self.txn.st;
        let (root, old) = btree::delete(st, meta.root, key)?;
        let Some(old) = old else { return Ok(false) };
        st.release_old(&old)?;
        meta.root = root;
        meta.len = meta.len.saturating_sub(1);
        self.set_state(meta);
        Ok(true)
    }

    /// Removes every key in `range`; returns how many were removed.
    pub fn remove_range<K: AsRef<[u8]>>(&mut self, range: impl RangeBounds<K>) -> Result<u64> {
        let lower = crate::db::owned_bound(range.start_bound());
        let upper = crate::db::owned_bound(range.end_bound());
        let mut removed = 0;
        loop {
            // Collect a batch of keys, then delete them (the scan cannot run while the
            // tree changes under it).
            let mut batch = Vec::with_capacity(256);
            {
                let mut it = self.view().range((lower.clone(), upper.clone()))?;
                while batch.len() < 256 {
                    match it.next_key()? {
                        Some(k) => batch.push(k),
                        None => break,
                    }
                }
            }
            if batch.is_empty() {
                return Ok(removed);
            }
            for k in &batch {
                if self.remove(k)? {
                    removed += 1;
                }
            }
        }
    }

    pub fn range<K: AsRef<[u8]>>(
        &self,
        range: impl RangeBounds<K>,
    ) -> Result<crate::db::Range<'_>> {
        Table {
            src: &self.txn.st,
            meta: self.state().meta,
        }
        .range(range)
    }
}
