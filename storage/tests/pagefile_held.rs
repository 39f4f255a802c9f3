//! Held pages: deferred commits keep their pages in memory until a checkpoint, which
//! writes only the ones a snapshot may still read (docs/format.md, "Held pages").

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mnemo_storage::{
    CrashMode, Database, DatabaseOptions, Durability, FaultBackend, MemoryBackend, ReadTransaction,
    StorageBackend, TestRng,
};

const PAGE: usize = 1024;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// A [`FaultBackend`] that counts the pages it is asked to write with any non-zero byte
/// (growing the file writes zeros, which carry no page), and whose syncs take
/// `sync_pause`, as a disk's do.
#[derive(Debug)]
struct Counting {
    fault: FaultBackend,
    pages: AtomicU64,
    sync_pause: Duration,
}

impl StorageBackend for Counting {
    fn len(&self) -> io::Result<u64> {
        self.fault.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.fault.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset >= PAGE as u64 {
            let n = data
                .chunks(PAGE)
                .filter(|p| p.iter().any(|&b| b != 0))
                .count();
            self.pages.fetch_add(n as u64, Ordering::SeqCst);
        }
        self.fault.write_at(offset, data)
    }
    fn sync_data(&self) -> io::Result<()> {
        if !self.sync_pause.is_zero() {
            std::thread::sleep(self.sync_pause);
        }
        self.fault.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fault.set_len(len)
    }
}

fn counting_db(cache_bytes: usize) -> (Database, Arc<Counting>) {
    pausing_db(cache_bytes, Duration::ZERO)
}

fn pausing_db(cache_bytes: usize, sync_pause: Duration) -> (Database, Arc<Counting>) {
    let b = Arc::new(Counting {
        fault: FaultBackend::new(),
        pages: AtomicU64::new(0),
        sync_pause,
    });
    let opts = DatabaseOptions {
        page_size: PAGE,
        cache_bytes,
    };
    (Database::create(b.clone(), opts).unwrap(), b)
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn put(db: &Database, model: &mut Model, k: Vec<u8>, v: Vec<u8>, d: Durability) {
    let mut w = db.begin_write().unwrap();
    w.open_table("t").unwrap().insert(&k, &v).unwrap();
    w.commit(d).unwrap();
    model.insert(k, v);
}

fn contents(db: &Database) -> Model {
    seen_by(&db.begin_read().unwrap())
}

/// The table as `reader`'s snapshot has it.
fn seen_by(reader: &ReadTransaction) -> Model {
    let t = reader.open_table("t").unwrap();
    t.iter()
        .unwrap()
        .map(|e| e.map(|e| (e.key().to_vec(), e.value().to_vec())).unwrap())
        .collect()
}

fn assert_clean(db: &Database) {
    let report = db.check().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Opens what a power cut now could leave and returns it.
fn crash(b: &Counting, mode: CrashMode, seed: u64) -> Database {
    let image = b.fault.crash_image(mode, &mut TestRng::new(seed));
    let opts = DatabaseOptions {
        page_size: PAGE,
        cache_bytes: 1 << 20,
    };
    Database::open(Arc::new(MemoryBackend::from_bytes(image)), opts).unwrap()
}

/// A table of `n` keys, durable; returns its model.
fn load(db: &Database, n: u64) -> Model {
    let mut model = Model::new();
    let mut w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..n {
            t.insert(&key(i), b"initial").unwrap();
            model.insert(key(i), b"initial".to_vec());
        }
    }
    w.commit(Durability::Durable).unwrap();
    model
}

#[test]
fn deferred_commits_write_no_pages_and_a_checkpoint_writes_only_the_live_ones() {
    let (db, b) = counting_db(4 << 20);
    let mut model = load(&db, 2000);
    let mut rng = TestRng::new(5);
    let before = b.pages.load(Ordering::SeqCst);
    let commits = 200;
    for n in 0..commits {
        let k = key(rng.below(2000));
        put(
            &db,
            &mut model,
            k,
            format!("v{n}").into_bytes(),
            Durability::Deferred,
        );
    }
    assert_eq!(
        b.pages.load(Ordering::SeqCst),
        before,
        "deferred commits wrote pages"
    );
    assert!(db.held_bytes() > 0);
    assert_eq!(contents(&db), model);
    assert_clean(&db);

    let point = db.commit_point();
    assert!(point.checkpoint().unwrap());
    let written = b.pages.load(Ordering::SeqCst) - before;
    // Each commit replaced a leaf, the branches above it, the catalog and the free DB's
    // pages: about five per commit. Only the pages of the last state were written.
    assert!(written > 0);
    assert!(
        written < commits,
        "checkpoint wrote {written} pages for {commits} one-key commits"
    );
    assert_eq!(
        db.held_bytes(),
        0,
        "a checkpoint of the latest commit leaves none held"
    );
    for (seed, mode) in [(0, CrashMode::DropAll), (1, CrashMode::Random)] {
        let crashed = crash(&b, mode, seed);
        assert_eq!(crashed.last_txn(), point.txn());
        assert_eq!(contents(&crashed), model);
        assert_clean(&crashed);
    }
}

#[test]
fn a_reader_keeps_the_held_pages_it_reads_across_checkpoints() {
    // A cache of 256 pages (and up to 128 held) for a table of about 700: reads miss
    // the cache and come from held pages or disk.
    let (db, b) = counting_db(256 * PAGE);
    let mut model = load(&db, 20_000);
    let mut rng = TestRng::new(9);
    let mut keys: Vec<Vec<u8>> = (0..20).map(|_| key(rng.below(20_000))).collect();
    keys.sort();
    keys.dedup();
    for (n, k) in keys.iter().enumerate() {
        let v = format!("a{n}").into_bytes();
        put(&db, &mut model, k.clone(), v, Durability::Deferred);
    }
    // A reader, then a commit that overwrites every key the commits above wrote,
    // freeing the held pages the reader's snapshot reads.
    let reader = db.begin_read().unwrap();
    let at_reader = model.clone();
    let mut w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for k in &keys {
            t.insert(k, b"overwritten").unwrap();
            model.insert(k.clone(), b"overwritten".to_vec());
        }
    }
    w.commit(Durability::Deferred).unwrap();
    assert!(
        db.held_bytes() > 0,
        "the test needs pages held, not written out"
    );
    let point = db.commit_point();
    assert!(point.checkpoint().unwrap());
    assert!(!point.checkpoint().unwrap(), "already durable");
    assert_eq!(seen_by(&reader), at_reader, "the old snapshot changed");
    drop(reader);
    drop(point);
    // With the reader gone its pages are reused; the file stays sound.
    for n in 0..30 {
        let k = key(rng.below(20_000));
        put(
            &db,
            &mut model,
            k,
            format!("b{n}").into_bytes(),
            Durability::Deferred,
        );
    }
    let last = db.commit_point();
    assert!(last.checkpoint().unwrap());
    assert_eq!(contents(&db), model);
    assert_clean(&db);
    let crashed = crash(&b, CrashMode::Random, 4);
    assert_eq!(contents(&crashed), model);
    assert_clean(&crashed);
}

#[test]
fn a_checkpoint_of_an_older_commit_keeps_it_intact_while_newer_ones_stay_held() {
    let (db, b) = counting_db(1 << 20);
    let mut model = load(&db, 2000);
    for i in 0..50 {
        put(
            &db,
            &mut model,
            key(i),
            b"first".to_vec(),
            Durability::Deferred,
        );
    }
    let point = db.commit_point();
    let at_point = model.clone();
    // Later commits free pages of the point's snapshot; its own registration keeps them.
    for i in 0..50 {
        put(
            &db,
            &mut model,
            key(i),
            b"second".to_vec(),
            Durability::Deferred,
        );
    }
    assert!(point.checkpoint().unwrap());
    assert!(db.held_bytes() > 0, "the newer commits' pages stay held");
    assert_eq!(contents(&db), model);
    let crashed = crash(&b, CrashMode::DropAll, 0);
    assert_eq!(crashed.last_txn(), point.txn());
    assert_eq!(contents(&crashed), at_point);
    assert_clean(&crashed);
    // A durable commit writes the rest.
    db.begin_write()
        .unwrap()
        .commit(Durability::Durable)
        .unwrap();
    assert_eq!(db.held_bytes(), 0);
    let crashed = crash(&b, CrashMode::DropAll, 0);
    assert_eq!(contents(&crashed), model);
    assert_clean(&crashed);
}

#[test]
fn held_pages_past_the_limit_are_written_without_a_checkpoint() {
    // Cache 128 KiB: held pages are limited to 64 KiB (64 pages of 1 KiB).
    let limit = 64 * PAGE;
    let (db, b) = counting_db(128 << 10);
    let mut model = load(&db, 2000);
    let before = b.pages.load(Ordering::SeqCst);
    for n in 0..100u64 {
        // Values of three overflow pages each: new pages every commit.
        let v = vec![(n % 251) as u8 + 1; 3 * PAGE];
        put(&db, &mut model, key(n * 20), v, Durability::Deferred);
        assert!(db.held_bytes() <= limit, "{} bytes held", db.held_bytes());
    }
    assert!(
        b.pages.load(Ordering::SeqCst) - before >= 100 * 3,
        "held pages were not written out"
    );
    assert_eq!(contents(&db), model);
    assert_clean(&db);
    let point = db.commit_point();
    assert!(point.checkpoint().unwrap());
    for seed in 0..4 {
        let crashed = crash(&b, CrashMode::Random, seed);
        assert_eq!(contents(&crashed), model, "seed {seed}");
        assert_clean(&crashed);
    }
}

#[test]
fn checkpoints_beside_a_writer_and_short_lived_readers_keep_every_snapshot() {
    // A checkpoint runs beside the writer: once it publishes its durable point the next
    // writer may reuse the ids of pages freed up to it, so the held pages it wrote must
    // be gone by then. Readers that open and close around the checkpoints make freed
    // held pages that a checkpoint writes; a small cache sends reads to held pages and
    // disk. Every reader must see exactly its snapshot, and every checkpoint a sound file.
    let (db, b) = pausing_db(32 * PAGE, Duration::from_micros(300));
    let mut model = load(&db, 600);
    let stop = AtomicBool::new(false);
    let checkpoints = AtomicU64::new(0);
    std::thread::scope(|s| {
        // Stops the checkpoint thread however the writer's loop ends, a failed assert too.
        let _stop = Stop(&stop);
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let point = db.commit_point();
                if point.checkpoint().unwrap() {
                    checkpoints.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let mut rng = TestRng::new(21);
        let mut readers = VecDeque::new();
        for n in 0..2000u64 {
            let mut w = db.begin_write().unwrap();
            {
                let mut t = w.open_table("t").unwrap();
                for _ in 0..3 {
                    let k = key(rng.below(600));
                    let v = format!("v{n}").into_bytes();
                    t.insert(&k, &v).unwrap();
                    model.insert(k, v);
                }
            }
            w.commit(Durability::Deferred).unwrap();
            if rng.below(2) == 0 {
                readers.push_back((db.begin_read().unwrap(), model.clone()));
            }
            while readers.len() > 1 || (!readers.is_empty() && rng.below(2) == 0) {
                let (reader, at) = readers.pop_front().unwrap();
                assert_eq!(
                    seen_by(&reader),
                    at,
                    "a snapshot changed under its reader (commit {n})"
                );
            }
        }
    });
    assert!(
        checkpoints.load(Ordering::SeqCst) >= 20,
        "{} checkpoints ran beside the writer",
        checkpoints.load(Ordering::SeqCst)
    );
    let last = db.commit_point();
    last.checkpoint().unwrap();
    assert_eq!(contents(&db), model);
    assert_clean(&db);
    let crashed = crash(&b, CrashMode::Random, 5);
    assert_eq!(contents(&crashed), model);
    assert_clean(&crashed);
}

struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
