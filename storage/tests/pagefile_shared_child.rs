//! Regression: the verification `open` runs on pages written since the last durable commit kept no record of the pages it had seen, so a crafted file whose branches list the same child many times made open take time exponential in the tree's depth.
//!
//! Each level of the crafted catalog below is one branch listing the level beneath it
//! three times: 3^40 paths to the bottom leaf. Open now verifies each page once and
//! reports the second arrival at a page as corruption naming it.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::sync::Arc;

use mnemo_storage::header::Slot;
use mnemo_storage::page::{self, ChildRef, LeafEntry};
use mnemo_storage::{Database, DatabaseOptions, Location, MemoryBackend, StorageError};

const PS: usize = 1024;
const LEVELS: u64 = 40;
const FANOUT: usize = 3;

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: PS,
        cache_bytes: 1 << 20,
    }
}

/// Page 1: a catalog leaf naming one empty table. Pages 2..: branches, each listing the
/// page below it `FANOUT` times. The only valid slot is commit 2 (built on commit 1), with
/// the top branch as its catalog root, so open verifies every page.
fn crafted_file() -> (Vec<u8>, u64) {
    let backend = MemoryBackend::new();
    Database::create(Arc::new(backend.clone()), opts()).unwrap();
    let mut bytes = backend.to_bytes();
    let txn = 2;
    let meta = [0u8; 20]; // table root 0 (empty), no entries
    let mut leaf = page::build_leaf(
        PS,
        &[LeafEntry {
            key: b"t",
            value: &meta,
            overflow: false,
        }],
    );
    let leaf_id = 1;
    let mut below = ChildRef {
        page: leaf_id,
        crc: page::seal(&mut leaf, txn, leaf_id),
    };
    bytes.extend_from_slice(&leaf);
    let keys: Vec<Vec<u8>> = (1..FANOUT).map(|i| vec![b'a' + i as u8]).collect();
    let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    for id in 2..2 + LEVELS {
        let mut branch = page::build_branch(PS, &[below; FANOUT], &keys);
        below = ChildRef {
            page: id,
            crc: page::seal(&mut branch, txn, id),
        };
        bytes.extend_from_slice(&branch);
    }
    let slot = Slot {
        txn,
        catalog: Some(below),
        freedb: None,
        page_count: 2 + LEVELS,
        base_txn: 1,
    };
    bytes[256..384].copy_from_slice(&slot.encode());
    (bytes, leaf_id)
}

#[test]
fn open_verifies_each_page_once_and_names_a_page_reached_twice() {
    let (bytes, leaf) = crafted_file();
    let e = Database::open(Arc::new(MemoryBackend::from_bytes(bytes.clone())), opts()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            StorageError::Corrupted {
                location: Location::Page(p),
                ..
            } if p == leaf
        ),
        "{msg}"
    );
    assert!(
        msg.starts_with(&format!("corruption at page {leaf}: reached twice")),
        "{msg}"
    );
}
