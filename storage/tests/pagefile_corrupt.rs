//! Damaged page files give clear errors: a broken checksum, a truncated file, a child
//! pointer outside the file or into a cycle. `open`, `get` and iteration return an error
//! naming the page (`page N`) and what is wrong; `check()` lists the problem instead of
//! failing.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::sync::Arc;

use mnemo_storage::{
    page, Database, DatabaseOptions, Durability, Location, MemoryBackend, StorageError,
};

const PAGE: usize = 1024;
const LEAF: u8 = 1;
const BRANCH: u8 = 2;
const KEYS: u64 = 1500;

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: PAGE,
        cache_bytes: 1 << 20,
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:06}-{}", "p".repeat(20)).into_bytes()
}

/// A file with table `t` (a deep tree, commit 2) and table `other` (commit 3). Opening it
/// verifies only the pages of commit 3, so damage to `t` shows when `t` is read.
fn build() -> Vec<u8> {
    let backend = MemoryBackend::new();
    let db = Database::create(Arc::new(backend.clone()), opts()).unwrap();
    let mut w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..KEYS {
            t.insert(&key(i), &[i as u8; 30]).unwrap();
        }
    }
    w.commit(Durability::Durable).unwrap();
    let mut w = db.begin_write().unwrap();
    w.open_table("other").unwrap().insert(b"o", b"1").unwrap();
    w.commit(Durability::Durable).unwrap();
    assert_eq!(db.last_txn(), 3);
    assert!(db.stats().unwrap().max_depth() >= 3);
    backend.to_bytes()
}

/// Pages of `kind` written by transaction `txn`.
fn pages(bytes: &[u8], kind: u8, txn: u64) -> Vec<u64> {
    (1..bytes.len() / PAGE)
        .filter(|&id| {
            let p = &bytes[id * PAGE..(id + 1) * PAGE];
            p[0] == kind && u64::from_le_bytes(p[8..16].try_into().unwrap()) == txn
        })
        .map(|id| id as u64)
        .collect()
}

fn open(bytes: Vec<u8>) -> mnemo_storage::Result<(Database, mnemo_storage::OpenReport)> {
    Database::open_with_report(Arc::new(MemoryBackend::from_bytes(bytes)), opts())
}

/// Asserts `e` is corruption at `page id` and its message says `what`.
fn assert_names(e: &StorageError, id: u64, what: &str) {
    match e {
        StorageError::Corrupted {
            location: Location::Page(p),
            ..
        } => assert_eq!(*p, id, "{e}"),
        other => panic!("expected corruption at page {id}, got {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("page {id}")) && msg.contains(what),
        "{msg:?} should name page {id} and say {what:?}"
    );
}

/// Reads all of `t` and every key; returns the first iteration error and the get errors.
fn read_all(db: &Database) -> (Option<StorageError>, Vec<StorageError>) {
    let r = db.begin_read().unwrap();
    let t = r.open_table("t").unwrap();
    let iter_err = t.iter().unwrap().find_map(|e| e.err());
    let get_errs = (0..KEYS).filter_map(|i| t.get(&key(i)).err()).collect();
    (iter_err, get_errs)
}

/// Replaces the stored checksum of page `id` with its true one, so the page itself
/// validates (its parent's record of the checksum still differs).
fn reseal(bytes: &mut [u8], id: u64) {
    let p = &mut bytes[id as usize * PAGE..(id as usize + 1) * PAGE];
    let crc = page::checksum(p);
    p[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn zero_older_slot(bytes: &mut [u8]) {
    // Slot 0 holds commits 1 and 3, slot 1 commit 2 (slots alternate).
    bytes[512..640].fill(0);
}

#[test]
fn broken_checksum_names_the_page_on_get_iter_and_check() {
    let good = build();
    let mut reachable = 0;
    for id in pages(&good, LEAF, 2) {
        let mut bytes = good.clone();
        bytes[id as usize * PAGE + 300] ^= 0x5a;
        let (db, report) = open(bytes).unwrap();
        assert_eq!(report.txn, 3, "page {id} is older than what open verifies");
        let (iter_err, get_errs) = read_all(&db);
        let check = db.check().unwrap();
        match iter_err {
            Some(e) => {
                reachable += 1;
                assert_names(&e, id, "checksum mismatch");
                assert!(!get_errs.is_empty(), "page {id}: no get failed");
                for e in &get_errs {
                    assert_names(e, id, "checksum mismatch");
                }
                assert!(
                    check
                        .problems
                        .iter()
                        .any(|p| p.contains(&format!("page {id}")) && p.contains("checksum")),
                    "page {id}: {:#?}",
                    check.problems
                );
            }
            None => {
                // A leaf of a catalog commit 3 replaced: free, never read.
                assert!(get_errs.is_empty());
                assert!(check.is_ok(), "page {id}: {:#?}", check.problems);
            }
        }
    }
    assert!(
        reachable >= 20,
        "only {reachable} damaged leaves were in use"
    );
}

#[test]
fn broken_checksum_in_the_newest_commit_falls_back_or_fails_open() {
    let good = build();
    let newest = pages(&good, LEAF, 3);
    assert!(!newest.is_empty());
    for id in newest {
        let mut bytes = good.clone();
        bytes[id as usize * PAGE + 200] ^= 1;
        // The newest commit is incomplete; open says why and uses the older one.
        let (db, report) = open(bytes.clone()).unwrap();
        assert_eq!(report.txn, 2);
        let why = report.fell_back.unwrap();
        assert!(
            why.contains(&format!("page {id}")) && why.contains("checksum mismatch"),
            "{why}"
        );
        assert!(db.check().unwrap().is_ok());
        // With no older commit to fall back to, open fails naming the page.
        zero_older_slot(&mut bytes);
        let e = open(bytes).unwrap_err();
        assert_names(&e, id, "checksum mismatch");
    }
}

#[test]
fn truncated_file_names_the_claim_it_cannot_back() {
    let good = build();
    // The file may run past the newest commit's pages (zeroed space it grew into).
    let (db, _) = open(good.clone()).unwrap();
    let pages_before = db.stats().unwrap().page_count;
    drop(db);
    for cut in [PAGE, PAGE / 2, 1] {
        let mut bytes = good[..pages_before as usize * PAGE - cut].to_vec();
        // The newest commit claims every page left and one more, so open refuses it and
        // uses the older one, which the file still holds.
        let (db, report) = open(bytes.clone()).unwrap();
        assert_eq!(report.txn, 2);
        let why = report.fell_back.unwrap();
        let claim = format!("commit 3 (slot 0) claims {pages_before} pages");
        assert!(
            why.contains(&claim) && why.contains(&format!("{}-byte file", bytes.len())),
            "{why}"
        );
        assert!(db.check().unwrap().is_ok());
        zero_older_slot(&mut bytes);
        let e = open(bytes).unwrap_err();
        assert!(
            matches!(
                &e,
                StorageError::Corrupted {
                    location: Location::Header,
                    ..
                }
            ) && e.to_string().contains("no usable commit slot")
                && e.to_string().contains(&claim),
            "{e}"
        );
    }
    // Too short for a header at all.
    for len in [0, 100, 600] {
        let e = open(good[..len].to_vec()).unwrap_err();
        assert!(
            matches!(
                &e,
                StorageError::Corrupted {
                    location: Location::Header,
                    ..
                }
            ) && e.to_string().contains("too short"),
            "{e}"
        );
    }
}

/// Points child 0 of each branch of `t` at `target(branch)`; checks get, iteration and
/// check() name `named(branch)` and say `what` / `check_what`.
fn bad_pointer(
    target: impl Fn(u64) -> u64,
    named: impl Fn(u64, u64) -> u64,
    what: &str,
    check_what: &str,
) {
    let good = build();
    let branches = pages(&good, BRANCH, 2);
    assert!(branches.len() >= 3, "{branches:?}");
    let mut roots = 0;
    for b in branches {
        let mut bytes = good.clone();
        let off = b as usize * PAGE + page::HEADER_LEN;
        let to = target(b);
        bytes[off..off + 8].copy_from_slice(&to.to_le_bytes());
        reseal(&mut bytes, b);
        let (db, report) = match open(bytes) {
            Ok(opened) => opened,
            Err(e) => {
                // The root's checksum is recorded in the catalog, which open verifies.
                assert_names(&e, b, "checksum differs from the one its parent recorded");
                roots += 1;
                continue;
            }
        };
        assert_eq!(report.txn, 3);
        let (iter_err, get_errs) = read_all(&db);
        let id = named(b, to);
        assert_names(&iter_err.unwrap(), id, what);
        assert!(!get_errs.is_empty(), "branch {b}: no get failed");
        for e in &get_errs {
            assert_names(e, id, what);
        }
        let check = db.check().unwrap();
        assert!(
            check
                .problems
                .iter()
                .any(|p| p.contains(&format!("page {id}")) && p.contains(check_what)),
            "branch {b}: {:#?}",
            check.problems
        );
        // The branch's own checksum no longer matches what its parent recorded.
        assert!(
            check
                .problems
                .iter()
                .any(|p| p.contains(&format!("page {b}"))
                    && p.contains("checksum differs from the one its parent recorded")),
            "branch {b}: {:#?}",
            check.problems
        );
    }
    assert_eq!(roots, 1, "exactly one branch is t's root");
}

#[test]
fn child_pointer_beyond_the_file_names_the_page() {
    bad_pointer(
        |_| 1_000_000,
        |_, to| to,
        "beyond the end of the file",
        "beyond the page count",
    );
}

#[test]
fn child_pointer_to_the_header_names_page_0() {
    bad_pointer(|_| 0, |_, _| 0, "header", "header");
}

#[test]
fn child_pointer_cycle_is_caught() {
    // A branch that lists itself as its first child.
    bad_pointer(|b| b, |b, _| b, "deeper than", "already reachable");
}
