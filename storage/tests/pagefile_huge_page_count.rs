//! Regression: a damaged commit slot claiming far more pages than the file holds was opened, and the next commit allocated page ids at the claimed end (an abort on MemoryBackend, an arithmetic overflow at `u64::MAX`).
//!
//! A durable commit never claims more pages than the file holds (the file grows before
//! its slot is synced and shrinks only after), so `open` refuses such a slot: it falls
//! back to the other slot, or fails with `corruption at header: ...` when none is usable.
//! The same claim also made `check()` size its page map by it; `check()` still reports a
//! file cut short while open without allocating per claimed page.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::sync::Arc;

use mnemo_storage::{
    Database, DatabaseOptions, Durability, Location, MemoryBackend, StorageBackend, StorageError,
};

const PAGE: usize = 4096;

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: PAGE,
        cache_bytes: 1 << 20,
    }
}

/// Overwrites the slot at `offset` with a valid one (checksum and all) for `txn`, built on
/// durable commit `txn - 1`, claiming `page_count` pages and keeping the roots it held.
fn forge_slot(bytes: &mut [u8], offset: usize, txn: u64, page_count: u64) {
    let slot = &mut bytes[offset..offset + 128];
    slot[0..8].copy_from_slice(&txn.to_le_bytes());
    slot[40..48].copy_from_slice(&page_count.to_le_bytes());
    slot[48..56].copy_from_slice(&(txn - 1).to_le_bytes());
    let crc = crc32c::crc32c(&slot[..124]);
    slot[124..128].copy_from_slice(&crc.to_le_bytes());
}

fn is_header_corruption(e: &StorageError) -> bool {
    matches!(
        e,
        StorageError::Corrupted {
            location: Location::Header,
            ..
        }
    )
}

#[test]
fn open_refuses_a_lone_slot_claiming_more_pages_than_the_file() {
    for page_count in [2, 1 << 16, 1 << 40, u64::MAX] {
        let backend = MemoryBackend::new();
        Database::create(Arc::new(backend.clone()), opts()).unwrap();
        let mut bytes = backend.to_bytes();
        forge_slot(&mut bytes, 256, 5, page_count);
        let e = Database::open(Arc::new(MemoryBackend::from_bytes(bytes)), opts()).unwrap_err();
        let msg = e.to_string();
        assert!(is_header_corruption(&e), "{msg}");
        assert!(
            msg.starts_with("corruption at header: no usable commit slot")
                && msg.contains(&format!("commit 5 (slot 0) claims {page_count} pages"))
                && msg.contains("4096-byte file holds (1 pages)")
                && msg.contains("slot 1: slot checksum mismatch"),
            "{msg}"
        );
    }
}

/// Two durable commits of table `t`; returns the file and which slot holds the newer.
fn two_commits() -> (Vec<u8>, usize, u64) {
    let backend = MemoryBackend::new();
    let db = Database::create(Arc::new(backend.clone()), opts()).unwrap();
    for round in 0..2u64 {
        let mut w = db.begin_write().unwrap();
        let mut t = w.open_table("t").unwrap();
        for i in 0..200u64 {
            t.insert(format!("k{round}-{i:04}").as_bytes(), &[round as u8; 64])
                .unwrap();
        }
        w.commit(Durability::Durable).unwrap();
    }
    let txn = db.last_txn();
    // Slots alternate, starting with commit 1 in slot 0.
    let newest = usize::from(txn.is_multiple_of(2));
    (backend.to_bytes(), newest, txn)
}

#[test]
fn open_falls_back_past_a_newest_slot_claiming_too_many_pages_and_commits_stay_in_the_file() {
    for page_count in [1 << 16, 1 << 40, u64::MAX] {
        let (mut bytes, newest, txn) = two_commits();
        let file_pages = (bytes.len() / PAGE) as u64;
        // A newer commit than either, whose slot claims far more than the file holds.
        forge_slot(&mut bytes, 256 * (1 + newest), txn + 1, page_count);
        let backend = MemoryBackend::from_bytes(bytes);
        let (db, report) = Database::open_with_report(Arc::new(backend.clone()), opts()).unwrap();
        assert_eq!(report.txn, txn - 1, "{report:?}");
        let why = report.fell_back.unwrap();
        assert!(
            why.contains(&format!(
                "commit {} (slot {newest}) claims {page_count} pages",
                txn + 1
            )),
            "{why}"
        );
        // Commits allocate inside the file (or just past it), not at the claimed end.
        let mut w = db.begin_write().unwrap();
        w.open_table("t").unwrap().insert(b"after", b"v").unwrap();
        w.commit(Durability::Durable).unwrap();
        let len = backend.len().unwrap();
        assert!(
            len <= (file_pages + 8) * PAGE as u64,
            "file grew to {len} bytes"
        );
        assert!(db.check().unwrap().is_ok());
        let db = Database::open(
            Arc::new(MemoryBackend::from_bytes(backend.to_bytes())),
            opts(),
        )
        .unwrap();
        let r = db.begin_read().unwrap();
        let t = r.open_table("t").unwrap();
        assert_eq!(t.get(b"after").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(t.len(), 201);
    }
}

#[test]
fn check_reports_a_file_cut_short_while_open_in_one_line() {
    let (bytes, _, _) = two_commits();
    let backend = MemoryBackend::from_bytes(bytes);
    let db = Database::open(Arc::new(backend.clone()), opts()).unwrap();
    let page_count = db.stats().unwrap().page_count;
    assert!(page_count > 4, "{page_count}");
    // Something else cuts the file to its header page behind the open database's back.
    backend.set_len(PAGE as u64).unwrap();
    let report = db.check().unwrap();
    let want = format!("file is 4096 bytes, shorter than its {page_count} pages");
    assert_eq!(
        report.problems.iter().filter(|p| p.contains(&want)).count(),
        1,
        "{:?}",
        report.problems
    );
    assert_eq!(report.stats.page_count, page_count);
}
