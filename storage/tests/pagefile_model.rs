//! Model test of the page file: random operation sequences run against the database and
//! against a `BTreeMap`, which must agree on every read.
//!
//! Operations: insert (including overflow values and bulk runs of consecutive keys),
//! remove, `remove_range`, get, range scans forwards, backwards and from both ends with
//! every kind of bound, `count_range`, durable and deferred commits, aborts, snapshot
//! readers kept across commits and checked against the model as of their opening, and
//! reopening the file (which shows the last durable commit only). Small pages and a small
//! key space make splits and merges frequent.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use mnemo_storage::{
    Database, DatabaseOptions, Durability, MemoryBackend, ReadTransaction, Table, WriteTransaction,
};
use proptest::prelude::*;

const PAGE: usize = 1024;
const KEYS: u16 = 400;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: PAGE,
        cache_bytes: 256 << 10,
    }
}

fn key(i: u16) -> Vec<u8> {
    // Fixed-width prefix keeps numeric order; the filler makes entries big enough that a
    // 1 KiB page holds only a handful.
    format!("k{i:05}{}", "-".repeat(usize::from(i % 7) * 5)).into_bytes()
}

fn value(seed: u8, len: u16) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

#[derive(Debug, Clone)]
enum B {
    Unbounded,
    Included(u16),
    Excluded(u16),
}

impl B {
    fn to_bound(&self) -> Bound<Vec<u8>> {
        match self {
            B::Unbounded => Bound::Unbounded,
            B::Included(i) => Bound::Included(key(*i)),
            B::Excluded(i) => Bound::Excluded(key(*i)),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u16, u8, u16),
    InsertRun(u16, u16, u8),
    Remove(u16),
    RemoveRange(B, B),
    Get(u16),
    Range(B, B, bool),
    RangeBothEnds(B, B),
    CountRange(B, B),
    Commit(bool),
    Abort,
    OpenSnapshot,
    CheckSnapshot(usize),
    DropSnapshot(usize),
    Reopen,
}

fn bound() -> impl Strategy<Value = B> {
    prop_oneof![
        1 => Just(B::Unbounded),
        2 => (0..KEYS).prop_map(B::Included),
        2 => (0..KEYS).prop_map(B::Excluded),
    ]
}

fn value_len() -> impl Strategy<Value = u16> {
    prop_oneof![
        8 => 0u16..80,
        1 => 80u16..480,
        1 => 480u16..3000, // overflow pages
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0..KEYS, any::<u8>(), value_len()).prop_map(|(k, s, l)| Op::Insert(k, s, l)),
        3 => (0..KEYS, 1u16..120, any::<u8>()).prop_map(|(k, n, s)| Op::InsertRun(k, n, s)),
        12 => (0..KEYS).prop_map(Op::Remove),
        2 => (bound(), bound()).prop_map(|(a, b)| Op::RemoveRange(a, b)),
        8 => (0..KEYS).prop_map(Op::Get),
        5 => (bound(), bound(), any::<bool>()).prop_map(|(a, b, r)| Op::Range(a, b, r)),
        2 => (bound(), bound()).prop_map(|(a, b)| Op::RangeBothEnds(a, b)),
        3 => (bound(), bound()).prop_map(|(a, b)| Op::CountRange(a, b)),
        6 => any::<bool>().prop_map(Op::Commit),
        1 => Just(Op::Abort),
        2 => Just(Op::OpenSnapshot),
        2 => any::<usize>().prop_map(Op::CheckSnapshot),
        1 => any::<usize>().prop_map(Op::DropSnapshot),
        1 => Just(Op::Reopen),
    ]
}

fn in_range(k: &[u8], lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    (match lo {
        Bound::Unbounded => true,
        Bound::Included(l) => k >= l.as_slice(),
        Bound::Excluded(l) => k > l.as_slice(),
    }) && (match hi {
        Bound::Unbounded => true,
        Bound::Included(h) => k <= h.as_slice(),
        Bound::Excluded(h) => k < h.as_slice(),
    })
}

fn model_range(m: &Model, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.iter()
        .filter(|(k, _)| in_range(k, lo, hi))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn entries(it: mnemo_storage::Range<'_>, rev: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let collect = |e: mnemo_storage::Result<mnemo_storage::Entry>| {
        let e = e.unwrap();
        (e.key().to_vec(), e.value().to_vec())
    };
    if rev {
        it.rev().map(collect).collect()
    } else {
        it.map(collect).collect()
    }
}

fn full(t: &Table<'_>) -> Model {
    entries(t.iter().unwrap(), false).into_iter().collect()
}

struct Harness {
    backend: MemoryBackend,
    db: Database,
    write: Option<WriteTransaction>,
    /// The open write transaction's view, the latest commit, the latest durable commit.
    pending: Model,
    committed: Model,
    durable: Model,
    snapshots: Vec<(ReadTransaction, Model)>,
}

impl Harness {
    fn new() -> Harness {
        let backend = MemoryBackend::new();
        let db = Database::create(Arc::new(backend.clone()), opts()).unwrap();
        let mut w = db.begin_write().unwrap();
        w.open_table("t").unwrap();
        w.commit(Durability::Durable).unwrap();
        Harness {
            backend,
            db,
            write: None,
            pending: Model::new(),
            committed: Model::new(),
            durable: Model::new(),
            snapshots: Vec::new(),
        }
    }

    fn writer(&mut self) -> &mut WriteTransaction {
        if self.write.is_none() {
            self.write = Some(self.db.begin_write().unwrap());
            self.pending = self.committed.clone();
        }
        self.write.as_mut().unwrap()
    }

    /// Runs `f` on the table as the next read would see it: the open write transaction
    /// if any (it sees its own writes), otherwise a new snapshot. Returns the model too.
    fn read<R>(&mut self, f: impl FnOnce(&Table<'_>, &Model) -> R) -> R {
        match self.write.as_mut() {
            Some(w) => {
                let t = w.table("t").unwrap();
                f(&t, &self.pending)
            }
            None => {
                let r = self.db.begin_read().unwrap();
                let t = r.open_table("t").unwrap();
                f(&t, &self.committed)
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Insert(k, s, l) => {
                let (k, v) = (key(*k), value(*s, *l));
                let mut t = self.writer().open_table("t").unwrap();
                let existed = t.insert(&k, &v).unwrap();
                assert_eq!(existed, self.pending.insert(k, v).is_some());
            }
            Op::InsertRun(start, n, s) => {
                let mut t = self.writer().open_table("t").unwrap();
                let mut kvs = Vec::new();
                for i in *start..(*start + *n).min(KEYS) {
                    let (k, v) = (key(i), value(s.wrapping_add(i as u8), 90));
                    t.insert(&k, &v).unwrap();
                    kvs.push((k, v));
                }
                self.pending.extend(kvs);
            }
            Op::Remove(k) => {
                let k = key(*k);
                let existed = self.writer().open_table("t").unwrap().remove(&k).unwrap();
                assert_eq!(existed, self.pending.remove(&k).is_some());
            }
            Op::RemoveRange(a, b) => {
                let (lo, hi) = (a.to_bound(), b.to_bound());
                let n = self
                    .writer()
                    .open_table("t")
                    .unwrap()
                    .remove_range((lo.clone(), hi.clone()))
                    .unwrap();
                let before = self.pending.len();
                self.pending.retain(|k, _| !in_range(k, &lo, &hi));
                assert_eq!(n, (before - self.pending.len()) as u64);
            }
            Op::Get(k) => {
                let k = key(*k);
                self.read(|t, m| {
                    assert_eq!(t.get(&k).unwrap().map(|v| v.to_vec()).as_ref(), m.get(&k));
                });
            }
            Op::Range(a, b, rev) => {
                let (lo, hi) = (a.to_bound(), b.to_bound());
                self.read(|t, m| {
                    let got = entries(t.range((lo.clone(), hi.clone())).unwrap(), *rev);
                    let mut want = model_range(m, &lo, &hi);
                    if *rev {
                        want.reverse();
                    }
                    assert_eq!(got, want, "range {a:?}..{b:?} rev {rev}");
                });
            }
            Op::RangeBothEnds(a, b) => {
                let (lo, hi) = (a.to_bound(), b.to_bound());
                self.read(|t, m| {
                    let want = model_range(m, &lo, &hi);
                    let mut it = t.range((lo.clone(), hi.clone())).unwrap();
                    let (mut front, mut back) = (Vec::new(), Vec::new());
                    loop {
                        let f = it.next().map(|e| e.unwrap().key().to_vec());
                        let b = it.next_back().map(|e| e.unwrap().key().to_vec());
                        if f.is_none() && b.is_none() {
                            break;
                        }
                        front.extend(f);
                        back.extend(b);
                    }
                    back.reverse();
                    front.extend(back);
                    let want: Vec<Vec<u8>> = want.into_iter().map(|(k, _)| k).collect();
                    assert_eq!(front, want, "both ends of {a:?}..{b:?}");
                });
            }
            Op::CountRange(a, b) => {
                let (lo, hi) = (a.to_bound(), b.to_bound());
                self.read(|t, m| {
                    let n = t.count_range((lo.clone(), hi.clone())).unwrap();
                    assert_eq!(n, model_range(m, &lo, &hi).len() as u64);
                    assert_eq!(t.len(), m.len() as u64);
                });
            }
            Op::Commit(durable) => {
                if let Some(w) = self.write.take() {
                    let d = if *durable {
                        Durability::Durable
                    } else {
                        Durability::Deferred
                    };
                    w.commit(d).unwrap();
                    self.committed = std::mem::take(&mut self.pending);
                    if *durable {
                        self.durable = self.committed.clone();
                    }
                }
            }
            Op::Abort => {
                if let Some(w) = self.write.take() {
                    w.abort();
                }
            }
            Op::OpenSnapshot => {
                // A snapshot sees the latest commit, never the open write transaction.
                let r = self.db.begin_read().unwrap();
                self.snapshots.push((r, self.committed.clone()));
            }
            Op::CheckSnapshot(i) => {
                if !self.snapshots.is_empty() {
                    let (r, want) = &self.snapshots[i % self.snapshots.len()];
                    assert_eq!(&full(&r.open_table("t").unwrap()), want, "old snapshot");
                }
            }
            Op::DropSnapshot(i) => {
                if !self.snapshots.is_empty() {
                    let n = self.snapshots.len();
                    self.snapshots.swap_remove(i % n);
                }
            }
            Op::Reopen => {
                self.write = None;
                // Old snapshots keep reading the old file; the reopened database works on
                // a copy of its bytes, which hold deferred commits' pages but no slot.
                let copy = MemoryBackend::from_bytes(self.backend.to_bytes());
                self.db = Database::open(Arc::new(copy.clone()), opts()).unwrap();
                self.backend = copy;
                self.committed = self.durable.clone();
                let r = self.db.begin_read().unwrap();
                assert_eq!(full(&r.open_table("t").unwrap()), self.durable, "reopened");
            }
        }
    }

    fn finish(mut self) {
        self.write = None;
        for (r, want) in &self.snapshots {
            assert_eq!(
                &full(&r.open_table("t").unwrap()),
                want,
                "old snapshot at end"
            );
        }
        let r = self.db.begin_read().unwrap();
        assert_eq!(full(&r.open_table("t").unwrap()), self.committed);
        drop(r);
        let report = self.db.check().unwrap();
        assert!(report.is_ok(), "{:#?}", report.problems);
        self.snapshots.clear();
        // With every reader gone, a commit still leaves a sound file.
        let mut w = self.db.begin_write().unwrap();
        w.open_table("t").unwrap().insert(b"last", b"x").unwrap();
        w.commit(Durability::Durable).unwrap();
        let report = self.db.check().unwrap();
        assert!(report.is_ok(), "{:#?}", report.problems);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn page_file_matches_a_btreemap(ops in prop::collection::vec(op(), 1..400)) {
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op);
        }
        h.finish();
    }
}

/// A long fixed sequence that reaches deep trees, so depth does not depend on luck.
#[test]
fn deep_tree_sequence_matches_a_btreemap() {
    let mut h = Harness::new();
    for round in 0..12u16 {
        h.apply(&Op::InsertRun(0, KEYS, round as u8));
        h.apply(&Op::Insert(round * 31 % KEYS, 1, 2500));
        h.apply(&Op::OpenSnapshot);
        h.apply(&Op::Commit(round % 3 == 0));
        h.apply(&Op::RemoveRange(
            B::Included(round * 17 % KEYS),
            B::Excluded((round * 17 + 150) % KEYS),
        ));
        h.apply(&Op::Range(
            B::Excluded(30),
            B::Included(300),
            round % 2 == 0,
        ));
        h.apply(&Op::Commit(round % 2 == 0));
        h.apply(&Op::CheckSnapshot(round as usize));
        if round % 4 == 3 {
            h.apply(&Op::Reopen);
        }
    }
    let depth = h.db.stats().unwrap().max_depth();
    assert!(depth >= 3, "depth {depth}");
    h.finish();
}
