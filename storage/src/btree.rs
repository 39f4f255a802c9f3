//! B+tree algorithms over pages: lookup, ordered cursors, and copy-on-write insert and
//! delete with splits and merges.
//!
//! Readers go through [`PageSource`]; the write transaction implements [`TreeWriter`],
//! which adds allocation. A page written in the current transaction ("dirty") is
//! rewritten in place; any other page is copied to a fresh id and the old id freed, so
//! every committed snapshot stays intact.
//!
//! Children of a branch referenced in the current transaction carry a placeholder
//! checksum (0); the commit fills in the real ones bottom-up.
//!
//! Depth is not forced to be uniform: a branch left with a single child is replaced by
//! that child, so one subtree can be a level shallower than its neighbours. Searches only
//! rely on separator order, never on depth.

use std::ops::Bound;
use std::sync::Arc;

use crate::error::{Result, StorageError};
use crate::page::{
    self, build_branch, build_leaf, leaf_size, BranchPage, ChildRef, LeafEntry, LeafPage, PageId,
    PageKind,
};

/// Deeper than this is treated as corruption (a cycle), so walks always terminate.
pub const MAX_DEPTH: usize = 48;

/// Read access to validated pages.
pub(crate) trait PageSource {
    fn page_size(&self) -> usize;
    /// A validated page (checksum, id and layout checked when it was read from disk).
    fn load(&self, id: PageId) -> Result<Arc<[u8]>>;
}

impl<S: PageSource + ?Sized> PageSource for &S {
    fn page_size(&self) -> usize {
        (**self).page_size()
    }
    fn load(&self, id: PageId) -> Result<Arc<[u8]>> {
        (**self).load(id)
    }
}

/// Allocation and page writes for the single write transaction.
pub(crate) trait TreeWriter: PageSource {
    fn is_dirty(&self, id: PageId) -> bool;
    fn alloc(&mut self) -> Result<PageId>;
    /// Releases a page that the new tree no longer references.
    fn free(&mut self, id: PageId);
    /// Stores the (unsealed) bytes of a dirty page.
    fn put(&mut self, id: PageId, page: Vec<u8>);
    /// Stores a page that appending will not change again (the left half of an append
    /// split). A writer may seal and write it at once, returning its checksum for the
    /// parent, instead of keeping it dirty until commit.
    fn put_done(&mut self, id: PageId, page: Vec<u8>) -> Result<Option<u32>> {
        self.put(id, page);
        Ok(None)
    }
}

fn kind_of(page: &[u8], id: PageId) -> Result<PageKind> {
    match PageKind::from_byte(page::kind_byte(page)) {
        Some(PageKind::Overflow) | None => Err(StorageError::page(
            id,
            "expected a tree page, found an overflow page",
        )),
        Some(k) => Ok(k),
    }
}

fn too_deep(id: PageId) -> StorageError {
    StorageError::page(
        id,
        format!("tree deeper than {MAX_DEPTH} levels (a cycle?)"),
    )
}

/// Finds `key`; returns the leaf page holding it and the entry index.
pub(crate) fn get<S: PageSource>(
    src: &S,
    root: Option<PageId>,
    key: &[u8],
) -> Result<Option<(Arc<[u8]>, usize)>> {
    let Some(mut id) = root else { return Ok(None) };
    for _ in 0..MAX_DEPTH {
        let page = src.load(id)?;
        match kind_of(&page, id)? {
            PageKind::Leaf => {
                return Ok(LeafPage::new(&page)
                    .find(key)
                    .ok()
                    .map(|i| (page.clone(), i)));
            }
            _ => {
                id = BranchPage::new(&page)
                    .child(BranchPage::new(&page).find_child(key))
                    .page
            }
        }
    }
    Err(too_deep(id))
}

/// Reads a whole overflow value and checks its checksum.
pub(crate) fn read_overflow<S: PageSource>(src: &S, r: page::OverflowRef) -> Result<Vec<u8>> {
    let cap = page::overflow_capacity(src.page_size());
    let max_pages = r.len.div_ceil(cap as u64).max(1);
    let mut out = Vec::with_capacity(usize::try_from(r.len).unwrap_or(0).min(64 << 20));
    let mut id = r.first;
    let mut pages = 0u64;
    let mut seen = std::collections::HashSet::new();
    while id != 0 {
        pages += 1;
        if pages > max_pages {
            return Err(StorageError::page(
                id,
                "overflow chain longer than its value",
            ));
        }
        if !seen.insert(id) {
            return Err(StorageError::page(id, "overflow chain loops"));
        }
        let p = src.load(id)?;
        if PageKind::from_byte(page::kind_byte(&p)) != Some(PageKind::Overflow) {
            return Err(StorageError::page(id, "expected an overflow page"));
        }
        let (next, data) = page::overflow_parts(&p);
        out.extend_from_slice(data);
        id = next;
    }
    if out.len() as u64 != r.len || crc32c::crc32c(&out) != r.crc {
        return Err(StorageError::page(
            r.first,
            "overflow value length or checksum mismatch",
        ));
    }
    Ok(out)
}

/// Page ids of an overflow chain (to free it).
pub(crate) fn overflow_pages<S: PageSource>(src: &S, r: page::OverflowRef) -> Result<Vec<PageId>> {
    let cap = page::overflow_capacity(src.page_size());
    let max_pages = r.len.div_ceil(cap as u64).max(1);
    let mut ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut id = r.first;
    while id != 0 {
        if ids.len() as u64 >= max_pages {
            return Err(StorageError::page(
                id,
                "overflow chain longer than its value",
            ));
        }
        if !seen.insert(id) {
            return Err(StorageError::page(id, "overflow chain loops"));
        }
        ids.push(id);
        let p = src.load(id)?;
        if PageKind::from_byte(page::kind_byte(&p)) != Some(PageKind::Overflow) {
            return Err(StorageError::page(id, "expected an overflow page"));
        }
        id = page::overflow_parts(&p).0;
    }
    Ok(ids)
}

/// A position in a tree: the path of (page, index) from the root to a leaf entry.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cursor {
    stack: Vec<(Arc<[u8]>, PageId, usize)>,
}

/// Where to put a cursor relative to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seek {
    /// First entry with key >= k.
    Ge,
    /// First entry with key > k.
    Gt,
    /// Last entry with key <= k.
    Le,
    /// Last entry with key < k.
    Lt,
}

impl Cursor {
    /// The current leaf page and entry index, if positioned on an entry.
    pub(crate) fn current(&self) -> Option<(&Arc<[u8]>, usize)> {
        let (page, _, idx) = self.stack.last()?;
        (page::kind_byte(page) == PageKind::Leaf as u8 && *idx < LeafPage::new(page).len())
            .then_some((page, *idx))
    }

    fn push(&mut self, page: Arc<[u8]>, id: PageId, idx: usize) -> Result<()> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(too_deep(id));
        }
        self.stack.push((page, id, idx));
        Ok(())
    }

    /// Descends from `id` to its first (or last) entry.
    fn descend_edge<S: PageSource>(&mut self, src: &S, mut id: PageId, last: bool) -> Result<()> {
        loop {
            let page = src.load(id)?;
            match kind_of(&page, id)? {
                PageKind::Leaf => {
                    let n = LeafPage::new(&page).len();
                    let idx = if last { n.saturating_sub(1) } else { 0 };
                    let empty = n == 0;
                    self.push(page, id, idx)?;
                    if empty {
                        // Only a corrupt file has an empty non-root leaf; step past it.
                        return if last { self.prev(src) } else { self.next(src) };
                    }
                    return Ok(());
                }
                _ => {
                    let b = BranchPage::new(&page);
                    let idx = if last { b.children() - 1 } else { 0 };
                    let child = b.child(idx).page;
                    self.push(page, id, idx)?;
                    id = child;
                }
            }
        }
    }

    pub(crate) fn first<S: PageSource>(src: &S, root: Option<PageId>) -> Result<Cursor> {
        let mut c = Cursor::default();
        if let Some(r) = root {
            c.descend_edge(src, r, false)?;
        }
        Ok(c)
    }

    pub(crate) fn last<S: PageSource>(src: &S, root: Option<PageId>) -> Result<Cursor> {
        let mut c = Cursor::default();
        if let Some(r) = root {
            c.descend_edge(src, r, true)?;
        }
        Ok(c)
    }

    pub(crate) fn seek<S: PageSource>(
        src: &S,
        root: Option<PageId>,
        key: &[u8],
        mode: Seek,
    ) -> Result<Cursor> {
        let mut c = Cursor::default();
        let Some(mut id) = root else { return Ok(c) };
        loop {
            let page = src.load(id)?;
            match kind_of(&page, id)? {
                PageKind::Leaf => {
                    let leaf = LeafPage::new(&page);
                    let n = leaf.len();
                    let found = leaf.find(key);
                    // Index of the first entry past the target for forward modes, or one
                    // past the wanted entry for backward modes.
                    let (idx, backward) = match (mode, found) {
                        (Seek::Ge, Ok(i) | Err(i)) => (i, false),
                        (Seek::Gt, Ok(i)) => (i + 1, false),
                        (Seek::Gt, Err(i)) => (i, false),
                        (Seek::Le, Ok(i)) => (i + 1, true),
                        (Seek::Le | Seek::Lt, Err(i)) | (Seek::Lt, Ok(i)) => (i, true),
                    };
                    if backward {
                        if idx == 0 {
                            // The wanted entry is in an earlier leaf.
                            c.climb(src, true)?;
                        } else {
                            c.push(page, id, idx - 1)?;
                        }
                    } else if idx < n {
                        c.push(page, id, idx)?;
                    } else {
                        // Past this leaf's last entry: the answer starts the next leaf.
                        c.push(page, id, n.saturating_sub(1))?;
                        c.next(src)?;
                    }
                    return Ok(c);
                }
                _ => {
                    let b = BranchPage::new(&page);
                    let idx = b.find_child(key);
                    let child = b.child(idx).page;
                    c.push(page, id, idx)?;
                    id = child;
                }
            }
        }
    }

    /// Advances to the next entry; the cursor becomes empty past the end.
    pub(crate) fn next<S: PageSource>(&mut self, src: &S) -> Result<()> {
        if let Some((page, _, idx)) = self.stack.last_mut() {
            if *idx + 1 < LeafPage::new(page).len() {
                *idx += 1;
                return Ok(());
            }
            self.stack.pop();
            self.climb(src, false)?;
        }
        Ok(())
    }

    /// Steps back to the previous entry; the cursor becomes empty before the start.
    pub(crate) fn prev<S: PageSource>(&mut self, src: &S) -> Result<()> {
        if let Some((_, _, idx)) = self.stack.last_mut() {
            if *idx > 0 {
                *idx -= 1;
                return Ok(());
            }
            self.stack.pop();
            self.climb(src, true)?;
        }
        Ok(())
    }

    /// Pops exhausted branches, then descends into the next (or previous) sibling subtree.
    fn climb<S: PageSource>(&mut self, src: &S, backward: bool) -> Result<()> {
        while let Some((page, _, idx)) = self.stack.last_mut() {
            let b = BranchPage::new(page);
            let next = if backward {
                idx.checked_sub(1)
            } else {
                Some(*idx + 1).filter(|&i| i < b.children())
            };
            if let Some(i) = next {
                *idx = i;
                let child = b.child(i).page;
                return self.descend_edge(src, child, backward);
            }
            self.stack.pop();
        }
        Ok(())
    }
}

/// Outcome of inserting into a subtree.
enum Insert {
    One(ChildRef),
    Split(ChildRef, Vec<u8>, ChildRef),
}

/// The stored form of a value removed or replaced: inline bytes or an overflow descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OldValue {
    pub bytes: Vec<u8>,
    pub overflow: bool,
}

pub(crate) fn dirty_ref(id: PageId) -> ChildRef {
    ChildRef { page: id, crc: 0 }
}

/// The id to write a modified copy of page `id` under: itself if already dirty, else a
/// fresh page (and `id` is freed).
fn cow_id<W: TreeWriter>(w: &mut W, id: PageId) -> Result<PageId> {
    if w.is_dirty(id) {
        Ok(id)
    } else {
        let new = w.alloc()?;
        w.free(id);
        Ok(new)
    }
}

/// Index splitting `sizes` into two non-empty halves that each fit in `room`, preferring
/// the most even split, or `prefer` when it fits (appending keeps the left page full).
fn split_point(sizes: &[usize], room: usize, prefer: Option<usize>) -> usize {
    let total: usize = sizes.iter().sum();
    let mut best = (usize::MAX, sizes.len() / 2);
    let mut left = 0;
    for m in 1..sizes.len() {
        left += sizes[m - 1];
        let right = total - left;
        if left <= room && right <= room {
            if Some(m) == prefer {
                return m;
            }
            let worst = left.max(right);
            if worst < best.0 {
                best = (worst, m);
            }
        }
    }
    best.1
}

/// Inserts or replaces `key`. Returns the new root and the value it replaced.
pub(crate) fn insert<W: TreeWriter>(
    w: &mut W,
    root: Option<ChildRef>,
    entry: LeafEntry<'_>,
) -> Result<(ChildRef, Option<OldValue>)> {
    let ps = w.page_size();
    let Some(root) = root else {
        let id = w.alloc()?;
        w.put(id, build_leaf(ps, &[entry]));
        return Ok((dirty_ref(id), None));
    };
    let (res, old) = insert_rec(w, root.page, entry, 0)?;
    let new_root = match res {
        Insert::One(c) => c,
        Insert::Split(l, k, r) => {
            let id = w.alloc()?;
            w.put(id, build_branch(ps, &[l, r], &[&k]));
            dirty_ref(id)
        }
    };
    Ok((new_root, old))
}

fn insert_rec<W: TreeWriter>(
    w: &mut W,
    id: PageId,
    entry: LeafEntry<'_>,
    depth: usize,
) -> Result<(Insert, Option<OldValue>)> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(id));
    }
    let ps = w.page_size();
    let page = w.load(id)?;
    match kind_of(&page, id)? {
        PageKind::Leaf => {
            let leaf = LeafPage::new(&page);
            let mut entries: Vec<LeafEntry<'_>> = (0..leaf.len()).map(|i| leaf.entry(i)).collect();
            let (pos, old) = match leaf.find(entry.key) {
                Ok(i) => {
                    let (bytes, overflow) = leaf.stored_value(i);
                    entries[i] = entry;
                    (
                        i,
                        Some(OldValue {
                            bytes: bytes.to_vec(),
                            overflow,
                        }),
                    )
                }
                Err(i) => {
                    entries.insert(i, entry);
                    (i, None)
                }
            };
            if leaf_size(&entries) <= ps {
                let new = cow_id(w, id)?;
                w.put(new, build_leaf(ps, &entries));
                return Ok((Insert::One(dirty_ref(new)), old));
            }
            let sizes: Vec<usize> = entries.iter().map(|e| e.size()).collect();
            let appending = old.is_none() && pos == entries.len() - 1;
            let m = split_point(&sizes, ps - page::HEADER_LEN, appending.then_some(pos));
            let sep = entries[m].key.to_vec();
            let left = cow_id(w, id)?;
            let right = w.alloc()?;
            let left_ref = if appending && m == pos {
                // Everything before the new entry went left: appends go on to the right.
                match w.put_done(left, build_leaf(ps, &entries[..m]))? {
                    Some(crc) => ChildRef { page: left, crc },
                    None => dirty_ref(left),
                }
            } else {
                w.put(left, build_leaf(ps, &entries[..m]));
                dirty_ref(left)
            };
            w.put(right, build_leaf(ps, &entries[m..]));
            Ok((Insert::Split(left_ref, sep, dirty_ref(right)), old))
        }
        _ => {
            let b = BranchPage::new(&page);
            let idx = b.find_child(entry.key);
            let (res, old) = insert_rec(w, b.child(idx).page, entry, depth + 1)?;
            let mut children: Vec<ChildRef> = (0..b.children()).map(|i| b.child(i)).collect();
            let mut keys: Vec<&[u8]> = (0..b.children() - 1).map(|i| b.key(i)).collect();
            let sep_owned;
            match res {
                Insert::One(c) => children[idx] = c,
                Insert::Split(l, k, r) => {
                    sep_owned = k;
                    children[idx] = l;
                    children.insert(idx + 1, r);
                    keys.insert(idx, &sep_owned);
                }
            }
            let appending = idx + 2 == children.len();
            write_branch(w, id, &children, &keys, appending).map(|r| (r, old))
        }
    }
}

/// Writes a branch (copy-on-write), splitting it in two if it does not fit.
fn write_branch<W: TreeWriter>(
    w: &mut W,
    id: PageId,
    children: &[ChildRef],
    keys: &[&[u8]],
    appending: bool,
) -> Result<Insert> {
    let ps = w.page_size();
    if page::branch_size(keys.iter().copied()) <= ps {
        let new = cow_id(w, id)?;
        w.put(new, build_branch(ps, children, keys));
        return Ok(Insert::One(dirty_ref(new)));
    }
    // Promote keys[m]: left gets children[..=m], keys[..m]; right the rest. Each side
    // keeps at least two children (1 <= m <= n - 2): a branch with one child is invalid.
    let n = keys.len();
    let fits = |m: usize| {
        page::branch_size(keys[..m].iter().copied()) <= ps
            && page::branch_size(keys[m + 1..].iter().copied()) <= ps
    };
    let mut m = if appending && n >= 3 && fits(n - 2) {
        n - 2
    } else {
        n / 2
    };
    if !fits(m) {
        m = (1..n.saturating_sub(1))
            .filter(|&m| fits(m))
            .min_by_key(|&m| {
                let l = page::branch_size(keys[..m].iter().copied());
                let r = page::branch_size(keys[m + 1..].iter().copied());
                l.max(r)
            })
            .ok_or_else(|| StorageError::page(id, "branch cannot be split to fit a page"))?;
    }
    let sep = keys[m].to_vec();
    let left = cow_id(w, id)?;
    let right = w.alloc()?;
    w.put(left, build_branch(ps, &children[..=m], &keys[..m]));
    w.put(right, build_branch(ps, &children[m + 1..], &keys[m + 1..]));
    Ok(Insert::Split(dirty_ref(left), sep, dirty_ref(right)))
}

enum Delete {
    NotFound,
    /// The subtree's new root (`None`: now empty) and whether it is under a quarter full.
    Removed(Option<ChildRef>, bool),
}

/// Removes `key`. Returns the new root and the removed value, or `None` if absent (the
/// tree is then untouched).
pub(crate) fn delete<W: TreeWriter>(
    w: &mut W,
    root: Option<ChildRef>,
    key: &[u8],
) -> Result<(Option<ChildRef>, Option<OldValue>)> {
    let Some(r) = root else {
        return Ok((None, None));
    };
    match delete_rec(w, r.page, key, 0)? {
        (Delete::NotFound, _) => Ok((root, None)),
        (Delete::Removed(new, _), old) => Ok((new, old)),
    }
}

fn delete_rec<W: TreeWriter>(
    w: &mut W,
    id: PageId,
    key: &[u8],
    depth: usize,
) -> Result<(Delete, Option<OldValue>)> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(id));
    }
    let ps = w.page_size();
    let page = w.load(id)?;
    match kind_of(&page, id)? {
        PageKind::Leaf => {
            let leaf = LeafPage::new(&page);
            let Ok(i) = leaf.find(key) else {
                return Ok((Delete::NotFound, None));
            };
            let (bytes, overflow) = leaf.stored_value(i);
            let old = Some(OldValue {
                bytes: bytes.to_vec(),
                overflow,
            });
            if leaf.len() == 1 {
                w.free(id);
                return Ok((Delete::Removed(None, true), old));
            }
            let entries: Vec<LeafEntry<'_>> = (0..leaf.len())
                .filter(|&j| j != i)
                .map(|j| leaf.entry(j))
                .collect();
            let size = leaf_size(&entries);
            let new = cow_id(w, id)?;
            w.put(new, build_leaf(ps, &entries));
            Ok((Delete::Removed(Some(dirty_ref(new)), size < ps / 4), old))
        }
        _ => {
            let b = BranchPage::new(&page);
            let idx = b.find_child(key);
            let (res, old) = delete_rec(w, b.child(idx).page, key, depth + 1)?;
            let Delete::Removed(child, underfull) = res else {
                return Ok((Delete::NotFound, None));
            };
            let mut children: Vec<ChildRef> = (0..b.children()).map(|i| b.child(i)).collect();
            let mut keys: Vec<Vec<u8>> = (0..b.children() - 1).map(|i| b.key(i).to_vec()).collect();
            match child {
                None => {
                    children.remove(idx);
                    keys.remove(idx.saturating_sub(1));
                }
                Some(c) => {
                    children[idx] = c;
                    if underfull {
                        merge_with_sibling(w, &mut children, &mut keys, idx)?;
                    }
                }
            }
            if children.len() == 1 {
                w.free(id);
                return Ok((Delete::Removed(Some(children[0]), false), old));
            }
            let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            let size = page::branch_size(key_refs.iter().copied());
            let new = cow_id(w, id)?;
            w.put(new, build_branch(ps, &children, &key_refs));
            Ok((Delete::Removed(Some(dirty_ref(new)), size < ps / 4), old))
        }
    }
}

/// Merges child `idx` with a neighbour when both are the same kind and fit in one page.
fn merge_with_sibling<W: TreeWriter>(
    w: &mut W,
    children: &mut Vec<ChildRef>,
    keys: &mut Vec<Vec<u8>>,
    idx: usize,
) -> Result<()> {
    if children.len() < 2 {
        return Ok(());
    }
    let ps = w.page_size();
    let l = if idx + 1 < children.len() {
        idx
    } else {
        idx - 1
    };
    let (lid, rid) = (children[l].page, children[l + 1].page);
    let (lp, rp) = (w.load(lid)?, w.load(rid)?);
    let merged = match (kind_of(&lp, lid)?, kind_of(&rp, rid)?) {
        (PageKind::Leaf, PageKind::Leaf) => {
            let (a, b) = (LeafPage::new(&lp), LeafPage::new(&rp));
            let entries: Vec<LeafEntry<'_>> = (0..a.len())
                .map(|i| a.entry(i))
                .chain((0..b.len()).map(|i| b.entry(i)))
                .collect();
            (leaf_size(&entries) <= ps).then(|| build_leaf(ps, &entries))
        }
        (PageKind::Branch, PageKind::Branch) => {
            let (a, b) = (BranchPage::new(&lp), BranchPage::new(&rp));
            let kids: Vec<ChildRef> = (0..a.children())
                .map(|i| a.child(i))
                .chain((0..b.children()).map(|i| b.child(i)))
                .collect();
            let ks: Vec<&[u8]> = (0..a.children() - 1)
                .map(|i| a.key(i))
                .chain(std::iter::once(keys[l].as_slice()))
                .chain((0..b.children() - 1).map(|i| b.key(i)))
                .collect();
            (page::branch_size(ks.iter().copied()) <= ps).then(|| build_branch(ps, &kids, &ks))
        }
        _ => None,
    };
    if let Some(bytes) = merged {
        let new = cow_id(w, lid)?;
        w.put(new, bytes);
        w.free(rid);
        children[l] = dirty_ref(new);
        children.remove(l + 1);
        keys.remove(l);
    }
    Ok(())
}

/// Is `key` inside the bounds?
pub(crate) fn in_bounds(key: &[u8], lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    let above = match lower {
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(u) => key <= u.as_slice(),
        Bound::Excluded(u) => key < u.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}
