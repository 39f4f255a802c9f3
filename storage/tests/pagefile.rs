//! The page file through its public API: tables, ranges, overflow values, snapshots,
//! durability and space reuse.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;

use mnemo_storage::{
    CrashMode, Database, DatabaseOptions, Durability, FaultBackend, MemoryBackend, StorageError,
    TestRng,
};

fn opts(page_size: usize) -> DatabaseOptions {
    DatabaseOptions {
        page_size,
        cache_bytes: 1 << 20,
    }
}

fn mem_db(page_size: usize) -> (Database, MemoryBackend) {
    let b = MemoryBackend::new();
    let db = Database::create(Arc::new(b.clone()), opts(page_size)).unwrap();
    (db, b)
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

fn contents(db: &Database, table: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let r = db.begin_read().unwrap();
    let t = match r.open_table(table) {
        Ok(t) => t,
        Err(StorageError::TableNotFound(_)) => return BTreeMap::new(),
        Err(e) => panic!("{e}"),
    };
    t.iter()
        .unwrap()
        .map(|e| e.map(|e| (e.key().to_vec(), e.value().to_vec())).unwrap())
        .collect()
}

fn assert_clean(db: &Database) {
    let report = db.check().unwrap();
    assert!(
        report.is_ok(),
        "check found problems: {:#?}",
        report.problems
    );
}

#[test]
fn insert_get_overwrite_remove_and_reopen() {
    let (db, backend) = mem_db(4096);
    let mut w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("kv").unwrap();
        assert!(!t.insert(b"a", b"1").unwrap());
        assert!(!t.insert(b"b", b"2").unwrap());
        assert!(t.insert(b"a", b"one").unwrap());
        assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(t.len(), 2);
    }
    w.commit(Durability::Durable).unwrap();

    let r = db.begin_read().unwrap();
    let t = r.open_table("kv").unwrap();
    assert_eq!(t.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
    assert!(t.get(b"c").unwrap().is_none());
    assert!(matches!(
        r.open_table("nope"),
        Err(StorageError::TableNotFound(_))
    ));
    drop(r);

    let mut w = db.begin_write().unwrap();
    assert!(w.open_table("kv").unwrap().remove(b"a").unwrap());
    assert!(!w.open_table("kv").unwrap().remove(b"a").unwrap());
    w.commit(Durability::Durable).unwrap();
    drop(db);

    let db = Database::open(Arc::new(backend), opts(4096)).unwrap();
    assert_eq!(
        contents(&db, "kv"),
        BTreeMap::from([(b"b".to_vec(), b"2".to_vec())])
    );
    assert_clean(&db);
}

#[test]
fn many_keys_with_small_pages_match_a_btreemap() {
    let (db, _) = mem_db(1024);
    let mut model = BTreeMap::new();
    let mut rng = TestRng::new(7);
    for round in 0..20 {
        let mut w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("t").unwrap();
            for _ in 0..500 {
                let k = key(rng.below(3000));
                if rng.chance(1, 4) {
                    assert_eq!(t.remove(&k).unwrap(), model.remove(&k).is_some());
                } else {
                    let mut v = vec![0u8; rng.below(120) as usize];
                    rng.fill(&mut v);
                    assert_eq!(t.insert(&k, &v).unwrap(), model.insert(k, v).is_some());
                }
            }
            assert_eq!(t.len(), model.len() as u64);
        }
        let d = if round % 3 == 0 {
            Durability::Durable
        } else {
            Durability::Deferred
        };
        w.commit(d).unwrap();
        assert_eq!(contents(&db, "t"), model);
    }
    assert_clean(&db);
    let stats = db.stats().unwrap();
    assert!(
        stats.max_depth() >= 3,
        "1 KiB pages and 3000 keys make a deep tree: {stats:?}"
    );
}

#[test]
fn ranges_forward_backward_and_from_both_ends() {
    let (db, _) = mem_db(1024);
    let mut w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..2000 {
            t.insert(&key(i * 2), &i.to_le_bytes()).unwrap();
        }
    }
    w.commit(Durability::Durable).unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table("t").unwrap();
    let keys = |it: mnemo_storage::Range<'_>| -> Vec<Vec<u8>> {
        it.map(|e| e.unwrap().key().to_vec()).collect()
    };
    let want: Vec<Vec<u8>> = (50..100).map(|i| key(i * 2)).collect();
    assert_eq!(keys(t.range(key(100)..key(200)).unwrap()), want);
    // Bounds that fall between keys.
    assert_eq!(keys(t.range(key(99)..=key(199)).unwrap()), want);
    let mut rev = want.clone();
    rev.reverse();
    assert_eq!(
        t.range(key(100)..key(200))
            .unwrap()
            .rev()
            .map(|e| e.unwrap().key().to_vec())
            .collect::<Vec<_>>(),
        rev
    );
    // Excluded lower bound, included upper bound, backwards.
    let got: Vec<Vec<u8>> = t
        .range::<Vec<u8>>((
            std::ops::Bound::Excluded(key(100)),
            std::ops::Bound::Included(key(110)),
        ))
        .unwrap()
        .rev()
        .map(|e| e.unwrap().key().to_vec())
        .collect();
    assert_eq!(got, vec![key(110), key(108), key(106), key(104), key(102)]);
    // Both ends meet in the middle without repeating an entry.
    let mut it = t.range(key(0)..key(10)).unwrap();
    let mut seen = vec![];
    loop {
        match (it.next(), it.next_back()) {
            (None, None) => break,
            (a, b) => seen.extend(a.into_iter().chain(b).map(|e| e.unwrap().key().to_vec())),
        }
    }
    seen.sort();
    assert_eq!(seen, (0..5).map(|i| key(i * 2)).collect::<Vec<_>>());
    assert_eq!(t.count_range(key(0)..).unwrap(), 2000);
    assert_eq!(t.range(key(5000)..).unwrap().count(), 0);
    assert_eq!(t.range(..key(0)).unwrap().rev().count(), 0);
    assert_eq!(
        t.iter().unwrap().next_back().unwrap().unwrap().key(),
        key(3998)
    );
}

#[test]
fn remove_range_and_delete_table() {
    let (db, _) = mem_db(1024);
    let mut w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..1000 {
            t.insert(&key(i), b"v").unwrap();
        }
        assert_eq!(t.remove_range(key(100)..key(900)).unwrap(), 800);
        assert_eq!(t.len(), 200);
    }
    w.open_table("other").unwrap().insert(b"x", b"y").unwrap();
    w.commit(Durability::Durable).unwrap();
    assert_eq!(contents(&db, "t").len(), 200);
    assert_clean(&db);

    let mut w = db.begin_write().unwrap();
    assert!(w.delete_table("t").unwrap());
    assert!(!w.delete_table("t").unwrap());
    assert_eq!(w.list_tables().unwrap(), vec![("other".to_string(), 1)]);
    w.commit(Durability::Durable).unwrap();
    assert!(contents(&db, "t").is_empty());
    assert_clean(&db);
}

#[test]
fn large_values_use_overflow_pages_and_are_freed() {
    let (db, _) = mem_db(4096);
    let big: Vec<u8> = (0..1_572_864u32).map(|i| (i % 251) as u8).collect();
    let long_key = vec![b'k'; 1536];
    let mut w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        t.insert(&long_key, &big).unwrap();
        t.insert(b"small", b"s").unwrap();
        assert_eq!(t.get(&long_key).unwrap().as_deref(), Some(big.as_slice()));
    }
    w.commit(Durability::Durable).unwrap();
    let stats = db.stats().unwrap();
    assert!(stats.overflow_pages >= 384, "{stats:?}");
    assert_eq!(contents(&db, "t")[&long_key], big);
    assert_clean(&db);

    // Overwriting with a small value frees the chain; later commits reuse the pages.
    let pages_before = stats.page_count;
    let mut w = db.begin_write().unwrap();
    w.open_table("t")
        .unwrap()
        .insert(&long_key, b"tiny")
        .unwrap();
    assert!(w.pages_freed() >= 384);
    w.commit(Durability::Durable).unwrap();
    assert_clean(&db);
    let mut w = db.begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"again", &big).unwrap();
    w.commit(Durability::Durable).unwrap();
    assert_clean(&db);
    let stats = db.stats().unwrap();
    assert!(
        stats.page_count <= pages_before + 8,
        "freed pages reused: {} vs {pages_before}",
        stats.page_count
    );

    let mut w = db.begin_write().unwrap();
    let key_too_long = vec![0u8; 4096];
    assert!(matches!(
        w.open_table("t").unwrap().insert(&key_too_long, b""),
        Err(StorageError::InvalidArgument(_))
    ));
}

#[test]
fn readers_keep_their_snapshot_while_the_writer_moves_on() {
    let (db, _) = mem_db(1024);
    let mut w = db.begin_write().unwrap();
    for i in 0..500 {
        w.open_table("t").unwrap().insert(&key(i), b"old").unwrap();
    }
    w.commit(Durability::Durable).unwrap();
    let old = db.begin_read().unwrap();
    let before: Vec<_> = old
        .open_table("t")
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| e.unwrap().value().to_vec())
        .collect();
    for round in 0..10 {
        let mut w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("t").unwrap();
            for i in 0..500 {
                if (i + round) % 3 == 0 {
                    t.remove(&key(i)).unwrap();
                } else {
                    t.insert(&key(i), format!("new{round}").as_bytes()).unwrap();
                }
            }
        }
        w.commit(Durability::Durable).unwrap();
    }
    let after: Vec<_> = old
        .open_table("t")
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| e.unwrap().value().to_vec())
        .collect();
    assert_eq!(before, after, "an old snapshot must not change");
    assert!(after.iter().all(|v| v == b"old"));
    drop(old);
    assert_clean(&db);
}

#[test]
fn crash_loses_deferred_commits_but_never_durable_ones() {
    let backend = FaultBackend::new();
    let db = Database::create(Arc::new(backend.clone()), opts(1024)).unwrap();
    let mut w = db.begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"durable", b"1").unwrap();
    w.commit(Durability::Durable).unwrap();
    let mut w = db.begin_write().unwrap();
    w.open_table("t")
        .unwrap()
        .insert(b"deferred", b"2")
        .unwrap();
    w.commit(Durability::Deferred).unwrap();
    assert_eq!(
        contents(&db, "t").len(),
        2,
        "deferred commits are visible at once"
    );

    let image = backend.crash_image(CrashMode::DropAll, &mut TestRng::new(1));
    let db2 = Database::open(Arc::new(MemoryBackend::from_bytes(image)), opts(1024)).unwrap();
    assert_eq!(
        contents(&db2, "t"),
        BTreeMap::from([(b"durable".to_vec(), b"1".to_vec())])
    );
    assert_clean(&db2);

    // A later durable commit makes the deferred one durable too.
    let mut w = db.begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"third", b"3").unwrap();
    w.commit(Durability::Durable).unwrap();
    let image = backend.crash_image(CrashMode::DropAll, &mut TestRng::new(1));
    let db3 = Database::open(Arc::new(MemoryBackend::from_bytes(image)), opts(1024)).unwrap();
    assert_eq!(contents(&db3, "t").len(), 3);
}

#[test]
fn compaction_moves_live_pages_down_and_truncates_the_file() {
    let (db, backend) = mem_db(1024);
    let big = vec![9u8; 5000];
    let mut model = BTreeMap::new();
    let mut w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..6000 {
            let v: &[u8] = if i % 500 == 0 { &big } else { &[7u8; 64] };
            t.insert(&key(i), v).unwrap();
            model.insert(key(i), v.to_vec());
        }
    }
    w.commit(Durability::Durable).unwrap();
    // Free most of the file, leaving live pages scattered up to its end.
    let mut w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..6000 {
            if i % 50 != 0 {
                t.remove(&key(i)).unwrap();
                model.remove(&key(i));
            }
        }
    }
    w.commit(Durability::Durable).unwrap();
    // A reader open across compaction keeps its snapshot, and pins the pages it sees.
    let old_reader = db.begin_read().unwrap();
    db.compact(16).unwrap();
    let seen: Vec<_> = old_reader
        .open_table("t")
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| e.unwrap().key().to_vec())
        .collect();
    assert_eq!(seen, model.keys().cloned().collect::<Vec<_>>());
    drop(old_reader);
    let (before, after) = db.compact(16).unwrap();
    let st = db.stats().unwrap();
    assert!(
        after * 4 < before,
        "file should shrink: {before} -> {after}: {st:#?}"
    );
    assert!(
        st.free_pages <= 2,
        "compaction leaves no free pages behind: {st:#?}"
    );
    assert_eq!(st.page_count * 1024, after);
    assert_eq!(contents(&db, "t"), model);
    assert_clean(&db);
    // The compacted file reopens with the same contents.
    drop(db);
    let db = Database::open(Arc::new(backend), opts(1024)).unwrap();
    assert_eq!(contents(&db, "t"), model);
    assert_clean(&db);
}

#[test]
fn compaction_steps_are_bounded_and_interleave_with_writes() {
    let (db, _) = mem_db(1024);
    let mut w = db.begin_write().unwrap();
    for i in 0..4000 {
        w.open_table("t")
            .unwrap()
            .insert(&key(i), &[1u8; 100])
            .unwrap();
    }
    w.commit(Durability::Durable).unwrap();
    let mut w = db.begin_write().unwrap();
    w.open_table("t")
        .unwrap()
        .remove_range(key(0)..key(3000))
        .unwrap();
    w.commit(Durability::Durable).unwrap();
    let mut cursor = mnemo_storage::CompactCursor::default();
    let mut steps = 0;
    loop {
        let mut w = db.begin_write().unwrap();
        let step = w.compact_step(&mut cursor, 4).unwrap();
        // A step of 4 leaves moves at most a few pages per leaf path.
        assert!(step.pages_moved <= 4 * 8, "{step:?}");
        w.open_table("t")
            .unwrap()
            .insert(&key(10_000 + steps), b"during")
            .unwrap();
        w.commit(Durability::Durable).unwrap();
        steps += 1;
        if step.finished || steps > 2000 {
            break;
        }
    }
    assert!(steps > 1 && steps <= 2000, "steps {steps}");
    let r = db.begin_read().unwrap();
    assert_eq!(r.open_table("t").unwrap().len(), 1000 + steps);
    drop(r);
    assert_clean(&db);
}

#[test]
fn invalid_page_size_and_foreign_files_are_refused() {
    assert!(matches!(
        Database::create(Arc::new(MemoryBackend::new()), opts(3000)),
        Err(StorageError::InvalidArgument(_))
    ));
    let junk = MemoryBackend::from_bytes(vec![0xAB; 8192]);
    let err = Database::open(Arc::new(junk), opts(4096)).unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
    let empty = MemoryBackend::new();
    let err = Database::open(Arc::new(empty), opts(4096)).unwrap_err();
    assert!(err.to_string().contains("too short"), "{err}");
}

/// A transaction that appends many entries writes each finished page at once instead of
/// holding it until commit: it holds only the right edge of the tree. Aborted, a crash
/// before its commit, and committed, the file stays sound and has exactly what was
/// committed.
#[test]
fn appending_transactions_write_finished_pages_early() {
    let backend = FaultBackend::new();
    let db = Database::create(Arc::new(backend.clone()), opts(1024)).unwrap();
    let value = vec![7u8; 200];
    let append = |w: &mut mnemo_storage::WriteTransaction, from: u64, n: u64| {
        let mut t = w.open_table("t").unwrap();
        for i in from..from + n {
            t.insert(&key(i), &value).unwrap();
        }
    };
    let mut w = db.begin_write().unwrap();
    append(&mut w, 0, 100);
    w.commit(Durability::Durable).unwrap();

    // 5,000 entries of ~220 bytes fill about 1,250 leaves of 1 KiB; what stays held is
    // the rightmost leaf and the branches above the leaves (about 30).
    let mut w = db.begin_write().unwrap();
    append(&mut w, 100, 5000);
    assert!(w.pages_held() < 60, "held {} pages", w.pages_held());
    let image = backend.crash_image(CrashMode::DropAll, &mut TestRng::new(7));
    w.abort();
    let crashed = Database::open(Arc::new(MemoryBackend::from_bytes(image)), opts(1024)).unwrap();
    assert_eq!(contents(&crashed, "t").len(), 100);
    assert_clean(&crashed);
    assert_eq!(
        contents(&db, "t").len(),
        100,
        "an aborted transaction leaves nothing"
    );
    assert_clean(&db);

    // Pages written early and then changed again by the same transaction (an overwrite
    // in the middle) are copied, and the early copies are reused.
    let mut w = db.begin_write().unwrap();
    append(&mut w, 100, 5000);
    let other = vec![9u8; 150];
    {
        let mut t = w.open_table("t").unwrap();
        for i in (1000..2000).step_by(3) {
            t.insert(&key(i), &other).unwrap();
        }
    }
    w.commit(Durability::Deferred).unwrap();
    let mut w = db.begin_write().unwrap();
    append(&mut w, 5100, 3000);
    w.commit(Durability::Durable).unwrap();
    let mut expect: BTreeMap<Vec<u8>, Vec<u8>> =
        (0..8100).map(|i| (key(i), value.clone())).collect();
    for i in (1000..2000).step_by(3) {
        expect.insert(key(i), other.clone());
    }
    assert_eq!(contents(&db, "t"), expect);
    assert_clean(&db);
    let image = backend.crash_image(CrashMode::DropAll, &mut TestRng::new(8));
    let reopened = Database::open(Arc::new(MemoryBackend::from_bytes(image)), opts(1024)).unwrap();
    assert_eq!(contents(&reopened, "t"), expect);
    assert_clean(&reopened);
}

// Checkpoints: a deferred commit made durable after the fact, while later commits go on.
// After a crash the file opens at the checkpointed commit (or a newer durable one),
// never at a mix, and every page it reads is intact.

/// One deferred commit of a round of overwrites, inserts and deletes, mirrored in `model`.
fn round(db: &Database, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, rng: &mut TestRng) {
    let mut w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for _ in 0..40 {
            let k = format!("k{:04}", rng.below(400)).into_bytes();
            if rng.chance(1, 5) {
                t.remove(&k).unwrap();
                model.remove(&k);
            } else {
                let mut v = vec![0u8; 20 + rng.below(150) as usize];
                rng.fill(&mut v);
                t.insert(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
    }
    w.commit(Durability::Deferred).unwrap();
}

fn reopen_image(image: Vec<u8>) -> Database {
    Database::open(Arc::new(MemoryBackend::from_bytes(image)), opts(1024)).unwrap()
}

#[test]
fn a_checkpoint_makes_its_commit_durable_while_later_commits_reuse_space() {
    let backend = FaultBackend::new();
    let db = Database::create(Arc::new(backend.clone()), opts(1024)).unwrap();
    let mut rng = TestRng::new(3);
    let mut model = BTreeMap::new();
    for _ in 0..20 {
        round(&db, &mut model, &mut rng);
    }
    let point = db.commit_point();
    let at_point = model.clone();
    // Later commits free pages of the checkpointed commit; none may be reused before the
    // checkpoint lands, or the crash image below would read overwritten pages.
    for _ in 0..20 {
        round(&db, &mut model, &mut rng);
    }
    assert!(point.checkpoint().unwrap());
    assert_eq!(db.last_durable_txn(), point.txn());
    assert!(!point.checkpoint().unwrap(), "already durable");
    for _ in 0..20 {
        round(&db, &mut model, &mut rng);
    }
    for seed in 0..8 {
        let crashed = reopen_image(backend.crash_image(CrashMode::Random, &mut TestRng::new(seed)));
        assert_eq!(contents(&crashed, "t"), at_point, "seed {seed}");
        assert_clean(&crashed);
    }
    // A durable commit supersedes the older point.
    db.begin_write()
        .unwrap()
        .commit(Durability::Durable)
        .unwrap();
    assert!(!point.checkpoint().unwrap());
    let crashed = reopen_image(backend.crash_image(CrashMode::DropAll, &mut TestRng::new(0)));
    assert_eq!(contents(&crashed, "t"), model);
    assert_clean(&crashed);
}

/// Checkpoints run on another thread while commits go on; a crash at any moment opens at
/// the last checkpoint that completed or a later one, and the file is sound.
#[test]
fn checkpoints_alongside_commits_survive_crashes_at_any_moment() {
    let backend = FaultBackend::new();
    let db = Database::create(Arc::new(backend.clone()), opts(1024)).unwrap();
    let mut rng = TestRng::new(11);
    let mut model = BTreeMap::new();
    // Every state a commit published, by transaction id.
    let mut states: BTreeMap<u64, BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new();
    states.insert(db.last_txn(), model.clone());
    let mut pending: Option<thread::JoinHandle<u64>> = None;
    let mut images = Vec::new();
    for i in 0..120u64 {
        round(&db, &mut model, &mut rng);
        states.insert(db.last_txn(), model.clone());
        if i % 10 == 0 {
            if let Some(h) = pending.take() {
                h.join().unwrap();
            }
            let point = db.commit_point();
            pending = Some(thread::spawn(move || {
                point.checkpoint().unwrap();
                point.txn()
            }));
        }
        if i % 7 == 3 {
            // The durable floor: nothing older than a checkpoint known to be complete.
            let floor = db.last_durable_txn();
            images.push((floor, backend.crash_image(CrashMode::Random, &mut rng)));
        }
    }
    if let Some(h) = pending.take() {
        h.join().unwrap();
    }
    assert!(db.last_durable_txn() > 100, "{}", db.last_durable_txn());
    for (floor, image) in images {
        let crashed = reopen_image(image);
        let txn = crashed.last_txn();
        assert!(txn >= floor, "opened at {txn}, below the durable {floor}");
        assert_eq!(contents(&crashed, "t"), states[&txn], "opened at {txn}");
        assert_clean(&crashed);
    }
}
