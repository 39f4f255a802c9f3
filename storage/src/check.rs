//! Integrity: the quick verification run when a file is opened, and the full walk behind
//! [`crate::Database::check`] and [`crate::Database::stats`].

use std::collections::HashSet;
use std::ops::Bound;

use crate::btree::{self, MAX_DEPTH};
use crate::db::{Inner, Snapshot, TableMeta};
use crate::error::{Result, StorageError};
use crate::header::Slot;
use crate::page::{self, BranchPage, ChildRef, LeafPage, PageId, PageKind};
use crate::write::{decode_overflow, decode_record_ids, decode_record_key};

/// Which tree a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    Catalog,
    FreeDb,
    Table,
}

/// Verifies every page reachable from `slot` that was written after `slot.base_txn`, the
/// last commit known durable when `slot` was written: each must match the checksum its
/// parent recorded. Older pages were on disk before this commit started. Every page
/// reached (old ones included) is remembered, and one reached twice is corruption: a
/// sound tree gives each page one parent, and a crafted branch listing the same child
/// many times would otherwise cost time exponential in the tree's depth. Returns the
/// number of pages verified.
pub(crate) fn verify_since(inner: &Inner, slot: &Slot) -> Result<u64> {
    let mut v = Verifier {
        inner,
        slot,
        pages: 0,
        reached: HashSet::new(),
    };
    for root in [slot.catalog, slot.freedb].into_iter().flatten() {
        let tree = if Some(root) == slot.catalog {
            Tree::Catalog
        } else {
            Tree::FreeDb
        };
        v.verify(root, tree, 0)?;
    }
    Ok(v.pages)
}

struct Verifier<'a> {
    inner: &'a Inner,
    slot: &'a Slot,
    pages: u64,
    /// Pages reached so far, tree and overflow pages alike.
    reached: HashSet<PageId>,
}

impl Verifier<'_> {
    fn reach(&mut self, id: PageId) -> Result<()> {
        if self.reached.insert(id) {
            Ok(())
        } else {
            Err(StorageError::page(
                id,
                "reached twice from the commit's roots (a page has exactly one parent)",
            ))
        }
    }

    fn verify(&mut self, r: ChildRef, tree: Tree, depth: usize) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(StorageError::page(r.page, "tree too deep (a cycle?)"));
        }
        if r.page >= self.slot.page_count {
            return Err(StorageError::page(
                r.page,
                "referenced page beyond the page count",
            ));
        }
        self.reach(r.page)?;
        let p = self.inner.read_page_uncached(r.page)?;
        if page::stored_crc(&p) != r.crc {
            return Err(StorageError::page(
                r.page,
                "checksum differs from the one its parent recorded",
            ));
        }
        let txn = page::txn_id(&p);
        if txn > self.slot.txn {
            return Err(StorageError::page(
                r.page,
                format!("written by txn {txn}, newer than the commit"),
            ));
        }
        if txn <= self.slot.base_txn {
            return Ok(());
        }
        self.pages += 1;
        match PageKind::from_byte(page::kind_byte(&p)) {
            Some(PageKind::Branch) => {
                let b = BranchPage::new(&p);
                for i in 0..b.children() {
                    self.verify(b.child(i), tree, depth + 1)?;
                }
            }
            Some(PageKind::Leaf) => {
                let leaf = LeafPage::new(&p);
                for i in 0..leaf.len() {
                    let (bytes, overflow) = leaf.stored_value(i);
                    if overflow {
                        let r = decode_overflow(bytes)
                            .map_err(|_| StorageError::page(r.page, "bad overflow descriptor"))?;
                        let ids = btree::overflow_pages(&UncachedSource(self.inner), r)?;
                        for &id in &ids {
                            self.reach(id)?;
                        }
                        btree::read_overflow(&UncachedSource(self.inner), r)?;
                        self.pages += ids.len() as u64;
                    }
                    if tree == Tree::Catalog {
                        if let Some(root) = TableMeta::decode(bytes, r.page)?.root {
                            self.verify(root, Tree::Table, 0)?;
                        }
                    }
                }
            }
            _ => return Err(StorageError::page(r.page, "expected a tree page")),
        }
        Ok(())
    }
}

/// Reads straight from the backend, so checks look at what is on disk.
struct UncachedSource<'a>(&'a Inner);

impl btree::PageSource for UncachedSource<'_> {
    fn page_size(&self) -> usize {
        self.0.page_size
    }
    fn load(&self, id: PageId) -> Result<std::sync::Arc<[u8]>> {
        Ok(self.0.read_page_uncached(id)?.into())
    }
}

/// Shape and size of one tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeStats {
    pub entries: u64,
    pub leaf_pages: u64,
    pub branch_pages: u64,
    pub overflow_pages: u64,
    /// Levels from the root to the deepest leaf (1: the root is a leaf; 0: empty).
    pub depth: u64,
    /// Bytes of leaf and branch pages holding headers, keys, values and references.
    pub used_bytes: u64,
    /// Bytes of overflow values.
    pub overflow_bytes: u64,
}

impl TreeStats {
    pub fn pages(&self) -> u64 {
        self.leaf_pages + self.branch_pages + self.overflow_pages
    }
}

/// Statistics of a committed state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub page_size: u64,
    /// Transaction id of the commit described.
    pub txn: u64,
    /// Pages below the high-water mark (including the header page).
    pub page_count: u64,
    pub file_len: u64,
    pub leaf_pages: u64,
    pub branch_pages: u64,
    pub overflow_pages: u64,
    /// Pages listed in the free DB (reusable now or once readers finish).
    pub free_pages: u64,
    /// Pages of the catalog and of the free DB itself.
    pub catalog: TreeStats,
    pub freedb: TreeStats,
    /// Per table, by name.
    pub tables: Vec<(String, TreeStats)>,
}

impl Stats {
    /// Fraction of leaf and branch page bytes in use.
    pub fn fill_factor(&self) -> f64 {
        let used: u64 = self.tables.iter().map(|(_, t)| t.used_bytes).sum::<u64>()
            + self.catalog.used_bytes
            + self.freedb.used_bytes;
        let pages = self.leaf_pages + self.branch_pages;
        if pages == 0 {
            return 0.0;
        }
        used as f64 / (pages * self.page_size) as f64
    }

    /// Deepest tree.
    pub fn max_depth(&self) -> u64 {
        self.tables
            .iter()
            .map(|(_, t)| t.depth)
            .chain([self.catalog.depth, self.freedb.depth])
            .max()
            .unwrap_or(0)
    }
}

/// What a page below the high-water mark is used for, as [`crate::Database::page_map`]
/// found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageUse {
    /// Page 0: the file header and the commit slots.
    Header,
    /// A page of tree `tree` (an index into [`PageMap::trees`]).
    Tree { tree: u32, kind: PageKind },
    /// Listed in the free DB.
    Free,
    /// Neither reachable nor free: leaked, or unreadable.
    Unreferenced,
}

/// Which tree every page of a committed state belongs to, for inspectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageMap {
    pub page_size: u64,
    pub page_count: u64,
    pub file_len: u64,
    /// Tree names: `PageMap::CATALOG`, `PageMap::FREE_DB`, then the tables.
    pub trees: Vec<String>,
    /// One entry per page below the page count that lies inside the file.
    pub uses: Vec<PageUse>,
}

impl PageMap {
    /// Index of the catalog in [`PageMap::trees`].
    pub const CATALOG: u32 = 0;
    /// Index of the free DB in [`PageMap::trees`].
    pub const FREE_DB: u32 = 1;
}

/// What [`crate::Database::check`] found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Every problem found, each naming the page and what is wrong. Empty: the file is sound.
    pub problems: Vec<String>,
    pub stats: Stats,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Unseen,
    Reachable,
    Free,
}

struct Walker<'a> {
    inner: &'a Inner,
    snap: &'a Snapshot,
    /// Marks of pages inside the file (and below the page count).
    marks: Vec<Mark>,
    /// Marks of pages below the page count but past the end of the file (none belong
    /// there); kept apart so a huge page count costs no memory.
    past_end: std::collections::BTreeMap<PageId, Mark>,
    problems: Vec<String>,
    stats: Stats,
    /// Filled for [`page_map`] only.
    uses: Option<Vec<PageUse>>,
}

/// Walks the whole committed state: every page below the high-water mark must be
/// reachable exactly once or listed free exactly once; checksums match; keys ordered.
pub(crate) fn check(inner: &Inner, snap: &Snapshot) -> Result<CheckReport> {
    walk_all(inner, snap, false).map(|(report, _)| report)
}

/// The walk of [`check`], recording which tree each page belongs to.
pub(crate) fn page_map(inner: &Inner, snap: &Snapshot) -> Result<(CheckReport, PageMap)> {
    let (report, uses) = walk_all(inner, snap, true)?;
    let mut trees = vec!["(catalog)".to_string(), "(free db)".to_string()];
    trees.extend(report.stats.tables.iter().map(|(name, _)| name.clone()));
    let map = PageMap {
        page_size: report.stats.page_size,
        page_count: report.stats.page_count,
        file_len: report.stats.file_len,
        trees,
        uses: uses.unwrap_or_default(),
    };
    Ok((report, map))
}

fn walk_all(
    inner: &Inner,
    snap: &Snapshot,
    want_uses: bool,
) -> Result<(CheckReport, Option<Vec<PageUse>>)> {
    let file_pages = inner.backend.len()? / inner.page_size as u64;
    let tracked = snap.page_count.min(file_pages.max(1));
    let mut w = Walker {
        inner,
        snap,
        marks: vec![Mark::Unseen; usize::try_from(tracked).unwrap_or(0)],
        past_end: std::collections::BTreeMap::new(),
        problems: Vec::new(),
        stats: Stats {
            page_size: inner.page_size as u64,
            txn: snap.txn,
            page_count: snap.page_count,
            file_len: inner.backend.len()?,
            ..Stats::default()
        },
        uses: None,
    };
    if want_uses {
        let mut uses = vec![PageUse::Unreferenced; w.marks.len()];
        if let Some(u) = uses.first_mut() {
            *u = PageUse::Header;
        }
        w.uses = Some(uses);
    }
    if let Some(m) = w.marks.first_mut() {
        *m = Mark::Reachable; // the header page
    }
    let mut catalog = TreeStats::default();
    let mut tables = Vec::new();
    let catalog_owner = Owner(Tree::Catalog, PageMap::CATALOG);
    w.walk(snap.catalog, catalog_owner, &mut catalog, &mut tables);
    let mut freedb = TreeStats::default();
    let mut free_ids = Vec::new();
    let freedb_owner = Owner(Tree::FreeDb, PageMap::FREE_DB);
    w.walk(snap.freedb, freedb_owner, &mut freedb, &mut free_ids);
    for id in free_ids {
        if w.mark(id, Mark::Free, "listed free") {
            w.record_use(id, PageUse::Free);
        }
    }
    let mut table_stats = Vec::new();
    for (n, (name, meta)) in tables.into_iter().enumerate() {
        let mut ts = TreeStats::default();
        let owner = Owner(Tree::Table, 2 + n as u32);
        w.walk(meta.root, owner, &mut ts, &mut Vec::<PageId>::new());
        if ts.entries != meta.len {
            w.problems.push(format!(
                "table {name:?}: catalog says {} entries, tree holds {}",
                meta.len, ts.entries
            ));
        }
        table_stats.push((name, ts));
    }
    for (id, m) in w.marks.iter().enumerate() {
        if *m == Mark::Unseen {
            w.problems
                .push(format!("page {id}: neither reachable nor free (leaked)"));
        }
    }
    // Open refuses a slot that claims more pages than the file holds, and commits shrink
    // the file only down to a durable page count, so a file shorter than its page count
    // was cut while open. Name a page in use past the end if there is one.
    if snap.page_count > tracked {
        let in_use = w.past_end.iter().find(|(_, m)| **m == Mark::Reachable);
        let detail = match in_use {
            Some((id, _)) => format!(": page {id} is in use"),
            None => String::new(),
        };
        w.problems.push(format!(
            "file is {} bytes, shorter than its {} pages{detail}",
            w.stats.file_len, snap.page_count
        ));
    }
    let unseen_past_end = (snap.page_count - tracked) - w.past_end.len() as u64;
    if unseen_past_end > 0 {
        w.problems.push(format!(
            "{unseen_past_end} of pages {tracked}..{} lie past the end of the file and are \
             neither reachable nor free",
            snap.page_count
        ));
    }
    w.stats.free_pages = w
        .marks
        .iter()
        .chain(w.past_end.values())
        .filter(|m| **m == Mark::Free)
        .count() as u64;
    for t in table_stats
        .iter()
        .map(|(_, t)| t)
        .chain([&catalog, &freedb])
    {
        w.stats.leaf_pages += t.leaf_pages;
        w.stats.branch_pages += t.branch_pages;
        w.stats.overflow_pages += t.overflow_pages;
    }
    w.stats.catalog = catalog;
    w.stats.freedb = freedb;
    w.stats.tables = table_stats;
    Ok((
        CheckReport {
            problems: w.problems,
            stats: w.stats,
        },
        w.uses,
    ))
}

/// The tree a walk is in, and its index in [`PageMap::trees`].
#[derive(Clone, Copy)]
struct Owner(Tree, u32);

/// Items collected from a tree's leaves for the caller: tables from the catalog, free page
/// ids from the free DB.
trait Collect {
    fn collect(&mut self, w: &mut Walker<'_>, at: PageId, key: &[u8], value: &[u8]);
}

impl Collect for Vec<(String, TableMeta)> {
    fn collect(&mut self, w: &mut Walker<'_>, at: PageId, key: &[u8], value: &[u8]) {
        match TableMeta::decode(value, at) {
            Ok(m) => self.push((String::from_utf8_lossy(key).into_owned(), m)),
            Err(e) => w.problems.push(e.to_string()),
        }
    }
}

impl Collect for Vec<PageId> {
    fn collect(&mut self, w: &mut Walker<'_>, at: PageId, key: &[u8], value: &[u8]) {
        match (decode_record_key(key), decode_record_ids(value)) {
            (Some((txn, _)), Some(ids)) => {
                if txn > w.snap.txn {
                    w.problems
                        .push(format!("page {at}: free-list record from future txn {txn}"));
                }
                self.extend(ids);
            }
            _ => w
                .problems
                .push(format!("page {at}: malformed free-list record")),
        }
    }
}

impl Walker<'_> {
    fn record_use(&mut self, id: PageId, what: PageUse) {
        let slot = self
            .uses
            .as_mut()
            .and_then(|u| usize::try_from(id).ok().and_then(|i| u.get_mut(i)));
        if let Some(slot) = slot {
            *slot = what;
        }
    }

    fn mark(&mut self, id: PageId, as_: Mark, what: &str) -> bool {
        let in_file = usize::try_from(id).ok().filter(|&i| i < self.marks.len());
        let m = match in_file {
            Some(i) => self.marks.get_mut(i),
            None if id < self.snap.page_count => {
                Some(self.past_end.entry(id).or_insert(Mark::Unseen))
            }
            None => None,
        };
        let Some(m) = m else {
            self.problems.push(format!(
                "page {id}: {what}, but beyond the page count {}",
                self.snap.page_count
            ));
            return false;
        };
        if id == 0 {
            self.problems
                .push(format!("page 0: {what}, but it is the header"));
            return false;
        }
        match *m {
            Mark::Unseen => {
                *m = as_;
                true
            }
            Mark::Reachable => {
                self.problems.push(format!(
                    "page {id}: {what}, but already reachable elsewhere"
                ));
                false
            }
            Mark::Free => {
                self.problems
                    .push(format!("page {id}: {what}, but already listed free"));
                false
            }
        }
    }

    fn walk<C: Collect>(
        &mut self,
        root: Option<ChildRef>,
        owner: Owner,
        ts: &mut TreeStats,
        out: &mut C,
    ) {
        if let Some(r) = root {
            self.walk_page(r, owner, ts, out, Bound::Unbounded, Bound::Unbounded, 1);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_page<C: Collect>(
        &mut self,
        r: ChildRef,
        owner: Owner,
        ts: &mut TreeStats,
        out: &mut C,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
        depth: u64,
    ) {
        if depth as usize > MAX_DEPTH {
            self.problems.push(format!(
                "page {}: tree deeper than {MAX_DEPTH} levels",
                r.page
            ));
            return;
        }
        if !self.mark(r.page, Mark::Reachable, "reachable") {
            return;
        }
        let p = match self.inner.read_page_uncached(r.page) {
            Ok(p) => p,
            Err(e) => {
                self.problems.push(e.to_string());
                return;
            }
        };
        if page::stored_crc(&p) != r.crc {
            self.problems.push(format!(
                "page {}: checksum differs from the one its parent recorded",
                r.page
            ));
        }
        if page::txn_id(&p) > self.snap.txn {
            self.problems.push(format!(
                "page {}: written by a txn newer than the commit",
                r.page
            ));
        }
        ts.depth = ts.depth.max(depth);
        let tree = owner.0;
        let kind = PageKind::from_byte(page::kind_byte(&p));
        if let Some(kind) = kind {
            self.record_use(
                r.page,
                PageUse::Tree {
                    tree: owner.1,
                    kind,
                },
            );
        }
        match kind {
            Some(PageKind::Branch) => {
                let b = BranchPage::new(&p);
                ts.branch_pages += 1;
                ts.used_bytes += b.used_bytes() as u64;
                for i in 0..b.children() {
                    let clo = if i == 0 {
                        lo.clone()
                    } else {
                        Bound::Included(b.key(i - 1).to_vec())
                    };
                    let chi = if i + 1 == b.children() {
                        hi.clone()
                    } else {
                        Bound::Excluded(b.key(i).to_vec())
                    };
                    if i > 0 && !btree::in_bounds(b.key(i - 1), &lo, &hi) {
                        self.problems.push(format!(
                            "page {}: separator {} outside its parent's range",
                            r.page,
                            i - 1
                        ));
                    }
                    self.walk_page(b.child(i), owner, ts, out, clo, chi, depth + 1);
                }
            }
            Some(PageKind::Leaf) => {
                let leaf = LeafPage::new(&p);
                ts.leaf_pages += 1;
                ts.used_bytes += leaf.used_bytes() as u64;
                ts.entries += leaf.len() as u64;
                for i in 0..leaf.len() {
                    if !btree::in_bounds(leaf.key(i), &lo, &hi) {
                        self.problems.push(format!(
                            "page {}: key {i} outside its parent's range",
                            r.page
                        ));
                    }
                    let (bytes, overflow) = leaf.stored_value(i);
                    if overflow {
                        self.walk_overflow(r.page, bytes, owner, ts);
                    } else if tree != Tree::Table {
                        out.collect(self, r.page, leaf.key(i), bytes);
                    }
                }
            }
            _ => self
                .problems
                .push(format!("page {}: expected a tree page", r.page)),
        }
    }

    fn walk_overflow(&mut self, at: PageId, desc: &[u8], owner: Owner, ts: &mut TreeStats) {
        let Ok(r) = decode_overflow(desc) else {
            self.problems
                .push(format!("page {at}: malformed overflow descriptor"));
            return;
        };
        let src = UncachedSource(self.inner);
        match btree::overflow_pages(&src, r) {
            Ok(ids) => {
                for id in &ids {
                    if self.mark(*id, Mark::Reachable, "in an overflow chain") {
                        let kind = PageKind::Overflow;
                        self.record_use(
                            *id,
                            PageUse::Tree {
                                tree: owner.1,
                                kind,
                            },
                        );
                    }
                }
                ts.overflow_pages += ids.len() as u64;
                ts.overflow_bytes += r.len;
            }
            Err(e) => {
                self.problems
                    .push(format!("overflow value referenced from page {at}: {e}"));
                return;
            }
        }
        if let Err(e) = btree::read_overflow(&src, r) {
            self.problems
                .push(format!("overflow value referenced from page {at}: {e}"));
        }
    }
}
