//! Regression: `check()` reported "file is N bytes, shorter than its M pages" after a crash that kept a commit's file shrink but lost its slot, though only free pages were past the end.
//!
//! A commit that gives back free pages at the end of the file truncates it before its slot
//! is durable (a deferred commit never writes a slot). A power cut can keep the truncation
//! and lose the slot, so the last durable commit reopens with free pages past the end of
//! the file. That is sound: free pages are written before they are read. `check()` must
//! report a short file only when a page in use is missing.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::sync::Arc;

use mnemo_storage::{
    Database, DatabaseOptions, Durability, FaultBackend, MemoryBackend, StorageBackend,
};

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: 1024,
        cache_bytes: 1 << 20,
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

#[test]
fn crash_after_an_unsynced_shrink_reopens_clean() {
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
    // Later commits reuse them, and give back the free tail of the file. Durable and
    // deferred commits alternate until a deferred one shrinks the file.
    let mut shrunk = None;
    for round in 0..20u64 {
        let durable_len = fault.durable_bytes().len();
        let mut w = db.begin_write().unwrap();
        let k = format!("k{round}");
        w.open_table("keep")
            .unwrap()
            .insert(k.as_bytes(), b"v")
            .unwrap();
        if round % 2 == 0 {
            w.commit(Durability::Durable).unwrap();
            continue;
        }
        w.commit(Durability::Deferred).unwrap();
        let len = fault.current_bytes().len();
        if len < durable_len {
            shrunk = Some((k, len));
            break;
        }
    }
    let (lost_key, shrunk_len) = shrunk.expect("a deferred commit shrinks the file");

    // A power cut that kept only the truncation.
    let mut image = fault.durable_bytes();
    image.truncate(shrunk_len);
    let backend = MemoryBackend::from_bytes(image);
    let db = Database::open(Arc::new(backend.clone()), opts()).unwrap();
    let r = db.begin_read().unwrap();
    let t = r.open_table("keep").unwrap();
    assert_eq!(t.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert!(
        t.get(lost_key.as_bytes()).unwrap().is_none(),
        "the deferred commit is lost"
    );
    drop(r);
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert!(report.stats.file_len < report.stats.page_count * 1024);

    // The free pages past the end are reused and the file grows back as needed.
    let mut w = db.begin_write().unwrap();
    for i in 0..500 {
        w.open_table("t")
            .unwrap()
            .insert(&key(i), &[9; 40])
            .unwrap();
    }
    w.commit(Durability::Durable).unwrap();
    let report = db.check().unwrap();
    assert!(report.is_ok(), "{:#?}", report.problems);
    let db = Database::open(
        Arc::new(MemoryBackend::from_bytes(backend.to_bytes())),
        opts(),
    )
    .unwrap();
    let r = db.begin_read().unwrap();
    assert_eq!(r.open_table("t").unwrap().len(), 500);
    drop(r);
    assert!(db.check().unwrap().is_ok());
    assert!(backend.len().unwrap() >= db.stats().unwrap().page_count * 1024);
}

#[test]
fn cutting_free_pages_is_clean_and_cutting_pages_in_use_is_an_error() {
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
    // Rewrites t's right edge at the end of the file and frees most of its pages...
    let mut w = db.begin_write().unwrap();
    w.open_table("t").unwrap().remove_range(key(100)..).unwrap();
    w.commit(Durability::Durable).unwrap();
    // ...which later commits reuse, so t's pages stay at the end, written before the
    // last durable commit and not verified when the file opens.
    for round in 0..3 {
        let mut w = db.begin_write().unwrap();
        w.open_table("u")
            .unwrap()
            .insert(&key(round), b"new")
            .unwrap();
        w.commit(Durability::Durable).unwrap();
    }
    let bytes = backend.to_bytes();
    let (mut clean, mut errors) = (0, 0);
    for cut in 1..40 {
        let short = bytes[..bytes.len() - cut * 1024].to_vec();
        let db =
            match Database::open_with_report(Arc::new(MemoryBackend::from_bytes(short)), opts()) {
                Ok((_, open)) if open.fell_back.is_some() => continue,
                Ok((db, _)) => db,
                Err(e) => {
                    // A page written by the newest commit is verified on open.
                    assert!(e.to_string().contains("beyond the end of the file"), "{e}");
                    errors += 1;
                    continue;
                }
            };
        let report = db.check().unwrap();
        let r = db.begin_read().unwrap();
        let readable = r
            .open_table("t")
            .unwrap()
            .iter()
            .unwrap()
            .all(|e| e.is_ok());
        if report.problems.iter().any(|p| p.contains("shorter than")) {
            assert!(!readable, "cut {cut}: a short file but every entry reads");
        } else {
            // Only free pages were cut.
            assert!(
                readable,
                "cut {cut}: entries unreadable: {:?}",
                report.problems
            );
            assert!(report.is_ok(), "cut {cut}: {:?}", report.problems);
            clean += 1;
        }
    }
    assert!(clean > 0 && errors > 0, "clean {clean}, errors {errors}");
}
