//! The file grows ahead of its page count in zeroed steps (so most commits write inside
//! it), never holds fewer pages than its latest commit claims, and gives back a large free
//! tail after a durable commit.

#![allow(clippy::unwrap_used)] // tests fail loudly on any error

use std::sync::Arc;

use mnemo_storage::{
    CompactCursor, Database, DatabaseOptions, Durability, MemoryBackend, StorageBackend,
};

const PS: u64 = 1024;

fn opts() -> DatabaseOptions {
    DatabaseOptions {
        page_size: PS as usize,
        cache_bytes: 1 << 20,
    }
}

/// The most zeroed or free space past the page count a file may hold: two growth steps.
fn slack_limit(page_count: u64) -> u64 {
    2 * (page_count * PS / 8).max(16 * PS) + PS
}

fn assert_bounds(db: &Database, backend: &MemoryBackend, what: &str) -> u64 {
    let len = backend.len().unwrap();
    let pages = db.stats().unwrap().page_count;
    assert!(
        len >= pages * PS,
        "{what}: {len} bytes hold fewer than {pages} pages"
    );
    assert!(
        len <= pages * PS + slack_limit(pages),
        "{what}: {len} bytes for {pages} pages"
    );
    len
}

#[test]
fn single_key_commits_rarely_change_the_file_length_and_a_free_tail_is_given_back() {
    let backend = MemoryBackend::new();
    let db = Database::create(Arc::new(backend.clone()), opts()).unwrap();
    let mut changes = 0;
    let mut len = backend.len().unwrap();
    for i in 0..3000u64 {
        let mut w = db.begin_write().unwrap();
        w.open_table("t")
            .unwrap()
            .insert(format!("key-{i:06}").as_bytes(), &[7; 100])
            .unwrap();
        w.commit(Durability::Durable).unwrap();
        let now = backend.len().unwrap();
        changes += u32::from(now != len);
        len = now;
        if i % 100 == 0 {
            assert_bounds(&db, &backend, &format!("commit {i}"));
        }
    }
    let grown = assert_bounds(&db, &backend, "after the inserts");
    // The table ends near 500 pages; page by page that is about 500 length changes.
    assert!(changes <= 40, "the file length changed {changes} times");

    // Free most of it, then compact step by step: durable commits give back the free
    // tail once it is more than two growth steps, before compaction's final shrink.
    let mut w = db.begin_write().unwrap();
    w.open_table("t")
        .unwrap()
        .remove_range(b"key-000100".as_slice()..)
        .unwrap();
    w.commit(Durability::Durable).unwrap();
    let mut cursor = CompactCursor::default();
    let mut shrinks = 0;
    let mut len = backend.len().unwrap();
    for step in 0..10_000 {
        let mut w = db.begin_write().unwrap();
        let done = w.compact_step(&mut cursor, 16).unwrap().finished;
        w.commit(Durability::Durable).unwrap();
        let now = assert_bounds(&db, &backend, &format!("compaction step {step}"));
        shrinks += u32::from(now < len);
        len = now;
        if done {
            break;
        }
    }
    assert!(shrinks > 0, "no durable commit gave back the free tail");
    assert!(len * 4 < grown, "{grown} -> {len}");
    assert!(db.check().unwrap().is_ok());
    let db = Database::open(
        Arc::new(MemoryBackend::from_bytes(backend.to_bytes())),
        opts(),
    )
    .unwrap();
    let r = db.begin_read().unwrap();
    assert_eq!(r.open_table("t").unwrap().len(), 100);
}
