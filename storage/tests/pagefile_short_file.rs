//! Regression: a commit gave back the free tail of the file before its slot was durable (deferred commits never write one), so a crash could keep the shrink and lose the slot, leaving the last durable commit claiming pages past the end of the file.
//!
//! Now the file shrinks only after a durable commit's sync, down to that commit's page
//! count: every crash image holds every page the durable slot claims, and `open` refuses
//! a slot that claims more (a file cut short by something else). Commits also grow the
//! file ahead of the page count, so files here run a little past their pages.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::sync::Arc;

use mnemo_storage::{
    CrashMode, Database, DatabaseOptions, Durability, FaultBackend, Location, MemoryBackend,
    StorageError, TestRng,
};

const PAGE: u64 = 1024;

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: PAGE as usize,
        cache_bytes: 1 << 20,
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

/// Opens a crash image: it must reopen a commit at least as new as `durable`, whose pages
/// the file holds, and pass `check()`.
fn reopen_image(image: Vec<u8>, durable: u64, what: &str) {
    let len = image.len() as u64;
    let (db, report) =
        Database::open_with_report(Arc::new(MemoryBackend::from_bytes(image)), opts())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(report.txn >= durable, "{what}: {report:?}");
    let stats = db.stats().unwrap();
    assert!(stats.page_count * PAGE <= len, "{what}: {stats:?}");
    let check = db.check().unwrap();
    assert!(check.is_ok(), "{what}: {:?}", check.problems);
}

#[test]
fn only_durable_commits_shrink_the_file_and_every_crash_image_reopens() {
    let fault = FaultBackend::new();
    let db = Database::create(Arc::new(fault.clone()), opts()).unwrap();
    let mut w = db.begin_write().unwrap();
    w.open_table("keep").unwrap().insert(b"k", b"v").unwrap();
    for i in 0..2000 {
        w.open_table("t")
            .unwrap()
            .insert(&key(i), &[7; 40])
            .unwrap();
    }
    w.commit(Durability::Durable).unwrap();
    // Rewrites the path to one key and the catalog at the end of the file.
    let mut w = db.begin_write().unwrap();
    w.open_table("t").unwrap().insert(&key(5000), b"x").unwrap();
    w.commit(Durability::Durable).unwrap();
    // Frees most pages (under this commit's id, so not reusable by this commit).
    let mut w = db.begin_write().unwrap();
    assert!(w.delete_table("t").unwrap());
    w.commit(Durability::Durable).unwrap();
    // Later commits reuse them and lower the page count past the free tail; deferred
    // and durable commits alternate.
    let mut rng = TestRng::new(7);
    let mut deferred_trims = 0;
    for round in 0..20u64 {
        let len_before = fault.current_bytes().len();
        let pages_before = db.stats().unwrap().page_count;
        let mut w = db.begin_write().unwrap();
        let k = format!("k{round}");
        w.open_table("keep")
            .unwrap()
            .insert(k.as_bytes(), b"v")
            .unwrap();
        let durability = if round % 2 == 0 {
            Durability::Durable
        } else {
            Durability::Deferred
        };
        w.commit(durability).unwrap();
        let len = fault.current_bytes().len();
        let pages = db.stats().unwrap().page_count;
        assert!(len as u64 >= pages * PAGE, "round {round}");
        if durability == Durability::Deferred {
            assert!(
                len >= len_before,
                "round {round}: a deferred commit shrank the file"
            );
            deferred_trims += u32::from(pages < pages_before);
        }
        let durable = db.last_durable_txn();
        let what = format!("round {round}");
        reopen_image(fault.durable_bytes(), durable, &what);
        for seed in 0..8 {
            let image = fault.crash_image(CrashMode::Random, &mut rng);
            reopen_image(image, durable, &format!("{what}, seed {seed}"));
        }
    }
    assert!(
        deferred_trims > 0,
        "no deferred commit lowered the page count"
    );
    // A deferred commit's free tail is given back by a later durable commit; compaction
    // gives back all of it.
    let mut w = db.begin_write().unwrap();
    w.open_table("keep").unwrap().insert(b"last", b"v").unwrap();
    w.commit(Durability::Deferred).unwrap();
    let len_before = fault.current_bytes().len() as u64;
    db.compact(16).unwrap();
    let len = fault.current_bytes().len() as u64;
    assert_eq!(len, db.stats().unwrap().page_count * PAGE);
    assert!(len < len_before, "{len_before} -> {len}");
    let durable = db.last_durable_txn();
    reopen_image(fault.durable_bytes(), durable, "after compact");
    for seed in 0..8 {
        let image = fault.crash_image(CrashMode::Random, &mut rng);
        reopen_image(image, durable, &format!("after compact, seed {seed}"));
    }
}

#[test]
fn a_file_cut_short_opens_an_older_commit_it_holds_or_fails_at_the_header() {
    let backend = MemoryBackend::new();
    let db = Database::create(Arc::new(backend.clone()), opts()).unwrap();
    let mut w = db.begin_write().unwrap();
    w.open_table("u").unwrap().insert(b"u", b"u").unwrap();
    for i in 0..2000 {
        w.open_table("t")
            .unwrap()
            .insert(&key(i), &[1; 40])
            .unwrap();
    }
    w.commit(Durability::Durable).unwrap();
    // The newest commit grows the file by a few pages.
    let mut w = db.begin_write().unwrap();
    for i in 2000..2100 {
        w.open_table("t")
            .unwrap()
            .insert(&key(i), &[2; 40])
            .unwrap();
    }
    w.commit(Durability::Durable).unwrap();
    // The file may run past the newest commit's pages (zeroed space it grew into).
    let claimed = db.stats().unwrap().page_count as usize * PAGE as usize;
    let bytes = backend.to_bytes();
    assert!(bytes.len() >= claimed);
    let (mut older, mut refused) = (0, 0);
    for cut in 1..40 {
        let short = bytes[..claimed - cut * PAGE as usize].to_vec();
        let len = short.len() as u64;
        match Database::open_with_report(Arc::new(MemoryBackend::from_bytes(short)), opts()) {
            Ok((db, open)) => {
                assert_eq!(open.txn, 2, "cut {cut}: {open:?}");
                let why = open.fell_back.unwrap();
                assert!(why.contains("commit 3 (slot 0) claims"), "cut {cut}: {why}");
                assert!(db.stats().unwrap().page_count * PAGE <= len, "cut {cut}");
                assert!(db.check().unwrap().is_ok(), "cut {cut}");
                let r = db.begin_read().unwrap();
                let t = r.open_table("t").unwrap();
                assert_eq!(t.iter().unwrap().filter(|e| e.is_ok()).count(), 2000);
                older += 1;
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    matches!(
                        e,
                        StorageError::Corrupted {
                            location: Location::Header,
                            ..
                        }
                    ) && msg.contains("commit 3 (slot 0) claims")
                        && msg.contains("commit 2 (slot 1) claims"),
                    "cut {cut}: {msg}"
                );
                refused += 1;
            }
        }
    }
    assert!(older > 0 && refused > 0, "older {older}, refused {refused}");
}
