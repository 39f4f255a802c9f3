//! Regression: damaged files whose pages pass their own checksum made the engine panic or loop: deleting a table whose tree reached an overflow page, check() or an overwrite following an overflow chain into a non-overflow page, and a looping chain under an oversized length.
//!
//! Found by the fuzz pass in pagefile_fuzz.rs. Each case now returns an error naming the
//! page.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::sync::Arc;

use mnemo_storage::{page, Database, DatabaseOptions, Durability, MemoryBackend, StorageError};

const PS: usize = 1024;
const OVERFLOW: u8 = 3;
const BRANCH: u8 = 2;
const LEAF: u8 = 1;
const BIG: usize = 3000; // four overflow pages

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: PS,
        cache_bytes: 1 << 20,
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

/// Table `t`: 3000 small entries (three levels) and `big` with a 4-page overflow value;
/// then table `other` in a later commit.
fn build() -> Vec<u8> {
    let backend = MemoryBackend::new();
    let db = Database::create(Arc::new(backend.clone()), opts()).unwrap();
    let mut w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in 0..3000 {
            t.insert(&key(i), &[1; 30]).unwrap();
        }
        t.insert(b"big", &[7; BIG]).unwrap();
    }
    w.commit(Durability::Durable).unwrap();
    // A later commit, so opening verifies only its pages, not t's.
    let mut w = db.begin_write().unwrap();
    w.open_table("other").unwrap().insert(b"o", b"1").unwrap();
    w.commit(Durability::Durable).unwrap();
    backend.to_bytes()
}

fn pages_of(bytes: &[u8], kind: u8) -> Vec<usize> {
    (1..bytes.len() / PS)
        .filter(|&id| bytes[id * PS] == kind)
        .collect()
}

fn page_mut(bytes: &mut [u8], id: usize) -> &mut [u8] {
    &mut bytes[id * PS..(id + 1) * PS]
}

fn reseal(bytes: &mut [u8], id: usize) {
    let p = page_mut(bytes, id);
    let crc = page::checksum(p);
    p[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn open(bytes: Vec<u8>) -> Database {
    Database::open(Arc::new(MemoryBackend::from_bytes(bytes)), opts()).unwrap()
}

fn assert_page_error<T: std::fmt::Debug>(r: mnemo_storage::Result<T>, what: &str) {
    match r {
        Err(e @ StorageError::Corrupted { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("page ") && msg.contains(what), "{msg}");
        }
        other => panic!("expected corruption ({what}), got {other:?}"),
    }
}

/// The first page of the overflow chain: the one no other overflow page points at.
fn chain_head(bytes: &[u8]) -> (usize, Vec<usize>) {
    let ovf = pages_of(bytes, OVERFLOW);
    assert_eq!(ovf.len(), 4);
    let next =
        |id: usize| u64::from_le_bytes(bytes[id * PS + 24..id * PS + 32].try_into().unwrap());
    let head = *ovf
        .iter()
        .find(|&&h| !ovf.iter().any(|&o| next(o) == h as u64))
        .unwrap();
    let mut chain = vec![head];
    while next(*chain.last().unwrap()) != 0 {
        chain.push(next(*chain.last().unwrap()) as usize);
    }
    (head, chain)
}

#[test]
fn deleting_a_table_whose_branch_points_at_an_overflow_page_is_an_error() {
    let good = build();
    let (head, _) = chain_head(&good);
    let mut checked = 0;
    for b in pages_of(&good, BRANCH) {
        let mut bytes = good.clone();
        let off = page::HEADER_LEN;
        page_mut(&mut bytes, b)[off..off + 8].copy_from_slice(&(head as u64).to_le_bytes());
        reseal(&mut bytes, b);
        // The root's checksum is in the catalog, which open verifies.
        let Ok(db) = Database::open(Arc::new(MemoryBackend::from_bytes(bytes)), opts()) else {
            continue;
        };
        let mut w = db.begin_write().unwrap();
        assert_page_error(w.delete_table("t"), "overflow page");
        checked += 1;
    }
    assert!(checked >= 2, "{checked}");
}

#[test]
fn an_overflow_chain_into_a_leaf_is_an_error_in_check_and_overwrite() {
    let mut bytes = build();
    let (_, chain) = chain_head(&bytes);
    // The second chain page becomes a copy of a leaf (keeping its own id).
    let leaf = pages_of(&bytes, LEAF)[0];
    let victim = chain[1];
    let copy = bytes[leaf * PS..(leaf + 1) * PS].to_vec();
    page_mut(&mut bytes, victim).copy_from_slice(&copy);
    page_mut(&mut bytes, victim)[16..24].copy_from_slice(&(victim as u64).to_le_bytes());
    reseal(&mut bytes, victim);
    let db = open(bytes);
    let report = db.check().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("page {victim}"))
                && p.contains("expected an overflow page")),
        "{:#?}",
        report.problems
    );
    let mut w = db.begin_write().unwrap();
    let mut t = w.open_table("t").unwrap();
    assert_page_error(t.insert(b"big", b"small now"), "expected an overflow page");
}

#[test]
fn a_looping_overflow_chain_with_a_huge_length_is_an_error() {
    let mut bytes = build();
    let (head, chain) = chain_head(&bytes);
    // Find the descriptor (first page, length) in the leaf holding `big`.
    let mut pattern = (head as u64).to_le_bytes().to_vec();
    pattern.extend_from_slice(&(BIG as u64).to_le_bytes());
    let at = bytes
        .windows(16)
        .position(|w| w == pattern.as_slice())
        .expect("descriptor");
    let leaf = at / PS;
    bytes[at + 8..at + 16].copy_from_slice(&(u64::MAX / 4).to_le_bytes());
    reseal(&mut bytes, leaf);
    // The last chain page points back at the first.
    let last = *chain.last().unwrap();
    page_mut(&mut bytes, last)[24..32].copy_from_slice(&(head as u64).to_le_bytes());
    reseal(&mut bytes, last);
    let db = open(bytes);
    let r = db.begin_read().unwrap();
    let t = r.open_table("t").unwrap();
    assert_page_error(t.get(b"big"), "loops");
    drop(r);
    let report = db.check().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("loops")),
        "{:#?}",
        report.problems
    );
    let mut w = db.begin_write().unwrap();
    assert_page_error(w.open_table("t").unwrap().remove(b"big"), "loops");
}
