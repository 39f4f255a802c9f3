//! Giving space back: incremental compaction of the page file.
//!
//! Each step runs inside an ordinary write transaction and does a bounded amount of work:
//!
//! 1. take every reusable free-DB record into the transaction's free set and truncate
//!    free pages at the end of the file;
//! 2. with `live = page_count - free pages`, walk up to `max_leaves` leaves (resuming
//!    where the previous step stopped) and copy every page at or above `live` — leaves,
//!    their ancestors and overflow chains — into the lowest free ids below it.
//!
//! The moved pages' old ids are freed by that step's commit, become reusable once it is
//! durable, and are truncated by the next step. Compaction is finished when no free page
//! is left below the live size.
//!
//! Writers are held only for one step at a time: a step with `max_leaves = 64` touches at
//! most a few hundred pages, whatever the file size.

use std::sync::Arc;

use crate::btree::{self, dirty_ref, Cursor, PageSource, Seek, TreeWriter};
use crate::db::{Database, Durability, TableMeta};
use crate::error::Result;
use crate::page::{self, BranchPage, ChildRef, LeafEntry, LeafPage, PageId, PageKind};
use crate::write::{decode_overflow, TableState, WriteState, WriteTransaction};

/// Where an incremental compaction stopped; pass it to the next step.
#[derive(Debug, Clone, Default)]
pub struct CompactCursor {
    /// 0: the catalog; 1..=n: tables in name order; n + 1: the free DB.
    tree: usize,
    /// Resume after this key.
    after: Option<Vec<u8>>,
}

/// What one compaction step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactStep {
    pub pages_moved: u64,
    pub pages_trimmed: u64,
    /// A full pass ended with this step.
    pub pass_done: bool,
    /// No free page is left below the live size: compaction is complete.
    pub finished: bool,
}

impl WriteState {
    /// Copies the pages on the path to `key` that lie at or above `threshold` to lower
    /// ids. Returns the subtree's new root if anything on the path changed.
    fn relocate(
        &mut self,
        id: PageId,
        key: &[u8],
        threshold: u64,
        moved: &mut u64,
        depth: usize,
    ) -> Result<Option<ChildRef>> {
        if depth >= btree::MAX_DEPTH || self.free_now.first().is_none_or(|&f| f >= threshold) {
            return Ok(None);
        }
        let page = self.load(id)?;
        let mut bytes: Option<Vec<u8>> = None;
        match PageKind::from_byte(page::kind_byte(&page)) {
            Some(PageKind::Branch) => {
                let b = BranchPage::new(&page);
                let idx = b.find_child(key);
                if let Some(c) =
                    self.relocate(b.child(idx).page, key, threshold, moved, depth + 1)?
                {
                    let mut copy = page.to_vec();
                    page::set_child(&mut copy, idx, c);
                    bytes = Some(copy);
                }
            }
            Some(PageKind::Leaf) => bytes = self.relocate_overflow(&page, threshold, moved)?,
            _ => return Ok(None),
        }
        let moving = id >= threshold && !self.is_dirty(id);
        if bytes.is_none() && !moving {
            return Ok(None);
        }
        let bytes = bytes.unwrap_or_else(|| page.to_vec());
        let new = if moving {
            let n = self.alloc()?;
            self.free(id);
            *moved += 1;
            n
        } else {
            // Already copied in this transaction (or below the threshold and only its
            // child moved): rewrite in place if dirty, else copy-on-write.
            if self.is_dirty(id) {
                id
            } else {
                let n = self.alloc()?;
                self.free(id);
                n
            }
        };
        self.put(new, bytes);
        Ok(Some(dirty_ref(new)))
    }

    /// Rewrites overflow values of a leaf that have pages at or above `threshold`.
    /// Returns the leaf's new bytes if any value moved.
    fn relocate_overflow(
        &mut self,
        page: &Arc<[u8]>,
        threshold: u64,
        moved: &mut u64,
    ) -> Result<Option<Vec<u8>>> {
        let leaf = LeafPage::new(page);
        let mut descs: Vec<Option<[u8; page::OVERFLOW_DESC_LEN]>> = vec![None; leaf.len()];
        let mut any = false;
        for (i, d) in descs.iter_mut().enumerate() {
            let (bytes, true) = leaf.stored_value(i) else {
                continue;
            };
            let r = decode_overflow(bytes)?;
            let ids = btree::overflow_pages(&*self, r)?;
            if ids.iter().all(|&p| p < threshold || self.is_dirty(p)) {
                continue;
            }
            let value = btree::read_overflow(&*self, r)?;
            for p in ids {
                self.free(p);
            }
            *moved += value
                .len()
                .div_ceil(page::overflow_capacity(self.inner.page_size))
                as u64;
            *d = Some(self.write_overflow(&value)?.encode());
            any = true;
        }
        if !any {
            return Ok(None);
        }
        let entries: Vec<LeafEntry<'_>> = (0..leaf.len())
            .map(|i| match &descs[i] {
                Some(d) => LeafEntry {
                    key: leaf.key(i),
                    value: d,
                    overflow: true,
                },
                None => leaf.entry(i),
            })
            .collect();
        Ok(Some(page::build_leaf(self.inner.page_size, &entries)))
    }
}

impl WriteTransaction {
    /// One bounded compaction step (see the module docs). Commit the transaction
    /// afterwards, durably, for freed pages to become reusable.
    pub fn compact_step(
        &mut self,
        cursor: &mut CompactCursor,
        max_leaves: usize,
    ) -> Result<CompactStep> {
        let mut step = CompactStep::default();
        self.st.freedb_busy = false;
        while self.st.take_free_record()? {}
        let before = self.st.page_count;
        self.st.trim_tail();
        step.pages_trimmed = before - self.st.page_count;
        let threshold = self.st.page_count - self.st.free_now.len() as u64;
        if self.st.free_now.first().is_none_or(|&f| f >= threshold) {
            // No free page below the live size: nothing left to move.
            step.finished = true;
            *cursor = CompactCursor::default();
            return Ok(step);
        }
        let names: Vec<String> = self.list_tables()?.into_iter().map(|(n, _)| n).collect();
        let mut leaves = 0;
        while leaves < max_leaves {
            let tree = cursor.tree;
            let root = match tree {
                0 => self.st.catalog,
                t if t <= names.len() => self.table_root(&names[t - 1])?,
                t if t == names.len() + 1 => self.st.freedb,
                _ => {
                    step.pass_done = true;
                    break;
                }
            };
            // Find the next leaf: the one holding the first key after `after`.
            let c = match &cursor.after {
                None => Cursor::first(&self.st, root.map(|r| r.page))?,
                Some(k) => Cursor::seek(&self.st, root.map(|r| r.page), k, Seek::Gt)?,
            };
            let Some((leaf_page, _)) = c.current() else {
                cursor.tree += 1;
                cursor.after = None;
                continue;
            };
            let leaf = LeafPage::new(leaf_page);
            let (first, last) = (leaf.key(0).to_vec(), leaf.key(leaf.len() - 1).to_vec());
            leaves += 1;
            cursor.after = Some(last);
            let Some(r) = root else { continue };
            let busy = tree == names.len() + 1;
            self.st.freedb_busy = busy;
            let res = self
                .st
                .relocate(r.page, &first, threshold, &mut step.pages_moved, 0);
            self.st.freedb_busy = false;
            if let Some(new) = res? {
                match tree {
                    0 => self.st.catalog = Some(new),
                    t if busy => {
                        debug_assert_eq!(t, names.len() + 1);
                        self.st.freedb = Some(new)
                    }
                    t => self.set_table_root(&names[t - 1], new)?,
                }
            }
        }
        if step.pass_done {
            *cursor = CompactCursor::default();
        }
        Ok(step)
    }

    fn table_root(&mut self, name: &str) -> Result<Option<ChildRef>> {
        Ok(self.table(name)?.meta.root)
    }

    fn set_table_root(&mut self, name: &str, root: ChildRef) -> Result<()> {
        let meta = TableMeta {
            root: Some(root),
            len: self.table(name)?.meta.len,
        };
        self.tables.insert(
            name.to_string(),
            TableState {
                meta,
                exists: true,
                dirty: true,
            },
        );
        Ok(())
    }
}

impl Database {
    /// Compacts the file in small durable write transactions (each at most `max_leaves`
    /// leaves of work) until no free page is left below the live size. Other writers interleave
    /// between steps, then gives back the whole free tail of the file. Returns the file
    /// length before and after.
    pub fn compact(&self, max_leaves: usize) -> Result<(u64, u64)> {
        let before = self.file_len()?;
        let mut cursor = CompactCursor::default();
        // Each pass moves every page above the live size once; a few passes settle even
        // with concurrent writers. The cap keeps a busy database from looping forever.
        // A pass that ends without finishing starts over from the first tree.
        for _ in 0..100_000 {
            let mut w = self.begin_write()?;
            let step = w.compact_step(&mut cursor, max_leaves.max(1))?;
            w.commit(Durability::Durable)?;
            if step.finished {
                break;
            }
        }
        self.inner.shrink_file()?;
        Ok((before, self.file_len()?))
    }
}
