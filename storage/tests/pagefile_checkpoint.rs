//! Checkpoints: a deferred commit made durable after the fact, while later commits go on.
//! After a crash the file opens at the checkpointed commit (or a newer durable one), never
//! at a mix, and every page it reads is intact.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;

use mnemo_storage::{
    CrashMode, Database, DatabaseOptions, Durability, FaultBackend, MemoryBackend, StorageError,
    TestRng, WriteTransaction,
};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: 1024,
        cache_bytes: 1 << 20,
    }
}

fn contents(db: &Database) -> State {
    let r = db.begin_read().unwrap();
    let t = match r.open_table("t") {
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
    assert!(report.is_ok(), "check: {:#?}", report.problems);
}

/// One deferred commit of a round of overwrites, inserts and deletes, mirrored in `model`.
fn round(db: &Database, model: &mut State, rng: &mut TestRng) {
    let mut w: WriteTransaction = db.begin_write().unwrap();
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

fn reopen(image: Vec<u8>) -> Database {
    Database::open(Arc::new(MemoryBackend::from_bytes(image)), opts()).unwrap()
}

#[test]
fn a_checkpoint_makes_its_commit_durable_while_later_commits_reuse_space() {
    let backend = FaultBackend::new();
    let db = Database::create(Arc::new(backend.clone()), opts()).unwrap();
    let mut rng = TestRng::new(3);
    let mut model = State::new();
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
        let crashed = reopen(backend.crash_image(CrashMode::Random, &mut TestRng::new(seed)));
        assert_eq!(contents(&crashed), at_point, "seed {seed}");
        assert_clean(&crashed);
    }
    // A durable commit supersedes the older point.
    db.begin_write()
        .unwrap()
        .commit(Durability::Durable)
        .unwrap();
    assert!(!point.checkpoint().unwrap());
    let crashed = reopen(backend.crash_image(CrashMode::DropAll, &mut TestRng::new(0)));
    assert_eq!(contents(&crashed), model);
    assert_clean(&crashed);
}

/// Checkpoints run on another thread while commits go on; a crash at any moment opens at
/// the last checkpoint that completed or a later one, and the file is sound.
#[test]
fn checkpoints_alongside_commits_survive_crashes_at_any_moment() {
    let backend = FaultBackend::new();
    let db = Database::create(Arc::new(backend.clone()), opts()).unwrap();
    let mut rng = TestRng::new(11);
    let mut model = State::new();
    // Every state a commit published, by transaction id.
    let mut states: BTreeMap<u64, State> = BTreeMap::new();
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
        let crashed = reopen(image);
        let txn = crashed.last_txn();
        assert!(txn >= floor, "opened at {txn}, below the durable {floor}");
        assert_eq!(contents(&crashed), states[&txn], "opened at {txn}");
        assert_clean(&crashed);
    }
}
