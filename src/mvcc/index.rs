//! The key index: for every key, the revisions of its history still kept, in memory.
//!
//! The history table is keyed by revision, so finding "key k as of revision r" needs a
//! second map from keys to revisions. Like etcd's `treeIndex`, it lives in memory and is
//! rebuilt at open by one scan of the history table (figures in docs/mvcc.md).
//!
//! A worked example. The commands
//!
//! ```text
//! rev 2: put foo=a        rev 5: delete foo
//! rev 3: put foo=b        rev 7: put foo=c    (txn: put foo=c, put bar=x → 7_0, 7_1)
//! ```
//!
//! leave `foo → [2_0, 3_0, 5_0†, 7_0]` († = tombstone) with live state create 7,
//! version 1. Reading foo at revision 4 finds the newest revision with main <= 4, `3_0`,
//! a put: the value is the record stored under 3_0. At revision 6 the newest is `5_0†`:
//! foo did not exist. Compacting at 5 keeps, per key, the newest revision <= 5 unless it
//! is a tombstone, and everything newer: foo becomes `[7_0]`, and `2_0, 3_0, 5_0` are
//! returned for removal from the history table. Compacting at 4 instead would keep
//! `[3_0, 5_0†, 7_0]`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use super::revision::Revision;

/// One kept revision of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRev {
    pub main: i64,
    pub sub: u32,
    pub tombstone: bool,
}

impl IndexRev {
    pub fn revision(&self) -> Revision {
        Revision::new(self.main, i64::from(self.sub))
    }
}

/// Revisions per shared chunk of a long history.
const CHUNK: usize = 128;

/// A key's kept revisions, ascending. Most keys have exactly one, held inline so the
/// index needs no allocation for them beyond the key. Two revisions (a key put then
/// deleted or put again, until compaction) take one small allocation.
///
/// A longer history is kept in chunks of [`CHUNK`] revisions shared between copies, then
/// the newest ones: applying a write copies the key's entry into the batch's layer, and
/// for a key written over and over (a hot key, a lock, a counter) a flat copy would cost
/// its whole history on every write. A copy costs one pointer per chunk instead.
#[derive(Debug, Clone, Default)]
pub enum RevList {
    #[default]
    Empty,
    One(IndexRev),
    /// A thin pointer, so that the list stays two words.
    Two(Box<[IndexRev; 2]>),
    Many(Box<Chunked>),
}

/// The revisions of a [`RevList::Many`]: chunks of exactly [`CHUNK`] revisions, then the
/// rest (fewer than [`CHUNK`]).
#[derive(Debug, Clone, Default)]
pub struct Chunked {
    sealed: Vec<Arc<[IndexRev]>>,
    tail: Vec<IndexRev>,
}

impl PartialEq for RevList {
    fn eq(&self, other: &RevList) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for RevList {}

impl RevList {
    fn from_vec(mut v: Vec<IndexRev>) -> RevList {
        match v.len() {
            0 => RevList::Empty,
            1 => RevList::One(v[0]),
            2 => RevList::Two(Box::new([v[0], v[1]])),
            _ => {
                let full = v.len() / CHUNK * CHUNK;
                let tail = v.split_off(full);
                let sealed = v.chunks(CHUNK).map(Arc::from).collect();
                RevList::Many(Box::new(Chunked { sealed, tail }))
            }
        }
    }

    /// Every revision, ascending.
    pub fn iter(&self) -> impl Iterator<Item = IndexRev> + '_ {
        let (sealed, tail): (&[Arc<[IndexRev]>], &[IndexRev]) = match self {
            RevList::Empty => (&[], &[]),
            RevList::One(r) => (&[], std::slice::from_ref(r)),
            RevList::Two(revs) => (&[], &revs[..]),
            RevList::Many(c) => (&c.sealed, &c.tail),
        };
        sealed
            .iter()
            .flat_map(|chunk| chunk.iter())
            .chain(tail)
            .copied()
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, RevList::Empty)
    }

    pub fn last(&self) -> Option<IndexRev> {
        match self {
            RevList::Empty => None,
            RevList::One(r) => Some(*r),
            RevList::Two(revs) => Some(revs[1]),
            RevList::Many(c) => c
                .tail
                .last()
                .or_else(|| c.sealed.last().and_then(|chunk| chunk.last()))
                .copied(),
        }
    }

    /// The last revision for which `pred` holds, where `pred` holds for a prefix of the
    /// list (a binary search), and how many revisions that prefix has.
    fn last_where(&self, pred: impl Fn(&IndexRev) -> bool) -> (Option<IndexRev>, usize) {
        match self {
            RevList::Empty => (None, 0),
            RevList::One(r) => match pred(r) {
                true => (Some(*r), 1),
                false => (None, 0),
            },
            RevList::Two(revs) => {
                let n = revs.partition_point(&pred);
                (n.checked_sub(1).map(|i| revs[i]), n)
            }
            RevList::Many(c) => {
                // Chunks wholly inside the prefix, then the one (or the tail) it ends in.
                let full = c
                    .sealed
                    .partition_point(|chunk| chunk.last().is_some_and(&pred));
                // Every sealed chunk holds exactly CHUNK revisions (`push` and `from_vec`
                // seal only full ones), so the count before chunk `full` is arithmetic.
                debug_assert!(c.sealed.iter().all(|chunk| chunk.len() == CHUNK));
                let before = full * CHUNK;
                let slice: &[IndexRev] = c.sealed.get(full).map_or(&c.tail, |chunk| chunk);
                let n = slice.partition_point(&pred);
                let last = match n {
                    0 => full
                        .checked_sub(1)
                        .and_then(|i| c.sealed[i].last().copied()),
                    n => Some(slice[n - 1]),
                };
                (last, before + n)
            }
        }
    }

    pub fn push(&mut self, r: IndexRev) {
        match self {
            RevList::Empty => *self = RevList::One(r),
            RevList::One(a) => *self = RevList::Two(Box::new([*a, r])),
            RevList::Two(revs) => {
                let mut tail = Vec::with_capacity(4);
                tail.extend_from_slice(&revs[..]);
                tail.push(r);
                *self = RevList::Many(Box::new(Chunked {
                    sealed: Vec::new(),
                    tail,
                }));
            }
            RevList::Many(c) => {
                c.tail.push(r);
                if c.tail.len() == CHUNK {
                    let chunk = Arc::from(std::mem::take(&mut c.tail));
                    c.sealed.push(chunk);
                }
            }
        }
    }

    /// Removes the first `n` revisions, appending them to `out`.
    fn remove_front(&mut self, n: usize, out: &mut Vec<Revision>) {
        let mut v: Vec<IndexRev> = self.iter().collect();
        out.extend(v.drain(..n.min(v.len())).map(|r| r.revision()));
        *self = RevList::from_vec(v);
    }
}

/// A key's kept history plus the metadata of its live value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyEntry {
    /// Never empty inside an index.
    revs: RevList,
    /// Of the live value (when the newest revision is a put), else 0.
    pub create: i64,
    pub version: i64,
    pub lease: i64,
}

impl KeyEntry {
    /// Kept revisions, ascending.
    pub fn revs(&self) -> impl Iterator<Item = IndexRev> + '_ {
        self.revs.iter()
    }

    /// Whether no revision is kept (the key is not in the index).
    pub fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// The put visible at `rev` (the newest revision with main <= rev, if not a tombstone).
    pub fn at(&self, rev: i64) -> Option<IndexRev> {
        let (r, _) = self.revs.last_where(|r| r.main <= rev);
        r.filter(|r| !r.tombstone)
    }

    /// The live value's revision, if the key exists now.
    pub fn live(&self) -> Option<IndexRev> {
        self.revs.last().filter(|r| !r.tombstone)
    }

    /// The newest revision strictly before `rev` (for an event's previous value).
    pub fn before(&self, rev: Revision) -> Option<IndexRev> {
        self.revs.last_where(|r| r.revision() < rev).0
    }

    /// Records a put at `rev` and returns the new (create_revision, version).
    pub fn put(&mut self, rev: Revision, lease: i64) -> (i64, i64) {
        debug_assert!(self.revs.last().is_none_or(|l| l.revision() < rev));
        if self.live().is_some() {
            self.version += 1;
        } else {
            self.create = rev.main;
            self.version = 1;
        }
        self.lease = lease;
        self.revs.push(index_rev(rev, false));
        (self.create, self.version)
    }

    /// Records a delete at `rev`.
    pub fn delete(&mut self, rev: Revision) {
        debug_assert!(self.revs.last().is_none_or(|l| l.revision() < rev));
        self.revs.push(index_rev(rev, true));
        self.create = 0;
        self.version = 0;
        self.lease = 0;
    }

    /// Whether compacting at `at` would drop anything.
    pub fn needs_compaction(&self, at: i64) -> bool {
        match self.revs.last_where(|r| r.main <= at) {
            (_, 0) => false,
            (Some(only), 1) => only.tombstone,
            _ => true,
        }
    }

    /// Drops what compaction at `at` no longer needs (see the module example), appending
    /// the dropped revisions to `dropped`.
    pub fn compact(&mut self, at: i64, dropped: &mut Vec<Revision>) {
        let (Some(newest), n) = self.revs.last_where(|r| r.main <= at) else {
            return;
        };
        let keep_from = if newest.tombstone { n } else { n - 1 };
        if keep_from > 0 {
            self.revs.remove_front(keep_from, dropped);
        }
    }
}

fn index_rev(rev: Revision, tombstone: bool) -> IndexRev {
    debug_assert!((0..=i64::from(u32::MAX)).contains(&rev.sub));
    IndexRev {
        main: rev.main,
        sub: rev.sub as u32,
        tombstone,
    }
}

/// Bounds of a key range over a map keyed by byte strings.
pub type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

type EntryIter<'a> =
    std::iter::Peekable<Box<dyn Iterator<Item = (&'a IndexKey, &'a KeyEntry)> + 'a>>;

/// Which keys a request names, by etcd's rules for `key` and `range_end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// `range_end` empty: exactly `key`.
    Single(Vec<u8>),
    /// `range_end` is `"\0"`: every key >= `key`.
    From(Vec<u8>),
    /// Every key in `[key, range_end)` (empty when `range_end <= key`).
    Between(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::From(key.to_vec()),
            end => KeyRange::Between(key.to_vec(), end.to_vec()),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => k == key.as_slice(),
            KeyRange::From(key) => k >= key.as_slice(),
            KeyRange::Between(key, end) => k >= key.as_slice() && k < end.as_slice(),
        }
    }

    /// The keys of this range after `key`: where a visit cut short at `key` resumes.
    pub fn after(&self, key: &[u8]) -> KeyRange {
        let next = |start: &Vec<u8>| start.clone().max([key, &[0]].concat());
        match self {
            KeyRange::Single(k) if k.as_slice() > key => self.clone(),
            KeyRange::Single(k) => KeyRange::Between(k.clone(), k.clone()),
            KeyRange::From(start) => KeyRange::From(next(start)),
            KeyRange::Between(start, end) => KeyRange::Between(next(start), end.clone()),
        }
    }

    /// Bounds for a `BTreeMap` range; `None` when no key can match (so callers never
    /// hand the map an inverted range, which would panic).
    pub fn bounds(&self) -> Option<KeyBounds<'_>> {
        match self {
            KeyRange::Single(k) => Some((Bound::Included(k), Bound::Included(k))),
            KeyRange::From(k) => Some((Bound::Included(k), Bound::Unbounded)),
            KeyRange::Between(k, e) if e > k => Some((Bound::Included(k), Bound::Excluded(e))),
            KeyRange::Between(..) => None,
        }
    }
}

/// Anything that can list index entries in key order: the shared index, or the apply
/// batch's layers over it.
pub trait IndexView {
    /// Calls `f` for each entry in `range`, in key order, until it returns false.
    fn visit(&self, range: &KeyRange, f: &mut dyn FnMut(&IndexKey, &KeyEntry) -> bool);
    fn get(&self, key: &[u8]) -> Option<&KeyEntry> {
        self.get_key_value(key).map(|(_, e)| e)
    }
    /// The entry and the index's own copy of its key.
    fn get_key_value(&self, key: &[u8]) -> Option<(&IndexKey, &KeyEntry)>;
}

/// A key as the index holds it. Shared, so that an apply batch's layer, the changes it
/// stages and the lease attachments point at the index's copy instead of making their
/// own (a prefix delete of many long keys would otherwise copy every key twice).
pub type IndexKey = Arc<[u8]>;

/// The shared index: key → kept history.
#[derive(Debug, Default)]
pub struct KeyIndex {
    map: BTreeMap<IndexKey, KeyEntry>,
}

impl KeyIndex {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &[u8]) -> Option<&KeyEntry> {
        self.map.get(key)
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut KeyEntry> {
        self.map.get_mut(key)
    }

    /// The entry for `key`, created empty if missing (the caller must push a revision).
    pub fn entry_mut(&mut self, key: &[u8]) -> &mut KeyEntry {
        if !self.map.contains_key(key) {
            self.map.insert(key.into(), KeyEntry::default());
        }
        self.map
            .get_mut(key)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    /// Replaces a key's entry (dropping the key when the entry is empty). Returns the old one.
    pub fn insert(&mut self, key: &IndexKey, entry: KeyEntry) -> Option<KeyEntry> {
        if entry.is_empty() {
            self.map.remove(&**key)
        } else if let Some(slot) = self.map.get_mut(&**key) {
            Some(std::mem::replace(slot, entry))
        } else {
            self.map.insert(Arc::clone(key), entry)
        }
    }

    /// Compacts every key at `at`; returns the revisions no longer needed.
    pub fn compact(&mut self, at: i64) -> Vec<Revision> {
        let mut dropped = Vec::new();
        self.map.retain(|_, e| {
            e.compact(at, &mut dropped);
            !e.is_empty()
        });
        dropped.sort_unstable();
        dropped
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IndexKey, &KeyEntry)> {
        self.map.iter()
    }

    pub fn range<'a>(
        &'a self,
        range: &'a KeyRange,
    ) -> Box<dyn Iterator<Item = (&'a IndexKey, &'a KeyEntry)> + 'a> {
        layer_range(&self.map, range)
    }
}

impl IndexView for KeyIndex {
    fn visit(&self, range: &KeyRange, f: &mut dyn FnMut(&IndexKey, &KeyEntry) -> bool) {
        for (k, e) in self.range(range) {
            if !f(k, e) {
                break;
            }
        }
    }

    fn get_key_value(&self, key: &[u8]) -> Option<(&IndexKey, &KeyEntry)> {
        self.map.get_key_value(key)
    }
}

/// Builds the index at open from the history table's records, which come in revision
/// order with keys in no order. Inserting them into the tree one by one costs a tree
/// search per record; instead they are sorted by (key, revision) once and the tree is
/// built from sorted input.
#[derive(Debug, Default)]
pub struct IndexLoader {
    records: Vec<LoadedRecord>,
}

#[derive(Debug)]
struct LoadedRecord {
    key: IndexKey,
    rev: IndexRev,
    create: i64,
    version: i64,
    lease: i64,
}

impl IndexLoader {
    /// Adds a put (with the metadata its record stores) or a tombstone.
    pub fn push(&mut self, key: &[u8], rev: Revision, put: Option<(i64, i64, i64)>) {
        let (create, version, lease) = put.unwrap_or_default();
        self.records.push(LoadedRecord {
            key: key.into(),
            rev: index_rev(rev, put.is_none()),
            create,
            version,
            lease,
        });
    }

    pub fn finish(mut self) -> KeyIndex {
        self.records.sort_unstable_by(|a, b| {
            a.key
                .cmp(&b.key)
                .then_with(|| a.rev.revision().cmp(&b.rev.revision()))
        });
        let mut entries: Vec<(IndexKey, KeyEntry)> = Vec::new();
        for r in self.records {
            let same = entries.last().is_some_and(|(k, _)| *k == r.key);
            if !same {
                entries.push((r.key, KeyEntry::default()));
            }
            let Some((_, e)) = entries.last_mut() else {
                continue;
            };
            e.revs.push(r.rev);
            // The record is authoritative: compaction may have dropped the history the
            // version would otherwise be counted from.
            (e.create, e.version, e.lease) = (r.create, r.version, r.lease);
        }
        KeyIndex {
            // Sorted, distinct keys: the map is bulk-built without searching.
            map: entries.into_iter().collect(),
        }
    }
}

/// Entries changed by an apply batch (or one command of it), shadowing a lower layer.
pub type Layer = BTreeMap<IndexKey, KeyEntry>;

fn layer_range<'a>(
    layer: &'a Layer,
    range: &'a KeyRange,
) -> Box<dyn Iterator<Item = (&'a IndexKey, &'a KeyEntry)> + 'a> {
    match range.bounds() {
        Some(b) => Box::new(layer.range::<[u8], _>(b)),
        None => Box::new(std::iter::empty()),
    }
}

/// The shared index seen through an apply batch's changed entries and, optionally, the
/// current command's staged entries (top layer wins).
#[derive(Debug)]
pub struct Layered<'a> {
    pub base: &'a KeyIndex,
    pub layers: [Option<&'a Layer>; 2],
}

impl IndexView for Layered<'_> {
    fn visit(&self, range: &KeyRange, f: &mut dyn FnMut(&IndexKey, &KeyEntry) -> bool) {
        let mut iters: Vec<EntryIter<'_>> = vec![self.base.range(range).peekable()];
        for l in self.layers.iter().flatten() {
            iters.push(layer_range(l, range).peekable());
        }
        loop {
            // The smallest next key, and the topmost layer holding it.
            let mut best: Option<(&IndexKey, &KeyEntry)> = None;
            for it in iters.iter_mut() {
                if let Some(&(k, e)) = it.peek() {
                    if best.is_none_or(|(bk, _)| k <= bk) {
                        best = Some((k, e));
                    }
                }
            }
            let Some((key, entry)) = best else { return };
            for it in iters.iter_mut() {
                if it.peek().is_some_and(|&(k, _)| k == key) {
                    it.next();
                }
            }
            if !f(key, entry) {
                return;
            }
        }
    }

    fn get_key_value(&self, key: &[u8]) -> Option<(&IndexKey, &KeyEntry)> {
        for l in self.layers.iter().rev().flatten() {
            if let Some(kv) = l.get_key_value(key) {
                return Some(kv);
            }
        }
        self.base.get_key_value(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64, sub: i64) -> Revision {
        Revision::new(main, sub)
    }

    /// The module documentation's example.
    fn foo() -> KeyEntry {
        let mut e = KeyEntry::default();
        assert_eq!(e.put(r(2, 0), 0), (2, 1));
        assert_eq!(e.put(r(3, 0), 0), (2, 2));
        e.delete(r(5, 0));
        assert_eq!(e.put(r(7, 0), 9), (7, 1));
        e
    }

    #[test]
    fn a_range_resumes_after_a_key() {
        let k = |s: &str| s.as_bytes().to_vec();
        let between = KeyRange::new(b"a", b"c");
        let rest = between.after(b"b");
        assert_eq!(rest, KeyRange::Between(k("b\0"), k("c")));
        assert!(!rest.contains(b"b") && rest.contains(b"b\0") && !rest.contains(b"c"));
        // Never wider than the range it came from.
        assert_eq!(between.after(b"0"), between);
        assert_eq!(
            KeyRange::new(b"a", b"\0").after(b"x"),
            KeyRange::From(k("x\0"))
        );
        let single = KeyRange::new(b"a", b"");
        assert_eq!(single.after(b"0"), single);
        assert_eq!(single.after(b"a").bounds(), None);
    }

    #[test]
    fn two_revisions_take_one_allocation_then_grow_into_a_list() {
        let mut e = KeyEntry::default();
        e.put(r(1, 0), 0);
        assert!(matches!(e.revs, RevList::One(_)));
        e.delete(r(2, 0));
        assert!(matches!(e.revs, RevList::Two(_)));
        assert_eq!((e.live(), e.at(1).map(|x| x.main)), (None, Some(1)));
        assert_eq!(e.before(r(2, 0)).map(|x| x.main), Some(1));
        e.put(r(3, 0), 0);
        assert!(matches!(e.revs, RevList::Many(_)));
        e.put(r(4, 0), 0);
        assert_eq!(e.revs().map(|x| x.main).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let mut dropped = Vec::new();
        e.compact(3, &mut dropped);
        assert!(matches!(e.revs, RevList::Two(_)));
        assert_eq!(e.revs().map(|x| x.main).collect::<Vec<_>>(), [3, 4]);
        e.compact(4, &mut dropped);
        assert!(matches!(e.revs, RevList::One(_)));
        assert_eq!(
            dropped.iter().map(|r| r.main).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn reads_at_past_revisions() {
        let e = foo();
        assert_eq!(e.at(1), None);
        assert_eq!(e.at(2).map(|x| x.main), Some(2));
        assert_eq!(e.at(4).map(|x| x.main), Some(3));
        assert_eq!(e.at(5), None);
        assert_eq!(e.at(6), None);
        assert_eq!(e.at(100).map(|x| x.main), Some(7));
        assert_eq!((e.create, e.version, e.lease), (7, 1, 9));
        assert_eq!(
            e.before(r(7, 0)).map(|x| (x.main, x.tombstone)),
            Some((5, true))
        );
        assert_eq!(e.before(r(2, 0)), None);
    }

    #[test]
    fn compaction_keeps_the_newest_put_at_or_below() {
        let mut e = foo();
        assert!(!e.needs_compaction(2) && e.needs_compaction(3));
        let mut d = Vec::new();
        e.compact(4, &mut d);
        assert_eq!(d, vec![r(2, 0)]);
        assert_eq!(e.revs().map(|x| x.main).collect::<Vec<_>>(), [3, 5, 7]);
        e.compact(5, &mut d);
        assert_eq!(d, vec![r(2, 0), r(3, 0), r(5, 0)]);
        assert_eq!(e.revs().map(|x| x.main).collect::<Vec<_>>(), [7]);
        // Compacting again, or below, changes nothing.
        assert!(!e.needs_compaction(6));
        e.compact(6, &mut d);
        e.compact(1, &mut d);
        assert_eq!(d.len(), 3);
        // A key whose newest revision <= at is a tombstone disappears.
        let mut g = KeyEntry::default();
        g.put(r(2, 0), 0);
        g.delete(r(3, 0));
        g.compact(3, &mut d);
        assert!(g.is_empty());
    }

    #[test]
    fn key_ranges_follow_etcd_rules() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Single(b"a".to_vec()));
        assert_eq!(KeyRange::new(b"a", b"\0"), KeyRange::From(b"a".to_vec()));
        let all = KeyRange::new(b"\0", b"\0");
        assert!(all.contains(b"\0") && all.contains(b"zzz"));
        let r = KeyRange::new(b"b", b"d");
        assert!(r.contains(b"b") && r.contains(b"c\xff") && !r.contains(b"d"));
        assert!(KeyRange::new(b"d", b"b").bounds().is_none());
        assert!(KeyRange::new(b"d", b"d").bounds().is_none());
    }

    #[test]
    fn layers_shadow_the_base_in_key_order() {
        let mut base = KeyIndex::default();
        for (k, m) in [(&b"a"[..], 2), (b"c", 3), (b"e", 4)] {
            base.entry_mut(k).put(r(m, 0), 0);
        }
        let mut batch = Layer::new();
        let mut c = base.get(b"c").cloned().unwrap();
        c.put(r(5, 0), 0);
        batch.insert(IndexKey::from(&b"c"[..]), c);
        let mut b = KeyEntry::default();
        b.put(r(5, 1), 0);
        batch.insert(IndexKey::from(&b"b"[..]), b);
        let mut staged = Layer::new();
        let mut e = base.get(b"e").cloned().unwrap();
        e.delete(r(6, 0));
        staged.insert(IndexKey::from(&b"e"[..]), e);
        let v = Layered {
            base: &base,
            layers: [Some(&batch), Some(&staged)],
        };
        let mut seen = Vec::new();
        v.visit(&KeyRange::new(b"a", b"\0"), &mut |k, e| {
            seen.push((k.to_vec(), e.revs().last().map(|x| x.main)));
            true
        });
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), Some(2)),
                (b"b".to_vec(), Some(5)),
                (b"c".to_vec(), Some(5)),
                (b"e".to_vec(), Some(6)),
            ]
        );
        assert_eq!(v.get(b"c").and_then(|e| e.live()).map(|x| x.main), Some(5));
        assert!(v.get(b"e").and_then(|e| e.live()).is_none());
        // Stopping early.
        let mut n = 0;
        v.visit(&KeyRange::new(b"a", b"\0"), &mut |_, _| {
            n += 1;
            n < 2
        });
        assert_eq!(n, 2);
    }

    #[test]
    fn loader_builds_what_applying_builds() {
        let mut applied = KeyIndex::default();
        let mut loader = IndexLoader::default();
        // (key, main, sub, put?) in revision order, keys interleaved.
        let log = [
            (&b"b"[..], 2, 0, true),
            (b"a", 3, 0, true),
            (b"b", 3, 1, true),
            (b"c", 4, 0, true),
            (b"b", 5, 0, false),
            (b"a", 6, 0, true),
            (b"b", 7, 0, true),
        ];
        for (k, m, sub, put) in log {
            let e = applied.entry_mut(k);
            if put {
                let (c, v) = e.put(r(m, sub), m * 10);
                loader.push(k, r(m, sub), Some((c, v, m * 10)));
            } else {
                e.delete(r(m, sub));
                loader.push(k, r(m, sub), None);
            }
        }
        let loaded = loader.finish();
        assert_eq!(loaded.len(), 3);
        for ((k1, e1), (k2, e2)) in applied.iter().zip(loaded.iter()) {
            assert_eq!((k1, e1), (k2, e2));
        }
        assert_eq!(std::mem::size_of::<KeyEntry>(), 40);
    }

    #[test]
    fn index_compaction_drops_empty_keys() {
        let mut ix = KeyIndex::default();
        ix.entry_mut(b"x").put(r(2, 0), 0);
        ix.entry_mut(b"x").delete(r(3, 0));
        ix.entry_mut(b"y").put(r(4, 0), 0);
        let d = ix.compact(4);
        assert_eq!(d, vec![r(2, 0), r(3, 0)]);
        assert_eq!(ix.len(), 1);
        assert!(ix.get(b"y").is_some());
    }

    /// The chunked revision list answers like a flat vector of the same revisions,
    /// across chunk boundaries, copies and compactions.
    #[test]
    fn chunked_history_matches_a_flat_list() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 64,
            ..Config::default()
        });
        let ops = proptest::collection::vec((1u8..20, any::<bool>(), 0u8..8), 1..700);
        runner
            .run(&ops, |ops| {
                let mut entry = KeyEntry::default();
                let mut flat: Vec<IndexRev> = Vec::new();
                let mut main = 1;
                let mut copies = Vec::new();
                for (step, tombstone, action) in ops {
                    main += i64::from(step);
                    let rev = Revision::new(main, 0);
                    if tombstone {
                        entry.delete(rev);
                    } else {
                        entry.put(rev, 0);
                    }
                    flat.push(index_rev(rev, tombstone));
                    if action == 0 {
                        // Compact somewhere in the kept history, as the flat rules say.
                        let at = flat[flat.len() / 2].main;
                        let n = flat.partition_point(|r| r.main <= at);
                        let keep_from = if flat[n - 1].tombstone { n } else { n - 1 };
                        let expected: Vec<Revision> =
                            flat.drain(..keep_from).map(|r| r.revision()).collect();
                        let mut dropped = Vec::new();
                        prop_assert_eq!(entry.needs_compaction(at), keep_from > 0);
                        entry.compact(at, &mut dropped);
                        prop_assert_eq!(dropped, expected);
                    }
                    if action == 1 {
                        copies.push((entry.clone(), flat.clone()));
                    }
                }
                copies.push((entry, flat));
                for (entry, flat) in &copies {
                    prop_assert_eq!(entry.revs().collect::<Vec<_>>(), flat.clone());
                    prop_assert_eq!(entry.live(), flat.last().copied().filter(|r| !r.tombstone));
                    let last = flat.last().map_or(0, |r| r.main);
                    for probe in 0..=last + 1 {
                        let n = flat.partition_point(|r| r.main <= probe);
                        let at = n.checked_sub(1).map(|i| flat[i]).filter(|r| !r.tombstone);
                        prop_assert_eq!(entry.at(probe), at);
                        let rev = Revision::new(probe, 0);
                        let n = flat.partition_point(|r| r.revision() < rev);
                        prop_assert_eq!(entry.before(rev), n.checked_sub(1).map(|i| flat[i]));
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}
